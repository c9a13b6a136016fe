"""Live processing for the dashboard, run on the acquisition loop (worker thread), never in the GUI.

``LiveProcessing`` listens on a ``StreamHub`` like the recorder does: every EMG block goes through a
``dsp.EmgProcessor`` and a ``dsp.TensionIndex``, every RR block through a ``dsp.LiveHrv``. Results go
into ring buffers of their own (same ``RingBuffer`` as the hub: thread-safe, NaN rows for gaps), so the
GUI reads them with ``snapshot()`` exactly as it reads raw data. The newest numbers are one immutable
``LiveValues`` object, replaced (not mutated) per block, so the GUI can read it without a lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from biofeedback.dsp import Calibration, EmgProcessor, LiveHrv, QualityFlag, TensionIndex, symmetry_index
from biofeedback.stream import RING_SECONDS, Block, Gap, RingBuffer, StreamHub, StreamKind

TENSION_TRACE_HZ = 50.0
"""Rate at which the tension trace is kept for display (the envelope carries nothing faster than ~6 Hz)."""
HRV_RING_ROWS = 4096

QUALITY_WORDS = (
    (QualityFlag.FLAT, "flat / electrode off"),
    (QualityFlag.SATURATED, "saturated"),
    (QualityFlag.MAINS, "mains hum"),
    (QualityFlag.MOTION, "motion"),
    (QualityFlag.WARMUP, "settling"),
)


def quality_text(bits: int) -> str:
    """Words for ``QualityFlag`` bits; 'good' when none is set."""
    words = [w for flag, w in QUALITY_WORDS if bits & flag]
    return ", ".join(words) if words else "good"


@dataclass(frozen=True)
class LiveValues:
    """The newest numbers the dashboard shows; NaN where not known yet."""

    tension: tuple[float, ...] = ()
    """Tension index per EMG channel (``TensionIndex.unit``), from the 250 ms moving RMS."""
    rms_uv: tuple[float, ...] = ()
    symmetry_pct: float = float("nan")
    quality: tuple[int, ...] = ()
    """``QualityFlag`` bits per EMG channel."""
    hr_bpm: float = float("nan")
    rmssd_ms: float = float("nan")
    stress_index: float = float("nan")
    """Kubios stress index (√ Baevsky SI) over the last 60 s; NaN below 20 beats."""
    newest_host_ns: dict[str, int] = field(default_factory=dict)
    """Per stream: ``Block.host_time_ns`` of its newest block (for the arrival-to-paint latency)."""


class LiveProcessing:
    """Tension index and HRV of a hub's streams, computed as blocks arrive (call on the hub's thread)."""

    def __init__(self, hub: StreamHub, calibration: Calibration | None = None) -> None:
        self.hub = hub
        self.calibration = calibration or Calibration()
        self.index = TensionIndex(self.calibration)
        self.emg_channels: tuple[str, ...] = ()
        self.tension: RingBuffer | None = None
        """Columns: tension index from the low-latency envelope per channel, at ``TENSION_TRACE_HZ``."""
        self.hrv = RingBuffer(HRV_RING_ROWS, 3)
        """Columns: corrected HR (bpm), RMSSD (ms), stress index, at each decided beat's time."""
        self.values = LiveValues()
        self._emg: EmgProcessor | None = None
        self._emg_key: tuple[str, str] | None = None
        self._step = 1
        self._phase = 0
        self._live_hrv: dict[str, LiveHrv] = {}
        self._detach = hub.listen(self.on_block, self.on_gap)

    def close(self) -> None:
        """Stop listening to the hub."""
        self._detach()

    def on_block(self, block: Block) -> None:
        newest = dict(self.values.newest_host_ns)
        newest[block.stream] = block.host_time_ns
        self.values = replace(self.values, newest_host_ns=newest)
        if block.stream == StreamKind.EMG and block.times_s is not None and block.rate_hz:
            self._on_emg(block)
        elif block.stream == StreamKind.RR and block.times_s is not None and block.n:
            hrv = self._live_hrv.setdefault(block.source, LiveHrv())
            self._add_beats(hrv.add_beats(np.asarray(block.times_s), block.data[:, 0]))

    def _on_emg(self, block: Block) -> None:
        key = (block.stream, block.source)
        if self._emg_key is None:
            self._emg_key = key
            self.emg_channels = block.channels
            self._emg = EmgProcessor(block.rate_hz, channels=block.data.shape[1])
            self._step = max(1, round(block.rate_hz / TENSION_TRACE_HZ))
            self.tension = RingBuffer(int(RING_SECONDS * TENSION_TRACE_HZ) + 64, block.data.shape[1])
        if key != self._emg_key:
            return  # one EMG sensor drives the tension display
        out = self._emg.process(block.data)
        pick = np.arange((-self._phase) % self._step, block.n, self._step)
        self._phase = (self._phase + block.n) % self._step
        if pick.size:
            self.tension.append(block.times_s[pick], self._tension(out.envelope_uv[pick]))
        rms = out.rms_uv[-1]
        tension = self._tension(rms[None, :])[0]
        self.values = replace(
            self.values, tension=tuple(map(float, tension)), rms_uv=tuple(map(float, rms)),
            symmetry_pct=symmetry_index(rms[0], rms[1]) if rms.size == 2 and rms.sum() > 0 else float("nan"),
            quality=tuple(int(q) for q in np.bitwise_or.reduce(out.quality, axis=0)))

    def _tension(self, rms_uv: np.ndarray) -> np.ndarray:
        ref = self.index.reference_uv
        if ref is not None and ref.size != rms_uv.shape[1]:
            return np.full(rms_uv.shape, np.nan)  # calibration of another sensor: show nothing rather than wrong
        return self.index(rms_uv)

    def _add_beats(self, decided: list) -> None:
        if not decided:
            return
        self.hrv.append(np.array([m.time_s for m in decided]),
                        np.array([[m.hr_bpm, m.rmssd_ms, m.stress_index] for m in decided]))
        last = decided[-1]
        self.values = replace(self.values, hr_bpm=last.mean_hr_bpm, rmssd_ms=last.rmssd_ms, stress_index=last.stress_index)

    def on_gap(self, gap: Gap) -> None:
        if gap.stream == StreamKind.EMG and (gap.stream, gap.source) == self._emg_key:
            self._emg.reset()
            self.tension.mark_gap(gap.start_s)
        elif gap.stream == StreamKind.RR and gap.source in self._live_hrv:
            hrv = self._live_hrv[gap.source]
            self._add_beats(hrv.flush())
            hrv.reset()
            self.hrv.mark_gap(gap.start_s)

    def reference_lines(self) -> dict[str, np.ndarray]:
        """Calibration levels in tension-index units per channel: 'rest' and 'reference' where known."""
        ref, rest = self.index.reference_uv, self.calibration.rest_rms_uv
        if ref is None:
            return {}
        if self.index.unit == "%rest":
            return {"rest": np.full(ref.size, 100.0)}
        lines = {"reference": np.full(ref.size, 100.0)}
        if rest is not None:
            lines["rest"] = self.index(np.asarray(rest, dtype=float)[None, :])[0]
        return lines
