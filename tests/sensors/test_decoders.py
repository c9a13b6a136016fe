"""Decoders against their specifications: packets are built by hand here, never by our encoders."""

import binascii
import itertools
import random
import struct

import numpy as np
import pytest

from biofeedback.sensors.protocols import hrs, open_emg, pmd
from biofeedback.sensors.protocols.base import DecodeError

# --- Heart Rate Measurement (Bluetooth SIG 0x2A37) --------------------------------------------

RR_CASES = [(1024,), (800, 1000, 65535), tuple(range(700, 1600, 100))]
HRM_CASES = [(f, rr) for f in range(32) for rr in (RR_CASES if f & 0x10 else [()])]


def _hrm_packet(flags: int, hr: int, energy: int, rr: tuple[int, ...]) -> bytes:
    """A Heart Rate Measurement laid out as the SIG specification says, field by field."""
    packet = bytes([flags])
    packet += struct.pack("<H", hr) if flags & 0x01 else struct.pack("<B", hr)
    if flags & 0x08:
        packet += struct.pack("<H", energy)
    if flags & 0x10:
        packet += b"".join(struct.pack("<H", r) for r in rr)
    return packet


@pytest.mark.parametrize("flags, rr", HRM_CASES)
@pytest.mark.parametrize("reserved", [0x00, 0xE0])
def test_hrm_every_flag_combination(flags, rr, reserved):
    hr = 300 if flags & 0x01 else 187
    packet = _hrm_packet(flags | reserved, hr, 1234, rr)
    m = hrs.decode_heart_rate_measurement(packet)
    assert m.hr_bpm == hr
    assert m.contact_supported is bool(flags & 0x04)
    if flags & 0x04:
        assert m.contact_detected is bool(flags & 0x02)
    else:
        assert m.contact_detected is None
    assert m.energy_kj == (1234 if flags & 0x08 else None)
    assert m.rr_raw == rr
    assert m.rr_ms.dtype == np.float64
    assert m.rr_ms.tolist() == [r * 1000.0 / 1024.0 for r in rr]


@pytest.mark.parametrize("flags", [f for f in range(32) if f & 0x10])
def test_hrm_rr_flag_without_rr_is_an_error(flags):
    packet = _hrm_packet(flags, 60, 5, ())
    with pytest.raises(DecodeError, match=f"flags 0x{flags:02x} need at least {len(packet) + 2}"):
        hrs.decode_heart_rate_measurement(packet)


@pytest.mark.parametrize(
    "packet, hr, contact, energy, rr_ms",
    [
        (bytes([0x10, 72, 0x00, 0x04]), 72, None, None, [1000.0]),
        (bytes([0x00, 60]), 60, None, None, []),
        (bytes([0x06, 61]), 61, True, None, []),
        (bytes([0x04, 62]), 62, False, None, []),
        (bytes([0x02, 63]), 63, None, None, []),  # detected bit without supported bit means nothing
        (bytes([0x01, 0x2C, 0x01]), 300, None, None, []),
        (bytes([0x09, 0x00, 0x01, 0xE8, 0x03]), 256, None, 1000, []),
        (bytes([0x16, 80, 0x00, 0x02, 0x00, 0x03]), 80, True, None, [500.0, 750.0]),
        (bytes([0x1F, 0x50, 0x00, 0x0A, 0x00, 0x34, 0x03]), 80, True, 10, [800.78125]),
        (bytes([0x10, 55, 0xFF, 0xFF]), 55, None, None, [65535 * 1000 / 1024]),
        (bytes([0x10, 55, 0x01, 0x00]), 55, None, None, [1000 / 1024]),
    ],
)
def test_hrm_known_packets(packet, hr, contact, energy, rr_ms):
    m = hrs.decode_heart_rate_measurement(packet)
    assert m.hr_bpm == hr
    assert m.contact_detected == contact
    assert m.energy_kj == energy
    assert m.rr_ms.tolist() == pytest.approx(rr_ms, abs=0)


def test_hrm_accepts_bytearray_and_memoryview():
    assert hrs.decode_heart_rate_measurement(bytearray([0x10, 72, 0x00, 0x04])).rr_raw == (1024,)
    assert hrs.decode_heart_rate_measurement(memoryview(bytes([0x00, 99]))).hr_bpm == 99


def test_hrm_rr_array_does_not_alias_the_packet_buffer():
    buf = bytearray([0x10, 72, 0x00, 0x04])
    m = hrs.decode_heart_rate_measurement(buf)
    buf[2:4] = b"\x00\x08"
    assert m.rr_raw == (1024,) and m.rr_ms.tolist() == [1000.0]


