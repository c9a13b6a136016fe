"""A BITalino (r)evolution BLE board end to end: the virtual board (bumble GATT server written from PLUX's Android
API) reached through bleak and our ``BleSource``, as a user runs ``monitor``; and what becomes of every frame when
the link drops notifications, garbles them and goes down."""

from __future__ import annotations

import json

import numpy as np

from biofeedback.cli import main
from tests.sensors.test_virtual_ble import chain_gain_on_virtual_emg

# PLUX data sheets (BITalino (r)evolution EMG: VCC 3.3 V, G 1009; ECG: G 1100), 10-bit channels.
EMG_UV_PER_COUNT = 3.3 / 1009 / 1024 * 1e6


def test_monitor_bitalino_prints_the_emg_and_heart_rate_it_was_told(capsys):
    assert main(["monitor", "--virtual", "--seconds", "24", "--speed", "4", "--json", "--virtual-devices", "bitalino",
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
