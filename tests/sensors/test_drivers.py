"""Drivers fed packets built by hand from the specifications, through their notification callbacks.

A real ``BleSource`` (with its profile and drivers) hands what its drivers make to a real ``StreamHub``;
only the radio is left out: the tests call the callbacks bleak would call, and stand in for bleak's
client at the PMD control point.
"""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest
from bleak.backends.device import BLEDevice

from biofeedback.sensors.ble import BleBackend, BleSource
from biofeedback.sensors.profiles import load_profiles
from biofeedback.sensors.protocols.hrs import HrsDriver
from biofeedback.sensors.protocols.pmd import PmdEcgDriver
from biofeedback.sensors.source import SensorError
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


def test_an_implausible_heart_rate_is_left_out_and_the_rr_values_kept():
    source, hub, blocks = _source("hrs-strap")
    _driver(source, HrsDriver)._on_measurement(None, bytearray(_hrm(0, (1024, 1024))))
    assert [b.stream for b in blocks] == ["rr"]
    assert blocks[0].data[:, 0].tolist() == [1000.0, 1000.0]
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
