"""Fixtures of the session tests: a short test protocol, a short calibration, and one recorded virtual session."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from biofeedback.cli import main

SPEED = "20"
PROTOCOL = (Path(__file__).resolve().parents[1] / "data" / "protocols" / "session-short.toml").read_text()
CALIBRATION = (Path(__file__).resolve().parents[1] / "data" / "calibration" / "test-quick.toml").read_text()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """Run the ``biofeedback`` command in-process (stdin is not a terminal under pytest: unattended)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@dataclass
class Recorded:
    home: Path
    protocol: Path
    calibration: Path
    session: Path
    calibration_protocol: Path
    out: str


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Recorded:
    """Calibrate client C001 (equal contractions), then record a session with a disconnect during treatment."""
    tmp = tmp_path_factory.mktemp("session")
    protocol, calibration = tmp / "test-short.toml", tmp / "test-quick.toml"
    protocol.write_text(PROTOCOL)
    calibration.write_text(CALIBRATION)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BIOFEEDBACK_HOME", str(tmp / "home"))
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            # The muscle activity alone (--virtual-body clean): these tests are about the session, not the signals, and
            # count the clean seconds of 20-s phases that a realistic motion artefact could cut by a 5-s window.
            assert main(["calibrate", "--client", "C001", "--virtual", "--speed", SPEED, "--protocol", str(calibration),
                         "--virtual-body", "clean"]) == 0
            assert main(["session", "--client", "C001", "--virtual", "--speed", SPEED, "--protocol", str(protocol),
                         "--answers", "all-clear", "--virtual-disconnect-at", "40", "--headless",
                         "--virtual-body", "clean"]) == 0
        sessions = sorted((tmp / "home/clients/C001/sessions").glob("*.bfsession"))
        assert len(sessions) == 1, buf.getvalue()
        cal = sorted((tmp / "home/clients/C001/calibration").glob("*.json"))
        assert len(cal) == 1, buf.getvalue()
        yield Recorded(home=tmp / "home", protocol=protocol, calibration=cal[0], session=sessions[0],
                       calibration_protocol=calibration, out=buf.getvalue())


@pytest.fixture
def recorded_home(recorded, monkeypatch) -> Path:
    monkeypatch.setenv("BIOFEEDBACK_HOME", str(recorded.home))
    return recorded.home


def load_json(path: Path) -> dict:
    return json.loads(path.read_text())
