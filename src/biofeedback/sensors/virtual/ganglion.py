"""A virtual OpenBCI Ganglion, written from OpenBCI's "Ganglion Data Format" page and firmware (not from our decoder).

What the firmware does (OpenBCI_Ganglion_Library ``processData``, ``buildRawPacket``, ``compressData19``,
``sendCompressedPacket19``): on ``b`` it starts sampling at 200 Hz with ``sampleCounter`` 0; sample 0 of
every 201 goes out uncompressed (packet ID 0, four 24-bit big-endian values); each later sample becomes a
delta ``last - new`` whose low 19 bits are kept with bit 0 overwritten by the sign, and every second sample
the two sets of four deltas go out as one packet with ID ``100 + ringBufferLevel`` (101-200), the bits packed
most significant first. ``s`` stops. Firmware 3 (as BrainFlow's ``ganglion_native_v3`` reads it) sends the
samples themselves, shifted right by 5 with the sign in bit 0, two per packet, IDs 100-199, no reset packet.
"""

from __future__ import annotations

import asyncio

import numpy as np
from bumble import gatt
from bumble.core import UUID

from biofeedback.sensors.virtual.peripherals import VirtualPeripheral, gatt_characteristic
from biofeedback.sensors.virtual.signals import EmgBody, EmgSynth, TensionScript

MCP3912_VOLTS_PER_COUNT = 1.2 / (8388607.0 * 1.5 * 51.0)
"""OpenBCI's scale factor: V_ref 1.2 V over 2^23 - 1 codes, the MCP3912's factor 1.5 and the front-end gain 51."""
ADC_MAX = (1 << 23) - 1


def _bits_msb_first(fields: list[int], width: int) -> bytes:
    """Pack ``fields`` (each its low ``width`` bits) into bytes, most significant bit first, zero-padded."""
    bits = np.array([(f >> (width - 1 - b)) & 1 for f in fields for b in range(width)], dtype=np.uint8)
    return np.packbits(bits).tobytes()


def _sign_in_bit0(value: int, keep_mask: int) -> int:
    """``bitWrite(value, 0, bitRead(value, 31))`` then keep the low bits, as the firmware does."""
    return (value & keep_mask & ~1) | (1 if value < 0 else 0)


class VirtualGanglion(VirtualPeripheral):
    """Ganglion board: 4 channels at 200 Hz; channels 1 and 2 carry the scripted left and right trapezius EMG."""

    model = "Ganglion virtual"
    RATE_HZ = 200

    def __init__(self, *args, tension: TensionScript | None = None, firmware: int = 2, keep_truth: bool = False,
                 body: EmgBody | None = None, **kwargs) -> None:
        self.software_revision = f"{firmware}.0.0"
        super().__init__(*args, **kwargs)
        self.firmware = firmware
        self.script = tension or TensionScript.constant(40.0, 30.0)
        self.synth = EmgSynth(self.RATE_HZ, self.script, self.rng, body=body)
        props = gatt.Characteristic.Properties
        p = self.profile
        self.receive = gatt_characteristic(p.uuid("ganglion", "receive"), props.NOTIFY)
        self.send_char = gatt_characteristic(p.uuid("ganglion", "send"), props.WRITE_WITHOUT_RESPONSE | props.WRITE,
                                             gatt.CharacteristicValue(write=self._on_command))
        self.device.add_service(gatt.Service(UUID(p.uuid("ganglion", "service")), [self.receive, self.send_char]))
        self.streaming = False
        self._start_due = False
        self._next_sample = 0
        """Samples taken since power-on (the ADC runs whether or not anyone listens)."""
        self._counter = 0
        """The firmware's sampleCounter: place of the next sample in its cycle since ``b``."""
        self._last = np.zeros(4, dtype=np.int64)
        self._pending: list[int] = []
        self.keep_truth = keep_truth
        self.truth: dict[int, np.ndarray] = {}
        """Sample index since power-on -> the four ADC counts of that sample, while streaming (with ``keep_truth``)."""
        self.starts: list[int] = []
        """Sample index since power-on at each ``b`` (the host's index counts from there)."""

    def tick_s(self) -> float:
        return 2.0 / self.RATE_HZ

    def _on_command(self, connection, value: bytes) -> None:
        command = bytes(value)[:1]
        if command == b"b" and not self.streaming:
            self._start_due = True  # the next sample the ADC takes is sample 0
        elif command == b"s":
            self.streaming = self._start_due = False

    def on_disconnected(self) -> None:
        self.streaming = self._start_due = False  # the board resets when a new connection opens

    def counts(self, t_s: np.ndarray) -> np.ndarray:
        uv = self.synth.block(t_s)
        out = np.zeros((len(t_s), 4), dtype=np.int64)
        out[:, :2] = np.clip(np.round(uv * 1e-6 / MCP3912_VOLTS_PER_COUNT), -ADC_MAX - 1, ADC_MAX)
        for c in range(2):
            off = np.array([self.faults.electrode_off_at(float(t), c) for t in t_s])
            out[off, c] = ADC_MAX  # a floating input drives the ADC to its rail
        return out

    def _packet_v2(self, row: np.ndarray) -> bytes | None:
        if self._counter == 0:
            self._last = row.copy()
            self._pending = []
            return bytes([0]) + b"".join(int(v & 0xFFFFFF).to_bytes(3, "big") for v in row) + bytes(7)
        self._pending += [_sign_in_bit0(int(self._last[c] - row[c]), 0x7FFFF) for c in range(4)]
        self._last = row.copy()
        if self._counter % 2:
            return None
        payload, self._pending = _bits_msb_first(self._pending, 19), []
        return bytes([100 + self._counter // 2]) + payload

    def _packet_v3(self, row: np.ndarray) -> bytes | None:
        self._pending += [_sign_in_bit0(int(v) >> 5, 0x7FFFF) for v in row]
        if self._counter % 2 == 0:
            return None
        payload, self._pending = _bits_msb_first(self._pending, 19), []
        return bytes([100 + (self._counter // 2) % 100]) + payload

    async def produce(self, now_s: float) -> None:
        fs = self.RATE_HZ
        due = int(now_s * fs) - self._next_sample
        if due <= 0:
            return
        t = (self._next_sample + np.arange(due)) / fs
        block = self.counts(t)
        first_sample = self._next_sample
        self._next_sample += due
        cycle = 201 if self.firmware == 2 else 200
        for i, row in enumerate(block):
            if self._start_due:
                self.streaming, self._start_due, self._counter = True, False, 0
                self.starts.append(first_sample + i)
            if not self.streaming:
                continue
            if self.keep_truth:
                self.truth[first_sample + i] = row
            packet = self._packet_v2(row) if self.firmware == 2 else self._packet_v3(row)
            self._counter = (self._counter + 1) % cycle
            if packet is not None:
                await self.send(self.receive, packet)
                await asyncio.sleep(0)
