"""Tests of biofeedback.dsp.hrv: hand-computed values, neurokit2 cross-checks, streaming invariance."""

from __future__ import annotations

import warnings
from dataclasses import astuple
from pathlib import Path

import neurokit2 as nk
import numpy as np
import pandas as pd
import pytest
import wfdb
from scipy import interpolate

from biofeedback.dsp.hrv import (
    FREQUENCY_DEFAULTS,
    FrequencySettings,
    LT_MEDIAN_BEATS,
    LT_THRESHOLD_BEATS,
    NORMS,
    LiveHrv,
    RrFlag,
    baevsky_stress_index,
    correct_rr,
    frequency_hrv,
    hrv_windows,
    kubios_stress_index,
    lf_hf_ratio,
    mean_hr_bpm,
    pnn50,
    pns_index,
    poincare_sd1_sd2,
    rmssd,
    sdnn,
    sns_index,
)
from biofeedback.dsp.hrv import _rolling_quantiles

MITDB_100 = Path(__file__).parent.parent / "data" / "mitdb-100" / "100"
BEAT_SYMBOLS = set("NLRBAaJSVrFejnE/fQ?")


def annotated_peaks() -> np.ndarray:
    """Sample indices (360 Hz) of the expert beat annotations of MIT-BIH record 100 (rhythm marks left out)."""
    ann = wfdb.rdann(str(MITDB_100), "atr")
    return np.array([s for s, sym in zip(ann.sample, ann.symbol) if sym in BEAT_SYMBOLS])


def breathing_rr(n: int, seed: int = 0) -> np.ndarray:
    """RR series with respiratory (HF) and Mayer-wave (LF) modulation and a little noise, whole ms."""
    rng = np.random.default_rng(seed)
    k = np.arange(n)
    return np.round(900 + 40 * np.sin(2 * np.pi * k / 4.5) + 20 * np.sin(2 * np.pi * k / 25) + rng.normal(0, 10, n))


def with_artefacts(rr: np.ndarray) -> np.ndarray:
    """Inject a missed beat (at 100), an extra beat (at 200), an ectopic pair (300-301), a long interval (400)."""
    bad = list(rr)
    bad[100] += bad.pop(101)
    first = round(0.3 * bad[200])
    bad[200:201] = [first, bad[200] - first]
    bad[300] -= 250
    bad[301] += 250
    bad[400] += 400
    return np.array(bad, dtype=float)


def test_time_domain_metrics_by_hand():
    rr = np.array([800.0, 810.0, 790.0, 820.0, 800.0])
    # Successive differences 10, -20, 30, -20: mean square (100 + 400 + 900 + 400) / 4 = 450.
    assert rmssd(rr) == pytest.approx(np.sqrt(450.0))
    # Mean 804; squared deviations 16 + 36 + 196 + 256 + 16 = 520; sample variance 520 / 4 = 130.
    assert sdnn(rr) == pytest.approx(np.sqrt(130.0))
    # Differences 60, -70, 10: two exceed 50 ms, over four intervals (Task Force definition).
    assert pnn50(np.array([800.0, 860.0, 790.0, 800.0])) == pytest.approx(50.0)
    assert mean_hr_bpm(np.array([1000.0, 500.0])) == pytest.approx((60 + 120) / 2)
    # Alternating series a, b, a, b: every successive difference is ±(b - a).
    sd1, sd2 = poincare_sd1_sd2(np.array([800.0, 900.0] * 10))
    x1 = np.array([-100.0, 100.0] * 9 + [-100.0]) / np.sqrt(2)
    assert sd1 == pytest.approx(np.std(x1, ddof=1))
    assert sd2 == pytest.approx(0.0, abs=1e-9)


def test_baevsky_stress_index_by_hand():
    rr = np.array([800.0, 810.0, 820.0, 830.0, 900.0, 760.0])
    # 50 ms bins: 750-800 holds 760; 800-850 holds four; 900-950 holds 900. Mode bin 800-850 -> Mo = 0.825 s,
    # AMo = 4/6 = 66.7 %, MxDMn = 900 - 760 = 140 ms = 0.140 s.
    expected = (100 * 4 / 6) / (2 * 0.825 * 0.140)
    assert baevsky_stress_index(rr) == pytest.approx(expected)
    assert kubios_stress_index(rr) == pytest.approx(np.sqrt(expected))


