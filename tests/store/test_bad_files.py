"""Damaged, foreign and missing files give one clear StoreError line and are never changed."""

from __future__ import annotations

import hashlib
import sqlite3

import numpy as np
import pytest

from biofeedback.store import SessionReader, StoreError, list_sessions
from biofeedback.store.export import export_session


def _fingerprint(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _random_bytes(path, recorded):
    path.write_bytes(np.random.default_rng(1).bytes(50_000))


def _empty(path, recorded):
    path.write_bytes(b"")


def _cut_in_half(path, recorded):
    data = recorded.path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _cut_inside_header(path, recorded):
    path.write_bytes(recorded.path.read_bytes()[:60])


def _foreign_sqlite(path, recorded):
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('hello')")
    conn.close()


def _scrambled_pages(path, recorded):
    data = bytearray(recorded.path.read_bytes())
    data[8192:] = np.random.default_rng(2).bytes(len(data) - 8192)
    path.write_bytes(bytes(data))


BAD = [_random_bytes, _empty, _cut_in_half, _cut_inside_header, _foreign_sqlite, _scrambled_pages]


def _read_everything(path):
    with SessionReader(path) as r:
        r.meta
        for stream, source in r.streams():
            r.samples(stream, source)
        list(r.raw_blocks())
        r.beats(), r.gaps(), r.events(), r.duration_s()


@pytest.mark.parametrize("make_bad", BAD, ids=[f.__name__.strip("_") for f in BAD])
def test_bad_file_gives_one_line_and_stays_unchanged(make_bad, recorded, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    path = folder / "broken.bfsession"
    make_bad(path, recorded)
    before = _fingerprint(folder)
    with pytest.raises(StoreError) as err:
        _read_everything(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert "left unchanged" in message or "not" in message
    for fmt in ("edf", "csv", "bids", "hdf5"):
        with pytest.raises(StoreError):
            export_session(path, fmt, tmp_path / "out")
    assert _fingerprint(folder) == before  # same bytes, and no -wal/-shm left beside it


def test_missing_session_and_folder(tmp_path):
    with pytest.raises(StoreError, match="no session file at .*biofeedback sessions"):
        SessionReader(tmp_path / "nope.bfsession")
    with pytest.raises(StoreError, match="no session file"):
        export_session(tmp_path / "nope.bfsession", "edf", tmp_path / "out")
    with pytest.raises(StoreError, match="is a folder"):
        SessionReader(tmp_path)
    assert not (tmp_path / "out").exists()


def test_unknown_format(recorded, tmp_path):
    before = recorded.path.read_bytes()
    with pytest.raises(StoreError, match="unknown export format 'xls'; choose one of edf, csv, bids, hdf5"):
        export_session(recorded.path, "xls", tmp_path / "out")
    assert recorded.path.read_bytes() == before and not (tmp_path / "out").exists()


def test_unknown_stream_says_what_exists(recorded):
    with SessionReader(recorded.path) as r, pytest.raises(StoreError, match="no stream 'eda'.*'emg'"):
        r.samples("eda")


def test_listing_survives_a_bad_file(recorded):
    bad = recorded.path.with_name("20990101T000000Z.bfsession")
    bad.write_bytes(recorded.path.read_bytes()[:5000])
    sessions = list_sessions("C001")
    assert [s["error"] is None for s in sessions] == [False, True]  # unreadable ones first: no start time
    assert "truncated" in sessions[0]["error"] and sessions[0]["path"] == bad


def test_event_data_that_is_not_an_object_is_skipped_and_a_meta_key_that_is_not_text_named(recorded, tmp_path):
    """Found by tools/fuzz_inputs.py: an event whose data is a JSON number crashed report, replay and trend; a meta
    key stored as a blob crashed export."""
    import shutil

    from biofeedback.cli import main

    numbers = tmp_path / "numbers.bfsession"
    shutil.copy(recorded.path, numbers)
    with sqlite3.connect(numbers) as conn:
        conn.execute("UPDATE events SET data = '3.5' WHERE id = (SELECT MIN(id) FROM events)")
    with SessionReader(numbers) as r:
        events = r.events()
        assert all(e["data"] is None or isinstance(e["data"], dict) for e in events)
        assert any("is not a JSON object" in p for p in r.problems)
    assert main(["report", str(numbers), "--json", "--out", str(tmp_path / "r")]) == 0
    blob = tmp_path / "blob.bfsession"
    shutil.copy(recorded.path, blob)
    with sqlite3.connect(blob) as conn:
        conn.execute("INSERT INTO meta VALUES (?, ?)", (b"\x00key", '"x"'))
    with pytest.raises(StoreError, match="meta key b'\\\\x00key' is not text"):
        with SessionReader(blob) as r:
            r.meta
