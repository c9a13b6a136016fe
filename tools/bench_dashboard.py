"""Benchmark of the dashboard: frames per second and CPU against a plain pyqtgraph loop, and memory growth.

Run: QT_QPA_PLATFORM=offscreen .venv/bin/python tools/bench_dashboard.py [--seconds 15] [--long-seconds 60]

1. The dashboard on virtual sensors with the load of two EMG channels at 2 kHz (the virtual open-EMG
   sensor is started at its profile's 1 kHz, so it runs at 2x speed with a 20 s EMG window: 2,000
   samples/s per channel arrive and 20,000 points per channel are drawn per frame, as 2 kHz in real time
   with the default 10 s window), Polar H10 ECG, HR, RR and the HRV panels live, refreshing as fast as
   it may (timer period 0), offscreen, 1600x900; then as the app runs it, with its own 16 ms timer.
2. A plain pyqtgraph loop in the same run: the same window size and plot grid, the same number of points
   per curve (taken from the dashboard's own curves), one ``setData`` per curve per frame with default
   settings, like pyqtgraph's ``examples/scrollingPlots.py``.
   Then the dashboard's plot area repainted whole with no data (axes, grids, titles, legends only), as after a
   resize: the floor of a full repaint on this machine's software raster (a frame repaints only the plots whose
   traces changed).
3. Memory: a long accelerated session (default 60 s wall at 10x = 10 session minutes), resident set size
   sampled as it runs; after the ring buffers have filled (120 session s) it should stay flat.

Prints figures and ratios; no assertions (timing is not a test). GUI-thread CPU is ``time.thread_time``
of the GUI thread per frame; process CPU includes the acquisition thread and the virtual sensors. Qt's
painting holds the GIL, so the bench also checks that the acquisition thread kept up while the dashboard
drew: EMG samples received against the sensor's rate, gaps, and how far the newest sample is behind.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pyqtgraph as pg  # noqa: E402
from PySide6 import QtCore, QtWidgets  # noqa: E402

from biofeedback.sensors.profiles import load_profiles  # noqa: E402
from biofeedback.sensors.virtual import Scenario  # noqa: E402
from biofeedback.session.protocol import load_protocol  # noqa: E402
from biofeedback.session.runner import SessionPlan, session_scenario  # noqa: E402
from biofeedback.stream import StreamKind  # noqa: E402
from biofeedback.ui.dashboard import FRAME_MS, GUI_SHARE, Dashboard  # noqa: E402
from biofeedback.ui.worker import start_worker  # noqa: E402
from biofeedback.vocab import WorkerState  # noqa: E402

SIZE = (1600, 900)
WARMUP_S = 3.0


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def pump(app: QtWidgets.QApplication, seconds: float, until=None) -> None:
    """Run the Qt event loop for ``seconds`` (or until ``until()``), idle-waiting as the real app does."""
    loop = QtCore.QEventLoop()
    QtCore.QTimer.singleShot(round(seconds * 1000), loop.quit)
    if until is not None:
        poll = QtCore.QTimer()
        poll.timeout.connect(lambda: until() and loop.quit())
        poll.start(50)
    loop.exec()


def start_dashboard(app, speed: float, frame_ms: int) -> Dashboard:
    protocol = load_protocol("default")
    scenario = session_scenario(Scenario(), protocol)
    plan = SessionPlan("BENCH1", protocol, True, speed, True, scenario, {"answers": {}, "source": "bench"}, None)
    worker = start_worker(plan, load_profiles(), connect_at_once=True, mode="dashboard-auto")
    dash = Dashboard(worker, protocol, frame_ms=frame_ms)
    dash.resize(*SIZE)
    dash.show()
    pump(app, 30.0, lambda: worker.state == WorkerState.RUNNING)
    return dash


def stop(app, dash: Dashboard) -> None:
    dash.end_session()
    pump(app, 30.0, lambda: dash.worker.finished)
    dash.worker.join(30.0)
    if dash.summary_dialog is not None:
        dash.summary_dialog.close()
    dash.close()


def measure(app, frames_of, seconds: float) -> tuple[float, float, float]:
    """(frames per second, GUI-thread CPU ms per frame, process CPU %) over ``seconds``."""
    f0, c0, p0, t0 = frames_of(), time.thread_time(), time.process_time(), time.monotonic()
    pump(app, seconds)
    frames, wall = frames_of() - f0, time.monotonic() - t0
    gui_ms = 1000.0 * (time.thread_time() - c0) / max(frames, 1)
    return frames / wall, gui_ms, 100.0 * (time.process_time() - p0) / wall


def acquired(dash: Dashboard) -> tuple[int, float, int]:
    """(EMG rows received, session seconds, gaps) so far."""
    acq = dash.worker.acq
    return acq.hub.buffer(StreamKind.EMG).count, acq.clock.now_s(), len(acq.hub.gaps)


def empty_repaint_ms(app, dash: Dashboard, seconds: float) -> float:
    """GUI-thread CPU ms per full repaint of the dashboard's plot area with no data (axes, grids, titles, legends)."""
    dash.timer.stop()
    for trace in dash.traces.values():
        trace.curve.setData([], [])
    repaint = QtCore.QTimer()
    repaint.timeout.connect(dash.canvas.viewport().update)
    repaint.start(0)
    _, gui_ms, _ = measure(app, lambda: dash.frames, seconds)
    repaint.stop()
    return gui_ms


