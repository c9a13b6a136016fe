"""The home window, offscreen, driven by keys and clicks: clients (pseudonymous only), search, archive, the diary,
the records tabs, and its layout at 1366x768 and 1920x1080."""

from __future__ import annotations

import pytest
from PySide6 import QtCore, QtWidgets

from biofeedback.store.listing import list_clients
from biofeedback.ui.home import HomeWindow
from tests.conftest import save_screenshot


@pytest.fixture
def home_window(qtbot):
    window = HomeWindow()
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


def type_client(qtbot, window: HomeWindow, text: str) -> None:
    window.new_client.setFocus()
    window.new_client.clear()
    qtbot.keyClicks(window.new_client, text)
    qtbot.keyClick(window.new_client, QtCore.Qt.Key.Key_Return)


def listed(window: HomeWindow) -> list[str]:
    return [window.client_list.item(i).text() for i in range(window.client_list.count())]


def assert_nothing_cut_off(window: QtWidgets.QWidget) -> None:
    """Every visible button, field and label lies wholly inside the window, at no less than its minimum size."""
    frame = window.rect()
    for w in window.findChildren(QtWidgets.QWidget):
        if not w.isVisibleTo(window) or isinstance(w, (QtWidgets.QScrollBar,)) or w.window() is not window:
            continue
        if isinstance(w, (QtWidgets.QAbstractButton, QtWidgets.QLineEdit, QtWidgets.QComboBox, QtWidgets.QLabel,
                          QtWidgets.QAbstractSpinBox)):
            box = QtCore.QRect(w.mapTo(window, QtCore.QPoint(0, 0)), w.size())
            assert frame.contains(box), f"{type(w).__name__} {w.objectName() or getattr(w, 'text', lambda: '')()} at {box}"
            hint = w.minimumSizeHint()
            if isinstance(w, QtWidgets.QAbstractButton):
                assert w.width() >= hint.width() and w.height() >= hint.height(), f"{w.text()} squeezed"


def test_clients_are_pseudonymous_and_can_be_searched_and_archived(qtbot, home_window, home):
    window = home_window
    assert not window.tabs.isEnabled()
    type_client(qtbot, window, "Jane Doe")
    assert window.client_error.isVisible()
    assert "looks like a real name" in window.client_error.text() and "pseudonymous" in window.client_error.text()
    assert "never a name" in window.client_error.text() and list_clients() == []
    type_client(qtbot, window, "jane@example.org")
    assert "email" in window.client_error.text() and list_clients() == []

    for client in ("C001", "C002", "K-17"):
        type_client(qtbot, window, client)
    assert not window.client_error.isVisible()
    assert list_clients() == ["C001", "C002", "K-17"] and listed(window) == ["C001", "C002", "K-17"]
    assert window.client() == "K-17" and window.title.text() == "Client K-17" and window.tabs.isEnabled()
    assert (home / "clients" / "K-17").stat().st_mode & 0o777 == 0o700

    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(QtWidgets.QApplication.focusWidget() or window, QtCore.Qt.Key.Key_F,
                   QtCore.Qt.KeyboardModifier.ControlModifier)
    assert QtWidgets.QApplication.focusWidget() is window.search
    qtbot.keyClicks(window.search, "c00")
    assert listed(window) == ["C001", "C002"]
    qtbot.keyClick(window.search, QtCore.Qt.Key.Key_2)
    assert listed(window) == ["C002"] and window.client() == "C002"
    window.search.clear()
    window.select_client("C002")
    qtbot.mouseClick(window.archive_button, QtCore.Qt.MouseButton.LeftButton)
    assert listed(window) == ["C001", "K-17"] and "archived" in window.status.text()
    assert (home / "clients" / "C002" / "sessions").is_dir()  # archived, nothing deleted
    window.show_archived.setChecked(True)
    assert listed(window) == ["C001", "C002 (archived)", "K-17"]
    window.select_client("C002")
    assert window.archive_button.text() == "Restore client"
    qtbot.mouseClick(window.archive_button, QtCore.Qt.MouseButton.LeftButton)
    window.show_archived.setChecked(False)
    assert listed(window) == ["C001", "C002", "K-17"]


