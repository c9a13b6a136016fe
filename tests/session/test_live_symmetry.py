"""Issue 14: the live symmetry is on per-side normalised amplitude (%RVC, else % of the side's own rest), like the
offline comparison's, so a 2x electrode gain on one side of identical muscles is no asymmetry; a real one shows.

EMG blocks of band-limited Gaussian noise go through a real ``StreamHub`` to the ``LiveProcessor``; the expected
symmetries are the closed form of the scripted amplitudes, 100·(L−R)/((L+R)/2) (Robinson et al. 1987)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import signal

from biofeedback.dsp import Calibration
from biofeedback.session.live import REST_REFERENCE_SESSION_S, SYMMETRY_OWN_REST, SYMMETRY_RVC, LiveProcessor
from biofeedback.stream import Block, SessionClock, StreamHub, StreamKind

FS = 1000.0
BLOCK = 50
REST_UV = 6.0
"""Both muscles' scripted RMS at rest, µV (as the left electrode sees it)."""
GAIN_RIGHT = 2.0
"""The right electrode picks up twice the µV of the left from the same muscle activity."""


def closed_form(left: float, right: float) -> float:
    return 100.0 * (left - right) / ((left + right) / 2.0)


def emg(seconds: float, level_uv: np.ndarray, seed: int) -> np.ndarray:
    """(n, 2) band-limited (20-400 Hz) Gaussian EMG whose RMS per side follows ``level_uv`` (n, 2)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    sos = signal.butter(4, (20.0, 400.0), "bandpass", fs=FS, output="sos")
    noise = signal.sosfilt(sos, rng.standard_normal((n + int(FS), 2)), axis=0)[int(FS):]
    return noise / noise.std(axis=0) * level_uv


def run(x: np.ndarray, calibration: Calibration | None = None) -> tuple[np.ndarray, list, np.ndarray, np.ndarray]:
    """Feed ``x`` block by block; per block: end time s, symmetry unit, live symmetry %, and raw RMS (µV) per side."""
    hub = StreamHub(SessionClock())
    live = LiveProcessor(hub, calibration)
    t, units, sym, rms = [], [], [], []
    for start in range(0, x.shape[0], BLOCK):
        times = np.arange(start, start + BLOCK) / FS
        hub.on_block(Block(StreamKind.EMG, "emg", 0, x[start:start + BLOCK], rate_hz=FS,
                           channels=("left_trapezius", "right_trapezius"), times_s=times))
        v = live.values
        t.append(times[-1])
        units.append(v.symmetry_unit)
        sym.append(v.symmetry_pct)
        rms.append(v.rms_uv)
    return np.array(t), units, np.array(sym), np.array(rms)


def test_a_2x_electrode_gain_is_no_asymmetry_and_a_real_one_shows():
    seconds, tense_at = 60.0, 40.0
    n = int(seconds * FS)
    t = np.arange(n) / FS
    muscle = np.where((t >= tense_at)[:, None], [1.5, 1.0], [1.0, 1.0]) * REST_UV  # the left tenses by half from 40 s
    x = emg(seconds, muscle * [1.0, GAIN_RIGHT], seed=3)
    bt, units, sym, rms = run(x)

    # No reference before REST_REFERENCE_SESSION_S of clean EMG: '--', never a raw-µV number.
    early = bt < REST_REFERENCE_SESSION_S
    assert np.isnan(sym[early]).all() and set(np.array(units)[early]) == {""}
    after = bt >= REST_REFERENCE_SESSION_S + 1.0
    assert set(np.array(units)[after]) == {SYMMETRY_OWN_REST}

    rest = after & (bt < tense_at)
    raw = np.array([closed_form(a, b) for a, b in rms[rest]])
    # In raw µV the identical muscles would read about -67 %; normalised to each side's own rest, about 0.
    assert np.median(raw) == pytest.approx(closed_form(1.0, GAIN_RIGHT), abs=4.0)
    assert np.isfinite(sym[rest]).all()
    assert abs(np.median(sym[rest])) < 4.0
    assert np.percentile(np.abs(sym[rest]), 95) < 25.0  # 250 ms windows of noise: about 6 % SD each
    # A real asymmetry shows: the left at 1.5x its rest, the right at its rest, +40 %.
    tense = bt >= tense_at + 1.0
    assert np.median(sym[tense]) == pytest.approx(closed_form(1.5, 1.0), abs=5.0)


def test_with_an_rvc_the_symmetry_is_on_percent_rvc_at_once():
    seconds = 10.0
    n = int(seconds * FS)
    x = emg(seconds, np.full((n, 2), REST_UV) * [1.0, GAIN_RIGHT], seed=5)
    # The RVC (arms abducted) was measured through the same electrodes: 60 µV left, 120 µV right.
    bt, units, sym, _ = run(x, Calibration(rest_rms_uv=(5.0, 10.0), rvc_rms_uv=(60.0, 60.0 * GAIN_RIGHT)))
    assert set(units) == {SYMMETRY_RVC}
    settled = bt >= 1.0
    assert np.isfinite(sym[settled]).all() and abs(np.median(sym[settled])) < 4.0
    assert np.isnan(sym[0]), "the first block is a partial window: no symmetry from it"


def test_with_a_rest_calibration_only_the_symmetry_is_on_its_rest():
    seconds = 10.0
    n = int(seconds * FS)
    x = emg(seconds, np.full((n, 2), REST_UV) * [1.0, GAIN_RIGHT], seed=7)
    # A rest of 4 and 8 µV: the same ratio as the gains, so at 6 µV (scaled) both sides are at 150 % of rest.
    bt, units, sym, _ = run(x, Calibration(rest_rms_uv=(4.0, 4.0 * GAIN_RIGHT)))
    assert set(units) == {SYMMETRY_OWN_REST}
    assert abs(np.median(sym[bt >= 1.0])) < 4.0


def test_no_symmetry_while_a_side_has_no_signal():
    seconds = 45.0
    n = int(seconds * FS)
    t = np.arange(n) / FS
    x = emg(seconds, np.full((n, 2), REST_UV) * [1.0, GAIN_RIGHT], seed=9)
    x[(t >= 36.0) & (t < 40.0), 0] = 0.0  # the left electrode off
    bt, units, sym, _ = run(x)
    assert units[-1] == SYMMETRY_OWN_REST
    off = (bt >= 36.3) & (bt < 40.0)
    assert np.isnan(sym[off]).all()
    back = bt >= 41.0
    assert np.isfinite(sym[back]).all() and not math.isnan(np.median(sym[back]))
