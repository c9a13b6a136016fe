"""Acquisition: pick sensors, run their sources into a ``StreamHub``, and summarise live numbers.

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

import numpy as np

from biofeedback.dsp import load_kernels
from biofeedback.sensors.replay import ReplaySource, recorded_sources
from biofeedback.sensors.ble import BleBackend, BleSource, FoundSensor, scan
from biofeedback.sensors.source import SensorError, Source
from biofeedback.sensors.profiles import DeviceProfile
from biofeedback.sensors.virtual import Scenario, VirtualWorld
from biofeedback.stream import Gap, SessionClock, StreamHub, StreamKind

SCAN_TIME_S = 3.0
"""Wall seconds a scan for real sensors lasts."""
VIRTUAL_SCAN_TIME_S = 0.3
SLOW_KERNEL_LOAD_S = 2.0
"""Say so when preparing the signal processing took longer than this (the first run after an install compiles)."""
EMG_RMS_WINDOW_S = 1.0
RMSSD_WINDOW_S = 60.0


def quiet_bumble_logs() -> None:
    """bumble logs every link event at WARNING; users need our messages, not its internals."""
    logging.getLogger("bumble").setLevel(logging.ERROR)


def choose_sensors(found: Iterable[FoundSensor], wanted: Iterable[str] | None = None) -> list[FoundSensor]:
    """One sensor per wanted profile; by default one EMG sensor and the best heart sensor."""
    found = list(found)
    if wanted:
        firsts = {name: next((f for f in found if f.profile.name == name), None) for name in wanted}
        return [f for f in firsts.values() if f is not None]
    emg = [f for f in found if "open-emg" in f.profile.protocols]
    heart = [f for f in found if "hrs" in f.profile.protocols]
    return emg[:1] + heart[:1]


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
        raise SensorError("--replay plays a recording instead of sensors; leave out --virtual")
    if speed != 1.0 and not virtual and replay is None:
        raise SensorError("--speed only applies to virtual sensors and replays; real sensors run in real time")
    if (load_s := load_kernels()) > SLOW_KERNEL_LOAD_S:
        print(f"signal processing compiled in {load_s:.0f} s (once after an install; later starts take under a second)",
              file=sys.stderr)
    if replay is not None:
        names = recorded_sources(replay, wanted, replay_sources)
        clock = SessionClock(speed)
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
        found = await scan(profiles.values(), backend, VIRTUAL_SCAN_TIME_S if virtual else SCAN_TIME_S)
        chosen = choose_sensors(found, wanted)
        if not chosen:
            raise SensorError(
                "no sensor found. Switch the sensors on, moisten the strap's electrodes, move closer, "
                "or try the built-in virtual sensors with --virtual."
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


@dataclass
class LiveNumbers:
    """The minimal live numbers of ``biofeedback monitor`` (the full processing core is ``dsp``)."""

    t_s: float
    hr_bpm: float | None
    rr_count: int
    rmssd_ms: float | None
    emg_rms_uv: dict[str, float]
    sensors: dict[str, dict]
    new_gaps: list[Gap]

    def as_dict(self) -> dict:
        return {
            "t_s": round(self.t_s, 3),
            "hr_bpm": self.hr_bpm,
            "rr_count": self.rr_count,
            "rmssd_ms": None if self.rmssd_ms is None else round(self.rmssd_ms, 1),
            "emg_rms_uv": {k: round(v, 2) for k, v in self.emg_rms_uv.items()},
            "sensors": self.sensors,
            "gaps": [{"stream": g.stream, "source": g.source, "start_s": round(g.start_s, 3), "length_s": round(g.length_s, 3),
                      "reason": g.reason, "lost_samples": g.lost_samples} for g in self.new_gaps],
        }


def rms_uv(x: np.ndarray) -> np.ndarray:
    """RMS per column about the column mean, ignoring NaN gap markers."""
    x = x[~np.isnan(x).any(axis=1)]
    if len(x) == 0:
        return np.full(x.shape[1], np.nan)
    return np.sqrt(np.mean((x - x.mean(axis=0)) ** 2, axis=0))


def rmssd_ms(rr_ms: np.ndarray) -> float | None:
    """Root mean square of successive RR differences (Task Force 1996)."""
    rr = rr_ms[~np.isnan(rr_ms)]
    if len(rr) < 3:
        return None
    return float(np.sqrt(np.mean(np.diff(rr) ** 2)))


class LiveSummary:
    """Computes ``LiveNumbers`` from the hub's ring buffers, once per session second."""

    def __init__(self, acq: Acquisition) -> None:
        self.acq = acq
        self._gaps_seen = 0

    def numbers(self) -> LiveNumbers:
        hub, now = self.acq.hub, self.acq.clock.now_s()
        hr = None
        if (buf := hub.buffer(StreamKind.HR)) is not None:
            _, x = buf.snapshot(1)
            hr = float(x[-1, 0]) if len(x) else None
        rr_count, rmssd = 0, None
        rr_key = next((k for k in hub.buffers if k[0] == StreamKind.RR), None)
        if rr_key is not None:
            rr_count = hub.samples[rr_key]
            t, x = hub.buffers[rr_key].since(now - RMSSD_WINDOW_S)
            rmssd = rmssd_ms(x[:, 0])
        emg: dict[str, float] = {}
        for (stream, source), buf in hub.buffers.items():
            if stream == StreamKind.EMG:
                _, x = buf.snapshot(int(EMG_RMS_WINDOW_S * (hub.rates[(stream, source)] or 1000)))
                if len(x):
                    emg.update({ch: float(v) for ch, v in zip(hub.channels[(stream, source)], rms_uv(x))})
        sensors = {
            s.name: {
                "state": s.status.state, "packets": s.status.packets, "decode_errors": s.status.decode_errors,
                "gaps": s.status.gaps, "reconnects": s.status.reconnects, "battery_pct": s.status.battery_pct,
                "contact": list(s.status.contact),
            }
            for s in self.acq.sources
        }
        new_gaps = hub.gaps[self._gaps_seen :]
        self._gaps_seen = len(hub.gaps)
        return LiveNumbers(now, hr, rr_count, rmssd, emg, sensors, list(new_gaps))
