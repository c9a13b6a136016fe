"""Whole home sessions, headless through the command line, with each sensor combination; recorded and summarised."""

from __future__ import annotations

import pytest

from biofeedback.cli import main
from biofeedback.relax.summary import relax_history
from biofeedback.store import SessionReader, StoreError
from biofeedback.stream import StreamKind
from tests.relax.conftest import protocol_text, relax_cli as relax

COMBINATIONS = {"open-emg,polar-h10": (True, True), "hrs-strap": (False, True), "open-emg": (True, False)}


@pytest.mark.parametrize("devices", list(COMBINATIONS))
def test_home_session_with_each_sensor_combination(capsys, tmp_path, home, devices):
    proto = tmp_path / "home.toml"
    proto.write_text(protocol_text(10, 30, 10))
    code, out, err = relax(capsys, "--protocol", str(proto), "--virtual-devices", devices)
    assert code == 0, err
    emg, heart = COMBINATIONS[devices]
    sessions = sorted((home / "clients/C001/sessions").glob("*.bfsession"))
    assert len(sessions) == 1
    with SessionReader(sessions[0]) as r:
        meta = r.meta
        assert meta["complete"] and meta["relax"]["feedback"] == "live" and meta["relax"]["rate_bpm"] == 6.0
        assert [e["label"] for e in r.events("phase")] == ["baseline", "relaxation", "post"]
        assert any(e["data"] == {"technique": "breathing"} for e in r.events("marker"))
        if emg:
            t, _ = r.samples(StreamKind.EMG)
            assert t.size > 40_000
        else:
            with pytest.raises(StoreError):
                r.samples(StreamKind.EMG)
        assert (r.beats()["t_s"].size > 40) == heart
    assert "breathe in" in out and "breathe out" in out
    if emg:
        assert "Shoulder tension" in out and "target" in out
    else:
        assert "Shoulder tension was not measured" in out and "no EMG sensor" in out
    assert ("Heart rate variability (RMSSD)" in out) == heart
    assert "Today: No headache noted for today." in out
    assert len(relax_history("C001")) == 1


def test_sham_feedback_is_recorded_in_the_meta_and_driven_by_its_signal(capsys, tmp_path, home):
    proto = tmp_path / "home.toml"
    proto.write_text(protocol_text(10, 30, 10))
    assert relax(capsys, "--protocol", str(proto), "--virtual-devices", "open-emg")[0] == 0
    first = sorted((home / "clients/C001/sessions").glob("*.bfsession"))[0]
    code, out, err = relax(capsys, "--protocol", str(proto), "--virtual-devices", "open-emg", "--sham", "simulated",
                           "--headache", "4", "--headache-hours", "2")
    assert code == 0, err
    code, out, err = relax(capsys, "--protocol", str(proto), "--virtual-devices", "open-emg", "--sham", str(first))
    assert code == 0, err
    sessions = sorted((home / "clients/C001/sessions").glob("*.bfsession"))
    feedback = []
    for s in sessions:
        with SessionReader(s) as r:
            feedback.append((r.meta["relax"]["feedback"], r.meta["relax"]["sham_source"]))
    assert feedback == [("live", None), ("sham-simulated", "simulated"), ("sham-recording", f"recording:{first.name}")]
    assert "headache 4/10, for 2.0 h" in out
    assert len(relax_history("C001")) == 3


def test_wrong_options_say_what_to_type(capsys, tmp_path):
    code, _, err = relax(capsys, "--ratio", "90:10")
    assert code == 2 and "40:60" in err
    code, _, err = relax(capsys, "--minutes", "1")
    assert code == 2 and "at least" in err


def test_without_a_display_the_window_falls_back_to_the_terminal(capsys, tmp_path, home):
    proto = tmp_path / "home.toml"
    proto.write_text(protocol_text(5, 10, 5))
    code = main(["relax", "--client", "C001", "--virtual", "--speed", "20", "--answers", "all-clear",
                 "--protocol", str(proto), "--virtual-devices", "hrs-strap"])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert "No display: running headless" in err
    assert len(list((home / "clients/C001/sessions").glob("*.bfsession"))) == 1
