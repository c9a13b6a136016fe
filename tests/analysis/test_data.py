"""The loaded-session container: annotations and masks of a hand-built recording (exact), one least-clean-data
rule for the summary and the comparison, and a session outcome read from one load."""

from __future__ import annotations

import neurokit2 as nk
import numpy as np
import pytest
from conftest import Script

import biofeedback.analysis.summary as summary_module
from biofeedback.analysis import (
    BAD_ACQ_SKIP,
    BAD_CONTACT,
    BAD_HANDS_ON,
    PRIMARY,
    Annotation,
    compare,
    format_summary,
    load_session,
    session_outcome,
    summarize,
)
from biofeedback.store import SessionWriter
from biofeedback.stream import NS_PER_S, Block, BlockFlag, Gap
from biofeedback.vocab import EventKind, Verdict

RATE_HZ = 512.0
"""Binary-exact sample times: a block of 64 samples is 0.125 s, every sample time a multiple of 1/512 s."""
BLOCK_N = 64
STEP = 26
"""Samples per analysis sample: round(512 / 20)."""
CONTACT_LOST = ((5.0, 6.0), (25.0, 25.5))
"""Blocks (start, end) flagged as lost skin contact."""
EMG_GAP = (10.0, 12.0)
HANDS_ON = (20.0, 3.0)
"""Onset and duration, session seconds."""
RR_MS = 750.0
REMOVED_BEAT_S = 3.0
"""The live corrector removed this beat (no live-corrected RR in the recording)."""


def _beat_times() -> np.ndarray:
    before = RR_MS / 1000.0 * np.arange(1, 20)  # 0.75 ... 14.25 s
    after = 17.25 + RR_MS / 1000.0 * np.arange(17)  # 17.25 ... 29.25 s
    return np.concatenate((before, after))


def _write_known_session(path):
    rng = np.random.default_rng(7)
    with SessionWriter(path, {"client_id": "T001", "utc_anchor": 1.7e9}) as w:
        for i0 in range(0, int(30 * RATE_HZ), BLOCK_N):
            t0 = i0 / RATE_HZ
            if EMG_GAP[0] <= t0 < EMG_GAP[1]:
                continue
            lost = any(a <= t0 < b for a, b in CONTACT_LOST)
            w.add_block(Block("emg", "open-emg", int(t0 * NS_PER_S), rng.normal(0.0, 20.0, (BLOCK_N, 2)), rate_hz=RATE_HZ,
                              first_index=i0, flags=BlockFlag.SENSOR_CONTACT_LOST if lost else 0,
                              channels=("left_trapezius", "right_trapezius")), t0)
        w.add_gap(Gap("emg", "open-emg", *EMG_GAP, "disconnect", 1024))
        w.add_gap(Gap("ecg", "h10", 7.0, 8.0, "disconnect", 130))
        w.add_gap(Gap("rr", "h10", 14.25, 16.5, "disconnect"))
        t = _beat_times()
        corrected = np.where(t == REMOVED_BEAT_S, np.nan, RR_MS)
        w.add_beats("h10", t, np.full(t.size, RR_MS), corrected, np.where(np.isnan(corrected), 1, 0))
        w.add_event(EventKind.HANDS_ON, HANDS_ON[0], "hands on", HANDS_ON[1])
        w.add_event(EventKind.PHASE, 0.0, "baseline", 30.0, {"kind": "rest"})
    return path


def _inside(t: np.ndarray, *intervals: tuple[float, float]) -> np.ndarray:
    return np.any([(t >= a) & (t < b) for a, b in intervals], axis=0)


