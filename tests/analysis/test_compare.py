"""Before/after verdicts on synthetic sessions: power with a scripted release, false positives without one."""

from __future__ import annotations

import re
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import Script, write_session

from biofeedback.analysis import PRIMARY, AnalysisError, block_length, compare, load_session, moving_block_indices

NULL_SEEDS = 60
"""Sessions without any scripted change in the false-positive test. Measured with the SDC on Student's t: overall
2 of 60 (3.3 %) here, per metric 0-3.3 % (with the SDC on 1.96: 4 of 60; over 400 other seeds, 100-499, 13 of 400
(3.3 %) overall, per metric 0.8-5.5 %), at a nominal 5 %."""
SHORT = [("baseline", "rest", 90.0), ("treatment", "treatment", 30.0), ("post", "rest", 90.0)]


def _null_verdicts(args: tuple[str, int]) -> dict[str, str]:
    folder, seed = args
    path = write_session(Path(folder) / f"null{seed}.bfsession", Script(phases=SHORT, fs_hz=400.0), 1000 + seed)
    c = compare(load_session(path), n_boot=300, seed=seed, with_neurokit=False)
    out = {m.key: m.verdict for m in c.metrics}
    out["overall"] = c.overall["label"]
    return out


def test_release_is_found_and_ci_holds_the_truth(make_session):
    c = compare(load_session(make_session(Script(emg_drop=0.30, rsa_gain=1.6), seed=3)), n_boot=500)
    assert c.overall["label"] == "released"
    assert c.overall["text"].startswith("Released: Trapezius tension index (both sides) fell")
    for key in (PRIMARY, "emg.left_trapezius.rms_uv", "emg.right_trapezius.rms_uv"):
        m = c.metric(key)
        assert m.verdict == "fell"
        assert m.change_ci[0] <= -30.0 <= m.change_ci[1], (key, m.change_ci)
        # A change judged larger than the measurement noise reads so: the SDC in % of the same direction.
        assert 0 < m.sdc <= abs(m.change), (key, m.sdc, m.change)
    # True RMSSD change: the same generator over 20-minute phases.
    long = [("baseline", "rest", 1200.0), ("treatment", "treatment", 60.0), ("post", "rest", 1200.0)]
    truth = compare(load_session(make_session(Script(phases=long, emg=False, rsa_gain=1.6), seed=99, name="long.bfsession")),
                    n_boot=50, with_neurokit=False).metric("heart.rmssd_ms").change
    r = c.metric("heart.rmssd_ms")
    assert r.verdict == "rose"
    assert r.change_ci[0] <= truth <= r.change_ci[1], (truth, r.change_ci)
    assert "RMSSD rose" in c.overall["text"]


def test_no_change_says_no_clear_change(make_session):
    c = compare(load_session(make_session(Script(), seed=5)), n_boot=500)
    assert c.overall["label"] == "no clear change"
    assert c.metric(PRIMARY).verdict == "no clear change"
    assert "no clear change" in c.metric(PRIMARY).sentence


@pytest.mark.serial  # a pool of processes of its own
def test_false_positive_rate_near_nominal(tmp_path):
    with ProcessPoolExecutor(2) as pool:
        results = list(pool.map(_null_verdicts, [(str(tmp_path), s) for s in range(NULL_SEEDS)]))
    overall_fp = sum(r["overall"] != "no clear change" for r in results) / NULL_SEEDS
    per_metric = {k: sum(r[k] in ("fell", "rose") for r in results) / NULL_SEEDS for k in results[0] if k != "overall"}
    print(f"false positives over {NULL_SEEDS} null sessions: overall {overall_fp:.3f}; "
          + ", ".join(f"{k} {v:.3f}" for k, v in per_metric.items()))
    assert overall_fp <= 0.10
    assert max(per_metric.values()) <= 0.12


def test_hands_on_and_electrode_off_are_excluded_and_counted(make_session):
    s = Script(phases=[("baseline", "rest", 120.0), ("treatment", "treatment", 60.0), ("post", "rest", 120.0)],
               electrode_off=(20.0, 50.0))
    c = compare(load_session(make_session(s, seed=2)), n_boot=200, with_neurokit=False)
    ex = c.exclusions["baseline"]
    assert 29.0 <= ex["emg_no_signal_s"]["left_trapezius"] <= 32.0
    assert ex["emg_no_signal_s"]["right_trapezius"] < 2.0
    # Zeros while the electrode was off must not pull the baseline level down.
    assert c.metric("emg.left_trapezius.rms_uv").verdict == "no clear change"
    data = load_session(make_session(s, seed=2, name="again.bfsession"))
    treatment = data.phase("treatment")
    ex_t = compare(data, "treatment", "post", n_boot=100, with_neurokit=False).exclusions["treatment"]
    assert ex_t["emg_hands_on_s"] == pytest.approx(0.7 * treatment.duration_s, abs=0.5)
    assert ex_t["beats_hands_on"] > 0


