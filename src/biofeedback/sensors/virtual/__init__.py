"""Virtual sensors on a virtual BLE link, reached through bleak with the bumble backend.

``VirtualWorld`` powers a ``VirtualRadio`` and the virtual peripherals of a ``Scenario``; its
``backend`` is the ``BleBackend`` that the application's own scan/connect code uses.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np

from biofeedback.sensors.ble import BleBackend
from biofeedback.sensors.source import SensorError
from biofeedback.sensors.bumble_backend import BumbleClient, BumbleScanner, VirtualRadio, drop_late_gatt_responses
from biofeedback.sensors.profiles import DeviceProfile, load_profiles
from biofeedback.sensors.virtual.bitalino import VirtualBitalino
from biofeedback.sensors.virtual.ganglion import VirtualGanglion
from biofeedback.sensors.virtual.hrs import VirtualHeartRateStrap
from biofeedback.sensors.virtual.open_emg import VirtualOpenEmg
from biofeedback.sensors.virtual.peripherals import Faults, VirtualPeripheral
from biofeedback.sensors.virtual.polar_h10 import VirtualPolarH10
from biofeedback.sensors.virtual.polar_verity import VirtualPolarVerity
from biofeedback.sensors.virtual.signals import BeatGenerator, EmgBody, Heart, HeartScript, TensionScript

__all__ = ["EmgBody", "Faults", "HeartScript", "Scenario", "TensionScript", "VirtualWorld"]

ADDRESSES = {"open-emg": "C0:EE:00:00:00:01", "polar-h10": "C0:EE:00:00:00:02", "hrs-strap": "C0:EE:00:00:00:03",
             "ganglion": "C0:EE:00:00:00:05"}
NAMES = {"open-emg": "OpenEMG1", "polar-h10": "Polar H10 VIRTUAL", "hrs-strap": "HRM Strap VIRTUAL",
         "ganglion": "Ganglion-VIRTUAL"}
ADDRESSES["bitalino"], NAMES["bitalino"] = "C0:EE:00:00:00:04", "BITalino-VIRTUAL"
ADDRESSES["polar-verity"], NAMES["polar-verity"] = "C0:EE:00:00:00:06", "Polar Sense VIRTUAL"
ALIASES = {"verity": "polar-verity"}
"""Short names ``--virtual-devices`` also takes."""


@dataclass
class Scenario:
    """What the virtual sensors are told to produce."""

    devices: tuple[str, ...] = ("open-emg", "polar-h10")
    tension: TensionScript = field(default_factory=lambda: TensionScript.constant(40.0, 30.0))
    heart: HeartScript = field(default_factory=HeartScript)
    faults: dict[str, Faults] = field(default_factory=dict)
    seed: int = 1
    emg_rate_hz: int = 1000
    ecg_rate_hz: float = 129.6
    """True rate of the virtual Polar H10's nominal 130 Hz ECG (real straps run at 128-131 Hz)."""
    keep_truth: bool = False
    ganglion_firmware: int = 2
    """Packet format of the virtual OpenBCI Ganglion: 2 (delta compression, reset packets) or 3 (absolute values)."""
    body: EmgBody = field(default_factory=EmgBody)
    """What skin, electrodes, the heart, posture and the room add to the scripted EMG (``EmgBody.clean()``: nothing)."""
    emg_samples_per_frame: int | None = None
    """Samples per open-EMG frame; by default 20 in real time, 50 up to 5x and 100 above (MTU 517 holds
    124), so the in-process link (about 2,000 notifications/s on one core) keeps up."""


class VirtualWorld:
    """The virtual radio and its peripherals; use as ``async with VirtualWorld(...) as world``."""

    def __init__(self, scenario: Scenario | None = None, speed: float = 1.0,
                 profiles: dict[str, DeviceProfile] | None = None) -> None:
        self.scenario = scenario or Scenario()
        self.scenario.devices = tuple(ALIASES.get(d, d) for d in self.scenario.devices)
        self.scenario.faults = {ALIASES.get(d, d): f for d, f in self.scenario.faults.items()}
        unknown = [d for d in self.scenario.devices if d not in NAMES]
        if unknown:
            raise SensorError(f"no virtual sensor for {', '.join(map(repr, unknown))}; choose from {', '.join(sorted(NAMES))} (or verity)")
        self.speed = speed
        self.profiles = profiles or load_profiles()
        self.radio = VirtualRadio()
        self.peripherals: dict[str, VirtualPeripheral] = {}
        self.heart = Heart(BeatGenerator(self.scenario.heart, np.random.default_rng([self.scenario.seed, 7])))
        """The body's one heart: the straps send its beats and the EMG picks up its ECG."""
        self._origin = time.monotonic()
        self.backend = BleBackend(BumbleScanner, BumbleClient, {"radio": self.radio}, virtual=True)

    def _make(self, kind: str, index: int) -> VirtualPeripheral:
        sc = self.scenario
        common = dict(speed=self.speed, faults=sc.faults.get(kind, Faults()), seed=sc.seed * 100 + index,
                      clock_origin=self._origin)
        args = (self.radio, self.profiles[kind], NAMES[kind], ADDRESSES[kind])
        if kind == "open-emg":
            spf = sc.emg_samples_per_frame or (20 if self.speed <= 2 else 50 if self.speed <= 5 else 100)
            return VirtualOpenEmg(*args, tension=sc.tension, sample_rate_hz=sc.emg_rate_hz, keep_truth=sc.keep_truth,
                                  samples_per_frame=spf, drift_ppm=40.0, body=sc.body, heart=self.heart, **common)
        if kind == "polar-h10":
            return VirtualPolarH10(*args, heart=self.heart, ecg_rate_hz=sc.ecg_rate_hz, drift_ppm=-25.0, **common)
        if kind == "hrs-strap":
            return VirtualHeartRateStrap(*args, heart=self.heart, **common)
        if kind == "ganglion":
            return VirtualGanglion(*args, tension=sc.tension, firmware=sc.ganglion_firmware, keep_truth=sc.keep_truth,
                                   body=sc.body, drift_ppm=30.0, **common)
        if kind == "bitalino":  # payload: not a multiple of a 6-byte frame, sized so the link keeps up at speed
            return VirtualBitalino(*args, tension=sc.tension, heart=sc.heart, keep_truth=sc.keep_truth, body=sc.body,
                                   payload_bytes=20 * int(np.ceil(self.speed)) - 1, drift_ppm=30.0, **common)
        if kind == "polar-verity":
            return VirtualPolarVerity(*args, heart=sc.heart, drift_ppm=-20.0, **common)
        raise AssertionError(kind)  # unknown kinds are refused in __init__

    async def start(self) -> VirtualWorld:
        drop_late_gatt_responses(asyncio.get_running_loop())
        for i, kind in enumerate(self.scenario.devices):
            peripheral = self._make(kind, i)
            await peripheral.start()
            self.peripherals[kind] = peripheral
        return self

    async def stop(self) -> None:
        for peripheral in self.peripherals.values():
            await peripheral.stop()

    async def __aenter__(self) -> VirtualWorld:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
