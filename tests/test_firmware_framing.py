"""The reference firmware's framing module (firmware/open-emg/framing.c), compiled with the host's C compiler and
checked against biofeedback's own open-EMG decoder (sensors/protocols/open_emg.py) and devices/open-emg.md."""

from __future__ import annotations

import ctypes
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

from biofeedback.sensors.protocols.base import DecodeError
from biofeedback.sensors.protocols.open_emg import (
    decode_open_emg_control_response,
    decode_open_emg_frame,
    decode_open_emg_info,
    decode_open_emg_status,
    open_emg_start_command,
    open_emg_stop_command,
    open_emg_time_sync_command,
    unwrap_sample_index,
)

FIRMWARE = pathlib.Path(__file__).resolve().parents[1] / "firmware" / "open-emg"
QUEUE_FRAMES = 12
RATES = (ctypes.c_uint16 * 2)(500, 2000)


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.fail("no C compiler (cc, gcc or clang) on PATH: the firmware's framing module is tested by compiling it; "
                    "install gcc (CI has it)")
    out = tmp_path_factory.mktemp("framing") / "libframing.so"
    subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-O2", "-shared", "-fPIC",
                    f"-DOEMG_QUEUE_FRAMES={QUEUE_FRAMES}", "-o", str(out), str(FIRMWARE / "framing.c")], check=True)
    lib = ctypes.CDLL(str(out))
    lib.oemg_crc16_ccitt_false.restype = ctypes.c_uint16
    lib.oemg_stream_bytes.restype = ctypes.c_size_t
    lib.oemg_next_frame.restype = ctypes.c_size_t
    lib.oemg_handle_control.restype = ctypes.c_size_t
    lib.oemg_sets_for_mtu.restype = ctypes.c_uint16
    lib.oemg_queued.restype = ctypes.c_uint8
    lib.oemg_push_set.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint8]
    lib.oemg_handle_control.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64,
                                        ctypes.c_void_p]
    lib.oemg_lost_sets.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.oemg_encode_info.argtypes = [ctypes.c_void_p, ctypes.c_uint8, ctypes.c_uint8, ctypes.c_uint32, ctypes.c_void_p]
    return lib


