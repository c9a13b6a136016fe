"""The ``relax`` command: a client's guided relaxation at home, its settings from the protocol and the command line."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from biofeedback.cli.common import ALL_CLEAR, DEFAULT_MINUTES, HOME_PROTOCOL, add_lsl_option, add_virtual_options, number, \
    scenario_from_args, use_virtual, use_window
from biofeedback.errors import UsageError
from biofeedback.relax.pacer import MAX_RATE_BPM, MIN_RATE_BPM
from biofeedback.validate import EMG_RANGE_UV, MAX_DURATION_S, check_number, parser_type

if TYPE_CHECKING:
    from collections.abc import Callable

    from biofeedback.relax.engine import RelaxSettings
    from biofeedback.relax.sham import ShamSignal
    from biofeedback.session.protocol import Protocol
    from biofeedback.session.runner import SessionPlan


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``relax``."""
    p = sub.add_parser("relax", help="guided relaxation at home: breathing pacer and a tension tone to follow with eyes closed")
    p.add_argument("--client", required=True, help="your client ID from your therapist, e.g. C001")
    p.add_argument("--protocol", help=f"protocol TOML file, or a name in protocols/ (default: {HOME_PROTOCOL})")
    p.add_argument("--minutes", type=number, help=f"session length (default: the protocol's [relax] minutes, else "
                                                 f"{DEFAULT_MINUTES:g} with the default protocol)")
    p.add_argument("--rate", type=number, help="breaths per minute of the pacer (default 6)")
    p.add_argument("--ratio", help="inhale:exhale, e.g. 40:60 (default)")
    p.add_argument("--target", type=number, help="tension target (tension-index units); default 80 %% of today's baseline")
    p.add_argument("--find-resonance", action="store_true",
                   help="start the relaxation by stepping the breathing rate 7 → 4.5 per minute and keep the rate "
                        "with the largest heart-rate swing")
    p.add_argument("--sham", metavar="simulated|FILE",
                   help="blinded trials: feedback follows a simulated signal or a recorded session, not the live one; "
                        "nothing shown to the participant says so, the session file's meta (relax.feedback) records it")
    p.add_argument("--no-chimes", action="store_true", help="no chime at each inhale and exhale")
    p.add_argument("--headless", action="store_true", help="terminal only: print the pacer and feedback state")
    p.add_argument("--audio-wav", metavar="FILE", help="also write the feedback sound of the session to a WAV file")
    p.add_argument("--answers", help=f"screening answers: {ALL_CLEAR} or key=yes|no,... (needed without a terminal)")
    p.add_argument("--headache", type=number, metavar="0-10", help="add today's headache (intensity 0-10) to the diary")
    p.add_argument("--headache-hours", type=number, help="how long today's headache lasted (hours; default: unknown)")
    add_lsl_option(p)
    add_virtual_options(p)
    p.add_argument("--virtual-resonance-bpm", default=5.5,
                   type=parser_type(check_number, lo=MIN_RATE_BPM, hi=MAX_RATE_BPM, unit="breaths per minute"),
                   help="virtual sensors: breathing rate at which the virtual heart's swing is largest")
    p.set_defaults(func=cmd_relax)


def settings_from(protocol: Protocol, args: argparse.Namespace) -> tuple[Protocol, RelaxSettings]:
    """The protocol resized and the settings: the protocol's ``[relax]`` table, then the command line; each value
    checked where it was read (the file and field, or the argument)."""
    from biofeedback.relax.engine import RelaxSettings, fit_minutes
    from biofeedback.relax.pacer import parse_ratio
    from biofeedback.validate import ARGUMENT, check_table, check_type, protocol_file

    at = protocol_file(protocol.path)
    table = check_table(protocol.raw.get("relax", {}), "[relax]", at)

    def setting(arg: str, key: str, default=None, **limits):
        """``--arg`` if given, else the table's ``key`` (checked with ``limits``), else ``default``."""
        value = getattr(args, arg)
        if value is not None:
            return check_number(value, f"--{arg.replace('_', '-')}", ARGUMENT, **limits)
        if key in table:
            return check_number(table[key], f"[relax] {key}", at, **limits)
        return default

    minutes = setting("minutes", "minutes", DEFAULT_MINUTES if args.protocol is None else None, lo=0, lo_open=True,
                      hi=MAX_DURATION_S / 60, unit="minutes")
    if minutes is not None:
        protocol = fit_minutes(protocol, minutes)
    ratio = args.ratio if args.ratio is not None else table.get("inhale_exhale")
    try:
        fraction = parse_ratio(str(ratio)) if ratio is not None else 0.4
    except ValueError as exc:
        raise (UsageError(f"--ratio: {exc}") if args.ratio is not None else at.fail("[relax] inhale_exhale", str(exc)))
    settings = RelaxSettings(
        rate_bpm=setting("rate", "rate_bpm", 6.0, lo=MIN_RATE_BPM, hi=MAX_RATE_BPM, unit="breaths per minute"),
        inhale_fraction=fraction,
        target=setting("target", "target", lo=0, lo_open=True, hi=EMG_RANGE_UV[1]),
        find_resonance=args.find_resonance or check_type(table.get("find_resonance", False), bool,
                                                         "[relax] find_resonance", at),
        sham=args.sham, chimes=not args.no_chimes, virtual_resonance_bpm=args.virtual_resonance_bpm)
    return protocol, settings


