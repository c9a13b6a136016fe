"""The feedback sound of a scripted session, rendered to a WAV file and checked from the WAV itself.

Tension (session time): resting 30 µV (target 0.8 x 30 = 24 µV), then in the relaxation 20 µV, rising
to 46, a plateau, falling to 12. The electrode comes off (both channels) during the plateau, when real
feedback would be loudest. From the WAV, per 100 ms window: RMS (loudness) and a zero-crossing pitch.
"""

from __future__ import annotations

import wave

import numpy as np

from biofeedback.relax.audio import CUE_HZ, SAMPLE_RATE_HZ, render_timeline, write_wav
from biofeedback.sensors.virtual import EmgBody, Faults, Scenario, TensionScript
from biofeedback.store import SessionReader
from biofeedback.stream import StreamKind
from tests.conftest import ARTIFACTS
from tests.relax.conftest import run_headless

TIMES = [0, 10, 12, 24, 42, 54, 80]
LEVELS = [30, 30, 20, 46, 46, 12, 12]
WINDOW_S = 0.1
LAG_S = 0.6
"""Link, envelope and smoothing delay between the scripted tension and the sound."""
SILENT = 0.005


def script(t):
    return np.interp(t, TIMES, LEVELS)


def ranks(x):
    return np.argsort(np.argsort(x)).astype(float)


def spearman(a, b) -> float:
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def test_sound_follows_tension_is_silent_at_target_and_pauses_while_the_electrode_is_off(make_protocol):
    proto = make_protocol(10, 50, 6)
    # The muscle activity alone (no drift, bursts or shrugs): the sound must follow the scripted tension.
    scenario = Scenario(devices=("open-emg",), tension=TensionScript(TIMES, LEVELS, LEVELS), body=EmgBody.clean(),
                        faults={"open-emg": Faults(electrode_off=[(31.0, 37.0, -1)])})
    path, session = run_headless(proto, scenario, 5.0)
    t0 = session.timeline[0][0]
    ARTIFACTS.mkdir(exist_ok=True)
    wav = write_wav(ARTIFACTS / "relax-feedback.wav",
                    render_timeline([(t - t0, fb, ph) for t, fb, ph in session.timeline]))

    with wave.open(str(wav)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, SAMPLE_RATE_HZ)
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2") / 32767.0
    n = int(WINDOW_S * SAMPLE_RATE_HZ)
    frames = x[: x.size // n * n].reshape(-1, n)
    t = t0 + (np.arange(len(frames)) + 0.5) * WINDOW_S
    rms = np.sqrt(np.mean(frames ** 2, axis=1))
    pitch = np.sum(np.diff(np.signbit(frames).astype(int), axis=1) != 0, axis=1) / 2 / WINDOW_S

    with SessionReader(path) as r:
        te, xe = r.samples(StreamKind.EMG)
        relax = next(e for e in r.events("phase") if e["label"] == "relaxation")
    off_t = te[np.abs(xe[:, 0] - 32767 * 0.05) < 0.01]
    off = (off_t.min(), off_t.max())
    assert 24 < off[0] and off[1] < 42 and off[1] - off[0] > 5, off  # inside the loud plateau
    r0, r1 = relax["t_s"], relax["t_s"] + relax["duration_s"]
    in_relax = (t > r0 + 1.0) & (t < r1)
    settled = (t < off[0]) | (t > off[1] + 3.0)
    lagged = script(t - LAG_S)

    quiet = in_relax & (lagged < 20) & (script(t) < 20) & settled
    assert quiet.sum() > 30 and np.all(rms[quiet] < SILENT), rms[quiet].max()

    loud = in_relax & (lagged > 30) & settled
    assert loud.sum() > 50 and np.all(rms[loud] > 0.05)
    assert spearman(pitch[loud], lagged[loud]) > 0.8
    assert spearman(rms[loud], lagged[loud]) > 0.8
    rising = loud & (t < 24)
    assert pitch[rising][-5:].mean() > 1.3 * pitch[rising][:5].mean()

    during = (t > off[0] + LAG_S) & (t < off[1])
    peak_hz = np.argmax(np.abs(np.fft.rfft(frames, axis=1)), axis=1) / WINDOW_S  # a beep may fill part of a window
    cue = np.abs(peak_hz - CUE_HZ) < 0.05 * CUE_HZ
    bad = ~((rms[during] < SILENT) | cue[during])
    assert not bad.any(), list(zip(t[during][bad], rms[during][bad], pitch[during][bad]))
    assert cue[(t > off[0]) & (t < off[0] + 2.0)].any(), "no pause cue when the electrode came off"
    assert (rms[during] < SILENT).mean() > 0.8
    with SessionReader(path) as r:
        paused = r.events("feedback-paused")
    assert any(p["t_s"] <= off[0] + 1.0 and p["t_s"] + p["duration_s"] >= off[1] - 0.5 and "electrode off" in p["label"]
               for p in paused), paused
