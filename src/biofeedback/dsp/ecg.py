"""R-peak detection in ECG (e.g. Polar H10 at 130 Hz, µV): neurokit2 offline, a causal detector live.

``LiveRPeakDetector`` follows Pan & Tompkins (1985, IEEE Trans Biomed Eng 32:230): band-pass 5-15 Hz,
five-point derivative, squaring, 150 ms moving-window integration, adaptive signal and noise levels,
200 ms refractory period, T-wave rejection within 360 ms, and search-back for missed beats. The R peak
is then located on the 0.5 Hz high-passed ECG (largest deflection of the learned polarity) with
parabolic interpolation, so beat times are finer than one sample (7.7 ms at 130 Hz).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from biofeedback.dsp._streaming import MovingSum, SosFilter

QRS_BAND_HZ = (5.0, 15.0)
INTEGRATION_S = 0.150
REFRACTORY_S = 0.200
T_WAVE_WINDOW_S = 0.360
LEARNING_S = 2.0
SEARCH_BACK_FACTOR = 1.66
R_SEARCH_BEFORE_S = 0.25
"""The R peak is looked for in this span before the integrated-energy peak ..."""
R_SEARCH_AFTER_S = 0.0
HISTORY_S = 5.0
"""Filtered signal kept for R location and search-back."""


@dataclass(frozen=True, slots=True)
class Beats:
    """Beats found in one call: R-peak times and the RR interval ending at each."""

    times_s: np.ndarray
    """R-peak times, s since the detector's first sample."""
    rr_ms: np.ndarray
    """Interval from the previous beat, ms (NaN for the first beat ever)."""


def detect_r_peaks(ecg_uv: np.ndarray, fs_hz: float) -> np.ndarray:
    """R-peak sample indices of a whole recording: neurokit2 ``ecg_clean`` + ``ecg_peaks`` (method "neurokit")."""
    import neurokit2 as nk

    cleaned = nk.ecg_clean(np.asarray(ecg_uv, dtype=float), sampling_rate=fs_hz)
    _, info = nk.ecg_peaks(cleaned, sampling_rate=fs_hz)
    return np.asarray(info["ECG_R_Peaks"], dtype=int)


def beats_from_peaks(peaks: np.ndarray, fs_hz: float) -> Beats:
    """Beat times (s) and RR intervals (ms) from R-peak sample positions."""
    t = np.asarray(peaks, dtype=float) / fs_hz
    return Beats(t, np.concatenate(([np.nan], np.diff(t) * 1000.0)))


