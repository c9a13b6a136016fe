"""Virtual sensors: real GATT servers (bumble) on a ``VirtualRadio``, one per device profile.

Each peripheral encodes its packets from the protocol's specification (the SIG Heart Rate
Measurement, Polar's PMD frames, the open-EMG profile in ``devices/open-emg.md``), runs on its own
device clock (``DeviceClock``: faster than real time at ``speed`` > 1), and injects faults on demand
(``Faults``). ``truth`` keeps what the device generated, so tests can compare it with what the host
received.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from dataclasses import dataclass, field

import numpy as np
from bumble import gatt
from bumble.core import AdvertisingData as AD
from bumble.core import UUID

from biofeedback.sensors.bumble_backend import VirtualRadio
from biofeedback.sensors.profiles import DeviceProfile
from biofeedback.sensors.virtual.signals import BeatGenerator, EmgSynth, HeartScript, TensionScript, ecg_uv

log = logging.getLogger(__name__)

POLAR_EPOCH_UNIX_S = 946684800
"""2000-01-01T00:00:00Z, the epoch of Polar PMD timestamps."""
HRS_NOTIFY_PERIOD_S = 1.0
PACE_MIN_SLEEP_S = 0.002
ADVERTISE_RETRIES = 20


@dataclass
class Faults:
    """Faults a virtual sensor injects, in device seconds."""

    disconnect_at_s: list[float] = field(default_factory=list)
    """Device times at which the sensor drops the link."""
    offline_s: float = 2.0
    """How long the sensor stays unreachable after a drop."""
    drop_rate: float = 0.0
    """Probability that a data packet is lost."""
    corrupt_rate: float = 0.0
    """Probability that a data packet is replaced by garbage."""
    electrode_off: list[tuple[float, float, int]] = field(default_factory=list)
    """(start s, end s, channel) intervals with an electrode off the skin (channel ignored by HR straps)."""
    ecg_start_delay_s: float = 0.0
    """Polar quirk: ECG frames start this long after the start command is acknowledged."""
    drop_after_start: bool = False
    """Polar quirk: the link drops right after the first ECG start."""

    def electrode_off_at(self, t_s: float, channel: int = 0) -> bool:
        return any(a <= t_s < b and (c == channel or c < 0) for a, b, c in self.electrode_off)


class DeviceClock:
    """A device's own clock: real time since power-on, times ``speed``, with a rate error in ppm."""

    def __init__(self, speed: float = 1.0, drift_ppm: float = 0.0) -> None:
        self.speed = speed
        self.rate = speed * (1.0 + drift_ppm * 1e-6)
        self._t0 = time.monotonic()

    def now_s(self) -> float:
        return (time.monotonic() - self._t0) * self.rate

    def wall_s(self, device_s: float) -> float:
        return device_s / self.rate


def _chr(uuid: str, props: gatt.Characteristic.Properties, value: object = b"") -> gatt.Characteristic:
    perms = gatt.Characteristic.READABLE | gatt.Characteristic.WRITEABLE
    return gatt.Characteristic(UUID(uuid), props, perms, value)


