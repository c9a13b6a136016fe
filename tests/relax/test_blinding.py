"""Blinded trials and the client's own words: a sham home session, headless and in the window, shows the
participant no trace of "sham" (terminal, screen, summary, history) while the session file (the trial record)
keeps it; the screening dialog is worded for the client and says why it will not start; no sound is explained on
screen; a headache without hours is stored as unknown."""

from __future__ import annotations

import json

import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from biofeedback.analysis.diary import read_diary
from biofeedback.cli import main
from biofeedback.relax.engine import RelaxSettings
from biofeedback.relax.sham import ShamSignal
from biofeedback.sensors.profiles import load_profiles
from biofeedback.sensors.virtual import Scenario
from biofeedback.session.protocol import load_protocol
from biofeedback.session.runner import SessionPlan, session_scenario
from biofeedback.store import SessionReader
from tests.conftest import save_screenshot
from tests.relax.conftest import protocol_text, relax_cli

HOME_PROTOCOL = load_protocol("home-relaxation")


def shown_texts(window: QtWidgets.QWidget) -> list[str]:
    """Every text the window shows: titles, labels, buttons, spin boxes, and the plots' titles, labels and legends."""
    texts = [window.windowTitle()]
    for w in window.findChildren(QtWidgets.QWidget):
        texts.append(w.windowTitle())
        for name in ("text", "specialValueText", "toolTip", "placeholderText"):
            value = getattr(w, name, None)
            if callable(value):
                texts.append(str(value()))
    for plot in window.findChildren(pg.PlotWidget):
        for item in plot.scene().items():
            if isinstance(item, pg.LabelItem):
                texts.append(item.text)
            elif isinstance(item, QtWidgets.QGraphicsTextItem):
                texts.append(item.toPlainText())
    return [t for t in texts if t]


def test_the_participant_never_learns_which_feedback_they_got(capsys, qtbot, tmp_path, home):
    from biofeedback.ui.relax_window import RelaxWindow, start_relax_worker

    proto = tmp_path / "home.toml"
    proto.write_text(protocol_text(5, 15, 5))
    code, out, err = relax_cli(capsys, "--protocol", str(proto), "--virtual-devices", "open-emg", "--sham", "simulated")
    assert code == 0, err
    assert "Shoulder tension" in out and "home session" in out  # the summary and the history were printed
    shown = [out, err]

    protocol = load_protocol(proto)
    plan = SessionPlan("C001", protocol, True, 5.0, True, session_scenario(Scenario(), protocol),
                       {"answers": {"consent": True}, "source": "test"}, None)
    settings = RelaxSettings(sham="simulated")
    worker = start_relax_worker(plan, settings, load_profiles(), ShamSignal.simulated(25.0))
    window = RelaxWindow(worker, settings, ShamSignal.simulated(25.0))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.view is not None and window.view.phase == "relaxation", timeout=30_000)
    qtbot.wait(300)
    shown += shown_texts(window)
    qtbot.waitUntil(lambda: window.summary_shown, timeout=30_000)
    assert worker.join(30.0) and worker.error is None
    qtbot.wait(200)
    shown += shown_texts(window)
    save_screenshot(window, "relax-sham-summary")
    shown += capsys.readouterr()
    history = home / "clients" / "C001" / "relax-history.json"
    shown.append(history.read_text())
    assert len(json.loads(history.read_text())) == 2  # both sessions are in the history the participant sees

    everything = "\n".join(shown).lower()
    assert "well done" in everything and "shoulder tension" in everything  # the texts were collected
    assert "sham" not in everything and "simulated" not in everything and "blind" not in everything

    sessions = sorted((home / "clients" / "C001" / "sessions").glob("*.bfsession"))
    assert len(sessions) == 2
    for path in sessions:
        with SessionReader(path) as r:  # the trial record keeps which feedback was given
            assert r.meta["relax"]["feedback"] == "sham-simulated" and r.meta["relax"]["sham_source"] == "simulated"


def test_a_headache_without_hours_is_stored_as_unknown(capsys, tmp_path, home):
    proto = tmp_path / "home.toml"
    proto.write_text(protocol_text(5, 10, 5))
    code, out, err = relax_cli(capsys, "--protocol", str(proto), "--virtual-devices", "hrs-strap", "--headache", "5")
    assert code == 0, err
    [entry] = read_diary("C001")
    assert entry["intensity"] == 5.0 and entry["duration_h"] is None
    assert "headache 5/10, how long unknown" in out
    assert main(["diary", "--client", "C001", "add", "--intensity", "3"]) == 0
    assert main(["diary", "--client", "C001", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()[-2:]
    assert all("unknown" in line and " 0.0 h" not in line for line in listed), listed


def test_the_client_reads_their_own_screening_and_why_it_will_not_start(qtbot):
    from biofeedback.ui.screening_dialog import ScreeningDialog

    dialog = ScreeningDialog(HOME_PROTOCOL.questions, "relaxation", reader="client")
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.windowTitle() == "Before you start"
    assert "Please answer each question before you start the relaxation" in dialog.intro.text()
    assert "client" not in " ".join(shown_texts(dialog)).lower()  # spoken to, not about
    for key, label in {"consent": "yes", "acute_migraine": "yes", "new_headache": "no", "cervical_spine": "no"}.items():
        qtbot.mouseClick(dialog.findChild(QtWidgets.QRadioButton, f"{key}-{label}"), QtCore.Qt.MouseButton.LeftButton)
    assert dialog.start_button.text() == "Save my answers; don't start"
    assert "Please don't start today: acute severe migraine attack" in dialog.reasons_label.text()
    qtbot.mouseClick(dialog.start_button, QtCore.Qt.MouseButton.LeftButton)
    assert dialog.isVisible(), "a stopping answer is explained before the window closes"
    assert dialog.start_button.text() == "Close" and not dialog.question_box.isVisible()
    assert "Your relaxation will not start today" in dialog.reasons_label.text()
    assert "talk to your therapist or doctor" in dialog.reasons_label.text()
    qtbot.wait(50)
    save_screenshot(dialog, "screening-client-stopped")
    qtbot.mouseClick(dialog.start_button, QtCore.Qt.MouseButton.LeftButton)
    assert not dialog.isVisible() and dialog.result() == QtWidgets.QDialog.DialogCode.Accepted
    assert dialog.answers()["acute_migraine"] is True


def test_the_therapist_wording_stays_for_sessions(qtbot):
    from biofeedback.ui.screening_dialog import ScreeningDialog

    dialog = ScreeningDialog(HOME_PROTOCOL.questions, "session")
    qtbot.addWidget(dialog)
    assert "with the client before the session starts" in dialog.intro.text()
    assert dialog.start_button.text() == "Start session"
