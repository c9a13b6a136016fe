"""The home window: everything a therapist or a home client does, with no terminal.

``biofeedback`` with no arguments on a desktop (or the ``biofeedback-app`` launcher) opens it. On the left the
clients (pseudonymous IDs only: add, search, archive); on the right, for the chosen client, the sensors to use
(remembered per client), the actions (a treatment session with its screening, a calibration, a home relaxation)
and what has been recorded: sessions (open, print or export a report; replay with pause, seek and a timeline),
calibrations, home sessions, the headache diary and the trend. Every action calls the function the matching CLI
command calls; this window only collects the choices and shows the results.

Per-client files: ``<home>/clients/<id>/home-window.json`` (the last sensors and protocol, 0600) and ``archived``
(present while the client is archived). Reports go to ``<id>/reports``, exports to ``<id>/exports``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Callable
from functools import partial

from PySide6 import QtCore, QtGui, QtWidgets

from biofeedback.cli.common import DEFAULT_MINUTES, FORMATS
from biofeedback.errors import BiofeedbackError, UsageError
from biofeedback.store import list_sessions, validate_client_id
from biofeedback.store.listing import list_clients
from biofeedback.store.paths import data_home, session_dir, write_private
from biofeedback.ui.theme import THEMES, stylesheet

SETTINGS_FILE = "home-window.json"
ARCHIVED_FILE = "archived"
VIRTUAL_DEVICES = ("open-emg", "polar-h10", "hrs-strap", "bitalino", "ganglion", "polar-verity")
"""The virtual sensors one can power on (``--virtual-devices``; every one in ``sensors.virtual.ADDRESSES``, which a
test keeps the same)."""
DEFAULT_VIRTUAL = ("open-emg", "polar-h10")
WHY_PSEUDONYM = ("Use a code such as C001, never a name or an email: recordings are health data, and a code keeps "
                 "them pseudonymous if a file is shared for research.")


# --- per-client files -------------------------------------------------------------------------------
def client_dir(client: str) -> pathlib.Path:
    return data_home() / "clients" / validate_client_id(client)


def add_client(text: str) -> str:
    """Create a client's folders (0700) for a pseudonymous ID, checked as the CLI checks it; returns the ID."""
    client = validate_client_id(text.strip())
    session_dir(client)
    return client


def is_archived(client: str) -> bool:
    return (client_dir(client) / ARCHIVED_FILE).exists()


def set_archived(client: str, archived: bool) -> None:
    """Archive a client (hidden from the list unless asked; nothing is deleted) or bring them back."""
    flag = client_dir(client) / ARCHIVED_FILE
    if archived:
        write_private(flag, "archived from the home window; delete this file to list the client again\n")
    else:
        flag.unlink(missing_ok=True)


