"""The ``report``, ``trend`` and ``diary`` subcommands (added to ``biofeedback.cli``'s parser)."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Callable

from biofeedback.analysis.compare import AnalysisError, compare
from biofeedback.analysis.data import load_session
from biofeedback.analysis.diary import add_entry, format_diary, read_diary
from biofeedback.analysis.report import write_report
from biofeedback.analysis.trend import format_trend, session_trend, write_trend
from biofeedback.session.commands import resolve_session
from biofeedback.store import validate_client_id


def _progress(text: str) -> None:
    print(f"... {text}", file=sys.stderr, flush=True)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Print an ``AnalysisError`` as one line and exit with status 2, as the cli does for its own errors."""
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except AnalysisError as exc:
            print(f"biofeedback: error: {exc}", file=sys.stderr)
            return 2
    return run


def add_parsers(sub) -> None:
    """Add ``report``, ``trend`` and ``diary``."""
    p = sub.add_parser("report", help="before/after report of a session: verdict, statistics, plots (HTML, PDF, JSON)")
    p.add_argument("session", nargs="?", default="latest", help="session file, or 'latest' (default; of --client if given)")
    p.add_argument("--client", help="with 'latest': that client's newest session")
    p.add_argument("--html", action="store_true", help="write a self-contained HTML report")
    p.add_argument("--pdf", action="store_true", help="write a PDF report")
    p.add_argument("--json", action="store_true", help="write a JSON summary with every number and its CI")
    p.add_argument("--out", type=pathlib.Path, help="output folder (default: ./reports)")
    p.add_argument("--compare", nargs=2, metavar=("PHASE_A", "PHASE_B"),
                   help="phases to compare (default: baseline rest and post-treatment rest)")
    p.set_defaults(func=_guarded(cmd_report))

    p = sub.add_parser("trend", help="one client's sessions over time, beside the headache diary")
    p.add_argument("--client", required=True, help="pseudonymous client ID, e.g. C001")
    p.add_argument("--html", action="store_true", help="write a self-contained HTML trend report")
    p.add_argument("--json", action="store_true", help="write the trend as JSON")
    p.add_argument("--out", type=pathlib.Path, help="output folder (default: ./reports)")
    p.set_defaults(func=_guarded(cmd_trend))

    p = sub.add_parser("diary", help="a client's headache diary: add an entry or list them")
    p.add_argument("--client", required=True, help="pseudonymous client ID, e.g. C001")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("add", help="add a headache")
    a.add_argument("--intensity", type=_number, required=True, help="pain 0-10 (0 none, 10 worst imaginable)")
    a.add_argument("--duration-h", type=_number, required=True, help="how long it lasted, hours")
    a.add_argument("--medication", default="", help="medication taken, e.g. ibuprofen 400 mg (default: none)")
    a.add_argument("--date", help="YYYY-MM-DD (default: today)")
    actions.add_parser("list", help="list the diary")
    p.set_defaults(func=_guarded(cmd_diary))


def cmd_report(args: argparse.Namespace) -> int:
    path = resolve_session(args.session, args.client)
    data = load_session(path, progress=_progress)
    a, b = args.compare or (None, None)
    comparison = compare(data, a, b, progress=_progress)
    print(comparison.overall["text"])
    for note in comparison.notes:
        print(f"  not compared: {note}")
    if args.html or args.pdf or args.json:
        out = args.out or pathlib.Path.cwd() / "reports"
        for w in write_report(data, comparison, out, args.html, args.pdf, args.json, progress=_progress):
            print(f"wrote {w}")
    return 0


def cmd_trend(args: argparse.Namespace) -> int:
    client = validate_client_id(args.client)
    rows = session_trend(client, progress=_progress)
    diary = read_diary(client)
    if not rows:
        print(f"no sessions recorded for client {client}")
    print(format_trend(rows, diary))
    if args.html or args.json:
        out = args.out or pathlib.Path.cwd() / "reports"
        for w in write_trend(client, rows, diary, out, args.html, args.json):
            print(f"wrote {w}")
    return 0


def cmd_diary(args: argparse.Namespace) -> int:
    client = validate_client_id(args.client)
    if args.action == "add":
        entry = add_entry(client, args.intensity, args.duration_h, args.medication, args.date)
        print(f"added: {json.dumps({k: v for k, v in entry.items() if k != 'added_utc'})}")
        return 0
    print(format_diary(read_diary(client)))
    return 0
