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
from biofeedback.ui.keys import WindowKeys
from biofeedback.ui.markers import Mark, MarkerLayer, marks_of_event
from biofeedback.ui.raster import RasterCurve
from biofeedback.ui.sizes import REFERENCE_PX, Sizes, sizes_for
from biofeedback.ui.theme import LIGHT, THEMES, Theme, stylesheet
from biofeedback.ui.window_size import remember_size, restore_size
from biofeedback.ui.worker import SessionWorker
from biofeedback.vocab import EventKind, SourceState, WorkerState

WINDOW_NAME = "session"
"""Name of the session window's remembered size (``ui.window_size``)."""
DEFAULT_SIZE_PX = (1600, 900)
"""Size of the session window on its first run, on a screen that has room for it (a smaller screen: maximised)."""
MIN_SIZE_PX = (1024, 600)
"""Least size of the session window. Set on the window, so that its layout's minimum (which grows with the text
sizes of a large window) never keeps the window from shrinking: the text sizes follow the new size
(``ui.sizes``), and at the smallest sizes everything fits 1366x700."""
FRAME_MS = 16
"""Timer period of the plot refresh (about 60 frames per second)."""
NUMBERS_EVERY_S = 0.25
"""Wall seconds between updates of the big numbers, the sensor panel and the y ranges (steadier to read)."""
EMG_WINDOW_S = 10.0
HEART_WINDOW_S = 60.0
NO_SIGNAL = "no signal"
"""What a tension tile shows while its channel carries no muscle signal (electrode off, line at the rail)."""
SYMMETRY_CAPTION = "Symmetry L−R"
"""Caption of the symmetry tile, in %; the scale it is computed on follows in brackets (``LiveValues.symmetry_scale``,
itself a percentage: short, so the tiles of a 1366x768 screen keep their captions whole)."""
HEART_REFRESH_S = 0.1
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
        """The end-of-session dialog, once it shows the recording's summary and verdict."""
        self.early_summary: QtWidgets.QDialog | None = None
        """The same dialog while it shows the summary of the live values (``SessionRun.live_summary``, there as soon as
        the recording closes) and the verdict is still being computed (a long session's analysis takes a while)."""
        self.early_before_outcome = False
        """Whether the live summary was on screen before the outcome was ready."""
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
        self.marks: list[Mark] = []
        """What the traces mark (``ui.markers``), from the session's events; appended on the worker's thread."""
        self.end_question: QtWidgets.QMessageBox | None = None
        """The open "End the session?" question, if any."""
        self.sizes: Sizes | None = None
        self._ended = False
        """``end_session`` was called (the session is ending, whatever the worker says yet)."""
        self._maximise_at: QtCore.QSize | None = None
        """The default size on a screen smaller than it: shown maximised if the window still has it."""
        self._closing = False
        """The window's close button asked to end the session: close once it ends."""
        self._note_at_s: float | None = None
        """Session time N was pressed (the note's time), until the note is added or dropped."""
        self.setWindowTitle(f"biofeedback — {worker.plan.client_id} — {protocol.name}" if self.replay is None else
                            f"biofeedback — {self._replay_text()} — {worker.plan.client_id} — {protocol.name}")
        central = QtWidgets.QWidget()
        self.setCentralWidget(central)
        root = QtWidgets.QVBoxLayout(central)
        root.setContentsMargins(6, 6, 6, 2)
        root.setSpacing(4)
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
        self.markers = {"emg": MarkerLayer([self.plots[k] for k in ("emg_l", "emg_r", "tension", "ecg")],
                                           self.plots["tension"]),
                        "heart": MarkerLayer([self.plots[k] for k in ("hr", "rr", "hrv")], self.plots["hr"])}
        if self.replay is None:
            worker.run.event_listeners.append(self._event)
        else:
            self._replay_marks()
        for widget in self.findChildren(QtWidgets.QWidget):
            # Only the note field takes the keyboard: a focused spin box, button or list kept H, 1-7 and N (issue 17).
            if widget is not self.note_edit:
                widget.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.note_edit.setFocusPolicy(QtCore.Qt.FocusPolicy.ClickFocus)
        self.keys = self._build_keys()
        self.setMinimumSize(*MIN_SIZE_PX)
        self._initial_size()
        self.apply_theme(self.theme.name)
        self.timer = QtCore.QTimer(self)
        self.timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self.refresh)
        self.frame_ms = frame_ms
        self.timer.start(frame_ms)

    # --- building -------------------------------------------------------------------------------
    def _build_phase_bar(self) -> QtWidgets.QWidget:
        """The running phase (name, clock, the protocol's instruction), the phase buttons and End session."""
        bar = QtWidgets.QFrame(objectName="panel")
        grid = QtWidgets.QGridLayout(bar)
        grid.setContentsMargins(8, 4, 8, 4)
        grid.setVerticalSpacing(2)
        self.phase_label = _label("not started", "phase")
        self.timer_label = _label("00:00", "timer")
        grid.addWidget(self.phase_label, 0, 0)
        grid.addWidget(self.timer_label, 0, 1)
        grid.setHorizontalSpacing(16)
        grid.setColumnStretch(2, 1)
        if self.replay is not None:
            banner = _label(f"{self._replay_text()} · view only", "replay")
            banner.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
            banner.setToolTip(banner.text())  # a long file name is cut, not the window widened
            grid.addWidget(banner, 1, 3, 1, 1 + len(self.protocol.phases))
        self.phase_buttons: list[QtWidgets.QPushButton] = []
        for i, phase in enumerate(self.protocol.phases):
            b = StateButton(self._phase_button_text(i))
            b.clicked.connect(lambda _=False, i=i: self.phase_key(i))
            grid.addWidget(b, 0, 3 + i)
            self.phase_buttons.append(b)
        self.end_button = QtWidgets.QPushButton("Stop replay (Ctrl+Q)" if self.replay else "End session (Ctrl+Q)")
        self.end_button.clicked.connect(self.ask_to_end)
        grid.addWidget(self.end_button, 0, 3 + len(self.phase_buttons))
        self.instruction_label = _label("", "instruction")
        self.instruction_label.setWordWrap(True)
        self.instruction_label.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored,
                                             QtWidgets.QSizePolicy.Policy.Preferred)
        grid.addWidget(self.instruction_label, 1, 0, 1, 4 + len(self.phase_buttons) if self.replay is None else 3)
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
        per_row = (len(self.protocol.techniques) + 1) // 2 if len(self.protocol.techniques) > 4 else 4
        for i, tech in enumerate(self.protocol.techniques):
            b = QtWidgets.QPushButton(f"{i + 1} {tech.label}")
            b.clicked.connect(lambda _=False, n=i + 1: self._mark(self.controller.technique, n))
            grid.addWidget(b, i // per_row, i % per_row)
            self.technique_buttons.append(b)
        lay.addLayout(grid, 3)
        self.note_edit = QtWidgets.QLineEdit(placeholderText="note: N, type, Enter")
        self.note_edit.setEnabled(self.replay is None)
        self.note_edit.returnPressed.connect(self.add_note)
        lay.addWidget(self.note_edit, 1)
        lay.setContentsMargins(8, 4, 8, 4)
        return bar

    def _build_numbers(self) -> QtWidgets.QWidget:
        box = QtWidgets.QGroupBox("Now")
        grid = QtWidgets.QGridLayout(box)
        self.numbers: dict[str, QtWidgets.QLabel] = {}
        self.captions: dict[str, QtWidgets.QLabel] = {}
        tiles = [("tension_l", "Tension left"), ("tension_r", "Tension right"), ("symmetry", SYMMETRY_CAPTION),
                 ("hr", "HR bpm"), ("rmssd", "RMSSD ms"), ("stress", f"{KUBIOS_SI.label}, {LIVE_WINDOW_S:.0f} s")]
        for i, (key, caption) in enumerate(tiles):
            cell = QtWidgets.QVBoxLayout()
            cap, num = _label(caption, "caption"), _label("--", "number")
            cap.setWordWrap(True)
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
        self.sensor_status = _label("scanning…", "sensors")
        self.sensor_status.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        self.sensor_status.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.sensor_status.setWordWrap(True)
        self.sensor_status.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop)
        lay.addWidget(self.sensor_status, 1)
        return box

    def _build_status_line(self) -> QtWidgets.QLayout:
        row = QtWidgets.QHBoxLayout()
        self.latency_label = _label("latency -- ms", "small")
        self.recording_label = _label("", "small")
        self.recording_label.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        row.addWidget(self.latency_label)
        row.addWidget(self.recording_label, 1)
        row.addWidget(_label("EMG/ECG s", "small"))
        self.emg_window = QtWidgets.QDoubleSpinBox(minimum=2.0, maximum=60.0, value=EMG_WINDOW_S, singleStep=1.0)
        row.addWidget(self.emg_window)
        row.addWidget(_label("heart s", "small"))
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
            "hrv": self._plot(3, 1, f"HRV over {LIVE_WINDOW_S:.0f} s", "", bottom=True),  # the legend names both
        }
        for key in ("emg_r", "tension", "ecg"):
            self.plots[key].setXLink(self.plots["emg_l"])
        for key in ("rr", "hrv"):
            self.plots[key].setXLink(self.plots["hr"])
        for key, offset in (("tension", (8, -4)), ("hrv", (8, 4))):  # the tension plot's top is for marker labels
            legend = self.plots[key].addLegend(offset=offset, brush=None, labelTextSize=f"{sizes_for(*REFERENCE_PX).text_px}px")
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

    def _build_keys(self) -> WindowKeys:
        """H, 1-9, N, F1-F12, Escape and Ctrl+Q, whatever widget has the focus (``ui.keys``)."""
        keys: dict[str, Callable[[], None]] = {"H": lambda: self._mark(self.controller.hands)}
        for i in range(min(9, len(self.protocol.techniques))):
            keys[str(i + 1)] = lambda n=i + 1: self._mark(self.controller.technique, n)
        for i in range(min(12, len(self.protocol.phases))):
            keys[f"F{i + 1}"] = lambda i=i: self.phase_key(i)
        keys["N"] = self.start_note
        keys["Escape"] = self.leave_note
        keys["Ctrl+Q"] = self.ask_to_end
        return WindowKeys(self, keys, typing=self.note_edit)

    # --- size -----------------------------------------------------------------------------------
    def _initial_size(self) -> None:
        """The remembered size, else ``DEFAULT_SIZE_PX`` where the screen has room for it, else maximised."""
        restored, problem = restore_size(self, WINDOW_NAME)
        if problem:
            self._log(problem)
        if restored:
            return
        screen = (self.screen() or QtGui.QGuiApplication.primaryScreen()).availableGeometry()
        self.resize(min(DEFAULT_SIZE_PX[0], screen.width()), min(DEFAULT_SIZE_PX[1], screen.height()))
        if screen.width() < DEFAULT_SIZE_PX[0] or screen.height() < DEFAULT_SIZE_PX[1]:
            self._maximise_at = self.size()

    def showEvent(self, ev: QtGui.QShowEvent) -> None:  # noqa: N802 - Qt's name
        """On a small screen, the window first opens maximised (unless its opener gave it a size meanwhile)."""
        if self._maximise_at is not None and self.size() == self._maximise_at:
            self.setWindowState(self.windowState() | QtCore.Qt.WindowState.WindowMaximized)
        self._maximise_at = None
        super().showEvent(ev)

    def resizeEvent(self, ev: QtGui.QResizeEvent) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(ev)
        sizes = sizes_for(ev.size().width(), ev.size().height())
        if sizes != self.sizes:
            self.sizes = sizes
            self.apply_theme(self.theme.name)

    # --- theme ----------------------------------------------------------------------------------
    def apply_theme(self, name: str) -> None:
        """Colours of theme ``name`` and text sizes of the window's size (``ui.sizes``) on every widget and plot."""
        th = self.theme = THEMES.get(name, LIGHT)
        z = self.sizes or sizes_for(*REFERENCE_PX)
        self.setStyleSheet(stylesheet(th) + size_rules(th, z))
        self.canvas.setBackground(th.background)
        font = QtGui.QFont()
        font.setPixelSize(z.text_px)
        for plot in self.plots.values():
            plot.titleLabel.setAttr("color", th.text)
            plot.titleLabel.setText(plot.titleLabel.text, size=f"{z.title_px}px", color=th.text)
            for side in ("left", "bottom"):
                axis = plot.getAxis(side)
                axis.setPen(th.grid)
                axis.setTextPen(th.text)
                axis.setTickFont(font)
                axis.label.setFont(font)
                axis.label.setDefaultTextColor(QtGui.QColor(th.text))
            plot.getAxis("left").setWidth(round(4.5 * z.text_px))
            if plot.legend is not None:
                plot.legend.setLabelTextSize(f"{z.text_px}px")  # for labels to come; those there are redrawn:
                plot.legend.setLabelTextColor(th.text)  # (both only set the labels' options)
                for _, label in plot.legend.items:
                    label.setText(label.text, size=f"{z.text_px}px", color=th.text)
                plot.legend.setBrush(pg.mkBrush(th.panel))
        for layer in self.markers.values():
            layer.style(th.text, th.panel, z.text_px)
        # room for the longest latency line, so that the status line does not jump (or cut it) as it changes
        self.latency_label.setMinimumWidth(QtGui.QFontMetrics(font).horizontalAdvance("latency 0000 ms (arrival to paint)"))
        colors = {"emg_l": th.left, "emg_r": th.right, "tension_l": th.left, "tension_r": th.right, "ecg": th.ecg,
                  "hr": th.hr, "rr": th.rr, "rmssd": th.rmssd, "stress": th.stress}
        for key, trace in self.traces.items():
            pen = pg.mkPen(colors[key], width=trace.curve.opts["pen"].widthF())
            pen.setCosmetic(True)
            trace.curve.setPen(pen)
        self.target_line.setPen(pg.mkPen(th.target, width=3, style=QtCore.Qt.PenStyle.DashLine))
        self.target_line.label.setColor(th.target)
        self.target_line.label.setFont(font)
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
                line.label.setFont(self.target_line.label.textItem.font())
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

    def phase_key(self, index: int) -> None:
        """Phase ``index``'s button or F key: ends it while it runs, else starts it (ending the running one)."""
        if self._running() and index == self.controller.index:
            self.worker.call(self.controller.end, self._now_s())
        else:
            self.start_phase(index)

    def _phase_button_text(self, index: int) -> str:
        """'Start baseline (F1)'; 'End baseline (F1)' while it runs; 'Repeat baseline (F1)' once it has run."""
        ctl = self.controller
        verb = "End" if index == ctl.index else "Repeat" if index in ctl.done else "Start"
        return f"{verb} {self.protocol.phases[index].name} (F{index + 1})"

    def start_note(self) -> None:
        """N: the note is stamped now and typed into the note field (Enter adds it, Escape drops it)."""
        if self._running():
            self._note_at_s = self._now_s()
            self.note_edit.setFocus(QtCore.Qt.FocusReason.ShortcutFocusReason)

    def leave_note(self) -> None:
        self._note_at_s = None
        self.note_edit.clear()
        self.note_edit.clearFocus()

    def add_note(self) -> None:
        """Enter in the note field: the note at the time N was pressed (or now, if the field was clicked)."""
        text = self.note_edit.text()
        if text.strip() and self._running():
            at_s = self._now_s() if self._note_at_s is None else self._note_at_s
            self.worker.call(self.controller.note, at_s, text)
        self.leave_note()

    def ask_to_end(self) -> None:
        """End session (the button or Ctrl+Q): asks first in a live session; the recording goes on meanwhile."""
        if not self._running():
            self.end_session()
            return
        if self.end_question is not None:
            return
        box = self.end_question = QtWidgets.QMessageBox(
            QtWidgets.QMessageBox.Icon.Question, "End the session?",
            "End the session now? The recording stops and the summary opens.", parent=self)
        end = box.addButton("End session", QtWidgets.QMessageBox.ButtonRole.AcceptRole)
        keep = box.addButton("Keep recording", QtWidgets.QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(keep)  # an Enter meant for something else does not end the session
        box.setEscapeButton(keep)
        box.setStyleSheet(stylesheet(self.theme) + size_rules(self.theme, self.sizes or sizes_for(*REFERENCE_PX)))

        def answered() -> None:
            self.end_question = None
            if box.clickedButton() is end:
                self.end_session()
                if self._closing:
                    self.close()
            self._closing = False

        box.finished.connect(answered)
        box.open()

    def connect_sensors(self) -> None:
        wanted = [self.found_list.item(i).data(QtCore.Qt.ItemDataRole.UserRole) for i in range(self.found_list.count())
                  if self.found_list.item(i).checkState() == QtCore.Qt.CheckState.Checked]
        self.worker.connect(wanted or None)
        self.connect_button.setEnabled(False)
        self.scan_button.setEnabled(False)

    def end_session(self) -> None:
        """End the running phase and the session; the recording closes and the summary opens."""
        self._ended = True
        if self.worker.state == WorkerState.RUNNING:
            self.worker.call(self.controller.finish, self._now_s())
        self.worker.stop()

    def _event(self, kind: str, t_s: float, label: str, duration_s: float) -> None:
        """A session event (on the worker's thread): its marks on the traces from the next frame."""
        self.marks.extend(marks_of_event(kind, t_s, label, duration_s))

    def _replay_marks(self) -> None:
        """A replay's marks are its recording's, each shown once the replay's clock passes it."""
        from biofeedback.store import SessionReader

        with SessionReader(self.replay) as reader:
            for e in reader.events():
                self.marks.extend(marks_of_event(e["kind"], e["t_s"], e["label"], e["duration_s"]))

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
        if self.early_summary is None and self.summary_dialog is None and not worker.finished \
                and worker.run.live_summary is not None:
            self._early_summary()
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
        ctl = self.controller
        running_hands = ctl.hands_on and self.replay is None  # a replay's marks hold its hands on/off already
        marks = self.marks + ([Mark(ctl.hands_on_since, "hands on", EventKind.HANDS_ON)] if running_hands else [])
        self.markers["emg"].show(marks, now, windows[0])
        if heart_due:
            self.markers["heart"].show(marks, now, windows[1])
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
            style = f"color: {color}" + (f"; font-size: {self.sizes.title_px if self.sizes else 18}px" if off[c] else "")
            if label.styleSheet() != style:  # restyling re-polishes the label: only on a change
                label.setStyleSheet(style)
            # settling after a gap: the tension of a partial window would read low, so none until the window is full
            label.setText(NO_SIGNAL if off[c] else "--" if v.settling(c) else self._fmt(ten[c]))
        self.captions["symmetry"].setText(f"{SYMMETRY_CAPTION} ({v.symmetry_scale})")
        sym = round(v.symmetry_pct) if np.isfinite(v.symmetry_pct) and not any(off) else None
        self.numbers["symmetry"].setText("--" if sym is None else f"{sym:+d}" if sym else "0")  # never '-0'
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
        for widget in (self.found_list, self.scan_button, self.connect_button):
            if widget.isVisible():  # connected: the sensor panel's room goes to the sensors' state
                widget.setVisible(False)
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
        if live is not None:
            rows += live.origins()
        self.sensor_status.setText("<br>".join(rows))
        if self.replay is not None:
            self.recording_label.setText(f"replay of {self.replay.name} (view only, nothing is recorded)")
        else:
            problems = w.run.recording_problems()
            self.recording_label.setText((f"recording {w.path.name}" if w.path else "") + (
                f" <span style='color:{th.warn}'>· {problems[-1]} ({len(problems)} problems)</span>" if problems else ""))

    def phase_state(self) -> tuple[str, str, str]:
        """(what the phase label says, the instruction under it, the labels' style state) of the session now.

        State "after": every phase has run and the session is still recording until the therapist ends it."""
        ctl = self.controller
        phases, running = self.protocol.phases, self.worker.state == WorkerState.RUNNING
        keys = "F1-F{}".format(len(phases)) if len(phases) > 1 else "F1"
        if ctl.finished:
            return ("session ended" if self.replay is None else "replay ended"), "", ""
        if ctl.phase is not None:
            return ctl.phase.name, ctl.phase.instruction, "phase"
        nxt = ctl.next_index()
        if self.worker.state == WorkerState.FOUND:
            return "sensors", "Tick the sensors to use and press Connect.", ""
        if not running:
            return "connecting", "Connecting the sensors…", ""
        if self.replay is not None:
            return "between phases", "", ""
        if nxt is None and ctl.done:
            return ("recording", f"All phases done ({phases[ctl.done[-1]].name} ended). Still recording until you "
                    f"end the session: End session (Ctrl+Q).", "after")
        if nxt is None:
            return "ready", f"Start a phase ({keys}).", ""
        if ctl.done:
            return (f"{phases[ctl.done[-1]].name} done",
                    f"Still recording. Next: Start {phases[nxt].name} (F{nxt + 1}): {phases[nxt].instruction}", "")
        return "ready", f"Recording. When the client is settled: Start {phases[nxt].name} (F{nxt + 1}).", ""

    def _show_phase_state(self) -> None:
        ctl, now = self.controller, self._now_s()
        name, instruction, state = self.phase_state()
        self.phase_label.setText(name)
        self.instruction_label.setText(instruction)
        for label in (self.phase_label, self.instruction_label):
            if label.property("state") != state:  # re-polishing restyles the label: only on a change
                label.setProperty("state", state)
                label.style().unpolish(label)
                label.style().polish(label)
        if ctl.phase is not None:
            elapsed, planned = ctl.elapsed_s(now), ctl.planned_s()
        else:  # between phases and after the last: time since the last one ended
            elapsed, planned = (now - ctl.history[ctl.done[-1]][1] if ctl.done and not ctl.finished else 0.0), None
        text = f"{int(elapsed // 60):02d}:{int(elapsed % 60):02d}"
        if planned is not None:
            text += f" / {int(planned // 60):02d}:{int(planned % 60):02d}"
        self.timer_label.setText(text)
        running = self._running()
        for i, b in enumerate(self.phase_buttons):
            active = "true" if i == ctl.index else "false"
            text = self._phase_button_text(i)
            if b.text() != text:
                b.setText(text)
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
    def _summary_dialog(self) -> tuple[QtWidgets.QDialog, QtWidgets.QLabel, QtWidgets.QLabel]:
        dialog = QtWidgets.QDialog(self)
        dialog.setWindowTitle("Session summary" if self.replay is None else f"Session summary — {self.replay.name}")
        lay = QtWidgets.QVBoxLayout(dialog)
        text = _label("")
        text.setTextFormat(QtCore.Qt.TextFormat.RichText)
        text.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(text)
        verdict = _label("")
        verdict.setWordWrap(True)
        verdict.setMaximumWidth(900)
        lay.addWidget(verdict)
        if self.worker.path is not None:
            lay.addWidget(_label(f"recording: {self.worker.path}", "small"))
        close = QtWidgets.QPushButton("Close")
        close.clicked.connect(dialog.accept)
        lay.addWidget(close)
        dialog.setStyleSheet(stylesheet(self.theme))
        dialog._texts = (text, verdict)  # noqa: SLF001 - filled again when the outcome is ready
        return dialog, text, verdict

    def _early_summary(self) -> None:
        """The summary of the live values as soon as the recording is closed; the verdict follows in the same dialog."""
        dialog, text, verdict = self._summary_dialog()
        self.early_summary = dialog
        self.early_before_outcome = not self.worker.finished
        text.setText(summary_html(self.worker.run.live_summary, self.theme))
        verdict.setText("From the live values. The recording's own analysis and the verdict follow in a moment…")
        dialog.show()

    def _session_over(self) -> None:
        self.timer.stop()
        self._show_log()
        self._show_sensors()
        self._show_phase_state()
        if self.early_summary is not None:
            dialog, (text, verdict) = self.early_summary, self.early_summary._texts  # noqa: SLF001
        else:
            dialog, text, verdict = self._summary_dialog()
        outcome = self.worker.outcome
        text.setText(summary_html(outcome.summary, self.theme) if outcome is not None
                     else f"<p>The session stopped: {self.worker.error}</p>")
        verdict.setText(outcome.verdict_text if outcome is not None else "")
        verdict.setVisible(outcome is not None)
        self.summary_dialog = dialog
        dialog.show()

    def closeEvent(self, ev: QtGui.QCloseEvent) -> None:  # noqa: N802 - Qt's name
        if self._running() and not self._ended:  # the close button ends a live session only once the therapist says so
            self._closing = True
            self.ask_to_end()
            ev.ignore()
            return
        problem = remember_size(self, WINDOW_NAME) if self.replay is None else None  # a replay writes nothing
        if problem:
            self._log(problem)
        if not self.worker.finished:
            self.end_session()
            self.worker.join(30.0)
        super().closeEvent(ev)


def size_rules(theme: Theme, z: Sizes) -> str:
    """The session window's text sizes (``ui.sizes``) and its after-the-last-phase banner, after ``theme.stylesheet``."""
    return f"""
    QWidget {{ font-size: {z.text_px}px; }}
    QLabel#caption, QLabel#small, QLabel#sensors {{ font-size: {z.text_px}px; }}
    QLabel#number {{ font-size: {z.number_px}px; }}
    QLabel#timer, QLabel#phase {{ font-size: {z.timer_px}px; }}
    QLabel#instruction {{ font-size: {z.title_px}px; }}
    QLabel#phase[state="after"], QLabel#instruction[state="after"] {{ background: {theme.active}; border-radius: 5px;
        padding: 0px 8px; }}
    QLabel#replay {{ font-size: {z.title_px}px; }}
    """


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
