"""A running home relaxation: phases, pacer, tension feedback and the resonance finder, without any I/O of its own.

``RelaxSession.tick(t_s)`` is called often (by the window's timer or the headless loop) and returns a
``RelaxView`` of what to show and sound now. Events go to ``event`` (``Recorder.event``'s signature):
``phase`` per phase as in clinic sessions, technique ``marker``s from the protocol's script, one
``feedback-paused`` interval (label: the reason) per pause, and a ``resonance`` marker with the scores.

Phases: the first ``rest`` phase is the resting baseline (no pacer, no feedback: its mean tension
sets today's target); ``treatment`` phases are the guided relaxation (pacer and feedback); later
``rest`` phases are the closing rest (no feedback, so its tension is an honest "after").
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from biofeedback.session.acquisition import acquire
from biofeedback.relax.feed import FeedSnapshot, RelaxFeed
from biofeedback.relax.feedback import OFF, PAUSED, TARGET_OF_BASELINE, Feedback, decide
from biofeedback.relax.pacer import DEFAULT_INHALE_FRACTION, DEFAULT_RATE_BPM, Pacer, PacerState
from biofeedback.relax.resonance import ResonanceFinder, VirtualBreather
from biofeedback.relax.sham import ShamSignal
from biofeedback.sensors.profiles import DeviceProfile
from biofeedback.session.protocol import Phase, Protocol, SessionError
from biofeedback.session.run import SessionPlan, calibration_of, open_recording

DEFAULT_MINUTES = 10.0
HOME_PROTOCOL = "home-relaxation"
REST_SHARE = 0.1
"""With ``--minutes``: each rest phase lasts this share of the session (at most its protocol length, at least 20 s)."""
TICK_WALL_S = 0.05
"""Wall seconds between ticks of the headless loop."""
PRINT_EVERY_S = 5.0
"""Session seconds between status lines in the terminal."""
FEEDBACK_PAUSED = "feedback-paused"

Event = Callable[..., None]


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
    rest_s = {id(p): min(p.planned_s(), max(20.0, REST_SHARE * total)) for p in rests}
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
    snapshot: FeedSnapshot
    resonance: str
    """What the resonance finder is doing, in words ('' when it is not running)."""
    finished: bool


@dataclass
class RelaxSession:
    protocol: Protocol
    settings: RelaxSettings
    feed: Callable[[], RelaxFeed | None]
    event: Event
    has_emg: bool = True
    sham: ShamSignal | None = None
    breather: VirtualBreather | None = None
    timeline: list[tuple[float, Feedback, str | None]] = field(default_factory=list)
    """(session s, feedback, pacer phase) at every tick: what the sound followed."""

    def __post_init__(self) -> None:
        self.index = -1
        self.started_s = self.phase_start_s = 0.0
        self.finished = False
        self.pacer: Pacer | None = None
        self.finder = ResonanceFinder() if self.settings.find_resonance else None
        self.target = self.settings.target if self.settings.target is not None else math.nan
        self.baseline = math.nan
        self.guidance = ""
        self._baseline_span: tuple[float, float] | None = None
        self._script: list = []
        self._paused_since: tuple[float, str] | None = None
        self._last = Feedback()

    @property
    def phase(self) -> Phase | None:
        return self.protocol.phases[self.index] if 0 <= self.index < len(self.protocol.phases) else None

    def start(self, t_s: float) -> None:
        self.started_s = t_s
        self._start_phase(0, t_s)

    def _start_phase(self, index: int, t_s: float) -> None:
        self.index, self.phase_start_s = index, t_s
        phase = self.phase
        self._script = list(phase.script)
        if phase.kind == "treatment" and self.pacer is None:
            self.pacer = Pacer(self.settings.rate_bpm, self.settings.inhale_fraction, t_s)
            if self.finder is not None:
                self.finder.start(self.pacer, t_s)
        if phase.kind == "rest" and self._baseline_span is None:
            self._baseline_span = (t_s, t_s + phase.planned_s())

    def _end_phase(self, t_s: float) -> None:
        phase = self.phase
        self._resume(t_s)
        self.event("phase", self.phase_start_s, phase.name, t_s - self.phase_start_s,
                   data={"kind": phase.kind, "planned_s": phase.duration_s})
        if phase.kind == "rest" and self._baseline_span is not None and self._baseline_span[0] == self.phase_start_s:
            self._baseline_span = (self.phase_start_s, t_s)
        if self.finder is not None and self.finder.best_bpm is None and phase.kind == "treatment":
            self._score_finder(t_s)

    def finish(self, t_s: float) -> None:
        """End now (the client pressed Stop, or the last phase ended)."""
        if self.finished:
            return
        if self.phase is not None:
            early = self.index < len(self.protocol.phases) - 1 or t_s < self.phase_start_s + self.phase.planned_s()
            self._end_phase(t_s)
            if early:
                self.event("marker", t_s, "session ended early")
        self.finished = True
        self.index = len(self.protocol.phases)

    def _resume(self, t_s: float) -> None:
        if self._paused_since is not None:
            start, reason = self._paused_since
            self.event(FEEDBACK_PAUSED, start, reason, t_s - start)
            self._paused_since = None

    def _score_finder(self, t_s: float) -> None:
        feed = self.feed()
        times, rr = feed.beats(self.finder.steps[0].start_s, t_s) if feed else ([], [])
        best = self.finder.score(times, rr)
        if best is not None:
            self.pacer.set_rate(best, t_s)
        self.event("marker", t_s, "resonance breathing: " + (f"{best:g} per minute" if best else "no heart data"),
                   data={"resonance": self.finder.as_dict()})

    def _baseline_now(self, feed: RelaxFeed | None, t_s: float) -> float:
        if not math.isfinite(self.baseline) and feed is not None and self._baseline_span is not None:
            a, b = self._baseline_span
            self.baseline = feed.mean_tension(a, min(b, t_s))
        return self.baseline

    def _feedback(self, t_s: float, snap: FeedSnapshot) -> Feedback:
        phase = self.phase
        if phase is None or phase.kind != "treatment":
            return Feedback(OFF, reason="resting: just sit and breathe normally")
        if not self.has_emg:
            return Feedback(OFF, reason="no EMG sensor: follow the breathing guide")
        feed = self.feed()
        baseline = self._baseline_now(feed, t_s)
        if not math.isfinite(self.target) and math.isfinite(baseline):
            self.target = TARGET_OF_BASELINE * baseline
        tension = snap.tension
        if self.sham is not None:
            tension = self.sham.value(t_s) * (baseline if math.isfinite(baseline) else math.nan)
        if not math.isfinite(self.target):
            # No clean baseline yet: take it from the first clean stretch of the relaxation.
            self._baseline_span = (self.phase_start_s, t_s)
            self.baseline = math.nan
            return Feedback(PAUSED, tension=tension, reason="measuring your resting level")
        return decide(tension, self.target, snap.quality, snap.contact_lost, t_s - snap.emg_t_s)

    def tick(self, t_s: float) -> RelaxView:
        if not self.finished and self.phase is not None:
            phase = self.phase
            while self._script and t_s >= self.phase_start_s + self._script[0].at_s:
                m = self._script.pop(0)
                at = self.phase_start_s + m.at_s
                if m.action == "technique":
                    tech = self.protocol.technique(m.technique or "")
                    self.guidance = tech.label
                    self.event("marker", at, f"technique: {tech.label}", data={"technique": tech.key})
                elif m.action == "note":
                    self.event("note", at, m.text)
            if self.finder is not None and self.finder.best_bpm is None and self.finder.steps and t_s >= self.finder.end_s:
                self._score_finder(t_s)
            if t_s >= self.phase_start_s + phase.planned_s():
                self._end_phase(t_s)
                if self.index + 1 < len(self.protocol.phases):
                    self._start_phase(self.index + 1, t_s)
                else:
                    self.finished = True
                    self.index = len(self.protocol.phases)
        feed = self.feed()
        snap = feed.snapshot if feed is not None else FeedSnapshot()
        fb = self._feedback(t_s, snap) if not self.finished else Feedback(OFF)
        if fb.state == PAUSED and self._paused_since is None:
            self._paused_since = (t_s, fb.reason)
        elif fb.state != PAUSED:
            self._resume(t_s)
        phase = self.phase
        pacing = phase is not None and phase.kind == "treatment" and self.pacer is not None
        pacer = self.pacer.at(t_s) if pacing else None
        if pacer is not None and self.breather is not None:
            self.breather.follow(pacer.rate_bpm)
        self.timeline.append((t_s, fb, pacer.phase if pacer else None))
        self._last = fb
        total = sum(p.planned_s() for p in self.protocol.phases)
        return RelaxView(
            t_s=t_s, phase=phase.name if phase else "", kind=phase.kind if phase else "",
            prompt=phase.prompt if phase else "", guidance=self.guidance if pacing else "",
            phase_left_s=max(0.0, self.phase_start_s + phase.planned_s() - t_s) if phase else 0.0,
            total_left_s=max(0.0, self.started_s + total - t_s), pacer=pacer, feedback=fb, snapshot=snap,
            resonance=self._resonance_text(t_s), finished=self.finished)

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


def relax_meta(settings: RelaxSettings, sham: ShamSignal | None) -> dict:
    """What the recording's ``relax`` meta says: settings and which feedback the client got."""
    return {**settings.meta(), **(sham.meta() if sham is not None else {"feedback": "live", "sham_source": None})}


