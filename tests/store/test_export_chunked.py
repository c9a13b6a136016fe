"""Exports that stream (issue 19): written a small piece at a time they are byte for byte the files written from
each stream read whole in one piece, on the example recording and on a generated session with a recorded gap and
an electrode-off stretch; and electrode-off stretches are marked in every export (issue 14, item 3): the CSV column,
the BIDS column and the HDF5 flag hold exactly the samples inside the EDF+'s BAD_contact annotation."""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import biofeedback.store.export as export_module
from biofeedback.store import SessionReader
from biofeedback.store.export import FORMATS, export_session

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "recordings" / "example-demo.bfsession"
OFF_S = (80.0, 100.0)
"""The generated session's electrode-off stretch."""


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    spec = importlib.util.spec_from_file_location("bench_long", ROOT / "tools" / "bench_long.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_long"] = module
    spec.loader.exec_module(module)
    return module.write_long_session(tmp_path_factory.mktemp("long") / "long.bfsession", 120.0, seed=4,
                                     gap_at_s=31.0, off_at_s=OFF_S[0])


def _export(path: Path, out: Path, monkeypatch, chunk_samples: int, tsv_rows: int) -> dict[str, bytes]:
    monkeypatch.setattr(export_module, "CHUNK_SAMPLES", chunk_samples)
    monkeypatch.setattr(export_module, "TSV_CHUNK_ROWS", tsv_rows)
    files = {}
    for fmt in FORMATS:
        for f in export_session(path, fmt, out / fmt):
            files[str(f.relative_to(out))] = f
    return files


def _hdf5_content(path: Path) -> list:
    with h5py.File(path, "r") as f:
        found = []
        f.visititems(lambda name, obj: found.append((name, repr(obj[()].tolist()) if isinstance(obj, h5py.Dataset)
                                                     else "", sorted((k, str(v)) for k, v in obj.attrs.items()))))
        return found + sorted((k, str(v)) for k, v in f.attrs.items())


@pytest.mark.parametrize("which", ["example", "generated"])
def test_exports_written_in_small_pieces_equal_the_whole_stream_at_once(which, generated, tmp_path, monkeypatch):
    path = EXAMPLE if which == "example" else generated
    whole = _export(path, tmp_path / "whole", monkeypatch, 1 << 40, 1 << 40)
    pieces = _export(path, tmp_path / "pieces", monkeypatch, 997, 1000)
    assert sorted(whole) == sorted(pieces) and len(whole) > 15
    for name, f in whole.items():
        if name.endswith(".h5"):
            assert _hdf5_content(f) == _hdf5_content(pieces[name])
        else:
            assert f.read_bytes() == pieces[name].read_bytes(), name


def test_electrode_off_is_marked_in_every_export(generated, tmp_path, monkeypatch):
    files = _export(generated, tmp_path, monkeypatch, 4096, 5000)
    with SessionReader(generated) as reader:
        t, _ = reader.samples("emg", "open-emg")
    import edfio

    edf = edfio.read_edf(next(f for n, f in files.items() if n.endswith(".edf")))
    (stretch,) = [a for a in edf.annotations if a.text.startswith("BAD_contact emg")]
    inside = (t >= stretch.onset) & (t < stretch.onset + stretch.duration)
    assert OFF_S[0] <= t[inside].min() and t[inside].max() < OFF_S[1] and inside.sum() == 20_000

    csv = np.loadtxt(next(f for n, f in files.items() if n.endswith("_emg.csv")), delimiter=",", skiprows=1)
    np.testing.assert_array_equal(csv[:, -1] == 1, inside)
    with h5py.File(next(f for n, f in files.items() if n.endswith(".h5"))) as f:
        np.testing.assert_array_equal(f["streams/emg/open-emg/contact_lost"][:] == 1, inside)
        assert not f["streams/ecg/polar-h10/contact_lost"][:].any()
    tsv = next(f for n, f in files.items() if n.endswith("1000Hz_physio.tsv.gz"))
    columns = json.loads(Path(str(tsv).replace(".tsv.gz", ".json")).read_text())["Columns"]
    assert columns == ["emg_left_trapezius", "emg_right_trapezius", "emg_contact_lost"]
    with gzip.open(tsv, "rt") as f:
        flag = np.array([line.rstrip("\n").split("\t")[2] for line in f])
    grid_t = np.arange(flag.size) / 1000.0
    assert set(flag[(grid_t >= 31.0) & (grid_t < 34.0)]) == {"n/a"}  # the gap: no sample, no flag
    marked = grid_t[flag == "1"]
    assert marked.size == 20_000 and marked.min() == pytest.approx(OFF_S[0]) and marked.max() < OFF_S[1]


def test_export_command_shows_progress_per_stream(generated, tmp_path, monkeypatch, capsys):
    from biofeedback.cli import main

    monkeypatch.setattr(export_module, "PROGRESS_EVERY_S", 60.0)
    monkeypatch.setattr(export_module, "CHUNK_SAMPLES", 20_000)
    assert main(["export", str(generated), "--format", "hdf5", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err.splitlines()
    emg = [line for line in err if line.startswith("... exporting emg/open-emg: ")]
    assert len(emg) >= 2 and emg[-1].endswith("of 2 min") and any("exporting ecg/polar-h10" in line for line in err)


def test_edf_written_record_by_record_is_the_file_edfio_writes_from_whole_signals(generated, tmp_path, monkeypatch):
    import io

    import edfio

    monkeypatch.setattr(export_module, "CHUNK_SAMPLES", 997)
    (path,) = export_session(generated, "edf", tmp_path)
    edf = edfio.read_edf(path)
    again = io.BytesIO()
    edf.write(again)  # edfio, from the whole signals and annotations it read back
    assert again.getvalue() == path.read_bytes()
    with SessionReader(generated) as reader:
        t, x = reader.samples("emg", "open-emg")
    placed = export_module._place(t, 1000.0)
    for c, signal in enumerate(edf.signals[:2]):
        expected = np.zeros(len(signal.data))
        inside = placed.grid < expected.size
        expected[placed.grid[inside]] = x[placed.sample[inside], c]
        lo, hi = signal.physical_range
        np.testing.assert_allclose(signal.data, expected, rtol=0, atol=(hi - lo) / 65535)
    no_data = [a for a in edf.annotations if a.text.startswith("BAD_ACQ_SKIP no data emg")]
    assert any(a.onset == pytest.approx(31.0) and a.duration == pytest.approx(3.0) for a in no_data)  # the gap