def bench_dashboard(app, seconds: float) -> tuple[tuple[float, float, float], tuple[float, float, float],
                                                  dict[str, int], float, str, float]:
    dash = start_dashboard(app, 2.0, frame_ms=0)
    dash.emg_window.setValue(20.0)
    pump(app, WARMUP_S + dash.emg_window.value() / 2.0)
    points = {name: 0 if tr.curve.getOriginalDataset()[0] is None else len(tr.curve.getOriginalDataset()[0])
              for name, tr in dash.traces.items()}
    rows0, t0, gaps0 = acquired(dash)
    result = measure(app, lambda: dash.frames, seconds)
    rows1, t1, gaps1 = acquired(dash)
    hub = dash.worker.acq.hub
    rate_hz = next(r for (stream, _), r in hub.rates.items() if stream == StreamKind.EMG)
    behind_ms = 1000.0 * (t1 - hub.buffer(StreamKind.EMG).snapshot(1)[0][-1]) / dash.worker.acq.clock.speed
    acquisition = (f"EMG samples received while drawing {100.0 * (rows1 - rows0) / ((t1 - t0) * rate_hz):.1f} % of the"
                   f" sensor's {rate_hz:.0f} Hz, {gaps1 - gaps0} gaps, newest sample {behind_ms:.0f} ms behind at the end")
    latency = dash.latency_ms
    dash.frame_ms = FRAME_MS  # as the app runs: the timer's own period
    dash.timer.setInterval(FRAME_MS)
    pump(app, 1.0)
    paced = measure(app, lambda: dash.frames, seconds / 2)
    empty_ms = empty_repaint_ms(app, dash, seconds / 3)
    stop(app, dash)
    return result, paced, points, latency, acquisition, empty_ms


class PlainLoop:
    """The reference: a GraphicsLayoutWidget with the dashboard's plot grid, ``setData`` per curve per frame."""

    def __init__(self, points: dict[str, int]) -> None:
        self.win = pg.GraphicsLayoutWidget()
        self.win.resize(*SIZE)
        grid = {"emg_l": (0, 0, 1), "emg_r": (1, 0, 1), "tension_l": (2, 0, 2), "ecg": (0, 1, 1), "hr": (1, 1, 1),
                "rr": (2, 1, 1), "rmssd": (3, 1, 1)}
        plots = {k: self.win.addPlot(row=r, col=c, rowspan=rs) for k, (r, c, rs) in grid.items()}
        plots["tension_r"], plots["stress"] = plots["tension_l"], plots["rmssd"]
        rng = np.random.default_rng(0)
        self.data = {k: rng.standard_normal(max(n, 2) * 2) for k, n in points.items()}
        self.n = points
        self.curves = {k: plots[k].plot(pen="y") for k in points}
        self.frames = 0
        self.i = 0
        self.timer = QtCore.QTimer()
        self.timer.timeout.connect(self.update)
        self.win.show()
        self.timer.start(0)

    def update(self) -> None:
        self.i += 1
        for k, curve in self.curves.items():
            n = max(self.n[k], 2)
            start = self.i % n
            curve.setData(np.arange(n, dtype=float), self.data[k][start : start + n])
        self.win.repaint()
        self.frames += 1


