"""Calibration: a guided protocol (TOML in the top-level ``calibration/``), its analysis, and per-client results.

Per attempt the timeline (session seconds from the attempt's start) is: resting baseline, then
``count`` reference contractions (shoulder elevations) each after a ``lead_in_s`` countdown and
followed by ``relax_s``, then an optional MVC. The EMG is the session's live processor's (``session.live``); each
window's amplitude is the mean of its 250 ms moving RMS, with ``settle_s`` (rest) or ``trim_s`` (each
end of a contraction) left out. Results are saved as ``<home>/clients/<id>/calibration/<stamp>.json``
(0600); a session uses the newest.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from biofeedback.errors import Reason
from biofeedback.session.protocol import SessionError, read_toml, resolve_toml
from biofeedback.store.paths import FILE_MODE, data_home, private_dir, validate_client_id
from biofeedback.validate import EMG_RANGE_UV, MAX_CALIBRATION_COUNT, MAX_DURATION_S, check_number, check_numbers, \
    check_table, check_type, data_file, protocol_file

DEFAULT_CALIBRATION = "trapezius-reference"
CALIBRATION_DIR_ENV = "BIOFEEDBACK_CALIBRATION"
RAMP_S = 0.2
"""Rise and fall time of a scripted virtual contraction."""



def default_calibration_dir() -> pathlib.Path:
    """``$BIOFEEDBACK_CALIBRATION`` if set, else the repository's top-level ``calibration/``."""
    env = os.environ.get(CALIBRATION_DIR_ENV)
    return pathlib.Path(env) if env else pathlib.Path(__file__).resolve().parents[3] / "calibration"


@dataclass(frozen=True)
class Window:
    name: str
    start_s: float
    end_s: float
    analysed_from_s: float
    analysed_to_s: float
    prompt: str = ""


@dataclass(frozen=True)
class CalibrationProtocol:
    name: str
    path: pathlib.Path
    rest_s: float
    settle_s: float
    rest_prompt: str
    count: int
    hold_s: float
    relax_s: float
    trim_s: float
    lead_in_s: float
    contraction_prompt: str
    tolerance: float
    mvc: bool
    mvc_prompt: str
    max_tries: int
    min_coverage: float
    min_contraction_over_rest: float

    def windows(self) -> list[Window]:
        """Rest, contraction-1..n and optionally mvc, in session seconds from the attempt's start."""
        out = [Window("rest", 0.0, self.rest_s, self.settle_s, self.rest_s, self.rest_prompt)]
        t = self.rest_s
        holds = [(f"contraction-{i + 1}", self.contraction_prompt) for i in range(self.count)]
        if self.mvc:
            holds.append(("mvc", self.mvc_prompt))
        for name, prompt in holds:
            a = t + self.lead_in_s
            out.append(Window(name, a, a + self.hold_s, a + self.trim_s, a + self.hold_s - self.trim_s, prompt))
            t = a + self.hold_s + self.relax_s
        return out

    def duration_s(self) -> float:
        return self.windows()[-1].end_s + self.relax_s


