"""Windows' sizes and places remembered between runs, in a 0600 file of the data folder.

Not ``QSettings``: that writes to the user's configuration folder with the umask's mode, outside the data folder
the tests and ``$BIOFEEDBACK_HOME`` point to. The file holds each window's ``QWidget.saveGeometry`` (base64) by
name; a damaged file is left aside (one line says so) and the windows open at their default size.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from biofeedback.store.errors import StoreError
from biofeedback.store.paths import data_home, write_private

WINDOWS_FILE = "windows.json"


def windows_file() -> Path:
    return data_home() / WINDOWS_FILE


def _read() -> tuple[dict[str, str], str | None]:
    """The remembered geometries by window name, and a line naming what was wrong with the file (or None)."""
    path = windows_file()
    if not path.exists():
        return {}, None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return {}, f"window sizes not restored: {path} is damaged ({exc}); it is rewritten when a window closes"
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        return {}, f"window sizes not restored: {path} does not hold window names and sizes; it is rewritten when a window closes"
    return doc, None


def restore_size(window: QtWidgets.QWidget, name: str) -> tuple[bool, str | None]:
    """Give ``window`` its remembered geometry: (whether there was one, a line about a damaged file or None)."""
    doc, problem = _read()
    text = doc.get(name)
    if text is None:
        return False, problem
    try:
        blob = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return False, f"window size of {name} not restored: its entry in {windows_file()} is not base64"
    return window.restoreGeometry(QtCore.QByteArray(blob)), problem


def remember_size(window: QtWidgets.QWidget, name: str) -> str | None:
    """Store ``window``'s geometry under ``name``; returns a line if the file could not be written."""
    doc, _ = _read()
    doc[name] = base64.b64encode(bytes(window.saveGeometry().data())).decode("ascii")
    try:
        write_private(windows_file(), json.dumps(doc, indent=1))
    except StoreError as exc:
        return str(exc)
    return None
