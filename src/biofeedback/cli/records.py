"""Commands on what has been recorded: ``report``, ``trend``, ``diary``, ``export`` and ``sessions``."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from biofeedback.cli.common import FORMATS, number, resolve_session, shift_days
from biofeedback.errors import UsageError


def _progress(text: str) -> None:
    print(f"... {text}", file=sys.stderr, flush=True)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``export``, ``sessions``, ``report``, ``trend`` and ``diary``."""
    p = sub.add_parser("export", help="export a recorded session to EDF+, CSV, BIDS-style physio or HDF5")
    p.add_argument("session", nargs="?", default="latest", help="session file, or 'latest' (default; of --client if given)")
    p.add_argument("--client", help="with 'latest': that client's newest session")
    p.add_argument("--format", required=True, help=f"one of {', '.join(FORMATS)}")
    p.add_argument("--out", type=pathlib.Path,
                   help="output folder (default: <session name>-<format> in the client's reports folder in the data "
                        "folder, its date shifted with --shift-days)")
    p.add_argument("--shift-days", type=shift_days, default=0, help="shift every date by N days (anonymity)")
    p.add_argument("--bids-authors", action="append", default=[], metavar="NAME",
                   help="bids: an author of the dataset (repeat for each; default: none, the validator warns, and "
                        "an earlier export's authors in the same folder are kept)")
    p.add_argument("--bids-license", default=None, metavar="SPDX",
                   help="bids: the dataset's licence as an SPDX identifier, e.g. CC-BY-4.0 (default: Non-Standard, "
                        "not openly licensed)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("sessions", help="list recorded sessions")
    p.add_argument("--client", help="only this client's sessions")
    p.set_defaults(func=cmd_sessions)

    p = sub.add_parser("report", help="before/after report of a session: verdict, statistics, plots (HTML, PDF, JSON)")
    p.add_argument("session", nargs="?", default="latest", help="session file, or 'latest' (default; of --client if given)")
    p.add_argument("--client", help="with 'latest': that client's newest session")
    p.add_argument("--html", action="store_true", help="write a self-contained HTML report")
    p.add_argument("--pdf", action="store_true", help="write a PDF report")
    p.add_argument("--json", action="store_true", help="write a JSON summary with every number and its CI")
    p.add_argument("--out", type=pathlib.Path, help="output folder (default: the client's reports folder in the data folder)")
    p.add_argument("--compare", nargs=2, metavar=("PHASE_A", "PHASE_B"),
                   help="phases to compare (default: baseline rest and post-treatment rest)")
    p.add_argument("--shift-days", type=shift_days, default=0,
                   help="shift every date in the written reports by N days, file names included (anonymity)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("trend", help="one client's sessions over time, beside the headache diary")
    p.add_argument("--client", required=True, help="pseudonymous client ID, e.g. C001")
    p.add_argument("--html", action="store_true", help="write a self-contained HTML trend report")
    p.add_argument("--json", action="store_true", help="write the trend as JSON")
    p.add_argument("--out", type=pathlib.Path, help="output folder (default: the client's reports folder in the data folder)")
    p.add_argument("--shift-days", type=shift_days, default=0,
                   help="shift every date in the written trend by N days, the diary's included (anonymity)")
    p.set_defaults(func=cmd_trend)

    p = sub.add_parser("diary", help="a client's headache diary: add an entry or list them")
    p.add_argument("--client", required=True, help="pseudonymous client ID, e.g. C001")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("add", help="add a headache")
    a.add_argument("--intensity", type=number, required=True, help="pain 0-10 (0 none, 10 worst imaginable)")
    a.add_argument("--duration-h", type=number, help="how long it lasted, hours (default: unknown)")
    a.add_argument("--medication", default="", help="medication taken, e.g. ibuprofen 400 mg (default: none)")
    a.add_argument("--date", help="YYYY-MM-DD (default: today)")
    actions.add_parser("list", help="list the diary")
    p.set_defaults(func=cmd_diary)


def cmd_report(args: argparse.Namespace) -> int:
    from biofeedback.analysis.compare import compare
    from biofeedback.analysis.data import load_session
    from biofeedback.analysis.report import pdf_engine, write_report
    from biofeedback.store.paths import client_output_dir

    if args.pdf:
        pdf_engine()  # a missing system library is said before minutes of analysis
    path = resolve_session(args.session, args.client)
    data = load_session(path, progress=_progress)
    a, b = args.compare or (None, None)
    comparison = compare(data, a, b, progress=_progress)
    print(comparison.overall["text"])
    for note in comparison.notes:
        print(f"  not compared: {note}")
    if args.html or args.pdf or args.json:
        out = args.out or client_output_dir(data.meta.get("client_id"))
        for w in write_report(data, comparison, out, args.html, args.pdf, args.json, progress=_progress,
                              shift_days=args.shift_days):
            print(f"wrote {w}")
    return 0


def cmd_trend(args: argparse.Namespace) -> int:
    from biofeedback.analysis.diary import read_diary
    from biofeedback.analysis.trend import format_trend, session_trend, write_trend
    from biofeedback.store import validate_client_id
    from biofeedback.store.paths import client_output_dir

    client = validate_client_id(args.client)
    rows = session_trend(client, progress=_progress)
    diary = read_diary(client)
    if not rows:
        print(f"no sessions recorded for client {client}")
    print(format_trend(rows, diary))
    if args.html or args.json:
        out = args.out or client_output_dir(client)
        for w in write_trend(client, rows, diary, out, args.html, args.json, shift_days=args.shift_days):
            print(f"wrote {w}")
    return 0


def cmd_diary(args: argparse.Namespace) -> int:
    from biofeedback.analysis.diary import add_entry, format_diary, read_diary
    from biofeedback.store import validate_client_id

    client = validate_client_id(args.client)
    if args.action == "add":
        entry = add_entry(client, args.intensity, args.duration_h, args.medication, args.date)
        print(f"added: {json.dumps({k: v for k, v in entry.items() if k != 'added_utc'})}")
        return 0
    print(format_diary(read_diary(client)))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    fmt = args.format.lower()
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {args.format!r}; choose one of {', '.join(FORMATS)}")
    from biofeedback.store.export import DEFAULT_BIDS_LICENSE, BidsDataset, export_session

    path = resolve_session(args.session, args.client)
    from biofeedback.store import SessionReader
    from biofeedback.store.paths import client_output_dir, shift_dates

    if args.out is None:
        with SessionReader(path) as reader:
            client = reader.meta.get("client_id")
    out = args.out or client_output_dir(client) / f"{shift_dates(path.stem, args.shift_days)}-{fmt}"  # named by its start
    bids = BidsDataset(tuple(args.bids_authors), args.bids_license or DEFAULT_BIDS_LICENSE)
    written = export_session(path, fmt, out, shift_days=args.shift_days, bids=bids,
                             warn=lambda line: print(f"biofeedback: warning: {line}", file=sys.stderr))
    print(f"exported {path.name} as {fmt} to {out}:")
    for w in written:
        print(f"  {w}")
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    from biofeedback.store import list_sessions, validate_client_id

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
        state = s.get("state") or ("complete" if s["complete"] else "cut short")
        print(f"{s['client_id']:<10} {s['started'] or '?':<20} {dur:>7}  {s['protocol'] or '-':<16} {state:<10} {s['path']}")
        if state == "cut short":
            print(f"{'':<10} cut short: not closed properly (killed, crashed or power lost); what was saved is kept")
    return 0
