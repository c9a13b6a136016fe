"""The windows' worker: the session's one ``session.runner.SessionRun`` on an asyncio loop in a thread.

The GUI never waits on the worker and the worker never waits on the GUI: the GUI reads ring-buffer
snapshots and plain attributes of the run (its live processor, its phase machine), and hands commands over
with ``call`` (``loop.call_soon_threadsafe``), so every change of the session's state happens on the run's loop.
A stalled GUI never drops sensor data or recording writes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from biofeedback.sensors.profiles import DeviceProfile
from biofeedback.session.runner import SessionPlan, SessionRun
from biofeedback.ui.raster import load_kernels
from biofeedback.vocab import WorkerState


class SessionWorker:
    """Runs ``run`` on a thread. With ``connect_at_once`` False (the dashboard), it scans first and waits for
    ``connect`` (``rescan`` scans again); a replay skips the scan."""

    def __init__(self, run: SessionRun, *, connect_at_once: bool = False) -> None:
        self.run = run
        self.plan = run.plan
        self.connect_at_once = connect_at_once
        """Connect the default choice of sensors right after the first scan (unattended runs, tests)."""
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._wanted: list[str] | None = None
        self._thread = threading.Thread(target=self._run, name="biofeedback-acquisition", daemon=True)

    # --- what the GUI reads -----------------------------------------------------------------------
    @property
    def state(self) -> WorkerState:
        return WorkerState.FAILED if self.error is not None else self.run.state

    @property
    def finished(self) -> bool:
        return self.state in (WorkerState.DONE, WorkerState.FAILED)

    @property
    def acq(self):
        return self.run.acq

    @property
    def live(self):
        return self.run.live

    @property
    def found(self) -> list:
        return self.run.found

    @property
    def path(self):
        return self.run.path

    @property
    def outcome(self):
        return self.run.outcome

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
        self.run.call(fn, *args)

    def rescan(self) -> None:
        self.call(self._rescan.set)

    def connect(self, wanted: list[str] | None = None) -> None:
        """Connect the sensors of these profile names (None: one EMG sensor and the best heart sensor)."""
        self._wanted = wanted
        self.call(self._connect.set)

    def stop(self) -> None:
        self.run.stop()
        self.call(self._gave_up.set)

    def join(self, timeout_s: float | None = None) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    # --- the worker thread ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
            self.run.state = WorkerState.DONE
        except BaseException as exc:  # noqa: BLE001 - handed to the GUI, which shows it and re-raises at exit
            self.error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._connect, self._rescan, self._gave_up = asyncio.Event(), asyncio.Event(), asyncio.Event()
        asyncio.get_running_loop().call_soon(self._ready.set)  # once the run has its loop, commands can be handed over
        await self.run.run(choose=self._choose)

    async def _choose(self, run: SessionRun) -> list[str] | None | bool:
        """After each scan: the sensors to connect, once the user says so (False if the window closed first)."""
        while True:
            if self._gave_up.is_set():
                return False  # stopped while scanning
            if self.connect_at_once:
                return None
            waits = [asyncio.ensure_future(e.wait()) for e in (self._gave_up, self._connect, self._rescan)]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            if self._gave_up.is_set():
                return False
            if self._connect.is_set():
                return self._wanted
            self._rescan.clear()
            run.state = WorkerState.SCANNING
            run.found = await run.scan()
            run.state = WorkerState.FOUND


def start_worker(plan: SessionPlan, profiles: dict[str, DeviceProfile], *, connect_at_once: bool = False,
                 **run_options: Any) -> SessionWorker:
    """A started worker running a ``SessionRun`` of ``plan`` (``run_options``: ``SessionRun``'s keywords)."""
    return SessionWorker(SessionRun(plan, profiles, say=lambda _line: None, **run_options),
                         connect_at_once=connect_at_once).start()
