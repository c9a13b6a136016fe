"""The one loaded-session container: every reader of a recording goes through ``load_session``.

``load_session(path)`` returns a ``SessionData``: phases, markers, the recorded gaps, processed EMG and
corrected beats, and one set of ``Annotations`` (as MNE's ``Annotations``: onset, duration and
description in session seconds) marking the stretches that must not enter statistics:

==================  ==========================================================  ===================
description         stretch                                                     rejects
==================  ==========================================================  ===================
``BAD_hands_on``    a hands-on interval (the therapist touching the client)     EMG and beats
``BAD_ACQ_SKIP``    a recorded gap of one stream (as MNE marks skipped data)    that stream's EMG
``BAD_contact``     EMG blocks in which the sensor reported lost skin contact    EMG
==================  ==========================================================  ===================

This module is the one place for exclusion rules; the summary, the comparison, trends, reports, sham
feedback and the home summary all read ``emg.valid`` and ``beats.valid`` and ask ``enough_clean`` whether a
phase holds enough clean data, so none of them can disagree about what was clean.

EMG: read from the file in pieces (``SessionReader.chunks`` in time order, ``CHUNK_SAMPLES`` at a time, so memory
holds the result and one piece, not the session's raw samples) and run through ``dsp.EmgProcessor.rms_every``
(restarted after every break in the data, so no filter spans a gap; ``_EmgChain`` carries each stretch's processor
and its last partial step from piece to piece, so the result is the same wherever the pieces end); its 250 ms moving
RMS (µV) is kept at ``ANALYSIS_RATE_HZ``, and a 25 ms moving RMS of the same cleaned signal at ``GAP_RATE_HZ``
for EMG gaps (0.2 s and longer: the 250 ms RMS hides them). A sample is valid when the
processor did not flag it (warm-up, flat line or electrode off, mains, motion, saturation) and no
rejecting annotation holds it (``onset <= t < onset + duration``, as MNE's ``reject_by_annotation``).
Statistics take EMG in ``WINDOW_S`` windows holding at least ``MIN_WINDOW_VALID`` valid samples.

Beats: the analysis corrects the raw RR offline with ``dsp.correct_rr`` (Lipponen & Tarvainen 2019) over
each uninterrupted stretch of beats (a stretch ends where the time to the next beat exceeds
``RR_BREAK_FACTOR`` times its RR: a gap), seeing the whole stretch on both sides of every beat; a beat it inserts where the strap missed one becomes a
beat of the track (no raw RR), so the corrected series runs on through it. The live
corrector's RR and flags stored in the recording (decided with a 5-beat look-ahead, for display) stay
available as ``live_rr_ms`` and ``live_flags`` but enter no statistics. A beat is valid when the offline
correction kept it and it is not in a hands-on interval. A recorded RR gap starts at the last beat before it, which is a real
beat and stays valid; no successive difference spans a gap (``contiguous_with_previous``).

A phase gives a level when it holds at least ``MIN_CLEAN_S`` of clean data (``enough_clean``; ``too_little``
says so in words).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import numpy as np

from biofeedback.dsp import EmgProcessor, QualityThresholds, correct_rr
from biofeedback.dsp.emg import GAP_RMS_WINDOW_S, SESSION_CARDIAC
from biofeedback.store import SessionReader
from biofeedback.store.session_file import CHUNK_SAMPLES
from biofeedback.store.export import contact_lost_stretches
from biofeedback.stream import BlockFlag, Gap, StreamKind
from biofeedback.vocab import EventKind

ANALYSIS_RATE_HZ = 20.0
"""Rate at which the 250 ms moving RMS is kept for analysis (it holds nothing above ~4 Hz)."""
GAP_RATE_HZ = 50.0
"""Rate at which the amplitude behind EMG gaps (a ``dsp.emg.GAP_RMS_WINDOW_S`` moving RMS) is kept: gap edges to 20 ms,
well inside the ±50 ms a 0.2 s gap needs; at 100 Hz a report's memory grew by 53 MB per session-hour (issue 19's
bound is 50), the gap windows and their bootstrap being five times the 20 Hz RMS's."""
EMG_BREAK_S = 0.25
"""A jump in EMG sample times longer than this restarts the filter chain (a gap in the data)."""
RR_BREAK_FACTOR = 1.5
"""Two beats follow each other without a gap when their time difference is below this multiple of the RR."""
WINDOW_S = 5.0
"""EMG unit of statistics: one window of the moving RMS."""
MIN_WINDOW_VALID = 0.5
"""A window enters the statistics when at least this fraction of its samples is valid."""
PROGRESS_EVERY_S = 600.0
# heart-sensor beats reach the EMG chain this far ahead of the samples they fall in (the cardiac stage waits at most
# dsp.cardiac.ARRIVAL_BOUND_S for a beat, so one second ahead keeps them all "early", as in one whole-file call)
BEAT_LOOKAHEAD_S = 1.0
"""Session seconds of EMG between two progress lines of the offline processing."""
MIN_CLEAN_S = 30.0
"""Least clean data in a phase (valid EMG in windows, or the RR of valid beats) to report a level."""

