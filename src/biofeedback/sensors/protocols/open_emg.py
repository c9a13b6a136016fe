"""Open EMG ("open-emg"), this project's open GATT profile for surface EMG: decoders, ``OpenEmgDriver``, ``SPEC``.

Written from ``devices/open-emg.md``: an Info characteristic (read), a Control characteristic
(write + indicate: START with rate and channel mask, STOP, TIME_SYNC), a Data characteristic
(notify: sequence number, index of the first sample, device time in µs, flags, interleaved int16
samples, and from protocol version 2 a CRC-16/CCITT-FALSE of the frame) and a Status characteristic
(battery, electrode contact, overrun count). Both versions are read; the Info characteristic says
which one a device speaks. The sample index counts every sample the firmware took, sent or not, so
the driver sees every lost sample (``unwrap_sample_index``, ``timing.index_and_time_disagree``), and
a frame is taken as data only when it agrees with its neighbours (``SampledDriver.admit``).
UUIDs live in the device profiles. The device
side, built from the same document without this code, is ``VirtualOpenEmg`` in
``sensors/virtual/open_emg.py``.
"""

from __future__ import annotations

import asyncio
import binascii
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from biofeedback.sensors.protocols.base import DecodeError, ProtocolSpec, SampledDriver, u8, u16
from biofeedback.sensors.source import SensorError
from biofeedback.sensors.timing import CONTROL_RESPONSE_TIMEOUT_S, FrameMark
from biofeedback.stream import NS_PER_S, Block, BlockFlag, StreamKind

if TYPE_CHECKING:
    from bleak import BleakClient

    from biofeedback.sensors.ble import BleSource

OPEN_EMG_PROTOCOL_VERSION = 2
"""The newest version of ``devices/open-emg.md``: version 2 ends every Data frame with a CRC."""
OPEN_EMG_PROTOCOL_VERSIONS = (1, 2)
"""Versions this program reads."""
OPEN_EMG_CRC_BYTES = 2
"""Version 2: u16 CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, not reflected, no final XOR) of
every byte before it, the last two bytes of a Data frame."""
OPEN_EMG_OP_START = 0x01
OPEN_EMG_OP_STOP = 0x02
OPEN_EMG_OP_TIME_SYNC = 0x03
OPEN_EMG_STATUS_OK = 0
OPEN_EMG_STATUS_UNSUPPORTED_OP = 1
OPEN_EMG_STATUS_INVALID_PARAMETER = 2
OPEN_EMG_STATUS_BUSY = 3
OPEN_EMG_STATUS_TEXT = {
    OPEN_EMG_STATUS_OK: "ok",
    OPEN_EMG_STATUS_UNSUPPORTED_OP: "unsupported op code",
    OPEN_EMG_STATUS_INVALID_PARAMETER: "invalid parameter",
    OPEN_EMG_STATUS_BUSY: "busy or already in that state",
}
OPEN_EMG_KINDS = {0: "raw", 1: "envelope"}
OPEN_EMG_INFO_BYTES = 12
OPEN_EMG_FRAME_HEADER_BYTES = 15
OPEN_EMG_STATUS_BYTES = 5
OPEN_EMG_FLAG_OVERRUN = 0x01
"""Firmware dropped data before this frame (``first_sample_index`` shows how much)."""
OPEN_EMG_FLAG_LEAD_OFF = 0x02
"""At least one enabled channel has no electrode contact."""
OPEN_EMG_FLAG_SATURATED = 0x04
"""At least one sample in this frame is at the ADC limit."""
OPEN_EMG_BATTERY_UNKNOWN = 0xFF
OPEN_EMG_STATUS_FLAG_CHARGING = 0x01
_INFO = struct.Struct("<BBHBBBBI")
_FRAME_HEADER = struct.Struct("<HIQB")
_STATUS = struct.Struct("<BBHB")


