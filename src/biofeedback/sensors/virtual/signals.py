"""Physiologically plausible signals for the virtual sensors, driven by scripts.

EMG: zero-mean Gaussian noise band-limited to 20-450 Hz (the surface-EMG band, SENIAM), scaled so
that its RMS equals the scripted amplitude at every moment. ECG: a sum-of-Gaussians beat template
(after McSharry et al. 2003, ECGSYN) placed at beat times whose RR intervals carry respiratory
sinus arrhythmia, a 0.1 Hz Mayer-wave component and white variability.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import signal

EMG_BAND_HZ = (20.0, 450.0)


@dataclass
class TensionScript:
    """Scripted EMG amplitude (RMS, µV) per channel over device time: piecewise-linear points."""

    times_s: list[float]
    left_uv: list[float]
    right_uv: list[float]

    @classmethod
    def constant(cls, left_uv: float, right_uv: float) -> TensionScript:
        return cls([0.0], [left_uv], [right_uv])

    @classmethod
    def release(
        cls, baseline_s: float, treatment_s: float, left_uv: float = 42.0, right_uv: float = 36.0, drop: float = 0.30
    ) -> TensionScript:
        """Elevated at baseline, falling during treatment, ``drop`` lower afterwards."""
        end = baseline_s + treatment_s
        return cls(
            [0.0, baseline_s, end],
            [left_uv, left_uv, left_uv * (1 - drop)],
            [right_uv, right_uv, right_uv * (1 - drop)],
        )

    def amplitude_uv(self, t_s: np.ndarray) -> np.ndarray:
        """Scripted RMS amplitude, shape (n, 2)."""
        t = np.asarray(t_s, dtype=float)
        return np.column_stack(
            [np.interp(t, self.times_s, self.left_uv), np.interp(t, self.times_s, self.right_uv)]
        )


@dataclass
class HeartScript:
    """Scripted heart: mean HR, respiratory sinus arrhythmia and variability over device time."""

    times_s: list[float] = field(default_factory=lambda: [0.0])
    hr_bpm: list[float] = field(default_factory=lambda: [70.0])
    rsa_ms: list[float] = field(default_factory=lambda: [35.0])
    """Peak amplitude of the breathing-locked RR modulation."""
    breathing_hz: float = 0.25
    mayer_ms: float = 15.0
    jitter_ms: float = 8.0

    @classmethod
    def constant(cls, hr_bpm: float, rsa_ms: float = 35.0) -> HeartScript:
        return cls([0.0], [hr_bpm], [rsa_ms])

    @classmethod
    def release(cls, baseline_s: float, treatment_s: float, hr_bpm: float = 76.0, rsa_ms: float = 25.0) -> HeartScript:
        """Calmer after treatment: lower HR, larger RSA (higher RMSSD)."""
        end = baseline_s + treatment_s
        return cls([0.0, baseline_s, end], [hr_bpm, hr_bpm, hr_bpm - 6], [rsa_ms, rsa_ms, rsa_ms * 1.6])

    def mean_rr_ms(self, t_s: float) -> float:
        return 60000.0 / float(np.interp(t_s, self.times_s, self.hr_bpm))


class BeatGenerator:
    """Beat times following a ``HeartScript``; each RR is drawn at the time of the beat that opens it."""

    def __init__(self, script: HeartScript, rng: np.random.Generator, start_s: float = 0.0) -> None:
        self.script = script
        self._rng = rng
        self.last_beat_s = start_s
        self._phase = rng.uniform(0, 2 * np.pi)
        self._pending_rr_ms: float | None = None

    def _next_rr_ms(self) -> float:
        s, t = self.script, self.last_beat_s
        rsa = float(np.interp(t, s.times_s, s.rsa_ms))
        rr = (
            s.mean_rr_ms(t)
            + rsa * np.sin(2 * np.pi * s.breathing_hz * t + self._phase)
            + s.mayer_ms * np.sin(2 * np.pi * 0.1 * t)
            + self._rng.normal(0.0, s.jitter_ms)
        )
        return float(np.clip(rr, 300.0, 2000.0))

    def until(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Beats up to device time ``t_s``: (beat times s, RR ms that end at them)."""
        times, rrs = [], []
        while True:
            if self._pending_rr_ms is None:
                self._pending_rr_ms = self._next_rr_ms()
            rr = self._pending_rr_ms
            if self.last_beat_s + rr / 1000.0 > t_s:
                break
            self._pending_rr_ms = None
            self.last_beat_s += rr / 1000.0
            times.append(self.last_beat_s)
            rrs.append(rr)
        return np.array(times), np.array(rrs)


class EmgSynth:
    """Band-limited Gaussian EMG whose RMS follows a ``TensionScript``, generated block by block."""

    def __init__(self, fs_hz: float, script: TensionScript, rng: np.random.Generator) -> None:
        hi = min(EMG_BAND_HZ[1], 0.45 * fs_hz)
        self._sos = signal.butter(4, [EMG_BAND_HZ[0], hi], btype="bandpass", fs=fs_hz, output="sos")
        impulse = np.zeros(int(fs_hz * 2))
        impulse[0] = 1.0
        self._gain = 1.0 / np.sqrt(np.sum(signal.sosfilt(self._sos, impulse) ** 2))
        self._zi = np.zeros((self._sos.shape[0], 2, 2))
        self._rng = rng
        self.fs_hz = fs_hz
        self.script = script
        self._chunk = int(fs_hz)
        # Let the filter reach its steady state so the first samples already have the scripted RMS.
        self._filtered(self._chunk)
        self._pool = np.empty((0, 2))

    def _filtered(self, n: int) -> np.ndarray:
        white = self._rng.standard_normal((n, 2))
        out, self._zi = signal.sosfilt(self._sos, white, axis=0, zi=self._zi)
        return out * self._gain

    def _noise(self, n: int) -> np.ndarray:
        """Unit-RMS band-limited noise, filtered one second at a time (cheap per frame)."""
        while len(self._pool) < n:
            self._pool = np.concatenate([self._pool, self._filtered(self._chunk)])
        out, self._pool = self._pool[:n], self._pool[n:]
        return out

    def block(self, t_s: np.ndarray) -> np.ndarray:
        """EMG in µV at device times ``t_s``, shape (n, 2)."""
        return self._noise(len(t_s)) * self.script.amplitude_uv(t_s)


# ECGSYN-like template: (offset s, amplitude µV, width s) for P, Q, R, S, T.
_ECG_WAVES = ((-0.20, 120.0, 0.025), (-0.035, -120.0, 0.010), (0.0, 1100.0, 0.011), (0.035, -250.0, 0.012), (0.26, 300.0, 0.045))


def ecg_uv(t_s: np.ndarray, beat_times_s: np.ndarray, rng: np.random.Generator, noise_uv: float = 12.0) -> np.ndarray:
    """ECG in µV at times ``t_s`` for R peaks at ``beat_times_s``."""
    t = np.asarray(t_s, dtype=float)
    out = rng.normal(0.0, noise_uv, t.shape) + 40.0 * np.sin(2 * np.pi * 0.25 * t)
    near = beat_times_s[(beat_times_s > t[0] - 0.6) & (beat_times_s < t[-1] + 0.6)] if t.size else beat_times_s[:0]
    for b in near:
        d = t - b
        for offset, amp, width in _ECG_WAVES:
            out += amp * np.exp(-0.5 * ((d - offset) / width) ** 2)
    return out
