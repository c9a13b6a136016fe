"""Screenshots of the dashboard in each phase, light and dark, and of the summary (to tests/_artifacts/)."""

from __future__ import annotations

import numpy as np

from biofeedback.vocab import WorkerState
from tests.conftest import save_screenshot


def shoot(widget, name: str):
    return save_screenshot(widget, f"dashboard-{name}")


def test_screenshots_of_each_phase(qtbot, start_dashboard):
    dash = start_dashboard(auto=True)
    ctl = dash.controller
    shots = []
    for index, (phase, theme) in enumerate((("baseline", "light"), ("treatment", "dark"), ("post", "light"))):
        # Late in the phase, so the windows are full and (in treatment) hands are on.
        qtbot.waitUntil(lambda: ctl.index == index and ctl.elapsed_s(dash._now_s()) > 0.7 * ctl.planned_s(),
                        timeout=30_000)
        dash.theme_box.setCurrentText(theme)
        qtbot.wait(400)
        for name in ("emg_l", "emg_r", "tension_l", "ecg", "rr", "hr"):
            _, y = dash.traces[name].curve.getOriginalDataset()
            assert y is not None and np.isfinite(y).sum() > 3, f"{phase}: {name} is empty"
        assert dash.phase_label.text() == phase
        shots.append(shoot(dash, f"{phase}-{theme}"))
        if phase == "treatment":
            dash.theme_box.setCurrentText("light")
            qtbot.wait(300)
            shots.append(shoot(dash, f"{phase}-light"))
    qtbot.waitUntil(lambda: dash.worker.finished and dash.summary_dialog is not None, timeout=30_000)
    assert dash.worker.state == WorkerState.DONE
    qtbot.wait(300)
    shots.append(shoot(dash.summary_dialog, "summary"))
    for path in shots:
        assert path.stat().st_size > 10_000