class LiveRPeakDetector:
    """Causal R-peak detector (Pan & Tompkins 1985) for ECG arriving in blocks of any size."""

    def __init__(self, fs_hz: float) -> None:
        self.fs_hz = float(fs_hz)
        fs = self.fs_hz
        band = signal.butter(2, QRS_BAND_HZ, "bandpass", fs=fs, output="sos")
        derivative = signal.tf2sos(np.array([2.0, 1.0, 0.0, -1.0, -2.0]) * fs / 8.0, [1.0])
        self._qrs = SosFilter(np.concatenate((band, derivative)), 1)
        self._highpass = SosFilter(signal.butter(1, 0.5, "highpass", fs=fs, output="sos"), 1)
        self._window = max(1, round(INTEGRATION_S * fs))
        self._integrate = MovingSum(self._window, 1)
        self._history = round(HISTORY_S * fs)
        self.reset()

    def reset(self) -> None:
        """Start again from rest: filters, thresholds and learning phase."""
        for f in (self._qrs, self._highpass, self._integrate):
            f.reset()
        self._n = 0
        self._ecg = np.zeros(self._history)  # high-passed ECG, newest last
        self._slope = np.zeros(self._history)  # |band-passed derivative|
        self._mwi_tail = np.zeros(2)
        self._learning: list[tuple[int, float]] = []
        self._learn_max = 0.0
        self._learn_sum = 0.0
        self._learned = False
        self._spki = 0.0
        self._npki = 0.0
        self._polarity = 1.0
        self._last_qrs = -(10**9)
        self._last_slope = 0.0
        self._last_beat_s = float("nan")
        self._rr = [1.0]
        self._pending: list[tuple[int, float]] = []

    def process(self, ecg_uv: np.ndarray) -> Beats:
        """Feed ECG samples (n,) in µV; returns the beats confirmed by them."""
        x = np.asarray(ecg_uv, dtype=np.float64).reshape(1, -1)
        chunk = round(self.fs_hz)  # the history must span a chunk, the learning phase and a search-back
        beats: list[float] = []
        for start in range(0, x.shape[1], chunk):
            self._process_chunk(x[:, start : start + chunk], beats)
        t = np.asarray(beats)
        rr = np.diff(np.concatenate(([self._last_beat_s], t))) * 1000.0
        if t.size:
            self._last_beat_s = float(t[-1])
        return Beats(t, rr)

    def _process_chunk(self, x: np.ndarray, beats: list[float]) -> None:
        n = x.shape[1]
        d = self._qrs.run(x.copy())
        hp = self._highpass.run(x.copy())[0]
        mwi = self._integrate.run(d * d)[0] / self._window
        keep = self._history
        self._ecg = np.concatenate((self._ecg, hp))[-keep:]
        self._slope = np.concatenate((self._slope, np.abs(d[0])))[-keep:]
        start = self._n
        self._n += n
        ext = np.concatenate((self._mwi_tail, mwi))
        self._mwi_tail = ext[-2:]
        # ext[k] is sample start - 2 + k; a local maximum at k is known once sample k + 1 has arrived.
        k = np.flatnonzero((ext[1:-1] > ext[:-2]) & (ext[1:-1] >= ext[2:])) + 1
        if not self._learned:
            self._learn_max = max(self._learn_max, float(mwi.max()))
            self._learn_sum += float(mwi.sum())
        for idx, value in zip(k + start - 2, ext[k]):
            if self._learned:
                self._candidate(int(idx), float(value), beats)
            else:
                self._learning.append((int(idx), float(value)))
        if not self._learned and self._n >= LEARNING_S * self.fs_hz:
            self._learned = True
            self._spki = 0.5 * self._learn_max
            self._npki = 0.5 * self._learn_sum / self._n
            self._polarity = 1.0 if self._ecg.max() >= -self._ecg.min() else -1.0
            for idx, value in self._learning:
                self._candidate(idx, value, beats)
            self._learning = []
        if self._learned:
            self._search_back(self._n - 1, beats)

    def _threshold(self) -> float:
        return self._npki + 0.25 * (self._spki - self._npki)

    def _candidate(self, idx: int, value: float, beats: list[float]) -> None:
        fs = self.fs_hz
        self._search_back(idx, beats)
        if idx - self._last_qrs < REFRACTORY_S * fs:
            return
        if value > self._threshold():
            slope = self._max_slope(idx)
            if idx - self._last_qrs < T_WAVE_WINDOW_S * fs and slope < 0.5 * self._last_slope:
                self._npki = 0.125 * value + 0.875 * self._npki
                return
            self._spki = 0.125 * value + 0.875 * self._spki
            self._accept(idx, slope, beats)
        else:
            self._npki = 0.125 * value + 0.875 * self._npki
            self._pending.append((idx, value))

    def _search_back(self, now: int, beats: list[float]) -> None:
        if now - self._last_qrs <= SEARCH_BACK_FACTOR * np.mean(self._rr) * self.fs_hz:
            return
        floor = 0.5 * self._threshold()
        fits = [(v, i) for i, v in self._pending if v > floor and i - self._last_qrs >= REFRACTORY_S * self.fs_hz]
        if fits:
            value, idx = max(fits)
            self._spki = 0.25 * value + 0.75 * self._spki
            self._accept(idx, self._max_slope(idx), beats)

    def _buffer_pos(self, idx: int) -> int:
        return idx - (self._n - self._history)

    def _max_slope(self, idx: int) -> float:
        end = self._buffer_pos(idx) + 1
        return float(self._slope[max(0, end - self._window) : end].max()) if end > 0 else 0.0

    def _accept(self, idx: int, slope: float, beats: list[float]) -> None:
        fs = self.fs_hz
        lo = max(1, self._buffer_pos(idx) - round(R_SEARCH_BEFORE_S * fs))
        hi = min(self._history - 1, self._buffer_pos(idx) + round(R_SEARCH_AFTER_S * fs) + 1)
        seg = self._polarity * self._ecg[lo - 1 : hi + 1]
        j = int(np.argmax(seg[1:-1])) + 1
        y0, y1, y2 = seg[j - 1], seg[j], seg[j + 1]
        denom = y0 - 2.0 * y1 + y2
        frac = 0.5 * (y0 - y2) / denom if denom < 0 else 0.0
        r_index = self._n - self._history + lo - 1 + j + frac
        t = r_index / fs
        prev = beats[-1] if beats else self._last_beat_s
        if np.isfinite(prev):
            self._rr = (self._rr + [t - prev])[-8:]
        beats.append(t)
        self._last_qrs = idx
        self._last_slope = slope
        self._pending = [(i, v) for i, v in self._pending if i > idx]
