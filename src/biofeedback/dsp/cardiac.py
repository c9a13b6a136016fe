"""Cardiac artefact removal from surface EMG of the upper trapezius: adaptive per-channel QRS template subtraction.

At rest the trapezius gives a few µV RMS, and the heart's QRS complex leaks into both channels at 10-200 µV
(Drake & Callaghan 2006, J Electromyogr Kinesiol 16:175; Marker & Maluf 2014, J Electromyogr Kinesiol 24:902).
The 20-450 Hz band-pass keeps about 5 % of its power, enough to double a resting RMS. A 30 Hz high-pass
cleans rest but also removes the part of the contraction's power below 30 Hz.

``CardiacArtefactRemover`` works on raw EMG (µV), before the EMG chain's band-pass, causally and per sample,
with state kept across blocks (any split of a recording gives the same output). Every channel has its own
detector and template ("armed" separately), since left and right pick the heart up unequally:

1. **QRS found in the EMG itself.** The channel is band-passed to the QRS band (``QRS_BAND_HZ``), squared,
   divided by a slowly tracking level and smoothed (5 ms). A crossing of ``DETECT_RATIO`` outside the refractory
   period starts a search; the beat is placed at the peak, once no higher value has come for ``LOCATE_MS``.
2. **Hold-back.** The output lags the input by ``hold_ms`` (default ``HOLD_MS``, the delay the removal adds).
3. **Fit per beat**: when the output reaches the beat's window, the template is moved by up to
   ``ALIGN_RADIUS_MS`` to where it correlates best with the 20 Hz high-passed input seen so far, and scaled by
   its least-squares gain there; a beat correlating less than ``MIN_CORRELATION`` is left alone. A false
   detection in a burst therefore takes out at most the burst's projection on the template (a fraction of a
   per cent of its power), and a contraction keeps its power.
4. **Template per channel**: the inverse-energy weighted mean of the last ``TEMPLATE_BEATS`` aligned, detrended
   segments [-``PRE_MS``, +``POST_MS``], used only while they are consistent (``MIN_CONSISTENCY``): a channel
   without a cardiac artefact is never touched, and a contraction does not overwrite the template. Where the heart
   sensor times the segments, it is also armed from those agreeing with that mean, trimmed of the rest
   (``MIN_TRIMMED_CONSISTENCY``), so segments from contractions do not keep the QRS of short rests from arming it.
   Once armed, a segment joins only if it correlates with the template; ``RESET_AFTER_REJECTS`` rejections in a row
   start a new template beside the old one (electrodes moved).
5. **Heart sensor** (``add_beats``: Polar R-peaks or HRS beat times): a QRS joins the template only if a
   heart-sensor beat confirms it (within ``CONFIRM_TOLERANCE_S``, after the sensor's running clock offset: the
   mean of heart beat - QRS over the QRS that look cardiac, i.e. correlate with the armed template). Once the offset
   is known (the latest cardiac QRS lay within ``ALIGN_RADIUS_MS`` of where it put it), confirmation is tightened to
   ``ALIGN_RADIUS_MS`` (a detection in a contraction then passes by chance about 6 % of the time instead of half),
   and a heart-sensor beat with no detected QRS near it teaches the template with its own segment (aligned by
   correlation), so the dips between contractions, where the detector is blind, still teach it. The decision
   waits ``CONFIRM_WAIT_S``: heart beats arriving within ``ARRIVAL_BOUND_S`` of their time teach the template as
   they would offline.
6. **Heart-sensor beats place a subtraction** where the EMG's own detector found no QRS within
   ``CONFIRM_TOLERANCE_S`` (after a contraction its running level is blind for seconds, so the short dips between
   contractions keep their artefact otherwise): once the template is armed, a beat is fitted as a detected one
   (step 3, around where the clock offset puts its QRS, ``LOCATE_MS`` after it) and left alone if it correlates
   poorly, so a contraction keeps its power. The QRS found there moves the clock offset; it is subtracted only if
   the previous cardiac QRS also lay within ``ALIGN_RADIUS_MS`` of where the offset put it (while the clock offset
   is still being learnt, e.g. HRS times 0.35 s late, nothing is placed). A beat is placed only if it is known
   before its QRS onset leaves the hold-back (``HOLD_MS`` - ``QRS_ONSET_MS`` = 30 ms after the QRS): always offline
   (the analysis hands beats ahead, ``remove_cardiac_artefact(..., beats_s=...)`` has them all), live almost never.

Why the heart sensor's beats hardly ever place the subtraction live: they arrive 0.2-1 s after the beat (an ECG
R-peak detector's confirmation, a Polar ECG frame of 73 samples, an HRS notification), past the 30 ms the hold-back
leaves, and holding the EMG back that long breaks the feedback budget (DESIGN.md). Live, a missed QRS stays in the
tension trace; the session's analysis afterwards, which has every beat, removes it. The QRS in the EMG remains the
timing reference where it is found: it is the artefact itself, at the EMG's own sample rate and clock.

Evaluation (``tools/eval_cardiac.py``, real EMG + MIT-BIH ECG, 50 µV R-wave left, 30 µV right; README section
"Cardiac artefact"): rest RMS +4.8 % over the PLUX resting recording, with or without heart beats (the EMG's own
detector finds them all). In the PLUX fatigue file, whose rest is mostly short dips between contractions, the heart
beats take the right channel from +6.5 % (as raw) to +1.3 %. The left opens with a contraction 1.5 s in and has about
1 s of rest in 10 s: its template segments are mostly contraction, which kept its untrimmed consistency under
``MIN_CONSISTENCY`` for the whole recording (+23.9 %, as raw); trimmed, it arms at 43.5 s, once 8 QRS from its rests
agree, and its rests after 45 s come out at +4.3 % (raw +27 %). The six QRS in its rests before then stay (no
template can be learnt sooner without arming one from fewer segments, and 4 segments without ECG reached a trimmed
consistency of 0.52): +9.7 % over the file, +5.5 % for both channels. Not met there.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numba import njit
from scipy import signal

QRS_BAND_HZ = (15.0, 45.0)
"""Band of the detection signal: most of the band-passed QRS power, little of the EMG's (50-150 Hz)."""
FIT_HIGHPASS_HZ = 20.0
"""Beats are aligned and scaled on the EMG high-passed here (2nd order, the EMG chain's lower edge), where the
artefact that reaches the tension lives; the template subtracted is that of the raw EMG."""
PRE_MS = 60.0
"""Template start before the beat (the detection's peak lies 0-25 ms after the R peak, and each beat is aligned by
up to ``ALIGN_RADIUS_MS``)."""
QRS_ONSET_MS = 30.0
"""The QRS starts at most this long before the beat (98 % of the band-passed QRS power of MIT-BIH 100 lies within
-25..+30 ms of the R peak); ``PRE_MS`` leaves room to align. A beat placed after its onset had to leave is
counted in ``report()['late_beats']``."""
POST_MS = 90.0
"""Template end after the beat."""
LOCATE_MS = 20.0
"""A beat is placed at the peak of the detection signal once no higher value has come for this long ..."""
MAX_SEARCH_MS = 60.0
"""... or this long after the signal crossed its threshold."""
ALIGN_RADIUS_MS = 25.0
"""Each beat is moved by up to this much to where its scaled template takes the most energy out."""
HOLD_MS = 60.0
"""Default hold-back, the delay the removal adds to the live chain: a beat is placed ``LOCATE_MS`` after its peak,
and must be known before its QRS onset leaves (``QRS_ONSET_MS``), with a margin for alignment
(``tools/eval_cardiac.py --holds`` shows rest RMS against it)."""
TAPER_MS = 5.0
"""The template's ends are tapered (half cosine) so that subtracting it leaves no step."""
DETECT_RATIO = 12.0
"""Detection threshold on the smoothed detection signal, in units of each channel's running level."""
DETECT_AFTER_S = 0.5
"""No detection before the running level has seen this much signal."""
LEVEL_TIME_S = 2.0
"""Time constant of each channel's running level of the QRS-band power."""
LEVEL_CLIP = 4.0
"""A sample enters the running level at most this many times the level (a QRS hardly moves it)."""
SMOOTH_MS = 5.0
REFRACTORY_S = 0.25
"""No second beat within this time (heart rate ≤ 240 bpm)."""
TEMPLATE_BEATS = 32
"""The template is the weighted mean of the last this many segments that joined it (its noise: the EMG's / 5.7)."""
ARM_BEATS = 8
"""Segments needed before a channel's template is first used (or replaced). The consistency of ``n`` segments
without a common shape is 1/n in expectation, but each is aligned by up to ``ALIGN_RADIUS_MS`` to the candidate, which
lifts it: over the real recordings of ``tools/eval_cardiac.py`` without ECG, the candidates reached 0.37-0.43 at 4
segments (four detections in a contraction armed a false template) and at most 0.31 from 8 on."""
MIN_CONSISTENCY = 0.3
"""A channel's template is (re)made from its segments only while the energy of their weighted mean is at least this
fraction of the segments' harmonic mean energy (1/``TEMPLATE_BEATS`` for EMG alone, near 1 for a clear artefact):
a channel without a consistent cardiac shape is left alone, and a contraction does not overwrite the template."""
MIN_TRIMMED_CONSISTENCY = 0.5
"""Where a segment is timed by a heart sensor (a QRS it confirms, or its own beat), the template is also armed from
the segments correlating at least ``MIN_CORRELATION`` with the weighted mean of all (the bar a segment must pass to
join an armed template), if at least ``ARM_BEATS`` are kept and their own weighted mean reaches this consistency.
Segments from contractions (detections confirmed while the heart sensor's clock offset was unknown, heart beats that
fall in a contraction) then no longer dilute the few QRS of short rests between contractions, as they do in the
untrimmed ``MIN_CONSISTENCY``, whose rule still holds beside this one. Kept segments are chosen for agreeing with the
candidate, so segments without a common shape reach more than untrimmed: over the recordings of
``tools/eval_cardiac.py`` without ECG, at most 0.34 from 8 kept on with the heart sensor's timing (MIT-BIH beat times),
0.46 without it (so the rule needs it); the real QRS of the eval's fatigue file at a 50 µV R-wave, 0.49-0.77. The
untrimmed candidate stays the reference each new segment is aligned to: aligned to the trimmed one, segments without a
common shape agreed better (a burst recording without ECG armed with beats 0.35 s late)."""
MIN_CORRELATION = 0.5
"""Once a channel is armed, a segment joins its template only if it correlates this well with it."""
RESET_AFTER_REJECTS = 8
"""After this many rejected segments in a row (electrodes moved?) a new template is learnt beside the old one,
which stays in use until the new one is consistent."""
MAX_GAIN = 2.0
"""The least-squares gain of the template per beat is clipped to 0..this."""
CONFIRM_TOLERANCE_S = 0.2
"""A heart-sensor beat this close to a QRS found in the EMG confirms it (HRS beat times are rebuilt from RR
sums and aligned to arrival times, so they can be off by tens of ms)."""
HEART_CONTEXT_S = 1.0
"""A QRS found in the EMG must be confirmed to teach the template when a heart-sensor beat lies within this
time of it (the heart sensor is on)."""
OFFSET_WEIGHT = 0.1
"""Weight of each QRS in the running mean offset between the heart sensor's clock and the QRS in the EMG."""
CONFIRM_WAIT_S = 2.5
"""A QRS joins the template (or not) this long after it (this delays template updates, not the output). The
nearest heart-sensor beat is looked for up to ``HEART_CONTEXT_S`` after the QRS, so beats that arrive within
``ARRIVAL_BOUND_S`` of their time give the same output live as offline."""
ARRIVAL_BOUND_S = CONFIRM_WAIT_S - HEART_CONTEXT_S
"""How late a heart-sensor beat may reach ``add_beats`` and still count as it would offline (HRS: ~1 s)."""
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


