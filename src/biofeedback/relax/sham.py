"""Sham feedback for blinded trials: the tone follows a recorded or simulated tension instead of the live one.

A sham signal is unit-free: 1.0 is its own resting level. The session scales it by today's live
baseline, so the tone behaves like real feedback (same target, same range). Pauses still follow the
live electrode, so a client cannot tell sham from real by lifting it. The recording's meta says which
feedback the client got (``relax.feedback``: ``live``, ``sham-recording`` or ``sham-simulated``).
A recording is read through the loaded session (``analysis.data.load_session``), so its clean samples
are the ones every analysis of that recording uses.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from biofeedback.analysis.data import load_session
from biofeedback.errors import Reason
from biofeedback.session.protocol import SessionError
from biofeedback.store import StoreError

SHAM_RATE_HZ = 10.0
"""Sample rate of the simulated sham signal (a recording's follows the loaded session's moving RMS, 20 Hz)."""
SIMULATED = "simulated"


class ShamSignal:
    """Relative tension over session time (1.0 = the source's resting level); wraps around if shorter."""

    def __init__(self, times_s: np.ndarray, relative: np.ndarray, source: str) -> None:
        self.times_s, self.relative, self.source = times_s, relative, source

    def value(self, t_s: float) -> float:
        if self.times_s.size == 0:
            return math.nan
        span = self.times_s[-1] - self.times_s[0]
        t = self.times_s[0] + ((t_s - self.times_s[0]) % span if span > 0 else 0.0)
        return float(np.interp(t, self.times_s, self.relative))

    def meta(self) -> dict:
        kind = "sham-simulated" if self.source == SIMULATED else "sham-recording"
        return {"feedback": kind, "sham_source": self.source}

    @classmethod
    def simulated(cls, duration_s: float, seed: int = 1) -> ShamSignal:
        """A plausible relaxation: 1.3x rest, falling to 0.75x, with a slow seeded wander."""
        t = np.arange(0.0, max(duration_s, 60.0) + 1.0, 1.0 / SHAM_RATE_HZ)
        trend = 0.75 + 0.55 * np.exp(-t / (0.35 * max(duration_s, 60.0)))
        rng = np.random.default_rng(seed)
        wander = np.convolve(rng.standard_normal(t.size), np.ones(80) / 80, mode="same") * 0.6
        return cls(t, np.maximum(0.2, trend + wander), SIMULATED)

    @classmethod
    def from_recording(cls, path: str | Path) -> ShamSignal:
        """The mean-of-channels EMG moving RMS of a recorded session (its valid samples, as the loaded session
        ``analysis.data`` judges them), relative to its clean level in the first phase (its baseline)."""
        path = Path(path)
        try:
            data = load_session(path)
            if data.emg is None:
                raise StoreError(f"{path.name} has no EMG stream")
        except StoreError as exc:
            raise SessionError(f"--sham {path}: cannot use this recording ({exc}); give another session file or 'simulated'",
                               Reason.BAD_FILE)
        emg = data.emg
        t, level, good = emg.t_s, emg.rms_uv.mean(axis=1), emg.valid.all(axis=1)
        first = data.phases[0] if data.phases else None
        a, b = (first.start_s, first.end_s) if first else (t[0], t[0] + 60.0)
        rest = level[(t >= a) & (t < b) & good]
        if rest.size == 0 or not np.mean(rest) > 0:
            raise SessionError(f"--sham {path.name}: the recording has no clean resting EMG to scale by; choose another",
                               Reason.NOT_ENOUGH_DATA)
        return cls(t[good], level[good] / float(np.mean(rest)), f"recording:{path.name}")


def sham_signal(spec: str | None, duration_s: float, seed: int = 1) -> ShamSignal | None:
    """None for live feedback, the simulated signal for 'simulated', else a recording's signal."""
    if spec is None:
        return None
    return ShamSignal.simulated(duration_s, seed) if spec == SIMULATED else ShamSignal.from_recording(spec)
