"""Surface EMG of the upper trapezius: streaming filter chain, amplitude, normalisation, window statistics.

The live chain (``EmgProcessor``), per channel and per sample, all causal with state kept across blocks:

1. band-pass, Butterworth order 4 (two sections), default 20-450 Hz, upper edge at most 0.45·fs;
2. mains notch (IIR, Q 30) at 50 or 60 Hz and its first harmonics below the upper edge;
3. amplitude: moving RMS over ``rms_window_ms`` (default 250 ms) and a low-latency RMS envelope,
   sqrt(low-pass(x²)) with a 2nd-order Butterworth low-pass (default 6 Hz, ~38 ms delay);
4. signal quality flags (``QualityFlag``) from moving RMS values of the EMG band, the removed mains
   component and a 1-10 Hz motion band, plus an optional ADC saturation limit.

Both amplitudes are in µV RMS: a sine of amplitude A gives A/√2 on both once settled. Every stage starts
from rest (zero state and zero history), so the first ``warmup`` samples are flagged ``WARMUP``.

Normalisation (``Calibration``, ``TensionIndex``): µV; % of the session's resting baseline; % of a
reference voluntary contraction (RVC); % MVC where an MVC calibration exists (never required).
For the upper trapezius the RVC is the usual reference because maximal contractions are unreliable and
painful in neck-pain patients (Mathiassen, Winkel & Hägg 1995, J Electromyogr Kinesiol 5:197-226).

Window statistics: ``median_frequency``, ``mean_power_frequency`` (raw EMG at ≥ 500 Hz only),
``apdf_levels`` (Jonsson 1982), ``emg_gaps`` (Veiersted et al. 1990; Hägg & Åström 1997),
``symmetry_index`` (Robinson et al. 1987).
"""

from __future__ import annotations

from biofeedback.errors import BiofeedbackError

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import signal

from biofeedback.dsp._streaming import MovingSum, SosFilter, emg_block

# Policy in named constants (STYLE.md, rule 5).
MIN_SPECTRAL_FS_HZ = 500.0
"""Raw EMG must be sampled at least this fast for spectral statistics (MDF, MPF)."""
UPPER_EDGE_FRACTION_OF_FS = 0.45
"""The band-pass upper edge is at most this fraction of the sample rate."""
NOTCH_Q = 30.0
"""Quality factor of each mains notch (-3 dB width = f0/Q, 1.7 Hz at 50 Hz)."""
MOTION_BAND_HZ = (1.0, 10.0)
"""Band where movement artefacts live and EMG has little power."""
OFFLINE_CHUNK_SAMPLES = 1 << 16
"""``EmgProcessor.rms_every`` feeds a recording in chunks of about this many samples (33 s at 2 kHz)."""


class QualityFlag:
    """Bit flags per sample and channel in ``EmgOutput.quality``; 0 means good."""

    FLAT = 1 << 0
    """EMG-band RMS below ``QualityThresholds.flat_rms_uv``: flat line or electrode off."""
    SATURATED = 1 << 1
    """A sample within the last RMS window reached ``QualityThresholds.saturation_uv``."""
    MAINS = 1 << 2
    """The removed mains component is stronger than the EMG itself: poor contact or unshielded lead."""
    MOTION = 1 << 3
    """1-10 Hz power (cable or electrode movement) exceeds the motion limits."""
    WARMUP = 1 << 4
    """Filters and RMS window have not yet filled since the start or the last reset."""


@dataclass(frozen=True, slots=True)
class QualityThresholds:
    """Limits for the quality flags; heuristics for surface EMG of the upper trapezius, in µV RMS."""

    flat_rms_uv: float = 0.5
    """Good electrodes at rest show ~1-3 µV RMS of noise; below this there is no skin contact."""
    saturation_uv: float | None = None
    """ADC limit in µV (from the device profile: ADC bits × nV per LSB); None disables the check."""
    mains_ratio: float = 1.0
    """MAINS when the mains component RMS exceeds this multiple of the EMG RMS."""
    motion_ratio: float = 2.0
    """MOTION when the 1-10 Hz RMS exceeds this multiple of the EMG RMS ..."""
    motion_min_uv: float = 20.0
    """... and also exceeds this absolute level."""


