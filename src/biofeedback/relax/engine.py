"""Home relaxation's rules on top of the session core: pacer, tension feedback and the resonance finder, no I/O.

``RelaxSession`` is the ``driver`` a home session's ``session.runner.SessionRun`` ticks: its phases, scripted
markers and events are the one ``session.phases.PhaseMachine``'s (``phase-start``/``phase`` per phase as in clinic
sessions, technique ``marker``s from the protocol's script); on top it records one ``feedback-paused`` interval
(label: the reason) per pause and a ``resonance`` marker with the scores. Its numbers are the session's one
``session.live.LiveProcessor``'s: the feedback follows the same tension index every display shows, smoothed over
``FEEDBACK_SMOOTHING_S`` for the tone. Each tick leaves a ``RelaxView`` of what to show and sound now in ``view``.

Phases: the first ``rest`` phase is the resting baseline (no pacer, no feedback: its mean tension
sets today's target); ``treatment`` phases are the guided relaxation (pacer and feedback); later
``rest`` phases are the closing rest (no feedback, so its tension is an honest "after").
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from biofeedback.analysis.data import MIN_CLEAN_S
from biofeedback.relax.feedback import OFF, PAUSED, TARGET_OF_BASELINE, Feedback, decide
from biofeedback.relax.pacer import DEFAULT_INHALE_FRACTION, DEFAULT_RATE_BPM, Pacer, PacerState
from biofeedback.relax.resonance import ResonanceFinder, VirtualBreather
from biofeedback.relax.sham import ShamSignal
from biofeedback.session.live import LiveProcessor, LiveValues
from biofeedback.session.phases import PhaseMachine
from biofeedback.session.protocol import Phase, Protocol, SessionError
from biofeedback.stream import StreamKind
from biofeedback.vocab import EventKind

DEFAULT_MINUTES = 10.0
HOME_PROTOCOL = "home-relaxation"
REST_SHARE = 0.1
"""With ``--minutes``: each rest phase lasts this share of the session (at most its protocol length, at least
``MIN_REST_S``)."""
MIN_REST_S = MIN_CLEAN_S + 10.0
"""Shortest rest ``--minutes`` makes: the clean EMG a start or end level needs (``analysis.data.MIN_CLEAN_S``) and
10 s for the filter to settle and the odd movement, so a short home session still tells its tension."""
FEEDBACK_SMOOTHING_S = 0.5
"""Time constant (session s) of the exponential smoothing of the tension that drives the tone: the 250 ms RMS of
resting EMG wanders by about ±10 %, and a tone that flickers around the target is no guide with eyes closed."""
FINISHED = "relaxation finished"



@dataclass
class RelaxSettings:
    """How the client's session runs; defaults come from the protocol's ``[relax]`` table, then the command line."""

    rate_bpm: float = DEFAULT_RATE_BPM
    inhale_fraction: float = DEFAULT_INHALE_FRACTION
    target: float | None = None
    """Tension target in tension-index units; None: ``TARGET_OF_BASELINE`` of today's baseline."""
    find_resonance: bool = False
    sham: str | None = None
    """None (live feedback), 'simulated', or a recorded session file."""
    chimes: bool = True
    """Pacer chimes at each inhale and exhale."""
    virtual_resonance_bpm: float = 5.5
    """Virtual sensors: breathing rate at which the virtual heart's RSA peaks."""

    def meta(self) -> dict:
        return {"rate_bpm": self.rate_bpm, "inhale_fraction": self.inhale_fraction, "target": self.target,
                "target_rule": None if self.target is not None else f"{TARGET_OF_BASELINE:g} x baseline",
                "find_resonance": self.find_resonance, "chimes": self.chimes}


def fit_minutes(protocol: Protocol, minutes: float) -> Protocol:
    """The protocol resized to ``minutes``: short rests (``REST_SHARE`` each), the relaxation fills the rest."""
    total = 60.0 * minutes
    rests = [p for p in protocol.phases if p.kind != "treatment"]
    rest_s = {id(p): min(p.planned_s(), max(MIN_REST_S, REST_SHARE * total)) for p in rests}
    treatments = [p for p in protocol.phases if p.kind == "treatment"]
    left = total - sum(rest_s.values())
    if not treatments or left < 60.0:
        raise SessionError(f"--minutes {minutes:g} is too short for {protocol.name}: give at least "
                           f"{(sum(rest_s.values()) + 60.0) / 60.0:.0f} minutes")
    phases = tuple(dataclasses.replace(p, duration_s=rest_s[id(p)] if p.kind != "treatment" else left / len(treatments))
                   for p in protocol.phases)
    return dataclasses.replace(protocol, phases=phases)


