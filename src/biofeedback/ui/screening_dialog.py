"""The screening questions in a window, for sessions started without a terminal (a desktop launcher).

The dialog only collects the answers; ``session.screening.screen`` logs them and stops a start that an
answer contraindicates, exactly as for answers typed in the terminal. Its own words are for the therapist (a treatment
session: the therapist asks the client) or for the client (home relaxation: the client answers alone): ``WORDING``.
When an answer forbids the start, the dialog says why and what to do before it closes.
"""

from __future__ import annotations

import sys

from PySide6 import QtWidgets

from biofeedback.session.protocol import Question
from biofeedback.session.screening import stop_reasons
from biofeedback.ui.theme import THEMES, stylesheet


WORDING = {
    "therapist": {
        "title": "Before the {activity}: consent and screening",
        "intro": "Answer each question with the client before the {activity} starts. "
                 "The answers are kept in the client's screening log.",
        "start": "Start {activity}",
        "stop": "Log the answers; don't start",
        "reason": "Do not start: {reason}",
        "stopped": "The {activity} will not start: {reasons}. The answers are kept in the client's screening log.",
    },
    "client": {
        "title": "Before you start",
        "intro": "Please answer each question before you start the {activity}. Your answers are saved for your "
                 "therapist.",
        "start": "Start my {activity}",
        "stop": "Save my answers; don't start",
        "reason": "Please don't start today: {reason}",
        "stopped": "Your {activity} will not start today, because of your answer: {reasons}. Your answers are saved "
                   "for your therapist. Please talk to your therapist or doctor before you try again.",
    },
}
"""The dialog's words for each reader, ``{activity}`` filled in; question texts come from the protocol."""
STOP_TEXT = WORDING["therapist"]["stop"]
"""The start button's text while an answer forbids the start (the therapist's wording)."""


class ScreeningDialog(QtWidgets.QDialog):
    """Yes/No for each question; the start button is enabled once every question is answered and says
    whether the session will start, with the reasons shown when an answer forbids it."""

    def __init__(self, questions: tuple[Question, ...], activity: str = "session", theme: str = "light",
                 parent: QtWidgets.QWidget | None = None, reader: str = "therapist") -> None:
        super().__init__(parent)
        self.questions = questions
        self.activity = activity
        self.words = {k: v.replace("{activity}", activity) for k, v in WORDING[reader].items()}
        self.explained = False
        self.setWindowTitle(self.words["title"])
        t = THEMES[theme]
        self.setStyleSheet(stylesheet(t) + f"""
            QRadioButton::indicator {{ width: 14px; height: 14px; border: 2px solid {t.muted}; border-radius: 9px; }}
            QRadioButton::indicator:checked {{ background: {t.text}; border-color: {t.text}; }}""")
        layout = QtWidgets.QVBoxLayout(self)
        self.intro = QtWidgets.QLabel(self.words["intro"])
        self.intro.setObjectName("intro")
        self.intro.setWordWrap(True)
        layout.addWidget(self.intro)
        self.question_box = QtWidgets.QWidget()
        grid = QtWidgets.QGridLayout(self.question_box)
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
        layout.addWidget(self.question_box)
        self.reasons_label = QtWidgets.QLabel()
        self.reasons_label.setObjectName("reasons")
        self.reasons_label.setWordWrap(True)
        self.reasons_label.setStyleSheet(f"color: {t.warn}; font-weight: bold;")
        layout.addWidget(self.reasons_label)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        self.cancel_button = buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        self.start_button = buttons.addButton(self.words["start"], QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.start_button.ensurePolished()  # now in the dialog: the style sheet's font
        metrics = self.start_button.fontMetrics()
        self.start_button.setMinimumWidth(max(metrics.horizontalAdvance(self.words[k]) for k in ("stop", "start"))
                                          + 4 * metrics.averageCharWidth())
        self.resize(720, self.sizeHint().height())
        self._changed()

    def answers(self) -> dict[str, bool]:
        """The answers given so far (True = yes), by question key."""
        return {key: bool(g.checkedId()) for key, g in self.groups.items() if g.checkedId() >= 0}

    def _changed(self, *_: int) -> None:
        answers = self.answers()
        reasons = stop_reasons(self.questions, answers)
        self.reasons_label.setText("\n".join(self.words["reason"].replace("{reason}", r) for r in reasons))
        self.reasons_label.setVisible(bool(reasons))
        self.start_button.setEnabled(len(answers) == len(self.questions))
        self.start_button.setText(self.words["stop"] if reasons else self.words["start"])

    def accept(self) -> None:
        """Start; or, when an answer forbids the start, first say why and what to do (the next click closes)."""
        reasons = stop_reasons(self.questions, self.answers())
        if reasons and not self.explained:
            self.explained = True
            self.question_box.hide()
            self.intro.hide()
            self.cancel_button.hide()
            self.reasons_label.setText(self.words["stopped"].replace("{reasons}", "; ".join(reasons)))
            self.start_button.setText("Close")
            return
        super().accept()


def ask_in_window(questions: tuple[Question, ...], activity: str = "session", theme: str = "light",
                  reader: str = "therapist") -> dict[str, bool] | None:
    """Ask the screening questions in a dialog worded for ``reader``; the answers, or None when cancelled."""
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    dialog = ScreeningDialog(questions, activity, theme, reader=reader)
    accepted = dialog.exec() == QtWidgets.QDialog.DialogCode.Accepted
    app.processEvents()
    return dialog.answers() if accepted else None
