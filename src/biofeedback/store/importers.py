"""Readers of recordings made elsewhere: each turns one file into a ``Recording`` (µV, ms, session seconds).

``read_recording(path, fmt)`` reads the whole file into memory and checks it; ``store.import_session`` then
writes it as a session file. Nothing here writes. Every problem is one ``StoreError`` line naming the file (and
line or field) and what to do; ``docs/import.md`` describes each layout.

================  ===========================================================================================
format            what is read
================  ===========================================================================================
``csv``           our plain layout: ``time_s``, ``emg_<channel>_uv`` columns, optional ``ecg_uv``, ``rr_ms``,
                  ``phase`` (``docs/import.md``); separator comma, semicolon or tab
``opensignals``   OpenSignals (PLUX, BITalino) text: its JSON header gives the device, sampling rate, columns,
                  sensors, labels and ADC resolution; EMG and ECG channels are converted to µV
``plux-h5``       OpenSignals HDF5: one group per device with ``raw/channel_N`` (ADC counts) whose ``sensor``
                  and ``label`` attributes name the channel; rate and resolution from the device's attributes
``biosppy``       BioSPPy's simple text (``# Sampling Rate (Hz):=``, ``# Resolution:=``, ``# Labels:=``):
                  ADC counts of an unnamed device, so ``adc=`` must say whose transfer function applies
``polar``         Polar Sensor Logger exports (``;``-separated): ``..._ECG.txt`` (µV, with the sensor's own
                  ns timestamps), ``..._RR.txt`` and ``..._HR.txt``; the siblings of the file given are read too
``edf``           EDF/EDF+ (edfio): signals labelled EMG or ECG (EKG), in µV, mV or V; annotations become
                  phases (``phase: <name>``), beats (``RR <n> ms``), no-data stretches (``BAD_ACQ_SKIP``) and
                  events (``<kind>: <label>``, anything else a marker); our own EDF+ export reads back this way
================  ===========================================================================================

ADC counts to µV (PLUX's documented sensor transfer functions, the same for EMG and ECG up to the constants):
``x_V = (ADC / 2**n - 1/2) * VCC / G`` with n the channel's resolution in bits. EMG: biosignalsplux/bioplux
VCC = 3 V, G = 1000 (PLUX, "Electromyography (EMG) Sensor Data Sheet", biosignalsplux); BITalino (r)evolution
VCC = 3.3 V, G = 1009 (PLUX, "BITalino (r)evolution EMG Sensor Data Sheet"). ECG: biosignalsplux G = 1019,
BITalino G = 1100 (their ECG data sheets). The same constants are in PLUX's own converter,
``biosignalsnotebooks.conversion.raw_to_phy``. The counts themselves are kept as each block's raw bytes.

Times: session second 0 is the recording's first sample (``csv``: the file's own ``time_s``, unchanged). A
recording's start (``utc_anchor``) is read from the file where it says one (PLUX date and time, Polar phone
timestamps, EDF start), as UTC although those devices write local time; else the file's modification time.
A jump in sample times longer than ``BREAK_PERIODS`` sample periods is a gap (lost samples), never closed.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from biofeedback.errors import Reason
from biofeedback.store.errors import StoreError
from biofeedback.stream import RR_GAP_TOLERANCE_S, Gap, RRTimeline, StreamKind
from biofeedback.validate import MAX_RATE_HZ, SESSION_TIME_RANGE_S, UTC_RANGE_S, Origin, check_number, check_option
from biofeedback.vocab import EventKind

IMPORT_FORMATS = ("csv", "opensignals", "plux-h5", "biosppy", "polar", "edf")
"""The formats ``read_recording`` reads; ``auto`` picks one from the file's first bytes."""
PHASE_KINDS = ("rest", "treatment", "task")
"""``session.protocol.PHASE_KINDS`` (restated: the store imports nothing from the session core)."""
BREAK_PERIODS = 1.5
"""Sample times further apart than this many sample periods have lost samples between them: a gap."""
RR_RANGE_MS = (200.0, 3000.0)
"""An RR interval an imported file may hold (300 to 20 beats per minute, and some room)."""
EMG_LIMIT_UV = 1e6
"""Largest EMG or ECG magnitude believed (1 V): beyond it a column is not in µV."""
FIX = "see docs/import.md for the layouts biofeedback reads"


@dataclass(frozen=True)
class AdcTransfer:
    """A sensor's documented transfer function from ADC counts to volts: ``(ADC / 2**n - 1/2) * VCC / G``."""

    vcc_v: float
    gain: float
    reference: str

    def to_uv(self, counts: np.ndarray, bits: int) -> np.ndarray:
        """Counts of an ``bits``-bit ADC to µV."""
        return (np.asarray(counts, dtype=float) / 2.0 ** bits - 0.5) * self.vcc_v / self.gain * 1e6