def test_the_diary_and_the_records_of_a_new_client(qtbot, home_window, home):
    window = home_window
    type_client(qtbot, window, "C001")
    window.tabs.setCurrentIndex(3)
    assert "no" in window.diary.toPlainText().lower()
    window.diary_intensity.setValue(6)
    window.diary_hours.setValue(2.5)
    qtbot.keyClicks(window.diary_medication, "ibuprofen 400 mg")
    qtbot.mouseClick(window.findChild(QtWidgets.QPushButton, "diary-add"), QtCore.Qt.MouseButton.LeftButton)
    from biofeedback.analysis.diary import format_diary, read_diary

    [entry] = read_diary("C001")
    assert (entry["intensity"], entry["duration_h"], entry["medication"]) == (6, 2.5, "ibuprofen 400 mg")
    assert window.diary.toPlainText() == format_diary([entry])
    # a second headache whose length the client does not know: the hours box left at its start reads "unknown"
    window.diary_intensity.setValue(4)
    window.diary_hours.setValue(0.0)
    assert window.diary_hours.text() == "unknown"
    qtbot.mouseClick(window.findChild(QtWidgets.QPushButton, "diary-add"), QtCore.Qt.MouseButton.LeftButton)
    second = read_diary("C001")[-1]
    assert (second["intensity"], second["duration_h"]) == (4, None)
    assert "unknown" in window.diary.toPlainText()
    window.tabs.setCurrentIndex(1)
    assert "No calibration for C001" in window.calibrations.toPlainText()
    window.tabs.setCurrentIndex(2)
    assert window.relax_history.toPlainText() == "This is your first home session."
    window.tabs.setCurrentIndex(4)
    assert window.trend.toPlainText() == "No sessions recorded for C001 yet."
    opened: list[QtCore.QUrl] = []
    window.open_url = opened.append
    qtbot.mouseClick(window.findChild(QtWidgets.QPushButton, "trend-report"), QtCore.Qt.MouseButton.LeftButton)
    [url] = opened
    trend = home / "clients" / "C001" / "reports" / "C001-trend.html"
    assert url.toLocalFile() == str(trend) and trend.stat().st_mode & 0o777 == 0o600
    assert "ibuprofen 400 mg" in trend.read_text(encoding="utf-8")
    window.tabs.setCurrentIndex(0)
    qtbot.mouseClick(window.findChild(QtWidgets.QPushButton, "open-report"), QtCore.Qt.MouseButton.LeftButton)
    assert window.status.text() == "Choose a session in the list first."

    damaged = home / "clients" / "C001" / "sessions" / "20260101T000000Z.bfsession"
    damaged.write_bytes(b"not a session file" * 100)
    window.refresh_records()
    assert window.session_table.rowCount() == 1 and window.session_table.item(0, 3).text().startswith("damaged: ")
    qtbot.mouseClick(window.findChild(QtWidgets.QPushButton, "replay"), QtCore.Qt.MouseButton.LeftButton)
    assert window.status.text().startswith("20260101T000000Z.bfsession cannot be read: ") and window.session_window is None


@pytest.mark.parametrize("size", [(1366, 768), (1920, 1080)])
def test_the_home_window_fits_the_screen(qtbot, home_window, size):
    window = home_window
    for client in ("C001", "C002"):
        type_client(qtbot, window, client)
    window.sensor_kind.setCurrentIndex(1)
    window.resize(*size)
    qtbot.waitUntil(lambda: window.size() == QtCore.QSize(*size))
    QtWidgets.QApplication.processEvents()
    assert window.minimumSizeHint().width() <= 1366 and window.minimumSizeHint().height() <= 768 - 40
    assert_nothing_cut_off(window)
    save_screenshot(window, f"home-{size[0]}x{size[1]}")


def test_a_home_relaxation_from_the_home_window(qtbot, home_window, home):
    from biofeedback.store import SessionReader
    from biofeedback.ui.relax_window import RelaxWindow
    from tests.ui.test_home_e2e import answer_screening

    window = home_window
    type_client(qtbot, window, "C005")
    window.sensor_kind.setCurrentIndex(1)
    window.virtual_boxes["open-emg"].setChecked(False)  # a strap alone: breathing and heart-rate feedback
    window.speed.setValue(50.0)
    window.relax_minutes.setValue(2.5)
    QtCore.QTimer.singleShot(300, lambda: answer_screening(qtbot, "relaxation"))
    qtbot.mouseClick(window.findChild(QtWidgets.QPushButton, "relax"), QtCore.Qt.MouseButton.LeftButton)
    relax = window.session_window
    assert isinstance(relax, RelaxWindow), window.status.text()
    qtbot.addWidget(relax)
    qtbot.waitUntil(lambda: relax.worker.finished, timeout=40_000)
    path = relax.worker.path
    relax.close()
    qtbot.waitUntil(lambda: window.session_table.rowCount() == 1, timeout=10_000)
    with SessionReader(path) as r:
        assert r.meta["mode"] == "relax-window" and r.meta["screening"]["source"] == "window"
        assert [d["profile"] for d in r.meta["devices"]] == ["polar-h10"]
        assert sum(ph["duration_s"] for ph in r.phases()) == pytest.approx(150.0, abs=1.0)  # 2.5 minutes
    window.tabs.setCurrentIndex(2)
    assert window.relax_history.toPlainText().startswith("Your last 1 home sessions")



