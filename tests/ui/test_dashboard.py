"""The dashboard on virtual sensors, offscreen: traces follow the hub, phases and markers are recorded,
a dropped link shows as a break, and the session goes on."""

from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui

from biofeedback.sensors.virtual import Faults
from biofeedback.store import SessionReader
from biofeedback.stream import StreamKind
from biofeedback.vocab import WorkerState


def focused(dash):
    """The widget a key typed now goes to: the window's focused widget, or the window."""
    return dash.focusWidget() or dash


def answer(qtbot, dash, button: str) -> None:
    """Click ``button`` of the open "End the session?" question."""
    [b] = [b for b in dash.end_question.buttons() if b.text() == button]
    qtbot.mouseClick(b, QtCore.Qt.MouseButton.LeftButton)


def plotted(dash, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Session times and values a curve holds (curves hold time relative to the frame's 'now')."""
    x, y = dash.traces[name].curve.getOriginalDataset()
    if x is None:
        return np.empty(0), np.empty(0)
    return x + dash.traces[name].at_s, y


def assert_matches(t_plot, y_plot, t_src, y_src) -> None:
    """Every plotted point is a sample of the source buffer, at its time, with its value (NaN rows too).

    Matched by time rounded to 1 µs (plotted times went through ``t - now``), not by order: rebuilt beat
    times of an HR strap may step back a little."""
    order = np.argsort(t_src, kind="stable")
    ts, ys = t_src[order], y_src[order]
    lo, hi = np.searchsorted(ts, t_plot - 1e-6), np.searchsorted(ts, t_plot + 1e-6)
    for a, b, t, y in zip(lo, hi, t_plot, y_plot):
        found = ys[a:b]
        assert np.any((found == y) | (np.isnan(found) & np.isnan(y))), f"no sample {y} at {t} s in the source"


def test_traces_update_and_match_the_hub(qtbot, start_dashboard):
    dash = start_dashboard()
    qtbot.waitUntil(lambda: plotted(dash, "emg_l")[0].size > 2000 and plotted(dash, "tension_l")[0].size > 50
                    and plotted(dash, "rr")[0].size > 3, timeout=20_000)
    first_t, first_y = plotted(dash, "emg_l")

    def ecg_fills_the_window() -> bool:  # the strap's ECG starts after its control-point write, later than EMG
        t = plotted(dash, "ecg")[0]
        return t.size > 0 and t[0] <= dash.traces["ecg"].at_s - dash.emg_window.value()

    qtbot.waitUntil(lambda: plotted(dash, "emg_l")[0][-1] > max(first_t[-1], first_t[0] + dash.emg_window.value()) + 1
                    and ecg_fills_the_window(), timeout=20_000)
    later_t, later_y = plotted(dash, "emg_l")
    assert not np.array_equal(first_y[-500:], later_y[-500:])

    dash.timer.stop()
    hub, live = dash.worker.acq.hub, dash.worker.live
    newest_before = {s: hub.buffer(s).snapshot(1)[0][-1] for s in (StreamKind.EMG, StreamKind.ECG)}
    dash.refresh()
    window = dash.emg_window.value()
    for name, (stream, col) in {"emg_l": (StreamKind.EMG, 0), "emg_r": (StreamKind.EMG, 1),
                                "ecg": (StreamKind.ECG, 0), "rr": (StreamKind.RR, 0)}.items():
        t, y = plotted(dash, name)
        t_hub, x_hub = hub.buffer(stream).snapshot()
        assert t.size > 0, name
        assert_matches(t, y, t_hub, x_hub[:, col])
        if stream in (StreamKind.EMG, StreamKind.ECG):
            assert dash.plotted_at_s - 1.06 * window <= t[0] <= dash.plotted_at_s - window, name
            assert t[-1] >= newest_before[stream], f"{name}: the newest sample is not plotted"
    t, y = plotted(dash, "tension_r")
    t_live, x_live = live.tension.snapshot()
    assert_matches(t, y, t_live, x_live[:, 1])
    assert np.nanmean(plotted(dash, "tension_l")[1]) > np.nanmean(y)  # the scenario's left side is tenser
    assert dash.latency_ms is not None and dash.latency_ms > 0
    assert "latency" in dash.latency_label.text()
    assert dash.numbers["tension_l"].text() != "--" and dash.numbers["hr"].text() != "--"
    # The frames drew with the kernels SessionWorker.start() had loaded before the session: none compiled on a frame.
    from biofeedback.ui.raster import column_spans, fill_spans
    assert len(column_spans.signatures) == len(fill_spans.signatures) == 1, "a frame compiled a raster kernel"


def test_phases_markers_and_notes_land_in_the_recording(qtbot, start_dashboard):
    dash = start_dashboard()
    clock, ctl = dash.worker.acq.clock, dash.controller
    stamps = {}

    def click(name, widget):
        before = clock.now_s()
        qtbot.mouseClick(widget, QtCore.Qt.MouseButton.LeftButton)
        stamps[name] = (before, clock.now_s())

    qtbot.waitUntil(lambda: dash.phase_buttons[0].isEnabled(), timeout=5_000)
    click("baseline", dash.phase_buttons[0])
    qtbot.waitUntil(lambda: ctl.phase is not None and ctl.phase.name == "baseline", timeout=2_000)
    qtbot.wait(500)
    click("treatment", dash.phase_buttons[1])
    qtbot.wait(200)
    click("hands on", dash.hands_button)
    qtbot.waitUntil(lambda: ctl.hands_on and dash.hands_button.isChecked(), timeout=2_000)
    click("technique", dash.technique_buttons[1])
    before = clock.now_s()
    qtbot.keyClick(focused(dash), QtCore.Qt.Key.Key_N)  # the note is stamped when N is pressed, then typed
    stamps["note"] = (before, clock.now_s())
    assert dash.note_edit.hasFocus()
    qtbot.keyClicks(focused(dash), "shoulders softer")
    qtbot.keyClick(focused(dash), QtCore.Qt.Key.Key_Return)
    qtbot.wait(300)
    assert ctl.hands_on, "typing the note's h toggled the hands"
    before = clock.now_s()
    qtbot.keyClick(focused(dash), QtCore.Qt.Key.Key_H)
    stamps["hands off"] = (before, clock.now_s())
    qtbot.waitUntil(lambda: not ctl.hands_on, timeout=2_000)  # the H key toggles hands on/off
    qtbot.keyClick(focused(dash), QtCore.Qt.Key.Key_3)
    click("post", dash.phase_buttons[2])
    qtbot.wait(300)
    click("end", dash.end_button)
    qtbot.waitUntil(lambda: dash.end_question is not None and dash.end_question.isVisible(), timeout=2_000)
    answer(qtbot, dash, "End session")
    qtbot.waitUntil(lambda: dash.worker.finished and dash.summary_dialog is not None, timeout=20_000)
    assert dash.worker.state == WorkerState.DONE
    assert dash.summary_dialog.isVisible()

    with SessionReader(dash.worker.path) as r:
        phases = r.events("phase")
        hands = r.events("hands-on")
        markers = r.events("marker")
        notes = r.events("note")
        meta = r.meta
    assert [p["label"] for p in phases] == ["baseline", "treatment", "post"]
    assert phases[0]["t_s"] == ctl.history[0][0]
    for name, ph in zip(("baseline", "treatment", "post"), phases):
        lo, hi = stamps[name]
        assert lo <= ph["t_s"] <= hi
    assert abs(phases[0]["t_s"] + phases[0]["duration_s"] - phases[1]["t_s"]) < 1e-9
    assert len(hands) == 1
    assert stamps["hands on"][0] <= hands[0]["t_s"] <= stamps["hands on"][1]
    assert stamps["hands off"][0] <= hands[0]["t_s"] + hands[0]["duration_s"] <= stamps["hands off"][1]
    techniques = [m for m in markers if m["label"].startswith("technique")]
    assert [m["data"]["technique"] for m in techniques] == ["gb20", "myofascial"]
    assert stamps["technique"][0] <= techniques[0]["t_s"] <= stamps["technique"][1]
    assert [n["label"] for n in notes] == ["shoulders softer"]
    assert stamps["note"][0] <= notes[0]["t_s"] <= stamps["note"][1]
    assert not any(m["label"] == "session ended early" for m in markers)
    assert meta["mode"] == "dashboard"
    assert [row["phase"] for row in dash.worker.outcome.summary] == ["baseline", "treatment", "post"]
    labels = [lab.text() for lab in dash.summary_dialog.findChildren(type(dash.phase_label))]
    assert "Before / after" in labels[0]
    # The verdict of analysis.compare is shown; this short session cannot support one, and says why.
    verdict = dash.worker.outcome.verdict_text
    assert verdict in labels
    assert "cannot be compared" in verdict or "not available" in verdict
    # Issue 19: the summary of the live values was on screen before the recording's analysis was done, in the dialog
    # that now holds the outcome (the run's live rows, phase for phase).
    assert dash.early_before_outcome and dash.early_summary is dash.summary_dialog
    # Issue 16 item 3: the panel says which sensor and rate the numbers come from
    panel = dash.sensor_status.text()
    assert "tension from open-emg at 1000 Hz" in panel and "heart rate and HRV from polar-h10" in panel
    assert [row["phase"] for row in dash.worker.run.live_summary] == ["baseline", "treatment", "post"]


def assert_blank_on_screen(dash, name: str, start_s: float, end_s: float) -> None:
    """On the screen, the trace ``name`` has no pixel between session times ``start_s`` and ``end_s``, and has
    some on either side."""
    trace = dash.traces[name]
    view = trace.curve.getViewBox()
    image = dash.canvas.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_RGB32)
    pixels = np.frombuffer(image.constBits(), np.uint32).reshape(image.height(), image.bytesPerLine() // 4)
    area = view.sceneBoundingRect().toRect()
    color = QtGui.QColor(trace.curve.opts["pen"].color()).rgb() & 0xFFFFFF
    painted = ((pixels[area.top() : area.bottom(), :] & 0xFFFFFF) == color).any(axis=0)

    def column(t_s: float) -> int:
        return round(view.mapViewToScene(QtCore.QPointF(t_s - trace.at_s, 0.0)).x())

    a, b = column(start_s), column(end_s)
    assert b - a > 10, "the gap is too narrow on screen to check"
    assert not painted[a + 2 : b - 1].any(), f"{name}: the gap is drawn over on screen"
    assert painted[max(area.left(), a - 30) : a].all() and painted[b + 1 : min(b + 30, area.right())].all()


def test_a_dropped_link_is_a_break_and_the_session_goes_on(qtbot, start_dashboard):
    dash = start_dashboard(auto=True, faults={"open-emg": Faults(disconnect_at_s=[5.0], offline_s=1.5)})
    emg = next(s for s in dash.worker.acq.sources if s.profile.name == "open-emg")
    qtbot.waitUntil(lambda: emg.status.reconnects >= 1 and bool(dash.worker.acq.hub.gaps), timeout=30_000)
    gap = next(g for g in dash.worker.acq.hub.gaps if g.stream == StreamKind.EMG)
    qtbot.waitUntil(lambda: plotted(dash, "emg_l")[0].size > 0 and np.nanmax(plotted(dash, "emg_l")[0]) > gap.end_s + 2,
                    timeout=20_000)
    dash.timer.stop()
    dash.refresh()
    for name in ("emg_l", "emg_r", "tension_l", "tension_r"):
        t, y = plotted(dash, name)
        nan = np.flatnonzero(np.isnan(y))
        assert nan.size >= 1, f"{name}: the gap is not a break"
        assert np.isfinite(y[: nan[0]]).any() and np.isfinite(y[nan[-1] + 1 :]).sum() > 10, f"{name}: no data around the break"
        assert abs(t[nan[0]] - gap.start_s) < 0.5
    assert_blank_on_screen(dash, "emg_l", gap.start_s, gap.end_s)
    assert dash.controller.phase is not None or dash.controller.done
    dash.timer.start()
    qtbot.waitUntil(lambda: dash.worker.finished, timeout=40_000)
    assert dash.worker.state == WorkerState.DONE
    with SessionReader(dash.worker.path) as r:
        assert [p["label"] for p in r.events("phase")] == ["baseline", "treatment", "post"]
        assert any(g.stream == StreamKind.EMG for g in r.gaps())
        t, _ = r.samples(StreamKind.EMG)
    assert t[-1] > gap.end_s + 10


def test_y_ranges_are_round_and_refitted_only_when_the_data_leave_or_shrink():
    from biofeedback.ui.dashboard import steady_range

    fit = steady_range(-173.0, 207.0, None)
    assert fit == (-200.0, 250.0)  # steps of 50 (1/8 of the 380 µV span, rounded up to 1-2-5), 19 µV room
    assert steady_range(-150.0, 230.0, fit) is None  # still inside with room and more than half of it: no change
    assert steady_range(-150.0, 240.0, fit) == (-200.0, 300.0)  # too close to the top
    assert steady_range(10.0, 40.0, fit) == (5.0, 45.0)  # the data shrank to 7 % of it
    assert steady_range(70.0, 70.0, None) == (60.0, 80.0)  # flat data still get a range around them


def test_checked_and_running_phase_buttons_fit_their_bold_text(qtbot, protocol):
    """The theme draws 'Hands off (H)' (checked) and the running phase's button in bold: no letter may be clipped."""
    from PySide6 import QtGui, QtWidgets

    from biofeedback.sensors.profiles import load_profiles
    from biofeedback.session.runner import SessionPlan
    from biofeedback.ui.dashboard import Dashboard
    from biofeedback.ui.worker import start_worker

    plan = SessionPlan("C001", protocol, True, 1.0, False, None, {"answers": {}, "source": "test"}, None)
    dash = Dashboard(start_worker(plan, load_profiles()), protocol)  # scans, never connects
    qtbot.addWidget(dash)
    dash.resize(1366, 768)  # the smallest size the window is laid out for
    dash.show()
    dash.timer.stop()
    dash.hands_button.setChecked(True)
    dash.hands_button.setText("Hands off (H)")
    running = dash.phase_buttons[1]
    running.setProperty("active", "true")
    running.style().unpolish(running)
    running.style().polish(running)
    qtbot.wait(100)  # the layout settles
    for button in (dash.hands_button, running):
        bold = QtGui.QFont(button.font())
        bold.setBold(True)
        option = QtWidgets.QStyleOptionButton()
        button.initStyleOption(option)
        contents = button.style().subElementRect(QtWidgets.QStyle.SubElement.SE_PushButtonContents, option, button)
        text_px = contents.width()
        assert text_px >= QtGui.QFontMetrics(bold).horizontalAdvance(button.text()), button.text()


def test_an_electrode_off_shows_no_signal_and_the_edf_export_marks_it(qtbot, start_dashboard, tmp_path):
    """Issue 14: electrode-off is 'no signal' in the big numbers, never a tension of 0 (or of the rail) nor a symmetry
    of -200 %, and the session's EDF+ export carries an annotation for the stretch."""
    from edfio import read_edf

    from biofeedback.store.export import export_session
    from tests.conftest import save_screenshot

    dash = start_dashboard(auto=True, faults={"open-emg": Faults(electrode_off=[(6.0, 12.0, 0)])})
    seen = []

    def left_off() -> bool:
        dash._show_numbers()
        seen.append((dash.numbers["tension_l"].text(), dash.numbers["tension_r"].text(), dash.numbers["symmetry"].text()))
        return seen[-1][0] == "no signal"

    qtbot.waitUntil(left_off, timeout=30_000)
    left, right, symmetry = seen[-1]
    assert right not in ("no signal", "--", "0") and float(right) > 0 and symmetry == "--"
    dash.timer.stop()
    save_screenshot(dash, "dashboard-electrode-off")
    dash.timer.start()
    qtbot.waitUntil(lambda: dash.numbers["tension_l"].text() not in ("no signal", "--"), timeout=30_000)  # back on
    dash.end_session()
    qtbot.waitUntil(lambda: dash.worker.finished, timeout=30_000)
    [edf] = [p for p in export_session(dash.worker.path, "edf", tmp_path / "edf") if p.suffix == ".edf"]
    contact = [a for a in read_edf(edf).annotations if a.text.startswith("BAD_contact")]
    assert contact, [a.text for a in read_edf(edf).annotations][:20]


def test_a_channel_settling_after_a_gap_shows_no_tension_number(qtbot, start_dashboard):
    """Issue 14: after an EMG gap the chain restarts and its 250 ms window fills again (``QualityFlag.WARMUP``): the
    tension tiles show '--' then, not the low number of a partial window, nor a symmetry; the heart rate stays."""
    import threading

    from biofeedback.dsp import QualityFlag
    from tests.conftest import save_screenshot

    dash = start_dashboard(auto=True, faults={"open-emg": Faults(disconnect_at_s=[5.0], offline_s=1.5)})
    live, hub = dash.worker.live, dash.worker.acq.hub
    after_gap, held, release = threading.Event(), threading.Event(), threading.Event()

    def on_gap(gap) -> None:
        if gap.stream == StreamKind.EMG:
            after_gap.set()

    def on_block(block) -> None:  # on the acquisition loop, after the live processor has taken the block
        if block.stream == StreamKind.EMG and after_gap.is_set() and not held.is_set():
            held.set()
            release.wait(30.0)  # hold the loop, so the live values stay those of the first block after the gap

    detach = hub.listen(on_block, on_gap)
    try:
        qtbot.waitUntil(held.is_set, timeout=30_000)
        dash.timer.stop()
        values = live.values
        dash._show_numbers()
        shown = {k: dash.numbers[k].text() for k in ("tension_l", "tension_r", "symmetry", "hr")}
        save_screenshot(dash, "dashboard-settling-after-gap")
    finally:
        release.set()
        detach()
    assert all(q & QualityFlag.WARMUP for q in values.quality), values.quality
    assert all(np.isfinite(values.tension)), "the chain gives a number from its partial window"
    assert shown["tension_l"] == shown["tension_r"] == shown["symmetry"] == "--", shown
    assert shown["hr"] != "--", shown
    dash.timer.start()
    # Once the window is full again, numbers return.
    qtbot.waitUntil(lambda: dash.numbers["tension_l"].text() not in ("--", "no signal"), timeout=30_000)
