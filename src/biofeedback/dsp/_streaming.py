"""Stateful building blocks of the streaming processors, compiled with numba: IIR sections, moving sums and
the fused per-block EMG kernel.

Every filter and window advances by one per-sample recurrence (``section_step``, ``window_step``) on state
arrays kept between calls, so any split of a signal into blocks gives exactly the output of one call over the
whole. The kernels are compiled because a 20 ms block costs far more in Python and numpy call overhead than in
arithmetic. The per-sample steps are inlined into the kernels by numba (``inline="always"``; called as
separate functions they take about three times as long). They share one file with the kernels on purpose: numba's
on-disk cache (``cache=True``) is invalidated when the file of a cached function changes, not when a helper
it calls from another file does.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy import signal


@njit(cache=True, inline="always")
def section_step(sos: np.ndarray, s: int, x: float, z0: float, z1: float) -> tuple[float, float, float]:
    """One sample ``x`` through section ``s`` of ``sos`` with delays ``z0``, ``z1``: (output, new z0, new z1).

    Direct form II transposed, the recurrence and operation order of ``scipy.signal.sosfilt``.
    """
    y = sos[s, 0] * x + z0
    return y, sos[s, 1] * x - sos[s, 4] * y + z1, sos[s, 2] * x - sos[s, 5] * y


@njit(cache=True, inline="always")
def sos_step(sos: np.ndarray, zi: np.ndarray, row: int, x: float) -> float:
    """One sample through every section of ``sos`` with the delays ``zi[row]`` (sections, 2), updated in place."""
    for s in range(sos.shape[0]):
        x, zi[row, s, 0], zi[row, s, 1] = section_step(sos, s, x, zi[row, s, 0], zi[row, s, 1])
    return x


@njit(cache=True, inline="always")
def window_step(ring: np.ndarray, pos: int, col: int, total: float, x: float) -> float:
    """Put ``x`` in place of the oldest sample ``ring[pos, col]``; returns the window sum ``total`` updated."""
    total += x - ring[pos, col]
    ring[pos, col] = x
    return total


@njit(cache=True)
def _sosfilt_rows(sos: np.ndarray, zi: np.ndarray, x: np.ndarray) -> None:
    for r in range(x.shape[0]):
        for i in range(x.shape[1]):
            x[r, i] = sos_step(sos, zi, r, x[r, i])


@njit(cache=True)
def _moving_sum_rows(ring: np.ndarray, totals: np.ndarray, pos: int, x: np.ndarray, out: np.ndarray) -> int:
    width = ring.shape[0]
    for i in range(x.shape[1]):
        for r in range(x.shape[0]):
            totals[r] = window_step(ring, pos, r, totals[r], x[r, i])
            out[r, i] = totals[r]
        pos = pos + 1 if pos + 1 < width else 0
    return pos


class SosFilter:
    """A causal IIR filter in second-order sections with its delay state kept across blocks."""

    def __init__(self, sos: np.ndarray, rows: int) -> None:
        self.sos = np.ascontiguousarray(sos, dtype=np.float64)
        self.rows = rows
        self.zi = np.zeros((rows, self.sos.shape[0], 2))
        """Delays (rows, sections, 2), as ``zi`` of ``scipy.signal.sosfilt`` with the signal axis first."""
        self.run(np.empty((rows, 0)))  # compile, or load the cached kernel, now rather than on the first block

    def reset(self) -> None:
        """Return to initial rest (all delays zero)."""
        self.zi[...] = 0.0

    def run(self, x: np.ndarray) -> np.ndarray:
        """Filter ``x`` (rows, n), C-contiguous float64, in place, and return it."""
        _sosfilt_rows(self.sos, self.zi, x)
        return x

    def group_delay_ms(self, freqs_hz: np.ndarray, fs_hz: float) -> np.ndarray:
        """Group delay in ms at ``freqs_hz``."""
        b, a = signal.sos2tf(self.sos)
        _, gd = signal.group_delay((b, a), w=np.asarray(freqs_hz, dtype=float), fs=fs_hz)
        return gd / fs_hz * 1000.0


class MovingSum:
    """Causal sum over the last ``width`` samples of each row; samples before the start count as zero.

    A running total updated by (new - dropped) per sample; rounding error grows like eps·√n relative to
    the largest window sum seen, far below any threshold used here (1e-9 relative after a day at 2 kHz).
    """

    def __init__(self, width: int, rows: int) -> None:
        if width < 1:
            raise ValueError(f"moving-sum width must be at least 1 sample, got {width}")
        self.width = width
        self.ring = np.zeros((width, rows))
        """The last ``width`` samples of each row, one column per row (all rows of a sample in one cache line);
        ``pos`` is the index of the oldest."""
        self.pos = 0
        self.totals = np.zeros(rows)
        self.run(np.empty((rows, 0)))  # compile, or load the cached kernel, now rather than on the first block

    def reset(self) -> None:
        """Forget the history."""
        self.ring[...] = 0.0
        self.pos = 0
        self.totals[...] = 0.0

    def run(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Sums over the trailing window ending at each sample of ``x`` (rows, n), into ``out`` if given."""
        d = np.empty_like(x) if out is None else out
        self.pos = _moving_sum_rows(self.ring, self.totals, self.pos, x, d)
        return d


