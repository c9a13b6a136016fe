"""Before the first window: are the system libraries of Qt's platform plugin installed?

On a fresh Linux desktop PySide6's wheels bring Qt but not the X11/xkb/GL libraries its ``xcb`` platform plugin
links to (Qt's "X11 requirements"); without them Qt prints a paragraph and aborts (exit 134) when the
``QApplication`` is made. This module asks the dynamic loader (``ldd``, which follows the plugin's RUNPATH and
``LD_LIBRARY_PATH`` exactly as loading it would) which libraries the plugin of the chosen platform cannot find,
and turns them into one line naming the Debian/Ubuntu packages to install. It imports no Qt module, so it can run
before Qt does. Elsewhere than Linux (macOS, Windows: the wheels bring what they need) it checks nothing.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import sys

from biofeedback.errors import BiofeedbackError, Reason

PLUGIN_PATH_ENV = "QT_QPA_PLATFORM_PLUGIN_PATH"
"""Qt's own variable: the folder of platform plugins Qt loads from (default: PySide6's ``Qt/plugins/platforms``)."""
LDD_WALL_S = 10.0
"""Wall seconds ``ldd`` may take before the check gives up (and lets Qt try)."""

PACKAGES = {
    "libxcb-cursor": "libxcb-cursor0", "libxkbcommon-x11": "libxkbcommon-x11-0", "libxkbcommon": "libxkbcommon0",
    "libxcb-icccm": "libxcb-icccm4", "libxcb-keysyms": "libxcb-keysyms1", "libxcb-image": "libxcb-image0",
    "libxcb-render-util": "libxcb-render-util0", "libxcb-shape": "libxcb-shape0", "libxcb-xinerama": "libxcb-xinerama0",
    "libxcb-randr": "libxcb-randr0", "libxcb-util": "libxcb-util1", "libxcb-xkb": "libxcb-xkb1",
    "libxcb-shm": "libxcb-shm0", "libxcb-sync": "libxcb-sync1", "libxcb-xfixes": "libxcb-xfixes0",
    "libxcb-render": "libxcb-render0", "libxcb-glx": "libxcb-glx0", "libxcb": "libxcb1", "libX11-xcb": "libx11-xcb1",
    "libX11": "libx11-6", "libEGL": "libegl1", "libGL": "libgl1", "libGLX": "libglx0", "libOpenGL": "libopengl0",
    "libfontconfig": "libfontconfig1", "libfreetype": "libfreetype6", "libdbus-1": "libdbus-1-3",
    "libglib-2.0": "libglib2.0-0", "libwayland-client": "libwayland-client0", "libwayland-cursor": "libwayland-cursor0",
    "libwayland-egl": "libwayland-egl1",
}
"""Debian/Ubuntu package of each library Qt's xcb and wayland plugins link to, by the library's name before ``.so``
(Qt 6 documentation, "Qt for X11 Requirements"; ``ldd`` on PySide6 6.11's plugins)."""

_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)


class QtLibrariesMissing(BiofeedbackError):
    """Qt's platform plugin cannot load: system libraries are missing (the message names the packages)."""

    default_reason = Reason.UNSPECIFIED


def platform_names(environ: dict[str, str] | None = None) -> list[str]:
    """The Linux Qt platforms the first window may use, in the order Qt tries them: ``QT_QPA_PLATFORM``'s choices
    (``wayland;xcb``), else Qt's default (in a Wayland session wayland, then xcb through XWayland; else xcb)."""
    env = os.environ if environ is None else environ
    chosen = [part.split(":")[0].strip() for part in env.get("QT_QPA_PLATFORM", "").split(";")]
    if any(chosen):
        return [name for name in chosen if name]
    return ["wayland", "xcb"] if env.get("WAYLAND_DISPLAY") and env.get("XDG_SESSION_TYPE") == "wayland" else ["xcb"]


def plugin_file(platform: str) -> pathlib.Path | None:
    """The platform plugin Qt would load (``libq<platform>.so``), or None when it cannot be found here."""
    folder = os.environ.get(PLUGIN_PATH_ENV)
    if not folder:
        spec = importlib.util.find_spec("PySide6")
        if spec is None or spec.origin is None:
            return None
        folder = str(pathlib.Path(spec.origin).parent / "Qt" / "plugins" / "platforms")
    path = pathlib.Path(folder) / f"libq{platform}.so"
    return path if path.is_file() else None


def missing_libraries(plugin: pathlib.Path) -> list[str]:
    """The libraries (sonames) the dynamic loader cannot find for ``plugin``, directly or through its Qt libraries;
    empty when ``ldd`` is not there or fails (then Qt itself reports)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    try:
        done = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=LDD_WALL_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return list(dict.fromkeys(_NOT_FOUND.findall(done.stdout)))


def package_of(soname: str) -> str | None:
    """The Debian/Ubuntu package of a library (``libxcb-icccm.so.4`` -> ``libxcb-icccm4``), None if unknown."""
    return PACKAGES.get(soname.split(".so")[0])


def missing_message(platform: str, sonames: list[str]) -> str:
    """One line: which libraries Qt's ``platform`` plugin lacks and what to install."""
    packages = [p for p in dict.fromkeys(package_of(s) for s in sonames) if p is not None]
    unknown = [s for s in sonames if package_of(s) is None]
    todo = []
    if packages:
        todo.append(f"install them with: sudo apt install {' '.join(packages)}")
    if unknown:
        todo.append(f"install the package that provides {', '.join(unknown)}")
    return (f"the window cannot open: Qt's {platform} platform needs {', '.join(sonames)}, not found on this system; "
            f"{' and '.join(todo)} (README: 'On a fresh machine')")


def check_qt_platform(environ: dict[str, str] | None = None) -> None:
    """Raise ``QtLibrariesMissing`` (one line naming the packages) when no platform plugin the first window may use
    can load for want of system libraries; call it before the ``QApplication`` is made."""
    if not sys.platform.startswith("linux"):
        return
    lacking = []
    for platform in platform_names(environ):
        plugin = plugin_file(platform)
        if plugin is None:
            continue  # not here (offscreen builds, a Qt elsewhere): Qt tries the next, or says what it lacks
        missing = missing_libraries(plugin)
        if not missing:
            return
        lacking.append((platform, missing))
    if lacking:
        raise QtLibrariesMissing(missing_message(*lacking[-1]))  # the last one Qt tries: xcb, which the README covers
