"""The feedback sound, synthesised in numpy (no sound card needed): a tone that follows tension, pacer chimes, a pause cue.

- Tension tone: silent at or below the target; above it, pitch rises from ``TONE_LOW_HZ`` over
  ``TONE_OCTAVES`` octaves and loudness from ``TONE_MIN_GAIN`` to ``TONE_MAX_GAIN`` as the feedback level
  goes from 0 to 1. Gain and pitch glide (``GLIDE_S``), so changes never click.
- Pause cue: while the feedback is paused the tone stops; a distinct double beep at ``CUE_HZ`` sounds when
  the pause starts and every ``CUE_REPEAT_S`` while it lasts.
- Pacer chimes (optional): a soft high note when an inhale starts, a lower one when an exhale starts.

``FeedbackSynth.render(n)`` is what the Qt audio device pulls from; ``render_timeline`` renders a
recorded timeline of states offline, and ``write_wav`` stores 16-bit mono PCM with the stdlib ``wave``.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np

from biofeedback.relax.feedback import OFF, PAUSED, Feedback
from biofeedback.relax.pacer import EXHALE, INHALE

SAMPLE_RATE_HZ = 22050
TONE_LOW_HZ = 220.0
TONE_OCTAVES = 1.5
TONE_MIN_GAIN = 0.12
TONE_MAX_GAIN = 0.5
GLIDE_S = 0.03
"""Time constant of the gain and pitch glides."""
CUE_HZ = 1200.0
CUE_BEEP_S = 0.08
CUE_GAP_S = 0.07
CUE_GAIN = 0.35
CUE_REPEAT_S = 4.0
CHIME_HZ = {INHALE: 660.0, EXHALE: 440.0}
CHIME_S = 0.35
CHIME_GAIN = 0.12


def tone_hz(level: float) -> float:
    """Pitch of the tension tone at feedback level 0-1."""
    return TONE_LOW_HZ * 2.0 ** (TONE_OCTAVES * min(1.0, max(0.0, level)))


def tone_gain(feedback: Feedback) -> float:
    if feedback.state in (OFF, PAUSED) or feedback.level <= 0:
        return 0.0
    return TONE_MIN_GAIN + (TONE_MAX_GAIN - TONE_MIN_GAIN) * min(1.0, feedback.level)


def pause_cue(rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """The pause cue: two short beeps at ``CUE_HZ`` with soft edges."""
    n = int(CUE_BEEP_S * rate_hz)
    t = np.arange(n) / rate_hz
    edge = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.005)
    beep = CUE_GAIN * edge * np.sin(2 * np.pi * CUE_HZ * t)
    return np.concatenate([beep, np.zeros(int(CUE_GAP_S * rate_hz)), beep])


def chime(phase: str, rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """A soft decaying note for the start of an inhale or exhale."""
    t = np.arange(int(CHIME_S * rate_hz)) / rate_hz
    return CHIME_GAIN * np.minimum(1.0, t / 0.01) * np.exp(-t / 0.1) * np.sin(2 * np.pi * CHIME_HZ[phase] * t)


class FeedbackSynth:
    """Stateful synthesiser: ``set`` the newest feedback and pacer phase, ``render`` samples (float32, -1..1)."""

    def __init__(self, rate_hz: int = SAMPLE_RATE_HZ, chimes: bool = True) -> None:
        self.rate_hz = rate_hz
        self.chimes = chimes
        self.feedback = Feedback()
        self._pacer_phase: str | None = None
        self._phase = 0.0
        self._gain = 0.0
        self._freq = TONE_LOW_HZ
        self._queue: list[np.ndarray] = []
        self._cue_left = 0
        """Samples until the pause cue repeats."""
        self._alpha = 1.0 - math.exp(-1.0 / (GLIDE_S * rate_hz))

    def set(self, feedback: Feedback, pacer_phase: str | None = None) -> None:
        """The newest state; a pause that starts queues the cue, a new pacer phase its chime."""
        if feedback.state == PAUSED and self.feedback.state != PAUSED:
            self._cue_left = 0
        self.feedback = feedback
        if pacer_phase != self._pacer_phase:
            if self.chimes and pacer_phase in CHIME_HZ and self._pacer_phase is not None:
                self._queue.append(chime(pacer_phase, self.rate_hz))
            self._pacer_phase = pacer_phase

    def _cues(self, n: int) -> np.ndarray:
        out = np.zeros(n)
        if self.feedback.state == PAUSED:
            if self._cue_left <= 0:
                self._queue.append(pause_cue(self.rate_hz))
                self._cue_left = int(CUE_REPEAT_S * self.rate_hz)
            self._cue_left -= n
        kept = []
        for sound in self._queue:
            k = min(n, sound.size)
            out[:k] += sound[:k]
            if sound.size > n:
                kept.append(sound[n:])
        self._queue = kept
        return out

    def render(self, n: int) -> np.ndarray:
        """The next ``n`` samples."""
        target_gain, target_freq = tone_gain(self.feedback), tone_hz(self.feedback.level)
        a = self._alpha
        decay = (1.0 - a) ** np.arange(1, n + 1)
        gain = target_gain + (self._gain - target_gain) * decay
        freq = target_freq + (self._freq - target_freq) * decay
        phase = self._phase + 2 * np.pi * np.cumsum(freq) / self.rate_hz
        self._gain, self._freq, self._phase = float(gain[-1]), float(freq[-1]), float(phase[-1] % (2 * np.pi))
        out = gain * np.sin(phase) + self._cues(n)
        return np.clip(out, -1.0, 1.0).astype(np.float32)


def render_timeline(timeline: list[tuple[float, Feedback, str | None]], rate_hz: int = SAMPLE_RATE_HZ,
                    chimes: bool = False) -> np.ndarray:
    """Audio of a timeline of (session s, feedback, pacer phase), each state held until the next, in session time."""
    synth = FeedbackSynth(rate_hz, chimes=chimes)
    parts = []
    for (t, fb, ph), (t_next, _, _) in zip(timeline[:-1], timeline[1:]):
        synth.set(fb, ph)
        parts.append(synth.render(max(0, int(round(t_next * rate_hz)) - int(round(t * rate_hz)))))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def write_wav(path: str | Path, samples: np.ndarray, rate_hz: int = SAMPLE_RATE_HZ) -> Path:
    """16-bit mono PCM WAV, 0600 whatever the umask or an earlier file's mode (the sound follows a client's tension:
    health data); a missing folder is created 0700."""
    from biofeedback.store.errors import StoreError
    from biofeedback.store.paths import private_dir, private_file

    path = Path(path)
    private_dir(path.parent)
    try:
        with open(private_file(path), "r+b") as f, wave.open(f, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate_hz)
            w.writeframes(to_pcm16(samples))
    except OSError as exc:
        raise StoreError(f"cannot write the feedback sound to {path} ({exc.strerror or exc}); choose another file")
    return path
