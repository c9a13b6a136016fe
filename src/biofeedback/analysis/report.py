"""Session reports for three readers, rendered from Jinja2 templates (``analysis/templates/``):

- ``<session>-report.html`` / ``.pdf``: page 1 is the therapist's summary (the headline change per side in plain
  words with its interval, the traces with phases and numbered markers, what was left out and why, the sensors);
  then the researcher's appendix (every number with its 95 % CI, the settings, the exclusions per phase, neurokit2's
  HRV, the other figures);
- ``<session>-client.html`` / ``.pdf``: the client's sheet in plain language (this session, the trend of their
  sessions, their headache diary);
- ``<session>-report.json``: every number of the comparison.

The HTML is self-contained (figures as base64 PNG). The PDF is the same HTML laid out by WeasyPrint (A4, "Page n of
N" from CSS paged media): a document engine, not text on a plot canvas. WeasyPrint needs Pango on the system; without
it ``render_pdf`` says so in one line (HTML and JSON reports still work). Units are shown as the field writes them
(µV, never uV); numbers rounded to what they can tell.

Each file is 0600 whatever the umask (an earlier report of the same name included); a folder the report creates is
0700. With ``shift_days`` every date in every report moves that many days back (``store.paths.shift_dates``): the
session's start, its file name (which is its UTC start), the report files' names, dates in notes, the client sheet's
trend and diary; the PDF carries no creation date, and the JSON names the session file only by its (shifted) name.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
import math
import re
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from biofeedback.analysis.compare import PRIMARY, AnalysisError, Comparison, MetricChange
from biofeedback.analysis.data import Progress, SessionData
from biofeedback.analysis.diary import duration_text
from biofeedback.analysis.plots import bars_figure, emg_figure, heart_figure, numbered_markers, png_bytes, \
    tachogram_figure
from biofeedback.dsp import HEART_QUANTITIES
from biofeedback.store.paths import SECONDS_PER_DAY, find_client_dir, private_dir, shift_dates, write_private

TEMPLATES = Path(__file__).with_name("templates")
SUMMARY_FIGURE_IN = 7.5
"""Width (inches) of the traces on the therapist's page: printed about 15 cm wide, their text stays readable."""
FIGURES = (
    ("emg", "Trapezius EMG over the session", partial(emg_figure, width_in=SUMMARY_FIGURE_IN), "data"),
    ("heart", "Heart rate and RMSSD over time", partial(heart_figure, width_in=SUMMARY_FIGURE_IN), "data"),
    ("bars", "Before and after", bars_figure, "comparison"),
    ("tachogram", "RR tachogram", tachogram_figure, "data"),
)
SIDES = (("left_trapezius", "Left shoulder"), ("right_trapezius", "Right shoulder"))
"""The trapezius channels and how the summary and the client sheet name them."""
PDF_NEEDS = ("PDF reports need the Pango text library: on Debian/Ubuntu 'apt install libpango-1.0-0 libpangoft2-1.0-0', "
             "on macOS 'brew install pango', on Windows the GTK runtime (see the README); HTML and JSON reports work "
             "without it")
EXCLUSIONS = {
    "duration_s": ("phase length", "s", False),
    "emg_no_data_s": ("EMG: no signal (gaps, electrode off)", "s", True),
    "emg_hands_on_s": ("EMG: therapist's hands on", "s", True),
    "emg_low_quality_s": ("EMG: poor signal quality", "s", True),
    "emg_used_s": ("EMG: used", "s", False),
    "beats": ("beats recorded", "beats", False),
    "beats_hands_on": ("beats during hands-on", "beats", True),
    "beats_removed": ("beats removed as artefacts", "beats", True),
    "beats_inserted": ("beats inserted where the strap missed one", "beats", False),
    "beats_corrected": ("beats corrected offline", "beats", False),
    "beats_corrected_live": ("beats corrected live", "beats", False),
    "beats_used": ("beats used", "beats", False),
    "recorded_gaps": ("recording gaps", "gaps", True),
    "recorded_gap_s": ("recording gap time", "s", False),
}
"""Exclusion counts of ``Comparison.exclusions``: the label, the unit, and whether it is a reason data was left out."""
CLIENT_UNITS = {"%RVC": "% of your calibration shoulder lift"}
"""Tension units as the client sheet names them."""
CLIENT_VERDICTS = {"released": "your shoulders relaxed", "no clear change": "no clear change",
                   "tension rose": "tension went up", "not comparable": "could not be judged"}