@pytest.mark.parametrize(
    "packet, message",
    [
        (b"", "empty packet"),
        (bytes([0x00]), "1 bytes, flags 0x00 need at least 2"),
        (bytes([0x01, 72]), "2 bytes, flags 0x01 need at least 3"),
        (bytes([0x08, 72, 0x01]), "3 bytes, flags 0x08 need at least 4"),
        (bytes([0x10, 72, 0x00]), "3 bytes, flags 0x10 need at least 4"),
        (bytes([0x10, 72, 0x00, 0x04, 0x01]), "3 bytes of RR intervals"),
        (bytes([0x00, 72, 0x00]), "flags 0x00 describe 2"),
    ],
)
def test_hrm_malformed(packet, message):
    with pytest.raises(DecodeError, match=message) as info:
        hrs.decode_heart_rate_measurement(packet)
    assert str(info.value).startswith("Heart Rate Measurement: ")


# --- Polar PMD -------------------------------------------------------------------------------


def test_pmd_start_ecg_command_bytes():
    assert pmd.pmd_start_ecg_command() == bytes.fromhex("02 00 00 01 82 00 01 01 0e 00")
    assert pmd.pmd_start_ecg_command(130, 14) == bytes([0x02, 0x00, 0x00, 0x01, 0x82, 0x00, 0x01, 0x01, 0x0E, 0x00])
    assert pmd.pmd_start_ecg_command(500, 16) == bytes([0x02, 0x00, 0x00, 0x01, 0xF4, 0x01, 0x01, 0x01, 0x10, 0x00])


def test_pmd_stop_and_get_settings_commands():
    assert pmd.pmd_stop_command() == bytes([0x03, 0x00])
    assert pmd.pmd_stop_command(2) == bytes([0x03, 0x02])
    assert pmd.pmd_get_settings_command() == bytes([0x01, 0x00])


@pytest.mark.parametrize("call", [lambda: pmd.pmd_start_ecg_command(70000), lambda: pmd.pmd_stop_command(256)])
def test_pmd_commands_reject_values_that_do_not_fit(call):
    with pytest.raises(ValueError, match="does not fit"):
        call()


def test_pmd_control_response_ok():
    r = pmd.decode_pmd_control_response(bytes([0xF0, 0x02, 0x00, 0x00, 0x00]))
    assert (r.op_code, r.measurement_type, r.status, r.parameters) == (2, 0, 0, b"")
    assert r.ok and r.error_text == "success" and not r.more_frames


def test_pmd_control_response_with_parameters():
    r = pmd.decode_pmd_control_response(bytes([0xF0, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x82, 0x00]))
    assert r.op_code == 1 and r.ok and r.more_frames
    assert r.parameters == bytes([0x00, 0x01, 0x82, 0x00])


@pytest.mark.parametrize(
    "status, text",
    [(1, "invalid op code"), (5, "invalid parameter"), (6, "already in state"), (8, "invalid sample rate"),
     (13, "device in charger"), (99, "unknown status 99")],
)
def test_pmd_control_response_errors(status, text):
    r = pmd.decode_pmd_control_response(bytes([0xF0, 0x02, 0x00, status]))
    assert not r.ok and r.status == status and r.error_text == text and r.parameters == b""


@pytest.mark.parametrize(
    "packet, message",
    [(b"", "0 bytes"), (bytes([0xF0, 2, 0]), "3 bytes, need at least 4"), (bytes([0x0F, 2, 0, 0]), "first byte 0x0f")],
)
def test_pmd_control_response_malformed(packet, message):
    with pytest.raises(DecodeError, match=message):
        pmd.decode_pmd_control_response(packet)


def _int24(v: int) -> bytes:
    """Two's complement, 3 bytes, little-endian, written out by hand."""
    u = v & 0xFFFFFF
    return bytes([u & 0xFF, (u >> 8) & 0xFF, (u >> 16) & 0xFF])


ECG_VALUES = [0, 1, -1, 8388607, -8388608, 1234, -1234, 65536, -65537, 255, -256] + [
    (i * 104729) % 16777216 - 8388608 for i in range(62)
]
ECG_TIMESTAMP_NS = 599_616_000_123_456_789  # 2019-01-01 plus a bit, in ns since 2000-01-01