class VirtualPeripheral:
    """Common part: GATT server, advertising, connection state, pacing and fault bookkeeping."""

    model = "virtual"

    def __init__(
        self,
        radio: VirtualRadio,
        profile: DeviceProfile,
        name: str,
        address: str,
        speed: float = 1.0,
        faults: Faults | None = None,
        seed: int = 0,
        drift_ppm: float = 0.0,
    ) -> None:
        self.profile = profile
        self.name = name
        self.address = address
        self.clock = DeviceClock(speed, drift_ppm)
        self.faults = faults or Faults()
        self.rng = np.random.default_rng(seed)
        self.device = radio.new_device(name, address)
        self.device.on("connection", self._on_connection)
        self.connection = None
        self.counters = {"sent": 0, "dropped": 0, "corrupted": 0, "disconnects": 0, "connections": 0}
        self._pending_disconnects = sorted(self.faults.disconnect_at_s)
        self._offline_until_s = -1.0
        self._tasks: list[asyncio.Task] = []
        self.battery_pct = 87
        self.device.add_service(
            gatt.Service(
                UUID.from_16_bits(0x180A),
                [
                    _chr("2A29", gatt.Characteristic.Properties.READ, b"biofeedback virtual sensors"),
                    _chr("2A24", gatt.Characteristic.Properties.READ, self.model.encode()),
                    _chr("2A26", gatt.Characteristic.Properties.READ, b"virtual-1.0"),
                ],
            )
        )
        self._battery = _chr("2A19", gatt.Characteristic.Properties.READ | gatt.Characteristic.Properties.NOTIFY,
                             gatt.CharacteristicValue(read=lambda _c: bytes([self.battery_pct])))
        self.device.add_service(gatt.Service(UUID.from_16_bits(0x180F), [self._battery]))

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        await self.device.power_on()
        await self._advertise()
        self._tasks.append(asyncio.create_task(self._run(), name=f"virtual {self.name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        if self.connection is not None:
            try:
                await self.connection.disconnect()
            except Exception:
                pass

    def advertised_services(self) -> list[str]:
        return [u for u in self.profile.services]

    async def _advertise(self) -> None:
        uuids16 = b"".join(
            struct.pack("<H", int(u[4:8], 16)) for u in self.advertised_services() if u.endswith("-0000-1000-8000-00805f9b34fb")
        )
        uuids128 = b"".join(
            UUID(u).to_bytes(force_128=True) for u in self.advertised_services() if not u.endswith("-0000-1000-8000-00805f9b34fb")
        )
        fields = [(AD.FLAGS, bytes([0x06]))]
        if uuids16:
            fields.append((AD.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS, uuids16))
        if uuids128:
            fields.append((AD.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS, uuids128))
        # The name goes in the advertisement itself, shortened to fit 31 bytes: bumble's virtual
        # controller answers scan requests with the advertising data, not the scan response.
        room = 31 - len(bytes(AD(fields))) - 2
        name = self.name.encode()
        fields.append((AD.COMPLETE_LOCAL_NAME, name) if len(name) <= room else (AD.SHORTENED_LOCAL_NAME, name[:room]))
        await self.device.start_advertising(
            advertising_data=bytes(AD(fields)),
            scan_response_data=bytes(AD([(AD.COMPLETE_LOCAL_NAME, self.name.encode())])),
            advertising_interval_min=20.0,
            advertising_interval_max=20.0,
        )

    def _on_connection(self, connection) -> None:
        self.connection = connection
        self.counters["connections"] += 1
        connection.on("disconnection", lambda reason: asyncio.get_running_loop().create_task(self._on_disconnection()))
        self.on_connected()

    async def _on_disconnection(self) -> None:
        self.connection = None
        self.on_disconnected()
        wait = max(0.0, self._offline_until_s - self.clock.now_s())
        if wait:
            await asyncio.sleep(self.clock.wall_s(wait))
        for _ in range(ADVERTISE_RETRIES):
            try:
                await self._advertise()
                return
            except Exception as exc:  # controller busy with the old link, or the radio is shutting down
                log.debug("%s: advertising not restarted yet: %s", self.name, exc)
                await asyncio.sleep(0.05)

    def on_connected(self) -> None:
        """Device-specific reaction to a new connection."""

    def on_disconnected(self) -> None:
        """Device-specific reaction to a lost connection (firmware forgets its start command)."""

    async def force_disconnect(self, offline_s: float | None = None) -> None:
        """Drop the link now and stay unreachable for ``offline_s`` device seconds."""
        if self.connection is None:
            return
        self.counters["disconnects"] += 1
        self._offline_until_s = self.clock.now_s() + (self.faults.offline_s if offline_s is None else offline_s)
        try:
            await self.connection.disconnect()
        except Exception as exc:
            log.debug("%s: disconnect failed: %s", self.name, exc)

    # --- data path -------------------------------------------------------------------------
    async def _run(self) -> None:
        period = self.tick_s()
        while True:
            now = self.clock.now_s()
            if self._pending_disconnects and now >= self._pending_disconnects[0]:
                self._pending_disconnects.pop(0)
                await self.force_disconnect()
            await self.produce(now)
            await asyncio.sleep(max(PACE_MIN_SLEEP_S, self.clock.wall_s(period)))

    def tick_s(self) -> float:
        """Device seconds between production steps."""
        raise NotImplementedError

    async def produce(self, now_s: float) -> None:
        """Generate everything due up to device time ``now_s`` and send it if someone listens."""
        raise NotImplementedError

    async def send(self, characteristic: gatt.Characteristic, packet: bytes) -> None:
        """Notify ``packet`` unless the link is down or a fault drops or corrupts it."""
        if self.connection is None:
            return
        if self.faults.drop_rate and self.rng.random() < self.faults.drop_rate:
            self.counters["dropped"] += 1
            return
        if self.faults.corrupt_rate and self.rng.random() < self.faults.corrupt_rate:
            self.counters["corrupted"] += 1
            packet = self.rng.integers(0, 256, int(self.rng.integers(0, len(packet) + 1)), dtype=np.uint8).tobytes()
        try:
            await self.device.notify_subscribers(characteristic, packet)
        except Exception as exc:  # link went down mid-send
            log.debug("%s: notify failed: %s", self.name, exc)
            return
        self.counters["sent"] += 1

    async def indicate_later(self, characteristic: gatt.Characteristic, packet: bytes) -> None:
        """Answer a control-point write by indication once the write response is out."""
        await asyncio.sleep(0)
        if self.connection is not None:
            try:
                await self.device.indicate_subscriber(self.connection, characteristic, packet)
            except Exception as exc:
                log.debug("%s: indication failed: %s", self.name, exc)


class HeartRateServer:
    """The Bluetooth SIG Heart Rate Service part of a strap: one notification per second."""

    def __init__(self, owner: VirtualPeripheral, heart: BeatGenerator) -> None:
        self.owner = owner
        self.beats = heart
        self.measurement = _chr(owner.profile.uuid("hrs", "measurement"), gatt.Characteristic.Properties.NOTIFY)
        owner.device.add_service(gatt.Service(UUID(owner.profile.uuid("hrs", "service")), [self.measurement]))
        self._next_notify_s = HRS_NOTIFY_PERIOD_S
        self._energy_kj = 0
        self.beat_times_s: list[float] = []
        self.beat_rr_ms: list[float] = []
        """Every beat the heart made (generated ahead of time, so the ECG can draw it)."""
        self._reported = 0

    def beats_ahead(self, until_s: float) -> np.ndarray:
        """Beat times generated up to ``until_s``; the newest few, for drawing an ECG."""
        times, rrs = self.beats.until(until_s)
        self.beat_times_s.extend(times.tolist())
        self.beat_rr_ms.extend(rrs.tolist())
        return np.array(self.beat_times_s[-12:])

    def encode(self, hr_bpm: int, rr_ms: np.ndarray, contact: bool, with_energy: bool) -> bytes:
        """Heart Rate Measurement per the SIG specification (flags, HR, energy, RR in 1/1024 s)."""
        flags = 0x04 | (0x02 if contact else 0)
        body = b""
        if hr_bpm > 255:
            flags |= 0x01
            body += struct.pack("<H", hr_bpm)
        else:
            body += struct.pack("<B", hr_bpm)
        if with_energy:
            flags |= 0x08
            body += struct.pack("<H", self._energy_kj)
        if len(rr_ms):
            flags |= 0x10
            body += b"".join(struct.pack("<H", int(round(r * 1024 / 1000))) for r in rr_ms)
        return bytes([flags]) + body

    async def produce(self, now_s: float) -> None:
        while now_s >= self._next_notify_s:
            t = self._next_notify_s
            self._next_notify_s += HRS_NOTIFY_PERIOD_S
            self.beats_ahead(t + 1.0)
            k = self._reported
            while k < len(self.beat_times_s) and self.beat_times_s[k] <= t:
                k += 1
            rrs = np.array(self.beat_rr_ms[self._reported : k])
            self._reported = k
            contact = not self.owner.faults.electrode_off_at(t)
            if k == 0:
                continue
            hr = int(round(60000.0 / np.mean(self.beat_rr_ms[max(0, k - 5) : k])))
            self._energy_kj += 1
            rr_sent = rrs[:9] if contact else np.empty(0)
            packet = self.encode(hr, rr_sent, contact, with_energy=int(t) % 10 == 0)
            await self.owner.send(self.measurement, packet)


class VirtualHeartRateStrap(VirtualPeripheral):
    """Any Heart Rate Service strap."""

    model = "Virtual HRM strap"

    def __init__(self, *args, heart: HeartScript | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hrs = HeartRateServer(self, BeatGenerator(heart or HeartScript(), self.rng))

    def tick_s(self) -> float:
        return 0.25

    async def produce(self, now_s: float) -> None:
        await self.hrs.produce(now_s)


class VirtualPolarH10(VirtualPeripheral):
    """Polar H10: HRS plus the PMD service streaming ECG (130 Hz nominal, true rate set by ``ecg_rate_hz``)."""

    model = "Polar H10 (virtual)"
    SAMPLES_PER_FRAME = 73
    MIN_MTU = 232

    def __init__(self, *args, heart: HeartScript | None = None, ecg_rate_hz: float = 129.6, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hrs = HeartRateServer(self, BeatGenerator(heart or HeartScript(), self.rng))
        props = gatt.Characteristic.Properties
        self.control = _chr(
            self.profile.uuid("polar-pmd", "control"),
            props.READ | props.WRITE | props.INDICATE,
            gatt.CharacteristicValue(read=lambda _c: b"\x0f\x05", write=self._on_control),
        )
        self.data = _chr(self.profile.uuid("polar-pmd", "data"), props.NOTIFY)
        self.device.add_service(gatt.Service(UUID(self.profile.uuid("polar-pmd", "service")), [self.control, self.data]))
        self.ecg_rate_hz = ecg_rate_hz
        self.streaming_from_s: float | None = None
        self._next_sample = 0
        self._first_start_done = False
        self.utc_at_power_on = time.time()

    def tick_s(self) -> float:
        return 0.1

    def _on_control(self, connection, value: bytes) -> None:
        value = bytes(value)
        op = value[0] if value else 0
        mtype = value[1] if len(value) > 1 else 0
        status = 0
        if op == 0x02 and mtype == 0x00:
            if connection.att_mtu < self.MIN_MTU:
                status = 10  # invalid MTU
            elif self.streaming_from_s is not None:
                status = 6  # already in state
            else:
                self.streaming_from_s = self.clock.now_s() + self.faults.ecg_start_delay_s
                self._next_sample = int(np.ceil(self.streaming_from_s * self.ecg_rate_hz))
                if self.faults.drop_after_start and not self._first_start_done:
                    asyncio.get_running_loop().call_later(
                        self.clock.wall_s(0.3), lambda: asyncio.ensure_future(self.force_disconnect())
                    )
                self._first_start_done = True
        elif op == 0x03:
            self.streaming_from_s = None
        elif op == 0x01:
            status = 0
        else:
            status = 1
        asyncio.ensure_future(self.indicate_later(self.control, bytes([0xF0, op, mtype, status, 0])))

    def on_disconnected(self) -> None:
        self.streaming_from_s = None

    def encode_ecg(self, last_sample_ns: int, samples_uv: np.ndarray) -> bytes:
        """PMD ECG frame: type 0, timestamp of the last sample (ns since 2000), frame type 0, int24 µV."""
        out = bytearray(struct.pack("<BQB", 0x00, last_sample_ns, 0x00))
        for v in np.clip(np.round(samples_uv), -(2**23), 2**23 - 1).astype(np.int64):
            out += int(v).to_bytes(3, "little", signed=True)
        return bytes(out)

    def sample_time_s(self, index: np.ndarray | int) -> np.ndarray:
        return np.asarray(index, dtype=float) / self.ecg_rate_hz

    async def produce(self, now_s: float) -> None:
        await self.hrs.produce(now_s)
        if self.streaming_from_s is None or now_s < self.streaming_from_s:
            return
        due = int(now_s * self.ecg_rate_hz)
        while due - self._next_sample >= self.SAMPLES_PER_FRAME:
            idx = np.arange(self._next_sample, self._next_sample + self.SAMPLES_PER_FRAME)
            self._next_sample += self.SAMPLES_PER_FRAME
            t = self.sample_time_s(idx)
            ecg = ecg_uv(t, self.hrs.beats_ahead(t[-1] + 1.0), self.rng)
            if self.faults.electrode_off_at(float(t[0])):
                ecg = self.rng.normal(0, 3.0, ecg.shape)
            last_ns = int(round((self.utc_at_power_on - POLAR_EPOCH_UNIX_S + t[-1]) * 1e9))
            await self.send(self.data, self.encode_ecg(last_ns, ecg))
            await asyncio.sleep(0)


class VirtualOpenEmg(VirtualPeripheral):
    """Open-EMG sensor (``devices/open-emg.md``): two channels, int16 samples, 20 samples a frame."""

    model = "OpenEMG virtual (MyoWare 2.0 front end)"
    PROTOCOL_VERSION = 1
    ADC_BITS = 16
    NV_PER_LSB = 50  # 0.05 µV per LSB: ±1.6 mV range at the electrode
    SUPPORTED_RATES_HZ = (500, 1000, 2000)

    def __init__(
        self,
        *args,
        tension: TensionScript | None = None,
        sample_rate_hz: int = 1000,
        samples_per_frame: int = 20,
        keep_truth: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.script = tension or TensionScript.constant(40.0, 30.0)
        self.sample_rate_hz = sample_rate_hz
        self.samples_per_frame = samples_per_frame
        self.synth = EmgSynth(sample_rate_hz, self.script, self.rng)
        props = gatt.Characteristic.Properties
        p = self.profile
        self.info = _chr(p.uuid("open-emg", "info"), props.READ, gatt.CharacteristicValue(read=lambda _c: self.encode_info()))
        self.control = _chr(p.uuid("open-emg", "control"), props.WRITE | props.INDICATE,
                            gatt.CharacteristicValue(write=self._on_control))
        self.data = _chr(p.uuid("open-emg", "data"), props.NOTIFY)
        self.status = _chr(p.uuid("open-emg", "status"), props.READ | props.NOTIFY,
                           gatt.CharacteristicValue(read=lambda _c: self.encode_status()))
        self.device.add_service(gatt.Service(UUID(p.uuid("open-emg", "service")), [self.info, self.control, self.data, self.status]))
        self.streaming = False
        self.channel_mask = 0b11
        self._next_index = 0
        self._seq = 0
        self._index_at_start = 0
        self.overrun_count = 0
        self._next_status_s = 1.0
        self.keep_truth = keep_truth
        self.truth: dict[int, np.ndarray] = {}
        """First sample index -> int16 samples (n, 2) of every frame the firmware produced."""

    def tick_s(self) -> float:
        return self.samples_per_frame / self.sample_rate_hz

    def encode_info(self) -> bytes:
        return struct.pack(
            "<BBHBBBBI", self.PROTOCOL_VERSION, 2, self.sample_rate_hz, self.ADC_BITS, 0, self.samples_per_frame, 0, self.NV_PER_LSB
        )

    def contact_bits(self, t_s: float) -> int:
        return sum(1 << c for c in range(2) if not self.faults.electrode_off_at(t_s, c))

    def encode_status(self) -> bytes:
        return struct.pack("<BBHB", self.battery_pct, self.contact_bits(self.clock.now_s()), min(self.overrun_count, 0xFFFF), 0)

    def _on_control(self, connection, value: bytes) -> None:
        value = bytes(value)
        op = value[0] if value else 0
        payload = b""
        if op == 0x01 and len(value) == 4:
            rate, mask = struct.unpack_from("<HB", value, 1)
            if rate not in self.SUPPORTED_RATES_HZ or mask == 0 or mask & ~0b11:
                status = 2
            else:
                if rate != self.sample_rate_hz:  # the ADC restarts at the new rate
                    self.sample_rate_hz = rate
                    self.synth = EmgSynth(rate, self.script, self.rng)
                    self._next_index = int(np.ceil(self.clock.now_s() * rate))
                status = 0
                self.channel_mask = mask
                self.streaming = True
                # START resets seq, first_sample_index and overrun_count (devices/open-emg.md).
                self._seq = 0
                self._index_at_start = self._next_index
                self.overrun_count = 0
        elif op == 0x02:
            self.streaming, status = False, 0
        elif op == 0x03:
            status, payload = 0, struct.pack("<Q", int(self.clock.now_s() * 1e6))
        else:
            status = 1 if op not in (0x01,) else 2
        asyncio.ensure_future(self.indicate_later(self.control, bytes([op, status]) + payload))

    def on_disconnected(self) -> None:
        self.streaming = False

    def encode_frame(self, seq: int, first_index: int, device_time_us: int, flags: int, samples: np.ndarray) -> bytes:
        """Data frame: u16 seq, u32 first sample index, u64 device µs, u8 flags, interleaved int16."""
        header = struct.pack("<HIQB", seq & 0xFFFF, first_index & 0xFFFFFFFF, device_time_us, flags)
        return header + samples.astype("<i2").tobytes()

    async def produce(self, now_s: float) -> None:
        spf, fs = self.samples_per_frame, self.sample_rate_hz
        # The ADC runs from power-on; the sample index counts every sample, sent or not.
        while (self._next_index + spf) / fs <= now_s:
            idx = np.arange(self._next_index, self._next_index + spf)
            t = idx / fs
            self._next_index += spf
            uv = self.synth.block(t)
            counts = np.clip(np.round(uv * 1000.0 / self.NV_PER_LSB), -32768, 32767)
            flags = 0
            for c in range(2):
                if self.faults.electrode_off_at(float(t[0]), c):
                    counts[:, c] = 32767
                    flags |= 0x02 | 0x04
            if np.any(np.abs(counts) >= 32767):
                flags |= 0x04
            counts = counts.astype(np.int16)
            if self.keep_truth:
                self.truth[int(idx[0])] = counts
            if not self.streaming:
                continue
            packet = self.encode_frame(self._seq, int(idx[0]) - self._index_at_start, int(round(t[0] * 1e6)), flags, counts)
            self._seq += 1
            await self.send(self.data, packet)
            await asyncio.sleep(0)  # a catch-up burst must not starve the other sensors on this loop
        if self.streaming and now_s >= self._next_status_s:
            self._next_status_s = now_s + 1.0
            await self.send(self.status, self.encode_status())
