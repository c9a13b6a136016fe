"""Stateful building blocks shared by the streaming processors: IIR sections and moving sums.

Both work on arrays of shape (rows, n) in C order, one row per signal, and keep their state between
calls so that any split of a signal into blocks gives the same output as one call over the whole.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

try:  # The Cython kernel behind scipy.signal.sosfilt; its Python wrapper costs ~45 µs per call.
    from scipy.signal._sosfilt import _sosfilt as _sosfilt_kernel
except ImportError:  # pragma: no cover - a future scipy may move it; the public path gives the same numbers
    _sosfilt_kernel = None


class SosFilter:
    """A causal IIR filter in second-order sections with its delay state kept across blocks."""

    def __init__(self, sos: np.ndarray, rows: int) -> None:
        self.sos = np.ascontiguousarray(sos, dtype=np.float64)
        self.rows = rows
        self._zi = np.zeros((rows, self.sos.shape[0], 2))

    def reset(self) -> None:
        """Return to initial rest (all delays zero)."""
        self._zi[...] = 0.0

    def run(self, x: np.ndarray) -> np.ndarray:
        """Filter ``x`` (rows, n), C-contiguous float64, in place, and return it."""
        if _sosfilt_kernel is not None:
            _sosfilt_kernel(self.sos, x, self._zi)
            return x
        y, zf = signal.sosfilt(self.sos, x, axis=1, zi=np.moveaxis(self._zi, 0, 1))
        self._zi[...] = np.moveaxis(zf, 1, 0)
        x[...] = y
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
        self._buf = np.zeros((rows, width))
        self._pos = 0
        self._total = np.zeros((rows, 1))

    def reset(self) -> None:
        """Forget the history."""
        self._buf[...] = 0.0
        self._pos = 0
        self._total[...] = 0.0

    def run(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Sums over the trailing window ending at each sample of ``x`` (rows, n), into ``out`` if given."""
        w, pos, n = self.width, self._pos, x.shape[1]
        d = np.empty_like(x) if out is None else out
        if n > w:
            np.subtract(x[:, :w], np.concatenate((self._buf[:, pos:], self._buf[:, :pos]), axis=1), out=d[:, :w])
            np.subtract(x[:, w:], x[:, : n - w], out=d[:, w:])
            self._buf = x[:, n - w :].copy()
            self._pos = 0
        elif pos + n <= w:
            np.subtract(x, self._buf[:, pos : pos + n], out=d)
            self._buf[:, pos : pos + n] = x
            self._pos = (pos + n) % w
        else:
            k = w - pos
            np.subtract(x[:, :k], self._buf[:, pos:], out=d[:, :k])
            np.subtract(x[:, k:], self._buf[:, : n - k], out=d[:, k:])
            self._buf[:, pos:] = x[:, :k]
            self._buf[:, : n - k] = x[:, k:]
            self._pos = n - k
        np.add.accumulate(d, axis=1, out=d)
        d += self._total
        self._total[:, 0] = d[:, -1]
        return d
