"""Argument helpers every command group shares: number parsers, the virtual-sensor options and their scenario,
the choice between a window and the terminal, and which recorded session a command means.

Light on purpose: the parser is built from this module, so it imports nothing heavy at module level (no numpy,
no bleak, no Qt); what a command needs is imported when the command runs.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from typing import TYPE_CHECKING

from biofeedback.errors import UsageError
from biofeedback.validate import EMG_RANGE_UV, HR_RANGE_BPM, MAX_DURATION_S, SEED_RANGE, SHIFT_DAYS_RANGE, SPEED_RANGE, \
    check_number, parser_type

if TYPE_CHECKING:
    from biofeedback.sensors.virtual import Scenario

# Restated from modules too heavy to import while the parser is built (each imports numpy through the store);
# tests/test_cli.py checks that they equal the originals.
ALL_CLEAR = "all-clear"
"""``biofeedback.session.screening.ALL_CLEAR``: the screening answer "consent given, no contraindication"."""
FORMATS = ("edf", "csv", "bids", "hdf5")
"""``biofeedback.store.FORMATS``: the export formats."""
HOME_PROTOCOL = "home-relaxation"
"""``biofeedback.relax.engine.HOME_PROTOCOL``: the protocol of a home relaxation."""
DEFAULT_MINUTES = 10.0
"""``biofeedback.relax.engine.DEFAULT_MINUTES``: length of a home relaxation with the default protocol."""


def floats(text: str, what: str, lo: float | None = None, hi: float | None = None) -> list[float]:
    """Comma-separated finite numbers, each within [lo, hi]; ``what`` names the option in the error."""
    values = [v for v in text.split(",") if v.strip()]
    try:
        return [check_number(v.strip(), what, lo=lo, hi=hi) for v in values]
    except UsageError:
        limits = f", each from {lo:g} to {hi:g}" if lo is not None and hi is not None else ""
        raise UsageError(f"{what}: expected comma-separated numbers{limits}, got {text!r}") from None


def number(text: str) -> float:
    """An argparse type: any number (NaN and infinity included; the command checks the range)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


speed = parser_type(check_number, lo=SPEED_RANGE[0], hi=SPEED_RANGE[1])
"""An argparse type: ``--speed``, times real time, within ``validate.SPEED_RANGE``."""
seed = parser_type(check_number, lo=SEED_RANGE[0], hi=SEED_RANGE[1], integer=True)
"""An argparse type: ``--seed``, within ``validate.SEED_RANGE``."""
shift_days = parser_type(check_number, lo=SHIFT_DAYS_RANGE[0], hi=SHIFT_DAYS_RANGE[1], integer=True, unit="days")
"""An argparse type: ``--shift-days``, within ``validate.SHIFT_DAYS_RANGE`` (100 years either way)."""
seconds = parser_type(check_number, lo=0, lo_open=True, hi=MAX_DURATION_S, unit="seconds")
"""An argparse type: a duration above 0 and at most ``validate.MAX_DURATION_S``."""
heart_rate = parser_type(check_number, lo=HR_RANGE_BPM[0], hi=HR_RANGE_BPM[1], unit="beats per minute")
"""An argparse type: a scripted heart rate within ``validate.HR_RANGE_BPM``."""


