"""Wrong arguments and broken profiles give one clear error line and exit status 2."""

import re
from pathlib import Path

import pytest

from biofeedback.cli import main


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


def test_non_positive_speed_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["monitor", "--virtual", "--speed", "0"])
    assert exc.value.code == 2
    assert "positive" in capsys.readouterr().err


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
    assert main(["session", "--client", "C009", "--virtual", "--speed", "30", "--protocol", "demo", "--auto",
                 "--answers", "all-clear"]) == 0
    out, err = capsys.readouterr()
    assert "No display: running headless" in err
    assert "recording:" in out and "post" in out
    assert list((tmp_path / "clients" / "C009" / "sessions").glob("*.bfsession"))
