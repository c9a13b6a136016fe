"""The session file: one crash-safe SQLite database per session, written in WAL mode.

Why SQLite in WAL mode. A kill test (``tools/kill_test.py``, run by ``tests/store/test_kill.py``)
sends SIGKILL to a process that is writing a realistic session, at random moments (during
creation, between commits, inside commits and WAL checkpoints, at 1x and 20x speed); afterwards
the file must open with the normal reader and lose at most the last second. SQLite in WAL mode
passed 50 of 50 kills (every file opened, every stored block intact and in order), losing at most
0.66 s of EMG (median about 0.3 s; the worst at 20x, where commit latency counts twenty-fold).
Killing the real ``session`` command (``kill_test.py --session``, virtual sensors: 45 kills at 1x,
10x and 20x, 12 of them during start-up) left files that all opened with nothing damaged; between
the kill and the newest stored sample at most 0.49, 0.58 and 0.68 s of EMG were lost at 1x, 10x and
20x, and 1.15 s of ECG, 1.45 s of HR and 2.0 s of RR (their frames and notifications are older when
they arrive), each within the bound below. On a machine too busy to keep up (two cores shared with
another test run) the EMG acquisition itself fell behind, and a kill at 20x lost up to 4.6 s of EMG.
Of the candidates:

* SQLite, WAL mode: every commit is atomic; after a kill the next connection replays the
  committed frames of the ``-wal`` file and ignores a torn tail, with no step for the user. Passes
  the kill test. A reader in another process sees a consistent snapshot while the writer appends,
  and it ships with Python (no new dependency, one file a user can copy).
* HDF5 with SWMR: survives a kill only if the writer flushes after every append and never adds a
  dataset or attribute once SWMR starts (new streams, late metadata, calibration would be
  impossible), and a damaged file cannot be repaired with standard tools.
* zarr: one file per chunk (a folder, not one file); a kill between chunk and metadata writes
  leaves arrays whose shape disagrees with their chunks.
* plain HDF5 without flush, and Parquet (footer written at close), lose everything on a kill.

Durability policy: the writer thread commits every ``COMMIT_INTERVAL_S`` of session time (so at
``--speed 20`` it commits twenty times as often in wall time) with ``synchronous=FULL``, i.e. an
fsync of the WAL per commit, which also covers a laptop losing power. The acquisition thread only
appends to an in-memory list; it never waits for the disk. So, on a machine that keeps up, a kill
loses at most the commit interval (``COMMIT_INTERVAL_S`` of session time, or ``MIN_COMMIT_WALL_S``
of wall time at high speed), plus the wall time a commit and the hand-over from the sensor callback
take, times the speed, plus the stream's own latency (its newest sample is one frame or
notification old when it arrives); ``tools/kill_test.py --session`` states this bound per stream
(``loss_bound_s``, with 0.1 s of wall time for commit and hand-over) and measures the real command
against it.

Layout: ``meta`` (JSON values), ``streams``, ``blocks`` (one row per received packet: times,
sequence, first sample index, flags, decoded samples as a little-endian float32 blob, the raw
packet bytes), ``beats`` (raw and corrected RR with flags per beat), ``gaps`` and ``events``
(phases, markers, notes, calibration, ...). float32 keeps 24 bits of mantissa, far finer than any
sensor's ADC; the raw packets are kept as received anyway. Since format 2 each samples blob ends
with a CRC-32 of the samples, their times and the first sample's time and rate (``_samples_crc``):
SQLite checks its own pages' structure, not the bytes inside a blob, so without it bytes flipped on
disk would change samples silently; a reader skips a block that fails it and names it in
``problems``. Format 1 files (no checksum) still read.

Creation is atomic: the schema and the metadata are written to ``<name>.part``, which is renamed
into place only when complete, so a kill during creation leaves no half-made session behind.
What a killed session leaves is tidied at the next start in its folder and whenever its client's
sessions are listed (``tidy_leftovers``): a ``.part`` no one is making (it holds the screening
answers and no data) is deleted, and the ``-wal``/``-shm`` of a file no one has open are folded
back into it by SQLite (``fold_back``: committed frames kept, a torn tail dropped). Such a session
stays ``complete = false`` and is listed as cut short (``session_state``).
The reader opens read-only and never writes to the file it was asked to read. With a ``-wal``
file beside it (session being written, or writer killed) it opens ``mode=ro``: SQLite reads the
committed frames from the WAL and skips a torn tail, which is the whole recovery (it may create or
update the ``-shm`` index beside the file, never the file or its WAL). Without one it opens the
file as immutable and touches nothing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

import biofeedback
from biofeedback.store.errors import StoreError
from biofeedback.store.paths import FILE_MODE, SESSION_SUFFIX, private_dir, scrub_addresses, validate_client_id
from biofeedback.stream import NS_PER_S, Block, Gap, StreamKind
from biofeedback.validate import EMG_RANGE_UV, MAX_RATE_HZ, SESSION_TIME_RANGE_S, SPEED_RANGE, UTC_RANGE_S, Origin, \
    check_number, check_numbers, check_type, session_file, shown
from biofeedback.vocab import EventKind

COMMIT_INTERVAL_S = 0.5
"""Session seconds between commits: with the time a commit takes, a kill loses less than 1 s."""
MIN_COMMIT_WALL_S = 0.02
"""Shortest wall-clock time between commits, at high replay speeds (bounds the fsync rate)."""
WAL_AUTOCHECKPOINT_PAGES = 1000
"""WAL pages after which a commit also copies the WAL into the main file (SQLite's default)."""
APPLICATION_ID = 0x62665353
"""SQLite ``application_id`` of a session file ('bfSS'); tells our files from other SQLite files."""
SCHEMA_VERSION = 2
"""Format of the files written now (``PRAGMA user_version`` and ``meta.format_version``); older formats still read."""
CHECKSUM_SINCE_VERSION = 2
"""First format whose blocks end their samples blob with a checksum (format 1 files are read without one)."""
SAMPLE_DTYPE = np.dtype("<f4")
CHECKSUM = struct.Struct("<I")
"""The CRC-32 (``zlib.crc32``) at the end of each block's samples blob; see ``_samples_crc``."""
TIME_DTYPE = np.dtype("<f8")
LONGEST_BLOCK_S = 10.0
"""Upper bound on one block's duration, used to find the blocks that overlap a time range."""
CHUNK_SAMPLES = 1 << 18
"""Samples per piece that ``SessionReader.chunks`` reads by default (about 2 min of 2-channel EMG at 1 kHz, 4 MB)."""
FETCH_ROWS = 64
"""Block rows ``SessionReader.chunks`` fetches from SQLite at a time while it fills a piece."""

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE streams (
    id INTEGER PRIMARY KEY, stream TEXT NOT NULL, source TEXT NOT NULL, rate_hz REAL,
    channels TEXT NOT NULL, unit TEXT NOT NULL, UNIQUE (stream, source));
CREATE TABLE blocks (
    id INTEGER PRIMARY KEY, stream_id INTEGER NOT NULL REFERENCES streams (id),
    host_time_ns INTEGER NOT NULL, device_time_ns INTEGER, seq INTEGER, first_index INTEGER,
    flags INTEGER NOT NULL, t_first_s REAL NOT NULL, t_last_s REAL NOT NULL, rate_hz REAL,
    n INTEGER NOT NULL, n_channels INTEGER NOT NULL, data BLOB NOT NULL, times BLOB, raw BLOB NOT NULL);
CREATE INDEX blocks_by_stream_time ON blocks (stream_id, t_first_s);
CREATE TABLE beats (
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, t_s REAL NOT NULL, rr_raw_ms REAL NOT NULL,
    rr_corrected_ms REAL, flags INTEGER NOT NULL);
CREATE TABLE gaps (
    id INTEGER PRIMARY KEY, stream TEXT NOT NULL, source TEXT NOT NULL, start_s REAL NOT NULL,
    end_s REAL NOT NULL, reason TEXT NOT NULL, lost_samples INTEGER);
CREATE TABLE events (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, t_s REAL NOT NULL, duration_s REAL NOT NULL,
    label TEXT NOT NULL, data TEXT);
"""
_INSERTS = {
    "meta": "INSERT OR REPLACE INTO meta VALUES (?, ?)",
    "streams": "INSERT INTO streams VALUES (?, ?, ?, ?, ?, ?)",
    "blocks": "INSERT INTO blocks VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "beats": "INSERT INTO beats VALUES (NULL, ?, ?, ?, ?, ?)",
    "gaps": "INSERT INTO gaps VALUES (NULL, ?, ?, ?, ?, ?, ?)",
    "events": "INSERT INTO events VALUES (NULL, ?, ?, ?, ?, ?)",
}


SQLITE_INT_RANGE = (-(2 ** 63), 2 ** 63 - 1)
"""The integers SQLite stores; a value outside (a garbage packet's sample index, say) is refused at the door."""


def _int_problem(**values: int | None) -> str | None:
    """What is out of SQLite's integer range among ``values`` (None when all fit)."""
    lo, hi = SQLITE_INT_RANGE
    bad = [f"{name} {value}" for name, value in values.items() if value is not None and not lo <= int(value) <= hi]
    return ", ".join(bad) or None


def _json(value: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"session metadata must be JSON-serialisable ({exc}); pass plain numbers, strings, lists, dicts")


def _samples_crc(t_first_s: float, rate_hz: float | None, samples: bytes, times: bytes | None) -> int:
    """CRC-32 of a block's decoded samples (float32 blob), their times (float64 blob, event streams) and the first
    sample's time and the rate that place them: what the writer stores after the samples and the reader checks."""
    placement = struct.pack("<dd", float(t_first_s), 0.0 if rate_hz is None else float(rate_hz))
    return zlib.crc32(times or b"", zlib.crc32(samples, zlib.crc32(placement)))


_BLOCK_ROWS = ("SELECT id, stream_id, t_first_s, rate_hz, n, n_channels, data, times, host_time_ns, device_time_ns, seq, "
               "first_index, flags FROM blocks")
"""The block columns ``_Piece.of`` reads, as ``_block_problem`` checks them."""


class SampleChunk(NamedTuple):
    """A piece of one stream read by ``SessionReader.chunks``: samples and the blocks it read them from."""

    times_s: np.ndarray
    """(n,) session seconds."""
    data: np.ndarray
    """(n, channels) float64, in the stream's unit."""
    first_s: np.ndarray
    """(blocks,) session time of each block's first sample (blocks holding samples only)."""
    last_s: np.ndarray
    """(blocks,) session time of each block's last sample."""
    flags: np.ndarray
    """(blocks,) each block's ``BlockFlag`` bits."""


@dataclass(frozen=True)
class _Piece:
    """Samples of some blocks with the (block id, index in block) of each, to sort them as ``samples()`` would."""

    times: np.ndarray
    data: np.ndarray
    block_id: np.ndarray
    index: np.ndarray
    first_s: np.ndarray
    last_s: np.ndarray
    flags: np.ndarray

    @classmethod
    def empty(cls, n_channels: int) -> _Piece:
        none = np.empty(0)
        return cls(none, np.empty((0, n_channels)), none.astype(np.int64), none.astype(np.int64), none, none,
                   none.astype(np.int64))

    @classmethod
    def of(cls, rows: list[tuple], n_channels: int) -> _Piece:
        """The samples of checked block rows (id, stream_id, t_first_s, rate_hz, n, n_channels, data, times, ...,
        flags at 12), in row order; a sampled block's times are ``t_first_s + i / rate_hz``."""
        if not rows:
            return cls.empty(n_channels)
        t_first = np.array([r[2] for r in rows], dtype=float)
        rate = np.array([np.inf if r[3] is None else r[3] for r in rows], dtype=float)
        counts = np.array([r[4] for r in rows], dtype=np.int64)
        offsets = np.cumsum(counts) - counts
        index = np.arange(int(counts.sum())) - np.repeat(offsets, counts)
        times = np.repeat(t_first, counts) + index / np.repeat(rate, counts)
        for r, start, count in zip(rows, offsets, counts):
            if r[7] is not None:
                times[start:start + count] = np.frombuffer(r[7], dtype=TIME_DTYPE)
        data = np.frombuffer(b"".join(r[6] for r in rows), dtype=SAMPLE_DTYPE).astype(float).reshape(-1, n_channels)
        full = counts > 0
        return cls(times, data, np.repeat(np.array([r[0] for r in rows], dtype=np.int64), counts), index,
                   times[offsets[full]], times[(offsets + counts - 1)[full]],
                   np.array([r[12] for r in rows], dtype=np.int64)[full])

    def join(self, later: _Piece) -> _Piece:
        """Both pieces' samples sorted by time, then block id, then index (a stable sort of the arrival order)."""
        times = np.concatenate([self.times, later.times])
        block_id = np.concatenate([self.block_id, later.block_id])
        index = np.concatenate([self.index, later.index])
        order = np.lexsort((index, block_id, times))
        return _Piece(times[order], np.concatenate([self.data, later.data])[order], block_id[order], index[order],
                      np.concatenate([self.first_s, later.first_s]), np.concatenate([self.last_s, later.last_s]),
                      np.concatenate([self.flags, later.flags]))

    def split_before(self, t_s: float) -> tuple[_Piece, _Piece]:
        """(the samples before ``t_s`` with every block listed, the rest with none); the piece must be sorted."""
        k = int(np.searchsorted(self.times, t_s, side="left"))
        rest = _Piece.empty(self.data.shape[1])
        return (_Piece(self.times[:k], self.data[:k], self.block_id[:k], self.index[:k], self.first_s, self.last_s,
                       self.flags),
                _Piece(self.times[k:], self.data[k:], self.block_id[k:], self.index[k:], rest.first_s, rest.last_s,
                       rest.flags))

    def chunk(self) -> SampleChunk:
        return SampleChunk(self.times, self.data, self.first_s, self.last_s, self.flags)


class SessionWriter:
    """Appends one session to a new file; cheap to call from the acquisition thread.

    ``add_*`` calls only append to an in-memory buffer; a background thread writes the buffer in
    one transaction every ``COMMIT_INTERVAL_S`` session seconds. ``flush()`` commits at once.
    Device addresses in the metadata, source names, labels and event data are replaced by salted
    aliases (``paths.device_alias``) before anything reaches the file.
    """

    def __init__(self, path: Path, meta: dict) -> None:
        self.path = Path(path)
        meta = dict(meta)
        validate_client_id(meta.get("client_id"))
        meta.setdefault("utc_anchor", time.time())
        meta.setdefault("speed", 1.0)
        speed = float(meta["speed"])
        if not speed > 0:
            raise StoreError(f"speed must be positive, got {speed}")
        meta["software_version"] = biofeedback.__version__
        meta["format_version"] = SCHEMA_VERSION
        meta["complete"] = False
        meta = scrub_addresses(meta)
        _create(self.path, {k: _json(v) for k, v in meta.items()})
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"{self.path.parent} does not support SQLite WAL mode (got {mode}); record to a local disk")
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
        self._pending: dict[str, list[tuple]] = {table: [] for table in _INSERTS}
        self._lock = threading.Lock()
        self._db_lock = threading.Lock()
        self._stream_ids: dict[tuple[str, str], int] = {}
        self._sources: dict[str, str] = {}
        self._error: str | None = None
        self.problems: list[str] = []
        """Every data problem the writer met (refused values, rows that could not be written), in words, in order;
        each is also written to the file as a ``recording-problem`` event."""
        self.refused = 0
        """Blocks, beats, gaps or events refused or left out because a value could not be stored."""
        self._last_t = 0.0
        self._closed = False
        self._stop = threading.Event()
        self._commit_wall_s = max(COMMIT_INTERVAL_S / speed, MIN_COMMIT_WALL_S)
        self._thread = threading.Thread(target=self._run, name=f"session-writer {self.path.name}", daemon=True)
        self._thread.start()

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def error(self) -> str | None:
        """The last write error (e.g. disk full), or None; data stay buffered and are retried."""
        return self._error

    def _problem(self, text: str, count: int = 1) -> None:
        """Count ``count`` refused items and report ``text`` (call with ``_lock`` held): in ``problems`` and, at the
        next commit, as an event in the file."""
        self.refused += count
        self.problems.append(text)
        self._pending["events"].append((EventKind.RECORDING_PROBLEM, float("nan"), 0.0, text, None))

    def add_block(self, block: Block, t_first_s: float | None) -> None:
        """Buffer a received block: raw packet, times, and decoded samples.

        Rate streams: sample ``i`` is at ``t_first_s + i / block.rate_hz``; if ``t_first_s`` is
        None, at ``block.times_s[0] + i / rate_hz`` where the block has aligned times, else the last
        sample is put at the host arrival time. Event streams (``rate_hz`` None, e.g. HR, RR): row
        ``i`` is stored at ``block.times_s[i]`` where the block has them, else at ``block.host_time_ns``.
        The samples blob ends with their checksum (``_samples_crc``), which every reader verifies.
        """
        data = np.asarray(block.data, dtype=float)
        if data.ndim == 1:
            data = data[:, None]
        n, n_channels = data.shape
        host_s = block.host_time_ns / NS_PER_S
        rate = float(block.rate_hz) if block.rate_hz else None
        aligned = getattr(block, "times_s", None)
        aligned = None if aligned is None or len(aligned) != n or n == 0 else np.asarray(aligned, dtype=TIME_DTYPE)
        times = None
        if rate is None and aligned is not None:
            times = aligned.tobytes()
            t0, t_last = float(aligned[0]), float(aligned[-1])
        elif rate is None:
            t0 = t_last = host_s
        else:
            if t_first_s is not None:
                t0 = float(t_first_s)
            elif aligned is not None:
                t0 = float(aligned[0])
            else:
                t0 = host_s - (n - 1) / rate
            t_last = t0 + (n - 1) / rate
        samples = data.astype(SAMPLE_DTYPE).tobytes()
        row = (
            block.host_time_ns, block.device_time_ns, block.seq, block.first_index, int(block.flags), t0, t_last,
            rate, n, n_channels, samples + CHECKSUM.pack(_samples_crc(t0, rate, samples, times)), times,
            bytes(block.raw),
        )
        bad = _int_problem(host_time_ns=block.host_time_ns, device_time_ns=block.device_time_ns, seq=block.seq,
                           first_index=block.first_index, flags=block.flags)
        with self._lock:
            self._check_open()
            if bad:
                self._problem(f"refused a {block.stream} block from {self._source(block.source)}: {bad} is out of "
                              "range (a garbage packet?); the rest of the recording is kept")
                return
            sid = self._stream_id(block, rate, n_channels)
            self._pending["blocks"].append((sid, *row))

    def add_beats(self, source: str, beat_times_s, rr_raw_ms, rr_corrected_ms=None, flags=None) -> None:
        """Buffer beats: session time of each beat, its raw RR (ms), corrected RR (ms, NaN if none) and flags."""
        t = np.asarray(beat_times_s, dtype=float).ravel()
        raw = np.asarray(rr_raw_ms, dtype=float).ravel()
        corrected = np.full(t.size, np.nan) if rr_corrected_ms is None else np.asarray(rr_corrected_ms, dtype=float).ravel()
        fl = np.zeros(t.size, dtype=np.int64) if flags is None else np.asarray(flags, dtype=np.int64).ravel()
        if not (t.size == raw.size == corrected.size == fl.size):
            raise StoreError(
                f"add_beats got {t.size} beat times, {raw.size} raw RR, {corrected.size} corrected RR and "
                f"{fl.size} flags; pass one of each per beat"
            )
        rows = [(float(a), float(b), None if np.isnan(c) else float(c), int(f)) for a, b, c, f in zip(t, raw, corrected, fl)]
        with self._lock:
            self._check_open()
            src = self._source(source)
            self._pending["beats"].extend((src, *r) for r in rows)

    def add_gap(self, gap: Gap) -> None:
        """Buffer a gap (an interval with no data for one stream)."""
        with self._lock:
            self._check_open()
            self._pending["gaps"].append((
                gap.stream, self._source(gap.source), float(gap.start_s), float(gap.end_s),
                scrub_addresses(gap.reason), gap.lost_samples,
            ))

    def add_event(self, kind: str, t_s: float, label: str, duration_s: float = 0.0, data: dict | None = None) -> None:
        """Buffer an event: ``kind`` is a ``vocab.EventKind``; times in session seconds."""
        row = (kind, float(t_s), float(duration_s), scrub_addresses(str(label)),
               None if data is None else _json(scrub_addresses(data)))
        with self._lock:
            self._check_open()
            self._pending["events"].append(row)

    def set_meta(self, key: str, value) -> None:
        """Set (or replace) one metadata entry; ``value`` must be JSON-serialisable."""
        if key == "client_id":
            validate_client_id(value)
        row = (key, _json(scrub_addresses(value)))
        with self._lock:
            self._check_open()
            self._pending["meta"].append(row)

    def flush(self) -> None:
        """Commit everything buffered now; raises StoreError if the file cannot be written."""
        self._commit()
        if self._error:
            raise StoreError(self._error)

    def close(self) -> None:
        """Commit the rest, mark the session complete and close the file. Safe to call twice."""
        if self._closed:
            return
        with self._lock:
            self._pending["meta"].append(("complete", "true"))
            self._closed = True
        self._stop.set()
        self._thread.join()
        self._commit()
        if self.problems and any(self._pending.values()):
            self._commit()  # the problems the last commit met
        if self._error:
            raise StoreError(self._error)
        with self._db_lock:
            self._conn.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"session {self.path.name} is already closed; start a new session to record more")

    def _source(self, source: str) -> str:
        if source not in self._sources:
            self._sources[source] = scrub_addresses(str(source))
        return self._sources[source]

    def _stream_id(self, block: Block, rate: float | None, n_channels: int) -> int:
        key = (block.stream, block.source)
        sid = self._stream_ids.get(key)
        if sid is None:
            sid = self._stream_ids[key] = len(self._stream_ids) + 1
            channels = list(block.channels) or [f"ch{i + 1}" for i in range(n_channels)]
            unit = StreamKind.UNITS.get(block.stream, "")
            self._pending["streams"].append((sid, block.stream, self._source(block.source), rate, _json(channels), unit))
        return sid

    def _run(self) -> None:
        while not self._stop.wait(self._commit_wall_s):
            try:
                self._commit()
            except Exception as exc:  # noqa: BLE001 - never die silently: say so, keep going, retry next time
                self._error = f"cannot write session file {self.path} ({type(exc).__name__}: {exc}); retrying"

    def _commit(self) -> None:
        """Write the buffer in one transaction. A disk error (``sqlite3.OperationalError``: full, locked, I/O) keeps it
        in memory for the next try; any other error (a value SQLite cannot take) is rolled back, and the buffer is
        written again row by row, leaving out only the rows that fail, each counted and reported. The writer thread
        never dies on a bad value."""
        with self._db_lock:
            with self._lock:
                batch, self._pending = self._pending, {table: [] for table in _INSERTS}
                self._stamp_problems(batch)
            if not any(batch.values()):
                return
            try:
                try:
                    self._write(batch)
                except sqlite3.OperationalError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a value SQLite refuses (e.g. OverflowError): isolate it
                    self._rollback()
                    self._write_row_by_row(batch, exc)
            except sqlite3.OperationalError as exc:  # the disk or the file, not a value: keep all, retry next time
                self._rollback()
                with self._lock:
                    for table, rows in batch.items():
                        self._pending[table][:0] = rows
                self._error = f"cannot write session file {self.path} ({exc}); data are kept in memory and retried — free disk space or check the drive"
            else:
                self._error = None

    def _write(self, batch: dict[str, list[tuple]]) -> None:
        self._conn.execute("BEGIN IMMEDIATE")
        for table, rows in batch.items():
            if rows:
                self._conn.executemany(_INSERTS[table], rows)
        self._conn.execute("COMMIT")

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def _write_row_by_row(self, batch: dict[str, list[tuple]], first: Exception) -> None:
        left_out: dict[str, int] = {}
        self._conn.execute("BEGIN IMMEDIATE")
        for table, rows in batch.items():
            for row in rows:
                try:
                    self._conn.execute(_INSERTS[table], row)
                except sqlite3.OperationalError:
                    raise  # the disk, not the value: the caller keeps the data for the next try
                except Exception:  # noqa: BLE001 - this row's value cannot be stored
                    left_out[table] = left_out.get(table, 0) + 1
        self._conn.execute("COMMIT")
        with self._lock:  # reported in the next commit
            for table, count in left_out.items():
                self._problem(f"left out {count} {table} row{'s' if count > 1 else ''} that could not be stored "
                              f"({type(first).__name__}: {first}); the rest of the recording is kept", count)

    def _stamp_problems(self, batch: dict[str, list[tuple]]) -> None:
        """Give buffered problem events the session time of the newest data written with them."""
        events = batch.get("events", [])
        if not any(e[0] == EventKind.RECORDING_PROBLEM and e[1] != e[1] for e in events):
            return
        t = max((r[6] for r in batch.get("blocks", []) if r[6] == r[6]), default=self._last_t)
        self._last_t = t
        events[:] = [(e[0], t, *e[2:]) if e[0] == EventKind.RECORDING_PROBLEM and e[1] != e[1] else e for e in events]


