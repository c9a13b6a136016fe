"""The raster traces (``ui.raster``): the pixels a polyline covers, against an independent geometric reference
and against Qt drawing the same polyline with pyqtgraph's own curve."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6 import QtGui
from scipy import ndimage

from biofeedback.ui.raster import RasterCurve, column_spans, fill_spans, premultiplied_argb


def reference_spans(x: np.ndarray, y: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows covered per pixel column, worked out another way: within a column, a polyline's y runs between the
    extremes of its samples inside the column and of its values where it crosses the column's two edges.
    Each run of finite samples is a separate polyline (NaN breaks the line)."""
    y_min, y_max = np.full(width, np.inf), np.full(width, -np.inf)
    finite = np.isfinite(x) & np.isfinite(y)
    edges = np.flatnonzero(np.diff(np.r_[0, finite.astype(int), 0]))
    for a, b in zip(edges[::2], edges[1::2]):
        xs, ys = x[a:b], y[a:b]
        cols = np.floor(xs).astype(int)
        inside = (cols >= 0) & (cols < width)
        np.minimum.at(y_min, cols[inside], ys[inside])
        np.maximum.at(y_max, cols[inside], ys[inside])
        for edge in range(width + 1):  # the line's value on the edge between columns edge-1 and edge
            if xs[0] < edge < xs[-1]:
                v = np.interp(edge, xs, ys)
                for c in (edge - 1, edge):
                    if 0 <= c < width:
                        y_min[c], y_max[c] = min(y_min[c], v), max(y_max[c], v)
    drawn = (y_min <= y_max) & (y_max >= 0) & (y_min < height)
    lo = np.where(drawn, np.clip(np.floor(y_min), 0, height - 1), height).astype(np.int64)
    hi = np.where(drawn, np.clip(np.floor(y_max), 0, height - 1), -1).astype(np.int64)
    return lo, hi


def spans(x, y, width, height, scale=(1.0, 0.0, 1.0, 0.0), dot=0):
    lo, hi = np.empty(width, np.int64), np.empty(width, np.int64)
    column_spans(np.asarray(x, float), np.asarray(y, float), *scale, width, height, lo, hi, dot)
    return lo, hi


@pytest.mark.parametrize("n", [20_000, 300, 40])
def test_spans_match_the_geometric_reference(n):
    """Dense (40 samples per column, as raw EMG), near one per column (tension) and sparse (heart rate)."""
    rng = np.random.default_rng(n)
    width, height = 500, 120
    x = np.sort(rng.uniform(-20, width + 20, n))
    y = 60 + 45 * np.sin(x / 40) + rng.standard_normal(n) * 8  # leaves the image at the top and bottom now and then
    lo, hi = spans(x, y, width, height)
    ref_lo, ref_hi = reference_spans(x, y, width, height)
    np.testing.assert_array_equal(lo, ref_lo)
    np.testing.assert_array_equal(hi, ref_hi)
    assert (hi >= lo).sum() > 0.9 * width  # the line crosses the whole image


def test_spans_use_the_pixel_transform():
    """Data coordinates through scale and offset give the spans of the transformed samples."""
    rng = np.random.default_rng(1)
    t = np.linspace(-10.0, 0.0, 3000)
    v = rng.standard_normal(t.size) * 40
    scale = (50.0, 500.0, -0.4, 60.0)  # 10 s over 500 px; +150 µV at the top, -150 µV at the bottom
    lo, hi = spans(t, v, 500, 120, scale)
    ref = reference_spans(t * scale[0] + scale[1], v * scale[2] + scale[3], 500, 120)
    np.testing.assert_array_equal(lo, ref[0])
    np.testing.assert_array_equal(hi, ref[1])


def test_nan_breaks_the_line_and_a_lone_sample_is_a_dot():
    x = np.array([0.5, 10.5, 20.5, 30.5, 40.5, 50.5, 60.5])
    y = np.array([5.5, 5.5, np.nan, 7.5, np.nan, 9.5, 9.5])
    lo, hi = spans(x, y, 64, 16)
    drawn = np.flatnonzero(hi >= lo)
    np.testing.assert_array_equal(drawn, np.r_[0:11, 30, 50:61])  # nothing from 10.5 to 30.5 or 30.5 to 50.5
    assert lo[30] == hi[30] == 7