def bench_memory(app, wall_s: float, speed: float) -> list[tuple[float, float]]:
    dash = start_dashboard(app, speed, frame_ms=16)
    samples = []
    end = time.monotonic() + wall_s
    while time.monotonic() < end:
        pump(app, 5.0)
        samples.append((dash.worker.acq.clock.now_s(), rss_mb()))
    stop(app, dash)
    return samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="wall seconds of each FPS measurement")
    ap.add_argument("--long-seconds", type=float, default=60.0, help="wall seconds of the memory run")
    ap.add_argument("--long-speed", type=float, default=10.0, help="speed of the memory run")
    args = ap.parse_args()
    os.environ.setdefault("BIOFEEDBACK_HOME", tempfile.mkdtemp(prefix="bench-dashboard-"))
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])

    (fps, gui_ms, cpu), (app_fps, app_gui_ms, app_cpu), points, latency, acquisition, empty_ms = bench_dashboard(
        app, args.seconds)
    print(f"points per frame: {points}")
    print(f"dashboard   : {fps:6.1f} FPS, GUI thread {gui_ms:5.2f} ms CPU/frame, process CPU {cpu:5.1f} %"
          f" (incl. virtual sensors, processing, recording); arrival-to-paint latency {latency or float('nan'):.0f} ms")
    print(f"  as the app: {app_fps:6.1f} FPS, GUI thread {app_gui_ms:5.2f} ms CPU/frame, process CPU {app_cpu:5.1f} %"
          f" with its own {FRAME_MS} ms timer (at most {1000 / FRAME_MS:.1f} FPS; target >= 60:"
          f" {'met' if app_fps >= 60 else 'NOT met'})")
    print(f"acquisition : {acquisition}")
    print(f"empty plots : {empty_ms:5.2f} ms CPU per whole repaint of the plot area without data (a frame repaints only"
          f" the traces' plots); GUI_SHARE {GUI_SHARE}"
          f" paces that alone to {1000.0 * GUI_SHARE / empty_ms:.0f} FPS")
    plain = PlainLoop(points)
    pump(app, WARMUP_S)
    pfps, pgui_ms, pcpu = measure(app, lambda: plain.frames, args.seconds)
    plain.timer.stop()
    plain.win.close()
    print(f"plain loop  : {pfps:6.1f} FPS, GUI thread {pgui_ms:5.2f} ms CPU/frame, process CPU {pcpu:5.1f} %")
    print(f"ratios      : FPS dashboard/plain {fps / pfps:.2f} (target >= 60 FPS absolute: {'met' if fps >= 60 else 'NOT met'}); "
          f"GUI CPU per frame dashboard/plain {gui_ms / pgui_ms:.2f} (target <= 1.5)")

    samples = bench_memory(app, args.long_seconds, args.long_speed)
    print("memory      : " + ", ".join(f"{t:.0f} s {m:.0f} MB" for t, m in samples))
    full = [(t, m) for t, m in samples if t > 150.0]
    if len(full) >= 2:
        slope = np.polyfit([t for t, _ in full], [m for _, m in full], 1)[0] * 600
        half = full[len(full) // 2 :]
        print(f"memory      : after the rings filled (>150 session s): {full[0][1]:.0f} -> {full[-1][1]:.0f} MB, "
              f"trend {slope:+.1f} MB per 10 session minutes; over the last {half[-1][0] - half[0][0]:.0f} session s "
              f"{half[-1][1] - half[0][1]:+.1f} MB (target flat; a one-time step fits as a trend)")
    print(f"peak RSS    : {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
