"""Cardiac artefact removal from surface EMG of the upper trapezius: adaptive per-channel QRS template subtraction.

At rest the trapezius gives a few µV RMS, and the heart's QRS complex leaks into both channels at 10-200 µV
(Drake & Callaghan 2006, J Electromyogr Kinesiol 16:175; Marker & Maluf 2014, J Electromyogr Kinesiol 24:902).
The 20-450 Hz band-pass keeps about 5 % of its power, enough to double a resting RMS. A 30 Hz high-pass
cleans rest but also removes the part of the contraction's power below 30 Hz.

``CardiacArtefactRemover`` works on raw EMG (µV), before the EMG chain's band-pass, causally and per sample,
with state kept across blocks (any split of a recording gives the same output):

1. **QRS found in the EMG itself.** Each channel is band-passed to the QRS band (``QRS_BAND_HZ``) and squared,
   divided by a slowly tracking level of that channel, summed over channels and smoothed (5 ms). A crossing of
   ``DETECT_RATIO`` outside the refractory period opens a ``LOCATE_MS`` search; the beat is placed at the peak.
2. **Hold-back.** The output lags the input by ``hold_ms`` (default ``HOLD_MS``): a beat is known ``LOCATE_MS``
   after its QRS began to show, and its template must be subtracted from ``PRE_MS`` before the peak.
3. **Template per channel**: the mean of the linearly detrended raw segments [-``PRE_MS``, +``POST_MS``] around
   accepted beats (running mean over the first ``TEMPLATE_BEATS``, then exponential with weight
   1/``TEMPLATE_BEATS``). Subtracted once ``ARM_BEATS`` segments are in.
4. **What a segment must pass to join the template**: once the template is armed, correlation ≥
   ``MIN_CORRELATION`` with it (rejects contraction bursts and motion). With a heart sensor (``add_beats`` was
   called), also a heart-sensor beat within ``CONFIRM_TOLERANCE_S`` of it; the decision then waits
   ``CONFIRM_WAIT_S`` for the beat to arrive (an HRS notification comes up to ~1 s after its beat).
   ``RESET_AFTER_REJECTS`` rejections in a row restart the template (electrodes moved).

Why the heart sensor's beats do not place the subtraction live: they arrive 0.2-1 s after the beat (an ECG
R-peak detector's confirmation, an HRS notification), and holding the EMG back that long breaks the feedback
budget of 100-150 ms end to end (DESIGN.md). The QRS in the EMG is also the better timing reference: it is the
artefact itself, at the EMG's own sample rate and clock. The heart sensor decides which QRS found in the EMG
may teach the template.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numba import njit
from scipy import signal

QRS_BAND_HZ = (15.0, 45.0)
"""Band of the detection signal: most of the band-passed QRS power, little of the EMG's (50-150 Hz)."""
HOLD_MS = 70.0
"""Default hold-back, about ``PRE_MS`` + ``LOCATE_MS`` + ``ALIGN_RADIUS_MS``; the delay the removal adds to the live chain."""
PRE_MS = 30.0
"""Template start before the detection (about the R peak) (98 % of the band-passed QRS power of MIT-BIH 100 lies in -25..+30 ms)."""
POST_MS = 80.0
"""Template end after the detection."""
LOCATE_MS = 30.0
"""A beat is placed (aligned to the template) this long after the detection signal crosses its threshold."""
DETECT_RATIO = 12.0
"""Detection threshold on the smoothed detection signal, in units of each channel's running level."""
LEVEL_TIME_S = 2.0
"""Time constant of each channel's running level of the QRS-band power."""
LEVEL_CLIP = 4.0
"""A sample enters the running level at most this many times the level (a QRS hardly moves it)."""
SMOOTH_MS = 5.0
ALIGN_RADIUS_MS = 8.0
"""Once a template is armed, each beat is moved by up to this much to where it fits the template best."""
REFRACTORY_S = 0.25
"""No second beat within this time (heart rate ≤ 240 bpm)."""
TEMPLATE_BEATS = 8
ARM_BEATS = 4
MIN_CORRELATION = 0.5
RESET_AFTER_REJECTS = 8
CONFIRM_TOLERANCE_S = 0.2
"""A heart-sensor beat this close to a QRS found in the EMG confirms it (HRS beat times are rebuilt from RR
sums and aligned to arrival times, so they can be off by tens of ms)."""
CONFIRM_WAIT_S = 1.2
"""With a heart sensor, a QRS joins the template (or not) this long after its peak."""
MIN_TEMPLATE_FS_HZ = 500.0
"""Below this EMG rate the QRS cannot be placed to the millisecond: ``CardiacMethod.HIGHPASS`` instead."""
HIGHPASS_HZ = 30.0
"""The documented fallback: the EMG chain's band-pass starts here instead of at 20 Hz (Drake & Callaghan 2006)."""


