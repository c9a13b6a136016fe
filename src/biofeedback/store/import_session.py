"""Import: a recording made elsewhere (``store.importers``) written as a session file every command opens.

Nothing is written on failure. The file is read and checked whole first (``importers.read_recording``); only then
is the session written, through the ordinary ``SessionWriter``, to ``<session path>.part`` (which this process holds
locked, so ``tidy_leftovers`` in another process leaves it alone, and deletes it after a kill), read back and
checked, and renamed to its ``.bfsession`` name only when complete. Any error on the way deletes the ``.part``.

What the session holds: the EMG and ECG of the file as blocks of ``BLOCK_S`` (µV, each block's raw bytes the
ADC counts read, little-endian int32, where the file held counts), RR as beats and as ``rr`` blocks (the form a
strap's driver hands on, so a replay feeds the live chain the same beats), heart rate as ``hr`` blocks, a gap
wherever samples are missing, phases (``phase-start`` and ``phase`` events, as a session writes them) and the
file's markers. Blocks of all streams are written in time order, so ``replay`` plays them together. The meta says
``mode = "import"`` and, under ``import``, the file's name (never its folder), format and what the reader found.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from biofeedback.store.errors import StoreError
from biofeedback.store.importers import BREAK_PERIODS, PhaseSpan, Recording, Signal, read_phases, read_recording
from biofeedback.store.paths import new_session_path, validate_client_id
from biofeedback.store.session_file import PART_SUFFIX, SessionReader, SessionWriter, fold_back
from biofeedback.stream import NS_PER_S, Block, Gap, StreamKind
from biofeedback.vocab import EventKind

BLOCK_S = 0.1
"""Seconds of samples per stored block (a replay hands them on at this pace)."""
RR_BLOCK_S = 1.0
"""Beats of one second go into one ``rr`` block, as a strap notifies about once a second."""


def import_recording(path: Path | str, client_id: str, fmt: str = "auto", phases: Path | str | None = None,
                     adc: str | None = None, start_utc: float | None = None) -> tuple[Path, Recording]:
    """Import ``path`` as a new session of ``client_id``; returns the session file and what was read.

    ``phases``: a phases file (``importers.read_phases``) that replaces the file's own phases. ``adc``: whose
    transfer function converts ADC counts (``plux``, ``bitalino``) when the file does not say. ``start_utc``: the
    recording's start (UTC seconds), where the file's own is missing or wrong."""
    validate_client_id(client_id)
    path = Path(path)
    rec = read_recording(path, fmt, adc)
    if phases is not None:
        rec.phases = read_phases(Path(phases))
        rec.files.append(Path(phases).name)
    anchor = start_utc if start_utc is not None else rec.utc_anchor
    if anchor is None:
        anchor = path.stat().st_mtime
        rec.details["start_from"] = "file modification time"
    final = new_session_path(client_id, anchor)
    part = final.with_name(final.name + PART_SUFFIX)
    guard = None
    try:
        writer = SessionWriter(part, _meta(rec, client_id, anchor))
        guard = _hold(part)
        try:
            _write(writer, rec)
        finally:
            writer.close()
        if writer.problems:
            raise StoreError(f"{path}: {writer.problems[0]}; nothing was kept — check the file")
        _check(part, rec)
        if not fold_back(part):
            raise StoreError(f"cannot finish {part}: SQLite left its journal beside it; try the import again")
        if final.exists():
            raise StoreError(f"{final} appeared while importing; import again (a new name is chosen)")
        os.replace(part, final)
    except BaseException:
        for extra in ("", "-wal", "-shm", "-journal"):
            part.with_name(part.name + extra).unlink(missing_ok=True)
        raise
    finally:
        if guard is not None:
            os.close(guard)
    return final, rec


def _hold(part: Path) -> int | None:
    """Lock ``part`` as ``SessionWriter`` does while creating it, so another process does not take it for a
    killed session's leftover; the lock goes with the descriptor."""
    fd = os.open(part, os.O_RDONLY)
    try:
        import fcntl
    except ImportError:  # Windows: tidy_leftovers judges a .part by its age
        return fd
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _meta(rec: Recording, client_id: str, anchor: float) -> dict:
    return {
        "client_id": client_id, "utc_anchor": float(anchor), "speed": 1.0, "mode": "import", "virtual": False,
        "import": {"file": rec.files[0], "files": rec.files, "format": rec.format, "imported_utc": time.time(),
                   **rec.details},
        "devices": [{"source": rec.source, "profile": f"import-{rec.format}", "device_info": {
            k: str(v) for k, v in rec.details.items() if k in ("device", "firmware") and v is not None},
            "virtual": False, "timing": {}}],
    }


