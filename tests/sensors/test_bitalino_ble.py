"""A BITalino (r)evolution BLE board end to end: the virtual board (bumble GATT server written from PLUX's Android
API) reached through bleak and our ``BleSource``, as a user runs ``monitor``; and what becomes of every frame when
the link drops notifications, garbles them and goes down."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from biofeedback.cli import main
from biofeedback.sensors.ble import BleSource, scan
from biofeedback.sensors.virtual import Faults, Scenario, TensionScript, VirtualWorld
from biofeedback.sensors.virtual.peripherals import PacketFate
from biofeedback.stream import HOST_JITTER_WALL_S, SessionClock, StreamHub, StreamKind
from tests.sensors.test_virtual_ble import chain_gain_on_virtual_emg

# PLUX data sheets (BITalino (r)evolution EMG: VCC 3.3 V, G 1009; ECG: G 1100), 10-bit channels.
EMG_UV_PER_COUNT = 3.3 / 1009 / 1024 * 1e6


@pytest.mark.parametrize("settings, says", [
    ("sample_rate_hz = 500", "settings.sample_rate_hz 500: a BITalino offers 1, 10, 100 or 1000 Hz"),
    ("ecg_input = 2", "must name distinct analog inputs 1-6 (A1-A6), got (1, 2, 2)"),
    ("ecg_input = 7", "must name distinct analog inputs 1-6 (A1-A6), got (1, 2, 7)"),
])
def test_a_wrong_bitalino_setting_is_one_line_before_connecting(tmp_path, settings, says):
    from bleak.backends.device import BLEDevice

    from biofeedback.errors import BiofeedbackError
    from biofeedback.sensors.profiles import default_devices_dir, load_profile

    text = (default_devices_dir() / "bitalino.toml").read_text()
    key = settings.split(" = ")[0]
    lines = [settings if line.startswith(f"{key} =") else line for line in text.splitlines()]
    if key == "sample_rate_hz":  # the streams' rate must follow, or the profile check stops it first
        lines = [line.replace("rate_hz = 1000", "rate_hz = 500") for line in lines]
    (tmp_path / "bitalino.toml").write_text("\n".join(lines) + "\n")
    profile = load_profile(tmp_path / "bitalino.toml")
    with pytest.raises(BiofeedbackError) as err:
        BleSource(BLEDevice("C0:EE:00:00:00:04", "BITalino", None), profile, SessionClock(), StreamHub(SessionClock()),
                  None)
    assert says in str(err.value) and "bitalino.toml" in str(err.value) and "\n" not in str(err.value)


def test_scan_lists_each_new_sensor_with_its_profile_and_what_it_carries(capsys):
    assert main(["scan", "--virtual", "--virtual-devices", "bitalino,verity,open-emg"]) == 0
    lines = capsys.readouterr().out.splitlines()
    bitalino = next(line for line in lines if " bitalino " in line)
    assert "emg 1000 Hz, ecg 1000 Hz, rr" in bitalino and "BITalino (r)evolution BLE" in bitalino
    verity = next(line for line in lines if " polar-verity " in line)
    assert verity.startswith("Polar Sense VIRTUAL") and verity.endswith(": hr, rr")
    assert any(" open-emg " in line for line in lines)


def test_monitor_bitalino_prints_the_emg_and_heart_rate_it_was_told(capsys):
    assert main(["monitor", "--virtual", "--virtual-body", "clean", "--seconds", "24", "--speed", "4", "--json", "--virtual-devices", "bitalino",
                 "--virtual-emg-uv", "40,25", "--virtual-hr", "72"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert list(lines[-1]["sensors"]) == ["bitalino"]
    steady = [n for n in lines if n["t_s"] >= 5]
    gain = chain_gain_on_virtual_emg(1000.0)
    left = np.array([n["emg_rms_uv"]["left_trapezius"] for n in steady])
    right = np.array([n["emg_rms_uv"]["right_trapezius"] for n in steady])
    # The board quantises at 3.2 µV a count (0.9 µV RMS of noise): within the 5 % a 250 ms RMS of noise allows.
    assert abs(np.median(left) / (40.0 * gain) - 1) < 0.05
    assert abs(np.median(right) / (25.0 * gain) - 1) < 0.05
    # Heart rate from R peaks found in the board's own ECG channel.
    assert abs(np.mean([n["hr_bpm"] for n in lines if n["t_s"] >= 8]) - 72.0) < 1.5
    assert lines[-1]["rr_count"] > 15
    sensor = lines[-1]["sensors"]["bitalino"]
    assert sensor["gaps"] == 0 and sensor["decode_errors"] == 0 and sensor["reconnects"] == 0


async def _run(seconds: float, speed: float, scenario: Scenario):
    async with VirtualWorld(scenario, speed=speed) as world:
        [found] = await scan(world.profiles.values(), world.backend, 0.3)
        clock = SessionClock(speed)
        hub = StreamHub(clock)
        blocks = []
        hub.block_listeners.append(blocks.append)
        source = BleSource(found.device, found.profile, clock, hub, world.backend)
        task = asyncio.create_task(source.run())
        await asyncio.sleep(clock.wall_seconds(seconds))
        await source.stop()
        await task
    return world, source, hub, blocks


def delivered_frames(board) -> dict[int, dict[int, tuple[int, ...]]]:
    """Per acquisition, the frames whose every byte went out intact (a frame can span two notifications): index ->
    counts."""
    intact: dict[int, np.ndarray] = {}
    for run, a, b, fate in board.notifications:
        sent = intact.setdefault(run, np.zeros(0, bool))
        if len(sent) < b:
            sent = intact[run] = np.concatenate([sent, np.zeros(b - len(sent), bool)])
        sent[a:b] = fate == PacketFate.SENT
    out: dict[int, dict[int, tuple[int, ...]]] = {}
    for run, start, index, counts in board.truth:
        sent = intact.get(run, np.zeros(0, bool))
        if start + 6 <= len(sent) and sent[start:start + 6].all():
            out.setdefault(run, {})[index] = counts
    return out


def board_index(truth: dict[int, tuple[int, ...]], first: list[tuple[int, ...]]) -> int:
    """The board's sample index of a run of received frames (their A1, A2 counts), found in what it streamed."""
    for index in sorted(truth):
        if all(truth.get(index + k, (None, None))[:2] == c for k, c in enumerate(first)):
            return index
    raise AssertionError("received frames the board never sent")


