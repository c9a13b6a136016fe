"""Resonance-breathing finder: step the pacer through slower rates and keep the one with the largest HR oscillation.

Heart rate swings with each breath (respiratory sinus arrhythmia); the swing is largest at the
breathing rate where it resonates with the baroreflex, near 6 per minute for most adults (Vaschillo,
Lehrer et al. 2006; Lehrer & Gevirtz 2014). Each rate is held for whole breaths; the first breath of
each step lets the heart settle and is not scored. The score is the mean per-breath peak-to-trough
heart rate (max - min of 60000/RR over the beats within one paced breath).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from biofeedback.relax.pacer import Pacer

RESONANCE_RATES_BPM = (7.0, 6.5, 6.0, 5.5, 5.0, 4.5)
SCORED_BREATHS = 4
"""Breaths per step that are scored (after ``SETTLE_BREATHS``)."""
SETTLE_BREATHS = 1
MIN_BEATS_PER_BREATH = 3


def hr_oscillation_bpm(beat_times_s: np.ndarray, rr_ms: np.ndarray, breath_starts_s: list[float]) -> list[float]:
    """Peak-to-trough heart rate (bpm) within each breath [start_i, start_i+1); NaN where too few beats."""
    hr = 60000.0 / np.asarray(rr_ms, dtype=float)
    t = np.asarray(beat_times_s, dtype=float)
    out = []
    for a, b in zip(breath_starts_s[:-1], breath_starts_s[1:]):
        sel = (t >= a) & (t < b) & np.isfinite(hr)
        out.append(float(np.ptp(hr[sel])) if sel.sum() >= MIN_BEATS_PER_BREATH else math.nan)
    return out


@dataclass
class Step:
    rate_bpm: float
    start_s: float
    end_s: float
    oscillation_bpm: float = math.nan
    """Mean peak-to-trough HR over the scored breaths."""
    breaths: int = 0
    """Breaths that had enough beats to be scored."""


class ResonanceFinder:
    """Schedules the rate steps on a ``Pacer`` and scores them from beats."""

    def __init__(self, rates_bpm: tuple[float, ...] = RESONANCE_RATES_BPM, scored_breaths: int = SCORED_BREATHS,
                 settle_breaths: int = SETTLE_BREATHS) -> None:
        self.rates_bpm = tuple(rates_bpm)
        self.scored_breaths, self.settle_breaths = scored_breaths, settle_breaths
        self.steps: list[Step] = []
        self.best_bpm: float | None = None

    def duration_s(self) -> float:
        return sum((self.scored_breaths + self.settle_breaths) * 60.0 / r for r in self.rates_bpm)

    def start(self, pacer: Pacer, t_s: float) -> float:
        """Put the steps on the pacer from the next breath after ``t_s``; returns when the finder ends."""
        at = pacer.set_rate(self.rates_bpm[0], t_s)
        self.steps = []
        for rate in self.rates_bpm:
            pacer.set_rate(rate, at)
            end = at + (self.scored_breaths + self.settle_breaths) * 60.0 / rate
            self.steps.append(Step(rate, at, end))
            at = end
        return at

    @property
    def end_s(self) -> float:
        return self.steps[-1].end_s if self.steps else math.nan

    def step_at(self, t_s: float) -> Step | None:
        return next((s for s in self.steps if s.start_s <= t_s < s.end_s), None)

    def score(self, beat_times_s: np.ndarray, rr_ms: np.ndarray) -> float | None:
        """Score every step from the beats and pick the rate with the largest oscillation (None without beats)."""
        for s in self.steps:
            period = 60.0 / s.rate_bpm
            starts = [s.start_s + (self.settle_breaths + k) * period for k in range(self.scored_breaths + 1)]
            per_breath = [v for v in hr_oscillation_bpm(beat_times_s, rr_ms, starts) if math.isfinite(v)]
            s.breaths = len(per_breath)
            s.oscillation_bpm = float(np.mean(per_breath)) if per_breath else math.nan
        scored = [s for s in self.steps if math.isfinite(s.oscillation_bpm)]
        self.best_bpm = max(scored, key=lambda s: s.oscillation_bpm).rate_bpm if scored else None
        return self.best_bpm

    def as_dict(self) -> dict:
        return {"best_bpm": self.best_bpm,
                "steps": [{"rate_bpm": s.rate_bpm, "start_s": round(s.start_s, 3), "end_s": round(s.end_s, 3),
                           "oscillation_bpm": None if not math.isfinite(s.oscillation_bpm) else round(s.oscillation_bpm, 2),
                           "breaths": s.breaths} for s in self.steps]}


def resonance_rsa_ms(rate_bpm: float, peak_bpm: float, base_ms: float, width_bpm: float = 0.6) -> float:
    """Virtual heart: RSA amplitude at a breathing rate, three times ``base_ms`` at ``peak_bpm`` (a resonance curve)."""
    return base_ms * (1.0 + 2.0 * math.exp(-(((rate_bpm - peak_bpm) / width_bpm) ** 2)))


class VirtualBreather:
    """The virtual client follows the pacer: the virtual hearts breathe at its rate, with RSA from a resonance curve."""

    def __init__(self, world, peak_bpm: float, base_rsa_ms: float) -> None:
        self.world, self.peak_bpm, self.base_rsa_ms = world, peak_bpm, base_rsa_ms
        self.rate_bpm: float | None = None

    def follow(self, rate_bpm: float) -> None:
        """Call on the acquisition loop whenever the paced rate may have changed."""
        if rate_bpm == self.rate_bpm or self.world is None:
            return
        self.rate_bpm = rate_bpm
        rsa = resonance_rsa_ms(rate_bpm, self.peak_bpm, self.base_rsa_ms)
        for p in self.world.peripherals.values():
            if hasattr(p, "hrs"):
                script = p.hrs.beats.script
                script.breathing_hz = rate_bpm / 60.0
                script.rsa_ms = [rsa] * len(script.times_s)