def _write(writer: SessionWriter, rec: Recording) -> None:
    source = rec.source
    blocks: list[tuple[Block, float | None]] = []
    gaps = list(rec.gaps)
    for s in rec.signals:
        for start, stop in _stretches(s):
            if start:
                gaps.append(Gap(s.stream, source, float(s.t_s[start - 1] + 1 / s.rate_hz), float(s.t_s[start]),
                                "no data in the imported file", int(round((s.t_s[start] - s.t_s[start - 1]) * s.rate_hz)) - 1))
            step = max(1, int(round(BLOCK_S * s.rate_hz)))
            for a in range(start, stop, step):
                b = min(a + step, stop)
                raw = b"" if s.counts is None else s.counts[a:b].astype("<i4").tobytes()
                blocks.append((Block(s.stream, source, int(round(float(s.t_s[b - 1]) * NS_PER_S)), s.data[a:b],
                                     rate_hz=s.rate_hz, first_index=a, channels=s.channels, raw=raw),
                               float(s.t_s[a])))
    if rec.rr_ms.size:
        for t, rr in _groups(rec.beat_t_s, rec.rr_ms):
            blocks.append((Block(StreamKind.RR, source, int(round(float(t[-1]) * NS_PER_S)), rr[:, None],
                                 channels=("rr",), times_s=t), None))
        writer.add_beats(source, rec.beat_t_s, rec.rr_ms)
    if rec.hr_bpm.size:
        for t, hr in zip(rec.hr_t_s, rec.hr_bpm):
            if np.isfinite(hr):
                blocks.append((Block(StreamKind.HR, source, int(round(float(t) * NS_PER_S)), np.array([[hr]]),
                                     channels=("hr",), times_s=np.array([t])), None))
    for block, t_first in sorted(blocks, key=lambda item: item[0].host_time_ns):
        writer.add_block(block, t_first)
    for gap in gaps:
        writer.add_gap(gap)
    for p in rec.phases:
        data = {"kind": p.kind, "planned_s": p.end_s - p.start_s}
        writer.add_event(EventKind.PHASE_START, p.start_s, p.name, data=data)
        writer.add_event(EventKind.PHASE, p.start_s, p.name, p.end_s - p.start_s, data=data)
    for kind, t, duration, label in rec.events:
        writer.add_event(kind, t, label, duration)


def _stretches(s: Signal) -> list[tuple[int, int]]:
    """(start, stop) index ranges of ``s`` without lost samples between neighbours."""
    breaks = np.flatnonzero(np.diff(s.t_s) > BREAK_PERIODS / s.rate_hz) + 1
    edges = [0, *breaks.tolist(), s.t_s.size]
    return list(zip(edges[:-1], edges[1:]))


def _groups(t_s: np.ndarray, values: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Beats cut into ``RR_BLOCK_S`` groups by time."""
    key = np.floor(t_s / RR_BLOCK_S)
    cuts = np.flatnonzero(np.diff(key)) + 1
    return list(zip(np.split(t_s, cuts), np.split(values, cuts)))


def _check(part: Path, rec: Recording) -> None:
    """Read the written file back: every sample and beat must be there."""
    with SessionReader(part) as reader:
        problems = reader.check()
        if problems:
            raise StoreError(f"the imported session did not read back whole ({problems[0]}); nothing was kept")
        for s in rec.signals:
            _, data = reader.samples(s.stream, rec.source)
            if data.shape != s.data.shape:
                raise StoreError(f"the imported session holds {data.shape[0]} of {s.data.shape[0]} {s.stream} samples; "
                                 "nothing was kept")
        if reader.beats()["t_s"].size != rec.rr_ms.size:
            raise StoreError("the imported session lost beats on the way; nothing was kept")


__all__ = ["BLOCK_S", "PhaseSpan", "import_recording"]
