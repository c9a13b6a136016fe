"""Calibration in a window, offscreen: guided with countdowns, a clear retry when the contractions disagree, the
result saved as `biofeedback calibrate` saves it; and started from the home window."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from biofeedback.sensors.profiles import load_profiles
from biofeedback.ui.calibration_window import CalibrationWindow
from biofeedback.ui.home import HomeWindow, cli_args
from tests.conftest import save_screenshot

PROTOCOL = Path(__file__).resolve().parents[1] / "data" / "calibration" / "test-quick.toml"
SPEED = "15"
TRY_WALL_MS = 30_000
"""Longest wait for one try (45 session s at 15x, plus connecting and the late-data wait)."""


def test_disagreeing_contractions_ask_for_a_retry_then_pass(qtbot, home):
    args = cli_args("calibrate", "--client", "C003", "--virtual", "--speed", SPEED, "--protocol", str(PROTOCOL),
                    "--virtual-contractions", "120,70,120;120,120,120")
    window = CalibrationWindow.from_args(args, load_profiles())
    qtbot.addWidget(window)
    window.show()
    steps: list[str] = []
    window.timer.timeout.connect(lambda: steps.append(window.step.text()) if steps[-1:] != [window.step.text()] else None)
    window.start()
    qtbot.waitUntil(window.retry_button.isVisible, timeout=TRY_WALL_MS)
    assert window.step.text() == "The contractions did not agree."
    assert "differ by more than 15%" in window.problems.text() and "Try again" in window.problems.text()
    assert window.stop_button.isVisible() and not window.close_button.isEnabled()
    save_screenshot(window, "calibration-retry")
    for k in (2, 1):  # the countdown before each contraction, in large type
        assert sum(s == f"Contraction 1\n{k}..." for s in steps) == 1, steps
    assert "Contraction 2\nLift both shoulders towards the ears and hold. (4 s)" in steps
    assert not list((home / "clients" / "C003" / "calibration").glob("*.json"))

    qtbot.keyClick(window.retry_button, QtCore.Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: window.finished, timeout=TRY_WALL_MS)
    assert window.error is None, window.error
    assert window.step.text().startswith("Calibration saved") and "try 2 of 2" in window.log.toPlainText()
    saved = json.loads(window.saved.read_text(encoding="utf-8"))
    assert window.saved.parent == home / "clients" / "C003" / "calibration"
    assert saved["tries"] == 2 and max(saved["spread"]) <= 0.15 and 100 < saved["rvc_rms_uv"][0] < 140
    save_screenshot(window, "calibration-saved")


def test_calibrate_from_the_home_window(qtbot, home):
    window = HomeWindow()
    qtbot.addWidget(window)
    window.show()
    qtbot.keyClicks(window.new_client, "C007")
    qtbot.keyClick(window.new_client, QtCore.Qt.Key.Key_Return)
    window.sensor_kind.setCurrentIndex(1)
    window.speed.setValue(float(SPEED))
    window.calibration_protocol.setCurrentText(str(PROTOCOL))
    qtbot.mouseClick(window.findChild(QtWidgets.QPushButton, "calibrate"), QtCore.Qt.MouseButton.LeftButton)
    cal = window.session_window
    assert isinstance(cal, CalibrationWindow), window.status.text()
    qtbot.addWidget(cal)
    qtbot.waitUntil(lambda: cal.finished, timeout=TRY_WALL_MS)
    assert cal.saved is not None, cal.problems.text()
    qtbot.mouseClick(cal.close_button, QtCore.Qt.MouseButton.LeftButton)
    window.tabs.setCurrentIndex(1)
    qtbot.waitUntil(lambda: "test-quick: rest" in window.calibrations.toPlainText(), timeout=5_000)
    assert window.calibrations.toPlainText().count("\n") == 0  # one calibration