def client_settings(client: str) -> dict:
    """The sensors and protocol last used for ``client`` (empty when none, or when the file is damaged)."""
    try:
        doc = json.loads((client_dir(client) / SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def save_client_settings(client: str, settings: dict) -> None:
    write_private(client_dir(client) / SETTINGS_FILE, json.dumps(settings, indent=1, sort_keys=True))


def cli_args(*argv: str) -> argparse.Namespace:
    """The CLI's parsed arguments for ``argv``: the window's choices go through the same parser and checks."""
    from biofeedback.cli import build_parser

    return build_parser().parse_args(list(argv))


def _button(text: str, name: str, slot: Callable) -> QtWidgets.QPushButton:
    b = QtWidgets.QPushButton(text)
    b.setObjectName(name)
    b.clicked.connect(slot)
    return b


class _Closed(QtCore.QObject):
    """Calls ``then`` once, after a watched window has closed (not when the window refused to close, e.g. after
    asking "end the session?")."""

    def __init__(self, window: QtWidgets.QWidget, then: Callable[[], None]) -> None:
        super().__init__(window)
        self.window, self.then, self.done = window, then, False
        window.installEventFilter(self)

    def eventFilter(self, obj, ev) -> bool:  # noqa: N802 - Qt's name
        if ev.type() == QtCore.QEvent.Type.Close:
            QtCore.QTimer.singleShot(0, self._after_close)
        return False

    def _after_close(self) -> None:
        if not self.done and not self.window.isVisible():
            self.done = True
            self.then()


class HomeWindow(QtWidgets.QMainWindow):
    """Clients on the left, the chosen client's actions and records on the right."""

    def __init__(self, theme: str = "light") -> None:
        super().__init__()
        self.theme = THEMES[theme]
        self.theme_name = theme
        self.setWindowTitle("Biofeedback")
        self.setWindowIcon(app_icon())
        self.setStyleSheet(stylesheet(self.theme))
        self.open_url: Callable[[QtCore.QUrl], object] = QtGui.QDesktopServices.openUrl
        """Opens a written report or folder (the desktop's viewer)."""
        self.session_window = None
        """The session, replay, calibration or relaxation window now open (one at a time)."""
        self.replay_controls = None
        self._profiles = None
        self._sessions: list[dict] = []

        split = QtWidgets.QSplitter()
        split.addWidget(self._build_clients())
        split.addWidget(self._build_client_view())
        split.setStretchFactor(1, 3)
        split.setSizes([300, 900])
        self.setCentralWidget(split)
        self.status = QtWidgets.QLabel()
        self.status.setObjectName("status")
        self.status.setWordWrap(True)
        self.status.setOpenExternalLinks(False)
        self.status.linkActivated.connect(lambda link: self.open_url(QtCore.QUrl(link)))
        self.status.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextBrowserInteraction)
        self.statusBar().addWidget(self.status, 1)
        for seq, widget in (("Ctrl+F", self.search), ("Ctrl+N", self.new_client)):
            QtGui.QShortcut(QtGui.QKeySequence(seq), self, activated=widget.setFocus)
        self.search.setToolTip("Search clients (Ctrl+F)")
        self.resize(1200, 720)
        self.refresh_clients()

    # --- building ----------------------------------------------------------------------------------
    def _build_clients(self) -> QtWidgets.QWidget:
        box = QtWidgets.QGroupBox("Clients")
        lay = QtWidgets.QVBoxLayout(box)
        self.search = QtWidgets.QLineEdit()
        self.search.setObjectName("search")
        self.search.setPlaceholderText("Search clients")
        self.search.textChanged.connect(self.refresh_clients)
        lay.addWidget(self.search)
        self.client_list = QtWidgets.QListWidget()
        self.client_list.setObjectName("clients")
        self.client_list.currentTextChanged.connect(self.show_client)
        lay.addWidget(self.client_list, 1)
        self.show_archived = QtWidgets.QCheckBox("Show archived clients")
        self.show_archived.toggled.connect(self.refresh_clients)
        lay.addWidget(self.show_archived)
        self.archive_button = _button("Archive client", "archive", self.toggle_archive)
        lay.addWidget(self.archive_button)
        lay.addWidget(QtWidgets.QLabel("New client (pseudonymous code):"))
        row = QtWidgets.QHBoxLayout()
        self.new_client = QtWidgets.QLineEdit()
        self.new_client.setObjectName("new-client")
        self.new_client.setPlaceholderText("e.g. C001")
        self.new_client.setToolTip(f"{WHY_PSEUDONYM} (Ctrl+N)")
        self.new_client.returnPressed.connect(self.add_client)
        row.addWidget(self.new_client, 1)
        row.addWidget(_button("Add", "add-client", self.add_client))
        lay.addLayout(row)
        self.client_error = QtWidgets.QLabel()
        self.client_error.setObjectName("client-error")
        self.client_error.setWordWrap(True)
        self.client_error.setStyleSheet(f"color: {self.theme.warn};")
        self.client_error.hide()
        lay.addWidget(self.client_error)
        return box

    def _build_client_view(self) -> QtWidgets.QWidget:
        page = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(page)
        self.title = QtWidgets.QLabel("Add or choose a client")
        self.title.setObjectName("title")
        self.title.setStyleSheet("font-size: 20pt; font-weight: bold;")
        lay.addWidget(self.title)

        sensors = QtWidgets.QGroupBox("Sensors")
        grid = QtWidgets.QGridLayout(sensors)
        self.sensor_kind = QtWidgets.QComboBox()
        self.sensor_kind.setObjectName("sensor-kind")
        self.sensor_kind.addItems(["Bluetooth sensors", "Virtual sensors (demo, training)"])
        self.sensor_kind.currentIndexChanged.connect(self._sensor_kind_changed)
        grid.addWidget(self.sensor_kind, 0, 0)
        self.virtual_boxes: dict[str, QtWidgets.QCheckBox] = {}
        boxes = QtWidgets.QWidget()
        box_grid = QtWidgets.QGridLayout(boxes)  # three a row, so six sensors fit a 1366 px screen
        box_grid.setContentsMargins(0, 0, 0, 0)
        for i, name in enumerate(VIRTUAL_DEVICES):
            box = self.virtual_boxes[name] = QtWidgets.QCheckBox(name)
            box.setObjectName(f"virtual-{name}")
            box_grid.addWidget(box, i // 3, i % 3)
        grid.addWidget(boxes, 0, 1, 1, 3)
        right = QtCore.Qt.AlignmentFlag.AlignRight
        grid.addWidget(QtWidgets.QLabel("Session protocol:"), 1, 0, right)
        self.protocol = _protocol_combo("protocol", "session")
        grid.addWidget(self.protocol, 1, 1, 1, 2)
        self.auto = QtWidgets.QCheckBox("Unattended (phases follow the protocol's times)")
        self.auto.setObjectName("auto")
        grid.addWidget(self.auto, 1, 3)
        grid.addWidget(QtWidgets.QLabel("Calibration:"), 2, 0, right)
        self.calibration_protocol = _protocol_combo("calibration-protocol", "calibration")
        grid.addWidget(self.calibration_protocol, 2, 1, 1, 2)
        minutes = QtWidgets.QHBoxLayout()
        minutes.addWidget(QtWidgets.QLabel("Home relaxation, minutes:"))
        self.relax_minutes = QtWidgets.QDoubleSpinBox()
        self.relax_minutes.setObjectName("relax-minutes")
        self.relax_minutes.setRange(1.0, 120.0)
        self.relax_minutes.setValue(DEFAULT_MINUTES)
        minutes.addWidget(self.relax_minutes)
        minutes.addStretch(1)
        grid.addLayout(minutes, 2, 3)
        grid.addWidget(QtWidgets.QLabel("Virtual speed ×"), 3, 0, right)
        self.speed = QtWidgets.QDoubleSpinBox()
        self.speed.setObjectName("speed")
        self.speed.setRange(0.1, 50.0)
        self.speed.setValue(1.0)
        grid.addWidget(self.speed, 3, 1)
        self.sensor_hint = QtWidgets.QLabel()
        self.sensor_hint.setObjectName("sensor-hint")
        grid.addWidget(self.sensor_hint, 3, 2, 1, 2)
        self.last_devices = QtWidgets.QLabel()
        self.last_devices.setObjectName("last-devices")
        grid.addWidget(self.last_devices, 4, 0, 1, 4)
        lay.addWidget(sensors)

        actions = QtWidgets.QHBoxLayout()
        self.action_buttons = [
            _button("Start session…", "start-session", self.start_session),
            _button("Calibrate…", "calibrate", self.start_calibration),
            _button("Home relaxation…", "relax", self.start_relaxation),
        ]
        for b in self.action_buttons:
            b.setMinimumHeight(44)
            actions.addWidget(b)
        lay.addLayout(actions)

        self.tabs = QtWidgets.QTabWidget()
        self.tabs.setObjectName("records")
        self.tabs.addTab(self._build_sessions_tab(), "Sessions")
        self.calibrations, _ = self._text_tab("calibrations", "Calibrations")
        self.relax_history, _ = self._text_tab("home-sessions", "Home sessions")
        self._build_diary_tab()
        self._build_trend_tab()
        self.tabs.currentChanged.connect(lambda _i: self._fill_tab())
        lay.addWidget(self.tabs, 1)
        self._client_widgets = [sensors, *self.action_buttons, self.tabs, self.archive_button]
        return page

    def _text_tab(self, name: str, title: str) -> tuple[QtWidgets.QPlainTextEdit, QtWidgets.QHBoxLayout]:
        """A records tab: read-only text over a row for its buttons."""
        page = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(page)
        text = QtWidgets.QPlainTextEdit()
        text.setObjectName(name)
        text.setReadOnly(True)
        lay.addWidget(text, 1)
        row = QtWidgets.QHBoxLayout()
        lay.addLayout(row)
        self.tabs.addTab(page, title)
        return text, row

    def _build_sessions_tab(self) -> QtWidgets.QWidget:
        page = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(page)
        self.session_table = QtWidgets.QTableWidget(0, 4)
        self.session_table.setObjectName("sessions")
        self.session_table.setHorizontalHeaderLabels(["Started (UTC)", "Length", "Protocol", "State"])
        self.session_table.horizontalHeader().setStretchLastSection(True)
        self.session_table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.session_table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.session_table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.session_table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.session_table.verticalHeader().hide()
        self.session_table.doubleClicked.connect(lambda _i: self.open_report())
        lay.addWidget(self.session_table, 1)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(_button("Open report", "open-report", self.open_report))
        row.addWidget(_button("Print report…", "print-report", self.print_report))
        self.export_format = QtWidgets.QComboBox()
        self.export_format.setObjectName("export-format")
        self.export_format.addItems(FORMATS)
        row.addWidget(_button("Export as", "export", self.export_session))
        row.addWidget(self.export_format)
        row.addStretch(1)
        row.addWidget(QtWidgets.QLabel("Replay speed ×"))
        self.replay_speed = QtWidgets.QDoubleSpinBox()
        self.replay_speed.setObjectName("replay-speed")
        self.replay_speed.setRange(0.5, 20.0)
        self.replay_speed.setValue(1.0)
        row.addWidget(self.replay_speed)
        row.addWidget(_button("Replay", "replay", self.replay_session))
        lay.addLayout(row)
        return page

    def _build_trend_tab(self) -> None:
        self.trend, row = self._text_tab("trend", "Trend")
        row.addStretch(1)
        row.addWidget(_button("Open trend report (sessions and diary, with a plot)", "trend-report", self.open_trend))

    def open_trend(self) -> None:
        """The client's trend beside the diary as an HTML report in their reports folder (``biofeedback trend --html``)."""
        from biofeedback.analysis.diary import read_diary
        from biofeedback.analysis.trend import session_trend, write_trend

        client = self.client()
        written = self._guarded(lambda: write_trend(client, session_trend(client), read_diary(client),
                                                    client_dir(client) / "reports", True, False),
                                busy=f"Writing the trend of {client}…")
        if written:
            self.say_written("Trend", written[0])
            self.open_url(QtCore.QUrl.fromLocalFile(str(written[0])))

    def _build_diary_tab(self) -> None:
        self.diary, row = self._text_tab("diary", "Diary")
        row.addWidget(QtWidgets.QLabel("Headache today: pain 0-10"))
        self.diary_intensity = QtWidgets.QSpinBox()
        self.diary_intensity.setObjectName("diary-intensity")
        self.diary_intensity.setRange(0, 10)
        row.addWidget(self.diary_intensity)
        row.addWidget(QtWidgets.QLabel("hours"))
        self.diary_hours = QtWidgets.QDoubleSpinBox()
        self.diary_hours.setObjectName("diary-hours")
        self.diary_hours.setRange(0.0, 72.0)
        self.diary_hours.setSingleStep(0.5)
        # 0 is "not known" (a headache of no length is not an entry): it is stored as unknown, never as 0.0 h
        self.diary_hours.setSpecialValueText("unknown")
        row.addWidget(self.diary_hours)
        self.diary_medication = QtWidgets.QLineEdit()
        self.diary_medication.setObjectName("diary-medication")
        self.diary_medication.setPlaceholderText("medication taken (optional)")
        row.addWidget(self.diary_medication, 1)
        row.addWidget(_button("Add to diary", "diary-add", self.add_diary_entry))

    # --- clients -----------------------------------------------------------------------------------
    def client(self) -> str | None:
        item = self.client_list.currentItem()
        return item.data(QtCore.Qt.ItemDataRole.UserRole) if item is not None else None

    def refresh_clients(self, *_: object) -> None:
        """List the clients matching the search (archived ones only when asked), keeping the choice if it is listed."""
        chosen = self.client()
        wanted = self.search.text().strip().lower()
        self.client_list.blockSignals(True)
        self.client_list.clear()
        for client in list_clients():
            archived = is_archived(client)
            if wanted not in client.lower() or (archived and not self.show_archived.isChecked()):
                continue
            item = QtWidgets.QListWidgetItem(f"{client} (archived)" if archived else client)
            item.setData(QtCore.Qt.ItemDataRole.UserRole, client)
            self.client_list.addItem(item)
            if client == chosen:
                self.client_list.setCurrentItem(item)
        if self.client_list.currentItem() is None and self.client_list.count():
            self.client_list.setCurrentRow(0)  # the chosen one is filtered out: the first that matches
        self.client_list.blockSignals(False)
        if self.client() != chosen or chosen is None:
            self.show_client()

    def add_client(self) -> None:
        try:
            client = add_client(self.new_client.text())
        except BiofeedbackError as exc:
            self.client_error.setText(f"{exc}. {WHY_PSEUDONYM}")
            self.client_error.show()
            return
        self.client_error.hide()
        self.new_client.clear()
        self.search.clear()
        set_archived(client, False)
        self.refresh_clients()
        self.select_client(client)

    def select_client(self, client: str) -> None:
        for i in range(self.client_list.count()):
            if self.client_list.item(i).data(QtCore.Qt.ItemDataRole.UserRole) == client:
                self.client_list.setCurrentRow(i)
                return

    def toggle_archive(self) -> None:
        client = self.client()
        if client is None:
            return
        set_archived(client, not is_archived(client))
        self.say(f"{client} {'archived: tick Show archived clients to see them' if is_archived(client) else 'restored'}")
        self.refresh_clients()

    def show_client(self, *_: object) -> None:
        """Show the chosen client's sensors, actions and records."""
        client = self.client()
        for w in self._client_widgets:
            w.setEnabled(client is not None)
        if client is None:
            self.title.setText("Add or choose a client")
            self._sessions = []
            self._fill_sessions()
            return
        self.title.setText(f"Client {client}")
        self.archive_button.setText("Restore client" if is_archived(client) else "Archive client")
        settings = client_settings(client)
        self.sensor_kind.setCurrentIndex(1 if settings.get("sensors") == "virtual" else 0)
        devices = settings.get("devices") or list(DEFAULT_VIRTUAL)
        for name, box in self.virtual_boxes.items():
            box.setChecked(name in devices)
        for key, combo in (("protocol", self.protocol), ("calibration_protocol", self.calibration_protocol)):
            if isinstance(settings.get(key), str):
                combo.setCurrentText(settings[key])
        last = settings.get("last_devices")
        self.last_devices.setText("Last session's sensors: " + ", ".join(
            f"{d.get('source')} ({d.get('profile')})" for d in last if isinstance(d, dict))
                                  if isinstance(last, list) and last else "No session recorded with sensors yet.")
        self._sensor_kind_changed()
        self.refresh_records()

    def _sensor_kind_changed(self, *_: int) -> None:
        virtual = self.sensor_kind.currentIndex() == 1
        for box in self.virtual_boxes.values():
            box.setVisible(virtual)
        self.speed.setEnabled(virtual)
        self.sensor_hint.setText("Built-in simulated sensors: nothing is measured on a person." if virtual else
                                 "The session window scans Bluetooth and lets you pick the sensors.")

    def _remember_sensors(self, client: str) -> None:
        save_client_settings(client, {**client_settings(client), **self.sensor_choice(),
                                      "protocol": self.protocol.currentText().strip(),
                                      "calibration_protocol": self.calibration_protocol.currentText().strip()})

    def sensor_choice(self) -> dict:
        return {"sensors": "virtual" if self.sensor_kind.currentIndex() == 1 else "bluetooth",
                "devices": [n for n, b in self.virtual_boxes.items() if b.isChecked()]}

    # --- records -----------------------------------------------------------------------------------
    def refresh_records(self) -> None:
        client = self.client()
        self._sessions = self._guarded(lambda: list_sessions(client)) or [] if client else []
        self._fill_sessions()
        self._fill_tab()

    def _fill_sessions(self) -> None:
        table = self.session_table
        table.setRowCount(len(self._sessions))
        for row, s in enumerate(self._sessions):
            length = "?" if s["duration_s"] is None else f"{s['duration_s'] / 60:.1f} min"
            state = f"damaged: {s['error']}" if s["error"] else (s["state"] or "")
            for col, text in enumerate((s["started"] or pathlib.Path(s["path"]).name, length, s["protocol"] or "-", state)):
                table.setItem(row, col, QtWidgets.QTableWidgetItem(text))
        if self._sessions:
            table.selectRow(len(self._sessions) - 1)

    def _fill_tab(self) -> None:
        """Fill the visible records tab (the trend reads every session: only when it is shown); a damaged file is
        one line on the status bar."""
        client = self.client()
        if client is not None:
            self._guarded(partial(self._fill_page, client, self.tabs.currentIndex()))

    def _fill_page(self, client: str, page: int) -> None:
        if page == 1:
            self.calibrations.setPlainText(_calibrations_text(client))
        elif page == 2:
            from biofeedback.relax.summary import history_text, relax_history

            self.relax_history.setPlainText(history_text(relax_history(client)))
        elif page == 3:
            from biofeedback.analysis.diary import format_diary, read_diary

            self.diary.setPlainText(format_diary(read_diary(client)))
        elif page == 4:
            from biofeedback.analysis.diary import read_diary
            from biofeedback.analysis.trend import format_trend, session_trend

            rows = session_trend(client)
            self.trend.setPlainText(format_trend(rows, read_diary(client)) if rows else
                                    f"No sessions recorded for {client} yet.")

    def selected_session(self) -> pathlib.Path | None:
        rows = self.session_table.selectionModel().selectedRows()
        if not rows or not self._sessions:
            self.say("Choose a session in the list first.", error=True)
            return None
        s = self._sessions[rows[0].row()]
        if s["error"]:
            self.say(f"{pathlib.Path(s['path']).name} cannot be read: {s['error']}", error=True)
            return None
        return pathlib.Path(s["path"])

    def add_diary_entry(self) -> None:
        from biofeedback.analysis.diary import add_entry

        client = self.client()
        hours = self.diary_hours.value() or None
        self._guarded(lambda: add_entry(client, float(self.diary_intensity.value()), hours,
                                        self.diary_medication.text().strip()))
        self.diary_medication.clear()
        self._fill_tab()

    # --- reports and exports -----------------------------------------------------------------------
    def write_report(self) -> list[pathlib.Path]:
        """The chosen session's report (HTML and JSON) in the client's reports folder, by ``analysis.report``."""
        path = self.selected_session()
        if path is None:
            return []

        def write() -> list[pathlib.Path]:
            from biofeedback.analysis.compare import compare
            from biofeedback.analysis.data import load_session
            from biofeedback.analysis.report import write_report

            data = load_session(path)
            return write_report(data, compare(data), client_dir(self.client()) / "reports", html_out=True, json_out=True)

        return self._guarded(write, busy=f"Writing the report of {path.name}…") or []

    def open_report(self) -> None:
        written = self.write_report()
        html = next((w for w in written if str(w).endswith(".html")), None)
        if html is not None:
            self.say_written("Report", html)
            self.open_url(QtCore.QUrl.fromLocalFile(str(html)))

    def print_report(self, printer=None) -> None:
        """Print the chosen session's report (``printer``: a configured ``QPrinter``; default: ask in a dialog)."""
        from PySide6 import QtPrintSupport

        written = self.write_report()
        html = next((w for w in written if str(w).endswith(".html")), None)
        if html is None:
            return
        if printer is None:
            printer = QtPrintSupport.QPrinter(QtPrintSupport.QPrinter.PrinterMode.HighResolution)
            if QtPrintSupport.QPrintDialog(printer, self).exec() != QtWidgets.QDialog.DialogCode.Accepted:
                return
        document = QtGui.QTextDocument()
        document.setBaseUrl(QtCore.QUrl.fromLocalFile(str(html)))
        document.setHtml(html.read_text(encoding="utf-8"))
        document.print_(printer)
        self.say_written("Printed the report", html)

    def export_session(self) -> None:
        path = self.selected_session()
        if path is None:
            return
        fmt = self.export_format.currentText()

        def export() -> list[pathlib.Path]:
            from biofeedback.store.export import export_session

            return export_session(path, fmt, client_dir(self.client()) / "exports" / f"{path.stem}-{fmt}")

        written = self._guarded(export, busy=f"Exporting {path.name} as {fmt}…")
        if written:
            self.say_written(f"Exported as {fmt} ({len(written)} files)", pathlib.Path(written[0]).parent)

    # --- sessions, calibration, relaxation, replay -------------------------------------------------
    def profiles(self) -> dict:
        if self._profiles is None:
            from biofeedback.sensors.profiles import load_profiles

            self._profiles = load_profiles()
        return self._profiles

    def _virtual_args(self) -> list[str]:
        """The virtual-sensor options of the chosen sensors; with Bluetooth chosen, an error when this machine has no
        adapter (the commands would switch to the virtual sensors; here the person chooses)."""
        choice = self.sensor_choice()
        if choice["sensors"] != "virtual":
            from biofeedback.sensors.ble import system_has_adapter

            if not system_has_adapter():
                raise UsageError("no Bluetooth adapter found on this computer: plug one in or switch Bluetooth on, "
                                 "or choose Virtual sensors to try the program")
            return []
        devices = choice["devices"] or list(DEFAULT_VIRTUAL)
        return ["--virtual", "--speed", f"{self.speed.value():g}", "--virtual-devices", ",".join(devices)]

    def _free(self) -> bool:
        if self.session_window is not None and self.session_window.isVisible():
            self.say("Another session window is open: close it first.", error=True)
            self.session_window.raise_()
            return False
        return True

    def start_session(self) -> None:
        """Screening in its dialog, then the session in the dashboard (the sensors chosen there, or virtual)."""
        client = self.client()
        if client is None or not self._free():
            return
        from biofeedback.cli.common import scenario_from_args
        from biofeedback.session.calibration import latest_calibration
        from biofeedback.session.protocol import load_protocol
        from biofeedback.session.runner import SessionPlan, session_scenario
        from biofeedback.session.screening import screen
        from biofeedback.ui.app import open_dashboard
        from biofeedback.ui.screening_dialog import ask_in_window

        def prepare():
            args = cli_args("session", "--client", client, *_protocol_arg(self.protocol), *self._virtual_args())
            protocol = load_protocol(args.protocol)
            self._remember_sensors(client)
            screening = screen(client, protocol, None, False,
                               ask_window=partial(ask_in_window, activity="session", theme=self.theme_name))
            scenario = session_scenario(scenario_from_args(args), protocol) if args.virtual else None
            return SessionPlan(client, protocol, args.virtual, args.speed, self.auto.isChecked(), scenario, screening,
                               latest_calibration(client))

        plan = self._guarded(prepare)
        if plan is None:
            return
        self.session_window = open_dashboard(plan, self.profiles(), self.theme_name)
        self._watch(self.session_window, partial(self._session_closed, self.session_window.worker))

    def _session_closed(self, worker) -> None:
        from biofeedback.ui.app import finish_dashboard

        outcome = self._guarded(lambda: finish_dashboard(worker))
        if outcome is not None:
            self._remember_devices(worker.plan.client_id, outcome.path)
            self.say_written("Session recorded", outcome.path)
        self.refresh_records()
        self.show_client()

    def _remember_devices(self, client: str, path: pathlib.Path) -> None:
        """Keep the sensors a recording used (name and profile, from its ``devices`` meta) as the client's last ones."""
        from biofeedback.store import SessionReader, StoreError

        try:
            with SessionReader(path) as reader:
                devices = reader.meta.get("devices") or []
        except StoreError:
            return
        used = [{"source": str(d.get("source", "")), "profile": str(d.get("profile", ""))}
                for d in devices if isinstance(d, dict)]
        save_client_settings(client, {**client_settings(client), "last_devices": used})
        profiles = sorted({d["profile"] for d in used if d["profile"]})
        if profiles:  # the one remembered choice the CLI's session and relax also read (store.sensor_choice)
            from biofeedback.store.sensor_choice import remember_sensors

            remember_sensors(client, profiles)

    def start_calibration(self) -> None:
        client = self.client()
        if client is None or not self._free():
            return
        from biofeedback.ui.calibration_window import CalibrationWindow

        def prepare():
            args = cli_args("calibrate", "--client", client, *_protocol_arg(self.calibration_protocol),
                            *self._virtual_args())
            self._remember_sensors(client)
            return CalibrationWindow.from_args(args, self.profiles(), theme=self.theme_name)

        window = self._guarded(prepare)
        if window is not None:
            self.session_window = window
            window.show()
            window.start()
            self._watch(window, self.refresh_records)

    def start_relaxation(self) -> None:
        """A home relaxation in its window: the same preparation as ``biofeedback relax`` (screening in its dialog)."""
        client = self.client()
        if client is None or not self._free():
            return
        from biofeedback.cli.relax import prepare
        from biofeedback.ui.relax_window import RelaxWindow, start_relax_worker
        from biofeedback.ui.screening_dialog import ask_in_window

        def start():
            args = cli_args("relax", "--client", client, "--minutes", f"{self.relax_minutes.value():g}",
                            *self._virtual_args())
            self._remember_sensors(client)
            plan, settings, sham = prepare(args, partial(ask_in_window, activity="relaxation", theme=self.theme_name))
            return RelaxWindow(start_relax_worker(plan, settings, self.profiles(), sham), settings, sham)

        window = self._guarded(start)
        if window is not None:
            self.session_window = window
            window.show()
            self._watch(window, partial(self._relax_closed, window.worker))

    def _relax_closed(self, worker) -> None:
        worker.stop()
        worker.join(30.0)
        if worker.error is not None:
            self.say(str(worker.error), error=True)
        elif worker.path is not None:
            self._remember_devices(worker.plan.client_id, worker.path)
        self.refresh_records()
        self.show_client()

    def replay_session(self) -> None:
        """Replay the chosen session in the dashboard, with pause, seek and a timeline beside it."""
        path = self.selected_session()
        if path is None or not self._free():
            return
        from biofeedback.ui.replay_controls import ReplayControls

        row = self._sessions[self.session_table.selectionModel().selectedRows()[0].row()]
        controls = self.replay_controls = ReplayControls(path, row["duration_s"] or 0.0, self._open_replay)
        controls.setStyleSheet(stylesheet(self.theme))
        if self._guarded(controls.start) is None:
            return
        controls.show()

    def _open_replay(self, path: pathlib.Path):
        """Open the dashboard on a replay of ``path`` (called by the replay controls, again after a seek back)."""
        from biofeedback.session.runner import replay_plan
        from biofeedback.ui.app import open_dashboard

        if self.session_window is not None and self.session_window.isVisible():
            self.session_window.close()
        window = self.session_window = open_dashboard(replay_plan(path, self.replay_speed.value()), self.profiles(),
                                                      self.theme_name)
        return window

    def _watch(self, window: QtWidgets.QWidget, then: Callable[[], None]) -> None:
        _Closed(window, then)

    # --- messages ----------------------------------------------------------------------------------
    def _guarded(self, fn: Callable, busy: str | None = None):
        """``fn()``, with one of our errors shown on the status line (returns None then)."""
        if busy:
            self.say(busy)
            QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
            QtWidgets.QApplication.processEvents()
        try:
            return fn()
        except BiofeedbackError as exc:
            self.say(str(exc), error=True)
            return None
        finally:
            if busy:
                QtWidgets.QApplication.restoreOverrideCursor()

    def say(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet(f"color: {self.theme.warn};" if error else "")
        self.status.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.status.setText(text)

    def say_written(self, what: str, path: pathlib.Path) -> None:
        """``what`` and the path written, as a link that opens it."""
        url = QtCore.QUrl.fromLocalFile(str(path)).toString()
        self.status.setStyleSheet("")
        self.status.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.status.setText(f"{what}: <a href='{url}'>{path}</a>")

    def closeEvent(self, ev) -> None:  # noqa: N802 - Qt's name
        for w in (self.session_window, self.replay_controls):
            if w is not None and w.isVisible():
                w.close()
        super().closeEvent(ev)


def _protocol_combo(name: str, kind: str) -> QtWidgets.QComboBox:
    """An editable choice of the shipped protocols of ``kind`` (a path to another TOML can be typed)."""
    combo = QtWidgets.QComboBox()
    combo.setObjectName(name)
    combo.setEditable(True)
    combo.addItems(_toml_names(kind))
    return combo


def _protocol_arg(combo: QtWidgets.QComboBox) -> list[str]:
    """``--protocol NAME`` for a protocol combo box's text (none when it is empty: the command's default)."""
    name = combo.currentText().strip()
    return ["--protocol", name] if name else []


def _toml_names(kind: str) -> list[str]:
    """The protocols (``session``) or calibration protocols shipped in their folder, the default first."""
    from biofeedback.session.calibration import DEFAULT_CALIBRATION, default_calibration_dir
    from biofeedback.session.protocol import default_protocols_dir

    folder, first = (default_protocols_dir(), "default") if kind == "session" else \
        (default_calibration_dir(), DEFAULT_CALIBRATION)
    names = sorted(p.stem for p in folder.glob("*.toml"))
    return [first] + [n for n in names if n != first]


def _calibrations_text(client: str) -> str:
    """The client's saved calibrations, newest last: date, rest and reference levels per channel (µV)."""
    from biofeedback.session.calibration import calibration_dir, check_calibration

    lines = []
    for path in sorted(calibration_dir(client).glob("*.json")):
        try:
            doc = check_calibration(path)
        except BiofeedbackError as exc:
            lines.append(f"{path.name}: damaged ({exc})")
            continue
        rest = ", ".join(f"{v:.1f}" for v in doc["rest_rms_uv"])
        rvc = ", ".join(f"{v:.1f}" for v in doc["rvc_rms_uv"])
        lines.append(f"{doc.get('utc', path.stem)}  {doc.get('protocol', '?')}: rest {rest} µV, reference {rvc} µV")
    return "\n".join(lines) or f"No calibration for {client} yet: press Calibrate… (sessions then show %RVC)."


def app_icon() -> QtGui.QIcon:
    return QtGui.QIcon(str(pathlib.Path(__file__).with_name("resources") / "biofeedback.svg"))


def run_home(theme: str = "light") -> int:
    """Open the home window and return when it closes."""
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("biofeedback")
    app.setDesktopFileName("biofeedback")
    window = HomeWindow(theme)
    window.show()
    app.exec()
    return 0