def prepare(args: argparse.Namespace, ask: Callable | None) -> tuple[SessionPlan, RelaxSettings, ShamSignal | None]:
    """Screening (in ``ask``'s dialog when given), calibration, scenario: the plan, settings and sham signal
    of a home session."""
    from biofeedback.cli.session import sensor_choice
    from biofeedback.relax.sham import sham_signal
    from biofeedback.sensors.profiles import load_profiles
    from biofeedback.session.calibration import latest_calibration
    from biofeedback.session.protocol import load_protocol
    from biofeedback.session.runner import SessionPlan, is_interactive, session_scenario
    from biofeedback.session.screening import screen
    from biofeedback.store import validate_client_id

    client = validate_client_id(args.client)
    protocol, settings = settings_from(load_protocol(args.protocol or HOME_PROTOCOL), args)
    screening = screen(client, protocol, args.answers, not is_interactive(), "relaxation", ask)
    virtual = use_virtual(args)
    scenario = session_scenario(scenario_from_args(args), protocol) if virtual else None
    plan = SessionPlan(client, protocol, virtual, args.speed, True, scenario, screening, latest_calibration(client),
                       sensors=sensor_choice(client, None, load_profiles()))  # the sensors the therapist chose
    sham = sham_signal(settings.sham, sum(p.planned_s() for p in protocol.phases), args.seed)
    return plan, settings, sham


def ask_client(questions) -> dict[str, bool] | None:
    """The screening questions in a dialog worded for the client, who answers alone at home."""
    from biofeedback.ui.screening_dialog import ask_in_window

    return ask_in_window(questions, "relaxation", reader="client")


def cmd_relax(args: argparse.Namespace) -> int:
    """A home session in the relaxation window, or in the terminal; then its summary, history and diary. With
    ``--sham`` nothing printed or shown says so (the participant is blind to it); the recording's meta keeps it."""
    import asyncio
    from biofeedback.analysis.diary import add_entry
    from biofeedback.relax.audio import render_timeline, write_wav
    from biofeedback.cli.terminal import run_relax
    from biofeedback.relax.summary import diary_text, history_text, plain_summary, relax_history, start_end, \
        todays_diary
    from biofeedback.sensors.profiles import load_profiles
    from biofeedback.store import validate_client_id

    if args.headache is not None:
        add_entry(validate_client_id(args.client), args.headache, args.headache_hours)
    windowed = use_window(args.headless)
    plan, settings, sham = prepare(args, ask_client if windowed else None)
    if windowed:
        from biofeedback.ui.relax_window import run_relax_window

        outcome, timeline = run_relax_window(plan, settings, load_profiles(), sham, lsl=args.lsl)
    else:
        outcome, session = asyncio.run(run_relax(plan, settings, load_profiles(), sham, lsl=args.lsl))
        timeline = session.timeline
    if args.audio_wav:
        shifted = [(t - timeline[0][0], fb, ph) for t, fb, ph in timeline] if timeline else []
        print(f"feedback sound: {write_wav(args.audio_wav, render_timeline(shifted, chimes=settings.chimes))}")
    print(f"recording: {outcome.path}")
    for line in plain_summary(start_end(outcome.summary)):
        print(line)
    print(history_text(relax_history(plan.client_id)))
    print("Today: " + diary_text(todays_diary(plan.client_id)))
    return 0