BAD_HANDS_ON = "BAD_hands_on"
BAD_ACQ_SKIP = "BAD_ACQ_SKIP"
BAD_CONTACT = "BAD_contact"
EMG_REJECT = (BAD_HANDS_ON, BAD_ACQ_SKIP, BAD_CONTACT)
"""Annotations that reject EMG samples."""
BEAT_REJECT = (BAD_HANDS_ON,)
"""Annotations that reject beats (an RR gap holds no beats; the beat at its onset is real)."""

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


class Annotation(NamedTuple):
    """One annotated stretch in session seconds; ``stream`` None means every stream (MNE's empty ``ch_names``)."""

    onset_s: float
    duration_s: float
    description: str
    stream: str | None = None

    @property
    def end_s(self) -> float:
        return self.onset_s + self.duration_s


@dataclass(frozen=True)
class Annotations:
    """Annotated stretches by onset, with MNE's ``reject_by_annotation`` rule as ``mask``."""

    items: tuple[Annotation, ...] = ()

    def __iter__(self) -> Iterator[Annotation]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def select(self, descriptions: tuple[str, ...], stream: str | None = None) -> list[Annotation]:
        """Annotations with one of ``descriptions`` that apply to ``stream`` (None: only those of every stream)."""
        return [a for a in self.items if a.description in descriptions and a.stream in (None, stream)]

    def intervals(self, description: str, stream: str | None = None) -> list[tuple[float, float]]:
        """(start_s, end_s) of the annotations called ``description`` that apply to ``stream``."""
        return [(a.onset_s, a.end_s) for a in self.select((description,), stream)]

    def mask(self, t_s: np.ndarray, descriptions: tuple[str, ...], stream: str | None = None) -> np.ndarray:
        """True where ``onset <= t < onset + duration`` for a selected annotation."""
        out = np.zeros(np.shape(t_s), dtype=bool)
        for a in self.select(descriptions, stream):
            out |= (t_s >= a.onset_s) & (t_s < a.end_s)
        return out


@dataclass(frozen=True)
class EmgWindows:
    """One phase's EMG values cut into ``WINDOW_S`` windows, NaN where excluded; only windows that count."""

    values: np.ndarray
    """(windows, samples per window)."""
    index: np.ndarray
    """Position of each kept window in the phase (0 = the phase's first ``WINDOW_S``)."""
    clean_s: float
    """Seconds of valid samples in the kept windows."""

    @property
    def n(self) -> int:
        return int(self.index.size)


