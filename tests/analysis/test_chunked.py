"""Offline analysis in bounded memory (issue 19): the session read in small pieces gives exactly the answers of the
whole file read at once, on the example recording and on a generated session with a recorded gap and an
electrode-off stretch; pieces are made small so that their edges fall inside filters' warm-up, RMS windows, the
gap and the contact loss."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from biofeedback.analysis import data as data_module
from biofeedback.analysis import load_session, summarize
from biofeedback.dsp import EmgProcessor
from biofeedback.dsp.emg import SESSION_CARDIAC
from biofeedback.store import SessionReader, SessionWriter
from biofeedback.store.export import contact_lost_stretches
from biofeedback.stream import NS_PER_S, Block, BlockFlag, StreamKind

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "recordings" / "example-demo.bfsession"
PIECES = (997, 4096)
"""Samples per piece: 997 (not a multiple of a block, a step or a second) and a power of two."""


def _bench_long():
    spec = importlib.util.spec_from_file_location("bench_long", ROOT / "tools" / "bench_long.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_long"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """4 min of demo-like data: an EMG gap at 61-64 s and the electrode off at 130-150 s."""
    return _bench_long().write_long_session(tmp_path_factory.mktemp("long") / "long.bfsession", 240.0, seed=3,
                                            gap_at_s=61.0, off_at_s=130.0)


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory) -> Path:
    """EMG whose blocks arrive out of time order (a late block, a block twice) with a gap of 0.5 s."""
    path = tmp_path_factory.mktemp("shuffled") / "s.bfsession"
    rng = np.random.default_rng(5)
    starts = [k * 0.05 for k in range(200) if not 100 <= k < 110]
    starts[40], starts[41] = starts[41], starts[40]
    starts.insert(70, starts[69])
    with SessionWriter(path, {"client_id": "S001", "utc_anchor": 1.7e9}) as w:
        for t0 in starts:
            w.add_block(Block("emg", "e", int(t0 * NS_PER_S), rng.normal(0, 30, (50, 2)), 1000.0,
                              flags=BlockFlag.SENSOR_CONTACT_LOST if 3.0 <= t0 < 3.3 else 0), t0)
    return path


def whole_file_emg(path: Path) -> tuple:
    """The EMG chain over the whole file at once, as the analysis did before it read in pieces: every sample in
    memory, sorted by time, one processor per stretch between jumps of more than ``EMG_BREAK_S``."""
    with SessionReader(path) as reader:
        source = next(src for s, src in reader.streams() if s == StreamKind.EMG)
        rate = reader.rate_hz(StreamKind.EMG, source)
        t, x = reader.samples(StreamKind.EMG, source)
        beats = reader.beats()["t_s"]
        spans = [(float(b["times_s"][0]), float(b["times_s"][-1]), bool(b["flags"] & BlockFlag.SENSOR_CONTACT_LOST))
                 for b in reader.raw_blocks(StreamKind.EMG, source) if b["n"]]
    order = np.argsort(t, kind="stable")
    t, x = t[order], x[order]
    step = round(rate / data_module.ANALYSIS_RATE_HZ)
    out = []
    for seg in np.split(np.arange(t.size), np.flatnonzero(np.diff(t) > data_module.EMG_BREAK_S) + 1):
        rms, flagged = EmgProcessor(rate, channels=x.shape[1], cardiac=SESSION_CARDIAC).rms_every(
            x[seg], step, beats_s=beats - t[seg[0]])
        out.append((t[seg][::step], rms, flagged))
    return (np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out]),
            np.concatenate([o[2] for o in out]), contact_lost_stretches(spans, rate))


@pytest.mark.parametrize("which", ["example", "generated", "shuffled"])
def test_pieces_join_to_the_whole_stream(which, generated, shuffled):
    path = {"example": EXAMPLE, "generated": generated, "shuffled": shuffled}[which]
    with SessionReader(path) as reader:
        for stream, source in reader.streams():
            t, x = reader.samples(stream, source)
            for n in PIECES:
                pieces = list(reader.chunks(stream, source, n))
                assert len(pieces) > 1 or t.size <= n
                assert np.array_equal(np.concatenate([p.times_s for p in pieces]), t)
                assert np.array_equal(np.concatenate([p.data for p in pieces]), x)
                if reader.rate_hz(stream, source):
                    order = np.argsort(t, kind="stable")
                    pieces = list(reader.chunks(stream, source, n, time_order=True))
                    assert np.array_equal(np.concatenate([p.times_s for p in pieces]), t[order])
                    assert np.array_equal(np.concatenate([p.data for p in pieces]), x[order])


@pytest.mark.parametrize("which", ["example", "generated", "shuffled"])
def test_emg_in_pieces_equals_the_whole_file(which, generated, shuffled):
    path = {"example": EXAMPLE, "generated": generated, "shuffled": shuffled}[which]
    t, rms, flagged, contact = whole_file_emg(path)
    assert contact or which == "example"
    with SessionReader(path) as reader:
        for n in PIECES:
            got = data_module._process_emg(reader, None, reader.duration_s(), n)
            assert np.array_equal(got.t_s, t)
            assert np.array_equal(got.rms_uv, rms)
            assert np.array_equal(got.flagged, flagged)
            assert [(a.onset_s, a.end_s) for a in got.contact] == [(a, a + (b - a)) for a, b in contact]


def test_loaded_session_and_summary_read_the_file_in_pieces(generated, monkeypatch):
    """``load_session`` goes through the pieces: a small piece size changes neither the track nor the summary."""
    whole = load_session(generated)
    monkeypatch.setattr(data_module, "CHUNK_SAMPLES", 997)
    read = []
    original = SessionReader.chunks
    monkeypatch.setattr(SessionReader, "chunks", lambda self, *a, **k: read.append(a) or original(self, *a, **k))
    small = load_session(generated)
    assert read and read[0][2] == 997
    assert np.array_equal(small.emg.rms_uv, whole.emg.rms_uv) and np.array_equal(small.emg.valid, whole.emg.valid)
    assert summarize(small) == summarize(whole)
    t, rms, flagged, _ = whole_file_emg(generated)
    assert np.array_equal(whole.emg.rms_uv, rms)
    treatment = summarize(whole)[1]
    assert treatment["phase"] == "treatment" and treatment["note"]  # hands-on and the electrode off leave too little


def test_bootstrap_in_batches_gives_the_same_comparison(monkeypatch):
    """compare's resamples judged a few rows at a time (bounded memory) give the very same levels, CIs and verdicts
    as all of them at once."""
    compare_module = importlib.import_module("biofeedback.analysis.compare")
    data = load_session(EXAMPLE)
    monkeypatch.setattr(compare_module, "RESAMPLE_BATCH_VALUES", 1 << 40)
    at_once = compare_module.compare(data, n_boot=100)
    monkeypatch.setattr(compare_module, "RESAMPLE_BATCH_VALUES", 5000)
    batched = compare_module.compare(data, n_boot=100)
    assert repr(batched) == repr(at_once)
    assert at_once.overall["label"] and len(at_once.metrics) > 5
