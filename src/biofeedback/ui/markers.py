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


class MarkerLayer:
    """The marks' lines on ``plots`` (x: seconds before now), their labels on ``label_plot`` (one of them).

    Lines lie behind the traces (a mark never hides data); labels lie above them on a panel-coloured box, to the right
    of their line, or to its left where the plot ends. All are plain Qt items (a path of the lines per plot, a box and
    a text per label) in their view box's pixels, moved once a frame: Qt paints them without calling Python (an
    ``InfiniteLine`` and a ``TextItem`` per mark, or an item painting in Python, cost 0.7-1 ms of GUI time a frame)."""

    def __init__(self, plots: list[pg.PlotItem], label_plot: pg.PlotItem) -> None:
        self.paths: dict[pg.PlotItem, QtWidgets.QGraphicsPathItem] = {}
        for plot in plots:
            path = self.paths[plot] = QtWidgets.QGraphicsPathItem(plot.getViewBox())
            path.setZValue(-5)  # behind the traces
        self.view = label_plot.getViewBox()
        self.boxes: list[QtWidgets.QGraphicsRectItem] = []
        self.font = QtGui.QFont()
        self.color, self.fill = QtGui.QColor(), QtGui.QColor()
        self.line_xs: dict[pg.PlotItem, list[float]] = {plot: [] for plot in plots}
        """Where each plot's lines are, in pixels from its view box's left edge (after the last ``show``)."""
        self.label_boxes: list[tuple[QtCore.QRectF, str]] = []
        """Each label shown and its box in the label plot's view box pixels (after the last ``show``)."""
        self.shown: list[tuple[Mark, int | None]] = []
        """The marks in view at the last ``show``, with their label's row (None: no room for the label)."""

    def style(self, color: str, fill: str, font_px: int) -> None:
        """Colours and text size of the lines and labels."""
        self.font = QtGui.QFont()
        self.font.setPixelSize(font_px)
        self.font.setBold(True)
        self.color, self.fill = QtGui.QColor(color), QtGui.QColor(fill)
        self.fill.setAlpha(220)
        pen = QtGui.QPen(self.color, 2, QtCore.Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        for path in self.paths.values():
            path.setPen(pen)
        for box in self.boxes:
            box.setBrush(self.fill)
            text = box.childItems()[0]
            text.setFont(self.font)
            text.setBrush(self.color)

    def _box(self) -> QtWidgets.QGraphicsRectItem:
        box = QtWidgets.QGraphicsRectItem(self.view)
        box.setPen(QtGui.QPen(QtCore.Qt.PenStyle.NoPen))
        box.setBrush(self.fill)
        box.setZValue(20)  # above the traces
        text = QtWidgets.QGraphicsSimpleTextItem(box)
        text.setFont(self.font)
        text.setBrush(self.color)
        return box

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
        for plot, item in self.paths.items():
            view = plot.getViewBox()
            width_px, height_px = view.width(), view.height()
            xs = [width_px + (m.t_s - now_s) * width_px / window_s for m in visible]
            if xs != self.line_xs[plot] or item.boundingRect().height() > height_px + 1:
                self.line_xs[plot] = xs
                path = QtGui.QPainterPath()
                for x in xs:
                    path.moveTo(x, 0.0)
                    path.lineTo(x, height_px)
                item.setPath(path)
        width_px, height_px = self.view.width(), self.view.height()
        spans = self.spans(visible, width_px / window_s if window_s > 0 else 0.0, now_s, width_px)
        rows = self.rows(spans, height_px, [i for i, m in enumerate(visible) if m.kind == EventKind.PHASE_START])
        row_px = self.row_px()
        self.label_boxes = [(QtCore.QRectF(a, 1 + row * row_px, b - a, row_px - 3), m.label)
                            for (a, b), row, m in zip(spans, rows, visible) if row is not None]
        while len(self.boxes) < len(self.label_boxes):
            self.boxes.append(self._box())
        for i, box in enumerate(self.boxes):
            box.setVisible(i < len(self.label_boxes))
            if i < len(self.label_boxes):
                rect, label = self.label_boxes[i]
                box.setRect(rect)
                text = box.childItems()[0]
                if text.text() != label:
                    text.setText(label)
                text.setPos(rect.left() + LABEL_MARGIN_PX + 1, rect.top() + LABEL_MARGIN_PX)
        self.shown = list(zip(visible, rows))
