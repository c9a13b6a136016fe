"""Dense traces drawn into a numpy image at the screen's pixels: raw EMG, ECG and the tension index.

Drawn as a path by pyqtgraph, a 20,000-sample trace cost about 1 ms per frame in Python (peak downsampling,
bounds, line segments) and as much again in Qt's stroker. ``RasterCurve`` keeps the samples as they are handed
to ``setData`` and, when Qt paints it, rasterises them in one compiled pass into an image of exactly the plot's
device pixels, which Qt then blits: per pixel column the vertical span that the polyline covers there. That is
peak downsampling at one min/max pair per pixel column, clipped to the view, with aliased 1-pixel (or wider,
square) pens. NaN samples break the line (gaps show as breaks); a lone sample between two gaps is one dot.

The kernels are compiled with numba and cached like ``biofeedback.dsp``'s; ``load_kernels()`` compiles or
loads them before a session starts, so the first frame never holds up acquisition.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pyqtgraph as pg
from numba import njit
from PySide6 import QtCore, QtGui

_EMPTY = np.empty(0)


@njit(cache=True)
def column_spans(x: np.ndarray, y: np.ndarray, scale_x: float, offset_x: float, scale_y: float, offset_y: float,
                 width: int, height: int, lo: np.ndarray, hi: np.ndarray, dot: int = 0) -> None:
    """Rows ``lo[c]..hi[c]`` that the polyline through the samples (``x``, ``y``) covers in each pixel column ``c``
    of a ``width`` x ``height`` image; ``lo[c] > hi[c]`` where it covers none.

    A sample is at pixel (``x * scale_x + offset_x``, ``y * scale_y + offset_y``); ``x`` ascends. A segment with
    a NaN end is not drawn, so NaN samples break the line; a lone finite sample is one pixel. With ``dot`` > 0
    each finite sample is also a square of ``2 dot + 1`` pixels (where it overlaps the line's span in a column, the
    two merge into one span). Rows and columns outside the image are clipped away."""
    y_min = np.full(width, np.inf)
    y_max = np.full(width, -np.inf)
    far = float(width + 1)
    prev_ok = False
    prev_col = 0
    prev_x = prev_y = 0.0
    for i in range(x.size):
        px = x[i] * scale_x + offset_x
        py = y[i] * scale_y + offset_y
        ok = math.isfinite(px) and math.isfinite(py)
        if ok:
            col = int(math.floor(min(max(px, -1.0), far)))
            if 0 <= col < width:
                if py < y_min[col]:
                    y_min[col] = py
                if py > y_max[col]:
                    y_max[col] = py
            if dot > 0 and -dot - 1.0 <= px < width + dot + 1.0:  # not from col: that is clamped to the image's sides
                centre = int(math.floor(px))
                for c in range(max(centre - dot, 0), min(centre + dot, width - 1) + 1):
                    y_min[c] = min(y_min[c], py - dot)
                    y_max[c] = max(y_max[c], py + dot)
            if prev_ok and col != prev_col:
                # a segment across columns: in each column it crosses, the part of it inside that column
                xa, ya, xb, yb = prev_x, prev_y, px, py
                if xb < xa:
                    xa, ya, xb, yb = xb, yb, xa, ya
                slope = (yb - ya) / (xb - xa)
                for c in range(max(min(col, prev_col), 0), min(max(col, prev_col), width - 1) + 1):
                    y0 = ya + slope * (max(xa, float(c)) - xa)
                    y1 = ya + slope * (min(xb, float(c + 1)) - xa)
                    y_min[c] = min(y_min[c], y0, y1)
                    y_max[c] = max(y_max[c], y0, y1)
            prev_col, prev_x, prev_y = col, px, py
        prev_ok = ok
    for c in range(width):
        if y_min[c] > y_max[c] or y_max[c] < 0.0 or y_min[c] >= height:
            lo[c], hi[c] = height, -1
        else:
            # clamped before the cast: a float beyond the int64 range does not convert (1e20 became a negative row)
            lo[c] = max(int(math.floor(max(y_min[c], -1.0))), 0)
            hi[c] = min(int(math.floor(min(y_max[c], float(height)))), height - 1)


@njit(cache=True)
def fill_spans(image: np.ndarray, lo: np.ndarray, hi: np.ndarray, color: np.uint32, half_width: int,
               rows: tuple[int, int]) -> tuple[int, int]:
    """Paint each column's span ``lo[c]..hi[c]`` into ``image`` (rows x columns of 32-bit pixels) in ``color``,
    grown by ``half_width`` pixels on every side (a square pen ``2 half_width + 1`` pixels wide), on a
    transparent background; returns the first and last row painted (first > last if none).

    Only rows ``rows[0]..rows[1]`` (those painted last time) and the new ones are written: the rest of the image
    is already transparent. Row by row, so that the writes run along memory."""
    height, width = image.shape
    top = np.empty(width, np.int64)
    bottom = np.empty(width, np.int64)
    first, last = height, -1
    for c in range(width):
        top[c], bottom[c] = height, -1
        for cc in range(max(c - half_width, 0), min(c + half_width, width - 1) + 1):
            if lo[cc] <= hi[cc]:
                top[c] = min(top[c], max(lo[cc] - half_width, 0))
                bottom[c] = max(bottom[c], min(hi[cc] + half_width, height - 1))
        first = min(first, top[c])
        last = max(last, bottom[c])
    for r in range(min(first, rows[0]), max(last, rows[1]) + 1):
        line = image[r]
        for c in range(width):
            line[c] = color if top[c] <= r <= bottom[c] else 0
    return first, last


def load_kernels() -> float:
    """Compile the kernels, or load them from numba's cache; returns the wall seconds it took."""
    start = time.perf_counter()
    lo, hi = np.empty(4, np.int64), np.empty(4, np.int64)
    column_spans(np.array([0.5, 2.5]), np.array([0.5, 2.5]), 1.0, 0.0, 1.0, 0.0, 4, 4, lo, hi, 1)
    fill_spans(np.zeros((4, 4), np.uint32), lo, hi, np.uint32(0xFF000000), 1, (0, -1))
    return time.perf_counter() - start