def test_pns_and_sns_are_zero_at_the_norms_and_move_the_right_way():
    n = {k: v.mean for k, v in NORMS.items()}
    assert pns_index(n["mean_rr_ms"], n["rmssd_ms"], n["sd1_pct"]) == pytest.approx(0.0)
    assert sns_index(n["mean_hr_bpm"], n["kubios_stress_index"], n["sd2_pct"]) == pytest.approx(0.0)
    one_sd_slower = n["mean_rr_ms"] + NORMS["mean_rr_ms"].sd
    assert pns_index(one_sd_slower, n["rmssd_ms"], n["sd1_pct"]) == pytest.approx(1 / 3)
    assert sns_index(n["mean_hr_bpm"], n["kubios_stress_index"], n["sd2_pct"] - NORMS["sd2_pct"].sd) == pytest.approx(1 / 3)


@pytest.mark.parametrize("n", [3, 40, 91, 500])
def test_compiled_rolling_quantiles_equal_pandas(n):
    # The sliding sorted window behind the Lipponen-Tarvainen thresholds against pandas' centred rolling
    # quantile, on whole-ms values (many ties, as RR intervals are) and with windows longer than the series.
    x = np.round(np.random.default_rng(n).normal(900, 40, n))
    for width, qs in ((LT_THRESHOLD_BEATS, (0.25, 0.75)), (LT_MEDIAN_BEATS, (0.5,))):
        got = _rolling_quantiles(x, width, np.array(qs))
        rolling = pd.Series(x).rolling(width, center=True, min_periods=1)
        expected = np.array([rolling.quantile(q).to_numpy() for q in qs])
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


def test_correct_rr_finds_and_repairs_each_artefact_kind():
    rr = breathing_rr(600)
    bad = with_artefacts(rr)
    fix = correct_rr(bad)
    np.testing.assert_array_equal(fix.raw_ms, bad)
    assert fix.flags[100] & RrFlag.MISSED
    assert fix.flags[200] & RrFlag.EXTRA and np.isnan(fix.corrected_ms[200])
    assert fix.flags[300] & (RrFlag.ECTOPIC | RrFlag.LONG_SHORT) and fix.flags[301] & (RrFlag.ECTOPIC | RrFlag.LONG_SHORT)
    assert fix.flags[400] & RrFlag.LONG_SHORT
    # Far from the artefacts nothing is touched.
    assert not np.any(fix.flags[10:90]) and np.array_equal(fix.corrected_ms[10:90], bad[10:90])
    # The missed beat is split in two halves: both are in nn_ms, closed by raw beat 100.
    halves = fix.nn_ms[fix.nn_source == 100]
    np.testing.assert_allclose(halves, [bad[100] / 2] * 2)
    # Total time is kept, and the corrected series is close to the clean one.
    assert fix.nn_ms.sum() == pytest.approx(bad.sum())
    assert fix.nn_ms.size == rr.size
    assert rmssd(fix.nn_ms) == pytest.approx(rmssd(rr), rel=0.1)
    assert rmssd(bad) > 1.5 * rmssd(rr)


def test_correct_rr_agrees_with_neurokit_kubios_on_synthetic_artefacts():
    bad = with_artefacts(breathing_rr(600, seed=1))
    peaks = np.concatenate(([0], np.cumsum(bad))).astype(int)
    _, clean = nk.signal_fixpeaks(peaks, sampling_rate=1000, method="kubios", iterative=True)
    fix = correct_rr(bad)
    # neurokit2 truncates moved beats to whole samples (here 1 ms) and we do not, so each interval may
    # differ by up to 1 ms; anything larger would be a different decision.
    assert fix.nn_ms.size == clean.size - 1
    np.testing.assert_allclose(fix.nn_ms, np.diff(clean), atol=1.0)


