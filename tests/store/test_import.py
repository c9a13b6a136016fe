"""``biofeedback import``: real recordings in, checked against computations made here from the raw files.

Real data (``tests/data/import/``, source notes beside them): the three PLUX OpenSignals HDF5 files
(biosignalsnotebooks, MIT) and BioSPPy's ``emg.txt`` (BSD-3-Clause). For each, this test reads the raw ADC counts
itself (h5py, numpy), converts them with PLUX's documented EMG transfer function written out here
(``(ADC / 2**n - 1/2) * 3 V / 1000``), and compares:

* the stored samples with that conversion, every sample (float32 precision);
* rest and contraction levels: windows chosen from the data by the band-pass-free RMS of the raw µV (0.25 s
  windows, mean removed), against ``analysis.load_session``'s EMG track (20-450 Hz band-passed 250 ms moving RMS)
  over the same stretches. Rest: 0.25 s windows below 1.5x the file's 5th-percentile level, with two such windows
  on either side; compared as medians. Contraction: each run of windows above the geometric mean of that floor
  and the file's highest level, widened by 0.5 s of rest on either side so that the moving RMS sees the whole
  burst; compared burst by burst as RMS over the stretch. The band-pass takes the power below 20 Hz, so the
  analysis reads a little lower; it can never read much higher.

The other formats are checked on files written here from known values.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from biofeedback.analysis.data import load_session
from biofeedback.cli import main
from biofeedback.store import SessionReader, StoreError, export_session
from biofeedback.store.import_session import import_recording

DATA = Path(__file__).resolve().parents[1] / "data" / "import"
PLUX_FILES = sorted((DATA / "plux-emg").glob("*.h5"))
BIOSPPY = DATA / "biosppy-emg" / "emg.txt"
WINDOW_S = 0.25
MARGIN_WINDOWS = 2
REST_TOLERANCE = 0.15
"""Analysis rest level within 15 % of the raw RMS (measured: 5-9 % lower, the power below 20 Hz)."""
CONTRACTION_RANGE = (0.85, 1.05)
"""Analysis / raw RMS over each contraction (measured 0.89-0.97: band-passing only removes power)."""


def plux_uv(counts: np.ndarray, bits: int) -> np.ndarray:
    """PLUX's EMG transfer function (biosignalsplux EMG data sheet): (ADC / 2^n - 1/2) * VCC / G, VCC 3 V, G 1000."""
    return (counts / 2 ** bits - 0.5) * 3.0 / 1000 * 1e6


def raw_plux(path: Path) -> tuple[np.ndarray, int, float]:
    """The one EMG channel of an OpenSignals HDF5 file, read here: counts, resolution (bits) and rate (Hz)."""
    with h5py.File(path, "r") as f:
        (device,) = list(f)
        g = f[device]
        (name,) = [k for k in g["raw"] if k.startswith("channel_")]
        assert g["raw"][name].attrs["sensor"] == "EMG"
        return g["raw"][name][()].astype(float).ravel(), int(g.attrs["resolution"][0]), float(g.attrs["sampling rate"])


def sessions(home: Path) -> list[Path]:
    return sorted(home.rglob("*.bfsession*")) if home.exists() else []


def imported(capsys, *args) -> Path:
    """Run ``biofeedback import`` and return the session file it names."""
    assert main(["import", *map(str, args)]) == 0
    out = capsys.readouterr().out
    return Path(out.split(" as ", 1)[1].splitlines()[0].strip())