@dataclass(slots=True)
class EmgOutput:
    """One block of processed EMG; every array has shape (n, channels)."""

    filtered_uv: np.ndarray
    """Band-passed and notch-filtered EMG, µV."""
    rms_uv: np.ndarray
    """Moving RMS over the RMS window, µV."""
    envelope_uv: np.ndarray
    """Low-latency RMS envelope, µV."""
    quality: np.ndarray
    """``QualityFlag`` bits, uint8."""

    @property
    def bad(self) -> np.ndarray:
        """True where any quality flag is set: exclude these samples from statistics."""
        return self.quality != 0


class EmgProcessor:
    """Causal EMG chain for ``channels`` channels at ``fs_hz``; call ``process`` with blocks of any size."""

    def __init__(
        self,
        fs_hz: float,
        channels: int = 2,
        mains_hz: float = 50.0,
        band_hz: tuple[float, float] = (20.0, 450.0),
        notch_harmonics: int = 3,
        rms_window_ms: float = 250.0,
        envelope_cutoff_hz: float = 6.0,
        thresholds: QualityThresholds = QualityThresholds(),
    ) -> None:
        if mains_hz not in (50.0, 60.0):
            raise ValueError(f"mains_hz must be 50 or 60 (the local mains frequency), got {mains_hz}")
        low_hz = float(band_hz[0])
        high_hz = min(float(band_hz[1]), UPPER_EDGE_FRACTION_OF_FS * fs_hz)
        if not 0 < low_hz < high_hz:
            raise ValueError(
                f"band {band_hz} Hz is empty at fs={fs_hz} Hz (upper edge capped at {high_hz:.0f} Hz); "
                "lower the low edge or use a device that samples faster"
            )
        self.fs_hz = float(fs_hz)
        self.channels = int(channels)
        self.band_hz = (low_hz, high_hz)
        self.notch_hz = tuple(k * mains_hz for k in range(1, notch_harmonics + 1) if k * mains_hz < high_hz)
        self.thresholds = thresholds
        ch = self.channels
        self._bandpass = SosFilter(signal.butter(2, self.band_hz, "bandpass", fs=fs_hz, output="sos"), ch)
        notch = [signal.tf2sos(*signal.iirnotch(f, NOTCH_Q, fs=fs_hz)) for f in self.notch_hz]
        self._notch = SosFilter(np.concatenate(notch) if notch else np.array([[1.0, 0, 0, 1.0, 0, 0]]), ch)
        motion_high = min(MOTION_BAND_HZ[1], 0.45 * fs_hz)
        self._motion = SosFilter(signal.butter(1, (MOTION_BAND_HZ[0], motion_high), "bandpass", fs=fs_hz, output="sos"), ch)
        self._envelope = SosFilter(signal.butter(2, envelope_cutoff_hz, "lowpass", fs=fs_hz, output="sos"), ch)
        self.rms_window = max(1, round(rms_window_ms * fs_hz / 1000.0))
        # Window rows, one group of ``ch`` each: EMG², mains component², motion band², then saturation (0/1) if checked.
        self._moving = MovingSum(self.rms_window, (3 if thresholds.saturation_uv is None else 4) * ch)
        settle = round(0.1 * fs_hz)  # the 20 Hz band-pass rings for about 100 ms
        self.warmup = self.rms_window + settle
        """Samples flagged WARMUP after a start or reset."""
        self._count = 0
        # Quality limits on window sums rather than means: MAINS when mains² sum > ratio²·EMG² sum; MOTION when
        # motion² sum > max(ratio²·EMG² sum, window·minimum²); FLAT when EMG² sum < window·flat².
        w = self.rms_window
        saturation_uv = np.nan if thresholds.saturation_uv is None else thresholds.saturation_uv
        self._limits = np.array(
            [w, w * thresholds.flat_rms_uv**2, thresholds.mains_ratio**2, thresholds.motion_ratio**2,
             w * thresholds.motion_min_uv**2, saturation_uv],
            dtype=np.float64,
        )
        self._flag_bits = np.array(
            [QualityFlag.FLAT, QualityFlag.SATURATED, QualityFlag.MAINS, QualityFlag.MOTION, QualityFlag.WARMUP],
            dtype=np.uint8,
        )
        self.process(np.empty((0, ch)))  # compile, or load the cached kernel, now rather than on the first block

    @property
    def rms_delay_ms(self) -> float:
        """Delay of ``rms_uv``: half the RMS window plus the band-pass and notch delay, ms."""
        return (self.rms_window - 1) / 2.0 / self.fs_hz * 1000.0 + self.filter_delay_ms

    @property
    def envelope_delay_ms(self) -> float:
        """Delay of ``envelope_uv``: low-pass group delay at 0 Hz plus the band-pass and notch delay, ms."""
        return float(self._envelope.group_delay_ms(np.array([1e-3]), self.fs_hz)[0]) + self.filter_delay_ms

    @property
    def filter_delay_ms(self) -> float:
        """Median group delay of band-pass and notch over 30-300 Hz (where trapezius EMG power is), ms."""
        f = np.linspace(30.0, min(300.0, self.band_hz[1]), 200)
        bp = self._bandpass.group_delay_ms(f, self.fs_hz)
        nt = self._notch.group_delay_ms(f, self.fs_hz)
        return float(np.median(bp + nt))

    def reset(self) -> None:
        """Forget all state, as after a gap in the data: the next samples are flagged WARMUP again."""
        for f in (self._bandpass, self._notch, self._motion, self._envelope, self._moving):
            f.reset()
        self._count = 0

    def process(self, samples_uv: np.ndarray) -> EmgOutput:
        """Process a block (n, channels) of raw EMG in µV; the output arrays are (n, channels)."""
        x = np.ascontiguousarray(samples_uv, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.channels:
            raise ValueError(f"expected samples of shape (n, {self.channels}), got {x.shape}")
        shape = x.shape
        out = EmgOutput(np.empty(shape), np.empty(shape), np.empty(shape), np.empty(shape, dtype=np.uint8))
        self._moving.pos = emg_block(
            x,
            self._bandpass.sos,
            self._bandpass.zi,
            self._notch.sos,
            self._notch.zi,
            self._motion.sos,
            self._motion.zi,
            self._envelope.sos,
            self._envelope.zi,
            self._moving.ring,
            self._moving.totals,
            self._moving.pos,
            self._limits,
            self._flag_bits,
            max(0, self.warmup - self._count),
            out.filtered_uv,
            out.rms_uv,
            out.envelope_uv,
            out.quality,
        )
        self._count += shape[0]
        return out

    def rms_every(self, samples_uv: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Offline, over a long recording: the moving RMS (µV) at every ``step``-th sample, and per step whether
        any of its samples is flagged bad. Equal to ``process(x).rms_uv[::step]`` and the OR of ``bad`` over each
        step, but fed in chunks, so memory stays near the size of this result instead of four full-rate outputs."""
        n = samples_uv.shape[0]
        chunk = step * max(1, OFFLINE_CHUNK_SAMPLES // step)
        rms = np.empty((-(-n // step), self.channels))
        bad = np.empty(rms.shape, dtype=bool)
        for start in range(0, n, chunk):
            out = self.process(samples_uv[start:start + chunk])
            rows = slice(start // step, start // step + -(-out.rms_uv.shape[0] // step))
            rms[rows] = out.rms_uv[::step]
            bad[rows] = np.logical_or.reduceat(out.bad, np.arange(0, out.bad.shape[0], step), axis=0)
        return rms, bad


@dataclass(frozen=True, slots=True)
class Calibration:
    """Per-channel reference amplitudes in µV RMS (moving RMS of ``EmgProcessor``); all optional."""

    rest_rms_uv: Sequence[float] | None = None
    """Relaxed sitting, arms resting, at the start of the session."""
    rvc_rms_uv: Sequence[float] | None = None
    """Reference voluntary contraction: arms abducted 90° in the scapular plane, no load, 15 s
    (Mathiassen et al. 1995)."""
    mvc_rms_uv: Sequence[float] | None = None
    """Maximal voluntary contraction (shoulder elevation against resistance); optional, never required."""


def percent_of_reference(amplitude_uv: np.ndarray, reference_uv: Sequence[float] | np.ndarray) -> np.ndarray:
    """Amplitude as a percentage of a per-channel reference amplitude (rest, RVC or MVC): 100·A/A_ref."""
    ref = np.asarray(reference_uv, dtype=float)
    if np.any(~(ref > 0)):
        raise ValueError(f"reference amplitudes must be positive µV values, got {ref}; repeat the calibration")
    return 100.0 * np.asarray(amplitude_uv, dtype=float) / ref


class TensionIndex:
    """The trapezius tension index shown to users: RMS amplitude normalised to the best calibration held.

    TI = 100 · RMS / RMS_ref per channel, with RMS the 250 ms moving RMS of the filtered EMG (µV) and
    RMS_ref chosen in this order:

    - ``%RVC``: the reference voluntary contraction of this session (Mathiassen et al. 1995). Comparable
      across sessions of one client because the same submaximal posture is repeated every session.
    - ``%MVC``: a maximal contraction, where the client could do one.
    - ``%rest``: the session's own resting baseline (100 = as at rest today). Comparable within a session
      and as a relative change across sessions, but not in absolute tension, since the baseline moves.
    - ``uV``: no calibration at all; the raw RMS, comparable only with the same electrodes and placement.

    ``combined`` is the mean over channels (left and right trapezius).
    """

    def __init__(self, calibration: Calibration | None = None) -> None:
        cal = calibration or Calibration()
        for unit, ref in (("%RVC", cal.rvc_rms_uv), ("%MVC", cal.mvc_rms_uv), ("%rest", cal.rest_rms_uv)):
            if ref is not None:
                self.unit = unit
                self.reference_uv: np.ndarray | None = np.asarray(ref, dtype=float)
                return
        self.unit = "uV"
        self.reference_uv = None

    def __call__(self, rms_uv: np.ndarray) -> np.ndarray:
        """Tension index per channel, in ``self.unit``, same shape as ``rms_uv`` (n, channels)."""
        if self.reference_uv is None:
            return np.asarray(rms_uv, dtype=float)
        return percent_of_reference(rms_uv, self.reference_uv)

    def combined(self, rms_uv: np.ndarray) -> np.ndarray:
        """Mean tension index over channels, one value per sample, in ``self.unit``."""
        return np.mean(self(rms_uv), axis=-1)


class SpectrumUnavailableError(BiofeedbackError, ValueError):
    """Spectral EMG statistics need raw EMG sampled at ≥ 500 Hz."""


def spectrum_unavailable_reason(fs_hz: float, envelope: bool = False) -> str | None:
    """Why median and mean power frequency cannot be computed for a stream, in words; None when they can.

    They need raw (not rectified or smoothed) EMG sampled at ``MIN_SPECTRAL_FS_HZ`` or faster: the surface-EMG
    spectrum reaches past 250 Hz, so a 200 Hz stream (OpenBCI Ganglion) sees only its lower part.
    """
    if envelope:
        return ("median and mean power frequency are not available for an envelope stream: they need raw EMG; "
                "the tension level (RMS) is unaffected")
    if fs_hz < MIN_SPECTRAL_FS_HZ:
        return (f"median and mean power frequency are not available at this sample rate ({fs_hz:g} Hz): they need "
                f"raw EMG sampled at >= {MIN_SPECTRAL_FS_HZ:.0f} Hz; the tension level (RMS) is unaffected")
    return None


def _power_spectrum(emg_uv: np.ndarray, fs_hz: float, band_hz: tuple[float, float],
                    envelope: bool = False) -> tuple[np.ndarray, np.ndarray]:
    if (reason := spectrum_unavailable_reason(fs_hz, envelope)) is not None:
        raise SpectrumUnavailableError(reason)
    x = np.asarray(emg_uv, dtype=float)
    nperseg = min(x.shape[0], int(2 ** np.ceil(np.log2(fs_hz / 4.0))))
    f, p = signal.welch(x, fs=fs_hz, nperseg=nperseg, axis=0)
    keep = (f >= band_hz[0]) & (f <= min(band_hz[1], UPPER_EDGE_FRACTION_OF_FS * fs_hz))
    return f[keep], p[keep]


def median_frequency(emg_uv: np.ndarray, fs_hz: float, band_hz: tuple[float, float] = (20.0, 450.0),
                     envelope: bool = False) -> np.ndarray:
    """Median frequency (Hz) of the Welch spectrum within ``band_hz``: half the power lies below it.

    ``SpectrumUnavailableError`` for an envelope or a rate below ``MIN_SPECTRAL_FS_HZ`` (``spectrum_unavailable_reason``).
    """
    f, p = _power_spectrum(emg_uv, fs_hz, band_hz, envelope)
    cum = np.cumsum(p, axis=0)
    half = cum[-1] / 2.0
    if cum.ndim == 1:
        return np.asarray(np.interp(half, cum, f))
    return np.array([np.interp(half[c], cum[:, c], f) for c in range(cum.shape[1])])


def mean_power_frequency(emg_uv: np.ndarray, fs_hz: float, band_hz: tuple[float, float] = (20.0, 450.0),
                         envelope: bool = False) -> np.ndarray:
    """Mean power frequency (Hz) of the Welch spectrum within ``band_hz``: Σ f·P / Σ P (same availability as MDF)."""
    f, p = _power_spectrum(emg_uv, fs_hz, band_hz, envelope)
    f = f if p.ndim == 1 else f[:, None]
    return np.sum(f * p, axis=0) / np.sum(p, axis=0)


def apdf_levels(
    amplitude: np.ndarray, probabilities: Sequence[float] = (0.1, 0.5, 0.9), valid: np.ndarray | None = None
) -> np.ndarray:
    """Amplitude levels at the given probabilities of the amplitude distribution (Jonsson 1982), same unit.

    The 10 % level is the static load, 50 % the median and 90 % the peak load. ``amplitude`` is (n,) or
    (n, channels); ``valid`` (same shape) excludes flagged samples. Returns (levels,) or (levels, channels).
    """
    a = np.asarray(amplitude, dtype=float)
    if valid is not None:
        a = np.where(np.asarray(valid, dtype=bool), a, np.nan)
    return np.nanquantile(a, np.asarray(probabilities, dtype=float), axis=0)


@dataclass(frozen=True, slots=True)
class EmgGaps:
    """Short periods of near-complete rest in a window (Veiersted et al. 1990)."""

    count: int
    per_minute: float
    """Gaps per minute of valid data."""
    total_s: float
    relative_time: float
    """Fraction of valid time spent in gaps, 0-1."""


def emg_gaps(
    amplitude: np.ndarray,
    fs_hz: float,
    threshold: float,
    min_gap_s: float = 0.2,
    valid: np.ndarray | None = None,
) -> EmgGaps:
    """EMG gaps: runs of ≥ ``min_gap_s`` below ``threshold`` (e.g. 0.5 %RVC; Hägg & Åström 1997), one channel.

    Invalid samples (``valid`` False) end a run and do not count as time.
    """
    a = np.asarray(amplitude, dtype=float)
    ok = np.ones(a.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    below = (a < threshold) & ok
    edges = np.diff(np.concatenate(([0], below.view(np.int8), [0])))
    lengths = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    gaps = lengths[lengths >= round(min_gap_s * fs_hz)]
    valid_s = ok.sum() / fs_hz
    total_s = gaps.sum() / fs_hz
    return EmgGaps(
        count=int(gaps.size),
        per_minute=float(gaps.size / (valid_s / 60.0)) if valid_s > 0 else float("nan"),
        total_s=float(total_s),
        relative_time=float(total_s / valid_s) if valid_s > 0 else float("nan"),
    )


def symmetry_index(left: np.ndarray | float, right: np.ndarray | float) -> float:
    """Left/right symmetry index in %: 100·(L−R)/((L+R)/2) of the mean amplitudes (Robinson et al. 1987).

    0 is symmetric; positive means the left trapezius is more active.
    """
    lm = float(np.mean(left))
    rm = float(np.mean(right))
    return 100.0 * (lm - rm) / ((lm + rm) / 2.0)
