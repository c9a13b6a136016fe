"""Wrong arguments and broken profiles give one clear error line and exit status 2; the parser is built from light
modules only, also where ``termios`` is missing."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from biofeedback.cli import common, main
from biofeedback.session.keys import LINE_KEYS_HINT


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["monitor", "--virtual", "--virtual-emg-uv", "40"], "--virtual-emg-uv"),
        (["monitor", "--virtual", "--virtual-drop-rate", "1.5"], "--virtual-drop-rate"),
        (["monitor", "--virtual", "--virtual-electrode-off", "10,5"], "--virtual-electrode-off"),
        (["monitor", "--virtual", "--virtual-devices", "toaster"], "toaster"),
    ],
)
def test_bad_virtual_arguments_are_one_error_line(argv, expected, capsys):
    assert main(argv + ["--seconds", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("biofeedback: error:") and expected in err[0]


def test_speed_out_of_range_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["monitor", "--virtual", "--speed", "0"])
    assert exc.value.code == 2
    assert "argument --speed: must be a number from 0.01 to 1000, got '0'" in capsys.readouterr().err


def test_broken_profile_names_file_and_field(tmp_path, monkeypatch, capsys):
    shipped = (Path(__file__).parents[1] / "devices" / "hrs-strap.toml").read_text()
    broken = re.sub(r'(?m)^services = .*$', 'services = ["not-a-uuid"]', shipped, count=1)
    assert broken != shipped
    (tmp_path / "hrs-strap.toml").write_text(broken)
    monkeypatch.setenv("BIOFEEDBACK_DEVICES", str(tmp_path))
    assert main(["devices"]) == 2
    err = capsys.readouterr().err
    assert "hrs-strap.toml" in err and "match.services" in err


def test_session_without_a_display_runs_headless_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BIOFEEDBACK_HOME", str(tmp_path))
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    short = Path(__file__).resolve().parent / "data" / "protocols" / "session-short.toml"  # 70 s: the demo is 7 min
    assert main(["session", "--client", "C009", "--virtual", "--speed", "30", "--protocol", str(short), "--auto",
                 "--answers", "all-clear"]) == 0
    out, err = capsys.readouterr()
    assert "No display: running headless" in err
    assert "recording:" in out and "post" in out
    assert list((tmp_path / "clients" / "C009" / "sessions").glob("*.bfsession"))


def test_output_piped_into_a_reader_that_stops_early_ends_quietly(tmp_path):
    """`biofeedback monitor ... | head -1`: no traceback when the reader goes away (exit 141 like SIGPIPE)."""
    run = subprocess.run(
        f"{shlex.quote(sys.executable)} -c 'import sys; from biofeedback.cli import main; sys.exit(main())' "
        "monitor --virtual --speed 20 --seconds 20 | head -1",
        shell=True, capture_output=True, text=True, timeout=120,
        env={**os.environ, "BIOFEEDBACK_HOME": str(tmp_path)}, executable="/bin/bash")
    assert run.stdout.count("\n") == 1 and run.stdout.strip()
    assert "Traceback" not in run.stderr and "BrokenPipe" not in run.stderr, run.stderr


HEAVY = ("numpy", "scipy", "bleak", "bumble", "neurokit2", "matplotlib", "PySide6", "numba", "pandas", "h5py", "asyncio")


def test_parser_is_built_without_heavy_imports():
    """`biofeedback --version` and `--help` start fast: the parser imports none of the analysis, BLE or Qt stack."""
    code = ("import sys; from biofeedback.cli import build_parser; build_parser(); "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_help_constants_equal_their_originals():
    """The cli restates constants of heavy modules for its help texts; they must not drift."""
    from biofeedback.relax.engine import DEFAULT_MINUTES, HOME_PROTOCOL
    from biofeedback.session.screening import ALL_CLEAR
    from biofeedback.store import FORMATS

    assert (common.ALL_CLEAR, common.FORMATS, common.HOME_PROTOCOL, common.DEFAULT_MINUTES) == (
        ALL_CLEAR, FORMATS, HOME_PROTOCOL, DEFAULT_MINUTES)


def test_without_termios_the_cli_loads_and_keys_come_as_lines():
    """Windows has no termios: the parser still builds, and the key reader reads a letter then Enter per key."""
    code = """
import asyncio, sys
sys.modules["termios"] = sys.modules["tty"] = None
from biofeedback.cli import build_parser
build_parser().parse_args(["session", "--client", "C001"])
from biofeedback.session.keys import KeyReader

class Clock:
    def now_s(self):
        return 1.5

async def read_keys():
    with KeyReader(Clock(), asyncio.get_running_loop()) as reader:
        assert not reader.single_keys
        keys = [await reader.queue.get() for _ in range(4)]
    print([(k.t_s, k.key, k.text) for k in keys])

asyncio.run(read_keys())
"""
    run = subprocess.run([sys.executable, "-c", code], input="h\n\nn\nneck stiff\nn left side\n",
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == LINE_KEYS_HINT and lines.count(LINE_KEYS_HINT) == 1
    assert lines[-1] == "note: [(1.5, 'h', ''), (1.5, '\\n', ''), (1.5, 'n', 'neck stiff'), (1.5, 'n', 'left side')]"
