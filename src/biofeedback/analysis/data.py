"""A recorded session loaded for analysis: phases, markers, exclusions, processed EMG and corrected beats.

EMG is run through ``dsp.EmgProcessor`` once (restarted after every break in the data, so no filter
spans a gap) and its 250 ms moving RMS kept at ``ANALYSIS_RATE_HZ``. A sample is excluded from the
statistics when it falls in a hands-on interval, when the processor flags it (warm-up, flat line or
electrode off, mains, motion, saturation) or when its block reports lost skin contact; stretches with
no data at all are counted as such. Beats keep their corrected RR (Lipponen & Tarvainen); beats in
hands-on intervals and beats the corrector removed are excluded, and a successive difference is only
formed between beats that follow each other without a gap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from biofeedback.dsp import EmgProcessor
from biofeedback.vocab import EventKind
from biofeedback.store import SessionReader, StoreError
from biofeedback.stream import BlockFlag, StreamKind

ANALYSIS_RATE_HZ = 20.0
"""Rate at which the 250 ms moving RMS is kept for analysis (it holds nothing above ~4 Hz)."""
EMG_BREAK_S = 0.25
"""A jump in EMG sample times longer than this restarts the filter chain (a gap in the data)."""
RR_BREAK_FACTOR = 1.5
"""Two beats follow each other without a gap when their time difference is below this multiple of the RR."""

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PhaseSpan:
    """One recorded phase: name, kind (rest, treatment, task), start and end in session seconds."""

    name: str
    kind: str
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class EmgTrack:
    """Moving RMS (µV) at ``rate_hz`` per channel, with per-sample exclusions."""

    channels: tuple[str, ...]
    rate_hz: float
    t_s: np.ndarray
    rms_uv: np.ndarray
    """(n, channels) 250 ms moving RMS, µV."""
    quality_bad: np.ndarray
    """(n, channels) True where the processor flagged a sample or the sensor lost skin contact."""
    hands_on: np.ndarray
    """(n,) True inside hands-on intervals."""

    @property
    def valid(self) -> np.ndarray:
        """(n, channels) True where a sample may enter statistics."""
        return ~self.quality_bad & ~self.hands_on[:, None]


@dataclass
class BeatTrack:
    """Beats by time with corrected RR; ``valid`` beats enter statistics."""

    t_s: np.ndarray
    rr_raw_ms: np.ndarray
    rr_ms: np.ndarray
    """Corrected RR, ms (NaN where the corrector removed the beat)."""
    flags: np.ndarray
    """``dsp.RrFlag`` bits per beat; nonzero means corrected."""
    hands_on: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.rr_ms) & ~self.hands_on


@dataclass
class SessionData:
    """Everything the analysis needs from one session file."""

    path: Path
    meta: dict
    duration_s: float
    phases: list[PhaseSpan]
    markers: list[dict]
    """Markers and notes (dicts with kind, t_s, label)."""
    hands_on: list[tuple[float, float]]
    gaps: list
    """``stream.Gap`` intervals as recorded."""
    emg: EmgTrack | None
    beats: BeatTrack | None
    calibration: dict | None
    """rest_rms_uv, rvc_rms_uv, mvc_rms_uv (µV per channel) when the session used a calibration."""
    problems: list[str] = field(default_factory=list)
    """What is missing or doubtful in this recording, in plain words."""

    def phase(self, name: str) -> PhaseSpan | None:
        """The first phase called ``name``, or None."""
        return next((p for p in self.phases if p.name == name), None)


def _inside(t: np.ndarray, intervals: list[tuple[float, float]]) -> np.ndarray:
    mask = np.zeros(t.shape, dtype=bool)
    for a, b in intervals:
        mask |= (t >= a) & (t < b)
    return mask


def _emg_track(reader: SessionReader, hands_on: list[tuple[float, float]], progress: Progress | None) -> EmgTrack | None:
    sources = [src for s, src in reader.streams() if s == StreamKind.EMG]
    if not sources:
        return None
    source = sources[0]
    rate = reader.rate_hz(StreamKind.EMG, source)
    channels = reader.channels(StreamKind.EMG, source)
    times, data, lost = [], [], []
    for block in reader.raw_blocks(StreamKind.EMG):
        if block["source"] != source:
            continue
        times.append(block["times_s"])
        data.append(block["data"])
        lost.append(np.full(block["n"], bool(block["flags"] & BlockFlag.SENSOR_CONTACT_LOST)))
    if not times:
        return None
    t = np.concatenate(times)
    x = np.concatenate(data)
    contact_lost = np.concatenate(lost)
    order = np.argsort(t, kind="stable")
    t, x, contact_lost = t[order], x[order], contact_lost[order]
    if progress:
        progress(f"processing {t.size} EMG samples ({len(channels)} channels at {rate:g} Hz)")
    breaks = np.flatnonzero(np.diff(t) > EMG_BREAK_S) + 1
    step = max(1, round(rate / ANALYSIS_RATE_HZ))
    out_t, out_rms, out_bad = [], [], []
    for seg in np.split(np.arange(t.size), breaks):
        if seg.size == 0:
            continue
        rms, bad = EmgProcessor(rate, channels=x.shape[1]).rms_every(x[seg[0]:seg[-1] + 1], step)
        starts = np.arange(0, seg.size, step)
        out_t.append(t[seg][starts])
        out_rms.append(rms)
        out_bad.append(bad | np.logical_or.reduceat(contact_lost[seg], starts)[:, None])
    ts = np.concatenate(out_t)
    return EmgTrack(tuple(channels), rate / step, ts, np.concatenate(out_rms), np.concatenate(out_bad), _inside(ts, hands_on))


def _beat_track(reader: SessionReader, hands_on: list[tuple[float, float]]) -> BeatTrack | None:
    beats = reader.beats()
    if beats["t_s"].size == 0:
        return None
    sources = list(dict.fromkeys(beats["source"]))
    keep = beats["source"] == sources[0]
    t = beats["t_s"][keep]
    return BeatTrack(t, beats["rr_raw_ms"][keep], beats["rr_corrected_ms"][keep], beats["flags"][keep], _inside(t, hands_on))


def load_session(path: str | Path, progress: Progress | None = None) -> SessionData:
    """Read and pre-process a session file for analysis (raises ``StoreError`` on a damaged file)."""
    path = Path(path)
    with SessionReader(path) as reader:
        meta = reader.meta
        duration = reader.duration_s()
        phases = [PhaseSpan(e["label"], (e["data"] or {}).get("kind", "rest"), e["t_s"], e["t_s"] + e["duration_s"])
                  for e in reader.phases()]
        markers = [e for e in reader.events() if e["kind"] in ("marker", "note")]
        hands_on = [(e["t_s"], e["t_s"] + e["duration_s"]) for e in reader.events(EventKind.HANDS_ON)]
        gaps = reader.gaps()
        emg = _emg_track(reader, hands_on, progress)
        beats = _beat_track(reader, hands_on)
    cal = meta.get("calibration")
    calibration = cal if isinstance(cal, dict) and cal.get("rvc_rms_uv") else None
    problems = []
    if not meta.get("complete"):
        problems.append("the recording was not closed properly (crash or still recording); the last second may be missing")
    if not phases:
        problems.append("the recording has no phases (baseline, treatment, post); nothing can be compared")
    if emg is None:
        problems.append("no EMG sensor in this recording: trapezius tension cannot be analysed")
    if beats is None:
        problems.append("no heartbeats in this recording: heart rate and HRV cannot be analysed")
    return SessionData(path, meta, duration, sorted(phases, key=lambda p: p.start_s), markers, hands_on, gaps, emg, beats,
                       calibration, problems)


def contiguous_with_previous(t_s: np.ndarray, rr_ms: np.ndarray) -> np.ndarray:
    """True where a beat directly follows the previous one in the array (no gap or excluded beat between)."""
    out = np.zeros(t_s.size, dtype=bool)
    if t_s.size > 1:
        out[1:] = np.diff(t_s) * 1000.0 < RR_BREAK_FACTOR * rr_ms[1:]
    return out
