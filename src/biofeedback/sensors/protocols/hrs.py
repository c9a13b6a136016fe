"""Bluetooth SIG Heart Rate Service ("hrs"): the Heart Rate Measurement decoder, ``HrsDriver`` and ``SPEC``.

Decoder written from the Heart Rate Service 1.0 specification (characteristic 0x2A37): flags,
heart rate (uint8 or uint16, bpm), optional energy expended (kJ), then RR intervals in 1/1024 s;
one notification can carry several RR values. The measurement carries no timestamps: the driver
rebuilds beat times from the RR sum against arrival time (``stream.RRTimeline``). UUIDs live in the
device profiles (``devices/*.toml``). The device side, built from the same specification without
this code, is ``HeartRateServer`` in ``sensors/virtual/hrs.py``.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from biofeedback.sensors.protocols.base import DecodeError, Driver, ProtocolSpec
from biofeedback.stream import NS_PER_S, RR_GAP_TOLERANCE_S, Block, BlockFlag, Gap, RRTimeline, StreamKind

if TYPE_CHECKING:
    from bleak import BleakClient

    from biofeedback.sensors.ble import BleSource

HR_PLAUSIBLE_BPM = (25, 250)
RR_PLAUSIBLE_MS = (250.0, 2500.0)
"""A heart rate or an RR value outside these ranges is an artefact: it is counted, never stored as data."""
HR_AGREE_FRACTION = 0.25
"""A notification's heart rate agrees with the strap's recent rate (from its recent RR values and its own, else the
last heart rate taken) within this fraction; one that does not is not the strap's and is dropped whole."""
HR_REFERENCE_BEATS = 8
"""Recent RR values the strap's rate is taken from."""

HRM_FLAG_HR_UINT16 = 0x01
"""Heart rate value is uint16 (else uint8)."""
HRM_FLAG_CONTACT_DETECTED = 0x02
HRM_FLAG_CONTACT_SUPPORTED = 0x04
HRM_FLAG_ENERGY_EXPENDED = 0x08
"""An energy-expended field (uint16, kJ) follows the heart rate."""
HRM_FLAG_RR_INTERVALS = 0x10
"""One or more RR intervals (uint16, 1/1024 s) fill the rest of the packet."""
RR_UNITS_PER_S = 1024


@dataclass(frozen=True)
class HeartRateMeasurement:
    """One Heart Rate Measurement notification."""

    hr_bpm: int
    contact_supported: bool
    contact_detected: bool | None
    """None when the sensor does not support contact detection."""
    energy_kj: int | None
    rr_raw: tuple[int, ...]
    """RR intervals as sent, in 1/1024 s."""
    rr_ms: np.ndarray = field(compare=False)
    """RR intervals in ms (float64): ``rr_raw * 1000 / 1024``."""


