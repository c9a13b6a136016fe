"""Benchmark of long sessions: time and peak memory of the end-of-session summary, the report and every export of
generated sessions of 15 min, 1 h and 4 h, with the growth per session-hour, measured in one run.

Run: PYTHONPATH=src .venv/bin/python tools/bench_long.py [--minutes 15 60 240] [--dir DIR]

Sessions are generated directly with the session file writer (``write_long_session``), far faster than recording:
what the demo's sensors send, per session second: open-EMG at 1000 Hz, 2 channels, in 100-sample blocks (with the
int16 packet as raw bytes), Polar H10 ECG at 130 Hz in 73-sample frames, one HR notification and its beats (RR with
breathing modulation); phases baseline 40 %, treatment 20 %, post 40 % of the length, a hands-on interval, markers,
and per started hour one 3 s EMG gap (a recorded gap) and one 20 s electrode-off stretch (blocks flagged
``SENSOR_CONTACT_LOST``, flat line). That is the demo's data rate (about 55 MB of file per session-hour).

Each step runs in its own process (``python -c``), and its peak memory is that process's ``ru_maxrss`` (resident
set, interpreter and imports included: the ``baseline`` row is a process that only imports them). The steps:
``summary`` (the outcome the terminal prints at the end of a session: ``SessionOutcome.text()`` of
``session_outcome``), ``summary-live`` (what the runner shows at the end of a live session before the verdict:
``analysis.summary.LiveTally.summary`` of the live values kept while recording, here made from the file's
processed EMG and beats, which is not timed), ``report`` (``biofeedback report FILE --json``) and ``export-<fmt>`` for each export format.
Growth per hour is the slope between the two longest sessions. No assertions: timing is not a test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

EMG_HZ, EMG_BLOCK = 1000.0, 100
ECG_HZ, ECG_BLOCK = 130.0, 73
GAP_AT_S, GAP_S = 1500.0, 3.0
"""Within each started hour, session seconds of a recorded EMG gap and its length."""
OFF_AT_S, OFF_S = 2200.0, 20.0
"""Within each started hour, session seconds of an electrode-off stretch (flat line, blocks flagged)."""


def write_long_session(path: Path, seconds: float, seed: int = 1, gap_at_s: float = GAP_AT_S,
                       off_at_s: float = OFF_AT_S) -> Path:
    """A session file of ``seconds`` of demo-like data at ``path`` (see the module docstring); gaps and electrode-off
    stretches at ``gap_at_s`` and ``off_at_s`` into every started hour (``seconds`` shorter than that: none)."""
    from biofeedback.store import SessionWriter
    from biofeedback.stream import NS_PER_S, Block, BlockFlag, Gap
    from biofeedback.vocab import EventKind

    rng = np.random.default_rng(seed)
    phases = [("baseline", "rest", 0.4), ("treatment", "treatment", 0.2), ("post", "rest", 0.4)]
    writer = SessionWriter(path, {"client_id": "L001", "utc_anchor": 1.75e9, "protocol": "long", "speed": 1000.0,
                                  "tension_index_unit": "uV"})
    hours = range(int(seconds // 3600) + 1)
    gaps = [(h * 3600 + gap_at_s, h * 3600 + gap_at_s + GAP_S) for h in hours if h * 3600 + gap_at_s + GAP_S < seconds]
    offs = [(h * 3600 + off_at_s, h * 3600 + off_at_s + OFF_S) for h in hours if h * 3600 + off_at_s + OFF_S < seconds]
    for a, b in gaps:
        writer.add_gap(Gap("emg", "open-emg", a, b, "generated gap", int((b - a) * EMG_HZ)))
    t0 = 0.0
    for name, kind, share in phases:
        writer.add_event(EventKind.PHASE_START, t0, name, 0.0, {"kind": kind})
        writer.add_event(EventKind.PHASE, t0, name, share * seconds, {"kind": kind, "planned_s": share * seconds})
        if kind == "treatment":
            writer.add_event(EventKind.HANDS_ON, t0 + 10.0, "hands on", 20.0)
            writer.add_event(EventKind.MARKER, t0 + 5.0, "cue")
        t0 += share * seconds
    emg_index = ecg_index = 0
    beat_t = 0.4
    for second in range(int(seconds)):
        s = float(second)
        level = np.array([40.0, 32.0]) * (0.7 if s >= 0.6 * seconds else 1.0)
        for k in range(int(EMG_HZ) // EMG_BLOCK):
            t_first = emg_index / EMG_HZ
            if not any(a <= t_first < b for a, b in gaps):
                off = any(a <= t_first < b for a, b in offs)
                data = np.zeros((EMG_BLOCK, 2)) if off else rng.standard_normal((EMG_BLOCK, 2)) * level
                raw = np.clip(data * 10, -32768, 32767).astype("<i2").tobytes()
                writer.add_block(Block("emg", "open-emg", int((t_first + 0.1) * NS_PER_S), data, EMG_HZ, emg_index,
                                       emg_index // EMG_BLOCK, flags=BlockFlag.SENSOR_CONTACT_LOST if off else 0, channels=("left_trapezius", "right_trapezius"),
                                       raw=raw), t_first)
            emg_index += EMG_BLOCK
        while (ecg_index + ECG_BLOCK) / ECG_HZ <= s + 1.0:
            t_first = ecg_index / ECG_HZ
            data = rng.standard_normal((ECG_BLOCK, 1)) * 50.0
            writer.add_block(Block("ecg", "polar-h10", int((t_first + 0.6) * NS_PER_S), data, ECG_HZ,
                                   raw=data.astype("<i2").tobytes()), t_first)
            ecg_index += ECG_BLOCK
        times, rrs = [], []
        while beat_t < s + 1.0:
            rr = 850.0 + 40.0 * np.sin(2 * np.pi * beat_t / 4.5) + rng.normal(0, 15)
            beat_t += rr / 1000.0
            times.append(beat_t)
            rrs.append(rr)
        writer.add_beats("polar-h10", times, rrs, rrs, np.zeros(len(rrs), dtype=int))
        writer.add_block(Block("hr", "polar-h10", int((s + 1.0) * NS_PER_S), np.array([[60000.0 / np.mean(rrs)]])
                               if rrs else np.array([[70.0]]), raw=b"\x10\x46"), None)
        if second % 60 == 59:
            writer.flush()
    writer.close()
    return path


STEPS = ("baseline", "summary-live", "summary", "report", *(f"export-{fmt}" for fmt in ("edf", "csv", "bids", "hdf5")))
CHILD = r"""
import contextlib, io, json, resource, sys, time
from pathlib import Path
from biofeedback.cli import main
from biofeedback.analysis.summary import LiveTally, format_summary, session_outcome
from biofeedback.store import export as _export
step, path, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
live = None
if step == "summary-live":  # the live values a runner keeps while recording, made here from the file (not timed)
    from biofeedback.analysis.data import load_session
    from biofeedback.vocab import EventKind
    import numpy as np
    data = load_session(path)
    live = LiveTally()
    emg = data.emg
    live.add_tension(emg.t_s, np.column_stack([emg.rms_uv, (~emg.flagged.any(axis=1)).astype(float)]))
    live.add_hr(data.beats.t_s, 60000.0 / data.beats.rr_ms)
    for p in data.phases:
        live.add_event(EventKind.PHASE, p.start_s, p.name, p.duration_s, {"kind": p.kind})
    for a, b in data.hands_on:
        live.add_event(EventKind.HANDS_ON, a, "hands on", b - a, None)
start = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    if step == "summary-live":
        format_summary(live.summary(emg.channels, emg.rate_hz, None, path))
    elif step == "summary":
        session_outcome(path).text()
    elif step == "report":
        assert main(["report", str(path), "--json", "--out", str(out)]) == 0
    elif step.startswith("export-"):
        assert main(["export", str(path), "--format", step[7:], "--out", str(out)]) == 0
print(json.dumps({"s": time.perf_counter() - start, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(step: str, path: Path, out: Path) -> dict:
    """One step in its own process: its wall time (imports not counted) and the process's peak resident memory."""
    done = subprocess.run([sys.executable, "-c", CHILD, step, str(path), str(out)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{step} on {path.name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[15, 60, 240])
    parser.add_argument("--dir", type=Path, help="where to keep the generated sessions (default: a temporary folder)")
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        results: dict[str, dict[float, dict]] = {step: {} for step in args.steps}
        sizes = {}
        for minutes in args.minutes:
            path = folder / f"long-{minutes:g}min.bfsession"
            if not path.exists():
                started = time.perf_counter()
                write_long_session(path, minutes * 60.0)
                print(f"generated {path.name} in {time.perf_counter() - started:.1f} s", flush=True)
            sizes[minutes] = path.stat().st_size / 1e6
            for step in args.steps:
                with tempfile.TemporaryDirectory() as out:
                    results[step][minutes] = measure(step, path, Path(out))
                r = results[step][minutes]
                print(f"  {minutes:g} min {step:<13} {r['s']:8.2f} s {r['peak_mb']:8.0f} MB", flush=True)
        lengths = sorted(args.minutes)
        print()
        print("| step | " + " | ".join(f"{m:g} min: s, MB" for m in lengths) + " | growth per hour (s, MB) |")
        print("| --- | " + " | ".join("---" for _ in lengths) + " | --- |")
        print("| file size | " + " | ".join(f"{sizes[m]:.0f} MB" for m in lengths) + " | |")
        for step in args.steps:
            cells = [f"{results[step][m]['s']:.2f} s, {results[step][m]['peak_mb']:.0f} MB" for m in lengths]
            growth = ""
            if len(lengths) >= 2:
                a, b = lengths[-2], lengths[-1]
                hours = (b - a) / 60.0
                growth = (f"{(results[step][b]['s'] - results[step][a]['s']) / hours:+.2f} s, "
                          f"{(results[step][b]['peak_mb'] - results[step][a]['peak_mb']) / hours:+.1f} MB")
            print(f"| {step} | " + " | ".join(cells) + f" | {growth} |")


if __name__ == "__main__":
    main()
