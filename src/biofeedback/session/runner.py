"""The one session runner: acquire, process, record, drive the phases, close, and compute the outcome once.

Every front end (terminal session, dashboard, home relaxation window and terminal, calibration, monitor,
replay) runs its session through ``SessionRun``; it differs only in the ``body`` it hands to ``run`` (what it
does while the session runs: read keys, print lines, guide a calibration) and in what it reads from the run
(the live processor's snapshots, the phase machine's state). No terminal, no Qt.

``SessionRun.run``:

1. with ``choose`` (the dashboard): scan, and let the user choose which sensors to connect;
2. ``acquire`` the sensors (or the replay), start one ``LiveProcessor`` and, when recording, one ``Recorder``;
3. every ``TICK_WALL_S``: stop with the sensors' own error when every source has failed; start the first phase
   once every source streams (unattended and chained runs, at most ``DATA_WAIT_SESSION_S`` after the start); tick the
   ``driver`` (the phase machine, or home relaxation's rules on top of it); end when the body returns, ``stop``
   is called, the phases are done or a replay reaches its end;
4. close the recording (the live processor's held beats are written); say the summary of the live values at once
   (``live_summary``: ``analysis.summary.LiveTally``, kept while recording from the live processor's tension trace
   and beats and the phase events, so it takes well under a second whatever the session's length), then analyse the
   recording for the summary and the verdict once (``analysis.summary.session_outcome``: tens of seconds per
   session-hour, most of it the comparison's bootstrap; ``tools/bench_long.py``) and return them.

Commands from another thread (a GUI) go through ``call``, so every change of state happens on the run's loop.
"""

from __future__ import annotations

import asyncio
import pathlib
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol as TypingProtocol

from biofeedback.dsp import Calibration, TensionIndex
from biofeedback.sensors.profiles import DeviceProfile
from biofeedback.sensors.virtual import HeartScript, Scenario, TensionScript, VirtualWorld
from biofeedback.session.acquisition import (
    SCAN_WALL_S,
    VIRTUAL_SCAN_WALL_S,
    Acquisition,
    acquire,
    quiet_bumble_logs,
)
from biofeedback.session.live import LiveProcessor
from biofeedback.session.phases import PhaseMachine, RecordedPhases
from biofeedback.session.protocol import Protocol, load_protocol, protocol_from_doc
from biofeedback.session.recorder import Recorder
from biofeedback.vocab import EventKind, WorkerState

TICK_WALL_S = 0.05
"""Wall seconds between ticks of the run's loop (phases, failure checks); it also wakes when the phase machine has
something due (a scripted marker, a planned phase end, a replayed event), so phase changes show without a tick's lag."""
DATA_WAIT_SESSION_S = 15.0
"""Session seconds a run waits for late data: for every sensor to stream before an unattended run starts its first
phase anyway, for a calibration's last samples (link latency, a reconnect) before it analyses them."""


class Driver(TypingProtocol):
    """What the runner ticks: the phase machine, or rules built on it (``relax.engine.RelaxSession``)."""

    machine: PhaseMachine

    def tick(self, now_s: float) -> Any: ...
    def finish(self, t_s: float) -> None: ...


@dataclass
class SessionPlan:
    client_id: str
    protocol: Protocol | None
    """The session's protocol; None for a run without phases (monitor, calibration)."""
    virtual: bool
    speed: float
    auto: bool
    scenario: Scenario | None
    screening: dict
    calibration: tuple | None
    """(path, saved calibration dict) or None."""
    replay: pathlib.Path | None = None
    """A recorded session to play instead of sensors (view only: nothing is recorded)."""
    replay_sources: tuple[str, ...] | None = None
    """The replay's source names, from the one read through of the file that checked it (``replay_plan``)."""
    sensors: tuple[str, ...] | None = None
    """Profile names of the sensors to connect (``--sensors``, or the client's remembered choice); None: the best found."""


