"""Drivers fed packets built by hand from the specifications, through their notification callbacks.

A real ``BleSource`` (with its profile and drivers) hands what its drivers make to a real ``StreamHub``;
only the radio is left out: the tests call the callbacks bleak would call, and stand in for bleak's
client at the PMD control point.
"""

from __future__ import annotations

import asyncio
import binascii
import random
import struct
import time

import numpy as np
import pytest
from bleak.backends.device import BLEDevice

from biofeedback.sensors.ble import BleBackend, BleSource
from biofeedback.sensors.profiles import load_profiles
from biofeedback.sensors.protocols.hrs import HrsDriver
from biofeedback.sensors.protocols.open_emg import OpenEmgDriver, decode_open_emg_info
from biofeedback.sensors.protocols.pmd import PmdEcgDriver
from biofeedback.sensors.source import SensorError
from biofeedback.sensors.timing import SLEW_FRACTION
from biofeedback.stream import Block, SessionClock, StreamHub


def _source(profile: str) -> tuple[BleSource, StreamHub, list[Block]]:
    clock = SessionClock()
    hub = StreamHub(clock)
    blocks: list[Block] = []
    hub.block_listeners.append(blocks.append)
    source = BleSource(BLEDevice("C0:EE:00:00:00:09", profile, None), load_profiles()[profile], clock, hub, BleBackend())
    return source, hub, blocks


def _driver(source: BleSource, kind: type):
    (driver,) = [d for d in source.drivers if isinstance(d, kind)]
    return driver


# --- Heart Rate Measurement (Bluetooth SIG Heart Rate Service 1.0, 0x2A37) ----------------------

def _hrm(hr_bpm: int, rr_1024: tuple[int, ...]) -> bytes:
    """Flags 0x10 (uint8 heart rate, RR intervals present), the heart rate, then each RR as uint16 LE in 1/1024 s."""
    return bytes([0x10, hr_bpm]) + b"".join(struct.pack("<H", r) for r in rr_1024)


@pytest.mark.parametrize("bad_1024", [41, 4096])  # 40.0 ms and 4000 ms
def test_an_implausible_rr_is_left_out_and_counted_and_its_neighbours_keep_their_beat_times(bad_1024):
    source, hub, blocks = _source("hrs-strap")
    driver = _driver(source, HrsDriver)
    rr_1024 = (820, bad_1024, 768)
    before = source.clock.now_s()
    driver._on_measurement(None, bytearray(_hrm(75, rr_1024)))
    after = source.clock.now_s()

    (hr,) = [b for b in blocks if b.stream == "hr"]
    (rr,) = [b for b in blocks if b.stream == "rr"]
    assert hr.data.tolist() == [[75.0]] and hr.raw == _hrm(75, rr_1024)  # the raw notification, bad value included
    assert rr.data[:, 0].tolist() == [820 * 1000 / 1024, 768 * 1000 / 1024]
    # A first notification ends its last beat at its arrival; the beats run on the strap's whole RR sum
    # (the left-out interval did pass), so the kept beats sit 768 and 768 + bad apart from the end.
    assert before <= rr.times_s[-1] <= after
    assert rr.times_s[-1] - rr.times_s[0] == pytest.approx((bad_1024 + 768) / 1024, abs=1e-12)
    assert source.status.decode_errors == 1
    assert hub.gaps == [] and source.status.gaps == 0  # no time is missing: not a gap


@pytest.mark.parametrize("bad", [
    _hrm(0, (1024, 1024)),  # implausible heart rate
    _hrm(200, (1024,)),  # a heart rate far from the strap's 60 bpm
    _hrm(60, (60000,)),  # an RR value that puts its beat a minute after its arrival
    bytes([0x11, 60, 0]) + struct.pack("<H", 1024),  # another layout (uint16 heart rate) than the strap's
])
def test_a_notification_that_is_not_the_straps_is_dropped_whole_and_its_loss_is_a_gap(bad):
    source, hub, blocks = _source("hrs-strap")
    driver = _driver(source, HrsDriver)
    driver._on_measurement(None, bytearray(_hrm(60, (1024,))))
    driver._on_measurement(None, bytearray(bad))
    driver._on_measurement(None, bytearray(_hrm(61, (1000,))))
    assert [b.data[0, 0] for b in blocks if b.stream == "hr"] == [60.0, 61.0]
    assert [b.data[0, 0] for b in blocks if b.stream == "rr"] == [1000.0, 1000 * 1000 / 1024]
    assert source.status.decode_errors == 1
    (hr_gap,) = [g for g in hub.gaps if g.stream == "hr"]  # the dropped notification's heart rate is missing
    hr_times = [b.times_s[0] for b in blocks if b.stream == "hr"]
    assert (hr_gap.start_s, hr_gap.end_s, hr_gap.reason, hr_gap.lost_samples) == (*hr_times, "missed-notifications", 1)


