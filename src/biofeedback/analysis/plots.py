"""Report figures (matplotlib, Agg backend): EMG over the session, heart over time, before/after bars, tachogram."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from biofeedback.analysis.compare import PRIMARY, Comparison  # noqa: E402
from biofeedback.analysis.data import SessionData, contiguous_with_previous  # noqa: E402
from biofeedback.dsp import BAEVSKY_SI  # noqa: E402
from biofeedback.vocab import EventKind  # noqa: E402

PHASE_COLOURS = {"rest": "#d8ecd8", "treatment": "#f6e3c6", "task": "#dfe3f3"}
HANDS_ON_COLOUR = "#e8a33d"
MARKER_ROWS = 6
"""Rows of marker numbers at the top of a plot; a number moves down a row rather than touch another."""
ROLLING_RMSSD_S = 30.0
"""Window of the rolling RMSSD curve."""
BAR_METRICS = (PRIMARY, "emg.left_trapezius.rms_uv", "emg.right_trapezius.rms_uv", "heart.hr_bpm", "heart.rmssd_ms",
               f"heart.{BAEVSKY_SI.key}")


def png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes; closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def numbered_markers(data: SessionData) -> list[dict]:
    """The session's markers and notes in time order, each with its number (1, 2, ...) as the plots label it."""
    return [{**m, "number": i} for i, m in enumerate(sorted(data.markers, key=lambda m: m["t_s"]), 1)]


def _label_markers(ax, markers: list[dict]) -> None:
    """Each marker's number in a small box at the top of ``ax``, moved down a row wherever it would touch a label
    already placed (placement in display pixels, so it holds whatever the figure size)."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    placed: list = []
    for m in markers:
        for row in range(MARKER_ROWS):
            text = ax.text(m["t_s"], 0.97 - row * 0.13, str(m["number"]), transform=ax.get_xaxis_transform(), ha="center",
                           va="top", fontsize=8, color="#222222", gid="marker-label", zorder=4,
                           bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "#7a3db8", "lw": 0.6})
            text.update_bbox_position_size(renderer)
            box = text.get_bbox_patch().get_window_extent(renderer).padded(1.0)
            if not any(box.overlaps(other) for other in placed) or row == MARKER_ROWS - 1:
                placed.append(box)
                break
            text.remove()


def _context(ax, data: SessionData, labels: bool) -> None:
    """Shade phases, hands-on intervals and gaps; draw markers (numbered where ``labels``: see ``numbered_markers``)."""
    ax.set_xlim(0.0, max(data.duration_s, 1.0))  # before the labels are placed in pixels
    for p in data.phases:
        ax.axvspan(p.start_s, p.end_s, color=PHASE_COLOURS.get(p.kind, "#eeeeee"), zorder=0, lw=0)
        if labels:
            ax.text((p.start_s + p.end_s) / 2, 1.01, p.name, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                    fontsize=9, fontweight="bold")
    for a, b in data.hands_on:
        ax.axvspan(a, b, ymin=0, ymax=0.04, color=HANDS_ON_COLOUR, zorder=1, lw=0)
    for g in data.gaps:
        ax.axvspan(g.start_s, g.end_s, color="#999999", alpha=0.4, zorder=1, lw=0)
    markers = numbered_markers(data)
    for m in markers:
        ax.axvline(m["t_s"], color="#7a3db8" if m["kind"] == EventKind.MARKER else "#444444", ls="--", lw=0.8, zorder=2)
    if labels:
        _label_markers(ax, markers)


WIDTH_IN = 11.0
"""Width of the session figures; a narrower one keeps their shape with larger text where it is printed small."""


def emg_figure(data: SessionData, width_in: float = WIDTH_IN) -> Figure | None:
    """Moving RMS per trapezius side over the whole session; excluded samples greyed."""
    e = data.emg
    if e is None:
        return None
    scale = width_in / WIDTH_IN
    fig, axes = plt.subplots(len(e.channels), 1, sharex=True, figsize=(width_in, (2.3 * len(e.channels) + 0.6) * scale),
                             squeeze=False)
    for c, (ax, ch) in enumerate(zip(axes[:, 0], e.channels)):
        _context(ax, data, labels=c == 0)
        good = np.where(e.valid[:, c], e.rms_uv[:, c], np.nan)
        bad = np.where(~e.valid[:, c], e.rms_uv[:, c], np.nan)
        ax.plot(e.t_s, bad, color="#aaaaaa", lw=0.6, label="excluded (hands-on, quality)")
        ax.plot(e.t_s, good, color="#1f5fa8", lw=0.7, label="250 ms RMS")
        ax.set_ylabel(f"{ch.replace('_', ' ')}\nRMS (µV)", fontsize=9)
        top = np.nanpercentile(e.rms_uv[:, c], 99.5) if np.isfinite(e.rms_uv[:, c]).any() else 1.0
        ax.set_ylim(0, top * 1.15)
    axes[0, 0].legend(loc="lower left", fontsize=7, framealpha=0.8)
    axes[-1, 0].set_xlabel("session time (s)   — numbered dashes: markers and notes; orange bar: hands on; grey: gaps")
    fig.suptitle("Trapezius EMG over the session", y=1.04)
    return fig


def _rolling_rmssd(t: np.ndarray, rr: np.ndarray, contiguous: np.ndarray) -> np.ndarray:
    d2 = np.where(contiguous, np.diff(rr, prepend=np.nan) ** 2, np.nan)
    out = np.full(t.size, np.nan)
    lo = np.searchsorted(t, t - ROLLING_RMSSD_S / 2)
    hi = np.searchsorted(t, t + ROLLING_RMSSD_S / 2)
    for i in range(t.size):
        w = d2[lo[i]:hi[i]]
        w = w[np.isfinite(w)]
        if w.size >= 10:
            out[i] = np.sqrt(w.mean())
    return out


def _broken(t: np.ndarray, y: np.ndarray, contiguous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``t``, ``y`` with a NaN point before every beat that does not follow its predecessor, so lines break at gaps."""
    at = np.flatnonzero(~contiguous[1:]) + 1
    return np.insert(t, at, np.nan), np.insert(y, at, np.nan)