def replay_plan(path: pathlib.Path | str, speed: float) -> SessionPlan:
    """The plan of a replay of the recorded session at ``path``: its client, protocol and calibration, at ``speed``.

    A recording without its protocol (not made by ``session``) replays with the default protocol's phase bar. The file
    is read through once here, so a damaged one fails with one line before any window opens.
    """
    from biofeedback.sensors.replay import recorded_sources
    from biofeedback.store import SessionReader

    path = pathlib.Path(path)
    sources = tuple(recorded_sources(path))
    with SessionReader(path) as reader:
        meta = reader.meta
    doc = meta.get("protocol_toml")
    protocol = protocol_from_doc(doc, pathlib.Path(meta.get("protocol_file", path.name))) if doc else load_protocol()
    cal = meta.get("calibration")
    usable = isinstance(cal, dict) and cal.get("rest_rms_uv") is not None and cal.get("rvc_rms_uv") is not None
    calibration = (pathlib.Path(str(cal.get("file") or "calibration")), cal) if usable else None
    return SessionPlan(str(meta.get("client_id", "")), protocol, False, speed, False, None, meta.get("screening") or {},
                       calibration, replay=path, replay_sources=sources)


def calibration_of(plan: SessionPlan) -> tuple[Calibration | None, dict | None]:
    """The plan's saved calibration as a ``dsp.Calibration`` and as recording metadata."""
    if plan.calibration is None:
        return None, None
    cal_path, cal = plan.calibration
    calibration = Calibration(cal["rest_rms_uv"], cal["rvc_rms_uv"], cal.get("mvc_rms_uv"))
    return calibration, {"file": cal_path.name, "utc": cal.get("utc"), "protocol": cal.get("protocol"),
                         "rest_rms_uv": cal["rest_rms_uv"], "rvc_rms_uv": cal["rvc_rms_uv"],
                         "mvc_rms_uv": cal.get("mvc_rms_uv"), "tension_index_unit": TensionIndex(calibration).unit}


# --- virtual sensors following the protocol ------------------------------------------------------
def session_scenario(base: Scenario, protocol: Protocol) -> Scenario:
    """``base`` with its tension and heart replaced by release scripts on the protocol's timeline: lower tension and
    heart rate after the first treatment phase."""
    timeline = protocol.timeline()
    treat = next(((s, e) for p, s, e in timeline if p.kind == "treatment"), (timeline[0][2], timeline[0][2]))
    left, right = base.tension.left_uv[0], base.tension.right_uv[0]
    tension = TensionScript.release(treat[0], treat[1] - treat[0], left, right)
    heart = HeartScript.release(treat[0], treat[1] - treat[0], base.heart.hr_bpm[0])
    return Scenario(devices=base.devices, tension=tension, heart=heart, faults=base.faults, seed=base.seed, body=base.body)


def device_offsets_s(world: VirtualWorld | None, clock) -> dict[str, float]:
    """Per virtual device: device seconds minus session seconds (their clocks start before the session's)."""
    if world is None:
        return {}
    now = clock.now_s()
    return {kind: p.clock.now_s() - now for kind, p in world.peripherals.items()}


def shift_scripts(world: VirtualWorld | None, clock, session_points: dict[str, tuple]) -> None:
    """Put virtual scripts written in session time onto each device's own clock (in place)."""
    for kind, offset in device_offsets_s(world, clock).items():
        p = world.peripherals[kind]
        if hasattr(p, "script") and "tension" in session_points:
            times, left, right = session_points["tension"]
            p.script.times_s, p.script.left_uv, p.script.right_uv = [t + offset for t in times], list(left), list(right)
        if hasattr(p, "hrs") and "heart" in session_points:
            times, hr, rsa = session_points["heart"]
            script = p.hrs.beats.script
            script.times_s, script.hr_bpm, script.rsa_ms = [t + offset for t in times], list(hr), list(rsa)


