"""Benchmark of long sessions: time and peak memory of the end-of-session summary, the report and every export of
generated sessions of 15 min, 1 h and 4 h, with the growth per session-hour, measured in one run.

Run: PYTHONPATH=src .venv/bin/python tools/bench_long.py [--minutes 15 60 240] [--dir DIR]

Sessions are generated directly with the session file writer (``write_long_session``), far faster than recording:
what the demo's sensors send, per session second: open-EMG at 1000 Hz, 2 channels, in 100-sample blocks (with the
int16 packet as raw bytes), Polar H10 ECG at 130 Hz in 73-sample frames, one HR notification and its beats (RR with
breathing modulation); phases baseline 40 %, treatment 20 %, post 40 % of the length, a hands-on interval, markers,
and per started hour one 3 s EMG gap (a recorded gap) and one 20 s electrode-off stretch (blocks flagged
``SENSOR_CONTACT_LOST``, flat line). That is the demo's data rate (about 45 MB of file per session-hour).

Each step runs in its own process (``python -c``), and its peak memory is that process's ``ru_maxrss`` (resident
set, interpreter and imports included: the ``baseline`` row is a process that only imports them). The steps:
``summary`` (the outcome the terminal prints at the end of a session: ``SessionOutcome.text()`` of
``session_outcome``), ``summary-live`` (what the runner shows at the end of a live session before the verdict:
``analysis.summary.quick_summary`` from the live processor's per-phase sums, here replayed from the file's
tension trace), ``report`` (``biofeedback report FILE --json``) and ``export-<fmt>`` for each export format.
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
