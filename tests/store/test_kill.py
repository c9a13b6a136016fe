"""Kill test: SIGKILL a process writing a session at random moments; the file must open and lose <= 1 s; the real
``session`` command, killed, loses no more of each stream than the tool's stated bound."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.serial  # starts processes of its own: run alone, after the parallel part

TOOL = Path(__file__).resolve().parents[2] / "tools" / "kill_test.py"
KILLS = 20


def _kill_tool():
    spec = importlib.util.spec_from_file_location("kill_test_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sigkill_at_random_moments_loses_at_most_one_second(tmp_path):
    tool = _kill_tool()
    results = tool.run(KILLS, seed=random.randrange(1 << 30), workroot=tmp_path)
    assert len(results) == KILLS  # each kill_once already asserted: file opens, blocks intact, loss <= 1 s
    with_data = [r for r in results if r["blocks"]]
    assert len(with_data) >= KILLS // 4, "too few kills landed after the first commit"
    assert {r["speed"] for r in with_data} == {1.0, 20.0}
    assert max(r["lost_s"] for r in results) <= tool.MAX_LOSS_S
    assert sum(r["live_read"] for r in results) >= KILLS // 2
    assert np.median([r["saved_s"] for r in with_data]) > 0.2


SESSION_KILLS = 2
SESSION_SPEED = 10.0
AHEAD_S = 0.1
"""How far (session s) a stream's newest sample may lie after the kill's host time: sample times come from the device's
clock mapped onto the session's, which may run a few ms of wall time ahead of the host's (seen: 26 ms at 10x)."""


def test_sigkill_of_the_real_session_command_loses_at_most_the_stated_bound(tmp_path):
    tool = _kill_tool()
    rng = random.Random()
    for i in range(SESSION_KILLS):
        workdir = tmp_path / f"kill{i}"
        workdir.mkdir()
        figures = tool.kill_session_once(workdir, SESSION_SPEED, rng, startup=False)  # asserts: opens, nothing damaged
        for stream, lost_s in figures["lost_s"].items():
            assert -AHEAD_S <= lost_s <= tool.loss_bound_s(stream, SESSION_SPEED), (stream, lost_s, figures)
        assert set(figures["lost_s"]) == set(tool.SESSION_STREAMS)
