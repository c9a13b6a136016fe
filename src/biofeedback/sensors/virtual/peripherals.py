"""Virtual sensors: real GATT servers (bumble) on a ``VirtualRadio``, one per device profile; their common part.

Each peripheral encodes its packets from the protocol's specification, never with our decoders
(``hrs.py``: the SIG Heart Rate Service; ``polar_h10.py``: Polar's PMD frames;
``open_emg.py``: the open-EMG profile in ``devices/open-emg.md``), runs on its own device clock
(``DeviceClock``: faster than real time at ``speed`` > 1), and injects faults on demand
(``Faults``). ``truth`` keeps what the device generated, and each device logs what became of every
packet it meant to send (``send`` returns its ``PacketFate``), so tests can compare both with what the
host received.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from bumble import gatt
from bumble.core import AdvertisingData as AD
from bumble.core import UUID

from biofeedback.sensors.bumble_backend import VirtualRadio
from biofeedback.sensors.profiles import DeviceProfile

log = logging.getLogger(__name__)

PACE_MIN_SLEEP_S = 0.002
ADVERTISE_RETRIES = 20


@dataclass
class Faults:
    """Faults a virtual sensor injects, in device seconds."""

    disconnect_at_s: list[float] = field(default_factory=list)
    """Device times at which the sensor drops the link."""
    offline_s: float = 2.0
    """How long the sensor stays unreachable after a drop."""
    drop_rate: float = 0.0
    """Probability that a data packet is lost."""
    corrupt_rate: float = 0.0
    """Probability that a data packet is replaced by garbage."""
    electrode_off: list[tuple[float, float, int]] = field(default_factory=list)
    """(start s, end s, channel) intervals with an electrode off the skin (channel ignored by HR straps)."""
    ecg_start_delay_s: float = 0.0
    """Polar quirk: ECG frames start this long after the start command is acknowledged."""
    drop_after_start: bool = False
    """Polar quirk: the link drops right after the first ECG start."""
    garbage_first_frames: int = 0
    """Open EMG: after each START, this many decodable garbage frames (a valid frame layout and CRC, but a random
    sample index, device time and samples) go out before the first real frame."""
    ecg_timestamp_jumps: list[tuple[float, float]] = field(default_factory=list)
    """Polar quirk: (device s, jump s) pairs; from that device time on, ECG frames are stamped ``jump`` later
    (earlier if negative) than their samples' true time. No sample is lost."""

    def electrode_off_at(self, t_s: float, channel: int = 0) -> bool:
        return any(a <= t_s < b and (c == channel or c < 0) for a, b, c in self.electrode_off)


class PacketFate(StrEnum):
    """What became of a packet a virtual sensor meant to send."""

    SENT = "sent"
    DROPPED = "dropped"
    """Lost by a fault (``Faults.drop_rate``)."""
    CORRUPTED = "corrupted"
    """Replaced by garbage (``Faults.corrupt_rate``)."""
    NOT_SENT = "not-sent"
    """No link, or the link went down while sending."""


class DeviceClock:
    """A device's own clock: real time since power-on, times ``speed``, with a rate error in ppm.

    Body time (the virtual body's heart and muscles) runs at ``speed`` from ``origin`` (``time.monotonic()``, shared by
    the devices of one world); a device powered on at that origin reads body time times its rate error."""

    def __init__(self, speed: float = 1.0, drift_ppm: float = 0.0, origin: float | None = None) -> None:
        self.speed = speed
        self.rate = speed * (1.0 + drift_ppm * 1e-6)
        self._t0 = time.monotonic() if origin is None else origin

    def now_s(self) -> float:
        return (time.monotonic() - self._t0) * self.rate

    def body_s(self, device_s: np.ndarray | float) -> np.ndarray | float:
        """Body seconds at device seconds ``device_s``."""
        return device_s * (self.speed / self.rate)

    def wall_s(self, device_s: float) -> float:
        return device_s / self.rate


def gatt_characteristic(uuid: str, props: gatt.Characteristic.Properties, value: object = b"") -> gatt.Characteristic:
    perms = gatt.Characteristic.READABLE | gatt.Characteristic.WRITEABLE
    return gatt.Characteristic(UUID(uuid), props, perms, value)


