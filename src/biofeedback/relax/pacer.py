"""The breathing pacer: breaths per minute and inhale share, with rate steps that start on a breath boundary."""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_RATE_BPM = 6.0
"""Slow paced breathing: 6 breaths per minute (0.1 Hz), near most adults' resonance frequency (Lehrer 2000)."""
DEFAULT_INHALE_FRACTION = 0.4
"""Inhale 40 %, exhale 60 % of each breath: a longer exhale is the calmer pattern."""
MIN_RATE_BPM, MAX_RATE_BPM = 2.0, 20.0
"""The breathing rates the pacer paces."""
INHALE_FRACTION_RANGE = (0.2, 0.6)
"""The inhale shares of a breath the pacer accepts."""
INHALE, EXHALE = "inhale", "exhale"


@dataclass(frozen=True)
class PacerState:
    """Where the pacer is at one moment."""

    breath: int
    """Breaths started since the pacer started (0-based)."""
    phase: str
    """``INHALE`` or ``EXHALE``."""
    phase_fraction: float
    """0-1 through the current inhale or exhale."""
    lung: float
    """Guide volume, 0 (empty) to 1 (full): rises on the inhale, falls on the exhale (half-cosine easing)."""
    rate_bpm: float
    phase_left_s: float
    """Seconds left in the current inhale or exhale."""


def parse_ratio(text: str) -> float:
    """Inhale share from ``"40:60"`` (inhale:exhale) or ``"0.4"``; raises ValueError with what to type."""
    try:
        if ":" in text:
            a, b = (float(v) for v in text.split(":"))
            if not (math.isfinite(a) and math.isfinite(b) and a >= 0 and b >= 0):
                raise ValueError
            fraction = a / (a + b)
        else:
            fraction = float(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"inhale:exhale ratio must look like 40:60 or 0.4, got {text!r}") from None
    lo, hi = INHALE_FRACTION_RANGE
    if not lo <= fraction <= hi:  # also refuses NaN
        raise ValueError(f"inhale share must be {100 * lo:.0f}-{100 * hi:.0f} % of a breath (e.g. 40:60), got {text!r}")
    return fraction


class Pacer:
    """A pacer started at ``start_s`` (session seconds); ``set_rate`` takes effect at the next breath."""

    def __init__(self, rate_bpm: float = DEFAULT_RATE_BPM, inhale_fraction: float = DEFAULT_INHALE_FRACTION,
                 start_s: float = 0.0) -> None:
        if not MIN_RATE_BPM <= rate_bpm <= MAX_RATE_BPM:
            raise ValueError(f"breathing rate must be {MIN_RATE_BPM:g}-{MAX_RATE_BPM:g} breaths per minute, got {rate_bpm:g}")
        self.inhale_fraction = inhale_fraction
        self._segments: list[tuple[float, int, float]] = [(start_s, 0, rate_bpm)]
        """(start s, breaths before it, rate) per rate; each starts on a breath boundary."""

    def _segment(self, t_s: float) -> tuple[float, int, float]:
        seg = self._segments[0]
        for s in self._segments:
            if s[0] <= t_s:
                seg = s
        return seg

    def rate_at(self, t_s: float) -> float:
        return self._segment(t_s)[2]

    def next_breath_s(self, t_s: float) -> float:
        """Session time of the first breath start at or after ``t_s``."""
        start, _, rate = self._segment(t_s)
        period = 60.0 / rate
        n = max(0.0, (t_s - start) / period)
        k = int(n) if abs(n - round(n)) > 1e-9 else round(n)
        return start + (k if k >= n - 1e-9 else k + 1) * period

    def set_rate(self, rate_bpm: float, t_s: float) -> float:
        """Change the rate from the first breath boundary at or after ``t_s``; returns when it takes effect."""
        at = self.next_breath_s(t_s)
        start, before, rate = self._segment(at)
        breaths = before + round((at - start) * rate / 60.0)
        self._segments = [s for s in self._segments if s[0] < at] + [(at, breaths, float(rate_bpm))]
        return at

    def breath_starts(self, a_s: float, b_s: float) -> list[float]:
        """Breath start times in [a_s, b_s)."""
        out, t = [], self.next_breath_s(a_s)
        while t < b_s:
            out.append(t)
            t = self.next_breath_s(t + 1e-6)
        return out

    def at(self, t_s: float) -> PacerState:
        start, before, rate = self._segment(t_s)
        period = 60.0 / rate
        n = max(0.0, (t_s - start) / period)
        frac = n - math.floor(n)
        inhale_s = self.inhale_fraction * period
        pos = frac * period
        if pos < inhale_s:
            f = pos / inhale_s
            return PacerState(before + int(n), INHALE, f, 0.5 - 0.5 * math.cos(math.pi * f), rate, inhale_s - pos)
        f = (pos - inhale_s) / (period - inhale_s)
        return PacerState(before + int(n), EXHALE, f, 0.5 + 0.5 * math.cos(math.pi * f), rate, period - pos)
