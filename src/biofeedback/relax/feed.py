"""Live numbers for the relaxation, computed on the acquisition loop as blocks arrive (like the recorder).

``RelaxFeed`` listens on a ``StreamHub``: EMG blocks go through ``dsp.EmgProcessor`` and a
``dsp.TensionIndex`` (mean of the channels, from the low-latency envelope), with the block's quality
bits and the device's contact flag; RR blocks go through ``dsp.LiveHrv``. The newest values are one
immutable ``FeedSnapshot``, replaced per block, so a GUI thread may read it without a lock.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace

import numpy as np

from scipy import signal

from biofeedback.dsp import Calibration, EmgProcessor, LiveHrv, TensionIndex
from biofeedback.stream import Block, BlockFlag, Gap, StreamHub, StreamKind

FEEDBACK_SMOOTHING_S = 0.5
"""Time constant of the exponential smoothing of the tension that drives the feedback: the 250 ms envelope
of resting EMG wanders by ±10 %, and a tone that flickers around the target is no guide with eyes closed."""


@dataclass(frozen=True)
class FeedSnapshot:
    emg: bool = False
    """An EMG sensor has sent data."""
    heart: bool = False
    """A heart sensor has sent beats."""
    tension: float = math.nan
    """Mean tension index over channels (``unit``): the envelope smoothed over ``FEEDBACK_SMOOTHING_S``."""
    quality: int = 0
    """``QualityFlag`` bits of the newest block, any channel."""
    contact_lost: bool = False
    emg_t_s: float = -math.inf
    """Session time of the newest EMG sample."""
    hr_bpm: float = math.nan
    rmssd_ms: float = math.nan
    unit: str = "uV"


class RelaxFeed:
    """Tension, signal quality, contact and heart numbers of a hub (call on the hub's thread)."""

    def __init__(self, hub: StreamHub, calibration: Calibration | None = None) -> None:
        self.hub = hub
        self.index = TensionIndex(calibration)
        self.snapshot = FeedSnapshot(unit=self.index.unit)
        self._lock = threading.Lock()
        self._tension: list[tuple[float, float, bool]] = []
        """(time s, tension, good) per EMG block."""
        self._beats: list[tuple[float, float]] = []
        """(beat time s, raw RR ms) as received."""
        self._emg: EmgProcessor | None = None
        self._emg_key: tuple[str, str] | None = None
        self._hrv: dict[str, LiveHrv] = {}
        self._smooth: tuple[np.ndarray, np.ndarray] | None = None
        self._zi: np.ndarray | None = None
        self._detach = hub.listen(self.on_block, self.on_gap)

    def close(self) -> None:
        self._detach()

    def on_block(self, block: Block) -> None:
        if block.times_s is None or not block.n:
            return
        if block.stream == StreamKind.EMG and block.rate_hz:
            self._on_emg(block)
        elif block.stream == StreamKind.RR:
            times, rr = np.asarray(block.times_s, dtype=float), block.data[:, 0]
            with self._lock:
                self._beats.extend(zip(times.tolist(), rr.tolist()))
            decided = self._hrv.setdefault(block.source, LiveHrv()).add_beats(times, rr)
            snap = replace(self.snapshot, heart=True)
            if decided:
                snap = replace(snap, hr_bpm=decided[-1].mean_hr_bpm, rmssd_ms=decided[-1].rmssd_ms)
            self.snapshot = snap

    def _on_emg(self, block: Block) -> None:
        key = (block.stream, block.source)
        if self._emg_key is None:
            self._emg_key = key
            self._emg = EmgProcessor(block.rate_hz, channels=block.data.shape[1])
            a = math.exp(-1.0 / (FEEDBACK_SMOOTHING_S * block.rate_hz))
            self._smooth = (np.array([1.0 - a]), np.array([1.0, -a]))
        if key != self._emg_key:
            return  # one EMG sensor drives the feedback
        out = self._emg.process(block.data)
        ref = self.index.reference_uv
        if ref is not None and ref.size != block.data.shape[1]:
            tension = math.nan  # calibration of another sensor: no feedback rather than wrong feedback
        else:
            combined = self.index.combined(out.envelope_uv)
            if self._zi is None:
                self._zi = np.array([combined[0] * -self._smooth[1][1]])  # steady state at the first value
            smooth, self._zi = signal.lfilter(*self._smooth, combined, zi=self._zi)
            tension = float(smooth[-1])
            if not np.isfinite(self._zi).all():
                self._zi = None
        quality = int(np.bitwise_or.reduce(out.quality.ravel())) if out.quality.size else 0
        contact_lost = bool(block.flags & BlockFlag.SENSOR_CONTACT_LOST)
        t = float(block.times_s[-1])
        with self._lock:
            self._tension.append((t, tension, quality == 0 and not contact_lost))
        self.snapshot = replace(self.snapshot, emg=True, tension=tension, quality=quality, contact_lost=contact_lost,
                                emg_t_s=t)

    def on_gap(self, gap: Gap) -> None:
        if gap.stream == StreamKind.EMG and (gap.stream, gap.source) == self._emg_key:
            self._emg.reset()
            self._zi = None
        elif gap.stream == StreamKind.RR and gap.source in self._hrv:
            self._hrv[gap.source].reset()

    def mean_tension(self, a_s: float, b_s: float) -> float:
        """Mean tension over good blocks in [a_s, b_s); NaN if none."""
        with self._lock:
            values = [v for t, v, good in self._tension if a_s <= t < b_s and good and math.isfinite(v)]
        return float(np.mean(values)) if values else math.nan

    def beats(self, a_s: float, b_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(beat times s, raw RR ms) in [a_s, b_s)."""
        with self._lock:
            rows = [(t, rr) for t, rr in self._beats if a_s <= t < b_s]
        arr = np.array(rows, dtype=float).reshape(-1, 2)
        return arr[:, 0], arr[:, 1]
