"""BITalino (r)evolution over BLE ("bitalino"): commands, frame decoder, stream reassembly, ``BitalinoDriver``, ``SPEC``.

Written from PLUX's Android API (github.com/BITalinoWorld/revolution-android-api, ``api/src/main/java/info/plux/
pluxapi/bitalino/``: ``BITalino.java`` for the one-byte commands, ``BITalinoCommunication.java`` for the frame
length, ``BITalinoFrameDecoder.java`` for the bit layout, ``BITalinoCRC.java`` for the CRC-4,
``BITalinoStateDecoder.java`` for the state reply, ``ble/BLECommunication.java`` and ``ble/PluxGattAttributes.java``
for the GATT side: one service, a command characteristic the client writes and a frame characteristic that
notifies). Our own words for what those files say:

- Commands are one byte: STOP ``0x00``; SET RATE ``0x03 | code << 6`` (code 0-3 for 1, 10, 100, 1000 Hz); START
  ``0x01 | mask << 2`` (bit i of the mask enables analog channel A(i+1)); VERSION ``0x07`` (the answer is text such
  as ``BITalino_v5.2``, on the frame characteristic); STATE ``0x0B`` (firmware 5 and later; 16 bytes, 17 from 5.2).
- While acquiring the device streams fixed-length frames, one per sample period, as a byte stream cut into
  notifications wherever the link packet ends: a frame can be split across two notifications. A frame with k
  enabled channels is ``ceil((12 + 10 k) / 8)`` bytes for k <= 4 and ``ceil((52 + 6 (k - 4)) / 8)`` above; read from
  its last byte backwards: the last byte holds the 4-bit sequence number (high nibble) and the CRC-4 (low nibble),
  the byte before it the four digital inputs (high nibble) and the top of the first analog value; the enabled
  channels follow in ascending order, the first four slots 10-bit and the fifth and sixth 6-bit.
- The CRC-4 (polynomial x^4 + x + 1, initial value 0) runs over the whole frame, nibble by nibble from the first
  byte's high nibble, with the CRC nibble itself taken as zero.

The frames carry no device time and a sequence number that wraps every 16 frames (16 ms at 1 kHz). The driver
counts samples from START: a frame whose sequence number does not follow, or frames after bytes that had to be
skipped to find the frame boundaries again, are after a gap; its length in frames is the sequence jump plus the
multiple of 16 that the bytes say when the board's notifications are all of one size (``frames_lost_by_bytes``),
else, and after a reconnect, what the arrival time says (``frames_lost``). Sample times come from the sample count through the
drift fit (``SampledDriver``), as for devices with a clock. ADC counts become µV through PLUX's published EMG and
ECG sensor transfer functions (``store.importers.TRANSFER``: BITalino EMG VCC 3.3 V, G 1009; ECG VCC 3.3 V,
G 1100). Heart beats are found in the ECG channel by the live R-peak detector (``dsp.ecg.LiveRPeakDetector``) and
handed on as an RR stream, so a BITalino alone gives tension and HRV. The device side, written from the same
sources without this code, is ``VirtualBitalino`` in ``sensors/virtual/bitalino.py``.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from biofeedback.dsp.ecg import LiveRPeakDetector
from biofeedback.sensors.protocols.base import DecodeError, ProtocolSpec, SampledDriver
from biofeedback.sensors.source import SensorError
from biofeedback.sensors.timing import CONTROL_RESPONSE_TIMEOUT_S, FrameMark
from biofeedback.store.importers import TRANSFER
from biofeedback.stream import NS_PER_S, Block, BlockFlag, Gap, StreamKind

if TYPE_CHECKING:
    from bleak import BleakClient

    from biofeedback.sensors.ble import BleSource

BITALINO_CMD_STOP = 0x00
BITALINO_CMD_VERSION = 0x07
BITALINO_CMD_STATE = 0x0B
BITALINO_RATES_HZ = (1, 10, 100, 1000)
"""The sample rates the device offers; the index is the code in the SET RATE command."""
BITALINO_ANALOG_CHANNELS = 6
BITALINO_SEQ_MODULO = 16
BITALINO_SYNC_FRAMES = 3
"""Frames in a row whose CRC passes and whose sequence numbers follow one another before the frame boundaries are
trusted (after START, after a CRC failure or a sequence break): a misaligned window passes all three with
probability (1/16)**3 * (1/16)**2."""
BITALINO_STATE_BYTES = (16, 17)
"""State reply lengths: firmware before 5.2, and 5.2 on (one byte more: the analog output)."""
LOSS_EARLY_FRAMES = 4.0
"""``frames_lost``: how many frames the drift fit may place a frame later than it was really sent."""
LOSS_DECIDE_S = 0.25
"""Session seconds of frames held after a loss that only arrival time can measure (a reconnect, notifications of
varying size) before its length is decided (``BitalinoDriver._number``)."""
LOSS_DECIDE_NOTIFICATIONS = 8
"""... and at least this many notifications, the least late of which decides."""
PAYLOAD_LEARN_NOTIFICATIONS = 8
"""Notifications after START over which the board's notification size is learnt (the largest of them)."""
LOSS_MAX_S = 30.0
"""Longest loss (session seconds) a sequence jump is read as, without a reconnect."""
LOSS_HOLD_MAX_S = 1.0
"""Session seconds of frames held at most, however many losses keep the hold open."""
RR_DETECTOR_HISTORY_S = 6.0
"""Session seconds of (sample index, time) pairs kept to place the R peaks the detector finds."""