def test_pmd_ecg_frame_73_samples():
    assert len(ECG_VALUES) == 73
    frame = bytes([0x00]) + ECG_TIMESTAMP_NS.to_bytes(8, "little") + bytes([0x00])
    frame += b"".join(_int24(v) for v in ECG_VALUES)
    assert len(frame) == 229
    f = pmd.decode_pmd_ecg_frame(frame)
    assert f.timestamp_ns == ECG_TIMESTAMP_NS
    assert f.frame_type == 0
    assert f.samples_uv.tolist() == ECG_VALUES


def test_pmd_ecg_frame_known_bytes():
    frame = bytes.fromhex("00" "0102030405060708" "00" "ffffff" "000080" "ff ff 7f" "d2 04 00" "2e fb ff")
    f = pmd.decode_pmd_ecg_frame(frame)
    assert f.timestamp_ns == 0x0807060504030201
    assert f.samples_uv.tolist() == [-1, -8388608, 8388607, 1234, -1234]


@pytest.mark.parametrize(
    "packet, message",
    [
        (bytes(12), "12 bytes, need at least 13"),
        (bytes([0x01]) + bytes(12), "measurement type 1"),
        (bytes(9) + bytes([0x80]) + bytes(3), "frame type 0x80"),
        (bytes(10) + bytes(4), "4 sample bytes"),
    ],
)
def test_pmd_ecg_frame_malformed(packet, message):
    with pytest.raises(DecodeError, match=message):
        pmd.decode_pmd_ecg_frame(packet)


# --- Open EMG --------------------------------------------------------------------------------


def test_open_emg_info():
    raw = bytes([1, 2, 0xE8, 0x03, 12, 0, 20, 0]) + (4028).to_bytes(4, "little")
    info = open_emg.decode_open_emg_info(raw)
    assert (info.protocol_version, info.channel_count, info.sample_rate_hz, info.adc_bits) == (1, 2, 1000, 12)
    assert (info.kind, info.samples_per_frame, info.nv_per_lsb) == ("raw", 20, 4028)
    assert info.uv_per_lsb == pytest.approx(4.028)


def test_open_emg_info_envelope_and_longer_value():
    raw = bytes([1, 1, 0xF4, 0x01, 10, 1, 10, 0]) + bytes([0x40, 0x42, 0x0F, 0x00]) + b"\x07\x07\x07"
    info = open_emg.decode_open_emg_info(raw)
    assert (info.kind, info.sample_rate_hz, info.nv_per_lsb, info.uv_per_lsb) == ("envelope", 500, 1_000_000, 1000.0)


@pytest.mark.parametrize(
    "raw, message",
    [
        (bytes(11), "11 bytes, need at least 12"),
        (bytes([3, 2, 0xE8, 3, 12, 0, 20, 0, 1, 0, 0, 0]), "protocol version 3, this program speaks 1 and 2"),
        (bytes([0, 2, 0xE8, 3, 12, 0, 20, 0, 1, 0, 0, 0]), "protocol version 0"),
        (bytes([1, 2, 0xE8, 3, 12, 2, 20, 0, 1, 0, 0, 0]), "kind 2 unknown"),
        (bytes([1, 0, 0xE8, 3, 12, 0, 20, 0, 1, 0, 0, 0]), "channel count is 0"),
        (bytes([1, 2, 0, 0, 12, 0, 20, 0, 1, 0, 0, 0]), "sample rate is 0"),
        (bytes([1, 2, 0xE8, 3, 12, 0, 0, 0, 1, 0, 0, 0]), "samples per frame is 0"),
        (bytes([1, 2, 0xE8, 3, 12, 0, 20, 0, 0, 0, 0, 0]), "nV per LSB is 0"),
        (bytes([1, 2, 0xE8, 3, 17, 0, 20, 0, 1, 0, 0, 0]), "17 ADC bits"),
    ],
)
def test_open_emg_info_malformed(raw, message):
    with pytest.raises(DecodeError, match=message):
        open_emg.decode_open_emg_info(raw)


def test_open_emg_commands():
    assert open_emg.open_emg_start_command(1000, 3) == bytes([0x01, 0xE8, 0x03, 0x03])
    assert open_emg.open_emg_start_command(2000, 0x01) == bytes([0x01, 0xD0, 0x07, 0x01])
    assert open_emg.open_emg_stop_command() == bytes([0x02])
    assert open_emg.open_emg_time_sync_command() == bytes([0x03])
    with pytest.raises(ValueError, match="enables no channel"):
        open_emg.open_emg_start_command(1000, 0)
    with pytest.raises(ValueError, match="does not fit"):
        open_emg.open_emg_start_command(1000, 256)