def open_recording(plan: SessionPlan, acq: Acquisition, live: LiveProcessor, mode: str,
                   extra_meta: dict | None = None) -> tuple[pathlib.Path, Recorder]:
    """Start recording a session: virtual scripts onto the device clocks, the session file with its
    meta (plus ``extra_meta``), a ``Recorder`` on the hub, and the calibration used as an event."""
    from biofeedback.store import SessionWriter, new_session_path

    if plan.virtual and plan.scenario is not None:
        sc = plan.scenario
        shift_scripts(acq.world, acq.clock, {
            "tension": (sc.tension.times_s, sc.tension.left_uv, sc.tension.right_uv),
            "heart": (sc.heart.times_s, sc.heart.hr_bpm, sc.heart.rsa_ms)})
    calibration, cal_meta = calibration_of(plan)
    path = new_session_path(plan.client_id, acq.clock.utc_anchor)
    writer = SessionWriter(path, {
        "client_id": plan.client_id, "utc_anchor": acq.clock.utc_anchor, "speed": plan.speed,
        "protocol": plan.protocol.name, "protocol_file": plan.protocol.path.name, "protocol_toml": plan.protocol.raw,
        "screening": plan.screening, "calibration": cal_meta, "mode": mode,
        "virtual": plan.virtual, "tension_index_unit": TensionIndex(calibration).unit, **(extra_meta or {}),
    })
    recorder = Recorder(writer, acq.hub, live)
    if cal_meta is not None:
        recorder.event(EventKind.CALIBRATION, 0.0, f"calibration {cal_meta['file']}", data=cal_meta)
    return path, recorder


# --- the run -------------------------------------------------------------------------------------
Body = Callable[["SessionRun"], Awaitable[Any]]
Choose = Callable[["SessionRun"], Awaitable[list[str] | None | bool]]
"""Given the run after a scan (``run.found``), the profile names to connect (None: the default choice), or False to
give up (the user closed the window)."""