class VirtualPeripheral:
    """Common part: GATT server, advertising, connection state, pacing and fault bookkeeping."""

    model = "virtual"
    software_revision: str | None = None
    """Device Information's Software Revision String (0x2A28), for devices whose host reads it."""

    def __init__(
        self,
        radio: VirtualRadio,
        profile: DeviceProfile,
        name: str,
        address: str,
        speed: float = 1.0,
        faults: Faults | None = None,
        seed: int = 0,
        drift_ppm: float = 0.0,
        clock_origin: float | None = None,
    ) -> None:
        self.profile = profile
        self.name = name
        self.address = address
        self.clock = DeviceClock(speed, drift_ppm, clock_origin)
        self.faults = faults or Faults()
        self.rng = np.random.default_rng(seed)
        self.device = radio.new_device(name, address)
        self.device.on("connection", self._on_connection)
        self.connection = None
        self.counters = {"sent": 0, "dropped": 0, "corrupted": 0, "disconnects": 0, "connections": 0}
        self._pending_disconnects = sorted(self.faults.disconnect_at_s)
        self._offline_until_s = -1.0
        self._tasks: list[asyncio.Task] = []
        self.battery_pct = 87
        self.device.add_service(
            gatt.Service(
                UUID.from_16_bits(0x180A),
                [
                    gatt_characteristic("2A29", gatt.Characteristic.Properties.READ, b"biofeedback virtual sensors"),
                    gatt_characteristic("2A24", gatt.Characteristic.Properties.READ, self.model.encode()),
                    gatt_characteristic("2A26", gatt.Characteristic.Properties.READ, b"virtual-1.0"),
                    *([gatt_characteristic("2A28", gatt.Characteristic.Properties.READ, self.software_revision.encode())]
                      if self.software_revision else []),
                ],
            )
        )
        self._battery = gatt_characteristic("2A19", gatt.Characteristic.Properties.READ | gatt.Characteristic.Properties.NOTIFY,
                             gatt.CharacteristicValue(read=lambda _c: bytes([self.battery_pct])))
        self.device.add_service(gatt.Service(UUID.from_16_bits(0x180F), [self._battery]))

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        await self.device.power_on()
        await self._advertise()
        self._tasks.append(asyncio.create_task(self._run(), name=f"virtual {self.name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        if self.connection is not None:
            try:
                await self.connection.disconnect()
            except Exception:
                pass

    def advertised_services(self) -> list[str]:
        return [u for u in self.profile.services]

    async def _advertise(self) -> None:
        uuids16 = b"".join(
            struct.pack("<H", int(u[4:8], 16)) for u in self.advertised_services() if u.endswith("-0000-1000-8000-00805f9b34fb")
        )
        uuids128 = b"".join(
            UUID(u).to_bytes(force_128=True) for u in self.advertised_services() if not u.endswith("-0000-1000-8000-00805f9b34fb")
        )
        fields = [(AD.FLAGS, bytes([0x06]))]
        if uuids16:
            fields.append((AD.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS, uuids16))
        if uuids128:
            fields.append((AD.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS, uuids128))
        # The name goes in the advertisement itself, shortened to fit 31 bytes: bumble's virtual
        # controller answers scan requests with the advertising data, not the scan response.
        room = 31 - len(bytes(AD(fields))) - 2
        name = self.name.encode()
        fields.append((AD.COMPLETE_LOCAL_NAME, name) if len(name) <= room else (AD.SHORTENED_LOCAL_NAME, name[:room]))
        await self.device.start_advertising(
            advertising_data=bytes(AD(fields)),
            scan_response_data=bytes(AD([(AD.COMPLETE_LOCAL_NAME, self.name.encode())])),
            advertising_interval_min=20.0,
            advertising_interval_max=20.0,
        )

    def _on_connection(self, connection) -> None:
        self.connection = connection
        self.counters["connections"] += 1
        connection.on("disconnection", lambda reason: asyncio.get_running_loop().create_task(self._on_disconnection()))
        self.on_connected()

    async def _on_disconnection(self) -> None:
        self.connection = None
        self.on_disconnected()
        wait = max(0.0, self._offline_until_s - self.clock.now_s())
        if wait:
            await asyncio.sleep(self.clock.wall_s(wait))
        for _ in range(ADVERTISE_RETRIES):
            try:
                await self._advertise()
                return
            except Exception as exc:  # controller busy with the old link, or the radio is shutting down
                log.debug("%s: advertising not restarted yet: %s", self.name, exc)
                await asyncio.sleep(0.05)

    def on_connected(self) -> None:
        """Device-specific reaction to a new connection."""

    def on_disconnected(self) -> None:
        """Device-specific reaction to a lost connection (firmware forgets its start command)."""

    async def force_disconnect(self, offline_s: float | None = None) -> None:
        """Drop the link now and stay unreachable for ``offline_s`` device seconds."""
        if self.connection is None:
            return
        self.counters["disconnects"] += 1
        self._offline_until_s = self.clock.now_s() + (self.faults.offline_s if offline_s is None else offline_s)
        try:
            await self.connection.disconnect()
        except Exception as exc:
            log.debug("%s: disconnect failed: %s", self.name, exc)

    # --- data path -------------------------------------------------------------------------
    async def _run(self) -> None:
        period = self.tick_s()
        while True:
            now = self.clock.now_s()
            if self._pending_disconnects and now >= self._pending_disconnects[0]:
                self._pending_disconnects.pop(0)
                await self.force_disconnect()
            await self.produce(now)
            await asyncio.sleep(max(PACE_MIN_SLEEP_S, self.clock.wall_s(period)))

    def tick_s(self) -> float:
        """Device seconds between production steps."""
        raise NotImplementedError

    async def produce(self, now_s: float) -> None:
        """Generate everything due up to device time ``now_s`` and send it if someone listens."""
        raise NotImplementedError

    async def send(self, characteristic: gatt.Characteristic, packet: bytes) -> PacketFate:
        """Notify ``packet`` unless the link is down or a fault drops or corrupts it; what became of it."""
        if self.connection is None:
            return PacketFate.NOT_SENT
        if self.faults.drop_rate and self.rng.random() < self.faults.drop_rate:
            self.counters["dropped"] += 1
            return PacketFate.DROPPED
        fate = PacketFate.SENT
        if self.faults.corrupt_rate and self.rng.random() < self.faults.corrupt_rate:
            self.counters["corrupted"] += 1
            packet = self.rng.integers(0, 256, int(self.rng.integers(0, len(packet) + 1)), dtype=np.uint8).tobytes()
            fate = PacketFate.CORRUPTED
        try:
            await self.device.notify_subscribers(characteristic, packet)
        except Exception as exc:  # link went down mid-send
            log.debug("%s: notify failed: %s", self.name, exc)
            return PacketFate.NOT_SENT
        self.counters["sent"] += 1
        return fate

    async def indicate_later(self, characteristic: gatt.Characteristic, packet: bytes) -> None:
        """Answer a control-point write by indication once the write response is out."""
        await asyncio.sleep(0)
        if self.connection is not None:
            try:
                await self.device.indicate_subscriber(self.connection, characteristic, packet)
            except Exception as exc:
                log.debug("%s: indication failed: %s", self.name, exc)


class PmdControlPoint:
    """The device side of Polar's PMD control point (Polar_Measurement_Data_Specification.pdf), shared by the virtual
    H10 and Verity Sense: a write is op code, measurement type[, settings]; 0x01 asks for settings, 0x02 starts a
    measurement, 0x03 stops it; the answer is indicated as 0xF0, op, type, status, 0 (status 0 success, 1 invalid
    op code, 3 not supported, 6 already in state, 10 invalid MTU). Each device says what start and stop do."""

    control: gatt.Characteristic

    def pmd_start(self, connection, measurement: int) -> int:
        """Start ``measurement``; the status to answer with."""
        raise NotImplementedError

    def pmd_stop(self, measurement: int) -> int:
        """Stop ``measurement``; the status to answer with."""
        raise NotImplementedError

    def _on_control(self, connection, value: bytes) -> None:
        value = bytes(value)
        op = value[0] if value else 0
        measurement = value[1] if len(value) > 1 else 0
        if op == 0x02:
            status = self.pmd_start(connection, measurement)
        elif op == 0x03:
            status = self.pmd_stop(measurement)
        else:
            status = 0 if op == 0x01 else 1
        asyncio.ensure_future(self.indicate_later(self.control, bytes([0xF0, op, measurement, status, 0])))