def _create(path: Path, meta_json: dict[str, str]) -> None:
    """Write a complete, empty session file at ``path`` atomically (build ``.part``, then rename); first tidy what
    killed sessions left in the folder (``tidy_leftovers``)."""
    private_dir(path.parent)
    tidy_leftovers(path.parent)
    if path.exists():
        raise StoreError(f"{path} already exists; a session file is never overwritten — start a new session")
    part = path.with_name(path.name + PART_SUFFIX)
    part.unlink(missing_ok=True)
    guard = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        _lock(guard)  # tells ``tidy_leftovers`` in another process that this .part is being made, not left over
        conn = sqlite3.connect(part, isolation_level=None)
        try:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.executescript(f"BEGIN; {_SCHEMA} COMMIT;")
            conn.executemany(_INSERTS["meta"], meta_json.items())
            conn.execute("PRAGMA journal_mode = WAL")
        finally:
            conn.close()
        _fsync(part)
        # An empty -wal before the rename: a reader never finds a WAL-mode session without its WAL
        # while the writer opens it, and a stale -wal of an earlier file can never be replayed into it.
        wal = path.with_name(path.name + "-wal")
        os.close(os.open(wal, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE))
        os.replace(part, path)
    finally:
        os.close(guard)
    if os.name == "posix":  # make the rename itself durable; Windows cannot open a folder
        _fsync(path.parent)


