"""The home window end to end, offscreen, as a therapist uses it: add a client, start a short session on virtual
sensors with its screening, mark hands-on and a technique by keyboard right after the session starts, let it end,
open, export and print its report, replay it with a pause and a seek. The recording holds every key at the time it was pressed.

Pressing the marker keys right after the start needs the dashboard's keyboard-focus fix (issue 17, item 3): keys go
to whichever widget has the focus, as a person's keys do.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6 import QtCore, QtPrintSupport, QtWidgets

from biofeedback.store import SessionReader
from biofeedback.ui.home import HomeWindow
from biofeedback.ui.replay_controls import clock_text
from biofeedback.ui.screening_dialog import ScreeningDialog
from biofeedback.vocab import WorkerState
from tests.conftest import save_screenshot

PROTOCOL = Path(__file__).resolve().parents[1] / "data" / "protocols" / "dashboard-short.toml"
SPEED = 8.0
KEY_TOLERANCE_S = 0.05 * SPEED + 0.1
"""Session seconds between reading the clock just before a key press and the time the recording gives it."""


def answer_screening(qtbot, activity: str = "session") -> None:
    """Answer the screening dialog as the client's answers allow a start (consent yes, contraindications no)."""
    dialog = next(w for w in QtWidgets.QApplication.topLevelWidgets() if isinstance(w, ScreeningDialog) and w.isVisible())
    for q in dialog.questions:
        button = dialog.findChild(QtWidgets.QRadioButton, f"{q.key}-{'no' if q.stop_if else 'yes'}")
        qtbot.mouseClick(button, QtCore.Qt.MouseButton.LeftButton)
    assert dialog.start_button.isEnabled() and dialog.start_button.text() == f"Start {activity}"
    qtbot.mouseClick(dialog.start_button, QtCore.Qt.MouseButton.LeftButton)


def press(qtbot, dash, key: QtCore.Qt.Key) -> float:
    """Press ``key`` where the keyboard's focus is in the session window; the session time just before the press."""
    t = dash.worker.run.now_s()
    qtbot.keyClick(QtWidgets.QApplication.focusWidget() or dash, key)
    return t


