"""The realistic virtual EMG (``sensors.virtual.signals``) against the truth it exposes and closed forms."""

import numpy as np
import pytest
from scipy import stats

from biofeedback.dsp import EmgProcessor, QualityFlag
from biofeedback.sensors.virtual.signals import (
    EPISODE_KINDS,
    BeatGenerator,
    EmgBody,
    EmgSynth,
    Heart,
    HeartScript,
    TensionScript,
)

FS = 1000.0


def generate(body: EmgBody, seconds: float, seed: int = 3, tension=(4.0, 2.5)) -> tuple[EmgSynth, np.ndarray, np.ndarray]:
    """``seconds`` of virtual EMG made as the sensor makes it, 50-sample frames."""
    heart = Heart(BeatGenerator(HeartScript(), np.random.default_rng(seed + 1)))
    synth = EmgSynth(FS, TensionScript.constant(*tension), np.random.default_rng(seed), body, heart)
    t = np.arange(int(seconds * FS)) / FS
    return synth, t, np.concatenate([synth.block(t[i:i + 50]) for i in range(0, t.size, 50)])


def outside(synth: EmgSynth, t: np.ndarray, kinds: tuple[str, ...]) -> np.ndarray:
    keep = np.ones(t.size, dtype=bool)
    for e in synth.episodes:
        if e.kind in kinds:
            keep &= ~((t >= e.start_s - 0.3) & (t < e.end_s + 0.3))
    return keep


def test_power_of_muscle_and_noise_floor_adds_up_to_the_exposed_truth_second_by_second():
    body = EmgBody(ecg_r_uv=(0.0, 0.0), mains_uv=0.0, noise_floor_uv=2.0)
    synth, t, x = generate(body, 600.0)
    keep = outside(synth, t, ("motion",))
    truth = synth.expected_rms_uv(t)
    # Independent Gaussian parts: powers add. Over 10 minutes (shrugs left out: a few seconds of 100 µV would
    # outweigh the rest, so their few independent samples decide the sum) the power matches within 2 %.
    calm = keep & outside(synth, t, ("shrug",))
    ratio = np.sum(x[calm] ** 2, axis=0) / np.sum(truth[calm] ** 2, axis=0)
    assert np.all(np.abs(ratio - 1) < 0.02), ratio
    # Second by second the RMS follows the truth (drift, bursts, talking, shrugs): a 1-s RMS of 20-450 Hz noise
    # scatters ~3.5 % (1/sqrt(2 B T)), so 95 % of seconds lie within 12 %.
    sec = (t // 1).astype(int)
    whole = np.bincount(sec, keep) == FS
    for c in range(2):
        rms = np.sqrt(np.bincount(sec, x[:, c] ** 2) / FS)[whole]
        expected = np.sqrt(np.bincount(sec, truth[:, c] ** 2) / FS)[whole]
        assert np.mean(np.abs(rms / expected - 1) < 0.12) > 0.95
        assert np.std(np.log(expected)) > 0.08  # the truth itself moves: drift and bursts are there


def test_drift_is_slow_and_of_the_size_given():
    body = EmgBody(drift_sd=0.1, drift_tau_s=30.0)
    synth = EmgSynth(FS, TensionScript.constant(5.0, 5.0), np.random.default_rng(8), body)
    t = np.arange(0.0, 6000.0, 1.0)
    log_drift = np.log(synth.drift_factor(t))
    assert abs(np.std(log_drift) / 0.1 - 1) < 0.2
    # Ornstein-Uhlenbeck: autocorrelation exp(-lag/tau), 0.37 at one time constant.
    r = np.corrcoef(log_drift[:-30], log_drift[30:])[0, 1]
    assert 0.2 < r < 0.55


def test_episodes_come_at_their_rates():
    body = EmgBody(bursts_per_min=2.0, talking_per_min=0.5, shrugs_per_min=0.3, motion_per_min=0.4)
    synth = EmgSynth(FS, TensionScript.constant(5.0, 5.0), np.random.default_rng(5), body)
    synth.muscle_uv(np.array([0.0, 3600.0]))
    for kind, per_min in zip(EPISODE_KINDS, (2.0, 0.5, 0.3, 0.4)):
        found = [e for e in synth.episodes if e.kind == kind and e.end_s < 3600.0]
        busy_min = (3600.0 - sum(e.end_s - e.start_s for e in found)) / 60.0
        lo, hi = stats.poisson.ppf([0.0005, 0.9995], per_min * busy_min)
        assert lo <= len(found) <= hi, (kind, len(found), per_min * busy_min)


def test_mains_hum_has_the_amplitude_given():
    body = EmgBody.clean()
    body = EmgBody(**{**body.__dict__, "mains_uv": 1.5})
    _, t, x = generate(body, 10.0, tension=(0.0, 0.0))
    spectrum = np.abs(np.fft.rfft(x[:, 0])) * 2 / t.size
    f = np.fft.rfftfreq(t.size, 1 / FS)
    assert spectrum[np.argmin(np.abs(f - 50.0))] == pytest.approx(1.5, rel=1e-3)
    assert spectrum[np.argmin(np.abs(f - 150.0))] == pytest.approx(0.3, rel=1e-3)


def test_motion_artefacts_are_what_the_chain_calls_motion_and_talking_is_not():
    body = EmgBody(motion_per_min=2.0, talking_per_min=1.0)
    synth, t, x = generate(body, 300.0)
    flagged = (EmgProcessor(FS).process(x).quality & QualityFlag.MOTION) != 0
    motion = ~outside(synth, t, ("motion",))
    inside = [flagged[(t >= e.start_s) & (t < e.end_s)].any() for e in synth.episodes if e.kind == "motion" and e.end_s < 300]
    assert len(inside) > 4 and np.mean(inside) >= 0.9
    assert flagged[~motion].mean() < 0.01
