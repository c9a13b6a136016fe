"""The program started on a desktop whose Qt platform plugin lacks system libraries: one line naming the package to
install, no Qt abort, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import PySide6

from biofeedback.ui.qtcheck import PACKAGES, missing_message, package_of, platform_names

QT = Path(PySide6.__file__).resolve().parent / "Qt"
SRC = Path(__file__).resolve().parents[2] / "src"


def plugin_lacking(tmp_path: Path, soname: bytes, absent: bytes) -> Path:
    """A copy of PySide6's xcb platform plugin whose needed library ``soname`` is renamed ``absent`` (same length:
    a library no system has), beside a link to PySide6's Qt libraries, as its RUNPATH ($ORIGIN/../../lib) expects."""
    folder = tmp_path / "plugins" / "platforms"
    folder.mkdir(parents=True)
    (tmp_path / "lib").symlink_to(QT / "lib")
    binary = (QT / "plugins" / "platforms" / "libqxcb.so").read_bytes()
    assert len(soname) == len(absent) and binary.count(soname + b"\0") == 1
    (folder / "libqxcb.so").write_bytes(binary.replace(soname + b"\0", absent + b"\0"))
    return folder


def start_program(tmp_path: Path, plugins: Path) -> subprocess.CompletedProcess:
    """``biofeedback`` with no arguments on an X11 desktop (a display named, the xcb platform), as a launcher starts it."""
    env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env.update(DISPLAY=":99", QT_QPA_PLATFORM="xcb", QT_QPA_PLATFORM_PLUGIN_PATH=str(plugins), PYTHONPATH=str(SRC),
               BIOFEEDBACK_HOME=str(tmp_path / "home"))
    return subprocess.run([sys.executable, "-m", "biofeedback.cli"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_a_missing_platform_library_is_one_line_naming_the_package(tmp_path):
    done = start_program(tmp_path, plugin_lacking(tmp_path, b"libxcb-cursor.so.0", b"libxcb-cursor.so.9"))
    assert done.returncode == 2, (done.returncode, done.stderr)  # our error exit, not Qt's abort (134)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("biofeedback: error: the window cannot open: Qt's xcb platform needs ")
    assert "libxcb-cursor.so.9" in lines[0] and "sudo apt install" in lines[0]
    assert " libxcb-cursor0" in lines[0].split("sudo apt install")[1]
    assert "Traceback" not in done.stderr and "qt.qpa" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "home").exists()  # nothing written before the check


def test_every_library_the_xcb_plugin_links_to_has_its_package():
    """Each system library PySide6's xcb plugin and its Qt library need directly (their ELF NEEDED entries) is in
    the table, so a missing one is named by its Debian/Ubuntu package."""
    needed = set()
    for binary in (QT / "plugins" / "platforms" / "libqxcb.so", QT / "lib" / "libQt6XcbQpa.so.6"):
        done = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True)
        needed |= {line.split()[0] for line in done.stdout.splitlines() if "=>" in line}
    system = {n for n in needed if not n.startswith(("libQt6", "libc.", "libm.", "libstdc++", "libgcc_s", "libpthread",
                                                     "libdl.", "librt.", "ld-linux", "linux-vdso", "libz.", "libzstd",
                                                     "libX", "libbsd", "libmd.", "libpcre", "libexpat", "libpng",
                                                     "libbrotli", "libsystemd", "libcap", "libgcrypt", "libgpg",
                                                     "liblzma", "liblz4", "libgthread", "libGLdispatch", "libicu",
                                                     "libffi", "libselinux", "libmount", "libblkid", "libuuid"))}
    assert {"libxcb-cursor.so.0", "libxkbcommon-x11.so.0", "libEGL.so.1", "libfontconfig.so.1"} <= system
    assert not [n for n in system if package_of(n) is None]
    assert package_of("libxcb-icccm.so.4") == "libxcb-icccm4" and package_of("libX11-xcb.so.1") == "libx11-xcb1"
    assert missing_message("xcb", ["libfoo.so.1"]).count("libfoo.so.1") == 2  # unknown: named as the library
    assert len(set(PACKAGES.values())) == len(PACKAGES)


def test_the_platforms_qt_will_try():
    assert platform_names({"DISPLAY": ":0"}) == ["xcb"]
    assert platform_names({"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"}) == ["wayland", "xcb"]
    assert platform_names({"QT_QPA_PLATFORM": "wayland;xcb:option=1"}) == ["wayland", "xcb"]
    assert platform_names({"QT_QPA_PLATFORM": "xcb", "WAYLAND_DISPLAY": "w", "XDG_SESSION_TYPE": "wayland"}) == ["xcb"]
