"""Polar Measurement Data ("polar-pmd", ECG only): decoders, commands, ``PmdEcgDriver`` and ``SPEC``.

Written from Polar's BLE SDK documentation of the PMD service: the client writes commands to the
control point and gets answers by indication (``F0, op, type, status, ...``); ECG arrives on the
data characteristic as frames stamped with the device time of their last sample (ns since
2000-01-01), then int24 µV samples. The H10 needs an ATT MTU of at least 232 for 73-sample frames,
runs its "130 Hz" ECG at 128-131 Hz (the driver measures the true rate, ``measure_rate``), and
sometimes starts ECG late (the driver re-sends START). UUIDs live in the device profiles. The device
side, built from the same documentation without this code, is ``VirtualPolarH10`` in
``sensors/virtual/polar_h10.py``.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from itertools import groupby
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from bleak.exc import BleakError

from biofeedback.sensors.protocols.base import DecodeError, Driver, ProtocolSpec, SampledDriver, u8, u16
from biofeedback.sensors.source import SensorError
from biofeedback.sensors.timing import (
    CONTROL_RESPONSE_TIMEOUT_S,
    GAP_TOLERANCE_SAMPLES,
    RATE_MIN_SPAN_S,
    FrameMark,
    clock_jump_s,
)
from biofeedback.stream import NS_PER_S, RR_GAP_TOLERANCE_S, Block, BlockFlag, Gap, RRTimeline, StreamKind

if TYPE_CHECKING:
    from bleak import BleakClient

    from biofeedback.sensors.ble import BleSource

log = logging.getLogger(__name__)

PMD_OP_GET_SETTINGS = 0x01
PMD_OP_START = 0x02
PMD_OP_STOP = 0x03
PMD_CONTROL_RESPONSE = 0xF0
"""First byte of every control-point response indication."""
PMD_MEASUREMENT_ECG = 0
PMD_SETTING_SAMPLE_RATE = 0x00
PMD_SETTING_RESOLUTION = 0x01
PMD_FRAME_TYPE_RAW = 0
"""Uncompressed frame: ECG samples as int24 LE in µV."""
PMD_ECG_HEADER_BYTES = 10
PMD_ECG_SAMPLE_BYTES = 3
PMD_STATUS_SUCCESS = 0
PMD_STATUS_TEXT = {
    0: "success",
    1: "invalid op code",
    2: "invalid measurement type",
    3: "not supported",
    4: "invalid length",
    5: "invalid parameter",
    6: "already in state",
    7: "invalid resolution",
    8: "invalid sample rate",
    9: "invalid range",
    10: "invalid MTU",
    11: "invalid number of channels",
    12: "invalid state",
    13: "device in charger",
}


PMD_STATUS_ALREADY_IN_STATE = 6
PMD_STATUS_ADVICE = {
    10: "the Bluetooth link's ATT MTU is too small for ECG frames; update the Bluetooth stack",
    13: "take the strap off its charger and put it on",
}
"""What a user can do about an error reply; any other error: switch the strap off and on."""


def pmd_get_settings_command(measurement_type: int = PMD_MEASUREMENT_ECG) -> bytes:
    """Control-point write asking which settings a measurement type supports."""
    return bytes([PMD_OP_GET_SETTINGS, u8(measurement_type, "measurement type")])


def pmd_start_ecg_command(rate_hz: int = 130, resolution_bits: int = 14) -> bytes:
    """Control-point write that starts ECG: op, type, then (setting type, count=1, u16 value) pairs."""
    return struct.pack(
        "<BBBBHBBH",
        PMD_OP_START,
        PMD_MEASUREMENT_ECG,
        PMD_SETTING_SAMPLE_RATE,
        1,
        u16(rate_hz, "ECG sample rate"),
        PMD_SETTING_RESOLUTION,
        1,
        u16(resolution_bits, "ECG resolution"),
    )


def pmd_stop_command(measurement_type: int = PMD_MEASUREMENT_ECG) -> bytes:
    """Control-point write that stops a measurement."""
    return bytes([PMD_OP_STOP, u8(measurement_type, "measurement type")])


@dataclass(frozen=True)
class PmdControlResponse:
    """A PMD control-point response: ``F0, op_code, measurement_type, status[, more_frames, params...]``."""

    op_code: int
    measurement_type: int
    status: int
    parameters: bytes
    """Bytes after the more-frames byte (e.g. the settings a GET_SETTINGS returns)."""
    more_frames: bool = False
    """The device will send the rest of the parameters in another indication."""

    @property
    def ok(self) -> bool:
        return self.status == PMD_STATUS_SUCCESS

    @property
    def error_text(self) -> str:
        """The status in words ("success" when ok)."""
        return PMD_STATUS_TEXT.get(self.status, f"unknown status {self.status}")

    def answers(self, command: bytes) -> bool:
        """True when this is the reply to ``command`` (the same op code and measurement type)."""
        return (self.op_code, self.measurement_type) == (command[0], command[1])

    def refusal(self, what: str) -> str:
        """One line for a user: what was refused, the error by number and name, and what to do."""
        advice = PMD_STATUS_ADVICE.get(self.status, "switch the strap off and on, then try again")
        return f"{what} refused: PMD error {self.status} ({self.error_text}); {advice}"


def decode_pmd_control_response(data: bytes | bytearray | memoryview) -> PmdControlResponse:
    """Decode an indication from the PMD control point."""
    raw = bytes(data)
    if len(raw) < 4:
        raise DecodeError(f"PMD control response: {len(raw)} bytes, need at least 4")
    if raw[0] != PMD_CONTROL_RESPONSE:
        raise DecodeError(
            f"PMD control response: first byte 0x{raw[0]:02x}, expected 0x{PMD_CONTROL_RESPONSE:02x}"
        )
    return PmdControlResponse(
        op_code=raw[1],
        measurement_type=raw[2],
        status=raw[3],
        parameters=raw[5:],
        more_frames=len(raw) > 4 and raw[4] != 0,
    )


@dataclass(frozen=True, eq=False)
class PmdEcgFrame:
    """One PMD ECG data notification."""

    timestamp_ns: int
    """Device time of the frame's last sample, ns since 2000-01-01T00:00:00."""
    frame_type: int
    samples_uv: np.ndarray
    """ECG samples in µV, int32, oldest first."""


