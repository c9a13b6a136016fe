"""Session markers drawn on the traces: a vertical line at each marked time, with a short label that never overlaps
another.

The marks come from the session's events (``SessionRun.event``'s listeners live, the file's events in a replay) and
the running hands-on interval; ``marks_of_event`` is the one translation of an event into marks. ``MarkerLayer``
draws them on a group of x-linked plots whose x is "session seconds before now": each frame moves the lines of the
marks in view; the labels sit on one plot, each in the highest row where it clears the labels already placed (the
phases' first, then the others from the oldest), and a label with no free row is left out (its line stays).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyqtgraph as pg
from PySide6 import QtCore, QtGui

from biofeedback.vocab import EventKind

LABEL_CHARS = 18
"""Longest label on a trace; longer ones end in '…'."""
LABEL_GAP_PX = 6
"""Least room between two labels in one row."""
LABEL_MARGIN_PX = 1
"""Room around a label's text inside its box."""


@dataclass(frozen=True)
class Mark:
    """A marked instant: session seconds and a short label."""

    t_s: float
    label: str
    kind: str


def short(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1].rstrip() + "…"


def marks_of_event(kind: str, t_s: float, label: str, duration_s: float = 0.0) -> list[Mark]:
    """The marks a session event puts on the traces: a phase's start, hands on and off, a technique, a note."""
    if kind == EventKind.PHASE_START:
        return [Mark(t_s, short(label), kind)]
    if kind == EventKind.HANDS_ON:
        return [Mark(t_s, "hands on", kind), Mark(t_s + duration_s, "hands off", kind)]
    if kind == EventKind.MARKER:
        return [Mark(t_s, short(label.removeprefix("technique: ")), kind)]
    if kind == EventKind.NOTE:
        return [Mark(t_s, short(f"note: {label}"), kind)]
    return []


class MarkerLayer:
    """The marks' lines on ``plots`` (x: seconds before now), their labels on ``label_plot`` (one of them).

    Lines lie behind the traces (a mark never hides data); labels lie above them on a panel-coloured box, to the right
    of their line, or to its left where the plot ends."""

    def __init__(self, plots: list[pg.PlotItem], label_plot: pg.PlotItem) -> None:
        self.plots = plots
        self.label_plot = label_plot
        self.lines: dict[pg.PlotItem, list[pg.InfiniteLine]] = {p: [] for p in plots}
        self.labels: list[pg.TextItem] = []
        self.color, self.fill = "#000000", "#ffffff"
        self.font = QtGui.QFont()
        self.shown: list[tuple[Mark, int | None]] = []
        """The marks in view at the last ``show``, with their label's row (None: no room for the label)."""

    def style(self, color: str, fill: str, font_px: int) -> None:
        """Colours and text size of the lines and labels (drawn anew at the next ``show``)."""
        self.color, self.fill = color, fill
        self.font = QtGui.QFont()
        self.font.setPixelSize(font_px)
        self.font.setBold(True)
        for plot, lines in self.lines.items():
            for line in lines:
                plot.removeItem(line)
            lines.clear()
        for label in self.labels:
            self.label_plot.removeItem(label)
        self.labels.clear()
        self.shown = []

    def _line(self, plot: pg.PlotItem) -> pg.InfiniteLine:
        line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(self.color, width=2,
                                                                   style=QtCore.Qt.PenStyle.DashLine))
        line.setZValue(-5)  # behind the traces
        plot.addItem(line, ignoreBounds=True)
        return line

    def _label(self) -> pg.TextItem:
        fill = QtGui.QColor(self.fill)
        fill.setAlpha(220)
        label = pg.TextItem("", color=self.color, fill=pg.mkBrush(fill), anchor=(0, 0))
        label.setFont(self.font)
        label.textItem.document().setDocumentMargin(LABEL_MARGIN_PX)
        label.setZValue(20)  # above the traces
        self.label_plot.addItem(label, ignoreBounds=True)
        return label

    def spans(self, visible: list[Mark], px_per_s: float, now_s: float, right_px: float) -> list[tuple[float, float]]:
        """Each label's extent in pixels from the plot's left edge: right of its line, or left of it at the edge."""
        metrics = QtGui.QFontMetrics(self.font)
        out = []
        for mark in visible:
            x = right_px + (mark.t_s - now_s) * px_per_s
            width = metrics.horizontalAdvance(mark.label) + 2 * LABEL_MARGIN_PX + 2
            out.append((x, x + width) if x + width <= right_px else (x - width, x))
        return out

    def row_px(self) -> int:
        """Height of a row of labels: a label's box and a pixel."""
        return QtGui.QFontMetrics(self.font).height() + 2 * LABEL_MARGIN_PX + 3

    def rows(self, spans: list[tuple[float, float]], height_px: float, first: list[int]) -> list[int | None]:
        """Each label's row (0 at the top): the first where it clears every label already placed by ``LABEL_GAP_PX``;
        None when no row has room. Placed in the order of the indices ``first``, then the others in order."""
        count = max(1, int(height_px // self.row_px()) - 1)
        taken: list[list[tuple[float, float]]] = []
        out: list[int | None] = [None] * len(spans)
        for i in first + [i for i in range(len(spans)) if i not in first]:
            a, b = spans[i]
            row = next((r for r, used in enumerate(taken)
                        if all(b + LABEL_GAP_PX <= c or d + LABEL_GAP_PX <= a for c, d in used)), None)
            if row is None and len(taken) < count:
                row = len(taken)
                taken.append([])
            if row is not None:
                taken[row].append((a, b))
            out[i] = row
        return out

    def show(self, marks: list[Mark], now_s: float, window_s: float) -> None:
        """Put the lines and labels of the ``marks`` within ``window_s`` before ``now_s`` in place."""
        visible = sorted((m for m in marks if now_s - window_s <= m.t_s <= now_s), key=lambda m: m.t_s)
        view = self.label_plot.getViewBox()
        width_px, height_px = view.width(), view.height()
        spans = self.spans(visible, width_px / window_s if window_s > 0 else 0.0, now_s, width_px)
        rows = self.rows(spans, height_px, [i for i, m in enumerate(visible) if m.kind == EventKind.PHASE_START])
        for plot, lines in self.lines.items():
            while len(lines) < len(visible):
                lines.append(self._line(plot))
            for i, line in enumerate(lines):
                line.setVisible(i < len(visible))
                if i < len(visible):
                    line.setValue(visible[i].t_s - now_s)
        while len(self.labels) < len(visible):
            self.labels.append(self._label())
        (x0, x1), (y0, y1) = view.viewRange()
        row_px = self.row_px()
        for i, label in enumerate(self.labels):
            row = rows[i] if i < len(visible) else None
            label.setVisible(row is not None)
            if row is None:
                continue
            if label.toPlainText() != visible[i].label:
                label.setText(visible[i].label)
            left_px = spans[i][0]
            label.setPos(x0 + left_px * (x1 - x0) / max(width_px, 1.0), y1 - (row * row_px + 1) * (y1 - y0) / max(height_px, 1.0))
        self.shown = list(zip(visible, rows))