def test_correct_rr_agrees_with_neurokit_on_mitbih_100():
    peaks = annotated_peaks()
    rr = np.diff(peaks) / 360 * 1000
    one_sample_ms = 1000 / 360
    # One pass: identical decisions; intervals differ by neurokit2's truncation of moved beats to a sample.
    _, clean1 = nk.signal_fixpeaks(peaks, sampling_rate=360, method="kubios", iterative=False)
    fix1 = correct_rr(rr, iterative=False)
    np.testing.assert_allclose(fix1.nn_ms, np.diff(clean1) * one_sample_ms, atol=one_sample_ms)
    # Iterated: on integer sample positions some normalised dRR land exactly on the decision boundary
    # (|dRR|/Th = 1.0) and rounding decides; we allow those few beats (< 0.3 %) to differ.
    _, clean = nk.signal_fixpeaks(peaks, sampling_rate=360, method="kubios", iterative=True)
    fix = correct_rr(rr)
    assert fix.nn_ms.size == clean.size - 1
    agree = np.abs(fix.nn_ms - np.diff(clean) * one_sample_ms) <= one_sample_ms
    assert agree.mean() > 0.997


def test_time_domain_metrics_match_neurokit_on_mitbih_100():
    peaks = annotated_peaks()
    rr = np.diff(peaks) / 360 * 1000
    ref = nk.hrv_time(peaks, sampling_rate=360)
    # Same definitions on the same intervals: equal to floating-point precision.
    assert rmssd(rr) == pytest.approx(ref["HRV_RMSSD"].iloc[0], rel=1e-9)
    assert sdnn(rr) == pytest.approx(ref["HRV_SDNN"].iloc[0], rel=1e-9)
    assert pnn50(rr) == pytest.approx(ref["HRV_pNN50"].iloc[0], rel=1e-9)
    nl = nk.hrv_nonlinear(peaks[:400], sampling_rate=360)
    sd1, sd2 = poincare_sd1_sd2(np.diff(peaks[:400]) / 360 * 1000)
    assert sd1 == pytest.approx(nl["HRV_SD1"].iloc[0], rel=1e-9)
    assert sd2 == pytest.approx(nl["HRV_SD2"].iloc[0], rel=1e-9)


def test_lf_hf_closed_form_and_against_neurokit():
    # RR modulated at 0.1 Hz (LF) and 0.25 Hz (HF) in time: band powers A²/2 each, LF/HF = (20/10)² = 4.
    t = 0.0
    rr = []
    while t < 600.0:
        r = 900 + 20 * np.sin(2 * np.pi * 0.1 * t) + 10 * np.sin(2 * np.pi * 0.25 * t)
        rr.append(r)
        t += r / 1000
    rr = np.array(rr)
    ours = lf_hf_ratio(rr)
    # Sampling the modulation at the beats and re-interpolating loses a few % of the 0.25 Hz power.
    assert ours == pytest.approx(4.0, rel=0.08)
    peaks = np.round(np.concatenate(([0], np.cumsum(rr)))).astype(int)
    theirs = nk.hrv_frequency(peaks, sampling_rate=1000)["HRV_LFHF"].iloc[0]
    # neurokit2's own defaults (100 Hz, Welch segments of half the record, no detrending) against our 4 Hz and
    # 64 s segments: for pure tones the two agree within 10 %.
    assert ours == pytest.approx(theirs, rel=0.10)


def _independent_band_powers(rr_ms: np.ndarray) -> tuple[float, float]:
    """LF and HF power (ms²) written out with the default settings: cubic spline at 4 Hz from the first to the
    last beat, least-squares line removed, Welch with 256-sample periodic Hann segments overlapping by 128, each
    zero-padded to 1200 points (300 points/Hz), one-sided density, trapezoid over the closed bands."""
    fs, n, step, nfft = 4.0, 256, 128, 1200
    t = np.cumsum(rr_ms) / 1000.0
    grid = t[0] + np.arange(int((t[-1] - t[0]) * fs) + 1) / fs
    x = interpolate.CubicSpline(t, rr_ms)(grid)
    x = x - np.polyval(np.polyfit(grid, x, 1), grid)
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    spectra = [np.abs(np.fft.rfft(x[i:i + n] * w, nfft)) ** 2 for i in range(0, x.size - n + 1, step)]
    psd = np.mean(spectra, axis=0) / (fs * np.sum(w * w))
    psd[1:-1] *= 2.0  # one-sided: every bin but DC and Nyquist holds its negative-frequency twin
    f = np.arange(psd.size) * fs / nfft

    def band(lo: float, hi: float) -> float:
        sel = (f >= lo - 1e-12) & (f <= hi + 1e-12)
        return float(np.sum((psd[sel][1:] + psd[sel][:-1]) / 2 * np.diff(f[sel])))

    return band(0.04, 0.15), band(0.15, 0.4)


