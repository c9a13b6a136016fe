"""Kill test of the session file: SIGKILL a process writing a session, then check the file.

Two modes. The synthetic writer (default) checks every stored item exactly; ``--session`` kills the real ``session``
command and measures, per stream, how much session time was lost.

Synthetic writer: the child writes (checkpointing its WAL every few pages, so that kills land in checkpoints too) EMG (1 kHz x 2 channels, 20-sample blocks), ECG (130 Hz, 73-sample blocks), HR
notifications, beats, phases and markers, paced in session time at ``--speed``. Before it hands an
item to the writer it appends a line to a progress file (so the progress file over-reports what
was handed, and the measured loss is an upper bound). The parent kills it at a random moment,
sometimes reading the live file from its own process first, and then checks that the file opens
with the normal reader, that every stored block is intact and in order with no holes, and that
the EMG lost is at most 1 s of session time.

Real command (``--session``): starts ``python -m biofeedback.cli session --virtual --auto --answers all-clear
--headless --speed S --protocol demo`` in its own home folder, SIGKILLs it at a random moment (some during start-up,
most once every stream is in the file, read live from this process), reopens the file with the normal reader (it must
open with nothing damaged and ``complete`` false) and reports per stream (emg, ecg, hr, rr) the session time between
the kill and the newest stored sample, against ``loss_bound_s``: the writer's commit interval, plus the time a commit
and the hand-over take (``HANDOVER_WALL_S``, wall seconds, so times the speed), plus the stream's own latency (the
newest sample of a stream is older than the moment it reaches the writer by up to one frame or notification).

    python tools/kill_test.py --kills 50
    python tools/kill_test.py --session --kills 20 --speeds 1,10
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

EMG_RATE_HZ, EMG_BLOCK = 1000.0, 20
ECG_RATE_HZ, ECG_BLOCK = 130.0, 73
MAX_LOSS_S = 1.0
"""The requirement: a kill loses at most the last second of session time."""
CHECKPOINT_PAGES = 8
"""The child checkpoints the WAL far more often than a real session, so that kills also hit checkpoints."""

SESSION_STREAMS = ("emg", "ecg", "hr", "rr")
OPEN_EMG_FRAME_S = 20 / 1000.0
"""One open-emg frame (20 samples at 1 kHz): its newest sample is this old when the frame is sent."""
POLAR_ECG_FRAME_S = 73 / 130.0
"""One Polar H10 ECG frame (73 samples at 130 Hz)."""
LONGEST_RR_S = 1.2
"""Longest RR interval of the virtual strap's script (50 bpm with RSA): the newest beat of a notification is at most
this old when the notification is sent."""
HANDOVER_WALL_S = 0.1
"""Wall seconds allowed for a commit (an fsync of the WAL) and the hand-over from the notification callback through the
hub and recorder to the writer's buffer; in session time this counts ``speed`` times."""
STARTUP_KILL_FRACTION = 0.15
"""Share of the real-command kills that land during start-up (before or while the file is made and the sensors
connect); the file, if there is one, must open, but there is no loss to measure."""
SESSION_READY_WALL_S = 60.0
"""How long the real command may take until every stream is in its file."""


def emg_block(k: int) -> tuple[np.ndarray, bytes]:
    """Samples (µV) and raw packet of EMG block ``k``, reproducible in both processes."""
    i = np.arange(k * EMG_BLOCK, (k + 1) * EMG_BLOCK)
    data = np.stack([120.0 * np.sin(0.013 * i), 80.0 * np.cos(0.007 * i) + 3.25], axis=1)
    raw = k.to_bytes(4, "little") + np.round(data * 10).astype("<i2").tobytes()
    return data, raw


def ecg_block(j: int) -> np.ndarray:
    i = np.arange(j * ECG_BLOCK, (j + 1) * ECG_BLOCK)
    return (900.0 * np.sin(0.05 * i))[:, None]


def beat(m: int) -> tuple[float, float, float, int]:
    """Beat ``m``: time (s), raw RR (ms), corrected RR (ms), flags."""
    return 0.8 * (m + 1), 800.0 + (m % 7), 800.0, m % 2