TRANSFER = {
    ("plux", StreamKind.EMG): AdcTransfer(3.0, 1000.0, "PLUX biosignalsplux EMG sensor data sheet: VCC 3 V, G 1000"),
    ("plux", StreamKind.ECG): AdcTransfer(3.0, 1019.0, "PLUX biosignalsplux ECG sensor data sheet: VCC 3 V, G 1019"),
    ("bitalino", StreamKind.EMG): AdcTransfer(3.3, 1009.0, "PLUX BITalino (r)evolution EMG data sheet: VCC 3.3 V, G 1009"),
    ("bitalino", StreamKind.ECG): AdcTransfer(3.3, 1100.0, "PLUX BITalino (r)evolution ECG data sheet: VCC 3.3 V, G 1100"),
}
"""Transfer functions by (device family, stream)."""
ADC_FAMILIES = ("plux", "bitalino")
PLUX_DEVICES = ("bioplux", "bioplux_exp", "biosignalsplux", "biosignalspluxsolo", "channeller", "swifter",
                "rachimeter", "ddme_openbanplux", "muscleban", "respiban")
"""OpenSignals ``device`` names of PLUX's own (not BITalino) hardware: VCC 3 V."""


@dataclass
class Signal:
    """One regularly sampled stream of the file: sample times (session s), samples (n, channels) in µV."""

    stream: str
    channels: tuple[str, ...]
    rate_hz: float
    t_s: np.ndarray
    data: np.ndarray
    counts: np.ndarray | None = None
    """The ADC counts as read (n, channels), kept as the blocks' raw bytes; None for files in physical units."""


@dataclass
class PhaseSpan:
    name: str
    kind: str
    start_s: float
    end_s: float


@dataclass
class Recording:
    """Everything read from one outside file, in our units and session seconds."""

    format: str
    files: list[str]
    """Names (never paths) of the files read."""
    signals: list[Signal] = field(default_factory=list)
    beat_t_s: np.ndarray = field(default_factory=lambda: np.empty(0))
    rr_ms: np.ndarray = field(default_factory=lambda: np.empty(0))
    hr_t_s: np.ndarray = field(default_factory=lambda: np.empty(0))
    hr_bpm: np.ndarray = field(default_factory=lambda: np.empty(0))
    gaps: list[Gap] = field(default_factory=list)
    phases: list[PhaseSpan] = field(default_factory=list)
    events: list[tuple[str, float, float, str]] = field(default_factory=list)
    """(kind, t_s, duration_s, label): markers, notes, hands-on, ... (``vocab.EventKind``)."""
    utc_anchor: float | None = None
    details: dict = field(default_factory=dict)
    """What the reader found: device, resolution, transfer functions used, channels left out."""

    @property
    def source(self) -> str:
        """The source name the session file gives the imported streams."""
        return f"import-{self.format}"


def origin(path: Path) -> Origin:
    """Where an imported value came from: a bad one is a ``StoreError`` naming the file."""
    return Origin(str(path), StoreError, Reason.BAD_FILE, FIX)


def fail(path: Path, problem: str) -> StoreError:
    return StoreError(f"{path}: {problem}; {FIX}")


# --- the entry point ------------------------------------------------------------------------------
def read_recording(path: Path, fmt: str = "auto", adc: str | None = None) -> Recording:
    """Read ``path`` (format ``fmt``, or ``auto`` from its first bytes) into a checked ``Recording``.

    ``adc``: the device family (``plux`` or ``bitalino``) whose transfer function converts ADC counts when the
    file does not name its device (BioSPPy text); it overrides the device a file names."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"no file at {path}; check the path" if not path.exists() else
                         f"{path} is a folder; pass the recording file inside it")
    if adc is not None:
        check_option(adc, ADC_FAMILIES, "--adc")
    fmt = sniff(path) if fmt == "auto" else check_option(fmt, IMPORT_FORMATS, "--format")
    try:
        rec = READERS[fmt](path, adc)
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"cannot read {path} as {fmt} ({exc}); {FIX}") from None
    check_recording(rec, path)
    return rec


def sniff(path: Path) -> str:
    """The format of ``path`` from its first bytes (or its name, for CSV)."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "plux-h5"
    if head[:8] == b"0       " and len(head) >= 256:
        return "edf"
    text = head.decode("utf-8", "replace").lstrip("\ufeff")
    first = text.splitlines()[0].strip() if text.strip() else ""
    if first.startswith("# OpenSignals"):
        return "opensignals"
    if first.startswith("# Simple Text Format") or "# Sampling Rate (Hz):=" in text:
        return "biosppy"
    if first.startswith("Phone timestamp;"):
        return "polar"
    if "time_s" in first.lower():
        return "csv"
    raise StoreError(f"cannot tell the format of {path} from its first line {first[:60]!r}; pass --format "
                     f"({', '.join(IMPORT_FORMATS)}) — {FIX}")


