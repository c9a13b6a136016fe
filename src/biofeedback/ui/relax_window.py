"""The client's relaxation window: big text, a breathing guide, a tension bar, one Stop button; then a summary.

Thin like the dashboard: the session's worker (``ui.worker.SessionWorker``) runs the one session core on its
loop (``session.runner.SessionRun`` with ``relax.engine.RelaxSession`` as its driver: phases, live numbers,
recording); a ``QTimer`` here shows the newest ``RelaxView`` the driver left. The same view drives the sound
(``ui.relax_audio``).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from biofeedback.analysis.diary import add_entry
from biofeedback.relax.audio import FeedbackSynth
from biofeedback.relax.engine import RelaxSession, RelaxSettings, RelaxView, relax_meta, relax_session
from biofeedback.relax.feedback import OFF, ON, PAUSED
from biofeedback.relax.pacer import INHALE
from biofeedback.relax.sham import ShamSignal
from biofeedback.relax.summary import diary_text, plain_summary, relax_history, start_end, todays_diary
from biofeedback.sensors.profiles import DeviceProfile
from biofeedback.session.protocol import SessionError
from biofeedback.session.runner import SessionPlan
from biofeedback.ui.relax_audio import AudioOut
from biofeedback.ui.worker import SessionWorker, start_worker
from biofeedback.vocab import WorkerState

TICK_MS = 50
CALM = {"background": "#f4f1ea", "text": "#2b2b2b", "muted": "#6b6b6b", "guide": "#7fa7c9", "guide_edge": "#4d7ea8",
        "bar": "#c9853f", "quiet": "#6fa86f", "paused": "#b0b0b0", "target": "#2f6b2f", "button": "#e4ddd0"}
STYLE = f"""
QWidget {{ background: {CALM['background']}; color: {CALM['text']}; font-size: 18pt; }}
QLabel#title {{ font-size: 26pt; font-weight: bold; }}
QLabel#big {{ font-size: 40pt; font-weight: bold; }}
QLabel#muted {{ color: {CALM['muted']}; font-size: 16pt; }}
QPushButton {{ background: {CALM['button']}; border: 1px solid #c8bfae; border-radius: 10px; padding: 12px 36px; }}
QDoubleSpinBox, QSpinBox {{ background: white; padding: 4px; }}
"""


HISTORY_TITLE = "Your home sessions: shoulder tension at the start and at the end (µV)"


def _label(text: str = "", name: str = "", align=QtCore.Qt.AlignmentFlag.AlignCenter) -> QtWidgets.QLabel:
    w = QtWidgets.QLabel(text)
    if name:
        w.setObjectName(name)
    w.setAlignment(align)
    w.setWordWrap(True)
    return w


class BreathGuide(QtWidgets.QWidget):
    """A circle that grows as you breathe in and shrinks as you breathe out."""

    def __init__(self) -> None:
        super().__init__()
        self.lung = 0.0
        self.active = False
        self.setMinimumSize(320, 320)

    def set(self, lung: float, active: bool) -> None:
        self.lung, self.active = lung, active
        self.update()

    def paintEvent(self, ev) -> None:  # noqa: N802 - Qt's name
        p = QtGui.QPainter(self)
        p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        side = min(self.width(), self.height()) - 10
        r = side / 2 * (0.35 + 0.65 * (self.lung if self.active else 0.3))
        c = QtCore.QPointF(self.width() / 2, self.height() / 2)
        p.setPen(QtGui.QPen(QtGui.QColor(CALM["guide_edge"]), 2, QtCore.Qt.PenStyle.DashLine))
        p.setBrush(QtCore.Qt.BrushStyle.NoBrush)
        p.drawEllipse(c, side / 2, side / 2)
        p.setPen(QtGui.QPen(QtGui.QColor(CALM["guide_edge"]), 3))
        p.setBrush(QtGui.QColor(CALM["guide"] if self.active else CALM["paused"]))
        p.drawEllipse(c, r, r)


class TensionBar(QtWidgets.QWidget):
    """Tension as a horizontal bar with the target as a line; grey while the feedback is paused or off."""

    def __init__(self) -> None:
        super().__init__()
        self.value, self.target, self.state = math.nan, math.nan, OFF
        self.setMinimumHeight(70)

    def set(self, value: float, target: float, state: str) -> None:
        self.value, self.target, self.state = value, target, state
        self.update()

    def paintEvent(self, ev) -> None:  # noqa: N802 - Qt's name
        p = QtGui.QPainter(self)
        p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        w, h = self.width() - 20, self.height() - 20
        p.setPen(QtGui.QPen(QtGui.QColor("#c8bfae"), 2))
        p.setBrush(QtGui.QColor("white"))
        p.drawRoundedRect(10, 10, w, h, 12, 12)
        full = 2.0 * self.target if math.isfinite(self.target) and self.target > 0 else math.nan
        if math.isfinite(self.value) and math.isfinite(full):
            color = CALM["bar"] if self.state == ON else CALM["quiet"] if self.state != PAUSED else CALM["paused"]
            p.setPen(QtCore.Qt.PenStyle.NoPen)
            p.setBrush(QtGui.QColor(color))
            p.drawRoundedRect(QtCore.QRectF(12, 12, (w - 4) * min(1.0, self.value / full), h - 4), 10, 10)
        if math.isfinite(full):
            x = 10 + w * 0.5
            p.setPen(QtGui.QPen(QtGui.QColor(CALM["target"]), 4))
            p.drawLine(QtCore.QPointF(x, 4), QtCore.QPointF(x, h + 16))


class RelaxWindow(QtWidgets.QWidget):
    """The running session, then the summary, in one calm window."""

    def __init__(self, worker: SessionWorker, settings: RelaxSettings, sham: ShamSignal | None = None,
                 audio: bool = True) -> None:
        super().__init__()
        self.worker, self.settings, self.sham = worker, settings, sham
        self.plan = worker.plan
        self.view: RelaxView | None = None
        self.summary_shown = False
        self.synth = FeedbackSynth(chimes=settings.chimes)
        self.no_sound_reason = "" if audio else "sound is turned off for this session"
        self.no_sound_detail = ""
        self.audio = AudioOut(self.synth, notice=self._no_sound) if audio else None
        self.setWindowTitle("Relaxation")
        self.setStyleSheet(STYLE)
        self.resize(1000, 760)
        self.pages = QtWidgets.QStackedLayout(self)
        self.pages.addWidget(self._build_running())
        self.pages.addWidget(self._build_summary())
        self.timer = QtCore.QTimer(self)
        self.timer.timeout.connect(self.refresh)
        self.timer.start(TICK_MS)

    # --- pages ------------------------------------------------------------------------------------
    def _build_running(self) -> QtWidgets.QWidget:
        page = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(page)
        lay.setContentsMargins(40, 24, 40, 24)
        self.title = _label("Getting ready…", "title")
        self.time_left = _label("", "muted")
        self.breath = _label("", "big")
        self.guide = BreathGuide()
        self.guidance = _label("", "muted")
        self.bar = TensionBar()
        self.status = _label("Connecting to your sensors…")
        self.sources = _label("", "muted")
        """Which sensor, at which rate, the tension and the heart numbers come from."""
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        for w in (self.title, self.time_left, self.breath):
            lay.addWidget(w)
        lay.addWidget(self.guide, 1)
        for w in (self.guidance, self.bar, self.status, self.sources):
            lay.addWidget(w)
        row = QtWidgets.QHBoxLayout()
        self.sound_box = QtWidgets.QCheckBox("Sound")
        self.sound_box.setChecked(bool(self.audio and self.audio.ok))
        self.sound_box.setEnabled(bool(self.audio and self.audio.ok))
        row.addWidget(self.sound_box)
        self.sound_reason = _label(f"No sound: {self.no_sound_reason}. Follow the bar on the screen instead."
                                   if self.no_sound_reason else "", "muted", QtCore.Qt.AlignmentFlag.AlignLeft)
        self.sound_reason.setToolTip(self.no_sound_detail)
        self.sound_reason.setMinimumWidth(560)  # one or two lines, not a narrow column
        self.sound_reason.setVisible(bool(self.no_sound_reason))
        row.addWidget(self.sound_reason, 1)
        row.addStretch(1)
        row.addWidget(self.stop_button)
        lay.addLayout(row)
        return page

    def _build_summary(self) -> QtWidgets.QWidget:
        page = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(page)
        lay.setContentsMargins(40, 24, 40, 24)
        lay.addWidget(_label("Well done", "title"))
        self.summary_text = _label("", align=QtCore.Qt.AlignmentFlag.AlignLeft)
        lay.addWidget(self.summary_text)
        self.history = pg.PlotWidget(background=CALM["background"])
        self.history.setMinimumHeight(220)
        self.history.setTitle(HISTORY_TITLE, color=CALM["text"])
        self.history.addLegend(offset=(-10, 10))
        lay.addWidget(self.history, 1)
        self.diary_text = _label("", align=QtCore.Qt.AlignmentFlag.AlignLeft)
        lay.addWidget(self.diary_text)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("Headache today (0-10):"))
        self.headache = QtWidgets.QSpinBox()
        self.headache.setRange(0, 10)
        row.addWidget(self.headache)
        row.addWidget(_label("hours:", align=QtCore.Qt.AlignmentFlag.AlignLeft))
        self.headache_h = QtWidgets.QDoubleSpinBox()
        self.headache_h.setRange(0, 168)
        self.headache_h.setDecimals(1)
        self.headache_h.setSpecialValueText("unknown")  # the minimum, 0 h: no duration given
        row.addWidget(self.headache_h)
        save = QtWidgets.QPushButton("Save")
        save.clicked.connect(self.save_diary)
        row.addWidget(save)
        row.addStretch(1)
        close = QtWidgets.QPushButton("Close")
        close.clicked.connect(self.close)
        row.addWidget(close)
        lay.addLayout(row)
        return page

    def _no_sound(self, text: str) -> None:
        """``AudioOut``'s notice: told on the terminal as is, and on the screen in the client's words (the technical
        reason in the tooltip)."""
        print(text, file=sys.stderr)
        self.no_sound_detail = text
        self.no_sound_reason = ("no speakers or headphones were found" if "no sound output device" in text
                                else "this computer's sound could not be started")

    # --- running ----------------------------------------------------------------------------------
    @property
    def session(self) -> RelaxSession | None:
        """The home session's rules on the worker's loop, once the sensors are connected."""
        return self.worker.run.driver

    def _now_s(self) -> float:
        return self.worker.acq.clock.now_s() if self.worker.acq is not None else 0.0

    def stop(self) -> None:
        """Stop now: the running phase ends at this moment (on the worker's loop) and the recording closes."""
        if self.session is not None and self.worker.state == WorkerState.RUNNING:
            self.worker.call(self.session.finish, self._now_s())
        self.worker.stop()

    def refresh(self) -> None:
        worker = self.worker
        session = self.session
        view = session.view if session is not None else None
        if view is not None and view is not self.view and worker.state == WorkerState.RUNNING:
            self.show_view(view)
        if worker.finished and not self.summary_shown:
            self.show_summary()

    def show_view(self, v: RelaxView) -> None:
        self.view = v
        fb = v.feedback
        self.synth.set(fb if self.sound_box.isChecked() else fb.__class__(OFF), v.pacer.phase if v.pacer else None)
        names = {"baseline": "Resting", "relaxation": "Relaxation", "post": "Closing rest"}
        self.title.setText(names.get(v.phase, v.phase.capitalize()) if v.phase else "Finished")
        self.time_left.setText(f"{int(v.total_left_s // 60)}:{int(v.total_left_s % 60):02d} left")
        if v.pacer is not None:
            self.breath.setText("Breathe in" if v.pacer.phase == INHALE else "Breathe out")
            self.guide.set(v.pacer.lung, True)
        else:
            self.breath.setText(v.prompt or "")
            self.guide.set(0.0, False)
        self.guidance.setText(" · ".join(t for t in (v.resonance, f"Now: {v.guidance}" if v.guidance else "") if t))
        self.bar.set(fb.tension, fb.target, fb.state)
        live = self.worker.live
        if live is not None:
            self.sources.setText(" · ".join(live.origins()))
        if fb.state == PAUSED:
            self.status.setText(f"Feedback paused: {fb.reason}")
        elif fb.state == OFF:
            self.status.setText(fb.reason.capitalize() if fb.reason else "")
        else:
            self.status.setText("At your target: well done" if fb.state != ON else "Let your shoulders drop a little more")

    # --- summary ----------------------------------------------------------------------------------
    def show_summary(self) -> None:
        self.summary_shown = True
        self.timer.stop()
        if self.audio is not None:
            self.audio.stop()
        if self.worker.error is not None or self.worker.path is None:
            self.summary_text.setText(f"The session stopped: {self.worker.error or 'no sensor was connected'}")
        else:
            self.summary_text.setText("\n".join(plain_summary(start_end(self.worker.outcome.summary))))
            self.draw_history(relax_history(self.plan.client_id))
        self.diary_text.setText("Today: " + diary_text(todays_diary(self.plan.client_id)))
        self.pages.setCurrentIndex(1)

    def draw_history(self, rows: list[dict]) -> None:
        self.history.clear()
        x = np.arange(len(rows))
        start = np.array([r["tension"][0] for r in rows], dtype=float)
        end = np.array([r["tension"][1] for r in rows], dtype=float)
        self.history.addItem(pg.BarGraphItem(x=x - 0.18, height=np.nan_to_num(start), width=0.34, brush="#c9853f", name="start"))
        self.history.addItem(pg.BarGraphItem(x=x + 0.18, height=np.nan_to_num(end), width=0.34, brush="#6fa86f", name="end"))
        measured = np.isfinite(start).any() or np.isfinite(end).any()
        self.history.setTitle(HISTORY_TITLE if measured else HISTORY_TITLE.split(":")[0]
                              + ": shoulder tension not measured yet (no EMG sensor or too little clean signal)",
                              color=CALM["text"])
        ax = self.history.getAxis("bottom")
        ax.setTicks([[(i, r["date"][5:]) for i, r in enumerate(rows)]])
        self.history.setXRange(-0.6, max(len(rows), 5) - 0.4)

    def save_diary(self) -> None:
        hours = self.headache_h.value()
        add_entry(self.plan.client_id, float(self.headache.value()), float(hours) if hours > 0 else None)
        self.diary_text.setText("Today: " + diary_text(todays_diary(self.plan.client_id)))

    def closeEvent(self, ev) -> None:  # noqa: N802 - Qt's name
        self.stop()
        if self.audio is not None:
            self.audio.stop()
        super().closeEvent(ev)


def start_relax_worker(plan: SessionPlan, settings: RelaxSettings, profiles: dict[str, DeviceProfile],
                       sham: ShamSignal | None = None, lsl: bool = False) -> SessionWorker:
    """The session worker of a home session: connects at once, records the relax settings in its meta."""
    return start_worker(plan, profiles, connect_at_once=True, mode="relax-window",
                        extra_meta={"relax": relax_meta(settings, sham)}, chain=True,
                        driver=lambda run: relax_session(run, settings, sham), lsl=lsl)


def run_relax_window(plan: SessionPlan, settings: RelaxSettings, profiles: dict[str, DeviceProfile],
                     sham: ShamSignal | None = None, lsl: bool = False) -> tuple[object, list]:
    """Run a home session in the window; returns its ``SessionOutcome`` and the feedback timeline."""
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    worker = start_relax_worker(plan, settings, profiles, sham, lsl=lsl)
    window = RelaxWindow(worker, settings, sham)
    window.show()
    app.exec()
    worker.stop()
    if not worker.join(30.0):
        raise SessionError("the recording did not close within 30 s; check the disk, then `biofeedback sessions`")
    if worker.error is not None:
        raise worker.error
    if worker.path is None:
        raise SessionError("the window closed before any sensor was connected; nothing was recorded")
    return worker.outcome, window.session.timeline if window.session else []