def unit(text: str) -> str:
    """``text`` with the microvolt written as µV (the store and the tension index name it 'uV')."""
    return re.sub(r"(?<![A-Za-z])uV(?![A-Za-z])", "µV", str(text))


def num(v: Any) -> str:
    """A number rounded to what it can tell (3 significant digits at most, whole numbers from 100 on); '–' if none."""
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v):
        return "–"
    if isinstance(v, (int, np.integer)):
        return str(int(v))  # a count
    a = abs(float(v))
    text = ("0" if a == 0 else f"{v:.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.2f}" if a >= 1
            else f"{v:.2g}")
    return "0" if text in ("-0", "-0.0", "-0.00") else text


def _ci(ci: tuple[float, float], u: str = "") -> str:
    if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in ci):
        return ""
    return f"{num(ci[0])} to {num(ci[1])}{_sep(u)}{u}".rstrip()


def _sep(u: str) -> str:
    return "" if not u else " "


def _size(v: float, u: str) -> str:
    """``|v|`` for a sentence: percentages in whole numbers, else ``num``."""
    if u == "%":
        return f"{abs(v):.0f}" if abs(v) >= 1 else f"{abs(v):.1f}"
    return num(abs(v))


def _amount(v: float, u: str) -> str:
    return f"{_size(v, u)}{_sep(u)}{u}"


def plain_change(m: MetricChange) -> str:
    """A metric's change in plain words with its 95 % interval, e.g. 'tension fell by 29 %, most likely between 26
    and 32 % lower; more than the measurement's own wobble (10 %).'"""
    u = unit(m.change_unit)
    lo, hi = m.change_ci
    if m.verdict not in ("fell", "rose", "no clear change") or not math.isfinite(m.change):
        why = m.sentence.split(": ", 1)[-1].rstrip(".") if m.sentence else ""
        return f"could not be compared: {why}." if why else "could not be compared."
    if math.isfinite(lo) and math.isfinite(hi):
        if hi < 0:
            likely = f"most likely between {_size(hi, u)} and {_amount(lo, u)} lower"
        elif lo > 0:
            likely = f"most likely between {_size(lo, u)} and {_amount(hi, u)} higher"
        else:
            likely = f"somewhere between {_amount(lo, u)} lower and {_amount(hi, u)} higher"
    else:
        likely = "its range could not be worked out"
    noise = f"the measurement's own wobble ({_amount(m.sdc, u)})" if math.isfinite(m.sdc) else "the measurement noise"
    if m.verdict == "no clear change":
        sign = "+" if m.change > 0 else "-" if m.change < 0 else ""
        why = "the range includes no change" if not (lo > 0 or hi < 0) else f"within {noise}"
        return f"no clear change ({sign}{_amount(m.change, u)}, {likely}; {why})."
    return f"{m.verdict} by {_amount(m.change, u)}, {likely}; more than {noise}."


def headlines(c: Comparison) -> list[dict]:
    """The headline per trapezius side (else the tension index, else why tension could not be judged) and for RMSSD:
    who, plain-words text, verdict."""
    keys = {m.key: m for m in c.metrics}
    out = [{"who": f"{name}:", "text": "tension " + plain_change(keys[f"emg.{ch}.rms_uv"]), "verdict": keys[f"emg.{ch}.rms_uv"].verdict}
           for ch, name in SIDES if f"emg.{ch}.rms_uv" in keys]
    if not out and PRIMARY in keys:
        out.append({"who": "Shoulders:", "text": "tension " + plain_change(keys[PRIMARY]), "verdict": keys[PRIMARY].verdict})
    if not out:
        out.append({"who": "Shoulders:", "text": "tension was not measured (no EMG in this recording).", "verdict": ""})
    if "heart.rmssd_ms" in keys:
        m = keys["heart.rmssd_ms"]
        out.append({"who": "Heart (RMSSD):", "text": "heart-rate variability " + plain_change(m), "verdict": ""})
    return out


def _clock(t_s: float) -> str:
    return f"{int(t_s // 60)}:{int(t_s % 60):02d}"


def _amounts(value: Any, u: str) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k.replace('_', ' ')} {num(v)} {u}".rstrip() for k, v in value.items())
    return f"{num(value)} {u}".rstrip()


def _nonzero(value: Any) -> bool:
    values = value.values() if isinstance(value, dict) else [value]
    return any(isinstance(v, (int, float)) and v > 0 for v in values)