def test_open_emg_control_responses():
    ok = open_emg.decode_open_emg_control_response(bytes([0x01, 0x00]))
    assert (ok.op_code, ok.status, ok.payload, ok.ok, ok.error_text) == (1, 0, b"", True, "ok")
    assert ok.device_time_us is None
    busy = open_emg.decode_open_emg_control_response(bytes([0x01, 0x03]))
    assert not busy.ok and busy.error_text == "busy or already in that state"
    bad = open_emg.decode_open_emg_control_response(bytes([0x01, 0x02]))
    assert bad.error_text == "invalid parameter"
    unsupported = open_emg.decode_open_emg_control_response(bytes([0x7F, 0x01]))
    assert (unsupported.op_code, unsupported.error_text) == (0x7F, "unsupported op code")
    assert open_emg.decode_open_emg_control_response(bytes([0x02, 0x09])).error_text == "unknown status 9"
    sync = open_emg.decode_open_emg_control_response(bytes([0x03, 0x00]) + bytes.fromhex("efcdab8967452301"))
    assert sync.ok and sync.device_time_us == 0x0123456789ABCDEF
    failed_sync = open_emg.decode_open_emg_control_response(bytes([0x03, 0x03]))
    assert failed_sync.device_time_us is None


@pytest.mark.parametrize(
    "raw, message",
    [(b"", "0 bytes, need at least 2"), (b"\x01", "1 bytes"), (bytes([3, 0, 1, 2, 3]), "TIME_SYNC payload 3 bytes")],
)
def test_open_emg_control_response_malformed(raw, message):
    with pytest.raises(DecodeError, match=message):
        open_emg.decode_open_emg_control_response(raw)


def _emg_frame(seq: int, index: int, time_us: int, flags: int, rows: list[list[int]], version: int = 2) -> bytes:
    """A Data frame field by field (devices/open-emg.md section 6); version 2 appends the CRC-16/CCITT-FALSE,
    computed by the standard library's ``binascii.crc_hqx`` (CRC-CCITT, polynomial 0x1021) from 0xFFFF."""
    header = seq.to_bytes(2, "little") + index.to_bytes(4, "little") + time_us.to_bytes(8, "little") + bytes([flags])
    frame = header + b"".join(v.to_bytes(2, "little", signed=True) for row in rows for v in row)
    return frame + binascii.crc_hqx(frame, 0xFFFF).to_bytes(2, "little") if version >= 2 else frame


def test_the_crc_is_crc16_ccitt_false():
    """binascii.crc_hqx from 0xFFFF is CRC-16/CCITT-FALSE: its standard check value, and the profile's worked example."""
    assert binascii.crc_hqx(b"123456789", 0xFFFF) == 0x29B1
    example = bytes.fromhex("0500 64000000 40420f0000000000 00 0a00 f6ff 2c01 ffff 7c38")  # open-emg.md section 6
    f = open_emg.decode_open_emg_frame(example, 2, 2)
    assert (f.seq, f.first_sample_index, f.device_time_us, f.flags) == (5, 100, 1_000_000, 0)
    assert f.samples.tolist() == [[10, -10], [300, -1]]
    assert open_emg.decode_open_emg_frame(example[:-2], 2, 1).samples.tolist() == [[10, -10], [300, -1]]


@pytest.mark.parametrize("byte", [0, 6, 14, 15, 22, 23])
def test_open_emg_v2_frame_with_any_byte_changed_is_a_crc_error(byte):
    example = bytearray.fromhex("0500 64000000 40420f0000000000 00 0a00 f6ff 2c01 ffff 7c38")
    example[byte] ^= 0x10
    with pytest.raises(DecodeError, match="CRC 0x"):
        open_emg.decode_open_emg_frame(bytes(example), 2, 2)


def test_open_emg_frame_of_an_unknown_version_is_a_programming_error():
    with pytest.raises(ValueError, match="protocol version 3 unknown"):
        open_emg.decode_open_emg_frame(bytes(21), 2, 3)


