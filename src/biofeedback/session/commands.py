"""The ``session``, ``calibrate``, ``export`` and ``sessions`` subcommands (added to ``biofeedback.cli``'s parser)."""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import sys
from collections.abc import Callable
from functools import partial

from biofeedback.sensors.profiles import load_profiles
from biofeedback.session.calibration import latest_calibration, load_calibration_protocol, save_calibration
from biofeedback.session.protocol import SessionError, load_protocol
from biofeedback.session.run import SessionPlan, is_interactive, run_calibration, run_session, session_scenario
from biofeedback.session.screening import ALL_CLEAR, screen
from biofeedback.analysis.summary import format_summary, summarize
from biofeedback.store import FORMATS, StoreError, export_session, list_sessions, validate_client_id


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def add_parsers(sub, add_virtual_options: Callable, scenario_from_args: Callable, use_virtual: Callable,
                dashboard: Callable | None = None, verdict: Callable | None = None,
                ask_window: Callable | None = None) -> None:
    """Add the four commands; the cli passes its virtual-sensor helpers, the dashboard runner and the screening
    dialog in (session imports neither cli nor ui)."""
    p = sub.add_parser("session", help="run and record a session: baseline rest, treatment with markers, post rest")
    p.add_argument("--client", required=True, help="pseudonymous client ID, e.g. C001")
    p.add_argument("--protocol", help="protocol TOML file, or a name in protocols/ (default: default)")
    p.add_argument("--headless", action="store_true", help="terminal only, no dashboard window")
    p.add_argument("--theme", choices=("light", "dark"), default="light", help="dashboard colours")
    p.add_argument("--auto", action="store_true",
                   help="unattended: phases follow the protocol's durations and scripted markers (also without a terminal)")
    p.add_argument("--answers", help=f"screening answers: {ALL_CLEAR} (consent given, no contraindication) or "
                                     "key=yes|no,... (needed for unattended sessions)")
    add_virtual_options(p)
    p.set_defaults(func=lambda a: cmd_session(a, scenario_from_args, use_virtual, dashboard, verdict,
                                                         ask_window))

    p = sub.add_parser("calibrate", help="guided calibration: resting baseline and reference contractions")
    p.add_argument("--client", required=True, help="pseudonymous client ID, e.g. C001")
    p.add_argument("--protocol", help="calibration TOML file, or a name in calibration/ (default: trapezius-reference)")
    p.add_argument("--auto", action="store_true", help="unattended: no questions; fail after the protocol's max_tries")
    add_virtual_options(p)
    p.add_argument("--virtual-contractions", default="",
                   help="virtual sensors: µV RMS of each contraction, per try separated by ';' "
                        "(e.g. '90,60,90;90,90,90'); default: three equal contractions at 3x rest")
    p.set_defaults(func=lambda a: cmd_calibrate(a, scenario_from_args, use_virtual))

    p = sub.add_parser("export", help="export a recorded session to EDF+, CSV, BIDS-style physio or HDF5")
    p.add_argument("session", nargs="?", default="latest", help="session file, or 'latest' (default; of --client if given)")
    p.add_argument("--client", help="with 'latest': that client's newest session")
    p.add_argument("--format", required=True, help=f"one of {', '.join(FORMATS)}")
    p.add_argument("--out", type=pathlib.Path, help="output folder (default: ./<session name>-<format>)")
    p.add_argument("--shift-days", type=_int, default=0, help="shift every date by N days (anonymity)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("sessions", help="list recorded sessions")
    p.add_argument("--client", help="only this client's sessions")
    p.set_defaults(func=cmd_sessions)


def has_display() -> bool:
    """Whether someone can see a window: a display server, or a Qt platform that draws to a screen.

    Offscreen and minimal Qt platforms (tests, CI) count as no display: nobody could close the window.
    """
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform.split(":")[0] in ("offscreen", "minimal"):
        return False
    if platform or sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def use_window(headless: bool, instead: str = "running headless") -> bool:
    """Whether to open a window: not ``--headless`` and a display to show it on; says what happens instead
    when there is no display."""
    if headless:
        return False
    if not has_display():
        print(f"No display: {instead} in this terminal (--headless).", file=sys.stderr)
        return False
    return True


def cmd_session(args: argparse.Namespace, scenario_from_args: Callable, use_virtual: Callable,
                dashboard: Callable | None = None, verdict: Callable | None = None,
                ask_window: Callable | None = None) -> int:
    client = validate_client_id(args.client)
    protocol = load_protocol(args.protocol)
    windowed = dashboard is not None and use_window(args.headless)
    # In a window the therapist is there (even when started from a desktop launcher with no terminal).
    auto = args.auto or (not windowed and not is_interactive())
    asker = partial(ask_window, activity="session", theme=args.theme) if windowed and ask_window else None
    screening = screen(client, protocol, args.answers, auto, ask_window=asker)
    calibration = latest_calibration(client)
    print(f"calibration: {calibration[0].name}" if calibration else
          "calibration: none for this client (tension in µV; run `biofeedback calibrate` first for %RVC)")
    virtual = use_virtual(args)
    scenario = session_scenario(scenario_from_args(args), protocol) if virtual else None
    plan = SessionPlan(client, protocol, virtual, args.speed, auto, scenario,
                       screening, calibration)
    if windowed:
        path = dashboard(plan, load_profiles(), args.theme)
    else:
        path = asyncio.run(run_session(plan, load_profiles()))
    print(f"recording: {path}")
    print(format_summary(summarize(path)))
    if verdict is not None:
        print(verdict(path))
    return 0


def _contractions(text: str, count: int, rest_uv: float) -> list[list[float]]:
    if not text.strip():
        return [[3.0 * rest_uv] * count]
    tries = []
    for part in text.split(";"):
        try:
            values = [float(v) for v in part.split(",") if v.strip()]
        except ValueError:
            raise SessionError(f"--virtual-contractions: expected numbers, got {part!r}") from None
        if not values or min(values) < 0:
            raise SessionError("--virtual-contractions: give non-negative µV values, e.g. 90,90,90")
        tries.append(values)
    return tries


def cmd_calibrate(args: argparse.Namespace, scenario_from_args: Callable, use_virtual: Callable) -> int:
    client = validate_client_id(args.client)
    proto = load_calibration_protocol(args.protocol)
    auto = args.auto or not is_interactive()
    virtual = use_virtual(args)
    scenario = scenario_from_args(args) if virtual else None
    tries = _contractions(args.virtual_contractions, proto.count, scenario.tension.left_uv[0] if scenario else 0.0)

    def ask_retry() -> bool:
        return input("Try again? [Y/n] ").strip().lower() not in ("n", "no")

    result, used = asyncio.run(run_calibration(proto, load_profiles(), virtual=virtual, speed=args.speed, auto=auto,
                                               scenario=scenario, contractions_uv=tries, ask_retry=ask_retry))
    if not result.ok:
        raise SessionError(f"calibration failed after {used} {'try' if used == 1 else 'tries'}: "
                           + "; ".join(result.problems) + " — nothing was saved")
    path = save_calibration(client, proto, result, {"tries": used, "virtual": virtual})
    print(f"calibration saved: {path}")
    return 0


def resolve_session(spec: str, client: str | None) -> pathlib.Path:
    """A session file from a path, or ``latest`` (of ``client`` if given)."""
    if spec != "latest":
        return pathlib.Path(spec)
    if client is not None:
        validate_client_id(client)
    sessions = [s for s in list_sessions(client) if s["error"] is None]
    if not sessions:
        raise SessionError("no readable recorded session" + (f" for client {client}" if client else "")
                           + "; record one with `biofeedback session` or pass a session file")
    return pathlib.Path(sessions[-1]["path"])


def cmd_export(args: argparse.Namespace) -> int:
    fmt = args.format.lower()
    if fmt not in FORMATS:
        raise SessionError(f"unknown export format {args.format!r}; choose one of {', '.join(FORMATS)}")
    path = resolve_session(args.session, args.client)
    out = args.out or pathlib.Path.cwd() / f"{path.stem}-{fmt}"
    written = export_session(path, fmt, out, shift_days=args.shift_days)
    print(f"exported {path.name} as {fmt} to {out}:")
    for w in written:
        print(f"  {w}")
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    if args.client is not None:
        validate_client_id(args.client)
    sessions = list_sessions(args.client)
    if not sessions:
        print("no sessions recorded" + (f" for client {args.client}" if args.client else ""))
        return 0
    for s in sessions:
        if s["error"]:
            print(f"{s['client_id']:<10} CORRUPT  {s['path']}: {s['error']}")
            continue
        dur = "?" if s["duration_s"] is None else f"{s['duration_s']:.0f} s"
        state = "complete" if s["complete"] else "incomplete"
        print(f"{s['client_id']:<10} {s['started'] or '?':<20} {dur:>7}  {s['protocol'] or '-':<16} {state:<10} {s['path']}")
    return 0


