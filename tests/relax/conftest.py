"""Fixtures of the relax tests: offscreen Qt, a fresh data home, short home protocols, a headless runner."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before anything imports Qt

import asyncio  # noqa: E402

import pytest  # noqa: E402

from biofeedback.cli.terminal import run_relax  # noqa: E402
from biofeedback.relax.engine import RelaxSettings  # noqa: E402
from biofeedback.sensors.profiles import load_profiles  # noqa: E402
from biofeedback.sensors.virtual import Scenario  # noqa: E402
from biofeedback.session.protocol import Protocol, load_protocol  # noqa: E402
from biofeedback.session.runner import SessionPlan  # noqa: E402



def relax_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``biofeedback relax`` for C001 on virtual sensors at 20x, headless, screening all clear: (exit code, out, err)."""
    from biofeedback.cli import main

    code = main(["relax", "--client", "C001", "--virtual", "--speed", "20", "--answers", "all-clear", "--headless", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def protocol_text(baseline_s: float, relax_s: float, post_s: float) -> str:
    return f"""
name = "test-home"
[[screening]]
key = "consent"
text = "Recorded?"
stop_if = false
reason = "no consent"
[[techniques]]
key = "breathing"
label = "slow breathing"
[[phases]]
name = "baseline"
kind = "rest"
duration_s = {baseline_s}
prompt = "Sit comfortably and breathe normally."
[[phases]]
name = "relaxation"
kind = "treatment"
duration_s = {relax_s}
[[phases.script]]
at_s = 2
action = "technique"
technique = "breathing"
[[phases]]
name = "post"
kind = "rest"
duration_s = {post_s}
"""


@pytest.fixture
def make_protocol(tmp_path):
    def make(baseline_s: float = 10, relax_s: float = 30, post_s: float = 10) -> Protocol:
        path = tmp_path / f"home-{baseline_s}-{relax_s}-{post_s}.toml"
        path.write_text(protocol_text(baseline_s, relax_s, post_s), encoding="utf-8")
        return load_protocol(path)
    return make


def run_headless(protocol: Protocol, scenario: Scenario, speed: float, settings: RelaxSettings | None = None,
                 sham=None, lines: list | None = None):
    """Run a home session headless on virtual sensors; returns (recording path, RelaxSession)."""
    plan = SessionPlan("C001", protocol, True, speed, True, scenario, {"answers": {"consent": True}, "source": "test"}, None)
    out = lines.append if lines is not None else (lambda _: None)
    outcome, session = asyncio.run(run_relax(plan, settings or RelaxSettings(), load_profiles(), sham, out=out))
    return outcome.path, session