def child(path: Path, speed: float, progress: Path) -> None:
    """Write a session for ever, pacing it at ``speed``; the parent kills it."""
    from biofeedback.store import SessionWriter, session_file
    from biofeedback.stream import NS_PER_S, Block, Gap

    session_file.WAL_AUTOCHECKPOINT_PAGES = CHECKPOINT_PAGES

    fd = os.open(progress, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def report(line: str) -> None:
        os.write(fd, (line + "\n").encode())

    meta = {"client_id": "C001", "speed": speed, "protocol": "kill-test",
            "devices": [{"name": "Polar H10", "address": "A0:9E:1A:00:11:22", "firmware": "3.1.1"}]}
    writer = SessionWriter(path, meta)
    report("ready")
    writer.add_event("phase", 0.0, "baseline", 120.0)
    t0 = time.monotonic()
    k = j = m = h = 0
    while True:
        now = (time.monotonic() - t0) * speed
        while (k + 1) * EMG_BLOCK / EMG_RATE_HZ <= now:
            data, raw = emg_block(k)
            report(f"emg {k}")
            host = round((k + 1) * EMG_BLOCK / EMG_RATE_HZ * NS_PER_S)
            writer.add_block(Block("emg", "emg-1", host, data, EMG_RATE_HZ, k * EMG_BLOCK, k, channels=("left", "right"),
                                   raw=raw), k * EMG_BLOCK / EMG_RATE_HZ)
            k += 1
        while (j + 1) * ECG_BLOCK / ECG_RATE_HZ <= now:
            report(f"ecg {j}")
            writer.add_block(Block("ecg", "h10", round((j + 1) * ECG_BLOCK / ECG_RATE_HZ * NS_PER_S), ecg_block(j),
                                   ECG_RATE_HZ, j * ECG_BLOCK, channels=("ecg",)), j * ECG_BLOCK / ECG_RATE_HZ)
            j += 1
        while beat(m)[0] <= now:
            report(f"beat {m}")
            t, raw_ms, corrected_ms, flags = beat(m)
            writer.add_beats("h10", [t], [raw_ms], [corrected_ms], [flags])
            writer.add_block(Block("hr", "h10", round(t * NS_PER_S), np.array([[60000.0 / raw_ms]])), None)
            m += 1
        while h + 1 <= now:
            report(f"marker {h}")
            writer.add_event("marker", float(h), f"m{h}", data={"n": h})
            if h % 3 == 2:
                writer.add_gap(Gap("emg", "emg-1", h + 0.5, h + 0.5, "test-gap", 0))
            h += 1
        time.sleep(0.002)


def _progress(progress: Path) -> dict[str, int]:
    """Highest index reported per item kind (-1 if none)."""
    last = {"emg": -1, "ecg": -1, "beat": -1, "marker": -1, "ready": -1}
    if progress.exists():
        for line in progress.read_text().splitlines():
            kind, _, n = line.partition(" ")
            last[kind] = int(n) if n else 0
    return last


def check_file(path: Path, last: dict[str, int]) -> dict:
    """Open a killed writer's file with the normal reader and check it; returns figures."""
    from biofeedback.store import SessionReader

    handed_s = (last["emg"] + 1) * EMG_BLOCK / EMG_RATE_HZ
    if not path.exists():
        assert handed_s <= MAX_LOSS_S, f"no file, but {handed_s:.3f} s of EMG had been handed over"
        return {"handed_s": handed_s, "saved_s": 0.0, "lost_s": handed_s, "blocks": 0}
    with SessionReader(path) as reader:
        assert reader.meta["client_id"] == "C001" and reader.meta["complete"] is False
        emg = list(reader.raw_blocks("emg"))
        for k, block in enumerate(emg):
            data, raw = emg_block(k)
            assert block["seq"] == k and block["first_index"] == k * EMG_BLOCK, f"block {k} missing or out of order"
            assert block["raw"] == raw, f"raw bytes of block {k} differ"
            np.testing.assert_allclose(block["data"], data, rtol=1e-6, atol=1e-4, err_msg=f"samples of block {k}")
        ecg = [b["first_index"] for b in reader.raw_blocks("ecg")]
        assert ecg == [j * ECG_BLOCK for j in range(len(ecg))], "ECG blocks missing or out of order"
        beats = reader.beats("h10")
        expected = np.array([beat(m) for m in range(len(beats["t_s"]))]).reshape(-1, 4)
        assert len(beats["t_s"]) <= last["beat"] + 1
        np.testing.assert_array_equal(np.column_stack([beats[c] for c in ("t_s", "rr_raw_ms", "rr_corrected_ms", "flags")]),
                                      expected)
        markers = [e["label"] for e in reader.events("marker")]
        assert markers == [f"m{h}" for h in range(len(markers))] and len(markers) <= last["marker"] + 1
        saved_s = len(emg) * EMG_BLOCK / EMG_RATE_HZ
        if emg:
            times, samples = reader.samples("emg")
            assert samples.shape == (len(emg) * EMG_BLOCK, 2)
            assert abs(times[-1] - (saved_s - 1 / EMG_RATE_HZ)) < 1e-9
    lost_s = handed_s - saved_s
    assert lost_s <= MAX_LOSS_S, f"lost {lost_s:.3f} s of EMG (handed {handed_s:.3f} s, file has {saved_s:.3f} s)"
    return {"handed_s": handed_s, "saved_s": saved_s, "lost_s": lost_s, "blocks": len(emg)}


def read_live(path: Path) -> bool:
    """Read a file while its writer appends, from this (another) process; True if it was there to read."""
    from biofeedback.store import SessionReader

    if not path.exists():
        return False
    with SessionReader(path) as reader:
        times, samples = reader.samples("emg") if ("emg", "emg-1") in reader.streams() else (np.empty(0), None)
        assert times.size == 0 or np.all(np.diff(times) > 0)
        reader.beats()
        reader.events()
    return True


def kill_once(workdir: Path, speed: float, rng: random.Random) -> dict:
    """Start a writer, kill it with SIGKILL at a random moment, check the file; returns figures."""
    path = workdir / "session.bfsession"
    progress = workdir / "progress.txt"
    env = dict(os.environ, BIOFEEDBACK_HOME=str(workdir / "home"))
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, __file__, "--child", str(path), str(speed), str(progress)], env=env)
    during_startup = rng.random() < 0.15
    live = False
    try:
        if during_startup:
            time.sleep(rng.uniform(0.0, 0.4))
        else:
            deadline = time.monotonic() + 20
            while _progress(progress)["ready"] < 0:
                assert proc.poll() is None, f"writer exited with {proc.returncode}"
                assert time.monotonic() < deadline, "writer did not start"
                time.sleep(0.005)
            delay = rng.uniform(0.0, 1.5)
            read_at = rng.uniform(0.0, delay)
            time.sleep(read_at)
            live = read_live(path)
            time.sleep(max(0.0, delay - read_at))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    figures = check_file(path, _progress(progress))
    return {**figures, "speed": speed, "live_read": live}


