"""Benchmark of `biofeedback study`: wall time with 1 and 2 local Dask worker processes, side by side in one run, the
per-session cost, and what N workers would take for 10,000 sessions.

Run: .venv/bin/python tools/bench_study.py [--sessions 24] [--repeats 2] [--home DIR]

Without ``--home`` it records 4 virtual sessions of the demo protocol (75 s rest, 60 s treatment, 75 s rest, at
--speed 40) into a temporary study folder and copies them to ``--sessions`` files spread over three clients: every copy is
its own file with its own cache key, and costs what the original costs to analyse. Each worker count then analyses
the whole study into its own fresh output folder (nothing cached), measured one after the other in this run.

Measured: the study's wall time (cluster start, tasks, tables, models, plots) and the tasks' wall time; the
per-session cost c (one session analysed in this process, median of all); the scheduler's cost per task o (1,000
empty tasks on the 2-worker cluster). Extrapolation for S sessions on N workers, each a core like this machine's:

    T(N) = T_fixed + S * c / (N * e) + S * o

T_fixed = the cluster's start plus the tables, models and plots (the 1-worker study's wall time less its tasks'
and the cluster start) scaled linearly to S sessions; e = the parallel
efficiency measured here, (tasks time with 1 worker) / (2 * tasks time with 2 workers). Assumptions: e holds for
N workers (on this 2-core machine the main process shares the cores, so e is a low estimate for a cluster, and a
high one where a shared file system slows reading), and the scheduler handles tasks one after another (o per task).
No assertions: timing is not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLIENTS = ("B01", "B02", "B03")
TARGET_SESSIONS = 10_000
CLUSTER_SIZES = (1, 2, 8, 32, 128)


def record(home: Path, n_sessions: int) -> list[Path]:
    """Record 4 virtual sessions (two processes, a client each: one session file name per client and second) and copy
    them to ``n_sessions`` files over ``CLIENTS``."""
    env = {**os.environ, "BIOFEEDBACK_HOME": str(home)}
    procs = []
    for k in range(2):
        code = ("import sys; from biofeedback.cli import main\n"
                f"for seed, uv in {[(2 * k + j, 30 + 10 * (2 * k + j)) for j in range(2)]!r}:\n"
                f"    assert main(['session', '--client', 'src{k}', '--virtual', '--speed', '40', '--protocol', "
                "'demo', '--auto', '--answers', 'all-clear', '--headless', '--seed', str(seed), "
                "'--virtual-emg-uv', f'{uv},{uv * 0.8:g}']) == 0\n")
        procs.append(subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL))
    assert all(p.wait() == 0 for p in procs)
    originals = sorted((home / "clients").glob("src*/sessions/*.bfsession"))
    made = []
    for i in range(n_sessions):
        folder = home / "clients" / CLIENTS[i % len(CLIENTS)] / "sessions"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        made.append(Path(shutil.copy2(originals[i % len(originals)], folder / f"20260101T{i // 60:02d}{i % 60:02d}00Z.bfsession")))
    for k in range(2):
        shutil.rmtree(home / "clients" / f"src{k}")
    return made


def scheduler_cost_s(workers: int, n_tasks: int = 1000) -> float:
    """Seconds per empty task through the scheduler of a LocalCluster of ``workers`` processes."""
    from biofeedback.analysis.study import close_client, open_client

    client = open_client(None, workers)
    try:
        client.gather(client.map(abs, range(50)))  # warm the workers
        t0 = time.perf_counter()
        client.gather(client.map(abs, range(n_tasks)))
        return (time.perf_counter() - t0) / n_tasks
    finally:
        close_client(client)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=24, help="sessions in the benchmark study (copies of 4 recorded)")
    ap.add_argument("--home", type=Path, help="an existing study folder to use instead of recording one")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each worker count, alternating; the fastest is kept")
    args = ap.parse_args()
    load_at_start = os.getloadavg()[0]

    from biofeedback.analysis.study import analyse_session, run_study, study_jobs

    tmp = Path(tempfile.mkdtemp(prefix="bench-study-"))
    try:
        t0 = time.perf_counter()
        home = args.home or tmp / "home"
        if args.home is None:
            record(home, args.sessions)
            print(f"recorded 4 virtual sessions, copied to {args.sessions} files ({time.perf_counter() - t0:.0f} s)")
        jobs = study_jobs(home)
        n = len(jobs)
        analyse_session(str(jobs[0].path), jobs[0].client_id)  # imports and compiled kernels, outside the timing
        costs = []
        for job in jobs[:min(n, 8)]:
            t = time.perf_counter()
            analyse_session(str(job.path), job.client_id)
            costs.append(time.perf_counter() - t)
        c = statistics.median(costs)
        runs: dict[int, tuple[float, float, float]] = {}
        for r in range(args.repeats):  # 1, 2, 1, 2, ...: both see the same load; the fastest of each is kept
            for w in (1, 2):
                t = time.perf_counter()
                study = run_study(tmp / f"out-{w}-{r}", home, workers=w)
                run = (time.perf_counter() - t, study.stats.tasks_wall_s, study.stats.start_s)
                assert study.stats.analysed == n
                runs[w] = min(runs.get(w, run), run)
        o = scheduler_cost_s(2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    (wall1, tasks1, start), (wall2, tasks2, _) = runs[1], runs[2]
    e = tasks1 / (2 * tasks2)
    per_study = wall1 - tasks1 - start
    fixed = start + per_study * TARGET_SESSIONS / n
    print(f"\nmachine: {os.cpu_count()} cores, load average {load_at_start:.1f} at the start and "
          f"{os.getloadavg()[0]:.1f} at the end; study of {n} sessions ({len(CLIENTS)} clients), fastest of "
          f"{args.repeats} alternating runs per worker count; python {sys.version.split()[0]}\n")
    print("| workers | study wall time | tasks wall time | per session (tasks) | speed-up |")
    print("| --- | --- | --- | --- | --- |")
    for w, (wall, tasks, _) in runs.items():
        print(f"| {w} | {wall:.1f} s | {tasks:.1f} s | {tasks / n:.2f} s | {tasks1 / tasks:.2f}x |")
    print(f"\nper-session cost c (one session in one process, median of {len(costs)}): {c:.2f} s; "
          f"scheduler cost per task o: {o * 1000:.2f} ms; parallel efficiency at 2 workers e: {e:.2f}; "
          f"cluster start: {start:.1f} s; tables, models and plots for {n} sessions: {per_study:.1f} s\n")
    print(f"T(N) = T_fixed + S*c/(N*e) + S*o for S = {TARGET_SESSIONS:,} sessions, T_fixed = cluster start + tables, "
          f"models and plots scaled linearly to S = {fixed / 60:.1f} min\n")
    print("| workers N | estimated wall time |")
    print("| --- | --- |")
    for w in CLUSTER_SIZES:
        total = fixed + TARGET_SESSIONS * c / (w * e) + TARGET_SESSIONS * o
        print(f"| {w} | {total / 3600:.2f} h ({total / 60:.0f} min) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
