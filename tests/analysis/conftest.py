"""Synthetic session files written with ``SessionWriter`` from scripted signals, for the analysis tests.

EMG: band-limited Gaussian noise whose RMS follows the phase script times a slow log-normal
fluctuation (AR(1), time constant ``TAU_S``), so windowed values are autocorrelated as real resting
EMG is. Beats: RR with respiratory sinus arrhythmia, a Mayer wave and AR(1) variability.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from biofeedback.store import SessionWriter
from biofeedback.stream import NS_PER_S, Block

TAU_S = 8.0
"""Time constant of the slow EMG amplitude fluctuation."""
FLUCTUATION_SD = 0.08
"""SD of the log amplitude fluctuation (about 8 %)."""


@dataclass
class Script:
    """Phases as (name, kind, seconds); post-phase EMG scaled by ``1 - emg_drop``, RSA by ``rsa_gain``."""

    phases: list = field(default_factory=lambda: [("baseline", "rest", 120.0), ("treatment", "treatment", 60.0),
                                                 ("post", "rest", 120.0)])
    emg_uv: tuple = (40.0, 30.0)
    emg_drop: float = 0.0
    hr_bpm: float = 72.0
    hr_drop_bpm: float = 0.0
    rsa_ms: float = 25.0
    rsa_gain: float = 1.0
    fs_hz: float = 500.0
    emg: bool = True
    heart: bool = True
    electrode_off: tuple | None = None
    """(start, end) session seconds with the left electrode off (flat line)."""
    artefacts: int = 3
    """Beats the strap missed (the next raw RR spans two); the recorded live correction splits it, flagged."""
    calibration: dict | None = None


def _after(script: Script, t: np.ndarray) -> np.ndarray:
    """0 before the treatment, 1 after it, linear during it."""
    start, t0 = None, 0.0
    for name, kind, dur in script.phases:
        if kind == "treatment":
            start = (t0, t0 + dur)
        t0 += dur
    if start is None:
        return np.zeros_like(t)
    return np.clip((t - start[0]) / (start[1] - start[0]), 0.0, 1.0)


def write_session(path: Path, script: Script, seed: int, client: str = "T001", utc: float = 1.7e9) -> Path:
    rng = np.random.default_rng(seed)
    total = sum(d for _, _, d in script.phases)
    writer = SessionWriter(path, {"client_id": client, "utc_anchor": utc, "protocol": "synthetic",
                                  "calibration": script.calibration,
                                  "tension_index_unit": "%RVC" if script.calibration else "uV"})
    if script.emg:
        fs = script.fs_hz
        n = int(total * fs)
        t = np.arange(n) / fs
        sos = signal.butter(4, [20.0, 0.45 * fs], btype="bandpass", fs=fs, output="sos")
        noise = signal.sosfilt(sos, rng.standard_normal((n + int(fs), 2)), axis=0)[int(fs):]
        noise /= noise.std(axis=0)
        step = int(fs / 10)
        k = n // step + 1
        a = np.exp(-step / fs / TAU_S)
        z = np.zeros((k, 2))
        z[0] = rng.normal(0, FLUCTUATION_SD, 2)
        for i in range(1, k):
            z[i] = a * z[i - 1] + rng.normal(0, FLUCTUATION_SD * np.sqrt(1 - a * a), 2)
        mod = np.exp(np.repeat(z, step, axis=0)[:n] - FLUCTUATION_SD**2 / 2)
        level = np.asarray(script.emg_uv)[None, :] * (1 - script.emg_drop * _after(script, t))[:, None]
        x = noise * level * mod + rng.normal(0, 1.0, (n, 2))
        if script.electrode_off:
            off = (t >= script.electrode_off[0]) & (t < script.electrode_off[1])
            x[off, 0] = 0.0
        block_n = int(fs)
        for i0 in range(0, n, block_n):
            chunk = x[i0:i0 + block_n]
            writer.add_block(Block("emg", "open-emg", int(t[i0] * NS_PER_S), chunk, rate_hz=fs, first_index=i0,
                                   channels=("left_trapezius", "right_trapezius")), float(t[i0]))
    if script.heart:
        times, rrs, tb = [], [], 1.0
        phase, mayer_phase, ar = rng.uniform(0, 2 * np.pi, 2).tolist() + [0.0]
        while tb < total:
            f = float(_after(script, np.array([tb]))[0])
            mean = 60000.0 / (script.hr_bpm - script.hr_drop_bpm * f)
            rsa = script.rsa_ms * (1 + (script.rsa_gain - 1) * f)
            ar = 0.5 * ar + rng.normal(0, 8.0)
            rr = mean + rsa * np.sin(2 * np.pi * 0.25 * tb + phase) + 15 * np.sin(2 * np.pi * 0.1 * tb + mayer_phase) + ar
            tb += rr / 1000.0
            times.append(tb)
            rrs.append(rr)
        rr, times = np.array(rrs), np.array(times)
        missed = rng.choice(np.arange(5, rr.size - 5), script.artefacts, replace=False)
        raw = rr.copy()
        raw[missed + 1] += rr[missed]  # the strap missed beat i: the next interval spans both
        live = rr.copy()
        live[missed + 1] = raw[missed + 1] / 2.0  # the live corrector's record: a beat inserted at the midpoint
        flags = np.zeros(rr.size, dtype=int)
        flags[missed + 1] = 4  # RrFlag.MISSED
        keep = np.setdiff1d(np.arange(rr.size), missed)
        times, raw, rr, flags = times[keep], raw[keep], live[keep], flags[keep]
        writer.add_beats("polar-h10", times, raw, rr, flags)
    t0 = 0.0
    for name, kind, dur in script.phases:
        writer.add_event("phase", t0, name, dur, {"kind": kind, "planned_s": dur})
        if kind == "treatment":
            writer.add_event("marker", t0 + 0.1 * dur, "technique: trigger-point pressure", data={"technique": "trigger-point"})
            writer.add_event("hands-on", t0 + 0.1 * dur, "hands on", 0.7 * dur)
            writer.add_event("note", t0 + 0.9 * dur, "client reports the headache eased")
        t0 += dur
    writer.close()
    return path


@pytest.fixture
def make_session(tmp_path):
    """``make_session(script, seed, name=...)`` writes a synthetic session file and returns its path."""
    def make(script: Script | None = None, seed: int = 0, name: str | None = None, **kw) -> Path:
        return write_session(tmp_path / (name or f"s{seed}.bfsession"), script or Script(), seed, **kw)
    return make
