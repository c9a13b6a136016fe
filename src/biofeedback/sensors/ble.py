"""The bleak-based sensor source: scan, connect, subscribe, decode, and keep the link alive.

One ``BleSource`` per sensor. A supervisor loop connects with bleak-retry-connector's
``establish_connection`` (retries with back-off), then sets up one driver per protocol of the
device profile (subscribe, send start commands). On the disconnect callback it rescans, connects
again, subscribes again and re-sends the start commands the device forgot. Drivers detect gaps
from the data itself (sample indices, device timestamps, RR sums against arrival time), so every
gap is recorded with its true length, whether it came from a dropped link or dropped packets.

Notification callbacks are tiny: copy, decode, stamp, hand on (STYLE.md rule 4).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError
from bleak_retry_connector import establish_connection

from biofeedback.sensors import decoders as dec
from biofeedback.sensors.profiles import DeviceProfile, best_profile
from biofeedback.sensors.source import SensorError, Sink, Source
from biofeedback.vocab import SourceState
from biofeedback.stream import (
    NS_PER_S,
    RR_GAP_TOLERANCE_S,
    Block,
    BlockFlag,
    DriftFit,
    Gap,
    RRTimeline,
    SessionClock,
    StreamKind,
)

log = logging.getLogger(__name__)

# Timing policy (session seconds unless noted).
CONNECT_ATTEMPTS = 3
RESCAN_TIMEOUT_S = 5.0
"""Wall seconds one rescan for a lost sensor lasts before trying again."""
CONTROL_RESPONSE_TIMEOUT_S = 5.0
"""Wall seconds to wait for a control-point indication."""
GAP_TOLERANCE_SAMPLES = 1.5
"""A device-time jump larger than this many sample periods beyond the frame is a gap."""
SLEW_FRACTION = 0.01
"""Sample times follow the device clock and drift toward the fit by at most 1 % of elapsed device time."""
CLOCK_CONSISTENCY_S = 5.0
"""A frame whose device time maps to more than this after its arrival is corrupt."""
INDEX_CONSISTENCY_S = 0.05
"""Open EMG: device time and sample index of a frame must agree within this (else the frame is corrupt)."""
HR_PLAUSIBLE_BPM = (25, 250)
RR_PLAUSIBLE_MS = (250.0, 2500.0)


@dataclass(frozen=True)
class BleBackend:
    """Which bleak backend to use: the platform's (real adapter) or a virtual radio."""

    scanner: type | None = None
    client: type | None = None
    scanner_kwargs: dict[str, Any] = field(default_factory=dict)
    virtual: bool = False

    def make_scanner(self, **kwargs: Any) -> BleakScanner:
        return BleakScanner(backend=self.scanner, **self.scanner_kwargs, **kwargs)


def system_has_adapter() -> bool:
    """True when this machine has a Bluetooth adapter bleak can use (best effort, no side effects)."""
    if sys.platform.startswith("linux"):
        root = Path("/sys/class/bluetooth")
        return root.is_dir() and any(root.iterdir())
    return True


@dataclass(frozen=True)
class FoundSensor:
    device: BLEDevice
    advertisement: AdvertisementData
    profile: DeviceProfile


async def scan(profiles: Iterable[DeviceProfile], backend: BleBackend, timeout_s: float = 3.0) -> list[FoundSensor]:
    """Scan for sensors matching any profile; each device is paired with its best profile."""
    profiles = list(profiles)
    services = sorted({u for p in profiles for u in p.services})
    found: dict[str, FoundSensor] = {}

    def seen(device: BLEDevice, adv: AdvertisementData) -> None:
        profile = best_profile(profiles, adv.local_name, adv.service_uuids)
        if profile is not None:
            found[device.address] = FoundSensor(device, adv, profile)

    scanner = backend.make_scanner(detection_callback=seen, service_uuids=services)
    await scanner.start()
    try:
        await asyncio.sleep(timeout_s)
    finally:
        await scanner.stop()
    return sorted(found.values(), key=lambda f: (-f.profile.priority, f.device.name or ""))


