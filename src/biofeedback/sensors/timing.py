"""Timing policy of the sensor sources, and the pure functions that place device-stamped frames in session time.

Every timing constant of ``sensors`` lives here (STYLE.md rule 5); seconds are session seconds
unless the name says wall seconds or device seconds. The functions take plain numbers and return
plain results (no driver state, no I/O), so the clock and gap rules are tested on tiny synthetic
streams with exact expected values (``tests/sensors/test_timing.py``). The drift fit that maps a
device clock to session time is ``stream.DriftFit``; these functions take its output (the mapped
time and the fitted rate) as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONNECT_ATTEMPTS = 3
"""Connection attempts (with back-off) before a first connection counts as failed."""
RESCAN_TIMEOUT_S = 5.0
"""Wall seconds one rescan for a lost sensor lasts before trying again."""
CONTROL_RESPONSE_TIMEOUT_S = 5.0
"""Wall seconds to wait for a control-point indication."""
GAP_TOLERANCE_SAMPLES = 1.5
"""A device-time jump larger than this many sample periods beyond the frame is a gap."""
SLEW_FRACTION = 0.01
"""Sample times follow the device clock and drift toward the fit by at most 1 % of elapsed device time."""
CLOCK_CONSISTENCY_S = 5.0
"""A frame whose device time maps to more than this after its arrival is corrupt; two frames of one run
of a device advance in device time and in arrival time by amounts within this of each other."""
INDEX_CONSISTENCY_S = 0.05
"""Open EMG: device time and sample index of a frame must agree within this (else the frame is corrupt)."""
ANCHOR_HELD_FRAMES = 8
"""Frames held while none agrees with the stream or with another held frame (after START, a reconnect,
a garbage frame or a device restart); beyond this the oldest held frame is discarded and counted."""
RATE_MIN_SPAN_S = 2.0
"""Device seconds of contiguous frames before a sample rate measured from device timestamps is used."""


@dataclass(frozen=True)
class FrameEnd:
    """The last sample of the previous frame of a stream: its device time and its session time, in seconds."""

    device_s: float
    session_s: float


@dataclass(frozen=True, eq=False)
class Placement:
    """Where ``place_frame`` put a frame."""

    times_s: np.ndarray
    """Session time of each sample."""
    end: FrameEnd
    """The frame's last sample, for placing the next frame."""
    gap_s: tuple[float, float] | None
    """(start, end) session seconds of the samples missing before this frame; None when none are."""
    lost_samples: int | None
    """How many samples the gap holds; None when there is no gap."""


@dataclass(frozen=True)
class FrameMark:
    """What deciding whether two frames belong to one run needs: device times (s), arrival (session s), sample count."""

    first_device_s: float
    last_device_s: float
    arrival_s: float
    n: int
    first_index: int | None = None
    """Full index of the first sample where the device counts samples (open EMG), else None."""


def index_and_time_disagree(first_index: int, next_index: int, first_device_s: float, prev_end_device_s: float,
                            rate_hz: float) -> bool:
    """True when the samples a frame skips by index and by device time differ by more than ``INDEX_CONSISTENCY_S``.

    ``first_index`` and ``first_device_s`` are the frame's first sample; ``next_index`` and
    ``prev_end_device_s`` the index expected next and the device time of the previous frame's last sample.
    """
    skipped_by_index_s = (first_index - next_index) / rate_hz
    skipped_by_time_s = first_device_s - prev_end_device_s - 1 / rate_hz
    return abs(skipped_by_index_s - skipped_by_time_s) > INDEX_CONSISTENCY_S


