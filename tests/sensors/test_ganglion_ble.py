"""OpenBCI Ganglion end to end: the virtual board (from OpenBCI's spec) over bumble, bleak, our driver and the monitor."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from biofeedback.cli import main
from biofeedback.sensors.timing import SLEW_FRACTION
from biofeedback.sensors.virtual import Faults, Scenario
from biofeedback.sensors.virtual.ganglion import MCP3912_VOLTS_PER_COUNT
from test_virtual_ble import _run_with_faults, chain_gain_on_virtual_emg

RATE_HZ = 200


def test_scan_finds_the_virtual_ganglion_with_its_profile(capsys):
    assert main(["scan", "--virtual", "--virtual-devices", "ganglion"]) == 0
    assert any("Ganglion-VIRTUAL" in line and "ganglion" in line for line in capsys.readouterr().out.splitlines())


def test_monitor_prints_the_emg_the_virtual_ganglion_was_told_to_send(capsys):
    assert main(["monitor", "--virtual", "--virtual-body", "clean", "--virtual-devices", "ganglion", "--seconds", "30", "--speed", "10",
                 "--json", "--virtual-emg-uv", "40,25"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    steady = [n for n in lines if n["t_s"] >= 5]
    left = np.array([n["emg_rms_uv"]["left_trapezius"] for n in steady])
    right = np.array([n["emg_rms_uv"]["right_trapezius"] for n in steady])
    # At 200 Hz the chain's band is 20-90 Hz (upper edge 0.45 fs) and so is the virtual board's noise: the gain of
    # the chain on it is the closed form of test_virtual_ble. A 250 ms RMS of 70 Hz-wide noise varies by ~10 %
    # (1/sqrt(2 B T)): the median of 25 values is within 8 %.
    gain = chain_gain_on_virtual_emg(200.0)
    assert abs(np.median(left) / (40.0 * gain) - 1) < 0.08
    assert abs(np.median(right) / (25.0 * gain) - 1) < 0.08
    sensor = lines[-1]["sensors"]["ganglion"]
    assert sensor["gaps"] == 0 and sensor["decode_errors"] == 0 and sensor["reconnects"] == 0


def test_dropped_packets_and_links_are_gaps_of_exactly_the_samples_not_known():
    drops = [6.0, 15.0]
    faults = Faults(disconnect_at_s=drops, offline_s=1.5, drop_rate=0.01, corrupt_rate=0.01)
    scenario = Scenario(devices=("ganglion",), keep_truth=True, faults={"ganglion": faults})
    world, (source,), hub, blocks = asyncio.run(_run_with_faults(22.0, 5.0, scenario))
    board = world.peripherals["ganglion"]
    assert source.status.reconnects == len(drops) and board.counters["dropped"] > 5
    # Garbage (random bytes, random length) has no CRC to fail on the Ganglion: a wrong length or an impossible
    # packet ID is what gives it away, and each is counted.
    assert board.counters["corrupted"] > 5
    assert source.status.decode_errors >= 0.8 * board.counters["corrupted"]

    emg = [b for b in blocks if b.stream == "emg"]
    gaps = [g for g in hub.gaps if g.stream == "emg"]
    # Runs of the board (one per 'b'): the host's index starts again at 0 after each reconnect.
    runs, run = [], -1
    for b in emg:
        if not runs or b.first_index < runs[-1][-1].first_index:
            runs.append([])
            run += 1
        runs[-1].append(b)
    assert len(runs) == len(drops) + 1 == len(board.starts)
    uv_per_count = MCP3912_VOLTS_PER_COUNT * 1e6
    for start, run_blocks in zip(board.starts, runs):
        for b in run_blocks:
            truth = np.array([board.truth[start + b.first_index + k][:2] for k in range(b.n)])
            # Delta fields lose bit 0 (OpenBCI docs): within a 201-sample cycle that adds up to at most 200 counts.
            assert np.abs(b.data / uv_per_count - truth).max() <= 200
        # Within a run, every sample not received lies in a gap whose length says how many.
        received = sum(b.n for b in run_blocks)
        span = run_blocks[-1].first_index + run_blocks[-1].n - run_blocks[0].first_index
        inside = [g for g in gaps if run_blocks[0].times_s[0] < g.start_s < run_blocks[-1].times_s[-1]]
        assert received + sum(g.lost_samples for g in inside) == span
        assert all(g.reason == "dropped-packets" for g in inside)
        for g in inside:
            device_length = g.lost_samples / RATE_HZ
            assert abs(g.length_s - device_length) <= SLEW_FRACTION * device_length + 2 / RATE_HZ
    # Each dropped link is one gap at least as long as the board was offline.
    links = [g for g in gaps if g.reason != "dropped-packets"]
    assert len(links) == len(drops) and all(g.length_s >= 1.5 for g in links)
    times = np.concatenate([b.times_s for b in emg])
    assert np.all(np.diff(times) > 0)
    for g in gaps:
        assert not np.any((times > g.start_s + 1e-9) & (times < g.end_s - 1e-9))


def test_a_session_on_the_ganglion_gives_a_tension_level_and_says_spectra_are_not_available(tmp_path, monkeypatch,
                                                                                            capsys):
    from biofeedback.analysis import compare, load_session
    from biofeedback.analysis.compare import PRIMARY
    from biofeedback.dsp import SpectrumUnavailableError, median_frequency

    # A 40 s rest gives a level (30 s of clean data in whole windows); the short post phase keeps the test quick: at
    # high --speed a 100-packet/s sensor's data lag behind on a loaded machine, and what has not arrived when the
    # session ends is not recorded.
    protocol = tmp_path / "rest.toml"
    protocol.write_text('name = "rest-rest"\n[[phases]]\nname = "baseline"\nkind = "rest"\nduration_s = 40\n'
                        '[[phases]]\nname = "post"\nkind = "rest"\nduration_s = 5\n')
    monkeypatch.setenv("BIOFEEDBACK_HOME", str(tmp_path))
    code = main(["session", "--client", "G1", "--virtual", "--virtual-devices", "ganglion", "--speed", "4",
                 "--protocol", str(protocol), "--auto", "--answers", "all-clear", "--headless"])
    assert code == 0, capsys.readouterr().err
    (path,) = (tmp_path / "clients/G1/sessions").glob("*.bfsession")
    data = load_session(path)
    assert data.emg.sensor_rate_hz == RATE_HZ
    assert data.emg.band_hz == (20.0, 90.0)   # 20-450 Hz cannot run at 200 Hz: the upper edge is 0.45 x 200 Hz
    c = compare(data, n_boot=200, with_neurokit=False)
    assert np.isfinite(c.metric(PRIMARY).a)   # a tension level for the baseline
    assert c.emg_processing["band_hz"] == (20.0, 90.0)
    assert "not available at this sample rate (200 Hz)" in c.emg_processing["spectral"]
    assert any("not available at this sample rate" in n for n in c.notes)
    assert any("band-pass 20-90 Hz" in n for n in c.notes)
    with pytest.raises(SpectrumUnavailableError, match="not available at this sample rate"):
        median_frequency(np.ones((400, 2)), RATE_HZ)
    with pytest.raises(SpectrumUnavailableError, match="envelope"):   # fast enough, but rectified and smoothed
        median_frequency(np.ones((4000, 2)), 1000.0, envelope=True)


def test_firmware_3_is_recognised_and_a_lost_packet_loses_only_its_two_samples():
    scenario = Scenario(devices=("ganglion",), keep_truth=True, ganglion_firmware=3,
                        faults={"ganglion": Faults(drop_rate=0.02)})
    world, (source,), hub, blocks = asyncio.run(_run_with_faults(12.0, 5.0, scenario))
    board = world.peripherals["ganglion"]
    assert source.status.device_info["software_revision"] == "3.0.0"   # read from Device Information (0x2A28)
    assert source.drivers[0].firmware == 3
    emg = [b for b in blocks if b.stream == "emg"]
    (start,) = board.starts
    for b in emg:
        truth = np.array([board.truth[start + b.first_index + k][:2] for k in range(b.n)])
        # absolute 19-bit fields: the top 19 bits of each 24-bit sample (dropping up to 2**5 - 1 counts) with bit 0
        # overwritten by the sign (up to one more step of 2**5): within 2**6 counts, 0.12 µV
        assert np.abs(b.data / (MCP3912_VOLTS_PER_COUNT * 1e6) - truth).max() < 64
    gaps = [g for g in hub.gaps if g.stream == "emg"]
    lost = sum(g.lost_samples for g in gaps)
    span = emg[-1].first_index + emg[-1].n - emg[0].first_index
    assert sum(b.n for b in emg) + lost == span
    assert all(g.lost_samples % 2 == 0 for g in gaps)   # whole packets of two samples, no reset chain to wait for
    assert lost <= 2 * board.counters["dropped"] and len(gaps) >= 0.5 * board.counters["dropped"] > 2
