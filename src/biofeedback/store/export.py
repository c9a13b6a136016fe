"""Exports of a session file: EDF+, CSV, BIDS-style physio and HDF5.

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
  named ``<channel>_<unit>``), ``<stem>_beats.csv``, ``<stem>_events.csv`` (phases, markers,
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
  per rate group (columns on one grid, ``n/a`` where there is no sample) with a JSON sidecar
  (SamplingFrequency, StartTime relative to session start, Columns, units per column, PhysioType, TaskName),
  ``..._events.tsv`` (onset, duration, trial_type, label, stream, source, data, every column described in
  ``..._events.json``; trial_type is the ``BAD_*`` description of a stretch to leave out; beats and HR samples are
  not events and stay out) and ``sub-<id>_ses-<n>_scans.tsv`` with the (shifted) acquisition time. Every export
  into a folder also writes the dataset's files, so a study's sessions exported into one folder make one dataset:
  dataset_description.json (Authors and License from ``BidsDataset``), README and participants.tsv/json.
HDF5 (``<stem>.h5``): ``/streams/<stream>/<source>/{time_s,samples}`` with ``units``, ``rate_hz``
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
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from biofeedback.sensors.timing import GAP_TOLERANCE_SAMPLES
from biofeedback.store.errors import StoreError
from biofeedback.store.paths import FILE_MODE, SECONDS_PER_DAY, SESSION_SUFFIX, inside, private_dir, private_file, \
    safe_name, scrub_addresses, shift_dates
from biofeedback.store.session_file import SessionReader
from biofeedback.stream import BlockFlag, StreamKind
from biofeedback.vocab import EventKind

FORMATS = ("edf", "csv", "bids", "hdf5")
EDF_RECORD_DURATIONS_S = (1, 2, 4, 5, 8, 10, 20, 25, 40, 50, 100)
"""Candidate EDF data record durations, shortest first."""
BIDS_VERSION = "1.10.0"
"""The BIDS version the export follows (PhysioType came with 1.10)."""
TSV_CHUNK_ROWS = 100_000
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
CONTACT_LOST = "contact-lost"
"""Export event kind of a stretch in which a sensor reported no skin contact (blocks flagged
``BlockFlag.SENSOR_CONTACT_LOST``); like "gap", it is made from the data, not recorded as an event."""
BAD_STRETCHES = {"gap": BAD_ACQ_SKIP, CONTACT_LOST: BAD_CONTACT, EventKind.HANDS_ON: BAD_HANDS_ON}
"""Event kinds that mark data to leave out, and their annotation in MNE's words (``analysis.data``'s vocabulary)."""
DEFAULT_BIDS_LICENSE = "Non-Standard"
"""BIDS ``License`` when none is given: health data are not released under an open licence by default."""


@dataclass
class _Stream:
    stream: str
    source: str
    channels: tuple[str, ...]
    unit: str
    rate_hz: float | None
    times: np.ndarray
    data: np.ndarray
    device_rate_hz: float | None = None
    """The rate the driver measured from the device's own timestamps (the recording's ``devices`` metadata), if any."""

    @property
    def name(self) -> str:
        return f"{self.stream}/{self.source}"

    @cached_property
    def measured_rate_hz(self) -> float | None:
        """Samples per second of session time over the contiguous stretches; None for irregular or too short streams."""
        if not self.rate_hz:
            return None
        runs = _runs(self.times, self.rate_hz)
        span = sum(float(self.times[r.stop - 1] - self.times[r.start]) for r in runs)
        return sum(r.stop - r.start - 1 for r in runs) / span if span > 0 else None

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


@dataclass
class _Session:
    """Everything an exporter needs, read once from the session file, dates already shifted."""

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

    @property
    def stem(self) -> str:
        return f"{safe_name(self.client_id)}_{self.start:%Y%m%dT%H%M%SZ}"

    def multi_source(self, stream: str) -> bool:
        return sum(s.stream == stream for s in self.streams) > 1


def export_session(path: Path, fmt: str, out_dir: Path, shift_days: int = 0,
                   warn: Callable[[str], None] | None = None, bids: BidsDataset | None = None) -> list[Path]:
    """Export the session at ``path`` as ``fmt`` (edf, csv, bids, hdf5) into ``out_dir``; returns the files written.
    ``warn`` hears each damaged part of the file that was left out (the rest is exported). ``bids`` gives a BIDS
    export's dataset fields (authors, licence); sessions exported into one folder make one BIDS dataset."""
    writer = _WRITERS.get(str(fmt).lower())
    if writer is None:
        raise StoreError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    with SessionReader(Path(path)) as reader:
        session = _load(reader, int(shift_days))
        for problem in reader.problems if warn is not None else ():
            warn(f"{Path(path).name}: left out of the export, damaged: {problem}")
    out_dir = private_dir(Path(out_dir))
    files = _write_bids(session, out_dir, bids or BidsDataset()) if writer is _write_bids else writer(session, out_dir)
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
        channels, rate = reader.channels(stream, source), reader.rate_hz(stream, source)
        blocks = list(reader.raw_blocks(stream, source))  # one pass: samples, times and flags
        times = np.concatenate([b["times_s"] for b in blocks]) if blocks else np.empty(0)
        data = np.concatenate([b["data"] for b in blocks]) if blocks else np.empty((0, len(channels)))
        streams.append(_Stream(stream, source, channels, reader.unit(stream, source), rate, times, data,
                               device_rates.get((source, stream))))
        spans = [(float(b["times_s"][0]), float(b["times_s"][-1]), bool(b["flags"] & BlockFlag.SENSOR_CONTACT_LOST))
                 for b in blocks if b["n"]]
        contact += [{"onset_s": a, "duration_s": b - a, "kind": CONTACT_LOST, "label": "sensor reported no skin contact",
                     "stream": stream, "source": source, "data": ""}
                    for a, b in contact_lost_stretches(spans, rate)]
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
                    reader.duration_s())


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
    edges = np.diff(np.concatenate([[1], covered.astype(np.int8), [1]]))
    starts, ends = np.flatnonzero(edges == -1), np.flatnonzero(edges == 1)
    return [(s / rate_hz, (e - s) / rate_hz) for s, e in zip(starts, ends)]