def frames_agree(earlier: FrameMark, later: FrameMark, rate_hz: float, arrival_tolerance_s: float) -> bool:
    """True when ``later`` can follow ``earlier`` in one run of a device, frames lost between them or not.

    Its device time starts after ``earlier`` ends; device time and arrival advance by amounts within
    ``arrival_tolerance_s`` of each other; where the device counts samples, the index moves on past
    ``earlier`` by as many samples as the device time (``index_and_time_disagree``). A frame that does
    not agree with its neighbours (garbage that decoded, or a device that restarted) is never the
    one the stream's time base and index are taken from.
    """
    if later.first_device_s <= earlier.last_device_s:
        return False
    device_step_s = later.last_device_s - earlier.last_device_s
    if abs(device_step_s - (later.arrival_s - earlier.arrival_s)) > arrival_tolerance_s:
        return False
    if earlier.first_index is None or later.first_index is None:
        return True
    next_index = earlier.first_index + earlier.n
    return later.first_index >= next_index and not index_and_time_disagree(
        later.first_index, next_index, later.first_device_s, earlier.last_device_s, rate_hz)


def place_frame(first_device_s: float, n: int, period_s: float, mapped_s: float, rate: float,
                prev: FrameEnd | None, lost_samples: int | None = None) -> Placement:
    """Session times of a frame's ``n`` samples, and the gap before it if samples are missing.

    ``mapped_s`` is the drift fit's session time of ``first_device_s`` and ``rate`` its slope
    (session seconds per device second). The first frame sits at ``mapped_s``. Later frames run on
    from ``prev`` on the device clock (scaled by ``rate``), slewed toward ``mapped_s`` by at most
    ``SLEW_FRACTION`` of the elapsed device time, so times never run backwards, a gap interval never
    contains a sample, and its length is the device clock's. A device-time jump of more than
    ``GAP_TOLERANCE_SAMPLES`` periods is a gap of ``lost_samples`` (default: the jump in periods, less one).
    """
    gap_s = None
    lost = None
    if prev is None:
        t_first = mapped_s
    else:
        jump = first_device_s - prev.device_s
        t_first = prev.session_s + jump * rate
        t_first += float(np.clip(mapped_s - t_first, -SLEW_FRACTION * jump, SLEW_FRACTION * jump))
        if jump > GAP_TOLERANCE_SAMPLES * period_s:
            lost = lost_samples if lost_samples is not None else int(round(jump / period_s)) - 1
            gap_s = (prev.session_s + period_s, t_first)
    times = t_first + np.arange(n) * (period_s * rate)
    end = FrameEnd(first_device_s + (n - 1) * period_s, float(times[-1]))
    return Placement(times, end, gap_s, lost)


def clock_jump_s(step_s: float, period_s: float, lead_s: float) -> float | None:
    """How far a device clock jumped before a frame (device seconds), or None when the frame's timestamp is its own.

    ``step_s`` is the device time from the previous frame's last sample to this frame's first (one
    period when no sample is missing); ``lead_s`` how far the drift fit made before this frame maps
    its first sample ahead of its arrival (about 0 or below for a frame on time: the fit follows the
    least-delayed frames). Devices without a sample counter (Polar PMD) show a missing sample only
    through time, so the arrival decides. A step back (``step_s`` <= 0) cannot be missing samples:
    the clock jumped back. A step forward of more than ``GAP_TOLERANCE_SAMPLES`` periods is missing
    samples when the arrival moved on with it, and a clock jump when the frame came on time: its
    lead holds more than half of the step's excess. Returns the excess (``step_s`` less one period),
    by which later timestamps are to be read back. A jump shorter than twice the host's arrival
    jitter cannot be told from lost samples and stays a gap.
    """
    excess = step_s - period_s
    if step_s <= 0 or (step_s > GAP_TOLERANCE_SAMPLES * period_s and lead_s > excess / 2):
        return excess
    return None


def device_time_impossible(device_s: float, arrival_s: float, prev_end_device_s: float, mapped_s: float) -> bool:
    """True when a frame's device time cannot be right: not after the previous frame's end, or from the future.

    ``mapped_s`` is the drift fit's session time of ``device_s``. Late frames are normal (a congested
    link delivers a backlog in a burst), so only device times that map to more than
    ``CLOCK_CONSISTENCY_S`` after their own arrival ``arrival_s`` are rejected.
    """
    return device_s <= prev_end_device_s or mapped_s - arrival_s > CLOCK_CONSISTENCY_S