_CRC4_TABLE = tuple(((v << 1) ^ (0x3 if v & 0x8 else 0)) & 0xF for v in range(16))
"""x^4 + x + 1: the register shifted by one nibble position, reduced by the polynomial (each entry times x)."""


def _crc4_step(reg: int, nibble: int) -> int:
    for _ in range(4):
        reg = _CRC4_TABLE[reg]
    return reg ^ nibble


_CRC4_BYTE = tuple(tuple(_crc4_step(_crc4_step(reg, byte >> 4), byte & 0xF) for byte in range(256)) for reg in range(16))
"""The register after one whole byte (both nibbles), by register and byte: one lookup a byte."""


def bitalino_crc4(frame: bytes | bytearray) -> int:
    """CRC-4 (x^4 + x + 1, init 0) of a frame, its own CRC nibble (the low nibble of the last byte) taken as 0."""
    reg = 0
    for byte in frame[:-1]:
        reg = _CRC4_BYTE[reg][byte]
    return _CRC4_BYTE[reg][frame[-1] & 0xF0] if frame else 0


def bitalino_frame_bytes(channels: int) -> int:
    """Length of one frame with ``channels`` enabled analog channels (1-6)."""
    if not 1 <= channels <= BITALINO_ANALOG_CHANNELS:
        raise ValueError(f"a BITalino frame carries 1-6 analog channels, not {channels}")
    bits = 12 + 10 * channels if channels <= 4 else 52 + 6 * (channels - 4)
    return math.ceil(bits / 8)


def bitalino_slot_bits(slot: int) -> int:
    """Resolution of the ``slot``-th value in a frame (0-based): 10 bits for the first four, 6 for the fifth and sixth."""
    return 10 if slot < 4 else 6


def bitalino_rate_command(rate_hz: int) -> bytes:
    """SET RATE: ``0x03 | code << 6``, code the index of ``rate_hz`` in 1, 10, 100, 1000 Hz."""
    if rate_hz not in BITALINO_RATES_HZ:
        raise ValueError(f"BITalino sample rate {rate_hz} Hz: the device offers 1, 10, 100 or 1000 Hz")
    return bytes([0x03 | BITALINO_RATES_HZ.index(rate_hz) << 6])


def bitalino_start_command(analog_channels: tuple[int, ...]) -> bytes:
    """START: ``0x01 | mask << 2``; ``analog_channels`` are 1-based (A1 = 1 ... A6 = 6)."""
    if not analog_channels or any(not 1 <= c <= BITALINO_ANALOG_CHANNELS for c in analog_channels):
        raise ValueError(f"BITalino analog channels {analog_channels}: give one or more of 1-6 (A1-A6)")
    mask = sum(1 << (c - 1) for c in set(analog_channels))
    return bytes([0x01 | mask << 2])


def bitalino_stop_command() -> bytes:
    return bytes([BITALINO_CMD_STOP])


def bitalino_version_command() -> bytes:
    return bytes([BITALINO_CMD_VERSION])