def window_levels(uv: np.ndarray, rate: float) -> np.ndarray:
    """Band-pass-free RMS (µV, mean removed) of consecutive ``WINDOW_S`` windows."""
    n = int(WINDOW_S * rate)
    x = uv[: uv.size // n * n].reshape(-1, n)
    return np.sqrt(np.mean((x - x.mean(axis=1, keepdims=True)) ** 2, axis=1))


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.r_[0, mask.astype(int), 0])
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def check_levels(uv: np.ndarray, rate: float, session: Path) -> tuple[float, list[float]]:
    """Compare the analysis's EMG levels with the raw RMS at rest and in each contraction; returns the raw levels."""
    level = window_levels(uv, rate)
    n = int(WINDOW_S * rate)
    emg = load_session(session).emg
    assert emg is not None and emg.rms_uv.shape[1] == 1

    floor = np.quantile(level, 0.05)
    rest = level <= 1.5 * floor
    steady = rest.copy()
    for k in range(1, MARGIN_WINDOWS + 1):
        steady[:-k] &= rest[k:]
        steady[k:] &= rest[:-k]
    steady[:MARGIN_WINDOWS] = steady[-MARGIN_WINDOWS:] = False
    assert steady.sum() >= 4, "too few rest windows in the file to compare"
    index = np.floor(emg.t_s / WINDOW_S).astype(int)
    inside = index < level.size
    count = np.bincount(index[inside], minlength=level.size)
    analysis = np.sqrt(np.bincount(index[inside], emg.rms_uv[inside, 0] ** 2, level.size) / np.maximum(count, 1))
    raw_rest, analysis_rest = np.median(level[steady]), np.median(analysis[steady])
    assert analysis_rest == pytest.approx(raw_rest, rel=REST_TOLERANCE)

    threshold = math.sqrt(floor * level.max())
    bursts = runs(level >= threshold)
    assert len(bursts) >= 3, "too few contractions in the file to compare"
    raw_bursts = []
    for a, b in bursts:
        a, b = max(a - MARGIN_WINDOWS, 0), min(b + MARGIN_WINDOWS, level.size)
        seg = uv[a * n:b * n]
        raw = float(np.sqrt(np.mean((seg - seg.mean()) ** 2)))
        sel = (emg.t_s >= (a + 1) * WINDOW_S) & (emg.t_s < (b + 1) * WINDOW_S)  # the 250 ms RMS ends its window
        ours = float(np.sqrt(np.mean(emg.rms_uv[sel, 0] ** 2)))
        assert CONTRACTION_RANGE[0] <= ours / raw <= CONTRACTION_RANGE[1], (a * WINDOW_S, raw, ours)
        raw_bursts.append(raw)
    assert min(raw_bursts) > raw_rest
    return raw_rest, raw_bursts


def check_meta(session: Path, source: Path, fmt: str) -> dict:
    with SessionReader(session) as reader:
        meta = reader.meta
    text = json.dumps(meta)
    assert meta["mode"] == "import" and meta["complete"] is True and meta["client_id"] == "C001"
    assert meta["import"]["file"] == source.name and meta["import"]["format"] == fmt
    assert str(source.parent) not in text and str(Path.home()) not in text  # never a path
    assert "00:07:80" not in text  # the PLUX files' device addresses stay out
    return meta


@pytest.mark.parametrize("path", PLUX_FILES, ids=lambda p: p.stem)
def test_plux_h5_levels_against_the_raw_file(path, capsys, home):
    counts, bits, rate = raw_plux(path)
    session = imported(capsys, path, "--client", "C001")
    meta = check_meta(session, path, "plux-h5")
    assert meta["import"]["resolution_bits"] == {next(iter(meta["import"]["resolution_bits"])): bits}
    uv = plux_uv(counts, bits)
    with SessionReader(session) as reader:
        t, stored = reader.samples("emg")
        assert reader.rate_hz("emg") == rate
    assert stored.shape == (uv.size, 1)
    np.testing.assert_allclose(stored[:, 0], uv, rtol=1e-6, atol=1e-3)  # float32 of the µV
    np.testing.assert_allclose(t, np.arange(uv.size) / rate, atol=1e-9)
    check_levels(uv, rate, session)
    assert sessions(home) == [session]