def check_recording(rec: Recording, path: Path) -> None:
    """Refuse a recording the session file cannot hold: no data, times outside a session, samples not finite."""
    if not rec.signals and not rec.rr_ms.size and not rec.hr_bpm.size:
        raise fail(path, "holds no EMG, ECG, RR or heart rate that biofeedback reads")
    lo, hi = SESSION_TIME_RANGE_S
    for s in rec.signals:
        if not 0 < s.rate_hz <= MAX_RATE_HZ:
            raise fail(path, f"{s.stream} sample rate {s.rate_hz:g} Hz is not above 0 and at most {MAX_RATE_HZ:g} Hz")
        if s.data.shape != (s.t_s.size, len(s.channels)) or not s.t_s.size:
            raise fail(path, f"{s.stream} has no samples")
        if not (np.isfinite(s.data).all() and np.isfinite(s.t_s).all()):
            raise fail(path, f"{s.stream} holds values that are not finite numbers")
        if np.abs(s.data).max() > EMG_LIMIT_UV:
            raise fail(path, f"{s.stream} reaches {np.abs(s.data).max():.3g} µV, more than 1 V: its unit is not µV")
        if np.any(np.diff(s.t_s) <= 0):
            raise fail(path, f"{s.stream} sample times do not increase")
    times = [t for s in rec.signals for t in (s.t_s[0], s.t_s[-1])] + list(rec.beat_t_s[:1]) + list(rec.beat_t_s[-1:])
    times += [p.start_s for p in rec.phases] + [p.end_s for p in rec.phases] + [e[1] for e in rec.events]
    if any(not (math.isfinite(t) and lo <= t <= hi) for t in times):
        raise fail(path, f"its times reach outside {lo:g} to {hi:g} s of one session")
    if rec.rr_ms.size and not (np.isfinite(rec.rr_ms).all() and RR_RANGE_MS[0] <= rec.rr_ms.min()
                               and rec.rr_ms.max() <= RR_RANGE_MS[1]):
        raise fail(path, f"RR intervals must be from {RR_RANGE_MS[0]:g} to {RR_RANGE_MS[1]:g} ms")
    if rec.utc_anchor is not None:
        check_number(rec.utc_anchor, "recording start", origin(path), lo=UTC_RANGE_S[0], hi=UTC_RANGE_S[1],
                     unit="UTC seconds (2000 to 2100)")
    for p in rec.phases:
        if not p.end_s > p.start_s:
            raise fail(path, f"phase {p.name!r} ends at {p.end_s:g} s, not after its start {p.start_s:g} s")


# --- shared pieces --------------------------------------------------------------------------------
def phase_kind(name: str) -> str:
    """The kind of a phase known only by its name: ``treatment`` or ``task`` when the name says so, else ``rest``."""
    low = name.lower()
    return "treatment" if "treat" in low else "task" if "task" in low else "rest"


def phases_from_labels(t_s: np.ndarray, labels: list[str], rate_hz: float) -> list[PhaseSpan]:
    """Phases from a per-row phase column: each run of one non-empty name, to half a sample after its last row."""
    out: list[PhaseSpan] = []
    start = None
    for i, name in enumerate([*labels, ""]):
        if start is not None and name != labels[start]:
            out.append(PhaseSpan(labels[start], phase_kind(labels[start]), float(t_s[start]),
                                 float(t_s[i - 1]) + 1.0 / rate_hz))
            start = None
        if start is None and name:
            start = i
    return out


def read_phases(path: Path) -> list[PhaseSpan]:
    """A phases file: CSV with a header ``name,start_s,end_s`` and optionally ``kind`` (rest, treatment, task)."""
    path = Path(path)
    at = origin(path)
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"cannot read the phases file {path} ({exc}); {FIX}") from None
    if not rows or not {"name", "start_s", "end_s"} <= set(rows[0]):
        raise fail(path, "a phases file needs a header line name,start_s,end_s[,kind] and one phase a line")
    phases = []
    for i, row in enumerate(rows, start=2):
        name = (row.get("name") or "").strip()
        if not name:
            raise fail(path, f"line {i}: the phase has no name")
        start = check_number(_number(row["start_s"]), f"line {i} start_s", at, unit="seconds")
        end = check_number(_number(row["end_s"]), f"line {i} end_s", at, lo=start, lo_open=True, unit="seconds")
        kind = check_option((row.get("kind") or "").strip() or phase_kind(name), PHASE_KINDS, f"line {i} kind", at)
        phases.append(PhaseSpan(name, kind, start, end))
    return phases


def _number(text: str | None) -> float | str | None:
    """A cell as a float when it reads as one (else as it is, for the check to name)."""
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return text