class Driver:
    """One protocol of a device: subscribe, start, decode, detect gaps."""

    def __init__(self, source: BleSource) -> None:
        self.source = source
        self.profile = source.profile
        self.clock = source.clock

    async def setup(self, client: BleakClient) -> None:
        raise NotImplementedError

    def on_link_lost(self) -> None:
        """The link dropped: the next data after reconnecting closes a 'disconnect' gap."""

    def decode(self, decoder: Any, data: bytes, *args: Any) -> Any:
        """Decode one notification; a ``DecodeError`` is counted and gives None."""
        try:
            return decoder(data, *args)
        except dec.DecodeError as exc:
            self.source.decode_error(exc)
            return None


class HrsDriver(Driver):
    """Bluetooth SIG Heart Rate Service: HR per notification, RR intervals rebuilt into beat times."""

    def __init__(self, source: BleSource) -> None:
        super().__init__(source)
        self.timeline = RRTimeline(source.name, tolerance_s=RR_GAP_TOLERANCE_S + source.clock.jitter_s())
        self._last_beat_before_drop: float | None = None
        self._seen_gaps = 0

    async def setup(self, client: BleakClient) -> None:
        await client.start_notify(self.profile.uuid("hrs", "measurement"), self._on_measurement)

    def on_link_lost(self) -> None:
        if self.timeline.last_beat_s is not None:
            self._last_beat_before_drop = self.timeline.last_beat_s
        self.timeline.restart()

    def _on_measurement(self, _char: Any, data: bytearray) -> None:
        host_ns = self.clock.now_ns()
        raw = bytes(data)
        if (m := self.decode(dec.decode_heart_rate_measurement, raw)) is None:
            return
        lo, hi = RR_PLAUSIBLE_MS
        if not HR_PLAUSIBLE_BPM[0] <= m.hr_bpm <= HR_PLAUSIBLE_BPM[1] or np.any((m.rr_ms < lo) | (m.rr_ms > hi)):
            self.source.decode_error(dec.DecodeError(f"implausible heart rate {m.hr_bpm} bpm or RR {m.rr_ms} ms: discarded"))
            return
        src, t = self.source.name, host_ns / NS_PER_S
        flags = BlockFlag.SENSOR_CONTACT_LOST if m.contact_detected is False else 0
        self.source.emit(Block(StreamKind.HR, src, host_ns, np.array([[float(m.hr_bpm)]]), flags=flags,
                               channels=("hr",), raw=raw, times_s=np.array([t])))
        if m.contact_supported:
            self.source.status.contact = (bool(m.contact_detected),)
        if len(m.rr_ms) == 0:
            return
        beat_times = self.timeline.add(t, m.rr_ms)
        if self._last_beat_before_drop is not None:
            first = float(beat_times[0] - m.rr_ms[0] / 1000.0)
            self.source.gap(Gap(StreamKind.RR, src, self._last_beat_before_drop, first, "disconnect"))
            self._last_beat_before_drop = None
        for gap in self.timeline.gaps[self._seen_gaps :]:
            self.source.gap(gap)
        self._seen_gaps = len(self.timeline.gaps)
        self.source.emit(Block(StreamKind.RR, src, host_ns, m.rr_ms.reshape(-1, 1), flags=flags,
                               channels=("rr",), times_s=beat_times))