class CardiacMethod(StrEnum):
    """How the cardiac artefact was handled on one channel (stored in the recording's meta ``cardiac``)."""

    TEMPLATE_HEART = "template, QRS confirmed by heart sensor"
    TEMPLATE_EMG = "template, QRS from EMG"
    TEMPLATE_NONE_FOUND = "template, no cardiac artefact found"
    HIGHPASS = "30 Hz high-pass"
    OFF = "off"


# Indices into the integer state vector of the kernel.
_CUR, _SEARCH_END, _BEST_POS, _LAST, _NPEND, _HEART_ON, _LATE = range(7)


@njit(cache=True, inline="always")
def _qrs_step(sos: np.ndarray, zi: np.ndarray, c: int, x: float) -> float:
    for s in range(sos.shape[0]):
        y = sos[s, 0] * x + zi[c, s, 0]
        zi[c, s, 0] = sos[s, 1] * x - sos[s, 4] * y + zi[c, s, 1]
        zi[c, s, 1] = sos[s, 2] * x - sos[s, 5] * y
        x = y
    return x


@njit(cache=True)
def _align(hist: np.ndarray, beat: int, pre: int, last: int, template: np.ndarray, accepted: np.ndarray, arm: int,
           radius: int) -> int:
    """``beat`` moved by up to ``radius`` samples to where subtracting the armed templates leaves the least energy
    (input and template each without their mean, over the part of the template span that reaches no further than sample ``last`` at any shift)."""
    size = hist.shape[0]
    best = beat
    best_fit = -np.inf
    span = min(template.shape[1], last - (beat + radius - pre) + 1)  # the same span at every shift
    means = np.zeros(template.shape[0])
    for c in range(template.shape[0]):
        for k in range(span):
            means[c] += template[c, k] / span
    for step in range(2 * radius + 1):
        b = beat + (step + 1) // 2 * (1 if step % 2 else -1)  # 0, +1, -1, +2, ...: no template, no move
        fit = 0.0
        for c in range(hist.shape[1]):
            if accepted[c] < arm:
                continue
            mean = 0.0
            for k in range(span):
                mean += hist[(b - pre + k) % size, c] / span
            for k in range(span):
                v = hist[(b - pre + k) % size, c] - mean
                fit += v * (2.0 * (template[c, k] - means[c]) - v)
        if fit > best_fit:
            best_fit = fit
            best = b
    return best


