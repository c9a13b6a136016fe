"""Replay of a recorded session as a live source: same blocks and gaps as recorded, in the live order and pace."""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from biofeedback.dsp import EmgProcessor, LiveHrv
from biofeedback.dsp.emg import SESSION_CARDIAC
from biofeedback.session.acquisition import acquire
from biofeedback.session.live import MIN_LIVE_RMSSD_BEATS, LiveProcessor
from biofeedback.cli import main
from biofeedback.sensors.replay import MIN_SLEEP_WALL_S, recorded_timeline
from biofeedback.sensors.profiles import load_profiles
from biofeedback.sensors.virtual import Faults, Scenario
from biofeedback.session.recorder import Recorder
from biofeedback.store import SessionReader, SessionWriter
from biofeedback.stream import NS_PER_S, Block, Gap, StreamKind

EXAMPLE = Path(__file__).resolve().parents[1] / "recordings" / "example-demo.bfsession"
RECORD_S, RECORD_SPEED = 16.0, 10.0
DISCONNECT_AT_S = 10.0
"""Device seconds: late enough that a slow connect on a loaded machine is done before the link drops."""
REPLAY_SPEED = 20.0


@dataclass
class Recording:
    path: Path
    live: list[Block | Gap]
    """Everything the hub handed on while recording, in order."""


async def _record(path: Path) -> list[Block | Gap]:
    """Record virtual sensors with a disconnect, lost and garbage packets; returns what the hub handed on.

    Before closing the file, copies it with its WAL to ``crashed.bfsession`` beside it: a session
    as a killed writer leaves it.
    """
    faults = Faults(disconnect_at_s=[DISCONNECT_AT_S], offline_s=1.5, drop_rate=0.05, corrupt_rate=0.01)
    scenario = Scenario(devices=("open-emg", "polar-h10"), faults={"open-emg": faults, "polar-h10": faults})
    live: list[Block | Gap] = []
    async with acquire(load_profiles(), virtual=True, speed=RECORD_SPEED, scenario=scenario) as acq:
        writer = SessionWriter(path, {"client_id": "C001", "utc_anchor": acq.clock.utc_anchor, "speed": RECORD_SPEED})
        recorder = Recorder(writer, acq.hub, LiveProcessor(acq.hub))
        detach = acq.hub.listen(live.append, live.append)
        disconnects = {("open-emg", "disconnect"), ("polar-h10", "disconnect")}
        async with asyncio.timeout(30.0):  # wall seconds
            while acq.clock.now_s() < RECORD_S or not {(g.source, g.reason) for g in acq.hub.gaps} >= disconnects:
                await asyncio.sleep(0.05)
        detach()
        writer.flush()
        crashed = path.with_name("crashed.bfsession")
        shutil.copy(path, crashed)
        shutil.copy(path.with_name(path.name + "-wal"), crashed.with_name(crashed.name + "-wal"))
        recorder.close()
    return live


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Recording:
    path = tmp_path_factory.mktemp("replay") / "faults.bfsession"
    return Recording(path, asyncio.run(_record(path)))


async def _replay(path: Path, speed: float) -> tuple[list[tuple[int, Block | Gap]], dict[str, str]]:
    """Replay ``path`` into a hub to its end; what arrived with its session arrival time (ns), and the final states."""
    got: list[tuple[int, Block | Gap]] = []
    async with acquire({}, replay=path, speed=speed) as acq:
        acq.hub.listen(lambda b: got.append((acq.clock.now_ns(), b)), lambda g: got.append((acq.clock.now_ns(), g)))
        await asyncio.wait(acq.tasks)
        assert not acq.failed()
    return got, {s.name: s.status.state for s in acq.sources}


def _by_source(items: list[Block | Gap]) -> dict[str, list[Block | Gap]]:
    out: dict[str, list[Block | Gap]] = {}
    for item in items:
        out.setdefault(item.source, []).append(item)
    return out


