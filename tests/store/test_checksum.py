"""Block checksums (issue 13, item 4): bytes flipped inside a block's samples on disk are found by every reader of the
file and named as that block's damage, while every other block stays readable; files of format 1 (no checksum) still
read."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from biofeedback.cli import main
from biofeedback.store import SessionReader, session_file
from tests.store.conftest import write_session

FLIPPED_BYTES = 16
DAMAGE = "its samples do not match their checksum"


def _block(path: Path, stream: str, offset: int) -> tuple[int, float, bytes]:
    """Id, first sample time and stored samples blob of the ``offset``-th block of ``stream``."""
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT b.id, b.t_first_s, b.data FROM blocks b JOIN streams s ON s.id = b.stream_id "
                            "WHERE s.stream = ? ORDER BY b.id LIMIT 1 OFFSET ?", (stream, offset)).fetchone()


def _flip_inside(path: Path, blob: bytes, start: int) -> None:
    """Invert ``FLIPPED_BYTES`` bytes of the file from ``start`` bytes into ``blob``, found by searching the file."""
    data = bytearray(path.read_bytes())
    assert data.count(blob) == 1, "the blob must be on disk exactly once"
    at = data.find(blob) + start
    data[at:at + FLIPPED_BYTES] = bytes(b ^ 0xFF for b in data[at:at + FLIPPED_BYTES])
    path.write_bytes(data)


@pytest.fixture
def flipped(tmp_path):
    """A closed session with 16 bytes flipped inside the samples of its 11th EMG block: (good copy, damaged, id, t)."""
    good = tmp_path / "good" / "20231114T221320Z.bfsession"
    good.parent.mkdir()
    write_session(good)
    bad = tmp_path / "bad" / good.name
    bad.parent.mkdir()
    bad.write_bytes(good.read_bytes())
    block_id, t_first_s, blob = _block(bad, "emg", 10)
    _flip_inside(bad, blob, start=60)
    return good, bad, block_id, t_first_s


def test_sqlite_sees_nothing_but_the_reader_names_the_block(flipped):
    good, bad, block_id, t_first_s = flipped
    with sqlite3.connect(bad) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"  # the silent corruption of the issue
    with SessionReader(good) as g, SessionReader(bad) as r:
        t_good, x_good = g.samples("emg")
        t_bad, x_bad = r.samples("emg")
        assert t_bad.size == t_good.size - 20
        keep = ~((t_good >= t_first_s - 1e-9) & (t_good < t_first_s + 0.02 - 1e-9))
        np.testing.assert_array_equal(t_bad, t_good[keep])
        np.testing.assert_array_equal(x_bad, x_good[keep])  # every other sample exactly as stored
        assert [b["seq"] for b in r.raw_blocks("emg")] == [b["seq"] for b in g.raw_blocks("emg")
                                                            if b["t_first_s"] != t_first_s]
        for stream in ("ecg", "hr"):
            np.testing.assert_array_equal(r.samples(stream)[1], g.samples(stream)[1])
        assert not g.problems
        assert r.problems == [f"{bad.name}: skipped 1 damaged block row (first: block {block_id} of emg/emg-1 damaged "
                              f"at {t_first_s:.1f} s: {DAMAGE}); the rest of the session is read"]


def test_raw_blocks_alone_finds_it(flipped):
    _, bad, block_id, _ = flipped
    with SessionReader(bad) as r:
        assert len(list(r.raw_blocks())) > 0
        assert len(r.problems) == 1 and f"block {block_id} of emg/emg-1" in r.problems[0] and DAMAGE in r.problems[0]


def _commands(path: Path, out: Path) -> dict[str, list[str]]:
    return {
        "report": ["report", str(path), "--json", "--out", str(out / "report")],
        **{f"export-{fmt}": ["export", str(path), "--format", fmt, "--out", str(out / fmt)]
           for fmt in ("csv", "edf", "hdf5", "bids")},
        "replay": ["replay", str(path), "--headless", "--speed", "1000"],
    }


@pytest.mark.parametrize("command", list(_commands(Path("x"), Path("y"))))
def test_every_reading_command_says_which_block_is_damaged_and_reads_the_rest(command, flipped, tmp_path, capsys,
                                                                              monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    _, bad, block_id, t_first_s = flipped
    assert main(_commands(bad, tmp_path / "out")[command]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    said = f"block {block_id} of emg/emg-1 damaged at {t_first_s:.1f} s: {DAMAGE}"
    assert said in out + err
    if command == "export-csv":
        emg = next((tmp_path / "out" / "csv").glob("*_emg.csv")).read_text().splitlines()
        with SessionReader(bad) as r:
            assert len(emg) - 1 == r.samples("emg")[0].size  # a header line, then every undamaged sample
    if command == "report":
        report = json.loads(next((tmp_path / "out" / "report").glob("*.json")).read_text())
        assert said in json.dumps(report)


def test_a_moved_block_is_damage_too(tmp_path):
    """The checksum covers the first sample's time and the rate that place the samples, not only their values."""
    path = tmp_path / "s.bfsession"
    write_session(path)
    block_id = _block(path, "emg", 3)[0]
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE blocks SET t_first_s = t_first_s + 0.5 WHERE id = ?", (block_id,))
    with SessionReader(path) as r:
        r.samples("emg")
        assert len(r.problems) == 1 and f"block {block_id} of emg/emg-1" in r.problems[0] and DAMAGE in r.problems[0]


def test_format_1_files_without_checksums_still_read(tmp_path):
    path = tmp_path / "s.bfsession"
    write_session(path)
    with SessionReader(path) as r:
        whole = {s: r.samples(s) for s, _ in r.streams()}
    with sqlite3.connect(path) as conn:
        conn.execute(f"UPDATE blocks SET data = substr(data, 1, length(data) - {session_file.CHECKSUM.size})")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'format_version'")
        conn.execute("PRAGMA user_version = 1")
    with SessionReader(path) as r:
        assert r.meta["format_version"] == 1
        for stream, (t, x) in whole.items():
            got_t, got_x = r.samples(stream)
            np.testing.assert_array_equal(got_t, t)
            np.testing.assert_array_equal(got_x, x)
        assert r.check() == []


def test_new_files_are_format_2_with_a_checksum_per_block(tmp_path):
    path = tmp_path / "s.bfsession"
    write_session(path)
    with SessionReader(path) as r:
        assert r.meta["format_version"] == session_file.SCHEMA_VERSION >= session_file.CHECKSUM_SINCE_VERSION
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == session_file.SCHEMA_VERSION
        rows = conn.execute("SELECT n * n_channels * 4, length(data) FROM blocks").fetchall()
    assert rows and all(stored == samples + session_file.CHECKSUM.size for samples, stored in rows)
