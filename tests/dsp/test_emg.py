"""Tests of biofeedback.dsp.emg against closed forms and against itself split into blocks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from biofeedback.dsp._streaming import MovingSum, SosFilter
from biofeedback.dsp.emg import (
    GAP_RMS_WINDOW_S,
    Calibration,
    EmgProcessor,
    QualityFlag,
    QualityThresholds,
    SpectrumUnavailableError,
    TensionIndex,
    apdf_levels,
    emg_gaps,
    gap_amplitude_uv,
    mean_power_frequency,
    median_frequency,
    percent_of_reference,
    symmetry_index,
)

FS = 2000.0


def sine(freq_hz: float, amp_uv: float, seconds: float, fs: float = FS) -> np.ndarray:
    t = np.arange(round(seconds * fs)) / fs
    return amp_uv * np.sin(2 * np.pi * freq_hz * t)


def emg_like(seconds: float, rms_uv: float, seed: int = 0, fs: float = FS) -> np.ndarray:
    """Gaussian noise band-limited to 20-450 Hz with a given RMS: the usual model of surface EMG."""
    rng = np.random.default_rng(seed)
    x = signal.sosfiltfilt(signal.butter(4, (20, 450), "bandpass", fs=fs, output="sos"), rng.standard_normal(round(seconds * fs)))
    return x * rms_uv / np.sqrt(np.mean(x**2))


def test_sos_filter_matches_public_scipy_sosfilt_across_blocks():
    sos = signal.butter(2, (20, 450), "bandpass", fs=FS, output="sos")
    x = np.random.default_rng(1).standard_normal((2, 3001))
    f = SosFilter(sos, rows=2)
    pieces = [f.run(np.ascontiguousarray(x[:, a:b])) for a, b in ((0, 1), (1, 700), (700, 3001))]
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), signal.sosfilt(sos, x, axis=1), rtol=0, atol=1e-12)


def direct_window_sums(x: np.ndarray, width: int) -> np.ndarray:
    """Sum of each column of ``x`` (n, k) over the trailing ``width`` samples, zeros before the start."""
    padded = np.concatenate((np.zeros((width - 1, x.shape[1])), x))
    return np.lib.stride_tricks.sliding_window_view(padded, width, axis=0).sum(axis=-1)


def test_emg_kernel_equals_scipy_and_numpy_references():
    # The compiled chain against the same steps done independently: scipy.signal.sosfilt with the processor's
    # own filter designs, window sums added up directly, and the quality rules written out in numpy.
    x = np.stack([emg_like(4.0, 30, seed=20), emg_like(4.0, 5, seed=21) + sine(50, 400, 4.0),
                  emg_like(4.0, 10, seed=22) + sine(3, 600, 4.0)], axis=1)
    # Flat: electrode off, amplifier noise only. (On exact zeros the MAINS and MOTION tests would compare window
    # sums that are both pure rounding residue, ~1e-10 of the largest sum, which either summation may decide.)
    x[2000:4500, 0] = 0.01 * np.random.default_rng(23).standard_normal(2500)
    x[5000:5050, 2] = 2500.0  # saturated
    th = QualityThresholds(saturation_uv=2000.0)
    proc = EmgProcessor(FS, channels=3, thresholds=th)
    bounds = [0, 1, 40, 41, 2000, 5003, len(x)]
    parts = [proc.process(x[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    got = {name: np.concatenate([getattr(p, name) for p in parts]) for name in ("filtered_uv", "rms_uv", "envelope_uv", "quality")}

    band = signal.sosfilt(proc._bandpass.sos, x, axis=0)
    emg = signal.sosfilt(proc._notch.sos, band, axis=0)
    np.testing.assert_allclose(got["filtered_uv"], emg, rtol=0, atol=1e-12 * np.abs(x).max())
    smooth = signal.sosfilt(proc._envelope.sos, emg**2, axis=0)
    np.testing.assert_allclose(got["envelope_uv"], np.sqrt(np.maximum(smooth, 0.0)), rtol=1e-12, atol=1e-12)
    w = proc.rms_window
    emg_sum = direct_window_sums(emg**2, w)
    np.testing.assert_allclose(got["rms_uv"], np.sqrt(np.maximum(emg_sum, 0.0) / w), rtol=1e-9, atol=1e-9)
    mains_sum = direct_window_sums((band - emg) ** 2, w)
    motion_sum = direct_window_sums(signal.sosfilt(proc._motion.sos, x, axis=0) ** 2, w)
    saturated = direct_window_sums((np.abs(x) >= th.saturation_uv).astype(float), w)
    expected = (
        np.where(emg_sum < w * th.flat_rms_uv**2, QualityFlag.FLAT, 0)
        | np.where(saturated > 0.5, QualityFlag.SATURATED, 0)
        | np.where(mains_sum > th.mains_ratio**2 * emg_sum, QualityFlag.MAINS, 0)
        | np.where(motion_sum > np.maximum(th.motion_ratio**2 * emg_sum, w * th.motion_min_uv**2), QualityFlag.MOTION, 0)
    )
    expected[: proc.warmup] &= ~np.uint8(QualityFlag.FLAT)  # a window still filling is no sign of a lost electrode
    expected[: proc.warmup] |= QualityFlag.WARMUP
    np.testing.assert_array_equal(got["quality"], expected)
    for flag in (QualityFlag.FLAT, QualityFlag.SATURATED, QualityFlag.MAINS, QualityFlag.MOTION):
        assert np.any(got["quality"][proc.warmup :] & flag)


def test_moving_sum_equals_direct_window_sum():
    x = np.random.default_rng(2).standard_normal((3, 1000))
    ms = MovingSum(37, rows=3)
    got = np.concatenate([ms.run(x[:, a:b]) for a, b in ((0, 5), (5, 50), (50, 51), (51, 1000))], axis=1)
    padded = np.concatenate((np.zeros((3, 36)), x), axis=1)
    direct = np.stack([[padded[r, i : i + 37].sum() for i in range(1000)] for r in range(3)])
    np.testing.assert_allclose(got, direct, rtol=0, atol=1e-10)


def test_sine_rms_and_envelope_equal_amplitude_over_root_two():
    # Without notches the chain is the band-pass alone, so a settled sine of amplitude A comes out with
    # amplitude A·|H(f)|; at 96 Hz the 250 ms window holds exactly 24 periods and its RMS is A·|H(f)|/√2.
    amp, freq = 100.0, 96.0
    x = np.stack([sine(freq, amp, 3.0), sine(freq, amp / 2, 3.0)], axis=1)
    proc = EmgProcessor(FS, notch_harmonics=0)
    out = proc.process(x)
    _, h = signal.sosfreqz(signal.butter(2, (20, 450), "bandpass", fs=FS, output="sos"), worN=[freq], fs=FS)
    assert abs(h[0]) == pytest.approx(1.0, abs=1e-3)
    settled = slice(round(1.0 * FS), None)
    expected = np.broadcast_to(np.array([amp, amp / 2]) * abs(h[0]) / np.sqrt(2), out.rms_uv[settled].shape)
    np.testing.assert_allclose(out.rms_uv[settled], expected, rtol=1e-9)
    # The 6 Hz envelope low-pass leaves x²'s 192 Hz ripple attenuated by about (6/192)² = 1e-3,
    # i.e. ±5e-4 on its square root.
    np.testing.assert_allclose(out.envelope_uv[settled], expected, rtol=1e-3)


def test_notch_removes_mains_and_harmonics():
    proc = EmgProcessor(FS, mains_hz=60)
    assert proc.notch_hz == (60.0, 120.0, 180.0)
    x = sine(60, 1000, 4.0) + sine(180, 300, 4.0)
    out = proc.process(np.stack([x, x], axis=1))
    assert np.max(out.rms_uv[round(3 * FS) :]) < 0.01 * 1000 / np.sqrt(2)


def test_upper_band_edge_is_capped_by_sample_rate():
    assert EmgProcessor(500.0).band_hz == (20.0, 225.0)
    assert EmgProcessor(1000.0).band_hz == (20.0, 450.0)
    with pytest.raises(ValueError, match="band"):
        EmgProcessor(40.0)


@pytest.mark.parametrize("sizes", ["ones", "random", "odd"])
def test_blocks_of_any_size_equal_whole_array(sizes):
    rng = np.random.default_rng(3)
    n = 6000 if sizes == "ones" else 40000
    x = np.stack([emg_like(n / FS, 30, seed=4), emg_like(n / FS, 10, seed=5)], axis=1)
    x[1000:2200, 1] = 0.0  # a flat stretch (0.6 s: longer than the 250 ms window)
    x[2000:2100, 0] += 4000 * np.sin(np.linspace(0, np.pi, 100))  # a movement bump
    th = QualityThresholds(saturation_uv=3000.0)
    whole = EmgProcessor(FS, thresholds=th).process(x)
    if sizes == "ones":
        bounds = np.arange(n + 1)
    elif sizes == "random":
        bounds = np.unique(np.concatenate(([0, n], rng.integers(0, n, 900))))
    else:
        bounds = np.unique(np.concatenate((np.arange(0, n, 997), [n])))
    proc = EmgProcessor(FS, thresholds=th)
    parts = [proc.process(x[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    for name in ("filtered_uv", "rms_uv", "envelope_uv"):
        got = np.concatenate([getattr(p, name) for p in parts])
        np.testing.assert_allclose(got, getattr(whole, name), rtol=1e-9, atol=1e-9, err_msg=name)
    np.testing.assert_array_equal(np.concatenate([p.quality for p in parts]), whole.quality)
    assert np.any(whole.quality & QualityFlag.FLAT) and np.any(whole.quality & QualityFlag.SATURATED)


def test_long_recording_in_one_call_equals_live_blocks():
    # A 40 s recording in one call and the same samples in 20 ms live blocks.
    x = np.stack([emg_like(40.0, 25, seed=6), emg_like(40.0, 25, seed=7)], axis=1)
    whole = EmgProcessor(FS).process(x)
    proc = EmgProcessor(FS)
    live = np.concatenate([proc.process(x[i : i + 40]).rms_uv for i in range(0, len(x), 40)])
    np.testing.assert_allclose(live, whole.rms_uv, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("step", [1, 100, 7])
def test_rms_every_step_in_chunks_equals_the_full_rate_output(monkeypatch, step):
    # Small chunks, a length that is no multiple of the step or the chunk, and faults, so some steps are bad.
    monkeypatch.setattr("biofeedback.dsp.emg.OFFLINE_CHUNK_SAMPLES", 1000)
    seconds = 4.0
    x = np.stack([emg_like(seconds, 20, seed=13), emg_like(seconds, 5, seed=14) + sine(50, 400, seconds)], axis=1)
    x = np.concatenate([x[:3000], np.zeros((2000, 2)), x[5000:-3]])
    whole = EmgProcessor(FS).process(x)
    rms, bad = EmgProcessor(FS).rms_every(x, step)
    starts = np.arange(0, len(x), step)
    assert np.array_equal(rms, whole.rms_uv[starts])
    assert np.array_equal(bad, np.logical_or.reduceat(whole.bad, starts, axis=0))
    assert bad.any() and not bad.all()


def test_reported_delays_match_measured_delay_of_amplitude_changes():
    # A 200 Hz carrier whose amplitude swings slowly (0.5 Hz); the lag that best aligns each amplitude
    # estimate with the true RMS amplitude is its delay.
    t = np.arange(round(20 * FS)) / FS
    true_rms = (60 + 40 * np.sin(2 * np.pi * 0.5 * t)) / np.sqrt(2)
    x = np.sqrt(2) * true_rms * np.sin(2 * np.pi * 200 * t)
    proc = EmgProcessor(FS)
    out = proc.process(np.stack([x, x], axis=1))
    lags = np.arange(0, round(0.2 * FS))
    keep = slice(round(4 * FS), round(19 * FS))

    def best_lag_ms(estimate: np.ndarray) -> float:
        errs = [np.mean((estimate[keep] - np.roll(true_rms, lag)[keep]) ** 2) for lag in lags]
        return lags[int(np.argmin(errs))] / FS * 1000

    assert best_lag_ms(out.rms_uv[:, 0]) == pytest.approx(proc.rms_delay_ms, abs=2.0)
    assert best_lag_ms(out.envelope_uv[:, 0]) == pytest.approx(proc.envelope_delay_ms, abs=3.0)
    assert proc.envelope_delay_ms < 45.0  # inside the 25-40 ms envelope budget of DESIGN.md, plus the band-pass


def test_quality_flags_each_fault():
    seconds = 6.0
    n = round(seconds * FS)
    clean = emg_like(seconds, 20, seed=8)
    flat = np.zeros(n) + 1e-3 * np.random.default_rng(9).standard_normal(n)
    mains = emg_like(seconds, 5, seed=10) + sine(50, 400, seconds)
    motion = emg_like(seconds, 10, seed=11) + sine(3, 600, seconds)
    clipped = np.clip(emg_like(seconds, 400, seed=12), -1000, 1000)
    x = np.stack([clean, flat, mains, motion, clipped], axis=1)
    out = EmgProcessor(FS, channels=5, thresholds=QualityThresholds(saturation_uv=1000.0)).process(x)
    q = out.quality[round(2 * FS) :]
    assert np.all(q[:, 0] == 0)
    assert np.all(q[:, 1] & QualityFlag.FLAT)
    assert np.all(q[:, 2] & QualityFlag.MAINS)
    assert np.all(q[:, 3] & QualityFlag.MOTION)
    assert np.mean(q[:, 4] & QualityFlag.SATURATED > 0) > 0.9
    assert np.all(out.quality[:10] & QualityFlag.WARMUP) and not np.any(q & QualityFlag.WARMUP)
    assert np.array_equal(out.bad, out.quality != 0)


def test_reset_restarts_from_rest():
    x = np.stack([emg_like(2.0, 20, seed=13)] * 2, axis=1)
    proc = EmgProcessor(FS)
    first = proc.process(x)
    proc.reset()
    again = proc.process(x)
    np.testing.assert_array_equal(first.rms_uv, again.rms_uv)
    np.testing.assert_array_equal(first.quality, again.quality)


def test_normalisation_and_tension_index_choice():
    rms = np.array([[10.0, 20.0], [30.0, 40.0]])
    np.testing.assert_allclose(percent_of_reference(rms, [20.0, 40.0]), [[50, 50], [150, 100]])
    with pytest.raises(ValueError, match="calibration"):
        percent_of_reference(rms, [0.0, 40.0])
    assert TensionIndex().unit == "uV"
    np.testing.assert_allclose(TensionIndex()(rms), rms)
    rest = Calibration(rest_rms_uv=(5.0, 10.0))
    assert TensionIndex(rest).unit == "%rest"
    np.testing.assert_allclose(TensionIndex(rest)(rms), [[200, 200], [600, 400]])
    mvc = Calibration(rest_rms_uv=(5.0, 10.0), mvc_rms_uv=(100.0, 200.0))
    assert TensionIndex(mvc).unit == "%MVC"
    full = Calibration(rest_rms_uv=(5.0, 10.0), rvc_rms_uv=(50.0, 80.0), mvc_rms_uv=(100.0, 200.0))
    ti = TensionIndex(full)
    assert ti.unit == "%RVC"
    np.testing.assert_allclose(ti(rms), [[20, 25], [60, 50]])
    np.testing.assert_allclose(ti.combined(rms), [22.5, 55.0])


def test_median_and_mean_power_frequency_closed_forms():
    # A pure tone: all power at its frequency.
    tone = sine(137.0, 50, 4.0)
    assert median_frequency(tone, FS) == pytest.approx(137.0, abs=FS / 512 / 2 + 0.5)
    assert mean_power_frequency(tone, FS) == pytest.approx(137.0, abs=2.0)
    # White noise has a flat spectrum: MDF = MPF = middle of the analysed band, (20+450)/2 = 235 Hz.
    noise = np.random.default_rng(14).standard_normal((round(60 * FS), 2))
    np.testing.assert_allclose(median_frequency(noise, FS), [235.0, 235.0], atol=6.0)
    np.testing.assert_allclose(mean_power_frequency(noise, FS), [235.0, 235.0], atol=4.0)


def test_spectral_statistics_refuse_slow_streams():
    with pytest.raises(SpectrumUnavailableError, match="500 Hz"):
        median_frequency(np.ones(1000), 250.0)
    with pytest.raises(SpectrumUnavailableError):
        mean_power_frequency(np.ones(1000), 100.0)


def test_apdf_levels_of_a_uniform_ramp():
    ramp = np.linspace(0.0, 100.0, 100001)
    np.testing.assert_allclose(apdf_levels(ramp), [10.0, 50.0, 90.0], atol=1e-9)
    # Flagged samples are left out: only the lower half remains.
    np.testing.assert_allclose(apdf_levels(ramp, (0.5,), valid=ramp <= 50.0), [25.0], atol=1e-9)
    two = np.stack([ramp, 2 * ramp], axis=1)
    np.testing.assert_allclose(apdf_levels(two, (0.1, 0.9)), [[10, 20], [90, 180]], atol=1e-9)


def test_emg_gaps_counts_runs_at_least_0_2_s_below_threshold():
    fs = 100.0
    a = np.full(6000, 5.0)  # 60 s at 5 %RVC
    a[100:120] = 0.1  # 0.20 s: a gap
    a[500:519] = 0.1  # 0.19 s: too short
    a[1000:1100] = 0.3  # 1.00 s: a gap
    a[2000:2050] = 0.2  # 0.50 s, but half of it flagged bad: the valid run is 0.25 s
    valid = np.ones(6000, dtype=bool)
    valid[2025:2050] = False
    g = emg_gaps(a, fs, threshold=0.5, valid=valid)
    assert g.count == 3
    assert g.total_s == pytest.approx(0.20 + 1.00 + 0.25)
    valid_s = (6000 - 25) / fs
    assert g.per_minute == pytest.approx(3 / (valid_s / 60))
    assert g.relative_time == pytest.approx(1.45 / valid_s)


def test_gap_amplitude_is_a_centred_moving_rms():
    x = np.random.default_rng(2).standard_normal((400, 2))
    a = gap_amplitude_uv(x, 1000.0, window_s=0.025)
    k = 200
    np.testing.assert_allclose(a[k], np.sqrt(np.mean(x[k - 12:k + 13] ** 2, axis=0)), rtol=1e-12)
    np.testing.assert_allclose(a[0], np.sqrt(np.mean(x[:13] ** 2, axis=0)), rtol=1e-12)


def test_emg_gaps_at_their_scale_finds_0_2_to_0_4_s_gaps_with_their_length():
    """Hägg & Åström 1997: a gap is >= 0.2 s below threshold. Band-limited EMG (4-15 µV RMS stretches) with 100 gaps
    of 0.2-0.4 s (uniform) down to a 1.5 µV noise floor, through the live chain's band-pass and notch: the 25 ms centred RMS
    finds >= 95 % of them, each with its true start and length within 50 ms, and invents none. The 250 ms RMS (the
    tension index's) finds few of them: the scale the issue found wrong."""
    fs, rng = 1000.0, np.random.default_rng(7)
    true_gaps, level, t = [], [], 0.0
    while True:
        active = rng.uniform(0.5, 2.5)
        level.append((t, t + active, rng.uniform(4.0, 15.0)))
        t += active
        if len(true_gaps) == 100:
            break
        gap = rng.uniform(0.2, 0.4)
        true_gaps.append((t, gap))
        t += gap
    n = int(t * fs)
    rms = np.zeros(n)
    for a, b, uv in level:
        rms[int(a * fs):int(b * fs)] = uv
    activity = emg_like(n / fs, 1.0, seed=3, fs=fs)
    floor = emg_like(n / fs, 1.5, seed=4, fs=fs)
    filtered = EmgProcessor(fs, channels=1).process((activity * rms + floor)[:, None]).filtered_uv[:, 0]
    found = emg_gaps(gap_amplitude_uv(filtered, fs), fs, threshold=3.0, window_s=GAP_RMS_WINDOW_S)
    starts, lengths = np.array(found.starts_s), np.array(found.lengths_s)
    hits = 0
    for start, length in true_gaps:
        near = np.flatnonzero(np.abs(starts - start) <= 0.05)
        hits += bool(near.size and abs(lengths[near[0]] - length) <= 0.05)
    assert hits >= 0.95 * len(true_gaps), hits
    assert found.count <= len(true_gaps)
    coarse = emg_gaps(EmgProcessor(fs, channels=1).process((activity * rms + floor)[:, None]).rms_uv[:, 0], fs, 3.0)
    assert coarse.count < 0.5 * len(true_gaps)


def test_symmetry_index():
    assert symmetry_index(3.0, 1.0) == pytest.approx(100.0)
    assert symmetry_index(np.array([2.0, 2.0]), np.array([2.0, 2.0])) == 0.0
    assert symmetry_index(10.0, 30.0) == pytest.approx(-100.0)


def test_one_channel_at_1_khz():
    # A DIY sensor at 1 kHz: the band stays 20-450 Hz, the notches stay below it, the RMS is still A/√2.
    fs = 1000.0
    proc = EmgProcessor(fs, channels=1)
    assert proc.band_hz == (20.0, 450.0) and proc.notch_hz == (50.0, 100.0, 150.0)
    out = proc.process(sine(96.0, 80.0, 3.0, fs=fs)[:, None])
    _, h = signal.sosfreqz(signal.butter(2, (20, 450), "bandpass", fs=fs, output="sos"), worN=[96.0], fs=fs)
    _, notch_gain = signal.sosfreqz(np.concatenate([signal.tf2sos(*signal.iirnotch(f, 30.0, fs=fs)) for f in (50, 100, 150)]), worN=[96.0], fs=fs)
    expected = 80.0 * abs(h[0]) * abs(notch_gain[0]) / np.sqrt(2)
    # The notches (Q 30, -3 dB width 1.7-5 Hz) ring for about 0.2 s; after 2 s the transient is below 1e-6.
    np.testing.assert_allclose(out.rms_uv[round(2.0 * fs) :, 0], expected, rtol=1e-6)
    assert median_frequency(out.filtered_uv[round(1.0 * fs) :, 0], fs) == pytest.approx(96.0, abs=2.0)