def load_calibration_protocol(spec: str | os.PathLike | None = None) -> CalibrationProtocol:
    """Load and check a calibration protocol TOML (a path, or a name in ``calibration/``): every field is checked
    before a sensor connects, and a wrong one is one ``SessionError`` line naming the file and the field."""
    path = resolve_toml(spec, default_calibration_dir(), DEFAULT_CALIBRATION)
    at = protocol_file(path)
    doc = read_toml(path)
    rest, ref, mvc, quality = (check_table(doc.get(k, {}), f"[{k}]", at) for k in ("rest", "reference", "mvc", "quality"))

    def num(table: dict, key: str, default: float, where: str, hi: float = MAX_DURATION_S, **kw) -> float:
        return check_number(table.get(key, default), f"[{where}] {key}", at, lo=0, hi=hi, **kw)

    def text(table: dict, key: str, default: str, where: str) -> str:
        return check_type(table.get(key, default), str, f"[{where}] {key}", at)

    proto = CalibrationProtocol(
        name=check_type(doc.get("name", path.stem), str, "name", at), path=path,
        rest_s=num(rest, "duration_s", 60, "rest", unit="seconds"), settle_s=num(rest, "settle_s", 5, "rest", unit="seconds"),
        rest_prompt=text(rest, "prompt", "Sit upright, shoulders relaxed, hands resting on the thighs.", "rest"),
        count=num(ref, "count", 3, "reference", hi=MAX_CALIBRATION_COUNT, integer=True),
        hold_s=num(ref, "hold_s", 5, "reference", unit="seconds"),
        relax_s=num(ref, "relax_s", 10, "reference", unit="seconds"), trim_s=num(ref, "trim_s", 1, "reference", unit="seconds"),
        lead_in_s=num(ref, "lead_in_s", 3, "reference", hi=60, unit="seconds"),
        contraction_prompt=text(ref, "prompt", "Lift both shoulders towards the ears and hold.", "reference"),
        tolerance=num(ref, "tolerance", 0.15, "reference", hi=10),
        mvc=check_type(mvc.get("enabled", False), bool, "[mvc] enabled", at),
        mvc_prompt=text(mvc, "prompt", "Lift the shoulders as hard as you can.", "mvc"),
        max_tries=max(1, num(quality, "max_tries", 3, "quality", hi=MAX_CALIBRATION_COUNT, integer=True)),
        min_coverage=num(quality, "min_coverage", 0.9, "quality", hi=1),
        min_contraction_over_rest=num(quality, "min_contraction_over_rest", 1.5, "quality", hi=1000),
    )
    if proto.count < 1 or proto.hold_s <= 2 * proto.trim_s or proto.rest_s <= proto.settle_s:
        raise SessionError(f"{path}: need [reference] count >= 1, hold_s > 2 * trim_s and [rest] duration_s > "
                           "settle_s; fix the file", Reason.BAD_PROTOCOL)
    return proto


@dataclass
class CalibrationResult:
    ok: bool
    problems: list[str]
    rest_rms_uv: list[float]
    contractions_rms_uv: list[list[float]]
    """Per contraction, per channel."""
    rvc_rms_uv: list[float]
    mvc_rms_uv: list[float] | None
    spread: list[float]
    """Per channel: (max - min) / mean of the contractions."""
    coverage: float


def analyse(proto: CalibrationProtocol, t0_s: float, t_s: np.ndarray, rms_uv: np.ndarray, rate_hz: float,
            channels: tuple[str, ...]) -> CalibrationResult:
    """Quality and repeatability of one attempt that started at session time ``t0_s``, from the live processor's
    250 ms moving RMS (µV per channel) at ``rate_hz`` (NaN rows: gaps)."""
    order = np.argsort(t_s, kind="stable")
    t, rms = t_s[order], rms_uv[order]
    have = np.isfinite(rms).all(axis=1) if rms.size else np.zeros(t.size, dtype=bool)
    problems: list[str] = []
    levels: dict[str, np.ndarray] = {}
    coverage = 1.0
    for w in proto.windows():
        a, b = t0_s + w.analysed_from_s, t0_s + w.analysed_to_s
        inside = (t >= a) & (t < b) & have
        coverage = min(coverage, inside.sum() / max(1.0, (b - a) * rate_hz))
        levels[w.name] = rms[inside].mean(axis=0) if inside.any() else np.full(len(channels), np.nan)
    if coverage < proto.min_coverage:
        problems.append(f"signal missing: only {100 * coverage:.0f}% of the samples arrived in a window "
                        "(check the sensor's link and battery)")
    rest = levels["rest"]
    con = np.array([levels[f"contraction-{i + 1}"] for i in range(proto.count)])
    mean = con.mean(axis=0)
    spread = (con.max(axis=0) - con.min(axis=0)) / mean
    if not np.all(rest > 0):
        problems.append("no resting EMG: check that both electrodes touch the skin")
    else:
        weak = [ch for ch, r, m in zip(channels, rest, mean) if not m >= proto.min_contraction_over_rest * r]
        if weak:
            problems.append(f"contractions hardly above rest on {', '.join(weak)}: check electrode placement "
                            "and lift the shoulders fully")
    uneven = [f"{ch} {100 * s:.0f}%" for ch, s in zip(channels, spread) if not s <= proto.tolerance]
    if uneven:
        problems.append(f"the {proto.count} contractions differ by more than {100 * proto.tolerance:.0f}% "
                        f"({', '.join(uneven)}): repeat them with the same effort")
    mvc = levels.get("mvc")
    return CalibrationResult(
        ok=not problems, problems=problems, rest_rms_uv=[float(v) for v in rest],
        contractions_rms_uv=[[float(v) for v in row] for row in con], rvc_rms_uv=[float(v) for v in mean],
        mvc_rms_uv=None if mvc is None else [float(v) for v in mvc], spread=[float(v) for v in spread],
        coverage=float(coverage),
    )