@njit(cache=True)
def _learn(hist: np.ndarray, beat: int, pre: int, post: int, template: np.ndarray, accepted: np.ndarray,
           rejects: np.ndarray, heart_ok: bool, needs_heart: bool, min_corr: float, template_beats: int,
           arm: int, reset_after: int, confirmed: np.ndarray, radius: int) -> None:
    """Offer the detrended raw segment around ``beat`` to each channel's template (gates in the module text)."""
    size = hist.shape[0]
    width = pre + post
    ch = hist.shape[1]
    seg = np.empty(width)
    beat = _align(hist, beat, pre, beat + post - 1, template, accepted, arm, radius)
    for c in range(ch):
        for k in range(width):
            seg[k] = hist[(beat - pre + k) % size, c]
        head = (seg[0] + seg[1] + seg[2] + seg[3]) / 4.0
        tail = (seg[width - 1] + seg[width - 2] + seg[width - 3] + seg[width - 4]) / 4.0
        for k in range(width):
            seg[k] -= head + (tail - head) * (k - 1.5) / (width - 4.0)
        ok = heart_ok or not needs_heart
        if ok and accepted[c] >= arm:
            sxy = 0.0
            sxx = 0.0
            syy = 0.0
            for k in range(width):
                sxy += seg[k] * template[c, k]
                sxx += seg[k] * seg[k]
                syy += template[c, k] * template[c, k]
            ok = sxx > 0 and syy > 0 and sxy >= min_corr * np.sqrt(sxx * syy)
        if ok:
            accepted[c] += 1
            rejects[c] = 0
            if needs_heart:
                confirmed[c] += 1
            w = 1.0 / min(accepted[c], template_beats)
            for k in range(width):
                template[c, k] += w * (seg[k] - template[c, k])
        else:
            rejects[c] += 1
            if rejects[c] >= reset_after:
                accepted[c] = 0
                rejects[c] = 0
                for k in range(width):
                    template[c, k] = 0.0


@njit(cache=True)
def cardiac_block(
    x: np.ndarray, out: np.ndarray, start: int, hist: np.ndarray, qrs_sos: np.ndarray, qrs_zi: np.ndarray,
    level: np.ndarray, smooth: np.ndarray, ints: np.ndarray, pending: np.ndarray, heart: np.ndarray,
    template: np.ndarray, accepted: np.ndarray, rejects: np.ndarray, confirmed: np.ndarray, subtracted: np.ndarray,
    params: np.ndarray,
) -> None:
    """``CardiacArtefactRemover`` over a block ``x`` (n, channels) of raw µV whose first sample is number ``start``;
    writes ``out`` (n, channels): the input ``hold`` samples earlier, minus the armed templates at known beats.

    ``params``: hold, pre, post, locate, refractory (samples), level weight, smoothing weight, threshold, first
    level weight, confirm wait (samples), confirm tolerance (samples), min correlation, template beats, arm,
    reset after, alignment radius (samples).
    """
    hold, pre, post, locate, refractory = int(params[0]), int(params[1]), int(params[2]), int(params[3]), int(params[4])
    level_w, smooth_w, threshold, warm_w = params[5], params[6], params[7], params[8]
    wait, tol, min_corr = int(params[9]), params[10], params[11]
    template_beats, arm, reset_after, radius = int(params[12]), int(params[13]), int(params[14]), int(params[15])
    n, ch = x.shape
    size = hist.shape[0]
    for i in range(n):
        a = start + i
        s = 0.0
        for c in range(ch):
            hist[a % size, c] = x[i, c]
            d = _qrs_step(qrs_sos, qrs_zi, c, x[i, c])
            d2 = d * d
            w = max(level_w, warm_w / (a + 1.0))
            if level[c] > 0:
                s += d2 / level[c]
                d2 = min(d2, LEVEL_CLIP * level[c])
            level[c] += w * (d2 - level[c])
        smooth[0] += smooth_w * (s - smooth[0])
        sm = smooth[0]
        if ints[_SEARCH_END] >= 0 and a >= ints[_SEARCH_END]:  # enough of the QRS seen: place it
            beat = _align(hist, ints[_BEST_POS], pre, a, template, accepted, arm, radius)
            ints[_SEARCH_END] = -1
            ints[_LAST] = beat
            ints[_CUR] = beat
            if beat - pre < a - hold:
                ints[_LATE] += 1  # its first samples have left: subtracted from here on
            if ints[_NPEND] < pending.shape[0]:
                pending[ints[_NPEND]] = beat
                ints[_NPEND] += 1
        elif ints[_SEARCH_END] < 0 and sm > threshold * ch and a - ints[_LAST] >= refractory and a >= size:
            ints[_SEARCH_END] = a + locate
            ints[_BEST_POS] = a
        # template decisions due now
        due = wait if ints[_HEART_ON] else 0
        while ints[_NPEND] > 0 and a >= pending[0] + post + due:
            beat = pending[0]
            k = np.searchsorted(heart, beat)
            heart_ok = (k < heart.shape[0] and heart[k] - beat <= tol) or (k > 0 and beat - heart[k - 1] <= tol)
            _learn(hist, beat, pre, post, template, accepted, rejects, heart_ok, ints[_HEART_ON] == 1, min_corr,
                   template_beats, arm, reset_after, confirmed, radius)
            for k in range(ints[_NPEND] - 1):
                pending[k] = pending[k + 1]
            ints[_NPEND] -= 1
        # output: the sample ``hold`` earlier, minus the current beat's template where armed
        o = a - hold
        cur = ints[_CUR]
        for c in range(ch):
            y = hist[o % size, c] if o >= 0 else 0.0
            if cur >= 0 and cur - pre <= o < cur + post and accepted[c] >= arm:
                y -= template[c, o - cur + pre]
                if o == cur:
                    subtracted[c] += 1
            out[i, c] = y


