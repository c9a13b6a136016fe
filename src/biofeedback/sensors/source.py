"""The ``Source`` interface: one source of blocks into a sink, whatever stands behind it.

BLE sensors (``sensors.ble.BleSource``, real adapters or the virtual radio) and recorded sessions played
back (``sensors.replay.ReplaySource``) implement it, as bleak's backends sit behind ``BleakClient`` and
BrainFlow's synthetic and playback boards behind its ``BoardShim`` (STYLE 1). A source reports its link
state as a ``vocab.SourceState``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from biofeedback.errors import BiofeedbackError, Reason
from biofeedback.stream import Block, Gap, SessionClock
from biofeedback.vocab import SourceState


class SensorError(BiofeedbackError):
    """A sensor could not be used; the message says what to do."""

    default_reason = Reason.SENSOR_FAILED


class Sink(Protocol):
    """Where a source hands its output (``biofeedback.stream.StreamHub``)."""

    def on_block(self, block: Block) -> None: ...
    def on_gap(self, gap: Gap) -> None: ...
    def on_status(self, source: str, status: SourceStatus) -> None: ...



@dataclass
class SourceStatus:
    """What a user needs to see about one sensor's link."""

    state: SourceState = SourceState.IDLE
    packets: int = 0
    decode_errors: int = 0
    reconnects: int = 0
    gaps: int = 0
    mtu: int = 0
    battery_pct: int | None = None
    contact: tuple[bool, ...] = ()
    rate_hz: dict[str, float] = field(default_factory=dict)
    """Measured sample rate per stream (e.g. a Polar H10 runs its '130 Hz' ECG at 128-131 Hz)."""
    device_info: dict[str, str] = field(default_factory=dict)
    last_error: str = ""


class Source:
    """One source of blocks into a sink: a BLE sensor (real or virtual) or a replayed recording (``sensors.replay``)."""

    def __init__(self, name: str, clock: SessionClock, sink: Sink) -> None:
        self.name = name
        self.clock = clock
        self.sink = sink
        self.status = SourceStatus()
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Stream into the sink until ``stop()`` (or, for a replay, the end of the recording)."""
        raise NotImplementedError

    async def stop(self) -> None:
        self._stopping.set()

    # Called from notification callbacks: keep them cheap.
    def emit(self, block: Block) -> None:
        self.status.packets += 1
        self.sink.on_block(block)

    def gap(self, gap: Gap) -> None:
        self.status.gaps += 1
        self.sink.on_gap(gap)

    def _set_state(self, state: SourceState, error: str = "") -> None:
        self.status.state = state
        if error:
            self.status.last_error = error
        self.sink.on_status(self.name, self.status)