class _SampledDriver(Driver):
    """Common part of streams whose device stamps its samples: drift fit, rate estimate, gap check."""

    stream = ""

    def __init__(self, source: BleSource, nominal_rate_hz: float) -> None:
        super().__init__(source)
        self.fit = DriftFit()
        self.nominal_rate_hz = nominal_rate_hz
        self.link_lost = False
        self._prev_end_dev_s: float | None = None
        self._prev_end_host_s: float | None = None

    def on_link_lost(self) -> None:
        self.link_lost = True

    def _implausible(self, dev_s: float, host_s: float) -> bool:
        """True when a frame's device time cannot be right: older than the last frame, or from the future.

        Late frames are normal (a congested link delivers a backlog in a burst), so only device
        times that map to more than ``CLOCK_CONSISTENCY_S`` after their own arrival are rejected.
        """
        if self._prev_end_dev_s is None:
            return False
        if dev_s <= self._prev_end_dev_s:
            return True
        return float(self.fit.to_host(dev_s)) - host_s > CLOCK_CONSISTENCY_S

    def _place(self, first_dev_s: float, n: int, period_s: float, lost_samples: int | None = None) -> np.ndarray:
        """Session times of a frame's samples, and the gap before it if samples are missing.

        Times run on continuously from the previous frame on the device clock (scaled by the fit's
        rate), slewed toward the drift fit by at most ``SLEW_FRACTION`` of the elapsed device time.
        So times never run backwards, a gap interval never contains a sample, and its length is
        the device clock's.
        """
        mapped = float(self.fit.to_host(first_dev_s))
        if self._prev_end_dev_s is None or self._prev_end_host_s is None:
            t_first = mapped
        else:
            jump = first_dev_s - self._prev_end_dev_s
            t_first = self._prev_end_host_s + jump * self.fit.b
            t_first += float(np.clip(mapped - t_first, -SLEW_FRACTION * jump, SLEW_FRACTION * jump))
            if jump > GAP_TOLERANCE_SAMPLES * period_s:
                lost = lost_samples if lost_samples is not None else int(round(jump / period_s)) - 1
                self.source.gap(Gap(self.stream, self.source.name, self._prev_end_host_s + period_s, t_first,
                                    "disconnect" if self.link_lost else "dropped-packets", lost))
        self.link_lost = False
        times = t_first + np.arange(n) * (period_s * self.fit.b)
        self._prev_end_dev_s = first_dev_s + (n - 1) * period_s
        self._prev_end_host_s = float(times[-1])
        return times


