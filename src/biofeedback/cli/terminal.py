"""The terminal front end: a session, a home relaxation and the monitor, printed as lines, on the one session core.

Each is a ``session.runner.SessionRun`` with a ``body`` that prints and (in an attended session) reads keys; the
phases, live numbers, recording and outcome are the core's. Nothing here processes a signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
from collections.abc import Callable

from biofeedback.relax.engine import RelaxSession, RelaxSettings, RelaxView, relax_meta, relax_session
from biofeedback.relax.feedback import ON, OFF, PAUSED
from biofeedback.relax.sham import ShamSignal
from biofeedback.sensors.profiles import DeviceProfile
from biofeedback.session.keys import KeyReader
from biofeedback.session.runner import SessionPlan, SessionRun
from biofeedback.stream import Gap, StreamKind

LIVE_PRINT_SESSION_S = 5.0
"""Session seconds between live lines of a session in the terminal."""
RELAX_PRINT_SESSION_S = 5.0
"""Session seconds between status lines of a home session (and at every change of the pacer or feedback)."""

Out = Callable[[str], None]


def _num(v: float | None, fmt: str) -> str:
    return "--" if v is None or not math.isfinite(v) else format(v, fmt)


def unit_text(unit: str) -> str:
    """A unit as the terminal can print it: 'uV' as 'µV' when standard output's encoding carries 'µ' (UTF-8), else
    left 'uV' (an ASCII console, a pipe without an encoding), never a character the output cannot take."""
    if "uV" not in unit:
        return unit
    encoding = getattr(sys.stdout, "encoding", None)
    try:
        "µ".encode(encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return unit
    return unit.replace("uV", "µV")


def gap_lines(gaps: list[Gap]) -> str:
    return "".join(f"\n          gap: {g.stream} from {g.source}, {g.length_s:.2f} s at {g.start_s:.1f} s ({g.reason})"
                   for g in gaps)


class NewGaps:
    """The hub's gaps, and the recording's problems, not yet reported."""

    def __init__(self) -> None:
        self.seen = 0
        self.problems_seen = 0

    def __call__(self, run: SessionRun) -> list[Gap]:
        gaps = run.acq.hub.gaps[self.seen:]
        self.seen += len(gaps)
        return list(gaps)

    def problems(self, run: SessionRun) -> str:
        problems = run.recording_problems()
        new, self.problems_seen = problems[self.problems_seen:], len(problems)
        return "".join(f"\n          recording: {p}" for p in new)


def live_line(run: SessionRun, new_gaps: NewGaps) -> str:
    """One live line: time, phase, tension index per side, left/right symmetry with its scale, HR, RMSSD, hands on,
    new gaps."""
    live, machine = run.live, run.machine
    v = live.values
    tension = (" ".join(f"{ch.split('_')[0][:1].upper()} "
                        + ("no signal" if v.no_signal(c) else "--" if v.settling(c) else _num(x, '6.1f'))
                        for c, (ch, x) in enumerate(zip(live.emg_channels, v.tension)))
               + f" {unit_text(live.index.unit)}") if v.tension else "--"
    sym = round(v.symmetry_pct) if math.isfinite(v.symmetry_pct) else None
    symmetry = (f"  sym L-R {'--' if sym is None else f'{sym:+d}' if sym else '0'} % ({v.symmetry_scale})"
                if len(v.tension) == 2 else "")  # never '-0'
    phase = machine.phase.name if machine is not None and machine.phase is not None else ""
    line = (f"{run.now_s():7.1f} s  {phase:<10} tension {tension}{symmetry}  HR {_num(live.hr_now_bpm(), '.0f')} bpm  "
            f"RMSSD {_num(v.rmssd_ms, '.1f')} ms" + ("  [hands on]" if machine is not None and machine.hands_on else ""))
    return line + gap_lines(new_gaps(run)) + new_gaps.problems(run)


# --- a session ------------------------------------------------------------------------------------
async def _session_body(run: SessionRun, out: Out) -> None:
    """Live lines every ``LIVE_PRINT_SESSION_S``; in an attended session, keys: h, 1-9, n, Enter, q."""
    gaps, plan = NewGaps(), run.plan
    with contextlib.ExitStack() as stack:
        keys = None
        if not plan.auto:
            keys = stack.enter_context(KeyReader(run.acq.clock, asyncio.get_running_loop())).queue
            out("keys: h hands on/off, " + ", ".join(f"{i + 1} {t.label}" for i, t in enumerate(plan.protocol.techniques))
                + ", n note, Enter next phase, q end")
        next_line = run.now_s() + LIVE_PRINT_SESSION_S
        while not run.machine.finished:
            if run.now_s() >= next_line:
                out(live_line(run, gaps))
                next_line += LIVE_PRINT_SESSION_S
            wait = max(0.0, run.acq.clock.wall_seconds(next_line - run.now_s()))
            if keys is None:
                await asyncio.sleep(min(wait, 0.25))
                continue
            try:
                key = await asyncio.wait_for(keys.get(), min(wait, 0.25))
            except asyncio.TimeoutError:
                continue
            _key(run, key)


def _key(run: SessionRun, key) -> None:
    """One key of an attended session, at the session time it was pressed."""
    machine, techniques = run.machine, run.plan.protocol.techniques
    if not machine.started:  # the sensors are still connecting: Enter starts the first phase now, q ends
        if key.key == "\n":
            machine.start(0, key.t_s)
        elif key.key == "q":
            machine.finish(key.t_s)
        return
    if key.key == "\n":
        machine.next(key.t_s)
    elif key.key == "q":
        machine.finish(key.t_s)
    elif key.key == "h":
        machine.hands(key.t_s)
    elif key.key == "n":
        machine.note(key.t_s, key.text)
    elif key.key.isdigit() and 1 <= int(key.key) <= len(techniques):
        machine.technique(key.t_s, int(key.key))


async def run_session(plan: SessionPlan, profiles: dict[str, DeviceProfile], out: Out = print, lsl: bool = False):
    """A whole session in the terminal; returns its ``SessionOutcome`` (recording, summary, verdict)."""
    run = SessionRun(plan, profiles, mode="auto" if plan.auto else "interactive", chain=True, say=out, lsl=lsl)
    return await run.run(lambda r: _session_body(r, out))


# --- a home relaxation -----------------------------------------------------------------------------
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
                    + (f"tone {fb.level:4.2f}" if fb.state == ON else "quiet (at target)"))
    heart = "" if not v.values.heart else f"  HR {_num(v.values.hr_bpm, '3.0f')}"
    return f"{v.t_s:7.1f} s  {v.phase:<10} {pacer}  | {feedback}{heart}" + (f"  [{v.resonance}]" if v.resonance else "")


async def _relax_body(run: SessionRun, out: Out) -> None:
    """A status line at every change of the pacer or feedback, and every ``RELAX_PRINT_SESSION_S``."""
    last, next_print = None, 0.0
    while True:
        v: RelaxView | None = run.driver.view
        if v is not None and not v.finished:
            state = (v.pacer.phase if v.pacer else None, v.feedback.state, v.feedback.reason)
            if state != last or v.t_s >= next_print:
                out(view_line(v, unit_text(run.live.index.unit)))
                next_print = v.t_s + RELAX_PRINT_SESSION_S
            last = state
        await asyncio.sleep(0.05)


async def run_relax(plan: SessionPlan, settings: RelaxSettings, profiles: dict[str, DeviceProfile],
                    sham: ShamSignal | None = None, out: Out = print,
                    stop: asyncio.Event | None = None, lsl: bool = False) -> tuple[object, RelaxSession]:
    """A whole home session in the terminal; returns its ``SessionOutcome`` and the finished ``RelaxSession``."""
    run = SessionRun(plan, profiles, mode="relax-headless", extra_meta={"relax": relax_meta(settings, sham)},
                     chain=True, driver=lambda r: relax_session(r, settings, sham), say=out, lsl=lsl)

    async def body(r: SessionRun) -> None:
        printing = asyncio.ensure_future(_relax_body(r, out))
        try:
            while not r.machine.finished:
                if stop is not None and stop.is_set():
                    r.driver.finish(r.now_s())
                await asyncio.sleep(0.05)
        finally:
            printing.cancel()

    outcome = await run.run(body)
    return outcome, run.driver


# --- the monitor ------------------------------------------------------------------------------------
def monitor_numbers(run: SessionRun, new_gaps: NewGaps) -> dict:
    """The monitor's numbers now: the live processor's, the sensors' link state, the gaps since the last call."""
    live, hub = run.live, run.acq.hub
    rr_key = next((k for k in hub.buffers if k[0] == StreamKind.RR), None)
    hr = live.hr_now_bpm()
    return {
        "t_s": round(run.now_s(), 3),
        "hr_bpm": hr if math.isfinite(hr) else None,
        "rr_count": hub.samples[rr_key] if rr_key else 0,
        "rmssd_ms": round(live.values.rmssd_ms, 1) if math.isfinite(live.values.rmssd_ms) else None,
        "emg_rms_uv": {ch: round(v, 2) for ch, v in zip(live.emg_channels, live.values.rms_uv)},
        "sensors": {s.name: {"state": str(s.status.state), "packets": s.status.packets,
                             "decode_errors": s.status.decode_errors, "gaps": s.status.gaps,
                             "reconnects": s.status.reconnects, "battery_pct": s.status.battery_pct,
                             "contact": list(s.status.contact)} for s in run.acq.sources},
        "gaps": [{"stream": g.stream, "source": g.source, "start_s": round(g.start_s, 3), "length_s": round(g.length_s, 3),
                  "reason": g.reason, "lost_samples": g.lost_samples} for g in new_gaps(run)],
    }


