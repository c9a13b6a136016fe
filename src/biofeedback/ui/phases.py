"""Phases and markers of a dashboard session: which phase runs, since when, and what the therapist marked.

Events are written as the terminal session writes them (``session.run``): a ``phase`` event per phase
(start, duration, kind, planned length), ``hands-on`` intervals, ``marker`` events for techniques and a
``note`` per note, each at the session time of the click or key press. Unattended runs (``auto``) start
phases one after another, end them at their planned length and set the protocol's scripted markers.
A replay (``RecordedPhases``) follows a recording's own phases and markers at their recorded times.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from biofeedback.session.protocol import Phase, Protocol, ScriptedMarker
from biofeedback.session.run import HANDS_ON, _Treatment
from biofeedback.store import SessionReader


class PhaseController:
    """State of the running session's phases; ``recorder`` is anything with ``Recorder.event``'s signature."""

    def __init__(self, protocol: Protocol, recorder, *, auto: bool = False, out: Callable[[str], None] = print) -> None:
        self.protocol = protocol
        self.recorder = recorder
        self.auto = auto
        self.treatment = _Treatment(protocol, recorder, out)
        self.index: int | None = None
        """Index of the running phase in ``protocol.phases``; None between phases."""
        self.started_s = 0.0
        self.done: list[int] = []
        self.history: dict[int, tuple[float, float]] = {}
        """(start s, end s) of each phase that ran, by index."""
        self.finished = False
        self._script: list[ScriptedMarker] = []

    @property
    def phase(self) -> Phase | None:
        return None if self.index is None else self.protocol.phases[self.index]

    @property
    def hands_on(self) -> bool:
        return self.treatment.hands_on_since is not None

    def next_index(self) -> int | None:
        """The first phase after the last one started that has not run yet."""
        after = max([self.index if self.index is not None else -1] + self.done)
        return after + 1 if after + 1 < len(self.protocol.phases) else None

    def elapsed_s(self, now_s: float) -> float:
        return now_s - self.started_s if self.index is not None else 0.0

    def planned_s(self) -> float | None:
        phase = self.phase
        if phase is None:
            return None
        return phase.planned_s() if self.auto else phase.duration_s

    def start(self, index: int, t_s: float) -> None:
        """End the running phase (if any) and start phase ``index`` at ``t_s``."""
        if self.finished:
            return
        self.end(t_s)
        self.index, self.started_s = index, t_s
        phase = self.protocol.phases[index]
        self.recorder.event("phase-start", t_s, phase.name, data={"kind": phase.kind, "planned_s": phase.duration_s})
        self._script = list(phase.script) if self.auto else []

    def end(self, t_s: float) -> None:
        """End the running phase at ``t_s``: hands off, and its ``phase`` event written."""
        phase = self.phase
        if phase is None:
            return
        self.treatment.hands(t_s, False)
        self.recorder.event("phase", self.started_s, phase.name, t_s - self.started_s,
                            data={"kind": phase.kind, "planned_s": phase.duration_s})
        self.done.append(self.index)
        self.history[self.index] = (self.started_s, t_s)
        self.index = None

    def finish(self, t_s: float) -> None:
        """End the session: the running phase ends; a marker says so if phases were left out."""
        if self.finished:
            return
        self.end(t_s)
        if len(set(self.done)) < len(self.protocol.phases):
            self.recorder.event("marker", t_s, "session ended early")
        self.finished = True

    def hands(self, t_s: float) -> None:
        self.treatment.hands(t_s)

    def technique(self, t_s: float, number: int) -> None:
        """Technique ``number`` (1-based, as on its button and key) at ``t_s``."""
        if 1 <= number <= len(self.protocol.techniques):
            self.treatment.technique(t_s, self.protocol.techniques[number - 1].key)

    def note(self, t_s: float, text: str) -> None:
        self.treatment.note(t_s, text)

    def tick(self, now_s: float) -> None:
        """Advance by the clock: scripted markers, planned phase ends, and (auto) the next phase."""
        if self.finished:
            return
        while self._script and now_s >= self.started_s + self._script[0].at_s:
            m = self._script.pop(0)
            if m.action == "technique":
                self.treatment.technique(now_s, m.technique or "")
            elif m.action == "note":
                self.treatment.note(now_s, m.text)
            else:
                self.treatment.hands(now_s, m.action == "hands-on")
        planned = self.planned_s()
        if planned is not None and self.elapsed_s(now_s) >= planned:
            self.end(now_s)
        if self.auto and self.index is None:
            nxt = self.next_index()
            if nxt is None:
                self.finish(now_s)
            else:
                self.start(nxt, now_s)


class RecordedPhases(PhaseController):
    """The phases, hands-on intervals, markers and notes of the recording at ``path``, each applied when the replay's
    clock reaches its recorded session time (the same state and log lines as live; ``recorder`` records nothing in a
    replay)."""

    def __init__(self, protocol: Protocol, path: Path, recorder, *, out: Callable[[str], None] = print) -> None:
        super().__init__(protocol, recorder, out=out)
        index = {phase.name: i for i, phase in reversed(list(enumerate(protocol.phases)))}
        with SessionReader(path) as reader:
            phases, events = reader.phases(), reader.events()
        due: list[tuple[float, int, Callable[[float], None]]] = []
        # At one instant: hands off, phase end, phase start, hands on, then markers and notes (the live order).
        for e in phases:
            if e["label"] in index:
                due.append((e["t_s"] + e["duration_s"], 1, self.end))
                due.append((e["t_s"], 2, lambda t, i=index[e["label"]]: self.start(i, t)))
        for e in events:
            if e["kind"] == HANDS_ON:
                due.append((e["t_s"] + e["duration_s"], 0, lambda t: self.treatment.hands(t, False)))
                due.append((e["t_s"], 3, lambda t: self.treatment.hands(t, True)))
            elif e["kind"] in ("marker", "note"):
                prefix = "note: " if e["kind"] == "note" else ""
                due.append((e["t_s"], 4, lambda t, text=f"{prefix}{e['label']}": out(f"{t:7.1f} s  {text}")))
        self._due = sorted(due, key=lambda d: (d[0], d[1]))

    def tick(self, now_s: float) -> None:
        """Apply every recorded event due by ``now_s``, at its recorded time."""
        while self._due and self._due[0][0] <= now_s and not self.finished:
            t_s, _, apply = self._due.pop(0)
            apply(t_s)

    def finish(self, t_s: float) -> None:
        """End the replay at ``t_s``: everything recorded until then is shown, nothing after."""
        self.tick(t_s)
        super().finish(t_s)