class CardiacArtefactRemover:
    """Streaming removal of the cardiac artefact from raw EMG (n, channels) in µV; output delayed by ``hold_ms``."""

    def __init__(self, fs_hz: float, channels: int = 2, hold_ms: float = HOLD_MS) -> None:
        if fs_hz < MIN_TEMPLATE_FS_HZ:
            raise ValueError(f"template subtraction needs EMG at >= {MIN_TEMPLATE_FS_HZ:.0f} Hz, got {fs_hz:g} Hz; "
                             "use the 30 Hz high-pass (EmgProcessor(cardiac='highpass'))")
        self.fs_hz = float(fs_hz)
        self.channels = int(channels)
        ms = self.fs_hz / 1000.0
        self.hold = max(0, round(hold_ms * ms))
        self.pre, self.post = round(PRE_MS * ms), round(POST_MS * ms)
        wait = round(CONFIRM_WAIT_S * fs_hz)
        self._size = wait + self.pre + self.post + self.hold + round(0.1 * fs_hz)
        self._sos = np.ascontiguousarray(signal.butter(2, QRS_BAND_HZ, "bandpass", fs=fs_hz, output="sos"))
        self._params = np.array([
            self.hold, self.pre, self.post, round(LOCATE_MS * ms), round(REFRACTORY_S * fs_hz),
            1.0 / (LEVEL_TIME_S * fs_hz), 1.0 / (SMOOTH_MS * ms), DETECT_RATIO, 1.0, wait,
            CONFIRM_TOLERANCE_S * fs_hz, MIN_CORRELATION, TEMPLATE_BEATS, ARM_BEATS, RESET_AFTER_REJECTS,
            round(ALIGN_RADIUS_MS * ms),
        ], dtype=np.float64)
        self.reset()
        self.process(np.empty((0, self.channels)))  # compile, or load the cached kernel, now

    @property
    def delay_ms(self) -> float:
        """The delay the removal adds to the EMG chain, ms."""
        return self.hold / self.fs_hz * 1000.0

    def reset(self) -> None:
        """Forget everything, as after a gap (templates are learnt again from the next beats)."""
        ch = self.channels
        self._n = 0
        self._hist = np.zeros((self._size, ch))
        self._zi = np.zeros((ch, self._sos.shape[0], 2))
        self._level = np.zeros(ch)
        self._smooth = np.zeros(2)
        self._ints = np.array([-1, -1, 0, -(10**12), 0, 0, 0], dtype=np.int64)
        self._pending = np.zeros(16, dtype=np.int64)
        self._heart = np.zeros(0)
        self.template_uv = np.zeros((ch, self.pre + self.post))
        """Per channel: the current QRS template (raw µV, detrended), ``PRE_MS`` before to ``POST_MS`` after the peak."""
        self._accepted = np.zeros(ch, dtype=np.int64)
        self._rejects = np.zeros(ch, dtype=np.int64)
        self._confirmed = np.zeros(ch, dtype=np.int64)
        self._subtracted = np.zeros(ch, dtype=np.int64)

    def add_beats(self, sample_positions: np.ndarray) -> None:
        """Heart-sensor beats (R-peak or HRS beat times) as positions in this remover's input samples (float)."""
        p = np.asarray(sample_positions, dtype=float).ravel()
        p = p[np.isfinite(p)]
        self._ints[_HEART_ON] = 1
        kept = np.concatenate((self._heart, p))
        self._heart = np.sort(kept[kept >= self._n - self._size])  # older beats can confirm nothing any more

    @property
    def samples_in(self) -> int:
        """Input samples since the start or the last reset."""
        return self._n

    def process(self, samples_uv: np.ndarray) -> np.ndarray:
        """Raw EMG (n, channels) µV in; the same rows ``hold`` samples earlier (zeros before the start), cleaned."""
        x = np.ascontiguousarray(samples_uv, dtype=np.float64)
        out = np.empty_like(x)
        cardiac_block(x, out, self._n, self._hist, self._sos, self._zi, self._level, self._smooth, self._ints,
                      self._pending, self._heart, self.template_uv, self._accepted, self._rejects, self._confirmed,
                      self._subtracted, self._params)
        self._n += x.shape[0]
        return out

    def methods(self) -> tuple[CardiacMethod, ...]:
        """Per channel, what ran so far."""
        return tuple(
            CardiacMethod.TEMPLATE_NONE_FOUND if self._subtracted[c] == 0
            else CardiacMethod.TEMPLATE_HEART if self._confirmed[c] > 0 else CardiacMethod.TEMPLATE_EMG
            for c in range(self.channels))

    def report(self) -> dict:
        """What ran, per channel, for the recording: method, beats subtracted, template beats confirmed by the
        heart sensor, added delay."""
        return {"delay_ms": self.delay_ms, "methods": [str(m) for m in self.methods()],
                "beats_subtracted": self._subtracted.tolist(), "heart_confirmed": self._confirmed.tolist(),
                "late_beats": int(self._ints[_LATE])}