def _runs(times: np.ndarray, rate_hz: float) -> list[slice]:
    """Contiguous stretches of a regular stream: it breaks where samples lie more than ``GAP_TOLERANCE_SAMPLES``
    periods apart (the drivers' gap rule) or out of order."""
    step = np.diff(times)
    breaks = np.flatnonzero((step > GAP_TOLERANCE_SAMPLES / rate_hz) | (step <= 0)) + 1
    edges = [0, *breaks.tolist(), times.size]
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


def _place(times: np.ndarray, rate_hz: float, origin_s: float = 0.0) -> _Placement:
    """Each grid point of a contiguous stretch, from its first sample to its last, gets the sample nearest in time."""
    grid, sample = [], []
    for r in _runs(times, rate_hz):
        t = times[r]
        k = np.arange(math.ceil((t[0] - origin_s) * rate_hz - 0.5), math.floor((t[-1] - origin_s) * rate_hz + 0.5) + 1)
        if t.size == 1:
            nearest = np.zeros(k.size, dtype=np.int64)
        else:
            g = origin_s + k / rate_hz
            j = np.clip(np.searchsorted(t, g), 1, t.size - 1)
            nearest = np.where(g - t[j - 1] <= t[j] - g, j - 1, j)
        grid.append(k)
        sample.append(r.start + nearest)
    grid_k = np.concatenate(grid) if grid else np.empty(0, dtype=np.int64)
    index = np.concatenate(sample) if sample else np.empty(0, dtype=np.int64)
    used = np.unique(index).size
    return _Placement(grid_k, index, int(index.size - used), int(times.size - used))


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
    import edfio

    regular = [s for s in session.streams if s.rate_hz and s.times.size]
    if not regular:
        raise StoreError("this session has no sampled signal (EMG, ECG) and EDF+ needs one; export it as csv, bids or hdf5")
    record_s, written_rate = _edf_record_duration(sorted({s.target_rate_hz for s in regular}))
    n_records = max(1, math.ceil(session.duration_s / record_s - 1e-9))
    signals, annotations, used = [], [], set()
    for s in regular:
        rate = written_rate[s.target_rate_hz]
        grid_n = int(round(n_records * record_s * rate))
        p = _place(s.times, rate)
        inside = (p.grid >= 0) & (p.grid < grid_n)
        index, rows = p.grid[inside], p.sample[inside]
        covered = np.zeros(grid_n, dtype=bool)
        covered[index] = True
        annotations += [edfio.EdfAnnotation(on, dur, _edf_text(f"BAD_ACQ_SKIP no data {s.name}"))
                        for on, dur in _uncovered_runs(covered, rate)]
        prefilter = _edf_text(_rate_note(s, rate, p))[:80]
        for c, channel in enumerate(s.channels):
            column = np.zeros(grid_n)
            column[index] = s.data[rows, c]
            lo, hi = math.floor(min(column.min(), 0.0)), math.ceil(max(column.max(), 0.0))
            signals.append(edfio.EdfSignal(
                column, rate, label=_edf_label(session, s, channel, used),
                transducer_type=_edf_text(f"{s.stream} {channel} from {s.source}")[:80], physical_dimension=s.unit[:8],
                physical_range=(lo, hi if hi > lo else lo + 1), prefiltering=prefilter,
            ))
    for e in session.events:
        annotations.append(edfio.EdfAnnotation(e["onset_s"], e["duration_s"] or None, _edf_text(_edf_event_text(e))))
    for source, b in session.beats.items():
        for t, raw, corrected, flags in zip(b["t_s"], b["rr_raw_ms"], b["rr_corrected_ms"], b["flags"]):
            text = f"RR {raw:g} ms"
            if not (np.isnan(corrected) or corrected == raw) or flags:
                text += f" corrected {corrected:g} ms flags {flags}"
            annotations.append(edfio.EdfAnnotation(t, None, text))
    start = session.start
    try:
        edf = edfio.Edf(
            signals,
            patient=edfio.Patient(code=session.client_id),
            recording=edfio.Recording(startdate=start.date(), equipment_code=_edf_text(
                f"biofeedback_{session.meta.get('software_version', '')}").replace(" ", "_")),
            starttime=start.time().replace(tzinfo=None),
            data_record_duration=record_s,
            annotations=sorted(annotations, key=lambda a: a.onset),
        )
        path = _file(out_dir, f"{session.stem}.edf")
        edf.write(path)
    except (ValueError, OverflowError) as exc:
        raise StoreError(f"cannot write EDF+ for this session ({exc}); try a smaller shift_days, or export as hdf5")
    return [path]