def test_lf_hf_in_ms2_against_independent_welch_and_neurokit_on_mitbih_100():
    peaks = annotated_peaks()
    for start in range(0, 1800, 300):  # the six 5-min windows of the record
        p = peaks[(peaks >= start * 360) & (peaks < (start + 300) * 360)]
        rr = np.diff(p) / 360 * 1000
        ours = frequency_hrv(rr)
        assert ours.settings == FREQUENCY_DEFAULTS and ours.segments == 8  # 300 s at 4 Hz, 64 s segments, 50 %
        # The same settings written out (numpy FFT, no scipy.signal): equal to rounding.
        lf, hf = _independent_band_powers(rr)
        assert ours.lf_ms2 == pytest.approx(lf, rel=1e-9)
        assert ours.hf_ms2 == pytest.approx(hf, rel=1e-9)
        assert lf_hf_ratio(rr) == pytest.approx(lf / hf, rel=1e-9)
        assert ours.lf_nu == pytest.approx(100 * lf / (lf + hf), rel=1e-9)
        # neurokit2 under matched settings. nk.hrv_frequency cannot take a segment length (its keyword arguments
        # go both to the interpolator and to the PSD), so we call the two functions it is made of: the RR
        # series cubic-interpolated at 4 Hz and linearly detrended, then Welch with 64 s Hann segments, in ms².
        # neurokit2 zero-pads each segment to twice its length (2 · 256 samples = 128 points/Hz at 4 Hz) and
        # integrates by trapezoid over [lo, hi); with that grid our band powers are the same numbers.
        x, _, _ = nk.intervals_process(rr, intervals_time=np.cumsum(rr) / 1000, interpolate=True, interpolation_rate=4,
                                       detrend="polynomial", method="cubic")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            power = nk.signal_power(x, frequency_band=[(0.04, 0.15), (0.15, 0.4)], sampling_rate=4, method="welch",
                                    window=64, normalize=False)
        nk_lf, nk_hf = power.iloc[0, 0], power.iloc[0, 1]
        matched = frequency_hrv(rr, FrequencySettings(points_per_hz=128.0))
        # Tolerance 1e-5: neurokit2's grid may hold one more sample, extrapolated past the last beat; it enters
        # the least-squares line removed from the series and moves band powers by a few parts per million.
        assert matched.lf_ms2 == pytest.approx(nk_lf, rel=1e-5)
        assert matched.hf_ms2 == pytest.approx(nk_hf, rel=1e-5)
        assert matched.lf_hf == pytest.approx(nk_lf / nk_hf, rel=1e-5)


def test_frequency_settings_are_recorded_and_described():
    rr = breathing_rr(400)
    custom = FrequencySettings(segment_s=128.0, overlap=0.25, detrend="constant")
    result = frequency_hrv(rr, custom)
    assert result.settings is custom
    assert result.lf_nu + result.hf_nu == pytest.approx(100.0)
    assert "Welch with 64 s (256-sample) Hann segments, 50 % overlap" in FREQUENCY_DEFAULTS.describe()
    assert "LF 0.04-0.15, HF 0.15-0.4 Hz" in FREQUENCY_DEFAULTS.describe()


def test_live_hrv_does_not_depend_on_how_beats_are_grouped():
    rr = with_artefacts(breathing_rr(420, seed=2))
    times = np.cumsum(rr) / 1000
    whole = LiveHrv()
    expected = whole.add_beats(times, rr) + whole.flush()
    rng = np.random.default_rng(3)
    cuts = np.unique(np.concatenate(([0, rr.size], rng.integers(0, rr.size, 40))))
    live = LiveHrv()
    got = [m for a, b in zip(cuts[:-1], cuts[1:]) for m in live.add_beats(times[a:b], rr[a:b])] + live.flush()
    one = LiveHrv()
    single = [m for t, r in zip(times, rr) for m in one.add_beats(np.array([t]), np.array([r]))] + one.flush()
    assert len(expected) == rr.size

    def table(ms: list) -> np.ndarray:
        return np.array([astuple(m) for m in ms])

    np.testing.assert_array_equal(table(got), table(expected))  # NaN (before the window fills) equals NaN
    np.testing.assert_array_equal(table(single), table(expected))


