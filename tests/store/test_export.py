"""Exports round-trip: every sample (within the format's resolution) and every event comes back."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import os
import re
import stat
import time

import edfio
import h5py
import numpy as np
import pytest

from biofeedback.store import SessionWriter, StoreError, device_alias, export_session, new_session_path
from biofeedback.stream import Block, Gap

from .conftest import DEVICE_MAC, UTC_ANCHOR

SHIFT_DAYS = 30
SHIFTED_START = dt.datetime.fromtimestamp(UTC_ANCHOR, dt.timezone.utc) - dt.timedelta(days=SHIFT_DAYS)
FLOAT32_RTOL = 2 ** -23
CSV_RTOL = 1e-8  # 9 significant digits


def _expected_events(recorded):
    """(onset, duration, kind, label) of every phase, marker, note, calibration and gap."""
    alias = device_alias(DEVICE_MAC)
    rows = [(e["t_s"], e["duration_s"], e["kind"], e["label"].replace(DEVICE_MAC, alias)) for e in recorded.events]
    rows += [(g.start_s, g.length_s, "gap", g.reason) for g in recorded.gaps]
    return sorted(rows)


def _check_samples_on_grid(times, values, grid_values, rate_hz, tol):
    """Each input sample is at the grid point nearest its time, within ``tol``."""
    index = np.round(times * rate_hz).astype(int)
    assert np.all(np.abs(index / rate_hz - times) <= 0.5 / rate_hz + 1e-12)
    np.testing.assert_allclose(grid_values[index], values, rtol=0, atol=tol)


def test_edf_round_trip(recorded, tmp_path):
    (path,) = export_session(recorded.path, "edf", tmp_path / "out", shift_days=SHIFT_DAYS)
    assert path.suffix == ".edf" and SHIFTED_START.strftime("%Y%m%d") in path.name
    edf = edfio.read_edf(path)
    assert edf.startdate == SHIFTED_START.date()
    assert edf.starttime == SHIFTED_START.time().replace(tzinfo=None)  # 22:13:20.25, sub-second kept (EDF+C)
    assert edf.patient.code == "C001" and edf.patient.name == "X"
    signals = {s.label: s for s in edf.signals}
    assert set(signals) == {"EMG left", "EMG right", "ECG 1"}  # type, space, name: the channel's or the source's number
    assert signals["ECG 1"].transducer_type == f"ecg ecg from {device_alias(DEVICE_MAC)}"
    assert signals["EMG left"].sampling_frequency == 1000.0 and signals["ECG 1"].sampling_frequency == 130.0
    assert signals["EMG left"].physical_dimension == "uV"
    for label, times, values in (("EMG left", recorded.emg_t, recorded.emg[:, 0]),
                                 ("EMG right", recorded.emg_t, recorded.emg[:, 1]),
                                 ("ECG 1", recorded.ecg_t, recorded.ecg[:, 0])):
        signal = signals[label]
        lo, hi = signal.physical_range
        step = (hi - lo) / 65535  # 16-bit quantisation: error <= step / 2, plus the header's rounding
        assert step < 0.04
        _check_samples_on_grid(times, values, signal.data, signal.sampling_frequency, tol=step)
    annotations = [(a.onset, a.duration or 0.0, a.text) for a in edf.annotations]  # no duration: instantaneous
    for onset, duration, kind, label in _expected_events(recorded):
        text = f"BAD_ACQ_SKIP gap emg/emg-1: {label}" if kind == "gap" else f"{kind}: {label}"
        assert any(abs(o - onset) < 1e-6 and abs(d - duration) < 1e-6 and t == text for o, d, t in annotations), text
    no_data = [(o, d) for o, d, t in annotations if t == "BAD_ACQ_SKIP no data emg/emg-1"]
    assert [(round(o, 6), round(d, 6)) for o, d in no_data] == [(0.0, 0.3), (2.0, 0.5), (6.3, 0.7)]  # before, gap, record padding
    lo, hi = signals["EMG left"].physical_range
    assert np.all(np.abs(signals["EMG left"].data[2000:2500]) <= (hi - lo) / 65535)  # 0 where there are no data
    beats = sorted((o, t) for o, d, t in annotations if t.startswith("RR "))
    assert len(beats) == len(recorded.beats["t_s"])
    for (onset, text), t, raw, corrected, flags in zip(beats, *(recorded.beats[k] for k in
                                                                ("t_s", "rr_raw_ms", "rr_corrected_ms", "flags"))):
        assert abs(onset - t) < 1e-6
        m = re.fullmatch(r"RR (\S+) ms(?: corrected (\S+) ms flags (\d+))?", text)
        assert float(m[1]) == raw
        if corrected != raw or flags:
            assert (float(m[2]), int(m[3])) == (corrected, flags)
    assert not [t for o, d, t in annotations if t.startswith("HR ")]  # HR samples are in the CSV and HDF5 exports


def test_csv_round_trip(recorded, tmp_path):
    files = export_session(recorded.path, "csv", tmp_path / "out", shift_days=SHIFT_DAYS)
    stem = f"C001_{SHIFTED_START:%Y%m%dT%H%M%SZ}"
    assert sorted(f.name for f in files) == sorted(f"{stem}_{n}" for n in (
        "emg.csv", "ecg.csv", "hr.csv", "beats.csv", "events.csv", "session.json", "kubios_part1.txt",
        "kubios_times.txt"))
    emg = np.loadtxt(tmp_path / "out" / f"{stem}_emg.csv", delimiter=",", skiprows=1)
    with open(tmp_path / "out" / f"{stem}_emg.csv") as f:
        assert f.readline().strip() == "time_s,left_uV,right_uV,contact_lost"
    np.testing.assert_allclose(emg[:, 0], recorded.emg_t, rtol=0, atol=1e-9)
    np.testing.assert_allclose(emg[:, 1:3], recorded.emg, rtol=FLOAT32_RTOL + CSV_RTOL)
    assert (emg[:, 3] == 0).all()  # the sensor never reported lost contact
    ecg = np.loadtxt(tmp_path / "out" / f"{stem}_ecg.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(ecg[:, 1], recorded.ecg[:, 0], rtol=FLOAT32_RTOL + CSV_RTOL)
    hr = np.loadtxt(tmp_path / "out" / f"{stem}_hr.csv", delimiter=",", skiprows=1)
    np.testing.assert_array_equal(hr, np.column_stack([recorded.hr_t, recorded.hr, np.zeros(len(recorded.hr))]))
    with open(tmp_path / "out" / f"{stem}_beats.csv") as f:
        beats = list(csv.DictReader(f))
    assert [float(b["rr_raw_ms"]) for b in beats] == recorded.beats["rr_raw_ms"].tolist()
    assert [float(b["rr_corrected_ms"]) for b in beats] == recorded.beats["rr_corrected_ms"].tolist()
    assert [int(b["flags"]) for b in beats] == recorded.beats["flags"].tolist()
    np.testing.assert_allclose([float(b["time_s"]) for b in beats], recorded.beats["t_s"], atol=1e-9)
    with open(tmp_path / "out" / f"{stem}_events.csv") as f:
        events = list(csv.DictReader(f))
    assert sorted((float(e["onset_s"]), float(e["duration_s"]), e["kind"], e["label"]) for e in events) == \
        _expected_events(recorded)
    gap = next(e for e in events if e["kind"] == "gap")
    assert (gap["stream"], gap["source"], json.loads(gap["data"])) == ("emg", "emg-1", {"lost_samples": 500})
    assert [e["annotation"] for e in events if e["annotation"]] == ["BAD_ACQ_SKIP"]
    assert json.loads(next(e for e in events if e["kind"] == "marker")["data"]) == {"pain": 6}
    meta = json.loads((tmp_path / "out" / f"{stem}_session.json").read_text())
    assert meta["start_utc"] == SHIFTED_START.isoformat().replace("+00:00", "Z") and "utc_anchor" not in meta
    assert meta["dates_shifted"] is True and not any("shift_days" in k for k in meta)  # that, not by how much


def test_bids_round_trip(recorded, tmp_path):
    out = tmp_path / "out"
    files = export_session(recorded.path, "bids", out, shift_days=SHIFT_DAYS)
    beh = out / "sub-C001" / "ses-1" / "beh"
    prefix = "sub-C001_ses-1_task-trapeziusrelease"
    assert (beh / f"{prefix}_recording-1000Hz_physio.tsv.gz") in files and (beh / f"{prefix}_events.tsv") in files
    assert json.loads((out / "dataset_description.json").read_text())["BIDSVersion"]
    for rate, label, times, values in ((1000.0, "1000Hz", recorded.emg_t, recorded.emg),
                                       (130.0, "130Hz", recorded.ecg_t, recorded.ecg)):
        sidecar = json.loads((beh / f"{prefix}_recording-{label}_physio.json").read_text())
        assert sidecar["SamplingFrequency"] == rate
        assert sidecar["Columns"] == (["emg_left", "emg_right", "emg_contact_lost"] if rate == 1000.0
                                      else ["ecg_ecg", "ecg_contact_lost"])
        assert all(sidecar[c]["Units"] == "uV" for c in sidecar["Columns"][:-1])
        with gzip.open(beh / f"{prefix}_recording-{label}_physio.tsv.gz", "rt") as f:
            table = np.array([[np.nan if v == "n/a" else float(v) for v in line.rstrip("\n").split("\t")] for line in f])
        grid_t = sidecar["StartTime"] + np.arange(len(table)) / rate
        index = np.round((times - sidecar["StartTime"]) * rate).astype(int)
        np.testing.assert_allclose(grid_t[index], times, atol=1e-9)
        np.testing.assert_allclose(table[index, :-1], values, rtol=FLOAT32_RTOL + CSV_RTOL)
        assert (table[index, -1] == 0).all()
        assert np.isnan(np.delete(table, index, axis=0)).all()  # nothing invented: the gap is n/a
    with open(beh / f"{prefix}_events.tsv") as f:
        events = list(csv.DictReader(f, delimiter="\t"))
    assert list(events[0])[:3] == ["onset", "duration", "trial_type"]
    got = sorted((float(e["onset"]), float(e["duration"]), e["trial_type"], e["label"]) for e in events)
    assert got == [(o, d, "BAD_ACQ_SKIP" if k == "gap" else k, t) for o, d, k, t in _expected_events(recorded)]
    assert len(events) == len(_expected_events(recorded))  # no beats, no HR samples: they are not BIDS events
    scans = (out / "sub-C001" / "ses-1" / "sub-C001_ses-1_scans.tsv").read_text().splitlines()
    assert scans[0] == "filename\tacq_time" and all(SHIFTED_START.strftime("%Y-%m-%dT%H:%M:%S") in s for s in scans[1:])


def test_hdf5_round_trip(recorded, tmp_path):
    (path,) = export_session(recorded.path, "hdf5", tmp_path / "out", shift_days=SHIFT_DAYS)
    alias = device_alias(DEVICE_MAC)
    with h5py.File(path, "r") as f:
        assert f.attrs["start_utc"] == SHIFTED_START.isoformat().replace("+00:00", "Z")
        emg = f["streams/emg/emg-1"]
        assert emg.attrs["units"] == "uV" and emg.attrs["rate_hz"] == 1000.0
        assert list(emg.attrs["channels"]) == ["left", "right"]
        np.testing.assert_array_equal(emg["time_s"][:], recorded.emg_t)
        np.testing.assert_allclose(emg["samples"][:], recorded.emg, rtol=FLOAT32_RTOL)
        ecg = f[f"streams/ecg/{alias}"]
        assert ecg.attrs["rate_hz"] == 130.0
        np.testing.assert_allclose(ecg["samples"][:], recorded.ecg, rtol=FLOAT32_RTOL)
        hr = f[f"streams/hr/{alias}"]
        assert np.isnan(hr.attrs["rate_hz"]) and hr.attrs["units"] == "bpm"
        np.testing.assert_array_equal(hr["samples"][:, 0], recorded.hr)
        for key in ("t_s", "rr_raw_ms", "rr_corrected_ms", "flags"):
            np.testing.assert_array_equal(f[f"beats/{alias}/{key}"][:], recorded.beats[key])
        events = f["events"][:]
        got = sorted((e["onset_s"], e["duration_s"], e["kind"].decode(), e["label"].decode()) for e in events)
        assert got == _expected_events(recorded)
        assert [e["annotation"].decode() for e in events if e["annotation"]] == ["BAD_ACQ_SKIP"]


@pytest.mark.parametrize("fmt", ["edf", "csv", "bids", "hdf5"])
def test_exports_are_private_and_hold_no_device_address(recorded, tmp_path, fmt):
    out = tmp_path / "out"
    files = export_session(recorded.path, fmt, out)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o700
    everything = b""
    for f in out.rglob("*"):
        if f.is_file():
            assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f
            everything += gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes()
    assert all(f.exists() for f in files)
    for mac in (DEVICE_MAC, "d4:36:39:aa:bb:cc"):
        for form in (mac, mac.upper(), mac.lower(), mac.replace(":", ""), mac.replace(":", "").lower()):
            assert form.encode() not in everything, (fmt, form)
    assert device_alias(DEVICE_MAC).encode() in everything or fmt == "edf"


def test_export_of_a_session_still_being_written(home, tmp_path):
    path = new_session_path("C009", time.time())
    with SessionWriter(path, {"client_id": "C009"}) as w:
        for k in range(100):
            w.add_block(Block("emg", "emg-1", (k + 1) * 20_000_000, np.full((20, 2), float(k)), 1000.0, 20 * k, k,
                              channels=("left", "right")), k * 0.02)
        w.add_event("phase", 0.0, "baseline", 2.0)
        w.flush()
        for fmt in ("edf", "csv", "bids", "hdf5"):
            assert export_session(path, fmt, tmp_path / fmt)
        edf = edfio.read_edf(next((tmp_path / "edf").glob("*.edf")))
        assert edf.signals[0].data[1999] == pytest.approx(99.0, abs=0.01)


def test_edf_of_a_session_without_signals_says_what_to_do(home, tmp_path):
    path = new_session_path("C010", UTC_ANCHOR)
    with SessionWriter(path, {"client_id": "C010", "utc_anchor": UTC_ANCHOR}) as w:
        w.add_block(Block("hr", "h10", 10**9, np.array([[61.0]])), None)
        w.add_event("marker", 1.0, "start")
    with pytest.raises(StoreError, match="no sampled signal .* export it as csv, bids or hdf5"):
        export_session(path, "edf", tmp_path / "edf")
    for fmt in ("csv", "bids", "hdf5"):
        assert export_session(path, fmt, tmp_path / fmt)


def _kubios_session(path, utc_anchor: float):
    """Beats of one strap with a recorded RR gap (a disconnect) from 5.0 to 8.0 s; RR in 1/1024 s, as straps send."""
    rr = np.array([820, 800, 810, 830, 790, 805, 815, 800], dtype=float) * 1000 / 1024
    # Beats 0-3 before the gap; beat 4 at 7.5 s ends the gap's last interval (771.5 ms from 6.73 s, inside the gap:
    # written nowhere); beats 5-7 after the gap.
    t = np.array([1.1, 1.9, 2.7, 3.5, 7.5, 9.0, 9.8, 10.6])
    with SessionWriter(path, {"client_id": "C011", "utc_anchor": utc_anchor}) as w:
        w.add_beats(DEVICE_MAC, t, rr, np.full(t.size, 800.0), np.zeros(t.size))
        w.add_gap(Gap("rr", DEVICE_MAC, 5.0, 8.0, "disconnect"))
        w.add_gap(Gap("ecg", DEVICE_MAC, 0.0, 10.0, "disconnect"))  # another stream's gap: no effect on RR
    return t, rr


def test_kubios_rr_files_one_rr_a_line_split_at_gaps_with_times_beside(home, tmp_path):
    path = new_session_path("C011", UTC_ANCHOR)
    t, rr = _kubios_session(path, UTC_ANCHOR)
    files = export_session(path, "csv", tmp_path / "out", shift_days=SHIFT_DAYS)
    stem = f"C011_{SHIFTED_START:%Y%m%dT%H%M%SZ}"
    by_name = {f.name: f for f in files}
    part1, part2 = by_name[f"{stem}_kubios_part1.txt"], by_name[f"{stem}_kubios_part2.txt"]
    assert f"{stem}_kubios_part3.txt" not in by_name
    # Kubios "RR interval data": one RR in ms a line, nothing else.
    assert part1.read_text() == "800.78125\n781.25\n791.015625\n810.546875\n"
    assert part2.read_text() == "786.1328125\n795.8984375\n781.25\n"
    times = [line.split("\t") for line in by_name[f"{stem}_kubios_times.txt"].read_text().splitlines()]
    assert [float(a) for a, _ in times] == [1.1, 1.9, 2.7, 3.5, 9.0, 9.8, 10.6]
    assert [float(b) for _, b in times] == rr[[0, 1, 2, 3, 5, 6, 7]].tolist()
    # No interval spans the gap: every kept interval ends before 5.0 s or starts after 8.0 s.
    for a, b in times:
        assert float(a) <= 5.0 or float(a) - float(b) / 1000 >= 8.0


def test_kubios_rr_files_hold_no_date_and_are_private(home, tmp_path):
    path = new_session_path("C011", UTC_ANCHOR)
    _kubios_session(path, UTC_ANCHOR)
    files = [f for f in export_session(path, "csv", tmp_path / "out", shift_days=SHIFT_DAYS) if "_kubios" in f.name]
    assert len(files) == 3
    true_day = dt.datetime.fromtimestamp(UTC_ANCHOR, dt.timezone.utc)
    for f in files:
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
        assert true_day.strftime("%Y%m%d") not in f.name and SHIFTED_START.strftime("%Y%m%d") in f.name
        text = f.read_text()
        assert re.fullmatch(r"([0-9.]+(\t[0-9.]+)?\n)+", text), text  # numbers only: no date, no address, no header
