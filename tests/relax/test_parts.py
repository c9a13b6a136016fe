"""The pieces without sensors: pacer, feedback decisions, protocol fitting, synthesiser, HR oscillation; sham signal
and start/end values of recorded sessions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from biofeedback.dsp import QualityFlag
from biofeedback.relax.audio import FeedbackSynth, tone_hz
from biofeedback.relax.engine import fit_minutes
from biofeedback.relax.feedback import CONTACT_LOST, NO_SIGNAL, OFF, ON, PAUSED, QUIET, Feedback, decide
from biofeedback.relax.pacer import EXHALE, INHALE, Pacer, parse_ratio
from biofeedback.relax.resonance import hr_oscillation_bpm
from biofeedback.session.protocol import load_protocol


def test_pacer_inhale_shorter_than_exhale_and_rate_steps_on_breath_boundaries():
    p = Pacer(6.0, parse_ratio("40:60"), start_s=0.0)
    assert p.at(0.1).phase == INHALE and p.at(3.9).phase == INHALE and p.at(4.1).phase == EXHALE
    assert p.at(9.9).phase == EXHALE and p.at(10.05).breath == 1
    assert p.at(4.0).lung == pytest.approx(1.0, abs=1e-6) and p.at(0.0).lung == pytest.approx(0.0, abs=1e-6)
    assert p.set_rate(10.0, 12.0) == pytest.approx(20.0)  # next breath boundary
    assert p.at(19.0).rate_bpm == 6.0 and p.at(20.5).rate_bpm == 10.0 and p.at(26.1).breath == 3
    with pytest.raises(ValueError):
        parse_ratio("80:20")


def test_feedback_quiet_at_target_rises_above_and_pauses_on_bad_signal():
    assert decide(20.0, 24.0, 0, False, 0.1).state == QUIET
    assert decide(24.0, 24.0, 0, False, 0.1).state == QUIET
    loud = decide(36.0, 24.0, 0, False, 0.1)
    assert loud.state == ON and loud.level == pytest.approx(0.5)
    assert decide(90.0, 24.0, 0, True, 0.1) == Feedback(PAUSED, 0.0, 90.0, 24.0, CONTACT_LOST)
    assert decide(90.0, 24.0, QualityFlag.FLAT, False, 0.1).reason == CONTACT_LOST
    assert decide(90.0, 24.0, QualityFlag.MOTION, False, 0.1).state == PAUSED
    assert decide(90.0, 24.0, 0, False, 5.0).reason == NO_SIGNAL


def test_minutes_resize_the_home_protocol():
    proto = fit_minutes(load_protocol("home-relaxation"), 10)
    assert sum(p.planned_s() for p in proto.phases) == pytest.approx(600)
    assert [p.duration_s for p in proto.phases] == [60, 480, 60]


def test_synth_is_silent_at_target_and_its_pitch_follows_the_level():
    synth = FeedbackSynth(chimes=False)
    synth.set(Feedback(QUIET, 0.0, 20.0, 24.0))
    assert np.abs(synth.render(4000)).max() < 1e-3
    for level in (0.2, 0.8):
        synth.set(Feedback(ON, level, 30.0, 24.0))
        x = synth.render(22050)[11025:]
        crossings = np.sum(np.diff(np.signbit(x).astype(int)) != 0) / 2 / 0.5
        assert crossings == pytest.approx(tone_hz(level), rel=0.02)
    synth.set(Feedback(OFF))
    synth.render(4000)
    assert np.abs(synth.render(4000)).max() < 1e-3


def test_hr_oscillation_is_peak_to_trough_per_breath():
    t = np.arange(0, 30, 0.8)
    hr = 70 + 5 * np.sin(2 * np.pi * t / 10.0)
    osc = hr_oscillation_bpm(t, 60000.0 / hr, [0.0, 10.0, 20.0, 30.0])
    assert all(8.5 < v <= 10.0 for v in osc)
    assert math.isnan(hr_oscillation_bpm(t[:2], 60000.0 / hr[:2], [0.0, 10.0])[0])


# --- sham signal and home summary: read through the loaded session (analysis.data) ---------------------------
def _recording(tmp_path, name: str, **script):
    from tests.analysis.conftest import Script, write_session

    return write_session(tmp_path / f"{name}.bfsession", Script(**script), seed=8)


def _counting_loads(monkeypatch, module) -> list:
    """Wrap ``module.load_session`` so that each call is counted (and still loads)."""
    calls, real = [], module.load_session
    monkeypatch.setattr(module, "load_session", lambda path, *a, **kw: calls.append(path) or real(path, *a, **kw))
    return calls


def test_sham_from_a_recording_is_its_clean_rms_relative_to_the_first_phase(tmp_path, monkeypatch):
    import biofeedback.relax.sham as sham_module
    from biofeedback.analysis import load_session
    from biofeedback.relax.sham import ShamSignal

    path = _recording(tmp_path, "drop", emg_drop=0.3)
    calls = _counting_loads(monkeypatch, sham_module)
    sham = ShamSignal.from_recording(path)
    assert calls == [path]
    e = load_session(path).emg
    good = e.valid.all(axis=1)
    np.testing.assert_array_equal(sham.times_s, e.t_s[good])  # hands-on and flagged samples left out
    baseline = sham.times_s < 120.0
    assert np.mean(sham.relative[baseline]) == pytest.approx(1.0, rel=1e-12)
    assert np.mean(sham.relative[sham.times_s >= 180.0]) == pytest.approx(0.7, abs=0.08)
    assert sham.meta() == {"feedback": "sham-recording", "sham_source": f"recording:{path.name}"}


def test_sham_errors_say_what_to_choose_instead(tmp_path):
    from biofeedback.errors import Reason
    from biofeedback.relax.sham import ShamSignal
    from biofeedback.session.protocol import SessionError

    with pytest.raises(SessionError, match="cannot use this recording .*give another session file or 'simulated'") as exc:
        ShamSignal.from_recording(_recording(tmp_path, "heart-only", emg=False))
    assert exc.value.reason == Reason.BAD_FILE
    with pytest.raises(SessionError, match="no clean resting EMG to scale by; choose another") as exc:
        ShamSignal.from_recording(_recording(tmp_path, "off", electrode_off=(0.0, 120.0)))
    assert exc.value.reason == Reason.NOT_ENOUGH_DATA


def test_start_end_reads_the_loaded_session_and_its_clean_data_rule(tmp_path, monkeypatch):
    import biofeedback.analysis.summary as summary_module
    from biofeedback.analysis import load_session, summarize
    from biofeedback.relax.summary import plain_summary, start_end

    path = _recording(tmp_path, "drop", emg_drop=0.3)
    calls = _counting_loads(monkeypatch, summary_module)
    values = start_end(path)
    assert calls == [path]
    rows = summarize(load_session(path))
    assert values["tension"] == (pytest.approx(np.mean(list(rows[0]["emg_rms_uv"].values())), rel=1e-12),
                                 pytest.approx(np.mean(list(rows[-1]["emg_rms_uv"].values())), rel=1e-12))
    assert values["hr_bpm"] == (rows[0]["hr_bpm"], rows[-1]["hr_bpm"])
    assert "lower: your shoulders relaxed" in plain_summary(values)[0]

    # Left electrode off for most of the baseline: too little clean EMG there for a start value (as the verdict says).
    off = load_session(_recording(tmp_path, "off", electrode_off=(0.0, 100.0)))
    tension = start_end(off)["tension"]
    assert math.isnan(tension[0]) and math.isfinite(tension[1])
    assert plain_summary(start_end(off))[0] == ("Shoulder tension was not measured (no EMG sensor or too little clean "
                                                "signal).")
    assert calls == [path], "a SessionData passed in is not loaded again"
