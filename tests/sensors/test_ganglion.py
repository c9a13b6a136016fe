"""OpenBCI Ganglion decoder and sample counter, from packets written byte by byte from OpenBCI's public definition.

Source of every vector: OpenBCI, "Ganglion Data Format" (docs.openbci.com/Ganglion/GanglionDataFormat), sections
"18bit" and "19bit" under "Example Interpreting Ganglion Data" (the OpenBCI NodeJS driver's test packets with
their expected field values), the Packet ID cheat sheet, and the firmware's compressData19 (delta = last - new,
sign in bit 0, one uncompressed ID-0 packet per 201 samples).
"""

from __future__ import annotations

import numpy as np
import pytest

from biofeedback.sensors.protocols.base import DecodeError
from biofeedback.sensors.protocols.ganglion import (
    GANGLION_UV_PER_COUNT,
    GanglionSampleCounter,
    decode_ganglion_packet,
    firmware_from_revision,
)

# Docs, "18bit", first example (bytes 0-19), expected [[0, 2, 10, 4], [131074, 245760, 114698, 49162]].
DOC_18BIT = bytes([
    0b00000001, 0b00000000, 0b00000000, 0b00000000, 0b00000000, 0b00100000, 0b00000000, 0b00101000,
    0b00000000, 0b00000100, 0b10000000, 0b00000000, 0b10111100, 0b00000000, 0b00000111, 0b00000000,
    0b00101000, 0b11000000, 0b00001010, 0b00001110,
])
# Docs, "18bit", negative example: bytes 0-18 as printed (byte 19, the accelerometer byte, is not printed: 0 here).
DOC_18BIT_NEG = bytes([
    0b00000001, 0b11111111, 0b11111111, 0b01111111, 0b11111111, 0b10111111, 0b11111111, 0b11100111,
    0b11111111, 0b11110101, 0b00000000, 0b00000001, 0b01001111, 0b10001110, 0b00110000, 0b00000000,
    0b00011111, 0b11110000, 0b00000001, 0,
])
# Docs, "19Bit": expected [[0, 2, 10, 4], [262148, 507910, 393222, 8]].
DOC_19BIT = bytes([
    0b01100101, 0b00000000, 0b00000000, 0b00000000, 0b00000000, 0b00001000, 0b00000000, 0b00000101,
    0b00000000, 0b00000000, 0b01001000, 0b00000000, 0b00001001, 0b11110000, 0b00000001, 0b10110000,
    0b00000000, 0b00110000, 0b00000000, 0b00001000,
])
# Docs, "19Bit", negative: expected [[-3, -5, -7, -11], [-262139, -198429, -262137, -4095]].
DOC_19BIT_NEG = bytes([
    0b01100101, 0b11111111, 0b11111111, 0b10111111, 0b11111111, 0b11101111, 0b11111111, 0b11111100,
    0b11111111, 0b11111111, 0b01011000, 0b00000000, 0b00001011, 0b00111110, 0b00111000, 0b11100000,
    0b00000000, 0b00111111, 0b11110000, 0b00000001,
])


def raw_packet(counts) -> bytes:
    """ID 0: four 24-bit two's complement samples, MSB first, then unused bytes (docs: 'Uncompressed Data')."""
    return bytes([0]) + b"".join((c & 0xFFFFFF).to_bytes(3, "big") for c in counts) + bytes(7)


def delta19_packet(packet_id: int, fields) -> bytes:
    """IDs 101-200: eight 19-bit fields, MSB first, as compressData19 packs them (fields already sign-in-bit-0)."""
    bits = "".join(format(f & 0x7FFFF, "019b") for f in fields)
    return bytes([packet_id]) + int(bits, 2).to_bytes(19, "big")


def field19(delta: int) -> int:
    """compressData19: the delta's low 19 bits, with bit 0 overwritten by the sign bit (bit 31)."""
    return (delta & 0x7FFFE) | (1 if delta < 0 else 0)


