"""A whole virtual session on one BITalino (r)evolution board alone (left and right trapezius EMG and ECG on one
device), chosen with ``--sensors`` and remembered for the client: it records, reports and exports like a session
on the open-EMG sensor and a chest strap."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import h5py
import numpy as np
import pytest

from biofeedback.cli import main
from biofeedback.store import SessionReader
from biofeedback.store.sensor_choice import remembered_sensors

PROTOCOL = Path(__file__).resolve().parents[1] / "data" / "protocols" / "dashboard-short.toml"


def test_a_session_on_one_bitalino_records_reports_and_exports(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BIOFEEDBACK_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert main(["session", "--client", "C016", "--virtual", "--virtual-devices", "bitalino,polar-h10",
                 "--sensors", "bitalino", "--speed", "5", "--protocol", str(PROTOCOL), "--answers", "all-clear",
                 "--headless", "--virtual-emg-uv", "35,28", "--virtual-hr", "66"]) == 0
    out = capsys.readouterr().out
    # The choice is remembered in the client's folder, 0600, and named when the next session starts.
    choice = tmp_path / "home/clients/C016/sensors.json"
    assert stat.S_IMODE(choice.stat().st_mode) == 0o600 and remembered_sensors("C016") == ("bitalino",)
    [session] = sorted((tmp_path / "home/clients/C016/sessions").glob("*.bfsession"))
    with SessionReader(session) as reader:
        assert [d["profile"] for d in reader.meta["devices"]] == ["bitalino"]  # the H10 was there, not chosen
        streams = set(reader.streams())
        assert {("emg", "bitalino"), ("ecg", "bitalino"), ("rr", "bitalino")} <= streams
        assert reader.rate_hz("emg", "bitalino") == 1000 and reader.channels("emg", "bitalino") == (
            "left_trapezius", "right_trapezius")
        beats = reader.beats()
        baseline = next(e for e in reader.events("phase") if e["label"] == "baseline")
    assert beats["t_s"].size > 35
    # R peaks of the board's own ECG; the virtual heart beats at the scripted 66 bpm in the baseline (it slows after
    # treatment, as a released client's does).
    during = (beats["t_s"] > baseline["t_s"]) & (beats["t_s"] < baseline["t_s"] + baseline["duration_s"])
    assert during.sum() > 8
    assert abs(60000.0 / np.median(beats["rr_raw_ms"][during]) - 66) < 2
    assert "verdict: " in out

    # The report says which sensor and rate each number came from.
    assert main(["report", str(session), "--json", "--html", "--out", str(tmp_path / "reports")]) == 0
    [report_json] = (tmp_path / "reports").glob("*-report.json")
    doc = json.loads(report_json.read_text())
    by_quantity = {s["quantity"]: s for s in doc["sensors"]}
    assert by_quantity["EMG tension"]["profile"] == "bitalino" and by_quantity["EMG tension"]["rate_hz"] == 1000
    assert by_quantity["heart rate and HRV"]["from"] == "R peaks in its ECG"
    assert any(m["key"].startswith("emg") or "tension" in m["key"] for m in doc["metrics"])
    pages = [p.read_text() for p in (tmp_path / "reports").glob("*.html")]
    assert any("EMG tension: bitalino at 1000 Hz" in page and "heart rate and HRV: bitalino, from R peaks in its ECG"
               in page for page in pages)

    # Exports: EDF+ and HDF5 carry both EMG channels and the ECG, with the source and rate in their metadata.
    assert main(["export", str(session), "--format", "hdf5", "--out", str(tmp_path / "h5")]) == 0
    [h5] = (tmp_path / "h5").glob("*.h5")
    with h5py.File(h5) as f:
        emg = f["streams/emg/bitalino"]
        assert emg["samples"].shape[1] == 2 and emg.attrs["rate_hz"] == 1000
        assert "streams/ecg/bitalino" in f and "streams/rr/bitalino" in f
    assert main(["export", str(session), "--format", "edf", "--out", str(tmp_path / "edf")]) == 0
    [edf] = (tmp_path / "edf").glob("*.edf")
    header = edf.read_bytes()[:4096].decode("latin-1")
    assert "left_trapezius" in header and "ecg" in header.lower()


def test_the_remembered_choice_is_used_checked_and_a_damaged_file_is_one_line(tmp_path, monkeypatch, capsys):
    from biofeedback.cli.session import sensor_choice
    from biofeedback.errors import BiofeedbackError
    from biofeedback.sensors.profiles import load_profiles

    monkeypatch.setenv("BIOFEEDBACK_HOME", str(tmp_path / "home"))
    profiles = load_profiles()
    assert sensor_choice("C020", None, profiles) is None  # nothing chosen yet: the best sensors found
    assert sensor_choice("C020", "open-emg, polar-verity", profiles) == ("open-emg", "polar-verity")
    assert sensor_choice("C020", None, profiles) == ("open-emg", "polar-verity")
    assert "remembered for C020" in capsys.readouterr().out
    folder = tmp_path / "home/clients/C020"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    with pytest.raises(BiofeedbackError, match=r"--sensors: 'toaster': give profile names from bitalino, "):
        sensor_choice("C020", "open-emg,toaster", profiles)
    assert remembered_sensors("C020") == ("open-emg", "polar-verity")  # a refused choice is not remembered
    (folder / "sensors.json").write_text("{not json")
    with pytest.raises(BiofeedbackError, match="sensors.json: not a remembered sensor choice; delete it or choose again"):
        sensor_choice("C020", None, profiles)


def test_home_relaxation_connects_the_sensors_the_therapist_chose(tmp_path, monkeypatch, capsys):
    from biofeedback.cli import build_parser
    from biofeedback.cli.relax import prepare
    from biofeedback.store.sensor_choice import remember_sensors

    monkeypatch.setenv("BIOFEEDBACK_HOME", str(tmp_path / "home"))
    remember_sensors("C021", ("bitalino",))
    args = build_parser().parse_args(["relax", "--client", "C021", "--virtual", "--answers", "all-clear"])
    plan, _, _ = prepare(args, None)
    assert plan.sensors == ("bitalino",)
    assert "sensors: bitalino (remembered for C021" in capsys.readouterr().out


def test_looking_up_the_sensors_of_an_unknown_client_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("BIOFEEDBACK_HOME", str(tmp_path / "home"))
    assert remembered_sensors("C404") is None
    assert not (tmp_path / "home").exists()
