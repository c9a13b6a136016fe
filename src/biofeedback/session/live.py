"""The one live processor of a session: every block through the EMG chain once, every beat through RR correction once.

``LiveProcessor`` listens on a ``StreamHub`` (on the acquisition loop's thread, like the recorder) and feeds
every display and the recorder:

- EMG blocks of the first EMG sensor go through one ``dsp.EmgProcessor`` with the cardiac artefact removed
  (``dsp.emg.SESSION_CARDIAC``; the beat times of every RR block go to it, ``EmgProcessor.add_beats``, placed
  on the EMG's samples by the newest EMG block's times; ``cardiac_report`` says what ran). **Tension** is,
  everywhere in the program, the ``dsp.TensionIndex`` of the chain's band-passed 250 ms moving RMS (``EmgOutput.rms_uv``): the
  dashboard's numbers and trace, the terminal line, the home feedback, the monitor and the offline analysis
  (which keeps the same RMS at 20 Hz) all show this one quantity.
- **Symmetry** (``LiveValues.symmetry_pct``) is ``dsp.symmetry_index`` of the sides' 250 ms RMS each normalised to
  its own reference, as offline (``analysis.compare.side_references``), so a difference in electrode gain between
  the sides is no asymmetry: % of the calibration's RVC per side ("%RVC"); without one, % of that side's own rest
  ("% own rest"): the calibration's rest RMS, else the mean clean RMS of the side's first ``REST_REFERENCE_SESSION_S``
  of clean EMG. NaN (shown "--") until a reference exists, never a symmetry of raw µV.
- RR blocks go through one ``dsp.LiveHrv`` per source (Lipponen & Tarvainen correction with a 5-beat look-ahead);
  each decided beat goes to the HRV ring and to ``beat_listeners`` (the recorder writes raw and corrected RR from
  them). A gap flushes and restarts the corrector, so no correction spans it.

Results go into ring buffers (thread-safe, NaN rows for gaps) that a GUI reads with ``snapshot()``, and into one
immutable ``LiveValues``, replaced (never mutated) per block, that any thread may read without a lock.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from biofeedback.dsp import BeatMetrics, Calibration, EmgProcessor, LiveHrv, QualityFlag, TensionIndex, symmetry_index
from biofeedback.dsp.emg import SESSION_CARDIAC
from biofeedback.stream import Block, BlockFlag, Gap, RingBuffer, StreamHub, StreamKind

TENSION_TRACE_HZ = 50.0
"""Rate at which the tension trace is kept for display and for means over a span (the 250 ms RMS holds nothing
faster than ~4 Hz)."""
TENSION_HISTORY_SESSION_S = 3600.0
"""Session seconds of tension kept (a home session's baseline, a calibration's windows are read back from it)."""
HRV_RING_ROWS = 4096
MIN_LIVE_RMSSD_BEATS = 10
"""Corrected beats since the last RR gap (or the start) before a live RMSSD is shown: from two or three beats it is
one or two differences (it read 2 ms right after a gap)."""
BEAT_HISTORY = 1 << 16
"""Beats kept for ``beats()`` (about 15 hours at 70 bpm)."""

QUALITY_WORDS = (
    (QualityFlag.FLAT, "flat / electrode off"),
    (QualityFlag.SATURATED, "saturated"),
    (QualityFlag.MAINS, "mains hum"),
    (QualityFlag.MOTION, "motion"),
    (QualityFlag.WARMUP, "settling"),
)


NO_SIGNAL_FLAGS = QualityFlag.FLAT | QualityFlag.SATURATED
"""Quality bits that mean a channel carries no muscle signal at all (electrode off, line at the rail)."""

REST_REFERENCE_SESSION_S = 30.0
"""Session seconds of clean EMG per side whose mean 250 ms RMS is that side's own rest reference for the live
symmetry when the calibration has neither an RVC nor a rest RMS per side. The live processor does not see the
phases, so the first 30 s of clean EMG stand in for the baseline rest phase that opens every protocol
(``protocols/*.toml``; offline, ``analysis.compare.side_references`` takes that phase's mean): long enough that the
slow fluctuation of resting EMG (about 8 % over seconds) averages out, short enough to show a symmetry early in the
baseline."""
SYMMETRY_RVC = "%RVC"
"""Scale of the live symmetry with a calibration that has an RVC per side (as ``analysis.compare``'s)."""
SYMMETRY_OWN_REST = "% own rest"
"""Scale of the live symmetry without an RVC: each side's amplitude as % of its own rest."""


def quality_text(bits: int) -> str:
    """Words for ``QualityFlag`` bits; 'good' when none is set."""
    words = [w for flag, w in QUALITY_WORDS if bits & flag]
    return ", ".join(words) if words else "good"


@dataclass(frozen=True)
class LiveValues:
    """The newest live numbers; NaN where not known yet."""

    emg: bool = False
    """An EMG sensor has sent data."""
    heart: bool = False
    """A heart sensor has sent beats."""
    tension: tuple[float, ...] = ()
    """Tension index per EMG channel (``TensionIndex.unit``) from the 250 ms moving RMS."""
    rms_uv: tuple[float, ...] = ()
    """250 ms moving RMS of the band-passed EMG per channel, µV."""
    symmetry_pct: float = math.nan
    """Left/right symmetry index, % (``dsp.symmetry_index``; + = left higher) of the sides' RMS each normalised to its
    own reference (``symmetry_unit``); NaN until a reference exists, and while a side has no signal or settles."""
    symmetry_unit: str = ""
    """Scale of ``symmetry_pct``: ``SYMMETRY_RVC``, ``SYMMETRY_OWN_REST``, or '' until a reference exists."""
    quality: tuple[int, ...] = ()
    """``QualityFlag`` bits per EMG channel over the newest block."""
    contact_lost: bool = False
    """The EMG sensor reports an electrode off the skin (newest block)."""
    emg_t_s: float = -math.inf
    """Session time of the newest EMG sample."""
    hr_bpm: float = math.nan
    """Mean HR of the corrected beats over the live window (lags the strap by the 5-beat look-ahead)."""
    rmssd_ms: float = math.nan
    stress_index: float = math.nan
    """Kubios stress index (√ Baevsky SI) over the live window; NaN below 20 beats."""
    newest_host_ns: dict[str, int] = field(default_factory=dict)
    """Per stream: ``Block.host_time_ns`` of its newest block (for the arrival-to-paint latency)."""

    @property
    def mean_tension(self) -> float:
        """Mean tension index over the channels; NaN when unknown."""
        finite = [v for v in self.tension if math.isfinite(v)]
        return float(np.mean(finite)) if finite and len(finite) == len(self.tension) else math.nan

    def no_signal(self, channel: int) -> bool:
        """The channel carries no muscle signal now: its electrode is off (a flat line at the rail, flagged by the
        chain) or the line is saturated. Show 'no signal' for it, never a tension of 0 or of the rail."""
        return channel < len(self.quality) and bool(self.quality[channel] & NO_SIGNAL_FLAGS)

    @property
    def symmetry_scale(self) -> str:
        """The symmetry's scale for a caption: ``symmetry_unit``, or what the symmetry waits for until it has one."""
        return self.symmetry_unit or f"needs {REST_REFERENCE_SESSION_S:.0f} s rest"

    def settling(self, channel: int) -> bool:
        """The channel's chain is still filling its filters and RMS window (``QualityFlag.WARMUP``: at the start or
        after a gap), so its tension is from a partial window: show '--' for it, not that number."""
        return channel < len(self.quality) and bool(self.quality[channel] & QualityFlag.WARMUP)

    @property
    def good(self) -> bool:
        """The newest EMG block is clean: no quality flag, electrodes on."""
        return self.emg and not any(self.quality) and not self.contact_lost


class LiveProcessor:
    """Tension index, signal quality and HRV of a hub's streams, computed once as blocks arrive (hub's thread)."""

    def __init__(self, hub: StreamHub, calibration: Calibration | None = None) -> None:
        self.hub = hub
        self.calibration = calibration or Calibration()
        self.index = TensionIndex(self.calibration)
        self.emg_channels: tuple[str, ...] = ()
        self.tension: RingBuffer | None = None
        self.trace_rate_hz = TENSION_TRACE_HZ
        """Rate of the tension trace: the EMG rate over a whole step, ``TENSION_TRACE_HZ`` when the rate allows."""
        """Columns: tension index per channel at ``TENSION_TRACE_HZ``, plus a last column: 1.0 where the block was
        clean (no quality flag, contact on), else 0.0."""
        self.hrv = RingBuffer(HRV_RING_ROWS, 3)
        """Columns: corrected HR (bpm), RMSSD (ms), stress index, at each decided beat's time."""
        self.values = LiveValues()
        self.beat_listeners: list[Callable[[str, list[BeatMetrics]], None]] = []
        """Called with (source, decided beats) as beats are decided (the recorder)."""
        self.trace_listeners: list[Callable[[str, np.ndarray, np.ndarray], None]] = []
        """Called with ('tension' or 'hrv', times s, rows) as rows join the tension trace or the HRV ring (an LSL
        outlet)."""
        self.emg_blocks = 0
        """EMG blocks that went through the chain (each exactly once)."""
        self.beats_in = 0
        """Beats that went into RR correction (each exactly once)."""
        self._emg: EmgProcessor | None = None
        self._emg_key: tuple[str, str] | None = None
        self._emg_anchor: tuple[int, float] | None = None
        """(``EmgProcessor.samples_in`` at the newest EMG block's first sample, that sample's session time)."""
        self._step = 1
        self._phase = 0
        self._side_ref_uv: np.ndarray | None = None
        """Per EMG channel, the RMS (µV) that is 100 on the symmetry's scale (``LiveValues.symmetry_unit``)."""
        self._rest_sum_uv = np.zeros(0)
        self._rest_n = np.zeros(0, dtype=np.int64)
        """Sum and count of each side's clean RMS samples so far, for its own rest reference."""
        self._hrv: dict[str, LiveHrv] = {}
        self._run_beats: dict[str, int] = {}
        """Beats decided per source since its last gap (or the start)."""
        self._beats = RingBuffer(BEAT_HISTORY, 1)
        self._closed = False
        self._detach = hub.listen(self.on_block, self.on_gap)

    def close(self) -> None:
        """Stop listening and hand on the beats still waiting for their look-ahead; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._detach()
        for source, hrv in self._hrv.items():
            self._decided(source, hrv.flush())

    # --- blocks -----------------------------------------------------------------------------------
    def on_block(self, block: Block) -> None:
        newest = dict(self.values.newest_host_ns)
        newest[block.stream] = block.host_time_ns
        self.values = replace(self.values, newest_host_ns=newest)
        if block.times_s is None or not block.n:
            return
        if block.stream == StreamKind.EMG and block.rate_hz:
            self._on_emg(block)
        elif block.stream == StreamKind.RR:
            times = np.asarray(block.times_s, dtype=float)
            self._beats.append(times, block.data[:, :1])
            if self._emg_anchor is not None:
                first_sample, first_s = self._emg_anchor
                self._emg.add_beats(first_sample + (times - first_s) * self._emg.fs_hz)
            self.beats_in += int(np.isfinite(block.data[:, 0]).sum())
            self.values = replace(self.values, heart=True)
            if block.source not in self._hrv:
                self._hrv[block.source] = LiveHrv()
            self._decided(block.source, self._hrv[block.source].add_beats(times, block.data[:, 0]))

    def _on_emg(self, block: Block) -> None:
        key = (block.stream, block.source)
        if self._emg_key is None:
            self._emg_key = key
            self.emg_channels = block.channels
            self._emg = EmgProcessor(block.rate_hz, channels=block.data.shape[1], cardiac=SESSION_CARDIAC)
            self._step = max(1, round(block.rate_hz / TENSION_TRACE_HZ))
            self.trace_rate_hz = block.rate_hz / self._step
            self.tension = RingBuffer(int(TENSION_HISTORY_SESSION_S * TENSION_TRACE_HZ) + 64, block.data.shape[1] + 1)
            self._calibrated_sides(block.data.shape[1])
        if key != self._emg_key:
            return  # one EMG sensor drives the tension
        self._emg_anchor = (self._emg.samples_in, float(block.times_s[0]))
        out = self._emg.process(block.data)
        self.emg_blocks += 1
        contact_lost = bool(block.flags & BlockFlag.SENSOR_CONTACT_LOST)
        quality = np.bitwise_or.reduce(out.quality, axis=0) if out.quality.size else np.zeros(block.data.shape[1], int)
        clean = 0.0 if contact_lost or quality.any() else 1.0
        pick = np.arange((-self._phase) % self._step, block.n, self._step)
        self._phase = (self._phase + block.n) % self._step
        if pick.size:
            trace = self._tension(out.rms_uv[pick])
            self.tension.append(block.times_s[pick], np.column_stack((trace, np.full(pick.size, clean))))
            for listener in self.trace_listeners:
                listener("tension", block.times_s[pick], trace)
        if self._side_ref_uv is None:
            self._own_rest(out.rms_uv, (out.quality == 0) & (not contact_lost))
        rms = out.rms_uv[-1]
        tension = self._tension(rms[None, :])[0]
        self.values = replace(
            self.values, emg=True, tension=tuple(map(float, tension)), rms_uv=tuple(map(float, rms)),
            symmetry_pct=self._symmetry(rms, quality),
            quality=tuple(int(q) for q in quality), contact_lost=contact_lost, emg_t_s=float(block.times_s[-1]))

    def _calibrated_sides(self, channels: int) -> None:
        """The symmetry's references from the calibration where it has them for these channels: the RVC per side,
        else the rest RMS per side; otherwise each side's own rest is measured (``_own_rest``)."""
        self._rest_sum_uv, self._rest_n = np.zeros(channels), np.zeros(channels, dtype=np.int64)
        cal = self.calibration
        for ref, unit in ((cal.rvc_rms_uv, SYMMETRY_RVC), (cal.rest_rms_uv, SYMMETRY_OWN_REST)):
            if ref is not None and len(ref) == channels and all(float(r) > 0 for r in ref):
                self._side_ref_uv = np.asarray(ref, dtype=float)
                self.values = replace(self.values, symmetry_unit=unit)
                return

    def _own_rest(self, rms_uv: np.ndarray, clean: np.ndarray) -> None:
        """Add a block's clean RMS samples (n, channels) to each side's rest mean until the side has
        ``REST_REFERENCE_SESSION_S`` of them; once every side has, the means are the symmetry's references, kept for
        the session."""
        need = REST_REFERENCE_SESSION_S * self._emg.fs_hz
        take = clean & (self._rest_n < need)[None, :]
        self._rest_sum_uv += np.where(take, rms_uv, 0.0).sum(axis=0)
        self._rest_n += take.sum(axis=0)
        if (self._rest_n >= need).all() and (self._rest_sum_uv > 0).all():
            self._side_ref_uv = self._rest_sum_uv / self._rest_n
            self.values = replace(self.values, symmetry_unit=SYMMETRY_OWN_REST)

    def _symmetry(self, rms_uv: np.ndarray, quality: np.ndarray) -> float:
        """``dsp.symmetry_index`` of the two sides' newest RMS as % of their references; NaN without references, for
        other than two channels, and while a side has no signal or settles."""
        ref = self._side_ref_uv
        if ref is None or rms_uv.size != 2 or (quality & (NO_SIGNAL_FLAGS | QualityFlag.WARMUP)).any():
            return math.nan
        scaled = 100.0 * rms_uv / ref
        return symmetry_index(scaled[0], scaled[1]) if scaled.sum() > 0 else math.nan

    def origins(self) -> list[str]:
        """Which sensor, at which rate, each live number comes from, in words (shown beside the numbers)."""
        out = []
        if self._emg is not None:
            lo, hi = self._emg.band_hz
            out.append(f"tension from {self._emg_key[1]} at {self._emg.fs_hz:g} Hz (band {lo:g}-{hi:g} Hz)")
        if self._hrv:
            out.append("heart rate and HRV from " + ", ".join(self._hrv))
        return out

    def _tension(self, rms_uv: np.ndarray) -> np.ndarray:
        ref = self.index.reference_uv
        if ref is not None and ref.size != rms_uv.shape[1]:
            return np.full(rms_uv.shape, np.nan)  # calibration of another sensor: show nothing rather than wrong
        return self.index(rms_uv)

    def _decided(self, source: str, decided: list[BeatMetrics]) -> None:
        if not decided:
            return
        for listener in self.beat_listeners:
            listener(source, decided)
        before = self._run_beats.get(source, 0)
        self._run_beats[source] = before + len(decided)
        rmssd = np.array([m.rmssd_ms for m in decided])
        rmssd[: max(0, MIN_LIVE_RMSSD_BEATS - 1 - before)] = np.nan  # shown from the MIN_LIVE_RMSSD_BEATS-th beat
        times = np.array([m.time_s for m in decided])
        rows = np.column_stack(([m.hr_bpm for m in decided], rmssd, [m.stress_index for m in decided]))
        self.hrv.append(times, rows)
        for listener in self.trace_listeners:
            listener("hrv", times, rows)
        last = decided[-1]
        self.values = replace(self.values, hr_bpm=last.mean_hr_bpm, rmssd_ms=float(rmssd[-1]),
                              stress_index=last.stress_index)

    def on_gap(self, gap: Gap) -> None:
        if gap.stream == StreamKind.EMG and (gap.stream, gap.source) == self._emg_key:
            self._emg.reset()
            self._emg_anchor = None
            self.tension.mark_gap(gap.start_s)
        elif gap.stream == StreamKind.RR and gap.source in self._hrv:
            hrv = self._hrv[gap.source]
            self._decided(gap.source, hrv.flush())
            hrv.reset()
            self._run_beats[gap.source] = 0
            self.hrv.mark_gap(gap.start_s)
            self._beats.mark_gap(gap.start_s)

    def cardiac_report(self) -> dict | None:
        """What the EMG chain did about the cardiac artefact, per channel (``EmgProcessor.cardiac_report``), with the
        channel names; None before any EMG."""
        if self._emg is None:
            return None
        return {"channels": list(self.emg_channels), **self._emg.cardiac_report()}

    def hr_now_bpm(self) -> float:
        """The strap's own newest HR when it sends one (the corrected beats' HR lags five beats), else theirs."""
        buf = self.hub.buffer(StreamKind.HR)
        if buf is not None:
            _, x = buf.snapshot(1)
            if len(x):
                return float(x[-1, 0])
        return self.values.hr_bpm

    # --- questions over a span --------------------------------------------------------------------
    def mean_tension(self, a_s: float, b_s: float) -> float:
        """Mean over [a_s, b_s) of the channels' mean tension, clean stretches only; NaN if none."""
        levels = self.tension_levels(a_s, b_s)
        return float(np.mean(levels)) if levels.size else math.nan

    def tension_levels(self, a_s: float, b_s: float) -> np.ndarray:
        """Clean tension samples (rows: time, columns: channels) in [a_s, b_s)."""
        if self.tension is None:
            return np.empty((0, 0))
        t, x = self.tension.snapshot()
        sel = (t >= a_s) & (t < b_s) & (x[:, -1] == 1.0) & np.isfinite(x).all(axis=1)
        return x[sel, :-1]

    def beats(self, a_s: float, b_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(beat times s, raw RR ms) in [a_s, b_s)."""
        t, x = self._beats.snapshot()
        sel = (t >= a_s) & (t < b_s) & np.isfinite(x[:, 0])
        return t[sel], x[sel, 0]

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