def bitalino_state_command() -> bytes:
    return bytes([BITALINO_CMD_STATE])


@dataclass(frozen=True, eq=False)
class BitalinoFrame:
    """One decoded frame."""

    seq: int
    """4-bit sequence number, 0-15."""
    digital: tuple[int, int, int, int]
    """Digital inputs I1, I2, O1, O2 as the frame carries them (bits 7-4 of the second-to-last byte)."""
    analog: tuple[int, ...]
    """ADC counts of the enabled channels, lowest channel first (10-bit for the first four, 6-bit after)."""
    resynced: bool = False
    """Bytes were skipped, or the sequence broke, just before this frame (``BitalinoFrameReader``)."""
    offset: int = -1
    """Where the frame starts in the byte stream as received (``BitalinoFrameReader``), bytes."""


def decode_bitalino_frame(frame: bytes | bytearray, channels: int) -> BitalinoFrame:
    """Decode one frame of ``channels`` enabled channels; a wrong length or CRC is a ``DecodeError``."""
    raw = bytes(frame)
    need = bitalino_frame_bytes(channels)
    if len(raw) != need:
        raise DecodeError(f"BITalino frame: {len(raw)} bytes, {channels} channels make {need}")
    sent, crc = raw[-1] & 0xF, bitalino_crc4(raw)
    if sent != crc:
        raise DecodeError(f"BITalino frame: CRC-4 0x{sent:x}, the frame's bytes give 0x{crc:x}")
    # Read the frame as one little-endian integer: the value bits run from the top (after seq, CRC, digital) down.
    word = int.from_bytes(raw, "little")
    top = 8 * len(raw)
    seq = word >> (top - 4) & 0xF
    digital = tuple(word >> (top - 9 - i) & 1 for i in range(4))
    pos = top - 12
    analog = []
    for slot in range(channels):
        bits = bitalino_slot_bits(slot)
        pos -= bits
        analog.append(word >> pos & ((1 << bits) - 1))
    return BitalinoFrame(seq=seq, digital=digital, analog=tuple(analog))  # type: ignore[arg-type]