def _numeric_rows(lines: list[str], first_line: int, path: Path, sep: str | None = None) -> np.ndarray:
    """Rows of numbers (one list per line) as a 2-D float array; a line that is not numbers is named in the error."""
    rows = [ln for ln in lines if ln.strip()]
    if not rows:
        raise fail(path, "holds no data rows")
    try:
        return np.loadtxt(rows, delimiter=sep, ndmin=2, dtype=float)
    except ValueError:
        width = None
        for i, line in enumerate(lines, start=first_line):
            if not line.strip():
                continue
            cells = [c for c in line.split(sep)] if sep else line.split()
            try:
                [float(c) for c in cells]
            except ValueError:
                raise fail(path, f"line {i} is not numbers: {line.strip()[:60]!r}") from None
            if width is not None and len(cells) != width:
                raise fail(path, f"line {i} has {len(cells)} values where the lines before have {width}") from None
            width = len(cells)
        raise fail(path, "its rows are not a table of numbers") from None


def _from_adc(path: Path, counts: np.ndarray, bits: int, family: str | None, stream: str) -> np.ndarray:
    if family is None:
        raise fail(path, "holds ADC counts of a device it does not name; pass --adc plux or --adc bitalino to "
                         "say whose transfer function converts them to µV")
    if not (isinstance(bits, int) and 1 <= bits <= 24):
        raise fail(path, f"ADC resolution {bits!r} bits is not a resolution from 1 to 24")
    if counts.size and (counts.min() < 0 or counts.max() >= 2 ** bits):
        raise fail(path, f"{stream} ADC counts run from {counts.min():g} to {counts.max():g}, outside "
                         f"0 to {2 ** bits - 1} of its {bits}-bit ADC; check the resolution")
    return TRANSFER[(family, stream)].to_uv(counts, bits)


def _family(device: str | None, adc: str | None) -> str | None:
    """The transfer-function family of an OpenSignals ``device`` name (``adc`` wins when given)."""
    if adc is not None:
        return adc
    name = (device or "").lower()
    if "bitalino" in name:
        return "bitalino"
    if name in PLUX_DEVICES:
        return "plux"
    return None


def _stream_of(sensor: str) -> str | None:
    s = sensor.upper()
    if "EMG" in s:
        return StreamKind.EMG
    if "ECG" in s or "EKG" in s:
        return StreamKind.ECG
    return None


def _adc_signals(path: Path, rec: Recording, columns: list[tuple[str, str, np.ndarray, int]], rate: float,
                 family: str | None) -> None:
    """EMG and ECG signals from ADC columns (label, sensor, counts, bits) sampled together at ``rate``."""
    n = columns[0][2].size if columns else 0
    t = np.arange(n) / rate
    used, skipped = {}, []
    for label, sensor, counts, bits in columns:
        stream = _stream_of(sensor)
        if stream is None:
            skipped.append(f"{label} ({sensor or 'no sensor'})")
            continue
        used.setdefault(stream, []).append((label, counts, bits))
    if not used:
        raise fail(path, f"holds no channel whose sensor is EMG or ECG (it has {', '.join(skipped) or 'none'})")
    for stream, chans in used.items():
        counts = np.column_stack([c for _, c, _ in chans])
        data = np.column_stack([_from_adc(path, c, b, family, stream) for _, c, b in chans])
        rec.signals.append(Signal(stream, tuple(label for label, _, _ in chans), rate, t, data, counts))
        rec.details.setdefault("transfer", {})[stream] = TRANSFER[(family, stream)].reference  # type: ignore[index]
        rec.details.setdefault("resolution_bits", {}).update({label: bits for label, _, bits in chans})
    if skipped:
        rec.details["channels_left_out"] = skipped