PART_SUFFIX = ".part"
PART_STALE_S = 60.0
"""Without file locks (Windows), a ``.part`` older than this is a leftover: creating one takes milliseconds."""


def _lock(fd: int, wait: bool = True) -> bool:
    """An advisory whole-file lock (``flock``, apart from SQLite's own ``fcntl`` locks) on ``fd``; False if another
    holds it. Without ``flock`` (Windows) always True."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def _part_left_over(part: Path) -> bool:
    """Whether ``part`` is a ``.part`` no one is making (its creator was killed)."""
    try:
        fd = os.open(part, os.O_RDONLY)
    except OSError:
        return False
    try:
        if not _lock(fd, wait=False):
            return False
        try:
            import fcntl  # noqa: F401
        except ImportError:
            return time.time() - os.fstat(fd).st_mtime > PART_STALE_S
        return True
    finally:
        os.close(fd)


def fold_back(path: Path) -> bool:
    """Fold a session file's ``-wal`` and ``-shm`` back into it when no one has it open (its writer was killed):
    SQLite copies the committed frames into the file and removes both; a torn tail is dropped, as any reader would.
    Returns True if the file is now on its own, False while a writer or reader has it open (it is left untouched)
    or if SQLite cannot open it (damaged: left as it is for the reader to describe)."""
    path = Path(path)
    wal, shm = (path.with_name(path.name + s) for s in ("-wal", "-shm"))
    if not (wal.exists() or shm.exists()):
        return True
    if not path.exists():
        return False
    try:
        if _header_problem(path):
            return False
        conn = sqlite3.connect(path, isolation_level=None, timeout=0)
    except (OSError, sqlite3.Error):
        return False
    try:
        # Exclusive locking: succeeds only if no other connection, in any process, has the file open.
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        conn.execute("SELECT count(*) FROM meta").fetchone()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shm.unlink(missing_ok=True)  # while the lock is held: no one can be using it
    except (OSError, sqlite3.Error):
        return False
    finally:
        conn.close()
    return not wal.exists()


def tidy_leftovers(folder: Path) -> list[Path]:
    """Tidy what killed sessions left in ``folder``: a ``.part`` (a session killed while its file was being made; it
    holds the screening answers, and no data) and its journal files are deleted, a ``-wal`` or ``-shm`` beside a
    session file no one has open is folded back into it (``fold_back``), and one whose session file is gone is
    deleted. Returns the paths tidied. Files in use are left alone."""
    folder = Path(folder)
    tidied: list[Path] = []
    if not folder.is_dir():
        return tidied
    for part in sorted(folder.glob(f"*{SESSION_SUFFIX}{PART_SUFFIX}")):
        if _part_left_over(part):
            for extra in ("-journal", "-wal", "-shm"):
                part.with_name(part.name + extra).unlink(missing_ok=True)
            part.unlink(missing_ok=True)
            tidied.append(part)
    for extra in sorted([*folder.glob(f"*{SESSION_SUFFIX}-wal"), *folder.glob(f"*{SESSION_SUFFIX}-shm")]):
        session = extra.with_name(extra.name[:-4])
        if session.exists():
            if fold_back(session):
                tidied.append(extra)
        elif not session.with_name(session.name + PART_SUFFIX).exists():
            extra.unlink(missing_ok=True)  # beside no session: a kill between making the -wal and the rename
            tidied.append(extra)
    return list(dict.fromkeys(tidied))


def session_state(path: Path, complete: bool) -> str:
    """``complete`` (closed properly), ``recording`` (its writer has it open now) or ``cut short`` (the writer
    stopped without closing it: killed, crashed, power lost). Folds a killed writer's ``-wal`` back (``fold_back``)."""
    if complete:
        return "complete"
    return "cut short" if fold_back(path) else "recording"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _header_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a session file, judged from its first 100 bytes and its size."""
    with open(path, "rb") as f:
        head = f.read(100)
    if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
        return "is not a biofeedback session file (it is not an SQLite database)"
    if int.from_bytes(head[68:72], "big") != APPLICATION_ID:
        return "is an SQLite database but not a biofeedback session file"
    version = int.from_bytes(head[60:64], "big")
    if version > SCHEMA_VERSION:
        return f"was written by a newer biofeedback (format {version}); upgrade biofeedback to read it"
    if not path.with_name(path.name + "-wal").exists():
        page_size = int.from_bytes(head[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        if head[24:28] == head[92:96]:
            expected = page_size * int.from_bytes(head[28:32], "big")
            actual = path.stat().st_size
            if actual < expected:
                return f"is truncated ({actual} of {expected} bytes)"
    return None


class SessionReader:
    """Read-only access to a session file, also one still being written or left by a killed writer.

    Every call reads the newest committed state; the file is never written to. Everything read is checked at this door
    (``biofeedback.validate``): a file that is not a session, or whose metadata is damaged (``utc_anchor``,
    ``client_id``, ``speed``, calibration, ...), raises one ``StoreError`` line naming the file and the field. A damaged
    row (a block whose sample count disagrees with its data, non-finite samples or times, an unreadable beat, gap,
    event or stream) is skipped and described in ``problems``; the undamaged rest stays readable.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise StoreError(f"no session file at {self.path}; list the recorded sessions with `biofeedback sessions`")
        if not self.path.is_file():
            raise StoreError(f"{self.path} is a folder, not a session file; pass the .bfsession file inside it")
        try:
            problem = _header_problem(self.path)
        except OSError as exc:
            raise StoreError(f"cannot read {self.path} ({exc.strerror}); check the file's permissions")
        if problem:
            raise StoreError(f"{self.path} {problem}; the file was left unchanged — check the path or restore it from a backup")
        wal = self.path.with_name(self.path.name + "-wal")
        mode = "mode=ro" if wal.exists() else "immutable=1"
        uri = f"{self.path.resolve().as_uri()}?{mode}"
        self._origin = session_file(self.path)
        self._damaged: dict[tuple[str, int], str] = {}
        with self._reading():
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._conn.execute("SELECT count(*) FROM meta").fetchone()

    def __enter__(self) -> SessionReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def _reading(self) -> AbstractContextManager[None]:
        return _damage_guard(self.path)

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._reading():
            return self._conn.execute(sql, args).fetchall()

    def _skip(self, table: str, row_id: int, what: str) -> None:
        """Note a damaged row that is left out (once per row, however often it is read)."""
        self._damaged.setdefault((table, row_id), what)

    @property
    def problems(self) -> list[str]:
        """One line per table with damaged rows that were skipped: how many, and the first one's damage."""
        by_table: dict[str, list[str]] = {}
        for (table, _), what in self._damaged.items():
            by_table.setdefault(table, []).append(what)
        return [f"{self.path.name}: skipped {len(found)} damaged {table} row{'s' if len(found) > 1 else ''} "
                f"(first: {found[0]}); the rest of the session is read" for table, found in by_table.items()]

    @property
    def meta(self) -> dict:
        """All metadata (client_id, utc_anchor, speed, protocol, software_version, devices, complete, ...), checked."""
        meta = {}
        for key, value in self._query("SELECT key, value FROM meta"):
            if not isinstance(key, str):
                raise self._origin.fail(f"meta key {key!r}", "is not text")
            try:
                meta[key] = _loads(value)
            except (TypeError, ValueError):
                raise self._origin.fail(f"meta.{key}", "is not valid JSON") from None
        return _checked_meta(meta, self._origin)

    @property
    def complete(self) -> bool:
        """True if the writer closed the file; False while recording or after a crash."""
        return bool(self.meta.get("complete"))

    def _streams(self) -> dict[int, tuple]:
        """Readable stream rows by id: (id, stream, source, rate_hz, channels tuple, unit); damaged ones noted."""
        good = {}
        for sid, stream, source, rate, channels, unit in self._query(
                "SELECT id, stream, source, rate_hz, channels, unit FROM streams ORDER BY id"):
            problem = _stream_problem(stream, source, rate, channels, unit)
            if problem:
                self._skip("stream", sid, f"stream {stream!r} from {source!r}: {problem}")
                continue
            good[sid] = (sid, stream, source, None if rate is None else float(rate), tuple(_loads(channels)), unit)
        return good

    def streams(self) -> list[tuple[str, str]]:
        """The readable (stream, source) pairs in the file, in the order they first arrived."""
        return [(row[1], row[2]) for row in self._streams().values()]

    def _stream(self, stream: str, source: str | None) -> tuple:
        rows = [r for r in self._streams().values() if r[1] == stream and (source is None or r[2] == source)]
        if not rows:
            damaged = [what for (table, _), what in self._damaged.items() if table == "stream"
                       and what.startswith(f"stream {stream!r}")]
            if damaged:
                raise self._origin.fail("streams", f"has a damaged row ({damaged[0]})")
            raise StoreError(f"{self.path.name} has no stream {stream!r}" + ("" if source is None else f" from {source!r}")
                             + f"; it has {self.streams()}")
        if len(rows) > 1:
            raise StoreError(f"stream {stream!r} in {self.path.name} has several sources {[r[2] for r in rows]}; pass source=")
        return rows[0]

    def channels(self, stream: str, source: str | None = None) -> tuple[str, ...]:
        """Channel names of a stream."""
        return self._stream(stream, source)[4]

    def rate_hz(self, stream: str, source: str | None = None) -> float | None:
        """Nominal sample rate of a stream (None for event streams such as HR)."""
        return self._stream(stream, source)[3]

    def unit(self, stream: str, source: str | None = None) -> str:
        """Unit of a stream's samples (e.g. "uV")."""
        return self._stream(stream, source)[5]

    @cached_property
    def _checksummed(self) -> bool:
        """Whether this file's blocks end their samples with a checksum (format ``CHECKSUM_SINCE_VERSION`` on)."""
        return self._query("PRAGMA user_version")[0][0] >= CHECKSUM_SINCE_VERSION

    def _blocks(self, rows: list[tuple], streams: dict[int, tuple]) -> list[tuple]:
        """The undamaged block rows (id, stream_id, t_first_s, rate_hz, n, n_channels, data, times, ...) with ``data``
        holding only the samples (checksum verified and removed), damaged ones noted: a sample count that disagrees
        with the data, a channel count that disagrees with the stream, times or samples that are not finite, samples
        that do not match their checksum."""
        good = []
        for row in rows:
            stream = streams.get(row[1])
            problem = _block_problem(row, None if stream is None else len(stream[4]), self._checksummed)
            if problem:
                where = "" if stream is None else f" of {stream[1]}/{stream[2]}"
                if not _time_problem(row[2], ""):
                    where += f" damaged at {row[2]:.1f} s"
                self._skip("block", row[0], f"block {row[0]}{where}: {problem}")
            else:
                good.append(row[:6] + (row[6][:row[4] * row[5] * SAMPLE_DTYPE.itemsize],) + row[7:])
        return good

    def samples(self, stream: str, source: str | None = None, start_s: float | None = None,
                end_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Session times (n,) and samples (n, channels), float64, in arrival order; optionally only [start_s, end_s).

        Damaged blocks are left out (see ``problems``)."""
        row = self._stream(stream, source)
        sid, n_ch = row[0], len(row[4])
        sql = _BLOCK_ROWS + " WHERE stream_id = ?"
        args: tuple = (sid,)
        if start_s is not None:
            sql, args = sql + " AND t_first_s >= ?", args + (start_s - LONGEST_BLOCK_S,)
        if end_s is not None:
            sql, args = sql + " AND t_first_s < ?", args + (end_s,)
        piece = _Piece.of(self._blocks(self._query(sql + " ORDER BY id", args), {sid: row}), n_ch)
        times, data = piece.times, piece.data
        keep = np.ones(times.size, dtype=bool)
        if start_s is not None:
            keep &= times >= start_s
        if end_s is not None:
            keep &= times < end_s
        return times[keep], data[keep]

    def chunks(self, stream: str, source: str | None = None, chunk_samples: int = CHUNK_SAMPLES,
               time_order: bool = False) -> Iterator[SampleChunk]:
        """A stream's undamaged samples in pieces of whole blocks holding about ``chunk_samples`` samples each, so that
        a long session is read in bounded memory: joined, the pieces' times and samples are ``samples()``'s (arrival
        order). ``time_order``: instead, the samples sorted by time, ties in arrival order (what a stable sort of
        ``samples()``'s times gives), for a sampled stream only: blocks are read by their first sample's time and a
        piece holds the samples before the next block's first sample (a sample at or after it waits for the next
        piece). Each piece also lists its blocks (``SampleChunk.first_s``, ``last_s``, ``flags``)."""
        row = self._stream(stream, source)
        sid, n_ch = row[0], len(row[4])
        if time_order and row[3] is None:
            raise StoreError(f"{stream} has no sample rate: its samples cannot be read in time order block by block")
        sql = _BLOCK_ROWS + " WHERE stream_id = ? ORDER BY " + ("t_first_s, id" if time_order else "id")
        with self._reading():
            cursor = self._conn.execute(sql, (sid,))
        held = _Piece.empty(n_ch)
        done = False
        while not done:
            raw: list[tuple] = []
            while not done and sum(r[4] for r in raw if _is_int(r[4])) < chunk_samples:
                with self._reading():
                    rows = cursor.fetchmany(FETCH_ROWS)
                raw += rows
                done = not rows
            piece = _Piece.of(self._blocks(raw, {sid: row}), n_ch)
            if time_order:
                held = held.join(piece)
                numeric = [r[2] for r in raw if _finite_problem(r[2], "") is None]
                piece, held = held.split_before(numeric[-1] if numeric and not done else np.inf)
            if piece.times.size or piece.first_s.size:
                yield piece.chunk()

    def beats(self, source: str | None = None) -> dict[str, np.ndarray]:
        """Beats by time: t_s, rr_raw_ms, rr_corrected_ms (NaN where none), flags, source; damaged beats left out."""
        rows = []
        for row in self._query("SELECT id, t_s, rr_raw_ms, rr_corrected_ms, flags, source FROM beats"
                               + ("" if source is None else " WHERE source = ?") + " ORDER BY id",
                               () if source is None else (source,)):
            problem = (_time_problem(row[1], "t_s") or _finite_problem(row[2], "rr_raw_ms")
                       or (row[3] is not None and _finite_problem(row[3], "rr_corrected_ms"))
                       or (not _is_int(row[4]) and f"flags {shown(row[4])} is not a whole number")
                       or (not isinstance(row[5], str) and "source is not text"))
            if problem:
                self._skip("beat", row[0], f"beat {row[0]}: {problem}")
            else:
                rows.append(row[1:])
        rows.sort(key=lambda r: r[0])
        return {
            "t_s": np.array([r[0] for r in rows], dtype=float),
            "rr_raw_ms": np.array([r[1] for r in rows], dtype=float),
            "rr_corrected_ms": np.array([np.nan if r[2] is None else r[2] for r in rows], dtype=float),
            "flags": np.array([r[3] for r in rows], dtype=np.int64),
            "source": np.array([r[4] for r in rows], dtype=object),
        }

    def gaps(self) -> list[Gap]:
        """Recorded gaps, by start time; damaged ones left out."""
        gaps = []
        for row_id, stream, source, start, end, reason, lost in self._query(
                "SELECT id, stream, source, start_s, end_s, reason, lost_samples FROM gaps ORDER BY id"):
            problem = (_time_problem(start, "start_s") or _time_problem(end, "end_s")
                       or (end < start and f"end_s {end:g} is before start_s {start:g}")
                       or (not all(isinstance(v, str) for v in (stream, source, reason)) and "a name is not text")
                       or (lost is not None and not (_is_int(lost) and lost >= 0)
                           and f"lost_samples {shown(lost)} is not a count"))
            if problem:
                self._skip("gap", row_id, f"gap {row_id}: {problem}")
            else:
                gaps.append(Gap(stream, source, float(start), float(end), reason, lost))
        return sorted(gaps, key=lambda g: g.start_s)

    def events(self, kind: str | None = None) -> list[dict]:
        """Events by time, as dicts with kind, t_s, duration_s, label, data; damaged ones left out."""
        out = []
        for row_id, k, t, d, label, data in self._query(
                "SELECT id, kind, t_s, duration_s, label, data FROM events"
                + ("" if kind is None else " WHERE kind = ?") + " ORDER BY id", () if kind is None else (kind,)):
            problem = (_time_problem(t, "t_s") or _time_problem(d, "duration_s", lo=0.0)
                       or (not (isinstance(k, str) and isinstance(label, str)) and "kind or label is not text"))
            if not problem and data is not None:
                try:
                    data = _loads(data)
                except (TypeError, ValueError):
                    problem = "its data is not valid JSON"
                else:
                    problem = None if isinstance(data, dict) else "its data is not a JSON object"
            if problem:
                self._skip("event", row_id, f"event {row_id}: {problem}")
            else:
                out.append({"kind": k, "t_s": float(t), "duration_s": float(d), "label": label, "data": data})
        return sorted(out, key=lambda e: e["t_s"])

    def phases(self) -> list[dict]:
        """Phase events; a phase still running when the recording stopped (a crash) ends at the last data.

        Sessions write a ``phase-start`` event when a phase begins and the ``phase`` event (with its
        duration) when it ends, so a killed session still shows the phase it was in, marked
        ``data["unfinished"]``.
        """
        done = self.events(EventKind.PHASE)
        closed = {(e["label"], round(e["t_s"], 6)) for e in done}
        end = self.duration_s()
        for e in self.events(EventKind.PHASE_START):
            if (e["label"], round(e["t_s"], 6)) not in closed:
                data = dict(e["data"] if isinstance(e["data"], dict) else {}, unfinished=True)
                done.append({**e, "kind": EventKind.PHASE, "duration_s": max(0.0, end - e["t_s"]), "data": data})
        return sorted(done, key=lambda e: e["t_s"])

    def raw_blocks(self, stream: str | None = None, source: str | None = None) -> Iterator[dict]:
        """Every undamaged block as received, in arrival order (lazily): times, seq, index, flags, raw bytes, samples,
        times_s."""
        streams = self._streams()
        sql = ("SELECT b.id, b.stream_id, b.t_first_s, b.rate_hz, b.n, b.n_channels, b.data, b.times, b.host_time_ns, "
               "b.device_time_ns, b.seq, b.first_index, b.flags, s.stream, s.source, b.raw "
               "FROM blocks b JOIN streams s ON s.id = b.stream_id")
        wanted = {"s.stream": stream, "s.source": source}
        args = tuple(v for v in wanted.values() if v is not None)
        if args:
            sql += " WHERE " + " AND ".join(f"{k} = ?" for k, v in wanted.items() if v is not None)
        with self._reading():
            cursor = self._conn.execute(sql + " ORDER BY b.id", args)
        while True:
            with self._reading():
                row = cursor.fetchone()
            if row is None:
                return
            checked = self._blocks([row], streams) if row[1] in streams else None
            if not checked:
                continue
            (_, _, t0, rate, n, n_ch, data, times, host_ns, device_ns, seq, first, flags, name, src, raw) = checked[0]
            yield {
                "stream": name, "source": src, "host_time_ns": host_ns, "device_time_ns": device_ns, "seq": seq,
                "first_index": first, "flags": flags, "t_first_s": t0, "rate_hz": rate, "n": n,
                "data": np.frombuffer(data, dtype=SAMPLE_DTYPE).astype(float).reshape(n, n_ch),
                "times_s": (np.frombuffer(times, dtype=TIME_DTYPE).copy() if times is not None
                            else t0 + np.arange(n) / (rate or np.inf)),
                "raw": bytes(raw) if isinstance(raw, (bytes, memoryview)) else b"",
            }

    def check(self) -> list[str]:
        """Read every row once and return ``problems``: what is damaged and left out (empty for an intact file)."""
        for _ in self.raw_blocks():
            pass
        self.beats(), self.gaps(), self.events()
        return self.problems

    def duration_s(self) -> float:
        """Session time of the end of the last undamaged data or event (0 for an empty session)."""
        lo, hi = SESSION_TIME_RANGE_S
        ends = [0.0]
        for sid in self._streams():
            last = self._query(
                "SELECT t_last_s, rate_hz FROM blocks WHERE stream_id = ? AND typeof(t_last_s) IN ('real', 'integer') "
                "AND t_last_s BETWEEN ? AND ? ORDER BY t_first_s DESC LIMIT 1", (sid, lo, hi))
            if last:
                t_last, rate = last[0]
                ends.append(t_last + (1 / rate if _finite_problem(rate, "") is None and rate > 0 else 0.0))
        beats = self.beats()["t_s"]
        ends += [float(beats.max())] if beats.size else []
        ends += [e["t_s"] + e["duration_s"] for e in self.events()]
        ends += [g.end_s for g in self.gaps()]
        return float(max(ends))


def _loads(text: Any) -> Any:
    """JSON as we write it: no NaN or infinity."""
    if not isinstance(text, str):
        raise TypeError("not text")
    return json.loads(text, parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite_problem(value: Any, name: str) -> str | None:
    """Why ``value`` is not a finite number (None if it is)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        return f"{name} {shown(value)} is not a finite number"
    return None


def _time_problem(value: Any, name: str, lo: float | None = None) -> str | None:
    """Why ``value`` is not a session time in ``SESSION_TIME_RANGE_S`` (None if it is)."""
    problem = _finite_problem(value, name)
    if problem:
        return problem
    low, high = SESSION_TIME_RANGE_S
    low = low if lo is None else lo
    if not low <= value <= high:
        return f"{name} {value:g} s is outside {low:g} to {high:g} s"
    return None


def _stream_problem(stream: Any, source: Any, rate: Any, channels: Any, unit: Any) -> str | None:
    """Why a stream row cannot be read (None if it can)."""
    if not all(isinstance(v, str) for v in (stream, source, unit)):
        return "its name, source or unit is not text"
    if rate is not None and (_finite_problem(rate, "rate_hz") or not 0 < rate <= MAX_RATE_HZ):
        return f"rate_hz {shown(rate)} is not a sample rate above 0 and at most {MAX_RATE_HZ:g} Hz"
    try:
        names = _loads(channels)
    except (TypeError, ValueError):
        return "its channel list is not valid JSON"
    if not isinstance(names, list) or not names or not all(isinstance(c, str) for c in names):
        return f"channels {shown(names)} is not a list of channel names"
    return None


def _block_problem(row: tuple, n_channels: int | None, checksummed: bool) -> str | None:
    """Why a block row (id, stream_id, t_first_s, rate_hz, n, n_channels, data, times[, host_time_ns, device_time_ns,
    seq, first_index, flags, ...]) is damaged (None if not); ``checksummed``: its data end with the samples' checksum
    (``_samples_crc``)."""
    _, _, t0, rate, n, n_ch, data, times = row[:8]
    for name, value in zip(("host_time_ns", "device_time_ns", "seq", "first_index", "flags"), row[8:13]):
        if not (_is_int(value) or (value is None and name not in ("host_time_ns", "flags"))):
            return f"{name} {shown(value)} is not a whole number"
    if n_channels is None:
        return "its stream is missing or damaged"
    problem = _time_problem(t0, "t_first_s")
    if problem:
        return problem
    if rate is not None and (_finite_problem(rate, "rate_hz") or not 0 < rate <= MAX_RATE_HZ):
        return f"rate_hz {shown(rate)} is not a sample rate"
    if not (_is_int(n) and n >= 0):
        return f"sample count {shown(n)} is not a count"
    if n_ch != n_channels:
        return f"it has {shown(n_ch)} channels where its stream has {n_channels}"
    size = n * n_ch * SAMPLE_DTYPE.itemsize
    if not isinstance(data, bytes) or len(data) != size + (CHECKSUM.size if checksummed else 0):
        return (f"it holds {len(data) if isinstance(data, bytes) else 0} bytes of samples where {n} samples x {n_ch} "
                f"channels need {size}" + (f" and a {CHECKSUM.size}-byte checksum" if checksummed else ""))
    samples = data[:size]
    if times is not None:
        if not isinstance(times, bytes) or len(times) != n * TIME_DTYPE.itemsize:
            return f"its times do not match its {n} samples"
        t = np.frombuffer(times, dtype=TIME_DTYPE)
        if t.size and not (np.isfinite(t).all() and SESSION_TIME_RANGE_S[0] <= t.min()
                           and t.max() <= SESSION_TIME_RANGE_S[1]):
            return "its sample times are not finite session times"
    elif rate is not None and _time_problem(t0 + max(n - 1, 0) / rate, "last sample time"):
        return "its last sample time is outside the session"
    if checksummed and CHECKSUM.unpack_from(data, size)[0] != _samples_crc(t0, rate, samples, times):
        return "its samples do not match their checksum"
    if not np.isfinite(np.frombuffer(samples, dtype=SAMPLE_DTYPE)).all():
        return "it holds samples that are not finite numbers (NaN or infinity)"
    return None


def _checked_meta(meta: dict, origin: Origin) -> dict:
    """``meta`` if every field the commands rely on holds what the writer writes, else ``origin``'s error."""
    for key in ("client_id", "utc_anchor"):
        if key not in meta:
            raise origin.fail(f"meta.{key}", "is missing")
    try:
        validate_client_id(meta["client_id"])
    except StoreError:
        raise origin.fail("meta.client_id",
                          f"{shown(meta['client_id'])} is not a pseudonymous client code") from None
    check_number(meta["utc_anchor"], "meta.utc_anchor", origin, lo=UTC_RANGE_S[0], hi=UTC_RANGE_S[1],
                 unit="UTC seconds (2000 to 2100)")
    check_number(meta.get("speed", 1.0), "meta.speed", origin, lo=SPEED_RANGE[0], hi=SPEED_RANGE[1])
    check_type(meta.get("complete", False), bool, "meta.complete", origin)
    version = check_number(meta.get("format_version", SCHEMA_VERSION), "meta.format_version", origin,
                           lo=1, integer=True)
    if version > SCHEMA_VERSION:
        raise StoreError(f"{origin.file} was written by a newer biofeedback (format {version}); upgrade biofeedback "
                         "to read it")
    for key, types in (("protocol", str), ("protocol_file", str), ("protocol_toml", dict), ("screening", dict),
                       ("devices", list), ("calibration", dict)):
        if meta.get(key) is not None:
            check_type(meta[key], types, f"meta.{key}", origin)
    cal = meta.get("calibration")
    if cal is not None:
        for key in ("rest_rms_uv", "rvc_rms_uv", "mvc_rms_uv"):
            if cal.get(key) is not None:
                check_numbers(cal[key], f"meta.calibration.{key}", origin, lo=EMG_RANGE_UV[0],
                              hi=EMG_RANGE_UV[1], lo_open=key != "rest_rms_uv", unit="µV")
        if cal.get("file") is not None:
            check_type(cal["file"], str, "meta.calibration.file", origin)
    return meta


@contextmanager
def _damage_guard(path: Path) -> Iterator[None]:
    """Turn SQLite's errors on a damaged file into one StoreError line."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(
            f"{path} is damaged or not a complete session file ({exc}); the file was left unchanged — "
            "export what is readable, or restore it from a backup"
        ) from None