class BitalinoFrameReader:
    """Cuts the notified byte stream back into frames: joins split frames, counts CRC failures, finds the frame
    boundaries again after lost or damaged bytes.

    In step, each ``frame_bytes`` bytes are one frame, taken once the frame after it has arrived and follows it (CRC
    and sequence): garbage that passes one CRC-4 and one sequence check (1 in 256) is never taken alone. A frame
    that fails, or is not followed, drops the reader out of step; the last good frame before damaged bytes is then
    given up with them (the gap counts it). Out of step, it looks for the first offset at which ``BITALINO_SYNC_FRAMES``
    frames in a row pass their CRC with following sequence numbers, skips (and counts) the bytes before it and
    marks the next frame ``resynced``.
    """

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self.frame_bytes = bitalino_frame_bytes(channels)
        self.crc_errors = 0
        """Frames whose CRC failed while in step."""
        self.skipped_bytes = 0
        """Bytes thrown away to find the frame boundaries again."""
        self._buf = bytearray()
        self._in_step = False
        self._last_seq: int | None = None
        self._resynced = False
        self._pos = 0
        """Stream offset of the first byte held: bytes fed (and declared missing, ``gap``) before it."""
        self._next: BitalinoFrame | None = None
        """The frame after the first, decoded as the first's look-ahead (decoded once, not twice)."""

    def reset(self) -> None:
        """A new acquisition (START after a reconnect): forget the bytes, the sequence and the offset."""
        self._next = None
        self._buf.clear()
        self._in_step = False
        self._last_seq = None
        self._resynced = False
        self._pos = 0

    def gap(self, missing: int) -> None:
        """``missing`` bytes of the stream are known lost here: the bytes held are given up and the next frame is
        looked for afresh."""
        self._pos += len(self._buf) + missing
        self.skipped_bytes += len(self._buf)
        self._buf.clear()
        self._next = None
        self._in_step = False
        self._resynced = True

    def _drop(self, n: int) -> None:
        """Take ``n`` bytes off the front; ``_next`` (the frame decoded at ``frame_bytes``) is kept only when
        whole frames go."""
        del self._buf[:n]
        self._pos += n
        if n != self.frame_bytes:
            self._next = None

    def _try(self, at: int) -> BitalinoFrame | None:
        try:
            return decode_bitalino_frame(self._buf[at:at + self.frame_bytes], self.channels)
        except DecodeError:
            return None

    def _find_step(self) -> bool:
        n, need = self.frame_bytes, self.frame_bytes * BITALINO_SYNC_FRAMES
        for at in range(0, len(self._buf) - need + 1):
            frames = [self._try(at + k * n) for k in range(BITALINO_SYNC_FRAMES)]
            if all(f is not None for f in frames) and all(
                    (b.seq - a.seq) % BITALINO_SEQ_MODULO == 1 for a, b in zip(frames, frames[1:])):
                if at or self._last_seq is not None or self._resynced:
                    # The first window of the three may straddle the bytes around the loss: the head of one frame
                    # and the tail of the one before the first good frame, whose sequence then fits; only its CRC-4
                    # (1 in 16) would stand between it and the data. So it is given up too.
                    self._resynced = True
                    at += n
                self.skipped_bytes += at
                self._drop(at)
                self._in_step = True
                self._last_seq = None
                return True
        drop = max(0, len(self._buf) - need + 1)
        self.skipped_bytes += drop
        self._drop(drop)
        return False

    def feed(self, data: bytes | bytearray) -> list[BitalinoFrame]:
        """The whole frames that ``data`` completes, oldest first."""
        self._buf += data
        out: list[BitalinoFrame] = []
        while True:
            if not self._in_step and not self._find_step():
                return out
            if len(self._buf) < 2 * self.frame_bytes:
                return out
            frame = self._next if self._next is not None else self._try(0)
            after = self._next = self._try(self.frame_bytes)
            follows = frame is not None and (self._last_seq is None
                                             or frame.seq == (self._last_seq + 1) % BITALINO_SEQ_MODULO)
            if not (follows and after is not None and after.seq == (frame.seq + 1) % BITALINO_SEQ_MODULO):
                if frame is None or after is None:
                    self.crc_errors += 1
                self._next = None
                self._in_step = False
                self._resynced = True
                continue
            frame = BitalinoFrame(frame.seq, frame.digital, frame.analog, resynced=self._resynced, offset=self._pos)
            self._resynced = False
            self._drop(self.frame_bytes)
            self._last_seq = frame.seq
            out.append(frame)


@dataclass(frozen=True)
class BitalinoState:
    """The STATE reply: analog inputs, battery, battery threshold, analog output, digital inputs."""

    analog: tuple[int, ...]
    """A1-A6, ADC counts."""
    battery: int
    """Battery voltage, ADC counts."""
    battery_threshold: int
    analog_output: int | None
    """PWM output 0-255 (firmware 5.2 on), else None."""
    digital: tuple[int, int, int, int]


def decode_bitalino_state(data: bytes | bytearray) -> BitalinoState:
    """Decode a 16-byte (firmware < 5.2) or 17-byte STATE reply; its last byte carries a CRC-4 as a frame's does."""
    raw = bytes(data)
    if len(raw) not in BITALINO_STATE_BYTES:
        raise DecodeError(f"BITalino state: {len(raw)} bytes, expected 16 or 17")
    sent, crc = raw[-1] & 0xF, bitalino_crc4(raw)
    if sent != crc:
        raise DecodeError(f"BITalino state: CRC-4 0x{sent:x}, the bytes give 0x{crc:x}")
    analog = tuple(int.from_bytes(raw[10 - 2 * i:12 - 2 * i], "little") for i in range(6))
    with_output = len(raw) == 17
    return BitalinoState(analog=analog, battery=int.from_bytes(raw[12:14], "little"), battery_threshold=raw[14],
                         analog_output=raw[15] if with_output else None,
                         digital=tuple(raw[-1] >> (7 - i) & 1 for i in range(4)))  # type: ignore[arg-type]


def decode_bitalino_version(data: bytes | bytearray) -> float:
    """The firmware version in a VERSION reply (``BITalino_v5.2`` and a line end): 5.2."""
    text = bytes(data).decode("ascii", errors="replace").strip()
    head, sep, number = text.rpartition("_v")
    try:
        if not sep or not head:
            raise ValueError
        return float(number)
    except ValueError:
        raise DecodeError(f"BITalino version reply {text[:40]!r}: expected text like 'BITalino_v5.2'") from None