@dataclass(frozen=True)
class OpenEmgInfo:
    """The Info characteristic: what the device measures and how to scale it."""

    protocol_version: int
    channel_count: int
    sample_rate_hz: int
    adc_bits: int
    kind: str
    """"raw" (signed EMG) or "envelope" (rectified envelope)."""
    samples_per_frame: int
    nv_per_lsb: int
    """Nanovolts at the electrode per ADC least-significant bit."""

    @property
    def uv_per_lsb(self) -> float:
        """Microvolts at the electrode per ADC count: multiply samples by this."""
        return self.nv_per_lsb / 1000.0

    def frame_bytes(self, channels: int) -> int:
        """Length of a full Data frame with ``channels`` enabled channels."""
        return open_emg_frame_overhead(self.protocol_version) + 2 * channels * self.samples_per_frame


def open_emg_frame_overhead(protocol_version: int) -> int:
    """Bytes of a Data frame besides its samples: the header, and from version 2 the CRC."""
    return OPEN_EMG_FRAME_HEADER_BYTES + (OPEN_EMG_CRC_BYTES if protocol_version >= 2 else 0)


def decode_open_emg_info(data: bytes | bytearray | memoryview) -> OpenEmgInfo:
    """Decode the Info characteristic (12 bytes; bytes a newer minor version appends are ignored)."""
    raw = bytes(data)
    if len(raw) < OPEN_EMG_INFO_BYTES:
        raise DecodeError(f"Open EMG info: {len(raw)} bytes, need at least {OPEN_EMG_INFO_BYTES}")
    version, channels, rate, adc_bits, kind, per_frame, _reserved, nv_per_lsb = _INFO.unpack_from(raw)
    if version not in OPEN_EMG_PROTOCOL_VERSIONS:
        raise DecodeError(
            f"Open EMG info: protocol version {version}, this program speaks "
            f"{' and '.join(map(str, OPEN_EMG_PROTOCOL_VERSIONS))} (update biofeedback or the sensor's firmware)"
        )
    if kind not in OPEN_EMG_KINDS:
        raise DecodeError(f"Open EMG info: kind {kind} unknown (0 raw, 1 envelope)")
    for value, what in (
        (channels, "channel count"),
        (rate, "sample rate"),
        (per_frame, "samples per frame"),
        (nv_per_lsb, "nV per LSB"),
    ):
        if value == 0:
            raise DecodeError(f"Open EMG info: {what} is 0")
    if not 1 <= adc_bits <= 16:
        raise DecodeError(f"Open EMG info: {adc_bits} ADC bits, samples are int16 (1-16 bits)")
    return OpenEmgInfo(
        protocol_version=version,
        channel_count=channels,
        sample_rate_hz=rate,
        adc_bits=adc_bits,
        kind=OPEN_EMG_KINDS[kind],
        samples_per_frame=per_frame,
        nv_per_lsb=nv_per_lsb,
    )


def open_emg_start_command(sample_rate_hz: int, channel_mask: int) -> bytes:
    """Control write: START at a sample rate with a mask of enabled channels (bit i = channel i)."""
    if channel_mask == 0:
        raise ValueError("channel mask 0 enables no channel; set bit i to enable channel i")
    return struct.pack(
        "<BHB",
        OPEN_EMG_OP_START,
        u16(sample_rate_hz, "sample rate"),
        u8(channel_mask, "channel mask"),
    )


def open_emg_stop_command() -> bytes:
    """Control write: STOP streaming."""
    return bytes([OPEN_EMG_OP_STOP])


def open_emg_time_sync_command() -> bytes:
    """Control write: TIME_SYNC; the response carries the device clock in µs."""
    return bytes([OPEN_EMG_OP_TIME_SYNC])