def _int24_le(payload: bytes) -> np.ndarray:
    """Signed 24-bit little-endian integers -> int32."""
    b = np.frombuffer(payload, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
    values = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    return np.where(values & 0x800000, values - 0x1000000, values).astype(np.int32)


def decode_pmd_ecg_frame(data: bytes | bytearray | memoryview) -> PmdEcgFrame:
    """Decode a PMD data notification carrying uncompressed ECG."""
    raw = bytes(data)
    need = PMD_ECG_HEADER_BYTES + PMD_ECG_SAMPLE_BYTES
    if len(raw) < need:
        raise DecodeError(f"PMD ECG frame: {len(raw)} bytes, need at least {need}")
    if raw[0] != PMD_MEASUREMENT_ECG:
        raise DecodeError(f"PMD ECG frame: measurement type {raw[0]}, expected {PMD_MEASUREMENT_ECG} (ECG)")
    (timestamp_ns,) = struct.unpack_from("<Q", raw, 1)
    frame_type = raw[9]
    if frame_type != PMD_FRAME_TYPE_RAW:
        raise DecodeError(
            f"PMD ECG frame: frame type 0x{frame_type:02x} not supported, "
            f"expected {PMD_FRAME_TYPE_RAW} (raw uncompressed)"
        )
    payload = raw[PMD_ECG_HEADER_BYTES:]
    if len(payload) % PMD_ECG_SAMPLE_BYTES:
        raise DecodeError(
            f"PMD ECG frame: {len(payload)} sample bytes, not a whole number of 3-byte samples"
        )
    return PmdEcgFrame(timestamp_ns=timestamp_ns, frame_type=frame_type, samples_uv=_int24_le(payload))


PMD_MEASUREMENT_PPI = 3
"""Pulse-to-pulse intervals from the optical sensor (Verity Sense, OH1)."""
PMD_PPI_SAMPLE_BYTES = 6
PPI_FLAG_BLOCKER = 0x01
"""The interval is not valid (movement or another cause, the device says)."""
PPI_FLAG_SKIN_CONTACT = 0x02
"""The sensor touches the skin (meaningful when ``PPI_FLAG_CONTACT_SUPPORTED`` is set)."""
PPI_FLAG_CONTACT_SUPPORTED = 0x04


def pmd_start_ppi_command() -> bytes:
    """Control-point write that starts PPI: op, type, and no settings (PPI has none)."""
    return bytes([PMD_OP_START, PMD_MEASUREMENT_PPI])


@dataclass(frozen=True, eq=False)
class PmdPpiFrame:
    """One PMD PPI data notification: per interval HR, PP interval, error estimate and flags."""

    timestamp_ns: int
    """0 on Verity Sense and OH1 (Polar: "timestamp N/A, always 0")."""
    hr_bpm: np.ndarray
    pp_ms: np.ndarray
    """Pulse-to-pulse intervals, ms."""
    error_ms: np.ndarray
    """The device's estimate of each interval's absolute error, ms (below 10 ms: very accurate; above 30 ms: likely
    movement or loose contact, Polar's PPI documentation)."""
    flags: np.ndarray

    @property
    def usable(self) -> np.ndarray:
        """True for intervals without the blocker bit and with skin contact (or no contact sensing)."""
        blocked = (self.flags & PPI_FLAG_BLOCKER) != 0
        no_contact = ((self.flags & PPI_FLAG_CONTACT_SUPPORTED) != 0) & ((self.flags & PPI_FLAG_SKIN_CONTACT) == 0)
        return ~blocked & ~no_contact


def decode_pmd_ppi_frame(data: bytes | bytearray | memoryview) -> PmdPpiFrame:
    """Decode a PMD data notification carrying PPI: type 3, u64 timestamp, frame type 0, then 6-byte samples
    (u8 HR bpm, u16 PP ms, u16 error estimate ms, u8 flags: bit 0 blocker, bit 1 skin contact, bit 2 contact
    supported)."""
    raw = bytes(data)
    if len(raw) < PMD_ECG_HEADER_BYTES:
        raise DecodeError(f"PMD PPI frame: {len(raw)} bytes, need at least {PMD_ECG_HEADER_BYTES}")
    if raw[0] != PMD_MEASUREMENT_PPI:
        raise DecodeError(f"PMD PPI frame: measurement type {raw[0]}, expected {PMD_MEASUREMENT_PPI} (PPI)")
    if raw[9] != PMD_FRAME_TYPE_RAW:
        raise DecodeError(f"PMD PPI frame: frame type 0x{raw[9]:02x} not supported, expected {PMD_FRAME_TYPE_RAW}")
    payload = raw[PMD_ECG_HEADER_BYTES:]
    if len(payload) % PMD_PPI_SAMPLE_BYTES:
        raise DecodeError(f"PMD PPI frame: {len(payload)} sample bytes, not a whole number of 6-byte samples")
    rows = np.frombuffer(payload, dtype=np.dtype([("hr", "u1"), ("pp", "<u2"), ("err", "<u2"), ("flags", "u1")]))
    return PmdPpiFrame(timestamp_ns=struct.unpack_from("<Q", raw, 1)[0], hr_bpm=rows["hr"].astype(float),
                       pp_ms=rows["pp"].astype(float), error_ms=rows["err"].astype(float),
                       flags=rows["flags"].astype(np.int64))


@dataclass(frozen=True)
class RateAnchor:
    """Start of a run of contiguous frames: the device time (s) of the sample the count starts after."""

    device_s: float
    samples: int
    """Samples received since then."""


def measure_rate(anchor: RateAnchor | None, last_device_s: float, n: int, prev_end_device_s: float | None,
                 rate_hz: float, true_rate_hz: tuple[float, float]) -> tuple[RateAnchor, float | None]:
    """Count a frame of ``n`` samples ending at ``last_device_s`` toward the true sample rate.

    Samples are counted over contiguous frames (the frame starts within ``GAP_TOLERANCE_SAMPLES``
    periods of ``prev_end_device_s`` at ``rate_hz``); a gap, or the first frame, restarts the count.
    Returns the new anchor and the measured rate once the run spans more than ``RATE_MIN_SPAN_S``
    device seconds and the rate lies in ``true_rate_hz``, else None.
    """
    contiguous = prev_end_device_s is not None and last_device_s - prev_end_device_s < (n + GAP_TOLERANCE_SAMPLES) / rate_hz
    if anchor is None or not contiguous:
        return RateAnchor(last_device_s, 0), None
    anchor = RateAnchor(anchor.device_s, anchor.samples + n)
    span = last_device_s - anchor.device_s
    if span > RATE_MIN_SPAN_S:
        measured = anchor.samples / span
        lo, hi = true_rate_hz
        if lo <= measured <= hi:
            return anchor, measured
    return anchor, None


class PmdControlPoint:
    """The control-point half of a PMD driver (ECG or PPI): write a command, wait for the indication that answers it."""

    _responses: asyncio.Queue[PmdControlResponse]

    async def request(self, client: BleakClient, command: bytes) -> PmdControlResponse:
        """Write ``command`` to the control point and return the reply that answers it.

        Replies to other requests (a late answer to an earlier command, another app's) are logged
        and skipped; replies that came before the write cannot answer it and are dropped.
        """
        while not self._responses.empty():
            self._responses.get_nowait()
        await client.write_gatt_char(self.profile.uuid("polar-pmd", "control"), command, response=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONTROL_RESPONSE_TIMEOUT_S
        while True:
            try:
                reply = await asyncio.wait_for(self._responses.get(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError as exc:
                raise SensorError(f"{self.source.name}: no answer to PMD command 0x{command[0]:02x} "
                                  f"(measurement type {command[1]}); switch the strap off and on") from exc
            if reply.answers(command):
                return reply
            log.info("%s: skipped a PMD reply to op 0x%02x type %d while waiting for op 0x%02x type %d",
                     self.source.name, reply.op_code, reply.measurement_type, command[0], command[1])

    def _on_control(self, _char: Any, data: bytearray) -> None:
        if (reply := self.decode(decode_pmd_control_response, bytes(data))) is not None:
            self._responses.put_nowait(reply)


class PmdEcgDriver(PmdControlPoint, SampledDriver):
    """Polar PMD ECG: start through the control point, decode frames, map device time to host time."""

    stream = StreamKind.ECG

    def __init__(self, source: BleSource) -> None:
        settings = source.profile.settings
        super().__init__(source, float(settings.get("ecg_rate_hz", 130)))
        self.resolution_bits = int(settings.get("ecg_resolution_bits", 14))
        lo, hi = settings.get("ecg_true_rate_hz", [128.0, 131.0])
        self.true_rate_range = (float(lo), float(hi))
        self.start_timeout_s = float(settings.get("ecg_start_timeout_s", 3.0))
        self._responses: asyncio.Queue[PmdControlResponse] = asyncio.Queue()
        self._rate_anchor: RateAnchor | None = None
        self._frames_since_start = 0
        self._watchdog: asyncio.Task | None = None
        self._clock_offset_s = 0.0
        """Sum of the device clock's jumps so far: read every timestamp back by it."""
        self.clock_jumps: list[tuple[float, float]] = []
        """(session s, device s) of each clock jump the frames showed (``timing.clock_jump_s``)."""

    async def setup(self, client: BleakClient) -> None:
        if client.mtu_size < self.profile.min_mtu:
            raise SensorError(
                f"{self.source.name}: ATT MTU is {client.mtu_size}, the PMD ECG stream needs at least "
                f"{self.profile.min_mtu}. Update the Bluetooth stack, or on BlueZ enable MTU exchange."
            )
        p = self.profile
        self._responses = asyncio.Queue()
        await client.start_notify(p.uuid("polar-pmd", "control"), self._on_control)
        await client.start_notify(p.uuid("polar-pmd", "data"), self._on_data)
        await self._start(client)
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watchdog = asyncio.create_task(self._restart_if_silent(client))

    async def _start(self, client: BleakClient) -> None:
        self._frames_since_start = 0
        reply = await self.request(client, pmd_start_ecg_command(int(self.nominal_rate_hz), self.resolution_bits))
        if not reply.ok and reply.status != PMD_STATUS_ALREADY_IN_STATE:  # already streaming is fine
            raise SensorError(f"{self.source.name}: {reply.refusal('ECG start')}")

    async def _restart_if_silent(self, client: BleakClient) -> None:
        """Polar quirk: ECG sometimes starts late or not at all; re-send start until frames flow."""
        while client.is_connected:
            await asyncio.sleep(self.clock.wall_seconds(self.start_timeout_s))
            if self._frames_since_start or not client.is_connected:
                return
            log.info("%s: no ECG after %.1f s, sending start again", self.source.name, self.start_timeout_s)
            try:
                await self._start(client)  # "already started" is fine: the strap may just be slow
            except (BleakError, SensorError) as exc:
                log.info("%s: ECG restart failed: %s", self.source.name, exc)

    def timing_report(self) -> dict[str, dict]:
        """The ECG's nominal and measured rate (device clock, None until measured) and the clock jumps seen."""
        return {StreamKind.ECG: {
            "nominal_rate_hz": self.nominal_rate_hz,
            "measured_rate_hz": self.source.status.rate_hz.get(StreamKind.ECG),
            "clock_jumps": [{"t_s": round(t, 6), "jump_s": round(j, 9)} for t, j in self.clock_jumps],
        }}

    def _mark(self, frame: PmdEcgFrame, arrival_s: float) -> FrameMark:
        """The frame's device times, its timestamps read back by the clock jumps seen so far."""
        n = len(frame.samples_uv)
        last_dev_s = frame.timestamp_ns / NS_PER_S - self._clock_offset_s
        return FrameMark(last_dev_s - (n - 1) / self.rate_hz, last_dev_s, arrival_s, n)

    def _jump_s(self, mark: FrameMark) -> float | None:
        """How far the device clock jumped before ``mark`` with no sample missing (``timing.clock_jump_s``), or None."""
        if self.prev_end is None:
            return None
        step = mark.first_device_s - self.prev_end.device_s
        return clock_jump_s(step, 1.0 / self.rate_hz, float(self.fit.to_host(mark.last_device_s)) - mark.arrival_s)

    def follows(self, mark: FrameMark) -> bool:
        """A frame whose timestamp jumped does not follow: it is held until the next frame confirms the jump."""
        return super().follows(mark) and self._jump_s(mark) is None

    def rejoin(self, first: FrameMark) -> None:
        """Two agreeing frames that do not follow: the strap's clock jumped (read on from the last frame) or it restarted."""
        jump = self._jump_s(first)
        if jump is None:
            super().rejoin(first)
            return
        self._clock_offset_s += jump
        self.clock_jumps.append((first.arrival_s, jump))
        log.warning("%s: ECG frame timestamps jumped by %+.3f s with no sample missing; read on from "
                    "the previous frame", self.source.name, jump)

    def _on_data(self, _char: Any, data: bytearray) -> None:
        host_ns = self.clock.now_ns()
        raw = bytes(data)
        if (frame := self.decode(decode_pmd_ecg_frame, raw)) is None:
            return
        for _mark, (f, r, h) in self.admit(self._mark(frame, host_ns / NS_PER_S), (frame, raw, host_ns)):
            self._take(f, r, h)

    def _take(self, frame: PmdEcgFrame, raw: bytes, host_ns: int) -> None:
        """Measure the rate on an admitted frame, place it in session time (the gap before it included), hand it on."""
        self._frames_since_start += 1
        n = len(frame.samples_uv)
        arrival_s = host_ns / NS_PER_S
        last_dev_s = self._mark(frame, arrival_s).last_device_s
        prev_end_s = None if self.prev_end is None else self.prev_end.device_s
        self._rate_anchor, measured = measure_rate(self._rate_anchor, last_dev_s, n, prev_end_s, self.rate_hz,
                                                   self.true_rate_range)
        if measured is not None:
            self.rate_hz = measured
            self.source.status.rate_hz[StreamKind.ECG] = measured
        period = 1.0 / self.rate_hz
        first_dev_s = last_dev_s - (n - 1) * period
        self.fit.add(last_dev_s, arrival_s)
        times = self.place(first_dev_s, n, period)
        self.anchor = FrameMark(first_dev_s, last_dev_s, arrival_s, n)
        self.source.emit(Block(StreamKind.ECG, self.source.name, host_ns, np.asarray(frame.samples_uv, float).reshape(-1, 1),
                               rate_hz=self.rate_hz, device_time_ns=frame.timestamp_ns, channels=("ecg",), raw=raw,
                               times_s=times))


SPEC = ProtocolSpec(
    name="polar-pmd",
    gatt_table="pmd",
    roles=("service", "control", "data"),
    streams=(StreamKind.ECG,),
    settings={
        "ecg_rate_hz": "u16",
        "ecg_resolution_bits": "u16",
        "ecg_true_rate_hz": "range",
        "ecg_start_timeout_s": "seconds",
    },
    driver=PmdEcgDriver,
    rate_setting=(StreamKind.ECG, "ecg_rate_hz"),
    rate_range_setting="ecg_true_rate_hz",
)


class PmdPpiDriver(PmdControlPoint, Driver):
    """Polar PMD PPI (Verity Sense, OH1): start PPI, rebuild beat times from the intervals, honour the quality flags.

    The frames carry no usable timestamp, so beat times are the running sum of every interval (flagged ones too:
    that time did pass) against arrival, as for a heart-rate strap (``stream.RRTimeline``). Per notification: an HR
    block (one row per interval, the notification's raw bytes, so flagged intervals stay in the recording) and an RR
    block of the usable intervals only; each run of flagged intervals is an RR gap whose reason names the flag
    (``ppi-blocker``, ``ppi-no-contact``) and whose length is the run's, so HRV never takes a difference across it.
    """

    def __init__(self, source: BleSource) -> None:
        super().__init__(source)
        self.timeline = RRTimeline(source.name, tolerance_s=RR_GAP_TOLERANCE_S + source.clock.jitter_s())
        self._responses = asyncio.Queue()
        self._seen_gaps = 0
        self._before_drop: float | None = None
        self.flagged = {"ppi-blocker": 0, "ppi-no-contact": 0}
        """Intervals recorded but left out of HRV, by reason."""

    async def setup(self, client: BleakClient) -> None:
        p = self.profile
        self._responses = asyncio.Queue()
        await client.start_notify(p.uuid("polar-pmd-ppi", "control"), self._on_control)
        await client.start_notify(p.uuid("polar-pmd-ppi", "data"), self._on_data)
        reply = await self.request(client, pmd_start_ppi_command())
        if not reply.ok and reply.status != PMD_STATUS_ALREADY_IN_STATE:
            raise SensorError(f"{self.source.name}: {reply.refusal('PPI start')}")

    def on_link_lost(self) -> None:
        if self.timeline.last_beat_s is not None:
            self._before_drop = self.timeline.last_beat_s
        self.timeline.restart()

    def timing_report(self) -> dict[str, dict]:
        """The intervals recorded but left out of HRV, by flag."""
        return {StreamKind.RR: {"ppi_flagged": dict(self.flagged)}}

    def _on_data(self, _char: Any, data: bytearray) -> None:
        host_ns = self.clock.now_ns()
        raw = bytes(data)
        if (frame := self.decode(decode_pmd_ppi_frame, raw)) is None:
            self.timeline.missed()
            return
        if not len(frame.pp_ms):
            return
        src, arrival_s = self.source.name, host_ns / NS_PER_S
        times = self.timeline.add(arrival_s, frame.pp_ms)
        for gap in self.timeline.gaps[self._seen_gaps:]:
            self.source.gap(gap)
        self._seen_gaps = len(self.timeline.gaps)
        if self._before_drop is not None:
            self.source.gap(Gap(StreamKind.RR, src, self._before_drop, float(times[0] - frame.pp_ms[0] / 1000.0),
                                "disconnect"))
            self._before_drop = None
        no_contact = ((frame.flags & PPI_FLAG_CONTACT_SUPPORTED) != 0) & ((frame.flags & PPI_FLAG_SKIN_CONTACT) == 0)
        self.source.status.contact = (not bool(no_contact[-1]),)
        self.source.emit(Block(StreamKind.HR, src, host_ns, frame.hr_bpm.reshape(-1, 1), channels=("hr",), raw=raw,
                               flags=BlockFlag.SENSOR_CONTACT_LOST if no_contact.any() else 0, times_s=times))
        start = 0
        for ok, run in groupby(frame.usable):
            n = len(list(run))
            part, start = slice(start, start + n), start + n
            if ok:
                self.source.emit(Block(StreamKind.RR, src, host_ns, frame.pp_ms[part].reshape(-1, 1), channels=("rr",),
                                       times_s=times[part]))
                continue
            reason = "ppi-blocker" if np.any(frame.flags[part] & PPI_FLAG_BLOCKER) else "ppi-no-contact"
            self.flagged[reason] += n
            self.source.gap(Gap(StreamKind.RR, src, float(times[part.start] - frame.pp_ms[part.start] / 1000.0),
                                float(times[part.stop - 1]), reason, n))


PPI_SPEC = ProtocolSpec(
    name="polar-pmd-ppi",
    gatt_table="pmd",
    roles=("service", "control", "data"),
    streams=(StreamKind.HR, StreamKind.RR),
    settings={},
    driver=PmdPpiDriver,
)
