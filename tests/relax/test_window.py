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


def open_window(qtbot, proto):
    """A relax window on virtual sensors at 5x for ``proto``, its worker started: (worker, window)."""
    from biofeedback.ui.relax_window import RelaxWindow, start_relax_worker

    plan = SessionPlan("C001", proto, True, 5.0, True, session_scenario(Scenario(), proto),
                       {"answers": {"consent": True}, "source": "test"}, None)
    settings = RelaxSettings()
    worker = start_relax_worker(plan, settings, load_profiles())
    window = RelaxWindow(worker, settings)
    qtbot.addWidget(window)
    return worker, window


def test_window_runs_a_session_and_shows_the_summary(qtbot, make_protocol, capsys):
    worker, window = open_window(qtbot, make_protocol(8, 30, 8))
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


def test_the_feed_is_attached_even_when_the_worker_runs_the_attach_at_once(qtbot, make_protocol):
    """The window hands ``_attach`` to the worker's loop, which may run it before the GUI thread's next line. It
    then found its feed overwritten by the GUI's 'attaching' placeholder (False), and every tick failed. Here the
    call runs at once, the earliest the worker could run it."""
    from biofeedback.relax.feed import RelaxFeed
    from biofeedback.ui.worker import WorkerState

    worker, window = open_window(qtbot, make_protocol(4, 4, 4))
    window.timer.stop()
    qtbot.waitUntil(lambda: worker.state == WorkerState.RUNNING and worker.recorder is not None, timeout=30_000)
    queued = worker.call
    worker.call = lambda fn, *args: fn(*args)  # the worker thread wins the race
    window.refresh()
    worker.call = queued
    assert isinstance(window.feed, RelaxFeed) and window.session is not None
    window.timer.start()
    qtbot.waitUntil(lambda: window.view is not None, timeout=30_000)
    window.close()
    assert worker.join(30.0) and worker.error is None