def add_virtual_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("virtual sensors (used with --virtual, or when no Bluetooth adapter is present)")
    g.add_argument("--virtual", action="store_true", help="use the built-in virtual sensors")
    g.add_argument("--speed", type=speed, default=1.0,
                   help=f"run virtual sensors N times faster than real time ({SPEED_RANGE[0]:g}-{SPEED_RANGE[1]:g})")
    g.add_argument("--virtual-devices", default="open-emg,polar-h10",
                   help="virtual sensors to power on (profiles: open-emg, polar-h10, hrs-strap, ganglion, bitalino, "
                        "polar-verity or verity)")
    g.add_argument("--virtual-emg-uv", default="40,30", help="scripted EMG RMS left,right in µV")
    g.add_argument("--virtual-hr", type=heart_rate, default=70.0, help="scripted mean heart rate in bpm")
    g.add_argument("--virtual-disconnect-at", default="", help="device seconds at which sensors drop the link, e.g. 10,25")
    g.add_argument("--virtual-drop-rate", type=number, default=0.0, help="probability a data packet is lost")
    g.add_argument("--virtual-corrupt-rate", type=number, default=0.0, help="probability a data packet is garbage")
    g.add_argument("--virtual-electrode-off", default="", help="start,end device seconds with the left electrode off")
    g.add_argument("--seed", type=seed, default=1, help=f"random seed of the virtual sensors (0-{SEED_RANGE[1]})")
    g.add_argument("--virtual-body", choices=("realistic", "clean"), default="realistic",
                   help="realistic: the EMG carries a noise floor, the heart's ECG, mains hum, drift, bursts and "
                        "motion as real electrodes do; clean: the scripted muscle activity alone")


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    """The virtual sensors' script and faults from the ``--virtual-*`` options."""
    from biofeedback.sensors.virtual import EmgBody, Faults, HeartScript, Scenario, TensionScript

    emg = floats(args.virtual_emg_uv, "--virtual-emg-uv", *EMG_RANGE_UV)
    if len(emg) != 2:
        raise UsageError("--virtual-emg-uv: give two non-negative amplitudes, left,right (e.g. 40,30)")
    for name in ("virtual_drop_rate", "virtual_corrupt_rate"):
        if not 0.0 <= getattr(args, name) < 1.0:
            raise UsageError(f"--{name.replace('_', '-')}: give a probability between 0 and 1")
    off = floats(args.virtual_electrode_off, "--virtual-electrode-off", 0.0, MAX_DURATION_S)
    if off and (len(off) != 2 or off[1] <= off[0]):
        raise UsageError("--virtual-electrode-off: give start,end with end > start")
    faults = Faults(
        disconnect_at_s=floats(args.virtual_disconnect_at, "--virtual-disconnect-at", 0.0, MAX_DURATION_S),
        drop_rate=args.virtual_drop_rate,
        corrupt_rate=args.virtual_corrupt_rate,
        electrode_off=[(off[0], off[1], 0)] if off else [],
    )
    devices = tuple(d.strip() for d in args.virtual_devices.split(",") if d.strip())
    return Scenario(devices=devices, tension=TensionScript.constant(*emg), heart=HeartScript.constant(args.virtual_hr),
                    faults={d: faults for d in devices}, seed=args.seed,
                    body=EmgBody.clean() if args.virtual_body == "clean" else EmgBody())


def use_virtual(args: argparse.Namespace) -> bool:
    """``--virtual``, or no Bluetooth adapter on this machine (then says so)."""
    if args.virtual:
        return True
    from biofeedback.sensors.ble import system_has_adapter

    if not system_has_adapter():
        print("No Bluetooth adapter found: using the built-in virtual sensors (--virtual).", file=sys.stderr)
        return True
    return False


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


def dashboard(plan, profiles, theme: str, lsl: bool = False):
    """Run a session (or a replay) in the therapist dashboard; returns its outcome."""
    from biofeedback.ui.app import run_dashboard_session

    return run_dashboard_session(plan, profiles, theme=theme, lsl=lsl)


def add_lsl_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lsl", action="store_true",
                   help="stream live over Lab Streaming Layer (raw EMG, ECG, RR, tension, HRV and the session's events) "
                        "for LabRecorder and other lab tools; a network listener, so off unless asked")


def ask_window(questions, activity: str, theme: str = "light") -> dict[str, bool] | None:
    """The screening questions in a dialog."""
    from biofeedback.ui.screening_dialog import ask_in_window

    return ask_in_window(questions, activity, theme)


def resolve_session(spec: str, client: str | None) -> pathlib.Path:
    """A session file from a path, or ``latest`` (of ``client`` if given)."""
    if spec != "latest":
        return pathlib.Path(spec)
    from biofeedback.store import list_sessions, validate_client_id

    if client is not None:
        validate_client_id(client)
    sessions = [s for s in list_sessions(client) if s["error"] is None]
    if not sessions:
        raise UsageError("no readable recorded session" + (f" for client {client}" if client else "")
                         + "; record one with `biofeedback session` or pass a session file")
    return pathlib.Path(sessions[-1]["path"])
