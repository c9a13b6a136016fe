"""The sensor commands: ``devices``, ``scan``, ``monitor`` (live numbers in the terminal) and ``replay``."""

from __future__ import annotations

import argparse
import sys

from biofeedback.cli.common import add_lsl_option, add_virtual_options, dashboard, resolve_session, scenario_from_args, seconds, speed, \
    use_virtual, use_window


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``devices``, ``scan``, ``monitor`` and ``replay``."""
    sub.add_parser("devices", help="list the supported sensor profiles (devices/*.toml)").set_defaults(func=cmd_devices)

    p = sub.add_parser("scan", help="scan for supported sensors")
    p.add_argument("--timeout", type=seconds, default=5.0, help="seconds to scan")
    add_virtual_options(p)
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("monitor", help="connect to the sensors and print live numbers once a second")
    p.add_argument("--seconds", type=seconds, default=None, help="stop after N session seconds (default: Ctrl-C)")
    p.add_argument("--json", action="store_true", help="print one JSON object per line")
    p.add_argument("--replay", metavar="FILE", default=None,
                   help="play a recorded session (.bfsession) instead of sensors, at its original pace times --speed; "
                        "stops at its end")
    add_lsl_option(p)
    add_virtual_options(p)
    p.set_defaults(func=cmd_monitor)

    p = sub.add_parser("replay", help="play a recorded session in the therapist dashboard, view only")
    p.add_argument("session", help="session file, or 'latest' (of --client if given)")
    p.add_argument("--client", help="with 'latest': that client's newest session")
    p.add_argument("--speed", type=speed, default=1.0, help="play N times faster than it was recorded")
    p.add_argument("--theme", choices=("light", "dark"), default="light", help="dashboard colours")
    p.add_argument("--headless", action="store_true", help="live numbers in the terminal, no dashboard window")
    p.set_defaults(func=cmd_replay)


def say_damage(path) -> None:
    """Read the recorded session at ``path`` through once: a damaged file fails here with one line, before anything
    plays; damaged rows that will be left out are said on stderr."""
    from biofeedback.store import SessionReader

    with SessionReader(path) as reader:
        reader.meta
        for problem in reader.check():
            print(f"biofeedback: warning: {problem}", file=sys.stderr)


def cmd_devices(args: argparse.Namespace) -> int:
    from biofeedback.sensors.profiles import load_profiles

    for p in load_profiles().values():
        streams = ", ".join(f"{s.kind} ({s.unit}{', %g Hz' % s.rate_hz if s.rate_hz else ''})" for s in p.streams)
        names = ", ".join(p.name_prefixes) or "any name"
        print(f"{p.name:<10} {p.label}\n           protocols: {', '.join(p.protocols)}; matches: {names}; streams: {streams}")
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    import asyncio

    return asyncio.run(_scan(args, use_virtual(args)))


async def _scan(args: argparse.Namespace, virtual: bool) -> int:
    from biofeedback.sensors.ble import scan
    from biofeedback.sensors.profiles import load_profiles

    profiles = load_profiles()
    if virtual:
        from biofeedback.sensors.virtual import VirtualWorld
        from biofeedback.session.acquisition import quiet_bumble_logs

        quiet_bumble_logs()
        async with VirtualWorld(scenario_from_args(args), speed=args.speed, profiles=profiles) as world:
            found = await scan(profiles.values(), world.backend, 0.3)
    else:
        from biofeedback.sensors.ble import BleBackend

        found = await scan(profiles.values(), BleBackend(), args.timeout)
    if not found:
        print("No sensors found. Switch them on and wear them (straps sleep without skin contact).")
        return 1
    for f in found:
        carries = ", ".join(f"{s.kind} {s.rate_hz:g} Hz" if s.rate_hz else s.kind for s in f.profile.streams)
        print(f"{f.device.name or '(no name)':<20} {f.profile.name:<13} rssi {f.advertisement.rssi:>4} dBm"
              f"{'  [virtual]' if virtual else ''}  {f.profile.label}: {carries}")
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from biofeedback.cli.terminal import monitor
    from biofeedback.sensors.profiles import load_profiles
    from biofeedback.session.runner import SessionPlan

    virtual = use_virtual(args) if args.replay is None else args.virtual
    scenario = scenario_from_args(args) if virtual else None
    replay = None if args.replay is None else Path(args.replay)
    if replay is not None:
        say_damage(replay)
    plan = SessionPlan("", None, virtual, args.speed, False, scenario, {}, None, replay=replay)
    return asyncio.run(monitor(plan, load_profiles(), args.seconds, args.json, lsl=args.lsl))


def cmd_replay(args: argparse.Namespace) -> int:
    """A recorded session in the dashboard, view only (without a display: its live numbers); then its summary."""
    import asyncio

    from biofeedback.analysis.summary import session_outcome
    from biofeedback.cli.terminal import monitor
    from biofeedback.sensors.profiles import load_profiles
    from biofeedback.session.runner import replay_plan

    path = resolve_session(args.session, args.client)
    say_damage(path)
    plan = replay_plan(path, args.speed)
    if use_window(args.headless, instead="replaying"):
        outcome = dashboard(plan, load_profiles(), args.theme)
    else:
        asyncio.run(monitor(plan, load_profiles(), None, False))
        outcome = session_outcome(path)
    print(f"replayed: {path}")
    print(outcome.text())
    return 0
