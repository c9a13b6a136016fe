"""BITalino (r)evolution decoder, byte stream reassembly and commands, checked on bytes built by hand.

Every expected byte comes from PLUX's Android API (github.com/BITalinoWorld/revolution-android-api,
api/src/main/java/info/plux/pluxapi/bitalino/): ``BITalino.java`` (commands), ``BITalinoCommunication.java``
(``calculateTotalBytes``), ``BITalinoFrameDecoder.java`` (value positions counted back from the last byte j),
``BITalinoCRC.java`` (the CRC-4 nibble table, restated below as the oracle) and ``BITalinoStateDecoder.java``.
"""

from __future__ import annotations

import numpy as np
import pytest

from biofeedback.sensors.protocols.base import DecodeError
from biofeedback.sensors.protocols.bitalino import (
    BitalinoFrameReader,
    bitalino_crc4,
    bitalino_frame_bytes,
    bitalino_rate_command,
    bitalino_start_command,
    bitalino_state_command,
    bitalino_stop_command,
    bitalino_version_command,
    decode_bitalino_frame,
    decode_bitalino_state,
    decode_bitalino_version,
    frames_lost,
    frames_lost_by_bytes,
)

# BITalinoCRC.java: CRC4tab, the table of x^4 * v mod (x^4 + x + 1).
PLUX_CRC4_TABLE = (0x0, 0x3, 0x6, 0x5, 0xC, 0xF, 0xA, 0x9, 0xB, 0x8, 0xD, 0xE, 0x7, 0x4, 0x1, 0x2)


def plux_crc4(data: bytes) -> int:
    """``BITalinoCRC.getCRC4`` step by step: both nibbles of every byte but the last, then its high nibble, then 0."""
    crc = 0
    for byte in data[:-1]:
        crc = PLUX_CRC4_TABLE[crc] ^ (byte >> 4)
        crc = PLUX_CRC4_TABLE[crc] ^ (byte & 0x0F)
    crc = PLUX_CRC4_TABLE[crc] ^ (data[-1] >> 4)
    return PLUX_CRC4_TABLE[crc]


def with_crc(frame: bytes) -> bytes:
    return frame[:-1] + bytes([frame[-1] & 0xF0 | plux_crc4(frame)])


def three_channel_frame(seq: int, a1: int, a2: int, a3: int, digital: int = 0) -> bytes:
    """6 bytes (calculateTotalBytes: ceil((12 + 30) / 8)); j = 5, per BITalinoFrameDecoder.java."""
    b = [0] * 6
    b[5] = seq << 4
    b[4] = digital << 4 | a1 >> 6
    b[3] = (a1 & 0x3F) << 2 | a2 >> 8
    b[2] = a2 & 0xFF
    b[1] = a3 >> 2
    b[0] = (a3 & 0x3) << 6
    return with_crc(bytes(b))


def test_frame_lengths_follow_calculate_total_bytes():
    assert [bitalino_frame_bytes(k) for k in range(1, 7)] == [3, 4, 6, 7, 8, 8]
    with pytest.raises(ValueError):
        bitalino_frame_bytes(7)


def test_a_three_channel_frame_built_by_hand():
    # A1 = 683 (0x2AB), A2 = 341 (0x155), A3 = 1023, digital I1..O2 = 1,0,1,0, sequence 5.
    frame = bytes([0xC0, 0xFF, 0x55, 0xAD, 0xAA, 0x50])
    frame = with_crc(frame)
    assert frame == three_channel_frame(5, 683, 341, 1023, digital=0b1010)
    f = decode_bitalino_frame(frame, 3)
    assert (f.seq, f.digital, f.analog) == (5, (1, 0, 1, 0), (683, 341, 1023))


def test_six_channels_with_6_bit_a5_a6():
    # 8 bytes, j = 7: A4 straddles j-5/j-6, A5 j-6/j-7 (6 bits), A6 the low 6 bits of j-7.
    a = (1, 2, 3, 0x3A5, 0x2D, 0x1B)
    b = [0] * 8
    b[7] = 9 << 4
    b[6] = a[0] >> 6
    b[5] = (a[0] & 0x3F) << 2 | a[1] >> 8
    b[4] = a[1] & 0xFF
    b[3] = a[2] >> 2
    b[2] = (a[2] & 0x3) << 6 | a[3] >> 4
    b[1] = (a[3] & 0xF) << 4 | a[4] >> 2
    b[0] = (a[4] & 0x3) << 6 | a[5]
    f = decode_bitalino_frame(with_crc(bytes(b)), 6)
    assert f.seq == 9 and f.analog == a