def exclusion_table(c: Comparison) -> tuple[list[str], list[dict]]:
    """The phases and one row per exclusion count (label, a value per phase), units in the cells."""
    phases = list(c.exclusions)
    keys = list(dict.fromkeys(k for p in phases for k in c.exclusions[p]))
    rows = []
    for k in keys:
        label, u, _ = EXCLUSIONS.get(k, (k.replace("_", " "), "s" if k.endswith("_s") else "", False))
        rows.append({"label": label, "cells": [_amounts(c.exclusions[p][k], u) if k in c.exclusions[p] else "–"
                                                 for p in phases]})
    return phases, rows


def excluded_lines(c: Comparison, data: SessionData) -> list[str]:
    """What was left out of the compared phases and why, in short lines; 'nothing' when nothing was."""
    lines = list(c.notes)
    for phase, counts in c.exclusions.items():
        left = [f"{EXCLUSIONS[k][0]} {_amounts(v, EXCLUSIONS[k][1])}" for k, v in counts.items()
                if k in EXCLUSIONS and EXCLUSIONS[k][2] and _nonzero(v)]
        if left:
            lines.append(f"{phase}: " + "; ".join(left))
    lines += list(data.losses) + list(data.problems)
    return lines or ["nothing: every second and beat of the compared phases was used"]


def sensors_used(data: SessionData) -> list[str]:
    """The session's sensors as recorded (profile, model, firmware, virtual), else the streams it holds."""
    out = []
    for d in data.meta.get("devices") or []:
        info = d.get("device_info") or {}
        detail = ", ".join(str(v) for k, v in info.items() if v and k in ("model", "manufacturer", "firmware"))
        out.append(f"{d.get('profile', d.get('source', '?'))}" + (f" ({detail})" if detail else "")
                   + (", virtual" if d.get("virtual") else ""))
    if not out:
        out = [x for x, present in (("EMG sensor", data.emg is not None), ("heart sensor", data.beats is not None))
               if present] or ["none recorded"]
    out += [f"{x['quantity']}: {x['profile']}" + (f" at {x['rate_hz']:g} Hz" if x.get("rate_hz") else "")
            + (f", from {x['from']}" if x.get("from") else "") for x in data.sensors]  # which number came from which
    return out


def figures(data: SessionData, comparison: Comparison, progress: Progress | None = None) -> dict[str, bytes]:
    """PNG bytes of every figure that has data, by name."""
    out = {}
    for name, _, make, arg in FIGURES:
        if progress:
            progress(f"plotting {name}")
        fig = make(data if arg == "data" else comparison)
        if fig is not None:
            out[name] = png_bytes(fig, dpi=150)
    return out


def _started(comparison: Comparison) -> str:
    utc = comparison.started_utc
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(utc)) if isinstance(utc, (int, float)) else "unknown date"


def _png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["png"] = _png_uri
    return env


def _metric_row(m: MetricChange) -> dict:
    u, cu = unit(m.unit), unit(m.change_unit)
    change = "–" if not math.isfinite(m.change) else f"{'+' if m.change > 0 else ''}{num(m.change)}{_sep(cu)}{cu}"
    return {"label": unit(m.label), "unit": u, "a": num(m.a), "a_ci": _ci(m.a_ci), "b": num(m.b), "b_ci": _ci(m.b_ci),
            "change": change, "change_ci": _ci(m.change_ci, cu), "sdc": num(m.sdc), "effect_size": num(m.effect_size),
            "n": f"{m.n_a} / {m.n_b}", "verdict": m.verdict}


def _neurokit(c: Comparison) -> tuple[list[dict], list[str], list[dict]]:
    rows, remarks, freq = [], [], []
    for phase, res in c.neurokit.items():
        units = res.get("units", {})
        rows += [{"phase": phase, "name": k.removeprefix("HRV_"), "value": num(v), "unit": units.get(k, "")}
                 for k, v in res.get("values", {}).items()]
        remarks += [f"{phase}: {r}" for r in ([res["note"]] if "note" in res else []) + res.get("notes", [])]
        freq += [{"phase": phase, "tool": tool, **{k: num(f[k]) for k in ("lf_ms2", "hf_ms2", "lf_nu", "hf_nu", "lf_hf")},
                  "settings": f["settings"]} for tool, f in res.get("frequency", {}).items()]
    return rows, remarks, freq


