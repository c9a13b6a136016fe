"""Blocks, ring buffers, gaps and clock alignment: the vocabulary every layer shares.

Times: ``host_time_ns`` is the session clock (``SessionClock``), i.e. ``time.monotonic_ns()``
since the session started, multiplied by the replay speed (1 for real sensors). The session keeps
one UTC anchor for wall-clock time. Device clocks are mapped onto it by ``DriftFit``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# Timing policy, in one place (STYLE.md, rule 5).
DRIFT_FIT_WINDOW = 2000
"""Number of recent (device, host) pairs the drift fit keeps."""
DRIFT_FIT_MIN_SPAN_S = 30.0
"""Device-time span below which the drift fit assumes a rate of exactly 1 (over shorter spans the
arrival jitter swamps a clock error of 100 ppm)."""
DRIFT_FIT_MAX_PPM = 1000.0
"""Largest believable clock-rate error; a fitted slope beyond it is jitter, not drift."""
RR_GAP_TOLERANCE_S = 1.6
"""An HR strap reports beats up to ~1 s late (1 Hz notifications); more lag than this is a gap."""
HRS_NOTIFY_PERIOD_S = 1.0
"""A heart-rate strap notifies about once a second: the notification period the cadence rule uses until it has
measured the strap's own (the median of its recent arrival spacings)."""
NOTIFY_PERIOD_WINDOW = 16
"""Recent arrival spacings the notification period is measured over."""
NOTIFY_MISSING_FACTOR = 1.5
"""Two notifications that arrive more than this many notification periods apart had notifications lost between them."""
LOST_BEAT_MIN_LAG_S = 0.25
"""A lost notification held beats only if the arrival runs ahead of the RR sum by at least the shortest plausible
RR interval; a longer spacing with the beats accounted for is a strap that notifies on each beat (a long beat)."""
UNKNOWN_GAP_S = 0.001
"""Length of a gap known to exist (notifications were lost) where the RR sum cannot show how long it was:
the arrival is not ahead of it, because an earlier beat was anchored late."""
HOST_JITTER_WALL_S = 0.25
"""Scheduling delay the host may add to an arrival, in real seconds. At ``--speed N`` it is N times
longer in session time, so the RR gap tolerance grows with the speed (a late packet is not a gap)."""
NS_PER_S = 1_000_000_000


class StreamKind:
    """Names of the streams a device can produce, with their units."""

    EMG = "emg"  # µV, one column per channel
    ECG = "ecg"  # µV
    RR = "rr"  # ms, one value per beat
    HR = "hr"  # bpm, one value per notification
    STATUS = "status"  # device status values, per profile

    UNITS = {"emg": "uV", "ecg": "uV", "rr": "ms", "hr": "bpm", "status": ""}


class BlockFlag:
    """Bit flags that travel with a block."""

    SENSOR_CONTACT_LOST = 1 << 0
    """The device reports no skin contact (HRS contact bit, open-EMG lead-off)."""
    SATURATED = 1 << 1
    """At least one sample reached the ADC limit."""
    AFTER_GAP = 1 << 2
    """The block follows lost data (sequence or sample-index jump)."""


@dataclass(slots=True)
class Block:
    """Samples of one stream as decoded from one packet, with the times that came with it."""

    stream: str
    source: str
    host_time_ns: int
    data: np.ndarray
    """Shape (n, channels), float64, in ``StreamKind.UNITS[stream]``."""
    rate_hz: float | None = None
    """Nominal sample rate; None for event streams (RR, HR)."""
    first_index: int | None = None
    """Device sample index of ``data[0]`` where the device counts samples."""
    seq: int | None = None
    """Packet sequence number where the device sends one."""
    device_time_ns: int | None = None
    """Device timestamp of the block's last sample, where the device sends one."""
    flags: int = 0
    channels: tuple[str, ...] = ()
    raw: bytes = b""
    """The packet exactly as received."""
    times_s: np.ndarray | None = None
    """Session time of each row after clock alignment (beat times for RR)."""

    @property
    def n(self) -> int:
        return int(self.data.shape[0])


@dataclass(frozen=True, slots=True)
class Gap:
    """An interval with no data for one stream, in session seconds; never silently closed."""

    stream: str
    source: str
    start_s: float
    end_s: float
    reason: str
    lost_samples: int | None = None

    @property
    def length_s(self) -> float:
        return self.end_s - self.start_s


