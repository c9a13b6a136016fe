"""Issue 14: the summary's "no signal" seconds count only what means no muscle signal (an electrode off: a flat line;
the sensor reporting lost contact), and name the seconds of a poor signal over a muscle's (mains hum, motion) apart.

A one-phase recording written with ``SessionWriter``: band-limited Gaussian EMG on both sides with, at scripted times,
the left electrode off (zeros), 50 Hz hum on the right, a 3 Hz cable swing on the left, and blocks the sensor marks
as contact lost. The expected seconds are the scripted ones."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from biofeedback.analysis import load_session
from biofeedback.analysis.compare import no_signal_s
from biofeedback.analysis.summary import format_summary, summarize
from biofeedback.store import SessionWriter
from biofeedback.stream import NS_PER_S, Block, BlockFlag

FS = 500.0
SECONDS = 60.0
LEFT_OFF_S = (10.0, 25.0)
RIGHT_MAINS_S = (30.0, 40.0)
LEFT_MOTION_S = (45.0, 50.0)
CONTACT_LOST_S = (50.0, 55.0)
EDGE_S = 0.5
"""Each stretch's edges blur by about the 250 ms RMS window plus the chain's settling."""


def write(path) -> None:
    rng = np.random.default_rng(11)
    n = int(SECONDS * FS)
    t = np.arange(n) / FS
    sos = signal.butter(4, (20.0, 0.45 * FS), "bandpass", fs=FS, output="sos")
    x = signal.sosfilt(sos, rng.standard_normal((n + int(FS), 2)), axis=0)[int(FS):]
    x = x / x.std(axis=0) * 20.0
    inside = lambda span: (t >= span[0]) & (t < span[1])  # noqa: E731
    x[inside(LEFT_OFF_S), 0] = 0.0
    x[inside(RIGHT_MAINS_S), 1] += 100.0 * np.sin(2 * np.pi * 50.0 * t[inside(RIGHT_MAINS_S)])
    x[inside(LEFT_MOTION_S), 0] += 300.0 * np.sin(2 * np.pi * 3.0 * t[inside(LEFT_MOTION_S)])
    writer = SessionWriter(path, {"client_id": "T001", "utc_anchor": 1.7e9, "protocol": "synthetic",
                                  "calibration": None, "tension_index_unit": "uV"})
    for i0 in range(0, n, int(FS)):
        lost = CONTACT_LOST_S[0] <= t[i0] < CONTACT_LOST_S[1]
        writer.add_block(Block("emg", "open-emg", int(t[i0] * NS_PER_S), x[i0:i0 + int(FS)], rate_hz=FS, first_index=i0,
                               flags=BlockFlag.SENSOR_CONTACT_LOST if lost else 0,
                               channels=("left_trapezius", "right_trapezius")), float(t[i0]))
    writer.add_event("phase", 0.0, "baseline", SECONDS, {"kind": "rest", "planned_s": SECONDS})
    writer.close()


def length(span) -> float:
    return span[1] - span[0]


def test_no_signal_counts_electrode_off_and_lost_contact_and_poor_signal_is_named_apart(tmp_path):
    path = tmp_path / "loss.bfsession"
    write(path)
    data = load_session(path)
    [row] = summarize(data)
    none, poor = row["emg_no_signal_s"], row["emg_poor_signal_s"]
    # No signal: the left electrode off, and the sensor's lost contact (a block flag: both sides).
    assert none["left_trapezius"] == pytest.approx(length(LEFT_OFF_S) + length(CONTACT_LOST_S), abs=2 * EDGE_S)
    assert none["right_trapezius"] == pytest.approx(length(CONTACT_LOST_S), abs=EDGE_S)
    # Poor signal, the muscle still there: motion on the left, mains hum on the right.
    assert poor["left_trapezius"] == pytest.approx(length(LEFT_MOTION_S), abs=2 * EDGE_S)
    assert poor["right_trapezius"] == pytest.approx(length(RIGHT_MAINS_S), abs=2 * EDGE_S)
    # The comparison's sentences and exclusions count the same seconds (they once counted every flag, hum included).
    assert no_signal_s(data.emg, data.phases[0]) == none
    line = format_summary([row])
    said = {ch: f"(no signal {none[ch]:.0f} s; poor signal {poor[ch]:.0f} s)" for ch in none}
    assert (f"EMG RMS µV left {row['emg_rms_uv']['left_trapezius']:.1f} {said['left_trapezius']}, "
            f"right {row['emg_rms_uv']['right_trapezius']:.1f} {said['right_trapezius']}") in line, line