def _local_as_utc(text: str) -> float | None:
    """A date-time as written by a recording device (local time, no zone), read as UTC seconds; None if unreadable."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


def _opensignals_start(date: str | None, time: str | None) -> float | None:
    """OpenSignals ``date`` (2017-1-23) and ``time`` (10:28:51.69) as UTC seconds (they are local time)."""
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", str(date or "").strip())
    t = re.fullmatch(r"(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d+))?", str(time or "").strip())
    if not m:
        return None
    y, mo, d = map(int, m.groups())
    h = mi = s = 0
    frac = 0.0
    if t:
        h, mi, s = map(int, t.groups()[:3])
        frac = float(f"0.{t.group(4)}") if t.group(4) else 0.0
    try:
        return dt.datetime(y, mo, d, h, mi, s, tzinfo=dt.timezone.utc).timestamp() + frac
    except ValueError:
        return None


# --- plain CSV ------------------------------------------------------------------------------------
_EMG_COLUMN = re.compile(r"emg_(.+)_(uv|µv|mv)", re.IGNORECASE)
_UNIT_SCALE = {"uv": 1.0, "µv": 1.0, "mv": 1000.0, "v": 1e6}


def read_csv(path: Path, adc: str | None = None) -> Recording:
    """Our plain CSV layout (``docs/import.md``)."""
    text = path.read_text(encoding="utf-8-sig")
    lines = text.splitlines()
    if not lines:
        raise fail(path, "is empty")
    sep = max((",", ";", "\t"), key=lines[0].count)
    header = [h.strip() for h in lines[0].split(sep)]
    names = [h.lower() for h in header]
    if "time_s" not in names:
        raise fail(path, f"line 1 needs a time_s column (it has {', '.join(header)})")
    emg = [(i, _EMG_COLUMN.fullmatch(h)) for i, h in enumerate(header)]
    emg = [(i, m.group(1), _UNIT_SCALE[m.group(2).lower()]) for i, m in emg if m]
    ecg = [(i, header[i], _UNIT_SCALE[n.split("_")[-1]]) for i, n in enumerate(names)
           if re.fullmatch(r"ecg(_.+)?_(uv|µv|mv)", n)]
    known = {"time_s", "rr_ms", "phase"} | {header[i].lower() for i, _, _ in emg + ecg}
    unknown = [h for h in header if h.lower() not in known]
    if unknown:
        raise fail(path, f"line 1 has columns biofeedback does not know: {', '.join(unknown)} (known: time_s, "
                         "emg_<channel>_uV, ecg_uV, rr_ms, phase)")
    rows = list(csv.reader(lines[1:], delimiter=sep))
    col = {n: i for i, n in enumerate(names)}
    values = np.full((len(rows), len(header)), np.nan)
    phase_labels = []
    for r, row in enumerate(rows):
        if len(row) != len(header) and any(c.strip() for c in row):
            raise fail(path, f"line {r + 2} has {len(row)} cells where the header has {len(header)}")
        for i, cell in enumerate(row):
            if names[i] == "phase" or not cell.strip():
                continue
            try:
                values[r, i] = float(cell)
            except ValueError:
                raise fail(path, f"line {r + 2}, column {header[i]}: {cell.strip()[:30]!r} is not a number") from None
        phase_labels.append(row[col["phase"]].strip() if "phase" in col and len(row) > col["phase"] else "")
    keep = np.array([any(c.strip() for c in row) for row in rows], dtype=bool)
    values = values[keep]
    phase_labels = [p for p, k in zip(phase_labels, keep) if k]
    t = values[:, col["time_s"]]
    if not t.size or not np.isfinite(t).all():
        raise fail(path, "every data line needs a time_s")
    if np.any(np.diff(t) <= 0):
        line = int(np.flatnonzero(np.diff(t) <= 0)[0]) + 3
        raise fail(path, f"time_s must increase from line to line (line {line} does not)")
    rec = Recording("csv", [path.name])
    sampled = emg or ecg
    rate = None
    if sampled:
        if t.size < 2:
            raise fail(path, "needs at least two lines of samples")
        rate = 1.0 / float(np.median(np.diff(t)))
    for stream, cols in ((StreamKind.EMG, emg), (StreamKind.ECG, ecg)):
        if not cols:
            continue
        data = np.column_stack([values[:, i] * scale for i, _, scale in cols])
        if not np.isfinite(data).all():
            line = int(np.flatnonzero(~np.isfinite(data).all(axis=1))[0])
            raise fail(path, f"{stream} is empty on data line {line + 1}; leave out lines without samples "
                             "(the time jump becomes a gap)")
        channels = tuple(name for _, name, _ in cols) if stream == StreamKind.EMG else tuple(
            h[4:h.rfind("_")] or "ecg" for _, h, _ in cols)
        rec.signals.append(Signal(stream, channels, rate, t.copy(), data))  # type: ignore[arg-type]
    if "rr_ms" in col:
        rr = values[:, col["rr_ms"]]
        beat = np.isfinite(rr)
        rec.beat_t_s, rec.rr_ms = t[beat], rr[beat]
    if "phase" in col:
        rec.phases = phases_from_labels(t, phase_labels, rate or 1000.0)
    rec.details["columns"] = header
    return rec


# --- OpenSignals text -------------------------------------------------------------------------------
def read_opensignals(path: Path, adc: str | None = None) -> Recording:
    """OpenSignals text: ``# OpenSignals Text File Format``, ``# {JSON header}``, ``# EndOfHeader``, then rows."""
    lines = path.read_text(encoding="utf-8-sig", errors="strict").splitlines()
    end = next((i for i, ln in enumerate(lines) if ln.strip() == "# EndOfHeader"), None)
    header_line = next((ln for ln in lines[:end] if ln.lstrip("# ").startswith("{")), None)
    if end is None or header_line is None:
        raise fail(path, "is not OpenSignals text: it lacks the '# {...}' header or '# EndOfHeader'")
    try:
        header = json.loads(header_line.lstrip("# "))
    except ValueError:
        raise fail(path, "its OpenSignals header line is not valid JSON") from None
    if not isinstance(header, dict) or not header:
        raise fail(path, "its OpenSignals header names no device")
    if len(header) > 1:
        raise fail(path, f"holds {len(header)} devices; export each device to its own file from OpenSignals")
    dev = next(iter(header.values()))
    at = origin(path)
    rate = check_number(dev.get("sampling rate"), "header 'sampling rate'", at, lo=0, lo_open=True, hi=MAX_RATE_HZ,
                        unit="Hz")
    column = [str(c) for c in dev.get("column") or []]
    labels = [str(c) for c in dev.get("label") or []]
    sensors = [str(c) for c in dev.get("sensor") or []]
    res = dev.get("resolution") or []
    if not labels or not column:
        raise fail(path, "its OpenSignals header lacks 'column' or 'label'")
    data = _numeric_rows(lines[end + 1:], end + 2, path)
    if data.shape[1] < len(column):
        raise fail(path, f"its rows have {data.shape[1]} values where the header names {len(column)} columns")
    cols = []
    for k, label in enumerate(labels):
        if label not in column:
            raise fail(path, f"header label {label!r} is not among its columns {column}")
        j = column.index(label)
        bits = res[j] if len(res) == len(column) else res[k] if len(res) == len(labels) else None
        cols.append((label, sensors[k] if k < len(sensors) else "", data[:, j], bits))
    rec = Recording("opensignals", [path.name])
    rec.details.update(device=dev.get("device"), sampling_rate_hz=rate, sensors=sensors)
    _adc_signals(path, rec, cols, rate, _family(dev.get("device"), adc))
    rec.utc_anchor = _opensignals_start(dev.get("date"), dev.get("time"))
    return rec


