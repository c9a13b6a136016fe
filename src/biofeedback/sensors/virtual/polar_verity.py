"""A virtual Polar Verity Sense: Heart Rate Service plus PMD pulse-to-pulse intervals (not from our decoders).

Written from Polar's BLE SDK documentation (polarofficial/polar-ble-sdk: technical_documentation/
Polar_Measurement_Data_Specification.pdf for the control point and data frames, documentation/PPIData.md and the
SDK's PPI sample fields for the interval layout): a PPI data notification is measurement type 3, an 8-byte
timestamp (0: "not available" on Verity Sense and OH1), frame type 0, then per pulse u8 HR, u16 PP interval (ms),
u16 error estimate (ms) and a flags byte (bit 0 blocker, bit 1 skin contact, bit 2 skin contact supported).

The intervals are the beats of the virtual heart (``HeartScript``), sent as each beat ends (within a tick; the
first batch of a real Verity Sense comes ~25 s after start, which this twin skips so tests stay short). ``Faults.electrode_off`` takes the sensor off the skin (contact bit cleared); ``movement`` spans set the
blocker bit and spoil the intervals there, as arm movement does to an optical sensor.
"""

from __future__ import annotations

import asyncio
import struct

import numpy as np
from bumble import gatt
from bumble.core import UUID

from biofeedback.sensors.virtual.peripherals import PmdControlPoint, VirtualPeripheral, gatt_characteristic
from biofeedback.sensors.virtual.signals import BeatGenerator, HeartScript

PPI_TICK_S = 0.1
GOOD_ERROR_MS = 6
MOVEMENT_ERROR_MS = 45


class VirtualPolarVerity(PmdControlPoint, VirtualPeripheral):
    """Polar Verity Sense: HRS and PMD PPI."""

    model = "Polar Verity Sense (virtual)"

    def __init__(self, *args, heart: HeartScript | None = None, movement: list[tuple[float, float]] | None = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.beats = BeatGenerator(heart or HeartScript(), self.rng)
        self.beat_times_s: list[float] = []
        self.beat_rr_ms: list[float] = []
        props = gatt.Characteristic.Properties
        # The Heart Rate Service it advertises (SIG UUIDs); in PPI mode the real sensor updates it only every 5 s,
        # and this profile reads the intervals, so the twin leaves it silent.
        self.device.add_service(gatt.Service(UUID.from_16_bits(0x180D), [gatt_characteristic("2A37", props.NOTIFY)]))
        self.control = gatt_characteristic(self.profile.uuid("polar-pmd-ppi", "control"),
                                           props.READ | props.WRITE | props.INDICATE,
                                           gatt.CharacteristicValue(read=lambda _c: b"\x0f\x08", write=self._on_control))
        self.data = gatt_characteristic(self.profile.uuid("polar-pmd-ppi", "data"), props.NOTIFY)
        self.device.add_service(gatt.Service(UUID(self.profile.uuid("polar-pmd-ppi", "service")),
                                             [self.control, self.data]))
        self.movement = list(movement or [])
        self.ppi_on = False
        self._reported = 0
        self.ppi_sent: list[tuple[float, float, int, str]] = []
        """Every interval meant for the host: (beat time s, PP ms as sent, flags byte, ``PacketFate``)."""

    def tick_s(self) -> float:
        return PPI_TICK_S

    def pmd_start(self, connection, measurement: int) -> int:
        if measurement != 0x03:
            return 3  # not supported: no ECG on an optical sensor
        if self.ppi_on:
            return 6  # already in state
        self.ppi_on = True
        self._beats_until(self.clock.now_s())
        self._reported = len(self.beat_times_s)
        return 0

    def pmd_stop(self, measurement: int) -> int:
        self.ppi_on = False
        return 0

    def on_disconnected(self) -> None:
        self.ppi_on = False

    def moving_at(self, t_s: float) -> bool:
        return any(a <= t_s < b for a, b in self.movement)

    def encode_ppi(self, samples: list[tuple[int, int, int, int]]) -> bytes:
        """PMD PPI frame: type 3, timestamp 0, frame type 0, then (HR, PP ms, error ms, flags) per pulse."""
        return struct.pack("<BQB", 0x03, 0, 0x00) + b"".join(struct.pack("<BHHB", *s) for s in samples)

    def _beats_until(self, t_s: float) -> None:
        times, rrs = self.beats.until(t_s)
        self.beat_times_s.extend(times.tolist())
        self.beat_rr_ms.extend(rrs.tolist())

    async def produce(self, now_s: float) -> None:
        if self.ppi_on:
            self._beats_until(now_s)
            times = self.beat_times_s[self._reported:]
            rrs = self.beat_rr_ms[self._reported:]
            k = len(times)
            self._reported += k
            samples, kept = [], []
            for beat_s, rr in zip(times[:k], rrs[:k]):
                contact = not self.faults.electrode_off_at(beat_s)
                moving = self.moving_at(beat_s)
                pp = int(round(rr + (self.rng.normal(0, 120.0) if moving else 0.0)))
                flags = 0x04 | (0x02 if contact else 0) | (0x01 if moving else 0)
                hr = int(round(60000.0 / rr))
                samples.append((min(hr, 255), max(pp, 1), MOVEMENT_ERROR_MS if moving else GOOD_ERROR_MS, flags))
                kept.append((beat_s, float(max(pp, 1)), flags))
            if not samples:
                return
            fate = await self.send(self.data, self.encode_ppi(samples))
            self.ppi_sent.extend((b, pp, f, fate) for b, pp, f in kept)
