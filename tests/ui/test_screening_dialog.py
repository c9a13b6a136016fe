"""The screening questions in a window: answers collected by clicking, logged and enforced by ``screen``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6 import QtCore, QtWidgets

from biofeedback.session.protocol import SessionError, load_protocol
from biofeedback.session.screening import AUDIT_FILE, screen
from biofeedback.ui.screening_dialog import STOP_TEXT, ScreeningDialog, ask_in_window
from tests.conftest import save_screenshot

DEFAULT = load_protocol(Path(__file__).resolve().parents[2] / "protocols" / "default.toml")
CLEAR = {"consent": "yes", "acute_migraine": "no", "new_headache": "no", "cervical_spine": "no"}


def click(qtbot, dialog: ScreeningDialog, choices: dict[str, str]) -> None:
    for key, label in choices.items():
        button = dialog.findChild(QtWidgets.QRadioButton, f"{key}-{label}")
        qtbot.mouseClick(button, QtCore.Qt.MouseButton.LeftButton)


def answer_when_shown(qtbot, choices: dict[str, str] | None) -> None:
    """Answer the modal dialog once it is open (or cancel it when ``choices`` is None)."""
    def act():
        dialog = QtWidgets.QApplication.activeModalWidget()
        assert isinstance(dialog, ScreeningDialog)
        if choices is None:
            dialog.reject()
            return
        click(qtbot, dialog, choices)
        qtbot.mouseClick(dialog.start_button, QtCore.Qt.MouseButton.LeftButton)
        if dialog.isVisible():  # a stopping answer: the dialog said why; the next click closes it
            assert dialog.explained and dialog.start_button.text() == "Close"
            qtbot.mouseClick(dialog.start_button, QtCore.Qt.MouseButton.LeftButton)
    QtCore.QTimer.singleShot(200, act)


def audit_lines(home: Path) -> list[dict]:
    path = home / "clients" / "C001" / AUDIT_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_start_needs_every_answer_and_a_stopping_answer_shows_why(qtbot, theme):
    dialog = ScreeningDialog(DEFAULT.questions, "session", theme)
    qtbot.addWidget(dialog)
    dialog.show()
    assert not dialog.start_button.isEnabled()
    click(qtbot, dialog, {"consent": "yes", "acute_migraine": "no"})
    assert not dialog.start_button.isEnabled()
    click(qtbot, dialog, {"new_headache": "no", "cervical_spine": "no"})
    assert dialog.start_button.isEnabled() and dialog.start_button.text() == "Start session"
    assert dialog.answers() == {"consent": True, "acute_migraine": False, "new_headache": False, "cervical_spine": False}
    assert not dialog.reasons_label.isVisible()
    click(qtbot, dialog, {"new_headache": "yes"})
    assert dialog.reasons_label.isVisible()
    assert "refer to a physician" in dialog.reasons_label.text()
    assert dialog.start_button.text() == STOP_TEXT
    qtbot.wait(50)
    button = dialog.start_button
    assert button.contentsRect().width() >= button.fontMetrics().horizontalAdvance(STOP_TEXT), "button text cut off"
    save_screenshot(dialog, f"screening-dialog-{theme}")


def test_window_answers_are_logged_and_start_the_session(qtbot, home):
    answer_when_shown(qtbot, CLEAR)
    result = screen("C001", DEFAULT, None, unattended=True, ask_window=ask_in_window)
    assert result == {"answers": {"consent": True, "acute_migraine": False, "new_headache": False,
                                  "cervical_spine": False}, "source": "window"}
    [record] = audit_lines(home)
    assert record["source"] == "window" and not record["stopped"]


def test_a_contraindication_in_the_window_stops_the_start_and_is_logged(qtbot, home):
    answer_when_shown(qtbot, {**CLEAR, "acute_migraine": "yes"})
    with pytest.raises(SessionError, match="acute severe migraine"):
        screen("C001", DEFAULT, None, unattended=False, ask_window=ask_in_window)
    [record] = audit_lines(home)
    assert record["stopped"] and record["answers"]["acute_migraine"] is True


def test_cancelling_the_window_starts_nothing_and_logs_nothing(qtbot, home):
    answer_when_shown(qtbot, None)
    with pytest.raises(SessionError, match="cancelled"):
        screen("C001", DEFAULT, None, unattended=False, ask_window=ask_in_window)
    assert audit_lines(home) == []
