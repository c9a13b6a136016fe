"""The ``biofeedback`` command: the parser, built from light modules only, and the one place errors are shown.

One module per group of commands: ``sensors`` (devices, scan, monitor, replay), ``session`` (session,
calibrate), ``relax`` (relax) and ``records`` (export, sessions, report, trend, diary); ``common`` holds the
argument helpers they share. Every command imports what it needs when it runs, so ``biofeedback --version``
and ``biofeedback devices`` start without numpy's analysis stack, numba, bleak, bumble or Qt.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from biofeedback import __version__
from biofeedback.cli import imports, records, relax, sensors, session, study
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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
