"""A virtual BITalino (r)evolution BLE board, from PLUX's Android API sources (not from our decoder).

Written from github.com/BITalinoWorld/revolution-android-api (``BITalino.java``: the one-byte commands;
``BITalinoCommunication.java``: frame length; ``BITalinoFrameDecoder.java``: where each value sits, counted from
the frame's last byte; ``BITalinoCRC.java``: CRC-4 with x^4 + x + 1 over the frame, its own nibble as zero;
``BITalinoStateDecoder.java``: the state reply; ``ble/BLECommunication.java``: the version and state replies and
the frames all arrive on the frames characteristic). The CRC here is the remainder of the frame (read as one
big-endian number, CRC nibble zero) divided by x^4 + x + 1 over GF(2): the same value PLUX's nibble table gives.

The board is wired as a therapist would plug it: EMG sensors on A1 (left trapezius) and A2 (right), the ECG sensor
on A3; A4-A6 read an open input (mid-scale and noise). Sensor voltages become ADC counts by the inverse of PLUX's
data-sheet transfer functions (EMG: VCC 3.3 V, G 1009; ECG: VCC 3.3 V, G 1100). While acquiring, the frames are one
byte stream packed into notifications of ``payload_bytes`` (not a multiple of the frame length, so frames are split
across notifications as on the real board).
"""

from __future__ import annotations

import asyncio
import math

import numpy as np
from bumble import gatt
from bumble.core import UUID

from biofeedback.sensors.virtual.peripherals import PacketFate, VirtualPeripheral, gatt_characteristic
from biofeedback.sensors.virtual.signals import BeatGenerator, EmgBody, EmgSynth, HeartScript, TensionScript, ecg_uv

VCC_V = 3.3
EMG_GAIN = 1009.0
ECG_GAIN = 1100.0
RATES_HZ = {0: 1, 1: 10, 2: 100, 3: 1000}
"""SET RATE code (bits 7-6 of ``xx000011``) -> Hz."""
FIRMWARE = b"BITalino_v5.2\n"
WIRING = {1: "emg-left", 2: "emg-right", 3: "ecg"}
"""Analog input (A1-A6) -> the sensor plugged into it."""
CRC_POLY = 0b10011
"""x^4 + x + 1."""


def crc4_gf2(frames: np.ndarray) -> np.ndarray:
    """Per row of ``frames`` (n, length) bytes: the remainder of the frame read as one big-endian number, the low
    nibble of its last byte cleared, modulo x^4 + x + 1 (long division over GF(2), a byte at a time, all rows at
    once)."""
    frames = np.asarray(frames, dtype=np.int64)
    rem = np.zeros(len(frames), dtype=np.int64)
    for i, column in enumerate(frames.T):
        value = rem << 8 | (column & 0xF0 if i == frames.shape[1] - 1 else column)
        for bit in range(11, 3, -1):
            value ^= ((value >> bit) & 1) * (CRC_POLY << (bit - 4))
        rem = value
    return rem


def volts_to_counts(uv: np.ndarray, gain: float, bits: int = 10) -> np.ndarray:
    """µV at the electrodes -> ADC counts: ``ADC = (V * G / VCC + 1/2) * 2**bits``, clipped to the ADC's range."""
    counts = np.round((np.asarray(uv) * 1e-6 * gain / VCC_V + 0.5) * 2 ** bits)
    return np.clip(counts, 0, 2 ** bits - 1).astype(np.int64)