# Columns of the per-channel integer state of the kernel.
_CUR, _SEARCH_END, _BEST_POS, _LAST, _NPEND, _SEARCH_START, _FITTED, _NRECENT = range(8)
# Columns of the per-channel float state: ``_HEART_DONE`` the last heart-sensor beat considered for placement,
# ``_HEART_NEXT`` the next one (NaN: to be looked up, inf: none yet), ``_HEART_GAP`` |heart beat - QRS| after the
# running offset at the latest cardiac QRS (detected and confirmed, or found at a heart beat; samples, inf at first),
# ``_HEART_LEARNT`` the last heart-sensor beat considered for teaching the template where the detector found no QRS.
_SMOOTH, _BEST_VAL, _GAIN, _OFFSET, _HEART_DONE, _HEART_NEXT, _HEART_GAP, _HEART_LEARNT = range(8)


@njit(cache=True, inline="always")
def _sos_step(sos: np.ndarray, zi: np.ndarray, c: int, x: float) -> float:
    for s in range(sos.shape[0]):
        y = sos[s, 0] * x + zi[c, s, 0]
        zi[c, s, 0] = sos[s, 1] * x - sos[s, 4] * y + zi[c, s, 1]
        zi[c, s, 1] = sos[s, 2] * x - sos[s, 5] * y
        x = y
    return x


