"""The drivers' clock and gap rules as pure functions, on tiny hand-made streams with exact expected values.

Sample periods and times are binary fractions (0.25 s, 1.03125 s, ...) so every expected value is
exact; where a constant enters (``SLEW_FRACTION``), the expected value is written with it.
"""

import numpy as np
import pytest

from biofeedback.sensors.protocols.open_emg import unwrap_sample_index
from biofeedback.sensors.protocols.pmd import RateAnchor, measure_rate
from biofeedback.sensors.timing import (
    CLOCK_CONSISTENCY_S,
    SLEW_FRACTION,
    FrameEnd,
    FrameMark,
    clock_jump_s,
    device_time_impossible,
    frames_agree,
    index_and_time_disagree,
    place_frame,
)

# --- place_frame: 4-sample frames at 4 Hz (period 0.25 s) -------------------------------------

PERIOD = 0.25
AFTER_FIRST = FrameEnd(10.75, 100.75)
"""The first frame: device 10.0-10.75 s, session 100.0-100.75 s."""


def test_first_frame_sits_where_the_fit_maps_it():
    p = place_frame(10.0, 4, PERIOD, mapped_s=100.0, rate=1.0, prev=None)
    assert p.times_s.tolist() == [100.0, 100.25, 100.5, 100.75]
    assert p.end == AFTER_FIRST
    assert (p.gap_s, p.lost_samples) == (None, None)


def test_next_frame_runs_on_from_the_previous_one():
    p = place_frame(11.0, 4, PERIOD, mapped_s=101.0, rate=1.0, prev=AFTER_FIRST)
    assert p.times_s.tolist() == [101.0, 101.25, 101.5, 101.75]
    assert p.end == FrameEnd(11.75, 101.75)
    assert p.gap_s is None


@pytest.mark.parametrize("mapped_s, t_first", [
    (102.0, 101.0 + SLEW_FRACTION * 0.25),  # the fit says 1 s later: slewed by 1 % of the 0.25 s elapsed
    (100.0, 101.0 - SLEW_FRACTION * 0.25),  # ... 1 s earlier: the same, backwards, never behind the last sample
    (101.001, 101.001),  # within the slew limit: onto the fit
])
def test_times_slew_toward_the_fit_by_at_most_the_slew_fraction(mapped_s, t_first):
    p = place_frame(11.0, 4, PERIOD, mapped_s=mapped_s, rate=1.0, prev=AFTER_FIRST)
    assert p.times_s[0] == t_first and p.gap_s is None
    assert np.all(np.diff(p.times_s) == PERIOD)


def test_fitted_rate_scales_the_sample_spacing():
    p = place_frame(10.0, 3, PERIOD, mapped_s=100.0, rate=1.5, prev=None)
    assert p.times_s.tolist() == [100.0, 100.375, 100.75]
    assert p.end == FrameEnd(10.5, 100.75)  # device time ends by the device's own period


def test_a_lost_frame_is_a_gap_of_its_samples():
    """Frame 11.0-11.75 never arrived: the next starts 1.25 s (5 periods) after the last sample."""
    p = place_frame(12.0, 4, PERIOD, mapped_s=102.0, rate=1.0, prev=AFTER_FIRST)
    assert p.gap_s == (101.0, 102.0)  # from where the first lost sample belonged to the next sample
    assert p.lost_samples == 4
    assert p.times_s.tolist() == [102.0, 102.25, 102.5, 102.75]


def test_the_sample_count_of_a_gap_can_come_from_the_device():
    p = place_frame(12.0, 4, PERIOD, mapped_s=102.0, rate=1.0, prev=AFTER_FIRST, lost_samples=3)
    assert (p.gap_s, p.lost_samples) == ((101.0, 102.0), 3)


