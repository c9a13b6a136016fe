"""The relaxation window on virtual sensors, offscreen: a whole short session, screenshots of both screens."""

from __future__ import annotations

from biofeedback.relax.engine import RelaxSettings
from biofeedback.sensors.profiles import load_profiles
from biofeedback.sensors.virtual import Scenario
from biofeedback.session.run import SessionPlan, session_scenario
from biofeedback.store import SessionReader
from tests.conftest import save_screenshot


def shoot(widget, name: str):
    path = save_screenshot(widget, f"relax-{name}")
    assert 10_000 < path.stat().st_size < 300_000
    return path


def test_window_runs_a_session_and_shows_the_summary(qtbot, make_protocol, capsys):
    from biofeedback.ui.relax_window import RelaxWindow, start_relax_worker

    proto = make_protocol(8, 30, 8)
    plan = SessionPlan("C001", proto, True, 5.0, True, session_scenario(Scenario(), proto),
                       {"answers": {"consent": True}, "source": "test"}, None)
    settings = RelaxSettings()
    worker = start_relax_worker(plan, settings, load_profiles())
    window = RelaxWindow(worker, settings)
    qtbot.addWidget(window)
    window.show()
    # With a sound device the tone plays; without one (CI has no sound libraries) the window says so once.
    assert window.audio is not None and (window.audio.ok or "sound off" in capsys.readouterr().err)
    qtbot.waitUntil(lambda: window.view is not None and window.view.phase == "relaxation" and window.view.t_s
                    - window.session.phase_start_s > 14, timeout=30_000)
    qtbot.wait(200)
    assert window.breath.text() in ("Breathe in", "Breathe out")
    shoot(window, "session")
    qtbot.waitUntil(lambda: window.summary_shown, timeout=30_000)
    assert worker.join(30.0) and worker.error is None
    qtbot.wait(300)
    assert "Shoulder tension" in window.summary_text.text()
    shoot(window, "summary")
    with SessionReader(worker.path) as r:
        assert r.meta["relax"]["feedback"] == "live" and r.meta["mode"] == "relax-window"
        assert [e["label"] for e in r.events("phase")] == ["baseline", "relaxation", "post"]
