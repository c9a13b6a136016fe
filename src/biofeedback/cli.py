"""The ``biofeedback`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

from biofeedback import __version__
from biofeedback.analysis import commands as analysis_commands
from biofeedback.session.acquisition import Acquisition, LiveNumbers, LiveSummary, acquire, quiet_bumble_logs
from biofeedback.relax import commands as relax_commands
from biofeedback.sensors.ble import scan, system_has_adapter
from biofeedback.sensors.source import SensorError
from biofeedback.sensors.profiles import ProfileError, load_profiles
from biofeedback.sensors.virtual import Faults, HeartScript, Scenario, TensionScript, VirtualWorld
from biofeedback.session import commands as session_commands
from biofeedback.session.commands import resolve_session, use_window
from biofeedback.session.protocol import SessionError
from biofeedback.session.run import replay_plan
from biofeedback.analysis.summary import format_summary, summarize
from biofeedback.store import StoreError


class UsageError(Exception):
    """A wrong argument; the message says what to type instead."""


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{what}: expected comma-separated numbers, got {text!r}") from None


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _add_virtual_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("virtual sensors (used with --virtual, or when no Bluetooth adapter is present)")
    g.add_argument("--virtual", action="store_true", help="use the built-in virtual sensors")
    g.add_argument("--speed", type=_positive, default=1.0, help="run virtual sensors N times faster than real time")
    g.add_argument("--virtual-devices", default="open-emg,polar-h10",
                   help="virtual sensors to power on (profiles: open-emg, polar-h10, hrs-strap)")
    g.add_argument("--virtual-emg-uv", default="40,30", help="scripted EMG RMS left,right in µV")
    g.add_argument("--virtual-hr", type=_positive, default=70.0, help="scripted mean heart rate in bpm")
    g.add_argument("--virtual-disconnect-at", default="", help="device seconds at which sensors drop the link, e.g. 10,25")
    g.add_argument("--virtual-drop-rate", type=float, default=0.0, help="probability a data packet is lost")
    g.add_argument("--virtual-corrupt-rate", type=float, default=0.0, help="probability a data packet is garbage")
    g.add_argument("--virtual-electrode-off", default="", help="start,end device seconds with the left electrode off")
    g.add_argument("--seed", type=int, default=1, help="random seed of the virtual sensors")


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    emg = _floats(args.virtual_emg_uv, "--virtual-emg-uv")
    if len(emg) != 2 or min(emg) < 0:
        raise UsageError("--virtual-emg-uv: give two non-negative amplitudes, left,right (e.g. 40,30)")
    for name in ("virtual_drop_rate", "virtual_corrupt_rate"):
        if not 0.0 <= getattr(args, name) < 1.0:
            raise UsageError(f"--{name.replace('_', '-')}: give a probability between 0 and 1")
    off = _floats(args.virtual_electrode_off, "--virtual-electrode-off")
    if off and (len(off) != 2 or off[1] <= off[0]):
        raise UsageError("--virtual-electrode-off: give start,end with end > start")
    faults = Faults(
        disconnect_at_s=_floats(args.virtual_disconnect_at, "--virtual-disconnect-at"),
        drop_rate=args.virtual_drop_rate,
        corrupt_rate=args.virtual_corrupt_rate,
        electrode_off=[(off[0], off[1], 0)] if off else [],
    )
    devices = tuple(d.strip() for d in args.virtual_devices.split(",") if d.strip())
    return Scenario(devices=devices, tension=TensionScript.constant(*emg), heart=HeartScript.constant(args.virtual_hr),
                    faults={d: faults for d in devices}, seed=args.seed)


def _use_virtual(args: argparse.Namespace) -> bool:
    if args.virtual:
        return True
    if not system_has_adapter():
        print("No Bluetooth adapter found: using the built-in virtual sensors (--virtual).", file=sys.stderr)
        return True
    return False


# --- commands ---------------------------------------------------------------------------------
def cmd_devices(args: argparse.Namespace) -> int:
    profiles = load_profiles()
    for p in profiles.values():
        streams = ", ".join(f"{s.kind} ({s.unit}{', %g Hz' % s.rate_hz if s.rate_hz else ''})" for s in p.streams)
        names = ", ".join(p.name_prefixes) or "any name"
        print(f"{p.name:<10} {p.label}\n           protocols: {', '.join(p.protocols)}; matches: {names}; streams: {streams}")
    return 0


async def _scan(args: argparse.Namespace, virtual: bool) -> int:
    profiles = load_profiles()
    if virtual:
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


async def _monitor(args: argparse.Namespace, virtual: bool) -> int:
    scenario = scenario_from_args(args) if virtual else None
    acquiring = acquire(load_profiles(), virtual=virtual, speed=args.speed, scenario=scenario, replay=args.replay)
    return await _print_live_numbers(acquiring, args.seconds, args.json)


async def _print_live_numbers(acquiring: AbstractAsyncContextManager[Acquisition], seconds: float | None,
                              as_json: bool) -> int:
    """Live numbers once a session second until ``seconds`` (None: Ctrl-C or a replay's end), then the gaps seen."""
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


def cmd_replay(args: argparse.Namespace) -> int:
    """A recorded session in the dashboard, view only (without a display: its live numbers); then its summary."""
    path = resolve_session(args.session, args.client)
    plan = replay_plan(path, args.speed)
    if use_window(args.headless, instead="replaying"):
        _dashboard(plan, load_profiles(), args.theme)
    else:
        asyncio.run(_print_live_numbers(acquire(load_profiles(), speed=plan.speed, replay=plan.replay), None, False))
    print(f"replayed: {path}")
    print(format_summary(summarize(path)))
    print(_verdict(path))
    return 0


def _dashboard(plan, profiles, theme: str) -> str:
    """Run a session in the therapist dashboard (Qt is imported only when a window is wanted)."""
    from biofeedback.ui.app import run_dashboard_session

    return run_dashboard_session(plan, profiles, theme=theme)


def _relax_window(plan, settings, profiles, sham):
    """Run a home session in the relaxation window (Qt is imported only when a window is wanted)."""
    from biofeedback.ui.relax_window import run_relax_window

    return run_relax_window(plan, settings, profiles, sham)


def _ask_window(questions, activity: str, theme: str = "light") -> dict[str, bool] | None:
    """The screening questions in a dialog (Qt is imported only when a window is wanted)."""
    from biofeedback.ui.screening_dialog import ask_in_window

    return ask_in_window(questions, activity, theme)


def _verdict(path) -> str:
    """The before/after verdict in plain words, for the end of a session."""
    from biofeedback.analysis import AnalysisError, compare, load_session

    try:
        result = compare(load_session(path))
    except AnalysisError as exc:
        return f"verdict: not available ({exc})"
    return f"verdict: {result.overall['text']}\nfull report: biofeedback report {path} --html"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="biofeedback", description="Live EMG and HRV biofeedback over Bluetooth LE.")
    parser.add_argument("--version", action="version", version=f"biofeedback {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("devices", help="list the supported sensor profiles (devices/*.toml)").set_defaults(func=cmd_devices)

    p = sub.add_parser("scan", help="scan for supported sensors")
    p.add_argument("--timeout", type=_positive, default=5.0, help="seconds to scan")
    _add_virtual_options(p)
    p.set_defaults(func=lambda a: asyncio.run(_scan(a, _use_virtual(a))))

    p = sub.add_parser("monitor", help="connect to the sensors and print live numbers once a second")
    p.add_argument("--seconds", type=_positive, default=None, help="stop after N session seconds (default: Ctrl-C)")
    p.add_argument("--json", action="store_true", help="print one JSON object per line")
    p.add_argument("--replay", metavar="FILE", default=None,
                   help="play a recorded session (.bfsession) instead of sensors, at its original pace times --speed; "
                        "stops at its end")
    _add_virtual_options(p)
    p.set_defaults(func=lambda a: asyncio.run(_monitor(a, _use_virtual(a) if a.replay is None else a.virtual)))
    p = sub.add_parser("replay", help="play a recorded session in the therapist dashboard, view only")
    p.add_argument("session", help="session file, or 'latest' (of --client if given)")
    p.add_argument("--client", help="with 'latest': that client's newest session")
    p.add_argument("--speed", type=_positive, default=1.0, help="play N times faster than it was recorded")
    p.add_argument("--theme", choices=("light", "dark"), default="light", help="dashboard colours")
    p.add_argument("--headless", action="store_true", help="live numbers in the terminal, no dashboard window")
    p.set_defaults(func=cmd_replay)
    session_commands.add_parsers(sub, _add_virtual_options, scenario_from_args, _use_virtual, _dashboard, _verdict,
                                 _ask_window)
    analysis_commands.add_parsers(sub)
    relax_commands.add_parsers(sub, _add_virtual_options, scenario_from_args, _use_virtual, _relax_window, _ask_window)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UsageError, SensorError, ProfileError, StoreError, SessionError) as exc:
        print(f"biofeedback: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Whoever read our output has gone (e.g. `| head`): stop quietly, as Unix tools do, and keep Python
        # from failing again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