# --- OpenSignals HDF5 ----------------------------------------------------------------------------------
def read_plux_h5(path: Path, adc: str | None = None) -> Recording:
    """OpenSignals HDF5: ``/<device>/raw/channel_N`` ADC counts with ``sensor`` and ``label`` attributes."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise StoreError(f"{path} is not a readable HDF5 file ({exc}); {FIX}") from None
    with f:
        devices = [k for k in f if isinstance(f[k], h5py.Group) and "raw" in f[k]]
        if not devices:
            raise fail(path, "is HDF5 but has no OpenSignals device group with a 'raw' group")
        if len(devices) > 1:
            raise fail(path, f"holds {len(devices)} devices; export each device to its own file from OpenSignals")
        g = f[devices[0]]
        attrs = dict(g.attrs)
        at = origin(path)
        rate = check_number(_scalar(attrs.get("sampling rate")), "attribute 'sampling rate'", at, lo=0, lo_open=True,
                            hi=MAX_RATE_HZ, unit="Hz")
        channel_numbers = [int(c) for c in np.atleast_1d(attrs.get("channels", []))]
        res = [int(r) for r in np.atleast_1d(attrs.get("resolution", []))]
        names = sorted((k for k in g["raw"] if re.fullmatch(r"channel_\d+", k)), key=lambda k: int(k.split("_")[1]))
        if not names:
            raise fail(path, "has no raw/channel_N datasets")
        cols = []
        for name in names:
            ds = g["raw"][name]
            number = int(name.split("_")[1])
            bits = res[channel_numbers.index(number)] if number in channel_numbers and len(res) == len(channel_numbers) \
                else res[0] if res else None
            cols.append((_text(ds.attrs.get("label")) or name, _text(ds.attrs.get("sensor")),
                         np.asarray(ds[()], dtype=float).reshape(-1), bits))
        if len({c[2].size for c in cols}) > 1:
            raise fail(path, "its channels hold different numbers of samples")
        device = _text(attrs.get("device"))
    rec = Recording("plux-h5", [path.name])
    rec.details.update(device=device, sampling_rate_hz=rate, firmware=_scalar(attrs.get("firmware version")))
    _adc_signals(path, rec, cols, rate, _family(device, adc))
    rec.utc_anchor = _opensignals_start(_text(attrs.get("date")), _text(attrs.get("time")))
    return rec


def _scalar(value):
    arr = np.atleast_1d(value) if value is not None else None
    if arr is None or arr.size != 1:
        return value
    item = arr[0].item() if hasattr(arr[0], "item") else arr[0]
    return item.decode() if isinstance(item, bytes) else item


def _text(value) -> str:
    value = _scalar(value)
    return value if isinstance(value, str) else "" if value is None else str(value)


# --- BioSPPy simple text -----------------------------------------------------------------------------
def read_biosppy(path: Path, adc: str | None = None) -> Recording:
    """BioSPPy's text: ``# Sampling Rate (Hz):= f``, ``# Resolution:= n``, ``# Labels:= a<TAB>b``, then rows."""
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    head = {}
    body_at = 0
    for i, line in enumerate(lines):
        if not line.startswith("#"):
            body_at = i
            break
        if ":=" in line:
            key, value = line[1:].split(":=", 1)
            head[key.strip().lower()] = value.strip()
    at = origin(path)
    rate = check_number(_number(head.get("sampling rate (hz)")), "header 'Sampling Rate (Hz)'", at, lo=0,
                        lo_open=True, hi=MAX_RATE_HZ, unit="Hz")
    bits = check_number(_number(head.get("resolution")), "header 'Resolution'", at, lo=1, hi=24, integer=True,
                        unit="bits")
    labels = (head.get("labels") or "").split("\t") if head.get("labels") else []
    data = _numeric_rows(lines[body_at:], body_at + 1, path)
    if not labels:
        labels = ["EMG"] * data.shape[1]
    if len(labels) != data.shape[1]:
        raise fail(path, f"its header names {len(labels)} labels for {data.shape[1]} columns")
    cols = [(label or f"ch{k + 1}", label, data[:, k], bits) for k, label in enumerate(labels)]
    rec = Recording("biosppy", [path.name])
    rec.details.update(sampling_rate_hz=rate, adc=adc, note="device not named in the file; converted with --adc")
    _adc_signals(path, rec, cols, rate, adc)
    return rec


