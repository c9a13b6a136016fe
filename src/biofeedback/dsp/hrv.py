"""Heart-rate variability: RR artefact correction, live per-beat metrics, stress and autonomic indices.

All intervals are in ms, times in s, heart rate in beats per minute (bpm).

- ``correct_rr``: artefact detection and correction of Lipponen & Tarvainen (2019), the method of
  Kubios HRV and of neurokit2 ``signal_fixpeaks(method="kubios")``; raw and corrected values side by
  side with one ``RrFlag`` per beat.
- ``rmssd``, ``sdnn``, ``pnn50``, ``mean_hr_bpm``, ``poincare_sd1_sd2``: Task Force (1996) definitions,
  as neurokit2 ``hrv_time`` / ``hrv_nonlinear`` compute them (SDNN and SD1/SD2 with ddof=1; pNN50 over
  the number of intervals).
- ``frequency_hrv``: VLF, LF and HF power (ms²), LF and HF in normalised units and LF/HF (Task Force 1996),
  with its ``FrequencySettings`` in the result; ``lf_hf_ratio`` is its LF/HF. Defaults: cubic spline at 4 Hz,
  linear detrend, Welch with 64 s (256-sample) Hann segments and 50 % overlap, 300 points/Hz; VLF 0-0.04,
  LF 0.04-0.15, HF 0.15-0.4 Hz.
- ``baevsky_stress_index``: SI = AMo / (2 · Mo · MxDMn) (Baevsky & Chernikova 2017), 50 ms bins as in
  Kubios, in 1/s²; ``kubios_stress_index`` is its square root √SI, in 1/s, the value Kubios HRV reports as
  "Stress index". Two quantities, two names: see ``HEART_QUANTITIES``.
- ``pns_index``, ``sns_index``: this project's PNS and SNS indices: the equal-weight mean of z-scores of
  Kubios's choice of parameters against published 5-min supine norms (``NORMS``). Kubios publishes neither
  its norms nor its weights, so these are not Kubios's PNS/SNS indices and are not interchangeable with them.
- ``LiveHrv``: the streaming chain (correction with a 5-beat look-ahead, rolling metrics over a 60 s window;
  √SI shown raw, no z-scores: the norms are for 5-min recordings).
  Its decisions near an artefact may differ from ``correct_rr`` over a whole recording, which sees
  45 beats on either side; offline analysis should use ``correct_rr``.
- ``hrv_windows``: offline neurokit2 time, frequency and non-linear HRV over 5-minute windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numba import njit
from scipy import interpolate, signal

if TYPE_CHECKING:
    import pandas as pd

# Lipponen & Tarvainen (2019) constants, as published and as in neurokit2.
LT_C1 = 0.13
LT_C2 = 0.17
LT_ALPHA = 5.2
LT_THRESHOLD_BEATS = 91
LT_MEDIAN_BEATS = 11

STRESS_INDEX_BIN_MS = 50.0
"""Histogram bin width for Baevsky's stress index (Kubios HRV user guide)."""
LIVE_WINDOW_S = 60.0
LIVE_LOOKAHEAD_BEATS = 5
"""Beats that must follow a beat before the live corrector decides on it. The classifier itself looks two
beats ahead; with fewer than ~5 its centred thresholds, truncated at the newest beat, flag normal beats."""
LIVE_CONTEXT_BEATS = 91
"""Intervals the live corrector sees when it decides on one beat: decided ones, then the undecided."""
MIN_BEATS_FOR_STRESS_INDEX = 20
MIN_LF_HF_S = 120.0
"""Shortest RR series for LF/HF: two cycles of the lowest LF frequency need 50 s; we ask for 2 min."""
HRV_WINDOW_S = 300.0
"""Standard short-term HRV window (Task Force 1996)."""


class RrFlag:
    """Per-beat artefact flags of ``correct_rr``; 0 means a normal beat, kept as measured."""

    ECTOPIC = 1 << 0
    """Beat moved to the midpoint of its neighbours."""
    LONG_SHORT = 1 << 1
    """Too long or too short an interval; beat moved to the midpoint of its neighbours."""
    MISSED = 1 << 2
    """A beat was missed inside this interval; one was inserted at its midpoint."""
    EXTRA = 1 << 3
    """This beat is spurious and was removed: its interval merges into the next one."""