@njit(cache=True)
def _fit(hp: np.ndarray, c: int, beat: int, pre: int, last: int, template: np.ndarray, radius: int,
         min_corr: float, gain_max: float) -> tuple[int, float]:
    """Channel ``c``'s ``beat`` moved by up to ``radius`` samples to where the high-passed input up to sample
    ``last`` correlates best with the high-passed ``template``. Returns the position and the least-squares gain of
    the template there (at most ``gain_max``; 0 where the correlation is below ``min_corr``)."""
    size = hp.shape[0]
    width = template.shape[0]
    best = beat
    best_corr = -np.inf
    best_gain = 0.0
    for step in range(2 * radius + 1):
        b = beat + (step + 1) // 2 * (1 if step % 2 else -1)  # 0, +1, -1, +2, ...: ties stay near the detection
        span = min(width, last - (b - pre) + 1)
        sxy = 0.0
        sxx = 0.0
        syy = 0.0
        for k in range(span):
            v = hp[(b - pre + k) % size, c]
            sxy += v * template[k]
            sxx += v * v
            syy += template[k] * template[k]
        if sxx > 0 and syy > 0 and sxy / np.sqrt(sxx * syy) > best_corr:
            best_corr = sxy / np.sqrt(sxx * syy)
            best = b
            best_gain = sxy / syy
    return best, min(best_gain, gain_max) if best_corr >= min_corr else 0.0