@pytest.mark.parametrize("packet, expected", [
    (DOC_18BIT, [[0, 2, 10, 4], [131074, 245760, 114698, 49162]]),
    (DOC_18BIT_NEG, [[-3, -5, -7, -11], [-262139, -198429, -262137, -4095]]),
    (DOC_19BIT, [[0, 2, 10, 4], [262148, 507910, 393222, 8]]),
    (DOC_19BIT_NEG, [[-3, -5, -7, -11], [-262139, -198429, -262137, -4095]]),
])
def test_documented_compressed_packets_decode_to_the_documented_fields(packet, expected):
    p = decode_ganglion_packet(packet, firmware=2)
    assert p.kind == "delta"
    assert p.values.tolist() == expected


def test_packet_id_gives_the_sample_numbers_the_docs_give():
    # Docs: "If the Byte Id was 47, Sample 1's sample number is 93"; "If the Byte Id was 104 ... 7 and 8".
    assert decode_ganglion_packet(bytes([47]) + DOC_18BIT[1:]).position == 93
    assert decode_ganglion_packet(bytes([104]) + DOC_19BIT[1:]).position == 7
    assert decode_ganglion_packet(raw_packet([1, -1, 2, -2])).position == 0


def test_reset_packet_is_four_big_endian_24_bit_samples_and_scales_by_the_documented_factor():
    p = decode_ganglion_packet(raw_packet([8388607, -8388608, 1, -1]))
    assert p.kind == "reset" and p.values.tolist() == [[8388607, -8388608, 1, -1]]
    # Scale factor (docs, "Interpreting the EEG Data"): 1.2 V / (8388607 * 1.5 * 51) per count.
    assert GANGLION_UV_PER_COUNT == pytest.approx(1.2 / (8388607 * 1.5 * 51) * 1e6)
    assert 8388607 * GANGLION_UV_PER_COUNT == pytest.approx(1e6 * 1.2 / 1.5 / 51)  # full scale: 15.686 mV


def test_impedance_and_ascii_packets_are_not_samples():
    p = decode_ganglion_packet(bytes([202]) + b"4521Z" + bytes(14))
    assert p.kind == "impedance" and p.text == "4521" and p.position == -1
    assert GanglionSampleCounter().push(p, 0.0) is None


def chain(values: np.ndarray) -> list[bytes]:
    """Firmware 2 packets for consecutive samples (values: (n, 4) counts), one reset cycle from sample 0 on."""
    out, last, pid = [], None, 0
    for s, row in enumerate(values):
        pos = s % 201
        if pos == 0:
            out.append(raw_packet(row.tolist()))
            last, pending = row, []
            continue
        pending.append([field19(int(d)) for d in (last - row)])
        last = row
        if pos % 2 == 0:
            pid = 100 + pos // 2
            out.append(delta19_packet(pid, pending[0] + pending[1]))
            pending = []
    return out


def run(packets, firmware=2, period_s=0.01, drop=()):
    counter = GanglionSampleCounter(firmware)
    got = {}
    for i, pkt in enumerate(packets):
        if i in drop:
            continue
        s = counter.push(decode_ganglion_packet(pkt, firmware), i * period_s)
        if s is not None:
            for k, row in enumerate(s.counts):
                got[s.first_index + k] = row
    return counter, got


def test_a_delta_chain_rebuilds_every_sample_to_within_the_lost_sign_bit():
    rng = np.random.default_rng(3)
    values = np.cumsum(rng.integers(-3000, 3000, (603, 4)), axis=0)  # three whole cycles
    counter, got = run(chain(values))
    assert sorted(got) == list(range(603))
    rebuilt = np.array([got[i] for i in range(603)])
    # bit 0 of every delta is replaced by its sign: each delta is off by at most 1, accumulating within a cycle.
    err = np.abs(rebuilt - values)
    assert err.max() <= 200 and np.all(err[::201] == 0)  # reset packets are exact
    assert counter.unknown_packets == 0 and counter.implausible_packets == 0


def test_a_lost_packet_makes_samples_unknown_until_the_next_reset_and_the_index_stays_exact():
    values = np.cumsum(np.ones((603, 4), dtype=np.int64) * 10, axis=0)
    packets = chain(values)   # cycle: packet 0 = reset, packets 1..100 = IDs 101..200
    counter, got = run(packets, drop={10})   # ID 110: samples 19, 20
    missing = sorted(set(range(603)) - set(got))
    assert missing == list(range(19, 201))   # the lost two and everything until the reset at 201
    assert counter.unknown_packets == 90     # IDs 111..200 arrived but their samples are unknown
    assert got[201].tolist() == values[201].tolist()


