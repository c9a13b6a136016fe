"""Writer and reader of the session file: round trip, live reads, privacy, listing."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

import biofeedback
from biofeedback.store import (
    COMMIT_INTERVAL_S, SessionReader, SessionWriter, StoreError, data_home, device_alias, list_clients, list_sessions,
    new_session_path, validate_client_id,
)
from biofeedback.store.paths import session_dir
from biofeedback.stream import NS_PER_S, Block, Gap

from .conftest import DEVICE_MAC, UTC_ANCHOR, write_session

FLOAT32_RTOL = 2 ** -23


def test_everything_written_reads_back(recorded):
    alias = device_alias(DEVICE_MAC)
    with SessionReader(recorded.path) as r:
        assert r.streams() == [("emg", "emg-1"), ("ecg", alias), ("hr", alias)]
        t, x = r.samples("emg")
        np.testing.assert_array_equal(t, recorded.emg_t)
        np.testing.assert_allclose(x, recorded.emg, rtol=FLOAT32_RTOL)
        assert r.channels("emg") == ("left", "right") and r.rate_hz("emg") == 1000.0 and r.unit("emg") == "uV"
        t, x = r.samples("ecg", alias)
        np.testing.assert_array_equal(t, recorded.ecg_t)
        np.testing.assert_allclose(x, recorded.ecg, rtol=FLOAT32_RTOL)
        t, x = r.samples("hr")
        np.testing.assert_array_equal(t, recorded.hr_t)
        np.testing.assert_array_equal(x[:, 0], recorded.hr)
        assert r.rate_hz("hr") is None and r.unit("hr") == "bpm"
        beats = r.beats(alias)
        for key in ("t_s", "rr_raw_ms", "rr_corrected_ms", "flags"):
            np.testing.assert_array_equal(beats[key], recorded.beats[key])
        assert r.gaps() == recorded.gaps
        events = r.events()
        expected = [dict(e, label=e["label"].replace(DEVICE_MAC, alias)) for e in recorded.events]
        assert events == expected
        assert [e["label"] for e in r.events("phase")] == ["baseline", "treatment", "post"]
        meta = r.meta
        assert meta["client_id"] == "C001" and meta["utc_anchor"] == UTC_ANCHOR and meta["speed"] == 1.0
        assert meta["software_version"] == biofeedback.__version__ and meta["complete"] is True and r.complete
        assert meta["calibration"] == {"mvc_uv": [410.5, 388.0]}
        assert [d["firmware"] for d in meta["devices"]] == ["3.1.1", "0.3"]
        assert meta["devices"][0]["address"] == alias
        blocks = list(r.raw_blocks("emg"))
        assert [b["seq"] for b in blocks[:3]] == [0, 1, 2] and blocks[0]["first_index"] == 0
        assert blocks[1]["host_time_ns"] == round(0.34 * NS_PER_S) and blocks[1]["device_time_ns"] == 20_000_000
        np.testing.assert_allclose(blocks[0]["data"], recorded.emg[:20], rtol=FLOAT32_RTOL)
        assert blocks[0]["raw"] == recorded.emg[:20].tobytes()[:40]
        assert [b["raw"] for b in r.raw_blocks("hr")] == [bytes([0x10, int(v)]) for v in recorded.hr]
        assert r.duration_s() == pytest.approx(6.3)  # EMG runs from 0.3 s for 6 s
        t, x = r.samples("emg", start_s=1.0, end_s=1.5)
        assert t[0] == pytest.approx(1.0) and t[-1] == pytest.approx(1.499) and len(x) == 500


def test_device_addresses_never_reach_the_file(recorded):
    content = b"".join(p.read_bytes() for p in recorded.path.parent.iterdir())
    for mac in (DEVICE_MAC, "d4:36:39:aa:bb:cc"):
        for form in (mac, mac.upper(), mac.lower(), mac.replace(":", ""), mac.replace(":", "").lower()):
            assert form.encode() not in content
    assert device_alias(DEVICE_MAC) == device_alias(DEVICE_MAC.lower())


def test_files_and_folders_are_private(recorded, home):
    assert stat.S_IMODE(os.stat(recorded.path).st_mode) == 0o600
    folder = recorded.path.parent
    while folder != home.parent:
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder
        folder = folder.parent
    for sidecar in [*recorded.path.parent.iterdir(), home / "device-salt"]:
        assert stat.S_IMODE(os.stat(sidecar).st_mode) == 0o600, sidecar


def test_data_home_follows_env_and_is_private(tmp_path, monkeypatch):
    """A home we create is 0700 (its missing parents too); one the user made keeps its mode, and the clients folder
    we create inside it is 0700."""
    monkeypatch.setenv("BIOFEEDBACK_HOME", str(tmp_path / "new" / "home"))
    assert data_home() == tmp_path / "new" / "home"
    for folder in (tmp_path / "new", tmp_path / "new" / "home"):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    monkeypatch.setenv("BIOFEEDBACK_HOME", str(tmp_path / "elsewhere"))
    os.makedirs(tmp_path / "elsewhere", mode=0o755)
    os.chmod(tmp_path / "elsewhere", 0o755)
    assert data_home() == tmp_path / "elsewhere"
    assert stat.S_IMODE(os.stat(tmp_path / "elsewhere").st_mode) == 0o755  # not ours to change
    folder = session_dir("C001")
    assert stat.S_IMODE(os.stat(folder).st_mode) == stat.S_IMODE(os.stat(folder.parent).st_mode) == 0o700


def _emg_block(k: int) -> Block:
    return Block("emg", "emg-1", (k + 1) * 20_000_000, np.full((20, 2), float(k)), 1000.0, 20 * k, k)


def test_readable_while_being_written_from_another_process(home):
    path = new_session_path("C002", time.time())
    script = (
        "import sys; from biofeedback.store import SessionReader\n"
        "r = SessionReader(sys.argv[1]); t, x = r.samples('emg'); print(len(t), x[-1, 0], r.complete)\n"
    )
    with SessionWriter(path, {"client_id": "C002"}) as w:
        for second in range(3):
            for k in range(50 * second, 50 * (second + 1)):
                w.add_block(_emg_block(k), k * 0.02)
            w.flush()
            out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True)
            assert out.stdout.split() == [str(1000 * (second + 1)), str(50.0 * (second + 1) - 1), "False"]
            with SessionReader(path) as second_connection:
                assert second_connection.samples("emg")[0].size == 1000 * (second + 1)
    with SessionReader(path) as r:
        assert r.complete and r.samples("emg")[0].size == 3000


def test_commits_by_itself_within_the_commit_interval(home):
    path = new_session_path("C003", time.time())
    with SessionWriter(path, {"client_id": "C003"}) as w, SessionReader(path) as r:
        for k in range(25):
            w.add_block(_emg_block(k), k * 0.02)
        w.add_event("marker", 0.1, "m")
        deadline = time.monotonic() + COMMIT_INTERVAL_S + 0.5
        while not r.events("marker") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert r.samples("emg")[0].size == 500 and r.events("marker")[0]["label"] == "m"


def test_add_block_is_cheap(home):
    with SessionWriter(new_session_path("C004", time.time()), {"client_id": "C004"}) as w:
        blocks = [_emg_block(k) for k in range(2000)]
        t0 = time.perf_counter()
        for k, b in enumerate(blocks):
            w.add_block(b, k * 0.02)
        per_block_s = (time.perf_counter() - t0) / len(blocks)
    assert per_block_s < 200e-6


def test_writer_never_overwrites_and_rejects_bad_input(recorded):
    before = recorded.path.read_bytes()
    with pytest.raises(StoreError, match="never overwritten"):
        SessionWriter(recorded.path, {"client_id": "C001"})
    assert recorded.path.read_bytes() == before
    with pytest.raises(StoreError, match="pseudonymous"):
        SessionWriter(recorded.path.with_name("x.bfsession"), {"client_id": "Jane Doe"})
    with SessionWriter(recorded.path.with_name("y.bfsession"), {"client_id": "C001"}) as w:
        with pytest.raises(StoreError, match="one of each per beat"):
            w.add_beats("h10", [1.0, 2.0], [800.0])
        with pytest.raises(StoreError, match="JSON"):
            w.set_meta("calibration", {"mvc": object()})
    with pytest.raises(StoreError, match="closed"):
        w.add_event("marker", 1.0, "late")


@pytest.mark.parametrize("good", ["C001", "client-7", "p_12", "X"])
def test_pseudonymous_client_ids_accepted(good):
    assert validate_client_id(good) == good


@pytest.mark.parametrize("bad", ["Jane Doe", "jane.doe@example.org", "../C001", "C001/..", "", " C001", "a" * 33, "Zoë"])
def test_real_names_emails_and_paths_rejected(bad):
    with pytest.raises(StoreError, match="pseudonymous") as err:
        validate_client_id(bad)
    assert "\n" not in str(err.value)


def test_session_paths_and_listing(home):
    first = new_session_path("C001", UTC_ANCHOR)
    assert first == home / "clients" / "C001" / "sessions" / "20231114T221320Z.bfsession"
    write_session(first, seconds=5.0)
    second = new_session_path("C001", UTC_ANCHOR)
    assert second.name == "20231114T221320Z-2.bfsession"
    write_session(new_session_path("client-7", UTC_ANCHOR + 86400), 4.5, client_id="client-7", utc_anchor=UTC_ANCHOR + 86400)
    broken = new_session_path("client-7", UTC_ANCHOR + 2 * 86400)
    broken.write_bytes(b"not a session")
    assert list_clients() == ["C001", "client-7"]
    sessions = list_sessions()
    assert [(s["client_id"], s["started"]) for s in sessions] == [
        ("client-7", None), ("C001", "2023-11-14T22:13:20Z"), ("client-7", "2023-11-15T22:13:20Z")]
    assert "not an SQLite database" in sessions[0]["error"]
    only = list_sessions("C001")
    assert len(only) == 1 and only[0]["path"] == first and only[0]["duration_s"] == pytest.approx(5.3)
    assert only[0]["protocol"] == "trapezius-release" and only[0]["complete"] is True and only[0]["error"] is None
    assert list_sessions("nobody") == [] and list_clients(home / "empty") == []


def test_gap_and_event_times_survive_exactly(home):
    path = new_session_path("C005", time.time())
    with SessionWriter(path, {"client_id": "C005"}) as w:
        w.add_gap(Gap("ecg", "h10", 0.1 + 0.2, 7.25, "disconnect", None))
    with SessionReader(path) as r:
        assert r.gaps() == [Gap("ecg", "h10", 0.1 + 0.2, 7.25, "disconnect", None)]
        assert r.streams() == [] and r.duration_s() == 7.25


def test_event_rows_keep_their_aligned_times(home):
    """RR/HR blocks carrying ``times_s`` (beat times after alignment) keep one time per row."""
    path = new_session_path("C006", time.time())
    beat_times = np.array([10.125, 10.93, 11.71])
    with SessionWriter(path, {"client_id": "C006"}) as w:
        w.add_block(Block("rr", "h10", 12 * NS_PER_S, np.array([[805.0], [805.0], [780.0]]), channels=("rr",),
                          times_s=beat_times), None)
        w.add_block(Block("ecg", "h10", 2 * NS_PER_S, np.zeros((73, 1)), 130.0, times_s=1.0 + np.arange(73) / 130.0),
                    None)
    with SessionReader(path) as r:
        t, x = r.samples("rr")
        np.testing.assert_array_equal(t, beat_times)
        np.testing.assert_array_equal(x[:, 0], [805.0, 805.0, 780.0])
        assert r.samples("ecg")[0][0] == 1.0 and r.samples("ecg")[0][-1] == pytest.approx(1.0 + 72 / 130.0)
        assert [b["times_s"].tolist() for b in r.raw_blocks("rr")] == [beat_times.tolist()]
        assert r.duration_s() == pytest.approx(11.71)


def test_paths_with_spaces_and_uri_characters(home, tmp_path):
    path = tmp_path / "Therapist files #2 ?x%20" / "s 1.bfsession"
    with SessionWriter(path, {"client_id": "C007"}) as w:
        w.add_block(_emg_block(0), 0.0)
    with SessionReader(path) as r:
        assert r.samples("emg")[1].shape == (20, 2)
