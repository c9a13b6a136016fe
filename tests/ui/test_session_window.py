"""The session window as a therapist uses it (issue 17, item 3), offscreen: keys typed right after the start land in the
recording at the time pressed whatever widget has the focus; markers on the traces; the running phase with its
instruction and a "still recording" state after the last phase; ending asks first; everything fits 1366x768 and
grows for 1920x1080; the window's size is remembered."""

from __future__ import annotations

import os
import stat

from PySide6 import QtCore, QtGui, QtWidgets

from biofeedback.store import SessionReader
from biofeedback.vocab import WorkerState
from biofeedback.ui.markers import short
from tests.conftest import save_screenshot
from tests.ui.test_dashboard import answer, focused

Key = QtCore.Qt.Key
SMALL, LARGE = (1366, 768), (1920, 1080)
LAPTOP_INSIDE_PX = (1366, 700)
"""What a maximised window has on a 1366x768 laptop (taskbar and title bar taken off): the window's minimum must fit."""


def type_key(qtbot, dash, key, modifier=QtCore.Qt.KeyboardModifier.NoModifier) -> tuple[float, float]:
    """Type ``key`` on the focused widget, as a person would; returns the session clock before and after."""
    clock = dash.worker.acq.clock
    before = clock.now_s()
    qtbot.keyClick(focused(dash), key, modifier)
    return before, clock.now_s()


def important_widgets(dash) -> dict[str, QtWidgets.QWidget]:
    widgets = {"phase": dash.phase_label, "timer": dash.timer_label, "instruction": dash.instruction_label,
               "end": dash.end_button, "hands": dash.hands_button, "note": dash.note_edit, "plots": dash.canvas,
               "sensors": dash.sensor_status, "EMG window": dash.emg_window, "heart window": dash.heart_window,
               "theme": dash.theme_box, "latency": dash.latency_label}
    widgets |= {f"phase button {i}": b for i, b in enumerate(dash.phase_buttons)}
    widgets |= {f"technique {i}": b for i, b in enumerate(dash.technique_buttons)}
    widgets |= {f"number {k}": w for k, w in dash.numbers.items()} | {f"caption {k}": w for k, w in dash.captions.items()}
    return widgets


def assert_fits(dash, size: tuple[int, int]) -> None:
    """At ``size``: every important widget and plot lies inside the window, no text is cut, texts are >= 16 px."""
    dash.resize(*size)
    QtWidgets.QApplication.processEvents()  # the resize restyles the window (text sizes) ...
    for layout in [w.layout() for w in dash.findChildren(QtWidgets.QWidget) if w.layout() is not None]:
        layout.activate()  # ... and the texts that changed since the last frame are laid out
    QtWidgets.QApplication.processEvents()
    assert (dash.width(), dash.height()) == size, "the window's minimum size made it larger than asked"
    inside = dash.rect()
    for name, w in important_widgets(dash).items():
        assert w.isVisible(), name
        box = QtCore.QRect(w.mapTo(dash, QtCore.QPoint(0, 0)), w.size())
        assert inside.contains(box), f"{name} at {box} is cut off by the {size} window"
        if isinstance(w, QtWidgets.QLabel) and w.text():
            room = w.contentsRect()
            if w.wordWrap():
                assert w.heightForWidth(room.width()) <= room.height() + 1, f"{name}: wrapped text cut"
            else:
                assert w.fontMetrics().horizontalAdvance(w.text()) <= room.width() + 1, f"{name}: text cut"
        if isinstance(w, QtWidgets.QPushButton):
            assert w.width() >= w.sizeHint().width() - 1, f"{name}: '{w.text()}' is squeezed"
        assert QtGui.QFontInfo(w.font()).pixelSize() >= 16, f"{name}: text smaller than 16 px"
    canvas = QtCore.QRectF(dash.canvas.rect())
    for key, plot in dash.plots.items():
        assert canvas.contains(plot.sceneBoundingRect()), f"plot {key} is cut off"
        for side in ("left", "bottom"):
            assert QtGui.QFontInfo(plot.getAxis(side).style["tickFont"]).pixelSize() >= 16, f"{key}: ticks < 16 px"
    assert dash.sizes.title_px >= 16


