"""Entry point of the dashboard: run one session of a ``SessionPlan`` in a window and return its outcome."""

from __future__ import annotations

import sys

from PySide6 import QtWidgets

from biofeedback.sensors.profiles import DeviceProfile
from biofeedback.session.protocol import SessionError
from biofeedback.session.runner import SessionPlan
from biofeedback.ui.dashboard import Dashboard
from biofeedback.ui.worker import start_worker

WORKER_JOIN_S = 30.0
"""Wall seconds to wait for the worker to close the recording after the window closes."""


def run_dashboard_session(plan: SessionPlan, profiles: dict[str, DeviceProfile], theme: str = "light",
                          lsl: bool = False):
    """Run a whole session (or a replay) in the dashboard; returns its ``analysis.summary.SessionOutcome``.

    Unattended plans (``plan.auto``) connect the default sensors, follow the protocol's durations and scripted
    markers and leave the window open on the summary; interactive ones wait for the therapist.
    """
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    worker = start_worker(plan, profiles, connect_at_once=plan.auto, mode="dashboard-auto" if plan.auto else "dashboard",
                          lsl=lsl)
    window = Dashboard(worker, plan.protocol, theme=theme)
    window.show()
    app.exec()
    worker.stop()
    if not worker.join(WORKER_JOIN_S):
        raise SessionError(f"the recording did not close within {WORKER_JOIN_S:.0f} s; "
                           "check the disk, then open the session file with `biofeedback sessions`")
    if worker.error is not None:
        raise worker.error
    if worker.path is None:
        raise SessionError("the dashboard closed before any sensor was connected; nothing was recorded")
    return worker.outcome