def contraction_script(proto: CalibrationProtocol, t0_s: float, rest_uv: tuple[float, float],
                       contraction_uv: list[float]) -> tuple[list[float], list[float], list[float]]:
    """Virtual EMG amplitude points (times, left, right) in session time: rest, with each hold at its µV."""
    times, left, right = [0.0], [rest_uv[0]], [rest_uv[1]]
    holds = [w for w in proto.windows() if w.name != "rest"]
    for i, w in enumerate(holds):
        level = contraction_uv[min(i, len(contraction_uv) - 1)]
        for t, on in ((w.start_s - RAMP_S, False), (w.start_s, True), (w.end_s, True), (w.end_s + RAMP_S, False)):
            times.append(t0_s + t)
            left.append(level if on else rest_uv[0])
            right.append(level * rest_uv[1] / rest_uv[0] if on and rest_uv[0] > 0 else level if on else rest_uv[1])
    return times, left, right


def calibration_dir(client_id: str) -> pathlib.Path:
    return private_dir(private_dir(private_dir(data_home() / "clients") / validate_client_id(client_id)) / "calibration")


def save_calibration(client_id: str, proto: CalibrationProtocol, result: CalibrationResult, extra: dict) -> pathlib.Path:
    """Write the calibration (0600) under the client's folder; never overwrites."""
    folder = calibration_dir(client_id)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path, n = folder / f"{stamp}.json", 1
    while path.exists():
        n += 1
        path = folder / f"{stamp}-{n}.json"
    doc = {"client_id": client_id, "utc": stamp, "protocol": proto.name, "rest_rms_uv": result.rest_rms_uv,
           "rvc_rms_uv": result.rvc_rms_uv, "mvc_rms_uv": result.mvc_rms_uv,
           "contractions_rms_uv": result.contractions_rms_uv, "spread": result.spread, **extra}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    if hasattr(os, "fchmod"):
        os.fchmod(fd, FILE_MODE)  # 0600 whatever the umask
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    return path


def latest_calibration(client_id: str) -> tuple[pathlib.Path, dict] | None:
    """The client's newest saved calibration, or None if there is none; a damaged one is one ``StoreError`` line
    naming the file and the field."""
    files = sorted(calibration_dir(client_id).glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name))
    if not files:
        return None
    path = files[-1]
    return path, check_calibration(path)