def test_dropped_and_garbled_notifications_and_a_lost_link_leave_every_gap_recorded_with_its_length():
    faults = Faults(disconnect_at_s=[6.0], offline_s=1.0, drop_rate=0.02, corrupt_rate=0.01)
    scenario = Scenario(devices=("bitalino",), tension=TensionScript.constant(30.0, 30.0), keep_truth=True,
                        faults={"bitalino": faults})
    world, source, hub, blocks = asyncio.run(_run(13.0, 2.0, scenario))
    board = world.peripherals["bitalino"]
    truth = delivered_frames(board)
    assert set(truth) == {0, 1} and board.counters["dropped"] > 5 and board.counters["corrupted"] > 2

    emg = [b for b in blocks if b.stream == StreamKind.EMG]
    gaps = [g for g in hub.gaps if g.stream == StreamKind.EMG]
    [down] = [g for g in gaps if g.reason == "disconnect"]
    counts = {b.first_index + i: tuple(int(v) for v in np.round(b.data[i] / EMG_UV_PER_COUNT + 512))
              for b in emg for i in range(b.n)}
    runs = [sorted(i for b in emg if (b.times_s[0] < down.start_s) == before for i in range(b.first_index, b.first_index + b.n))
            for before in (True, False)]
    assert all(len(r) > 2000 for r in runs)
    for run, received in enumerate(runs):
        # The driver numbered each frame it received as the board did (relative to the run's first frame) ...
        offset = board_index(truth[run], [counts[i] for i in received[:5]]) - received[0]
        wrong = [i for i in received if truth[run].get(i + offset, (None, None))[:2] != counts[i]]
        assert len(wrong) <= 1, wrong[:5]  # a garbled window passing 3 CRCs and 2 sequence checks: ~1e-6 a time
        assert len(received) >= 0.97 * len(truth[run])  # frames thrown away around damaged bytes: a few a fault
        # ... and every stretch of frames missing between two received ones is one dropped-packets gap of that length.
        holes = sorted(b - a - 1 for a, b in zip(received, received[1:]) if b - a > 1)
        in_run = [g for g in gaps if g.reason == "dropped-packets" and (g.end_s <= down.start_s) == (run == 0)]
        assert sorted(g.lost_samples for g in in_run) == holes
        if run == 0:
            last_before = received[-1] + offset
        else:
            # The lost link is one disconnect gap, as long as the board was away: after a reconnect the board counts
            # from 0 again, so only arrival time measures it, to within the host's scheduling jitter.
            assert abs(down.lost_samples - (received[0] + offset - last_before - 1)) <= HOST_JITTER_WALL_S * 2.0 * 1000
            assert down.length_s > 1.0  # the board was offline 1 device second
    assert source.status.decode_errors >= board.counters["corrupted"] // 2 and source.status.reconnects == 1
    report = source.drivers[0].timing_report()["emg"]
    assert report["crc_errors"] + report["skipped_bytes"] > 0
