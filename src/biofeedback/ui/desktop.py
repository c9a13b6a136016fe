"""The desktop launcher: the freedesktop ``.desktop`` file and the SVG icon in ``ui/resources``, installed per user.

``biofeedback home --install-desktop`` copies them into ``$XDG_DATA_HOME`` (default ``~/.local/share``):
``applications/biofeedback.desktop`` (its ``Exec`` set to the ``biofeedback-app`` of this installation) and
``icons/hicolor/scalable/apps/biofeedback.svg``. Neither holds health data.
"""

from __future__ import annotations

import os
import pathlib
import shlex
import shutil
import sys

from biofeedback.errors import BiofeedbackError

RESOURCES = pathlib.Path(__file__).resolve().with_name("resources")


def launcher_command() -> str:
    """The command the launcher runs: this installation's ``biofeedback-app``, else this Python with ``-m``."""
    app = pathlib.Path(sys.executable).with_name("biofeedback-app")
    found = str(app) if app.exists() else shutil.which("biofeedback-app")
    return shlex.quote(found) if found else f"{shlex.quote(sys.executable)} -m biofeedback home"


def install_desktop_entry(data_home: pathlib.Path | None = None) -> list[pathlib.Path]:
    """Install the launcher and icon for this user; returns the files written."""
    base = data_home or pathlib.Path(os.environ.get("XDG_DATA_HOME") or pathlib.Path.home() / ".local" / "share")
    entry = base / "applications" / "biofeedback.desktop"
    icon = base / "icons" / "hicolor" / "scalable" / "apps" / "biofeedback.svg"
    text = (RESOURCES / "biofeedback.desktop").read_text(encoding="utf-8")
    text = text.replace("Exec=biofeedback-app", f"Exec={launcher_command()}")
    try:
        for path in (entry, icon):
            path.parent.mkdir(parents=True, exist_ok=True)
        entry.write_text(text, encoding="utf-8")
        shutil.copyfile(RESOURCES / "biofeedback.svg", icon)
    except OSError as exc:
        raise BiofeedbackError(f"cannot install the launcher into {base} ({exc.strerror}); check the folder's "
                               "permissions or set XDG_DATA_HOME") from None
    return [entry, icon]