def shoot(qtbot, dash, phase: str) -> list:
    """Screenshots of the window at both sizes, each checked to fit (the refresh timer paused while shot)."""
    shots = []
    for size in (SMALL, LARGE):
        assert_fits(dash, size)
        qtbot.wait(250)  # a frame and a numbers update at this size
        dash.timer.stop()
        dash.refresh()
        shots.append(save_screenshot(dash, f"session-window-{phase}-{size[0]}x{size[1]}"))
        dash.timer.start()
    return shots


def test_keys_typed_right_after_the_start_land_in_the_recording_whatever_has_the_focus(qtbot, start_dashboard):
    dash = start_dashboard(size=SMALL)
    ctl = dash.controller
    # The case: the "EMG/ECG window" spin box holds the focus at the start (a person clicked it).
    window_s = dash.emg_window.value()
    dash.emg_window.setFocus()
    assert dash.focusWidget() is dash.emg_window
    stamps = {"baseline": type_key(qtbot, dash, Key.Key_F1)}
    qtbot.waitUntil(lambda: dash.phase_label.text() == "baseline", timeout=2_000)  # shown at the next update
    assert dash.phase_buttons[0].text() == "End baseline (F1)"
    stamps["hands on"] = type_key(qtbot, dash, Key.Key_H)
    stamps["technique 1"] = type_key(qtbot, dash, Key.Key_1)
    dash.theme_box.setFocus()  # a combo box, then the plots and a button: still markers
    stamps["technique 3"] = type_key(qtbot, dash, Key.Key_3)
    dash.canvas.setFocus()
    stamps["technique 2"] = type_key(qtbot, dash, Key.Key_2)
    dash.hands_button.setFocus()
    stamps["note"] = type_key(qtbot, dash, Key.Key_N)
    assert dash.note_edit.hasFocus()
    qtbot.keyClicks(focused(dash), "neck 1 h")  # digits and h typed in the note are the note's
    type_key(qtbot, dash, Key.Key_Return)
    assert not dash.note_edit.hasFocus()
    type_key(qtbot, dash, Key.Key_N)  # a note begun and dropped with Escape is not recorded
    qtbot.keyClicks(focused(dash), "drop me")
    type_key(qtbot, dash, Key.Key_Escape)
    assert not dash.note_edit.hasFocus() and dash.note_edit.text() == ""
    qtbot.keyClick(focused(dash), Key.Key_VolumeUp)  # a key of no action changes nothing
    stamps["hands off"] = type_key(qtbot, dash, Key.Key_H)
    assert dash.emg_window.value() == window_s, "the spin box took a key"
    # Ctrl+Q asks; Escape keeps recording.
    type_key(qtbot, dash, Key.Key_Q, QtCore.Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: dash.end_question is not None and dash.end_question.isVisible(), timeout=2_000)
    qtbot.keyClick(dash.end_question, Key.Key_Escape)
    qtbot.waitUntil(lambda: dash.end_question is None, timeout=2_000)
    qtbot.wait(300)
    assert dash.worker.state == WorkerState.RUNNING and not ctl.finished
    # The window's close button asks too.
    dash.close()
    assert dash.isVisible() and dash.end_question is not None
    answer(qtbot, dash, "Keep recording")
    qtbot.wait(200)
    assert dash.isVisible() and not ctl.finished
    type_key(qtbot, dash, Key.Key_Q, QtCore.Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: dash.end_question is not None, timeout=2_000)
    answer(qtbot, dash, "End session")
    qtbot.waitUntil(lambda: dash.worker.finished and dash.summary_dialog is not None, timeout=20_000)

    with SessionReader(dash.worker.path) as r:
        starts, hands, markers, notes = r.events("phase-start"), r.events("hands-on"), r.events("marker"), r.events("note")
    assert [p["label"] for p in starts] == ["baseline"]
    techniques = [m for m in markers if "technique" in (m["data"] or {})]
    assert [m["data"]["technique"] for m in techniques] == ["trigger-point", "myofascial", "gb20"]
    times = {"baseline": starts[0]["t_s"], "hands on": hands[0]["t_s"],
             "hands off": hands[0]["t_s"] + hands[0]["duration_s"], "note": notes[0]["t_s"],
             "technique 1": techniques[0]["t_s"], "technique 3": techniques[1]["t_s"], "technique 2": techniques[2]["t_s"]}
    for name, (lo, hi) in stamps.items():
        assert lo <= times[name] <= hi, f"{name} recorded at {times[name]:.3f} s, pressed between {lo:.3f} and {hi:.3f} s"
    assert len(hands) == 1 and [n["label"] for n in notes] == ["neck 1 h"]
    assert stamps["baseline"][0] - dash.worker.acq.clock.now_s() < 60  # sanity: one session clock


