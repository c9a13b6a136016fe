"""A whole unattended session on virtual sensors at 20x: phases, markers, hands-on, gaps, meta, summary."""

from __future__ import annotations

import stat

import numpy as np
import pytest

from biofeedback.analysis.summary import summarize
from biofeedback.store import SessionReader

MARKER_TOLERANCE_S = 0.01
"""Scripted markers carry their scripted click time (phase start + at_s), not the time the loop
handled them, so they match to rounding."""
PHASE_TOLERANCE_S = 1.5
"""Timed phases end when the loop gets to the timer: at 20x, 75 ms of scheduling delay on a loaded
2-core machine (HOST_JITTER_WALL_S is 0.25 s) is 1.5 s of session time."""


@pytest.fixture(scope="module")
def reader(recorded):
    with SessionReader(recorded.session) as r:
        yield r


def phases(reader) -> dict[str, dict]:
    return {e["label"]: e for e in reader.events("phase")}


def test_phases_follow_the_protocol(reader):
    ph = reader.events("phase")
    assert [p["label"] for p in ph] == ["baseline", "treatment", "post"]
    for p, planned in zip(ph, (20, 30, 20)):
        assert abs(p["duration_s"] - planned) < PHASE_TOLERANCE_S
    for a, b in zip(ph, ph[1:]):
        assert abs(a["t_s"] + a["duration_s"] - b["t_s"]) < 0.1
    assert reader.complete


def test_scripted_markers_land_at_their_times(reader):
    treat = phases(reader)["treatment"]["t_s"]
    markers = reader.events("marker")
    assert [m["label"] for m in markers] == ["technique: trigger-point pressure", "technique: acupressure GB20"]
    assert [m["data"]["technique"] for m in markers] == ["trigger-point", "gb20"]
    for m, at in zip(markers, (3, 15)):
        assert 0 <= m["t_s"] - (treat + at) < MARKER_TOLERANCE_S
    (note,) = reader.events("note")
    assert note["label"] == "client reports the headache eased"
    assert 0 <= note["t_s"] - (treat + 20) < MARKER_TOLERANCE_S


def test_hands_on_is_recorded_as_an_interval(reader):
    treat = phases(reader)["treatment"]["t_s"]
    (on,) = reader.events("hands-on")
    assert 0 <= on["t_s"] - (treat + 3) < MARKER_TOLERANCE_S
    assert abs(on["duration_s"] - 9) < 2 * MARKER_TOLERANCE_S


def test_forced_disconnect_is_a_gap_inside_treatment(reader):
    p = phases(reader)["treatment"]
    lost = [g for g in reader.gaps() if "disconnect" in g.reason]
    assert {g.source for g in lost} == {"open-emg", "polar-h10"}
    for g in lost:
        assert p["t_s"] <= g.start_s < p["t_s"] + p["duration_s"], g
        assert g.end_s > g.start_s


def test_beats_have_raw_and_corrected_rr(reader):
    b = reader.beats()
    assert b["t_s"].size > 60
    assert np.isfinite(b["rr_corrected_ms"]).mean() > 0.95
    assert np.all(np.diff(b["t_s"]) > 0)


def test_meta_records_client_protocol_screening_calibration_devices(reader, recorded):
    meta = reader.meta
    assert meta["client_id"] == "C001" and meta["speed"] == 20 and meta["protocol"] == "test-short"
    assert meta["screening"]["answers"] == {"consent": True, "acute_migraine": False}
    assert meta["calibration"]["file"] == recorded.calibration.name
    assert meta["tension_index_unit"] == "%RVC"
    assert [e["label"] for e in reader.events("calibration")] == [f"calibration {recorded.calibration.name}"]
    devices = {d["profile"]: d for d in meta["devices"]}
    assert set(devices) == {"open-emg", "polar-h10"}
    assert all(d["alias"].startswith("dev-") for d in devices.values())
    assert "C0:EE" not in recorded.session.read_bytes().decode("latin-1")
    assert stat.S_IMODE(recorded.session.stat().st_mode) == 0o600


def test_summary_shows_heart_rate_lower_after_treatment_and_no_tension_level_from_too_little_data(reader, recorded):
    """The test protocol's 20 s rests are below the 30 s of clean EMG a level needs: the summary says so, as the
    verdict does, instead of a confident mean (the comparison's level and rule, ``analysis.data.enough_clean``)."""
    rows = {r["phase"]: r for r in summarize(recorded.session)}
    for phase in ("baseline", "post"):
        assert rows[phase]["emg_rms_uv"] == {} and "too little clean data" in rows[phase]["note"]
        # most of each 20 s rest counts as clean (under CI's two test workers the virtual link loses up to ~5 s of it
        # at the edges), and it is still under the 30 s a level needs
        assert 10.0 < min(rows[phase]["emg_clean_s"].values()) < 30.0
    assert rows["post"]["hr_bpm"] < rows["baseline"]["hr_bpm"]
    assert "verdict: " in recorded.out and "cannot be compared" in recorded.out
    assert f"recording: {recorded.session}" in recorded.out
    assert "baseline" in recorded.out.split("recording: ")[-1]


def test_live_summary_comes_first_and_agrees_with_the_recordings(reader, recorded):
    """At the end of a session the summary of the live values (kept while recording, issue 19) is printed before the
    recording is analysed, with the same phases, and heart rates within 2 bpm of the recording's analysis; the
    tension levels, too short here, are held back by the same least-clean-data rule."""
    import re

    live, rest = recorded.out.split("summary of the live values", 1)[1].split("recording: ", 1)
    hr = {name: float(bpm) for name, bpm in re.findall(r"^  (\w+) .* HR (\d+) bpm", live, re.M)}
    rows = {r["phase"]: r for r in summarize(recorded.session)}
    assert set(hr) == set(rows) == {"baseline", "treatment", "post"}
    for phase, row in rows.items():
        assert abs(hr[phase] - row["hr_bpm"]) < 2.0
    assert hr["post"] < hr["baseline"]
    assert live.count("too little clean data") >= 2 and "verdict: " in rest

def test_meta_says_how_the_cardiac_artefact_was_handled_per_channel(reader):
    # The live chain's own report (EmgProcessor.cardiac_report), written by the recorder when it closes.
    from biofeedback.dsp.cardiac import HOLD_MS, CardiacMethod

    cardiac = reader.meta["cardiac"]
    emg_source = next(source for stream, source in reader.streams() if stream == "emg")
    assert cardiac["channels"] == list(reader.channels("emg", emg_source))
    assert len(cardiac["methods"]) == len(cardiac["channels"]) == 2
    assert set(cardiac["methods"]) <= {str(m) for m in CardiacMethod if m not in (CardiacMethod.OFF, CardiacMethod.HIGHPASS)}
    assert cardiac["delay_ms"] == HOLD_MS
