"""Session reports: self-contained HTML (plots as base64 PNG), PDF (matplotlib) and a JSON summary.

Each file is 0600 whatever the umask (an earlier report of the same name included); a folder the report creates is
0700. With ``shift_days`` every date in every report moves that many days back (``store.paths.shift_dates``): the
session's start, its file name (which is its UTC start), the report files' names, dates in notes; the PDF carries
no creation date, and the JSON names the session file only by its (shifted) name.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import os
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

from biofeedback.analysis.compare import Comparison, MetricChange
from biofeedback.analysis.data import Progress, SessionData
from biofeedback.analysis.plots import bars_figure, emg_figure, heart_figure, png_bytes, tachogram_figure
from biofeedback.dsp import HEART_QUANTITIES
from biofeedback.store.paths import FILE_MODE, SECONDS_PER_DAY, private_dir, private_file, shift_dates, \
    write_private

FIGURES = (
    ("emg", "Trapezius EMG over the session", emg_figure, "data"),
    ("heart", "Heart rate and RMSSD over time", heart_figure, "data"),
    ("bars", "Before and after", bars_figure, "comparison"),
    ("tachogram", "RR tachogram", tachogram_figure, "data"),
)


def _num(v: float, digits: int = 3) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.{digits}g}"


def _ci(ci: tuple[float, float]) -> str:
    return "" if not all(np.isfinite(ci)) else f"({_num(ci[0])} to {_num(ci[1])})"


def figures(data: SessionData, comparison: Comparison, progress: Progress | None = None) -> dict[str, bytes]:
    """PNG bytes of every figure that has data, by name."""
    out = {}
    for name, _, make, arg in FIGURES:
        if progress:
            progress(f"plotting {name}")
        fig = make(data if arg == "data" else comparison)
        if fig is not None:
            out[name] = png_bytes(fig)
    return out


def _started(comparison: Comparison) -> str:
    utc = comparison.started_utc
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(utc)) if isinstance(utc, (int, float)) else "unknown date"


def _metric_row(m: MetricChange) -> str:
    change = "–" if not np.isfinite(m.change) else f"{m.change:+.3g} {m.change_unit}"
    return (f"<tr class='{html.escape(m.verdict.replace(' ', '-'))}'><td>{html.escape(m.label)}</td><td>{html.escape(m.unit)}</td>"
            f"<td>{_num(m.a)} <small>{_ci(m.a_ci)}</small></td><td>{_num(m.b)} <small>{_ci(m.b_ci)}</small></td>"
            f"<td>{change} <small>{_ci(m.change_ci)}</small></td><td>{_num(m.sdc, 2)}</td><td>{_num(m.effect_size, 2)}</td>"
            f"<td>{html.escape(m.verdict)}</td></tr>")


def render_html(comparison: Comparison, pngs: dict[str, bytes]) -> str:
    """A self-contained HTML report (no external files)."""
    c = comparison
    a = c.phase_a.name if c.phase_a else "–"
    b = c.phase_b.name if c.phase_b else "–"
    sentences = "".join(f"<li>{html.escape(m.sentence)}</li>" for m in c.metrics if m.sentence)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in c.notes) or "<li>none</li>"
    excl = "".join(f"<tr><td>{html.escape(p)}</td><td><code>{html.escape(json.dumps(v))}</code></td></tr>"
                   for p, v in c.exclusions.items())
    nk_rows, freq_rows = [], []
    for phase, res in c.neurokit.items():
        units = res.get("units", {})
        vals = ", ".join(f"{k.removeprefix('HRV_')} {_num(v)} {units.get(k, '')}".rstrip()
                         for k, v in res.get("values", {}).items())
        remarks = "; ".join(([res["note"]] if "note" in res else []) + res.get("notes", []))
        nk_rows.append(f"<tr><td>{html.escape(phase)}</td><td>{html.escape(vals or '–')}</td><td>{html.escape(remarks)}</td></tr>")
        for tool, f in res.get("frequency", {}).items():
            freq_rows.append(
                f"<tr><td>{html.escape(phase)}</td><td>{html.escape(tool)}</td><td>{_num(f['lf_ms2'])}</td>"
                f"<td>{_num(f['hf_ms2'])}</td><td>{_num(f['lf_nu'])}</td><td>{_num(f['hf_nu'])}</td>"
                f"<td>{_num(f['lf_hf'])}</td><td><small>{html.escape(f['settings'])}</small></td></tr>")
    quantities = "".join(f"<li><b>{html.escape(q.label)}</b>: {html.escape(q.definition)}</li>" for q in HEART_QUANTITIES)
    imgs = "".join(
        f"<figure><img alt='{html.escape(title)}' src='data:image/png;base64,{base64.b64encode(pngs[name]).decode()}'>"
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
        for name, title, _, _ in FIGURES if name in pngs
    )
    rows = "".join(_metric_row(m) for m in c.metrics)
    sensors = "".join(f"<li>{html.escape(x['quantity'])}: {html.escape(str(x['profile']))} ({html.escape(str(x['source']))})"
                      + (f", {x['rate_hz']:g} Hz" if x.get("rate_hz") else "")
                      + (f", from {html.escape(x['from'])}" if x.get("from") else "") + "</li>" for x in c.sensors)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Session report {html.escape(str(c.client_id))}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
.verdict {{ font-size: 1.25em; padding: .8em 1em; border-radius: 6px; background: #eef3fa; }}
.verdict.released {{ background: #e3f4e3; }} .verdict.tension-rose {{ background: #fbe5e5; }}
table {{ border-collapse: collapse; font-size: .85em; width: 100%; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .3em .5em; text-align: left; vertical-align: top; }}
tr.fell td:last-child, tr.rose td:last-child {{ font-weight: bold; }}
img {{ max-width: 100%; }} figure {{ margin: 1.5em 0; }} small {{ color: #666; }}
</style></head><body>
<h1>Session report</h1>
<p>Client <b>{html.escape(str(c.client_id))}</b> · {_started(c)} · comparing <b>{html.escape(a)}</b> with <b>{html.escape(b)}</b>
· tension index in {html.escape(c.tension_unit)} · file {html.escape(Path(c.session).name)}</p>
<p class="verdict {html.escape(c.overall['label'].replace(' ', '-'))}">{html.escape(c.overall['text'])}</p>
<h2>Sensors</h2><ul>{sensors or "<li>none recorded</li>"}</ul>
<h2>What could not be compared</h2><ul>{notes}</ul>
<h2>Findings</h2><ul>{sentences}</ul>
<h2>All numbers</h2>
<table><tr><th>metric</th><th>unit</th><th>{html.escape(a)} (95 % CI)</th><th>{html.escape(b)} (95 % CI)</th>
<th>change (95 % CI)</th><th>SDC</th><th>effect size</th><th>verdict</th></tr>{rows}</table>
<p><small>Confidence intervals: moving-block bootstrap ({c.n_boot} resamples per phase; EMG in 5-s windows, heart beat by beat).
SDC: smallest detectable change, 1.96·√2 × the within-phase SD of 30-s segment levels. Effect size: change over that SD.
A change is reported only when its CI excludes zero and it exceeds the SDC.</small></p>
<h2>Left out of the statistics</h2><table><tr><th>phase</th><th>seconds / beats by reason</th></tr>{excl}</table>
<h2>Stress and autonomic indices</h2><ul>{quantities}</ul>
<h2>Time-domain HRV per phase (neurokit2)</h2><table><tr><th>phase</th><th>values</th><th>remarks</th></tr>{''.join(nk_rows)}</table>
<h2>Frequency-domain HRV per phase</h2>
<table><tr><th>phase</th><th>computed by</th><th>LF (ms²)</th><th>HF (ms²)</th><th>LF (n.u.)</th><th>HF (n.u.)</th><th>LF/HF</th>
<th>settings</th></tr>{''.join(freq_rows) or "<tr><td colspan='8'>not available (see the remarks above)</td></tr>"}</table>
<p><small>Over the longest uninterrupted run of clean beats in each phase. The two tools differ in their settings
(above), not in their definitions of LF and HF; n.u. are 100 · LF/(LF + HF) for ours (Task Force 1996) and over
neurokit2's total power for neurokit2's.</small></p>
{imgs}
</body></html>
"""


