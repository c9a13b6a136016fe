"""What the one-core tests share: the scripted protocol, the plans, the event times of a recording, the counters."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from biofeedback.dsp import EmgProcessor, LiveHrv
from biofeedback.sensors.virtual import Scenario
from biofeedback.session.protocol import load_protocol
from biofeedback.session.runner import SessionPlan, session_scenario
from biofeedback.store import SessionReader
from biofeedback.stream import StreamKind

PROTOCOL = Path(__file__).resolve().parents[1] / "data" / "protocols" / "session-short.toml"
SPEED = 20.0
SCREENING = {"answers": {"consent": True}, "source": "test"}


def scripted_plan(speed: float = SPEED) -> SessionPlan:
    """An unattended session of the short test protocol (scripted technique, hands-on, note) on virtual sensors."""
    protocol = load_protocol(str(PROTOCOL))
    return SessionPlan("C001", protocol, True, speed, True, session_scenario(Scenario(), protocol), SCREENING, None)


def event_times(path) -> list[tuple[str, str, float, float]]:
    """(kind, label, time after the first phase's start, duration) of every phase, hands-on, marker and note."""
    with SessionReader(path) as r:
        events = [e for e in r.events() if e["kind"] in ("phase-start", "phase", "hands-on", "marker", "note")]
    t0 = min(e["t_s"] for e in events if e["kind"] == "phase-start")
    return sorted((e["kind"], e["label"], round(e["t_s"] - t0, 6), round(e["duration_s"], 6)) for e in events)


@dataclass
class Counts:
    """Calls into the EMG chain and the RR corrector while a session runs (the real ones, counted)."""

    emg_blocks: int = 0
    emg_samples: int = 0
    beats: int = 0
    rr_correctors: set = field(default_factory=set)
    """The ``LiveHrv`` objects that were given beats."""
    live: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)


def count_processing(monkeypatch) -> Counts:
    """Count every call of ``EmgProcessor.process`` and every beat into ``LiveHrv.add_beats`` (calling through), until
    the session's outcome starts being computed (offline analysis is not live processing)."""
    import biofeedback.analysis.summary as summary

    counts = Counts()
    process, add_beats = EmgProcessor.process, LiveHrv.add_beats
    outcome = summary.session_outcome

    def counted_process(self, samples):
        with counts.lock:
            if counts.live and len(samples):  # processors compile their kernels on an empty block at construction
                counts.emg_blocks += 1
                counts.emg_samples += len(samples)
        return process(self, samples)

    def counted_add_beats(self, times, rr):
        with counts.lock:
            if counts.live:
                counts.beats += int(np.isfinite(np.atleast_1d(rr)).sum())
                counts.rr_correctors.add(id(self))
        return add_beats(self, times, rr)

    def end_of_live(path):
        counts.live = False
        return outcome(path)

    monkeypatch.setattr(EmgProcessor, "process", counted_process)
    monkeypatch.setattr(LiveHrv, "add_beats", counted_add_beats)
    monkeypatch.setattr(summary, "session_outcome", end_of_live)
    return counts


def recorded_counts(path) -> tuple[int, int, int]:
    """(EMG blocks, EMG samples, RR beats) the recording received."""
    with SessionReader(path) as r:
        emg = [b for b in r.raw_blocks(StreamKind.EMG)]
        rr = [b for b in r.raw_blocks(StreamKind.RR)]
    return len(emg), sum(b["n"] for b in emg), sum(int(np.isfinite(b["data"][:, 0]).sum()) for b in rr)


def assert_processed_once(counts: Counts, path) -> None:
    blocks, samples, beats = recorded_counts(path)
    assert blocks > 100 and beats > 30
    assert (counts.emg_blocks, counts.emg_samples) == (blocks, samples), "each EMG block through the chain once"
    assert counts.beats == beats, "each beat through RR correction once"
    assert len(counts.rr_correctors) == 1, "one RR corrector for the one strap"
