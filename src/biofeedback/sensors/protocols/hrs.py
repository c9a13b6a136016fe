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

    Each value of a notification is judged on its own: an implausible heart rate or RR value is
    left out of the data and counted as a decode error, and the notification's other values are
    kept. Beat times run on the strap's whole RR sum, the left-out value included (the strap's time
    account: that interval did pass), so the beats after it keep their true times. ``stream.Block``
    has no per-row flag, so a left-out value is not a row: the HR block (when its heart rate is
    plausible) keeps the notification's raw bytes, which hold it, and no gap is declared (no time is
    missing).
    """

    def __init__(self, source: BleSource) -> None:
        super().__init__(source)
        self.timeline = RRTimeline(source.name, tolerance_s=RR_GAP_TOLERANCE_S + source.clock.jitter_s())
        self._last_beat_before_drop: float | None = None
        self._seen_gaps = 0

    async def setup(self, client: BleakClient) -> None:
        await client.start_notify(self.profile.uuid("hrs", "measurement"), self._on_measurement)

    def on_link_lost(self) -> None:
        if self.timeline.last_beat_s is not None:
            self._last_beat_before_drop = self.timeline.last_beat_s
        self.timeline.restart()

    def _on_measurement(self, _char: Any, data: bytearray) -> None:
        host_ns = self.clock.now_ns()
        raw = bytes(data)
        if (m := self.decode(decode_heart_rate_measurement, raw)) is None:
            return
        src, t = self.source.name, host_ns / NS_PER_S
        flags = BlockFlag.SENSOR_CONTACT_LOST if m.contact_detected is False else 0
        if HR_PLAUSIBLE_BPM[0] <= m.hr_bpm <= HR_PLAUSIBLE_BPM[1]:
            self.source.emit(Block(StreamKind.HR, src, host_ns, np.array([[float(m.hr_bpm)]]), flags=flags,
                                   channels=("hr",), raw=raw, times_s=np.array([t])))
        else:
            self.source.decode_error(DecodeError(f"implausible heart rate {m.hr_bpm} bpm: left out"))
        if m.contact_supported:
            self.source.status.contact = (bool(m.contact_detected),)
        if len(m.rr_ms) == 0:
            return
        beat_times = self.timeline.add(t, m.rr_ms)
        if self._last_beat_before_drop is not None:
            first = float(beat_times[0] - m.rr_ms[0] / 1000.0)
            self.source.gap(Gap(StreamKind.RR, src, self._last_beat_before_drop, first, "disconnect"))
            self._last_beat_before_drop = None
        for gap in self.timeline.gaps[self._seen_gaps :]:
            self.source.gap(gap)
        self._seen_gaps = len(self.timeline.gaps)
        keep = rr_plausible(m.rr_ms)
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
