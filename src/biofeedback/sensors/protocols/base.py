"""What every protocol module builds on: ``DecodeError``, ``ProtocolSpec`` and the ``Driver`` base classes.

A protocol module (``hrs``, ``pmd``, ``open_emg``) holds its decoders, its driver (a ``Driver``
subclass) and its ``SPEC``, a ``ProtocolSpec`` that says what a device profile must give for it.
The drivers live here rather than in ``sensors.ble`` because ``ble`` looks them up in the registry
(``protocols.PROTOCOLS``) and ``profiles`` validates from it: a driver base in ``ble`` would make
``profiles -> protocols -> ble -> profiles`` an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from biofeedback.errors import BiofeedbackError
from biofeedback.sensors.timing import FrameEnd, device_time_impossible, place_frame
from biofeedback.stream import DriftFit, Gap

if TYPE_CHECKING:
    from bleak import BleakClient

    from biofeedback.sensors.ble import BleSource


class DecodeError(BiofeedbackError, ValueError):
    """A packet does not follow its protocol's layout; the message says which rule it broke."""


def u16(value: int, what: str) -> int:
    """``value`` if it fits an unsigned 16-bit command field, else ValueError naming ``what``."""
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{what} {value} does not fit in 16 bits (0-65535)")
    return value


def u8(value: int, what: str) -> int:
    """``value`` if it fits an unsigned 8-bit command field, else ValueError naming ``what``."""
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{what} {value} does not fit in 8 bits (0-255)")
    return value


class Driver:
    """One protocol of a device: subscribe, start, decode, detect gaps."""

    def __init__(self, source: BleSource) -> None:
        self.source = source
        self.profile = source.profile
        self.clock = source.clock

    async def setup(self, client: BleakClient) -> None:
        raise NotImplementedError

    def on_link_lost(self) -> None:
        """The link dropped: the next data after reconnecting closes a 'disconnect' gap."""

    def timing_report(self) -> dict[str, dict]:
        """Per stream, how the device's own clock behaved (measured rate, clock jumps), for the recording's metadata."""
        return {}

    def decode(self, decoder: Callable[..., Any], data: bytes, *args: Any) -> Any:
        """Decode one notification; a ``DecodeError`` is counted and gives None."""
        try:
            return decoder(data, *args)
        except DecodeError as exc:
            self.source.decode_error(exc)
            return None


class SampledDriver(Driver):
    """Common part of streams whose device stamps its samples: drift fit, frame placement, gap check."""

    stream = ""

    def __init__(self, source: BleSource, nominal_rate_hz: float) -> None:
        super().__init__(source)
        self.fit = DriftFit()
        self.nominal_rate_hz = nominal_rate_hz
        self.link_lost = False
        self.prev_end: FrameEnd | None = None

    def on_link_lost(self) -> None:
        self.link_lost = True

    def impossible(self, device_s: float, arrival_s: float) -> bool:
        """True when a frame's device time cannot be right (``timing.device_time_impossible``)."""
        if self.prev_end is None:
            return False
        return device_time_impossible(device_s, arrival_s, self.prev_end.device_s, float(self.fit.to_host(device_s)))

    def place(self, first_device_s: float, n: int, period_s: float, lost_samples: int | None = None) -> np.ndarray:
        """Session times of a frame's samples (``timing.place_frame``); reports the gap before it."""
        p = place_frame(first_device_s, n, period_s, float(self.fit.to_host(first_device_s)), self.fit.b,
                        self.prev_end, lost_samples)
        if p.gap_s is not None:
            reason = "disconnect" if self.link_lost else "dropped-packets"
            self.source.gap(Gap(self.stream, self.source.name, *p.gap_s, reason, p.lost_samples))
        self.link_lost = False
        self.prev_end = p.end
        return p.times_s


@dataclass(frozen=True)
class ProtocolSpec:
    """One protocol as data: what a device profile must give for it, and the driver that speaks it."""

    name: str
    """As listed in a profile's ``protocols``."""
    gatt_table: str
    """Name of its table under ``[gatt]``."""
    roles: tuple[str, ...]
    """Characteristic roles its gatt table must give."""
    streams: tuple[str, ...]
    """Stream kinds it can produce."""
    settings: Mapping[str, str]
    """Settings it needs, with their kind of value ("u8", "u16", "seconds", "range")."""
    driver: type[Driver]
    rate_setting: tuple[str, str] | None = None
    """(stream kind, setting): that stream's ``rate_hz`` must equal the setting."""
    rate_range_setting: str | None = None
    """A "range" setting that must contain the ``rate_setting``'s value."""
    channel_mask_setting: tuple[str, str] | None = None
    """(stream kind, setting): that stream names one channel per bit set in the setting."""