def frames_lost(seq_jump: int, late_s: float, rate_hz: float, resynced: bool) -> int:
    """Frames lost before a frame whose sequence number is ``seq_jump`` (mod 16) past the one expected.

    ``late_s``: how far the frame's arrival is behind the time the drift fit gives it if nothing was lost (session
    seconds). The loss is ``seq_jump + 16 k``. Arrival is late by the link's delay, never early by more than the
    fit's error, so the arrival's estimate is an upper bound: k is the largest whose loss is within
    ``LOSS_EARLY_FRAMES`` above it (a delay up to 16 - 4 = 12 frames is read right). With no sequence jump and no
    bytes skipped nothing was lost: frames delivered in order with their CRC are consecutive.
    """
    if seq_jump == 0 and not resynced:
        return 0
    k = max(0, math.floor((late_s * rate_hz + LOSS_EARLY_FRAMES - seq_jump) / BITALINO_SEQ_MODULO))
    return seq_jump + BITALINO_SEQ_MODULO * k


def frames_lost_by_bytes(jump: int, step_bytes: int, frame_bytes: int, payload_bytes: int, most: int) -> int | None:
    """Frames lost between two frames ``step_bytes`` apart in the bytes received, the later one's sequence
    ``jump`` (mod 16) past the one expected, from a board that sends notifications of ``payload_bytes`` each.

    Whole notifications go missing, so the true distance, ``(1 + lost) * frame_bytes``, is the bytes received
    plus a multiple of ``payload_bytes``; with ``lost = jump + 16 k`` that leaves one count in every
    ``16 * payload / gcd(16 * frame_bytes, payload)`` frames (208 for 39-byte notifications of 6-byte frames). The
    smallest is taken: arrival time on a busy host lags by more than that (0.2-0.4 s measured at load 10 on 2
    cores), while a link that stays up rarely loses so many notifications in a row. None when no count up to
    ``most`` fits (the notifications were not all of one size).
    """
    for lost in range(jump, most + 1, BITALINO_SEQ_MODULO):
        extra = (1 + lost) * frame_bytes - step_bytes
        if extra >= 0 and extra % payload_bytes == 0:
            return lost
    return None


@dataclass(eq=False)
class _Run:
    """Consecutive frames of one notification, numbered from ``first_index``; ``loss``: frames the sequence says were
    lost before them (-1: unknown, after a reconnect), None when they follow the frame before."""

    first_index: int
    loss: int | None
    raw: bytes
    host_ns: int
    frames: list[BitalinoFrame] = field(default_factory=list)
    ends_notification: bool = False