@pytest.mark.parametrize("first_device_s, gap", [
    (11.0, False),  # contiguous: jump of 1 period
    (11.125, False),  # half a period of jitter: 1.5 periods, not more
    (11.25, True),  # one sample missing: 2 periods
])
def test_gap_tolerance_is_one_and_a_half_periods(first_device_s, gap):
    p = place_frame(first_device_s, 4, PERIOD, mapped_s=first_device_s + 90.0, rate=1.0, prev=AFTER_FIRST)
    assert (p.gap_s is not None) == gap
    assert p.lost_samples == (1 if gap else None)


# --- device_time_impossible: duplicates and clock steps --------------------------------------


@pytest.mark.parametrize("device_s, arrival_s, mapped_s, impossible", [
    (11.0, 101.5, 101.0, False),  # the next frame, on time
    (11.0, 130.0, 101.0, False),  # the next frame, very late (a backlog delivered in a burst)
    (10.75, 101.0, 100.75, True),  # a duplicate: the previous frame's last sample again
    (10.0, 101.0, 100.0, True),  # a duplicate of the whole previous frame
    (5.0, 101.0, 95.0, True),  # the device clock stepped back
    (80.0, 101.0, 170.0, True),  # the device clock stepped forward: maps 69 s after its arrival
    (16.0, 101.0, 101.0 + CLOCK_CONSISTENCY_S, False),  # at the limit of the future
])
def test_device_time_impossible(device_s, arrival_s, mapped_s, impossible):
    assert device_time_impossible(device_s, arrival_s, AFTER_FIRST.device_s, mapped_s) is impossible


# --- open EMG: the 32-bit sample index --------------------------------------------------------


@pytest.mark.parametrize("index, next_index, full", [
    (120, None, 120),  # first frame after START: taken as sent
    (120, 100, 120),  # a lost frame of 20, no wrap
    (0, 2**32 - 20, 2**32),  # wrap-around: the next frame
    (20, 2**32 - 20, 2**32 + 20),  # wrap-around with a lost frame
    (2**32 - 40, 2**32 + 10, 2**32 - 40),  # a duplicate sent before the wrap, received after it
    (10, 2**33 + 10, 2**33 + 10),  # the second wrap
    (2**32 - 1, 2**31 - 1, 2**32 - 1),  # half the range ahead: still ahead
])
def test_unwrap_sample_index(index, next_index, full):
    assert unwrap_sample_index(index, next_index) == full


@pytest.mark.parametrize("first_index, first_device_s, disagree", [
    (8, 2.0, False),  # contiguous by index and by time
    (12, 3.0, False),  # a lost frame of 4 samples, by index and by time
    (8, 2.03125, False),  # 31 ms of timer jitter: within INDEX_CONSISTENCY_S
    (8, 2.5, True),  # index says contiguous, time says 2 samples lost
    (12, 2.0, True),  # index says 4 lost, time says contiguous
])
def test_index_and_time_disagree(first_index, first_device_s, disagree):
    """At 4 Hz, after a frame whose last sample was index 7 at device time 1.75 s."""
    assert index_and_time_disagree(first_index, 8, first_device_s, 1.75, 4.0) is disagree


# --- Frames that agree with their neighbours ---------------------------------------------------

EARLIER = FrameMark(first_device_s=1.0, last_device_s=1.75, arrival_s=10.0, n=4, first_index=4)
"""Four samples at 4 Hz, indices 4-7, device time 1.0-1.75 s, arrived at session time 10 s."""


