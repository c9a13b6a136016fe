"""Calibration in a window: ``session.calibration.run_calibration`` guided on screen, with a clear retry.

The calibration runs on its own thread (its ``SessionRun`` on an asyncio loop, as in the terminal); each guidance
line it gives (the try, the countdown before each contraction, the prompt, "relax", the levels, the problems) is
handed to the window, which shows the newest in large type and keeps the others in a log. When the contractions
disagree the run asks whether to try again: the window shows the problems and two buttons and the run waits for
the answer. A good result is saved (``save_calibration``) as ``biofeedback calibrate`` saves it.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import threading

from PySide6 import QtCore, QtWidgets

from biofeedback.errors import BiofeedbackError
from biofeedback.ui.theme import THEMES, stylesheet

POLL_MS = 50
"""How often the window takes the run's new lines."""


class CalibrationWindow(QtWidgets.QWidget):
    """One calibration of ``plan`` with protocol ``proto``; ``contractions_uv``: the virtual sensors' script."""

    def __init__(self, proto, plan, profiles: dict, contractions_uv: list[list[float]], theme: str = "light") -> None:
        super().__init__()
        self.proto, self.plan, self.profiles, self.contractions_uv = proto, plan, profiles, contractions_uv
        self.result = None
        self.saved = None
        """The saved calibration file, once the calibration succeeded."""
        self.error: BaseException | None = None
        self._lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self._answer = threading.Event()
        self._retry = False
        self._problems: list[str] = []
        self._thread = threading.Thread(target=self._run, name="biofeedback-calibration", daemon=True)
        t = THEMES[theme]
        self.setWindowTitle(f"Calibration of {plan.client_id} — {proto.name}")
        self.setStyleSheet(stylesheet(t))
        lay = QtWidgets.QVBoxLayout(self)
        intro = QtWidgets.QLabel(
            f"{proto.rest_s:.0f} s of rest, then {proto.count} shoulder lifts of {proto.hold_s:.0f} s, each after a "
            f"{proto.lead_in_s:.0f} s countdown (about {proto.duration_s() / 60:.1f} min). Follow the large text.")
        intro.setWordWrap(True)
        lay.addWidget(intro)
        self.step = QtWidgets.QLabel("Connecting the sensors…")
        self.step.setObjectName("step")
        self.step.setWordWrap(True)
        self.step.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.step.setMinimumHeight(140)
        self.step.setStyleSheet("font-size: 28pt; font-weight: bold;")
        lay.addWidget(self.step)
        self.problems = QtWidgets.QLabel()
        self.problems.setObjectName("problems")
        self.problems.setWordWrap(True)
        self.problems.setStyleSheet(f"color: {t.warn}; font-weight: bold;")
        self.problems.hide()
        lay.addWidget(self.problems)
        row = QtWidgets.QHBoxLayout()
        self.retry_button = QtWidgets.QPushButton("Try again")
        self.retry_button.setObjectName("retry")
        self.retry_button.clicked.connect(lambda: self._answer_retry(True))
        self.stop_button = QtWidgets.QPushButton("Stop without saving")
        self.stop_button.setObjectName("give-up")
        self.stop_button.clicked.connect(lambda: self._answer_retry(False))
        for b in (self.retry_button, self.stop_button):
            b.hide()
            row.addWidget(b)
        lay.addLayout(row)
        self.log = QtWidgets.QPlainTextEdit()
        self.log.setObjectName("log")
        self.log.setReadOnly(True)
        lay.addWidget(self.log, 1)
        self.close_button = QtWidgets.QPushButton("Close")
        self.close_button.setObjectName("close")
        self.close_button.clicked.connect(self.close)
        self.close_button.setEnabled(False)
        lay.addWidget(self.close_button)
        self.timer = QtCore.QTimer(self, interval=POLL_MS, timeout=self._take_lines)
        self.resize(820, 560)

    @classmethod
    def from_args(cls, args: argparse.Namespace, profiles: dict, theme: str = "light") -> CalibrationWindow:
        """The window for ``biofeedback calibrate``'s parsed arguments (the same checks and virtual script)."""
        from biofeedback.cli.common import scenario_from_args, use_virtual
        from biofeedback.cli.session import _contractions
        from biofeedback.session.calibration import load_calibration_protocol
        from biofeedback.session.runner import SessionPlan
        from biofeedback.store import validate_client_id

        client = validate_client_id(args.client)
        proto = load_calibration_protocol(args.protocol)
        virtual = use_virtual(args)
        scenario = scenario_from_args(args) if virtual else None
        tries = _contractions(args.virtual_contractions, proto.count, scenario.tension.left_uv[0] if scenario else 0.0)
        plan = SessionPlan(client, None, virtual, args.speed, False, scenario, {}, None)
        return cls(proto, plan, profiles, tries, theme)

    # --- the run's thread --------------------------------------------------------------------------
    def start(self) -> None:
        self.timer.start()
        self._thread.start()

    def _run(self) -> None:
        from biofeedback.session.calibration import run_calibration

        try:
            self.result, used = asyncio.run(run_calibration(
                self.proto, self.plan, self.profiles, contractions_uv=self.contractions_uv, ask_retry=self._ask_retry,
                out=lambda line: self._lines.put(("line", line))))
            self._lines.put(("done", str(used)))
        except BaseException as exc:  # noqa: BLE001 - shown in the window
            self.error = exc
            self._lines.put(("error", str(exc)))

    def _ask_retry(self) -> bool:
        """Called by the run after a failed try: wait for the person's answer in the window."""
        self._answer.clear()
        self._lines.put(("ask", ""))
        self._answer.wait()
        return self._retry

    # --- the window --------------------------------------------------------------------------------
    def _answer_retry(self, retry: bool) -> None:
        self._retry = retry
        for b in (self.retry_button, self.stop_button):
            b.hide()
        self.problems.hide()
        self.step.setText("Relax for a moment; the next try starts now." if retry else "Stopping…")
        self._answer.set()

    def _take_lines(self) -> None:
        while True:
            try:
                kind, text = self._lines.get_nowait()
            except queue.Empty:
                return
            if kind == "line":
                self.log.appendPlainText(text)
                self._show_step(text.strip())
            elif kind == "ask":
                self.step.setText("The contractions did not agree.")
                self.problems.setText("\n".join(self._problems) + "\nRelax, then press Try again and repeat the "
                                      "same steps with the same effort.")
                self.problems.show()
                for b in (self.retry_button, self.stop_button):
                    b.show()
                self.retry_button.setFocus()
            elif kind == "done":
                self._finish(int(text))
            else:
                self.step.setText("The calibration stopped.")
                self.problems.setText(text)
                self.problems.show()
                self._closeable()

    def _show_step(self, line: str) -> None:
        if line.startswith("---"):
            self._problems = []
            self.step.setText(line.strip("- ").capitalize())
        elif line.startswith("problem: "):
            self._problems = [*self._problems, line.removeprefix("problem: ")]
        elif not line.startswith(("rest RMS", "retrying")):
            name, _, what = line.partition(": ")
            self.step.setText(f"{name.replace('-', ' ').capitalize()}\n{what}" if what else line)

    def _finish(self, used: int) -> None:
        from biofeedback.session.calibration import save_calibration

        result = self.result
        if result.ok:
            try:
                self.saved = save_calibration(self.plan.client_id, self.proto, result,
                                              {"tries": used, "virtual": self.plan.virtual})
            except BiofeedbackError as exc:
                self.error = exc
                self.step.setText(f"Not saved: {exc}")
            else:
                self.step.setText("Calibration saved. Sessions now show tension as % of the reference.")
                self.log.appendPlainText(f"calibration saved: {self.saved}")
        else:
            self.step.setText("Calibration failed: nothing was saved.")
            self.problems.setText("\n".join(result.problems))
            self.problems.show()
        self._closeable()

    def _closeable(self) -> None:
        self.timer.stop()
        self.close_button.setEnabled(True)
        self.close_button.setFocus()

    @property
    def finished(self) -> bool:
        return self.close_button.isEnabled()

    def closeEvent(self, ev) -> None:  # noqa: N802 - Qt's name
        if not self.finished:
            # A run waiting for an answer stops now; one in the middle of a try ends with it (nothing is saved then).
            self._answer_retry(False)
            self.timer.stop()
        super().closeEvent(ev)
