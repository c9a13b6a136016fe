"""The therapist's commands: ``session`` (screening, plan, the recorded session, its outcome) and ``calibrate``."""

from __future__ import annotations

import argparse
from functools import partial

from biofeedback.cli.common import ALL_CLEAR, add_lsl_option, add_virtual_options, ask_window, dashboard, floats, scenario_from_args, \
    use_virtual, use_window
from biofeedback.errors import UsageError
from biofeedback.validate import EMG_RANGE_UV


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``session`` and ``calibrate``."""
    p = sub.add_parser("session", help="run and record a session: baseline rest, treatment with markers, post rest")
    p.add_argument("--client", required=True, help="pseudonymous client ID, e.g. C001")
    p.add_argument("--protocol", help="protocol TOML file, or a name in protocols/ (default: default)")
    p.add_argument("--headless", action="store_true", help="terminal only, no dashboard window")
    p.add_argument("--theme", choices=("light", "dark"), default="light", help="dashboard colours")
    p.add_argument("--auto", action="store_true",
                   help="unattended: phases follow the protocol's durations and scripted markers (also without a terminal)")
    p.add_argument("--answers", help=f"screening answers: {ALL_CLEAR} (consent given, no contraindication) or "
                                     "key=yes|no,... (needed for unattended sessions)")
    p.add_argument("--sensors", help="profile names of the sensors to use, e.g. bitalino (EMG and ECG on one board) or "
                                     "open-emg,polar-verity; remembered for the client (default: the last choice, "
                                     "else the best sensors found; `biofeedback devices` lists the profiles)")
    add_lsl_option(p)
    add_virtual_options(p)
    p.set_defaults(func=cmd_session)

    p = sub.add_parser("calibrate", help="guided calibration: resting baseline and reference contractions")
    p.add_argument("--client", required=True, help="pseudonymous client ID, e.g. C001")
    p.add_argument("--protocol", help="calibration TOML file, or a name in calibration/ (default: trapezius-reference)")
    p.add_argument("--auto", action="store_true", help="unattended: no questions; fail after the protocol's max_tries")
    add_virtual_options(p)
    p.add_argument("--virtual-contractions", default="",
                   help="virtual sensors: µV RMS of each contraction, per try separated by ';' "
                        "(e.g. '90,60,90;90,90,90'); default: three equal contractions at 3x rest")
    p.set_defaults(func=cmd_calibrate)


def cmd_session(args: argparse.Namespace) -> int:
    import asyncio
    from biofeedback.cli.terminal import run_session
    from biofeedback.sensors.profiles import load_profiles
    from biofeedback.session.calibration import latest_calibration
    from biofeedback.session.protocol import load_protocol
    from biofeedback.session.runner import SessionPlan, is_interactive, session_scenario
    from biofeedback.session.screening import screen
    from biofeedback.store import validate_client_id

    client = validate_client_id(args.client)
    protocol = load_protocol(args.protocol)
    sensors = sensor_choice(client, args.sensors, load_profiles())
    windowed = use_window(args.headless)
    # In a window the therapist is there (even when started from a desktop launcher with no terminal).
    auto = args.auto or (not windowed and not is_interactive())
    asker = partial(ask_window, activity="session", theme=args.theme) if windowed else None
    screening = screen(client, protocol, args.answers, auto, ask_window=asker)
    calibration = latest_calibration(client)
    print(f"calibration: {calibration[0].name}" if calibration else
          "calibration: none for this client (tension in µV; run `biofeedback calibrate` first for %RVC)")
    virtual = use_virtual(args)
    scenario = session_scenario(scenario_from_args(args), protocol) if virtual else None
    plan = SessionPlan(client, protocol, virtual, args.speed, auto, scenario, screening, calibration,
                       sensors=sensors)
    if windowed:
        outcome = dashboard(plan, load_profiles(), args.theme, lsl=args.lsl)
    else:
        outcome = asyncio.run(run_session(plan, load_profiles(), lsl=args.lsl))
    print(f"recording: {outcome.path}")
    print(outcome.text())
    return 0


def sensor_choice(client: str, text: str | None, profiles: dict) -> tuple[str, ...] | None:
    """``--sensors`` (checked against the profiles and remembered for the client), else the client's remembered
    choice, else None (the best sensors found)."""
    from biofeedback.store.sensor_choice import remember_sensors, remembered_sensors

    if text is None:
        chosen = remembered_sensors(client)
        if chosen:
            print(f"sensors: {', '.join(chosen)} (remembered for {client}; `session --sensors` changes them)")
        return chosen
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in profiles]
    if not names or unknown:
        raise UsageError(f"--sensors: {', '.join(map(repr, unknown)) or 'nothing given'}: give profile names from "
                         f"{', '.join(sorted(profiles))}")
    remember_sensors(client, names)
    return names


def _contractions(text: str, count: int, rest_uv: float) -> list[list[float]]:
    """``--virtual-contractions``: µV RMS of each contraction per try; empty: one try of ``count`` at 3x rest."""
    if not text.strip():
        return [[3.0 * rest_uv] * count]
    tries = []
    for part in text.split(";"):
        values = floats(part, "--virtual-contractions", *EMG_RANGE_UV)
        if not values:
            raise UsageError("--virtual-contractions: give µV values, e.g. 90,90,90")
        tries.append(values)
    return tries


def cmd_calibrate(args: argparse.Namespace) -> int:
    import asyncio
    from biofeedback.sensors.profiles import load_profiles
    from biofeedback.session.calibration import load_calibration_protocol, save_calibration
    from biofeedback.session.protocol import SessionError
    from biofeedback.session.calibration import run_calibration
    from biofeedback.session.runner import SessionPlan, is_interactive
    from biofeedback.store import validate_client_id

    client = validate_client_id(args.client)
    proto = load_calibration_protocol(args.protocol)
    auto = args.auto or not is_interactive()
    virtual = use_virtual(args)
    scenario = scenario_from_args(args) if virtual else None
    tries = _contractions(args.virtual_contractions, proto.count, scenario.tension.left_uv[0] if scenario else 0.0)

    def ask_retry() -> bool:
        return input("Try again? [Y/n] ").strip().lower() not in ("n", "no")

    plan = SessionPlan(client, None, virtual, args.speed, auto, scenario, {}, None)
    result, used = asyncio.run(run_calibration(proto, plan, load_profiles(), contractions_uv=tries,
                                               ask_retry=ask_retry))
    if not result.ok:
        raise SessionError(f"calibration failed after {used} {'try' if used == 1 else 'tries'}: "
                           + "; ".join(result.problems) + " — nothing was saved")
    path = save_calibration(client, proto, result, {"tries": used, "virtual": virtual})
    print(f"calibration saved: {path}")
    return 0