def check_calibration(path: pathlib.Path) -> dict:
    """A saved calibration JSON, checked: the reference levels are finite µV (rest >= 0; RVC and MVC > 0), one per
    channel."""
    at = data_file(path, "run `biofeedback calibrate` again, or move the file aside")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"), parse_constant=lambda name: name)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise at.fail("the file", f"cannot be read as JSON ({exc})") from None
    check_table(doc, "the file", at, ("rest_rms_uv", "rvc_rms_uv"))
    rest = check_numbers(doc["rest_rms_uv"], "rest_rms_uv", at, lo=EMG_RANGE_UV[0], hi=EMG_RANGE_UV[1], unit="µV")
    for key in ("rvc_rms_uv", "mvc_rms_uv"):
        if key in doc and (doc[key] is not None or key == "rvc_rms_uv"):
            check_numbers(doc[key], key, at, lo=EMG_RANGE_UV[0], hi=EMG_RANGE_UV[1], lo_open=True, unit="µV",
                          min_len=len(rest), max_len=len(rest))
    return doc


async def run_calibration(proto: CalibrationProtocol, plan, profiles: dict, *, contractions_uv: list[list[float]],
                          ask_retry: Callable[[], bool], out: Callable[[str], None] = print) -> tuple[CalibrationResult, int]:
    """Guide the calibration on a ``SessionRun`` of ``plan`` (nothing recorded) and analyse each try from the session's
    live processor; retries on failure. Returns the last result and the tries used."""
    from biofeedback.session.runner import DATA_WAIT_SESSION_S, SessionRun, shift_scripts, wait_session_s

    outcome: list[tuple[CalibrationResult, int]] = []

    async def guide(run: SessionRun) -> None:
        scenario = plan.scenario
        for attempt in range(1, proto.max_tries + 1):
            t0 = run.now_s() + 1.0
            if plan.virtual and scenario is not None:
                rest = (scenario.tension.left_uv[0], scenario.tension.right_uv[0])
                script = contraction_script(proto, t0, rest, contractions_uv[min(attempt, len(contractions_uv)) - 1])
                shift_scripts(run.acq.world, run.acq.clock, {"tension": script})
            out(f"--- calibration {proto.name}, try {attempt} of {proto.max_tries} ({proto.duration_s():.0f} s)")
            for w in proto.windows():
                if w.name != "rest":
                    for k in range(int(proto.lead_in_s), 0, -1):
                        await wait_session_s(run, t0 + w.start_s - k)
                        out(f"  {w.name}: {k}...")
                await wait_session_s(run, t0 + w.start_s)
                out(f"  {w.name}: {w.prompt} ({w.end_s - w.start_s:.0f} s)")
                await wait_session_s(run, t0 + w.end_s)
                out(f"  {w.name}: relax")
            await wait_session_s(run, t0 + proto.duration_s())
            live = run.live
            end = t0 + proto.windows()[-1].end_s
            deadline = run.now_s() + DATA_WAIT_SESSION_S  # late EMG: link latency, a reconnect
            while live.values.emg_t_s < end and run.now_s() < deadline:
                await asyncio.sleep(run.acq.clock.wall_seconds(0.5))
            if live.tension is None:
                raise SessionError("no EMG arrived during calibration; check that the EMG sensor is on and connected")
            t, x = live.tension.snapshot()  # uncalibrated, the tension index is the RMS in µV
            result = analyse(proto, t0, t, x[:, :-1], live.trace_rate_hz, tuple(live.emg_channels))
            out("  rest RMS " + ", ".join(f"{c} {v:.1f} µV" for c, v in zip(live.emg_channels, result.rest_rms_uv))
                + "; contractions " + "; ".join(", ".join(f"{v:.1f}" for v in row) for row in result.contractions_rms_uv)
                + " µV; spread " + ", ".join(f"{100 * s:.0f}%" for s in result.spread))
            outcome[:] = [(result, attempt)]
            if result.ok:
                return
            for p in result.problems:
                out(f"  problem: {p}")
            if attempt < proto.max_tries and not (plan.auto or ask_retry()):
                return
            if attempt < proto.max_tries:
                out("  retrying: relax for a moment, then repeat the same steps")

    if plan.calibration is not None:
        raise SessionError("a calibration measures µV: run it without an earlier calibration applied")
    await SessionRun(plan, profiles, record=False, phases=False, say=out).run(guide)
    return outcome[0]