def has_emg_sensor(sources) -> bool:
    return any(s.profile.name == "open-emg" or "open-emg" in s.profile.protocols for s in sources)


def view_line(v: RelaxView, unit: str) -> str:
    """One terminal line of the pacer and feedback state."""
    pacer = f"{'breathe in ' if v.pacer.phase == 'inhale' else 'breathe out'} {v.pacer.rate_bpm:4.1f}/min" if v.pacer else " " * 20
    fb = v.feedback
    if fb.state == PAUSED:
        feedback = f"feedback paused: {fb.reason}"
    elif fb.state == OFF:
        feedback = f"feedback off ({fb.reason})" if fb.reason else "feedback off"
    else:
        feedback = (f"tension {fb.tension:6.1f} {unit} target {fb.target:5.1f}: "
                    + (f"tone {fb.level:4.2f}" if fb.state == "on" else "quiet (at target)"))
    snap = v.snapshot
    heart = "" if not snap.heart else f"  HR {snap.hr_bpm:3.0f}" if math.isfinite(snap.hr_bpm) else "  HR --"
    return f"{v.t_s:7.1f} s  {v.phase:<10} {pacer}  | {feedback}{heart}" + (f"  [{v.resonance}]" if v.resonance else "")


async def run_relax(plan: SessionPlan, settings: RelaxSettings, profiles: dict[str, DeviceProfile],
                    sham: ShamSignal | None = None, out: Callable[[str], None] = print,
                    stop: asyncio.Event | None = None) -> tuple[str, RelaxSession]:
    """Run a whole home session in the terminal; returns the recording's path and the finished session."""
    async with acquire(profiles, virtual=plan.virtual, speed=plan.speed, scenario=plan.scenario) as acq:
        path, recorder = open_recording(plan, acq, "relax-headless", {"relax": relax_meta(settings, sham)})
        breather = None
        if plan.virtual and plan.scenario is not None:
            breather = VirtualBreather(acq.world, settings.virtual_resonance_bpm, plan.scenario.heart.rsa_ms[0])
        feed = RelaxFeed(acq.hub, calibration_of(plan)[0])
        try:
            await _wait_for_data(acq)
            session = RelaxSession(plan.protocol, settings, lambda: feed, recorder.event,
                                   has_emg=has_emg_sensor(acq.sources), sham=sham, breather=breather)
            out(f"recording to {path}")
            session.start(acq.clock.now_s())
            last_phase, last_state, next_print = None, None, 0.0
            while not session.finished:
                failed = acq.failed()
                if failed and len(failed) == len(acq.tasks):
                    raise failed[0]
                now = acq.clock.now_s()
                if stop is not None and stop.is_set():
                    session.finish(now)
                v = session.tick(now)
                if v.phase and v.phase != last_phase:
                    out(f"--- {v.phase} ({v.phase_left_s:.0f} s) {v.prompt}")
                state = (v.pacer.phase if v.pacer else None, v.feedback.state, v.feedback.reason)
                if not v.finished and (state != last_state or now >= next_print):
                    out(view_line(v, feed.index.unit))
                    next_print = now + PRINT_EVERY_S
                last_phase, last_state = v.phase, state
                await asyncio.sleep(TICK_WALL_S)
            recorder.event("marker", acq.clock.now_s(), "relaxation finished")
        finally:
            feed.close()
            recorder.record_devices(acq.sources)
            recorder.close()
    return str(path), session


async def _wait_for_data(acq, timeout_s: float = 15.0) -> None:
    """Start the phases once every sensor streams (at most ``timeout_s`` session seconds)."""
    deadline = acq.clock.now_s() + timeout_s
    wanted = {s.name for s in acq.sources}
    while not wanted <= {src for _, src in acq.hub.buffers} and acq.clock.now_s() < deadline:
        await asyncio.sleep(0.02)