# --- Polar Sensor Logger ------------------------------------------------------------------------------
POLAR_SUFFIXES = ("ECG", "RR", "HR")


def read_polar(path: Path, adc: str | None = None) -> Recording:
    """Polar Sensor Logger text exports; the ``_ECG``, ``_RR`` and ``_HR`` files of the same recording are read
    together (those present beside ``path``)."""
    m = re.fullmatch(r"(.+)_(ECG|RR|HR)\.txt", path.name, re.IGNORECASE)
    files = {}
    if m:
        for kind in POLAR_SUFFIXES:
            sibling = path.with_name(f"{m.group(1)}_{kind}.txt")
            if sibling.is_file():
                files[kind] = sibling
    if not files:
        files = {_polar_kind(path): path}
    tables = {kind: _polar_table(f) for kind, f in files.items()}
    anchor = min(float(tab[0][0]) for tab in tables.values())
    names = [path.name] + [f.name for f in files.values() if f.name != path.name]
    rec = Recording("polar", names, utc_anchor=anchor)
    source = rec.source
    if "ECG" in tables:
        phone, cols, f = tables["ECG"]
        ns = cols.get("sensor timestamp [ns]")
        uv = cols.get("ecg [uV]")
        if uv is None or ns is None:
            raise fail(f, "needs the columns 'sensor timestamp [ns]' and 'ecg [uV]'")
        device_s = (ns - ns[0]) / 1e9
        offset = float(np.min((phone - anchor) - device_s))  # the frame that arrived soonest after its samples
        t = device_s + offset
        span = t[-1] - t[0]
        rate = (t.size - 1) / span if span > 0 else 130.0
        rec.signals.append(Signal(StreamKind.ECG, ("ecg",), rate, t, uv[:, None]))
        rec.details["ecg_rate_hz"] = rate
    if "RR" in tables:
        phone, cols, f = tables["RR"]
        rr = cols.get("RR-interval [ms]")
        if rr is None:
            raise fail(f, "needs the column 'RR-interval [ms]'")
        timeline = RRTimeline(source, tolerance_s=RR_GAP_TOLERANCE_S)
        arrival = phone - anchor
        beats = []
        for a in np.unique(arrival):  # rows of one phone timestamp came in one notification
            beats.append(timeline.add(float(a), rr[arrival == a]))
        rec.beat_t_s, rec.rr_ms = np.concatenate(beats), rr[np.argsort(arrival, kind="stable")]
        rec.gaps += [g for g in timeline.gaps if g.stream == StreamKind.RR]
    if "HR" in tables:
        phone, cols, f = tables["HR"]
        hr = cols.get("HR [bpm]")
        if hr is None:
            raise fail(f, "needs the column 'HR [bpm]'")
        rec.hr_t_s, rec.hr_bpm = phone - anchor, hr
    return rec


def _polar_kind(path: Path) -> str:
    first = path.read_text(encoding="utf-8-sig").splitlines()[0]
    for kind, column in (("ECG", "ecg [uV]"), ("RR", "RR-interval [ms]"), ("HR", "HR [bpm]")):
        if column in first:
            return kind
    raise fail(path, "is not a Polar Sensor Logger ECG, RR or HR export (first line "
                     f"{first[:60]!r})")


