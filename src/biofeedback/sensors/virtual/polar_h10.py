"""A virtual Polar H10: Heart Rate Service plus PMD ECG, from Polar's BLE SDK documentation (not from our decoders)."""

from __future__ import annotations

import asyncio
import struct
import time

import numpy as np
from bumble import gatt
from bumble.core import UUID

from biofeedback.sensors.virtual.hrs import HeartRateServer, body_heart
from biofeedback.sensors.virtual.peripherals import PmdControlPoint, VirtualPeripheral, gatt_characteristic
from biofeedback.sensors.virtual.signals import Heart, HeartScript, ecg_uv

POLAR_EPOCH_UNIX_S = 946684800
"""2000-01-01T00:00:00Z, the epoch of Polar PMD timestamps."""


class VirtualPolarH10(PmdControlPoint, VirtualPeripheral):
    """Polar H10: HRS plus the PMD service streaming ECG (130 Hz nominal, true rate set by ``ecg_rate_hz``).

    Each ECG frame is stamped with the device time of its last sample; ``Faults.ecg_timestamp_jumps``
    shifts the stamps from a given time on, as real straps' timestamps sometimes jump.
    """

    model = "Polar H10 (virtual)"
    SAMPLES_PER_FRAME = 73
    MIN_MTU = 232

    def __init__(self, *args, heart: HeartScript | Heart | None = None, ecg_rate_hz: float = 129.6, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hrs = HeartRateServer(self, body_heart(heart, self.rng))
        props = gatt.Characteristic.Properties
        self.control = gatt_characteristic(
            self.profile.uuid("polar-pmd", "control"),
            props.READ | props.WRITE | props.INDICATE,
            gatt.CharacteristicValue(read=lambda _c: b"\x0f\x05", write=self._on_control),
        )
        self.data = gatt_characteristic(self.profile.uuid("polar-pmd", "data"), props.NOTIFY)
        self.device.add_service(gatt.Service(UUID(self.profile.uuid("polar-pmd", "service")), [self.control, self.data]))
        self.ecg_rate_hz = ecg_rate_hz
        self.streaming_from_s: float | None = None
        self._next_sample = 0
        self._first_start_done = False
        self.utc_at_power_on = time.time()
        self.ecg_sent: list[tuple[int, np.ndarray, str]] = []
        """Every ECG frame meant for the host: (timestamp ns, samples in µV as sent, ``PacketFate``)."""

    def tick_s(self) -> float:
        return 0.1

    def pmd_start(self, connection, measurement: int) -> int:
        if measurement != 0x00:
            return 3  # not supported: the H10 here streams ECG only
        if connection.att_mtu < self.MIN_MTU:
            return 10  # invalid MTU
        if self.streaming_from_s is not None:
            return 6  # already in state
        self.streaming_from_s = self.clock.now_s() + self.faults.ecg_start_delay_s
        self._next_sample = int(np.ceil(self.streaming_from_s * self.ecg_rate_hz))
        if self.faults.drop_after_start and not self._first_start_done:
            asyncio.get_running_loop().call_later(
                self.clock.wall_s(0.3), lambda: asyncio.ensure_future(self.force_disconnect())
            )
        self._first_start_done = True
        return 0

    def pmd_stop(self, measurement: int) -> int:
        self.streaming_from_s = None
        return 0

    def on_disconnected(self) -> None:
        self.streaming_from_s = None

    def encode_ecg(self, last_sample_ns: int, samples_uv: np.ndarray) -> bytes:
        """PMD ECG frame: type 0, timestamp of the last sample (ns since 2000), frame type 0, int24 µV."""
        out = bytearray(struct.pack("<BQB", 0x00, last_sample_ns, 0x00))
        for v in np.clip(np.round(samples_uv), -(2**23), 2**23 - 1).astype(np.int64):
            out += int(v).to_bytes(3, "little", signed=True)
        return bytes(out)

    def sample_time_s(self, index: np.ndarray | int) -> np.ndarray:
        return np.asarray(index, dtype=float) / self.ecg_rate_hz

    async def produce(self, now_s: float) -> None:
        await self.hrs.produce(now_s)
        if self.streaming_from_s is None or now_s < self.streaming_from_s:
            return
        due = int(now_s * self.ecg_rate_hz)
        while due - self._next_sample >= self.SAMPLES_PER_FRAME:
            idx = np.arange(self._next_sample, self._next_sample + self.SAMPLES_PER_FRAME)
            self._next_sample += self.SAMPLES_PER_FRAME
            t = self.sample_time_s(idx)
            body_t = self.clock.body_s(t)
            ecg = ecg_uv(body_t, self.hrs.heart.near(body_t[0], body_t[-1]), self.rng)
            if self.faults.electrode_off_at(float(t[0])):
                ecg = self.rng.normal(0, 3.0, ecg.shape)
            stamp_s = t[-1] + sum(jump for at, jump in self.faults.ecg_timestamp_jumps if t[-1] >= at)
            last_ns = int(round((self.utc_at_power_on - POLAR_EPOCH_UNIX_S + stamp_s) * 1e9))
            samples = np.clip(np.round(ecg), -(2**23), 2**23 - 1)
            fate = await self.send(self.data, self.encode_ecg(last_ns, samples))
            self.ecg_sent.append((last_ns, samples, fate))
            await asyncio.sleep(0)