@pytest.mark.parametrize("channels", [1, 2, 3, 8])
@pytest.mark.parametrize("n", [1, 2, 20, 114 // 8])
def test_open_emg_frame_sizes(channels, n):
    rng = random.Random(channels * 1000 + n)
    rows = [[rng.randint(-32768, 32767) for _ in range(channels)] for _ in range(n)]
    f = open_emg.decode_open_emg_frame(_emg_frame(7, 140_000, 5_000_000_123, 0, rows), channels)
    assert f.samples.dtype == np.int16 and f.samples.shape == (n, channels)
    assert f.samples.tolist() == rows
    assert (f.seq, f.first_sample_index, f.device_time_us, f.flags) == (7, 140_000, 5_000_000_123, 0)
    assert not (f.overrun or f.lead_off or f.saturated)


def test_open_emg_frame_interleaving_and_wrapped_counters():
    raw = bytes.fromhex(
        "ffff" "ffffffff" "0100000000000080" "00" "0100" "feff" "ff7f" "0080" "0000" "3412"
    )
    f = open_emg.decode_open_emg_frame(raw, 2, 1)
    assert (f.seq, f.first_sample_index, f.device_time_us) == (65535, 2**32 - 1, 2**63 + 1)
    assert f.samples.tolist() == [[1, -2], [32767, -32768], [0, 0x1234]]
    assert f.samples[:, 0].tolist() == [1, 32767, 0]  # left channel
    after_wrap = open_emg.decode_open_emg_frame(_emg_frame(0, 19, 0, 0, [[5, 6]]), 2)
    assert (after_wrap.seq, after_wrap.first_sample_index) == (0, 19)


@pytest.mark.parametrize(
    "flags, overrun, lead_off, saturated",
    [(0x01, True, False, False), (0x02, False, True, False), (0x04, False, False, True), (0xFF, True, True, True),
     (0xF8, False, False, False)],
)
def test_open_emg_frame_flags(flags, overrun, lead_off, saturated):
    f = open_emg.decode_open_emg_frame(_emg_frame(1, 0, 0, flags, [[0, 0]]), 2)
    assert (f.flags, f.overrun, f.lead_off, f.saturated) == (flags, overrun, lead_off, saturated)


@pytest.mark.parametrize(
    "raw, channels, version, message",
    [
        (bytes(15), 2, 1, "15 bytes, 2 channels need at least 19"),
        (bytes(16), 1, 1, "16 bytes, 1 channels need at least 17"),
        (bytes(15 + 6), 2, 1, "6 sample bytes, not a whole number of 2-channel sample sets"),
        (bytes(15 + 3), 1, 1, "3 sample bytes"),
        (bytes(20), 2, 2, "20 bytes, 2 channels need at least 21"),
        (_emg_frame(1, 0, 0, 0, [[1, 2], [3, 4]])[:-2], 2, 2, "CRC 0x"),  # a version 1 frame read as version 2
        (_emg_frame(1, 0, 0, 0, [[1, 2, 3]]), 2, 2, "6 sample bytes"),  # the CRC is right, the layout is not
    ],
)
def test_open_emg_frame_malformed(raw, channels, version, message):
    with pytest.raises(DecodeError, match=message):
        open_emg.decode_open_emg_frame(raw, channels, version)


def test_open_emg_frame_channels_argument_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        open_emg.decode_open_emg_frame(bytes(17), 0)


def test_open_emg_frame_samples_do_not_alias_the_packet_buffer():
    buf = bytearray(_emg_frame(1, 0, 0, 0, [[100, -100]]))
    f = open_emg.decode_open_emg_frame(buf, 2)
    buf[15:] = bytes(4)
    assert f.samples.tolist() == [[100, -100]]


def test_open_emg_status():
    s = open_emg.decode_open_emg_status(bytes([87, 0b10, 0x2C, 0x01, 0x01]))
    assert (s.battery_pct, s.contact_bits, s.overrun_count, s.charging) == (87, 2, 300, True)
    assert not s.contact(0) and s.contact(1) and not s.contact(7)
    full = open_emg.decode_open_emg_status(bytes([100, 0xFF, 0xFF, 0xFF, 0xFE]) + b"extra")
    assert (full.battery_pct, full.overrun_count, full.charging) == (100, 65535, False)
    assert all(full.contact(i) for i in range(8))
    unknown = open_emg.decode_open_emg_status(bytes([0xFF, 0, 0, 0, 0]))
    assert unknown.battery_pct is None
    with pytest.raises(ValueError, match="out of range"):
        s.contact(8)


@pytest.mark.parametrize(
    "raw, message", [(bytes(4), "4 bytes, need at least 5"), (bytes([101, 0, 0, 0, 0]), "battery 101")]
)
def test_open_emg_status_malformed(raw, message):
    with pytest.raises(DecodeError, match=message):
        open_emg.decode_open_emg_status(raw)


# --- Fuzz: random bytes and every truncation never raise anything but DecodeError ------------

DECODERS = [
    hrs.decode_heart_rate_measurement,
    pmd.decode_pmd_control_response,
    pmd.decode_pmd_ecg_frame,
    open_emg.decode_open_emg_info,
    open_emg.decode_open_emg_control_response,
    open_emg.decode_open_emg_status,
    *(lambda raw, c=c, v=v: open_emg.decode_open_emg_frame(raw, c, v) for c in (1, 2, 3) for v in (1, 2)),
]

ECG_FRAME = (
    bytes([0x00]) + ECG_TIMESTAMP_NS.to_bytes(8, "little") + bytes([0x00]) + b"".join(_int24(v) for v in ECG_VALUES)
)
EMG_FRAME_2CH = _emg_frame(65535, 2**32 - 20, 123, 1, [[i, -i] for i in range(20)], version=1)
EMG_FRAME_2CH_V2 = _emg_frame(65535, 2**32 - 20, 123, 1, [[i, -i] for i in range(20)])
VALID_PACKETS = [
    *(_hrm_packet(f, 200, 7, (1000, 900, 800)) for f in range(32)),
    bytes([0xF0, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 0x82, 0x00, 0x01, 0x01, 0x0E, 0x00]),
    ECG_FRAME,
    bytes([1, 2, 0xE8, 0x03, 12, 0, 20, 0]) + (4028).to_bytes(4, "little"),
    bytes([0x03, 0x00]) + bytes(8),
    bytes([87, 3, 0, 0, 1]),
    EMG_FRAME_2CH,
    EMG_FRAME_2CH_V2,
    _emg_frame(3, 60, 9, 0, [[i, i, i] for i in range(6)]),
]


def _check(decoder, raw: bytes) -> bool:
    """Run a decoder; True if it accepted the packet, False if it raised DecodeError."""
    try:
        decoder(raw)
    except DecodeError:
        return False
    return True


def test_fuzz_every_truncation_of_valid_packets():
    outcomes = []
    for packet in VALID_PACKETS:
        for cut in range(len(packet) + 1):
            for decoder in DECODERS:
                outcomes.append(_check(decoder, packet[:cut]))
    assert len(outcomes) > 5000
    assert any(outcomes) and not all(outcomes)


def test_fuzz_truncations_are_rejected_where_the_layout_requires():
    """A truncated HRM, ECG frame or EMG frame never decodes as something shorter by accident."""
    hrm = _hrm_packet(0x1F, 200, 7, (1000,))
    for cut in range(len(hrm)):
        assert not _check(hrs.decode_heart_rate_measurement, hrm[:cut])
    for cut in range(len(ECG_FRAME)):
        assert _check(pmd.decode_pmd_ecg_frame, ECG_FRAME[:cut]) == (cut >= 13 and (cut - 10) % 3 == 0)
    for cut in range(len(EMG_FRAME_2CH)):
        accepted = _check(lambda r: open_emg.decode_open_emg_frame(r, 2, 1), EMG_FRAME_2CH[:cut])
        assert accepted == (cut >= 19 and (cut - 15) % 4 == 0)
    for cut in range(len(EMG_FRAME_2CH_V2)):
        assert not _check(lambda r: open_emg.decode_open_emg_frame(r, 2, 2), EMG_FRAME_2CH_V2[:cut])


def test_fuzz_random_bytes_rarely_pass_the_v2_crc():
    """About a fifth of random 2-channel frames of a plausible length pass the version 1 layout; the CRC lets
    about 1 in 65,536 of those through."""
    rng = random.Random(13)
    packets = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 100))) for _ in range(20_000)]
    v1 = sum(_check(lambda r: open_emg.decode_open_emg_frame(r, 2, 1), p) for p in packets)
    v2 = sum(_check(lambda r: open_emg.decode_open_emg_frame(r, 2, 2), p) for p in packets)
    assert v1 > 3000 and v2 == 0


def test_fuzz_random_bytes():
    rng = random.Random(20240601)
    accepted = 0
    for _ in range(3000):
        raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 260)))
        for decoder in DECODERS:
            accepted += _check(decoder, raw)
    assert accepted > 0


def test_fuzz_bit_flips_of_valid_packets():
    rng = random.Random(7)
    outcomes = []
    for packet, decoder in itertools.product(VALID_PACKETS, DECODERS):
        for _ in range(20):
            raw = bytearray(packet)
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
            outcomes.append(_check(decoder, bytes(raw)))
    assert len(outcomes) > 5000 and any(outcomes) and not all(outcomes)
