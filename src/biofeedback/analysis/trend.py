"""Trends across one client's sessions: resting levels and verdicts per session, beside the headache diary.

Each session is read through the loaded-session container (``analysis.data.load_session``) and compared
by ``analysis.compare``, so a trend's levels use the same exclusions and least-clean-data rule as that
session's own summary and verdict.

The written trend (HTML, JSON) is 0600 and a folder it creates 0700; with ``shift_days`` every date in it (each
session's start and file name, each diary entry's date and time of entry, the date it was written) moves that many
days back.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import time
from pathlib import Path

import numpy as np

from biofeedback.analysis.compare import PRIMARY, _clean, compare
from biofeedback.analysis.data import Progress, load_session
from biofeedback.analysis.diary import duration_text, read_diary
from biofeedback.analysis.plots import png_bytes
from biofeedback.analysis.report import _write
from biofeedback.store import StoreError, list_sessions
from biofeedback.store.paths import SECONDS_PER_DAY, private_dir, shift_dates

TREND_BOOT = 500
"""Bootstrap resamples per session in a trend (fewer than a single report: many sessions)."""
TREND_METRICS = (PRIMARY, "emg.left_trapezius.rms_uv", "emg.right_trapezius.rms_uv", "heart.hr_bpm", "heart.rmssd_ms")


def session_trend(client_id: str, home: Path | None = None, progress: Progress | None = None) -> list[dict]:
    """One row per session, oldest first: date, file, verdict, and per metric baseline/post levels and change with CIs."""
    rows = []
    sessions = list_sessions(client_id, home)
    for i, s in enumerate(sessions, 1):
        row = {"session": Path(s["path"]).name, "started": s["started"], "verdict": None, "text": None, "metrics": {},
               "problem": s["error"]}
        if s["error"] is None:
            if progress:
                progress(f"session {i} of {len(sessions)}: {row['session']}")
            try:
                c = compare(load_session(s["path"]), n_boot=TREND_BOOT, with_neurokit=False)
            except StoreError as exc:
                row["problem"] = str(exc)
            else:
                row["verdict"], row["text"] = c.overall["label"], c.overall["text"]
                row["tension_unit"] = c.tension_unit
                if c.notes:
                    row["problem"] = "; ".join(c.notes)
                for m in c.metrics:
                    if m.key in TREND_METRICS:
                        row["metrics"][m.key] = {"label": m.label, "unit": m.unit, "a": m.a, "a_ci": m.a_ci, "b": m.b,
                                                 "b_ci": m.b_ci, "change": m.change, "change_unit": m.change_unit,
                                                 "change_ci": m.change_ci, "verdict": m.verdict}
        rows.append(row)
    return rows


def _day(iso: str | None) -> dt.date | None:
    return None if not iso else dt.date.fromisoformat(iso[:10])


def format_trend(rows: list[dict], diary: list[dict]) -> str:
    """A text table of sessions, then the diary."""
    lines = [f"{'date':<11} {'verdict':<16} {'tension base→post':<22} {'change (95 % CI)':<24} {'RMSSD base→post':<18}"]
    for r in rows:
        m, h = r["metrics"].get(PRIMARY), r["metrics"].get("heart.rmssd_ms")
        ten = "–" if not m else f"{m['a']:.1f}→{m['b']:.1f} {r.get('tension_unit', '')}"
        ch = "–" if not m or not np.isfinite(m["change"]) else (
            f"{m['change']:+.0f} % ({m['change_ci'][0]:+.0f} to {m['change_ci'][1]:+.0f})")
        hr = "–" if not h or not np.isfinite(h["b"]) else f"{h['a']:.0f}→{h['b']:.0f} ms"
        lines.append(f"{(r['started'] or '?')[:10]:<11} {r['verdict'] or 'unreadable':<16} {ten:<22} {ch:<24} {hr:<18}"
                     + (f"  ({r['problem']})" if r["problem"] else ""))
    lines.append("")
    lines.append("headache diary:")
    lines += [f"  {e['date']}  intensity {e['intensity']:.0f}/10  {duration_text(e)}  {e['medication'] or '-'}"
              for e in diary] or ["  (empty)"]
    return "\n".join(lines)


def trend_figure(rows: list[dict], diary: list[dict]):
    """Resting tension and RMSSD per session (baseline and post, with CIs) above the diary's headache intensity."""
    import matplotlib.dates
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, sharex=True, figsize=(10, 7.5))
    for ax, key, title in ((axes[0], PRIMARY, "resting tension index"), (axes[1], "heart.rmssd_ms", "resting RMSSD (ms)")):
        for which, colour, shift in (("a", "#8fa8c8", -0.15), ("b", "#2f6db3", 0.15)):
            pts = [(_day(r["started"]), r["metrics"][key]) for r in rows if key in r["metrics"] and r["started"]]
            pts = [(d, m) for d, m in pts if np.isfinite(m[which])]
            if not pts:
                continue
            x = [matplotlib.dates.date2num(d) + shift for d, _ in pts]
            y = np.array([m[which] for _, m in pts])
            ci = np.array([m[f"{which}_ci"] for _, m in pts], dtype=float)
            err = np.nan_to_num(np.abs(ci.T - y))
            ax.errorbar(x, y, yerr=err, fmt="o", color=colour, capsize=3, label="baseline" if which == "a" else "post")
        ax.set_ylabel(title)
        if ax.get_legend_handles_labels()[1]:  # a client with no sessions yet has nothing to name
            ax.legend(fontsize=8, loc="best")
    for r in rows:
        m = r["metrics"].get(PRIMARY)
        if m and r["started"] and np.isfinite(m["a"]):
            axes[0].annotate(r["verdict"], (matplotlib.dates.date2num(_day(r["started"])), m["a"]), textcoords="offset points",
                             xytext=(0, 10), ha="center", fontsize=7)
    if diary:
        x = [matplotlib.dates.date2num(dt.date.fromisoformat(e["date"])) for e in diary]
        axes[2].bar(x, [e["intensity"] for e in diary], width=0.8, color="#c0504d")
        for xi, e in zip(x, diary):
            if e["medication"]:
                axes[2].text(xi, e["intensity"] + 0.2, e["medication"], rotation=90, fontsize=7, ha="center", va="bottom")
    else:
        axes[2].text(0.5, 0.5, "no diary entries", transform=axes[2].transAxes, ha="center")
    axes[2].set_ylim(0, 12)
    axes[2].set_ylabel("headache intensity (0-10)")
    axes[2].xaxis_date()
    fig.autofmt_xdate()
    fig.suptitle("Sessions and headaches over time")
    return fig