def test_annotations_and_masks_of_a_known_session(tmp_path):
    data = load_session(_write_known_session(tmp_path / "known.bfsession"))
    half_sample = 0.5 / RATE_HZ
    assert list(data.annotations) == [
        Annotation(5.0, 1.0 - 1.0 / RATE_HZ + half_sample, BAD_CONTACT, "emg"),
        Annotation(7.0, 1.0, BAD_ACQ_SKIP, "ecg"),
        Annotation(10.0, 2.0, BAD_ACQ_SKIP, "emg"),
        Annotation(14.25, 2.25, BAD_ACQ_SKIP, "rr"),
        Annotation(20.0, 3.0, BAD_HANDS_ON, None),
        Annotation(25.0, 0.5 - 1.0 / RATE_HZ + half_sample, BAD_CONTACT, "emg"),
    ]
    assert data.hands_on == [(20.0, 23.0)]

    e = data.emg
    t = np.concatenate((np.arange(0, 10 * RATE_HZ, STEP) / RATE_HZ, 12.0 + np.arange(0, 18 * RATE_HZ, STEP) / RATE_HZ))
    np.testing.assert_array_equal(e.t_s, t)
    contact = _inside(t, (5.0, 6.0 - half_sample), (25.0, 25.5 - half_sample))
    hands_on = _inside(t, (20.0, 23.0))
    np.testing.assert_array_equal(e.contact_lost, contact)
    np.testing.assert_array_equal(e.hands_on, hands_on)
    np.testing.assert_array_equal(e.rejected, contact | hands_on)  # the ECG gap (7-8 s) leaves EMG alone
    np.testing.assert_array_equal(e.valid, ~e.flagged & ~(contact | hands_on)[:, None])
    np.testing.assert_array_equal(e.quality_bad, e.flagged | contact[:, None])
    assert e.valid[_inside(t, (7.0, 8.0))].all() and e.valid[_inside(t, (15.0, 18.0))].all()

    b = data.beats
    beats = _beat_times()
    np.testing.assert_array_equal(b.t_s, beats)
    # The live corrector's record stays available (it removed the beat at 3 s); the analysis uses the offline
    # correction, which on this perfectly regular series changes nothing.
    removed = beats == REMOVED_BEAT_S
    assert np.isnan(b.live_rr_ms[removed]).all() and (b.live_flags[removed] == 1).all()
    assert not b.flags.any() and (b.rr_ms == RR_MS).all()
    np.testing.assert_array_equal(b.valid, ~_inside(beats, (20.0, 23.0)))
    assert b.valid[beats == 14.25].all(), "the beat at an RR gap's onset is real"
    t_in, rr, d = b.in_span(data.phase("baseline"))
    np.testing.assert_array_equal(t_in, beats[b.valid])
    after_break = np.isin(t_in, [0.75, 17.25, 23.25])  # first beat, after the gap, after hands-on
    np.testing.assert_array_equal(np.isnan(d), after_break)
    assert (d[~after_break] == 0.0).all()


def test_summary_and_comparison_agree_on_what_was_clean(make_session):
    data = load_session(make_session(Script(electrode_off=(0.0, 100.0)), seed=4))
    rows = {r["phase"]: r for r in summarize(data)}
    c = compare(data, n_boot=100, with_neurokit=False)
    base, post = rows["baseline"], rows["post"]
    left = c.metric("emg.left_trapezius.rms_uv")
    assert np.isnan(left.a) and "too little clean data in baseline" in left.sentence
    assert "left_trapezius" not in base["emg_rms_uv"]
    assert base["note"].startswith("too little clean data in baseline (left ")
    assert base["emg_clean_s"]["left_trapezius"] < 30.0
    right = c.metric("emg.right_trapezius.rms_uv")
    assert base["emg_rms_uv"]["right_trapezius"] == pytest.approx(right.a, rel=1e-12)
    assert post["emg_rms_uv"]["right_trapezius"] == pytest.approx(right.b, rel=1e-12)
    assert post["note"] is None and set(post["emg_rms_uv"]) == {"left_trapezius", "right_trapezius"}
    assert c.overall["label"] == Verdict.NOT_COMPARABLE
    assert "too little clean data in baseline" in c.metric(PRIMARY).sentence
    line = next(ln for ln in format_summary(list(rows.values())).splitlines() if ln.strip().startswith("baseline"))
    # The electrode-off stretch reads "no signal" with its length, never a tension of 0.
    assert base["emg_no_signal_s"]["left_trapezius"] == pytest.approx(100.0, abs=1.0)
    assert base["emg_no_signal_s"]["right_trapezius"] < 1.0
    assert "left no signal 100 s, right " in line and "[too little clean data in baseline (left " in line


