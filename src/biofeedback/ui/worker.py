"""The dashboard's worker: scan, acquisition, live processing and recording on an asyncio loop in a thread.

A replay (``plan.replay``) skips the scan and the recorder: the recorded session plays into the same live
processing until its end, and nothing is written.

The GUI never waits on the worker and the worker never waits on the GUI: the GUI reads ring-buffer
snapshots and plain attributes, and hands commands over with ``call`` (``loop.call_soon_threadsafe``).
So a stalled GUI never drops sensor data or recording writes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from biofeedback.session.acquisition import SCAN_TIME_S, VIRTUAL_SCAN_TIME_S, Acquisition, acquire, quiet_bumble_logs
from biofeedback.sensors.ble import BleBackend, FoundSensor, scan
from biofeedback.sensors.profiles import DeviceProfile
from biofeedback.sensors.virtual import Scenario, VirtualWorld
from biofeedback.session.recorder import Recorder
from biofeedback.session.run import SessionPlan, calibration_of, open_recording
from biofeedback.analysis import AnalysisError, compare, load_session
from biofeedback.analysis.summary import summarize
from biofeedback.ui.live import LiveProcessing
from biofeedback.ui.raster import load_kernels

FAILURE_POLL_S = 0.25
"""Wall seconds between checks that the sensors' tasks are still alive."""


class WorkerState:
    STARTING = "starting"
    SCANNING = "scanning"
    FOUND = "found"
    CONNECTING = "connecting"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class SessionWorker:
    """Runs one session of ``plan`` on a thread: scan, wait for ``connect``, record until ``stop``.

    With ``plan.replay``: play that recording until its end or ``stop``, recording nothing.
    """

    def __init__(self, plan: SessionPlan, profiles: dict[str, DeviceProfile], *, connect_at_once: bool = False,
                 mode: str | None = None, extra_meta: dict | None = None) -> None:
        self.plan = plan
        self.profiles = profiles
        self.mode = mode or ("dashboard-auto" if plan.auto else "dashboard")
        """The recording's ``mode`` meta."""
        self.extra_meta = extra_meta
        self.connect_at_once = connect_at_once
        """Connect the default choice of sensors right after the first scan (unattended runs, tests)."""
        self.state = WorkerState.STARTING
        self.found: list[FoundSensor] = []
        self.acq: Acquisition | None = None
        self.live: LiveProcessing | None = None
        self.recorder: Recorder | None = None
        self.path = plan.replay
        """The session file: the one being recorded, or the one replayed."""
        self.summary: list[dict] | None = None
        self.verdict: str | None = None
        """The before/after verdict in plain words (``analysis.compare``), once the recording is closed."""
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._wanted: list[str] | None = None
        self._thread = threading.Thread(target=self._run, name="biofeedback-acquisition", daemon=True)

    # --- called from the GUI thread -------------------------------------------------------------
    def start(self) -> SessionWorker:
        # The windows' raster kernels, compiled or loaded before any data flows: a first compile (~2.5 s) holds the
        # interpreter, which the worker thread needs as soon as it runs.
        load_kernels()
        self._thread.start()
        self._ready.wait()
        return self

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the worker's loop, without waiting for it."""
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:
                pass  # the loop closed between the check and the call: the session is over

    def rescan(self) -> None:
        self.call(self._rescan_event.set)

    def connect(self, wanted: list[str] | None = None) -> None:
        """Connect the sensors of these profile names (None: one EMG sensor and the best heart sensor)."""
        self._wanted = wanted
        self.call(self._connect_event.set)

    def event(self, kind: str, t_s: float, label: str, duration_s: float = 0.0, data: dict | None = None) -> None:
        """Record a session event (phase, marker, note) at session time ``t_s``; same call as ``Recorder.event``.

        Dropped when nothing is recorded (before the sensors connect, after the end, in a replay)."""
        self.call(self._event, kind, t_s, label, duration_s, data)

    def stop(self) -> None:
        self.call(self._stop_event.set)

    def join(self, timeout_s: float | None = None) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    @property
    def finished(self) -> bool:
        return self.state in (WorkerState.DONE, WorkerState.FAILED)

    # --- the worker thread ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
            self.state = WorkerState.DONE
        except BaseException as exc:  # noqa: BLE001 - handed to the GUI, which shows it and re-raises at exit
            self.error = exc
            self.state = WorkerState.FAILED
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._connect_event = asyncio.Event()
        self._rescan_event = asyncio.Event()
        self._ready.set()
        if self.plan.replay is None and not await self._choose_sensors():
            return
        self.state = WorkerState.CONNECTING
        await self._stream()

    async def _choose_sensors(self) -> bool:
        """Scan (again on ``rescan``) until ``connect``; False if stopped first."""
        while True:
            self.state = WorkerState.SCANNING
            self.found = await self._scan()
            self.state = WorkerState.FOUND
            if self.connect_at_once:
                return True
            waits = [asyncio.ensure_future(e.wait()) for e in (self._stop_event, self._connect_event, self._rescan_event)]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            if self._stop_event.is_set():
                return False
            if self._connect_event.is_set():
                return True
            self._rescan_event.clear()

    async def _scan(self) -> list[FoundSensor]:
        plan = self.plan
        if not plan.virtual:
            return await scan(self.profiles.values(), BleBackend(), SCAN_TIME_S)
        quiet_bumble_logs()
        world = await VirtualWorld(plan.scenario or Scenario(), speed=plan.speed, profiles=self.profiles).start()
        try:
            return await scan(self.profiles.values(), world.backend, VIRTUAL_SCAN_TIME_S)
        finally:
            await world.stop()

    async def _stream(self) -> None:
        """Sensors (or the replay) into live processing and (unless replaying) the recorder, until ``stop`` or the
        replay's end; then the summary and verdict of the session file."""
        plan = self.plan
        async with acquire(self.profiles, virtual=plan.virtual, speed=plan.speed, scenario=plan.scenario,
                           wanted=self._wanted, replay=plan.replay, replay_sources=plan.replay_sources) as acq:
            live = LiveProcessing(acq.hub, calibration_of(plan)[0])
            recorder = None
            if plan.replay is None:
                self.path, recorder = open_recording(plan, acq, self.mode, self.extra_meta)
            try:
                self.acq, self.live, self.recorder = acq, live, recorder
                self.state = WorkerState.RUNNING
                while not self._stop_event.is_set() and not acq.ended():
                    failed = acq.failed()
                    if failed and len(failed) == len(acq.tasks):
                        raise failed[0]
                    try:
                        await asyncio.wait_for(self._stop_event.wait(), FAILURE_POLL_S)
                    except asyncio.TimeoutError:
                        pass
            finally:
                self.recorder = None
                live.close()
                if recorder is not None:
                    recorder.record_devices(acq.sources)
                    recorder.close()
        self.summary = summarize(self.path)
        try:
            self.verdict = compare(load_session(self.path)).overall["text"]
        except AnalysisError as exc:
            self.verdict = f"No verdict: {exc}"

    def _event(self, kind: str, t_s: float, label: str, duration_s: float, data: dict | None) -> None:
        if self.recorder is not None:
            self.recorder.event(kind, t_s, label, duration_s, data)