@dataclass(frozen=True)
class OpenEmgControlResponse:
    """An indication on the Control characteristic: ``op_code, status, payload``."""

    op_code: int
    status: int
    payload: bytes

    @property
    def ok(self) -> bool:
        return self.status == OPEN_EMG_STATUS_OK

    @property
    def error_text(self) -> str:
        """The status in words ("ok" when ok)."""
        return OPEN_EMG_STATUS_TEXT.get(self.status, f"unknown status {self.status}")

    @property
    def device_time_us(self) -> int | None:
        """The device clock (µs) a successful TIME_SYNC reports; None for other responses."""
        if self.op_code != OPEN_EMG_OP_TIME_SYNC or not self.ok:
            return None
        return struct.unpack_from("<Q", self.payload)[0]


def decode_open_emg_control_response(data: bytes | bytearray | memoryview) -> OpenEmgControlResponse:
    """Decode an indication on the Control characteristic."""
    raw = bytes(data)
    if len(raw) < 2:
        raise DecodeError(f"Open EMG control response: {len(raw)} bytes, need at least 2")
    op_code, status = raw[0], raw[1]
    payload = raw[2:]
    if op_code == OPEN_EMG_OP_TIME_SYNC and status == OPEN_EMG_STATUS_OK and len(payload) < 8:
        raise DecodeError(
            f"Open EMG control response: TIME_SYNC payload {len(payload)} bytes, need 8 (u64 device time)"
        )
    return OpenEmgControlResponse(op_code=op_code, status=status, payload=payload)


@dataclass(frozen=True, eq=False)
class OpenEmgFrame:
    """One Data notification: header and interleaved int16 samples."""

    seq: int
    """Notification counter, wraps at 65536."""
    first_sample_index: int
    """Index of ``samples[0]`` since START, counting samples the firmware dropped; wraps at 2**32."""
    device_time_us: int
    """Device clock at the first sample, µs."""
    flags: int
    samples: np.ndarray
    """ADC counts, int16, shape (n, channels); multiply by ``OpenEmgInfo.uv_per_lsb`` for µV."""

    @property
    def overrun(self) -> bool:
        return bool(self.flags & OPEN_EMG_FLAG_OVERRUN)

    @property
    def lead_off(self) -> bool:
        return bool(self.flags & OPEN_EMG_FLAG_LEAD_OFF)

    @property
    def saturated(self) -> bool:
        return bool(self.flags & OPEN_EMG_FLAG_SATURATED)


def decode_open_emg_frame(data: bytes | bytearray | memoryview, channels: int,
                          protocol_version: int = OPEN_EMG_PROTOCOL_VERSION) -> OpenEmgFrame:
    """Decode a Data notification holding ``channels`` enabled channels, in the layout of ``protocol_version``.

    Version 2 frames end with a CRC-16/CCITT-FALSE of the bytes before it (the standard library's
    ``binascii.crc_hqx`` with initial value 0xFFFF); a frame whose CRC does not match is a ``DecodeError``.
    """
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")
    if protocol_version not in OPEN_EMG_PROTOCOL_VERSIONS:
        raise ValueError(f"protocol version {protocol_version} unknown; this program reads {OPEN_EMG_PROTOCOL_VERSIONS}")
    raw = bytes(data)
    set_bytes = 2 * channels
    need = open_emg_frame_overhead(protocol_version) + set_bytes
    if len(raw) < need:
        raise DecodeError(f"Open EMG frame: {len(raw)} bytes, {channels} channels need at least {need}")
    if protocol_version >= 2:
        (sent_crc,) = struct.unpack_from("<H", raw, len(raw) - OPEN_EMG_CRC_BYTES)
        raw = raw[:-OPEN_EMG_CRC_BYTES]
        crc = binascii.crc_hqx(raw, 0xFFFF)
        if crc != sent_crc:
            raise DecodeError(f"Open EMG frame: CRC 0x{sent_crc:04x}, the frame's bytes give 0x{crc:04x}")
    seq, first_index, device_time_us, flags = _FRAME_HEADER.unpack_from(raw)
    payload = raw[OPEN_EMG_FRAME_HEADER_BYTES:]
    if len(payload) % set_bytes:
        raise DecodeError(
            f"Open EMG frame: {len(payload)} sample bytes, not a whole number of "
            f"{channels}-channel sample sets ({set_bytes} bytes each)"
        )
    samples = np.frombuffer(payload, dtype="<i2").astype(np.int16).reshape(-1, channels)
    return OpenEmgFrame(
        seq=seq, first_sample_index=first_index, device_time_us=device_time_us, flags=flags, samples=samples
    )


