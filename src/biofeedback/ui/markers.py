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
from PySide6 import QtCore, QtGui, QtWidgets

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


class MarkPainting(QtWidgets.QGraphicsObject):
    """The marks of one plot, painted in one go in its view box's pixels: dashed vertical lines (``lines``) or labels on
    boxes (``labels``: (box, text) in the view box's pixels). One item per plot and kind, not an item per mark: moving
    pyqtgraph lines and text items every frame cost about a millisecond of Python per frame."""

    def __init__(self, view: pg.ViewBox, z: float) -> None:
        super().__init__(view)
        self.view = view
        self.setZValue(z)
        self.setFlag(QtWidgets.QGraphicsItem.GraphicsItemFlag.ItemClipsToShape)
        self.xs_px: list[float] = []
        self.labels: list[tuple[QtCore.QRectF, str]] = []
        self.pen = QtGui.QPen()
        self.fill = QtGui.QColor()
        self.font = QtGui.QFont()
        self._rect = QtCore.QRectF()

    def set_marks(self, xs_px: list[float], labels: list[tuple[QtCore.QRectF, str]]) -> None:
        rect = self.view.boundingRect()
        if rect != self._rect:
            self.prepareGeometryChange()
            self._rect = rect
        if xs_px != self.xs_px or labels != self.labels:
            self.xs_px, self.labels = xs_px, labels
            self.update()

    def boundingRect(self) -> QtCore.QRectF:  # noqa: N802 - Qt's name
        return self._rect

    def paint(self, painter: QtGui.QPainter, *_args) -> None:
        painter.setPen(self.pen)
        height = self._rect.height()
        for x in self.xs_px:
            painter.drawLine(QtCore.QPointF(x, 0.0), QtCore.QPointF(x, height))
        painter.setFont(self.font)
        for box, text in self.labels:
            painter.fillRect(box, self.fill)
            painter.drawText(box, QtCore.Qt.AlignmentFlag.AlignCenter, text)


class MarkerLayer:
    """The marks' lines on ``plots`` (x: seconds before now), their labels on ``label_plot`` (one of them).

    Lines lie behind the traces (a mark never hides data); labels lie above them on a panel-coloured box, to the right
    of their line, or to its left where the plot ends."""

    def __init__(self, plots: list[pg.PlotItem], label_plot: pg.PlotItem) -> None:
        self.lines = {p: MarkPainting(p.getViewBox(), -5) for p in plots}  # behind the traces
        self.label_plot = label_plot
        self.labels = MarkPainting(label_plot.getViewBox(), 20)  # above them
        self.font = QtGui.QFont()
        self.shown: list[tuple[Mark, int | None]] = []
        """The marks in view at the last ``show``, with their label's row (None: no room for the label)."""

    def style(self, color: str, fill: str, font_px: int) -> None:
        """Colours and text size of the lines and labels."""
        self.font = QtGui.QFont()
        self.font.setPixelSize(font_px)
        self.font.setBold(True)
        pen = QtGui.QPen(QtGui.QColor(color), 2, QtCore.Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        background = QtGui.QColor(fill)
        background.setAlpha(220)
        for item in [*self.lines.values(), self.labels]:
            item.pen, item.fill, item.font = QtGui.QPen(pen), background, self.font
            item.labels = []  # painted anew at the next show
            item.update()
        self.labels.pen = QtGui.QPen(QtGui.QColor(color))

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
        for plot_lines in self.lines.values():
            width_px = plot_lines.view.width()
            plot_lines.set_marks([width_px + (m.t_s - now_s) * width_px / window_s for m in visible], [])
        view = self.labels.view
        width_px, height_px = view.width(), view.height()
        spans = self.spans(visible, width_px / window_s if window_s > 0 else 0.0, now_s, width_px)
        rows = self.rows(spans, height_px, [i for i, m in enumerate(visible) if m.kind == EventKind.PHASE_START])
        row_px = self.row_px()
        self.labels.set_marks([], [(QtCore.QRectF(a, 1 + row * row_px, b - a, row_px - 3), m.label)
                                   for (a, b), row, m in zip(spans, rows, visible) if row is not None])
        self.shown = list(zip(visible, rows))