def test_a_lost_reset_packet_loses_its_whole_cycle():
    values = np.cumsum(np.ones((603, 4), dtype=np.int64), axis=0)
    counter, got = run(chain(values), drop={101})   # the second cycle's reset packet
    assert sorted(set(range(603)) - set(got)) == list(range(201, 402))
    assert counter.unknown_packets == 100


def test_packet_id_wrap_and_a_whole_lost_cycle_are_placed_by_arrival_time():
    values = np.cumsum(np.ones((201 * 5, 4), dtype=np.int64), axis=0)
    packets = chain(values)   # 101 packets per cycle, 10 ms apart (the raw one is 5 ms, within tolerance)
    counter, got = run(packets, drop=set(range(101, 202)))   # cycle 1 entirely: IDs repeat as if nothing was lost
    assert sorted(set(range(len(values))) - set(got)) == list(range(201, 402))
    assert got[402].tolist() == values[402].tolist()


def test_firmware_3_absolute_packets_stand_alone():
    # BrainFlow ganglion_native_v3.cpp: ID < 100 18-bit fields << 6, 100-199 19-bit fields << 5.
    samples = [[64, -64, 6400, -128], [0, 192, -192, 64]]
    fields = [(v >> 5) & 0x7FFFE | (1 if v < 0 else 0) for row in samples for v in row]
    pkt = delta19_packet(100, fields)
    p = decode_ganglion_packet(pkt, firmware=3)
    assert p.kind == "absolute" and p.position == 0
    # Bit 0 of each field carries the sign, so a sample is known to one field step (2**5 counts for 19 bits).
    assert np.abs(p.values - np.array(samples)).max() <= 1 << 5
    assert p.values[:, 0].tolist() == [64, 0] and p.values[0, 2] == 6400   # positive even fields are exact
    counter = GanglionSampleCounter(3)
    assert counter.push(p, 0.0).first_index == 0
    lost = decode_ganglion_packet(bytes([105]) + pkt[1:], firmware=3)  # IDs 101-104 lost: only their samples
    assert counter.push(lost, 0.05).first_index == 10 and counter.unknown_packets == 0


def test_software_revision_names_the_firmware():
    assert firmware_from_revision("3.1.2", 2) == 3
    assert firmware_from_revision("v2.0.0", 3) == 2
    assert firmware_from_revision("", 2) == 2


def test_random_and_truncated_packets_never_crash_and_are_counted():
    rng = np.random.default_rng(16)
    counter = GanglionSampleCounter(2)
    errors = 0
    good = chain(np.cumsum(np.ones((402, 4), dtype=np.int64), axis=0))
    for i in range(5000):
        if i % 3 == 0:
            pkt = good[int(rng.integers(len(good)))][: int(rng.integers(0, 21))]   # truncated
        else:
            pkt = rng.integers(0, 256, int(rng.integers(0, 25)), dtype=np.uint8).tobytes()
        try:
            counter.push(decode_ganglion_packet(pkt, 2 + i % 2), i * 0.01)
        except DecodeError:
            errors += 1
    assert errors > 3000   # wrong lengths and IDs above 207 are refused with a DecodeError, never an exception
    assert counter.implausible_packets > 0   # decodable nonsense whose ID is impossible for its arrival is counted
    with pytest.raises(DecodeError, match="20"):
        decode_ganglion_packet(DOC_19BIT[:19])
    with pytest.raises(DecodeError, match="ID 230"):
        decode_ganglion_packet(bytes([230]) + bytes(19))


def test_a_ganglion_counts_as_an_emg_sensor_for_sessions_and_home_relaxation():
    from types import SimpleNamespace

    from biofeedback.relax.engine import has_emg_sensor
    from biofeedback.sensors.profiles import load_profiles
    from biofeedback.session.acquisition import choose_sensors

    profiles = load_profiles()
    ganglion, strap = (SimpleNamespace(profile=profiles[n]) for n in ("ganglion", "hrs-strap"))
    assert has_emg_sensor([ganglion, strap]) and not has_emg_sensor([strap])
    assert choose_sensors([strap, ganglion]) == [ganglion, strap]   # one EMG sensor and the heart sensor