@dataclass(frozen=True)
class OpenEmgStatus:
    """The Status characteristic."""

    battery_pct: int | None
    """0-100; None when the device does not measure its battery (0xFF)."""
    contact_bits: int
    """Bit i set: channel i has electrode contact."""
    overrun_count: int
    """Frames the firmware dropped since START (saturates at 65535)."""
    charging: bool

    def contact(self, channel: int) -> bool:
        """Whether device channel ``channel`` (0-7) has electrode contact."""
        if not 0 <= channel <= 7:
            raise ValueError(f"channel {channel} out of range 0-7")
        return bool(self.contact_bits >> channel & 1)


def decode_open_emg_status(data: bytes | bytearray | memoryview) -> OpenEmgStatus:
    """Decode the Status characteristic (5 bytes; bytes a newer minor version appends are ignored)."""
    raw = bytes(data)
    if len(raw) < OPEN_EMG_STATUS_BYTES:
        raise DecodeError(f"Open EMG status: {len(raw)} bytes, need at least {OPEN_EMG_STATUS_BYTES}")
    battery, contact_bits, overrun_count, flags = _STATUS.unpack_from(raw)
    if battery > 100 and battery != OPEN_EMG_BATTERY_UNKNOWN:
        raise DecodeError(f"Open EMG status: battery {battery} %, expected 0-100 or 255 (unknown)")
    return OpenEmgStatus(
        battery_pct=None if battery == OPEN_EMG_BATTERY_UNKNOWN else battery,
        contact_bits=contact_bits,
        overrun_count=overrun_count,
        charging=bool(flags & OPEN_EMG_STATUS_FLAG_CHARGING),
    )


def unwrap_sample_index(index: int, next_index: int | None) -> int:
    """The full sample index of a frame's 32-bit ``first_sample_index``, the one nearest ``next_index``.

    ``next_index`` is the full index expected next (None before the first frame after START: the
    index is taken as sent).
    """
    if next_index is None:
        return index
    full = (next_index & ~0xFFFFFFFF) | index
    if full < next_index - 2**31:
        full += 2**32
    elif full > next_index + 2**31:
        full -= 2**32
    return full