def write_trend(client_id: str, rows: list[dict], diary: list[dict], out_dir: Path, html_out: bool, json_out: bool,
                shift_days: int = 0) -> list[Path]:
    """Write the trend as self-contained HTML and/or JSON (0600) into ``out_dir``; with ``shift_days`` every date in
    them moves that many days back."""
    out_dir = private_dir(Path(out_dir))
    rows, diary = shift_dates(rows, shift_days), shift_dates(diary, shift_days, numbers=True)
    today = time.strftime("%Y-%m-%d", time.localtime(time.time() - shift_days * SECONDS_PER_DAY))
    written = []
    if json_out:
        written.append(_write(out_dir / f"{client_id}-trend.json",
                              json.dumps(_clean({"client_id": client_id, "sessions": rows, "diary": diary}), indent=2,
                                         ensure_ascii=False)))
    if html_out:
        png = base64.b64encode(png_bytes(trend_figure(rows, diary))).decode()
        table = html.escape(format_trend(rows, diary))
        doc = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Trend {html.escape(client_id)}</title>"
               "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto}img{max-width:100%}</style>"
               f"</head><body><h1>Client {html.escape(client_id)}: sessions and headaches</h1>"
               f"<p>{today}</p><pre>{table}</pre><img alt='trend' src='data:image/png;base64,{png}'>"
               "</body></html>")
        written.append(_write(out_dir / f"{client_id}-trend.html", doc))
    return written