def render_pdf(comparison: Comparison, data: SessionData, path: Path) -> None:
    """A PDF: one summary page, then one page per figure."""
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    c = comparison
    with PdfPages(path, metadata={"CreationDate": None, "ModDate": None}) as pdf:  # no date but the session's
        fig = plt.figure(figsize=(8.27, 11.69))
        lines = [f"Session report — client {c.client_id}, {_started(c)}",
                 f"{c.phase_a.name if c.phase_a else '–'} vs {c.phase_b.name if c.phase_b else '–'}; "
                 f"tension index in {c.tension_unit}", ""]
        lines += textwrap.wrap(c.overall["text"], 95) + [""]
        if c.notes:
            lines += ["Could not be compared:"] + [f"  - {w}" for n in c.notes for w in textwrap.wrap(n, 90)] + [""]
        for m in c.metrics:
            lines += textwrap.wrap("• " + m.sentence, 100, subsequent_indent="   ")
        fig.text(0.06, 0.96, "\n".join(lines), va="top", ha="left", fontsize=7.5, family="DejaVu Sans")
        pdf.savefig(fig)
        plt.close(fig)
        for _, _, make, arg in FIGURES:
            fig = make(data if arg == "data" else c)
            if fig is not None:
                pdf.savefig(fig, bbox_inches="tight")
                plt.close(fig)


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


def write_report(data: SessionData, comparison: Comparison, out_dir: Path, html_out: bool = True, pdf_out: bool = False,
                 json_out: bool = True, progress: Progress | None = None, shift_days: int = 0) -> list[Path]:
    """Write the chosen report files (0600, they hold health data) into ``out_dir``; returns their paths. With
    ``shift_days`` every date in them moves that many days back (``shift_comparison``), file names included."""
    out_dir = private_dir(Path(out_dir))
    comparison = shift_comparison(comparison, int(shift_days))
    stem = Path(comparison.session).stem
    written = []
    if json_out:
        written.append(_write(out_dir / f"{stem}-report.json", json.dumps(comparison.to_dict(), indent=2, ensure_ascii=False)))
    if html_out:
        pngs = figures(data, comparison, progress)
        written.append(_write(out_dir / f"{stem}-report.html", render_html(comparison, pngs)))
    if pdf_out:
        if progress:
            progress("writing PDF")
        path = private_file(out_dir / f"{stem}-report.pdf")
        render_pdf(comparison, data, path)
        os.chmod(path, FILE_MODE)
        written.append(path)
    return written