def test_crc4_equals_plux_table_on_random_frames_and_a_bad_crc_is_refused():
    rng = np.random.default_rng(3)
    for _ in range(500):
        frame = rng.integers(0, 256, int(rng.integers(3, 9)), dtype=np.uint8).tobytes()
        assert bitalino_crc4(frame) == plux_crc4(frame)
    good = three_channel_frame(0, 1, 2, 3)
    bad = good[:-1] + bytes([good[-1] ^ 0x01])
    with pytest.raises(DecodeError, match="CRC-4"):
        decode_bitalino_frame(bad, 3)
    with pytest.raises(DecodeError, match="bytes"):
        decode_bitalino_frame(good[:5], 3)


def test_one_byte_commands():
    # BITalino.java: SET_FREQ 0x03/0x43/0x83/0xC3; START 1 | 1 << (2 + channel) for 0-based channels; STOP 0x00;
    # VERSION 0x07; STATE 0x0B.
    assert [bitalino_rate_command(r) for r in (1, 10, 100, 1000)] == [b"\x03", b"\x43", b"\x83", b"\xC3"]
    assert bitalino_start_command((1, 2, 3)) == bytes([0x01 | 0b111 << 2])
    assert bitalino_start_command((6,)) == bytes([0x01 | 1 << 7])
    assert (bitalino_stop_command(), bitalino_version_command(), bitalino_state_command()) == (b"\x00", b"\x07", b"\x0b")
    with pytest.raises(ValueError, match="1, 10, 100 or 1000"):
        bitalino_rate_command(500)
    with pytest.raises(ValueError, match="A1-A6"):
        bitalino_start_command((0,))


def test_state_reply_and_version():
    # BITalinoStateDecoder.java (17 bytes, firmware >= 5.2), j = 16: A1 = b[11] << 8 | b[10] ... A6 = b[1] << 8 | b[0];
    # battery b[13] << 8 | b[12]; threshold b[14]; analog output b[15]; digital bits 7-4 and CRC in b[16].
    raw = bytearray(17)
    for i, value in enumerate((601, 602, 603, 604, 605, 606)):
        raw[10 - 2 * i] = value & 0xFF
        raw[11 - 2 * i] = value >> 8
    raw[12], raw[13], raw[14], raw[15], raw[16] = 0x7A, 0x03, 7, 200, 0b0110 << 4
    state = decode_bitalino_state(with_crc(bytes(raw)))
    assert state.analog == (601, 602, 603, 604, 605, 606)
    assert (state.battery, state.battery_threshold, state.analog_output, state.digital) == (0x37A, 7, 200, (0, 1, 1, 0))
    with pytest.raises(DecodeError):
        decode_bitalino_state(bytes(raw[:12]))
    assert decode_bitalino_version(b"BITalino_v5.2\n") == 5.2
    with pytest.raises(DecodeError, match="BITalino_v5.2"):
        decode_bitalino_version(b"\x10\x22garbage")


def stream(n: int, first_seq: int = 0) -> tuple[bytes, list[tuple[int, int, int]]]:
    values = [(i % 1024, (3 * i) % 1024, (7 * i + 5) % 1024) for i in range(n)]
    return b"".join(three_channel_frame((first_seq + i) % 16, *v) for i, v in enumerate(values)), values


def test_frames_split_across_notifications_and_the_sequence_wrap():
    data, values = stream(50, first_seq=11)
    reader = BitalinoFrameReader(3)
    frames = []
    for at in range(0, len(data), 7):  # 7-byte notifications: every frame boundary falls inside one
        frames += reader.feed(data[at:at + 7])
    # Each frame is taken once the next one has arrived and follows it: all but the last.
    assert [f.analog for f in frames] == values[:-1]
    assert [f.seq for f in frames] == [(11 + i) % 16 for i in range(49)]  # 15 -> 0 more than once
    assert not any(f.resynced for f in frames) and reader.crc_errors == 0 and reader.skipped_bytes == 0