def test_a_side_with_no_signal_says_so_not_zero_tension(make_session):
    """The left electrode off for most of the baseline: no level from zeros, and the sentences say 'no signal'."""
    s = Script(phases=SHORT, electrode_off=(5.0, 80.0))
    c = compare(load_session(make_session(s, seed=4)), n_boot=100, with_neurokit=False)
    left = c.metric("emg.left_trapezius.rms_uv")
    assert left.verdict == "not available" and np.isnan(left.a)
    # 75 s off; the flat line is seen once the 250 ms RMS window holds it (and the step's ringing has passed).
    assert re.search(r"no signal \(electrode off or bad contact\): left 7[45] s of baseline", left.sentence), left.sentence
    assert "no signal" in c.metric(PRIMARY).sentence and "no signal" in c.overall["text"]
    assert c.metric("emg.right_trapezius.rms_uv").verdict != "not available"
    assert "no signal" not in c.metric("emg.right_trapezius.rms_uv").sentence


@pytest.mark.parametrize("calibrated", [True, False])
def test_symmetry_and_apdf_on_each_sides_normalised_amplitude(make_session, calibrated):
    """Identical muscles, the left electrode picking up twice the µV (gain, placement): in raw µV that reads +67 %
    asymmetry; on %RVC (per-side calibration) or, without one, on % of each side's own baseline it reads about 0,
    and the APDF levels are in that unit (RVC 80 and 40 µV: 40 µV RMS is 50 %RVC on both sides)."""
    cal = {"rest_rms_uv": [8.0, 4.0], "rvc_rms_uv": [80.0, 40.0], "mvc_rms_uv": None} if calibrated else None
    s = Script(phases=SHORT, emg_uv=(40.0, 20.0), calibration=cal)
    c = compare(load_session(make_session(s, seed=6)), n_boot=200, with_neurokit=False)
    sym = c.metric("emg.both.symmetry_pct")
    unit = "%RVC" if calibrated else "% own baseline"
    assert sym.label == f"Left/right symmetry index (on {unit}; + = left higher)"
    assert abs(sym.a) < 5.0 and abs(sym.b) < 5.0, (sym.a, sym.b)
    for side in ("left", "right"):
        m = c.metric(f"emg.{side}_trapezius.apdf50")
        assert m.unit == unit
        # The median of the 250 ms RMS sits near the scripted level (its fluctuation is log-normal about it).
        assert m.a == pytest.approx(50.0 if calibrated else 100.0, rel=0.15)


def test_emg_gaps_are_counted_at_their_scale(tmp_path):
    """Issue 14: 0.2-0.4 s gaps in the baseline (band-limited EMG at 8 µV RMS, down to a 1 µV floor in each gap), none
    after: the comparison counts them from the short-window amplitude at their true rate per minute (the 250 ms RMS
    saw none of them), and the post phase has none."""
    from scipy import signal

    from biofeedback.store import SessionWriter
    from biofeedback.stream import NS_PER_S, Block

    fs, rng = 1000.0, np.random.default_rng(12)
    phases = [("baseline", "rest", 70.0), ("treatment", "treatment", 5.0), ("post", "rest", 70.0)]
    n = int(145.0 * fs)
    level = np.full(n, 8.0)
    t, gaps = 1.0, 0
    while t < 69.0:
        gap = rng.uniform(0.2, 0.4)
        if t + gap < 69.0:
            level[int(t * fs):int((t + gap) * fs)] = 0.0
            gaps += 1
        t += gap + rng.uniform(1.0, 2.5)
    sos = signal.butter(4, (20.0, 450.0), "bandpass", fs=fs, output="sos")
    noise = signal.sosfilt(sos, rng.standard_normal((n + 1000, 4)), axis=0)[1000:]
    noise /= noise.std(axis=0)
    x = noise[:, :2] * level[:, None] + noise[:, 2:] * 1.0
    path = tmp_path / "gaps.bfsession"
    writer = SessionWriter(path, {"client_id": "T001", "utc_anchor": 1.7e9, "protocol": "synthetic", "calibration": None,
                                  "tension_index_unit": "uV"})
    for i0 in range(0, n, int(fs)):
        writer.add_block(Block("emg", "open-emg", int(i0 / fs * NS_PER_S), x[i0:i0 + int(fs)], rate_hz=fs, first_index=i0,
                               channels=("left_trapezius", "right_trapezius")), i0 / fs)
    t0 = 0.0
    for name, kind, dur in phases:
        writer.add_event("phase", t0, name, dur, {"kind": kind, "planned_s": dur})
        t0 += dur
    writer.close()
    c = compare(load_session(path), n_boot=100, with_neurokit=False)
    for side in ("left", "right"):
        m = c.metric(f"emg.{side}_trapezius.emg_gaps_per_min")
        assert m.a == pytest.approx(gaps / (70.0 / 60.0), rel=0.1), (m.a, gaps)
        assert m.b < 0.5
        assert "for >= 0.2 s" in m.label