@njit(cache=True)
def _weighted_mean(ring_raw: np.ndarray, ring_hp: np.ndarray, ring_e: np.ndarray, c: int,
                   keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Inverse-energy weighted mean of channel ``c``'s ring segments ``j`` with ``keep[j]`` (raw and high-passed), the
    energy of the high-passed mean, and the sum of the weights."""
    width = ring_raw.shape[2]
    weights = 0.0
    for j in range(keep.size):
        if keep[j]:
            weights += 1.0 / ring_e[c, j]
    mean_raw = np.empty(width)
    mean_hp = np.empty(width)
    energy = 0.0
    for k in range(width):
        a = 0.0
        b = 0.0
        for j in range(keep.size):
            if keep[j]:
                a += ring_raw[c, j, k] / ring_e[c, j]
                b += ring_hp[c, j, k] / ring_e[c, j]
        mean_raw[k] = a / weights
        mean_hp[k] = b / weights
        energy += mean_hp[k] * mean_hp[k]
    return mean_raw, mean_hp, energy, weights


@njit(cache=True)
def _learn(hist: np.ndarray, hp: np.ndarray, c: int, beat: int, pre: int, t_raw: np.ndarray, t_hp: np.ndarray,
           c_raw: np.ndarray, c_hp: np.ndarray, taper: np.ndarray, ring_raw: np.ndarray, ring_hp: np.ndarray,
           ring_e: np.ndarray, cints: np.ndarray, params: np.ndarray, heart: bool) -> None:
    """Offer channel ``c``'s segment around ``beat`` to its template (rules in the module text); ``heart``: the
    segment is timed by a heart-sensor beat, so the trimmed rule (``MIN_TRIMMED_CONSISTENCY``) may arm it too.

    ``cints`` columns: segments in the ring, next ring slot, armed, rejections in a row, relearning."""
    min_corr, arm, reset_after, c_min, c_trim = params[11], int(params[13]), int(params[14]), params[16], params[24]
    size = hist.shape[0]
    width = t_raw.shape[1]
    slots = ring_raw.shape[1]
    seg = np.empty(width)
    seg_hp = np.empty(width)
    energy = 0.0
    for k in range(width):
        seg[k] = hist[(beat - pre + k) % size, c]
        seg_hp[k] = hp[(beat - pre + k) % size, c]
        energy += seg_hp[k] * seg_hp[k]
    if energy <= 0:
        return
    if cints[c, 2] and not cints[c, 4]:
        sxy = 0.0
        syy = 0.0
        for k in range(width):
            sxy += seg_hp[k] * t_hp[c, k]
            syy += t_hp[c, k] * t_hp[c, k]
        if not sxy >= min_corr * np.sqrt(energy * syy):
            cints[c, 3] += 1
            if cints[c, 3] >= reset_after:  # electrodes moved? learn a new template beside the old one
                cints[c, 4] = 1
                cints[c, 0] = 0
                cints[c, 1] = 0
            return
    cints[c, 3] = 0
    head = (seg[0] + seg[1] + seg[2] + seg[3]) / 4.0
    tail = (seg[width - 1] + seg[width - 2] + seg[width - 3] + seg[width - 4]) / 4.0
    p = cints[c, 1]
    for k in range(width):
        ring_raw[c, p, k] = (seg[k] - head - (tail - head) * (k - 1.5) / (width - 4.0)) * taper[k]
        ring_hp[c, p, k] = seg_hp[k]
    ring_e[c, p] = energy
    cints[c, 1] = (p + 1) % slots
    cints[c, 0] = min(cints[c, 0] + 1, slots)
    n = cints[c, 0]
    # candidate: the inverse-energy weighted mean of the segments (a burst or contraction weighs little);
    # consistency: its energy over the harmonic mean energy of the segments (1/n for EMG alone, 1 for a
    # repeated shape, about k/n for k clean beats among segments of much stronger EMG)
    full_raw, full_hp, mean_energy, weights = _weighted_mean(ring_raw, ring_hp, ring_e, c, np.ones(n, dtype=np.bool_))
    consistent = n >= arm and mean_energy * weights / n >= c_min
    for k in range(width):
        c_raw[c, k] = full_raw[k]
        c_hp[c, k] = full_hp[k]
    if heart:
        # trimmed (segments timed by the heart sensor): only those correlating with the candidate as well as a
        # segment must with an armed template; their mean is the candidate, and it is consistent if at least ``arm``
        # of them are kept and its consistency over them reaches ``c_trim``
        keep = np.zeros(n, dtype=np.bool_)
        m = 0
        for j in range(n):
            sxy = 0.0
            for k in range(width):
                sxy += ring_hp[c, j, k] * full_hp[k]
            keep[j] = sxy >= min_corr * np.sqrt(ring_e[c, j] * mean_energy)
            m += keep[j]
        if not consistent and m >= arm:
            trim_raw, trim_hp, trimmed_energy, weights = _weighted_mean(ring_raw, ring_hp, ring_e, c, keep)
            if trimmed_energy * weights / m >= c_trim:
                for k in range(width):
                    t_raw[c, k] = trim_raw[k]
                    t_hp[c, k] = trim_hp[k]
                cints[c, 2] = 1
                cints[c, 4] = 0
    if consistent:
        for k in range(width):
            t_raw[c, k] = full_raw[k]
            t_hp[c, k] = full_hp[k]
        cints[c, 2] = 1
        cints[c, 4] = 0


@njit(cache=True)
def cardiac_block(
    x: np.ndarray, out: np.ndarray, start: int, hist: np.ndarray, hp: np.ndarray, hp_sos: np.ndarray,
    hp_zi: np.ndarray, qrs_sos: np.ndarray, qrs_zi: np.ndarray, level: np.ndarray, floats: np.ndarray,
    ints: np.ndarray, pending: np.ndarray, recent: np.ndarray, heart: np.ndarray, t_raw: np.ndarray, t_hp: np.ndarray,
    c_raw: np.ndarray, c_hp: np.ndarray, taper: np.ndarray, ring_raw: np.ndarray, ring_hp: np.ndarray,
    ring_e: np.ndarray, cints: np.ndarray, counts: np.ndarray, params: np.ndarray,
) -> None:
    """``CardiacArtefactRemover`` over a block ``x`` (n, channels) of raw µV whose first sample is number ``start``;
    writes ``out`` (n, channels): the input ``hold`` samples earlier, minus each channel's scaled template at its
    beats. Every channel has its own detector, template and state (row ``c`` of each state array).

    ``params``: hold, pre, post, locate, refractory (samples), level weight, smoothing weight, threshold, first
    level weight, confirm wait (samples), confirm tolerance (samples), min correlation, template slots, arm,
    reset after, alignment radius (samples), consistency, maximum gain, heart context (samples), detection start,
    longest search (samples), QRS onset before the beat (samples), when a heart-sensor beat is placed and the
    latest it may be placed (samples after the QRS its clock gives), trimmed consistency.
    ``counts`` columns: beats subtracted, template segments confirmed by a heart-sensor beat, late beats, beats
    placed by the heart sensor and subtracted.
    """
    hold, pre, post, locate, refractory = int(params[0]), int(params[1]), int(params[2]), int(params[3]), int(params[4])
    level_w, smooth_w, threshold, warm_w = params[5], params[6], params[7], params[8]
    wait, tol, min_corr, radius = int(params[9]), params[10], params[11], int(params[15])
    gain_max, context, detect_from, max_search = params[17], params[18], int(params[19]), int(params[20])
    onset, place_at, place_by = int(params[21]), int(params[22]), int(params[23])
    n, ch = x.shape
    size = hist.shape[0]
    for i in range(n):
        a = start + i
        o = a - hold
        for c in range(ch):
            hist[a % size, c] = x[i, c]
            hp[a % size, c] = _sos_step(hp_sos, hp_zi, c, x[i, c])
            d = _sos_step(qrs_sos, qrs_zi, c, x[i, c])
            d2 = d * d
            s = d2 / level[c] if level[c] > 0 else 0.0
            if level[c] > 0:
                d2 = min(d2, LEVEL_CLIP * level[c])
            level[c] += max(level_w, warm_w / (a + 1.0)) * (d2 - level[c])
            floats[c, _SMOOTH] += smooth_w * (s - floats[c, _SMOOTH])
            sm = floats[c, _SMOOTH]
            # QRS detection: threshold crossing, then the peak of the detection signal within ``locate``
            if ints[c, _SEARCH_END] >= 0:
                if sm > floats[c, _BEST_VAL]:
                    floats[c, _BEST_VAL] = sm
                    ints[c, _BEST_POS] = a
                    ints[c, _SEARCH_END] = min(a + locate, ints[c, _SEARCH_START] + max_search)
                if a >= ints[c, _SEARCH_END]:
                    beat = ints[c, _BEST_POS]
                    ints[c, _SEARCH_END] = -1
                    ints[c, _LAST] = beat
                    ints[c, _CUR] = beat
                    ints[c, _FITTED] = 0
                    if ints[c, _NPEND] < pending.shape[1]:
                        pending[c, ints[c, _NPEND]] = beat
                        ints[c, _NPEND] += 1
                    recent[c, ints[c, _NRECENT] % recent.shape[1]] = beat
                    ints[c, _NRECENT] += 1
            elif sm > threshold and a - ints[c, _LAST] >= refractory and a >= detect_from:
                ints[c, _SEARCH_END] = a + locate
                ints[c, _SEARCH_START] = a
                ints[c, _BEST_POS] = a
                floats[c, _BEST_VAL] = sm
            # template decisions due now (a heart-sensor beat has had ``wait`` to arrive)
            while ints[c, _NPEND] > 0 and a >= pending[c, 0] + post + radius + wait:
                beat = pending[c, 0]
                if cints[c, 0] > 0:
                    beat = _fit(hp, c, beat, pre, beat + post + radius - 1, c_hp[c], radius, -np.inf, gain_max)[0]
                # the heart sensor's beat nearest to where its clock puts this QRS (``_OFFSET``: the running mean of
                # heart beat - QRS, so that HRS times aligned to arrival still confirm)
                expected = beat + floats[c, _OFFSET]
                k = np.searchsorted(heart, expected)
                gap = np.inf
                if k < heart.shape[0]:
                    gap = heart[k] - expected
                if k > 0 and expected - heart[k - 1] < abs(gap):
                    gap = heart[k - 1] - expected
                heart_on = abs(gap) <= context
                # once the clock offset is known (the latest cardiac QRS lay within the alignment radius of where it
                # put it), a QRS is confirmed only within that radius, and only confirmed QRS move the offset
                near = radius if floats[c, _HEART_GAP] <= radius else tol
                # the clock offset is learnt only from QRS that look cardiac (before the template is armed: any; then
                # those correlating with it), so that detections in a contraction do not drag it off
                if heart_on and (cints[c, 2] == 0 or _fit(hp, c, pending[c, 0], pre, pending[c, 0] + post + radius - 1,
                                                          t_hp[c], radius, min_corr, gain_max)[1] > 0):
                    if abs(gap) <= near:
                        floats[c, _HEART_GAP] = abs(gap)
                    if abs(gap) <= near or near > radius:
                        floats[c, _OFFSET] += OFFSET_WEIGHT * max(-context, min(context, gap))
                if abs(gap) <= near or not heart_on:
                    _learn(hist, hp, c, beat, pre, t_raw, t_hp, c_raw, c_hp, taper, ring_raw, ring_hp, ring_e, cints,
                           params, heart_on)
                    if heart_on:
                        counts[c, 1] += 1
                for j in range(ints[c, _NPEND] - 1):
                    pending[c, j] = pending[c, j + 1]
                ints[c, _NPEND] -= 1
            # a heart-sensor beat whose QRS (where the clock offset puts it) is due for a template decision, with no
            # QRS detected within ``tol`` of it: once the offset is known (the latest cardiac QRS lay within the
            # alignment radius of where it put it), its segment teaches the template as a confirmed QRS does
            while heart.shape[0] > 0:
                k = np.searchsorted(heart, floats[c, _HEART_LEARNT], side="right")
                if k >= heart.shape[0] or not a >= heart[k] - floats[c, _OFFSET] + post + radius + wait:
                    break
                floats[c, _HEART_LEARNT] = heart[k]
                q = int(np.floor(heart[k] - floats[c, _OFFSET] + 0.5))
                found = False
                for j in range(min(ints[c, _NRECENT], recent.shape[1])):
                    found = found or abs(recent[c, j] - q) <= tol
                if not found and floats[c, _HEART_GAP] <= radius and q - pre - radius > a - size:
                    if cints[c, 0] > 0:
                        q = _fit(hp, c, q, pre, q + post + radius - 1, c_hp[c], radius, -np.inf, gain_max)[0]
                    _learn(hist, hp, c, q, pre, t_raw, t_hp, c_raw, c_hp, taper, ring_raw, ring_hp, ring_e, cints,
                           params, True)
                    counts[c, 1] += 1
            # a heart-sensor beat due now (``place_at`` after the QRS its clock gives) where the detector found no QRS
            # within ``tol``, in time (by ``place_by``: its QRS onset still held back) and with an armed template: where
            # the template correlates within the alignment radius, the QRS found there moves the clock offset as a
            # detected one does, and is subtracted if the previous cardiac QRS also lay within the radius
            while heart.shape[0] > 0:
                if np.isnan(floats[c, _HEART_NEXT]):
                    k = np.searchsorted(heart, floats[c, _HEART_DONE], side="right")
                    floats[c, _HEART_NEXT] = heart[k] if k < heart.shape[0] else np.inf
                expected = floats[c, _HEART_NEXT] - floats[c, _OFFSET]
                if not a >= expected + place_at:
                    break
                floats[c, _HEART_DONE] = floats[c, _HEART_NEXT]
                floats[c, _HEART_NEXT] = np.nan
                q = int(np.floor(expected + 0.5))
                if a <= q + place_by and cints[c, 2] and ints[c, _SEARCH_END] < 0 and abs(q - ints[c, _LAST]) > tol:
                    pos, gain = _fit(hp, c, q, pre, a, t_hp[c], radius, min_corr, gain_max)
                    if gain > 0 and floats[c, _HEART_GAP] <= radius:
                        ints[c, _CUR] = pos
                        ints[c, _LAST] = pos  # the detector's refractory period: this QRS is not found twice
                        ints[c, _FITTED] = 1
                        floats[c, _GAIN] = gain
                        counts[c, 0] += 1
                        counts[c, 3] += 1
                        if o > pos - onset:
                            counts[c, 2] += 1
                    if gain > 0:
                        floats[c, _HEART_GAP] = abs(q - pos)
                        floats[c, _OFFSET] += OFFSET_WEIGHT * (q - pos)
            # output: the sample ``hold`` earlier, minus the current beat's scaled template
            cur = ints[c, _CUR]
            if cur >= 0 and ints[c, _FITTED] == 0 and o >= cur - pre - radius:
                gain = 0.0
                if cints[c, 2]:
                    cur, gain = _fit(hp, c, cur, pre, a, t_hp[c], radius, min_corr, gain_max)
                ints[c, _CUR] = cur
                ints[c, _FITTED] = 1
                floats[c, _GAIN] = gain
                if gain > 0:
                    counts[c, 0] += 1
                    if o > cur - onset:
                        counts[c, 2] += 1  # placed after its QRS began to leave: subtracted from here on
            y = hist[o % size, c] if o >= 0 else 0.0
            if ints[c, _FITTED] == 1 and cur - pre <= o < cur + post:
                y -= floats[c, _GAIN] * t_raw[c, o - cur + pre]
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
        radius = round(ALIGN_RADIUS_MS * ms)
        wait = round(CONFIRM_WAIT_S * fs_hz)
        self._size = wait + self.pre + self.post + 2 * radius + self.hold + round(0.1 * fs_hz)
        self._hp_sos = np.ascontiguousarray(signal.butter(2, FIT_HIGHPASS_HZ, "highpass", fs=fs_hz, output="sos"))
        self._qrs_sos = np.ascontiguousarray(signal.butter(2, QRS_BAND_HZ, "bandpass", fs=fs_hz, output="sos"))
        width = self.pre + self.post
        ramp = max(1, round(TAPER_MS * ms))
        self._taper = np.ones(width)
        self._taper[:ramp] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
        self._taper[width - ramp:] = self._taper[:ramp][::-1]
        self._params = np.array([
            self.hold, self.pre, self.post, round(LOCATE_MS * ms), round(REFRACTORY_S * fs_hz),
            1.0 / (LEVEL_TIME_S * fs_hz), 1.0 / (SMOOTH_MS * ms), DETECT_RATIO, 1.0, wait,
            CONFIRM_TOLERANCE_S * fs_hz, MIN_CORRELATION, TEMPLATE_BEATS, ARM_BEATS, RESET_AFTER_REJECTS,
            radius, MIN_CONSISTENCY, MAX_GAIN, HEART_CONTEXT_S * fs_hz, round(DETECT_AFTER_S * fs_hz),
            round(MAX_SEARCH_MS * ms), round(QRS_ONSET_MS * ms),
            min(round(LOCATE_MS * ms), self.hold - round(QRS_ONSET_MS * ms)), self.hold - round(QRS_ONSET_MS * ms),
            MIN_TRIMMED_CONSISTENCY,
        ], dtype=np.float64)
        self._counts = np.zeros((self.channels, 4), dtype=np.int64)
        """Per channel, since the start (kept across resets): beats subtracted, template segments confirmed by a
        heart-sensor beat, beats placed too late to be subtracted whole, beats placed by the heart sensor."""
        self.reset()
        self.process(np.empty((0, self.channels)))  # compile, or load the cached kernel, now

    @property
    def delay_ms(self) -> float:
        """The delay the removal adds to the EMG chain, ms."""
        return self.hold / self.fs_hz * 1000.0

    def reset(self) -> None:
        """Forget the signal, as after a gap (templates are learnt again from the next beats); the counts of
        ``report`` stay."""
        ch, width = self.channels, self.pre + self.post
        self._n = 0
        self._hist = np.zeros((self._size, ch))
        self._hp = np.zeros((self._size, ch))
        self._hp_zi = np.zeros((ch, self._hp_sos.shape[0], 2))
        self._qrs_zi = np.zeros((ch, self._qrs_sos.shape[0], 2))
        self._level = np.zeros(ch)
        self._floats = np.tile(np.array([0.0, 0.0, 0.0, 0.0, -np.inf, np.nan, np.inf, -np.inf]), (ch, 1))
        self._ints = np.tile(np.array([-1, -1, 0, -(10**12), 0, 0, 0, 0], dtype=np.int64), (ch, 1))
        self._pending = np.zeros((ch, 16), dtype=np.int64)
        self._recent = np.zeros((ch, 16), dtype=np.int64)
        """Per channel, the latest QRS detected in the EMG (a ring): a heart-sensor beat near one teaches nothing
        more."""
        self._heart = np.zeros(0)
        self.template_uv = np.zeros((ch, width))
        """Per channel: the QRS template in use (raw µV, detrended, tapered), ``PRE_MS`` before to ``POST_MS``
        after the beat; zeros until the channel is armed."""
        self._t_hp = np.zeros((ch, width))
        self._c_raw = np.zeros((ch, width))
        self._c_hp = np.zeros((ch, width))
        self._ring_raw = np.zeros((ch, TEMPLATE_BEATS, width))
        self._ring_hp = np.zeros((ch, TEMPLATE_BEATS, width))
        self._ring_e = np.ones((ch, TEMPLATE_BEATS))
        self._cints = np.zeros((ch, 5), dtype=np.int64)

    def add_beats(self, sample_positions: np.ndarray) -> None:
        """Heart-sensor beats (R-peak or HRS beat times) as positions in this remover's input samples (float).

        A beat handed over within ``ARRIVAL_BOUND_S`` of when it happened teaches the template as it would offline;
        it places a subtraction only if handed over before its QRS onset leaves the hold-back (module text, step 6).
        Beats handed over ahead give the output of one call with all of them, for any split of the input; beats older
        than the history are dropped."""
        p = np.asarray(sample_positions, dtype=float).ravel()
        p = p[np.isfinite(p)]
        kept = np.concatenate((self._heart, p))
        self._heart = np.sort(kept[kept >= self._n - self._size])
        self._floats[:, _HEART_NEXT] = np.nan  # looked up again among the new beats

    @property
    def samples_in(self) -> int:
        """Input samples since the start or the last reset."""
        return self._n

    def process(self, samples_uv: np.ndarray) -> np.ndarray:
        """Raw EMG (n, channels) µV in; the same rows ``hold`` samples earlier (zeros before the start), cleaned."""
        x = np.ascontiguousarray(samples_uv, dtype=np.float64)
        out = np.empty_like(x)
        cardiac_block(x, out, self._n, self._hist, self._hp, self._hp_sos, self._hp_zi, self._qrs_sos, self._qrs_zi,
                      self._level, self._floats, self._ints, self._pending, self._recent, self._heart, self.template_uv,
                      self._t_hp, self._c_raw, self._c_hp, self._taper, self._ring_raw, self._ring_hp, self._ring_e,
                      self._cints, self._counts, self._params)
        self._n += x.shape[0]
        return out

    def methods(self) -> tuple[CardiacMethod, ...]:
        """Per channel, what ran so far."""
        subtracted, confirmed = self._counts[:, 0], self._counts[:, 1]
        return tuple(
            CardiacMethod.TEMPLATE_NONE_FOUND if subtracted[c] == 0
            else CardiacMethod.TEMPLATE_HEART if confirmed[c] > 0 else CardiacMethod.TEMPLATE_EMG
            for c in range(self.channels))

    def report(self) -> dict:
        """What ran, per channel, for the recording: method, beats subtracted, template segments confirmed by a
        heart-sensor beat, beats found too late to be subtracted whole, beats subtracted where a heart-sensor beat
        placed them (``heart_placed``, counted in ``beats_subtracted`` too); the added delay."""
        return {"delay_ms": self.delay_ms, "methods": [str(m) for m in self.methods()],
                "beats_subtracted": self._counts[:, 0].tolist(), "heart_confirmed": self._counts[:, 1].tolist(),
                "late_beats": self._counts[:, 2].tolist(), "heart_placed": self._counts[:, 3].tolist()}


@dataclass(frozen=True, slots=True)
class CardiacRemoval:
    """Result of ``remove_cardiac_artefact``."""

    emg_uv: np.ndarray
    """Cleaned raw EMG, same shape and time base as the input, µV."""
    methods: tuple[CardiacMethod, ...]
    report: dict


def remove_cardiac_artefact(emg_uv: np.ndarray, fs_hz: float, beats_s: np.ndarray | None = None) -> CardiacRemoval:
    """Remove the cardiac artefact from a whole recording of raw EMG, with the code of the live chain.

    ``emg_uv``: raw (not band-passed) EMG in µV, shape (n,) or (n, channels), one continuous stretch (cut a
    recording at its gaps and clean each piece). ``fs_hz``: its sample rate. ``beats_s``: heart-sensor beat times
    (ECG R-peaks or HRS beat times) in s from the first sample, if known; a constant offset of their clock is
    learnt; they confirm which QRS teach the template and place a subtraction where the EMG shows no QRS of its own
    (module text, steps 5 and 6). Returns the cleaned EMG, lined up with the input sample for sample (the live
    hold-back is taken out), the method per channel (``CardiacMethod``) and ``report``: ``methods``,
    ``beats_subtracted``, ``heart_confirmed``, ``late_beats``, ``heart_placed`` per channel and ``delay_ms`` (the
    delay it adds live). Below 500 Hz it falls back to the 30 Hz high-pass (``CardiacMethod.HIGHPASS``, 4th-order
    Butterworth, causal).

    Example: ``out = remove_cardiac_artefact(emg, 1000.0, beats_s=r_peaks_s); out.emg_uv, out.methods``.
    """
    x = np.asarray(emg_uv, dtype=float)
    if x.ndim not in (1, 2) or x.shape[0] == 0:
        raise ValueError(f"emg_uv must be samples (n,) or samples × channels (n, c), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"emg_uv holds {int((~np.isfinite(x)).sum())} NaN or infinite values; cut the recording at "
                         "its gaps and clean each continuous piece")
    if not (np.isfinite(fs_hz) and fs_hz > 0):
        raise ValueError(f"fs_hz must be a positive sample rate in Hz, got {fs_hz}")
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
