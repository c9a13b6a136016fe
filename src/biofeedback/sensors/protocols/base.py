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
from biofeedback.sensors.timing import (
    ANCHOR_HELD_FRAMES,
    CLOCK_CONSISTENCY_S,
    FrameEnd,
    FrameMark,
    device_time_impossible,
    frames_agree,
    place_frame,
)
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
    """Common part of streams whose device stamps its samples: admission, drift fit, frame placement, gap check.

    A decoded frame is taken as data only when it agrees with the stream's newest frame
    (``follows``); the first frames after START or a reconnect, and any frame that disagrees, are
    held until two of them agree with each other (``admit``). So one frame of garbage that happens to
    decode is dropped and counted, and never becomes the time base or index the frames after it are
    judged by; a device that really restarted (its clock or index starting over) is re-anchored on
    its new frames, with a gap.
    """

    stream = ""

    def __init__(self, source: BleSource, nominal_rate_hz: float) -> None:
        super().__init__(source)
        self.fit = DriftFit()
        self.nominal_rate_hz = nominal_rate_hz
        self.rate_hz = nominal_rate_hz
        """The sample rate frames are judged and placed at (a driver may measure the true one)."""
        self.link_lost = False
        self.prev_end: FrameEnd | None = None
        self.anchor: FrameMark | None = None
        """The newest frame taken as data in the current run of the device; None until two frames agree."""
        self._held: list[tuple[FrameMark, Any]] = []
        self._restarted_after: FrameEnd | None = None

    def on_link_lost(self) -> None:
        self.link_lost = True
        self.anchor = None
        self._discard_held()

    def follows(self, mark: FrameMark) -> bool:
        """True when a frame can follow the stream's newest frame (``timing.frames_agree``, not from the future)."""
        return (self.anchor is not None
                and frames_agree(self.anchor, mark, self.rate_hz, CLOCK_CONSISTENCY_S + self.clock.jitter_s())
                and not self.impossible(mark.first_device_s, mark.arrival_s))

    def admit(self, mark: FrameMark, frame: Any) -> list[tuple[FrameMark, Any]]:
        """The frames to take as data now, oldest first.

        ``frame`` when it follows the stream; else, when it agrees with a held frame, that frame and
        it (``rejoin`` decides how the run they start joins the stream); else none, and ``frame`` is
        held. Held frames passed over are discarded and counted as decode errors.
        """
        if self.follows(mark):
            self._discard_held()
            return [(mark, frame)]
        tolerance_s = CLOCK_CONSISTENCY_S + self.clock.jitter_s()
        for i in range(len(self._held) - 1, -1, -1):
            held_mark, held_frame = self._held[i]
            if frames_agree(held_mark, mark, self.rate_hz, tolerance_s):
                del self._held[i]
                self._discard_held()
                self.rejoin(held_mark)
                return [(held_mark, held_frame), (mark, frame)]
        self._held.append((mark, frame))
        if len(self._held) > ANCHOR_HELD_FRAMES:
            del self._held[0]
            self._discarded(1)
        return []

    def rejoin(self, first: FrameMark) -> None:
        """Two agreeing frames from ``first`` on start a run that does not follow the stream's newest frame.

        After START or a reconnect (no anchor) the run goes on from the stream's last sample when its
        device time can (the time between is a gap, as ``place`` finds); otherwise the device restarted.
        """
        if self.prev_end is None:
            return
        if self.anchor is None and not self.impossible(first.first_device_s, first.arrival_s):
            return
        self.restart()

    def restart(self) -> None:
        """The device's clock or index started over: its timing starts afresh, and the time since the last sample is a gap."""
        self._restarted_after = self.prev_end
        self.prev_end = None
        self.anchor = None
        self.fit.reset()

    def _discard_held(self) -> None:
        self._discarded(len(self._held))
        self._held.clear()

    def _discarded(self, frames: int) -> None:
        for _ in range(frames):
            self.source.decode_error(DecodeError(f"{self.stream} frame that agrees with no other frame: discarded"))

    def impossible(self, device_s: float, arrival_s: float) -> bool:
        """True when a frame's device time cannot be right (``timing.device_time_impossible``)."""
        if self.prev_end is None:
            return False
        return device_time_impossible(device_s, arrival_s, self.prev_end.device_s, float(self.fit.to_host(device_s)))

    def place(self, first_device_s: float, n: int, period_s: float, lost_samples: int | None = None) -> np.ndarray:
        """Session times of a frame's samples (``timing.place_frame``); reports the gap before it."""
        p = place_frame(first_device_s, n, period_s, float(self.fit.to_host(first_device_s)), self.fit.b,
                        self.prev_end, lost_samples)
        reason = "disconnect" if self.link_lost else "dropped-packets"
        if p.gap_s is not None:
            self.source.gap(Gap(self.stream, self.source.name, *p.gap_s, reason, p.lost_samples))
        elif (before := self._restarted_after) is not None and p.times_s[0] > before.session_s + period_s:
            lost = max(1, int(round((p.times_s[0] - before.session_s) / period_s)) - 1)
            gap_reason = reason if self.link_lost else "device-restart"
            self.source.gap(Gap(self.stream, self.source.name, before.session_s + period_s, float(p.times_s[0]),
                                gap_reason, lost))
        self._restarted_after = None
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