def _same_block(a: Block, b: Block, exact: bool) -> None:
    """Fields equal; ``exact=False`` allows the file's float32 samples (24-bit mantissa) against live float64."""
    for name in ("stream", "source", "host_time_ns", "rate_hz", "first_index", "seq", "device_time_ns", "flags",
                 "channels", "raw"):
        assert getattr(a, name) == getattr(b, name), name
    if exact:
        assert np.array_equal(a.data, b.data) and np.array_equal(a.times_s, b.times_s)
    else:
        np.testing.assert_allclose(a.data, b.data, rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(a.times_s, b.times_s, rtol=0, atol=1e-9)


def test_replay_hands_on_every_block_and_gap_as_recorded_in_the_live_order(recording):
    got, states = asyncio.run(_replay(recording.path, REPLAY_SPEED * 5))
    replayed = [item for _, item in got]
    assert states == {"open-emg": "ended", "polar-h10": "ended"}
    with SessionReader(recording.path) as reader:
        file_gaps = reader.gaps()
        channels = {key: reader.channels(*key) for key in reader.streams()}
        for source, items in _by_source(replayed).items():
            stored = list(reader.raw_blocks(source=source))
            blocks = [b for b in items if isinstance(b, Block)]
            assert len(blocks) == len(stored)
            for b, row in zip(blocks, stored):
                assert b.channels == channels[(row["stream"], source)]
                _same_block(b, Block(row["stream"], source, row["host_time_ns"], row["data"], row["rate_hz"],
                                     row["first_index"], row["seq"], row["device_time_ns"], row["flags"], b.channels,
                                     row["raw"], row["times_s"]), exact=True)
    assert sorted((g for g in replayed if isinstance(g, Gap)), key=lambda g: (g.start_s, g.stream)) == \
        sorted(file_gaps, key=lambda g: (g.start_s, g.stream))
    # The recording had a disconnect on both sensors and lost packets: gaps of every kind came through.
    assert {(g.source, g.reason) for g in file_gaps} >= {("open-emg", "disconnect"), ("polar-h10", "disconnect"),
                                                         ("open-emg", "dropped-packets")}
    # Per source, blocks and gaps arrive in exactly the order the live sources handed them on.
    live, again = _by_source(recording.live), _by_source(replayed)
    assert live.keys() == again.keys()
    for source in live:
        assert [type(x).__name__ for x in again[source]] == [type(x).__name__ for x in live[source]]
        for a, b in zip(again[source], live[source]):
            if isinstance(a, Gap):
                assert a == b
            else:
                _same_block(a, b, exact=False)


def test_beats_come_through_as_the_live_hrs_path_emits_them(recording):
    """RR blocks: RR in ms, one row per beat, beat times in times_s, next to the HR block of the same notification."""
    got, _ = asyncio.run(_replay(recording.path, REPLAY_SPEED * 5))
    rr = [b for _, b in got if isinstance(b, Block) and b.stream == StreamKind.RR]
    hr = {b.host_time_ns: b for _, b in got if isinstance(b, Block) and b.stream == StreamKind.HR}
    assert rr and all(b.rate_hz is None and b.channels == ("rr",) and b.raw == b"" for b in rr)
    assert all(b.data.shape == (len(b.times_s), 1) and b.host_time_ns in hr for b in rr)
    with SessionReader(recording.path) as reader:
        beats = reader.beats()
    t = np.concatenate([b.times_s for b in rr])
    # The recorder derived its beats table from these very blocks (RR as float32 in the blocks).
    np.testing.assert_allclose(t, beats["t_s"], atol=1e-9)
    np.testing.assert_allclose(np.concatenate([b.data[:, 0] for b in rr]), beats["rr_raw_ms"], atol=1e-3)


def test_replay_follows_the_recorded_times_scaled_by_speed(recording):
    """Each item is handed on at its recorded arrival time on the replay clock, never early.

    Early by at most ``MIN_SLEEP_WALL_S`` (a shorter wait is not slept). Late by the event loop's
    scheduling delay: the median under 20 ms of wall time; the bound on the worst is loose (a
    loaded test machine) but still far below the 0.8 s the whole replay lasts.
    """
    got, _ = asyncio.run(_replay(recording.path, REPLAY_SPEED))
    arrived: dict[str, list[int]] = {}
    for t, item in got:
        arrived.setdefault(item.source, []).append(t)
    with SessionReader(recording.path) as reader:
        # Per source, the n-th arrival is the n-th item of the recorded timeline (the order test above).
        pairs = np.array([(t, due) for source, times in arrived.items()
                          for t, (due, _) in zip(times, recorded_timeline(reader, source), strict=True)])
    late_wall_s = (pairs[:, 0] - pairs[:, 1]) / NS_PER_S / REPLAY_SPEED
    assert late_wall_s.min() >= -MIN_SLEEP_WALL_S - 1e-4
    assert np.median(late_wall_s) < 0.02
    assert late_wall_s.max() < 0.4
    span_s = pairs.max(axis=0) - pairs.min(axis=0)
    assert span_s[0] == pytest.approx(span_s[1], rel=0.05)


def test_monitor_replay_prints_the_numbers_of_the_recording(capsys):
    """Each line's numbers recomputed from the blocks the replay had handed on by then (its packet counts): EMG as the
    band-passed 250 ms RMS of the session's ``dsp.EmgProcessor`` (``SESSION_CARDIAC``) over the samples since the
    last EMG gap, RMSSD as ``dsp.LiveHrv``'s over the beats since the last RR gap once ``MIN_LIVE_RMSSD_BEATS`` are
    decided (none before), HR as the strap's own newest value."""
    before = (EXAMPLE.read_bytes(), EXAMPLE.stat().st_mtime_ns)
    assert main(["monitor", "--replay", str(EXAMPLE), "--speed", "100", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (EXAMPLE.read_bytes(), EXAMPLE.stat().st_mtime_ns) == before
    with SessionReader(EXAMPLE) as reader:
        duration = reader.duration_s()
        beats = reader.beats()
        gaps = reader.gaps()
        timelines = {s: [b for _, b in recorded_timeline(reader, s) if isinstance(b, Block)] for s in ("open-emg", "polar-h10")}
    assert lines[-1]["t_s"] >= duration - 0.5 and len(lines) == pytest.approx(duration, abs=2)
    assert {name: s["state"] for name, s in lines[-1]["sensors"].items()} == {"open-emg": "ended", "polar-h10": "ended"}
    assert lines[-1]["sensors"]["open-emg"]["packets"] == len(timelines["open-emg"])

    def since_last_gap(blocks: list[Block], stream: str) -> list[Block]:
        ends = [g.end_s for g in gaps if g.stream == stream and g.end_s <= blocks[-1].times_s[-1]]
        return [b for b in blocks if not ends or b.times_s[0] >= max(ends) - 1e-9]

    hr_vs_beats = []
    for n in lines[5:]:
        emg = since_last_gap(timelines["open-emg"][: n["sensors"]["open-emg"]["packets"]], StreamKind.EMG)
        chain = EmgProcessor(emg[-1].rate_hz, channels=2, cardiac=SESSION_CARDIAC)  # no heart in the virtual EMG
        rms = chain.process(np.concatenate([b.data for b in emg])).rms_uv[-1]
        assert list(n["emg_rms_uv"].values()) == pytest.approx(rms.tolist(), abs=0.006)
        heart = timelines["polar-h10"][: n["sensors"]["polar-h10"]["packets"]]
        assert n["hr_bpm"] == [b for b in heart if b.stream == StreamKind.HR][-1].data[0, 0]
        rr = [b for b in heart if b.stream == StreamKind.RR]
        assert n["rr_count"] == sum(b.n for b in rr)
        decided = LiveHrv().add_beats(np.concatenate([b.times_s for b in since_last_gap(rr, StreamKind.RR)]),
                                      np.concatenate([b.data[:, 0] for b in since_last_gap(rr, StreamKind.RR)]))
        if len(decided) >= MIN_LIVE_RMSSD_BEATS and np.isfinite(decided[-1].rmssd_ms):
            assert n["rmssd_ms"] == pytest.approx(decided[-1].rmssd_ms, abs=0.05)
        else:
            assert n["rmssd_ms"] is None
        last = (beats["t_s"] <= n["t_s"]) & (beats["t_s"] > n["t_s"] - 5)
        hr_vs_beats.append(n["hr_bpm"] - 60000 / beats["rr_raw_ms"][last].mean())
    # The strap's HR (its own average) against the mean of the recorded beats of the last 5 s.
    assert abs(np.median(hr_vs_beats)) < 1.0


def test_monitor_replay_stops_after_seconds(capsys):
    assert main(["monitor", "--replay", str(EXAMPLE), "--speed", "100", "--seconds", "20", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 20 and {s["state"] for s in lines[-1]["sensors"].values()} == {"playing"}


def test_a_crashed_session_replays_what_it_holds_and_stays_unchanged(recording):
    crashed = recording.path.with_name("crashed.bfsession")
    files = [crashed, crashed.with_name(crashed.name + "-wal")]
    before = [(p.read_bytes(), p.stat().st_mtime_ns) for p in files]
    with SessionReader(crashed) as reader:
        assert not reader.complete
        stored = sum(1 for _ in reader.raw_blocks())
    got, states = asyncio.run(_replay(crashed, 200.0))
    assert stored > 100 and sum(isinstance(b, Block) for _, b in got) == stored
    assert set(states.values()) == {"ended"}
    assert [(p.read_bytes(), p.stat().st_mtime_ns) for p in files] == before


def _half(path: Path) -> None:
    path.write_bytes(EXAMPLE.read_bytes()[: EXAMPLE.stat().st_size // 2])


def _scrambled(path: Path) -> None:
    data = bytearray(EXAMPLE.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 100_000] = np.random.default_rng(3).bytes(100_000)
    path.write_bytes(bytes(data))


def _half_with_wal(path: Path) -> None:
    _half(path)
    path.with_name(path.name + "-wal").write_bytes(b"")


@pytest.mark.parametrize("make, expected", [
    (None, "no session file at"),
    (lambda p: p.write_text("not a session"), "is not a biofeedback session file"),
    (_half, "is truncated"),
    (_half_with_wal, "is damaged or not a complete session file"),
    (_scrambled, "is damaged or not a complete session file"),
], ids=["missing", "text", "cut-in-half", "cut-in-half-with-wal", "scrambled-pages"])
def test_a_bad_file_is_one_error_line_before_anything_plays(make, expected, tmp_path, capsys):
    path = tmp_path / "bad.bfsession"
    if make is not None:
        make(path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert main(["monitor", "--replay", str(path), "--speed", "100"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("biofeedback: error: ") and expected in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in before} == before


def test_replay_is_refused_with_virtual_and_not_offered_by_session(capsys):
    assert main(["monitor", "--replay", str(EXAMPLE), "--virtual"]) == 2
    assert "leave out --virtual" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["session", "--client", "C001", "--replay", str(EXAMPLE)])
    assert exc.value.code == 2 and "unrecognized arguments: --replay" in capsys.readouterr().err


def test_an_empty_session_says_there_is_nothing_to_replay(tmp_path, capsys):
    path = tmp_path / "empty.bfsession"
    SessionWriter(path, {"client_id": "C001"}).close()
    assert main(["monitor", "--replay", str(path)]) == 2
    assert "holds no recorded sensor data" in capsys.readouterr().err


def test_a_checked_replay_is_not_read_through_again(recording, monkeypatch):
    """``replay_plan`` reads the file through once to check it; the worker's ``acquire`` takes the checked source
    names from the plan instead of reading the whole file again before playing."""
    from biofeedback.session import acquisition
    from biofeedback.sensors import replay
    from biofeedback.session.runner import replay_plan

    plan = replay_plan(recording.path, 50.0)
    assert sorted(plan.replay_sources) == ["open-emg", "polar-h10"]  # in the order their first blocks came
    read_through: list[bool] = []
    original = acquisition.recorded_sources

    def recorded_sources(path, wanted=None, checked=None):  # the real one, counted
        read_through.append(checked is None)
        return original(path, wanted, checked)

    monkeypatch.setattr(acquisition, "recorded_sources", recorded_sources)

    async def play(**kwargs) -> int:
        async with acquire({}, replay=recording.path, speed=50.0, **kwargs) as acq:
            sources = len(acq.sources)
            for task in acq.tasks:
                task.cancel()
        return sources

    assert asyncio.run(play(replay_sources=plan.replay_sources)) == 2
    assert read_through == [False]
    assert asyncio.run(play()) == 2
    assert read_through == [False, True]  # without the names it reads the file through first
    assert replay.recorded_sources(recording.path.with_name("gone.bfsession"), ["polar-h10"],
                                   checked=plan.replay_sources) == ["polar-h10"]  # the file is not opened
