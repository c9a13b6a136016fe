"""A headache diary per client: date, intensity 0-10, duration (h, or None: not given, shown as "unknown"), medication.

Stored as ``<home>/clients/<id>/headache-diary.json`` (0600, folder 0700: health data), rewritten
atomically on every change so a crash never leaves half an entry.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

from biofeedback.analysis.compare import AnalysisError
from biofeedback.store.paths import FILE_MODE, data_home, private_dir, validate_client_id
from biofeedback.validate import check_number, check_table, check_type, data_file

DIARY_FILE = "headache-diary.json"
MAX_INTENSITY = 10.0
"""Pain 0 (none) to 10 (worst imaginable)."""
MAX_DURATION_H = 24 * 7.0
"""Longest headache one entry records: a week."""


def diary_path(client_id: str, home: Path | None = None, create: bool = True) -> Path:
    """Where a client's diary lives (the client's folder is created 0700 if needed, unless not ``create``)."""
    folder = (data_home(create) if home is None else Path(home)) / "clients" / validate_client_id(client_id)
    return (private_dir(folder) if create else folder) / DIARY_FILE


def read_diary(client_id: str, home: Path | None = None) -> list[dict]:
    """Entries by date: date (YYYY-MM-DD), intensity (0-10), duration_h, medication, added_utc; a damaged diary is one
    ``StoreError`` line naming the file and the entry. Creates no folder."""
    path = diary_path(client_id, home, create=False)
    if not path.exists():
        return []
    at = data_file(path, "restore it from a backup or move it aside")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"), parse_constant=lambda name: name)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise at.fail("the file", f"cannot be read as JSON ({exc})") from None
    for i, e in enumerate(check_type(entries, list, "the diary", at)):
        check_table(e, f"entry {i}", at, ("date", "intensity", "duration_h"))
        try:
            dt.date.fromisoformat(check_type(e["date"], str, f"entry {i} date", at))
        except ValueError:
            raise at.fail(f"entry {i} date", f"must be YYYY-MM-DD, got {e['date']!r}") from None
        check_number(e["intensity"], f"entry {i} intensity", at, lo=0, hi=MAX_INTENSITY)
        if e["duration_h"] is not None:
            check_number(e["duration_h"], f"entry {i} duration_h", at, lo=0, hi=MAX_DURATION_H, unit="hours")
        check_type(e.get("medication", ""), str, f"entry {i} medication", at)
        check_number(e.get("added_utc", 0), f"entry {i} added_utc", at, lo=0)
    return sorted(entries, key=lambda e: (e["date"], e.get("added_utc", 0)))


def add_entry(client_id: str, intensity: float, duration_h: float | None, medication: str = "", date: str | None = None,
              home: Path | None = None) -> dict:
    """Add one headache to a client's diary and return it; checks the values first. ``duration_h`` None: not known
    (stored as null, never as 0 h)."""
    if not 0 <= intensity <= MAX_INTENSITY:
        raise AnalysisError(f"--intensity must be 0-10 (0 no pain, 10 worst imaginable), got {intensity:g}")
    if duration_h is not None and not 0 <= duration_h <= MAX_DURATION_H:
        raise AnalysisError(f"--duration-h must be hours between 0 and {MAX_DURATION_H:g}, got {duration_h:g}")
    day = dt.date.today() if date is None else _date(date)
    entry = {"date": day.isoformat(), "intensity": float(intensity),
             "duration_h": None if duration_h is None else float(duration_h),
             "medication": medication.strip(), "added_utc": time.time()}
    entries = read_diary(client_id, home) + [entry]
    path = diary_path(client_id, home)
    part = path.with_name(path.name + ".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(entries, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, path)
    return entry


def _date(text: str) -> dt.date:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise AnalysisError(f"--date must be YYYY-MM-DD, got {text!r}") from None
    if day > dt.date.today():
        raise AnalysisError(f"--date {text} is in the future; enter headaches that have happened")
    return day


def duration_text(entry: dict) -> str:
    """An entry's duration as shown: '2.5 h', or 'unknown' when it was not given."""
    return "unknown" if entry.get("duration_h") is None else f"{entry['duration_h']:.1f} h"


def format_diary(entries: list[dict]) -> str:
    if not entries:
        return "no headaches in the diary"
    return "\n".join(f"{e['date']}  intensity {e['intensity']:4.1f}/10  {duration_text(e):>7}  {e['medication'] or '-'}"
                     for e in entries)