def test_the_session_window_in_each_phase_fits_1366x768_and_1920x1080(qtbot, start_dashboard):
    dash = start_dashboard(size=SMALL)
    ctl = dash.controller
    assert dash.minimumSizeHint().width() <= LAPTOP_INSIDE_PX[0]
    assert dash.minimumSizeHint().height() <= LAPTOP_INSIDE_PX[1]
    qtbot.waitUntil(lambda: dash.phase_label.text() == "ready", timeout=5_000)
    assert "Start baseline (F1)" in dash.instruction_label.text()
    shots = []
    type_key(qtbot, dash, Key.Key_F1)
    qtbot.waitUntil(lambda: ctl.index == 0 and ctl.elapsed_s(dash._now_s()) > 6 and dash.phase_label.text() == "baseline",
                    timeout=10_000)
    assert dash.instruction_label.text() == dash.protocol.phases[0].instruction == "Client seated, shoulders relaxed, " \
        "eyes open, no talking."
    assert [b.text() for b in dash.phase_buttons] == ["End baseline (F1)", "Start treatment (F2)", "Start post (F3)"]
    shots += shoot(qtbot, dash, "baseline")

    type_key(qtbot, dash, Key.Key_F2)
    qtbot.waitUntil(lambda: ctl.index == 1, timeout=2_000)
    type_key(qtbot, dash, Key.Key_1)
    type_key(qtbot, dash, Key.Key_H)
    qtbot.wait(150)
    type_key(qtbot, dash, Key.Key_2)
    qtbot.waitUntil(lambda: ctl.elapsed_s(dash._now_s()) > 3 and dash.phase_label.text() == "treatment",
                    timeout=10_000)
    assert [b.text() for b in dash.phase_buttons] == ["Repeat baseline (F1)", "End treatment (F2)", "Start post (F3)"]
    wanted = {"treatment", short("trigger-point pressure"), "hands on", "acupressure GB20"}
    qtbot.waitUntil(lambda: wanted <= {m.label for m, _ in dash.markers["emg"].shown}, timeout=2_000)
    labels = [(m.label, row) for m, row in dash.markers["emg"].shown]
    assert all(row is not None for _, row in labels), labels  # room for every label here
    shots += shoot(qtbot, dash, "treatment")

    type_key(qtbot, dash, Key.Key_F3)
    qtbot.waitUntil(lambda: ctl.index == 2 and ctl.elapsed_s(dash._now_s()) > 6 and dash.phase_label.text() == "post",
                    timeout=10_000)
    assert "shoulders relaxed" in dash.instruction_label.text()
    shots += shoot(qtbot, dash, "post")

    qtbot.waitUntil(lambda: ctl.index is None and dash.phase_label.text() == "recording", timeout=10_000)  # post's end
    assert dash.worker.state == WorkerState.RUNNING and not ctl.finished
    assert dash.phase_label.text() == "recording" and dash.phase_label.property("state") == "after"
    assert "Still recording until you end the session" in dash.instruction_label.text()
    shots += shoot(qtbot, dash, "after-last-phase")
    dash.theme_box.setCurrentText("dark")  # the legends are redrawn in the theme's text colour (were dark on dark)
    for key in ("tension", "hrv"):
        for _, label in dash.plots[key].legend.items:
            assert dash.theme.text == "#f2f2f2" and "#f2f2f2" in label.item.toHtml().lower(), key
    dash.theme_box.setCurrentText("light")
    big, small = dash.sizes, None
    dash.resize(*SMALL)
    QtWidgets.QApplication.processEvents()
    small = dash.sizes
    assert big.number_px > small.number_px >= 40 and big.text_px > small.text_px >= 16

    type_key(qtbot, dash, Key.Key_Q, QtCore.Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: dash.end_question is not None and dash.end_question.isVisible(), timeout=2_000)
    shots.append(save_screenshot(dash.end_question, "session-window-end-question"))
    answer(qtbot, dash, "End session")
    qtbot.waitUntil(lambda: dash.worker.finished and dash.summary_dialog is not None, timeout=20_000)
    with SessionReader(dash.worker.path) as r:
        assert [p["label"] for p in r.phases()] == ["baseline", "treatment", "post"]
        assert not any(m["label"] == "session ended early" for m in r.events("marker"))
    for path in shots:
        assert path.stat().st_size > 10_000


