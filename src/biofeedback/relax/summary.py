"""The end of a home session: a plain-language summary, the history of past home sessions, today's diary.

Start and end values come from ``analysis.summary.summarize`` of the loaded session (the same numbers,
exclusions and least-clean-data rule as a clinic session's summary and verdict): the first phase
(resting baseline) against the last one (closing rest). Tension is given only where every side has
enough clean EMG. The history of home sessions is cached per client in
``clients/<id>/relax-history.json`` (0600), keyed by session file, so the summary screen does not
re-process every past recording.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from pathlib import Path

from biofeedback.analysis.data import SessionData
from biofeedback.analysis.diary import duration_text, read_diary
from biofeedback.analysis.summary import summarize
from biofeedback.store import SessionReader, StoreError, list_sessions
from biofeedback.store.paths import FILE_MODE, data_home, private_dir, validate_client_id

HISTORY_FILE = "relax-history.json"


def _mean(values) -> float:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else math.nan


def start_end(data: SessionData | str | Path | list[dict]) -> dict:
    """Tension (mean EMG RMS of the channels, µV), HR and RMSSD in the first and the last phase; NaN where
    not measured or too little clean data. ``data``: a session, or its ``summarize`` rows (a session's outcome)."""
    rows = data if isinstance(data, list) else summarize(data)
    first, last = (rows[0], rows[-1]) if len(rows) >= 2 else (None, None)

    def pick(row: dict | None, key: str) -> float:
        if row is None or (key == "tension" and row["note"]):
            return math.nan
        return _mean(row["emg_rms_uv"].values()) if key == "tension" else _mean([row[key]])

    return {k: (pick(first, k), pick(last, k)) for k in ("tension", "hr_bpm", "rmssd_ms")}


def _change(a: float, b: float) -> float:
    return 100.0 * (b - a) / a if math.isfinite(a) and math.isfinite(b) and a > 0 else math.nan


def plain_summary(values: dict) -> list[str]:
    """A few short sentences for the client."""
    lines = []
    a, b = values["tension"]
    c = _change(a, b)
    if math.isfinite(c):
        how = ("lower: your shoulders relaxed" if c <= -5 else "higher than at the start" if c >= 5
               else "about the same as at the start")
        lines.append(f"Shoulder tension {a:.0f} → {b:.0f} µV: {abs(c):.0f} % {how}." if abs(c) >= 5
                     else f"Shoulder tension {a:.0f} → {b:.0f} µV: {how}.")
    else:
        lines.append("Shoulder tension was not measured (no EMG sensor or too little clean signal).")
    a, b = values["hr_bpm"]
    if math.isfinite(a) and math.isfinite(b):
        lines.append(f"Heart rate {a:.0f} → {b:.0f} beats per minute.")
    a, b = values["rmssd_ms"]
    if math.isfinite(a) and math.isfinite(b):
        word = "up: a calmer heart" if b > a * 1.05 else "down" if b < a * 0.95 else "about the same"
        lines.append(f"Heart rate variability (RMSSD) {a:.0f} → {b:.0f} ms, {word}.")
    elif not math.isfinite(values["hr_bpm"][0]):
        lines.append("Heart rate was not measured (no chest strap).")
    return lines


def _history_path(client_id: str, home: Path | None) -> Path:
    home = data_home() if home is None else Path(home)
    return private_dir(private_dir(home / "clients") / validate_client_id(client_id)) / HISTORY_FILE


def relax_history(client_id: str, home: Path | None = None) -> list[dict]:
    """Home sessions, oldest first: date, session, tension/HR/RMSSD at start and end. Which feedback a session gave
    (live or sham) is not here: the history is shown to the participant, who may be blind to it (the session file's
    meta keeps it for the trial)."""
    path = _history_path(client_id, home)
    try:
        cache = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError):
        cache = {}
    changed = any(isinstance(v, dict) and "feedback" in v for v in cache.values())  # written by an earlier version
    cache = {k: {f: x for f, x in v.items() if f != "feedback"} if isinstance(v, dict) else v for k, v in cache.items()}
    rows = []
    for s in list_sessions(client_id, home):
        name = Path(s["path"]).name
        if s["error"] is not None or not s["complete"]:
            continue
        if name not in cache:
            changed = True
            try:
                with SessionReader(s["path"]) as r:
                    relax = r.meta.get("relax")
                cache[name] = None if relax is None else {
                    "date": (s["started"] or "")[:10], **{k: list(v) for k, v in start_end(s["path"]).items()}}
            except StoreError:
                cache[name] = None
        if cache[name] is not None:
            rows.append({"session": name, **cache[name]})
    if changed:
        part = path.with_name(path.name + ".part")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(cache, f)
        os.replace(part, path)
    return rows


def todays_diary(client_id: str, home: Path | None = None) -> list[dict]:
    today = dt.date.today().isoformat()
    return [e for e in read_diary(client_id, home) if e["date"] == today]


def diary_text(entries: list[dict]) -> str:
    if not entries:
        return "No headache noted for today."
    return "; ".join(f"headache {e['intensity']:.0f}/10, " + ("how long unknown" if e["duration_h"] is None
                                                            else f"for {duration_text(e)}")
                     + (f", took {e['medication']}" if e["medication"] else "") for e in entries)


def history_text(rows: list[dict]) -> str:
    if not rows:
        return "This is your first home session."
    lines = [f"Your last {min(len(rows), 10)} home sessions (tension start → end, µV):"]
    for r in rows[-10:]:
        a, b = r["tension"]
        t = f"{a:5.0f} → {b:5.0f}" if math.isfinite(a) and math.isfinite(b) else "    --"
        lines.append(f"  {r['date']}  {t}")
    return "\n".join(lines)