def test_samples_outside_the_image_are_clipped():
    x = np.array([-5.0, 5.0, 15.0, 25.0])
    y = np.array([-50.0, 5.0, 50.0, 50.0])
    lo, hi = spans(x, y, 20, 10)
    # from (-5, -50) to (5, 5): above the image until column 4 (y 0.5 to 5.0 at its right edge); then to (15, 50): leaves it at the
    # bottom in column 6 (y 9.5 to 14, row 9 only); nothing below it
    assert (hi[:4] < lo[:4]).all()
    assert (lo[4], hi[4]) == (0, 5) and (lo[5], hi[5]) == (5, 9) and (lo[6], hi[6]) == (9, 9)
    assert (hi[7:] < lo[7:]).all()


@pytest.mark.parametrize("half_width", [0, 1, 2])
def test_fill_paints_the_spans_grown_by_the_pen_and_clears_the_last_frame(half_width):
    rng = np.random.default_rng(half_width)
    height, width = 40, 60
    image = np.zeros((height, width), np.uint32)
    color = np.uint32(0xFF123456)
    painted = (0, -1)
    for _ in range(5):  # each frame over the last: nothing of an earlier frame may stay
        x = np.sort(rng.uniform(0, width, 30))
        y = rng.uniform(5, 35, 30) + rng.uniform(-30, 30)
        lo, hi = spans(x, y, width, height)
        painted = fill_spans(image, lo, hi, color, half_width, painted)
        rows = np.arange(height)[:, None]
        covered = (rows >= lo[None, :]) & (rows <= hi[None, :])
        grown = covered.copy()
        for dr in range(-half_width, half_width + 1):
            for dc in range(-half_width, half_width + 1):
                shifted = np.roll(np.roll(covered, dr, axis=0), dc, axis=1)
                if dr > 0:
                    shifted[:dr] = False
                elif dr < 0:
                    shifted[dr:] = False
                if dc > 0:
                    shifted[:, :dc] = False
                elif dc < 0:
                    shifted[:, dc:] = False
                grown |= shifted
        np.testing.assert_array_equal(image == color, grown)
        assert ((image == color) | (image == 0)).all()
        painted_rows = np.flatnonzero(grown.any(axis=1))
        assert painted == ((painted_rows[0], painted_rows[-1]) if painted_rows.size else (height, -1))


def test_premultiplied_colour():
    assert premultiplied_argb(QtGui.QColor(255, 0, 0)) == 0xFFFF0000
    assert premultiplied_argb(QtGui.QColor(200, 100, 50, 128)) == (128 << 24) | (100 << 16) | (50 << 8) | 25