def test_biosppy_text_levels_against_the_raw_file(capsys, home):
    counts = np.loadtxt(BIOSPPY)  # one ADC count a line after the '#' header
    header = BIOSPPY.read_text().splitlines()[:4]
    bits = int(next(h for h in header if "Resolution" in h).split(":=")[1])
    rate = float(next(h for h in header if "Sampling Rate" in h).split(":=")[1])
    session = imported(capsys, BIOSPPY, "--client", "C001", "--adc", "plux")
    check_meta(session, BIOSPPY, "biosppy")
    uv = plux_uv(counts, bits)
    with SessionReader(session) as reader:
        _, stored = reader.samples("emg")
    np.testing.assert_allclose(stored[:, 0], uv, rtol=1e-6, atol=1e-3)
    rest, bursts = check_levels(uv, rate, session)
    assert max(bursts) > 1.5 * rest  # the weak bursts at 35-40 s and 50-57 s stand out of the floor


def test_a_file_of_an_unnamed_device_needs_adc_and_nothing_is_written(capsys, home):
    assert main(["import", str(BIOSPPY), "--client", "C001"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--adc plux" in err
    assert sessions(home) == []


def test_plain_csv_with_rr_phases_and_a_gap(tmp_path, capsys, home):
    rng = np.random.default_rng(3)
    rate = 500.0
    t = np.arange(0, 40, 1 / rate)
    t = t[(t < 20) | (t >= 21)]  # one second lost
    left, right = rng.normal(0, 5, t.size), rng.normal(0, 8, t.size)
    ecg = rng.normal(0, 100, t.size)
    beats = np.zeros(t.size, dtype=bool)
    beats[::400] = True
    rr = np.where(beats, 800.0 + rng.integers(-50, 50, t.size), np.nan)
    phase = np.where(t < 15, "baseline", np.where(t < 30, "treatment", "post"))
    lines = ["time_s,emg_left_uV,emg_right_mV,ecg_uV,rr_ms,phase"]
    lines += [f"{a!r},{b!r},{c / 1000!r},{d!r},{'' if np.isnan(e) else repr(e)},{f}"
              for a, b, c, d, e, f in zip(t.tolist(), left.tolist(), right.tolist(), ecg.tolist(), rr.tolist(), phase)]
    path = tmp_path / "rec.csv"
    path.write_text("\n".join(lines) + "\n")
    session = imported(capsys, path, "--client", "C001", "--start", "2024-05-01T09:30:00")
    meta = check_meta(session, path, "csv")
    assert meta["utc_anchor"] == pytest.approx(1714555800.0)
    with SessionReader(session) as reader:
        te, emg = reader.samples("emg")
        _, ecg_stored = reader.samples("ecg")
        b = reader.beats()
        gaps = [g for g in reader.gaps() if g.stream == "emg"]
        assert reader.channels("emg") == ("left", "right")
    np.testing.assert_allclose(te, t, atol=1e-6)
    np.testing.assert_allclose(emg, np.column_stack([left, right]), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(ecg_stored[:, 0], ecg, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(b["t_s"], t[beats])
    np.testing.assert_allclose(b["rr_raw_ms"], rr[beats])
    assert len(gaps) == 1 and gaps[0].start_s == pytest.approx(20.0) and gaps[0].end_s == pytest.approx(21.0)
    data = load_session(session)
    assert [(p.name, p.kind) for p in data.phases] == [("baseline", "rest"), ("treatment", "treatment"), ("post", "rest")]
    assert data.phases[0].end_s == pytest.approx(15.0) and data.phases[2].start_s == pytest.approx(30.0)

    phases = tmp_path / "phases.csv"
    phases.write_text("name,start_s,end_s,kind\nbefore,0,10,rest\nafter,25,40,rest\n")
    again = imported(capsys, path, "--client", "C001", "--phases", phases)
    assert [(p.name, p.start_s, p.end_s) for p in load_session(again).phases] == [("before", 0, 10), ("after", 25, 40)]


def test_opensignals_text_of_a_bitalino(tmp_path, capsys):
    rng = np.random.default_rng(5)
    n, rate = 3000, 1000
    emg_counts, ecg_counts = rng.integers(400, 620, n), rng.integers(300, 700, n)
    header = {"98:D3:31:FD:3B:8C": {
        "sensor": ["EMG", "ECG", "ACC"], "device name": "98:D3:31:FD:3B:8C", "device": "bitalino_rev",
        "column": ["nSeq", "I1", "I2", "O1", "O2", "A1", "A2", "A3"], "sampling rate": rate, "label": ["A1", "A2", "A3"],
        "resolution": [4, 1, 1, 1, 1, 10, 10, 10], "date": "2021-3-4", "time": "10:11:12.5", "channels": [1, 2, 3]}}
    rows = [f"{i % 16}\t0\t0\t0\t0\t{a}\t{b}\t512\t" for i, (a, b) in enumerate(zip(emg_counts, ecg_counts))]
    path = tmp_path / "opensignals_98D331FD3B8C_2021-03-04_10-11-12.txt"
    path.write_text("# OpenSignals Text File Format\n# " + json.dumps(header) + "\n# EndOfHeader\n" + "\n".join(rows) + "\n")
    session = imported(capsys, path, "--client", "C001")
    meta = check_meta(session, path, "opensignals")
    assert "98:D3" not in json.dumps(meta)
    assert meta["utc_anchor"] == pytest.approx(1614852672.5)
    assert meta["import"]["channels_left_out"] == ["A3 (ACC)"]
    with SessionReader(session) as reader:
        _, emg = reader.samples("emg")
        _, ecg = reader.samples("ecg")
    # BITalino (r)evolution data sheets: EMG VCC 3.3 V, G 1009; ECG VCC 3.3 V, G 1100; 10-bit channels
    np.testing.assert_allclose(emg[:, 0], (emg_counts / 1024 - 0.5) * 3.3 / 1009 * 1e6, rtol=1e-6)
    np.testing.assert_allclose(ecg[:, 0], (ecg_counts / 1024 - 0.5) * 3.3 / 1100 * 1e6, rtol=1e-6)


def test_polar_sensor_logger_ecg_rr_and_hr(tmp_path, capsys):
    rng = np.random.default_rng(9)
    base = "Polar_H10_ABCD1234_20240501_093000"
    ns0, rate = 768_000_000_000_000_000, 129.7
    uv = rng.integers(-400, 1200, 1297)
    frames = np.arange(uv.size) // 73
    lines = ["Phone timestamp;sensor timestamp [ns];timestamp [ms];ecg [uV]"]
    for i, v in enumerate(uv):
        last = min((frames[i] + 1) * 73, uv.size) - 1  # the phone stamps a frame when its last sample arrives
        phone = 0.2 + last / rate + 0.03 * (frames[i] % 3)
        lines.append(f"2024-05-01T09:30:{phone:06.3f};{ns0 + round(i / rate * 1e9)};{i / rate * 1000:.3f};{v}")
    (tmp_path / f"{base}_ECG.txt").write_text("\n".join(lines) + "\n")
    rr = rng.integers(700, 900, 12).astype(float)
    beat = np.cumsum(rr) / 1000
    arrivals = np.ceil(beat)  # about one notification a second, each with the beats closed since the last
    (tmp_path / f"{base}_RR.txt").write_text("Phone timestamp;RR-interval [ms]\n" + "".join(
        f"2024-05-01T09:30:{a:06.3f};{r:g}\n" for a, r in zip(arrivals, rr)))
    (tmp_path / f"{base}_HR.txt").write_text("Phone timestamp;HR [bpm];HRV [ms];Breathing interval [rpm];\n" + "".join(
        f"2024-05-01T09:30:{s:06.3f};{70 + s:g};;;\n" for s in range(1, 10)))
    session = imported(capsys, tmp_path / f"{base}_RR.txt", "--client", "C001")
    meta = check_meta(session, tmp_path / f"{base}_RR.txt", "polar")
    assert sorted(meta["import"]["files"]) == sorted(f"{base}_{k}.txt" for k in ("ECG", "HR", "RR"))
    with SessionReader(session) as reader:
        t, ecg = reader.samples("ecg")
        beats = reader.beats()
        _, hr = reader.samples("hr")
    np.testing.assert_array_equal(ecg[:, 0], uv)
    assert np.median(np.diff(t)) == pytest.approx(1 / rate, rel=1e-4)  # the sensor's own clock, not 130 Hz
    np.testing.assert_array_equal(beats["rr_raw_ms"], rr)
    # beat times as a strap's live driver places them (stream.RRTimeline): the RR sum, anchored to the arrivals,
    # never after the notification that brought the beat, and within one notification period of the truth
    zero = meta["utc_anchor"] - 1714555800.0  # session 0 (the first phone timestamp) in the files' seconds
    assert zero == pytest.approx(0.2 + 72 / rate, abs=1e-3)
    assert np.all(np.diff(beats["t_s"]) > 0) and np.all(beats["t_s"] <= arrivals - zero + 1e-6)
    assert np.abs(beats["t_s"] - (beat - zero)).max() < 1.0
    np.testing.assert_array_equal(hr[:, 0], 70 + np.arange(1, 10))


def test_edf_round_trip_keeps_samples_phases_and_markers(tmp_path, capsys, home):
    path = DATA / "plux-emg" / "emg_bursts.h5"
    phases = tmp_path / "phases.csv"
    phases.write_text("name,start_s,end_s\nbaseline,0,9\npost,18,28\n")
    first = imported(capsys, path, "--client", "C001", "--phases", phases)
    (edf,) = export_session(first, "edf", tmp_path / "edf")
    second = imported(capsys, edf, "--client", "C002")
    with SessionReader(first) as a, SessionReader(second) as b:
        _, x = a.samples("emg")
        _, y = b.samples("emg")
        assert [(p["label"], p["t_s"], p["duration_s"]) for p in a.phases()] == \
               [(p["label"], p["t_s"], p["duration_s"]) for p in b.phases()]
    step = (math.ceil(x.max()) - math.floor(x.min())) / 65535  # the export's 16-bit quantum
    assert np.abs(y[: x.shape[0]] - x).max() <= step


@pytest.mark.parametrize("name, content, words", [
    ("noise.bin", b"\x00\x01garbage" * 50, "cannot tell the format"),
    ("bad.csv", b"time_s,emg_left_uV\n0,1\n0.001,x\n", "line 3, column emg_left_uV"),
    ("back.csv", b"time_s,emg_left_uV\n0,1\n0.002,1\n0.001,1\n", "time_s must increase"),
    ("odd.csv", b"time_s,emg_left_uV,weight_kg\n0,1,2\n", "does not know: weight_kg"),
    ("cut.txt", b"# OpenSignals Text File Format\n# {\"a\": {\"sampling rate\": 1000\n", "EndOfHeader"),
    ("cut.h5", b"\x89HDF\r\n\x1a\n" + b"\x00" * 100, "not a readable HDF5"),
    ("cut.edf", b"0       " + b" " * 300, "not a readable EDF"),
    ("Polar_H10_X_RR.txt", b"Phone timestamp;RR-interval [ms]\nyesterday;800\n", "not a phone timestamp"),
])
def test_files_it_cannot_read_are_one_line_and_leave_nothing(tmp_path, capsys, home, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    assert main(["import", str(path), "--client", "C001"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    assert sessions(home) == []


def test_an_identifying_client_id_is_refused_before_reading(capsys, home):
    assert main(["import", str(BIOSPPY), "--client", "jane.doe@example.org", "--adc", "plux"]) == 2
    assert "email" in capsys.readouterr().err
    assert sessions(home) == []


def test_a_failure_while_writing_leaves_no_part(monkeypatch, home):
    import biofeedback.store.import_session as imp

    def broken(writer, rec):
        raise StoreError("disk gone")

    monkeypatch.setattr(imp, "_write", broken)
    with pytest.raises(StoreError, match="disk gone"):
        import_recording(PLUX_FILES[0], "C001")
    assert sessions(home) == []