@dataclass(frozen=True, slots=True)
class RrCorrection:
    """Raw and corrected RR intervals side by side, with one flag per raw interval."""

    raw_ms: np.ndarray
    flags: np.ndarray
    """``RrFlag`` bits per raw interval (uint8)."""
    corrected_ms: np.ndarray
    """Per raw interval, the corrected interval ending at the same beat; NaN where the beat was removed."""
    nn_ms: np.ndarray
    """The corrected series for HRV, inserted beats included (may differ in length from ``raw_ms``)."""
    nn_source: np.ndarray
    """For each ``nn_ms`` value, the index of the raw interval whose end beat closes it."""


@njit(cache=True, inline="always")
def _sorts_before(a: float, b: float) -> bool:
    """The order of ``numpy.sort``: by value, NaN last."""
    return a < b or (a == a and b != b)


@njit(cache=True)
def _rolling_quantiles(x: np.ndarray, width: int, qs: np.ndarray) -> np.ndarray:
    """Centred rolling quantiles of ``x`` (n,), windows truncated at the ends, linear interpolation: pandas
    ``rolling(width, center=True, min_periods=1).quantile(q)``. Shape (len(qs), n).

    A sorted copy of the window slides along the series, one value in and one out per step (O(width) each).
    """
    n = x.size
    half = width // 2
    out = np.empty((qs.size, n))
    window = np.empty(width)
    count = start = stop = 0
    for j in range(n):
        while start < j - half:  # the window of j is x[j - half : j + width - half], truncated at the ends
            v = x[start]
            k = 0
            while not (window[k] == v or (v != v and window[k] != window[k])):
                k += 1
            for k in range(k, count - 1):
                window[k] = window[k + 1]
            count -= 1
            start += 1
        while stop < min(j + width - half, n):
            v = x[stop]
            k = count
            while k > 0 and _sorts_before(v, window[k - 1]):
                window[k] = window[k - 1]
                k -= 1
            window[k] = v
            count += 1
            stop += 1
        for m in range(qs.size):
            pos = qs[m] * (count - 1)
            lo = int(np.floor(pos))
            hi = min(lo + 1, count - 1)
            out[m, j] = window[lo] + (window[hi] - window[lo]) * (pos - lo)
    return out


@njit(cache=True)
def _threshold(x: np.ndarray) -> np.ndarray:
    """Time-varying threshold Th = α·QD of |x| over the centred 91-beat window (QD: quartile deviation)."""
    q = _rolling_quantiles(np.abs(x), LT_THRESHOLD_BEATS, np.array([0.25, 0.75]))
    return LT_ALPHA * (q[1] - q[0]) / 2.0


