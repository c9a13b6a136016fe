"""Acquisition: pick sensors (or a recording to replay) and run their sources into a ``StreamHub``.

The same code path serves real sensors (the platform's bleak backend) and the virtual ones
(``VirtualWorld``'s bumble backend): only the ``BleBackend`` differs. A recorded session can stand
in for the sensors (``replay=``): its ``ReplaySource``s feed the hub as the sensors did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from biofeedback.dsp import load_kernels
from biofeedback.errors import Reason
from biofeedback.sensors.replay import ReplayClock, ReplaySource, recorded_sources
from biofeedback.sensors.ble import BleBackend, BleSource, FoundSensor, scan
from biofeedback.sensors.source import SensorError, Source
from biofeedback.sensors.profiles import DeviceProfile
from biofeedback.sensors.virtual import Scenario, VirtualWorld
from biofeedback.stream import SessionClock, StreamHub, StreamKind

SCAN_WALL_S = 3.0
"""Wall seconds a scan for real sensors lasts."""
VIRTUAL_SCAN_WALL_S = 0.3
SLOW_KERNEL_LOAD_WALL_S = 2.0
"""Say so when preparing the signal processing took longer than this (the first run after an install compiles)."""
DRAIN_WALL_S = 2.0
"""At the end of a protocol, wall seconds the session waits at most for samples taken before the end but still on
their way (BLE latency; a Polar H10 ECG frame holds ~0.55 s; a busy machine running a virtual session at --speed),
so that the last phase is recorded to its end."""
DRAIN_STALL_WALL_S = 0.5
"""A stream that has delivered nothing for this long (wall s) while draining is not waited for."""


def quiet_bumble_logs() -> None:
    """bumble logs every link event at WARNING; users need our messages, not its internals."""
    logging.getLogger("bumble").setLevel(logging.ERROR)


def choose_sensors(found: Iterable[FoundSensor], wanted: Iterable[str] | None = None) -> list[FoundSensor]:
    """One sensor per wanted profile; by default the best EMG sensor and, unless it carries the heart too (a
    BITalino with an ECG sensor), the best heart sensor."""
    found = list(found)
    if wanted:
        firsts = {name: next((f for f in found if f.profile.name == name), None) for name in wanted}
        return [f for f in firsts.values() if f is not None]

    def carries(f: FoundSensor, kind: str) -> bool:
        return any(s.kind == kind for s in f.profile.streams)

    chosen = [f for f in found if carries(f, StreamKind.EMG)][:1]
    if not (chosen and carries(chosen[0], StreamKind.RR)):
        chosen += [f for f in found if carries(f, StreamKind.RR) and f not in chosen][:1]
    return chosen


@dataclass
class Acquisition:
    """Running sources feeding one hub, with one session clock."""

    clock: SessionClock
    hub: StreamHub
    sources: list[Source] = field(default_factory=list)
    tasks: list[asyncio.Task] = field(default_factory=list)
    world: VirtualWorld | None = None

    @contextlib.asynccontextmanager
    async def running(self, sources: Iterable[Source]) -> AsyncIterator[Acquisition]:
        """Run ``sources`` into the hub until the block exits, then stop them."""
        for source in sources:
            self.sources.append(source)
            self.tasks.append(asyncio.create_task(source.run(), name=f"source {source.name}"))
        try:
            yield self
        finally:
            await self.stop()

    async def stop(self) -> None:
        for source in self.sources:
            await source.stop()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def drain(self, until_s: float, wall_s: float = DRAIN_WALL_S) -> None:
        """Wait (at most ``wall_s``) for samples taken before session time ``until_s`` that are still on their way:
        until every sampled stream (EMG, ECG) that is still delivering has reached ``until_s``. A stream that
        delivers nothing for ``DRAIN_STALL_WALL_S`` (its sensor dropped out, or it has ended) is not waited for."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wall_s
        counts = dict(self.hub.samples)
        moved = {key: loop.time() for key in counts}
        while loop.time() < deadline and not self.ended():
            now = loop.time()
            behind = []
            for key, buf in list(self.hub.buffers.items()):
                if not self.hub.rates.get(key):
                    continue  # beats, HR: no sample is due at any given time
                if self.hub.samples.get(key, 0) != counts.get(key):
                    counts[key], moved[key] = self.hub.samples.get(key, 0), now
                t, _ = buf.snapshot(1)
                if t.size and t[-1] < until_s and now - moved.get(key, now) < DRAIN_STALL_WALL_S:
                    behind.append(key)
            if not behind:
                return
            await asyncio.sleep(0.02)

    def failed(self) -> list[BaseException]:
        return [t.exception() for t in self.tasks if t.done() and not t.cancelled() and t.exception() is not None]

    def ended(self) -> bool:
        """True when every source has finished (a replay at the end of its file; sensors run until stopped)."""
        return bool(self.tasks) and all(t.done() for t in self.tasks)


@contextlib.asynccontextmanager
async def acquire(
    profiles: dict[str, DeviceProfile],
    *,
    virtual: bool = False,
    speed: float = 1.0,
    scenario: Scenario | None = None,
    wanted: Iterable[str] | None = None,
    replay: Path | str | None = None,
    replay_sources: Iterable[str] | None = None,
) -> AsyncIterator[Acquisition]:
    """Scan, connect the chosen sensors (or open the recording to ``replay``) and stream until the block exits.

    ``replay_sources``: the replay's source names as ``replay.recorded_sources`` returned them, when the caller has
    already read the file through (None: it is read through here first)."""
    if replay is not None and virtual:
        raise SensorError("--replay plays a recording instead of sensors; leave out --virtual", Reason.BAD_ARGUMENT)
    if speed != 1.0 and not virtual and replay is None:
        raise SensorError("--speed only applies to virtual sensors and replays; real sensors run in real time",
                          Reason.BAD_ARGUMENT)
    if (load_s := load_kernels()) > SLOW_KERNEL_LOAD_WALL_S:
        print(f"signal processing compiled in {load_s:.0f} s (once after an install; later starts take under a second)",
              file=sys.stderr)
    if replay is not None:
        names = recorded_sources(replay, wanted, replay_sources)
        clock = ReplayClock(speed)
        hub = StreamHub(clock)
        async with Acquisition(clock, hub).running(ReplaySource(Path(replay), n, clock, hub) for n in names) as acq:
            yield acq
        return
    world = None
    if virtual:
        quiet_bumble_logs()
        world = await VirtualWorld(scenario or Scenario(), speed=speed, profiles=profiles).start()
        backend = world.backend
    else:
        backend = BleBackend()
    try:
        found = await scan(profiles.values(), backend, VIRTUAL_SCAN_WALL_S if virtual else SCAN_WALL_S)
        chosen = choose_sensors(found, wanted)
        if not chosen:
            raise SensorError(
                "no sensor found. Switch the sensors on, moisten the strap's electrodes, move closer, "
                "or try the built-in virtual sensors with --virtual.", Reason.NO_SENSOR
            )
        clock = SessionClock(speed)
        hub = StreamHub(clock)
        sources = [BleSource(f.device, f.profile, clock, hub, backend) for f in chosen]
        async with Acquisition(clock, hub, world=world).running(sources) as acq:
            yield acq
    finally:
        if world is not None:
            await world.stop()
            await asyncio.sleep(0.05)  # let the virtual link deliver its last disconnect events
