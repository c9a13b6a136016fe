"""A value the session file cannot take costs that value only: the writer refuses or leaves it out, says so, and
keeps everything else (issue 13: a garbage packet's sample index once killed the writer thread and the session)."""

from __future__ import annotations

import numpy as np

from biofeedback.store import SessionReader, SessionWriter
from biofeedback.stream import Block, Gap, StreamKind


def emg_block(i: int, first_index: int | None = None) -> Block:
    n = 20
    return Block(StreamKind.EMG, "open-emg", host_time_ns=1_000_000_000 + i * 20_000_000,
                 data=np.full((n, 2), float(i)), rate_hz=1000.0, first_index=i * n if first_index is None else first_index,
                 seq=i, channels=("left_trapezius", "right_trapezius"), raw=bytes([i % 256]) * 8,
                 times_s=1.0 + i * 0.02 + np.arange(n) / 1000.0)


def test_a_block_out_of_sqlite_range_is_refused_and_every_other_block_is_stored(tmp_path):
    path = tmp_path / "s.bfsession"
    writer = SessionWriter(path, {"client_id": "C001", "speed": 1.0})
    for i in range(50):
        writer.add_block(emg_block(i, first_index=2 ** 70 if i == 10 else None), None)
        if i == 25:
            writer.flush()
    writer.close()
    assert writer.refused == 1 and len(writer.problems) == 1
    assert "first_index 1180591620717411303424 is out of range" in writer.problems[0]
    with SessionReader(path) as r:
        blocks = list(r.raw_blocks(StreamKind.EMG))
        problems = r.events("recording-problem")
        assert r.complete
    assert [b["seq"] for b in blocks] == [i for i in range(50) if i != 10]
    assert [p["label"] for p in problems] == writer.problems
    assert 1.0 <= problems[0]["t_s"] <= 2.0  # at the time of the data around it


def test_a_row_sqlite_refuses_at_commit_is_left_out_and_the_rest_is_committed(tmp_path):
    """A value that passes the door but not SQLite (an integer too large for it, in a gap's lost-sample count) rolls
    back the transaction; the writer writes the rows again one by one and leaves out only that one."""
    path = tmp_path / "s.bfsession"
    writer = SessionWriter(path, {"client_id": "C001", "speed": 1.0})
    for i in range(10):
        writer.add_block(emg_block(i), None)
    writer.add_gap(Gap(StreamKind.EMG, "open-emg", 1.1, 1.2, "dropped", lost_samples=2 ** 64))
    writer.add_gap(Gap(StreamKind.EMG, "open-emg", 1.3, 1.4, "dropped", lost_samples=100))
    writer.add_event("note", 1.05, "still here")
    writer.flush()
    for i in range(10, 20):
        writer.add_block(emg_block(i), None)
    writer.close()
    assert writer.refused == 1 and "left out 1 gaps row" in writer.problems[0] and "OverflowError" in writer.problems[0]
    assert writer.error is None
    with SessionReader(path) as r:
        assert len(list(r.raw_blocks(StreamKind.EMG))) == 20
        assert [(g.start_s, g.lost_samples) for g in r.gaps()] == [(1.3, 100)]
        assert [e["label"] for e in r.events("note")] == ["still here"]
        assert [e["label"] for e in r.events("recording-problem")] == writer.problems
        assert r.complete


def test_the_end_of_session_summary_says_what_the_recording_lost(tmp_path):
    """Issue 13: a session that lost data says so in its summary (and its report, whose notes are ``problems``)."""
    from biofeedback.analysis.summary import session_outcome

    path = tmp_path / "s.bfsession"
    writer = SessionWriter(path, {"client_id": "C001", "speed": 1.0})
    for i in range(20):
        writer.add_block(emg_block(i, first_index=2 ** 70 if i == 3 else None), None)
    writer.close()
    outcome = session_outcome(path)
    assert outcome.losses == (f"while recording: {writer.problems[0]}",)
    assert f"lost: while recording: {writer.problems[0]}" in outcome.text()
