"""The screening questions in a window, for sessions started without a terminal (a desktop launcher).

The dialog only collects the answers; ``session.screening.screen`` logs them and stops a start that an
answer contraindicates, exactly as for answers typed in the terminal.
"""

from __future__ import annotations

import sys

from PySide6 import QtWidgets

from biofeedback.session.protocol import Question
from biofeedback.session.screening import stop_reasons
from biofeedback.ui.theme import THEMES, stylesheet


STOP_TEXT = "Log the answers; don't start"
"""The start button's text while an answer forbids the start."""


class ScreeningDialog(QtWidgets.QDialog):
    """Yes/No for each question; the start button is enabled once every question is answered and says
    whether the session will start, with the reasons shown when an answer forbids it."""

    def __init__(self, questions: tuple[Question, ...], activity: str = "session", theme: str = "light",
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.questions = questions
        self.activity = activity
        self.setWindowTitle(f"Before the {activity}: consent and screening")
        t = THEMES[theme]
        self.setStyleSheet(stylesheet(t) + f"""
            QRadioButton::indicator {{ width: 14px; height: 14px; border: 2px solid {t.muted}; border-radius: 9px; }}
            QRadioButton::indicator:checked {{ background: {t.text}; border-color: {t.text}; }}""")
        layout = QtWidgets.QVBoxLayout(self)
        intro = QtWidgets.QLabel(f"Answer each question with the client before the {activity} starts. "
                                 "The answers are kept in the client's screening log.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        grid = QtWidgets.QGridLayout()
        self.groups: dict[str, QtWidgets.QButtonGroup] = {}
        for row, q in enumerate(questions):
            text = QtWidgets.QLabel(q.text)
            text.setWordWrap(True)
            grid.addWidget(text, row, 0)
            group = QtWidgets.QButtonGroup(self)
            for col, (label, value) in enumerate((("Yes", True), ("No", False)), start=1):
                button = QtWidgets.QRadioButton(label)
                button.setObjectName(f"{q.key}-{label.lower()}")
                group.addButton(button, int(value))
                grid.addWidget(button, row, col)
            group.idClicked.connect(self._changed)
            self.groups[q.key] = group
        grid.setColumnStretch(0, 1)
        layout.addLayout(grid)
        self.reasons_label = QtWidgets.QLabel()
        self.reasons_label.setObjectName("reasons")
        self.reasons_label.setWordWrap(True)
        self.reasons_label.setStyleSheet(f"color: {t.warn}; font-weight: bold;")
        layout.addWidget(self.reasons_label)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        self.start_button = buttons.addButton(f"Start {activity}", QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.start_button.ensurePolished()  # now in the dialog: the style sheet's font
        metrics = self.start_button.fontMetrics()
        self.start_button.setMinimumWidth(max(metrics.horizontalAdvance(text) for text in (STOP_TEXT, f"Start {activity}"))
                                          + 4 * metrics.averageCharWidth())
        self.resize(720, self.sizeHint().height())
        self._changed()

    def answers(self) -> dict[str, bool]:
        """The answers given so far (True = yes), by question key."""
        return {key: bool(g.checkedId()) for key, g in self.groups.items() if g.checkedId() >= 0}

    def _changed(self, *_: int) -> None:
        answers = self.answers()
        reasons = stop_reasons(self.questions, answers)
        self.reasons_label.setText("\n".join(f"Do not start: {r}" for r in reasons))
        self.reasons_label.setVisible(bool(reasons))
        self.start_button.setEnabled(len(answers) == len(self.questions))
        self.start_button.setText(STOP_TEXT if reasons else f"Start {self.activity}")


def ask_in_window(questions: tuple[Question, ...], activity: str = "session", theme: str = "light") -> dict[str, bool] | None:
    """Ask the screening questions in a dialog; the answers, or None when the therapist cancels."""
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    dialog = ScreeningDialog(questions, activity, theme)
    accepted = dialog.exec() == QtWidgets.QDialog.DialogCode.Accepted
    app.processEvents()
    return dialog.answers() if accepted else None