def test_install_desktop_puts_the_launcher_and_icon_in_the_menu(tmp_path, monkeypatch, capsys):
    from xml.etree import ElementTree

    from biofeedback.cli import main

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    assert main(["home", "--install-desktop"]) == 0
    entry = tmp_path / "share" / "applications" / "biofeedback.desktop"
    icon = tmp_path / "share" / "icons" / "hicolor" / "scalable" / "apps" / "biofeedback.svg"
    assert capsys.readouterr().out.splitlines() == [f"installed {entry}", f"installed {icon}"]
    fields = dict(line.split("=", 1) for line in entry.read_text(encoding="utf-8").splitlines() if "=" in line)
    assert fields["Type"] == "Application" and fields["Icon"] == "biofeedback" and fields["Terminal"] == "false"
    command = fields["Exec"].split()
    assert command[0].endswith("biofeedback-app") or command[-2:] == ["biofeedback", "home"]
    assert ElementTree.parse(icon).getroot().tag.endswith("svg")


def test_a_screening_that_forbids_the_start_is_said_and_nothing_opens(qtbot, home_window, home):
    from biofeedback.ui.screening_dialog import STOP_TEXT, ScreeningDialog

    window = home_window
    type_client(qtbot, window, "C009")
    window.sensor_kind.setCurrentIndex(1)
    seen: list[str] = []

    def refuse_consent() -> None:
        dialog = next(w for w in QtWidgets.QApplication.topLevelWidgets()
                      if isinstance(w, ScreeningDialog) and w.isVisible())
        for q in dialog.questions:  # no consent, nothing else against
            answer = "no" if q.key == "consent" or q.stop_if else "yes"
            qtbot.mouseClick(dialog.findChild(QtWidgets.QRadioButton, f"{q.key}-{answer}"), QtCore.Qt.MouseButton.LeftButton)
        seen.append(dialog.start_button.text())
        qtbot.mouseClick(dialog.start_button, QtCore.Qt.MouseButton.LeftButton)
        # the dialog now says why it will not start, and the next click closes it
        assert dialog.isVisible() and dialog.explained and dialog.start_button.text() == "Close"
        seen.append(dialog.start_button.text())
        qtbot.mouseClick(dialog.start_button, QtCore.Qt.MouseButton.LeftButton)

    QtCore.QTimer.singleShot(300, refuse_consent)
    qtbot.mouseClick(window.findChild(QtWidgets.QPushButton, "start-session"), QtCore.Qt.MouseButton.LeftButton)
    assert seen == [STOP_TEXT, "Close"] and window.session_window is None
    assert window.status.text().startswith("session not started: ") and "answers kept" in window.status.text()
    assert list((home / "clients" / "C009" / "sessions").glob("*.bfsession")) == []


def test_a_window_that_refuses_to_close_is_still_watched(qtbot):
    """The home window acts on a session window's end only once it has really closed (a window may ask first)."""
    from biofeedback.ui.home import _Closed

    class Asks(QtWidgets.QWidget):
        allow = False

        def closeEvent(self, ev) -> None:  # noqa: N802 - Qt's name
            ev.setAccepted(self.allow)

    window, ended = Asks(), []
    qtbot.addWidget(window)
    window.show()
    _Closed(window, lambda: ended.append(True))
    window.close()
    qtbot.wait(50)
    assert window.isVisible() and ended == []
    window.allow = True
    window.close()
    qtbot.waitUntil(lambda: ended == [True])
    window.close()
    qtbot.wait(50)
    assert ended == [True]


def test_the_home_window_offers_every_virtual_sensor_there_is():
    from biofeedback.sensors.virtual import ADDRESSES
    from biofeedback.ui.home import VIRTUAL_DEVICES

    assert set(VIRTUAL_DEVICES) == set(ADDRESSES)
