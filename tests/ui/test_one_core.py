"""The dashboard on the one session core: the scripted protocol gives the same event times as in the terminal and at
home (``tests/session/test_core.py``), and each block and beat is processed once while a window is open."""

from __future__ import annotations

from biofeedback.sensors.profiles import load_profiles
from biofeedback.vocab import WorkerState
from tests.session.core_helpers import assert_processed_once, count_processing, event_times, scripted_plan
from tests.session.test_core import EXPECTED


def test_dashboard_records_the_scripted_times_and_processes_each_block_once(qtbot, monkeypatch):
    from biofeedback.ui.dashboard import Dashboard
    from biofeedback.ui.worker import start_worker

    counts = count_processing(monkeypatch)
    plan = scripted_plan()
    worker = start_worker(plan, load_profiles(), connect_at_once=True, mode="dashboard-auto")
    dash = Dashboard(worker, plan.protocol)
    qtbot.addWidget(dash)
    dash.show()
    qtbot.waitUntil(lambda: worker.finished and dash.summary_dialog is not None, timeout=60_000)
    assert worker.state == WorkerState.DONE, worker.error
    assert event_times(worker.path) == EXPECTED
    assert_processed_once(counts, worker.path)
    assert dash.phase_label.text() == "session ended"
