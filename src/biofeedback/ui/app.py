"""Entry point of the dashboard: run one session of a ``SessionPlan`` in a window and return its outcome."""

from __future__ import annotations

import sys

from PySide6 import QtWidgets

from biofeedback.sensors.profiles import DeviceProfile
from biofeedback.session.protocol import SessionError
from biofeedback.session.runner import SessionPlan
from biofeedback.ui.dashboard import Dashboard
from biofeedback.ui.worker import SessionWorker, start_worker

WORKER_JOIN_S = 30.0
"""Wall seconds to wait for the worker to close the recording after the window closes."""


def open_dashboard(plan: SessionPlan, profiles: dict[str, DeviceProfile], theme: str = "light",
                   lsl: bool = False) -> Dashboard:
    """Start the worker of a session (or a replay) and show its dashboard; returns the window (its ``worker``).

    Unattended plans (``plan.auto``) connect the default sensors, follow the protocol's durations and scripted
    markers and leave the window open on the summary; interactive ones wait for the therapist.
    """
    worker = start_worker(plan, profiles, connect_at_once=plan.auto, mode="dashboard-auto" if plan.auto else "dashboard",
                          lsl=lsl)
    window = Dashboard(worker, plan.protocol, theme=theme)
    window.show()
    return window


def finish_dashboard(worker: SessionWorker):
    """Stop a dashboard's worker once its window has closed; its ``analysis.summary.SessionOutcome``."""
    worker.stop()
    if not worker.join(WORKER_JOIN_S):
        raise SessionError(f"the recording did not close within {WORKER_JOIN_S:.0f} s; "
                           "check the disk, then open the session file with `biofeedback sessions`")
    if worker.error is not None:
        raise worker.error
    if worker.path is None:
        raise SessionError("the dashboard closed before any sensor was connected; nothing was recorded")
    return worker.outcome


def run_dashboard_session(plan: SessionPlan, profiles: dict[str, DeviceProfile], theme: str = "light",
                          lsl: bool = False):
    """Run a whole session (or a replay) in the dashboard until its window closes; returns its outcome."""
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    window = open_dashboard(plan, profiles, theme, lsl)
    app.exec()
    return finish_dashboard(window.worker)