class PmdEcgDriver(_SampledDriver):
    """Polar PMD ECG: start through the control point, decode frames, map device time to host time."""

    stream = StreamKind.ECG

    def __init__(self, source: BleSource) -> None:
        settings = source.profile.settings
        super().__init__(source, float(settings.get("ecg_rate_hz", 130)))
        self.resolution_bits = int(settings.get("ecg_resolution_bits", 14))
        lo, hi = settings.get("ecg_true_rate_hz", [128.0, 131.0])
        self.true_rate_range = (float(lo), float(hi))
        self.start_timeout_s = float(settings.get("ecg_start_timeout_s", 3.0))
        self.rate_hz = self.nominal_rate_hz
        self._responses: asyncio.Queue[dec.PmdControlResponse] = asyncio.Queue()
        self._rate_anchor: tuple[float, int] | None = None
        self._samples_since_anchor = 0
        self._frames_since_start = 0
        self._watchdog: asyncio.Task | None = None

    async def setup(self, client: BleakClient) -> None:
        if client.mtu_size < self.profile.min_mtu:
            raise SensorError(
                f"{self.source.name}: ATT MTU is {client.mtu_size}, the PMD ECG stream needs at least "
                f"{self.profile.min_mtu}. Update the Bluetooth stack, or on BlueZ enable MTU exchange."
            )
        p = self.profile
        self._responses = asyncio.Queue()
        await client.start_notify(p.uuid("polar-pmd", "control"), self._on_control)
        await client.start_notify(p.uuid("polar-pmd", "data"), self._on_data)
        await self._start(client)
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watchdog = asyncio.create_task(self._restart_if_silent(client))

    async def _start(self, client: BleakClient) -> None:
        self._frames_since_start = 0
        command = dec.pmd_start_ecg_command(int(self.nominal_rate_hz), self.resolution_bits)
        await client.write_gatt_char(self.profile.uuid("polar-pmd", "control"), command, response=True)
        try:
            reply = await asyncio.wait_for(self._responses.get(), CONTROL_RESPONSE_TIMEOUT_S)
        except asyncio.TimeoutError as exc:
            raise SensorError(f"{self.source.name}: no answer to the ECG start command; switch the strap off and on") from exc
        if not reply.ok and reply.status != 6:  # 6 = already streaming
            raise SensorError(f"{self.source.name}: ECG start refused: {reply.error_text}")

    async def _restart_if_silent(self, client: BleakClient) -> None:
        """Polar quirk: ECG sometimes starts late or not at all; re-send start until frames flow."""
        while client.is_connected:
            await asyncio.sleep(self.clock.wall_seconds(self.start_timeout_s))
            if self._frames_since_start or not client.is_connected:
                return
            log.info("%s: no ECG after %.1f s, sending start again", self.source.name, self.start_timeout_s)
            try:
                await self._start(client)  # "already started" is fine: the strap may just be slow
            except (BleakError, SensorError) as exc:
                log.info("%s: ECG restart failed: %s", self.source.name, exc)

    def _on_control(self, _char: Any, data: bytearray) -> None:
        if (reply := self.decode(dec.decode_pmd_control_response, bytes(data))) is not None:
            self._responses.put_nowait(reply)

    def _on_data(self, _char: Any, data: bytearray) -> None:
        host_ns = self.clock.now_ns()
        raw = bytes(data)
        if (frame := self.decode(dec.decode_pmd_ecg_frame, raw)) is None:
            return
        self._frames_since_start += 1
        n = len(frame.samples_uv)
        last_dev_s = frame.timestamp_ns / NS_PER_S
        if self._implausible(last_dev_s, host_ns / NS_PER_S):
            self.source.decode_error(dec.DecodeError("PMD ECG frame with an impossible timestamp: discarded"))
            return
        self._update_rate(last_dev_s, n)
        period = 1.0 / self.rate_hz
        first_dev_s = last_dev_s - (n - 1) * period
        self.fit.add(last_dev_s, host_ns / NS_PER_S)
        times = self._place(first_dev_s, n, period)
        self.source.emit(Block(StreamKind.ECG, self.source.name, host_ns, np.asarray(frame.samples_uv, float).reshape(-1, 1),
                               rate_hz=self.rate_hz, device_time_ns=frame.timestamp_ns, channels=("ecg",), raw=raw,
                               times_s=times))

    def _update_rate(self, last_dev_s: float, n: int) -> None:
        """Measure the true sample rate from device timestamps over contiguous frames."""
        contiguous = self._prev_end_dev_s is not None and last_dev_s - self._prev_end_dev_s < (n + GAP_TOLERANCE_SAMPLES) / self.rate_hz
        if self._rate_anchor is None or not contiguous:
            self._rate_anchor = (last_dev_s, 0)
            return
        anchor_s, _ = self._rate_anchor
        self._samples_since_anchor = self._rate_anchor[1] + n
        self._rate_anchor = (anchor_s, self._samples_since_anchor)
        span = last_dev_s - anchor_s
        if span > 2.0:
            measured = self._samples_since_anchor / span
            lo, hi = self.true_rate_range
            if lo <= measured <= hi:
                self.rate_hz = measured
                self.source.status.rate_hz[StreamKind.ECG] = measured


