"""The store's privacy rules at the file level: names read from a session file never steer a write out of the output
folder, and what a killed session leaves behind is tidied at the next start and listed as cut short."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from biofeedback.cli import main
from biofeedback.store import FORMATS, SessionReader, SessionWriter, StoreError, export_session, list_sessions, \
    new_session_path
from biofeedback.store.paths import safe_name, shift_dates
from biofeedback.stream import NS_PER_S, Block

HOSTILE = "../../../escaped"


def _hostile_session(path: Path) -> Path:
    """A session whose stream and source names and labels try to climb out of any folder they are put in."""
    with SessionWriter(path, {"client_id": "C001", "utc_anchor": 1.7e9}) as w:
        for k in range(50):
            w.add_block(Block("emg", HOSTILE, (k + 1) * 20 * NS_PER_S // 1000, np.zeros((20, 1)), 1000.0, 20 * k, k,
                              channels=("left",)), k * 0.02)
            w.add_block(Block(HOSTILE, "/etc/passwd", (k + 1) * NS_PER_S // 10, np.ones((1, 1)), None, None, k), None)
        w.add_block(Block("emg", "..", 2 * NS_PER_S, np.zeros((20, 1)), 1000.0, 20 * 60, 60, channels=("left",)), 1.2)
        w.add_event("marker", 0.5, HOSTILE, data={"file": HOSTILE})
    return path


@pytest.mark.parametrize("fmt", FORMATS)
def test_names_from_a_file_never_leave_the_output_folder(tmp_path, fmt):
    path = _hostile_session(tmp_path / "a" / "b" / "s.bfsession")
    out = tmp_path / "a" / "b" / "out"
    written = export_session(path, fmt, out)
    assert written and all(out.resolve() in f.resolve().parents for f in written)
    everything = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert everything - set(written) == {path}  # nothing beside the session but the export
    assert not any(p.name == "escaped" or "escaped" in p.parent.name for p in everything)


def test_a_client_id_changed_in_the_file_to_a_path_is_refused_and_nothing_written(tmp_path):
    path = _hostile_session(tmp_path / "s.bfsession")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'client_id'", ('"../../x"',))
    conn.close()
    for fmt in FORMATS:
        with pytest.raises(StoreError, match="client_id"):
            export_session(path, fmt, tmp_path / "out")
    assert {p.name for p in tmp_path.iterdir()} == {"s.bfsession"}


def test_safe_name_and_shift_dates():
    assert safe_name("../../x") == "______x" and safe_name("") == "_" and safe_name("polar-h10") == "polar-h10"
    assert len(safe_name("a" * 100)) == 32
    shifted = shift_dates({"file": "20231114T221320Z.json", "utc": "2023-11-14T22:13:20Z", "t": 1_700_000_000.25,
                           "n": 12345678, "not a date": "20231399"}, 10, numbers=True)
    assert shifted == {"file": "20231104T221320Z.json", "utc": "2023-11-04T22:13:20Z", "t": 1_699_136_000.25,
                       "n": 12345678, "not a date": "20231399"}
    assert shift_dates("2023-11-14", 0) == "2023-11-14"


KILLED_WRITER = textwrap.dedent("""
    import os, sys
    import numpy as np
    from biofeedback.store import SessionWriter
    from biofeedback.stream import NS_PER_S, Block
    w = SessionWriter(sys.argv[1], {"client_id": "C001", "utc_anchor": 1.7e9, "screening": {"answers": {"x": True}}})
    for k in range(100):
        w.add_block(Block("emg", "emg-1", (k + 1) * 20 * NS_PER_S // 1000, np.full((20, 1), k), 1000.0, 20 * k, k,
                          channels=("left",)), k * 0.02)
    w.flush()
    os._exit(0)  # killed: never closed
""")


def test_killed_session_leftovers_are_tidied_at_the_next_start_and_it_is_listed_as_cut_short(home, capsys):
    killed = new_session_path("C001", 1.7e9)
    run = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(killed)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    folder = killed.parent
    wal = killed.with_name(killed.name + "-wal")
    assert wal.exists() and wal.stat().st_size > 0
    # a session killed while its file was being made: a .part (screening answers) and an orphan -wal
    part = folder / "20231115T000000Z.bfsession.part"
    part.write_bytes(b"screening answers")
    orphan = folder / "20231115T000000Z.bfsession-wal"
    orphan.write_bytes(b"")
    with SessionReader(killed) as r:
        before = r.samples("emg")
        assert not r.complete

    writer = SessionWriter(new_session_path("C001", 1.8e9), {"client_id": "C001", "utc_anchor": 1.8e9})  # next start
    try:
        assert not part.exists() and not orphan.exists()
        assert not wal.exists() and not killed.with_name(killed.name + "-shm").exists()  # folded back
        with SessionReader(killed) as r:
            after = r.samples("emg")
        assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and after[0].size == 2000
        states = {s["path"]: s["state"] for s in list_sessions("C001")}
        assert states == {killed: "cut short", writer.path: "recording"}
        assert writer.path.with_name(writer.path.name + "-wal").exists()  # a live writer's files are left alone
    finally:
        writer.close()
    states = {s["path"]: s["state"] for s in list_sessions("C001")}
    assert states == {killed: "cut short", writer.path: "complete"}
    assert sorted(p.name for p in folder.iterdir()) == sorted([killed.name, writer.path.name])
    assert main(["sessions", "--client", "C001"]) == 0
    out = capsys.readouterr().out
    assert "cut short" in out and "not closed properly" in out and "complete" in out