@dataclass(frozen=True)
class RelaxView:
    t_s: float
    phase: str
    """Name of the running phase ('' before the start and after the end)."""
    kind: str
    prompt: str
    guidance: str
    """The newest scripted technique, as a line for the client."""
    phase_left_s: float
    total_left_s: float
    pacer: PacerState | None
    feedback: Feedback
    values: LiveValues
    """The live processor's numbers at this tick."""
    resonance: str
    """What the resonance finder is doing, in words ('' when it is not running)."""
    finished: bool


@dataclass
class RelaxSession:
    """A home session's rules; ``machine`` is the session's phase machine (``auto``: phases follow the protocol)."""

    machine: PhaseMachine
    settings: RelaxSettings
    live: LiveProcessor
    has_emg: bool = True
    sham: ShamSignal | None = None
    breather: VirtualBreather | None = None
    timeline: list[tuple[float, Feedback, str | None]] = field(default_factory=list)
    """(session s, feedback, pacer phase) at every tick: what the sound followed."""

    def __post_init__(self) -> None:
        self.protocol = self.machine.protocol
        self.event = self.machine.record
        self.pacer: Pacer | None = None
        self.finder = ResonanceFinder() if self.settings.find_resonance else None
        self.target = self.settings.target if self.settings.target is not None else math.nan
        self.baseline = math.nan
        self.view: RelaxView | None = None
        """What to show and sound now (replaced, never mutated, at each tick)."""
        self._baseline_span: tuple[float, float] | None = None
        self._paused_since: tuple[float, str] | None = None
        self._smooth: tuple[float, float] | None = None
        """(session s, smoothed tension) of the last tick."""
        self.machine.listeners.append(self._on_phase)

    @property
    def finished(self) -> bool:
        return self.machine.finished

    def _on_phase(self, phase: Phase, t_s: float, started: bool) -> None:
        if started:
            if phase.kind == "treatment" and self.pacer is None:
                self.pacer = Pacer(self.settings.rate_bpm, self.settings.inhale_fraction, t_s)
                if self.finder is not None:
                    self.finder.start(self.pacer, t_s)
            if phase.kind == "rest" and self._baseline_span is None:
                self._baseline_span = (t_s, t_s + phase.planned_s())
            return
        self._resume(t_s)
        if phase.kind == "rest" and self._baseline_span is not None and self._baseline_span[0] == self.machine.started_s:
            self._baseline_span = (self.machine.started_s, t_s)
        if self.finder is not None and self.finder.best_bpm is None and phase.kind == "treatment":
            self._score_finder(t_s)
        if self.machine.next_index() is None and t_s >= self.machine.started_s + phase.planned_s():
            self.event(EventKind.MARKER, t_s, FINISHED)

    def finish(self, t_s: float) -> None:
        """End now (the client pressed Stop, or the last phase ended)."""
        self.machine.finish(t_s)

    def _resume(self, t_s: float) -> None:
        if self._paused_since is not None:
            start, reason = self._paused_since
            self.event(EventKind.FEEDBACK_PAUSED, start, reason, t_s - start)
            self._paused_since = None

    def _score_finder(self, t_s: float) -> None:
        best = self.finder.score(*self.live.beats(self.finder.steps[0].start_s, t_s))
        if best is not None:
            self.pacer.set_rate(best, t_s)
        self.event(EventKind.MARKER, t_s, "resonance breathing: " + (f"{best:g} per minute" if best else "no heart data"),
                   data={"resonance": self.finder.as_dict()})

    def _baseline_now(self, t_s: float) -> float:
        if not math.isfinite(self.baseline) and self._baseline_span is not None:
            a, b = self._baseline_span
            self.baseline = self.live.mean_tension(a, min(b, t_s))
        return self.baseline

    def _smoothed(self, t_s: float, tension: float) -> float:
        """``tension`` smoothed exponentially over ``FEEDBACK_SMOOTHING_S`` (restarts after a NaN)."""
        if not math.isfinite(tension):
            self._smooth = None
            return tension
        if self._smooth is not None:
            last_t, last = self._smooth
            a = math.exp(-max(0.0, t_s - last_t) / FEEDBACK_SMOOTHING_S)
            tension = a * last + (1.0 - a) * tension
        self._smooth = (t_s, tension)
        return tension

    def _feedback(self, t_s: float, values: LiveValues) -> Feedback:
        phase = self.machine.phase
        if phase is None or phase.kind != "treatment":
            return Feedback(OFF, reason="resting: just sit and breathe normally")
        if not self.has_emg:
            return Feedback(OFF, reason="no EMG sensor: follow the breathing guide")
        baseline = self._baseline_now(t_s)
        if not math.isfinite(self.target) and math.isfinite(baseline):
            self.target = TARGET_OF_BASELINE * baseline
        tension = self._smoothed(t_s, values.mean_tension)
        if self.sham is not None:
            tension = self.sham.value(t_s) * (baseline if math.isfinite(baseline) else math.nan)
        if not math.isfinite(self.target):
            # No clean baseline yet: take it from the first clean stretch of the relaxation.
            self._baseline_span = (self.machine.started_s, t_s)
            self.baseline = math.nan
            return Feedback(PAUSED, tension=tension, reason="measuring your resting level")
        quality = 0
        for bits in values.quality:
            quality |= bits
        return decide(tension, self.target, quality, values.contact_lost, t_s - values.emg_t_s)

    def tick(self, t_s: float) -> RelaxView:
        self.machine.tick(t_s)
        if not self.finished and self.finder is not None and self.finder.best_bpm is None and self.finder.steps \
                and t_s >= self.finder.end_s:
            self._score_finder(t_s)
        values = self.live.values
        fb = self._feedback(t_s, values) if not self.finished else Feedback(OFF)
        if fb.state == PAUSED and self._paused_since is None:
            self._paused_since = (t_s, fb.reason)
        elif fb.state != PAUSED:
            self._resume(t_s)
        phase = None if self.finished else self.machine.phase
        pacing = phase is not None and phase.kind == "treatment" and self.pacer is not None
        pacer = self.pacer.at(t_s) if pacing else None
        if pacer is not None and self.breather is not None:
            self.breather.follow(pacer.rate_bpm)
        self.timeline.append((t_s, fb, pacer.phase if pacer else None))
        start = self.machine.history[min(self.machine.history)][0] if self.machine.history else self.machine.started_s
        planned = self.machine.planned_s()
        self.view = RelaxView(
            t_s=t_s, phase=phase.name if phase else "", kind=phase.kind if phase else "",
            prompt=phase.prompt if phase else "", guidance=self.machine.guidance if pacing else "",
            phase_left_s=max(0.0, self.machine.started_s + planned - t_s) if phase and planned else 0.0,
            total_left_s=max(0.0, start + self.machine.total_planned_s() - t_s) if self.machine.started else 0.0,
            pacer=pacer, feedback=fb, values=values, resonance=self._resonance_text(t_s), finished=self.finished)
        return self.view

    def _resonance_text(self, t_s: float) -> str:
        if self.finder is None or not self.finder.steps:
            return ""
        step = self.finder.step_at(t_s)
        if step is not None:
            k = self.finder.steps.index(step) + 1
            return f"finding your breathing rate: {step.rate_bpm:g} per minute ({k} of {len(self.finder.steps)})"
        if self.finder.best_bpm is not None:
            return f"your breathing rate: {self.finder.best_bpm:g} per minute"
        return ""


def relax_session(run, settings: RelaxSettings, sham: ShamSignal | None = None) -> RelaxSession:
    """The home session's rules on a ``SessionRun`` whose sensors stream (the run's ``driver`` factory)."""
    breather = None
    plan = run.plan
    if plan.virtual and plan.scenario is not None:
        breather = VirtualBreather(run.acq.world, settings.virtual_resonance_bpm, plan.scenario.heart.rsa_ms[0])
    machine = PhaseMachine(plan.protocol, run.event, auto=True, chain=True, say=run.log)
    return RelaxSession(machine, settings, run.live, has_emg=has_emg_sensor(run.acq.sources), sham=sham,
                        breather=breather)


def relax_meta(settings: RelaxSettings, sham: ShamSignal | None) -> dict:
    """What the recording's ``relax`` meta says: settings and which feedback the client got."""
    return {**settings.meta(), **(sham.meta() if sham is not None else {"feedback": "live", "sham_source": None})}


def has_emg_sensor(sources) -> bool:
    return any(st.kind == StreamKind.EMG for s in sources for st in s.profile.streams)