def _polar_table(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray], Path]:
    """Phone times (UTC s, read from local time) and the numeric columns by header name of one Polar file."""
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    header = [h.strip() for h in lines[0].split(";")] if lines else []
    if not header or header[0] != "Phone timestamp":
        raise fail(path, "is not a Polar Sensor Logger export: its first line does not start 'Phone timestamp;'")
    phone, rows = [], []
    for i, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split(";")
        when = _local_as_utc(cells[0])
        if when is None:
            raise fail(path, f"line {i}: {cells[0][:30]!r} is not a phone timestamp (YYYY-MM-DDTHH:MM:SS.mmm)")
        try:
            values = [float(c) if c.strip() else math.nan for c in cells[1:len(header)]]
        except ValueError:
            raise fail(path, f"line {i} is not numbers after its timestamp: {line[:60]!r}") from None
        phone.append(when)
        rows.append(values + [math.nan] * (len(header) - 1 - len(values)))
    if not rows:
        raise fail(path, "holds no data lines")
    data = np.array(rows, dtype=float)
    cols = {name: data[:, k] for k, name in enumerate(header[1:]) if name}
    return np.array(phone), cols, path


# --- EDF / EDF+ ------------------------------------------------------------------------------------------
_RR_ANNOTATION = re.compile(r"RR ([0-9.]+) ms")
_EDF_UNITS = {"uv": 1.0, "µv": 1.0, "mv": 1000.0, "v": 1e6}
EDF_EVENT_KINDS = (EventKind.MARKER, EventKind.NOTE, EventKind.HANDS_ON, EventKind.CALIBRATION,
                   EventKind.FEEDBACK_PAUSED)
"""``<kind>: <label>`` annotations read back as events of that kind (our EDF+ export writes them so)."""


def read_edf(path: Path, adc: str | None = None) -> Recording:
    """EDF/EDF+ signals labelled EMG or ECG, and the annotations (see the module docstring)."""
    import edfio

    try:
        edf = edfio.read_edf(path)
    except Exception as exc:  # noqa: BLE001 - edfio raises several kinds for a damaged header
        raise StoreError(f"{path} is not a readable EDF/EDF+ file ({type(exc).__name__}: {exc}); {FIX}") from None
    rec = Recording("edf", [path.name])
    try:
        start = dt.datetime.combine(edf.startdate, edf.starttime).replace(tzinfo=dt.timezone.utc)
        rec.utc_anchor = start.timestamp()
    except (ValueError, TypeError, edfio.AnonymizedDateError):
        rec.utc_anchor = None
    no_data: list[tuple[float, float]] = []
    for a in edf.annotations:
        text, onset, duration = a.text.strip(), float(a.onset), float(a.duration or 0.0)
        rr = _RR_ANNOTATION.match(text)
        if rr:
            rec.beat_t_s = np.append(rec.beat_t_s, onset)
            rec.rr_ms = np.append(rec.rr_ms, float(rr.group(1)))
        elif text.startswith("BAD_ACQ_SKIP"):
            if duration > 0:
                no_data.append((onset, onset + duration))
        elif text.startswith(f"{EventKind.PHASE}: ") and duration > 0:
            name = text.split(": ", 1)[1]
            rec.phases.append(PhaseSpan(name, phase_kind(name), onset, onset + duration))
        elif text.startswith(f"{EventKind.PHASE_START}: "):
            continue
        else:
            kind, _, label = text.partition(": ")
            known = next((k for k in EDF_EVENT_KINDS if k == kind), None)
            rec.events.append((known or EventKind.MARKER, onset, duration, label if known else text))
    by_stream: dict[tuple[str, float], list] = {}
    skipped = []
    for s in edf.signals:
        label = s.label.strip()
        stream = _stream_of(label.split()[0] if label else "")
        unit = _EDF_UNITS.get(s.physical_dimension.strip().lower())
        if stream is None or s.label.startswith("EDF Annotations"):
            skipped.append(label)
            continue
        if unit is None:
            raise fail(path, f"signal {label!r} is in {s.physical_dimension!r}; biofeedback reads EMG and ECG in "
                             "µV, mV or V")
        name = label.split(None, 1)[1] if len(label.split()) > 1 else label
        by_stream.setdefault((stream, float(s.sampling_frequency)), []).append((name, s.data * unit))
    for (stream, rate), chans in by_stream.items():
        if any(other == stream and r != rate for other, r in by_stream if (other, r) != (stream, rate)):
            raise fail(path, f"its {stream} signals have different sample rates; biofeedback keeps one rate a stream")
        n = min(c[1].size for c in chans)
        data = np.column_stack([c[1][:n] for c in chans])
        t = np.arange(n) / rate
        keep = np.ones(n, dtype=bool)
        for a, b in no_data:
            keep &= ~((t >= a) & (t < b))
        rec.signals.append(Signal(stream, tuple(c[0] for c in chans), rate, t[keep], data[keep]))
    if skipped:
        rec.details["signals_left_out"] = skipped
    order = np.argsort(rec.beat_t_s, kind="stable")
    rec.beat_t_s, rec.rr_ms = rec.beat_t_s[order], rec.rr_ms[order]
    return rec


READERS = {"csv": read_csv, "opensignals": read_opensignals, "plux-h5": read_plux_h5, "biosppy": read_biosppy,
           "polar": read_polar, "edf": read_edf}
