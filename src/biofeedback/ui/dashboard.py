"""The therapist's live dashboard: traces, big numbers, phase bar, markers, sensor panel.

Thin by design (STYLE.md rule 7): a ``QTimer`` pulls the newest ring-buffer snapshots (raw data from the
hub, tension and HRV from the session's one ``session.live.LiveProcessor`` on the worker) and hands numpy arrays to ``setData`` of
``ui.raster.RasterCurve`` items, which draw them as images of the plots' pixels. Nothing here filters or computes
signals, and the phases are the session's one ``session.phases.PhaseMachine``, changed on the worker's loop; gaps are NaN rows in the buffers and show as breaks.

A replay (``worker.plan.replay``) is view only: phases, markers and notes come from the recording at their
recorded times (``session.phases.RecordedPhases``), the buttons and the note field stay disabled, and the window says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from biofeedback.dsp import KUBIOS_SI, apdf_levels
from biofeedback.dsp.hrv import LIVE_WINDOW_S
from biofeedback.session.protocol import Protocol
from biofeedback.stream import RingBuffer, StreamKind
from biofeedback.session.live import TENSION_TRACE_HZ, quality_text
from biofeedback.ui.raster import RasterCurve
from biofeedback.ui.theme import AXIS_PT, LABEL_PT, LIGHT, THEMES, Theme, stylesheet
from biofeedback.ui.worker import SessionWorker
from biofeedback.vocab import SourceState, WorkerState

FRAME_MS = 16
"""Timer period of the plot refresh (about 60 frames per second)."""
NUMBERS_EVERY_S = 0.25
"""Wall seconds between updates of the big numbers, the sensor panel and the y ranges (steadier to read)."""
EMG_WINDOW_S = 10.0
HEART_WINDOW_S = 60.0
HEART_REFRESH_S = 0.1
NO_SIGNAL = "no signal"
"""What a tension tile shows while its channel carries no muscle signal (electrode off, line at the rail)."""
"""Wall seconds between updates of the heart-rate column (beats come about once a second; on a 60 s
window 0.1 s is a step of about two pixels), so each frame only redraws the fast traces."""
LATENCY_SMOOTHING = 0.1
"""Weight of a new arrival-to-paint measurement in the shown (exponentially smoothed) latency."""
SNAPSHOT_MARGIN = 1.05
Y_STEPS = 8
"""A fitted y range runs from and to whole multiples of a round step (1, 2 or 5 x 10^k) of about 1/8 of the data's span."""
Y_PAD = 0.05
"""Room above and below the data in a fitted y range, as a fraction of their span (thick lines stay inside)."""
Y_SHRINK = 0.5
"""A y range is refitted when the data (with their room) leave it or span less than this fraction of it (a fit fills
more than 0.58 of its range: 1 / (1 + 2 Y_PAD + 2 x 2.5 / Y_STEPS))."""
GUI_SHARE = 0.5
"""Most of the time the GUI thread may run: when frames (refresh, paint and the events between) cost more CPU than
half their period, on average over the last ten or so, the timer waits longer, so the acquisition thread always
gets its share of the interpreter (Qt's painting holds the GIL). CPU time, not wall time: waiting for the GIL or
for a core takes nobody's share. An average, because every tenth frame or so also redraws the heart plots or the
numbers: paced frame by frame, each of those cost the next frame's slot."""
PACING_SMOOTHING = 0.1
"""Weight of the newest frame in the average frame cost that ``GUI_SHARE`` paces by."""