def test_two_agreeing_notifications_after_a_real_change_are_taken():
    source, hub, blocks = _source("hrs-strap")
    driver = _driver(source, HrsDriver)
    for _ in range(3):
        driver._on_measurement(None, bytearray([0x00, 60]))  # heart rate only, no RR
    for _ in range(3):
        driver._on_measurement(None, bytearray([0x00, 110]))
    assert [b.data[0, 0] for b in blocks] == [60.0] * 3 + [110.0] * 2
    assert source.status.decode_errors == 1


# --- PMD control point (Polar BLE SDK: F0, op code, measurement type, error code, more frames, parameters) ---

START_ECG = bytes([0x02, 0x00, 0x00, 0x01, 0x82, 0x00, 0x01, 0x01, 0x0E, 0x00])
"""Start ECG (op 2, type 0): sample rate (setting 0, count 1) 130, resolution (setting 1, count 1) 14, u16 LE."""
GET_SETTINGS_ECG_REPLY = bytes([0xF0, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 0x82, 0x00])
"""A successful reply to GET_SETTINGS (op 1) for ECG: sample rate 130."""
START_ACC_REPLY = bytes([0xF0, 0x02, 0x02, 0x00, 0x00])
"""A successful reply to starting ACC (type 2), not ECG."""


class ControlPoint:
    """Stands in for bleak's client at the PMD control point: each write is answered by the given indications."""

    def __init__(self, driver: PmdEcgDriver, *replies: bytes) -> None:
        self.driver = driver
        self.replies = replies
        self.written: list[bytes] = []

    async def write_gatt_char(self, _uuid: str, data: bytes, response: bool = True) -> None:
        self.written.append(bytes(data))
        for reply in self.replies:
            self.driver._on_control(None, bytearray(reply))


def test_the_reply_that_answers_a_request_is_found_after_replies_to_other_requests():
    source, _, _ = _source("polar-h10")
    driver = _driver(source, PmdEcgDriver)
    start_ok = bytes([0xF0, 0x02, 0x00, 0x00, 0x00])
    client = ControlPoint(driver, GET_SETTINGS_ECG_REPLY, START_ACC_REPLY, start_ok)
    reply = asyncio.run(driver.request(client, START_ECG))
    assert (reply.op_code, reply.measurement_type, reply.status) == (2, 0, 0)
    asyncio.run(driver._start(client))  # the driver's own start command, answered after two other replies
    assert client.written[-1] == START_ECG


@pytest.mark.parametrize("code, name, advice", [
    (8, "invalid sample rate", "switch the strap off and on"),
    (13, "device in charger", "take the strap off its charger"),
    (10, "invalid MTU", "ATT MTU is too small"),
])
def test_an_error_reply_is_one_line_naming_the_error(code, name, advice):
    source, _, _ = _source("polar-h10")
    driver = _driver(source, PmdEcgDriver)
    # A success for another request comes first; then the start's own reply, an error.
    client = ControlPoint(driver, GET_SETTINGS_ECG_REPLY, bytes([0xF0, 0x02, 0x00, code, 0x00]))
    with pytest.raises(SensorError) as err:
        asyncio.run(driver._start(client))
    message = str(err.value)
    assert "\n" not in message
    assert f"ECG start refused: PMD error {code} ({name})" in message and advice in message


def test_a_reply_that_came_before_the_request_does_not_answer_it():
    source, _, _ = _source("polar-h10")
    driver = _driver(source, PmdEcgDriver)
    driver._on_control(None, bytearray([0xF0, 0x02, 0x00, 0x00, 0x00]))  # a late success to an earlier start
    client = ControlPoint(driver, bytes([0xF0, 0x02, 0x00, 0x0D, 0x00]))
    with pytest.raises(SensorError, match=r"PMD error 13 \(device in charger\)"):
        asyncio.run(driver._start(client))


def test_already_streaming_is_not_an_error():
    source, _, _ = _source("polar-h10")
    driver = _driver(source, PmdEcgDriver)
    asyncio.run(driver._start(ControlPoint(driver, bytes([0xF0, 0x02, 0x00, 0x06, 0x00]))))


