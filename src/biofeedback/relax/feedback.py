"""Tension feedback: how loud and high the tone is, and when it must pause because the signal cannot be trusted.

Feedback that is wrong is worse than none: the tone pauses (with a reason to show and a short cue
sound) whenever the electrode is off (the device's contact flag, ``BlockFlag.SENSOR_CONTACT_LOST``, or
a flat line), the signal is bad (``dsp.QualityFlag``), or no EMG has arrived for a while.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from biofeedback.dsp import QualityFlag

class FeedbackState(StrEnum):
    """What the feedback does: not giving feedback (baseline, no EMG sensor), at/below target, sounding, paused."""

    OFF = "off"
    QUIET = "quiet"
    ON = "on"
    PAUSED = "paused"


OFF, QUIET, ON, PAUSED = FeedbackState
SPAN_OF_TARGET = 1.0
"""Tension this share of the target above it gives the full tone (at twice the target: full)."""
STALE_S = 1.5
"""Session seconds without EMG after which the feedback pauses."""
TARGET_OF_BASELINE = 0.8
"""Without a set target: 80 % of today's resting baseline tension."""

REASONS = (
    (QualityFlag.FLAT, "electrode off: press the sensor back onto the skin"),
    (QualityFlag.SATURATED, "signal overloaded: check the electrode"),
    (QualityFlag.MAINS, "electrical hum: check the electrode, move away from cables"),
    (QualityFlag.MOTION, "movement: sit still for a moment"),
    (QualityFlag.WARMUP, "signal settling"),
)
CONTACT_LOST = REASONS[0][1]
NO_SIGNAL = "no signal from the EMG sensor"


@dataclass(frozen=True)
class Feedback:
    """What the feedback does now."""

    state: FeedbackState = OFF
    level: float = 0.0
    """0 at or below the target, 1 at or above target · (1 + ``SPAN_OF_TARGET``)."""
    tension: float = math.nan
    target: float = math.nan
    reason: str = ""
    """Why the feedback is paused or off, in words for the client."""


def pause_reason(quality_bits: int, contact_lost: bool, age_s: float) -> str:
    """The reason not to trust the tension now, or '' when it is good."""
    if contact_lost:
        return CONTACT_LOST
    if not math.isfinite(age_s) or age_s > STALE_S:
        return NO_SIGNAL
    for flag, words in REASONS:
        if quality_bits & flag:
            return words
    return ""


def feedback_level(tension: float, target: float) -> float:
    """0 at or below ``target``, rising linearly to 1 at ``target · (1 + SPAN_OF_TARGET)``."""
    if not (math.isfinite(tension) and math.isfinite(target) and target > 0):
        return 0.0
    return min(1.0, max(0.0, (tension - target) / (SPAN_OF_TARGET * target)))


def decide(tension: float, target: float, quality_bits: int, contact_lost: bool, age_s: float) -> Feedback:
    """The feedback for one moment of a relaxation phase."""
    reason = pause_reason(quality_bits, contact_lost, age_s)
    if reason or not math.isfinite(tension):
        return Feedback(PAUSED, 0.0, tension, target, reason or NO_SIGNAL)
    level = feedback_level(tension, target)
    return Feedback(ON if level > 0 else QUIET, level, tension, target)