def premultiplied_argb(color: QtGui.QColor) -> np.uint32:
    """``color`` as one pixel of a ``QImage.Format_ARGB32_Premultiplied`` image."""
    a = color.alpha()
    r, g, b = (round(v * a / 255) for v in (color.red(), color.green(), color.blue()))
    return np.uint32((a << 24) | (r << 16) | (g << 8) | b)


class RasterCurve(pg.GraphicsObject):
    """A curve for a ``ViewBox`` that draws itself as an image of the view's device pixels (see the module).

    The calls the dashboard and its legend use are those of ``pg.PlotDataItem``: ``setData``, ``setPen``,
    ``getOriginalDataset``, ``opts['pen']``, ``name()``. Add it to a plot with ``plot.addItem``; it is not one of
    the plot's data items (no auto range, no downsampling settings: it needs none)."""

    def __init__(self, pen: QtGui.QPen, name: str | None = None, *, symbol_size: int = 0) -> None:
        """``symbol_size`` > 0: a square dot of about that many pixels at every sample (as the RR tachogram's beats)."""
        super().__init__()
        self._symbol_size = symbol_size
        self.opts = {"pen": pen, "symbol": None, "antialias": False, "name": name}
        self._x = _EMPTY
        self._y = _EMPTY
        self._color = premultiplied_argb(pen.color())
        self._half_width = max(0, round(pen.widthF()) // 2)
        self._dot = max(0, round((symbol_size - 1) / 2) - self._half_width) if symbol_size else 0
        self._image: np.ndarray = np.zeros((0, 0), np.uint32)
        self._qimage: QtGui.QImage | None = None
        """A QImage on ``_image``'s memory (no copy)."""
        self._spans = (np.empty(0, np.int64), np.empty(0, np.int64))
        self._painted_rows = (0, -1)
        """Rows of ``_image`` painted last time (cleared before the next paint)."""
        self._view_rect = QtCore.QRectF()

    # --- the PlotDataItem calls ---------------------------------------------------------------------------------
    def setData(self, x: np.ndarray, y: np.ndarray) -> None:  # noqa: N802 - pyqtgraph's name
        """New samples (x ascending; NaN in either breaks the line), kept as contiguous float arrays (a column of a
        ring-buffer snapshot is copied: the kernels are compiled for contiguous arrays only, by ``load_kernels``,
        so that no frame ever waits for numba)."""
        x, y = np.ascontiguousarray(x, dtype=float), np.ascontiguousarray(y, dtype=float)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(f"x and y must be 1-d arrays of one length, not {x.shape} and {y.shape}")
        self._x, self._y = x, y
        self.update()

    def getOriginalDataset(self) -> tuple[np.ndarray | None, np.ndarray | None]:  # noqa: N802 - pyqtgraph's name
        return (self._x, self._y) if self._x.size else (None, None)

    def setPen(self, pen: QtGui.QPen) -> None:  # noqa: N802 - pyqtgraph's name
        self.opts["pen"] = pen
        self._color = premultiplied_argb(pen.color())
        self._half_width = max(0, round(pen.widthF()) // 2)
        self._dot = max(0, round((self._symbol_size - 1) / 2) - self._half_width) if self._symbol_size else 0
        self.update()

    def name(self) -> str | None:
        return self.opts["name"]

    # --- QGraphicsItem ----------------------------------------------------------------------------------------
    def viewRangeChanged(self) -> None:  # noqa: N802 - pyqtgraph's hook
        self.prepareGeometryChange()
        view = self.getViewBox()  # not self.viewRect(): pyqtgraph may still have the old one cached here
        self._view_rect = QtCore.QRectF() if view is None else view.viewRect()

    def boundingRect(self) -> QtCore.QRectF:  # noqa: N802 - Qt's name
        """The whole view: the image covers the plot's data area, and nothing outside it."""
        return self._view_rect

    def paint(self, p: QtGui.QPainter, *args) -> None:
        if not self._x.size or self._view_rect.isEmpty():
            return
        tr = p.transform()
        if tr.m12() != 0.0 or tr.m21() != 0.0:
            return  # views are never rotated here
        dpr = p.device().devicePixelRatioF()
        area = tr.mapRect(self._view_rect)  # logical pixels; the image is made in device pixels (x dpr), whole ones
        left, top = math.floor(area.left() * dpr), math.floor(area.top() * dpr)
        w = int(math.ceil(area.right() * dpr)) - left
        h = int(math.ceil(area.bottom() * dpr)) - top
        if w <= 0 or h <= 0:
            return
        if self._image.shape != (h, w):
            self._image = np.zeros((h, w), np.uint32)
            self._qimage = pg.functions.ndarray_to_qimage(self._image, QtGui.QImage.Format.Format_ARGB32_Premultiplied)
            self._spans = (np.empty(w, np.int64), np.empty(w, np.int64))
            self._painted_rows = (0, -1)
        lo, hi = self._spans
        column_spans(self._x, self._y, tr.m11() * dpr, tr.dx() * dpr - left, tr.m22() * dpr, tr.dy() * dpr - top,
                     w, h, lo, hi, self._dot)
        # pen widths and dots in device pixels, as Qt draws cosmetic pens
        first, last = self._painted_rows = fill_spans(self._image, lo, hi, self._color, self._half_width,
                                                      self._painted_rows)
        if first > last:
            return
        p.save()
        p.resetTransform()
        # target = source / dpr: one image pixel on one device pixel, at whole device pixels (no resampling)
        p.drawImage(QtCore.QRectF(left / dpr, (top + first) / dpr, w / dpr, (last + 1 - first) / dpr), self._qimage,
                    QtCore.QRectF(0, first, w, last + 1 - first))
        p.restore()