def frame_length(channels: int) -> int:
    bits = 12 + 10 * channels if channels <= 4 else 52 + 6 * (channels - 4)
    return -(-bits // 8)


class VirtualBitalino(VirtualPeripheral):
    """BITalino (r)evolution BLE with two EMG sensors and one ECG sensor plugged in."""

    model = "BITalino (r)evolution BLE (virtual)"

    def __init__(self, *args, tension: TensionScript | None = None, heart: HeartScript | None = None,
                 payload_bytes: int = 20, keep_truth: bool = False, body: EmgBody | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tension = tension or TensionScript.constant(40.0, 30.0)
        self.body = body
        self.beats = BeatGenerator(heart or HeartScript(), self.rng)
        self.beat_times_s: list[float] = []
        """Every beat the heart made (generated ahead, so the ECG can draw it): the truth the RR stream is checked on."""
        props = gatt.Characteristic.Properties
        p = self.profile
        self.commands = gatt_characteristic(p.uuid("bitalino", "commands"), props.WRITE | props.WRITE_WITHOUT_RESPONSE,
                                            gatt.CharacteristicValue(write=self._on_command))
        self.frames = gatt_characteristic(p.uuid("bitalino", "frames"), props.NOTIFY)
        self.device.add_service(gatt.Service(UUID(p.uuid("bitalino", "service")), [self.commands, self.frames]))
        self.rate_hz = 1000
        self.synth = EmgSynth(self.rate_hz, self.tension, self.rng, body=self.body)
        self.payload_bytes = payload_bytes
        self.inputs: tuple[int, ...] = ()
        self.acquiring = False
        self._next_index = 0
        """Sample index since power-on of the next sample the ADC takes (it runs whether or not it streams)."""
        self._seq = 0
        self._fifo = bytearray()
        self._stream_pos = 0
        """Bytes of the current acquisition already taken out of the FIFO."""
        self.run = -1
        """Acquisitions started (START commands taken) less one."""
        self.keep_truth = keep_truth
        self.truth: list[tuple[int, int, int, tuple[int, ...]]] = []
        """Every frame streamed: (acquisition, its first byte in that acquisition's stream, sample index, counts)."""
        self.notifications: list[tuple[int, int, int, str]] = []
        """Every notification of frame bytes: (acquisition, first byte, end byte, ``PacketFate``)."""

    def tick_s(self) -> float:
        """One notification's worth of frames (of the wired inputs), so notifications go out as their bytes are ready,
        at an even pace, as the board's radio sends them."""
        return self.payload_bytes / (frame_length(len(WIRING)) * self.rate_hz)

    def _on_command(self, _connection, value: bytes) -> None:
        for byte in bytes(value):
            self._command(byte)

    def _command(self, byte: int) -> None:
        if byte == 0x00:
            self.acquiring = False
        elif self.acquiring:
            return  # in acquisition the firmware takes STOP only
        elif byte == 0x07:
            asyncio.ensure_future(self._reply(FIRMWARE))
        elif byte == 0x0B:
            asyncio.ensure_future(self._reply(self.state_reply()))
        elif byte & 0x3F == 0x03:
            rate = RATES_HZ[byte >> 6]
            if rate != self.rate_hz:
                self.rate_hz = rate
                self.synth = EmgSynth(rate, self.tension, self.rng, body=self.body)
                self._next_index = int(math.ceil(self.clock.now_s() * rate))
        elif byte & 0x03 == 0x01:
            mask = byte >> 2
            self.inputs = tuple(c for c in range(1, 7) if mask >> (c - 1) & 1)
            self.acquiring = True
            self.run += 1
            self._seq = 0
            self._fifo.clear()
            self._stream_pos = 0

    async def _reply(self, payload: bytes) -> None:
        await asyncio.sleep(0)
        if self.connection is not None:
            await self.device.notify_subscribers(self.frames, payload)

    def state_reply(self) -> bytes:
        """17 bytes (firmware 5.2): A6..A1 as u16 little-endian from the first byte, battery, threshold, PWM, then
        the digital inputs (high nibble) and the CRC-4 (low nibble)."""
        out = bytearray()
        for c in range(6, 0, -1):
            out += (512).to_bytes(2, "little") if c not in WIRING else (500 + c).to_bytes(2, "little")
        out += (890).to_bytes(2, "little") + bytes([0, 0, 0])
        out[-1] |= int(crc4_gf2(np.frombuffer(bytes(out), dtype=np.uint8)[None, :])[0])
        return bytes(out)

    def on_disconnected(self) -> None:
        self.acquiring = False

    def _inputs_uv(self, t: np.ndarray) -> dict[int, np.ndarray]:
        emg = self.synth.block(t)
        self.beat_times_s.extend(self.beats.until(float(t[-1]) + 1.0)[0].tolist())
        ecg = ecg_uv(t, np.array(self.beat_times_s[-12:]), self.rng)
        for c in (0, 1):
            if self.faults.electrode_off_at(float(t[0]), c):
                emg[:, c] = 2e4  # the amplifier of an open electrode runs into its rail
        return {1: emg[:, 0], 2: emg[:, 1], 3: ecg}

    def counts(self, t: np.ndarray) -> np.ndarray:
        """ADC counts of the enabled inputs at device times ``t``, shape (n, inputs)."""
        uv = self._inputs_uv(t)
        cols = []
        for c in self.inputs:
            kind = WIRING.get(c)
            if kind is None:
                cols.append(np.clip(512 + self.rng.integers(-2, 3, t.size), 0, 1023))
            else:
                cols.append(volts_to_counts(uv[c], ECG_GAIN if kind == "ecg" else EMG_GAIN))
        return np.column_stack(cols)

    def encode_frames(self, counts: np.ndarray, first_seq: int) -> bytes:
        """Frames per ``BITalinoFrameDecoder.java``, bytes counted back from the last (j): j = seq << 4 | CRC;
        j-1 = digital << 4 | A1 >> 6; j-2 = (A1 & 0x3F) << 2 | A2 >> 8; j-3 = A2 & 0xFF; j-4 = A3 >> 2;
        j-5 = (A3 & 3) << 6 | A4 >> 4; j-6 = (A4 & 0xF) << 4 | A5 >> 2; j-7 = (A5 & 3) << 6 | A6 (A5, A6 6-bit)."""
        n, k = counts.shape
        a = np.zeros((n, 6), dtype=np.int64)
        a[:, :k] = counts
        a[:, 4:] &= 0x3F
        b = np.zeros((n, 8), dtype=np.int64)  # b[:, 7] is byte j
        b[:, 6] = a[:, 0] >> 6
        b[:, 5] = (a[:, 0] & 0x3F) << 2 | a[:, 1] >> 8
        b[:, 4] = a[:, 1] & 0xFF
        b[:, 3] = a[:, 2] >> 2
        b[:, 2] = (a[:, 2] & 0x3) << 6 | a[:, 3] >> 4
        b[:, 1] = (a[:, 3] & 0xF) << 4 | a[:, 4] >> 2
        b[:, 0] = (a[:, 4] & 0x3) << 6 | a[:, 5]
        frames = b[:, 8 - frame_length(k):].copy()
        frames[:, -1] = ((first_seq + np.arange(n)) & 0xF) << 4
        frames[:, -1] |= crc4_gf2(frames)
        return frames.astype(np.uint8).tobytes()

    async def produce(self, now_s: float) -> None:
        fs = self.rate_hz
        due = int(now_s * fs)
        if due <= self._next_index:
            return
        idx = np.arange(self._next_index, due)
        self._next_index = due
        if not self.acquiring:
            self.synth.block(idx / fs)  # the ADC runs on; keep the EMG noise going
            return
        counts = self.counts(idx / fs)
        length = frame_length(len(self.inputs))
        start = self._stream_pos + len(self._fifo)
        if self.keep_truth:
            self.truth.extend((self.run, start + i * length, int(x), tuple(map(int, counts[i])))
                              for i, x in enumerate(idx))
        self._fifo += self.encode_frames(counts, self._seq)
        self._seq = (self._seq + len(idx)) & 0xF
        size = self.payload_bytes if self.connection is None else min(self.payload_bytes, self.connection.att_mtu - 3)
        while len(self._fifo) >= size:
            packet = bytes(self._fifo[:size])
            del self._fifo[:size]
            first = self._stream_pos
            self._stream_pos += len(packet)
            fate = await self.send(self.frames, packet)
            if self.keep_truth:
                self.notifications.append((self.run, first, self._stream_pos, fate))
            if fate == PacketFate.NOT_SENT and not self.acquiring:
                return
            await asyncio.sleep(0)