@dataclass
class EmgTrack:
    """Moving RMS (µV) at ``rate_hz`` per channel, the processor's flags, and the session's annotations."""

    channels: tuple[str, ...]
    rate_hz: float
    t_s: np.ndarray
    rms_uv: np.ndarray
    """(n, channels) 250 ms moving RMS, µV."""
    flagged: np.ndarray
    """(n, channels) True where ``EmgProcessor`` flagged a sample."""
    annotations: Annotations
    sensor_rate_hz: float = float("nan")
    """The recorded stream's sample rate (``rate_hz`` is the analysis rate of ``rms_uv``)."""
    band_hz: tuple[float, float] = (float("nan"), float("nan"))
    """The band-pass ``EmgProcessor`` used at ``sensor_rate_hz`` (its upper edge is at most 0.45 of the rate)."""
    gap_t_s: np.ndarray | None = None
    gap_uv: np.ndarray | None = None
    """(m, channels) short-window moving RMS (µV) at ``GAP_RATE_HZ``, times ``gap_t_s``: the amplitude of EMG gaps."""

    @cached_property
    def hands_on(self) -> np.ndarray:
        """(n,) True inside hands-on intervals."""
        return self.annotations.mask(self.t_s, (BAD_HANDS_ON,), StreamKind.EMG)

    @cached_property
    def contact_lost(self) -> np.ndarray:
        """(n,) True where the sensor reported lost skin contact."""
        return self.annotations.mask(self.t_s, (BAD_CONTACT,), StreamKind.EMG)

    @property
    def quality_bad(self) -> np.ndarray:
        """(n, channels) True where the processor flagged a sample or the sensor lost skin contact."""
        return self.flagged | self.contact_lost[:, None]

    @cached_property
    def rejected(self) -> np.ndarray:
        """(n,) True where an annotation rejects the sample (``EMG_REJECT``)."""
        return self.annotations.mask(self.t_s, EMG_REJECT, StreamKind.EMG)

    @cached_property
    def valid(self) -> np.ndarray:
        """(n, channels) True where a sample may enter statistics."""
        return ~self.flagged & ~self.rejected[:, None]

    def windows(self, span: PhaseSpan, values: np.ndarray, valid: np.ndarray, t_s: np.ndarray | None = None,
                rate_hz: float | None = None) -> EmgWindows:
        """``values`` (n,) in ``span`` as ``WINDOW_S`` windows, masked by ``valid`` (n,); windows under
        ``MIN_WINDOW_VALID`` valid are left out. ``t_s``, ``rate_hz``: of another series than the moving RMS."""
        t_s = self.t_s if t_s is None else t_s
        rate_hz = self.rate_hz if rate_hz is None else rate_hz
        m = max(1, round(WINDOW_S * rate_hz))
        count = int(span.duration_s // WINDOW_S)
        sel = (t_s >= span.start_s) & (t_s < span.start_s + count * WINDOW_S)
        k = np.round((t_s[sel] - span.start_s) * rate_hz).astype(int)  # sample number in the phase
        w = np.minimum(k // m, max(count - 1, 0))
        pos = np.minimum(k - w * m, m - 1)
        mat = np.full((count, m), np.nan)
        mat[w, pos] = np.where(valid[sel], values[sel], np.nan)
        keep = np.mean(np.isfinite(mat), axis=1) >= MIN_WINDOW_VALID
        mat = mat[keep]
        return EmgWindows(mat, np.flatnonzero(keep), float(np.isfinite(mat).sum() / rate_hz))

    def channel_windows(self, span: PhaseSpan, channel: int) -> EmgWindows:
        """The moving RMS of one channel in ``span`` as windows of its valid samples."""
        return self.windows(span, self.rms_uv[:, channel], self.valid[:, channel])

    def gap_windows(self, span: PhaseSpan, channel: int) -> EmgWindows:
        """The gap amplitude of one channel in ``span`` as windows, valid where the moving RMS's nearest earlier
        sample is (the same exclusions)."""
        near = np.clip(np.searchsorted(self.t_s, self.gap_t_s, side="right") - 1, 0, self.t_s.size - 1)
        return self.windows(span, self.gap_uv[:, channel], self.valid[near, channel], self.gap_t_s, GAP_RATE_HZ)


@dataclass
class BeatTrack:
    """Beats by time with offline-corrected RR; ``valid`` beats enter statistics."""

    t_s: np.ndarray
    """Beat times, s: the recorded beats and the beats the offline correction inserted where one was missed."""
    rr_raw_ms: np.ndarray
    """RR as recorded, ms; NaN for an inserted beat."""
    rr_ms: np.ndarray
    """RR corrected offline (``offline_correction``), ms; NaN where the correction removed the beat."""
    flags: np.ndarray
    """``dsp.RrFlag`` bits per beat of the offline correction; nonzero means corrected."""
    annotations: Annotations
    live_rr_ms: np.ndarray
    """RR as the live corrector decided it during the session (as recorded), ms; NaN for an inserted beat."""
    live_flags: np.ndarray
    """``dsp.RrFlag`` bits of the live corrector, as recorded (0 for an inserted beat)."""

    @property
    def recorded(self) -> np.ndarray:
        """True for the beats in the recording, False for those the offline correction inserted."""
        return np.isfinite(self.rr_raw_ms)

    @cached_property
    def hands_on(self) -> np.ndarray:
        return self.annotations.mask(self.t_s, (BAD_HANDS_ON,))

    @cached_property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.rr_ms) & ~self.annotations.mask(self.t_s, BEAT_REJECT)

    def in_span(self, span: PhaseSpan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Valid beats in ``span``: times (s), corrected RR (ms), successive differences (ms, NaN across a gap)."""
        sel = (self.t_s >= span.start_s) & (self.t_s < span.end_s) & self.valid
        t, rr = self.t_s[sel], self.rr_ms[sel]
        return t, rr, np.where(contiguous_with_previous(t, rr), np.diff(rr, prepend=np.nan), np.nan)


@dataclass
class SessionData:
    """Everything the analysis needs from one session file."""

    path: Path
    meta: dict
    duration_s: float
    phases: list[PhaseSpan]
    markers: list[dict]
    """Markers and notes (dicts with kind, t_s, label)."""
    annotations: Annotations
    """Hands-on intervals, recorded gaps and contact loss: every stretch excluded from statistics."""
    gaps: list[Gap]
    """``stream.Gap`` intervals as recorded (stream, source, reason); each is also a ``BAD_ACQ_SKIP``."""
    emg: EmgTrack | None
    beats: BeatTrack | None
    calibration: dict | None
    """rest_rms_uv, rvc_rms_uv, mvc_rms_uv (µV per channel) when the session used a calibration."""
    problems: list[str] = field(default_factory=list)
    """What is missing or doubtful in this recording, in plain words."""
    losses: list[str] = field(default_factory=list)
    """Data this recording lost (values the writer could not store, damaged parts of the file); also in ``problems``."""
    sensors: list[dict] = field(default_factory=list)
    """Which sensor each analysed quantity came from: quantity, source, profile, rate (``rate_hz``; None for beats)."""

    @property
    def hands_on(self) -> list[tuple[float, float]]:
        """Hands-on intervals (start_s, end_s)."""
        return self.annotations.intervals(BAD_HANDS_ON)

    def phase(self, name: str) -> PhaseSpan | None:
        """The first phase called ``name``, or None."""
        return next((p for p in self.phases if p.name == name), None)


def enough_clean(clean_s: float, units: int) -> bool:
    """True when a phase's clean data give a level: at least ``MIN_CLEAN_S`` seconds in at least two units."""
    return clean_s >= MIN_CLEAN_S and units >= 2


def too_little(phase: str, amount: str) -> str:
    """Why a phase gives no level, in words; ``amount`` is its clean data, e.g. '12 s' or 'left 3 s'."""
    return f"too little clean data in {phase} ({amount}; needs {MIN_CLEAN_S:.0f} s)"


@dataclass
class _Emg:
    """Processed EMG before the session's annotations are complete."""

    channels: tuple[str, ...]
    rate_hz: float
    t_s: np.ndarray
    rms_uv: np.ndarray
    flagged: np.ndarray
    contact: list[Annotation]
    gap_t_s: np.ndarray
    gap_uv: np.ndarray
    """``BAD_contact`` stretches: runs of blocks in which the sensor reported lost skin contact, each from its
    first sample to half a sample after its last (so the next block's first sample, whose time may jitter
    early, stays out)."""
    sensor_rate_hz: float
    band_hz: tuple[float, float]


class _EmgChain:
    """The offline EMG chain fed a stream's samples piece by piece in time order: one ``dsp.EmgProcessor`` per
    uninterrupted stretch (a jump of more than ``EMG_BREAK_S`` starts a new one, so no filter spans a gap), its moving
    RMS kept at every ``step``-th sample of the stretch with the OR of the flags over each step. Pieces may end
    anywhere: the samples short of a whole step wait for the next piece, so the result does not depend on where
    the pieces end."""

    def __init__(self, rate_hz: float, channels: int, step: int, beats_s: np.ndarray | None = None) -> None:
        self.rate_hz, self.channels, self.step = rate_hz, channels, step
        self.gap_step = max(1, round(rate_hz / GAP_RATE_HZ))
        self.gap_t_s: list[np.ndarray] = []
        self.gap_uv: list[np.ndarray] = []
        # the heart sensor's beat times (s, sorted): each handed to the stretch's processor once, with the piece
        # it falls in (or up to BEAT_LOOKAHEAD_S before), for the cardiac-artefact stage
        self._beats = np.sort(np.asarray(beats_s if beats_s is not None else [], dtype=float))
        self._next_beat = 0
        self._processor: EmgProcessor | None = None
        self._tail_t, self._tail_x = np.empty(0), np.empty((0, channels))
        self._last_t: float | None = None
        self.t_s: list[np.ndarray] = []
        self.rms_uv: list[np.ndarray] = []
        self.flagged: list[np.ndarray] = []

    def feed(self, t_s: np.ndarray, x_uv: np.ndarray) -> None:
        """The next samples (n,) and (n, channels), all at or after the samples fed before."""
        if not t_s.size:
            return
        breaks = np.diff(t_s, prepend=t_s[0] if self._last_t is None else self._last_t) > EMG_BREAK_S
        edges = [0, *np.flatnonzero(breaks).tolist(), t_s.size]
        for a, b in zip(edges[:-1], edges[1:]):
            if a == b:
                continue
            if breaks[a]:
                self._end_stretch()
            self._tail_t = np.concatenate([self._tail_t, t_s[a:b]])
            self._tail_x = np.concatenate([self._tail_x, x_uv[a:b]])
            whole = self._tail_t.size // self.step * self.step
            if whole:
                self._run(self._tail_t[:whole], self._tail_x[:whole])
                self._tail_t, self._tail_x = self._tail_t[whole:], self._tail_x[whole:]
        self._last_t = float(t_s[-1])

    def _end_stretch(self) -> None:
        if self._tail_t.size:
            self._run(self._tail_t, self._tail_x)
            self._tail_t, self._tail_x = self._tail_t[:0], self._tail_x[:0]
        self._processor = None

    def _run(self, t_s: np.ndarray, x_uv: np.ndarray) -> None:
        if self._processor is None:
            self._processor = EmgProcessor(self.rate_hz, channels=self.channels, cardiac=SESSION_CARDIAC)
            self._short = EmgProcessor(self.rate_hz, channels=self.channels, cardiac=SESSION_CARDIAC,
                                       rms_window_ms=1000.0 * GAP_RMS_WINDOW_S)
            self._next_beat = int(np.searchsorted(self._beats, t_s[0]))
            self._stretch_t0 = float(t_s[0])
        upto = int(np.searchsorted(self._beats, t_s[-1] + BEAT_LOOKAHEAD_S))
        # placed as sample positions from the stretch's first sample, as one whole-stretch call would place them
        beats = self._beats[self._next_beat:upto] - self._stretch_t0 - self._processor.samples_in / self.rate_hz
        self._next_beat = max(self._next_beat, upto)
        rms, flagged = self._processor.rms_every(x_uv, self.step, beats_s=beats)
        # the gap amplitude: the same cleaned signal (same cardiac stage, same beats) under a 25 ms window
        self.gap_uv.append(self._short.rms_every(x_uv, self.gap_step, beats_s=beats)[0])
        self.gap_t_s.append(t_s[::self.gap_step])
        self.t_s.append(t_s[::self.step])
        self.rms_uv.append(rms)
        self.flagged.append(flagged)

    def gaps(self) -> tuple[np.ndarray, np.ndarray]:
        """Times (s) and the 25 ms moving RMS (µV) for EMG gaps, at ``GAP_RATE_HZ``; after ``finish``."""
        if not self.gap_t_s:
            return np.empty(0), np.empty((0, self.channels))
        return np.concatenate(self.gap_t_s), np.concatenate(self.gap_uv)

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Times (s), moving RMS (µV) and flags of every kept sample, once every piece has been fed."""
        self._end_stretch()
        if not self.t_s:
            return np.empty(0), np.empty((0, self.channels)), np.empty((0, self.channels), dtype=bool)
        return np.concatenate(self.t_s), np.concatenate(self.rms_uv), np.concatenate(self.flagged)


def _process_emg(reader: SessionReader, progress: Progress | None, duration_s: float,
                 chunk_samples: int = CHUNK_SAMPLES) -> _Emg | None:
    """The first EMG source's moving RMS at ``ANALYSIS_RATE_HZ``, its flags and its contact-loss stretches, read
    ``chunk_samples`` at a time (``SessionReader.chunks`` in time order), so memory holds the result, not the raw
    samples."""
    sources = [src for s, src in reader.streams() if s == StreamKind.EMG]
    if not sources:
        return None
    source = sources[0]
    rate = reader.rate_hz(StreamKind.EMG, source)
    channels = reader.channels(StreamKind.EMG, source)
    step = max(1, round(rate / ANALYSIS_RATE_HZ))
    chain = _EmgChain(rate, len(channels), step, reader.beats()["t_s"])
    lost: list[tuple[float, float, bool]] = []
    if progress:
        progress(f"processing EMG ({len(channels)} channels at {rate:g} Hz, {duration_s / 60:.0f} min)")
    shown_s = 0.0
    for chunk in reader.chunks(StreamKind.EMG, source, chunk_samples, time_order=True):
        off = (chunk.flags & BlockFlag.SENSOR_CONTACT_LOST) != 0
        lost += [(a, b, True) for a, b in zip(chunk.first_s[off].tolist(), chunk.last_s[off].tolist())]
        chain.feed(chunk.times_s, chunk.data)
        if progress and chunk.times_s.size and chunk.times_s[-1] - shown_s >= PROGRESS_EVERY_S:
            shown_s = float(chunk.times_s[-1])
            progress(f"processing EMG: {shown_s / 60:.0f} of {duration_s / 60:.0f} min")
    t, rms, flagged = chain.finish()
    if not t.size:
        return None
    contact = [Annotation(a, b - a, BAD_CONTACT, StreamKind.EMG) for a, b in contact_lost_stretches(lost, rate)]
    band_hz = EmgProcessor(rate, channels=len(channels)).band_hz
    return _Emg(tuple(channels), rate / step, t, rms, flagged, contact, *chain.gaps(), rate, band_hz)


def load_session(path: str | Path, progress: Progress | None = None) -> SessionData:
    """Read and pre-process a session file for analysis (raises ``StoreError`` on a damaged file)."""
    path = Path(path)
    with SessionReader(path) as reader:
        meta = reader.meta
        duration = reader.duration_s()
        phases = [PhaseSpan(e["label"], (e["data"] or {}).get("kind", "rest"), e["t_s"], e["t_s"] + e["duration_s"])
                  for e in reader.phases()]
        markers = [e for e in reader.events() if e["kind"] in (EventKind.MARKER, EventKind.NOTE)]
        gaps = reader.gaps()
        events = [Annotation(e["t_s"], e["duration_s"], BAD_HANDS_ON) for e in reader.events(EventKind.HANDS_ON)]
        events += [Annotation(g.start_s, g.end_s - g.start_s, BAD_ACQ_SKIP, g.stream) for g in gaps]
        processed = _process_emg(reader, progress, duration, CHUNK_SAMPLES)
        beats = reader.beats()
        sensors = _sensors(reader, meta, beats)
        recording_problems = [f"while recording: {e['label']}" for e in reader.events(EventKind.RECORDING_PROBLEM)]
        skipped = [f"damaged in the file: {p}" for p in reader.problems]
    stretches = events + (processed.contact if processed is not None else [])
    annotations = Annotations(tuple(sorted(stretches, key=lambda a: (a.onset_s, a.description))))
    emg = None if processed is None else EmgTrack(processed.channels, processed.rate_hz, processed.t_s, processed.rms_uv,
                                                  processed.flagged, annotations, processed.sensor_rate_hz, processed.band_hz,
                                                  processed.gap_t_s, processed.gap_uv)
    if beats["t_s"].size:
        keep = beats["source"] == beats["source"][0]
        t, rr, flags, index = offline_correction(beats["t_s"][keep], beats["rr_raw_ms"][keep])
        recorded = index >= 0

        def per_beat(x: np.ndarray) -> np.ndarray:
            out = np.full(index.size, np.nan)
            out[recorded] = x[keep][index[recorded]]
            return out

        beat_track = BeatTrack(t, per_beat(beats["rr_raw_ms"]), rr, flags, annotations, per_beat(beats["rr_corrected_ms"]),
                               np.where(recorded, per_beat(beats["flags"]), 0).astype(np.uint8))
    else:
        beat_track = None
    cal = meta.get("calibration")
    calibration = cal if isinstance(cal, dict) and cal.get("rvc_rms_uv") else None
    problems = []
    if not meta.get("complete"):
        problems.append("the recording was not closed properly (crash or still recording); the last second may be missing")
    if not phases:
        problems.append("the recording has no phases (baseline, treatment, post); nothing can be compared")
    if emg is None:
        problems.append("no EMG sensor in this recording: trapezius tension cannot be analysed")
    if beat_track is None:
        problems.append("no heartbeats in this recording: heart rate and HRV cannot be analysed")
    losses = recording_problems + skipped
    problems += losses
    return SessionData(path, meta, duration, sorted(phases, key=lambda p: p.start_s), markers, annotations, gaps, emg,
                       beat_track, calibration, problems, losses, sensors)


def _sensors(reader: SessionReader, meta: dict, beats: dict) -> list[dict]:
    """Which sensor (source, profile) and rate the analysed EMG and heartbeats came from: the first EMG source (as
    ``_process_emg`` takes it) and the source of the first recorded beat."""
    profiles = {d.get("source"): d.get("profile") for d in meta.get("devices") or [] if isinstance(d, dict)}
    out = []
    emg_sources = [src for s, src in reader.streams() if s == StreamKind.EMG]
    if emg_sources:
        src = emg_sources[0]
        out.append({"quantity": "EMG tension", "source": src, "profile": profiles.get(src, src),
                    "rate_hz": reader.rate_hz(StreamKind.EMG, src)})
    if beats["t_s"].size:
        src = str(beats["source"][0])
        kinds = {s for s, source in reader.streams() if source == src}
        derived = StreamKind.ECG in kinds and StreamKind.HR not in kinds  # a board that sends ECG only (BITalino)
        origin = "R peaks in its ECG" if derived else "the intervals it sent"
        out.append({"quantity": "heart rate and HRV", "source": src, "profile": profiles.get(src, src),
                    "rate_hz": None, "from": origin})
    return out


def offline_correction(t_s: np.ndarray, rr_raw_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``dsp.correct_rr`` over each uninterrupted stretch of raw RR (a gap, by ``contiguous_with_previous``,
    starts a new stretch), as one series of beats: times (s), corrected RR (ms; NaN where a beat was removed),
    ``RrFlag`` bits, and the index of each beat's recorded beat (-1 for a beat inserted where one was missed,
    placed where the correction put it, before the recorded beat that closes the missed interval)."""
    times, rrs, flags, index = [], [], [], []
    starts = np.flatnonzero(~contiguous_with_previous(t_s, rr_raw_ms))
    for a, b in zip(starts, np.append(starts[1:], rr_raw_ms.size)):
        fix = correct_rr(rr_raw_ms[a:b])
        for k in range(b - a):
            nn = fix.nn_ms[fix.nn_source == k]
            for j in range(nn.size - 1):  # inserted beats, each closing one part of a missed interval
                times.append(t_s[a + k] - nn[j + 1:].sum() / 1000.0)
                rrs.append(nn[j])
                flags.append(fix.flags[k])
                index.append(-1)
            times.append(t_s[a + k])
            rrs.append(fix.corrected_ms[k])
            flags.append(fix.flags[k])
            index.append(a + k)
    return np.array(times), np.array(rrs), np.array(flags, dtype=np.uint8), np.array(index, dtype=int)


def contiguous_with_previous(t_s: np.ndarray, rr_ms: np.ndarray) -> np.ndarray:
    """True where a beat directly follows the previous one in the array (no gap or excluded beat between)."""
    out = np.zeros(t_s.size, dtype=bool)
    if t_s.size > 1:
        out[1:] = np.diff(t_s) * 1000.0 < RR_BREAK_FACTOR * rr_ms[1:]
    return out


NOMINAL_EMG_RATE_HZ = 1000.0
"""EMG rate at which the chain's settling time is read when a track does not say its sensor's (a live tally): the
settling is the 250 ms RMS window plus 100 ms, the same at any rate to within a sample."""


def _settling(track: EmgTrack) -> np.ndarray:
    """(n,) True within the EMG chain's settling (``EmgProcessor.warmup``) after the start of each uninterrupted
    stretch (the first sample, and after each jump of more than ``data.EMG_BREAK_S``, where the chain restarts)."""
    rate = track.sensor_rate_hz if np.isfinite(track.sensor_rate_hz) else NOMINAL_EMG_RATE_HZ
    settle_s = EmgProcessor(rate, channels=1).warmup / rate
    if not track.t_s.size:
        return np.zeros(0, dtype=bool)
    starts = track.t_s[np.r_[0, np.flatnonzero(np.diff(track.t_s) > EMG_BREAK_S) + 1]]
    since = track.t_s - starts[np.searchsorted(starts, track.t_s, side="right") - 1]
    return since < settle_s


def signal_loss_s(track: EmgTrack, span: PhaseSpan) -> tuple[dict[str, float], dict[str, float]]:
    """Per channel, seconds of ``span`` (hands-on left out) with no muscle signal, and with a poor one.

    No signal: the sensor reported lost contact, or the processor flagged the line and its 250 ms RMS is under
    ``QualityThresholds.flat_rms_uv`` (``QualityFlag.FLAT``'s own rule, re-applied because the track keeps one flag
    for all bits: an electrode off, or a line stuck at the ADC rail, flat once band-passed), outside the chain's
    settling, which is never FLAT. Poor signal: the other flagged seconds, where a muscle signal was there under mains
    hum, motion, a clipped line or the chain's settling after a gap. Neither is ever counted as zero tension."""
    sel = (track.t_s >= span.start_s) & (track.t_s < span.end_s) & ~track.hands_on
    finite = np.isfinite(track.rms_uv)
    flat = track.flagged & finite & (track.rms_uv < QualityThresholds().flat_rms_uv) & ~_settling(track)[:, None]
    none = sel[:, None] & (flat | track.contact_lost[:, None])
    poor = sel[:, None] & track.quality_bad & finite & ~none
    return ({ch: float(none[:, c].sum() / track.rate_hz) for c, ch in enumerate(track.channels)},
            {ch: float(poor[:, c].sum() / track.rate_hz) for c, ch in enumerate(track.channels)})