@dataclass(frozen=True, slots=True)
class CardiacRemoval:
    """Result of ``remove_cardiac_artefact``."""

    emg_uv: np.ndarray
    """Cleaned raw EMG, same shape and time base as the input, µV."""
    methods: tuple[CardiacMethod, ...]
    report: dict


def remove_cardiac_artefact(emg_uv: np.ndarray, fs_hz: float, beats_s: np.ndarray | None = None) -> CardiacRemoval:
    """Remove the cardiac artefact from a whole recording of raw EMG (n,) or (n, channels) in µV, with the live
    chain's code (``CardiacArtefactRemover``); ``beats_s``: heart-sensor beat times in s from the first EMG sample,
    if known. The output is shifted back by the hold-back, so it lines up with the input sample for sample.
    Below 500 Hz it falls back to the 30 Hz high-pass (``CardiacMethod.HIGHPASS``, 4th-order Butterworth, causal)."""
    x = np.asarray(emg_uv, dtype=float)
    two_d = x.reshape(x.shape[0], -1)
    if fs_hz < MIN_TEMPLATE_FS_HZ:
        sos = signal.butter(4, HIGHPASS_HZ, "highpass", fs=fs_hz, output="sos")
        y = signal.sosfilt(sos, two_d, axis=0)
        methods = (CardiacMethod.HIGHPASS,) * two_d.shape[1]
        return CardiacRemoval(y.reshape(x.shape), methods, {"delay_ms": 0.0, "methods": [str(m) for m in methods]})
    remover = CardiacArtefactRemover(fs_hz, two_d.shape[1])
    if beats_s is not None:
        remover.add_beats(np.asarray(beats_s, dtype=float) * fs_hz)
    y = remover.process(np.concatenate((two_d, np.zeros((remover.hold, two_d.shape[1])))))[remover.hold:]
    return CardiacRemoval(y.reshape(x.shape), remover.methods(), remover.report())