def test_hands_on_beats_are_left_out_of_the_summary(make_session):
    data = load_session(make_session(seed=6))
    treatment = next(r for r in summarize(data) if r["phase"] == "treatment")
    _, rr, _ = data.beats.in_span(data.phase("treatment"))
    assert treatment["beats"] == rr.size
    assert treatment["beats"] < 0.5 * 60.0 * 72.0 / 60.0  # 70 % of the phase is hands-on
    assert treatment["note"].startswith("too little clean data in treatment")


def test_session_outcome_loads_the_file_once(make_session, monkeypatch):
    path = make_session(Script(emg_drop=0.3), seed=3)
    calls = []
    real = summary_module.load_session

    def counting(p, *args, **kw):
        calls.append(p)
        return real(p, *args, **kw)

    monkeypatch.setattr(summary_module, "load_session", counting)
    outcome = session_outcome(path)
    assert calls == [path]
    monkeypatch.undo()
    data = load_session(path)
    assert outcome.summary == summarize(data)
    assert outcome.verdict == Verdict(compare(data).overall["label"]) == Verdict.RELEASED
    assert outcome.text().startswith(format_summary(outcome.summary) + "\nverdict: Released")


def test_beats_are_corrected_offline_per_stretch_as_neurokit_does(tmp_path):
    # Two stretches of real-looking RR split by a recorded gap, each with a beat the strap missed; the recording's
    # live correction is left empty. Reference: neurokit2's Lipponen-Tarvainen correction of each stretch.
    rng = np.random.default_rng(2)
    k = np.arange(400)
    clean = np.round(850 + 40 * np.sin(2 * np.pi * k / 4.5) + 20 * np.sin(2 * np.pi * k / 25) + rng.normal(0, 10, k.size))
    raw = []
    for s, miss in zip((clean[:200].copy(), clean[200:].copy()), (100, 50)):
        s[miss + 1] += s[miss]
        raw.append(np.delete(s, miss))
    t_first = np.cumsum(raw[0]) / 1000.0
    t_second = t_first[-1] + 20.0 + np.cumsum(raw[1]) / 1000.0
    t = np.concatenate((t_first, t_second))
    with SessionWriter(tmp_path / "missed.bfsession", {"client_id": "T001", "utc_anchor": 1.7e9}) as w:
        w.add_gap(Gap("rr", "h10", float(t_first[-1]), float(t_second[0] - raw[1][0] / 1000.0), "disconnect"))
        w.add_beats("h10", t, np.concatenate(raw))
        w.add_event(EventKind.PHASE, 0.0, "baseline", float(t[-1]) + 1.0, {"kind": "rest"})
    b = load_session(tmp_path / "missed.bfsession").beats
    assert np.isnan(b.live_rr_ms[b.recorded]).all() and not b.live_flags.any()
    assert (~b.recorded).sum() == 2  # one beat inserted in each stretch
    second = b.t_s > t_first[-1] + 1.0
    for part, r in ((~second, raw[0]), (second, raw[1])):
        peaks = np.concatenate(([0], np.cumsum(r))).astype(int)
        _, fixed = nk.signal_fixpeaks(peaks, sampling_rate=1000, method="kubios", iterative=True)
        # neurokit2 truncates moved and inserted beats to whole samples (1 ms here): 1 ms.
        np.testing.assert_allclose(b.rr_ms[part], np.diff(fixed), atol=1.0)


@pytest.mark.parametrize("rate_hz", [20.0, 100.0])
def test_windows_hold_every_sample_of_the_phase(rate_hz):
    """Sample times are float multiples of 1/rate (0.15 * 20 = 2.9999999999999996): each sample lands in its own
    place of its window, none is lost to a neighbour's (flooring the float times left 20-30 % of them out)."""
    from biofeedback.analysis.data import Annotations, EmgTrack, PhaseSpan

    t = np.arange(int(60 * rate_hz)) / rate_hz
    values = np.arange(t.size, dtype=float)
    track = EmgTrack(("left_trapezius",), rate_hz, t, values[:, None], np.zeros((t.size, 1), dtype=bool), Annotations())
    w = track.windows(PhaseSpan("baseline", "rest", 10.0, 40.0), values, np.ones(t.size, dtype=bool))
    assert w.n == 6 and w.clean_s == pytest.approx(30.0)
    np.testing.assert_array_equal(w.values.ravel(), values[(t >= 10.0) & (t < 40.0)])
