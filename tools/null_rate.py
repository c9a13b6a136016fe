"""How often the before/after verdict says "no clear change" when nothing changed: many seeds of one unchanged script.

Run: .venv/bin/python tools/null_rate.py [--seeds 40] [--first 1] [--jobs 2] [--speed 20] [--json]

Each seed is one whole headless session (``cli.terminal.run_session``: virtual sensors over the virtual BLE link, the
live processor, the recorder, the session file, ``analysis.summary.session_outcome``) of the short protocol
``tests/data/protocols/null-short.toml`` (baseline 64 s, treatment 2 s, post 64 s, then 10 s that only absorb late data), on realistic virtual EMG
(``EmgBody()``: noise floor, ECG of the body's heart, hum, drift, bursts, talking, shrugs, motion) whose scripted
tension (8 µV left, 6 µV right, resting trapezius of a tense client) never changes. The open-EMG sensor alone runs at
500 Hz, so that sessions at 20x keep up on a busy machine and the outcome has no heart statistics to wait for.
``--jobs`` processes (one ``BIOFEEDBACK_HOME``) each run their share of the seeds one after the other, so imports and
compiled kernels load once per process. A machine too busy to keep up with ``--speed`` loses data (the verdict then
says the phases had too little clean data): lower the speed. The nominal rate of "no clear
change" is at least 95 % (the verdict's interval is a 95 % interval, and a change must also exceed the SDC).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

REPO = pathlib.Path(__file__).resolve().parents[1]
PROTOCOL = REPO / "tests" / "data" / "protocols" / "null-short.toml"
TENSION_UV = (8.0, 6.0)
SPEED = 20.0
SEEDS_LOOP = r'''
import asyncio, json, sys
from biofeedback.cli.terminal import run_session
from biofeedback.sensors.profiles import load_profiles
from biofeedback.sensors.virtual import HeartScript, Scenario, TensionScript
from biofeedback.session.protocol import load_protocol
from biofeedback.session.runner import SessionPlan

seeds, speed, protocol, left, right = json.loads(sys.argv[1]), float(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
profiles, protocol = load_profiles(), load_protocol(protocol)
for seed in seeds:
    scenario = Scenario(devices=("open-emg",), tension=TensionScript.constant(left, right),
                        heart=HeartScript.constant(70.0), seed=seed, emg_rate_hz=500)
    plan = SessionPlan(f"N{seed:04d}", protocol, True, speed, True, scenario, {"answers": {"consent": True},
                       "source": "null-rate"}, None)
    outcome = asyncio.run(run_session(plan, profiles, out=lambda _: None))
    print(json.dumps({"seed": seed, "verdict": str(outcome.verdict), "text": outcome.verdict_text}), flush=True)
'''


def run_seeds(seeds: list[int], speed: float) -> list[dict]:
    """Headless sessions of the unchanged script, one after the other in one fresh process; their verdicts."""
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "BIOFEEDBACK_HOME": home, "PYTHONPATH": str(REPO / "src")}
        done = subprocess.run([sys.executable, "-c", SEEDS_LOOP, json.dumps(seeds), str(speed), str(PROTOCOL),
                               *map(str, TENSION_UV)], env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"seeds {seeds} failed: {done.stderr.strip().splitlines()[-1:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def null_verdicts(seeds: range, speed: float = SPEED, jobs: int = 2) -> list[dict]:
    """The verdict of each seed's session: ``jobs`` processes, each looping over its share of the seeds."""
    shares = [list(seeds)[k::jobs] for k in range(jobs)]
    with ThreadPoolExecutor(jobs) as pool:
        return sorted((r for part in pool.map(lambda s: run_seeds(s, speed), shares) for r in part),
                      key=lambda r: r["seed"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--first", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--speed", type=float, default=SPEED)
    ap.add_argument("--json", action="store_true", help="one JSON line per seed")
    args = ap.parse_args()
    results = null_verdicts(range(args.first, args.first + args.seeds), args.speed, args.jobs)
    for r in results:
        print(json.dumps(r) if args.json else f"seed {r['seed']:4d}: {r['verdict']:<16} {r['text'][:150]}")
    counts = {v: sum(r["verdict"] == v for r in results) for v in sorted({r["verdict"] for r in results})}
    print(f"{len(results)} seeds: " + ", ".join(f"{v} {n} ({100 * n / len(results):.0f} %)" for v, n in counts.items()))


if __name__ == "__main__":
    main()
