"""Fixtures of the dashboard tests: offscreen Qt, a short protocol, and a dashboard on virtual sensors."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before anything imports Qt

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from biofeedback.sensors.profiles import load_profiles  # noqa: E402
from biofeedback.sensors.virtual import Faults, Scenario  # noqa: E402
from biofeedback.session.protocol import Protocol, load_protocol  # noqa: E402
from biofeedback.session.runner import SessionPlan, session_scenario  # noqa: E402

SPEED = 4.0
"""Virtual sensors run this many times faster than real time."""
PROTOCOL = (Path(__file__).resolve().parents[1] / "data" / "protocols" / "dashboard-short.toml").read_text()


@pytest.fixture
def protocol(tmp_path) -> Protocol:
    path = tmp_path / "test-dashboard.toml"
    path.write_text(PROTOCOL, encoding="utf-8")
    return load_protocol(path)


@pytest.fixture
def start_dashboard(qtbot, protocol):
    """Start a dashboard session on virtual sensors: ``start_dashboard(auto=..., faults=..., theme=...)``."""
    from biofeedback.ui.dashboard import Dashboard
    from biofeedback.ui.worker import start_worker
    from biofeedback.vocab import WorkerState

    started = []

    def start(*, auto: bool = False, faults: dict[str, Faults] | None = None, theme: str = "light",
              speed: float = SPEED, size: tuple[int, int] = (1600, 900)) -> Dashboard:
        scenario = session_scenario(Scenario(faults=faults or {}), protocol)
        plan = SessionPlan("C001", protocol, True, speed, auto, scenario, {"answers": {}, "source": "test"}, None)
        worker = start_worker(plan, load_profiles(), connect_at_once=True, mode="dashboard-auto" if auto else "dashboard")
        dash = Dashboard(worker, protocol, theme=theme)
        qtbot.addWidget(dash)
        dash.resize(*size)  # the offscreen screen is 800x800: every test says the window's size
        dash.show()
        started.append(dash)
        qtbot.waitUntil(lambda: worker.state == WorkerState.RUNNING, timeout=20_000)
        return dash

    yield start
    for dash in started:
        dash.end_session()
        assert dash.worker.join(30.0), "the worker did not stop"
        assert dash.worker.error is None, dash.worker.error
