"""OpenBCI Ganglion over BLE: packet decoder, sample counter with compression resets, driver (``devices/ganglion.toml``).

Sources (read, not copied): OpenBCI's "Ganglion Data Format" documentation (docs.openbci.com,
GanglionDataFormat), the firmware OpenBCI_Ganglion_Library (``compressData18/19``,
``sendCompressedPacket18/19``, ``processData``), and for cross-checks BrainFlow's
``ganglion_native_v2.cpp`` / ``ganglion_native_v3.cpp``.

Every notification is 20 bytes: a packet ID, then data whose layout the ID gives.

Firmware 2 (delta compression, ``sampleCounter`` 0..200, 201 samples per cycle):

| ID | content |
| --- | --- |
| 0 | the cycle's sample 0 uncompressed: 4 × 24-bit two's complement, big-endian (the reset packet) |
| 1-100 | 18-bit deltas of samples 2k-1 and 2k (k = ID), 4 channels each, MSB-first bit stream; byte 19 accelerometer |
| 101-200 | 19-bit deltas of samples 2k-1 and 2k (k = ID - 100) |
| 201-205 | impedance of channel 1-4 / reference, ASCII ending in 'Z' |
| 206, 207 | part / end of an ASCII message |

A delta is ``previous - new``; its field holds the delta's low 18 or 19 bits with bit 0 replaced by the
sign: a field with bit 0 set is negative (subtract 2^bits), whatever its top bit. A sample is only known
when every packet since the last reset packet arrived: after a lost packet the samples up to the next
ID 0 are unknown, and this module marks them as missing rather than guessing them.

Firmware 3 sends absolute values, no reset packet: ID 0-99 are 18-bit and 100-199 are 19-bit fields of
samples 2k and 2k+1 (k = ID mod 100), each the 24-bit sample's top bits (shift left by 6 or 5) with the
sign in bit 0 as above. Each packet stands alone: a lost packet loses its two samples only.

Scale: the MCP3912 ADC (24-bit, V_ref 1.2 V, its factor 1.5) behind a front-end gain of 51 gives
``1.2 / (8388607 · 1.5 · 51)`` V per count (the OpenBCI page prints the formula with ``*`` where it
divides; BrainFlow's ``eeg_scale`` has the division).

Commands are single ASCII bytes written to the Send characteristic: ``b`` start streaming, ``s`` stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from biofeedback.sensors.protocols.base import DecodeError, ProtocolSpec, SampledDriver
from biofeedback.sensors.source import SensorError
from biofeedback.sensors.timing import FrameMark
from biofeedback.stream import NS_PER_S, Block, BlockFlag, StreamKind

if TYPE_CHECKING:
    from bleak import BleakClient

    from biofeedback.sensors.ble import BleSource

GANGLION_PACKET_BYTES = 20
GANGLION_CHANNELS = 4
GANGLION_RATE_HZ = 200
GANGLION_START = b"b"
GANGLION_STOP = b"s"
GANGLION_UV_PER_COUNT = 1.2e6 / (8388607.0 * 1.5 * 51.0)
"""µV at the electrodes per ADC count (MCP3912, V_ref 1.2 V, gain 51)."""
GANGLION_FIRMWARES = (2, 3)
SOFTWARE_REVISION_UUID = "00002a28-0000-1000-8000-00805f9b34fb"
"""Device Information: Software Revision String; its first digit names the firmware's major version."""
V2_CYCLE_SAMPLES = 201
"""Firmware 2: samples per reset cycle (the reset packet's one sample and 100 packets of two)."""
V3_CYCLE_SAMPLES = 200
CYCLE_LOST_FRACTION = 0.75
"""Whole cycles of packets count as lost when the time since the last packet exceeds what the IDs explain by more
than this fraction of a cycle (a late packet is likelier than a second without any: the link would have dropped)."""
ARRIVAL_LEAD_TOLERANCE_S = 0.25
"""A packet whose ID puts it more than this ahead of what the time since the last packet allows is not believed
(the Ganglion sends no CRC: a damaged packet shows only through an impossible ID)."""


@dataclass(frozen=True, eq=False)
class GanglionPacket:
    """One decoded notification."""

    packet_id: int
    kind: str
    """"reset" (firmware 2, ID 0), "delta" (firmware 2), "absolute" (firmware 3), "impedance" or "ascii"."""
    values: np.ndarray
    """(samples, 4) int64: ADC counts ("reset", "absolute") or deltas previous - new ("delta"); (0, 4) otherwise."""
    position: int
    """Index of the first sample within its cycle; -1 for impedance and ASCII packets."""
    text: str = ""
    """Impedance (ohms, as sent) or the ASCII message part."""


def ganglion_field(value: int, bits: int) -> int:
    """A compressed field as a signed integer: bit 0 is the sign (OpenBCI's convert18/19bitAsInt32)."""
    return value - (1 << bits) if value & 1 else value