def recent(buf: RingBuffer | None, rate_hz: float | None, window_s: float, now_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Samples of ``buf`` in the last ``window_s`` session seconds (all columns); empty if no buffer yet."""
    if buf is None:
        return np.empty(0), np.empty((0, 1))
    if rate_hz:
        t, x = buf.snapshot(int(window_s * rate_hz * SNAPSHOT_MARGIN) + 16)
    else:
        t, x = buf.snapshot()
    first = np.searchsorted(t, now_s - window_s * SNAPSHOT_MARGIN)  # times ascend; snapshot drops unwritten rows
    return t[first:], x[first:]


def steady_range(lo: float, hi: float, shown: tuple[float, float] | None) -> tuple[float, float] | None:
    """A y range for data from ``lo`` to ``hi`` that rarely changes: None while ``shown`` still fits them.

    Every change of a range re-ticks and redraws its axis and grid, so the range is not refitted frame by frame:
    only when the data leave it or shrink to less than ``Y_SHRINK`` of it, and then to round bounds."""
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    pad = Y_PAD * span
    if shown is not None and shown[0] <= lo - pad and hi + pad <= shown[1] and hi - lo >= Y_SHRINK * (shown[1] - shown[0]):
        return None
    rough = span / Y_STEPS
    magnitude = 10.0 ** np.floor(np.log10(rough))
    step = next(m * magnitude for m in (1.0, 2.0, 5.0, 10.0) if m * magnitude >= rough)
    fit = (float(np.floor((lo - pad) / step) * step), float(np.ceil((hi + pad) / step) * step))
    return None if shown is not None and np.allclose(fit, shown) else fit


@dataclass
class Trace:
    """One plotted curve: column ``column`` of the ring buffer that ``source()`` returns with its rate (None: irregular)."""

    curve: RasterCurve
    source: Callable[[], tuple[RingBuffer | None, float | None]]
    column: int
    heart: bool = False
    """Uses the heart-rate window (HR, RR, HRV) rather than the EMG/ECG window."""
    at_s: float = 0.0
    """Session time of the curve's last update: it holds (t - at_s, y), so x = 0 is 'now' at that update."""


class PlotCanvas(pg.GraphicsLayoutWidget):
    """The plot area; calls ``on_paint`` after every real paint (for the arrival-to-paint latency)."""

    def __init__(self) -> None:
        super().__init__()
        # Curves change shape every frame: keeping Qt's BSP index of the scene up to date costs more (about 1.5 ms
        # a frame) than searching its hundred or so items.
        self.scene().setItemIndexMethod(QtWidgets.QGraphicsScene.ItemIndexMethod.NoIndex)
        # The view paints its whole background: without this, every frame first repainted the window, the central
        # widget and the view's frame beneath the plots (three style-sheet fills of the plot area).
        self.viewport().setAttribute(QtCore.Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.on_paint: Callable[[], None] | None = None

    def paintEvent(self, ev: QtGui.QPaintEvent) -> None:  # noqa: N802 - Qt's name
        super().paintEvent(ev)
        if self.on_paint is not None:
            self.on_paint()


class StateButton(QtWidgets.QPushButton):
    """A push button wide enough for its text in bold: the theme draws a checked button and the running phase's in
    bold, but Qt sizes a button by its plain font (the bold text was clipped: "ands off (H")."""

    def sizeHint(self) -> QtCore.QSize:  # noqa: N802 - Qt's name
        hint = super().sizeHint()
        bold = QtGui.QFont(self.font())
        bold.setBold(True)
        text = self.text()
        extra_px = QtGui.QFontMetrics(bold).horizontalAdvance(text) - self.fontMetrics().horizontalAdvance(text)
        return QtCore.QSize(hint.width() + max(0, extra_px), hint.height())

    def minimumSizeHint(self) -> QtCore.QSize:  # noqa: N802 - Qt's name
        return self.sizeHint()


def _label(text: str = "", name: str = "") -> QtWidgets.QLabel:
    lab = QtWidgets.QLabel(text)
    if name:
        lab.setObjectName(name)
    return lab


class Dashboard(QtWidgets.QMainWindow):
    """Main window of a dashboard session driven by a ``SessionWorker``."""

    def __init__(self, worker: SessionWorker, protocol: Protocol, *, theme: str = "light",
                 frame_ms: int = FRAME_MS) -> None:
        super().__init__()
        self.worker = worker
        self.protocol = protocol
        self.replay = worker.plan.replay
        """The recording played back (view only), or None in a live session."""
        self.controller = worker.run.machine
        """The session's one phase machine; it lives on the worker's loop: read it here, change it with ``worker.call``."""
        worker.run.say = self._log
        self.theme: Theme = THEMES.get(theme, LIGHT)
        self.frames = 0
        """Paints of the plot area since start (for benchmarks)."""
        self.latency_ms: float | None = None
        self.summary_dialog: QtWidgets.QDialog | None = None
        self._plotted_host_ns: int | None = None
        self._windows: tuple[float, float] | None = None
        self._heart_plotted = 0.0
        self.plotted_at_s = 0.0
        """Session time of the newest frame: curves hold (t - plotted_at_s, y), so 'now' is x = 0."""
        self._last_numbers = 0.0
        self._frame_cpu_s = time.thread_time()
        """GUI-thread CPU seconds at the start of the last frame (for the pacing by ``GUI_SHARE``)."""
        self._frame_cpu_ms = 0.0
        """GUI-thread CPU per frame, averaged with ``PACING_SMOOTHING``."""
        self._target_set = False
        self._log_lines: list[str] = []
        """Lines of the session's log (appended on the worker's thread), newest last."""
        self._log_shown = 0
        self._zoomed: set[pg.PlotItem] = set()
        """Plots whose y range the user has set with the mouse: no longer fitted to the data."""
        self.traces: dict[str, Trace] = {}
        self.setWindowTitle(f"biofeedback — {worker.plan.client_id} — {protocol.name}" if self.replay is None else
                            f"biofeedback — {self._replay_text()} — {worker.plan.client_id} — {protocol.name}")
        self.resize(1600, 900)
        central = QtWidgets.QWidget()
        self.setCentralWidget(central)
        root = QtWidgets.QVBoxLayout(central)
        root.setContentsMargins(8, 8, 8, 4)
        root.addWidget(self._build_phase_bar())
        root.addWidget(self._build_marker_bar())
        middle = QtWidgets.QHBoxLayout()
        self.canvas = PlotCanvas()
        self.canvas.on_paint = self._painted
        middle.addWidget(self.canvas, 3)
        side = QtWidgets.QVBoxLayout()
        side.addWidget(self._build_numbers())
        side.addWidget(self._build_sensors(), 1)
        middle.addLayout(side, 1)
        root.addLayout(middle, 1)
        root.addLayout(self._build_status_line())
        self._build_plots()
        self._build_shortcuts()
        self.apply_theme(self.theme.name)
        self.timer = QtCore.QTimer(self)
        self.timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self.refresh)
        self.frame_ms = frame_ms
        self.timer.start(frame_ms)

    # --- building -------------------------------------------------------------------------------
    def _build_phase_bar(self) -> QtWidgets.QWidget:
        bar = QtWidgets.QFrame(objectName="panel")
        lay = QtWidgets.QHBoxLayout(bar)
        self.phase_label = _label("not started", "phase")
        self.timer_label = _label("00:00", "timer")
        self.timer_label.setMinimumWidth(230)
        lay.addWidget(self.phase_label)
        lay.addWidget(self.timer_label)
        if self.replay is not None:
            lay.addWidget(_label(f"{self._replay_text()} · view only", "replay"))
        lay.addStretch(1)
        self.phase_buttons: list[QtWidgets.QPushButton] = []
        for i, phase in enumerate(self.protocol.phases):
            b = StateButton(f"Start {phase.name} (F{i + 1})")
            b.clicked.connect(lambda _=False, i=i: self.start_phase(i))
            lay.addWidget(b)
            self.phase_buttons.append(b)
        self.end_button = QtWidgets.QPushButton("Stop replay (Ctrl+Q)" if self.replay else "End session (Ctrl+Q)")
        self.end_button.clicked.connect(self.end_session)
        lay.addWidget(self.end_button)
        return bar

    def _build_marker_bar(self) -> QtWidgets.QWidget:
        bar = QtWidgets.QFrame(objectName="panel")
        lay = QtWidgets.QHBoxLayout(bar)
        self.hands_button = StateButton("Hands on (H)")
        self.hands_button.setCheckable(True)
        self.hands_button.clicked.connect(lambda: self._mark(self.controller.hands))
        lay.addWidget(self.hands_button)
        grid = QtWidgets.QGridLayout()
        grid.setSpacing(4)
        self.technique_buttons: list[QtWidgets.QPushButton] = []
        per_row = (len(self.protocol.techniques) + 1) // 2 or 1
        for i, tech in enumerate(self.protocol.techniques):
            b = QtWidgets.QPushButton(f"{i + 1} {tech.label}")
            b.clicked.connect(lambda _=False, n=i + 1: self._mark(self.controller.technique, n))
            grid.addWidget(b, i // per_row, i % per_row)
            self.technique_buttons.append(b)
        lay.addLayout(grid, 1)
        self.note_edit = QtWidgets.QLineEdit(placeholderText="note (N to type, Enter to add)")
        self.note_edit.setMinimumWidth(260)
        self.note_edit.setEnabled(self.replay is None)
        self.note_edit.returnPressed.connect(self.add_note)
        lay.addWidget(self.note_edit)
        return bar

    def _build_numbers(self) -> QtWidgets.QWidget:
        box = QtWidgets.QGroupBox("Now")
        grid = QtWidgets.QGridLayout(box)
        self.numbers: dict[str, QtWidgets.QLabel] = {}
        self.captions: dict[str, QtWidgets.QLabel] = {}
        tiles = [("tension_l", "Tension left"), ("tension_r", "Tension right"), ("symmetry", "Symmetry L−R %"),
                 ("hr", "HR bpm"), ("rmssd", "RMSSD ms"), ("stress", f"{KUBIOS_SI.label}, {LIVE_WINDOW_S:.0f} s")]
        for i, (key, caption) in enumerate(tiles):
            cell = QtWidgets.QVBoxLayout()
            cap, num = _label(caption, "caption"), _label("--", "number")
            num.setAlignment(QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignVCenter)
            cell.addWidget(cap)
            cell.addWidget(num)
            grid.addLayout(cell, i // 2, i % 2)
            self.numbers[key], self.captions[key] = num, cap
        return box

    def _build_sensors(self) -> QtWidgets.QWidget:
        box = QtWidgets.QGroupBox("Sensors")
        lay = QtWidgets.QVBoxLayout(box)
        self.found_list = QtWidgets.QListWidget()
        self.found_list.setMaximumHeight(90)
        lay.addWidget(self.found_list)
        row = QtWidgets.QHBoxLayout()
        self.scan_button = QtWidgets.QPushButton("Scan")
        self.scan_button.clicked.connect(self.worker.rescan)
        self.connect_button = QtWidgets.QPushButton("Connect")
        self.connect_button.clicked.connect(self.connect_sensors)
        row.addWidget(self.scan_button)
        row.addWidget(self.connect_button)
        lay.addLayout(row)
        for widget in (self.found_list, self.scan_button, self.connect_button):
            widget.setVisible(self.replay is None)  # a replay's sources are the recording's
        self.sensor_status = _label("scanning…")
        self.sensor_status.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.sensor_status.setWordWrap(True)
        self.sensor_status.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop)
        lay.addWidget(self.sensor_status, 1)
        return box

    def _build_status_line(self) -> QtWidgets.QLayout:
        row = QtWidgets.QHBoxLayout()
        self.latency_label = _label("latency -- ms", "small")
        self.recording_label = _label("", "small")
        row.addWidget(self.latency_label)
        row.addWidget(self.recording_label, 1)
        row.addWidget(_label("EMG/ECG window s", "small"))
        self.emg_window = QtWidgets.QDoubleSpinBox(minimum=2.0, maximum=60.0, value=EMG_WINDOW_S, singleStep=1.0)
        row.addWidget(self.emg_window)
        row.addWidget(_label("heart window s", "small"))
        self.heart_window = QtWidgets.QDoubleSpinBox(minimum=10.0, maximum=110.0, value=HEART_WINDOW_S, singleStep=10.0)
        row.addWidget(self.heart_window)
        self.theme_box = QtWidgets.QComboBox()
        self.theme_box.addItems(sorted(THEMES))
        self.theme_box.setCurrentText(self.theme.name)
        self.theme_box.currentTextChanged.connect(self.apply_theme)
        row.addWidget(self.theme_box)
        return row

    def _plot(self, row: int, col: int, title: str, unit: str, rowspan: int = 1, bottom: bool = False) -> pg.PlotItem:
        p = self.canvas.addPlot(row=row, col=col, rowspan=rowspan)
        p.setTitle(title)
        p.setLabel("left", units=unit)
        p.showGrid(x=True, y=True, alpha=0.25)
        p.setMenuEnabled(False)
        p.hideButtons()
        p.setMouseEnabled(x=False, y=True)
        p.enableAutoRange(x=False, y=False)  # fitted by _fit_y_ranges, a few times a second
        p.sigRangeChangedManually.connect(lambda _mask, p=p: self._zoomed.add(p))
        p.getAxis("left").setWidth(62)
        p.getAxis("left").enableAutoSIPrefix(False)  # 900 ms stays "900 (ms)", never "0.9 (kms)"
        for item in (p.getAxis("left"), p.getAxis("bottom"), p.titleLabel):
            # Axes and titles redraw only when their ticks or text change; every frame blits the cached pixmap.
            item.setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)
        if bottom:
            p.setLabel("bottom", "seconds before now")
        else:
            p.hideAxis("bottom")
        return p

    def _raster(self, plot: pg.PlotItem, color: str, width: float, *, name: str | None = None,
                symbol_size: int = 0) -> RasterCurve:
        """A curve drawn as an image of the plot's pixels (``ui.raster``); aliased, odd widths (square pens)."""
        pen = pg.mkPen(color, width=width)
        pen.setCosmetic(True)
        curve = RasterCurve(pen, name, symbol_size=symbol_size)
        plot.addItem(curve, ignoreBounds=True)
        if name is not None and plot.legend is not None:
            plot.legend.addItem(curve, name)
        return curve

    def _build_plots(self) -> None:
        th = self.theme
        self.canvas.ci.setSpacing(4)
        self.plots: dict[str, pg.PlotItem] = {
            "emg_l": self._plot(0, 0, "Raw EMG left trapezius", "µV"),
            "emg_r": self._plot(1, 0, "Raw EMG right trapezius", "µV"),
            "tension": self._plot(2, 0, "Tension index", "", rowspan=2, bottom=True),
            "ecg": self._plot(0, 1, "ECG", "µV"),
            "hr": self._plot(1, 1, "Heart rate", "bpm"),
            "rr": self._plot(2, 1, "RR tachogram", "ms"),
            "hrv": self._plot(3, 1, f"RMSSD (ms) and {KUBIOS_SI.label} over {LIVE_WINDOW_S:.0f} s", "", bottom=True),
        }
        for key in ("emg_r", "tension", "ecg"):
            self.plots[key].setXLink(self.plots["emg_l"])
        for key in ("rr", "hrv"):
            self.plots[key].setXLink(self.plots["hr"])
        for key in ("tension", "hrv"):
            legend = self.plots[key].addLegend(offset=(8, 4), brush=None, labelTextSize=f"{AXIS_PT}pt")
            legend.setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)  # drawn over every frame
        def hub_stream(stream: str) -> Callable[[], tuple[RingBuffer | None, float | None]]:
            def source() -> tuple[RingBuffer | None, float | None]:
                hub = self.worker.acq.hub if self.worker.acq else None
                key = next((k for k in (hub.buffers if hub else {}) if k[0] == stream), None)
                return (hub.buffers[key], hub.rates.get(key)) if key else (None, None)
            return source

        def live_ring(attr: str, rate_hz: float | None) -> Callable[[], tuple[RingBuffer | None, float | None]]:
            return lambda: (getattr(self.worker.live, attr, None), rate_hz)

        emg, ecg, tension = hub_stream(StreamKind.EMG), hub_stream(StreamKind.ECG), live_ring("tension", TENSION_TRACE_HZ)
        hrv = live_ring("hrv", None)
        self.traces = {
            "emg_l": Trace(self._raster(self.plots["emg_l"], th.left, 1), emg, 0),
            "emg_r": Trace(self._raster(self.plots["emg_r"], th.right, 1), emg, 1),
            "tension_l": Trace(self._raster(self.plots["tension"], th.left, 3, name="left"), tension, 0),
            "tension_r": Trace(self._raster(self.plots["tension"], th.right, 3, name="right"), tension, 1),
            "ecg": Trace(self._raster(self.plots["ecg"], th.ecg, 1), ecg, 0),
            "hr": Trace(self._raster(self.plots["hr"], th.hr, 3), hub_stream(StreamKind.HR), 0, heart=True),
            "rr": Trace(self._raster(self.plots["rr"], th.rr, 3, symbol_size=7), hub_stream(StreamKind.RR), 0, heart=True),
            "rmssd": Trace(self._raster(self.plots["hrv"], th.rmssd, 3, name="RMSSD ms"), hrv, 1, heart=True),
            "stress": Trace(self._raster(self.plots["hrv"], th.stress, 3, name=KUBIOS_SI.label), hrv, 2, heart=True),
        }
        self.target_line = pg.InfiniteLine(angle=0, movable=True, label="target {value:.0f}",
                                           labelOpts={"position": 0.97, "color": th.target, "anchors": [(1, 1), (1, 1)]})
        self.target_line.setVisible(False)
        self.plots["tension"].addItem(self.target_line)
        self.reference_lines: list[pg.InfiniteLine] = []

    def _build_shortcuts(self) -> None:
        def key(seq: str, fn: Callable[[], None]) -> None:
            QtGui.QShortcut(QtGui.QKeySequence(seq), self, activated=fn)

        key("H", lambda: self._mark(self.controller.hands))
        for i in range(min(9, len(self.protocol.techniques))):
            key(str(i + 1), lambda n=i + 1: self._mark(self.controller.technique, n))
        for i in range(min(12, len(self.protocol.phases))):
            key(f"F{i + 1}", lambda i=i: self.start_phase(i))
        key("N", self.note_edit.setFocus)
        key("Ctrl+Q", self.end_session)

    # --- theme ----------------------------------------------------------------------------------
    def apply_theme(self, name: str) -> None:
        th = self.theme = THEMES.get(name, LIGHT)
        self.setStyleSheet(stylesheet(th))
        self.canvas.setBackground(th.background)
        font = QtGui.QFont()
        font.setPointSize(AXIS_PT)
        for plot in self.plots.values():
            plot.titleLabel.setAttr("color", th.text)
            plot.titleLabel.setText(plot.titleLabel.text, size=f"{AXIS_PT + 2}pt", color=th.text)
            for side in ("left", "bottom"):
                axis = plot.getAxis(side)
                axis.setPen(th.grid)
                axis.setTextPen(th.text)
                axis.setTickFont(font)
                axis.label.setDefaultTextColor(QtGui.QColor(th.text))
            if plot.legend is not None:
                plot.legend.setLabelTextColor(th.text)
                plot.legend.setBrush(pg.mkBrush(th.panel))
        colors = {"emg_l": th.left, "emg_r": th.right, "tension_l": th.left, "tension_r": th.right, "ecg": th.ecg,
                  "hr": th.hr, "rr": th.rr, "rmssd": th.rmssd, "stress": th.stress}
        for key, trace in self.traces.items():
            pen = pg.mkPen(colors[key], width=trace.curve.opts["pen"].widthF())
            pen.setCosmetic(True)
            trace.curve.setPen(pen)
        self.target_line.setPen(pg.mkPen(th.target, width=3, style=QtCore.Qt.PenStyle.DashLine))
        self.target_line.label.setColor(th.target)
        self.numbers["tension_l"].setStyleSheet(f"color: {th.left}")
        self.numbers["tension_r"].setStyleSheet(f"color: {th.right}")
        self.numbers["hr"].setStyleSheet(f"color: {th.hr}")
        self.numbers["rmssd"].setStyleSheet(f"color: {th.rmssd}")
        self.numbers["stress"].setStyleSheet(f"color: {th.stress}")
        self._draw_reference_lines()

    def _draw_reference_lines(self) -> None:
        for line in self.reference_lines:
            self.plots["tension"].removeItem(line)
        self.reference_lines = []
        live = self.worker.live
        if live is None:
            return
        th = self.theme
        styles = {"rest": QtCore.Qt.PenStyle.DashLine, "reference": QtCore.Qt.PenStyle.DotLine}
        for kind, levels in live.reference_lines().items():
            for ch, (level, color) in enumerate(zip(levels, (th.left, th.right))):
                side = "L" if ch == 0 else "R"
                line = pg.InfiniteLine(pos=float(level), angle=0, pen=pg.mkPen(color, width=2, style=styles[kind]),
                                       label=f"{kind} {side}", labelOpts={"position": 0.9 - 0.08 * ch, "color": color})
                self.plots["tension"].addItem(line)
                self.reference_lines.append(line)
        if not self._target_set and "rest" in live.reference_lines():
            self.set_target(float(np.mean(live.reference_lines()["rest"])))

    def set_target(self, level: float) -> None:
        """Put the target threshold of the tension plot at ``level`` (tension-index units)."""
        self.target_line.setVisible(True)
        self.target_line.setValue(level)
        self.target_line.label.valueChanged()  # the label skips updates while hidden
        self._target_set = True

    # --- actions ----------------------------------------------------------------------------------
    def _now_s(self) -> float:
        acq = self.worker.acq
        return acq.clock.now_s() if acq is not None else 0.0

    def _running(self) -> bool:
        """Whether the therapist can start phases and set markers (never in a replay)."""
        return self.worker.state == WorkerState.RUNNING and not self.controller.finished and self.replay is None

    def _replay_text(self) -> str:
        return f"Replay of {self.replay.name} at {self.worker.plan.speed:g}×"

    def _mark(self, action: Callable, *args) -> None:
        """A phase machine action, stamped with the session time of the click or key press, run on the worker's loop."""
        if self._running():
            self.worker.call(action, self._now_s(), *args)

    def start_phase(self, index: int) -> None:
        if self._running():
            self.worker.call(self.controller.start, index, self._now_s())

    def add_note(self) -> None:
        text = self.note_edit.text()
        if text.strip() and self._running():
            self.worker.call(self.controller.note, self._now_s(), text)
            self.note_edit.clear()
        self.note_edit.clearFocus()

    def connect_sensors(self) -> None:
        wanted = [self.found_list.item(i).data(QtCore.Qt.ItemDataRole.UserRole) for i in range(self.found_list.count())
                  if self.found_list.item(i).checkState() == QtCore.Qt.CheckState.Checked]
        self.worker.connect(wanted or None)
        self.connect_button.setEnabled(False)
        self.scan_button.setEnabled(False)

    def end_session(self) -> None:
        """End the running phase and the session; the recording closes and the summary opens."""
        if self.worker.state == WorkerState.RUNNING:
            self.worker.call(self.controller.finish, self._now_s())
        self.worker.stop()

    def _log(self, line: str) -> None:
        """A line of the session's log (from the worker's thread); the next frame shows it."""
        self._log_lines.append(line.strip())

    def _show_log(self) -> None:
        if len(self._log_lines) > self._log_shown:
            self._log_shown = len(self._log_lines)
            self.statusBar().showMessage(self._log_lines[-1], 8000)

    # --- refresh --------------------------------------------------------------------------------
    def refresh(self) -> None:
        """One frame: phases by the clock, newest data into the curves, numbers and sensor panel."""
        cpu_s = time.thread_time()
        frame_cpu_ms, self._frame_cpu_s = 1000.0 * (cpu_s - self._frame_cpu_s), cpu_s
        worker = self.worker
        now = self._now_s()
        if worker.state == WorkerState.RUNNING:
            self._baseline_target()
        self._show_log()
        if worker.acq is not None and worker.live is not None and not worker.finished:
            self._plot_newest(now)
            # one long stretch between frames (a dialog, a resize) counts as a few frames' worth, not as thirty
            self._frame_cpu_ms += PACING_SMOOTHING * (min(frame_cpu_ms, 4 * FRAME_MS) - self._frame_cpu_ms)
            interval = max(self.frame_ms, round(self._frame_cpu_ms / GUI_SHARE))
            if interval != self.timer.interval():  # setting it restarts the timer: every frame, that added ~1.5 ms
                self.timer.setInterval(interval)
        wall = time.monotonic()
        if wall - self._last_numbers >= NUMBERS_EVERY_S:
            self._last_numbers = wall
            self._fit_y_ranges()
            self._show_numbers()
            self._show_sensors()
            self._show_phase_state()
        if worker.finished and self.summary_dialog is None:
            self._session_over()

    def _plot_newest(self, now: float) -> None:
        newest = self.worker.live.values.newest_host_ns
        host_ns = newest.get(StreamKind.EMG, max(newest.values(), default=None))
        windows = (self.emg_window.value(), self.heart_window.value())
        wall = time.monotonic()
        heart_due = wall - self._heart_plotted >= HEART_REFRESH_S
        if heart_due:
            self._heart_plotted = wall
        reads: dict[RingBuffer | None, tuple[np.ndarray, np.ndarray]] = {}  # each buffer read once: (t - now, x)
        for trace in self.traces.values():
            if trace.heart and not heart_due:
                continue
            buf, rate_hz = trace.source()
            if buf not in reads:
                t, x = recent(buf, rate_hz, windows[trace.heart], now)
                reads[buf] = (t - now, x)
            t, x = reads[buf]
            trace.curve.setData(t, x[:, trace.column] if x.shape[1] > trace.column else np.full(t.size, np.nan))
            trace.at_s = now
        if windows != self._windows:
            self._windows = windows
            self.plots["emg_l"].setXRange(-windows[0], 0, padding=0)
            self.plots["hr"].setXRange(-windows[1], 0, padding=0)
        self.plotted_at_s = now
        self._plotted_host_ns = host_ns
        if not self.reference_lines and self.worker.live.reference_lines():
            self._draw_reference_lines()

    def _fit_y_ranges(self) -> None:
        """Each plot's y range around its visible data (and the calibration lines), unless the user zoomed it."""
        for key, plot in self.plots.items():
            if plot in self._zoomed:
                continue
            x_min = plot.viewRange()[0][0]
            values = [line.value() for line in self.reference_lines] if key == "tension" else []
            for item in (i for i in plot.items if isinstance(i, RasterCurve)):  # not among pyqtgraph's data items
                x, y = item.getOriginalDataset()
                if y is not None:
                    shown = y[(x >= x_min) & np.isfinite(y)]
                    values += [shown.min(), shown.max()] if shown.size else []
            fit = steady_range(min(values), max(values), plot.viewRange()[1]) if values else None
            if fit is not None:
                plot.setYRange(*fit, padding=0)

    def _painted(self) -> None:
        self.frames += 1
        acq, host_ns = self.worker.acq, self._plotted_host_ns
        if acq is None or host_ns is None:
            return
        ms = (acq.clock.now_ns() - host_ns) / acq.clock.speed / 1e6
        self.latency_ms = ms if self.latency_ms is None else self.latency_ms + LATENCY_SMOOTHING * (ms - self.latency_ms)
        self._plotted_host_ns = None

    def _baseline_target(self) -> None:
        """Without a calibration, the target starts at the median tension of the first rest phase, once it ends."""
        live, ctl = self.worker.live, self.controller
        if self._target_set or live is None or live.tension is None or not ctl.done:
            return
        first = ctl.done[0]
        if self.protocol.phases[first].kind != "rest":
            return
        levels = live.tension_levels(*ctl.history[first])
        if levels.size:
            self.set_target(float(np.mean(apdf_levels(levels, (0.5,)))))
        self._target_set = True

    def _fmt(self, v: float, digits: int = 0) -> str:
        return "--" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"

    def _show_numbers(self) -> None:
        live = self.worker.live
        if live is None:
            return
        v = live.values
        unit = live.index.unit.replace("uV", "µV")
        self.captions["tension_l"].setText(f"Tension left {unit}")
        self.captions["tension_r"].setText(f"Tension right {unit}")
        ten = v.tension + (float("nan"),) * (2 - len(v.tension))
        off = [v.no_signal(c) for c in range(2)]
        for c, (key, color) in enumerate((("tension_l", self.theme.left), ("tension_r", self.theme.right))):
            label = self.numbers[key]
            style = f"color: {color}" + (f"; font-size: {LABEL_PT + 6}pt" if off[c] else "")
            if label.styleSheet() != style:  # restyling re-polishes the label: only on a change
                label.setStyleSheet(style)
            label.setText(NO_SIGNAL if off[c] else self._fmt(ten[c]))
        self.numbers["symmetry"].setText("--" if any(off) else
                                         ("+" if v.symmetry_pct > 0 else "") + self._fmt(v.symmetry_pct))
        self.numbers["hr"].setText(self._fmt(live.hr_now_bpm()))
        self.numbers["rmssd"].setText(self._fmt(v.rmssd_ms))
        self.numbers["stress"].setText(self._fmt(v.stress_index, 1))
        if self.latency_ms is not None:
            self.latency_label.setText(f"latency {self.latency_ms:.0f} ms (arrival to paint)")

    def _show_sensors(self) -> None:
        w, th = self.worker, self.theme
        if w.state in (WorkerState.SCANNING, WorkerState.STARTING):
            self.sensor_status.setText("scanning…")
            return
        if self.found_list.count() != len(w.found):
            self.found_list.clear()
            for f in w.found:
                item = QtWidgets.QListWidgetItem(f"{f.device.name or f.device.address}  ({f.profile.name})")
                item.setData(QtCore.Qt.ItemDataRole.UserRole, f.profile.name)
                item.setCheckState(QtCore.Qt.CheckState.Checked)
                self.found_list.addItem(item)
        if w.state == WorkerState.FOUND:
            self.sensor_status.setText(f"{len(w.found)} sensor(s) found; tick the ones to use and press Connect"
                                       if w.found else "no sensor found: switch sensors on, moisten the strap, Scan")
            return
        self.scan_button.setEnabled(False)
        self.connect_button.setEnabled(False)
        if w.state == WorkerState.FAILED:
            self.sensor_status.setText(f"<span style='color:{th.warn}'>stopped: {w.error}</span>")
            return
        if w.acq is None:
            self.sensor_status.setText("connecting…")
            return
        rows = []
        for s in w.acq.sources:
            st = s.status
            color = th.ok if SourceState(st.state).fine else th.warn  # a replay: playing, then ended
            contact = "/".join("on" if c else f"<b style='color:{th.warn}'>OFF</b>" for c in st.contact) or "--"
            battery = "--" if st.battery_pct is None else f"{st.battery_pct}%"
            rows.append(f"<b>{s.name}</b><br>&nbsp;<span style='color:{color}'>{st.state}</span> · battery {battery}"
                        f" · contact {contact}<br>&nbsp;reconnects {st.reconnects} · gaps {st.gaps}")
        live = w.live
        if live is not None and live.values.quality:
            q = [f"{ch.split('_')[0]}: {quality_text(b)}" for ch, b in zip(live.emg_channels, live.values.quality)]
            rows.append("EMG signal: " + "; ".join(q))
        self.sensor_status.setText("<br>".join(rows))
        if self.replay is not None:
            self.recording_label.setText(f"replay of {self.replay} (view only, nothing is recorded)")
        else:
            problems = w.run.recording_problems()
            self.recording_label.setText((f"recording {w.path.name}" if w.path else "") + (
                f" <span style='color:{th.warn}'>· {problems[-1]} ({len(problems)} problems)</span>" if problems else ""))

    def _show_phase_state(self) -> None:
        ctl, now = self.controller, self._now_s()
        phase = ctl.phase
        if ctl.finished:
            self.phase_label.setText("session ended" if self.replay is None else "replay ended")
        elif phase is None:
            nxt = ctl.next_index()
            self.phase_label.setText("ready" if nxt is None or self.worker.state != WorkerState.RUNNING
                                     else f"next: {self.protocol.phases[nxt].name}")
        else:
            self.phase_label.setText(phase.name)
        elapsed = ctl.elapsed_s(now)
        planned = ctl.planned_s()
        text = f"{int(elapsed // 60):02d}:{int(elapsed % 60):02d}"
        if planned is not None:
            text += f" / {int(planned // 60):02d}:{int(planned % 60):02d}"
        self.timer_label.setText(text)
        running = self._running()
        for i, b in enumerate(self.phase_buttons):
            active = "true" if i == ctl.index else "false"
            if b.property("active") != active:  # re-polishing restyles and repaints the button: only on a change
                b.setProperty("active", active)
                b.style().unpolish(b)
                b.style().polish(b)
            b.setEnabled(running)
        self.hands_button.setChecked(ctl.hands_on)
        self.hands_button.setText("Hands off (H)" if ctl.hands_on else "Hands on (H)")
        for b in [self.hands_button, self.end_button, *self.technique_buttons]:
            b.setEnabled(running or (b is self.end_button and not self.worker.finished))

    # --- the end ----------------------------------------------------------------------------------
    def _session_over(self) -> None:
        self.timer.stop()
        self._show_log()
        self._show_sensors()
        self._show_phase_state()
        dialog = self.summary_dialog = QtWidgets.QDialog(self)
        dialog.setWindowTitle("Session summary" if self.replay is None else f"Session summary — {self.replay.name}")
        lay = QtWidgets.QVBoxLayout(dialog)
        outcome = self.worker.outcome
        text = _label(summary_html(outcome.summary, self.theme) if outcome is not None
                      else f"<p>The session stopped: {self.worker.error}</p>")
        text.setTextFormat(QtCore.Qt.TextFormat.RichText)
        text.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(text)
        if outcome is not None:
            verdict = _label(outcome.verdict_text)
            verdict.setWordWrap(True)
            verdict.setMaximumWidth(900)
            lay.addWidget(verdict)
        if self.worker.path is not None:
            lay.addWidget(_label(f"recording: {self.worker.path}", "small"))
        close = QtWidgets.QPushButton("Close")
        close.clicked.connect(dialog.accept)
        lay.addWidget(close)
        dialog.setStyleSheet(stylesheet(self.theme))
        dialog.show()

    def closeEvent(self, ev: QtGui.QCloseEvent) -> None:  # noqa: N802 - Qt's name
        if not self.worker.finished:
            self.end_session()
            self.worker.join(30.0)
        super().closeEvent(ev)