def test_marker_labels_never_overlap(qtbot):
    """Marks a few pixels apart: each label in a row of its own (or left out), lines at their times."""
    import pyqtgraph as pg

    from biofeedback.ui.markers import Mark, MarkerLayer, marks_of_event

    view = pg.GraphicsLayoutWidget()
    qtbot.addWidget(view)
    view.resize(600, 300)
    plot = view.addPlot()
    plot.setXRange(-10, 0, padding=0)
    plot.setYRange(0, 1, padding=0)
    view.show()
    layer = MarkerLayer([plot], plot)
    layer.style("#000000", "#ffffff", 16)
    marks = [Mark(t, label, "marker") for t, label in
             [(-9.0, "hands on"), (-8.9, "trigger-point pressure"), (-8.7, "note: {odd}"), (-2.0, "hands off")]
             + [(-5.0 + 0.01 * i, f"m{i}") for i in range(30)]] + [Mark(-4.8, "treatment", "phase-start")]
    layer.show(marks, 0.0, 10.0)
    QtWidgets.QApplication.processEvents()
    vb = plot.getViewBox()
    width = vb.width()
    xs = layer.line_xs[plot]
    assert len(xs) == len(layer.shown) == len(marks)
    for (m, _), x in zip(layer.shown, xs):
        assert abs(x - (10 + m.t_s) * width / 10) < 1e-6
    boxes = {text: box for box, text in layer.label_boxes}
    assert len(boxes) == sum(row is not None for _, row in layer.shown) >= 6
    assert any(row is None for _, row in layer.shown), "thirty marks in 0.3 s cannot all have a label"
    assert all(row is not None for m, row in layer.shown if m.kind == "phase-start"), "a phase lost its label"
    for m, row in layer.shown:
        if row is not None:
            box, x = boxes[m.label], (10 + m.t_s) * width / 10
            assert vb.boundingRect().contains(box), f"{m.label} leaves the plot"
            assert abs(box.left() - x) < 1e-6 or abs(box.right() - x) < 1e-6, f"{m.label} is not at its line"
    listed = list(boxes.values())
    for i, a in enumerate(listed):
        for b in listed[i + 1:]:
            assert not a.intersects(b), "two marker labels overlap"
    # On the screen: each line is drawn (dark dashes in its pixel column), each label's box is filled
    image = view.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_RGB32)
    origin = vb.mapToScene(QtCore.QPointF(0, 0))
    for x in xs[:4]:
        column = [QtGui.QColor(image.pixel(round(origin.x() + x), round(origin.y() + y))).lightness()
                  for y in range(int(vb.height() * 0.6), int(vb.height() * 0.95))]
        assert min(column) < 60, "a marker line is not drawn"
    box = boxes["hands on"].translated(origin.x(), origin.y()).toRect()
    text = [QtGui.QColor(image.pixel(x, y)).lightness() for x in range(box.left(), box.right())
            for y in range(box.top(), box.bottom())]
    assert min(text) < 60 and max(text) > 200, "the 'hands on' label is not written on its box"
    assert marks_of_event("hands-on", 3.0, "hands on", 2.5) == [Mark(3.0, "hands on", "hands-on"),
                                                               Mark(5.5, "hands off", "hands-on")]
    assert marks_of_event("marker", 1.0, "technique: acupressure GB20")[0].label == "acupressure GB20"
    assert marks_of_event("phase", 1.0, "baseline", 10.0) == []  # its start was marked already