def _fields(payload: bytes, bits: int, count: int) -> np.ndarray:
    stream = int.from_bytes(payload, "big")
    total = len(payload) * 8
    mask = (1 << bits) - 1
    out = [ganglion_field((stream >> (total - bits * (i + 1))) & mask, bits) for i in range(count)]
    return np.array(out, dtype=np.int64).reshape(-1, GANGLION_CHANNELS)


def decode_ganglion_packet(data: bytes | bytearray | memoryview, firmware: int = 2) -> GanglionPacket:
    """Decode one 20-byte notification of a Ganglion running firmware ``firmware`` (2 or 3)."""
    raw = bytes(data)
    if firmware not in GANGLION_FIRMWARES:
        raise ValueError(f"Ganglion firmware {firmware} unknown; this program reads {GANGLION_FIRMWARES}")
    if not raw:
        raise DecodeError("Ganglion packet: empty notification")
    pid = raw[0]
    if 201 <= pid <= 207:
        text = raw[1:].split(b"Z")[0].decode("ascii", "replace") if pid <= 205 else raw[1:].decode("ascii", "replace")
        return GanglionPacket(pid, "impedance" if pid <= 205 else "ascii", np.zeros((0, 4), np.int64), -1, text)
    if len(raw) != GANGLION_PACKET_BYTES:
        raise DecodeError(f"Ganglion packet: {len(raw)} bytes, data packets have {GANGLION_PACKET_BYTES}")
    if firmware == 2:
        if pid == 0:
            counts = [int.from_bytes(raw[1 + 3 * c:4 + 3 * c], "big", signed=True) for c in range(GANGLION_CHANNELS)]
            return GanglionPacket(pid, "reset", np.array([counts], dtype=np.int64), 0)
        if pid > 200:
            raise DecodeError(f"Ganglion packet: ID {pid} is not a firmware 2 packet (0-207)")
        bits, k = (18, pid) if pid <= 100 else (19, pid - 100)
        return GanglionPacket(pid, "delta", _fields(raw[1:1 + bits], bits, 8), 2 * k - 1)
    if pid >= 200:
        raise DecodeError(f"Ganglion packet: ID {pid} is not a firmware 3 packet (0-199, 201-207)")
    bits = 18 if pid < 100 else 19
    values = _fields(raw[1:1 + bits], bits, 8) << (24 - bits)
    return GanglionPacket(pid, "absolute", values, 2 * (pid % 100))


@dataclass(frozen=True, eq=False)
class GanglionSamples:
    """Samples the counter could place: ``counts`` (n, 4) from full sample index ``first_index``."""

    first_index: int
    counts: np.ndarray


class GanglionSampleCounter:
    """Turns decoded packets into samples with a full sample index, and counts what it could not place.

    The index is the count of samples since START: the packet ID gives a sample's place in its cycle,
    and the arrival time picks the cycle (a whole cycle of lost packets leaves the IDs where they were).
    Firmware 2 samples after a lost packet stay unknown until the next reset packet (``unknown_packets``);
    a packet whose ID is too far ahead for its arrival time is not believed (``implausible_packets``).
    """

    def __init__(self, firmware: int = 2, rate_hz: float = GANGLION_RATE_HZ) -> None:
        self.firmware = firmware
        self.rate_hz = rate_hz
        self.cycle = V2_CYCLE_SAMPLES if firmware == 2 else V3_CYCLE_SAMPLES
        self.next_index: int | None = None
        """Index of the sample after the newest placed packet's last; None before the first."""
        self._arrival_s = 0.0
        self._last: np.ndarray | None = None
        """Firmware 2: counts of the newest known sample (the delta chain); None while the chain is broken."""
        self.unknown_packets = 0
        self.implausible_packets = 0

    def push(self, packet: GanglionPacket, arrival_s: float) -> GanglionSamples | None:
        """Place a packet that arrived at ``arrival_s`` (s); the samples it makes known, or None."""
        if packet.position < 0:
            return None
        n = packet.values.shape[0]
        if self.next_index is None:
            index = packet.position
        else:
            index = self._index(packet.position, arrival_s)
            if index is None:
                self.implausible_packets += 1
                return None
        follows = self.next_index is not None and index == self.next_index
        self.next_index = index + n
        self._arrival_s = arrival_s
        if packet.kind == "absolute":
            return GanglionSamples(index, packet.values)
        if packet.kind == "reset":
            self._last = packet.values[0]
            return GanglionSamples(index, packet.values)
        if not follows or self._last is None:
            self._last = None
            self.unknown_packets += 1
            return None
        first = self._last - packet.values[0]
        second = first - packet.values[1]
        self._last = second
        return GanglionSamples(index, np.stack((first, second)))

    def _index(self, position: int, arrival_s: float) -> int | None:
        """The full index of a packet at ``position`` of its cycle: the first after the last packet, plus the whole
        cycles the arrival time says were lost (``CYCLE_LOST_FRACTION``); None when it is too far ahead of its time."""
        expected = self.next_index
        candidate = expected - expected % self.cycle + position
        if candidate < expected:
            candidate += self.cycle
        by_time = expected + (arrival_s - self._arrival_s) * self.rate_hz
        candidate += self.cycle * max(0, int(np.floor((by_time - candidate) / self.cycle + 1 - CYCLE_LOST_FRACTION)))
        if candidate > by_time + ARRIVAL_LEAD_TOLERANCE_S * self.rate_hz:
            return None
        return candidate


