"""Fixtures of the store tests: a private data home and a small, realistic recorded session."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from biofeedback.store import SessionWriter, new_session_path
from biofeedback.stream import NS_PER_S, Block, Gap

UTC_ANCHOR = 1_700_000_000.25  # 2023-11-14T22:13:20.25Z
DEVICE_MAC = "A0:9E:1A:12:34:56"
EMG_RATE_HZ, EMG_BLOCK = 1000.0, 20
ECG_RATE_HZ, ECG_BLOCK = 130.0, 73


@dataclass
class Recorded:
    """A session written by ``write_session`` and what went into it."""

    path: Path
    emg_t: np.ndarray
    emg: np.ndarray
    ecg_t: np.ndarray
    ecg: np.ndarray
    hr_t: np.ndarray
    hr: np.ndarray
    beats: dict
    gaps: list[Gap]
    events: list[dict] = field(default_factory=list)


def write_session(path: Path, seconds: float = 6.0, gap: tuple[float, float] = (2.0, 2.5), client_id: str = "C001",
                  utc_anchor: float = UTC_ANCHOR) -> Recorded:
    """Write EMG (1 kHz, 2 ch) with a gap, ECG (130 Hz), HR, beats, phases, markers, calibration."""
    rng = np.random.default_rng(7)
    meta = {"client_id": client_id, "utc_anchor": utc_anchor, "speed": 1.0, "protocol": "trapezius-release",
            "devices": [{"name": "Polar H10", "address": DEVICE_MAC, "firmware": "3.1.1"},
                        {"name": "OpenEMG", "address": "d4:36:39:aa:bb:cc", "firmware": "0.3"}]}
    emg_t, emg, ecg_t, ecg = [], [], [], []
    events = [
        {"kind": "phase", "t_s": 0.0, "label": "baseline", "duration_s": 2.0, "data": None},
        {"kind": "calibration", "t_s": 0.5, "label": "mvc", "duration_s": 0.0, "data": {"mvc_uv": [410.5, 388.0]}},
        {"kind": "marker", "t_s": 1.234, "label": "client reports pain 6/10", "duration_s": 0.0, "data": {"pain": 6}},
        {"kind": "phase", "t_s": 2.0, "label": "treatment", "duration_s": 2.0, "data": None},
        {"kind": "note", "t_s": 3.5, "label": "reconnected to A0:9E:1A:12:34:56", "duration_s": 0.0, "data": None},
        {"kind": "phase", "t_s": 4.0, "label": "post", "duration_s": seconds - 4.0, "data": None},
    ]
    with SessionWriter(path, meta) as w:
        for event in events:
            w.add_event(**event)
        w.set_meta("calibration", {"mvc_uv": [410.5, 388.0]})
        for k in range(int(seconds * EMG_RATE_HZ / EMG_BLOCK)):
            t0 = 0.3 + k * EMG_BLOCK / EMG_RATE_HZ
            if gap[0] <= t0 < gap[1]:
                continue
            data = rng.normal(0, 50, (EMG_BLOCK, 2)) + np.array([0.0, 10.0])
            w.add_block(Block("emg", "emg-1", round((t0 + 0.02) * NS_PER_S), data, EMG_RATE_HZ, k * EMG_BLOCK, k,
                              device_time_ns=k * 20_000_000, channels=("left", "right"), raw=data.tobytes()[:40]), t0)
            emg_t.append(t0 + np.arange(EMG_BLOCK) / EMG_RATE_HZ)
            emg.append(data)
        w.add_gap(Gap("emg", "emg-1", gap[0], gap[1], "sequence jump", int((gap[1] - gap[0]) * EMG_RATE_HZ)))
        for j in range(int(seconds * ECG_RATE_HZ / ECG_BLOCK)):
            t0 = 0.1 + j * ECG_BLOCK / ECG_RATE_HZ
            data = 1000 * np.sin(np.arange(j * ECG_BLOCK, (j + 1) * ECG_BLOCK) * 0.3)[:, None] + rng.normal(0, 5, (ECG_BLOCK, 1))
            w.add_block(Block("ecg", DEVICE_MAC, round((t0 + 0.56) * NS_PER_S), data, ECG_RATE_HZ, j * ECG_BLOCK,
                              channels=("ecg",), raw=b"\x00\x01" * 10), t0)
            ecg_t.append(t0 + np.arange(ECG_BLOCK) / ECG_RATE_HZ)
            ecg.append(data)
        hr_t = np.arange(1.0, seconds, 1.0)
        hr = 60 + np.arange(hr_t.size, dtype=float)
        for t, v in zip(hr_t, hr):
            w.add_block(Block("hr", DEVICE_MAC, round(t * NS_PER_S), np.array([[v]]), raw=bytes([0x10, int(v)])), None)
        beat_t = np.cumsum(np.full(int(seconds / 0.8) - 1, 0.8)) + 0.05
        beats = {"t_s": beat_t, "rr_raw_ms": 800.0 + 3 * np.arange(beat_t.size) % 11,
                 "rr_corrected_ms": np.full(beat_t.size, 800.0), "flags": np.arange(beat_t.size) % 2}
        beats["rr_raw_ms"][3] = 1604.0  # a missed beat, corrected
        w.add_beats(DEVICE_MAC, beats["t_s"], beats["rr_raw_ms"], beats["rr_corrected_ms"], beats["flags"])
    return Recorded(path, np.concatenate(emg_t), np.concatenate(emg), np.concatenate(ecg_t), np.concatenate(ecg),
                    hr_t, hr, beats, [Gap("emg", "emg-1", gap[0], gap[1], "sequence jump", 500)], events)


@pytest.fixture
def recorded(home) -> Recorded:
    """A closed 6 s session in the data home."""
    return write_session(new_session_path("C001", UTC_ANCHOR))