def test_a_session_from_the_home_window_to_its_report_and_replay(qtbot, home):
    window = HomeWindow()
    qtbot.addWidget(window)
    window.show()
    qtbot.keyClicks(window.new_client, "C001")
    qtbot.keyClick(window.new_client, QtCore.Qt.Key.Key_Return)
    assert window.client() == "C001"
    window.sensor_kind.setCurrentIndex(1)  # virtual sensors
    window.speed.setValue(SPEED)
    window.protocol.setCurrentText(str(PROTOCOL))
    window.auto.setChecked(True)

    QtCore.QTimer.singleShot(300, lambda: answer_screening(qtbot))
    qtbot.mouseClick(window.findChild(QtWidgets.QPushButton, "start-session"), QtCore.Qt.MouseButton.LeftButton)
    dash = window.session_window
    assert dash is not None, window.status.text()
    qtbot.addWidget(dash)
    dash.activateWindow()
    qtbot.waitUntil(dash.isActiveWindow)
    qtbot.waitUntil(lambda: dash.worker.state == WorkerState.RUNNING and dash.controller.started, timeout=30_000)

    pressed = {"hands_on": press(qtbot, dash, QtCore.Qt.Key.Key_H)}
    qtbot.wait(300)
    pressed["gb20"] = press(qtbot, dash, QtCore.Qt.Key.Key_2)
    qtbot.wait(600)
    pressed["hands_off"] = press(qtbot, dash, QtCore.Qt.Key.Key_H)
    save_screenshot(dash, "home-e2e-session")
    qtbot.waitUntil(lambda: dash.worker.finished, timeout=60_000)  # unattended: ends after the post phase
    assert dash.worker.error is None, dash.worker.error
    path = dash.worker.path
    for w in QtWidgets.QApplication.topLevelWidgets():
        if isinstance(w, QtWidgets.QDialog) and w.isVisible():
            w.accept()
    dash.close()
    qtbot.waitUntil(lambda: window.session_table.rowCount() == 1, timeout=10_000)
    assert "Session recorded" in window.status.text() and str(path) in window.status.text()

    with SessionReader(path) as r:
        hands = r.events("hands-on")
        marks = r.events("marker")
        treatment = next(p["t_s"] for p in r.phases() if p["label"] == "treatment")
        assert r.meta["screening"]["source"] == "window"
    mine = [h for h in hands if h["t_s"] < treatment]  # the protocol scripts its own hands-on in the treatment
    assert len(mine) == 1, hands
    assert abs(mine[0]["t_s"] - pressed["hands_on"]) <= KEY_TOLERANCE_S
    assert abs(mine[0]["t_s"] + mine[0]["duration_s"] - pressed["hands_off"]) <= KEY_TOLERANCE_S
    gb20 = [m for m in marks if "GB20" in m["label"]]
    assert len(gb20) == 1 and abs(gb20[0]["t_s"] - pressed["gb20"]) <= KEY_TOLERANCE_S, marks

    # the client's sensors are remembered: the choice, and the sensors the session used
    window.select_client("C001")
    assert window.sensor_kind.currentIndex() == 1 and window.protocol.currentText() == str(PROTOCOL)
    assert "(open-emg)" in window.last_devices.text() and "(polar-h10)" in window.last_devices.text()
    from biofeedback.store.sensor_choice import remembered_sensors

    assert remembered_sensors("C001") == ("open-emg", "polar-h10")  # the CLI's next session uses the same sensors

    opened: list[QtCore.QUrl] = []
    window.open_url = opened.append
    qtbot.mouseClick(window.findChild(QtWidgets.QPushButton, "open-report"), QtCore.Qt.MouseButton.LeftButton)
    [url] = opened
    report = Path(url.toLocalFile())
    assert report.parent == home / "clients" / "C001" / "reports" and report.name == f"{path.stem}-report.html"
    assert report.stat().st_mode & 0o777 == 0o600 and "<html" in report.read_text(encoding="utf-8").lower()
    assert "Report:" in window.status.text() and str(report) in window.status.text()

    window.export_format.setCurrentText("csv")
    qtbot.mouseClick(window.findChild(QtWidgets.QPushButton, "export"), QtCore.Qt.MouseButton.LeftButton)
    exported = home / "clients" / "C001" / "exports" / f"{path.stem}-csv"
    assert sorted(exported.iterdir()) and all(p.stat().st_mode & 0o777 == 0o600 for p in exported.iterdir())
    assert "Exported as csv" in window.status.text() and str(exported) in window.status.text()
    printer = QtPrintSupport.QPrinter()  # as a print dialog sets it up, printing to a PDF file
    printer.setOutputFormat(QtPrintSupport.QPrinter.OutputFormat.PdfFormat)
    printer.setOutputFileName(str(home / "printed.pdf"))
    window.print_report(printer)
    assert (home / "printed.pdf").read_bytes().startswith(b"%PDF") and (home / "printed.pdf").stat().st_size > 5000
    assert window.status.text().startswith("Printed the report")

    window.resize(1366, 768)
    qtbot.waitUntil(lambda: window.width() == 1366)
    save_screenshot(window, "home-sessions")

    window.replay_speed.setValue(2.0)
    qtbot.mouseClick(window.findChild(QtWidgets.QPushButton, "replay"), QtCore.Qt.MouseButton.LeftButton)
    controls, replay = window.replay_controls, window.session_window
    qtbot.addWidget(controls)
    qtbot.addWidget(replay)
    qtbot.waitUntil(lambda: controls.clock() is not None and controls.now_s() > 0.5, timeout=30_000)
    controls.activateWindow()
    qtbot.waitUntil(controls.isActiveWindow)
    controls.timeline.setFocus()
    qtbot.keyClick(controls.timeline, QtCore.Qt.Key.Key_Space)  # pause
    held = controls.now_s()
    qtbot.wait(400)
    assert controls.clock().paused and controls.now_s() == held and controls.play_button.text() == "Play"
    for _ in range(2):
        qtbot.keyClick(controls.timeline, QtCore.Qt.Key.Key_PageUp)  # +10 s each, still paused
    qtbot.waitUntil(lambda: controls.now_s() >= held + 19.9, timeout=5_000)
    assert controls.duration_s > 40.0  # paused: the timeline and its label show the clock exactly
    qtbot.waitUntil(lambda: controls.position.text() == f"{clock_text(controls.now_s())} / {clock_text(controls.duration_s)}"
                    and controls.timeline.value() == round(controls.now_s() * 10), timeout=2_000)
    qtbot.keyClick(controls.timeline, QtCore.Qt.Key.Key_Space)  # play
    qtbot.waitUntil(lambda: replay.worker.live is not None and replay.worker.live.values.emg_t_s >= held + 19.0,
                    timeout=20_000)
    qtbot.waitUntil(lambda: replay.controller.phase is not None and replay.controller.phase.name == "treatment",
                    timeout=10_000)
    seen = time.monotonic()
    qtbot.waitUntil(lambda: any("GB20" in line for line in replay._log_lines), timeout=5_000)
    assert time.monotonic() - seen < 5
    save_screenshot(controls, "home-e2e-replay-controls")

    qtbot.keyClick(controls.timeline, QtCore.Qt.Key.Key_Home)  # back to the start: the replay opens again
    qtbot.waitUntil(lambda: window.session_window is not replay, timeout=10_000)
    assert not replay.isVisible() and replay.worker.finished
    replay = window.session_window
    qtbot.addWidget(replay)
    qtbot.waitUntil(lambda: controls.clock() is not None and controls.now_s() > 0.2, timeout=30_000)
    assert controls.now_s() < held + 19.0 and controls.worker is replay.worker
    controls.close()
    assert not replay.isVisible()
    qtbot.waitUntil(lambda: replay.worker.finished, timeout=30_000)