def decode_heart_rate_measurement(data: bytes | bytearray | memoryview) -> HeartRateMeasurement:
    """Decode a Heart Rate Measurement value (Bluetooth SIG Heart Rate Service 1.0, 3.1)."""
    raw = bytes(data)
    if not raw:
        raise DecodeError("Heart Rate Measurement: empty packet, need at least 2 bytes")
    flags = raw[0]
    hr_size = 2 if flags & HRM_FLAG_HR_UINT16 else 1
    energy_size = 2 if flags & HRM_FLAG_ENERGY_EXPENDED else 0
    rr_min = 2 if flags & HRM_FLAG_RR_INTERVALS else 0
    need = 1 + hr_size + energy_size + rr_min
    if len(raw) < need:
        raise DecodeError(
            f"Heart Rate Measurement: {len(raw)} bytes, flags 0x{flags:02x} need at least {need}"
        )
    pos = 1
    if hr_size == 2:
        (hr,) = struct.unpack_from("<H", raw, pos)
    else:
        hr = raw[pos]
    pos += hr_size
    energy = None
    if energy_size:
        (energy,) = struct.unpack_from("<H", raw, pos)
        pos += energy_size
    rest = len(raw) - pos
    if flags & HRM_FLAG_RR_INTERVALS:
        if rest % 2:
            raise DecodeError(
                f"Heart Rate Measurement: {rest} bytes of RR intervals, "
                "not a whole number of 2-byte values"
            )
        rr_raw = struct.unpack_from(f"<{rest // 2}H", raw, pos)
    elif rest:
        raise DecodeError(
            f"Heart Rate Measurement: {len(raw)} bytes, flags 0x{flags:02x} describe {pos} "
            "(RR intervals flag not set)"
        )
    else:
        rr_raw = ()
    supported = bool(flags & HRM_FLAG_CONTACT_SUPPORTED)
    return HeartRateMeasurement(
        hr_bpm=hr,
        contact_supported=supported,
        contact_detected=bool(flags & HRM_FLAG_CONTACT_DETECTED) if supported else None,
        energy_kj=energy,
        rr_raw=tuple(rr_raw),
        rr_ms=np.array(rr_raw, dtype=np.float64) * (1000.0 / RR_UNITS_PER_S),
    )


def rr_plausible(rr_ms: np.ndarray) -> np.ndarray:
    """True for each RR value (ms) inside ``RR_PLAUSIBLE_MS``."""
    lo, hi = RR_PLAUSIBLE_MS
    return (rr_ms >= lo) & (rr_ms <= hi)


