"""A recorded session replayed in the dashboard, offscreen: its traces, phases, markers and notes at their recorded
times, view only, its summary at the end, and not a byte written."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets

from biofeedback.cli import main
from biofeedback.sensors.profiles import load_profiles
from biofeedback.session.runner import replay_plan
from biofeedback.analysis.summary import summarize
from biofeedback.store import SessionReader
from biofeedback.stream import StreamKind
from biofeedback.ui.dashboard import Dashboard
from biofeedback.ui.worker import start_worker
from biofeedback.vocab import WorkerState
from tests.conftest import save_screenshot
from tests.ui.conftest import PROTOCOL
from tests.ui.test_dashboard import assert_matches, plotted

RECORD_SPEED = "20"
REPLAY_SPEED = 10.0
NOTE = '\n[[phases.script]]\nat_s = 5\naction = "note"\ntext = "client feels lighter"\n'
"""Appended to the short protocol: a scripted note in its last phase (post)."""


def marked(dash) -> list[str]:
    """The dashboard's log lines of markers, hands on/off and notes (not the phase starts)."""
    return [line for line in dash._log_lines if not line.startswith("---")]


def files(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: its content digest and modification time (ns)."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def record_session(folder: Path, home: Path, capsys) -> tuple[Path, str]:
    """Record the short protocol (with a note) on virtual sensors, unattended; returns its file and verdict line."""
    protocol = folder / "replay-short.toml"
    protocol.write_text(PROTOCOL + NOTE, encoding="utf-8")
    assert main(["session", "--client", "C001", "--virtual", "--speed", RECORD_SPEED, "--protocol", str(protocol),
                 "--auto", "--answers", "all-clear", "--headless"]) == 0
    out = capsys.readouterr().out
    [path] = sorted((home / "clients" / "C001" / "sessions").glob("*.bfsession"))
    return path, next(line for line in out.splitlines() if line.startswith("verdict: "))


def test_a_recorded_session_replays_in_the_dashboard_view_only(qtbot, tmp_path, home, capsys):
    path, verdict_line = record_session(tmp_path, home, capsys)
    with SessionReader(path) as r:
        phases = r.phases()
        hands = r.events("hands-on")
        marks = r.events("marker") + r.events("note")
        emg_t, emg_x = r.samples(StreamKind.EMG)
        beats = r.beats()
    assert [p["label"] for p in phases] == ["baseline", "treatment", "post"] and len(hands) == 1 and len(marks) == 2
    before = files(tmp_path)

    plan = replay_plan(path, REPLAY_SPEED)
    worker = start_worker(plan, load_profiles())
    dash = Dashboard(worker, plan.protocol)
    qtbot.addWidget(dash)
    dash.show()
    frames: list[tuple[float, str | None]] = []  # after each frame of the replay: its session s and running phase
    labels: list[str] = []

    def frame() -> None:
        labels.append(dash.phase_label.text())
        if worker.state == WorkerState.RUNNING and not dash.controller.finished:
            frames.append((dash.plotted_at_s, getattr(dash.controller.phase, "name", None)))

    dash.timer.timeout.connect(frame)
    assert f"Replay of {path.name} at 10×" in dash.windowTitle()
    banner = dash.findChild(QtWidgets.QLabel, "replay")
    assert banner.text() == f"Replay of {path.name} at 10× · view only"
    assert dash.end_button.text() == "Stop replay (Ctrl+Q)"
    assert worker.found == [] and not dash.scan_button.isVisible()

    # Mid-treatment, hands on: traces full, every control but Stop disabled, keys and clicks change nothing.
    qtbot.waitUntil(lambda: dash.controller.hands_on, timeout=20_000)
    dash.timer.stop()
    dash._show_phase_state()
    for button in [*dash.phase_buttons, dash.hands_button, *dash.technique_buttons]:
        assert not button.isEnabled(), button.text()
    assert not dash.note_edit.isEnabled() and dash.end_button.isEnabled()
    assert dash.hands_button.isChecked() and dash.hands_button.text() == "Hands off (H)"
    t, y = plotted(dash, "emg_l")
    assert t.size > 5000 and t[-1] > phases[1]["t_s"]
    assert_matches(t, y, emg_t, emg_x[:, 0].astype(float))
    t, y = plotted(dash, "rr")
    assert t.size > 5
    assert_matches(t, y, beats["t_s"], beats["rr_raw_ms"])
    assert dash.numbers["tension_l"].text() != "--" and dash.numbers["hr"].text() != "--"
    dash._show_sensors()
    assert dash.sensor_status.text().count(">playing<") == 2 and "connected" not in dash.sensor_status.text()
    save_screenshot(dash, "dashboard-replay")
    dash.activateWindow()
    qtbot.keyClick(dash, QtCore.Qt.Key.Key_H)
    qtbot.keyClick(dash, QtCore.Qt.Key.Key_F3)
    qtbot.keyClick(dash, QtCore.Qt.Key.Key_2)
    qtbot.mouseClick(dash.phase_buttons[2], QtCore.Qt.MouseButton.LeftButton)
    qtbot.wait(100)  # anything handed to the worker's loop has run
    assert dash.controller.hands_on and dash.controller.phase.name == "treatment" and len(marked(dash)) == 2
    dash.timer.start()

    qtbot.waitUntil(lambda: worker.finished and dash.summary_dialog is not None, timeout=30_000)
    assert worker.state == WorkerState.DONE and worker.error is None
    save_screenshot(dash.summary_dialog, "dashboard-replay-summary")
    # Each phase runs in exactly the frames whose session time lies in its recorded interval; the phase label follows.
    # The phases change on the worker's loop, which wakes when an event is due: allow a frame a few ms of wall time
    # on either side of a change (at 10x, 0.1 session s) to show the phase before or after it.
    lag_s = 0.01 * REPLAY_SPEED
    for p in phases:
        during = [name for t, name in frames if p["t_s"] + lag_s <= t < p["t_s"] + p["duration_s"] - lag_s]
        earlier = [name for t, name in frames if t < p["t_s"] - lag_s]
        assert during and set(during) == {p["label"]} and p["label"] not in earlier, p["label"]
    shown = iter(labels)
    assert all(any(label == want for label in shown) for want in ("baseline", "treatment", "post", "replay ended"))
    ctl = dash.controller
    assert [ctl.history[i] for i in range(3)] == [(p["t_s"], p["t_s"] + p["duration_s"]) for p in phases]
    # Markers, hands on/off and the note in the status line, at their recorded times, as live.
    h = hands[0]
    expected = [f"{h['t_s']:7.1f} s  hands on".strip(),
                f"{h['t_s'] + h['duration_s']:7.1f} s  hands off ({h['duration_s']:.1f} s on)".strip()]
    expected += [f"{m['t_s']:7.1f} s  {'note: ' if m['kind'] == 'note' else ''}{m['label']}".strip() for m in marks]
    assert sorted(marked(dash)) == sorted(expected)
    assert "client feels lighter" in marked(dash)[-1]
    assert [line.split(" (")[0] for line in dash._log_lines if line.startswith("---")] == [
        f"--- {p['label']}" for p in phases]
    # The sensors finished with the recording: not a fault.
    assert "ended" in dash.sensor_status.text() and dash.theme.warn not in dash.sensor_status.text()
    # The summary and verdict of the recorded file, as the session showed them at its end.
    assert worker.path == path and worker.outcome.summary == summarize(path)
    assert verdict_line == f"verdict: {worker.outcome.verdict_text}"
    labels = [lab.text() for lab in dash.summary_dialog.findChildren(QtWidgets.QLabel)]
    assert "Before / after" in labels[0] and worker.outcome.verdict_text in labels and f"recording: {path}" in labels
    dash.close()
    assert files(tmp_path) == before, "a replay wrote a file"


def test_replay_without_a_display_prints_the_live_numbers_and_the_summary(tmp_path, home, capsys):
    example = Path(__file__).resolve().parents[2] / "recordings" / "example-demo.bfsession"
    before = (example.read_bytes(), example.stat().st_mtime_ns)
    assert main(["replay", str(example), "--speed", "400"]) == 0
    out, err = capsys.readouterr()
    assert "No display: replaying in this terminal" in err
    lines = out.splitlines()
    last = next(line for line in reversed(lines) if "pkt" in line)  # the last live-numbers line
    assert "open-emg: ended" in last and "polar-h10: ended" in last
    assert f"replayed: {example}" in lines and any(line.startswith("verdict: Released") for line in lines)
    assert (example.read_bytes(), example.stat().st_mtime_ns) == before
    assert not home.exists() or not any(home.rglob("*.bfsession"))


@pytest.mark.parametrize("argv, expected", [
    (["replay", "missing.bfsession"], "no session file at"),
    (["replay", "latest", "--client", "C001"], "no readable recorded session for client C001"),
    (["replay", str(Path(__file__).resolve().parents[1] / "data" / "protocols" / "dashboard-short.toml")],
     "is not a biofeedback session file"),
], ids=["missing", "no-session-yet", "not-a-session"])
def test_a_replay_of_no_session_is_one_error_line_before_any_window(argv, expected, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("biofeedback: error: ") and expected in err