def _value(v: Any) -> str:
    return num(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else "–" if v is None else unit(str(v))


def _settings(c: Comparison, data: SessionData, shift_days: int = 0) -> list[tuple[str, str]]:
    """The settings table; the recording's own texts (the calibration's file and time) with dates shifted."""
    def span(p) -> str:
        return "–" if p is None else f"{p.name} ({p.kind}, {_clock(p.start_s)}–{_clock(p.end_s)} min:s)"
    cal = data.calibration
    cal_text = "none (µV)" if not cal else ", ".join(f"{k.replace('_', ' ')}: {_value(v)}" for k, v in cal.items()
                                                    if not isinstance(v, (dict, list)))
    return [("phases compared", f"{span(c.phase_a)} vs {span(c.phase_b)}"),
            ("tension index unit", unit(c.tension_unit)),
            ("calibration", unit(shift_dates(cal_text, shift_days))),
            ("protocol", str(data.meta.get("protocol", "–"))),
            ("recording speed", f"{num(data.meta.get('speed', 1.0))}× real time"),
            ("bootstrap", f"moving block, {c.n_boot} resamples per phase"),
            ("software", f"biofeedback {data.meta.get('software_version', '?')}, file format {data.meta.get('format_version', '?')}"),
            ("session file", Path(c.session).name)]


def report_context(comparison: Comparison, data: SessionData, pngs: dict[str, bytes], shift_days: int = 0) -> dict:
    """What the therapist's summary and the researcher's appendix show, every number formatted; the recording's own
    texts (marker labels, notes of lost data) with dates moved ``shift_days`` back, as ``shift_comparison`` moves the
    comparison's."""
    c = comparison
    phases, rows = exclusion_table(c)
    nk_rows, nk_remarks, freq_rows = _neurokit(c)
    return {
        "running_head": f"client {c.client_id} · {_started(c)}", "client": c.client_id, "started": _started(c),
        "session_name": Path(c.session).name, "tension_unit": unit(c.tension_unit),
        "phase_a": c.phase_a.name if c.phase_a else "–", "phase_b": c.phase_b.name if c.phase_b else "–",
        "headlines": headlines(c),
        "figures": {"emg": pngs.get("emg"), "heart_small": pngs.get("heart")},
        "markers": [{"number": m["number"], "time": _clock(m["t_s"]), "label": shift_dates(m["label"][:60], shift_days)}
                    for m in numbered_markers(data)],
        "excluded": [unit(shift_dates(x, shift_days)) for x in excluded_lines(c, data)], "sensors": sensors_used(data),
        "metrics": [_metric_row(m) for m in c.metrics], "settings": _settings(c, data, shift_days),
        "exclusion_phases": phases, "exclusion_rows": rows, "notes": [unit(n) for n in c.notes],
        "neurokit_rows": nk_rows, "neurokit_remarks": nk_remarks, "frequency_rows": freq_rows,
        "quantities": HEART_QUANTITIES, "n_boot": c.n_boot,
        "appendix_figures": [{"title": title, "png": pngs[name]} for name, title, _, _ in FIGURES
                             if name in pngs and name not in ("emg", "heart")],
    }


def render_html(comparison: Comparison, data: SessionData, pngs: dict[str, bytes], shift_days: int = 0) -> str:
    """The therapist's summary and the researcher's appendix as one self-contained HTML page (no external files)."""
    return _environment().get_template("report.html.j2").render(**report_context(comparison, data, pngs, shift_days))


def client_context(comparison: Comparison, trend: list[dict], diary: list[dict], trend_png: bytes | None) -> dict:
    """What the client's sheet shows: this session's change in plain words, their sessions, their diary."""
    c = comparison
    day = _started(c)[:10]
    rows = []
    for r in trend:
        m, u = r["metrics"].get(PRIMARY), r.get("tension_unit", "")
        tension = "–" if not m or not (math.isfinite(m["a"]) and math.isfinite(m["b"])) else \
            f"{num(m['a'])} → {num(m['b'])} {CLIENT_UNITS.get(u, unit(u))}".rstrip()
        rows.append({"date": (r["started"] or "?")[:10], "words": CLIENT_VERDICTS.get(r["verdict"], "could not be read"),
                     "tension": tension})
    entries = [{"date": e["date"], "intensity": num(e["intensity"]),
                "duration": duration_text(e),
                "medication": e.get("medication") or "none"} for e in diary]
    return {"running_head": f"{c.client_id} · {day}", "client": c.client_id, "started_day": day,
            "headlines": headlines(c), "trend": rows, "trend_png": trend_png, "diary": entries}


def render_client_html(comparison: Comparison, trend: list[dict], diary: list[dict], trend_png: bytes | None = None) -> str:
    """The client's sheet as a self-contained HTML page."""
    return _environment().get_template("client.html.j2").render(**client_context(comparison, trend, diary, trend_png))


def pdf_engine():
    """WeasyPrint, imported; one ``AnalysisError`` line naming what to install when its system libraries (Pango) are
    missing (WeasyPrint's own multi-line notice is held back)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import weasyprint
    except (ImportError, OSError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AnalysisError(f"{PDF_NEEDS} ({detail})") from None
    return weasyprint


def render_pdf(html_text: str, path: Path) -> Path:
    """Lay ``html_text`` out as an A4 PDF at ``path`` (0600) with WeasyPrint (``pdf_engine``)."""
    pdf = pdf_engine().HTML(string=html_text, base_url=str(TEMPLATES)).write_pdf()
    return write_private(path, pdf)


def _write(path: Path, content: bytes | str) -> Path:
    """Write a report file, 0600 whatever the umask and whatever mode an earlier file of that name had."""
    return write_private(path, content)


def _shifted(value: Any, days: int) -> Any:
    """``value`` (a comparison, its parts) with every date in its text moved ``days`` back (numbers untouched)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _shifted(getattr(value, f.name), days)
                                             for f in dataclasses.fields(value) if f.init})
    return shift_dates(value, days)


