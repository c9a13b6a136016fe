"""The Heart Rate Service side of a virtual strap, from the Bluetooth SIG specification (not from our decoder)."""

from __future__ import annotations

import struct

import numpy as np
from bumble import gatt
from bumble.core import UUID

from biofeedback.sensors.virtual.peripherals import VirtualPeripheral, gatt_characteristic
from biofeedback.sensors.virtual.signals import BeatGenerator, Heart, HeartScript

HRS_NOTIFY_PERIOD_S = 1.0
"""Seconds between Heart Rate Measurement notifications (straps send about one a second)."""


class HeartRateServer:
    """The Bluetooth SIG Heart Rate Service part of a strap: one notification per second."""

    def __init__(self, owner: VirtualPeripheral, heart: Heart) -> None:
        self.owner = owner
        self.heart = heart
        self.measurement = gatt_characteristic(owner.profile.uuid("hrs", "measurement"), gatt.Characteristic.Properties.NOTIFY)
        owner.device.add_service(gatt.Service(UUID(owner.profile.uuid("hrs", "service")), [self.measurement]))
        self._next_notify_s = HRS_NOTIFY_PERIOD_S
        self._energy_kj = 0
        self._reported = 0
        self.sent: list[tuple[bytes, tuple[float, ...], str]] = []
        """Every notification meant for the host: (packet, RR values in ms, ``PacketFate``)."""

    @property
    def beats(self) -> BeatGenerator:
        """The beat generator (its ``script`` may be changed while running)."""
        return self.heart.beats

    @property
    def beat_times_s(self) -> list[float]:
        """Every beat the heart made, body seconds (generated ahead of time, so the ECG can draw it)."""
        return self.heart.beat_times_s

    @property
    def beat_rr_ms(self) -> list[float]:
        return self.heart.beat_rr_ms

    def encode(self, hr_bpm: int, rr_ms: np.ndarray, contact: bool, with_energy: bool) -> bytes:
        """Heart Rate Measurement per the SIG specification (flags, HR, energy, RR in 1/1024 s)."""
        flags = 0x04 | (0x02 if contact else 0)
        body = b""
        if hr_bpm > 255:
            flags |= 0x01
            body += struct.pack("<H", hr_bpm)
        else:
            body += struct.pack("<B", hr_bpm)
        if with_energy:
            flags |= 0x08
            body += struct.pack("<H", self._energy_kj)
        if len(rr_ms):
            flags |= 0x10
            body += b"".join(struct.pack("<H", int(round(r * 1024 / 1000))) for r in rr_ms)
        return bytes([flags]) + body

    async def produce(self, now_s: float) -> None:
        while now_s >= self._next_notify_s:
            t = self._next_notify_s
            self._next_notify_s += HRS_NOTIFY_PERIOD_S
            body_t = self.owner.clock.body_s(t)
            self.heart.until(body_t + 1.0)
            k = self._reported
            while k < len(self.beat_times_s) and self.beat_times_s[k] <= body_t:
                k += 1
            rrs = np.array(self.beat_rr_ms[self._reported : k])
            self._reported = k
            contact = not self.owner.faults.electrode_off_at(t)
            if k == 0:
                continue
            hr = int(round(60000.0 / np.mean(self.beat_rr_ms[max(0, k - 5) : k])))
            self._energy_kj += 1
            rr_sent = rrs[:9] if contact else np.empty(0)
            packet = self.encode(hr, rr_sent, contact, with_energy=int(t) % 10 == 0)
            fate = await self.owner.send(self.measurement, packet)
            self.sent.append((packet, tuple(round(r * 1024 / 1000) * 1000 / 1024 for r in rr_sent), fate))


def body_heart(heart: HeartScript | Heart | None, rng: np.random.Generator) -> Heart:
    """The body's heart a strap listens to: the one given, or a heart of its own following a script."""
    return heart if isinstance(heart, Heart) else Heart(BeatGenerator(heart or HeartScript(), rng))


class VirtualHeartRateStrap(VirtualPeripheral):
    """Any Heart Rate Service strap."""

    model = "Virtual HRM strap"

    def __init__(self, *args, heart: HeartScript | Heart | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hrs = HeartRateServer(self, body_heart(heart, self.rng))

    def tick_s(self) -> float:
        return 0.25

    async def produce(self, now_s: float) -> None:
        await self.hrs.produce(now_s)
