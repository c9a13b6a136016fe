"""Running a session or a calibration: phases, markers, live numbers, recording, summary.

Unattended runs (``auto``: no terminal, or ``--auto``) follow the protocol's durations and scripted
markers. A marker carries the session time of its click, never the time it was handled: for a key
press, the session clock read on the key thread the moment the key arrives; for a scripted marker,
its phase's recorded start plus its ``at_s`` (handled as soon as the clock passes that time, which
on a loop busy with a reconnect can be a few tenths of a session second later at high speed).
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from biofeedback.session.acquisition import Acquisition, LiveSummary, acquire
from biofeedback.dsp import Calibration, TensionIndex
from biofeedback.sensors.replay import recorded_sources
from biofeedback.sensors.profiles import DeviceProfile
from biofeedback.sensors.virtual import HeartScript, Scenario, TensionScript, VirtualWorld
from biofeedback.session.calibration import CalibrationProtocol, CalibrationResult, analyse, contraction_script
from biofeedback.session.keys import Key, KeyReader
from biofeedback.session.protocol import Phase, Protocol, SessionError, load_protocol, protocol_from_doc
from biofeedback.session.recorder import Recorder
from biofeedback.store import SessionReader, SessionWriter, new_session_path
from biofeedback.stream import Block, StreamKind

LIVE_PRINT_S = 5.0
"""Session seconds between live lines in the terminal."""
HANDS_ON = "hands-on"
DATA_WAIT_S = 15.0
"""Session seconds a calibration waits for late EMG (link latency, a reconnect) before analysing."""

Out = Callable[[str], None]


def _release_scripts(protocol: Protocol, left_uv: float, right_uv: float, hr_bpm: float) -> tuple[TensionScript, HeartScript]:
    """Virtual tension and heart following the protocol's timeline: lower tension after the first treatment phase."""
    timeline = protocol.timeline()
    treat = next(((s, e) for p, s, e in timeline if p.kind == "treatment"), (timeline[0][2], timeline[0][2]))
    return (TensionScript.release(treat[0], treat[1] - treat[0], left_uv, right_uv),
            HeartScript.release(treat[0], treat[1] - treat[0], hr_bpm))


def session_scenario(base: Scenario, protocol: Protocol) -> Scenario:
    """``base`` with its tension and heart replaced by release scripts on the protocol's timeline."""
    left, right = base.tension.left_uv[0], base.tension.right_uv[0]
    hr = base.heart.hr_bpm[0]
    tension, heart = _release_scripts(protocol, left, right, hr)
    return Scenario(devices=base.devices, tension=tension, heart=heart, faults=base.faults, seed=base.seed)


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


def _wait_for_all_failed(acq: Acquisition) -> None:
    failed = acq.failed()
    if failed and len(failed) == len(acq.tasks):
        raise failed[0]


@dataclass
class LiveLine:
    """One live line: time, phase, tension index per side, HR, RMSSD, gaps."""

    acq: Acquisition
    index: TensionIndex
    summary: LiveSummary = field(init=False)

    def __post_init__(self) -> None:
        self.summary = LiveSummary(self.acq)

    def text(self, phase: str, hands_on: bool) -> str:
        n = self.summary.numbers()
        rms = np.array([list(n.emg_rms_uv.values())])
        ref = self.index.reference_uv
        if n.emg_rms_uv and (ref is None or ref.size == rms.shape[1]):
            ti = self.index(rms)[0]
            tension = " ".join(f"{k.split('_')[0][:1].upper()} {v:6.1f}" for k, v in zip(n.emg_rms_uv, ti)) + f" {self.index.unit}"
        else:
            tension = "--"
        hr = "--" if n.hr_bpm is None else f"{n.hr_bpm:.0f}"
        rmssd = "--" if n.rmssd_ms is None else f"{n.rmssd_ms:.1f}"
        line = (f"{n.t_s:7.1f} s  {phase:<10} tension {tension}  HR {hr} bpm  RMSSD {rmssd} ms"
                + ("  [hands on]" if hands_on else ""))
        for g in n.new_gaps:
            line += f"\n          gap: {g.stream} from {g.source}, {g.length_s:.2f} s at {g.start_s:.1f} s ({g.reason})"
        return line