def shift_comparison(comparison: Comparison, days: int) -> Comparison:
    """``comparison`` as a report with ``days`` of date shift shows it: its start ``days`` earlier, its session named
    by its shifted file name only, and every date in its text shifted."""
    if not days:
        return comparison
    started = comparison.started_utc
    return dataclasses.replace(
        _shifted(comparison, days), session=shift_dates(Path(comparison.session).name, days),
        started_utc=started - days * SECONDS_PER_DAY if isinstance(started, (int, float)) else started)


def client_history(client_id: str | None, home: Path | None = None,
                   progress: Progress | None = None) -> tuple[list[dict], list[dict]]:
    """The client's sessions (``analysis.trend.session_trend``) and headache diary, for the client sheet; empty for a
    client with no folder in the data home (none is created)."""
    from biofeedback.analysis.diary import read_diary
    from biofeedback.analysis.trend import session_trend

    if client_id is None or find_client_dir(client_id, home) is None:
        return [], []
    return session_trend(client_id, home, progress), read_diary(client_id, home)


def write_report(data: SessionData, comparison: Comparison, out_dir: Path, html_out: bool = True, pdf_out: bool = False,
                 json_out: bool = True, progress: Progress | None = None, shift_days: int = 0,
                 client_sheet: bool = True, home: Path | None = None) -> list[Path]:
    """Write the chosen report files (0600, they hold health data) into ``out_dir``; returns their paths: the JSON,
    the therapist's summary with the researcher's appendix and (``client_sheet``) the client's sheet, each as HTML
    and/or PDF. With ``shift_days`` every date in them moves that many days back (``shift_comparison``), file names
    included. ``home``: the data home whose sessions and diary the client sheet shows (default: the user's)."""
    if pdf_out:
        pdf_engine()  # a missing system library is said before anything is written
    out_dir = private_dir(Path(out_dir))
    days = int(shift_days)
    comparison = shift_comparison(comparison, days)
    stem = Path(comparison.session).stem
    written = []
    if json_out:
        written.append(_write(out_dir / f"{stem}-report.json", json.dumps(comparison.to_dict(), indent=2, ensure_ascii=False)))
    if not (html_out or pdf_out):
        return written
    pages = {"report": render_html(comparison, data, figures(data, comparison, progress), days)}
    if client_sheet:
        from biofeedback.analysis.trend import trend_figure

        if progress:
            progress("the client's sessions and diary")
        trend, diary = client_history(comparison.client_id, home, progress)
        trend, diary = shift_dates(trend, days), shift_dates(diary, days, numbers=True)
        pages["client"] = render_client_html(comparison, trend, diary,
                                             png_bytes(trend_figure(trend, diary), dpi=150) if len(trend) > 1 else None)
    for name, page in pages.items():
        if html_out:
            written.append(_write(out_dir / f"{stem}-{name}.html", page))
        if pdf_out:
            if progress:
                progress(f"writing the {name} PDF")
            written.append(render_pdf(page, out_dir / f"{stem}-{name}.pdf"))
    return written
