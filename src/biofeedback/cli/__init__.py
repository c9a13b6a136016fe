"""The ``biofeedback`` command: the parser, built from light modules only, and the one place errors are shown.

One module per group of commands: ``sensors`` (devices, scan, monitor, replay), ``session`` (session,
calibrate), ``relax`` (relax) and ``records`` (export, sessions, report, trend, diary); ``common`` holds the
argument helpers they share. ``home`` (and no command at all on a desktop) opens the home window. Every command imports what it needs when it runs, so ``biofeedback --version``
and ``biofeedback devices`` start without numpy's analysis stack, numba, bleak, bumble or Qt.
"""

from __future__ import annotations

import argparse
import codecs
import os
import sys
from collections.abc import Sequence

from biofeedback import __version__
from biofeedback.cli import imports, records, relax, sensors, session, study
from biofeedback.cli.common import has_display
from biofeedback.errors import BiofeedbackError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="biofeedback", description="Live EMG and HRV biofeedback over Bluetooth LE.")
    parser.add_argument("--version", action="version", version=f"biofeedback {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sensors.add_parsers(sub)
    session.add_parsers(sub)
    records.add_parsers(sub)
    relax.add_parsers(sub)
    study.add_parsers(sub)
    imports.add_parsers(sub)
    add_home_parser(sub)
    return parser


def add_home_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("home", help="open the home window: clients, sessions, calibration, relaxation, reports, replay "
                                    "(also what `biofeedback` with no arguments opens on a desktop)")
    p.add_argument("--theme", choices=("light", "dark"), default="light", help="window colours")
    p.add_argument("--install-desktop", action="store_true",
                   help="install the launcher (.desktop file and icon) in your desktop's menu, then exit")
    p.set_defaults(func=cmd_home)


def cmd_home(args: argparse.Namespace) -> int:
    """The home window; its Qt platform's system libraries are checked first (one line naming what to install)."""
    if args.install_desktop:
        from biofeedback.ui.desktop import install_desktop_entry

        for path in install_desktop_entry():
            print(f"installed {path}")
        return 0
    from biofeedback.ui.qtcheck import check_qt_platform

    check_qt_platform()
    from biofeedback.ui.home import run_home

    return run_home(args.theme)


PLAIN = {"µ": "u", "×": "x", "−": "-", "–": "-", "—": "-", "…": "...", "≥": ">=", "≤": "<=", "±": "+/-", "√": "sqrt ",
         "°": " deg", "·": "."}
"""What the output shows for a character it cannot encode (an ASCII-only console): 'uV' for 'µV', never a crash."""


def _plain(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    return "".join(PLAIN.get(ch, "?") for ch in exc.object[exc.start:exc.end]), exc.end


codecs.register_error("biofeedback-plain", _plain)


def _plain_where_needed() -> None:
    """Standard output and error write a plain stand-in (``PLAIN``) for what their encoding cannot carry, instead of
    raising UnicodeEncodeError in the middle of a session's summary."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="biofeedback-plain")


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    _plain_where_needed()
    if not argv and has_display():  # started from a desktop, or typed with no command: the home window
        argv = ["home"]
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BiofeedbackError as exc:
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


def gui_main() -> int:
    """The ``biofeedback-app`` launcher (a gui-script: no console window on Windows): the home window."""
    return main(["home"])