class HrsDriver(Driver):
    """Heart Rate Service: HR per notification, RR intervals rebuilt into beat times.

    The Heart Rate Measurement has no integrity check, so a notification is first judged as a
    whole: its heart rate must be plausible and agree with the strap's recent rate
    (``HR_AGREE_FRACTION``), its layout (heart-rate format, contact support) must be the strap's,
    and its RR values must not put beats after their own arrival (``RRTimeline.runs_ahead``). One
    that fails is garbage: dropped whole, counted as a decode error, and a lost notification for
    the timeline (its beats lie in a gap). Two notifications in a row that agree with each other
    and not with the strap's past are a real change and taken. In a notification taken, an
    implausible RR value is left out and counted, and the others kept; beat times run on the
    strap's whole RR sum, the left-out value included (the strap's time account: that interval did
    pass), so the beats after it keep their true times. ``stream.Block`` has no per-row flag, so a
    left-out value is not a row: the HR block keeps the notification's raw bytes, which hold it,
    and no gap is declared (no time is missing). Lost notifications (by arrival cadence, or dropped
    as above) are gaps of both the HR and the RR stream (``stream.RRTimeline``).
    """

    def __init__(self, source: BleSource) -> None:
        super().__init__(source)
        self.timeline = RRTimeline(source.name, tolerance_s=RR_GAP_TOLERANCE_S + source.clock.jitter_s())
        self._last_beat_before_drop: float | None = None
        self._last_hr_before_drop: float | None = None
        self._seen_gaps = 0
        self._recent_rr_ms: deque[float] = deque(maxlen=HR_REFERENCE_BEATS)
        self._last_hr: int | None = None
        self._layout: int | None = None
        self._refused_hr: int | None = None

    async def setup(self, client: BleakClient) -> None:
        await client.start_notify(self.profile.uuid("hrs", "measurement"), self._on_measurement)

    def on_link_lost(self) -> None:
        if self.timeline.last_beat_s is not None:
            self._last_beat_before_drop = self.timeline.last_beat_s
        if self.timeline.last_arrival_s is not None:
            self._last_hr_before_drop = self.timeline.last_arrival_s
        self.timeline.restart()

    def _refusal(self, m: HeartRateMeasurement, layout: int, arrival_s: float) -> str | None:
        """Why the notification is not the strap's (see the class docstring), or None when it is taken."""
        if not HR_PLAUSIBLE_BPM[0] <= m.hr_bpm <= HR_PLAUSIBLE_BPM[1]:
            return f"implausible heart rate {m.hr_bpm} bpm"
        if self.timeline.runs_ahead(arrival_s, m.rr_ms):
            return f"RR values summing to {m.rr_ms.sum():.0f} ms, beyond the time since the last beat"
        rr = [*self._recent_rr_ms, *m.rr_ms[rr_plausible(m.rr_ms)]]
        reference = 60000.0 / float(np.median(rr)) if rr else self._last_hr
        again = self._refused_hr is not None and abs(m.hr_bpm - self._refused_hr) <= HR_AGREE_FRACTION * m.hr_bpm
        if reference is not None and abs(m.hr_bpm - reference) > HR_AGREE_FRACTION * reference and not again:
            return f"heart rate {m.hr_bpm} bpm against the strap's {reference:.0f} bpm"
        if self._layout is not None and layout != self._layout and not again:
            return f"flags 0x{layout:02x} describe another layout than the strap's 0x{self._layout:02x}"
        return None

    def _on_measurement(self, _char: Any, data: bytearray) -> None:
        host_ns = self.clock.now_ns()
        raw = bytes(data)
        if (m := self.decode(decode_heart_rate_measurement, raw)) is None:
            self.timeline.missed()
            return
        src, t = self.source.name, host_ns / NS_PER_S
        layout = raw[0] & (HRM_FLAG_HR_UINT16 | HRM_FLAG_CONTACT_SUPPORTED)
        if (why := self._refusal(m, layout, t)) is not None:
            self.source.decode_error(DecodeError(f"heart rate notification dropped: {why}"))
            self._refused_hr = m.hr_bpm
            self.timeline.missed()
            return
        self._refused_hr = None
        self._last_hr, self._layout = m.hr_bpm, layout
        flags = BlockFlag.SENSOR_CONTACT_LOST if m.contact_detected is False else 0
        beat_times = self.timeline.add(t, m.rr_ms)
        new_gaps = self.timeline.gaps[self._seen_gaps :]
        self._seen_gaps = len(self.timeline.gaps)
        # Each stream's gaps just before its block (the order a replay restores).
        if self._last_hr_before_drop is not None:
            self.source.gap(Gap(StreamKind.HR, src, self._last_hr_before_drop, t, "disconnect"))
            self._last_hr_before_drop = None
        for gap in (g for g in new_gaps if g.stream == StreamKind.HR):
            self.source.gap(gap)
        self.source.emit(Block(StreamKind.HR, src, host_ns, np.array([[float(m.hr_bpm)]]), flags=flags,
                               channels=("hr",), raw=raw, times_s=np.array([t])))
        if self._last_beat_before_drop is not None and len(m.rr_ms):
            first = float(beat_times[0] - m.rr_ms[0] / 1000.0)
            self.source.gap(Gap(StreamKind.RR, src, self._last_beat_before_drop, first, "disconnect"))
            self._last_beat_before_drop = None
        for gap in (g for g in new_gaps if g.stream == StreamKind.RR):
            self.source.gap(gap)
        if m.contact_supported:
            self.source.status.contact = (bool(m.contact_detected),)
        if len(m.rr_ms) == 0:
            return
        keep = rr_plausible(m.rr_ms)
        self._recent_rr_ms.extend(m.rr_ms[keep])
        for rr in m.rr_ms[~keep]:
            self.source.decode_error(DecodeError(f"implausible RR {rr:.1f} ms: left out, its neighbours kept"))
        if keep.any():
            self.source.emit(Block(StreamKind.RR, src, host_ns, m.rr_ms[keep].reshape(-1, 1), flags=flags,
                                   channels=("rr",), times_s=beat_times[keep]))


SPEC = ProtocolSpec(
    name="hrs",
    gatt_table="hrs",
    roles=("service", "measurement"),
    streams=(StreamKind.HR, StreamKind.RR),
    settings={},
    driver=HrsDriver,
)