def test_moving_block_indices_are_runs():
    rng = np.random.default_rng(0)
    idx = moving_block_indices(20, 4, 5, rng)
    assert idx.shape == (5, 20)
    assert np.all(np.diff(idx.reshape(5, 5, 4), axis=2) == 1)
    assert block_length(np.arange(100.0)) >= 25  # a trend: correlated over many lags
    assert block_length(rng.standard_normal(125)) == 5  # white noise: n^(1/3)


def test_unknown_phase_is_a_clear_error(make_session):
    data = load_session(make_session(seed=1))
    with pytest.raises(AnalysisError, match="its phases are: baseline, treatment, post"):
        compare(data, "baseline", "after")


def test_apdf_of_bootstrap_resamples_equals_numpy_nanquantile_of_each_resample():
    """The APDF replicates come from unit counts over values sorted once (issue 19: no sort per resample); each must
    equal ``np.nanquantile`` of the resample built the plain way, NaN (excluded stretches) and all."""
    from biofeedback.analysis.compare import _apdf
    from biofeedback.analysis.stats import moving_block_indices

    rng = np.random.default_rng(11)
    for trial in range(12):
        n, width = int(rng.integers(1, 50)), int(rng.integers(1, 25))
        x = rng.gamma(2.0, 3.0, (n, width))
        x[rng.random((n, width)) < 0.2] = np.nan
        if trial == 0:
            x[:] = np.nan  # nothing clean: NaN, not an error
        if trial == 1:
            x = np.round(rng.gamma(2.0, 3.0, (300, 40)))  # more values than QUANTILE_BLOCKS runs, and many ties
            x[rng.random(x.shape) < 0.1] = np.nan
            n = x.shape[0]
        idx = moving_block_indices(n, int(rng.integers(1, 6)), 300, rng)
        for q in (0.1, 0.5, 0.9):
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                expected = np.array([np.nanquantile(x[i], q) for i in idx])
            got = _apdf(q).resampled((x,), idx)
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, equal_nan=True)
            np.testing.assert_allclose(_apdf(q)(x[idx]), expected, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_means_and_symmetry_of_bootstrap_resamples_equal_numpy_on_each_resample():
    """Resampled means come from per-window sums and counts (issue 19): each equals ``np.nanmean`` of the resample
    built the plain way, and the symmetry index the formula of ``dsp.symmetry_index`` on those means."""
    from biofeedback.analysis.compare import _nanmean, _symmetry
    from biofeedback.analysis.stats import moving_block_indices
    from biofeedback.dsp import symmetry_index

    rng = np.random.default_rng(12)
    for n, width in ((1, 1), (7, 3), (120, 50)):
        x = rng.gamma(2.0, 3.0, (n, width, 2))
        x[rng.random(x.shape) < 0.15] = np.nan
        x[0, :, 1] = np.nan  # a window with nothing clean on one side
        idx = moving_block_indices(n, 3, 400, rng)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            left = np.array([np.nanmean(x[i, :, 0]) for i in idx])
            right = np.array([np.nanmean(x[i, :, 1]) for i in idx])
            expected = np.array([symmetry_index(a, b) for a, b in zip(left, right)])
        np.testing.assert_allclose(_nanmean.resampled((x[..., 0],), idx), left, rtol=1e-10, equal_nan=True)
        np.testing.assert_allclose(_symmetry.resampled((x,), idx), expected, rtol=1e-9, atol=1e-9, equal_nan=True)
