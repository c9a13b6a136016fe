"""A virtual open-EMG sensor, from ``devices/open-emg.md`` (not from our decoders).

It speaks protocol version 2 (Data frames end with a CRC-16/CCITT-FALSE, written here from the
CRC's standard definition) or, as older firmware does, version 1 (no CRC).
"""

from __future__ import annotations

import asyncio
import struct

import numpy as np
from bumble import gatt
from bumble.core import UUID

from biofeedback.sensors.virtual.peripherals import VirtualPeripheral, gatt_characteristic
from biofeedback.sensors.virtual.signals import EmgBody, EmgSynth, Heart, TensionScript


CRC16_CCITT_POLY = 0x1021
CRC16_CCITT_INIT = 0xFFFF


def _crc16_ccitt_table() -> tuple[int, ...]:
    """CRC of each byte value shifted through the 16-bit register, most significant bit first."""
    table = []
    for byte in range(256):
        reg = byte << 8
        for _ in range(8):
            reg = ((reg << 1) ^ CRC16_CCITT_POLY if reg & 0x8000 else reg << 1) & 0xFFFF
        table.append(reg)
    return tuple(table)


_CRC16_TABLE = _crc16_ccitt_table()


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, not reflected, no final XOR (check value 0x29B1)."""
    reg = CRC16_CCITT_INIT
    for byte in data:
        reg = ((reg << 8) & 0xFFFF) ^ _CRC16_TABLE[(reg >> 8) ^ byte]
    return reg


class VirtualOpenEmg(VirtualPeripheral):
    """Open-EMG sensor (``devices/open-emg.md``): two channels, int16 samples, 20 samples a frame."""

    model = "OpenEMG virtual (MyoWare 2.0 front end)"
    ADC_BITS = 16
    NV_PER_LSB = 50  # 0.05 µV per LSB: ±1.6 mV range at the electrode
    SUPPORTED_RATES_HZ = (500, 1000, 2000)

    def __init__(
        self,
        *args,
        tension: TensionScript | None = None,
        sample_rate_hz: int = 1000,
        samples_per_frame: int = 20,
        keep_truth: bool = False,
        protocol_version: int = 2,
        body: EmgBody | None = None,
        heart: Heart | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.protocol_version = protocol_version
        self.script = tension or TensionScript.constant(40.0, 30.0)
        self.sample_rate_hz = sample_rate_hz
        self.samples_per_frame = samples_per_frame
        self.body, self.heart = body, heart
        self.synth = EmgSynth(sample_rate_hz, self.script, self.rng, body, heart)
        props = gatt.Characteristic.Properties
        p = self.profile
        self.info = gatt_characteristic(p.uuid("open-emg", "info"), props.READ, gatt.CharacteristicValue(read=lambda _c: self.encode_info()))
        self.control = gatt_characteristic(p.uuid("open-emg", "control"), props.WRITE | props.INDICATE,
                            gatt.CharacteristicValue(write=self._on_control))
        self.data = gatt_characteristic(p.uuid("open-emg", "data"), props.NOTIFY)
        self.status = gatt_characteristic(p.uuid("open-emg", "status"), props.READ | props.NOTIFY,
                           gatt.CharacteristicValue(read=lambda _c: self.encode_status()))
        self.device.add_service(gatt.Service(UUID(p.uuid("open-emg", "service")), [self.info, self.control, self.data, self.status]))
        self.streaming = False
        self.channel_mask = 0b11
        self._next_index = 0
        self._seq = 0
        self._index_at_start = 0
        self.overrun_count = 0
        self._garbage_due = 0
        """Garbage frames still to send before the next real one (``Faults.garbage_first_frames``)."""
        self._next_status_s = 1.0
        self.keep_truth = keep_truth
        self.truth: dict[int, np.ndarray] = {}
        """First sample index -> int16 samples (n, 2) of every frame the firmware produced."""
        self.fates: dict[int, str] = {}
        """First sample index -> ``PacketFate`` of every frame produced while streaming (with ``keep_truth``)."""

    def tick_s(self) -> float:
        return self.samples_per_frame / self.sample_rate_hz

    def encode_info(self) -> bytes:
        return struct.pack(
            "<BBHBBBBI", self.protocol_version, 2, self.sample_rate_hz, self.ADC_BITS, 0, self.samples_per_frame, 0, self.NV_PER_LSB
        )

    def contact_bits(self, t_s: float) -> int:
        return sum(1 << c for c in range(2) if not self.faults.electrode_off_at(t_s, c))

    def encode_status(self) -> bytes:
        return struct.pack("<BBHB", self.battery_pct, self.contact_bits(self.clock.now_s()), min(self.overrun_count, 0xFFFF), 0)

    def _on_control(self, connection, value: bytes) -> None:
        value = bytes(value)
        op = value[0] if value else 0
        payload = b""
        if op == 0x01 and len(value) == 4:
            rate, mask = struct.unpack_from("<HB", value, 1)
            if rate not in self.SUPPORTED_RATES_HZ or mask == 0 or mask & ~0b11:
                status = 2
            else:
                if rate != self.sample_rate_hz:  # the ADC restarts at the new rate
                    self.sample_rate_hz = rate
                    self.synth = EmgSynth(rate, self.script, self.rng, self.body, self.heart)
                    self._next_index = int(np.ceil(self.clock.now_s() * rate))
                status = 0
                self.channel_mask = mask
                self.streaming = True
                # START resets seq, first_sample_index and overrun_count (devices/open-emg.md).
                self._seq = 0
                self._index_at_start = self._next_index
                self.overrun_count = 0
                self._garbage_due = self.faults.garbage_first_frames
        elif op == 0x02:
            self.streaming, status = False, 0
        elif op == 0x03:
            status, payload = 0, struct.pack("<Q", int(self.clock.now_s() * 1e6))
        else:
            status = 1 if op not in (0x01,) else 2
        asyncio.ensure_future(self.indicate_later(self.control, bytes([op, status]) + payload))

    def on_disconnected(self) -> None:
        self.streaming = False

    def encode_frame(self, seq: int, first_index: int, device_time_us: int, flags: int, samples: np.ndarray) -> bytes:
        """Data frame: u16 seq, u32 first sample index, u64 device µs, u8 flags, interleaved int16; version 2: u16 CRC."""
        header = struct.pack("<HIQB", seq & 0xFFFF, first_index & 0xFFFFFFFF, device_time_us, flags)
        frame = header + samples.astype("<i2").tobytes()
        if self.protocol_version >= 2:
            frame += struct.pack("<H", crc16_ccitt_false(frame))
        return frame

    async def produce(self, now_s: float) -> None:
        spf, fs = self.samples_per_frame, self.sample_rate_hz
        # The ADC runs from power-on; the sample index counts every sample, sent or not.
        while (self._next_index + spf) / fs <= now_s:
            idx = np.arange(self._next_index, self._next_index + spf)
            t = idx / fs
            self._next_index += spf
            uv = self.synth.block(self.clock.body_s(t))
            counts = np.clip(np.round(uv * 1000.0 / self.NV_PER_LSB), -32768, 32767)
            flags = 0
            for c in range(2):
                if self.faults.electrode_off_at(float(t[0]), c):
                    counts[:, c] = 32767
                    flags |= 0x02 | 0x04
            if np.any(np.abs(counts) >= 32767):
                flags |= 0x04
            counts = counts.astype(np.int16)
            if self.keep_truth:
                self.truth[int(idx[0])] = counts
            if not self.streaming:
                continue
            while self._garbage_due > 0:  # Faults.garbage_first_frames: well-formed nonsense first
                self._garbage_due -= 1
                await self.send(self.data, self.encode_frame(
                    int(self.rng.integers(0, 1 << 16)), int(self.rng.integers(0, 1 << 32)),
                    int(self.rng.integers(0, 1 << 62)), 0, self.rng.integers(-32768, 32767, counts.shape).astype(np.int16)))
            packet = self.encode_frame(self._seq, int(idx[0]) - self._index_at_start, int(round(t[0] * 1e6)), flags, counts)
            self._seq += 1
            fate = await self.send(self.data, packet)
            if self.keep_truth:
                self.fates[int(idx[0])] = fate
            await asyncio.sleep(0)  # a catch-up burst must not starve the other sensors on this loop
        if self.streaming and now_s >= self._next_status_s:
            self._next_status_s = now_s + 1.0
            await self.send(self.status, self.encode_status())