class SessionClock:
    """The session time base: monotonic nanoseconds since start, times ``speed``."""

    def __init__(self, speed: float = 1.0) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.speed = float(speed)
        self._t0 = time.monotonic_ns()
        self.utc_anchor = time.time()
        """UTC (seconds since epoch) at session time 0."""

    def now_ns(self) -> int:
        return int((time.monotonic_ns() - self._t0) * self.speed)

    def now_s(self) -> float:
        return self.now_ns() / NS_PER_S

    def jitter_s(self) -> float:
        """Host scheduling jitter expressed in session seconds."""
        return HOST_JITTER_WALL_S * self.speed

    def wall_seconds(self, session_seconds: float) -> float:
        """Real seconds that ``session_seconds`` of session time take."""
        return session_seconds / self.speed


class DriftFit:
    """Maps a device clock to host time by ``host = a + b * device``, refitted as data arrive.

    Arrival times are the device times plus a positive, jittery transport delay, so ``b`` is the
    least-squares slope over a sliding window and ``a`` puts the line on the lower envelope of the
    points (the least-delayed packets), which is the best estimate of the true emission time.
    """

    def __init__(self, window: int = DRIFT_FIT_WINDOW) -> None:
        self._dev = np.empty(window)
        self._host = np.empty(window)
        self._n = 0
        self._window = window
        self._dev0: float | None = None
        self.a = 0.0
        self.b = 1.0

    def add(self, device_s: float, host_s: float) -> None:
        """Add one (device time, host arrival time) pair, both in seconds, and refit."""
        if self._dev0 is None:
            self._dev0 = device_s
        i = self._n % self._window
        self._dev[i] = device_s - self._dev0
        self._host[i] = host_s
        self._n += 1
        d = self._dev[: min(self._n, self._window)]
        h = self._host[: min(self._n, self._window)]
        span = float(d.max() - d.min())
        if span >= DRIFT_FIT_MIN_SPAN_S:
            b = float(np.polyfit(d, h, 1)[0])
            self.b = b if abs(b - 1.0) < DRIFT_FIT_MAX_PPM * 1e-6 else 1.0
        self.a = float(np.min(h - self.b * d))

    def to_host(self, device_s: float | np.ndarray) -> float | np.ndarray:
        """Host (session) time in seconds of a device time in seconds."""
        if self._dev0 is None:
            raise RuntimeError("DriftFit has no points yet")
        return self.a + self.b * (np.asarray(device_s) - self._dev0)

    def reset(self) -> None:
        """Forget the fit (a device whose clock restarted, e.g. after a power cycle)."""
        self.__init__(self._window)


