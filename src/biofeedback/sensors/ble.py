"""The bleak-based sensor source: scan, connect, subscribe, decode, and keep the link alive.

One ``BleSource`` per sensor. A supervisor loop connects with bleak-retry-connector's
``establish_connection`` (retries with back-off), then sets up one driver per protocol of the
device profile (subscribe, send start commands; each protocol's driver lives in its module under
``sensors/protocols/``, found through ``protocols.PROTOCOLS``). On the disconnect callback it rescans, connects
again, subscribes again and re-sends the start commands the device forgot. Drivers detect gaps
from the data itself (sample indices, device timestamps, RR sums against arrival time), so every
gap is recorded with its true length, whether it came from a dropped link or dropped packets.

Notification callbacks are tiny: copy, decode, stamp, hand on (STYLE.md rule 4).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError
from bleak_retry_connector import establish_connection

from biofeedback.sensors.profiles import DeviceProfile, best_profile
from biofeedback.sensors.protocols import PROTOCOLS
from biofeedback.sensors.source import SensorError, Sink, Source
from biofeedback.sensors.timing import CONNECT_ATTEMPTS, RESCAN_TIMEOUT_S
from biofeedback.stream import SessionClock
from biofeedback.vocab import SourceState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BleBackend:
    """Which bleak backend to use: the platform's (real adapter) or a virtual radio."""

    scanner: type | None = None
    client: type | None = None
    scanner_kwargs: dict[str, Any] = field(default_factory=dict)
    virtual: bool = False

    def make_scanner(self, **kwargs: Any) -> BleakScanner:
        return BleakScanner(backend=self.scanner, **self.scanner_kwargs, **kwargs)


def system_has_adapter() -> bool:
    """True when this machine has a Bluetooth adapter bleak can use (best effort, no side effects)."""
    if sys.platform.startswith("linux"):
        root = Path("/sys/class/bluetooth")
        return root.is_dir() and any(root.iterdir())
    return True


@dataclass(frozen=True)
class FoundSensor:
    device: BLEDevice
    advertisement: AdvertisementData
    profile: DeviceProfile


async def scan(profiles: Iterable[DeviceProfile], backend: BleBackend, timeout_s: float = 3.0) -> list[FoundSensor]:
    """Scan for sensors matching any profile; each device is paired with its best profile."""
    profiles = list(profiles)
    services = sorted({u for p in profiles for u in p.services})
    found: dict[str, FoundSensor] = {}

    def seen(device: BLEDevice, adv: AdvertisementData) -> None:
        profile = best_profile(profiles, adv.local_name, adv.service_uuids)
        if profile is not None:
            found[device.address] = FoundSensor(device, adv, profile)

    scanner = backend.make_scanner(detection_callback=seen, service_uuids=services)
    await scanner.start()
    try:
        await asyncio.sleep(timeout_s)
    finally:
        await scanner.stop()
    return sorted(found.values(), key=lambda f: (-f.profile.priority, f.device.name or ""))


class BleSource(Source):
    """One sensor over BLE, supervised: connects, streams, reconnects after drops until stopped."""

    def __init__(self, device: BLEDevice, profile: DeviceProfile, clock: SessionClock, sink: Sink,
                 backend: BleBackend, name: str | None = None) -> None:
        super().__init__(name or profile.name, clock, sink)
        self.device = device
        self.profile = profile
        self.backend = backend
        self.drivers = [PROTOCOLS[p].driver(self) for p in profile.protocols]
        self._client: BleakClient | None = None
        self._lost = asyncio.Event()

    def decode_error(self, exc: Exception) -> None:
        self.status.decode_errors += 1
        log.debug("%s: %s", self.name, exc)

    def _on_disconnect(self, _client: BleakClient) -> None:
        self._lost.set()

    async def _connect_once(self) -> BleakClient:
        client = await establish_connection(
            BleakClient, self.device, self.name, disconnected_callback=self._on_disconnect,
            max_attempts=CONNECT_ATTEMPTS, backend=self.backend.client,
        )
        self._lost.clear()
        self.status.mtu = client.mtu_size
        try:
            for driver in self.drivers:
                await driver.setup(client)
        except BaseException:
            await client.disconnect()
            raise
        return client

    async def _rescan(self) -> BLEDevice | None:
        scanner_kwargs = dict(self.backend.scanner_kwargs)
        return await BleakScanner.find_device_by_address(
            self.device.address, timeout=RESCAN_TIMEOUT_S, backend=self.backend.scanner, **scanner_kwargs
        )

    async def _unless_stopped(self, coro: Any) -> asyncio.Future | None:
        """Run ``coro`` until it finishes or ``stop()`` is called; the finished task, or None if stopped."""
        task = asyncio.ensure_future(coro)
        stop = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if task.done():
            return task
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None

    async def run(self) -> None:
        """Stream until ``stop()``; raises ``SensorError`` only if the first connection fails."""
        first = True
        while not self._stopping.is_set():
            self._set_state(SourceState.CONNECTING if first else SourceState.RECONNECTING)
            connect = await self._unless_stopped(self._connect_once())
            if connect is None:
                break
            try:
                self._client = connect.result()
            except (BleakError, SensorError, asyncio.TimeoutError, OSError) as exc:
                if first:
                    self._set_state(SourceState.FAILED, str(exc))
                    raise SensorError(f"{self.name}: could not connect: {exc}") from exc
                self._set_state(SourceState.RECONNECTING, str(exc))
                await self._wait_and_rescan()
                continue
            first = False
            self._set_state(SourceState.CONNECTED)
            if await self._unless_stopped(self._lost.wait()) is None:
                break
            self.status.reconnects += 1
            for driver in self.drivers:
                driver.on_link_lost()
            self._set_state(SourceState.RECONNECTING)
            await self._wait_and_rescan()
        if self._client is not None and self._client.is_connected:
            await self._client.disconnect()
        self._set_state(SourceState.STOPPED)

    async def _wait_and_rescan(self) -> None:
        while not self._stopping.is_set():
            rescan = await self._unless_stopped(self._rescan())
            if rescan is None:
                return
            try:
                device = rescan.result()
            except (BleakError, OSError) as exc:
                log.info("%s: rescan failed: %s", self.name, exc)
                await asyncio.sleep(RESCAN_TIMEOUT_S / 5)
                continue
            if device is not None:
                self.device = device
                return