class OpenEmgDriver(_SampledDriver):
    """Open-EMG profile: read Info, start streaming, decode frames, account for every sample index."""

    stream = StreamKind.EMG

    def __init__(self, source: BleSource) -> None:
        super().__init__(source, float(source.profile.settings.get("sample_rate_hz", 1000)))
        self.info: dec.OpenEmgInfo | None = None
        self.channel_mask = int(source.profile.settings.get("channel_mask", 3))
        self.channels = source.profile.stream(StreamKind.EMG).channels
        self._responses: asyncio.Queue[dec.OpenEmgControlResponse] = asyncio.Queue()
        self._next_index: int | None = None

    def on_link_lost(self) -> None:
        super().on_link_lost()
        self._next_index = None  # START after reconnecting restarts the sample index at 0

    async def setup(self, client: BleakClient) -> None:
        p = self.profile
        self.info = dec.decode_open_emg_info(bytes(await client.read_gatt_char(p.uuid("open-emg", "info"))))
        if self.channel_mask >> self.info.channel_count:
            raise SensorError(f"{self.source.name}: channel_mask {self.channel_mask:#x} in {p.path.name} enables channels "
                              f"the sensor does not have (it has {self.info.channel_count}); fix settings.channel_mask")
        frame_bytes = 15 + 2 * len(self.channels) * self.info.samples_per_frame
        if client.mtu_size - 3 < frame_bytes:
            raise SensorError(f"{self.source.name}: ATT MTU {client.mtu_size} is too small for {frame_bytes}-byte frames")
        self.source.status.rate_hz[StreamKind.EMG] = self.nominal_rate_hz
        self._responses = asyncio.Queue()
        await client.start_notify(p.uuid("open-emg", "control"), self._on_control)
        await client.start_notify(p.uuid("open-emg", "status"), self._on_status)
        await client.start_notify(p.uuid("open-emg", "data"), self._on_data)
        self._on_status(None, await client.read_gatt_char(p.uuid("open-emg", "status")))
        command = dec.open_emg_start_command(int(self.nominal_rate_hz), self.channel_mask)
        await client.write_gatt_char(p.uuid("open-emg", "control"), command, response=True)
        try:
            reply = await asyncio.wait_for(self._responses.get(), CONTROL_RESPONSE_TIMEOUT_S)
        except asyncio.TimeoutError as exc:
            raise SensorError(f"{self.source.name}: no answer to the start command; check the sensor's firmware") from exc
        if not reply.ok:
            raise SensorError(f"{self.source.name}: start refused: {reply.error_text}")

    def _on_control(self, _char: Any, data: bytearray) -> None:
        if (reply := self.decode(dec.decode_open_emg_control_response, bytes(data))) is not None:
            self._responses.put_nowait(reply)

    def _on_status(self, _char: Any, data: bytearray) -> None:
        if (status := self.decode(dec.decode_open_emg_status, bytes(data))) is None:
            return
        self.source.status.battery_pct = status.battery_pct
        self.source.status.contact = tuple(status.contact(c) for c in range(len(self.channels)))

    def _unwrap(self, index: int) -> int:
        """Unwrap the 32-bit sample index against the index expected next."""
        if self._next_index is None:
            return index
        full = (self._next_index & ~0xFFFFFFFF) | index
        if full < self._next_index - 2**31:
            full += 2**32
        elif full > self._next_index + 2**31:
            full -= 2**32
        return full

    def _on_data(self, _char: Any, data: bytearray) -> None:
        host_ns = self.clock.now_ns()
        raw = bytes(data)
        info = self.info
        if info is None:
            return
        # Frames carry the enabled channels only (devices/open-emg.md), at the rate we started.
        if (frame := self.decode(dec.decode_open_emg_frame, raw, len(self.channels))) is None:
            return
        fs = self.nominal_rate_hz
        first = self._unwrap(frame.first_sample_index)
        n = frame.samples.shape[0]
        first_dev_s = frame.device_time_us / 1e6
        if self._next_index is not None and first < self._next_index:
            self.source.decode_error(dec.DecodeError(f"open-EMG frame repeats samples from index {first}: discarded"))
            return
        if self._implausible(first_dev_s, host_ns / NS_PER_S) or (
            self._next_index is not None
            and abs((first - self._next_index) / fs - (first_dev_s - self._prev_end_dev_s - 1 / fs)) > INDEX_CONSISTENCY_S
        ):
            self.source.decode_error(dec.DecodeError("open-EMG frame whose index and device time disagree: discarded"))
            return
        self.fit.add(first_dev_s, host_ns / NS_PER_S - (n - 1) / fs)
        lost = None if self._next_index is None else first - self._next_index
        times = self._place(first_dev_s, n, 1.0 / fs, lost)
        self._next_index = first + n
        flags = (BlockFlag.SENSOR_CONTACT_LOST if frame.lead_off else 0) | (BlockFlag.SATURATED if frame.saturated else 0)
        if lost:
            flags |= BlockFlag.AFTER_GAP
        self.source.emit(Block(StreamKind.EMG, self.source.name, host_ns, frame.samples * info.uv_per_lsb, rate_hz=fs,
                               first_index=first, seq=frame.seq, device_time_ns=frame.device_time_us * 1000, flags=flags,
                               channels=self.channels, raw=raw, times_s=times))