def _write_csv(session: _Session, out_dir: Path) -> list[Path]:
    files = []
    for s in session.streams:
        suffix = f"_{_safe(s.source)}" if session.multi_source(s.stream) else ""
        path = _file(out_dir, f"{session.stem}_{_safe(s.stream)}{suffix}.csv")
        header = ",".join(["time_s"] + [f"{c}_{s.unit}" if s.unit else c for c in s.channels])
        np.savetxt(path, np.column_stack([s.times, s.data]), fmt=["%.9f"] + ["%.9g"] * len(s.channels),
                   delimiter=",", header=header, comments="")
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
    regular = [s for s in session.streams if s.rate_hz and s.times.size]
    _, written = _edf_record_duration(sorted({s.target_rate_hz for s in regular}))  # the rates the EDF+ has
    rates = sorted(set(written.values()))
    acquisitions = []
    for rate in rates:
        group = [s for s in regular if written[s.target_rate_hz] == rate]
        name = prefix + (f"_recording-{_rate_label(rate)}" if len(rates) > 1 else "") + "_physio"
        t0 = min(float(s.times.min()) for s in group)
        placed = [_place(s.times, rate, t0) for s in group]
        n = max(int(p.grid.max()) for p in placed) + 1
        columns, units, table = [], {}, []
        for s, p in zip(group, placed):
            note = _rate_note(s, rate, p)
            for c, channel in enumerate(s.channels):
                column = np.full(n, np.nan)
                column[p.grid] = s.data[p.sample, c]
                label = f"{s.stream}_{channel}" + (f"_{_bids_label(s.source)}" if session.multi_source(s.stream) else "")
                columns.append(label)
                units[label] = {"Units": s.unit, "Description": f"{s.stream} channel {channel} from {s.source}"
                                + (f"; {note}" if note else "")}
                table.append(column)
        tsv = _file(folder, f"{name}.tsv.gz", out_dir)
        rows = np.column_stack(table)
        with open(tsv, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as z, \
                io.TextIOWrapper(z, encoding="utf-8", newline="\n") as f:  # no name or time in the gzip header
            for chunk in range(0, len(rows), TSV_CHUNK_ROWS):
                text = io.StringIO()
                np.savetxt(text, rows[chunk:chunk + TSV_CHUNK_ROWS], fmt="%.9g", delimiter="\t")
                f.write(text.getvalue().replace("nan", "n/a"))
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
            g.create_dataset("time_s", data=s.times)
            g.create_dataset("samples", data=s.data.astype(np.float32))
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