def heart_figure(data: SessionData, width_in: float = WIDTH_IN) -> Figure | None:
    """Beat-to-beat heart rate and a rolling 30-s RMSSD over the session."""
    b = data.beats
    if b is None:
        return None
    ok = b.valid
    t, rr = b.t_s[ok], b.rr_ms[ok]
    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(width_in, 4.8 * width_in / WIDTH_IN))
    for ax in (ax1, ax2):
        _context(ax, data, labels=ax is ax1)
    contiguous = contiguous_with_previous(t, rr)
    ax1.plot(*_broken(t, 60000.0 / rr, contiguous), color="#b8312f", lw=0.7)
    ax1.set_ylabel("heart rate (bpm)")
    ax2.plot(*_broken(t, _rolling_rmssd(t, rr, contiguous), contiguous), color="#2e7d32", lw=1.2)
    ax2.set_ylabel(f"RMSSD, {ROLLING_RMSSD_S:.0f} s (ms)")
    ax2.set_xlabel("session time (s)")
    fig.suptitle("Heart rate and HRV over the session", y=1.02)
    return fig


def tachogram_figure(data: SessionData) -> Figure | None:
    """RR tachogram: raw intervals, corrected series, corrected beats marked."""
    b = data.beats
    if b is None:
        return None
    fig, ax = plt.subplots(figsize=(11, 3.2))
    _context(ax, data, labels=True)
    ax.plot(b.t_s, b.rr_raw_ms, ".", color="#999999", ms=2.5, label="raw RR")
    ax.plot(b.t_s, b.rr_ms, color="#1f5fa8", lw=0.8, label="corrected RR (offline, Lipponen & Tarvainen)")
    fixed = (b.flags != 0) & b.recorded
    ax.plot(b.t_s[fixed], b.rr_raw_ms[fixed], "x", color="#d62728", ms=7, mew=1.5,
            label=f"corrected beats ({int(fixed.sum())})")
    ax.set_ylabel("RR (ms)")
    ax.set_xlabel("session time (s)")
    ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
    lo, hi = np.nanpercentile(b.rr_raw_ms, [0.5, 99.5])
    ax.set_ylim(lo * 0.9, hi * 1.1)
    fig.suptitle("RR tachogram", y=1.06)
    return fig


def bars_figure(comparison: Comparison) -> Figure | None:
    """Before/after levels with 95 % CIs for the main metrics."""
    metrics = [m for key in BAR_METRICS for m in comparison.metrics if m.key == key and np.isfinite(m.a)]
    if not metrics:
        return None
    names = [comparison.phase_a.name if comparison.phase_a else "A", comparison.phase_b.name if comparison.phase_b else "B"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.1 * len(metrics) + 0.5, 3.4), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        values = np.array([m.a, m.b])
        cis = np.array([m.a_ci, m.b_ci])
        err = np.abs(cis.T - values)
        colours = ["#8fa8c8", "#2f6db3"]
        ax.bar([0, 1], np.nan_to_num(values), yerr=np.nan_to_num(err), capsize=5, color=colours, edgecolor="black", lw=0.5)
        ax.set_xticks([0, 1], names, fontsize=8)
        ax.set_title(f"{m.label}\n({m.unit.replace('uV', 'µV')})", fontsize=8)
        colour = {"fell": "#1b7a1b" if m.better == "down" else "#b32020",
                  "rose": "#1b7a1b" if m.better == "up" else "#b32020"}.get(m.verdict, "#555555")
        text = f"{m.change:+.0f} %" if m.change_unit == "%" else f"{m.change:+.2g} {m.change_unit}"
        ax.text(0.5, -0.25, f"{text}\n{m.verdict}" if np.isfinite(m.change) else m.verdict, transform=ax.transAxes,
                ha="center", va="top", fontsize=8, color=colour)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle("Before and after (bars: level; whiskers: 95 % block-bootstrap CI)", y=1.08, fontsize=10)
    fig.tight_layout()
    return fig
