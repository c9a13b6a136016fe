"""The ``import`` command: a recording made elsewhere becomes a session file (``store.import_session``).

Light at import time, as every command module: the readers (numpy, h5py, edfio) load when the command runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import pathlib

from biofeedback.errors import UsageError

IMPORT_FORMATS = ("csv", "opensignals", "plux-h5", "biosppy", "polar", "edf")
"""``biofeedback.store.importers.IMPORT_FORMATS`` (restated: that module imports numpy)."""
ADC_FAMILIES = ("plux", "bitalino")
"""``biofeedback.store.importers.ADC_FAMILIES``."""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``import``."""
    p = sub.add_parser("import", help="turn a recording made elsewhere (CSV, OpenSignals, PLUX HDF5, BioSPPy, "
                                      "Polar Sensor Logger, EDF+) into a session file; layouts in docs/import.md")
    p.add_argument("file", type=pathlib.Path, help="the recording to import")
    p.add_argument("--client", required=True, help="pseudonymous client ID, e.g. C001")
    p.add_argument("--format", default="auto", choices=("auto", *IMPORT_FORMATS),
                   help="the file's format (default: auto, from its first bytes)")
    p.add_argument("--phases", type=pathlib.Path,
                   help="CSV of phases (name,start_s,end_s[,kind]) in the recording's seconds; replaces the file's own")
    p.add_argument("--adc", choices=ADC_FAMILIES,
                   help="whose documented transfer function turns ADC counts into µV, when the file does not name "
                        "its device (BioSPPy text); overrides the device a file names")
    p.add_argument("--start", help="the recording's start, ISO 8601 (UTC unless it says a zone), when the file "
                                   "has none or a wrong one (default: the file's own, else its modification time)")
    p.set_defaults(func=cmd_import)


def _start_utc(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--start: {text!r} is not an ISO 8601 date-time; write e.g. 2024-05-01T09:30:00") from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).timestamp()


def cmd_import(args: argparse.Namespace) -> int:
    from biofeedback.store.import_session import import_recording

    path, rec = import_recording(args.file, args.client, args.format, args.phases, args.adc, _start_utc(args.start))
    print(f"imported {args.file.name} ({rec.format}) for client {args.client} as {path}")
    for s in rec.signals:
        span = s.t_s[-1] - s.t_s[0] + 1 / s.rate_hz
        print(f"  {s.stream}: {len(s.channels)} channel{'s' if len(s.channels) > 1 else ''} "
              f"({', '.join(s.channels)}) at {s.rate_hz:g} Hz, {span:.1f} s, µV")
    if rec.rr_ms.size:
        print(f"  rr: {rec.rr_ms.size} beats")
    if rec.hr_bpm.size:
        print(f"  hr: {rec.hr_bpm.size} values")
    if rec.phases:
        print("  phases: " + ", ".join(f"{p.name} ({p.kind}, {p.start_s:g}-{p.end_s:g} s)" for p in rec.phases))
    else:
        print("  no phases: pass --phases FILE to compare phases in `biofeedback report`")
    for note in (rec.details.get("channels_left_out"), rec.details.get("signals_left_out")):
        if note:
            print(f"  left out (not EMG or ECG): {', '.join(note)}")
    return 0
