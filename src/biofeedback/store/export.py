"""Exports of a session file: EDF+, CSV, BIDS-style physio and HDF5.

Long sessions in bounded memory: an export surveys each stream in one pass (count, first and last time, the rate
its times run at, contact-lost stretches) and then reads and writes its samples a piece at a time
(``CHUNK_SAMPLES``, ``SessionReader.chunks``): CSV rows, HDF5 slices of datasets made at their full size, BIDS grid rows
and EDF+ data records (``_Placer`` puts samples on the grid as they come, carrying one sample from piece to piece;
EDF+ takes two passes, the first for each signal's physical range). The files are byte for byte those written from
whole streams (for EDF+: those edfio writes from whole signals).

All exports give times in session seconds (0 = the session's UTC anchor) and shift every absolute
date by ``shift_days`` for anonymity: the start, and every date in the metadata, event labels and
data (a calibration's file name and time, the screening's time, ...; ``paths.shift_dates``). Nothing
else dates a file: the gzip header carries no time, HDF5 objects no creation times. Device addresses
never appear (the session file holds only salted aliases, and metadata are scrubbed again on the way
out). Exported files are 0600 whatever the umask (an earlier file of the same name included), and
the folders the export creates 0700; an existing ``out_dir`` keeps its mode. Every file name built
from the file's data (client ID, stream and source names) is made safe (``paths.safe_name``) and
checked to lie inside ``out_dir``.

Sample rates (EDF+ and BIDS, the exports that put samples on a grid): a regular stream is written
at its measured rate when that differs from its nominal rate by more than ``RATE_TOLERANCE`` (a
Polar H10's "130 Hz" ECG runs at 128-131 Hz by its own frame timestamps), otherwise at its nominal
rate (a device clock's ppm error). The measured rate is the one the driver measured from the
device's own timestamps, stored in the recording's ``devices`` metadata (``Driver.timing_report``);
for a recording without it, the rate the stored sample times run at over their contiguous
stretches (session time: it also carries the drift fit's error, some 100 ppm in a session's first
minutes). Samples are placed by their stored session times either way, so the file stays aligned
with its annotations. Within a contiguous stretch every grid point from its first sample to its last holds
the sample nearest in time (time quantisation: half a sample period; values are never
interpolated), so a stretch has no hole; where the grid and the samples run at slightly different
rates a sample is now and then written twice or left out, and the signal's prefiltering (EDF+) or
column description (BIDS) says how many, with the measured and nominal rates. Only the time
between stretches (a recorded gap, lost samples) is "no data". ``<stem>_session.json`` and the
HDF5 metadata carry each regular stream's nominal rate and both measured rates (``sample_rates``),
and the ``devices`` metadata any clock jumps the driver read through.

EDF+ (``<stem>.edf``, written with edfio):
  * EMG, ECG and any other regularly sampled stream are signals, one per channel, each at its
    own rate. The data record duration is the shortest of 1, 2, 4, 5, 8, 10, ... 100 s that gives
    every rate a whole number of samples per record within ``RATE_QUANTUM`` (129.6 Hz: 5 s); a
    rate is written as that whole number over the duration.
  * Samples sit on the grid ``k / rate`` from session time 0 (the file's start time), as above.
    Where a signal has no data the file holds 0 and an annotation ``BAD_ACQ_SKIP no data <label>``
    covers the stretch (MNE treats ``BAD_*`` annotations as bad segments).
  * Values are 16-bit: the physical range is the data's range rounded outward to whole units,
    so the quantisation error is at most half of (range / 65535) per sample.
  * Labels follow the EDF+ convention, type prefix, a space and a readable name in 16 characters
    (``EMG L-trapezius``, ``ECG 1``; ``_edf_label``), which MNE reads as types with ``infer_types=True``.
  * Phases, markers, notes, calibration and other events are annotations ``<kind>: <label>``; the stretches to
    leave out carry MNE's ``BAD_*`` descriptions (``analysis.data``'s vocabulary): recorded gaps
    ``BAD_ACQ_SKIP gap <stream>/<source>: <reason>``, contact loss ``BAD_contact <stream>/<source>`` (blocks flagged
    ``SENSOR_CONTACT_LOST``, ``contact_lost_stretches``), hands-on intervals ``BAD_hands_on: <label>``. RR is one
    annotation per beat at the beat time: ``RR <raw> ms`` or, where the corrected value
    differs or flags are set, ``RR <raw> ms corrected <corrected> ms flags <n>`` (kept exact
    rather than resampled, so HRV can be recomputed from the EDF alone). Irregular streams (HR, the strap's RR
    stream, device status) are not annotated: the beats hold the RR, and CSV and HDF5 hold every sample.
CSV: ``<stem>_<stream>[_<source>].csv`` per stream (``time_s`` then one column per channel,
  named ``<channel>_<unit>``, then ``contact_lost``: 1 inside a contact-lost stretch, else 0), ``<stem>_beats.csv``, ``<stem>_events.csv`` (phases, markers,
  gaps, contact loss, ...; ``annotation`` names a stretch to leave out by its ``BAD_*`` description) and ``<stem>_session.json`` (metadata). Beside them, RR for Kubios HRV ("RR interval
  data", text): per beat source, ``<stem>_kubios[_<source>]_part<k>.txt`` with one raw RR interval
  in ms a line, no header, and ``<stem>_kubios[_<source>]_times.txt`` with ``beat time s<TAB>RR ms``
  a line, no header (session seconds: no date). The RR are the recorded raw values (the strap's,
  uncorrected: Kubios corrects its own way). A recorded RR gap ends a part: each part is an
  unbroken series, numbered from 1, and no interval spans a gap (a beat whose interval overlaps a
  gap is left out of both files). In the times file a gap shows as a beat time that moves on by more
  than its RR. They are part of the CSV export rather than a format of their own so that the one
  plain-text export holds everything and no one has to know a second format to find them.
BIDS-style physio: ``sub-<id>/ses-<n>/beh/sub-<id>_ses-<n>_task-<task>[_recording-<rate>]_physio.tsv.gz``
  per rate group (columns on one grid, ``n/a`` where there is no sample; after each stream's channels a column
  ``<stream>_contact_lost[_<source>]``, 1 inside a contact-lost stretch, else 0) with a JSON sidecar
  (SamplingFrequency, StartTime relative to session start, Columns, units per column, PhysioType, TaskName),
  ``..._events.tsv`` (onset, duration, trial_type, label, stream, source, data, every column described in
  ``..._events.json``; trial_type is the ``BAD_*`` description of a stretch to leave out; beats and HR samples are
  not events and stay out) and ``sub-<id>_ses-<n>_scans.tsv`` with the (shifted) acquisition time. Every export
  into a folder also writes the dataset's files, so a study's sessions exported into one folder make one dataset:
  dataset_description.json (Authors and License from ``BidsDataset``), README and participants.tsv/json.
HDF5 (``<stem>.h5``): ``/streams/<stream>/<source>/{time_s,samples,contact_lost}`` (the last a uint8 flag per sample,
  1 inside a contact-lost stretch) with ``units``, ``rate_hz``
  (NaN for irregular streams) and ``channels`` attributes, ``/beats/<source>/...`` and an
  ``/events`` table (with ``annotation``, as in the CSV); session metadata as root attributes.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from biofeedback.sensors.timing import GAP_TOLERANCE_SAMPLES
from biofeedback.store.errors import StoreError
from biofeedback.store.paths import FILE_MODE, SECONDS_PER_DAY, SESSION_SUFFIX, inside, private_dir, private_file, \
    safe_name, scrub_addresses, shift_dates
from biofeedback.store.session_file import CHUNK_SAMPLES, SessionReader
from biofeedback.stream import BlockFlag, StreamKind
from biofeedback.vocab import EventKind

FORMATS = ("edf", "csv", "bids", "hdf5")
EDF_RECORD_DURATIONS_S = (1, 2, 4, 5, 8, 10, 20, 25, 40, 50, 100)
"""Candidate EDF data record durations, shortest first."""
BIDS_VERSION = "1.10.0"
"""The BIDS version the export follows (PhysioType came with 1.10)."""
TSV_CHUNK_ROWS = 100_000
PROGRESS_EVERY_S = 600.0
"""Session seconds of a stream between two progress lines of an export."""
RATE_TOLERANCE = 1e-3
"""A regular stream whose sample times run within this fraction of its nominal rate is written at the nominal rate
(a device clock's error stays below 1000 ppm); beyond it, at its measured rate."""
RATE_QUANTUM = 1e-4
"""EDF+: a written rate may lie this fraction from the rate it stands for, so that a record holds whole samples."""
EDF_LABEL_CHARS = 16
EDF_TYPES = {StreamKind.EMG: "EMG", StreamKind.ECG: "ECG"}
"""EDF+ signal type prefix of a stream (EDF+ specification, "standard texts"); any other sampled stream is MISC,
the type MNE gives signals it has no name for."""

BAD_ACQ_SKIP = "BAD_ACQ_SKIP"
BAD_CONTACT = "BAD_contact"
BAD_HANDS_ON = "BAD_hands_on"
CONTACT_COLUMN = "contact_lost"
"""CSV column and HDF5 dataset of a stream's samples: 1 inside a contact-lost stretch (``contact_lost_stretches``)."""
CONTACT_LOST = "contact-lost"
"""Export event kind of a stretch in which a sensor reported no skin contact (blocks flagged
``BlockFlag.SENSOR_CONTACT_LOST``); like "gap", it is made from the data, not recorded as an event."""
BAD_STRETCHES = {"gap": BAD_ACQ_SKIP, CONTACT_LOST: BAD_CONTACT, EventKind.HANDS_ON: BAD_HANDS_ON}
"""Event kinds that mark data to leave out, and their annotation in MNE's words (``analysis.data``'s vocabulary)."""
DEFAULT_BIDS_LICENSE = "Non-Standard"
"""BIDS ``License`` when none is given: health data are not released under an open licence by default."""


@dataclass
class _Stream:
    """One stream of the session: what it is, and what one pass over its samples found (``_survey``); its samples are
    read again, a piece at a time, by ``_Session.pieces`` when a writer needs them."""

    stream: str
    source: str
    channels: tuple[str, ...]
    unit: str
    rate_hz: float | None
    device_rate_hz: float | None = None
    """The rate the driver measured from the device's own timestamps (the recording's ``devices`` metadata), if any."""
    n: int = 0
    """Undamaged samples."""
    t_min_s: float = math.inf
    """Time of the earliest sample."""
    t_max_s: float = -math.inf
    """Time of the latest sample."""
    measured_rate_hz: float | None = None
    """Samples per second of session time over the contiguous stretches (``_runs``); None for irregular or too short
    streams."""
    contact_lost: list[tuple[float, float]] = field(default_factory=list)
    """(start_s, end_s) of the stretches in which the sensor reported no skin contact (``contact_lost_stretches``)."""

    @property
    def name(self) -> str:
        return f"{self.stream}/{self.source}"

    @property
    def best_rate_hz(self) -> float | None:
        """The device clock's rate where the driver measured it, else the rate of the stored times; None if neither."""
        return self.device_rate_hz or self.measured_rate_hz

    @property
    def target_rate_hz(self) -> float:
        """The rate to write a regular stream at: its measured rate where that is off its nominal rate."""
        measured = self.best_rate_hz
        if measured is not None and abs(measured / self.rate_hz - 1) > RATE_TOLERANCE:
            return measured
        return float(self.rate_hz)

    def contact_mask(self, t_s: np.ndarray) -> np.ndarray:
        """True for the sample times inside a contact-lost stretch (start <= t < end, MNE's rule)."""
        out = np.zeros(t_s.shape, dtype=bool)
        for a, b in self.contact_lost:
            out |= (t_s >= a) & (t_s < b)
        return out


@dataclass
class _Session:
    """Everything an exporter needs, dates already shifted: streams as surveyed (``_Stream``), beats and events, read
    once from the session file; samples come piece by piece from ``pieces`` while the file is open."""

    client_id: str
    start: dt.datetime
    meta: dict
    session_number: int
    streams: list[_Stream]
    beats: dict[str, dict[str, np.ndarray]]
    events: list[dict] = field(default_factory=list)
    """Phases, markers, ..., gaps and contact-loss stretches: onset_s, duration_s, kind, label, stream, source, data
    (JSON or ""), annotation (the ``BAD_*`` description of a stretch to leave out, else "")."""
    duration_s: float = 0.0
    reader: SessionReader | None = None
    chunk_samples: int = 0
    """Samples per piece read (``CHUNK_SAMPLES`` when the session is loaded)."""
    progress: Callable[[str], None] | None = None
    """Hears a line at most every ``PROGRESS_EVERY_S`` of session time of each stream written."""

    @property
    def stem(self) -> str:
        return f"{safe_name(self.client_id)}_{self.start:%Y%m%dT%H%M%SZ}"

    def multi_source(self, stream: str) -> bool:
        return sum(s.stream == stream for s in self.streams) > 1

    def pieces(self, s: _Stream) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """A stream's times (n,) and samples (n, channels), in arrival order, ``chunk_samples`` at a time."""
        shown = -math.inf
        for piece in self.reader.chunks(s.stream, s.source, self.chunk_samples):
            if self.progress is not None and piece.times_s.size and piece.times_s[-1] - shown >= PROGRESS_EVERY_S:
                shown = float(piece.times_s[-1])
                self.progress(f"exporting {s.name}: {shown / 60:.0f} of {self.duration_s / 60:.0f} min")
            yield piece.times_s, piece.data


def export_session(path: Path, fmt: str, out_dir: Path, shift_days: int = 0,
                   warn: Callable[[str], None] | None = None, bids: BidsDataset | None = None,
                   progress: Callable[[str], None] | None = None) -> list[Path]:
    """Export the session at ``path`` as ``fmt`` (edf, csv, bids, hdf5) into ``out_dir``; returns the files written.
    ``warn`` hears each damaged part of the file that was left out (the rest is exported). ``bids`` gives a BIDS
    export's dataset fields (authors, licence); sessions exported into one folder make one BIDS dataset. The samples
    are read and written a piece at a time (``CHUNK_SAMPLES``); ``progress`` hears how far each stream has got."""
    writer = _WRITERS.get(str(fmt).lower())
    if writer is None:
        raise StoreError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    with SessionReader(Path(path)) as reader:
        session = _load(reader, int(shift_days))
        session.progress = progress
        out_dir = private_dir(Path(out_dir))
        files = _write_bids(session, out_dir, bids or BidsDataset()) if writer is _write_bids else writer(session, out_dir)
        for problem in reader.problems if warn is not None else ():
            warn(f"{Path(path).name}: left out of the export, damaged: {problem}")
    for f in files:
        os.chmod(f, FILE_MODE)  # in case a library replaced the file we made
    return files


def _file(folder: Path, name: str, out_dir: Path | None = None) -> Path:
    """``folder / name`` made an empty 0600 file for a writer to fill, once checked to lie inside ``out_dir``."""
    if not name or any(sep in name for sep in ("/", "\\", os.sep)) or name in (".", ".."):
        raise StoreError(f"refusing to write a file named {name!r} (a damaged or hostile session file?)")
    return private_file(inside(out_dir or folder, folder / name))


def _load(reader: SessionReader, shift_days: int) -> _Session:
    meta = reader.meta
    start = dt.datetime.fromtimestamp(meta["utc_anchor"] - shift_days * SECONDS_PER_DAY, dt.timezone.utc)
    public = shift_dates(scrub_addresses({k: v for k, v in meta.items() if k != "utc_anchor"}), shift_days,
                         numbers=True)
    public["start_utc"] = start.isoformat().replace("+00:00", "Z")
    public["dates_shifted"] = bool(shift_days)  # not by how much: that and a shifted date give the real one
    device_rates = {(d.get("source"), stream): t.get("measured_rate_hz")
                    for d in meta.get("devices") or [] if isinstance(d, dict)
                    for stream, t in (d.get("timing") or {}).items()}
    streams, contact = [], []
    for stream, source in reader.streams():
        s = _survey(reader, _Stream(stream, source, reader.channels(stream, source), reader.unit(stream, source),
                                    reader.rate_hz(stream, source), device_rates.get((source, stream))),
                    CHUNK_SAMPLES)
        streams.append(s)
        contact += [{"onset_s": a, "duration_s": b - a, "kind": CONTACT_LOST, "label": "sensor reported no skin contact",
                     "stream": stream, "source": source, "data": ""} for a, b in s.contact_lost]
    beats = {}
    all_beats = reader.beats()
    for source in dict.fromkeys(all_beats["source"]):
        keep = all_beats["source"] == source
        beats[source] = {k: v[keep] for k, v in all_beats.items() if k != "source"}
    events = [
        {"onset_s": e["t_s"], "duration_s": e["duration_s"], "kind": e["kind"], "label": shift_dates(e["label"], shift_days),
         "stream": "", "source": "",
         "data": "" if e["data"] is None else json.dumps(shift_dates(e["data"], shift_days, numbers=True), sort_keys=True)}
        for e in reader.events()
    ] + [
        {"onset_s": g.start_s, "duration_s": g.length_s, "kind": "gap", "label": shift_dates(g.reason, shift_days),
         "stream": g.stream, "source": g.source,
         "data": "" if g.lost_samples is None else json.dumps({"lost_samples": g.lost_samples})}
        for g in reader.gaps()
    ] + contact
    for e in events:
        e["annotation"] = BAD_STRETCHES.get(e["kind"], "")
    events.sort(key=lambda e: (e["onset_s"], e["kind"]))
    public["sample_rates"] = {s.name: {"nominal_hz": s.rate_hz, "device_clock_hz": s.device_rate_hz,
                                       "session_clock_hz": s.measured_rate_hz} for s in streams if s.rate_hz}
    return _Session(meta["client_id"], start, public, _session_number(reader.path, meta), streams, beats, events,
                    reader.duration_s(), reader, CHUNK_SAMPLES)


def _survey(reader: SessionReader, s: _Stream, chunk_samples: int) -> _Stream:
    """``s`` with what one pass over its samples finds: count, earliest time, the rate its times run at over their
    contiguous stretches (``_runs``' rule, across pieces) and its contact-lost stretches."""
    blocks: list[tuple[float, float, bool]] = []
    last_t, run_first, run_last, run_n = None, 0.0, 0.0, 0
    span, steps = 0.0, 0
    for piece in reader.chunks(s.stream, s.source, chunk_samples):
        t = piece.times_s
        lost = (piece.flags & BlockFlag.SENSOR_CONTACT_LOST) != 0
        keep = lost if s.rate_hz else np.ones(lost.size, dtype=bool)  # a sampled stream's clean blocks play no part
        blocks += zip(piece.first_s[keep].tolist(), piece.last_s[keep].tolist(), lost[keep].tolist())
        if not t.size:
            continue
        s.n += t.size
        s.t_min_s, s.t_max_s = min(s.t_min_s, float(t.min())), max(s.t_max_s, float(t.max()))
        if s.rate_hz:
            starts = _run_starts(last_t, t, s.rate_hz)
            edges = [0, *np.flatnonzero(starts).tolist(), t.size]
            for a, b in zip(edges[:-1], edges[1:]):
                if a == b:
                    continue
                if starts[a]:
                    if run_n:
                        span, steps = span + float(run_last - run_first), steps + run_n - 1
                    run_first, run_n = float(t[a]), 0
                run_n, run_last = run_n + b - a, float(t[b - 1])
        last_t = float(t[-1])
    if run_n:
        span, steps = span + float(run_last - run_first), steps + run_n - 1
    s.measured_rate_hz = steps / span if s.rate_hz and span > 0 else None
    s.contact_lost = contact_lost_stretches(blocks, s.rate_hz)
    return s


def contact_lost_stretches(blocks: list[tuple[float, float, bool]], rate_hz: float | None) -> list[tuple[float, float]]:
    """(start_s, end_s) of the runs of blocks in which a sensor reported no skin contact, from blocks given as
    (first sample s, last sample s, contact lost) in session seconds. A sampled stream's flagged block covers its
    first sample to half a period after its last (so the next block's first sample, whose time may jitter early,
    stays out), and stretches less than a period apart merge: ``analysis.data``'s ``BAD_contact`` rule. An
    irregular stream's flagged block (a heart-rate notification) holds until the stream's next block."""
    blocks = sorted(blocks)
    if rate_hz:
        lost = [(a, b + 0.5 / rate_hz) for a, b, flagged in blocks if flagged]
        tolerance = 1.0 / rate_hz
    else:
        lost = [(a, nxt[0]) for (a, _, flagged), nxt in zip(blocks, blocks[1:]) if flagged]
        tolerance = 0.0
    out: list[list[float]] = []
    for a, b in lost:
        if out and a <= out[-1][1] + tolerance:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _session_number(path: Path, meta: dict) -> int:
    """``meta["session_number"]`` or the 1-based position of the file among its client's sessions."""
    if isinstance(meta.get("session_number"), int):
        return meta["session_number"]
    siblings = sorted(p.name for p in path.parent.glob(f"*{SESSION_SUFFIX}"))
    return siblings.index(path.name) + 1 if path.name in siblings else 1


def _uncovered_runs(covered: np.ndarray, rate_hz: float) -> list[tuple[float, float]]:
    """(onset, duration) in seconds of every run of False in ``covered``, a mask on the grid k / rate."""
    padded = np.concatenate(([True], covered, [True]))  # booleans: a byte per grid point, not eight
    changes = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = changes[0::2], changes[1::2]
    return [(s / rate_hz, (e - s) / rate_hz) for s, e in zip(starts, ends)]


def _run_starts(last_t: float | None, times: np.ndarray, rate_hz: float) -> np.ndarray:
    """True where a sample starts a contiguous stretch of a regular stream: it breaks where samples lie more than
    ``GAP_TOLERANCE_SAMPLES`` periods apart (the drivers' gap rule) or out of order; ``last_t`` is the time of the
    sample before ``times`` (None: the first sample starts a stretch)."""
    step = np.diff(times, prepend=np.nan if last_t is None else last_t)
    return ~(step <= GAP_TOLERANCE_SAMPLES / rate_hz) | (step <= 0)


def _runs(times: np.ndarray, rate_hz: float) -> list[slice]:
    """Contiguous stretches of a regular stream (``_run_starts``) as slices."""
    edges = [*np.flatnonzero(_run_starts(None, times, rate_hz)).tolist(), times.size]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


@dataclass(frozen=True, eq=False)
class _Placement:
    """Where a regular stream's samples go on a grid ``origin + k / rate``."""

    grid: np.ndarray
    """Grid points k covered by the stream's contiguous stretches."""
    sample: np.ndarray
    """Index of the sample written at each of them."""
    repeated: int
    """Grid points holding a sample that is also written at another."""
    dropped: int
    """Samples written at no grid point."""


class _Placer:
    """Puts a regular stream's samples on a grid ``origin + k / rate``, fed piece by piece in arrival order: each grid
    point of a contiguous stretch (``_run_starts``), from its first sample to its last, gets the sample nearest in
    time. A grid point is decided as soon as a sample at or after it has been fed, so only the last sample is carried
    from one piece to the next; the points are the same wherever the pieces end."""

    def __init__(self, rate_hz: float, origin_s: float = 0.0) -> None:
        self.rate_hz, self.origin_s = rate_hz, origin_s
        self._t = np.empty(0)
        self._i = np.empty(0, dtype=np.int64)
        self._next_k = 0
        self._fed = 0
        self._placed = 0
        self._used = 0
        self._last_used = -1

    def feed(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The grid points (k) decided by the next samples, and the index (counted over all samples fed) of the
        sample each gets."""
        starts = _run_starts(self._t[-1] if self._t.size else None, times, self.rate_hz)
        edges = [0, *np.flatnonzero(starts).tolist(), times.size]
        out = []
        for a, b in zip(edges[:-1], edges[1:]):
            if a == b:
                continue
            if starts[a]:
                out.append(self._emit(final=True))
                self._t, self._i = self._t[:0], self._i[:0]
                self._next_k = math.ceil((times[a] - self.origin_s) * self.rate_hz - 0.5)
            self._t = np.concatenate([self._t, times[a:b]])
            self._i = np.concatenate([self._i, self._fed + np.arange(a, b)])
        self._fed += times.size
        out.append(self._emit(final=False))
        return _joined(out)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """The grid points of the last stretch still undecided."""
        return self._emit(final=True)

    def _emit(self, final: bool) -> tuple[np.ndarray, np.ndarray]:
        t = self._t
        if not t.size:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        last = math.floor((t[-1] - self.origin_s) * self.rate_hz + 0.5)
        if not final:  # only the points at or before the newest sample: a later one may be nearer the next
            last = min(last, math.floor((t[-1] - self.origin_s) * self.rate_hz) + 1)
            while last >= self._next_k and self.origin_s + last / self.rate_hz > t[-1]:
                last -= 1
        k = np.arange(self._next_k, last + 1)
        if t.size == 1:
            nearest = np.zeros(k.size, dtype=np.int64)
        else:
            g = self.origin_s + k / self.rate_hz
            j = np.clip(np.searchsorted(t, g), 1, t.size - 1)
            nearest = np.where(g - t[j - 1] <= t[j] - g, j - 1, j)
        sample = self._i[nearest]
        self._next_k = max(self._next_k, last + 1)
        self._t, self._i = t[-1:], self._i[-1:]
        if sample.size:
            self._placed += sample.size
            self._used += int(np.count_nonzero(np.diff(sample))) + int(sample[0] != self._last_used)
            self._last_used = int(sample[-1])
        return k, sample

    @property
    def repeated(self) -> int:
        """Grid points so far holding a sample that is also written at another."""
        return self._placed - self._used

    @property
    def dropped(self) -> int:
        """Samples so far written at no grid point."""
        return self._fed - self._used


def _joined(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return (np.concatenate([p[0] for p in parts]) if parts else np.empty(0, dtype=np.int64),
            np.concatenate([p[1] for p in parts]) if parts else np.empty(0, dtype=np.int64))


def _place(times: np.ndarray, rate_hz: float, origin_s: float = 0.0) -> _Placement:
    """Each grid point of a contiguous stretch, from its first sample to its last, gets the sample nearest in time."""
    placer = _Placer(rate_hz, origin_s)
    grid, sample = _joined([placer.feed(times), placer.finish()])
    return _Placement(grid, sample, placer.repeated, placer.dropped)


def _rate_note(s: _Stream, rate_hz: float, p: _Placement) -> str:
    """How a stream was put on its grid, when not simply at its nominal rate: rates, repeated and dropped samples
    (at most 71 characters for 6-digit counts: an EDF+ prefiltering field holds 80)."""
    measured = s.best_rate_hz
    if rate_hz == s.rate_hz and not (p.repeated or p.dropped):
        return ""
    rate = "unknown" if measured is None else f"{measured:.4f} Hz"
    return f"{rate} measured ({s.rate_hz:g} nominal); {p.repeated} repeated, {p.dropped} dropped"


def _edf_record_duration(rates: list[float]) -> tuple[float, dict[float, float]]:
    """A record duration that gives every rate a whole number of samples (within ``RATE_QUANTUM``), and each rate as written."""
    for d in EDF_RECORD_DURATIONS_S:
        written = {r: round(r * d) / d for r in rates}
        if all(abs(w - r) <= RATE_QUANTUM * r for r, w in written.items()):
            return float(d), written
    d = EDF_RECORD_DURATIONS_S[-1]
    return float(d), {r: round(r * d) / d for r in rates}


def _edf_label(session: _Session, s: _Stream, channel: str, used: set[str]) -> str:
    """An EDF+ signal label: type prefix, a space and a readable name without spaces (``EMG L-trapezius``, ``ECG 1``),
    within the 16-character field; MNE's ``read_raw_edf(..., infer_types=True)`` takes the type from the prefix and
    the name from the rest. ``left_x``/``right_x`` become ``L-x``/``R-x``; a channel named only by its stream (the
    H10's ``ecg``) is named by its source's number among the stream's sources, as is every channel of a stream
    recorded from more than one source (``EMG L-trapezius-2``). The full names are in the transducer field."""
    kind = EDF_TYPES.get(s.stream, "MISC")
    words = [w for w in re.split(r"[\s_]+", _edf_text(channel)) if w]
    if len(words) > 1 and words[0].lower() in ("left", "right"):
        words = [f"{words[0][0].upper()}-{words[1]}", *words[2:]]
    sources = [x.source for x in session.streams if x.stream == s.stream]
    number = str(sources.index(s.source) + 1)
    name = "-".join(words) if words and "-".join(words).lower() != s.stream.lower() else number
    suffix = f"-{number}" if session.multi_source(s.stream) and name != number else ""
    label = f"{kind} {name[:EDF_LABEL_CHARS - len(kind) - 1 - len(suffix)]}{suffix}"
    n = 1
    while label in used:
        n += 1
        label = f"{label[:EDF_LABEL_CHARS - len(str(n)) - 1]}~{n}"
    used.add(label)
    return label


def _edf_event_text(e: dict) -> str:
    """An event as an EDF+ annotation; a stretch to leave out starts with its ``BAD_*`` description (MNE's bad
    segments)."""
    if e["kind"] == "gap":
        return f"{BAD_ACQ_SKIP} gap {e['stream']}/{e['source']}: {e['label']}"
    if e["kind"] == CONTACT_LOST:
        return f"{BAD_CONTACT} {e['stream']}/{e['source']}"
    return f"{e['annotation'] or e['kind']}: {e['label']}"


def _edf_text(text: str) -> str:
    return text.encode("ascii", "replace").decode()


def _write_edf(session: _Session, out_dir: Path) -> list[Path]:
    """EDF+ in two passes over each regular stream, a block of data records at a time: the first finds each
    signal's physical range, its grid points without data and how its samples were placed, the second writes the
    records. edfio (which writes whole signals held in memory) makes the header and the annotations signal, from
    one-record stand-ins of the signals; the file is byte for byte the one edfio writes from the whole signals."""
    import edfio
    from edfio.edf_annotations import _create_annotations_signal
    from edfio.edf_signal import _calculate_gain_and_offset

    regular = [s for s in session.streams if s.rate_hz and s.n]
    if not regular:
        raise StoreError("this session has no sampled signal (EMG, ECG) and EDF+ needs one; export it as csv, bids or hdf5")
    record_s, written_rate = _edf_record_duration(sorted({s.target_rate_hz for s in regular}))
    n_records = max(1, math.ceil(session.duration_s / record_s - 1e-9))
    batch = max(1, int(session.chunk_samples / max(written_rate.values()) / record_s))
    """Data records written at a time: about ``chunk_samples`` of the fastest signal."""
    stand_ins, annotations, used, grids = [], [], set(), []
    for s in regular:
        rate = written_rate[s.target_rate_hz]
        grid_n = int(round(n_records * record_s * rate))
        feed = _GridFeed(session, s, rate, 0.0)
        covered = np.zeros(grid_n, dtype=bool)
        lo = np.zeros(len(s.channels))
        hi = np.zeros(len(s.channels))
        for start in range(0, grid_n, batch * round(record_s * rate)):
            k, values = feed.take(start, min(grid_n, start + batch * round(record_s * rate)))
            covered[k] = True
            if k.size:
                lo, hi = np.minimum(lo, values[:, :-1].min(axis=0)), np.maximum(hi, values[:, :-1].max(axis=0))
        feed.take(grid_n, math.inf)  # the placement's counts take in the samples beyond the last record
        annotations += [edfio.EdfAnnotation(on, dur, _edf_text(f"BAD_ACQ_SKIP no data {s.name}"))
                        for on, dur in _uncovered_runs(covered, rate)]
        del covered
        prefilter = _edf_text(_rate_note(s, rate, feed.placer))[:80]
        for c, channel in enumerate(s.channels):
            low, high = math.floor(lo[c]), math.ceil(hi[c])
            stand_ins.append(edfio.EdfSignal(
                np.zeros(round(record_s * rate)), rate, label=_edf_label(session, s, channel, used),
                transducer_type=_edf_text(f"{s.stream} {channel} from {s.source}")[:80], physical_dimension=s.unit[:8],
                physical_range=(low, high if high > low else low + 1), prefiltering=prefilter,
            ))
        grids.append((s, rate, grid_n))
    for e in session.events:
        annotations.append(edfio.EdfAnnotation(e["onset_s"], e["duration_s"] or None, _edf_text(_edf_event_text(e))))
    for source, b in session.beats.items():
        for t, raw, corrected, flags in zip(b["t_s"], b["rr_raw_ms"], b["rr_corrected_ms"], b["flags"]):
            text = f"RR {raw:g} ms"
            if not (np.isnan(corrected) or corrected == raw) or flags:
                text += f" corrected {corrected:g} ms flags {flags}"
            annotations.append(edfio.EdfAnnotation(t, None, text))
    start = session.start
    starttime = start.time().replace(tzinfo=None)
    try:
        template = edfio.Edf(
            stand_ins,
            patient=edfio.Patient(code=session.client_id),
            recording=edfio.Recording(startdate=start.date(), equipment_code=_edf_text(
                f"biofeedback_{session.meta.get('software_version', '')}").replace(" ", "_")),
            starttime=starttime,
            data_record_duration=record_s,
            annotations=[],
        )
        notes = _create_annotations_signal(sorted(annotations, key=lambda a: a.onset), num_data_records=n_records,
                                           data_record_duration=record_s, signal_class=edfio.EdfSignal,
                                           with_timestamps=True, subsecond_offset=starttime.microsecond / 1_000_000)
    except (ValueError, OverflowError) as exc:
        raise StoreError(f"cannot write EDF+ for this session ({exc}); try a smaller shift_days, or export as hdf5")
    template._set_num_data_records(n_records)
    signals = [*stand_ins, notes]
    for signal, spr in zip(stand_ins, [round(record_s * r) for s, r, _ in grids for _ in s.channels]):
        signal._set_samples_per_data_record(spr)
    header = b"".join([getattr(template, "_" + name) for name, _ in edfio.Edf._header_fields]
                      + [getattr(signal, "_" + name) for name, _ in edfio.EdfSignal._header_fields for signal in signals])
    scales = [_calculate_gain_and_offset(x.digital_min, x.digital_max, x.physical_min, x.physical_max) for x in stand_ins]
    notes_bytes = notes.digital.view(np.uint8).reshape(n_records, -1)
    path = _file(out_dir, f"{session.stem}.edf")
    feeds = [_GridFeed(session, s, rate, 0.0) for s, rate, _ in grids]
    with open(path, "wb") as f:
        f.write(header)
        for first in range(0, n_records, batch):
            count = min(batch, n_records - first)
            parts = []
            signal = 0
            for (s, rate, _), feed in zip(grids, feeds):
                spr = round(record_s * rate)
                k, values = feed.take(first * spr, (first + count) * spr)
                for c in range(len(s.channels)):
                    column = np.zeros(count * spr)
                    column[k - first * spr] = values[:, c]
                    gain, offset = scales[signal]
                    parts.append(np.round(column / gain - offset).astype(np.int16).view(np.uint8).reshape(count, -1))
                    signal += 1
            parts.append(notes_bytes[first:first + count])
            np.concatenate(parts, axis=1).tofile(f)
    return [path]


def _write_csv(session: _Session, out_dir: Path) -> list[Path]:
    files = []
    for s in session.streams:
        suffix = f"_{_safe(s.source)}" if session.multi_source(s.stream) else ""
        path = _file(out_dir, f"{session.stem}_{_safe(s.stream)}{suffix}.csv")
        header = ",".join(["time_s"] + [f"{c}_{s.unit}" if s.unit else c for c in s.channels] + [CONTACT_COLUMN])
        with open(path, "w") as f:
            f.write(header + "\n")
            for t, x in session.pieces(s):
                np.savetxt(f, np.column_stack([t, x, s.contact_mask(t)]), fmt=["%.9f"] + ["%.9g"] * len(s.channels)
                           + ["%d"], delimiter=",")
        files.append(path)
    if session.beats:
        path = _file(out_dir, f"{session.stem}_beats.csv")
        with open(path, "w") as f:
            f.write("time_s,rr_raw_ms,rr_corrected_ms,flags,source\n")
            for source, b in session.beats.items():
                for t, raw, corrected, flags in zip(b["t_s"], b["rr_raw_ms"], b["rr_corrected_ms"], b["flags"]):
                    f.write(f"{t:.9f},{float(raw)!r},{'' if np.isnan(corrected) else repr(float(corrected))},{flags},{_csv(source)}\n")
        files.append(path)
    for source, b in session.beats.items():
        files += _write_kubios_rr(session, source, b, out_dir)
    path = _file(out_dir, f"{session.stem}_events.csv")
    with open(path, "w") as f:
        f.write("onset_s,duration_s,kind,label,stream,source,data,annotation\n")
        for e in session.events:
            f.write(f"{e['onset_s']!r},{e['duration_s']!r},{_csv(e['kind'])},{_csv(e['label'])},{_csv(e['stream'])},"
                    f"{_csv(e['source'])},{_csv(e['data'])},{e['annotation']}\n")
    files.append(path)
    path = _file(out_dir, f"{session.stem}_session.json")
    path.write_text(json.dumps(session.meta, indent=2, sort_keys=True))
    return files + [path]


def rr_parts(t_s: np.ndarray, rr_ms: np.ndarray, gaps_s: list[tuple[float, float]]) -> list[np.ndarray]:
    """Indices of the beats of each unbroken part of an RR series: a gap (start, end) in session seconds ends a part,
    and a beat whose interval ``(t - rr, t]`` overlaps a gap belongs to none."""
    start_s = t_s - rr_ms / 1000.0
    clear = np.ones(t_s.size, dtype=bool)
    part = np.zeros(t_s.size, dtype=np.int64)
    for g0, g1 in gaps_s:
        clear &= ~((start_s < g1) & (t_s > g0))
        part += t_s >= g1
    return [np.flatnonzero(clear & (part == k)) for k in np.unique(part[clear])]


def _write_kubios_rr(session: _Session, source: str, b: dict[str, np.ndarray], out_dir: Path) -> list[Path]:
    """One source's raw RR for Kubios HRV: a file per unbroken part (ms a line) and one with beat times."""
    suffix = f"_{_safe(source)}" if len(session.beats) > 1 else ""
    gaps = [(e["onset_s"], e["onset_s"] + e["duration_s"]) for e in session.events
            if e["kind"] == "gap" and e["stream"] == "rr" and e["source"] == source]
    parts = rr_parts(b["t_s"], b["rr_raw_ms"], gaps)
    files = []
    for k, beats in enumerate(parts, start=1):
        path = _file(out_dir, f"{session.stem}_kubios{suffix}_part{k}.txt")
        path.write_text("".join(f"{float(rr)!r}\n" for rr in b["rr_raw_ms"][beats]))
        files.append(path)
    kept = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    path = _file(out_dir, f"{session.stem}_kubios{suffix}_times.txt")
    path.write_text("".join(f"{t:.6f}\t{float(rr)!r}\n" for t, rr in zip(b["t_s"][kept], b["rr_raw_ms"][kept])))
    return files + [path]


def _csv(text: str) -> str:
    text = str(text)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n\r') else text


def _safe(text: str) -> str:
    return safe_name(text)


def _bids_label(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", text) or "x"


def _rate_label(rate_hz: float) -> str:
    return f"{rate_hz:g}".replace(".", "p") + "Hz"


def _tsv(value) -> str:
    if value is None or value == "" or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return repr(value)
    return str(value).replace("\t", " ").replace("\n", " ")


@dataclass(frozen=True)
class BidsDataset:
    """Dataset-level fields of a BIDS export: ``dataset_description.json``'s Authors and License."""

    authors: tuple[str, ...] = ()
    """Authors of the dataset; none given: the field is left out (the validator warns) and an earlier export's kept."""
    license: str = DEFAULT_BIDS_LICENSE
    """An SPDX licence identifier (e.g. CC-BY-4.0), or ``Non-Standard`` (the default): not openly licensed."""


BIDS_README = """\
Sessions of surface-EMG and heart biofeedback, exported by the biofeedback program{version}.

Each session is one BIDS session of its client (sub-<client ID>/ses-<n>), with the recording's task (its protocol).
beh/*_physio.tsv.gz hold the sampled signals, one file per sampling rate (recording-<rate>): surface EMG (uV, one
column per channel, named by its electrode site) and the chest strap's ECG (uV); n/a where no sample was recorded.
beh/*_events.tsv hold the phases (baseline, treatment, post, ...), markers, notes and calibrations, and the stretches
to leave out of analysis, with MNE's names as trial_type: BAD_ACQ_SKIP (a recorded gap of one stream),
BAD_contact (the sensor reported no skin contact) and BAD_hands_on (the therapist's hands on the client).
Heartbeats (RR intervals) and heart-rate samples are not events and are not in this dataset: export the sessions as
csv (beats.csv, Kubios RR files) or hdf5 for them.

Times are session seconds (0 = the session's start, which scans.tsv gives as acq_time). When the export was asked to
shift dates (--shift-days), every date here is shifted by an amount this dataset does not record.

License: {license}.{license_note}
"""


def _write_bids(session: _Session, out_dir: Path, dataset: BidsDataset = BidsDataset()) -> list[Path]:
    sub, ses = _bids_label(session.client_id), str(session.session_number)
    protocol = str(session.meta.get("protocol") or "biofeedback")
    task = _bids_label(protocol)
    version = str(session.meta.get("software_version", ""))
    task_fields = {
        "TaskName": protocol,
        "TaskDescription": f"a biofeedback session following the protocol {protocol!r}: phases of rest and of "
                           "treatment with feedback of trapezius tension and heart rate",
        "StimulusPresentation": {"SoftwareName": "biofeedback", "SoftwareVersion": version},
    }
    folder = private_dir(out_dir / f"sub-{sub}" / f"ses-{ses}" / "beh")
    prefix = f"sub-{sub}_ses-{ses}_task-{task}"
    files = _write_bids_dataset(session, out_dir, dataset)
    regular = [s for s in session.streams if s.rate_hz and s.n]
    _, written = _edf_record_duration(sorted({s.target_rate_hz for s in regular}))  # the rates the EDF+ has
    rates = sorted(set(written.values()))
    acquisitions = []
    for rate in rates:
        group = [s for s in regular if written[s.target_rate_hz] == rate]
        name = prefix + (f"_recording-{_rate_label(rate)}" if len(rates) > 1 else "") + "_physio"
        t0 = min(s.t_min_s for s in group)
        n = max(math.floor((s.t_max_s - t0) * rate + 0.5) for s in group) + 1
        feeds = [_GridFeed(session, s, rate, t0) for s in group]
        tsv = _file(folder, f"{name}.tsv.gz", out_dir)
        width = sum(len(s.channels) + 1 for s in group)
        with open(tsv, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as z, \
                io.TextIOWrapper(z, encoding="utf-8", newline="\n") as f:  # no name or time in the gzip header
            for start in range(0, n, TSV_CHUNK_ROWS):
                rows = np.full((min(n, start + TSV_CHUNK_ROWS) - start, width), np.nan)
                column = 0
                for feed in feeds:
                    k, values = feed.take(start, start + rows.shape[0])
                    rows[k - start, column:column + values.shape[1]] = values
                    column += values.shape[1]
                text = io.StringIO()
                np.savetxt(text, rows, fmt="%.9g", delimiter="\t")
                f.write(text.getvalue().replace("nan", "n/a"))
        columns, units = [], {}
        for s, feed in zip(group, feeds):
            note = _rate_note(s, rate, feed.placer)
            suffix = f"_{_bids_label(s.source)}" if session.multi_source(s.stream) else ""
            for channel in s.channels:
                label = f"{s.stream}_{channel}{suffix}"
                columns.append(label)
                units[label] = {"Units": s.unit, "Description": f"{s.stream} channel {channel} from {s.source}"
                                + (f"; {note}" if note else "")}
            label = f"{s.stream}_{CONTACT_COLUMN}{suffix}"
            columns.append(label)
            units[label] = {"Units": "n/a", "Description": f"1 where {s.source} reported no skin contact (its "
                            f"{BAD_CONTACT} stretches in the events), else 0; n/a where {s.stream} has no sample"}
        sidecar = _file(folder, f"{name}.json", out_dir)
        sidecar.write_text(json.dumps({"SamplingFrequency": rate, "StartTime": t0, "Columns": columns, **units,
                                       "PhysioType": "generic", **task_fields,
                                       "StartTimeReference": "session start (events onset 0)",
                                       "SoftwareVersions": version}, indent=2))
        files += [tsv, sidecar]
        acquisitions.append(f"beh/{tsv.name}")
    events_path = _file(folder, f"{prefix}_events.tsv", out_dir)
    columns = ("onset", "duration", "trial_type", "label", "stream", "source", "data")
    rows = [(e["onset_s"], e["duration_s"], e["annotation"] or e["kind"], e["label"], e["stream"], e["source"], e["data"])
            for e in session.events]
    with open(events_path, "w") as f:
        f.write("\t".join(columns) + "\n")
        for row in rows:
            f.write("\t".join(_tsv(v) for v in row) + "\n")
    events_json = _file(folder, f"{prefix}_events.json", out_dir)
    levels = {kind: f"a {kind} event of the recording" for kind in sorted({r[2] for r in rows} - set(BAD_STRETCHES.values()))}
    levels |= {BAD_ACQ_SKIP: "data of the stream named in 'stream' were lost (a recorded gap; MNE's name)",
               BAD_CONTACT: "the sensor named in 'stream'/'source' reported no skin contact: its data are not valid",
               BAD_HANDS_ON: "the therapist's hands were on the client: EMG and beats are not the client's own"}
    events_json.write_text(json.dumps({
        "onset": {"Description": "start, in seconds from the session start", "Units": "s"},
        "duration": {"Description": "length (0: an instant)", "Units": "s"},
        "trial_type": {"Description": "what the event is: a phase, marker, note or calibration of the recording, or a "
                                      "stretch to leave out of analysis (BAD_*)", "Levels": levels},
        "label": {"Description": "the event's text: a phase's name, a marker's or note's words, a gap's reason"},
        "stream": {"Description": "for a gap or contact loss: the stream it concerns (emg, ecg, rr, hr, status)"},
        "source": {"Description": "for a gap or contact loss: the sensor, by its pseudonymous alias"},
        "data": {"Description": "the event's recorded data as JSON (e.g. a calibration's values, a gap's lost samples)"},
        **task_fields,
    }, indent=2))
    scans = _file(out_dir / f"sub-{sub}" / f"ses-{ses}", f"sub-{sub}_ses-{ses}_scans.tsv", out_dir)
    acq_time = session.start.strftime("%Y-%m-%dT%H:%M:%S.%f")
    scans.write_text("filename\tacq_time\n" + "".join(f"{a}\t{acq_time}\n" for a in acquisitions))
    return files + [events_path, events_json, scans]


class _GridFeed:
    """One regular stream of a BIDS physio file, placed on the file's grid (``_Placer``) as its pieces are read:
    ``take`` hands over the values (channels, then the contact-lost flag) of the grid rows asked for."""

    def __init__(self, session: _Session, s: _Stream, rate_hz: float, origin_s: float) -> None:
        self.stream = s
        self.placer = _Placer(rate_hz, origin_s)
        self._pieces = session.pieces(s)
        self._done = False
        self._k = np.empty(0, dtype=np.int64)
        self._values = np.empty((0, len(s.channels) + 1))
        self._carry = np.full(len(s.channels) + 1, np.nan)
        """The last sample read (with its flag): the next piece's first grid points may get it."""
        self._fed = 0

    def take(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """Grid points in [start, end) this stream covers and their values, (m,) and (m, channels + 1). Rows asked
        for must come in order; a point of a stretch that runs backwards into rows already taken is left out."""
        while not self._done and (not self._k.size or self._k[-1] < end - 1):
            self._pull()
        keep = self._k >= start
        self._k, self._values = self._k[keep], self._values[keep]
        now = self._k < end
        out = self._k[now], self._values[now]
        self._k, self._values = self._k[~now], self._values[~now]
        return out

    def _pull(self) -> None:
        piece = next(self._pieces, None)
        if piece is None:
            self._done = True
            k, index = self.placer.finish()
            rows = self._values[:0]
        else:
            t, x = piece
            k, index = self.placer.feed(t)
            rows = np.column_stack([x, self.stream.contact_mask(t)])
        values = np.empty((index.size, rows.shape[1] if rows.size else self._carry.size))
        new = index >= self._fed
        values[new] = rows[index[new] - self._fed]
        values[~new] = self._carry
        if rows.shape[0]:
            self._carry, self._fed = rows[-1], self._fed + rows.shape[0]
        self._k, self._values = np.concatenate([self._k, k]), np.concatenate([self._values, values])


def _write_bids_dataset(session: _Session, out_dir: Path, dataset: BidsDataset) -> list[Path]:
    """The dataset's own files, written by every session's export so that sessions exported into one folder make
    one dataset: dataset_description.json (an earlier export's Authors kept when none are given), README,
    participants.tsv (this client added once) and participants.json."""
    version = str(session.meta.get("software_version", ""))
    path = out_dir / "dataset_description.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    authors = list(dataset.authors) or earlier.get("Authors")
    description = {"Name": "biofeedback sessions", "BIDSVersion": BIDS_VERSION, "DatasetType": "raw",
                   "License": dataset.license, **({"Authors": authors} if authors else {}),
                   "GeneratedBy": [{"Name": "biofeedback", "Version": version}]}
    _file(out_dir, path.name).write_text(json.dumps(description, indent=2))
    readme = _file(out_dir, "README")
    readme.write_text(BIDS_README.format(
        version=f" (version {version})" if version else "",
        license=dataset.license,
        license_note=" The data may not be passed on without the data controller's consent." if
        dataset.license == DEFAULT_BIDS_LICENSE else ""))
    participants = out_dir / "participants.tsv"
    ids = participants.read_text().splitlines()[1:] if participants.exists() else []
    ids = sorted(set(ids) | {f"sub-{_bids_label(session.client_id)}"})
    _file(out_dir, participants.name).write_text("participant_id\n" + "".join(f"{i}\n" for i in ids))
    participants_json = _file(out_dir, "participants.json")
    participants_json.write_text(json.dumps({"participant_id": {
        "Description": "the client's pseudonymous ID in the biofeedback program, letters and digits only"}}, indent=2))
    return [path, readme, participants, participants_json]


def _write_hdf5(session: _Session, out_dir: Path) -> list[Path]:
    import h5py

    path = _file(out_dir, f"{session.stem}.h5")
    text = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f.attrs["client_id"] = session.client_id
        f.attrs["start_utc"] = session.meta["start_utc"]
        f.attrs["meta_json"] = json.dumps(session.meta, sort_keys=True)
        for s in session.streams:
            g = f.require_group(f"streams/{_safe(s.stream)}/{_safe(s.source)}")
            times = g.create_dataset("time_s", shape=(s.n,), dtype=np.float64)
            samples = g.create_dataset("samples", shape=(s.n, len(s.channels)), dtype=np.float32)
            contact = g.create_dataset(CONTACT_COLUMN, shape=(s.n,), dtype=np.uint8)
            contact.attrs["description"] = ("1 where the sensor reported no skin contact (the stretches of the "
                                            "contact-lost events), else 0")
            at = 0
            for t, x in session.pieces(s):
                times[at:at + t.size], samples[at:at + t.size] = t, x.astype(np.float32)
                contact[at:at + t.size] = s.contact_mask(t)
                at += t.size
            g.attrs.update(units=s.unit, rate_hz=np.nan if s.rate_hz is None else s.rate_hz,
                           channels=list(s.channels), source=s.source, stream=s.stream)
        for source, b in session.beats.items():
            g = f.require_group(f"beats/{_safe(source)}")
            for key, unit in (("t_s", "s"), ("rr_raw_ms", "ms"), ("rr_corrected_ms", "ms"), ("flags", "")):
                g.create_dataset(key, data=b[key]).attrs["units"] = unit
            g.attrs["source"] = source
        dtype = np.dtype([("onset_s", "f8"), ("duration_s", "f8"), ("kind", text), ("label", text),
                          ("stream", text), ("source", text), ("data", text), ("annotation", text)])
        table = np.array([tuple(e[k] for k in dtype.names) for e in session.events], dtype=dtype)
        f.create_dataset("events", data=table, maxshape=(None,))
    return [path]


_WRITERS: dict[str, Callable[[_Session, Path], list[Path]]] = {
    "edf": _write_edf, "csv": _write_csv, "bids": _write_bids, "hdf5": _write_hdf5,
}
