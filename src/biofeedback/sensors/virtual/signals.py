"""Physiologically plausible signals for the virtual sensors, driven by scripts whose truth stays known.

One body (``Heart``: beat times) is shared by every virtual sensor of a world, so the ECG a virtual strap
sends and the cardiac artefact in the virtual EMG come from the same heartbeats. Times here are body
seconds; each device converts its own clock (``DeviceClock.body_s``).

ECG: a sum-of-Gaussians beat template (after McSharry et al. 2003, ECGSYN) placed at beat times whose RR
intervals carry respiratory sinus arrhythmia, a 0.1 Hz Mayer-wave component and white variability.

EMG (``EmgSynth``), per channel, in µV, as surface electrodes over the upper trapezius pick it up
(``EmgBody`` holds the settings; ``EmgBody.clean()`` gives the muscle alone):

- muscle activity: zero-mean Gaussian noise band-limited to 20-450 Hz (the surface-EMG band, SENIAM) whose
  RMS is ``EmgSynth.muscle_uv``: the scripted amplitude (``TensionScript``) times a slow log-normal drift
  (Ornstein-Uhlenbeck, ~20 s), raised by short postural bursts and by talking, plus shrugs;
- a noise floor of electrodes and amplifier, 1-3 µV RMS at rest with good skin preparation (Marker & Maluf
  2014, J Electromyogr Kinesiol 24:1, report upper-trapezius rest of 1-5 µV RMS, on the same order as the
  noise floor), in the same band;
- the ECG leaking in from the same heartbeats, its R wave ``ecg_r_uv`` at each side (unequal: the left
  trapezius lies nearer the heart; Drake & Callaghan 2006 and Marker & Maluf 2014 show ECG dominating
  trapezius and trunk EMG at rest);
- mains hum at 50 Hz and its 3rd harmonic;
- motion artefacts: short 2-6 Hz swings of cable and electrode movement, hundreds of µV.

Every episode (burst, talking, shrug, motion) is kept in ``EmgSynth.episodes``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import NamedTuple

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


class Heart:
    """The one heart of a virtual body: every beat it made, generated ahead on demand (body seconds)."""

    def __init__(self, beats: BeatGenerator) -> None:
        self.beats = beats
        self.beat_times_s: list[float] = []
        self.beat_rr_ms: list[float] = []
        """Every beat made so far and the RR (ms) that ends at it."""

    def until(self, t_s: float) -> None:
        """Make the beats up to body time ``t_s``."""
        times, rrs = self.beats.until(t_s)
        self.beat_times_s.extend(times.tolist())
        self.beat_rr_ms.extend(rrs.tolist())

    def near(self, t0_s: float, t1_s: float, margin_s: float = 0.6) -> np.ndarray:
        """Beat times within ``margin_s`` of the span [t0, t1] (enough to draw every wave in it)."""
        self.until(t1_s + margin_s)
        lo = bisect.bisect_right(self.beat_times_s, t0_s - margin_s)
        hi = bisect.bisect_left(self.beat_times_s, t1_s + margin_s)
        return np.asarray(self.beat_times_s[lo:hi])


@dataclass(frozen=True)
class EmgBody:
    """What skin, electrodes, heart, posture and the room add to the scripted muscle activity (µV, body s)."""

    noise_floor_uv: float = 1.5
    """RMS of electrode and amplifier noise in the EMG band (1-3 µV with good electrodes)."""
    ecg_r_uv: tuple[float, float] = (40.0, 15.0)
    """R-wave amplitude of the ECG leaking into the left and right channel (10-200 µV seen on the trapezius)."""
    mains_uv: float = 1.5
    """Peak amplitude of the 50 Hz hum (its 3rd harmonic at a fifth of it)."""
    mains_hz: float = 50.0
    drift_sd: float = 0.08
    """SD of the slow drift of tension, natural log (0.08: about ±8 %)."""
    drift_tau_s: float = 20.0
    """Time constant of that drift."""
    bursts_per_min: float = 2.0
    """Short postural bursts: 0.3-1.5 s at 1.5-3 times the muscle amplitude, one side or both."""
    talking_per_min: float = 0.3
    """Talking: 3-10 s of activity raised 15-45 %, modulated at the syllable rate (~4 Hz)."""
    shrugs_per_min: float = 0.1
    """Shrugs: 1-2.5 s bilateral contractions adding 60-150 µV RMS (Hann envelope)."""
    motion_per_min: float = 0.4
    """Motion artefacts: 0.2-0.8 s swings at 2-6 Hz, 100-400 µV, not muscle activity."""

    @classmethod
    def clean(cls) -> EmgBody:
        """The muscle alone: no noise floor, heart, hum, drift, bursts or artefacts."""
        return cls(0.0, (0.0, 0.0), 0.0, 50.0, 0.0, 30.0, 0.0, 0.0, 0.0, 0.0)


class Episode(NamedTuple):
    """One scripted-at-random event in the EMG: kind, body-time span, size, sides (left, right weights)."""

    kind: str
    """"burst", "talking", "shrug" or "motion"."""
    start_s: float
    end_s: float
    size: float
    """burst: amplitude factor; talking: peak rise (fraction); shrug: µV RMS; motion: µV peak."""
    sides: tuple[float, float]
    freq_hz: float = 0.0


EPISODE_KINDS = ("burst", "talking", "shrug", "motion")
LONGEST_EPISODE_S = 10.0
DRIFT_STEP_S = 0.1
PLAN_AHEAD_S = 10.0


class EmgSynth:
    """Surface EMG of both upper trapezius muscles (``EmgBody``) around a ``TensionScript``, block by block."""

    def __init__(self, fs_hz: float, script: TensionScript, rng: np.random.Generator, body: EmgBody | None = None,
                 heart: Heart | None = None) -> None:
        hi = min(EMG_BAND_HZ[1], 0.45 * fs_hz)
        self._sos = signal.butter(4, [EMG_BAND_HZ[0], hi], btype="bandpass", fs=fs_hz, output="sos")
        impulse = np.zeros(int(fs_hz * 2))
        impulse[0] = 1.0
        self._gain = 1.0 / np.sqrt(np.sum(signal.sosfilt(self._sos, impulse) ** 2))
        self._zi = np.zeros((self._sos.shape[0], 2, 4))
        self._rng = rng
        self.fs_hz = fs_hz
        self.script = script
        self.body = body or EmgBody()
        self.heart = heart
        self._chunk = int(fs_hz)
        # Let the filter reach its steady state so the first samples already have the scripted RMS.
        self._filtered(self._chunk)
        self._pool = np.empty((0, 4))
        self.episodes: list[Episode] = []
        """Every burst, talking spell, shrug and motion artefact planned so far, in body seconds."""
        self._next_s = {k: self._wait_s(k, 0.0) for k in EPISODE_KINDS}
        self._drift = np.array([rng.standard_normal()])
        self._planned_s = 0.0
        self._starts: list[float] = []

    # --- plan: drift and episodes, generated ahead ----------------------------------------------
    def _wait_s(self, kind: str, t_s: float) -> float:
        rate = getattr(self.body, {"burst": "bursts_per_min", "talking": "talking_per_min", "shrug": "shrugs_per_min",
                                   "motion": "motion_per_min"}[kind])
        return t_s + self._rng.exponential(60.0 / rate) if rate > 0 else np.inf

    def _episode(self, kind: str, start: float) -> Episode:
        u = self._rng.uniform
        if kind == "burst":
            sides = ((1.0, 1.0), (1.0, 0.0), (0.0, 1.0))[int(self._rng.integers(3))]
            return Episode(kind, start, start + u(0.3, 1.5), u(1.5, 3.0), sides)
        if kind == "talking":
            return Episode(kind, start, start + u(3.0, 10.0), u(0.15, 0.45), (1.0, 1.0), u(3.0, 5.0))
        if kind == "shrug":
            return Episode(kind, start, start + u(1.0, 2.5), u(60.0, 150.0), (1.0, u(0.7, 1.0)))
        return Episode(kind, start, start + u(0.2, 0.8), u(100.0, 400.0), (1.0, u(-1.0, 1.0)), u(2.0, 6.0))

    def _plan(self, t_s: float) -> None:
        if t_s + PLAN_AHEAD_S <= self._planned_s:
            return
        end = t_s + 2 * PLAN_AHEAD_S
        n = int(np.ceil((end - self._planned_s) / DRIFT_STEP_S))
        a = np.exp(-DRIFT_STEP_S / self.body.drift_tau_s)
        steps = self._rng.standard_normal(n) * np.sqrt(1 - a * a)
        x, _ = signal.lfilter([1.0], [1.0, -a], steps, zi=[a * self._drift[-1]])  # AR(1): x[i] = a x[i-1] + step
        self._drift = np.concatenate([self._drift, x])
        for kind in EPISODE_KINDS:
            while self._next_s[kind] < end:
                ep = self._episode(kind, self._next_s[kind])
                self.episodes.append(ep)
                self._next_s[kind] = self._wait_s(kind, ep.end_s)
        self.episodes.sort(key=lambda e: e.start_s)
        self._starts = [e.start_s for e in self.episodes]
        self._planned_s = (self._drift.size - 1) * DRIFT_STEP_S

    def _active(self, t: np.ndarray, kind: str) -> list[Episode]:
        """Episodes of ``kind`` overlapping the span of ``t`` (sorted), found by their starts."""
        lo = bisect.bisect_left(self._starts, t[0] - LONGEST_EPISODE_S)
        hi = bisect.bisect_left(self._starts, t[-1])
        return [e for e in self.episodes[lo:hi] if e.kind == kind and e.end_s > t[0]]

    # --- truth ---------------------------------------------------------------------------------
    def drift_factor(self, t_s: np.ndarray) -> np.ndarray:
        """Slow multiplicative drift of tension at body times ``t_s``."""
        t = np.asarray(t_s, dtype=float)
        if self.body.drift_sd == 0 or not t.size:
            return np.ones(t.shape)
        self._plan(float(t.max()))
        x = np.interp(t, np.arange(self._drift.size) * DRIFT_STEP_S, self._drift)
        return np.exp(self.body.drift_sd * x)

    def muscle_uv(self, t_s: np.ndarray) -> np.ndarray:
        """The truth: RMS (µV) of muscle activity at body times ``t_s`` (sorted), shape (n, 2), noise floor,
        heart, hum and motion left out."""
        t = np.asarray(t_s, dtype=float)
        amp = self.script.amplitude_uv(t) * self.drift_factor(t)[:, None]
        if not t.size:
            return amp
        self._plan(float(t[-1]))
        for e in self._active(t, "burst"):
            inside = (t >= e.start_s) & (t < e.end_s)
            amp[inside] *= 1.0 + (e.size - 1.0) * np.asarray(e.sides)
        for e in self._active(t, "talking"):
            inside = (t >= e.start_s) & (t < e.end_s)
            rise = e.size * 0.5 * (1 - np.cos(2 * np.pi * e.freq_hz * (t[inside] - e.start_s)))
            amp[inside] *= 1.0 + rise[:, None]
        for e in self._active(t, "shrug"):
            inside = (t >= e.start_s) & (t < e.end_s)
            hann = np.sin(np.pi * (t[inside] - e.start_s) / (e.end_s - e.start_s)) ** 2
            amp[inside] = np.hypot(amp[inside], e.size * hann[:, None] * np.asarray(e.sides))
        return amp

    # --- the signal ----------------------------------------------------------------------------
    def _filtered(self, n: int) -> np.ndarray:
        white = self._rng.standard_normal((n, 4))
        out, self._zi = signal.sosfilt(self._sos, white, axis=0, zi=self._zi)
        return out * self._gain

    def _noise(self, n: int) -> np.ndarray:
        """Unit-RMS band-limited noise, 4 columns (muscle, floor per side), filtered a second at a time."""
        while len(self._pool) < n:
            self._pool = np.concatenate([self._pool, self._filtered(self._chunk)])
        out, self._pool = self._pool[:n], self._pool[n:]
        return out

    def block(self, t_s: np.ndarray) -> np.ndarray:
        """EMG in µV at body times ``t_s`` (increasing), shape (n, 2)."""
        t = np.asarray(t_s, dtype=float)
        b = self.body
        noise = self._noise(t.size)
        out = noise[:, :2] * self.muscle_uv(t) + noise[:, 2:] * b.noise_floor_uv
        if self.heart is not None and any(b.ecg_r_uv) and t.size:
            out += ecg_waves_uv(t, self.heart.near(t[0], t[-1]))[:, None] * (np.asarray(b.ecg_r_uv) / ECG_R_UV)
        if b.mains_uv:
            w = 2 * np.pi * b.mains_hz * t
            out += (b.mains_uv * (np.sin(w) + 0.2 * np.sin(3 * w)))[:, None]
        if t.size:
            for e in self._active(t, "motion"):
                inside = (t >= e.start_s) & (t < e.end_s)
                u = (t[inside] - e.start_s) / (e.end_s - e.start_s)
                swing = e.size * np.sin(np.pi * u) ** 2 * np.sin(2 * np.pi * e.freq_hz * (t[inside] - e.start_s))
                out[inside] += swing[:, None] * np.asarray(e.sides)
        return out

    def expected_rms_uv(self, t_s: np.ndarray) -> np.ndarray:
        """RMS (µV) of muscle plus noise floor at body times ``t_s``, (n, 2): what a chain that removes the heart,
        the hum and motion should measure, before its own band-pass gain."""
        return np.hypot(self.muscle_uv(t_s), self.body.noise_floor_uv)


# ECGSYN-like template: (offset s, amplitude µV, width s) for P, Q, R, S, T.
_ECG_WAVES = np.array([(-0.20, 120.0, 0.025), (-0.035, -120.0, 0.010), (0.0, 1100.0, 0.011), (0.035, -250.0, 0.012),
                       (0.26, 300.0, 0.045)])
ECG_R_UV = 1100.0
"""R-wave height of the template (µV)."""


def ecg_waves_uv(t_s: np.ndarray, beat_times_s: np.ndarray) -> np.ndarray:
    """The beats' waves alone (P, QRS, T; no noise or wander), µV at times ``t_s``, R peaks at ``beat_times_s``."""
    t = np.asarray(t_s, dtype=float)
    d = t[:, None, None] - np.asarray(beat_times_s, dtype=float)[None, :, None] - _ECG_WAVES[:, 0]
    return np.sum(_ECG_WAVES[:, 1] * np.exp(-0.5 * (d / _ECG_WAVES[:, 2]) ** 2), axis=(1, 2))


def ecg_uv(t_s: np.ndarray, beat_times_s: np.ndarray, rng: np.random.Generator, noise_uv: float = 12.0) -> np.ndarray:
    """ECG in µV at times ``t_s`` for R peaks at ``beat_times_s``: the waves, white noise and breathing wander."""
    t = np.asarray(t_s, dtype=float)
    near = beat_times_s[(beat_times_s > t[0] - 0.6) & (beat_times_s < t[-1] + 0.6)] if t.size else beat_times_s[:0]
    return rng.normal(0.0, noise_uv, t.shape) + 40.0 * np.sin(2 * np.pi * 0.25 * t) + ecg_waves_uv(t, near)
