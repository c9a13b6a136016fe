"""Replay of a recorded session as a live source: its blocks and gaps, paced on the session clock.

A ``ReplaySource`` per recorded source makes the calls a ``BleSource`` makes on its sink: every
stored block as it was received (samples, times, sequence number, sample index, flags, raw packet,
source name) at its recorded arrival time, so at ``speed`` N the recording plays N times faster.
The recorder stores a strap's RR blocks as the HRS driver emitted them (RR in ms with beat times),
so beats come through in their live form. A recorded gap is handed on just before the block that
closed it, where the driver declared it live.

It sits in ``sensors/`` beside the BLE source, behind the one ``Source`` interface (as BrainFlow's playback
board sits beside its real boards). It is the one source that reads the session store.

A replay runs on a ``ReplayClock``: a session clock that can pause and jump ahead. Paused, no block falls due;
after a jump the blocks up to the new time are handed on at once, so the live processor, the phases and the
windows see everything in between, as a replay running behind would (a jump back replays from the start).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

from biofeedback.sensors.source import SensorError, Sink, Source
from biofeedback.store import SessionReader, StoreError
from biofeedback.stream import NS_PER_S, Block, Gap, SessionClock
from biofeedback.vocab import SourceState

MIN_SLEEP_WALL_S = 0.002
"""Wall seconds below which a replay hands on a due block at once instead of sleeping (timer granularity)."""
MAX_SLEEP_WALL_S = 0.1
"""Longest wall sleep of a replay between looks at its clock, so a resume or a jump shows within it."""
GAP_END_TOLERANCE_S = 1e-9
"""A gap closed at the first block of its stream that starts at or after the gap's end, within float rounding."""


def recorded_timeline(reader: SessionReader, source: str) -> Iterator[tuple[int, Block | Gap]]:
    """The blocks and gaps of one recorded source in the order it handed them on live, each with its session time (ns)."""
    open_gaps: dict[str, deque[Gap]] = {}
    for gap in sorted((g for g in reader.gaps() if g.source == source), key=lambda g: g.end_s):
        open_gaps.setdefault(gap.stream, deque()).append(gap)
    channels: dict[str, tuple[str, ...]] = {}
    due_ns = 0
    for row in reader.raw_blocks(source=source):
        stream = row["stream"]
        if stream not in channels:
            channels[stream] = reader.channels(stream, source)
        block = Block(stream, source, row["host_time_ns"], row["data"], rate_hz=row["rate_hz"],
                      first_index=row["first_index"], seq=row["seq"], device_time_ns=row["device_time_ns"],
                      flags=row["flags"], channels=channels[stream], raw=row["raw"], times_s=row["times_s"])
        due_ns = block.host_time_ns
        gaps = open_gaps.get(stream)
        while gaps and block.times_s[0] >= gaps[0].end_s - GAP_END_TOLERANCE_S:
            yield due_ns, gaps.popleft()
        yield due_ns, block
    for gap in sorted((g for gaps in open_gaps.values() for g in gaps), key=lambda g: g.end_s):
        due_ns = max(due_ns, round(gap.end_s * NS_PER_S))
        yield due_ns, gap


class ReplayClock(SessionClock):
    """The session clock of a replay: it can ``pause``, ``resume`` and ``seek_s`` ahead (never back)."""

    def __init__(self, speed: float = 1.0) -> None:
        super().__init__(speed)
        self._paused_ns: int | None = None

    @property
    def paused(self) -> bool:
        return self._paused_ns is not None

    def now_ns(self) -> int:
        return self._paused_ns if self._paused_ns is not None else super().now_ns()

    def pause(self) -> None:
        if self._paused_ns is None:
            self._paused_ns = super().now_ns()

    def resume(self) -> None:
        if self._paused_ns is not None:
            self._restart_at(self._paused_ns)
            self._paused_ns = None

    def seek_s(self, t_s: float) -> float:
        """Jump to session time ``t_s`` if it lies ahead (paused or not); returns the clock's time after the jump."""
        target = max(round(t_s * NS_PER_S), self.now_ns())
        if self._paused_ns is not None:
            self._paused_ns = target
        else:
            self._restart_at(target)
        return self.now_s()

    def _restart_at(self, t_ns: int) -> None:
        self._t0 = time.monotonic_ns() - round(t_ns / self.speed)


class ReplaySource(Source):
    """One recorded source of a session file, played into a sink on the session clock; ends at the end of the file.

    The file is opened read-only and never written to.
    """

    def __init__(self, path: Path, name: str, clock: SessionClock, sink: Sink) -> None:
        super().__init__(name, clock, sink)
        self.path = Path(path)

    async def _until(self, due_ns: int) -> bool:
        """Wait until session time ``due_ns`` (a paused clock holds it back); False if stopped meanwhile."""
        while not self._stopping.is_set():
            wait_s = self.clock.wall_seconds((due_ns - self.clock.now_ns()) / NS_PER_S)
            if wait_s <= MIN_SLEEP_WALL_S:
                await asyncio.sleep(0)  # a replay running behind still lets the rest of the loop run
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), min(wait_s, MAX_SLEEP_WALL_S))
        return not self._stopping.is_set()

    async def run(self) -> None:
        """Hand on every recorded block and gap at its time, until the end of the file or ``stop()``."""
        self._set_state(SourceState.PLAYING)  # not CONNECTED: no sensor is there
        try:
            with SessionReader(self.path) as reader:
                for due_ns, item in recorded_timeline(reader, self.name):
                    if not await self._until(due_ns):
                        self._set_state(SourceState.STOPPED)
                        return
                    if isinstance(item, Gap):
                        self.gap(item)
                    else:
                        self.emit(item)
        except StoreError as exc:
            self._set_state(SourceState.FAILED, str(exc))
            raise
        self._set_state(SourceState.ENDED)


def recorded_sources(path: Path | str, wanted: Iterable[str] | None = None,
                     checked: Iterable[str] | None = None) -> list[str]:
    """The recorded source names of the session at ``path`` to replay (only the ``wanted`` ones, if given).

    Reads the file through once, so a damaged file fails here with one ``StoreError`` line rather
    than midway through a replay (about 0.1 s for a 3.5-minute session). ``checked``: the names an
    earlier call returned for this file; it is not read again.
    """
    blocks = 1
    if checked is not None:
        names = list(checked)
    else:
        with SessionReader(Path(path)) as reader:
            names = list(dict.fromkeys(source for _, source in reader.streams()))
            blocks = sum(1 for _ in reader.raw_blocks())
            reader.gaps()
    if wanted:
        keep = set(wanted)
        names = [name for name in names if name in keep]
    if not names or not blocks:
        raise SensorError(f"{path} holds no recorded sensor data to replay; list the recorded sessions with "
                          "`biofeedback sessions` and pick another")
    return names
