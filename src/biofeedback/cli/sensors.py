"""The sensor commands: ``devices``, ``scan``, ``monitor`` (live numbers in the terminal) and ``replay``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from biofeedback.cli.common import add_virtual_options, dashboard, positive, resolve_session, scenario_from_args, \
    use_virtual, use_window

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from biofeedback.session.acquisition import Acquisition, LiveNumbers


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``devices``, ``scan``, ``monitor`` and ``replay``."""
    sub.add_parser("devices", help="list the supported sensor profiles (devices/*.toml)").set_defaults(func=cmd_devices)

    p = sub.add_parser("scan", help="scan for supported sensors")
    p.add_argument("--timeout", type=positive, default=5.0, help="seconds to scan")
    add_virtual_options(p)
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("monitor", help="connect to the sensors and print live numbers once a second")
    p.add_argument("--seconds", type=positive, default=None, help="stop after N session seconds (default: Ctrl-C)")
    p.add_argument("--json", action="store_true", help="print one JSON object per line")
    p.add_argument("--replay", metavar="FILE", default=None,
                   help="play a recorded session (.bfsession) instead of sensors, at its original pace times --speed; "
                        "stops at its end")
    add_virtual_options(p)
    p.set_defaults(func=cmd_monitor)

    p = sub.add_parser("replay", help="play a recorded session in the therapist dashboard, view only")
    p.add_argument("session", help="session file, or 'latest' (of --client if given)")
    p.add_argument("--client", help="with 'latest': that client's newest session")
    p.add_argument("--speed", type=positive, default=1.0, help="play N times faster than it was recorded")
    p.add_argument("--theme", choices=("light", "dark"), default="light", help="dashboard colours")
    p.add_argument("--headless", action="store_true", help="live numbers in the terminal, no dashboard window")
    p.set_defaults(func=cmd_replay)


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
        print(f"{f.device.name or '(no name)':<20} {f.profile.name:<10} rssi {f.advertisement.rssi:>4} dBm"
              f"{'  [virtual]' if virtual else ''}")
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    import asyncio
    from biofeedback.sensors.profiles import load_profiles
    from biofeedback.session.acquisition import acquire

    virtual = use_virtual(args) if args.replay is None else args.virtual
    scenario = scenario_from_args(args) if virtual else None
    acquiring = acquire(load_profiles(), virtual=virtual, speed=args.speed, scenario=scenario, replay=args.replay)
    return asyncio.run(_print_live_numbers(acquiring, args.seconds, args.json))


def cmd_replay(args: argparse.Namespace) -> int:
    """A recorded session in the dashboard, view only (without a display: its live numbers); then its summary."""
    import asyncio
    from biofeedback.analysis.summary import session_outcome
    from biofeedback.sensors.profiles import load_profiles
    from biofeedback.session.acquisition import acquire
    from biofeedback.session.run import replay_plan

    path = resolve_session(args.session, args.client)
    plan = replay_plan(path, args.speed)
    if use_window(args.headless, instead="replaying"):
        dashboard(plan, load_profiles(), args.theme)
    else:
        asyncio.run(_print_live_numbers(acquire(load_profiles(), speed=plan.speed, replay=plan.replay), None, False))
    print(f"replayed: {path}")
    print(session_outcome(path).text())
    return 0


def _format_line(n: LiveNumbers) -> str:
    hr = "  --" if n.hr_bpm is None else f"{n.hr_bpm:4.0f}"
    rmssd = "  --" if n.rmssd_ms is None else f"{n.rmssd_ms:5.1f}"
    emg = " ".join(f"{k.split('_')[0][:1].upper()} {v:6.1f}" for k, v in n.emg_rms_uv.items()) or "--"
    health = "; ".join(
        f"{name}: {s['state']} {s['packets']} pkt {s['gaps']} gaps {s['reconnects']} reconn"
        + (f" {s['decode_errors']} bad" if s["decode_errors"] else "")
        for name, s in n.sensors.items()
    )
    line = f"{n.t_s:7.1f} s  HR {hr} bpm  RR {n.rr_count:5d}  RMSSD {rmssd} ms  EMG RMS µV {emg}  | {health}"
    for g in n.new_gaps:
        line += f"\n          gap: {g.stream} from {g.source}, {g.length_s:.2f} s at {g.start_s:.1f} s ({g.reason})"
    return line


async def _print_live_numbers(acquiring: AbstractAsyncContextManager[Acquisition], seconds: float | None,
                              as_json: bool) -> int:
    """Live numbers once a session second until ``seconds`` (None: Ctrl-C or a replay's end), then the gaps seen."""
    import asyncio
    from biofeedback.session.acquisition import LiveSummary

    async with acquiring as acq:
        summary = LiveSummary(acq)
        all_gaps = []
        tick = 1
        while seconds is None or tick <= seconds:
            await asyncio.wait(acq.tasks, timeout=max(0.0, acq.clock.wall_seconds(tick - acq.clock.now_s())))
            failed = acq.failed()
            if failed and len(failed) == len(acq.tasks):
                raise failed[0]
            ended = acq.ended()  # before the numbers, so the last line shows every source's final state
            numbers = summary.numbers()
            all_gaps.extend(numbers.new_gaps)
            print(json.dumps(numbers.as_dict()) if as_json else _format_line(numbers), flush=True)
            if ended:
                break
            tick += 1
        final = summary.numbers()
    all_gaps.extend(final.new_gaps)
    if not as_json:
        total = sum(g.length_s for g in all_gaps)
        print(f"done: {len(all_gaps)} gaps, {total:.2f} s without data"
              + "".join(f"\n  {g.stream}/{g.source}: {g.start_s:.2f}-{g.end_s:.2f} s ({g.length_s:.2f} s, {g.reason})" for g in all_gaps))
    for err in acq.failed():
        print(f"warning: {err}", file=sys.stderr)
    return 0