def run(kills: int, seed: int, workroot: Path) -> list[dict]:
    rng = random.Random(seed)
    results = []
    for i in range(kills):
        workdir = workroot / f"kill{i:03d}"
        workdir.mkdir()
        results.append(kill_once(workdir, speed=(1.0 if i % 2 == 0 else 20.0), rng=rng))
    return results


def stream_latency_s(stream: str) -> float:
    """Session seconds by which a stream's newest sample is older than its arrival at the host, at most."""
    from biofeedback.sensors.virtual.hrs import HRS_NOTIFY_PERIOD_S

    return {"emg": OPEN_EMG_FRAME_S, "ecg": POLAR_ECG_FRAME_S, "hr": HRS_NOTIFY_PERIOD_S,
            "rr": HRS_NOTIFY_PERIOD_S + LONGEST_RR_S}[stream]


def loss_bound_s(stream: str, speed: float) -> float:
    """The stated bound on session seconds of ``stream`` lost at a kill: commit interval (``COMMIT_INTERVAL_S`` of
    session time, or ``MIN_COMMIT_WALL_S`` of wall time at high speed) + ``HANDOVER_WALL_S`` x speed + the stream's
    own latency (``stream_latency_s``)."""
    from biofeedback.store.session_file import COMMIT_INTERVAL_S, MIN_COMMIT_WALL_S

    return max(COMMIT_INTERVAL_S, MIN_COMMIT_WALL_S * speed) + HANDOVER_WALL_S * speed + stream_latency_s(stream)


def _session_file(home: Path) -> Path | None:
    found = glob.glob(str(home / "clients" / "*" / "sessions" / "*.bfsession"))
    return Path(found[0]) if found else None


def _newest_s(reader) -> dict[str, float]:
    """Session time of the newest stored sample of each stream in ``SESSION_STREAMS`` that has data."""
    newest = {}
    for stream, source in reader.streams():
        if stream in SESSION_STREAMS:
            times, _ = reader.samples(stream, source)
            if times.size:
                newest[stream] = max(newest.get(stream, -np.inf), float(times.max()))
    return newest


