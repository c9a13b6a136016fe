"""The live LSL outlet: a session in another process streams, an inlet here reads it back with its metadata."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pylsl
import pytest

from biofeedback.store import SessionReader
from biofeedback.stream import StreamKind

PROTOCOL = Path(__file__).resolve().parents[1] / "data" / "protocols" / "session-short.toml"
SPEED = 10.0


def channels_of(info: pylsl.StreamInfo) -> list[tuple[str, str]]:
    ch = info.desc().child("channels").child("channel")
    out = []
    while not ch.empty():
        out.append((ch.child_value("label"), ch.child_value("unit")))
        ch = ch.next_sibling()
    return out


def test_a_session_streams_raw_derived_and_events_over_lsl(tmp_path):
    env = dict(os.environ, BIOFEEDBACK_HOME=str(tmp_path), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "biofeedback.cli", "session", "--client", "L001", "--virtual", "--speed", str(SPEED),
         "--protocol", str(PROTOCOL), "--auto", "--answers", "all-clear", "--headless", "--lsl"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        found = {}
        deadline = time.monotonic() + 30
        while len(found) < 6 and time.monotonic() < deadline:
            for info in pylsl.resolve_streams(wait_time=1.0):
                if info.name().startswith("biofeedback") and info.source_id().startswith("biofeedback-L001"):
                    found[info.name()] = info
        assert set(found) == {"biofeedback EMG", "biofeedback ECG", "biofeedback RR", "biofeedback tension",
                              "biofeedback HRV", "biofeedback markers"}, sorted(found)
        emg, markers = found["biofeedback EMG"], found["biofeedback markers"]
        assert emg.type() == "EMG" and emg.nominal_srate() == 1000.0 and emg.channel_count() == 2
        assert markers.channel_format() == pylsl.cf_string
        emg_in = pylsl.StreamInlet(emg)
        marker_in = pylsl.StreamInlet(markers)
        # The full stream info (with its desc) comes from the outlet through an inlet.
        assert channels_of(emg_in.info(timeout=5)) == [("left_trapezius", "uV"), ("right_trapezius", "uV")]
        hrv = pylsl.StreamInlet(found["biofeedback HRV"]).info(timeout=5)
        assert channels_of(hrv) == [("HR", "bpm"), ("RMSSD", "ms"), ("KubiosStressIndexSqrtSI", "1/s")]
        chunks, stamps, events = [], [], []
        end = time.monotonic() + 4.0
        while time.monotonic() < end:
            x, t = emg_in.pull_chunk(timeout=0.2)
            if x:
                chunks.append(np.asarray(x))
                stamps.extend(t)
            m, _ = marker_in.pull_chunk(timeout=0.0)
            events += [row[0] for row in m]
        assert proc.wait(60) == 0, proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    got = np.concatenate(chunks)
    assert got.shape[0] > 2000 and np.all(np.diff(stamps) > 0)
    # Nominal spacing on LSL's clock: 1 ms of session time / speed.
    assert np.median(np.diff(stamps)) == pytest.approx(1e-3 / SPEED, rel=0.05)
    (path,) = (tmp_path / "clients" / "L001" / "sessions").glob("*.bfsession")
    with SessionReader(path) as r:
        _, recorded = r.samples(StreamKind.EMG)
    # What the inlet got is a stretch of the recording, sample for sample (float32 both ways).
    first = np.flatnonzero((recorded[:, 0] == got[0, 0]) & (recorded[:, 1] == got[0, 1]))
    assert first.size == 1
    np.testing.assert_array_equal(recorded[first[0]:first[0] + got.shape[0]], got.astype(np.float32))
    assert any(e.startswith(("phase-start: ", "marker: technique", "hands-on: ", "note: ")) for e in events), events