class _Treatment:
    """Marker state of a running session: hands-on interval, technique keys."""

    def __init__(self, protocol: Protocol, recorder: Recorder, out: Out) -> None:
        self.protocol, self.recorder, self.out = protocol, recorder, out
        self.hands_on_since: float | None = None

    def hands(self, t_s: float, on: bool | None = None) -> None:
        on = self.hands_on_since is None if on is None else on
        if on and self.hands_on_since is None:
            self.hands_on_since = t_s
            self.out(f"{t_s:7.1f} s  hands on")
        elif not on and self.hands_on_since is not None:
            start, self.hands_on_since = self.hands_on_since, None
            self.recorder.event(HANDS_ON, start, "hands on", t_s - start)
            self.out(f"{t_s:7.1f} s  hands off ({t_s - start:.1f} s on)")

    def technique(self, t_s: float, key: str) -> None:
        tech = self.protocol.technique(key)
        self.recorder.event("marker", t_s, f"technique: {tech.label}", data={"technique": tech.key})
        self.out(f"{t_s:7.1f} s  technique: {tech.label}")

    def note(self, t_s: float, text: str) -> None:
        if text.strip():
            self.recorder.event("note", t_s, text.strip())
            self.out(f"{t_s:7.1f} s  note: {text.strip()}")


async def _run_phase(phase: Phase, acq: Acquisition, treatment: _Treatment, live: LiveLine, auto: bool,
                     keys: asyncio.Queue[Key] | None, out: Out) -> bool:
    """Run one phase; returns False if the user ended the session (``q``)."""
    clock, recorder = acq.clock, treatment.recorder
    start = clock.now_s()
    recorder.event("phase-start", start, phase.name, data={"kind": phase.kind, "planned_s": phase.duration_s})
    planned = phase.planned_s() if auto else phase.duration_s
    end_at = None if planned is None else start + planned
    out(f"--- {phase.name} ({phase.kind}, " + ("until Enter" if end_at is None else f"{planned:.0f} s") + f") {phase.prompt}")
    script = list(phase.script) if auto else []
    next_live = start + LIVE_PRINT_S
    go_on = True
    while True:
        now = clock.now_s()
        while script and now >= start + script[0].at_s:
            m = script.pop(0)
            clicked = start + m.at_s  # the scripted click's time, however late the loop gets to it
            if m.action == "technique":
                treatment.technique(clicked, m.technique or "")
            elif m.action == "note":
                treatment.note(clicked, m.text)
            else:
                treatment.hands(clicked, m.action == "hands-on")
        if end_at is not None and now >= end_at:
            break
        if now >= next_live:
            out(live.text(phase.name, treatment.hands_on_since is not None))
            next_live += LIVE_PRINT_S
        _wait_for_all_failed(acq)
        wake = min([next_live] + ([end_at] if end_at is not None else []) + ([start + script[0].at_s] if script else []))
        timeout = max(0.0, clock.wall_seconds(wake - clock.now_s()))
        if keys is None:
            await asyncio.sleep(timeout)
            continue
        try:
            key = await asyncio.wait_for(keys.get(), timeout)
        except asyncio.TimeoutError:
            continue
        if key.key == "\n":
            break
        if key.key == "q":
            go_on = False
            break
        if key.key == "h":
            treatment.hands(key.t_s)
        elif key.key == "n":
            treatment.note(key.t_s, key.text)
        elif key.key.isdigit() and 1 <= int(key.key) <= len(treatment.protocol.techniques):
            treatment.technique(key.t_s, treatment.protocol.techniques[int(key.key) - 1].key)
    end = clock.now_s()
    treatment.hands(end, False)
    recorder.event("phase", start, phase.name, end - start, data={"kind": phase.kind, "planned_s": phase.duration_s})
    return go_on


@dataclass
class SessionPlan:
    client_id: str
    protocol: Protocol
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


def replay_plan(path: pathlib.Path | str, speed: float) -> SessionPlan:
    """The plan of a replay of the recorded session at ``path``: its client, protocol and calibration, at ``speed``.

    A recording without its protocol (not made by ``session``) replays with the default protocol's phase bar. The file
    is read through once here, so a damaged one fails with one line before any window opens.
    """
    path = pathlib.Path(path)
    sources = tuple(recorded_sources(path))
    with SessionReader(path) as reader:
        meta = reader.meta
    doc = meta.get("protocol_toml")
    protocol = protocol_from_doc(doc, pathlib.Path(meta.get("protocol_file", path.name))) if doc else load_protocol()
    cal = meta.get("calibration")
    calibration = (pathlib.Path(cal["file"]), cal) if cal else None
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


def open_recording(plan: SessionPlan, acq: Acquisition, mode: str,
                   extra_meta: dict | None = None) -> tuple[pathlib.Path, Recorder]:
    """Start recording a session: virtual scripts onto the device clocks, the session file with its
    meta (plus ``extra_meta``), a ``Recorder`` on the hub, and the calibration used as an event."""
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
    recorder = Recorder(writer, acq.hub)
    if cal_meta is not None:
        recorder.event("calibration", 0.0, f"calibration {cal_meta['file']}", data=cal_meta)
    return path, recorder