def test_live_hrv_window_metrics_equal_batch_metrics_on_clean_beats():
    rr = breathing_rr(200, seed=4)
    times = np.cumsum(rr) / 1000
    live = LiveHrv(window_s=60.0)
    metrics = live.add_beats(times, rr) + live.flush()
    assert not any(m.flag for m in metrics)
    for m in metrics[100::25]:
        inside = rr[(times > m.time_s - 60.0) & (times <= m.time_s)]
        assert m.rmssd_ms == pytest.approx(rmssd(inside), rel=1e-12)
        assert m.ln_rmssd == pytest.approx(np.log(rmssd(inside)), rel=1e-12)
        assert m.sdnn_ms == pytest.approx(sdnn(inside), rel=1e-12)
        assert m.mean_hr_bpm == pytest.approx(mean_hr_bpm(inside), rel=1e-12)
        assert m.stress_index == pytest.approx(kubios_stress_index(inside), rel=1e-12)
        assert m.hr_bpm == pytest.approx(60000 / m.rr_ms)


def test_live_hrv_flags_artefacts_with_raw_and_corrected_side_by_side():
    rr = with_artefacts(breathing_rr(500, seed=5))
    live = LiveHrv()
    metrics = live.add_beats(np.cumsum(rr) / 1000, rr) + live.flush()
    assert [m.rr_raw_ms for m in metrics] == list(rr)
    assert metrics[100].flag & RrFlag.MISSED
    assert metrics[200].flag & RrFlag.EXTRA and np.isnan(metrics[200].rr_ms)
    # A long interval's end beat moves to the midpoint of its neighbours: both intervals become their mean.
    assert metrics[400].flag & RrFlag.LONG_SHORT
    assert metrics[400].rr_ms == pytest.approx((rr[400] + rr[401]) / 2)
    assert metrics[401].rr_ms == pytest.approx((rr[400] + rr[401]) / 2)


def test_hrv_windows_runs_neurokit_over_five_minute_windows():
    peaks = annotated_peaks()
    times = peaks[peaks < 620 * 360] / 360
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = hrv_windows(times)
    assert list(table["window_start_s"]) == pytest.approx([times[0], times[0] + 300])
    first = times[times < times[0] + 300]
    assert table["HRV_RMSSD"].iloc[0] == pytest.approx(rmssd(np.diff(first) * 1000), rel=1e-3)
    assert {"HRV_LFHF", "HRV_SD1", "HRV_SDNN"} <= set(table.columns)


def test_lf_hf_refuses_short_series():
    with pytest.raises(ValueError, match="at least 120 s"):
        lf_hf_ratio(np.full(60, 900.0))


def test_correct_rr_agrees_with_neurokit_on_a_long_series_with_scattered_artefacts():
    # Clean stretches take the early exit of the classifier (no beat past the dRR threshold); stretches with
    # artefacts take the full classification. Both must give neurokit2's decisions.
    rng = np.random.default_rng(7)
    bad = list(breathing_rr(3000, seed=6))
    for i in sorted(rng.choice(np.arange(20, 2900, 60), 30, replace=False), reverse=True):
        kind = i % 3
        if kind == 0:
            bad[i] += bad.pop(i + 1)  # missed beat
        elif kind == 1:
            bad[i] -= 250  # ectopic pair
            bad[i + 1] += 250
        else:
            bad[i] += 400  # long interval
    bad = np.array(bad)
    peaks = np.concatenate(([0], np.cumsum(bad))).astype(int)
    _, clean = nk.signal_fixpeaks(peaks, sampling_rate=1000, method="kubios", iterative=True)
    fix = correct_rr(bad)
    assert fix.nn_ms.size == clean.size - 1
    np.testing.assert_allclose(fix.nn_ms, np.diff(clean), atol=1.0)