def kill_session_once(workdir: Path, speed: float, rng: random.Random, protocol: str = "demo",
                      startup: bool | None = None) -> dict:
    """Run the real ``session`` command, SIGKILL it at a random moment, check its file; returns figures: per stream
    the session seconds lost (``lost_s``) and, for a kill during start-up, ``startup`` True and no losses.
    ``startup``: kill during start-up (True), once every stream is recorded (False), or either at random (None)."""
    from biofeedback.store import SessionReader

    home = workdir / "home"
    env = dict(os.environ, BIOFEEDBACK_HOME=str(home))
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    argv = [sys.executable, "-m", "biofeedback.cli", "session", "--client", "C001", "--virtual", "--auto",
            "--answers", "all-clear", "--headless", "--speed", f"{speed:g}", "--protocol", protocol]
    startup = rng.random() < STARTUP_KILL_FRACTION if startup is None else startup
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        if startup:
            time.sleep(rng.uniform(0.0, 3.0))
        else:
            deadline = time.monotonic() + SESSION_READY_WALL_S
            while True:
                assert proc.poll() is None, f"session exited with {proc.returncode}: {proc.stderr.read().decode()}"
                assert time.monotonic() < deadline, "the session did not record every stream in time"
                path = _session_file(home)
                if path is not None:
                    with SessionReader(path) as reader:
                        if set(_newest_s(reader)) >= set(SESSION_STREAMS):
                            break
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 3.0))
        killed_utc = time.time()
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    path = _session_file(home)
    figures: dict = {"speed": speed, "startup": startup, "lost_s": {}}
    if path is None:
        assert startup, "no session file after every stream was recorded"
        return figures
    with SessionReader(path) as reader:
        meta = reader.meta
        assert meta["complete"] is False and meta["client_id"] == "C001"
        problems = reader.check()
        assert not problems, problems
        newest = _newest_s(reader)
    killed_s = (killed_utc - meta["utc_anchor"]) * speed
    if not startup:
        figures["lost_s"] = {stream: killed_s - newest[stream] for stream in SESSION_STREAMS}
    figures["killed_s"] = killed_s
    return figures


def run_session(kills: int, speeds: list[float], seed: int, workroot: Path) -> list[dict]:
    """``kills`` kills of the real command, the speeds taken in turn."""
    rng = random.Random(seed)
    results = []
    for i in range(kills):
        workdir = workroot / f"session{i:03d}"
        workdir.mkdir()
        results.append(kill_session_once(workdir, speeds[i % len(speeds)], rng))
    return results


def session_summary(results: list[dict]) -> list[str]:
    """Per speed and stream: kills measured, median and worst loss (session s) against the bound."""
    lines = []
    for speed in sorted({r["speed"] for r in results}):
        measured = [r["lost_s"] for r in results if r["speed"] == speed and r["lost_s"]]
        for stream in SESSION_STREAMS:
            lost = np.array([m[stream] for m in measured])
            if lost.size:
                bound = loss_bound_s(stream, speed)
                lines.append(f"speed {speed:g} {stream:>3}: {lost.size} kills, lost session s: median "
                             f"{np.median(lost):.3f}, worst {lost.max():.3f}; bound {bound:.3f} "
                             + ("(within)" if lost.max() <= bound else "(EXCEEDED)"))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--session", action="store_true", help="kill the real `session` command")
    parser.add_argument("--speeds", default="1,10", help="with --session: the speeds taken in turn (default 1,10)")
    parser.add_argument("--child", nargs=3, metavar=("PATH", "SPEED", "PROGRESS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), float(args.child[1]), Path(args.child[2]))
        return
    t0 = time.monotonic()
    if args.session:
        with tempfile.TemporaryDirectory() as tmp:
            results = run_session(args.kills, [float(s) for s in args.speeds.split(",")], args.seed, Path(tmp))
        print("\n".join(session_summary(results)))
        print(f"{len(results)} kills of the real session command, {sum(r['startup'] for r in results)} during "
              f"start-up; every file opened with nothing damaged; {time.monotonic() - t0:.1f} s")
        return
    with tempfile.TemporaryDirectory() as tmp:
        results = run(args.kills, args.seed, Path(tmp))
    lost = np.array([r["lost_s"] for r in results if r["blocks"]])
    for speed in sorted({r["speed"] for r in results}):
        sel = np.array([r["lost_s"] for r in results if r["blocks"] and r["speed"] == speed])
        if sel.size:
            print(f"speed {speed:g}: {sel.size} kills after the first commit, lost s: median {np.median(sel):.3f}, max {sel.max():.3f}")
    print(f"{len(results)} kills, {len(results) - lost.size} before the first commit, "
          f"{sum(r['live_read'] for r in results)} live reads, all files opened and intact; "
          f"max loss {lost.max() if lost.size else 0:.3f} s; {time.monotonic() - t0:.1f} s")


if __name__ == "__main__":
    main()
