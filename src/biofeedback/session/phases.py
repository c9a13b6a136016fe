"""The one phase machine of a session: which phase runs, since when, and what was marked, for every front end.

The terminal session, the therapist dashboard, the home relaxation (window and terminal) and a replay all
run their phases through ``PhaseMachine``, so a session's events mean the same whoever recorded it:

- ``phase-start`` when a phase starts (so a session killed mid-phase still has its phase), ``phase`` with
  start and duration when it ends;
- a scripted marker (``Phase.script``, applied in unattended runs) at its phase's start plus its ``at_s``,
  however late the machine is ticked; a click or key press at the session time it happened;
- a planned phase end at its phase's start plus its planned length, and (``chain``) the next phase
  starting at that same instant, so phase times do not depend on how often a front end ticks;
- ``hands-on`` intervals, technique ``marker``s, ``note``s; "session ended early" when phases were left out.

Times are session seconds (``SessionClock.now_s``). Events go to ``record`` (``Recorder.event``'s
signature); ``say`` gets a line of text per event for a log. Listeners (``on_phase``) let a front end's
rules (home relaxation's pacer and baseline) follow phase changes without a second machine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from biofeedback.session.protocol import Phase, Protocol, ScriptedMarker
from biofeedback.vocab import EventKind

Record = Callable[..., None]
"""``Recorder.event(kind, t_s, label, duration_s=0.0, data=None)``."""
Say = Callable[[str], None]
ENDED_EARLY = "session ended early"


def _quiet(_line: str) -> None:
    pass


class PhaseMachine:
    """State of a session's phases and markers; every change is recorded at its own session time.

    ``auto``: unattended; phases last their planned length (``Phase.planned_s``), scripted markers are applied,
    and each phase follows the previous one. ``chain``: a phase that reaches its planned end starts the next (the
    terminal and home sessions; the dashboard waits for the therapist unless ``auto``).
    """

    def __init__(self, protocol: Protocol, record: Record, *, auto: bool = False, chain: bool | None = None,
                 say: Say = _quiet) -> None:
        self.protocol = protocol
        self.record = record
        self.auto = auto
        self.chain = auto if chain is None else chain
        self.say = say
        self.index: int | None = None
        """Index of the running phase in ``protocol.phases``; None between phases."""
        self.started_s = 0.0
        """Session time the running (or last) phase started."""
        self.done: list[int] = []
        self.history: dict[int, tuple[float, float]] = {}
        """(start s, end s) of each phase that ran, by index."""
        self.finished = False
        self.hands_on_since: float | None = None
        self.guidance = ""
        """The newest technique marked, as words (what the client is guided through now)."""
        self.listeners: list[Callable[[Phase, float, bool], None]] = []
        """Called with (phase, session s, started) when a phase starts (True) or ends (False)."""
        self._script: list[ScriptedMarker] = []

    # --- state ------------------------------------------------------------------------------------
    @property
    def phase(self) -> Phase | None:
        return None if self.index is None else self.protocol.phases[self.index]

    @property
    def hands_on(self) -> bool:
        return self.hands_on_since is not None

    @property
    def started(self) -> bool:
        return self.index is not None or bool(self.done) or self.finished

    def next_index(self) -> int | None:
        """The first phase after the last one started that has not run yet."""
        after = max([self.index if self.index is not None else -1] + self.done)
        return after + 1 if after + 1 < len(self.protocol.phases) else None

    def elapsed_s(self, now_s: float) -> float:
        return now_s - self.started_s if self.index is not None else 0.0

    def planned_s(self, phase: Phase | None = None) -> float | None:
        """Planned length of ``phase`` (default: the running one): its protocol length; unattended, a phase without
        one lasts ``Phase.planned_s``."""
        phase = phase or self.phase
        if phase is None:
            return None
        return phase.planned_s() if self.auto else phase.duration_s

    def total_planned_s(self) -> float:
        return sum(p.planned_s() for p in self.protocol.phases)

    # --- changes ----------------------------------------------------------------------------------
    def start(self, index: int, t_s: float) -> None:
        """End the running phase (if any) and start phase ``index`` at ``t_s``."""
        if self.finished:
            return
        t_s = self._not_before_start(t_s)
        self.end(t_s)
        self.index, self.started_s = index, t_s
        phase = self.protocol.phases[index]
        self.record(EventKind.PHASE_START, t_s, phase.name, data={"kind": phase.kind, "planned_s": phase.duration_s})
        planned = self.planned_s(phase)
        self.say(f"--- {phase.name} ({phase.kind}, " + ("until Enter" if planned is None else f"{planned:.0f} s")
                 + f") {phase.prompt}")
        self._script = list(phase.script) if self.auto else []
        for listener in self.listeners:
            listener(phase, t_s, True)

    def end(self, t_s: float) -> None:
        """End the running phase at ``t_s``: hands off, and its ``phase`` event written."""
        phase = self.phase
        if phase is None:
            return
        t_s = self._not_before_start(t_s)
        self.hands(t_s, False)
        self.record(EventKind.PHASE, self.started_s, phase.name, t_s - self.started_s,
                    data={"kind": phase.kind, "planned_s": phase.duration_s})
        self.history[self.index] = (self.started_s, t_s)  # before ``done``: a GUI reading done[i] finds history[i]
        self.done.append(self.index)
        self.index = None
        self._script = []
        for listener in self.listeners:
            listener(phase, t_s, False)

    def finish(self, t_s: float) -> None:
        """End the session: the running phase ends; a marker says so if phases were left out (a phase cut short
        shows as its shorter ``phase`` event)."""
        if self.finished:
            return
        self.end(t_s)
        if self.started and len(set(self.done)) < len(self.protocol.phases):
            self.record(EventKind.MARKER, t_s, ENDED_EARLY)
            self.say(f"{t_s:7.1f} s  {ENDED_EARLY}")
        self.finished = True

    def next(self, t_s: float) -> None:
        """End the running phase now and start the next one (the terminal's Enter); finish after the last."""
        nxt = self.next_index()
        if nxt is None:
            self.finish(t_s)
        else:
            self.start(nxt, t_s)

    def hands(self, t_s: float, on: bool | None = None) -> None:
        """Hands on or off at ``t_s`` (``None``: toggle); an interval is written when the hands come off."""
        on = self.hands_on_since is None if on is None else on
        if on and self.hands_on_since is None:
            self.hands_on_since = t_s
            self.say(f"{t_s:7.1f} s  hands on")
        elif not on and self.hands_on_since is not None:
            start, self.hands_on_since = self.hands_on_since, None
            self.record(EventKind.HANDS_ON, start, "hands on", t_s - start)
            self.say(f"{t_s:7.1f} s  hands off ({t_s - start:.1f} s on)")

    def technique(self, t_s: float, which: int | str) -> None:
        """Technique ``which`` at ``t_s``: its number (1-based, as on its button and key) or its key."""
        techniques = self.protocol.techniques
        if isinstance(which, int):
            if not 1 <= which <= len(techniques):
                return
            which = techniques[which - 1].key
        tech = self.protocol.technique(which)
        self.guidance = tech.label
        self.record(EventKind.MARKER, t_s, f"technique: {tech.label}", data={"technique": tech.key})
        self.say(f"{t_s:7.1f} s  technique: {tech.label}")

    def note(self, t_s: float, text: str) -> None:
        if text.strip():
            self.record(EventKind.NOTE, t_s, text.strip())
            self.say(f"{t_s:7.1f} s  note: {text.strip()}")

    def tick(self, now_s: float) -> None:
        """Advance to ``now_s``: scripted markers and planned phase ends, each at its own time."""
        while not self.finished:
            phase = self.phase
            if phase is None:
                if self.auto and self.started:
                    self.next(now_s)
                    continue
                return
            planned = self.planned_s()
            end_at = None if planned is None else self.started_s + planned
            while self._script and self.started_s + self._script[0].at_s <= now_s and (
                    end_at is None or self.started_s + self._script[0].at_s < end_at):
                self._apply(self._script.pop(0))
            if end_at is None or now_s < end_at:
                return
            if self.chain:
                self.next(end_at)
            else:
                self.end(end_at)
                return

    def _not_before_start(self, t_s: float) -> float:
        """A click stamped before the running phase started (handled after the machine moved on at a planned end)
        counts at that start: phases never overlap or run backwards."""
        return max(t_s, self.started_s) if self.started else t_s

    def next_due_s(self) -> float | None:
        """Session time of the next scripted marker or planned phase end (None: nothing scheduled)."""
        phase, planned = self.phase, self.planned_s()
        if phase is None or self.finished:
            return None
        due = [self.started_s + m.at_s for m in self._script[:1]]
        due += [] if planned is None else [self.started_s + planned]
        return min(due) if due else None

    def _apply(self, m: ScriptedMarker) -> None:
        at = self.started_s + m.at_s  # the scripted click's time, however late the tick comes
        if m.action == "technique":
            self.technique(at, m.technique or "")
        elif m.action == "note":
            self.note(at, m.text)
        else:
            self.hands(at, m.action == "hands-on")


class RecordedPhases(PhaseMachine):
    """The phases, hands-on intervals, markers and notes of the recording at ``path``, each applied when the replay's
    clock reaches its recorded session time (the same state and log lines as live; nothing is recorded)."""

    def __init__(self, protocol: Protocol, path: Path, *, say: Say = _quiet) -> None:
        from biofeedback.store import SessionReader

        super().__init__(protocol, lambda *a, **k: None, say=say)
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
            if e["kind"] == EventKind.HANDS_ON:
                due.append((e["t_s"] + e["duration_s"], 0, lambda t: self.hands(t, False)))
                due.append((e["t_s"], 3, lambda t: self.hands(t, True)))
            elif e["kind"] in (EventKind.MARKER, EventKind.NOTE):
                prefix = "note: " if e["kind"] == EventKind.NOTE else ""
                due.append((e["t_s"], 4, lambda t, text=f"{prefix}{e['label']}": say(f"{t:7.1f} s  {text}")))
        self._due = sorted(due, key=lambda d: (d[0], d[1]))

    def next_due_s(self) -> float | None:
        return self._due[0][0] if self._due and not self.finished else None

    def tick(self, now_s: float) -> None:
        """Apply every recorded event due by ``now_s``, at its recorded time."""
        while self._due and self._due[0][0] <= now_s and not self.finished:
            t_s, _, apply = self._due.pop(0)
            apply(t_s)

    def finish(self, t_s: float) -> None:
        """End the replay at ``t_s``: everything recorded until then is shown, nothing after."""
        self.tick(t_s)
        if not self.finished:
            self.end(t_s)
            self.finished = True