@njit(cache=True)
def _normalised(x: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """x / threshold, NaN where the threshold is 0."""
    out = np.full(x.size, np.nan)
    for k in range(x.size):
        if threshold[k] != 0:
            out[k] = x[k] / threshold[k]
    return out


def _find_artifacts(peaks_ms: np.ndarray) -> dict[str, list[int]]:
    """Classify beats (indices into ``peaks_ms``) as in Lipponen & Tarvainen (2019), Figure 1."""
    rr = np.empty(peaks_ms.size)
    rr[1:] = peaks_ms[1:] - peaks_ms[:-1]
    rr[0] = rr[1:].mean()
    drrs = np.empty(rr.size)
    drrs[1:] = rr[1:] - rr[:-1]
    drrs[0] = drrs[1:].mean()  # numpy's pairwise sum, as neurokit2; the rest is compiled
    kind = _classify_beats(rr, drrs)
    return {name: np.flatnonzero(kind == code).tolist() for code, name in enumerate(_ARTIFACT_KINDS, start=1)}


_ARTIFACT_KINDS = ("ectopic", "missed", "extra", "longshort")


@njit(cache=True)
def _classify_beats(rr: np.ndarray, drrs: np.ndarray) -> np.ndarray:
    """The decision rules of Lipponen & Tarvainen (2019), Figure 1, as neurokit2 applies them, on RR and dRR.

    Returns a code per beat: 0 normal, else 1 + the index of its kind in ``_ARTIFACT_KINDS``.
    """
    n = rr.size
    kind = np.zeros(n, dtype=np.int8)
    d = _normalised(drrs, _threshold(drrs))
    first = 0
    while first < n and abs(d[first]) <= 1:  # the first beat past the dRR threshold, or with no threshold
        first += 1
    if first >= n - 2:
        return kind  # every beat is normal; the median-based thresholds are not needed
    med = _rolling_quantiles(rr, LT_MEDIAN_BEATS, np.array([0.5]))[0]
    m = rr - med
    for k in range(n):
        if m[k] < 0:
            m[k] *= 2.0
    t2 = _threshold(m)
    m = _normalised(m, t2)
    s1 = np.empty(n)
    s2 = np.empty(n)
    for k in range(n):
        # neighbours with numpy "reflect" padding by 2: index -1 is 1, index n is n - 2, n + 1 is n - 3
        prev1 = d[abs(k - 1)]
        next1 = d[k + 1] if k + 1 < n else d[2 * n - k - 3]
        next2 = d[k + 2] if k + 2 < n else d[2 * n - k - 4]
        s1[k] = np.maximum(prev1, next1) if d[k] > 0 else (np.minimum(prev1, next1) if d[k] < 0 else 0.0)
        s2[k] = np.minimum(next1, next2) if d[k] >= 0 else (np.maximum(next1, next2) if d[k] < 0 else 0.0)
    i = first
    while i < n - 2:
        if abs(d[i]) <= 1:
            i += 1
            continue
        if (d[i] > 1 and s1[i] < -LT_C1 * d[i] - LT_C2) or (d[i] < -1 and s1[i] > -LT_C1 * d[i] + LT_C2):
            kind[i] = 1
            i += 1
            continue
        if not (abs(d[i]) > 1 or abs(m[i]) > 3):  # only when dRR is NaN (zero threshold)
            i += 1
            continue
        last = i + 1 if abs(d[i + 1]) < abs(d[i + 2]) else i
        for j in range(i, last + 1):  # as neurokit2: each candidate advances i once
            long_beat = d[j] > 1 and s2[j] < -1
            short_beat = d[j] < -1 and s2[j] > 1
            if not (long_beat or short_beat or abs(m[j]) > 3):
                i += 1
                continue
            if short_beat and abs(rr[j] + rr[j + 1] - med[j]) < t2[j]:
                kind[j] = 3
            elif long_beat and abs(rr[j] / 2 - med[j]) < t2[j]:
                kind[j] = 2
            else:
                kind[j] = 4
            i += 1
    return kind


def _shift(source: list[int], targets: list[int], step: int) -> list[int]:
    for s in source:
        targets = [u + step if u > s else u for u in targets]
    return sorted(set(targets))


def _correct_artifacts(
    found: dict[str, list[int]], peaks: np.ndarray, origin: np.ndarray, beat_flags: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Remove extra beats, insert missed ones, move misplaced ones; ``origin`` maps beats to raw beats."""
    extra, missed = found["extra"], found["missed"]
    ectopic, longshort = found["ectopic"], found["longshort"]
    if extra:
        beat_flags[origin[extra][origin[extra] >= 0]] |= RrFlag.EXTRA
        peaks, origin = np.delete(peaks, extra), np.delete(origin, extra)
        missed, ectopic, longshort = (_shift(extra, x, -1) for x in (missed, ectopic, longshort))
    if missed:
        idx = np.array([m for m in missed if 1 < m < peaks.size], dtype=int)
        beat_flags[origin[idx][origin[idx] >= 0]] |= RrFlag.MISSED
        peaks = np.insert(peaks, idx, (peaks[idx - 1] + peaks[idx]) / 2.0)
        origin = np.insert(origin, idx, -1)
        ectopic, longshort = (_shift(missed, x, 1) for x in (ectopic, longshort))
    for kind, flag in ((ectopic, RrFlag.ECTOPIC), (longshort, RrFlag.LONG_SHORT)):
        idx = np.array([m for m in kind if 1 < m < peaks.size - 1], dtype=int)
        if idx.size:
            beat_flags[origin[idx][origin[idx] >= 0]] |= flag
            moved = peaks.copy()
            moved[idx] = (peaks[idx - 1] + peaks[idx + 1]) / 2.0
            order = np.argsort(moved, kind="stable")
            peaks, origin = moved[order], origin[order]
    return peaks, origin


def correct_rr(rr_ms: np.ndarray, iterative: bool = True) -> RrCorrection:
    """Detect and correct RR artefacts (Lipponen & Tarvainen 2019, J Med Eng Technol 43:173-181).

    Repeated until the number of artefacts stops falling, as Kubios and neurokit2 do.
    """
    raw = np.asarray(rr_ms, dtype=float)
    peaks = np.concatenate(([0.0], np.cumsum(raw)))
    origin = np.arange(peaks.size)
    beat_flags = np.zeros(peaks.size, dtype=np.uint8)
    if raw.size >= 4:
        found = _find_artifacts(peaks)
        new_peaks, new_origin = _correct_artifacts(found, peaks, origin, beat_flags)
        count = sum(len(v) for v in found.values())
        while iterative and count:
            again = _find_artifacts(new_peaks)
            new_count = sum(len(v) for v in again.values())
            if new_count >= count:
                break
            count = new_count
            new_peaks, new_origin = _correct_artifacts(again, new_peaks, new_origin, beat_flags)
        peaks, origin = new_peaks, new_origin
    nn = np.diff(peaks)
    # An inserted beat's interval is closed by the next original beat (origins increase along the series).
    closing = np.minimum.accumulate(np.where(origin[1:] < 0, peaks.size, origin[1:])[::-1])[::-1]
    corrected = np.full(raw.size, np.nan)
    kept = origin[1:] > 0
    corrected[origin[1:][kept] - 1] = nn[kept]
    return RrCorrection(raw, beat_flags[1:], corrected, nn, closing - 1)


def rmssd(rr_ms: np.ndarray) -> float:
    """Root mean square of successive differences, ms (Task Force 1996)."""
    d = np.diff(np.asarray(rr_ms, dtype=float))
    return float(np.sqrt(np.mean(d * d))) if d.size else float("nan")


def sdnn(rr_ms: np.ndarray) -> float:
    """Standard deviation of NN intervals (ddof=1), ms (Task Force 1996)."""
    rr = np.asarray(rr_ms, dtype=float)
    return float(np.std(rr, ddof=1)) if rr.size > 1 else float("nan")


def pnn50(rr_ms: np.ndarray) -> float:
    """Percentage of successive differences > 50 ms over the number of NN intervals, % (Task Force 1996)."""
    rr = np.asarray(rr_ms, dtype=float)
    return float(100.0 * np.sum(np.abs(np.diff(rr)) > 50.0) / rr.size) if rr.size > 1 else float("nan")


def mean_hr_bpm(rr_ms: np.ndarray) -> float:
    """Mean of the beat-to-beat heart rate 60000/RR, bpm."""
    return float(np.mean(60000.0 / np.asarray(rr_ms, dtype=float)))


def poincare_sd1_sd2(rr_ms: np.ndarray) -> tuple[float, float]:
    """Poincaré SD1 and SD2 (ddof=1), ms (Brennan et al. 2001)."""
    rr = np.asarray(rr_ms, dtype=float)
    if rr.size < 3:
        return float("nan"), float("nan")
    x1 = (rr[:-1] - rr[1:]) / np.sqrt(2.0)
    x2 = (rr[:-1] + rr[1:]) / np.sqrt(2.0)
    return float(np.std(x1, ddof=1)), float(np.std(x2, ddof=1))


def _band_power(f: np.ndarray, p: np.ndarray, band: tuple[float, float]) -> float:
    """Trapezoid integral of the PSD over the closed band [lo, hi] (adjacent bands share the boundary bin)."""
    eps = 1e-9 * (f[1] - f[0])
    sel = (f >= band[0] - eps) & (f <= band[1] + eps)
    return float(np.trapezoid(p[sel], f[sel])) if sel.sum() > 1 else float("nan")


@dataclass(frozen=True, slots=True)
class FrequencySettings:
    """How the RR spectrum is estimated; the defaults follow Task Force (1996) and Kubios HRV's conventions.

    The RR series (each interval at the time of the beat that ends it) is interpolated by a cubic spline at
    ``resample_hz``, detrended, and its power spectral density (ms²/Hz) estimated by Welch's method with Hann
    segments of ``segment_s`` overlapping by ``overlap``, each zero-padded to ``points_per_hz`` frequency points
    per Hz. Band powers (ms²) are trapezoid integrals of the PSD over each band.
    """

    resample_hz: float = 4.0
    """Rate of the interpolated RR series (Task Force 1996 and Kubios: 4 Hz)."""
    segment_s: float = 64.0
    """Welch segment length: 256 samples at 4 Hz. A series shorter than one segment is one segment."""
    overlap: float = 0.5
    """Fraction of a segment shared with the next (Welch's usual 50 %)."""
    detrend: str = "linear"
    """"linear" (a least-squares line over the whole series), "constant" (the mean) or "none"."""
    points_per_hz: float = 300.0
    """Frequency grid density of the PSD (zero-padding; Kubios: 300 points/Hz)."""
    vlf_hz: tuple[float, float] = (0.0, 0.04)
    lf_hz: tuple[float, float] = (0.04, 0.15)
    hf_hz: tuple[float, float] = (0.15, 0.4)
    """Bands of Task Force (1996)."""

    def describe(self) -> str:
        """The settings in one line, for reports."""
        detrend = {"linear": "linear detrend", "constant": "mean removed", "none": "no detrend"}[self.detrend]
        return (f"cubic spline at {self.resample_hz:g} Hz, {detrend}, Welch with {self.segment_s:g} s "
                f"({round(self.segment_s * self.resample_hz)}-sample) Hann segments, {100 * self.overlap:g} % overlap, "
                f"{self.points_per_hz:g} points/Hz; VLF {self.vlf_hz[0]:g}-{self.vlf_hz[1]:g}, "
                f"LF {self.lf_hz[0]:g}-{self.lf_hz[1]:g}, HF {self.hf_hz[0]:g}-{self.hf_hz[1]:g} Hz")


FREQUENCY_DEFAULTS = FrequencySettings()


@dataclass(frozen=True, slots=True)
class FrequencyHrv:
    """Frequency-domain HRV of one RR series (Task Force 1996 definitions), with the settings that made it."""

    vlf_ms2: float
    lf_ms2: float
    hf_ms2: float
    lf_nu: float
    """LF in normalised units: 100 · LF / (LF + HF), i.e. over total power minus VLF (Task Force 1996)."""
    hf_nu: float
    """100 · HF / (LF + HF)."""
    lf_hf: float
    """LF / HF."""
    segments: int
    """Welch segments averaged."""
    settings: FrequencySettings


def rr_psd(rr_ms: np.ndarray, settings: FrequencySettings = FREQUENCY_DEFAULTS) -> tuple[np.ndarray, np.ndarray, int]:
    """Power spectral density of an RR series as ``settings`` say: frequencies (Hz), PSD (ms²/Hz), segments."""
    rr = np.asarray(rr_ms, dtype=float)
    t = np.cumsum(rr) / 1000.0
    if rr.size < 4 or t[-1] - t[0] < MIN_LF_HF_S:
        raise ValueError(
            f"LF/HF needs at least {MIN_LF_HF_S:.0f} s of beats (5 min is the standard, Task Force 1996); "
            f"got {max(0.0, t[-1] - t[0]) if rr.size else 0.0:.0f} s"
        )
    fs = settings.resample_hz
    grid = t[0] + np.arange(int(np.floor((t[-1] - t[0]) * fs)) + 1) / fs
    x = interpolate.CubicSpline(t, rr)(grid)
    if settings.detrend != "none":
        x = signal.detrend(x, type=settings.detrend)
    nperseg = min(x.size, round(settings.segment_s * fs))
    noverlap = round(settings.overlap * nperseg)
    nfft = max(nperseg, int(np.ceil(fs * settings.points_per_hz)))
    f, p = signal.welch(x, fs=fs, window="hann", nperseg=nperseg, noverlap=noverlap, nfft=nfft, detrend=False)
    return f, p, 1 + (x.size - nperseg) // (nperseg - noverlap)


def frequency_hrv(rr_ms: np.ndarray, settings: FrequencySettings = FREQUENCY_DEFAULTS) -> FrequencyHrv:
    """VLF, LF and HF power (ms²), LF and HF in normalised units, and LF/HF of an NN series (Task Force 1996)."""
    f, p, segments = rr_psd(rr_ms, settings)
    vlf, lf, hf = (_band_power(f, p, band) for band in (settings.vlf_hz, settings.lf_hz, settings.hf_hz))
    return FrequencyHrv(vlf, lf, hf, 100.0 * lf / (lf + hf), 100.0 * hf / (lf + hf), lf / hf, segments, settings)


def lf_hf_ratio(rr_ms: np.ndarray, settings: FrequencySettings = FREQUENCY_DEFAULTS) -> float:
    """LF/HF power ratio of ``frequency_hrv``."""
    return frequency_hrv(rr_ms, settings).lf_hf


def baevsky_stress_index(rr_ms: np.ndarray, bin_ms: float = STRESS_INDEX_BIN_MS) -> float:
    """Baevsky's stress index SI = AMo / (2·Mo·MxDMn), 1/s² (Baevsky & Chernikova 2017; Kubios user guide).

    Histogram bins of 50 ms on edges at multiples of ``bin_ms``; Mo = centre of the fullest bin (s; the
    shortest on ties), AMo = its share of all intervals (%), MxDMn = max - min interval (s).
    """
    rr = np.asarray(rr_ms, dtype=float)
    bins = np.floor(rr / bin_ms).astype(int)
    counts = np.bincount(bins - bins.min())
    mode_bin = int(np.argmax(counts)) + bins.min()
    mo_s = (mode_bin + 0.5) * bin_ms / 1000.0
    amo_pct = 100.0 * counts.max() / rr.size
    spread_s = (rr.max() - rr.min()) / 1000.0
    return float(amo_pct / (2.0 * mo_s * spread_s)) if spread_s > 0 else float("inf")


def kubios_stress_index(rr_ms: np.ndarray) -> float:
    """Square root of Baevsky's stress index, the 'Stress index' Kubios HRV reports (normally distributed)."""
    return float(np.sqrt(baevsky_stress_index(rr_ms)))


@dataclass(frozen=True, slots=True)
class HrvNorm:
    """Normal resting short-term value (mean, SD) of one parameter, with its source."""

    mean: float
    sd: float
    source: str


# Kubios does not publish its normative table; ours follow its choice of parameters with published values. All are
# norms of 5-min recordings: a 60 s window gives a higher √SI (the histogram of fewer beats is narrower), so the
# live chain shows no z-scores.
NORMS = {
    "mean_rr_ms": HrvNorm(926.0, 90.0, "Nunan et al. 2010, PACE 33:1407, 5-min supine"),
    "rmssd_ms": HrvNorm(42.0, 15.0, "Nunan et al. 2010"),
    "sd1_pct": HrvNorm(3.2, 1.2, "SD1 = RMSSD/√2 relative to mean RR, from Nunan et al. 2010"),
    "mean_hr_bpm": HrvNorm(65.0, 6.3, "60000/mean RR of Nunan et al. 2010 (delta method for the SD)"),
    "kubios_stress_index": HrvNorm(10.0, 1.25, "√SI for Baevsky's normal range SI 50-150 (mean ± 2 SD)"),
    "sd2_pct": HrvNorm(6.9, 2.7, "√(2·SDNN² − SD1²) relative to mean RR, from Nunan et al. 2010"),
}


@dataclass(frozen=True, slots=True)
class HeartQuantity:
    """One name and one unit for a heart quantity, used by the dashboard, the reports and the exports alike."""

    key: str
    name: str
    unit: str
    definition: str

    @property
    def label(self) -> str:
        """Name with unit, e.g. 'Baevsky stress index SI (1/s²)'."""
        return f"{self.name} ({self.unit})"


BAEVSKY_SI = HeartQuantity(
    "baevsky_si", "Baevsky stress index SI", "1/s²",
    "AMo / (2 · Mo · MxDMn), 50 ms bins (Baevsky & Chernikova 2017); normal resting range about 50-150")
KUBIOS_SI = HeartQuantity(
    "kubios_si", "Kubios stress index √SI", "1/s",
    "square root of Baevsky's SI, as Kubios HRV reports it (closer to normally distributed); normal resting range "
    "about 7-12")
PNS = HeartQuantity(
    "pns_index", "PNS index (this project's norms)", "SD",
    "mean of the z-scores of mean RR, RMSSD and SD1 (%) against NORMS (Nunan et al. 2010, 5-min supine); "
    "Kubios's PNS index uses unpublished norms and weights, so the two are not interchangeable")
SNS = HeartQuantity(
    "sns_index", "SNS index (this project's norms)", "SD",
    "mean of the z-scores of mean HR, √SI and the inverse of SD2 (%) against NORMS (Nunan et al. 2010; √SI from "
    "Baevsky's normal range), 5-min norms; Kubios's SNS index uses unpublished norms and weights")
HEART_QUANTITIES = (BAEVSKY_SI, KUBIOS_SI, PNS, SNS)
"""The stress and autonomic quantities: every display, report and export names them from here."""


def _z(name: str, value: float) -> float:
    norm = NORMS[name]
    return (value - norm.mean) / norm.sd


def pns_index(mean_rr_ms: float, rmssd_ms: float, sd1_pct: float) -> float:
    """This project's parasympathetic index (``PNS``): equal-weight mean z-score of mean RR, RMSSD and SD1 (% of
    mean RR) against ``NORMS``, Kubios's choice of parameters (Kubios HRV user guide).

    0 is the normal resting mean of a 5-min supine recording; +1 is one SD more vagal activity. Kubios's own
    PNS index weighs and norms these parameters in ways it does not publish, so the values differ from Kubios's.
    """
    return (_z("mean_rr_ms", mean_rr_ms) + _z("rmssd_ms", rmssd_ms) + _z("sd1_pct", sd1_pct)) / 3.0


def sns_index(mean_hr_bpm: float, kubios_stress_index: float, sd2_pct: float) -> float:
    """This project's sympathetic index (``SNS``): equal-weight mean z-score of mean HR, √SI and the inverse of
    SD2 (% of mean RR) against ``NORMS`` (5-min norms); not Kubios's SNS index, whose weights and norms are unpublished."""
    return (_z("mean_hr_bpm", mean_hr_bpm) + _z("kubios_stress_index", kubios_stress_index) - _z("sd2_pct", sd2_pct)) / 3.0


@dataclass(frozen=True, slots=True)
class BeatMetrics:
    """Metrics when a beat is decided: its own values, then rolling values over the live window."""

    time_s: float
    rr_raw_ms: float
    rr_ms: float
    """Corrected interval; NaN if the beat was removed as extra."""
    flag: int
    """``RrFlag`` bits."""
    hr_bpm: float
    """60000 / corrected interval."""
    mean_hr_bpm: float
    rmssd_ms: float
    ln_rmssd: float
    """Natural log of RMSSD in ms."""
    sdnn_ms: float
    stress_index: float
    """``KUBIOS_SI``: √ of Baevsky's SI over the window (1/s), raw (no z-score); NaN below 20 beats."""


class LiveHrv:
    """Per-beat HRV for live display: artefact correction with a 5-beat look-ahead, rolling window metrics.

    A beat is decided when ``LIVE_LOOKAHEAD_BEATS`` more have arrived, by ``correct_rr`` over the corrected
    intervals already decided (up to ``LIVE_CONTEXT_BEATS`` in all) followed by the undecided raw ones. Time
    is conserved: what a correction takes from a beat (a removed extra beat, a moved beat) is carried into
    the next undecided interval. Each decision depends only on the beat sequence, so the output does not
    depend on how beats are grouped into calls.
    """

    def __init__(self, window_s: float = LIVE_WINDOW_S) -> None:
        self.window_s = float(window_s)
        self.reset()
        correct_rr(np.full(4, 1000.0))  # compile, or load the cached kernels, now rather than at the first beat

    def reset(self) -> None:
        """Forget all beats (after a gap: successive differences must not span it)."""
        self._pending_t: list[float] = []
        self._pending_raw: list[float] = []
        self._pending_work: list[float] = []
        """Undecided intervals with the time carried over from corrections of earlier beats."""
        self._history = np.empty(0)
        self._nn_times: list[float] = []
        self._nn: list[float] = []

    def add_beats(self, beat_times_s: np.ndarray, rr_ms: np.ndarray) -> list[BeatMetrics]:
        """Add beats (time of each beat, s; RR interval ending at it, ms); returns metrics of decided beats."""
        out = []
        for t, rr in zip(np.atleast_1d(beat_times_s).tolist(), np.atleast_1d(rr_ms).tolist()):
            if not np.isfinite(rr):
                continue
            self._pending_t.append(t)
            self._pending_raw.append(rr)
            self._pending_work.append(rr)
            if len(self._pending_raw) > LIVE_LOOKAHEAD_BEATS:
                out.append(self._decide())
        return out

    def flush(self) -> list[BeatMetrics]:
        """Decide the beats still waiting for their look-ahead (end of data); ``reset`` before a gap's far side."""
        return [self._decide() for _ in range(len(self._pending_raw))]

    def _decide(self) -> BeatMetrics:
        past = self._history[self._history.size - (LIVE_CONTEXT_BEATS - len(self._pending_work)) :]
        k = past.size
        fix = correct_rr(np.concatenate((past, self._pending_work)))
        nn_here = fix.nn_ms[fix.nn_source == k]
        t = self._pending_t.pop(0)
        raw = self._pending_raw.pop(0)
        carry_ms = self._pending_work.pop(0) - float(nn_here.sum())
        if self._pending_work:
            self._pending_work[0] += carry_ms
        self._history = np.concatenate((self._history[-LIVE_CONTEXT_BEATS:], nn_here))
        # The beat ends where the correction put it; inserted (MISSED) beats sit before it.
        end_s = t - carry_ms / 1000.0
        for j, v in enumerate(nn_here.tolist()):
            self._nn_times.append(end_s - float(nn_here[j + 1 :].sum()) / 1000.0)
            self._nn.append(v)
        start = np.searchsorted(self._nn_times, t - self.window_s, side="right")
        del self._nn_times[:start], self._nn[:start]
        nn = np.asarray(self._nn)
        rr_now = float(fix.corrected_ms[k])
        r = rmssd(nn)
        hr = mean_hr_bpm(nn) if nn.size else float("nan")
        return BeatMetrics(
            time_s=t,
            rr_raw_ms=raw,
            rr_ms=rr_now,
            flag=int(fix.flags[k]),
            hr_bpm=60000.0 / rr_now if np.isfinite(rr_now) else float("nan"),
            mean_hr_bpm=hr,
            rmssd_ms=r,
            ln_rmssd=float(np.log(r)) if r > 0 else float("nan"),
            sdnn_ms=sdnn(nn),
            stress_index=kubios_stress_index(nn) if nn.size >= MIN_BEATS_FOR_STRESS_INDEX else float("nan"),
        )


def hrv_windows(nn_beat_times_s: np.ndarray, window_s: float = HRV_WINDOW_S) -> "pd.DataFrame":
    """Offline neurokit2 time, frequency and non-linear HRV over consecutive windows (default 5 min).

    Input: times (s) of the beats that close corrected NN intervals (e.g. from ``correct_rr``). One row per
    full window, with ``window_start_s``; neurokit2 column names (``HRV_RMSSD`` ...).
    """
    import neurokit2 as nk
    import pandas as pd

    times = np.asarray(nn_beat_times_s, dtype=float)
    rows = []
    start = times[0] if times.size else 0.0
    while times.size and start + window_s <= times[-1] + 1e-9:
        inside = times[(times >= start) & (times < start + window_s)]
        peaks = np.round((inside - inside[0]) * 1000.0).astype(int)
        parts = [nk.hrv_time(peaks, 1000), nk.hrv_frequency(peaks, 1000), nk.hrv_nonlinear(peaks, 1000)]
        row = pd.concat(parts, axis=1)
        row.insert(0, "window_start_s", start)
        rows.append(row)
        start += window_s
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