def test_a_crc_error_is_counted_and_the_stream_resynchronises():
    data, values = stream(40)
    damaged = bytearray(data)
    damaged[6 * 10 + 2] ^= 0x10  # one bit of frame 10
    reader = BitalinoFrameReader(3)
    frames = [f for at in range(0, len(damaged), 20) for f in reader.feed(damaged[at:at + 20])]
    assert reader.crc_errors == 1
    # Frame 9 is not followed by a good frame, so it goes with the damaged one; of the three good frames that
    # resynchronise the reader the first is given up too (the gap after frame 8 counts all three).
    assert [f.analog for f in frames] == values[:9] + values[12:-1]
    after = frames[9]
    assert after.resynced and (after.seq - frames[8].seq - 1) % 16 == 3  # three frames missing, by the sequence
    assert reader.skipped_bytes == 18


def test_lost_bytes_are_skipped_and_the_jump_counted_by_the_sequence():
    data, values = stream(60)
    cut = data[:6 * 20 + 4] + data[6 * 25 + 1:]  # frames 20-25 damaged or gone: 21-24 whole, 20 and 25 in part
    reader = BitalinoFrameReader(3)
    frames = [f for at in range(0, len(cut), 19) for f in reader.feed(cut[at:at + 19])]
    assert [f.analog for f in frames] == values[:19] + values[27:-1]
    assert frames[19].resynced and (frames[19].seq - frames[18].seq - 1) % 16 == 8
    assert reader.skipped_bytes == 6 + 4 + 5 + 6


def test_frames_lost_from_the_sequence_and_the_arrival():
    assert frames_lost(0, 0.0, 1000.0, resynced=False) == 0
    assert frames_lost(3, 0.002, 1000.0, resynced=True) == 3
    assert frames_lost(3, 0.019, 1000.0, resynced=True) == 19  # arrival says ~19 frames: 3 + 16
    assert frames_lost(0, 0.016, 1000.0, resynced=True) == 16
    assert frames_lost(5, 0.060, 1000.0, resynced=False) == 53  # 5 + 3 * 16, ~60 by arrival
    assert frames_lost(5, -0.5, 1000.0, resynced=False) == 5  # never fewer than the sequence says


def test_frames_lost_counted_from_the_sequence_and_the_bytes():
    # 6-byte frames in 39-byte notifications; step: bytes received from one frame's start to the next one's.
    assert frames_lost_by_bytes(0, 6, 6, 39, 1000) == 0  # nothing lost
    # One notification dropped, 7 frames with it: the true distance 8 * 6 = 48 = 9 received + 39.
    assert frames_lost_by_bytes(7, 9, 6, 39, 1000) == 7
    # Three dropped, 20 frames: the sequence says 4 (20 mod 16), the bytes (126 = 9 + 3 * 39) say 20, not 4.
    assert frames_lost_by_bytes(4, 9, 6, 39, 1000) == 20
    # 228 frames (35 notifications) would fit too, 208 frames further on: the smallest is taken.
    assert (1 + 228) * 6 - 9 == 35 * 39
    assert frames_lost_by_bytes(4, 9, 6, 39, 15) is None  # nothing up to 15 fits
    assert frames_lost_by_bytes(3, 7, 6, 39, 40) is None  # 3, 19, 35: none fits, the sizes were not all 39


def test_fuzzed_and_truncated_bytes_never_crash_and_are_counted():
    rng = np.random.default_rng(11)
    data, values = stream(200)
    for trial in range(40):
        reader = BitalinoFrameReader(3)
        noisy = bytearray(data)
        for _ in range(int(rng.integers(1, 6))):  # garbage bursts and cuts at random places
            at = int(rng.integers(0, len(noisy)))
            if rng.random() < 0.5:
                noisy[at:at + int(rng.integers(1, 30))] = rng.integers(0, 256, int(rng.integers(1, 30)), dtype=np.uint8).tobytes()
            else:
                del noisy[at:at + int(rng.integers(1, 30))]
        frames = []
        at = 0
        while at < len(noisy):
            n = int(rng.integers(0, 25))
            frames += reader.feed(bytes(noisy[at:at + n]))
            at += n
        taken = {f.analog for f in frames}
        # Almost every frame taken is one that was sent; a window of garbage passes 3 CRCs and 2 sequence checks
        # about once in a million.
        assert len(taken - set(values)) <= 1, trial
        assert len(frames) > 100
        assert reader.crc_errors + reader.skipped_bytes > 0
    reader = BitalinoFrameReader(3)
    random_frames = reader.feed(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    assert len(random_frames) <= 3 and reader.skipped_bytes > 4900
