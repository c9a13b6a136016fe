"""Packet decoders and command encoders for the supported sensor protocols.

Three protocols, each written from its specification:

- Bluetooth SIG Heart Rate Measurement (characteristic 0x2A37, Heart Rate Service 1.0);
- Polar PMD (Polar Measurement Data service, ECG only), as documented in Polar's BLE SDK;
- Open EMG, this project's open GATT profile (``devices/open-emg.md``).

Every decoder takes the value of one notification, indication or read and returns a frozen
dataclass; a malformed value raises :class:`DecodeError` saying what was wrong, and nothing else.
Arrays in the results are fresh copies, never views of the packet buffer, which a BLE stack may
reuse for the next packet. UUIDs live in the device profiles (``devices/*.toml``), not here.
"""

from __future__ import annotations

from biofeedback.errors import BiofeedbackError

import struct
from dataclasses import dataclass, field

import numpy as np


class DecodeError(BiofeedbackError, ValueError):
    """A packet does not follow its protocol's layout; the message says which rule it broke."""


# --- Bluetooth SIG Heart Rate Measurement (0x2A37) -------------------------------------------

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


# --- Polar PMD (Polar Measurement Data) --------------------------------------------------------

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


def _u16(value: int, what: str) -> int:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{what} {value} does not fit in 16 bits (0-65535)")
    return value


def _u8(value: int, what: str) -> int:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{what} {value} does not fit in 8 bits (0-255)")
    return value


def pmd_get_settings_command(measurement_type: int = PMD_MEASUREMENT_ECG) -> bytes:
    """Control-point write asking which settings a measurement type supports."""
    return bytes([PMD_OP_GET_SETTINGS, _u8(measurement_type, "measurement type")])


def pmd_start_ecg_command(rate_hz: int = 130, resolution_bits: int = 14) -> bytes:
    """Control-point write that starts ECG: op, type, then (setting type, count=1, u16 value) pairs."""
    return struct.pack(
        "<BBBBHBBH",
        PMD_OP_START,
        PMD_MEASUREMENT_ECG,
        PMD_SETTING_SAMPLE_RATE,
        1,
        _u16(rate_hz, "ECG sample rate"),
        PMD_SETTING_RESOLUTION,
        1,
        _u16(resolution_bits, "ECG resolution"),
    )


def pmd_stop_command(measurement_type: int = PMD_MEASUREMENT_ECG) -> bytes:
    """Control-point write that stops a measurement."""
    return bytes([PMD_OP_STOP, _u8(measurement_type, "measurement type")])


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


# --- Open EMG (devices/open-emg.md) ------------------------------------------------------------

OPEN_EMG_PROTOCOL_VERSION = 1
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


def decode_open_emg_info(data: bytes | bytearray | memoryview) -> OpenEmgInfo:
    """Decode the Info characteristic (12 bytes; bytes a newer minor version appends are ignored)."""
    raw = bytes(data)
    if len(raw) < OPEN_EMG_INFO_BYTES:
        raise DecodeError(f"Open EMG info: {len(raw)} bytes, need at least {OPEN_EMG_INFO_BYTES}")
    version, channels, rate, adc_bits, kind, per_frame, _reserved, nv_per_lsb = _INFO.unpack_from(raw)
    if version != OPEN_EMG_PROTOCOL_VERSION:
        raise DecodeError(
            f"Open EMG info: protocol version {version}, this program speaks "
            f"{OPEN_EMG_PROTOCOL_VERSION} (update biofeedback or the sensor's firmware)"
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
        _u16(sample_rate_hz, "sample rate"),
        _u8(channel_mask, "channel mask"),
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


def decode_open_emg_frame(data: bytes | bytearray | memoryview, channels: int) -> OpenEmgFrame:
    """Decode a Data notification holding ``channels`` enabled channels."""
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")
    raw = bytes(data)
    set_bytes = 2 * channels
    need = OPEN_EMG_FRAME_HEADER_BYTES + set_bytes
    if len(raw) < need:
        raise DecodeError(f"Open EMG frame: {len(raw)} bytes, {channels} channels need at least {need}")
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