class SessionRun:
    """One session of ``plan``, from the sensors to the outcome; see the module docstring.

    ``record``: write a session file (never for a replay, a monitor or a calibration). ``mode``: the recording's
    ``mode`` meta. ``chain``: phases follow each other without a click (the terminal and home sessions).
    ``driver``: made from the run once the sensors stream (default: a ``PhaseMachine`` of the plan's protocol, or
    the recording's ``RecordedPhases`` in a replay); None for a run without phases (monitor, calibration).
    """

    def __init__(self, plan: SessionPlan, profiles: dict[str, DeviceProfile], *, record: bool = True,
                 mode: str = "auto", extra_meta: dict | None = None, chain: bool | None = None,
                 phases: bool = True, driver: Callable[[SessionRun], Driver] | None = None,
                 say: Callable[[str], None] = print, lsl: bool = False) -> None:
        self.plan = plan
        self.profiles = profiles
        self.record = record and plan.replay is None
        self.mode = mode
        self.extra_meta = extra_meta
        self.chain = plan.auto if chain is None else chain
        self.say = say
        self.state = WorkerState.STARTING
        self.found: list = []
        self.acq: Acquisition | None = None
        self.live: LiveProcessor | None = None
        self.recorder: Recorder | None = None
        self.path: pathlib.Path | None = plan.replay
        """The session file: the one being recorded, or the one replayed."""
        self.machine: PhaseMachine | None = None
        """The session's phase machine (before the sensors stream too, so a window can show it; with a ``driver``
        factory, once the driver is made)."""
        self.driver: Driver | None = None
        self.outcome = None
        """``analysis.summary.SessionOutcome`` of the recording, once it is closed."""
        self.live_summary: list[dict] | None = None
        """The summary rows of the live values (``analysis.summary.LiveTally``), as soon as the recording is closed,
        before ``outcome``."""
        self._tally = None
        self._tallied = [0, 0]
        """Rows of the live processor's tension trace and HRV ring handed to the tally so far."""
        self.event_listeners: list[Callable[[str, float, str, float], None]] = []
        """Called with (kind, session s, label, duration s) of every session event (an LSL outlet's markers)."""
        self.lsl_wanted = lsl
        """Stream live over Lab Streaming Layer (``session.lsl``): a network listener, so only when asked."""
        self.lsl = None
        self._make_driver = driver
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if driver is None and phases and plan.replay is not None:
            self.machine = self.driver = RecordedPhases(plan.protocol, plan.replay, say=self.log)
        elif driver is None and phases:
            self.machine = self.driver = PhaseMachine(plan.protocol, self.event, auto=plan.auto, chain=self.chain,
                                                      say=self.log)

    # --- commands (any thread) --------------------------------------------------------------------
    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the run's loop, without waiting for it (from any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the loop closed between the check and the call: the session is over

    def stop(self) -> None:
        """End the session (from any thread): the phases finish now and the recording closes."""
        self.call(self._stop_now)

    def now_s(self) -> float:
        return self.acq.clock.now_s() if self.acq is not None else 0.0

    # --- the run ----------------------------------------------------------------------------------
    async def run(self, body: Body | None = None, choose: Choose | None = None):
        """Run the session until it ends; returns the outcome of its recording (None when nothing was recorded)."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        wanted = self.plan.sensors
        if choose is not None and self.plan.replay is None:
            self.state = WorkerState.SCANNING
            self.found = await self.scan()
            self.state = WorkerState.FOUND
            chosen = await choose(self)
            if chosen is False:
                return None
            wanted = chosen or wanted
        self.state = WorkerState.CONNECTING
        plan = self.plan
        if self.record:
            from biofeedback.analysis.summary import LiveTally

            self._tally = LiveTally()
        async with acquire(self.profiles, virtual=plan.virtual, speed=plan.speed, scenario=plan.scenario,
                           wanted=wanted, replay=plan.replay, replay_sources=plan.replay_sources) as acq:
            self.acq = acq
            self.live = LiveProcessor(acq.hub, calibration_of(plan)[0])
            try:
                if self.record:
                    self.path, self.recorder = open_recording(plan, acq, self.live, self.mode, self.extra_meta)
                    self.say(f"recording to {self.path}")
                if self.lsl_wanted:
                    from biofeedback.session.lsl import LslOutlet

                    self.lsl = LslOutlet(self)
                    self.say("streaming on Lab Streaming Layer (biofeedback EMG, ECG, RR, tension, HRV, markers)")
                self._build_driver()
                self.state = WorkerState.RUNNING
                await self._supervise(body)
            finally:
                self._close()
        if self._tally is not None:
            from biofeedback.analysis.summary import format_summary

            live = self.live
            self.live_summary = self._tally.summary(live.emg_channels, live.trace_rate_hz, live.index.reference_uv,
                                                    self.path)
            self.say("summary of the live values (the recording's own analysis and the verdict follow):\n"
                     + format_summary(self.live_summary))
        if self.record or (self.plan.replay is not None and self.machine is not None):
            from biofeedback.analysis.summary import session_outcome

            self.outcome = session_outcome(self.path)
        return self.outcome

    async def scan(self) -> list:
        """Scan for the plan's sensors (virtual or real) without connecting."""
        from biofeedback.sensors.ble import BleBackend, scan

        if not self.plan.virtual:
            return await scan(self.profiles.values(), BleBackend(), SCAN_WALL_S)
        quiet_bumble_logs()
        world = await VirtualWorld(self.plan.scenario or Scenario(), speed=self.plan.speed,
                                   profiles=self.profiles).start()
        try:
            return await scan(self.profiles.values(), world.backend, VIRTUAL_SCAN_WALL_S)
        finally:
            await world.stop()

    def recording_problems(self) -> list[str]:
        """What the session file could not take so far (refused or left-out values, disk errors), in words."""
        recorder = self.recorder
        if recorder is None:
            return []
        writer = recorder.writer
        return list(writer.problems) + ([writer.error] if writer.error else [])

    def event(self, kind: str, t_s: float, label: str, duration_s: float = 0.0, data: dict | None = None) -> None:
        """Record a session event (nothing when not recording: a replay, a monitor, after the end) and hand it to the
        event listeners."""
        if self.recorder is not None:
            self.recorder.event(kind, t_s, label, duration_s, data)
        if self._tally is not None:
            self._tally.add_event(kind, t_s, label, duration_s, data)
        for listener in self.event_listeners:
            listener(str(kind), t_s, label, duration_s)

    def _build_driver(self) -> None:
        if self._make_driver is not None:
            self.driver = self._make_driver(self)
            self.machine = self.driver.machine

    def log(self, line: str) -> None:
        """``say`` as it is now (a window sets it once it exists); called on the run's thread."""
        self.say(line)

    def streaming(self) -> bool:
        """Every connected source has sent data."""
        acq = self.acq
        return acq is not None and {s.name for s in acq.sources} <= {src for _, src in acq.hub.buffers}

    async def _supervise(self, body: Body | None) -> None:
        acq = self.acq
        task = asyncio.ensure_future(body(self)) if body is not None else None
        started_at = acq.clock.now_s()
        autostart = self.machine is not None and (self.plan.auto or self.chain) and self.plan.replay is None
        try:
            while not self._stop.is_set():
                self._keep_tally()
                self.raise_if_all_failed()
                now = acq.clock.now_s()
                waited = now - started_at >= DATA_WAIT_SESSION_S
                if autostart and not self.machine.started and (self.streaming() or waited):
                    self.machine.start(0, now)
                if self.driver is not None and (self.machine.started or self.plan.replay is not None):
                    self.driver.tick(now)
                    if self.machine.finished and self.plan.replay is None:
                        await acq.drain(acq.clock.now_s())  # the last phase's samples still on their way
                        break
                if acq.ended() and task is None:  # a body decides itself what the end of a replay means
                    if self.driver is not None:
                        self.driver.finish(acq.clock.now_s())
                    break
                if task is not None and task.done():
                    task.result()  # the body's error, if it had one
                    break
                waits = [asyncio.ensure_future(self._stop.wait())] + ([task] if task is not None else [])
                due = self.machine.next_due_s() if self.machine is not None else None
                timeout = TICK_WALL_S if due is None else min(TICK_WALL_S, acq.clock.wall_seconds(max(0.0, due - now)))
                await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                waits[0].cancel()
        finally:
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            if self.driver is not None and not self.machine.finished:
                # Also when every sensor failed, the body raised or the user pressed Ctrl-C: the running phase, an
                # open hands-on interval and the "ended early" marker reach the file before it closes.
                self.driver.finish(acq.clock.now_s())

    def _stop_now(self) -> None:
        if self.driver is not None and self.acq is not None and self.state == WorkerState.RUNNING:
            self.driver.finish(self.acq.clock.now_s())
        if self._stop is not None:
            self._stop.set()

    def raise_if_all_failed(self) -> None:
        """Raise the sensors' own error when every source has failed (the one place this is checked)."""
        failed = self.acq.failed()
        if failed and len(failed) == len(self.acq.tasks):
            raise failed[0]

    def _close(self) -> None:
        if self.lsl is not None:
            self.lsl.close()
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            try:
                recorder.record_devices(self.acq.sources)
            finally:
                recorder.close()
        else:
            self.live.close()
        self._keep_tally()

    def _keep_tally(self) -> None:
        """Hand the rows the live processor added to its tension trace and HRV ring since the last call to the
        tally (the processor fills them on this loop, so nothing is added meanwhile; a tick comes long before a
        ring's hour of rows wraps)."""
        tally, live = self._tally, self.live
        if tally is None or live is None:
            return
        for k, ring in enumerate((live.tension, live.hrv)):
            new = 0 if ring is None else ring.count - self._tallied[k]
            if new > 0:
                t, x = ring.snapshot(new)
                tally.add_tension(t, x) if k == 0 else tally.add_hr(t, x[:, 0])
                self._tallied[k] = ring.count


async def wait_session_s(run: SessionRun, t_s: float) -> None:
    """Sleep until the run's session clock reads ``t_s`` (a body's helper; the runner checks the sensors meanwhile)."""
    while (left := t_s - run.now_s()) > 0:
        await asyncio.sleep(min(run.acq.clock.wall_seconds(left), 0.5))


def is_interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()