def firmware_from_revision(text: str, default: int) -> int:
    """The firmware major version named by a Software Revision String ("3.1.2" -> 3), else ``default``."""
    head = text.strip().lstrip("vV")[:1]
    return int(head) if head.isdigit() and int(head) in GANGLION_FIRMWARES else default


class GanglionDriver(SampledDriver):
    """OpenBCI Ganglion: write 'b', decode packets, place samples by packet ID and arrival, mark what is unknown."""

    stream = StreamKind.EMG

    def __init__(self, source: BleSource) -> None:
        settings = source.profile.settings
        super().__init__(source, float(settings.get("sample_rate_hz", GANGLION_RATE_HZ)))
        self.firmware = int(settings.get("firmware", 2))
        mask = int(settings.get("channel_mask", 3))
        self.columns = [c for c in range(8) if mask >> c & 1]
        self.channels = source.profile.stream(StreamKind.EMG).channels
        self.counter = GanglionSampleCounter(self.firmware, self.nominal_rate_hz)

    async def setup(self, client: BleakClient) -> None:
        p = self.profile
        if self.columns and self.columns[-1] >= GANGLION_CHANNELS:
            raise SensorError(f"{self.source.name}: channel_mask in {p.path.name} enables channels the Ganglion does not "
                              f"have (it has {GANGLION_CHANNELS}); fix settings.channel_mask")
        if self.firmware not in GANGLION_FIRMWARES:
            raise SensorError(f"{self.source.name}: settings.firmware {self.firmware} in {p.path.name} is not a Ganglion "
                              f"packet format this program reads; use 2 or 3")
        try:
            revision = bytes(await client.read_gatt_char(SOFTWARE_REVISION_UUID)).decode("utf-8", "replace")
            self.firmware = firmware_from_revision(revision, self.firmware)
            self.source.status.device_info["software_revision"] = revision
        except Exception:  # no Device Information service: keep the profile's firmware setting
            pass
        self.counter = GanglionSampleCounter(self.firmware, self.nominal_rate_hz)
        self.source.status.rate_hz[StreamKind.EMG] = self.nominal_rate_hz
        await client.start_notify(p.uuid("ganglion", "receive"), self._on_data)
        await client.write_gatt_char(p.uuid("ganglion", "send"), GANGLION_START, response=False)

    def on_link_lost(self) -> None:
        super().on_link_lost()
        self.counter = GanglionSampleCounter(self.firmware, self.nominal_rate_hz)

    def _on_data(self, _char: Any, data: bytearray) -> None:
        host_ns = self.clock.now_ns()
        raw = bytes(data)
        if (packet := self.decode(decode_ganglion_packet, raw, self.firmware)) is None:
            return
        implausible = self.counter.implausible_packets
        samples = self.counter.push(packet, host_ns / NS_PER_S)
        if self.counter.implausible_packets > implausible:
            self.source.decode_error(DecodeError(f"Ganglion packet ID {packet.packet_id}: too far ahead for its arrival "
                                                 "time (damaged, or a stale packet): not taken"))
        if samples is None:
            return
        fs = self.nominal_rate_hz
        n = samples.counts.shape[0]
        first_dev_s = samples.first_index / fs  # the ADC's sample clock is the only device clock the Ganglion has
        mark = FrameMark(first_dev_s, first_dev_s + (n - 1) / fs, host_ns / NS_PER_S, n, samples.first_index)
        for taken, (s, r, h, pid) in self.admit(mark, (samples, raw, host_ns, packet.packet_id)):
            self._take(taken, s, r, h, pid)

    def _take(self, mark: FrameMark, samples: GanglionSamples, raw: bytes, host_ns: int, packet_id: int) -> None:
        fs, n, first = self.nominal_rate_hz, mark.n, mark.first_index
        self.fit.add(mark.first_device_s, mark.arrival_s - (n - 1) / fs)
        lost = None if self.anchor is None else first - (self.anchor.first_index + self.anchor.n)
        times = self.place(mark.first_device_s, n, 1.0 / fs, lost)
        self.anchor = mark
        uv = samples.counts[:, self.columns] * GANGLION_UV_PER_COUNT
        self.source.emit(Block(StreamKind.EMG, self.source.name, host_ns, uv, rate_hz=fs, first_index=first,
                               seq=packet_id, flags=BlockFlag.AFTER_GAP if lost else 0, channels=self.channels,
                               raw=raw, times_s=times))


SPEC = ProtocolSpec(
    name="ganglion",
    gatt_table="ganglion",
    roles=("service", "receive", "send"),
    streams=(StreamKind.EMG,),
    settings={"sample_rate_hz": "u16", "channel_mask": "u8", "firmware": "u8"},
    driver=GanglionDriver,
    rate_setting=(StreamKind.EMG, "sample_rate_hz"),
    channel_mask_setting=(StreamKind.EMG, "channel_mask"),
)
