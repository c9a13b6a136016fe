"""Cardiac artefact removal (biofeedback.dsp.cardiac) against known truth: a small version of the mixing of
tools/eval_cardiac.py, with real ECG (MIT-BIH record 100, PhysioNet, ODC-By 1.0; tests/data/mitdb-100/README.md)
added to EMG-like noise whose clean version is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import wfdb
from scipy import signal

from biofeedback.dsp import EmgProcessor
from biofeedback.dsp.cardiac import CardiacArtefactRemover, CardiacMethod, remove_cardiac_artefact

FS = 1000.0
MITDB_100 = Path(__file__).parent.parent / "data" / "mitdb-100" / "100"


def emg_like(seconds: float, rms_uv: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = signal.sosfiltfilt(signal.butter(4, (20, 450), "bandpass", fs=FS, output="sos"), rng.standard_normal(round(seconds * FS)))
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


def band_rms(x: np.ndarray) -> float:
    skip = round(3 * FS)  # filters, level and template settle
    return float(np.sqrt(np.mean(signal.sosfilt(signal.butter(2, (20, 450), "bandpass", fs=FS, output="sos"), x)[skip:] ** 2)))


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