def monitor_line(n: dict) -> str:
    hr = "  --" if n["hr_bpm"] is None else f"{n['hr_bpm']:4.0f}"
    rmssd = "  --" if n["rmssd_ms"] is None else f"{n['rmssd_ms']:5.1f}"
    emg = " ".join(f"{k.split('_')[0][:1].upper()} {v:6.1f}" for k, v in n["emg_rms_uv"].items()) or "--"
    health = "; ".join(
        f"{name}: {s['state']} {s['packets']} pkt {s['gaps']} gaps {s['reconnects']} reconn"
        + (f" {s['decode_errors']} bad" if s["decode_errors"] else "")
        for name, s in n["sensors"].items())
    line = f"{n['t_s']:7.1f} s  HR {hr} bpm  RR {n['rr_count']:5d}  RMSSD {rmssd} ms  EMG RMS {unit_text('uV')} {emg}  | {health}"
    return line + "".join(f"\n          gap: {g['stream']} from {g['source']}, {g['length_s']:.2f} s at {g['start_s']:.1f} s "
                          f"({g['reason']})" for g in n["gaps"])


async def monitor(plan: SessionPlan, profiles: dict[str, DeviceProfile], seconds: float | None, as_json: bool,
                  out: Out = print, lsl: bool = False) -> int:
    """Live numbers once a session second until ``seconds`` (None: Ctrl-C or a replay's end), then the gaps seen."""
    all_gaps: list[dict] = []
    gaps = NewGaps()

    async def body(run: SessionRun) -> None:
        tick = 1
        while seconds is None or tick <= seconds:
            await asyncio.wait(run.acq.tasks, timeout=max(0.0, run.acq.clock.wall_seconds(tick - run.now_s())))
            run.raise_if_all_failed()
            ended = run.acq.ended()  # before the numbers, so the last line shows every source's final state
            n = monitor_numbers(run, gaps)
            all_gaps.extend(n["gaps"])
            out(json.dumps(n) if as_json else monitor_line(n))
            if ended:
                return
            tick += 1

    run = SessionRun(plan, profiles, record=False, phases=False, lsl=lsl,
                     say=lambda line: print(line, file=sys.stderr))  # stdout holds only the numbers (--json)
    await run.run(body)
    all_gaps.extend(monitor_numbers(run, gaps)["gaps"])
    for err in run.acq.failed():
        print(f"warning: {err}", file=sys.stderr)
    if not as_json:
        total = sum(g["length_s"] for g in all_gaps)
        out(f"done: {len(all_gaps)} gaps, {total:.2f} s without data"
            + "".join(f"\n  {g['stream']}/{g['source']}: {g['start_s']:.2f}-{g['start_s'] + g['length_s']:.2f} s "
                      f"({g['length_s']:.2f} s, {g['reason']})" for g in all_gaps))
    return 0
