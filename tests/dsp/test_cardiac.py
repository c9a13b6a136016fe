"""Cardiac artefact removal (biofeedback.dsp.cardiac) against known truth: a small version of the mixing of
tools/eval_cardiac.py, with real ECG (MIT-BIH record 100, PhysioNet, ODC-By 1.0; tests/data/mitdb-100/README.md)
added to EMG-like noise, or to real EMG (PLUX ``emg_fatigue.h5``, MIT licence; tests/data/import/plux-emg/README.md),
whose clean version is known."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import wfdb
from scipy import signal

from biofeedback.dsp import EmgProcessor
from biofeedback.dsp.cardiac import CardiacArtefactRemover, CardiacMethod, remove_cardiac_artefact

FS = 1000.0
MITDB_100 = Path(__file__).parent.parent / "data" / "mitdb-100" / "100"
PLUX_FATIGUE = Path(__file__).parent.parent / "data" / "import" / "plux-emg" / "emg_fatigue.h5"
PLUX_BURSTS = PLUX_FATIGUE.with_name("emg_bursts.h5")


def emg_like(seconds: float, rms_uv: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    band = signal.butter(4, (20, 450), "bandpass", fs=FS, output="sos")
    x = signal.sosfiltfilt(band, rng.standard_normal(round(seconds * FS)))
    return x * rms_uv / np.sqrt(np.mean(x**2))


def real_ecg(seconds: float, r_uv: float) -> tuple[np.ndarray, np.ndarray]:
    """MLII of record 100 at 1000 Hz, 1 Hz high-passed, median R-wave ``r_uv``; and the annotated beat times (s)."""
    rec = wfdb.rdrecord(str(MITDB_100), sampto=round(seconds * 360))
    ann = wfdb.rdann(str(MITDB_100), "atr", sampto=round(seconds * 360))
    x = signal.resample_poly(rec.p_signal[:, 0], 25, 9)
    x = signal.sosfiltfilt(signal.butter(2, 1.0, "highpass", fs=FS, output="sos"), x)
    beats = np.array([s for s, sym in zip(ann.sample, ann.symbol) if sym.isalpha()]) / 360.0
    r = np.round(beats * FS).astype(int)[1:-1]
    return x * r_uv / np.median([np.abs(x[k - 20:k + 20]).max() for k in r]), beats


def plux_uv(path: Path) -> np.ndarray:
    """A PLUX EMG recording in µV (PLUX's EMG transfer function, (ADC/2^n - 1/2)·3 V/1000)."""
    with h5py.File(path) as h:
        group = h[list(h)[0]]
        bits = int(group.attrs["resolution"][0])
        adc = group["raw"][[k for k in group["raw"] if k.startswith("channel")][0]][:].ravel().astype(float)
    return (adc / 2**bits - 0.5) * 3.0 / 1000.0 * 1e6


def plux_fatigue_uv(seconds: float, reverse: bool = True) -> np.ndarray:
    """The PLUX fatigue recording in µV (PLUX's EMG transfer function, (ADC/2^n - 1/2)·3 V/1000), reversed in time as
    the eval's right channel is, so that it opens with 5 s of rest (the template is learnt there) before cyclic
    contractions with short dips between them; the first ``seconds``. Not reversed (the eval's left channel), it
    opens with a contraction 1.5 s in."""
    return plux_uv(PLUX_FATIGUE)[::-1 if reverse else 1][:round(seconds * FS)].copy()


def chain_rms(x: np.ndarray) -> np.ndarray:
    """The session chain's 250 ms moving RMS (µV) of one channel of raw EMG, without cardiac removal."""
    return EmgProcessor(FS, channels=1).process(x[:, None]).rms_uv[:, 0]


def band_rms(x: np.ndarray) -> float:
    skip = round(10 * FS)  # filters and level settle, and the template arms (8 segments, each decided 2.5 s later)
    band = signal.butter(2, (20, 450), "bandpass", fs=FS, output="sos")
    return float(np.sqrt(np.mean(signal.sosfilt(band, x)[skip:] ** 2)))


def test_any_split_into_blocks_gives_the_output_of_one_call():
    ecg, _ = real_ecg(12.0, 50.0)
    x = np.stack([emg_like(12.0, 3.0, 1) + ecg, emg_like(12.0, 3.0, 2) + 0.6 * ecg], axis=1)
    whole = CardiacArtefactRemover(FS, 2).process(x)
    rem = CardiacArtefactRemover(FS, 2)
    cuts = [0, 1, 17, 500, 4321, 4341, x.shape[0]]
    parts = np.concatenate([rem.process(x[a:b]) for a, b in zip(cuts, cuts[1:])])
    np.testing.assert_array_equal(parts, whole)


def test_output_is_the_input_delayed_by_the_stated_hold():
    x = emg_like(3.0, 3.0, 3)[:, None]  # no heart in it: nothing to subtract
    rem = CardiacArtefactRemover(FS, 1)
    y = rem.process(x)
    assert rem.delay_ms == rem.hold / FS * 1000.0
    np.testing.assert_array_equal(y[rem.hold:, 0], x[:-rem.hold, 0])
    assert rem.methods() == (CardiacMethod.TEMPLATE_NONE_FOUND,)


def test_real_ecg_in_rest_emg_loses_most_of_its_band_power():
    # 30 s of 3 µV rest plus a real ECG with a 50 µV R-wave: the artefact power left after removal, measured
    # against the known clean EMG, is a fraction of what the band-pass alone lets through.
    emg = emg_like(30.0, 3.0, 4)
    ecg, beats = real_ecg(30.0, 50.0)
    clean_rms = band_rms(emg)
    raw_excess = band_rms(emg + ecg) ** 2 - clean_rms**2
    for beats_s in (None, beats):
        out = remove_cardiac_artefact(emg + ecg, FS, beats_s=beats_s)
        left = band_rms(out.emg_uv) ** 2 - clean_rms**2
        assert abs(left) < 0.25 * raw_excess
    assert out.methods == (CardiacMethod.TEMPLATE_HEART,)


def test_contraction_keeps_its_power():
    emg = emg_like(20.0, 150.0, 5)
    ecg, beats = real_ecg(20.0, 50.0)
    out = remove_cardiac_artefact(emg + ecg, FS, beats_s=beats)
    truth = EmgProcessor(FS, channels=1).process(emg[:, None]).rms_uv[3000:].mean()
    ours = EmgProcessor(FS, channels=1).process(out.emg_uv[:, None]).rms_uv[3000:].mean()
    assert abs(ours / truth - 1) < 0.03


def test_low_rates_fall_back_to_the_30_hz_high_pass():
    out = remove_cardiac_artefact(emg_like(2.0, 3.0, 6)[::4], 250.0)
    assert out.methods == (CardiacMethod.HIGHPASS,)


def test_heart_beats_on_a_clock_offset_by_hrs_latency_still_confirm_the_template():
    # HRS beat times are rebuilt from RR sums and aligned to arrival: here 0.35 s late, beyond the tolerance; the
    # running offset brings them onto the QRS found in the EMG, so the template is taught by confirmed beats only
    # (the first few beats, while the offset is learnt, teach nothing).
    emg = emg_like(30.0, 3.0, 8)
    ecg, beats = real_ecg(30.0, 50.0)
    out = remove_cardiac_artefact(emg + ecg, FS, beats_s=beats + 0.35)
    assert out.methods == (CardiacMethod.TEMPLATE_HEART,)
    # all but the first few (offset being learnt) and those of the last CONFIRM_WAIT_S (never decided)
    assert out.report["heart_confirmed"][0] >= beats.size - 10
    clean_rms = band_rms(emg)
    assert abs(band_rms(out.emg_uv) ** 2 - clean_rms**2) < 0.35 * (band_rms(emg + ecg) ** 2 - clean_rms**2)


def test_a_channel_without_the_heart_in_it_is_left_alone():
    # Left picks the heart up, right does not: only the left is armed; the right comes out as it went in.
    ecg, _ = real_ecg(20.0, 80.0)
    right = emg_like(20.0, 3.0, 9)
    x = np.stack([emg_like(20.0, 3.0, 10) + ecg, right], axis=1)
    out = remove_cardiac_artefact(x, FS)
    assert out.methods == (CardiacMethod.TEMPLATE_EMG, CardiacMethod.TEMPLATE_NONE_FOUND)
    np.testing.assert_array_equal(out.emg_uv[:, 1], right)


def _session_chain_inputs(seconds: float = 24.0):
    ecg, beats = real_ecg(seconds, 50.0)
    clean = np.stack([emg_like(seconds, 3.0, 11), emg_like(seconds, 3.0, 12)], axis=1)
    return clean, clean + ecg[:, None] * np.array([1.0, 0.6]), beats


def test_session_chain_live_block_by_block_with_late_beats_equals_offline():
    # Live: 20-sample blocks, each heart beat handed over 1.4 s after it happened (an HRS notification's lag, and more);
    # offline: the whole recording with every beat at once (EmgProcessor.rms_every, as analysis.data does). At rest
    # the EMG's own detector finds every QRS, so the heart sensor places none, and beats this late cost nothing.
    _, x, beats = _session_chain_inputs()
    live = EmgProcessor(FS, channels=2, cardiac="template")
    handed = 0
    rms = []
    for start in range(0, x.shape[0], 20):
        due = np.searchsorted(beats, (start - 1400) / FS)
        live.add_beats(beats[handed:due] * FS)
        handed = max(handed, due)
        rms.append(live.process(x[start:start + 20]).rms_uv)
    offline = EmgProcessor(FS, channels=2, cardiac="template")
    rms_offline, _ = offline.rms_every(x, 1, beats_s=beats)
    np.testing.assert_array_equal(np.concatenate(rms), rms_offline)
    assert live.cardiac_report() == offline.cardiac_report()
    assert live.cardiac_report()["methods"] == [str(CardiacMethod.TEMPLATE_HEART)] * 2
    assert offline.cardiac_report()["heart_placed"] == [0, 0]


def test_session_chain_rest_rms_is_that_of_the_clean_emg_delayed_by_the_hold():
    clean, x, beats = _session_chain_inputs()
    chain = EmgProcessor(FS, channels=2, cardiac="template")
    hold = round(chain.cardiac_delay_ms * FS / 1000.0)
    assert chain.rms_delay_ms - EmgProcessor(FS, channels=2).rms_delay_ms == pytest.approx(chain.cardiac_delay_ms)
    chain.add_beats(beats * FS)
    armed = 10000  # the templates arm after 8 segments, each decided 2.5 s after its beat
    ours = np.mean(chain.process(x).rms_uv[armed:] ** 2, axis=0)  # mean power of the 250 ms RMS, µV²
    truth = np.mean(EmgProcessor(FS, channels=2).process(clean).rms_uv[armed - hold:-hold] ** 2, axis=0)
    raw = np.mean(EmgProcessor(FS, channels=2).process(x).rms_uv[armed - hold:-hold] ** 2, axis=0)
    assert np.all(raw > 1.4 * truth)  # the artefact matters
    assert np.all(np.abs(ours - truth) < 0.2 * (raw - truth))


def test_highpass_fallback_is_the_chain_with_its_band_from_30_hz():
    x = np.stack([emg_like(4.0, 3.0, 13), emg_like(4.0, 3.0, 14)], axis=1)[::4]  # 250 Hz: too slow for a template
    for mode in ("template", "highpass"):
        chain = EmgProcessor(250.0, channels=2, cardiac=mode)
        banded = EmgProcessor(250.0, band_hz=(30.0, 450.0)).process(x).rms_uv
        np.testing.assert_array_equal(chain.process(x).rms_uv, banded)
        assert chain.cardiac_report() == {"delay_ms": 0.0, "methods": [str(CardiacMethod.HIGHPASS)] * 2}
    with pytest.raises(ValueError, match="cardiac must be one of"):
        EmgProcessor(FS, cardiac="notch")


@pytest.mark.parametrize("emg, fs, words", [
    (np.zeros((0, 2)), FS, "got shape (0, 2)"),
    (np.zeros((10, 2, 2)), FS, "samples × channels"),
    (np.r_[np.zeros(10), np.nan], FS, "1 NaN or infinite"),
    (np.zeros(100), -1.0, "positive sample rate"),
])
def test_bad_arrays_get_one_line_saying_what_is_wrong(emg, fs, words):
    with pytest.raises(ValueError) as err:
        remove_cardiac_artefact(emg, fs)
    assert words in str(err.value) and "\n" not in str(err.value)


def _dips_and_contractions(seconds: float = 40.0):
    """Real EMG of cyclic contractions with a real ECG (50 µV R-wave) in it: the clean and mixed signals, the beat
    times, and masks of the dips between contractions (clean RMS below 10 µV, after the first contraction began, so
    after the opening rest in which the template is learnt) and of the contractions (clean RMS above 50 µV)."""
    clean = plux_fatigue_uv(seconds)
    ecg, beats = real_ecg(seconds, 50.0)
    truth = chain_rms(clean)
    working = truth > 50.0
    dips = (truth < 10.0) & (np.arange(truth.size) > np.argmax(working))
    return clean, clean + ecg, beats, truth, dips, working


def test_heart_beats_subtract_the_qrs_the_emg_misses_in_short_dips_between_contractions():
    # After a contraction the EMG's own QRS detector is blind for seconds (its running level still holds the
    # contraction), so without the heart sensor the dips keep their whole artefact; with the heart sensor's beats the
    # armed template is placed at them, and a contraction, where the template correlates poorly, keeps its power.
    clean, x, beats, truth, dips, working = _dips_and_contractions()
    assert dips.sum() > 2000 and working.sum() > 10000
    err = {}
    for name, beats_s in (("emg alone", None), ("heart beats", beats)):
        out = remove_cardiac_artefact(x, FS, beats_s=beats_s)
        y = chain_rms(out.emg_uv)
        err[name] = (np.median(y[dips]) / np.median(truth[dips]) - 1, np.mean(y[working]) / np.mean(truth[working]) - 1)
    raw = np.median(chain_rms(x)[dips]) / np.median(truth[dips]) - 1
    assert raw > 0.1  # the artefact matters in the dips
    assert err["emg alone"][0] > 0.05
    assert abs(err["heart beats"][0]) < 0.05
    assert abs(err["heart beats"][1]) < 0.03 and abs(err["emg alone"][1]) < 0.03
    assert out.report["heart_placed"][0] > 0


def test_heart_beats_place_subtractions_live_only_when_known_before_their_qrs_leaves_the_hold_back():
    # Live, 20-sample blocks. Each beat handed with the block that holds its R-peak (known before its QRS leaves
    # the 60 ms hold-back): the output is that of the offline chain given every beat at once. Each beat handed 0.3 s
    # late (an HRS notification's lag; a Polar R-peak comes later still): it still confirms the template as offline,
    # but places nothing, and the dips keep their artefact.
    _, x, beats, truth, dips, _ = _dips_and_contractions(30.0)
    offline = EmgProcessor(FS, channels=1, cardiac="template")
    rms_offline, _ = offline.rms_every(x[:, None], 1, beats_s=beats)
    for lag_s in (-0.02, 0.3):
        live = EmgProcessor(FS, channels=1, cardiac="template")
        handed = 0
        rms = []
        for start in range(0, x.size, 20):
            due = np.searchsorted(beats, start / FS - lag_s)
            live.add_beats(beats[handed:due] * FS)
            handed = max(handed, due)
            rms.append(live.process(x[start:start + 20, None]).rms_uv)
        rms = np.concatenate(rms)
        report = live.cardiac_report()
        assert report["heart_confirmed"] == offline.cardiac_report()["heart_confirmed"]
        if lag_s < 0:
            np.testing.assert_array_equal(rms, rms_offline)
            assert report == offline.cardiac_report() and report["heart_placed"][0] > 0
        else:
            hold = round(live.cardiac_delay_ms * FS / 1000.0)
            late = np.median(rms[hold:, 0][dips[:-hold]]) / np.median(truth[dips]) - 1
            assert report["heart_placed"] == [0] and late > 0.05


def test_a_contraction_at_the_start_does_not_arm_a_template_that_is_not_the_qrs():
    # The fatigue file as recorded opens with a contraction 1.5 s in: detections in it, confirmed by heart beats
    # within the loose tolerance used while the clock offset is unknown, used to agree by chance well enough to arm a
    # template (correlation 0.1 with the QRS) that then subtracted junk. Whatever template is in use at any time must
    # be the QRS (correlation with the true mean QRS, taken from the known ECG, above 0.8), and the dips must come out
    # no worse than raw.
    seconds = 60.0
    clean = plux_fatigue_uv(seconds, reverse=False)
    ecg, beats = real_ecg(seconds, 50.0)
    rem = CardiacArtefactRemover(FS, 1)
    rem.add_beats(beats * FS)
    r = np.round(beats * FS).astype(int)[1:-1]
    qrs = np.mean([ecg[k - rem.pre:k + rem.post] for k in r], axis=0)
    worst = 1.0
    for start in range(0, clean.size, 500):
        rem.process((clean + ecg)[start:start + 500, None])
        t = rem.template_uv[0]
        if np.any(t):
            worst = min(worst, max(np.corrcoef(np.roll(t, s), qrs)[0, 1] for s in range(-25, 26)))
    assert worst > 0.8
    out = remove_cardiac_artefact(clean + ecg, FS, beats_s=beats)
    truth = chain_rms(clean)
    dips = (truth < 10.0) & (np.arange(truth.size) > 3000)
    ours = np.median(chain_rms(out.emg_uv)[dips]) / np.median(truth[dips])
    raw = np.median(chain_rms(clean + ecg)[dips]) / np.median(truth[dips])
    assert raw > 1.1 and ours <= raw + 0.01


def test_a_channel_opening_with_a_contraction_still_learns_the_qrs_from_its_short_rests_with_heart_beats():
    # The fatigue file as recorded (the eval's left channel): contractions from 1.5 s on, with about 1 s of rest in
    # every 10 s. Its template segments are mostly contraction (detections confirmed while the heart sensor's clock
    # offset was unknown, heart beats falling in contractions), which used to keep the channel unarmed for the whole
    # recording. Trimmed to the segments that agree, the QRS of the short rests arm it: after that the rests lose over
    # two thirds of their artefact (measured against the known clean EMG), and the contractions keep their power.
    seconds = 126.0
    clean = plux_fatigue_uv(seconds, reverse=False)
    ecg, beats = real_ecg(seconds, 50.0)
    out = remove_cardiac_artefact(clean + ecg, FS, beats_s=beats)
    assert out.methods == (CardiacMethod.TEMPLATE_HEART,) and out.report["beats_subtracted"][0] > 10
    truth, ours, raw = chain_rms(clean), chain_rms(out.emg_uv), chain_rms(clean + ecg)
    late_rest = (truth < 10.0) & (np.arange(truth.size) > 60 * FS)  # the template arms within the first minute
    assert late_rest.sum() > 3000
    err = np.median(ours[late_rest]) / np.median(truth[late_rest]) - 1
    err_raw = np.median(raw[late_rest]) / np.median(truth[late_rest]) - 1
    assert err_raw > 0.15 and abs(err) < err_raw / 3  # +41 % raw, +7.5 % ours
    working = truth > 50.0
    assert abs(np.mean(ours[working]) / np.mean(truth[working]) - 1) < 0.03


def test_real_emg_without_the_heart_in_it_is_left_alone_with_heart_beats_on_time_or_late():
    # Real EMG with bursts and no cardiac artefact (PLUX emg_bursts.h5, forward and reversed) and a heart sensor's
    # beats (MIT-BIH 100), on time or 0.35 s late as HRS times can be: the segments the beats confirm or teach, trimmed
    # to those agreeing with their mean, must not arm a template (a version aligning them to the trimmed mean did, on
    # the late beats), so the EMG comes out as it went in.
    emg = plux_uv(PLUX_BURSTS)
    x = np.stack([emg, emg[::-1]], axis=1)
    _, beats = real_ecg(x.shape[0] / FS, 50.0)
    for late_s in (0.0, 0.35):
        out = remove_cardiac_artefact(x, FS, beats_s=beats + late_s)
        assert out.methods == (CardiacMethod.TEMPLATE_NONE_FOUND,) * 2
        np.testing.assert_array_equal(out.emg_uv, x)