async def run_session(plan: SessionPlan, profiles: dict[str, DeviceProfile], out: Out = print) -> str:
    """Run a whole session; returns the path of its recording."""
    index = TensionIndex(calibration_of(plan)[0])
    async with acquire(profiles, virtual=plan.virtual, speed=plan.speed, scenario=plan.scenario) as acq:
        path, recorder = open_recording(plan, acq, "auto" if plan.auto else "interactive")
        try:
            out(f"recording to {path}")
            treatment = _Treatment(plan.protocol, recorder, out)
            live = LiveLine(acq, index)
            with contextlib.ExitStack() as stack:
                keys = None
                if not plan.auto:
                    keys = stack.enter_context(KeyReader(acq.clock, asyncio.get_running_loop())).queue
                    out("keys: h hands on/off, " + ", ".join(f"{i + 1} {t.label}" for i, t in enumerate(plan.protocol.techniques))
                        + ", n note, Enter next phase, q end")
                for phase in plan.protocol.phases:
                    if not await _run_phase(phase, acq, treatment, live, plan.auto, keys, out):
                        recorder.event("marker", acq.clock.now_s(), "session ended early")
                        break
        finally:
            recorder.record_devices(acq.sources)
            recorder.close()
    return str(path)


async def run_calibration(proto: CalibrationProtocol, profiles: dict[str, DeviceProfile], *, virtual: bool, speed: float,
                          auto: bool, scenario: Scenario | None, contractions_uv: list[list[float]],
                          ask_retry: Callable[[], bool], out: Out = print) -> tuple[CalibrationResult, int]:
    """Guide the calibration and analyse it; retries on failure. Returns the last result and tries used."""
    async with acquire(profiles, virtual=virtual, speed=speed, scenario=scenario) as acq:
        got: list[tuple[np.ndarray, np.ndarray]] = []
        meta: dict = {}

        def on_block(block: Block) -> None:
            if block.stream == StreamKind.EMG and block.times_s is not None:
                got.append((np.asarray(block.times_s, dtype=float), np.asarray(block.data, dtype=float)))
                meta.setdefault("rate", block.rate_hz)
                meta.setdefault("channels", block.channels)

        acq.hub.listen(on_block)
        result = None
        for attempt in range(1, proto.max_tries + 1):
            t0 = acq.clock.now_s() + 1.0
            if virtual and scenario is not None:
                rest = (scenario.tension.left_uv[0], scenario.tension.right_uv[0])
                shift_scripts(acq.world, acq.clock,
                              {"tension": contraction_script(proto, t0, rest, contractions_uv[min(attempt, len(contractions_uv)) - 1])})
            got.clear()
            out(f"--- calibration {proto.name}, try {attempt} of {proto.max_tries} ({proto.duration_s():.0f} s)")
            for w in proto.windows():
                if w.name != "rest":
                    for k in range(int(proto.lead_in_s), 0, -1):
                        await _until(acq, t0 + w.start_s - k)
                        out(f"  {w.name}: {k}...")
                await _until(acq, t0 + w.start_s)
                out(f"  {w.name}: {w.prompt} ({w.end_s - w.start_s:.0f} s)")
                await _until(acq, t0 + w.end_s)
                out(f"  {w.name}: relax")
            await _until(acq, t0 + proto.duration_s())
            await _data_until(acq, got, t0 + proto.windows()[-1].end_s)
            if not got:
                raise SessionError("no EMG arrived during calibration; check that the EMG sensor is on and connected")
            t = np.concatenate([g[0] for g in got])
            x = np.concatenate([g[1] for g in got])
            result = analyse(proto, t0, t, x, float(meta["rate"]), tuple(meta["channels"]))
            ch = tuple(meta["channels"])
            out("  rest RMS " + ", ".join(f"{c} {v:.1f} µV" for c, v in zip(ch, result.rest_rms_uv))
                + "; contractions " + "; ".join(", ".join(f"{v:.1f}" for v in row) for row in result.contractions_rms_uv)
                + " µV; spread " + ", ".join(f"{100 * s:.0f}%" for s in result.spread))
            if result.ok:
                return result, attempt
            for p in result.problems:
                out(f"  problem: {p}")
            if attempt < proto.max_tries and not (auto or ask_retry()):
                break
            if attempt < proto.max_tries:
                out("  retrying: relax for a moment, then repeat the same steps")
        return result, attempt


async def _until(acq: Acquisition, t_s: float) -> None:
    while (left := t_s - acq.clock.now_s()) > 0:
        _wait_for_all_failed(acq)
        await asyncio.sleep(min(acq.clock.wall_seconds(left), 0.5))


async def _data_until(acq: Acquisition, got: list, t_s: float) -> None:
    """Wait (at most ``DATA_WAIT_S`` session seconds) until samples up to ``t_s`` have arrived."""
    deadline = acq.clock.now_s() + DATA_WAIT_S
    while (not got or got[-1][0][-1] < t_s) and acq.clock.now_s() < deadline:
        await asyncio.sleep(acq.clock.wall_seconds(0.5))


def is_interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()
