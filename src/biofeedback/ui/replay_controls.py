"""Pause, seek and a timeline for a replay in the dashboard.

A small window beside the replay's dashboard. It drives the replay's ``sensors.replay.ReplayClock``: pause holds
the clock (no block falls due, the traces stand still), a seek ahead moves the clock so the blocks up to there are
handed on at once (the live processor, the phases and the markers see all of them), and a seek back opens the
replay again from its start and then seeks ahead. Keys: Space pauses or plays, Left/Right seek 10 s.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable

from PySide6 import QtCore, QtGui, QtWidgets

SLIDER_STEPS_PER_S = 10
"""Timeline resolution: tenths of a session second."""
STEP_S = 10.0
"""Session seconds a Left/Right key seeks."""
FRAME_MS = 100


def clock_text(t_s: float) -> str:
    t = max(0, int(t_s))
    return f"{t // 60:d}:{t % 60:02d}"


class ReplayControls(QtWidgets.QWidget):
    """Play/pause, a timeline slider and the position of the replay of ``path`` (``duration_s`` long).

    ``open_replay(path)`` opens the dashboard on a fresh replay and returns it (its ``worker``); it is called at
    ``start`` and again for a seek back.
    """

    def __init__(self, path: pathlib.Path, duration_s: float, open_replay: Callable[[pathlib.Path], QtWidgets.QWidget],
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent, QtCore.Qt.WindowType.Window)
        self.path = pathlib.Path(path)
        self.duration_s = float(duration_s)
        self.open_replay = open_replay
        self.dashboard: QtWidgets.QWidget | None = None
        self._pending_seek_s: float | None = None
        self._paused = False
        self.setWindowTitle(f"Replay of {self.path.name}")
        lay = QtWidgets.QHBoxLayout(self)
        self.play_button = QtWidgets.QPushButton("Pause")
        self.play_button.setObjectName("pause")
        self.play_button.clicked.connect(self.toggle_pause)
        lay.addWidget(self.play_button)
        self.timeline = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.timeline.setObjectName("timeline")
        self.timeline.setRange(0, max(1, round(self.duration_s * SLIDER_STEPS_PER_S)))
        self.timeline.setPageStep(round(STEP_S * SLIDER_STEPS_PER_S))
        self.timeline.setMinimumWidth(420)
        self.timeline.sliderReleased.connect(lambda: self.seek(self.timeline.value() / SLIDER_STEPS_PER_S))
        self.timeline.actionTriggered.connect(self._slider_action)
        lay.addWidget(self.timeline, 1)
        self.position = QtWidgets.QLabel()
        self.position.setObjectName("position")
        lay.addWidget(self.position)
        for seq, fn in (("Space", self.toggle_pause), ("Left", lambda: self.seek(self.now_s() - STEP_S)),
                        ("Right", lambda: self.seek(self.now_s() + STEP_S))):
            QtGui.QShortcut(QtGui.QKeySequence(seq), self, activated=fn)
        self.timer = QtCore.QTimer(self, interval=FRAME_MS, timeout=self.refresh)
        self._show(0.0)

    @property
    def worker(self):
        return getattr(self.dashboard, "worker", None)

    def clock(self):
        """The replay's ``ReplayClock`` once the replay plays, else None."""
        acq = self.worker.acq if self.worker is not None else None
        return acq.clock if acq is not None else None

    def now_s(self) -> float:
        clock = self.clock()
        return clock.now_s() if clock is not None else 0.0

    def start(self) -> QtWidgets.QWidget:
        """Open the replay (again, from its start); returns its dashboard."""
        self.dashboard = self.open_replay(self.path)
        self.timer.start()
        return self.dashboard

    def toggle_pause(self) -> None:
        clock = self.clock()
        if clock is None:
            return
        if clock.paused:
            clock.resume()
        else:
            clock.pause()
        self._paused = clock.paused
        self.play_button.setText("Play" if clock.paused else "Pause")

    def seek(self, t_s: float) -> None:
        """Go to session time ``t_s`` of the recording: ahead at once, back by replaying from the start."""
        t_s = min(max(0.0, t_s), self.duration_s)
        clock = self.clock()
        if clock is not None and t_s >= clock.now_s():
            clock.seek_s(t_s)
            self._show(t_s)
            return
        self._pending_seek_s = t_s  # back (or not playing yet): from the start, then ahead once the clock runs
        if clock is not None:
            self.start()

    def _slider_action(self, action: int) -> None:
        if action != QtWidgets.QAbstractSlider.SliderAction.SliderMove:  # clicks on the groove, keys
            QtCore.QTimer.singleShot(0, lambda: self.seek(self.timeline.sliderPosition() / SLIDER_STEPS_PER_S))

    def refresh(self) -> None:
        if self.dashboard is not None and not self.dashboard.isVisible():
            self.close()  # the replay's window was closed: so are its controls
            return
        clock = self.clock()
        if clock is None:
            return
        if self._pending_seek_s is not None:
            t, self._pending_seek_s = self._pending_seek_s, None
            if self._paused:
                clock.pause()
            clock.seek_s(t)
        if not self.timeline.isSliderDown():
            self._show(clock.now_s())

    def _show(self, t_s: float) -> None:
        t_s = min(t_s, self.duration_s)
        self.timeline.blockSignals(True)
        self.timeline.setValue(round(t_s * SLIDER_STEPS_PER_S))
        self.timeline.blockSignals(False)
        self.position.setText(f"{clock_text(t_s)} / {clock_text(self.duration_s)}")

    def closeEvent(self, ev) -> None:  # noqa: N802 - Qt's name
        self.timer.stop()
        if self.dashboard is not None and self.dashboard.isVisible():
            self.dashboard.close()
        super().closeEvent(ev)