@pytest.mark.parametrize("later, agree", [
    (FrameMark(2.0, 2.75, 11.0, 4, 8), True),  # the next frame
    (FrameMark(3.0, 3.75, 12.0, 4, 12), True),  # a frame lost between them, by index, time and arrival
    (FrameMark(3.0, 3.75, 10.5, 4, 12), True),  # arrived early by half a second (a late earlier frame): within tolerance
    (FrameMark(3.0, 3.75, 7.0, 4, 12), False),  # device time and arrival advance 3 s apart: beyond the tolerance of 2 s
    (FrameMark(1.5, 2.25, 10.5, 4, 6), False),  # overlaps the earlier frame in device time
    (FrameMark(2.0, 2.75, 11.0, 4, 12), False),  # index says a frame lost, time says none
    (FrameMark(2.0, 2.75, 11.0, 4, 4), False),  # index repeats samples
    (FrameMark(2.0, 2.75, 11.0, 4), True),  # no index (PMD): time and arrival agree
    (FrameMark(9.0e12, 9.0e12 + 0.75, 11.0, 4, 2_000_000_000), False),  # garbage: a random clock and index
])
def test_frames_agree(later, agree):
    assert frames_agree(EARLIER, later, 4.0, arrival_tolerance_s=2.0) is agree


# --- PMD: the true ECG rate from device timestamps --------------------------------------------

TRUE = (3.5, 4.5)
"""Range the true rate of these 4-sample frames (nominal 4 Hz) lies in."""
STEP = 1.03125
"""Device seconds between frames: 4 samples at 3.878... Hz."""


def _frames(last_times, prev_ends, n=4):
    anchor, rates = None, []
    for last, prev_end in zip(last_times, prev_ends):
        anchor, rate = measure_rate(anchor, last, n, prev_end, 4.0, TRUE)
        rates.append(rate)
    return anchor, rates


def test_rate_is_measured_over_contiguous_frames_once_they_span_more_than_two_seconds():
    last = [0.75 + k * STEP for k in range(4)]
    anchor, rates = _frames(last, [None] + last[:-1])
    assert rates == [None, None, 8 / (2 * STEP), 12 / (3 * STEP)]  # counted after 0, 1.03, 2.06 and 3.09 s
    assert anchor == RateAnchor(0.75, 12)


def test_first_frame_anchors_the_count():
    assert measure_rate(None, 0.75, 4, None, 4.0, TRUE) == (RateAnchor(0.75, 0), None)


def test_a_lost_frame_restarts_the_count():
    anchor, rate = measure_rate(RateAnchor(0.75, 8), 0.75 + 4 * STEP, 4, 0.75 + 2 * STEP, 4.0, TRUE)
    assert (anchor, rate) == (RateAnchor(0.75 + 4 * STEP, 0), None)


def test_a_rate_outside_the_true_range_is_not_used():
    anchor, rate = measure_rate(RateAnchor(0.0, 4), 3.0, 4, 2.0, 4.0, (3.0, 3.5))
    assert (anchor, rate) == (RateAnchor(0.0, 8), None)  # 8 samples in 3 s = 2.67 Hz: counted, not used


def test_two_seconds_exactly_is_not_enough():
    last = [0.75, 1.75, 2.75]
    _, rates = _frames(last, [None] + last[:-1])
    assert rates == [None, None, None]


# --- clock_jump_s: a device without a sample counter (PMD), frames at 4 Hz (period 0.25 s) -------

@pytest.mark.parametrize("step_s, lead_s, jump", [
    (0.25, 0.0, None),  # the next sample: contiguous
    (0.25, 3.0, None),  # contiguous, however early the fit says it came: timestamps are the device's
    (0.375, 0.0, None),  # within the gap tolerance (1.5 periods): not a jump
    (2.25, -0.125, None),  # 2 s more on the device and the frame came 2 s later: 7 samples lost, a gap
    (2.25, 0.5, None),  # ... and a little early (host jitter below half the excess): still a gap
    (2.25, 1.25, 2.0),  # 2 s more on the device, but the frame came on time: the clock jumped 2 s
    (2.25, 2.0, 2.0),
    (0.0, -0.25, -0.25),  # the same time as the previous sample: a step back, never lost samples
    (-1.75, -2.0, -2.0),  # 2 s back
])
def test_clock_jump_or_gap(step_s, lead_s, jump):
    assert clock_jump_s(step_s, PERIOD, lead_s) == jump