DRIVERS: dict[str, type[Driver]] = {"hrs": HrsDriver, "polar-pmd": PmdEcgDriver, "open-emg": OpenEmgDriver}


class BleSource(Source):
    """One sensor over BLE, supervised: connects, streams, reconnects after drops until stopped."""

    def __init__(self, device: BLEDevice, profile: DeviceProfile, clock: SessionClock, sink: Sink,
                 backend: BleBackend, name: str | None = None) -> None:
        super().__init__(name or profile.name, clock, sink)
        self.device = device
        self.profile = profile
        self.backend = backend
        self.drivers = [DRIVERS[p](self) for p in profile.protocols]
        self._client: BleakClient | None = None
        self._lost = asyncio.Event()

    def decode_error(self, exc: Exception) -> None:
        self.status.decode_errors += 1
        log.debug("%s: %s", self.name, exc)

    def _on_disconnect(self, _client: BleakClient) -> None:
        self._lost.set()

    async def _connect_once(self) -> BleakClient:
        client = await establish_connection(
            BleakClient, self.device, self.name, disconnected_callback=self._on_disconnect,
            max_attempts=CONNECT_ATTEMPTS, backend=self.backend.client,
        )
        self._lost.clear()
        self.status.mtu = client.mtu_size
        try:
            for driver in self.drivers:
                await driver.setup(client)
        except BaseException:
            await client.disconnect()
            raise
        return client

    async def _rescan(self) -> BLEDevice | None:
        scanner_kwargs = dict(self.backend.scanner_kwargs)
        return await BleakScanner.find_device_by_address(
            self.device.address, timeout=RESCAN_TIMEOUT_S, backend=self.backend.scanner, **scanner_kwargs
        )

    async def _unless_stopped(self, coro: Any) -> asyncio.Future | None:
        """Run ``coro`` until it finishes or ``stop()`` is called; the finished task, or None if stopped."""
        task = asyncio.ensure_future(coro)
        stop = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if task.done():
            return task
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None

    async def run(self) -> None:
        """Stream until ``stop()``; raises ``SensorError`` only if the first connection fails."""
        first = True
        while not self._stopping.is_set():
            self._set_state(SourceState.CONNECTING if first else SourceState.RECONNECTING)
            connect = await self._unless_stopped(self._connect_once())
            if connect is None:
                break
            try:
                self._client = connect.result()
            except (BleakError, SensorError, asyncio.TimeoutError, OSError) as exc:
                if first:
                    self._set_state(SourceState.FAILED, str(exc))
                    raise SensorError(f"{self.name}: could not connect: {exc}") from exc
                self._set_state(SourceState.RECONNECTING, str(exc))
                await self._wait_and_rescan()
                continue
            first = False
            self._set_state(SourceState.CONNECTED)
            if await self._unless_stopped(self._lost.wait()) is None:
                break
            self.status.reconnects += 1
            for driver in self.drivers:
                driver.on_link_lost()
            self._set_state(SourceState.RECONNECTING)
            await self._wait_and_rescan()
        if self._client is not None and self._client.is_connected:
            await self._client.disconnect()
        self._set_state(SourceState.STOPPED)

    async def _wait_and_rescan(self) -> None:
        while not self._stopping.is_set():
            rescan = await self._unless_stopped(self._rescan())
            if rescan is None:
                return
            try:
                device = rescan.result()
            except (BleakError, OSError) as exc:
                log.info("%s: rescan failed: %s", self.name, exc)
                await asyncio.sleep(RESCAN_TIMEOUT_S / 5)
                continue
            if device is not None:
                self.device = device
                return