class Firmware:
    """One stream of the C module, driven as the firmware drives it."""

    def __init__(self, lib, channels: int = 2, sets_per_frame: int = 20) -> None:
        self.lib = lib
        self.s = ctypes.create_string_buffer(lib.oemg_stream_bytes())
        lib.oemg_init(self.s, channels, 1000, sets_per_frame, RATES, 2)
        self.channels = channels

    def control(self, command: bytes, now_us: int = 0):
        reply = ctypes.create_string_buffer(16)
        n = self.lib.oemg_handle_control(self.s, command, len(command), now_us, reply)
        return decode_open_emg_control_response(reply.raw[:n])

    def push(self, sets: np.ndarray, t0_us: int, rate_hz: int = 1000, flags: int = 0) -> None:
        for k, row in enumerate(np.asarray(sets, dtype=np.int16)):
            buf = (ctypes.c_int16 * len(row))(*row.tolist())
            self.lib.oemg_push_set(self.s, buf, t0_us + k * 1_000_000 // rate_hz, flags)

    def frames(self) -> list[bytes]:
        out = []
        buf = ctypes.create_string_buffer(256)
        while n := self.lib.oemg_next_frame(self.s, buf, 256):
            out.append(buf.raw[:n])
        return out

    def status(self):
        out = ctypes.create_string_buffer(5)
        self.lib.oemg_encode_status(self.s, 87, 3, 0, out)
        return decode_open_emg_status(out.raw)


def test_crc_is_ccitt_false_and_matches_the_profile_example(lib):
    assert lib.oemg_crc16_ccitt_false(b"123456789", 9) == 0x29B1   # open-emg.md 6.4 check value
    # open-emg.md section 6: the documented example frame, CRC 0x387C.
    fw = Firmware(lib)
    assert fw.control(open_emg_start_command(1000, 3)).ok
    fw.lib.oemg_set_sets_per_frame(fw.s, 2)
    fw.lib.oemg_lost_sets(fw.s, 100)   # first_sample_index 100 in the example
    fw.frames()
    fw.push([[10, -10], [300, -1]], 1_000_000)
    [frame] = fw.frames()
    example = bytes.fromhex("0500 64000000 40420f0000000000 00 0a00f6ff2c01ffff 7c38".replace(" ", ""))
    # seq and the overrun flag differ from the example (this stream sent one frame and lost sets before it)
    assert frame[2:14] == example[2:14] and frame[15:-2] == example[15:-2]
    assert lib.oemg_crc16_ccitt_false(example[:-2], len(example) - 2) == 0x387C


def test_frames_decode_with_the_host_decoder_and_carry_index_time_and_samples(lib):
    fw = Firmware(lib)
    reply = fw.control(open_emg_start_command(1000, 3))
    assert reply.ok and reply.op_code == 1
    rng = np.random.default_rng(5)
    sets = rng.integers(-32768, 32767, (100, 2))
    fw.push(sets, 5_000_000)
    frames = [decode_open_emg_frame(f, 2, 2) for f in fw.frames()]
    assert [f.seq for f in frames] == [0, 1, 2, 3, 4]
    assert [f.first_sample_index for f in frames] == [0, 20, 40, 60, 80]
    assert [f.device_time_us for f in frames] == [5_000_000 + 20_000 * k for k in range(5)]
    assert np.array_equal(np.concatenate([f.samples for f in frames]), sets)
    assert not any(f.overrun for f in frames)
    sync = fw.control(open_emg_time_sync_command(), now_us=123_456_789)
    assert sync.device_time_us == 123_456_789


def test_control_status_codes_follow_section_5(lib):
    fw = Firmware(lib)
    assert fw.control(open_emg_stop_command()).status == 3           # not streaming
    assert fw.control(open_emg_start_command(1000, 4)).status == 2   # channel 2 does not exist
    assert fw.control(open_emg_start_command(1234, 3)).status == 2   # unsupported rate
    assert fw.control(b"\x01\xe8").status == 2                        # wrong length
    assert fw.control(b"").op_code == 0 and fw.control(b"").status == 1
    assert fw.control(b"\x7f").status == 1
    assert fw.control(open_emg_start_command(2000, 1)).ok             # one of the other supported rates
    assert fw.control(open_emg_start_command(1000, 3)).status == 3   # already streaming: nothing changes
    fw.push([[7], [8]], 0)
    assert fw.control(open_emg_stop_command()).ok
    assert fw.frames() == []   # STOP discards unsent frames


def test_a_full_queue_drops_whole_oldest_frames_and_says_so(lib):
    fw = Firmware(lib)
    fw.control(open_emg_start_command(1000, 3))
    sets = np.arange(2 * 20 * (QUEUE_FRAMES + 3)).reshape(-1, 2) % 30000
    fw.push(sets, 0)   # the radio sent nothing: 3 frames too many
    assert fw.status().overrun_count == 3
    frames = [decode_open_emg_frame(f, 2, 2) for f in fw.frames()]
    assert len(frames) == QUEUE_FRAMES
    assert [f.seq for f in frames] == list(range(QUEUE_FRAMES))   # seq counts frames sent: contiguous
    assert frames[0].first_sample_index == 60 and frames[0].overrun    # the index stayed honest
    assert not any(f.overrun for f in frames[1:])
    assert np.array_equal(frames[0].samples, sets[60:80])
    # ADC sets lost before framing: the index jumps by them, the next frame says overrun.
    fw.push(sets[:5], 0)
    fw.lib.oemg_lost_sets(fw.s, 7)
    fw.push(sets[:20], 0)
    short, after = (decode_open_emg_frame(f, 2, 2) for f in fw.frames())
    assert short.samples.shape == (5, 2) and short.first_sample_index == 300
    assert after.first_sample_index == 312 and after.overrun and after.seq == QUEUE_FRAMES + 1
    assert fw.status().overrun_count == 4


def test_sample_index_and_seq_wrap_as_the_host_unwraps_them(lib):
    fw = Firmware(lib, channels=1, sets_per_frame=1)
    fw.control(open_emg_start_command(1000, 1))
    fw.lib.oemg_lost_sets(fw.s, 2**32 - 3)
    fw.frames()
    full, next_index, seqs = [], None, []
    for k in range(6):
        fw.push([[k]], k * 1000)
        [f] = [decode_open_emg_frame(raw, 1, 2) for raw in fw.frames()]
        next_index = unwrap_sample_index(f.first_sample_index, next_index)
        full.append(next_index)
        next_index += 1
        seqs.append(f.seq)
    assert full == [2**32 - 3 + k for k in range(6)]          # 4294967293 ... 4294967298, across the wrap
    # seq: 65536 frames later it is back at the same value (u16 wrap).
    for k in range(65536 - 6):
        fw.push([[0]], 0)
        fw.lib.oemg_next_frame(fw.s, ctypes.create_string_buffer(32), 32)
    fw.push([[1]], 0)
    [f] = [decode_open_emg_frame(raw, 1, 2) for raw in fw.frames()]
    assert f.seq == seqs[0]


def test_info_and_mtu_fit(lib):
    fw = Firmware(lib, sets_per_frame=20)
    out = ctypes.create_string_buffer(12)
    lib.oemg_encode_info(fw.s, 12, 0, 4028, out)
    info = decode_open_emg_info(out.raw)
    assert (info.protocol_version, info.channel_count, info.sample_rate_hz, info.adc_bits, info.samples_per_frame,
            info.nv_per_lsb) == (2, 2, 1000, 12, 20, 4028)
    assert lib.oemg_sets_for_mtu(fw.s, 247) == 20     # fits
    assert lib.oemg_sets_for_mtu(fw.s, 23) == 0       # the default MTU holds no two-channel frame with a CRC ...
    assert lib.oemg_sets_for_mtu(fw.s, 64) == 11      # ... (64 - 3 - 17) / 4 sets at MTU 64
    fw.control(open_emg_start_command(1000, 3))
    fw.push(np.zeros((20, 2)), 0)
    frame = fw.frames()[0]
    assert len(frame) == info.frame_bytes(2) == 97    # open-emg.md 6.1: 97 bytes at 20 sets, two channels
    damaged = bytearray(frame)
    damaged[20] ^= 0x01
    with pytest.raises(DecodeError, match="CRC"):
        decode_open_emg_frame(bytes(damaged), 2, 2)