def beat_times_from_rr(last_beat_s: float | None, arrival_s: float, rr_s: np.ndarray,
                       tolerance_s: float, beats_lost: bool = False) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Beat times (session s) of the beats closed by ``rr_s`` (one or more RR intervals, s), and the gap before them.

    The beats run on from ``last_beat_s``, the previous beat (None: anchor the last beat at the
    arrival ``arrival_s``). When the arrival runs ahead of the RR sum by more than ``tolerance_s``,
    beats were lost: the beats are re-anchored to end at the arrival and the gap (start, end) from
    ``last_beat_s`` to the new first interval's start is returned. When the arrival is behind the RR
    sum (a fast strap clock, a late anchor), the beats are pulled back toward it by at most half the
    first interval, so beat times never step backwards. When ``beats_lost`` (notifications are known
    lost), the gap is declared whatever the lag: up to the arrival less the RR sum, and
    ``UNKNOWN_GAP_S`` long when the arrival is not ahead of the sum.
    """
    total = float(rr_s.sum())
    if last_beat_s is None:
        last_beat_s = arrival_s - total
    gap_s = None
    lag = arrival_s - (last_beat_s + total)
    if lag > tolerance_s or beats_lost:
        gap_s = (last_beat_s, max(arrival_s - total, last_beat_s + UNKNOWN_GAP_S))
        last_beat_s = gap_s[1]
    elif lag < 0:
        last_beat_s += max(lag, -0.5 * float(rr_s[0]))
    return last_beat_s + np.cumsum(rr_s), gap_s


def notifications_missing(spacing_s: float, period_s: float) -> int:
    """How many notifications were lost between two that arrived ``spacing_s`` apart at a notification period of ``period_s``.

    None when the spacing is within ``NOTIFY_MISSING_FACTOR`` periods, else the whole periods between
    them (at least one). Both in session seconds: the rule does not loosen with the replay speed.
    """
    if spacing_s <= NOTIFY_MISSING_FACTOR * period_s:
        return 0
    return max(1, int(round(spacing_s / period_s)) - 1)


@dataclass
class RRTimeline:
    """Rebuilds beat times of an HR strap, which sends RR intervals without timestamps, and finds its lost notifications.

    Beat times are the running sum of RR intervals, anchored to the arrival time of the first
    notification. Beats were lost, and the sum is re-anchored to the arrival time with a gap, when
    the arrival runs ahead of the RR sum by more than ``tolerance_s``, or when notifications are known
    lost: by the arrival cadence (``notifications_missing`` against the strap's measured period) or
    because one arrived unusable (``missed``; a cadence loss only when the arrival runs ahead of the
    RR sum by ``LOST_BEAT_MIN_LAG_S``). Lost notifications are gaps of the HR stream too,
    between the arrivals of the notifications around them. ``gaps`` collects both streams' gaps.
    """

    source: str
    tolerance_s: float = RR_GAP_TOLERANCE_S
    last_beat_s: float | None = None
    gaps: list[Gap] = field(default_factory=list)
    last_arrival_s: float | None = None
    """Arrival of the newest notification taken (session s)."""
    spacings_s: deque = field(default_factory=lambda: deque(maxlen=NOTIFY_PERIOD_WINDOW))
    missed_count: int = 0
    """Notifications that arrived unusable since the newest one taken."""
    beats_lost: bool = False
    """Notifications were lost since the newest RR value: the next RR values are re-anchored with a gap."""

    @property
    def period_s(self) -> float:
        """The strap's notification period: the median of its recent arrival spacings (``HRS_NOTIFY_PERIOD_S`` at first)."""
        return float(np.median(self.spacings_s)) if len(self.spacings_s) >= 3 else HRS_NOTIFY_PERIOD_S

    def missed(self) -> None:
        """A notification arrived but could not be used (garbage, implausible): it counts as lost."""
        self.missed_count += 1

    def runs_ahead(self, arrival_s: float, rr_ms: np.ndarray) -> bool:
        """True when these RR values would put beats more than ``tolerance_s`` after their own arrival: not the strap's."""
        if self.last_beat_s is None:
            return False
        return self.last_beat_s + float(np.sum(rr_ms)) / 1000.0 - arrival_s > self.tolerance_s

    def add(self, arrival_s: float, rr_ms: np.ndarray) -> np.ndarray:
        """Take one notification: beat times (session seconds) of the beats closed by ``rr_ms``, one per RR value."""
        rr_s = np.asarray(rr_ms, dtype=float) / 1000.0
        lost = self.missed_count
        if self.last_arrival_s is not None:
            spacing = arrival_s - self.last_arrival_s
            by_cadence = notifications_missing(spacing, self.period_s)
            self.spacings_s.append(spacing)
            lag = None if rr_s.size == 0 or self.last_beat_s is None else arrival_s - self.last_beat_s - rr_s.sum()
            if by_cadence and (lag is None or lag > LOST_BEAT_MIN_LAG_S):
                lost = max(lost, by_cadence)
            if lost:
                self.gaps.append(Gap(StreamKind.HR, self.source, self.last_arrival_s, arrival_s, "missed-notifications", lost))
        self.last_arrival_s = arrival_s
        self.missed_count = 0
        self.beats_lost = self.beats_lost or (bool(lost) and self.last_beat_s is not None)
        if rr_s.size == 0:
            return np.empty(0)
        times, gap_s = beat_times_from_rr(self.last_beat_s, arrival_s, rr_s, self.tolerance_s, self.beats_lost)
        if gap_s is not None:
            reason = "missed-notifications" if self.beats_lost else "rr-sum-behind-arrival"
            self.gaps.append(Gap(StreamKind.RR, self.source, *gap_s, reason))
        self.beats_lost = False
        self.last_beat_s = float(times[-1])
        return times

    def restart(self) -> None:
        """Forget the anchors (after a reconnect; the disconnect gaps are recorded by the source)."""
        self.last_beat_s = None
        self.last_arrival_s = None
        self.missed_count = 0
        self.beats_lost = False


class RingBuffer:
    """A fixed-size, thread-safe buffer of timestamped samples for live display and processing."""

    def __init__(self, capacity: int, channels: int) -> None:
        self._t = np.full(capacity, np.nan)
        self._x = np.full((capacity, channels), np.nan)
        self._capacity = capacity
        self._count = 0
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        """Samples appended since creation (not capped at capacity)."""
        return self._count

    def append(self, t_s: np.ndarray, x: np.ndarray) -> None:
        """Append samples ``x`` (n, channels) at times ``t_s`` (n,)."""
        t_s = np.asarray(t_s, dtype=float)
        x = np.asarray(x, dtype=float).reshape(len(t_s), -1)
        n = len(t_s)
        if n == 0:
            return
        if n > self._capacity:
            t_s, x, n = t_s[-self._capacity :], x[-self._capacity :], self._capacity
        with self._lock:
            start = self._count % self._capacity
            first = min(n, self._capacity - start)
            self._t[start : start + first] = t_s[:first]
            self._x[start : start + first] = x[:first]
            if first < n:
                self._t[: n - first] = t_s[first:]
                self._x[: n - first] = x[first:]
            self._count += n

    def mark_gap(self, t_s: float) -> None:
        """Insert a NaN row so that plots show a break instead of a joined line."""
        self.append(np.array([t_s]), np.full((1, self._x.shape[1]), np.nan))

    def snapshot(self, last: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the newest ``last`` samples (all held, if None), oldest first."""
        with self._lock:
            held = min(self._count, self._capacity)
            k = held if last is None else min(last, held)
            end = self._count % self._capacity
            if k <= end:  # slices, not an index array: a 20,000-row snapshot costs 20 µs instead of 0.9 ms
                return self._t[end - k : end].copy(), self._x[end - k : end].copy()
            return (np.concatenate((self._t[end - k :], self._t[:end])),
                    np.concatenate((self._x[end - k :], self._x[:end])))

    def since(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the samples newer than ``t_s``."""
        t, x = self.snapshot()
        keep = t > t_s
        return t[keep], x[keep]


RING_SECONDS = 120.0
"""How much of each stream the live ring buffers hold."""
EVENT_RING_ROWS = 4096


class StreamHub:
    """Where sources hand their blocks: ring buffers per (stream, source), gaps, status, listeners.

    Thread-safe for one writer (the acquisition loop) and any number of snapshot readers (GUI).
    Listeners (recorder, processors) are called on the acquisition loop with every block and gap.
    """

    def __init__(self, clock: SessionClock) -> None:
        self.clock = clock
        self.buffers: dict[tuple[str, str], RingBuffer] = {}
        self.channels: dict[tuple[str, str], tuple[str, ...]] = {}
        self.rates: dict[tuple[str, str], float | None] = {}
        self.gaps: list[Gap] = []
        self.status: dict[str, object] = {}
        self.block_listeners: list[Callable[[Block], None]] = []
        self.gap_listeners: list[Callable[[Gap], None]] = []
        self.samples: dict[tuple[str, str], int] = {}

    def listen(self, on_block: Callable[[Block], None], on_gap: Callable[[Gap], None] | None = None) -> Callable[[], None]:
        """Call ``on_block`` (and ``on_gap``) for everything that arrives; returns the function that stops it."""
        pairs = [(self.block_listeners, on_block)] + ([(self.gap_listeners, on_gap)] if on_gap is not None else [])
        for listeners, fn in pairs:
            listeners.append(fn)

        def detach() -> None:
            for listeners, fn in pairs:
                if fn in listeners:
                    listeners.remove(fn)

        return detach

    def buffer(self, stream: str, source: str | None = None) -> RingBuffer | None:
        """The ring buffer of ``stream`` (from ``source``, or the first source that has it)."""
        for (s, src), buf in self.buffers.items():
            if s == stream and (source is None or src == source):
                return buf
        return None

    def on_block(self, block: Block) -> None:
        key = (block.stream, block.source)
        buf = self.buffers.get(key)
        if buf is None:
            rows = int(RING_SECONDS * block.rate_hz) if block.rate_hz else EVENT_RING_ROWS
            buf = self.buffers[key] = RingBuffer(rows, block.data.shape[1])
            self.channels[key] = block.channels
            self.rates[key] = block.rate_hz
            self.samples[key] = 0
        times = block.times_s if block.times_s is not None else np.full(block.n, block.host_time_ns / NS_PER_S)
        buf.append(times, block.data)
        self.samples[key] += block.n
        for listener in self.block_listeners:
            listener(block)

    def on_gap(self, gap: Gap) -> None:
        self.gaps.append(gap)
        buf = self.buffers.get((gap.stream, gap.source))
        if buf is not None:
            buf.mark_gap(gap.start_s)
        for listener in self.gap_listeners:
            listener(gap)

    def on_status(self, source: str, status: object) -> None:
        self.status[source] = status