def summary_html(rows: list[dict], theme: Theme) -> str:
    """The before/after summary (``analysis.summary.summarize`` rows) as an HTML table."""
    channels = sorted({c for r in rows for c in (*r["emg_rms_uv"], *r.get("emg_clean_s", {}))})
    head = "".join(f"<th>EMG {c.split('_')[0]} µV</th>" for c in channels)
    cells = []
    for r in rows:
        emg = "".join(f"<td>{r['emg_rms_uv'][c]:.1f}</td>" if c in r["emg_rms_uv"] else "<td>--</td>" for c in channels)
        hr = "--" if r["hr_bpm"] is None else f"{r['hr_bpm']:.0f}"
        rm = "--" if r["rmssd_ms"] is None else f"{r['rmssd_ms']:.1f}"
        cells.append(f"<tr><td><b>{r['phase']}</b></td><td>{r['duration_s']:.0f}</td>{emg}<td>{hr}</td><td>{rm}</td></tr>")
    rest = [r for r in rows if r["phase"] != "treatment"]
    change = ""
    if len(rest) >= 2:
        before, after = rest[0], rest[-1]
        parts = []
        for c in channels:
            a, b = before["emg_rms_uv"].get(c), after["emg_rms_uv"].get(c)
            if a and b:
                parts.append(f"EMG {c.split('_')[0]} {100 * (b - a) / a:+.0f} %")
        if before["rmssd_ms"] and after["rmssd_ms"]:
            parts.append(f"RMSSD {100 * (after['rmssd_ms'] - before['rmssd_ms']) / before['rmssd_ms']:+.0f} %")
        if parts:
            change = f"<p style='font-size:16pt'><b>{after['phase']} vs {before['phase']}:</b> " + ", ".join(parts) + "</p>"
    style = f"border-collapse:collapse; color:{theme.text}"
    return (f"<h2>Before / after</h2>{change}<table cellpadding='6' style='{style}'>"
            f"<tr><th>phase</th><th>s</th>{head}<th>HR bpm</th><th>RMSSD ms</th></tr>{''.join(cells)}</table>"
            + "".join(f"<p>{r['phase']}: EMG {r['note']}</p>" for r in rows if r.get("note")))