# --- Open EMG Data frames (devices/open-emg.md, section 6, version 2 with its CRC) ------------------------------

EMG_INFO_V2 = bytes([2, 2, 0xE8, 0x03, 16, 0, 20, 0]) + (50).to_bytes(4, "little")
"""Info: version 2, 2 channels, 1000 Hz, 16 bits, raw, 20 sample sets a frame, 50 nV per LSB."""


def _emg_frame(seq: int, index: int, time_us: int, rows: np.ndarray) -> bytes:
    """Header (u16 seq, u32 first sample index, u64 device µs, u8 flags), interleaved int16, CRC-16/CCITT-FALSE."""
    frame = struct.pack("<HIQB", seq, index, time_us, 0) + b"".join(struct.pack("<hh", *row) for row in rows)
    return frame + struct.pack("<H", binascii.crc_hqx(frame, 0xFFFF))


def _emg_source():
    source, hub, blocks = _source("open-emg")
    driver = _driver(source, OpenEmgDriver)
    driver.info = decode_open_emg_info(EMG_INFO_V2)  # what setup() reads from the Info characteristic
    return source, hub, blocks, driver


@pytest.mark.parametrize("seed", range(20))
def test_a_decodable_garbage_frame_first_after_start_is_dropped_and_the_stream_kept_in_full(seed):
    """A frame with a valid CRC but a random index and device time (firmware that sent a damaged buffer) arrives
    first after START: it is counted and dropped, and every real frame after it is taken, with no gap."""
    rng = np.random.default_rng(seed)
    source, hub, blocks, driver = _emg_source()
    r = random.Random(seed)
    garbage = _emg_frame(r.getrandbits(16), r.getrandbits(32), r.getrandbits(64), rng.integers(-999, 999, (20, 2)))
    sent = [rng.integers(-30000, 30000, (20, 2)) for _ in range(25)]
    driver._on_data(None, bytearray(garbage))
    for k, rows in enumerate(sent):
        driver._on_data(None, bytearray(_emg_frame(k, 20 * k, 5_000_000 + 20_000 * k, rows)))
    assert [b.first_index for b in blocks] == [20 * k for k in range(25)]
    for b, rows in zip(blocks, sent):
        assert np.array_equal(b.data, rows * 0.05)
    assert source.status.decode_errors == 1 and hub.gaps == []
    times = np.concatenate([b.times_s for b in blocks])  # the device's clock, slewed toward the arrivals (here all at once)
    assert np.all(np.abs(np.diff(times) - 0.001) <= SLEW_FRACTION * 0.001 + 1e-12)


def test_a_garbage_frame_between_real_ones_is_dropped_and_counted():
    source, hub, blocks, driver = _emg_source()
    rows = np.arange(40).reshape(20, 2)
    for k in range(3):
        driver._on_data(None, bytearray(_emg_frame(k, 20 * k, 1_000_000 + 20_000 * k, rows)))
    driver._on_data(None, bytearray(_emg_frame(3, 123_456, 99_000_000_000, rows)))  # valid CRC, wrong index and time
    for k in range(3, 6):
        driver._on_data(None, bytearray(_emg_frame(k + 1, 20 * k, 1_000_000 + 20_000 * k, rows)))
    assert [b.first_index for b in blocks] == [0, 20, 40, 60, 80, 100]
    assert source.status.decode_errors == 1 and hub.gaps == []


def test_a_device_that_restarts_is_re_anchored_with_a_gap():
    """Firmware that rebooted without the link dropping: index and clock start over. The stream is not captured by
    its old anchor: two agreeing frames of the new run re-anchor it, the time between is a gap."""
    source, hub, blocks, driver = _emg_source()
    rows = np.zeros((20, 2), dtype=int)
    for k in range(5):
        driver._on_data(None, bytearray(_emg_frame(k, 20 * k, 600_000_000 + 20_000 * k, rows)))
    time.sleep(0.3)  # the reboot takes a while
    for k in range(5):
        driver._on_data(None, bytearray(_emg_frame(k, 20 * k, 1_000 + 20_000 * k, rows)))
    assert len(blocks) == 10 and source.status.decode_errors == 0
    (gap,) = hub.gaps
    assert gap.stream == "emg" and gap.reason == "device-restart"
    times = np.concatenate([b.times_s for b in blocks])
    assert np.all(np.diff(times) > 0)
    assert not np.any((times > gap.start_s) & (times < gap.end_s))