class BitalinoDriver(SampledDriver):
    """BITalino (r)evolution BLE: version, rate, START with the channel mask; frames reassembled, counted, placed."""

    stream = StreamKind.EMG

    def __init__(self, source: BleSource) -> None:
        settings = source.profile.settings
        rate = int(settings.get("sample_rate_hz", 1000))
        super().__init__(source, float(rate))
        where = source.profile.path.name
        if rate not in BITALINO_RATES_HZ:
            raise SensorError(f"{where}: settings.sample_rate_hz {rate}: a BITalino offers 1, 10, 100 or 1000 Hz")
        self.emg_inputs = tuple(int(settings[k]) for k in ("emg_left_input", "emg_right_input") if k in settings)
        self.ecg_input = int(settings["ecg_input"]) if "ecg_input" in settings else None
        inputs = (*self.emg_inputs, *(() if self.ecg_input is None else (self.ecg_input,)))
        if not inputs or len(set(inputs)) != len(inputs) or any(not 1 <= c <= 6 for c in inputs):
            raise SensorError(f"{where}: settings emg_left_input, emg_right_input, ecg_input must name distinct "
                              f"analog inputs 1-6 (A1-A6), got {inputs}")
        self.inputs = tuple(sorted(inputs))
        """Enabled analog inputs (1-based), in the order their values sit in a frame."""
        self.emg_channels = source.profile.stream(StreamKind.EMG).channels if self.emg_inputs else ()
        self.reader = BitalinoFrameReader(len(self.inputs))
        self.version: float | None = None
        self.battery_counts: int | None = None
        self._acquiring = False
        self._replies: asyncio.Queue[bytes] = asyncio.Queue()
        self.next_index: int | None = None
        """Sample index (since the first START) the next frame has when nothing is lost."""
        self._last_seq: int | None = None
        self._crc_seen = 0
        self._held: list[_Run] = []
        self._payload: int | None = None
        """Bytes per notification of this acquisition (the largest of its first few); 0 once they vary."""
        self._notifications = 0
        self._ref_offset: int | None = None
        """Stream offset of the newest frame placed, in this acquisition."""
        self._detector = None if self.ecg_input is None else LiveRPeakDetector(float(rate))
        """Made here, not on the first block: its first construction takes ~0.4 s (filter design, compiled code)."""
        self._detector_first = 0
        self._history: deque[tuple[int, float]] = deque()
        self._last_beat_s: float | None = None
        self._beat_gap: tuple[float, str] | None = None

    async def setup(self, client: BleakClient) -> None:
        p = self.profile
        self._acquiring = False
        self._replies = asyncio.Queue()
        await client.start_notify(p.uuid("bitalino", "frames"), self._on_frames)
        command = p.uuid("bitalino", "commands")
        await client.write_gatt_char(command, bitalino_stop_command(), response=True)  # idle, whatever it was doing
        await client.write_gatt_char(command, bitalino_version_command(), response=True)
        self.version = decode_bitalino_version(await self._reply("version"))
        self.source.status.device_info["firmware"] = f"BITalino v{self.version:g}"
        if self.version >= 5:
            await client.write_gatt_char(command, bitalino_state_command(), response=True)
            state = decode_bitalino_state(await self._reply("state"))
            self.battery_counts = state.battery
        await client.write_gatt_char(command, bitalino_rate_command(int(self.nominal_rate_hz)), response=True)
        self.reader.reset()
        self._payload = self._ref_offset = None
        self._notifications = 0
        self._acquiring = True
        await client.write_gatt_char(command, bitalino_start_command(self.inputs), response=True)
        self.source.status.rate_hz[StreamKind.EMG] = self.nominal_rate_hz

    async def _reply(self, what: str) -> bytes:
        try:
            return await asyncio.wait_for(self._replies.get(), CONTROL_RESPONSE_TIMEOUT_S)
        except asyncio.TimeoutError as exc:
            raise SensorError(f"{self.source.name}: no answer to the {what} command; switch the BITalino off and "
                              "on") from exc

    def timing_report(self) -> dict[str, dict]:
        """Rate, firmware and what the byte stream cost: CRC failures and bytes skipped to find the frames again."""
        return {StreamKind.EMG: {"nominal_rate_hz": self.nominal_rate_hz, "firmware_version": self.version,
                                 "crc_errors": self.reader.crc_errors, "skipped_bytes": self.reader.skipped_bytes}}

    def on_link_lost(self) -> None:
        self._decide()
        super().on_link_lost()
        self._acquiring = False
        self._last_seq = None

    def _on_frames(self, _char: Any, data: bytearray) -> None:
        host_ns = self.clock.now_ns()
        if not self._acquiring:
            self._replies.put_nowait(bytes(data))
            return
        raw = bytes(data)
        frames = self.reader.feed(raw)
        self._notifications += 1
        if self._payload is None:
            self._payload = len(raw)
        elif self._payload and len(raw) < self._payload:  # a damaged notification: its bytes count as lost
            self.source.decode_error(DecodeError(f"BITalino notification of {len(raw)} bytes, the board sends "
                                                 f"{self._payload}"))
            self.reader.gap(self._payload - len(raw))
        elif len(raw) > self._payload:  # the first was short (damaged), or the board's notifications vary
            self._payload = len(raw) if self._notifications <= PAYLOAD_LEARN_NOTIFICATIONS else 0
        for _ in range(self.reader.crc_errors - self._crc_seen):
            self.source.decode_error(DecodeError("BITalino frame: CRC-4 failed"))
        self._crc_seen = self.reader.crc_errors
        if frames:
            self._number(frames, raw, host_ns)

    def _number(self, frames: list[BitalinoFrame], raw: bytes, host_ns: int) -> None:
        """Number a notification's frames, cut them into runs at each loss, and take or hold each run.

        A loss whose length the sequence cannot say alone (a sequence jump, bytes skipped, a reconnect) starts a
        hold: the runs after it are numbered as if only the jump was lost, and held until ``LOSS_DECIDE_S`` of them
        has arrived; then the least late of their notifications says how many times 16 frames more were lost
        (``frames_lost``; the lower envelope of arrival, as the drift fit takes it, so one late notification does
        not decide).
        """
        runs: list[_Run] = []
        for f in frames:
            loss: int | None = None
            if self.next_index is None:
                self.next_index = 0
            elif self._last_seq is None:
                loss = -1  # after a reconnect: no sequence to go by
            else:
                jump = (f.seq - self._last_seq - 1) % BITALINO_SEQ_MODULO
                if jump or f.resynced:
                    loss = jump
            if loss is not None or not runs:
                runs.append(_Run(self.next_index + max(loss or 0, 0), loss, raw, host_ns))
            runs[-1].frames.append(f)
            self.next_index = runs[-1].first_index + len(runs[-1].frames)
            self._last_seq = f.seq
        runs[-1].ends_notification = True
        for run in runs:
            if run.loss is not None or self._held:
                self._held.append(run)
            else:
                self._place_run(run)
        if not self._held:
            return
        fs = self.nominal_rate_hz
        last = max(i for i, r in enumerate(self._held) if r.loss is not None)
        tail = self._held[last:]
        counted = self._payload and self._ref_offset is not None and all(r.loss != -1 for r in self._held)
        if counted or (sum(len(r.frames) for r in tail) >= max(1.0, LOSS_DECIDE_S * fs)
                and sum(r.ends_notification for r in tail) >= LOSS_DECIDE_NOTIFICATIONS) \
                or sum(len(r.frames) for r in self._held) > LOSS_HOLD_MAX_S * fs:
            self._decide()

    def _late_frames(self, run: _Run, extra: int) -> float:
        """How many frames after the fit's time for its last frame a run's notification arrived (``extra`` more lost)."""
        fs = self.nominal_rate_hz
        return (run.host_ns / NS_PER_S - float(self.fit.to_host((run.first_index + extra + len(run.frames) - 1) / fs))) * fs

    def _decide(self) -> None:
        """Say how long each loss in the hold was, renumber the held runs by it and take them.

        The runs after a loss, up to the next, are its segment; a loss is bounded by the least late notification
        of its segment and of every later one (each later segment lies behind it by at least its loss).
        """
        if not self._held:
            return
        held, self._held = self._held, []
        fs = self.nominal_rate_hz
        starts = [i for i, r in enumerate(held) if r.loss is not None] + [len(held)]
        extra = 0
        for a, b in zip(starts, starts[1:]):
            loss = held[a].loss
            if self.prev_end is None:  # nothing placed yet: nothing to measure the loss against
                more = 0
            else:
                late = min((self._late_frames(r, extra) for r in held[a:] if r.ends_notification), default=0.0)
                jump = max(loss or 0, 0)
                more = max(0, round(late)) if loss == -1 else self._frames_lost(jump, late, held[a]) - jump
            extra += more
            for run in held[a:b]:
                run.first_index += extra
                self._place_run(run)
        if self.next_index is not None:
            self.next_index += extra

    def _frames_lost(self, jump: int, late: float, run: _Run) -> int:
        """Frames lost before ``run``, whose sequence jumped by ``jump`` and whose notifications came ``late`` frames
        after the fit's time for them: counted from the bytes (``frames_lost_by_bytes``) when the board's
        notifications have one size, else from the arrival (``frames_lost``)."""
        fs = self.nominal_rate_hz
        if self._payload and self._ref_offset is not None and run.frames[0].offset >= 0:
            lost = frames_lost_by_bytes(jump, run.frames[0].offset - self._ref_offset, self.reader.frame_bytes,
                                        self._payload, int(LOSS_MAX_S * fs))
            if lost is not None:
                return lost
        return frames_lost(jump, (late + jump) / fs, fs, resynced=True)

    def _place_run(self, run: _Run) -> None:
        """Place a run of consecutive frames in session time (the gap before it included) and hand it on."""
        fs, n = self.nominal_rate_hz, len(run.frames)
        if run.ends_notification:
            self.fit.add((run.first_index + n - 1) / fs, run.host_ns / NS_PER_S)
        lost = None if self.anchor is None else run.first_index - (self.anchor.first_index + self.anchor.n)
        reason = "disconnect" if self.link_lost else "dropped-packets"
        times = self.place(run.first_index / fs, n, 1.0 / fs, lost)
        self.anchor = FrameMark(run.first_index / fs, (run.first_index + n - 1) / fs, run.host_ns / NS_PER_S, n,
                                run.first_index)
        self._ref_offset = run.frames[-1].offset
        counts = np.array([f.analog for f in run.frames], dtype=float)
        self._emit(counts, run.first_index, times, run.raw, run.host_ns, after_gap=bool(lost), reason=reason)

    def _emit(self, counts: np.ndarray, first_index: int, times: np.ndarray, raw: bytes, host_ns: int,
              after_gap: bool, reason: str) -> None:
        fs, src = self.nominal_rate_hz, self.source.name
        flags = BlockFlag.AFTER_GAP if after_gap else 0
        slot = {c: i for i, c in enumerate(self.inputs)}
        if self.emg_inputs:
            cols = [slot[c] for c in self.emg_inputs]
            uv = np.column_stack([TRANSFER[("bitalino", StreamKind.EMG)].to_uv(counts[:, c], bitalino_slot_bits(c))
                                  for c in cols])
            saturated = any(np.any((counts[:, c] <= 0) | (counts[:, c] >= (1 << bitalino_slot_bits(c)) - 1))
                            for c in cols)
            self.source.emit(Block(StreamKind.EMG, src, host_ns, uv, rate_hz=fs, first_index=first_index,
                                   flags=flags | (BlockFlag.SATURATED if saturated else 0),
                                   channels=self.emg_channels, raw=raw, times_s=times))
        if self.ecg_input is not None:
            c = slot[self.ecg_input]
            ecg = TRANSFER[("bitalino", StreamKind.ECG)].to_uv(counts[:, c], bitalino_slot_bits(c))
            self.source.emit(Block(StreamKind.ECG, src, host_ns, ecg.reshape(-1, 1), rate_hz=fs,
                                   first_index=first_index, flags=flags, channels=("ecg",), raw=raw, times_s=times))
            self._beats(ecg, first_index, times, host_ns, reason)

    def _beats(self, ecg_uv: np.ndarray, first_index: int, times: np.ndarray, host_ns: int, reason: str) -> None:
        """R peaks of the ECG channel as RR intervals at their session times; a sample gap restarts the detector."""
        fs = self.nominal_rate_hz
        last = self._history[-1][0] if self._history else None
        if last is None or first_index != last + 1:
            if self._last_beat_s is not None:
                self._beat_gap = (self._last_beat_s, reason)
            self._detector.reset()
            self._detector_first = first_index
            self._history.clear()
        self._history.append((first_index, float(times[0])))
        self._history.append((first_index + len(times) - 1, float(times[-1])))
        while self._history and self._history[0][1] < times[-1] - RR_DETECTOR_HISTORY_S:
            self._history.popleft()
        beats = self._detector.process(ecg_uv)
        keep = np.isfinite(beats.rr_ms)
        if not keep.any():
            return
        idx, t = zip(*self._history)
        beat_t = np.interp(self._detector_first + beats.times_s[keep] * fs, idx, t)
        if self._beat_gap is not None:
            start, reason = self._beat_gap
            first_beat_start = float(beat_t[0] - beats.rr_ms[keep][0] / 1000.0)
            self.source.gap(Gap(StreamKind.RR, self.source.name, start, max(start, first_beat_start), reason))
            self._beat_gap = None
        self._last_beat_s = float(beat_t[-1])
        self.source.emit(Block(StreamKind.RR, self.source.name, host_ns, beats.rr_ms[keep].reshape(-1, 1),
                               channels=("rr",), times_s=beat_t))


SPEC = ProtocolSpec(
    name="bitalino",
    gatt_table="bitalino",
    roles=("service", "commands", "frames"),
    streams=(StreamKind.EMG, StreamKind.ECG, StreamKind.RR),
    settings={"sample_rate_hz": "u16"},
    driver=BitalinoDriver,
    rate_setting=(StreamKind.EMG, "sample_rate_hz"),
)