def test_the_window_size_is_remembered_in_a_private_file(qtbot, protocol, home):
    from biofeedback.sensors.profiles import load_profiles
    from biofeedback.session.runner import SessionPlan
    from biofeedback.ui.dashboard import Dashboard
    from biofeedback.ui.window_size import windows_file
    from biofeedback.ui.worker import start_worker

    def window() -> Dashboard:
        plan = SessionPlan("C001", protocol, True, 1.0, False, None, {"answers": {}, "source": "test"}, None)
        dash = Dashboard(start_worker(plan, load_profiles()), protocol)  # scans, never connects
        qtbot.addWidget(dash)
        return dash

    first = window()  # the first time: fitted to the (800x800 offscreen) screen, at least the window's minimum
    default = (first.width(), first.height())
    first.resize(1024, 650)  # as wide as the offscreen screen lets a restored window be
    first.show()
    first.close()
    assert stat.S_IMODE(os.stat(windows_file()).st_mode) == 0o600
    second = window()
    assert (second.width(), second.height()) == (1024, 650) != default
    second.close()
    windows_file().write_text("{ not json", encoding="utf-8")
    third = window()
    assert any("window sizes not restored" in line and "damaged" in line for line in third._log_lines)
    third.close()


def test_a_replay_fits_1366x768_with_its_marks_on_the_traces(qtbot, home):
    """The replay window was wider than a 1600 px screen (its banner); its marks come from the recording."""
    from pathlib import Path

    from biofeedback.sensors.profiles import load_profiles
    from biofeedback.session.runner import replay_plan
    from biofeedback.ui.dashboard import Dashboard
    from biofeedback.ui.window_size import windows_file
    from biofeedback.ui.worker import start_worker

    example = Path(__file__).resolve().parents[2] / "recordings" / "example-demo.bfsession"
    plan = replay_plan(example, 20.0)
    dash = Dashboard(start_worker(plan, load_profiles()), plan.protocol)
    qtbot.addWidget(dash)
    dash.resize(*SMALL)
    dash.show()
    with SessionReader(example) as r:
        techniques = [m["t_s"] for m in r.events("marker") if "technique" in (m["data"] or {})]
    qtbot.waitUntil(lambda: dash.plotted_at_s > techniques[0] + 1 and dash.phase_label.text() == "treatment",
                    timeout=30_000)
    assert_fits(dash, SMALL)
    assert any(m.t_s == techniques[0] and m.kind == "marker" for m, _ in dash.markers["emg"].shown)
    dash.timer.stop()
    save_screenshot(dash, "session-window-replay-1366x768")
    dash.end_session()
    qtbot.waitUntil(lambda: dash.worker.finished, timeout=20_000)
    dash.close()
    assert not windows_file().exists(), "a replay wrote its window size"