class OpenEmgDriver(SampledDriver):
    """Open-EMG profile: read Info, start streaming, decode frames, account for every sample index."""

    stream = StreamKind.EMG

    def __init__(self, source: BleSource) -> None:
        super().__init__(source, float(source.profile.settings.get("sample_rate_hz", 1000)))
        self.info: OpenEmgInfo | None = None
        self.channel_mask = int(source.profile.settings.get("channel_mask", 3))
        self.channels = source.profile.stream(StreamKind.EMG).channels
        self._responses: asyncio.Queue[OpenEmgControlResponse] = asyncio.Queue()

    async def setup(self, client: BleakClient) -> None:
        p = self.profile
        self.info = decode_open_emg_info(bytes(await client.read_gatt_char(p.uuid("open-emg", "info"))))
        if self.channel_mask >> self.info.channel_count:
            raise SensorError(f"{self.source.name}: channel_mask {self.channel_mask:#x} in {p.path.name} enables channels "
                              f"the sensor does not have (it has {self.info.channel_count}); fix settings.channel_mask")
        frame_bytes = self.info.frame_bytes(len(self.channels))
        if client.mtu_size - 3 < frame_bytes:
            raise SensorError(f"{self.source.name}: ATT MTU {client.mtu_size} is too small for {frame_bytes}-byte frames")
        self.source.status.rate_hz[StreamKind.EMG] = self.nominal_rate_hz
        self._responses = asyncio.Queue()
        await client.start_notify(p.uuid("open-emg", "control"), self._on_control)
        await client.start_notify(p.uuid("open-emg", "status"), self._on_status)
        await client.start_notify(p.uuid("open-emg", "data"), self._on_data)
        self._on_status(None, await client.read_gatt_char(p.uuid("open-emg", "status")))
        command = open_emg_start_command(int(self.nominal_rate_hz), self.channel_mask)
        await client.write_gatt_char(p.uuid("open-emg", "control"), command, response=True)
        try:
            reply = await asyncio.wait_for(self._responses.get(), CONTROL_RESPONSE_TIMEOUT_S)
        except asyncio.TimeoutError as exc:
            raise SensorError(f"{self.source.name}: no answer to the start command; check the sensor's firmware") from exc
        if not reply.ok:
            raise SensorError(f"{self.source.name}: start refused: {reply.error_text}")

    def _on_control(self, _char: Any, data: bytearray) -> None:
        if (reply := self.decode(decode_open_emg_control_response, bytes(data))) is not None:
            self._responses.put_nowait(reply)

    def _on_status(self, _char: Any, data: bytearray) -> None:
        if (status := self.decode(decode_open_emg_status, bytes(data))) is None:
            return
        self.source.status.battery_pct = status.battery_pct
        self.source.status.contact = tuple(status.contact(c) for c in range(len(self.channels)))

    def _on_data(self, _char: Any, data: bytearray) -> None:
        host_ns = self.clock.now_ns()
        raw = bytes(data)
        info = self.info
        if info is None:
            return
        # Frames carry the enabled channels only (devices/open-emg.md), at the rate we started.
        if (frame := self.decode(decode_open_emg_frame, raw, len(self.channels), info.protocol_version)) is None:
            return
        fs = self.nominal_rate_hz
        next_index = None if self.anchor is None else self.anchor.first_index + self.anchor.n
        n = frame.samples.shape[0]
        first_dev_s = frame.device_time_us / 1e6
        mark = FrameMark(first_dev_s, first_dev_s + (n - 1) / fs, host_ns / NS_PER_S, n,
                         unwrap_sample_index(frame.first_sample_index, next_index))
        for taken, (f, r, h) in self.admit(mark, (frame, raw, host_ns)):
            self._take(taken, f, r, h)

    def _take(self, mark: FrameMark, frame: OpenEmgFrame, raw: bytes, host_ns: int) -> None:
        """Place an admitted frame in session time (the gap before it included) and hand it on."""
        info = self.info
        fs, n, first = self.nominal_rate_hz, mark.n, mark.first_index
        self.fit.add(mark.first_device_s, mark.arrival_s - (n - 1) / fs)
        lost = None if self.anchor is None else first - (self.anchor.first_index + self.anchor.n)
        times = self.place(mark.first_device_s, n, 1.0 / fs, lost)
        self.anchor = mark
        flags = (BlockFlag.SENSOR_CONTACT_LOST if frame.lead_off else 0) | (BlockFlag.SATURATED if frame.saturated else 0)
        if lost:
            flags |= BlockFlag.AFTER_GAP
        self.source.emit(Block(StreamKind.EMG, self.source.name, host_ns, frame.samples * info.uv_per_lsb, rate_hz=fs,
                               first_index=first, seq=frame.seq, device_time_ns=frame.device_time_us * 1000, flags=flags,
                               channels=self.channels, raw=raw, times_s=times))


SPEC = ProtocolSpec(
    name="open-emg",
    gatt_table="emg",
    roles=("service", "info", "control", "data", "status"),
    streams=(StreamKind.EMG, StreamKind.STATUS),
    settings={"sample_rate_hz": "u16", "channel_mask": "u8"},
    driver=OpenEmgDriver,
    rate_setting=(StreamKind.EMG, "sample_rate_hz"),
    channel_mask_setting=(StreamKind.EMG, "channel_mask"),
)
