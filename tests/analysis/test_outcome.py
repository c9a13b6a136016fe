"""A recorded session with lost electrode contact and a disconnect: the summary it prints and its verdict agree
about the baseline's clean data (issue 12: the summary used to print a confident 43 µV beside a verdict of
'too little clean baseline data')."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from biofeedback.analysis import compare, load_session, summarize
from biofeedback.cli import main

PROTOCOL = Path(__file__).resolve().parents[1] / "data" / "protocols" / "session-short.toml"


def test_summary_and_verdict_agree_on_the_baseline_after_contact_loss(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BIOFEEDBACK_HOME", str(tmp_path / "home"))
    code = main(["session", "--client", "X", "--virtual", "--speed", "20", "--protocol", str(PROTOCOL), "--auto",
                 "--answers", "all-clear", "--headless", "--virtual-electrode-off", "5,25", "--virtual-disconnect-at", "60"])
    out, err = capsys.readouterr()
    assert code == 0, err
    (path,) = sorted((tmp_path / "home/clients/X/sessions").glob("*.bfsession"))

    data = load_session(path)
    assert any(a.description == "BAD_contact" for a in data.annotations)
    base = next(r for r in summarize(data) if r["phase"] == "baseline")
    c = compare(data, n_boot=200, with_neurokit=False)
    for ch in data.emg.channels:
        level = c.metric(f"emg.{ch}.rms_uv").a
        assert (ch in base["emg_rms_uv"]) == bool(np.isfinite(level)), ch
        if ch in base["emg_rms_uv"]:
            assert base["emg_rms_uv"][ch] == level
    verdict_too_little = "too little clean data in baseline" in c.overall["text"]
    summary_too_little = base["note"] is not None and base["note"].startswith("too little clean data in baseline")
    assert verdict_too_little == summary_too_little

    # What the command printed says the same: no confident baseline level beside a 'too little' verdict.
    summary_line = next(ln for ln in out.splitlines() if "EMG RMS µV" in ln and ln.split()[0] == "baseline")
    verdict = out.split("verdict: ", 1)[1]
    assert ("too little clean data in baseline" in verdict) == ("too little clean data in baseline" in summary_line)
    # No level on either side: '--', or 'no signal N s' for the seconds the electrode was off (and the seconds of a
    # poor signal named apart).
    assert "too little clean data in baseline" in summary_line
    side = r"(--|no signal \d+ s)( \(poor signal \d+ s\))?"
    assert re.search(rf"left {side}, right {side} \[", summary_line), summary_line
