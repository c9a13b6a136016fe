"""A whole `biofeedback session` or `biofeedback relax` process killed with SIGKILL mid-treatment leaves a readable
recording that still knows the phase it was in."""

import os

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from biofeedback.store import SessionReader

pytestmark = pytest.mark.serial  # starts processes of its own: run alone, after the parallel part

SESSION_COMMIT_S = 1.0
"""At most this much session time may be lost on a kill (the store commits every 0.5 s). RR adds up to
one more second: a strap reports each beat with the next 1 Hz notification."""
PROTOCOL = (Path(__file__).resolve().parents[1] / "data" / "protocols" / "kill-test.toml").read_text()
SPEED = 2.0
KILL_AFTER_WALL_S = 1.0


COMMANDS = {"session": ["--auto"], "relax": []}
"""A clinic session and a home session (the home one wrote no phase-start before the one session core)."""


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_killed_session_keeps_its_data_and_the_phase_it_was_in(tmp_path, command):
    protocol = tmp_path / "kill-test.toml"
    protocol.write_text(PROTOCOL)
    env = dict(os.environ, BIOFEEDBACK_HOME=str(tmp_path), QT_QPA_PLATFORM="offscreen", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "biofeedback.cli", command, "--client", "K001", "--virtual", "--speed", str(SPEED),
         "--protocol", str(protocol), *COMMANDS[command], "--answers", "all-clear", "--headless"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
    )
    seen = []
    deadline = time.monotonic() + 120
    try:
        for line in proc.stdout:
            seen.append(line)
            if "technique:" in line:  # 2 s into treatment
                break
            assert time.monotonic() < deadline, "".join(seen)
        time.sleep(KILL_AFTER_WALL_S)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    (path,) = (tmp_path / "clients" / "K001" / "sessions").glob("*.bfsession")
    with SessionReader(path) as r:
        phases = r.phases()
        assert [p["label"] for p in phases] == ["baseline", "treatment"]
        assert not (phases[0]["data"] or {}).get("unfinished")
        assert phases[1]["data"]["unfinished"] is True
        (marker,) = [m for m in r.events("marker") if m["label"].startswith("technique")]
        killed_after_s = marker["t_s"] + KILL_AFTER_WALL_S * SPEED  # at the earliest
        assert killed_after_s - phases[1]["t_s"] - 1.0 <= phases[1]["duration_s"] <= 30.0
        # Every stream reaches the kill, less at most one commit interval and a little link latency.
        for stream in ("emg", "ecg", "rr", "hr"):
            t, _ = r.samples(stream)
            assert t[-1] >= killed_after_s - SESSION_COMMIT_S - 1.0, stream
        assert not r.meta.get("complete")