def render(item, x, y, size=(400, 200)) -> np.ndarray:
    """``item`` holding (x, y) in a plot of x 0..10, y -1..1 drawn offscreen; the view's pixels as RGB rows."""
    plot = pg.PlotWidget()
    plot.resize(*size)
    plot.setBackground("w")
    plot.hideAxis("left")
    plot.hideAxis("bottom")
    plot.getPlotItem().setContentsMargins(0, 0, 0, 0)
    plot.addItem(item, ignoreBounds=True)
    item.setData(x, y)
    plot.setXRange(0, 10, padding=0)
    plot.setYRange(-1, 1, padding=0)
    grabbed = plot.grab().toImage()
    dpr = grabbed.devicePixelRatio()  # the grab is in device pixels; the view's rectangle in logical ones
    image = grabbed.convertToFormat(QtGui.QImage.Format.Format_RGB32)
    pixels = np.frombuffer(image.constBits(), np.uint32).reshape(image.height(), image.bytesPerLine() // 4)
    view = plot.getPlotItem().vb.sceneBoundingRect()
    # inside the view's edges by 2 px: where the line starts, Qt's flat cap ends at it, our square pen 1 px beyond
    rows = slice(math.ceil(view.top() * dpr) + 2, math.floor(view.bottom() * dpr) - 2)
    cols = slice(math.ceil(view.left() * dpr) + 2, math.floor(view.right() * dpr) - 2)
    return pixels[rows, cols] & 0xFFFFFF


def blue(width: int) -> QtGui.QPen:
    pen = pg.mkPen((0, 0, 255), width=width)
    pen.setCosmetic(True)
    return pen


@pytest.mark.parametrize("width", [1, 3])
def test_on_screen_it_covers_what_pyqtgraph_draws(qtbot, width):
    """The same polyline drawn by ``RasterCurve`` and by pyqtgraph's ``PlotCurveItem`` (aliased, same pen): every
    pixel either paints lies within one pixel of a pixel the other paints, and the gap stays blank.

    Not pixel for pixel: Qt's line rasteriser picks the pixel nearest the line per row or column, ours every
    pixel the line passes through, so steep segments differ by a pixel at column edges."""
    x = np.linspace(0.0, 10.0, 4001)
    y = 0.6 * np.sin(2 * np.pi * 0.7 * x) + 0.2 * np.sin(2 * np.pi * 9.0 * x)
    y[(x > 4.0) & (x < 5.0)] = np.nan
    ours = render(RasterCurve(blue(width)), x, y) == 0x0000FF
    theirs = render(pg.PlotCurveItem(pen=blue(width), connect="finite", antialias=False), x, y) == 0x0000FF
    assert ours.shape == theirs.shape and theirs.sum() > 1000
    near = np.ones((3, 3), bool)
    assert not (ours & ~ndimage.binary_dilation(theirs, near)).any()
    assert not (theirs & ~ndimage.binary_dilation(ours, near)).any()
    assert 0.9 < ours.sum() / theirs.sum() < 1.15
    cols = np.arange(ours.shape[1]) / ours.shape[1]  # x from 0 to 10 across the view
    assert not ours[:, (cols > 0.41) & (cols < 0.49)].any()


def test_dataset_and_pen_as_pyqtgraph_items(qtbot):
    curve = RasterCurve(blue(3), "left")
    assert curve.getOriginalDataset() == (None, None) and curve.name() == "left"
    x, y = np.arange(5.0), np.ones(5)
    curve.setData(x, y)
    got = curve.getOriginalDataset()
    np.testing.assert_array_equal(got[0], x)
    np.testing.assert_array_equal(got[1], y)
    red = pg.mkPen((255, 0, 0), width=1)
    curve.setPen(red)
    assert curve.opts["pen"] is red
    on_screen = render(curve, np.linspace(0, 10, 50), np.zeros(50))
    assert (on_screen == 0xFF0000).sum(axis=0).max() == 1  # a 1-pixel red line now


def test_dots_are_squares_at_the_samples():
    """``dot`` d: a (2d + 1)-pixel square around every finite sample, on top of the line between them."""
    x = np.array([5.5, 20.5, np.nan, 32.5])
    y = np.array([10.5, 10.5, np.nan, 4.5])
    lo, hi = spans(x, y, 40, 20, dot=2)
    for c in range(3, 8):
        assert (lo[c], hi[c]) == (8, 12)  # the square around (5.5, 10.5)
    for c in range(8, 18):
        assert (lo[c], hi[c]) == (10, 10)  # the line alone
    for c in range(30, 35):
        assert (lo[c], hi[c]) == (2, 6)  # a lone sample: its square only
    assert (hi[23:30] < lo[23:30]).all() and (hi[35:] < lo[35:]).all()


def test_mismatched_data_is_refused():
    """The kernel reads y by x's indices: x and y of different lengths would read past the end."""
    curve = RasterCurve(blue(1))
    with pytest.raises(ValueError, match="one length"):
        curve.setData(np.arange(5.0), np.arange(4.0))
    assert curve.getOriginalDataset() == (None, None)


def test_off_view_samples_leave_no_dots_at_the_edges_and_huge_values_stay_drawn():
    """Samples kept just outside the view (the window's margin) draw no dot at the image's sides; a value far
    beyond the view still draws the part of its segment inside it."""
    lo, hi = spans(np.array([-100.5, -50.5]), np.array([10.5, 10.5]), 40, 20, dot=2)
    assert (hi < lo).all()
    lo, hi = spans(np.array([1000.5]), np.array([10.5]), 40, 20, dot=2)
    assert (hi < lo).all()
    lo, hi = spans(np.array([-1.5]), np.array([10.5]), 40, 20, dot=2)  # its square reaches column 0
    assert (lo[0], hi[0]) == (8, 12) and (hi[1:] < lo[1:]).all()
    lo, hi = spans(np.array([0.5, 0.7]), np.array([5.0, 1e20]), 10, 20)
    assert (lo[0], hi[0]) == (5, 19)
    lo, hi = spans(np.array([0.5, 0.7]), np.array([15.0, -1e20]), 10, 20)
    assert (lo[0], hi[0]) == (0, 15)


@pytest.mark.parametrize("scale", ["1.25", "2"])
def test_on_screen_at_a_scaled_display(scale):
    """The same on-screen comparison with Qt's display scaling (a laptop at 125 %, a 4K screen at 200 %): the image
    is made in whole device pixels and drawn one image pixel on one device pixel. Qt reads the scale factor when
    the application starts, so the comparison runs in a new process."""
    env = {**os.environ, "QT_SCALE_FACTOR": scale, "QT_QPA_PLATFORM": "offscreen"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
                          "-k", "covers_what_pyqtgraph_draws"], env=env, capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0 and "2 passed" in run.stdout, run.stdout[-3000:] + run.stderr[-2000:]