@njit(cache=True, inline="always")
def _nan_max(a: float, b: float) -> float:
    """max(a, b) that returns NaN if either is NaN, as ``numpy.maximum``."""
    return a if a >= b or a != a else b


@njit(cache=True)
def emg_block(
    x: np.ndarray,
    bandpass_sos: np.ndarray,
    bandpass_zi: np.ndarray,
    notch_sos: np.ndarray,
    notch_zi: np.ndarray,
    motion_sos: np.ndarray,
    motion_zi: np.ndarray,
    envelope_sos: np.ndarray,
    envelope_zi: np.ndarray,
    ring: np.ndarray,
    totals: np.ndarray,
    pos: int,
    limits: np.ndarray,
    flag_bits: np.ndarray,
    warmup_left: int,
    filtered: np.ndarray,
    rms: np.ndarray,
    envelope: np.ndarray,
    quality: np.ndarray,
) -> int:
    """The EMG chain of ``biofeedback.dsp.emg.EmgProcessor`` over a block ``x`` (n, channels) of raw µV.

    Per sample and channel: band-pass (two sections), then the notch sections (any number); the removed mains
    component (band-pass minus notch output) and the 1-10 Hz motion band (one section) beside them; window
    sums of EMG², mains², motion² and, when ``ring`` has a fourth group of columns, of ADC saturation (0/1);
    the envelope low-pass (one section) of EMG²; then the quality flags. ``limits``: window width, FLAT limit
    on the EMG² sum, MAINS ratio², MOTION ratio², MOTION floor on the motion² sum, saturation µV.
    ``flag_bits``: FLAT, SATURATED, MAINS, MOTION, WARMUP; the first ``warmup_left`` samples are flagged
    WARMUP and never FLAT (their window is still filling, so a low sum there is no sign of a lost electrode). Writes the four (n, channels) outputs and returns the new ``pos``.

    Channel by channel, with the delays of the fixed-size filters and the window totals in local variables
    for the block (registers, not memory, carry them from sample to sample).
    """
    if bandpass_sos.shape[0] != 2 or motion_sos.shape[0] != 1 or envelope_sos.shape[0] != 1:
        raise ValueError("emg_block needs a two-section band-pass and one-section motion and envelope filters")
    n, ch = x.shape
    width = ring.shape[0]
    inv_width = 1.0 / limits[0]
    flat_limit, mains_scale, motion_scale, motion_floor, saturation_uv = limits[1], limits[2], limits[3], limits[4], limits[5]
    check_saturation = ring.shape[1] == 4 * ch
    start = pos
    for c in range(ch):
        pos = start
        b00, b01, b10, b11 = bandpass_zi[c, 0, 0], bandpass_zi[c, 0, 1], bandpass_zi[c, 1, 0], bandpass_zi[c, 1, 1]
        m0, m1 = motion_zi[c, 0, 0], motion_zi[c, 0, 1]
        e0, e1 = envelope_zi[c, 0, 0], envelope_zi[c, 0, 1]
        emg_sum, mains_sum, motion_sum = totals[c], totals[ch + c], totals[2 * ch + c]
        saturated = totals[3 * ch + c] if check_saturation else 0.0
        for i in range(n):
            raw = x[i, c]
            moved, m0, m1 = section_step(motion_sos, 0, raw, m0, m1)
            band, b00, b01 = section_step(bandpass_sos, 0, raw, b00, b01)
            band, b10, b11 = section_step(bandpass_sos, 1, band, b10, b11)
            emg = sos_step(notch_sos, notch_zi, c, band)
            mains = band - emg
            filtered[i, c] = emg
            emg2 = emg * emg
            emg_sum = window_step(ring, pos, c, emg_sum, emg2)
            mains_sum = window_step(ring, pos, ch + c, mains_sum, mains * mains)
            motion_sum = window_step(ring, pos, 2 * ch + c, motion_sum, moved * moved)
            smooth, e0, e1 = section_step(envelope_sos, 0, emg2, e0, e1)
            rms[i, c] = np.sqrt(_nan_max(emg_sum, 0.0) * inv_width)
            envelope[i, c] = np.sqrt(_nan_max(smooth, 0.0))
            q = 0
            if emg_sum < flat_limit and i >= warmup_left:  # a window still filling says nothing about contact
                q |= flag_bits[0]
            if check_saturation:
                saturated = window_step(ring, pos, 3 * ch + c, saturated, 1.0 if abs(raw) >= saturation_uv else 0.0)
                if saturated > 0.5:
                    q |= flag_bits[1]
            if mains_sum > mains_scale * emg_sum:
                q |= flag_bits[2]
            if motion_sum > _nan_max(motion_scale * emg_sum, motion_floor):
                q |= flag_bits[3]
            if i < warmup_left:
                q |= flag_bits[4]
            quality[i, c] = q
            pos = pos + 1 if pos + 1 < width else 0
        bandpass_zi[c, 0, 0], bandpass_zi[c, 0, 1], bandpass_zi[c, 1, 0], bandpass_zi[c, 1, 1] = b00, b01, b10, b11
        motion_zi[c, 0, 0], motion_zi[c, 0, 1] = m0, m1
        envelope_zi[c, 0, 0], envelope_zi[c, 0, 1] = e0, e1
        totals[c], totals[ch + c], totals[2 * ch + c] = emg_sum, mains_sum, motion_sum
        if check_saturation:
            totals[3 * ch + c] = saturated
    return pos
