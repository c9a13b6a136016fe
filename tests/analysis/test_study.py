"""`biofeedback study` over a dozen recorded virtual sessions of three clients with headache diaries.

Ground truth is the script: each session is recorded by the virtual sensors at a scripted baseline tension
(``--virtual-emg-uv L,R``) that the session's treatment releases by ``RELEASE``; across four weekly sessions the
baseline falls for S01 and S02 and stays flat for S03. Each diary has a scripted number of headache days after each
session. Sessions are dated in the past by running each recording with the process's wall clock (``time.time``, the
session's UTC anchor) set back by whole days, as if it had been recorded then; the diary is entered with ``--date``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from distributed import LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin

from biofeedback.cli import main

pytestmark = [pytest.mark.timeout(300), pytest.mark.serial]  # serial: recorders and Dask workers of its own

PROTOCOL = """
name = "study-test"
[[screening]]
key = "consent"
text = "Consent?"
stop_if = false
reason = "no consent"
[[techniques]]
key = "trigger-point"
label = "trigger-point pressure"
[[phases]]
name = "baseline"
kind = "rest"
duration_s = 55
[[phases]]
name = "treatment"
kind = "treatment"
duration_s = 10
[[phases]]
name = "post"
kind = "rest"
duration_s = 55
"""
LEFT_UV = {"S01": [60.0, 48.0, 36.0, 24.0], "S02": [56.0, 44.0, 32.0, 20.0], "S03": [40.0, 40.0, 40.0, 40.0]}
RIGHT_OF_LEFT = 0.8
DAYS_AGO = [29, 22, 15, 8]
RELEASE = 0.30
"""What a session's treatment takes off the scripted tension (``TensionScript.release``'s drop, used by
``session_scenario``)."""
HEADACHE_DAYS = {"S01": [4, 3, 2, 1], "S02": [4, 3, 2, 1], "S03": [2, 2, 2, 2]}
"""Headaches on the 1st..n-th day after each session."""
INTENSITY = {"S01": 6.0, "S02": 5.0, "S03": 4.0}
WINDOW_DAYS = 7
SPEED = "40"
LEVEL_TOLERANCE = 0.15
"""Measured resting RMS against the scripted amplitude (the EMG chain's band-pass and noise floor). The sessions use
``--virtual-body clean`` (the muscle activity alone): the realistic body's drift (±8 % over ~20 s) would move 55-s phase
levels by about as much as this tolerance, and this test is about the study pipeline, not the signals."""

RECORD = r'''
import json, sys, time
from biofeedback.cli import main
real = time.time
for days_ago, argv in json.loads(sys.argv[1]):
    time.time = lambda d=days_ago: real() - d * 86400.0
    if main(argv) != 0:
        sys.exit(1)
'''


def scripted_tension(client: str) -> np.ndarray:
    """Scripted baseline tension index (mean of both sides, µV) per session."""
    left = np.array(LEFT_UV[client])
    return (left + RIGHT_OF_LEFT * left) / 2


@pytest.fixture(scope="module")
def study_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("study") / "home"
    protocol = home.parent / "study-test.toml"
    protocol.write_text(PROTOCOL)
    plan = [[days, ["session", "--client", client, "--virtual", "--speed", SPEED, "--protocol", str(protocol), "--auto",
                    "--answers", "all-clear", "--headless", "--seed", str(i),
                    "--virtual-emg-uv", f"{left:g},{RIGHT_OF_LEFT * left:g}", "--virtual-body", "clean"]]
            for i, (client, days, left) in enumerate((c, d, u) for c in LEFT_UV for d, u in zip(DAYS_AGO, LEFT_UV[c]))]
    env = {**os.environ, "BIOFEEDBACK_HOME": str(home)}
    recorders = [subprocess.Popen([sys.executable, "-c", RECORD, json.dumps(plan[k::2])], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for k in range(2)]
    for r in recorders:
        _, err = r.communicate(timeout=200)
        assert r.returncode == 0, err
    today = dt.date.today()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BIOFEEDBACK_HOME", str(home))
        for client, counts in HEADACHE_DAYS.items():
            for days_ago, n in zip(DAYS_AGO, counts):
                for k in range(1, n + 1):
                    assert main(["diary", "--client", client, "add", "--date",
                                 (today - dt.timedelta(days=days_ago - k)).isoformat(), "--intensity",
                                 str(INTENSITY[client]), "--duration-h", "2"]) == 0
    return home


def _tables(out: Path) -> dict[str, pd.DataFrame]:
    return {p.stem: pd.read_parquet(p) for p in out.glob("*.parquet")}


class TaskLog(SchedulerPlugin):
    """A Dask scheduler plugin that notes every task the scheduler sees finish."""

    def __init__(self) -> None:
        self.finished: list[str] = []

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        if finish == "memory":
            self.finished.append(str(key))


def test_study_finds_the_scripted_effects_and_redoes_nothing(study_home, tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["study", "--home", str(study_home), "--out", str(out), "--workers", "2"]) == 0
    printed = capsys.readouterr()
    assert "12 analysed on 2 Dask workers" in printed.out, printed.out
    assert "[12/12]" in printed.err

    t = _tables(out)
    assert set(t) == {"sessions", "levels", "changes", "diary_days", "client_trends", "models"}
    for name in t:
        assert (out / f"{name}.csv").exists()
    dictionary = pd.read_csv(out / "data-dictionary.csv")
    for name, frame in t.items():
        described = set(dictionary.loc[dictionary["table"] == name, "column"])
        assert set(frame.columns) == described, name
    assert stat.S_IMODE(out.stat().st_mode) == 0o700 and stat.S_IMODE((out / "cache").stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in out.rglob("*") if p.is_file())

    # sessions: one row each, dated as recorded, levels and the release as scripted
    s = t["sessions"].sort_values(["client_id", "session_index"])
    assert len(s) == 12 and s["error"].isna().all()
    today = dt.date.today()
    for client in LEFT_UV:
        c = s[s["client_id"] == client]
        assert list(c["session_index"]) == [1, 2, 3, 4]
        assert list(c["date"]) == [(today - dt.timedelta(days=d)).isoformat() for d in DAYS_AGO]
        np.testing.assert_allclose(c["baseline_tension"], scripted_tension(client), rtol=LEVEL_TOLERANCE)
        np.testing.assert_allclose(c["post_tension"], (1 - RELEASE) * scripted_tension(client), rtol=LEVEL_TOLERANCE)
        np.testing.assert_allclose(c["tension_change_pct"], -100 * RELEASE, atol=8.0)
        assert (c["tension_change_ci_high"] < 0).all()
        # the diary of the following week, exactly as entered
        assert list(c["headache_days"]) == HEADACHE_DAYS[client]
        np.testing.assert_allclose(c["mean_intensity"].astype(float),
                                   np.array(HEADACHE_DAYS[client]) * INTENSITY[client] / WINDOW_DAYS)
        assert c["window_complete"].all()

    # levels: session x phase x metric; each side's resting RMS as scripted
    lv = t["levels"]
    assert len(lv) == len(lv.drop_duplicates(["session", "phase", "metric"]))
    left = lv[(lv["metric"] == "emg.left_trapezius.rms_uv") & (lv["phase"] == "baseline")].merge(
        s[["session", "client_id", "session_index"]], on=["session", "client_id"])
    for client in LEFT_UV:
        c = left[left["client_id"] == client].sort_values("session_index")
        np.testing.assert_allclose(c["value"], LEFT_UV[client], rtol=LEVEL_TOLERANCE)

    # changes: session x metric, the primary with its interval and verdict
    ch = t["changes"]
    primary = ch[ch["metric"] == "emg.both.tension_index"]
    assert len(primary) == 12
    assert (primary["change_ci_low"] <= primary["change"]).all() and (primary["change"] <= primary["change_ci_high"]).all()
    assert set(primary["verdict"]) <= {"fell", "no clear change", "not available"}
    assert (primary["verdict"] == "fell").sum() >= 4

    # diary days: every day from the first session to today, headaches as entered
    dd = t["diary_days"]
    for client in LEFT_UV:
        c = dd[dd["client_id"] == client]
        assert len(c) == DAYS_AGO[0] + 1
        assert c["headache"].sum() == sum(HEADACHE_DAYS[client]) and c["sessions"].sum() == 4

    # per client: tension falls for S01 and S02, stays flat for S03
    slope_per_session = {c: float(np.polyfit([1, 2, 3, 4], scripted_tension(c), 1)[0]) for c in LEFT_UV}
    ct = t["client_trends"].set_index("client_id")
    for client in ("S01", "S02"):
        assert ct.loc[client, "slope_ci_high"] < 0
        assert ct.loc[client, "slope"] == pytest.approx(slope_per_session[client], rel=0.25)
    assert abs(ct.loc["S03", "slope"]) < 0.1 * abs(slope_per_session["S01"])

    # the mixed model: random intercept per client, session index fixed: the mean of the clients' scripted slopes
    m = t["models"].set_index("model")
    trend = m.loc["tension across sessions"]
    assert (trend["n_obs"], trend["n_clients"]) == (12, 3)
    assert trend["ci_high"] < 0
    assert trend["estimate"] == pytest.approx(np.mean(list(slope_per_session.values())), rel=0.25)
    # headache days after a session against its tension change: within S01 and S02 one more headache day per
    # (RELEASE x the weekly fall of the scripted tension) µV more release; S03 adds no within-client variation
    days = m.loc["tension change and headache days"]
    assert days["n_obs"] == 12 and days["ci_high"] < 0
    # The model's slope is that of the measured changes: the within-client least-squares slope of headache days on
    # each session's measured tension change (numpy, from the sessions table) ...
    change = s["post_tension"] - s["baseline_tension"]
    within = [(change - change.groupby(s["client_id"]).transform("mean")),
              (s["headache_days"] - s["headache_days"].groupby(s["client_id"]).transform("mean"))]
    assert days["estimate"] == pytest.approx(float((within[0] * within[1]).sum() / (within[0] ** 2).sum()), rel=0.1)
    # ... and near the scripted one, which it need not equal: the measured releases run a few per cent under the
    # scripted 30 % and vary from session to session, and within a client the changes span only ~10 µV, so the
    # slope moves by a quarter or more (seen -0.34 to -0.41 against -0.31).
    expected = -1.0 / (RELEASE * abs(slope_per_session["S01"]))
    assert 0.6 * expected > days["estimate"] > 1.6 * expected
    text = (out / "study-models.txt").read_text()
    for words in ("random intercept", "Assumptions", "Limits", "association, not an effect"):
        assert words in text
    assert (out / "study-tension.png").stat().st_size > 10_000 and (out / "study-headaches.png").stat().st_size > 10_000
    assert "data:image/png;base64," in (out / "study-report.html").read_text()

    # again, unchanged: nothing is redone, on a cluster given by address whose scheduler notes every task
    cache = {p: p.stat().st_mtime_ns for p in (out / "cache").glob("*.json")}
    assert len(cache) == 12
    log = TaskLog()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        cluster.scheduler.add_plugin(log, name="task-log")
        assert main(["study", "--home", str(study_home), "--out", str(out), "--scheduler", cluster.scheduler_address]) == 0
        printed = capsys.readouterr()
        assert "0 analysed, 12 unchanged since the last run (not redone)" in printed.out, printed.out
        assert log.finished == []
        assert {p: p.stat().st_mtime_ns for p in (out / "cache").glob("*.json")} == cache
        pd.testing.assert_frame_equal(_tables(out)["sessions"], t["sessions"])

        # a session that changed (here: its modification time) is the one task that runs
        changed = Path(s["path"].iloc[0])
        os.utime(changed, ns=(time.time_ns(), time.time_ns()))
        assert main(["study", "--home", str(study_home), "--out", str(out), "--scheduler", cluster.scheduler_address]) == 0
        assert "1 analysed on 1 Dask workers" in capsys.readouterr().out
        assert len(log.finished) == 1 and log.finished[0].startswith("biofeedback-session-")


def test_a_headache_of_unknown_length_is_unknown_in_the_study_tables():
    """A diary entry without its duration makes that day's and that window's hours unknown, never 0 or a partial sum."""
    from biofeedback.analysis.study import diary_days
    from biofeedback.analysis.study_stats import diary_windows

    today = dt.date(2024, 3, 10)
    sessions = pd.DataFrame({"client_id": ["S01", "S02"], "date": ["2024-03-01", "2024-03-01"]})
    entry = {"intensity": 5.0, "medication": "", "added_utc": 0}
    diaries = {"S01": [{**entry, "date": "2024-03-02", "duration_h": None}, {**entry, "date": "2024-03-03", "duration_h": 2.0}],
               "S02": [{**entry, "date": "2024-03-02", "duration_h": 1.5}, {**entry, "date": "2024-03-03", "duration_h": 2.0}]}
    days = diary_days(sessions, diaries, today).set_index(["client_id", "date"])
    assert pd.isna(days.loc[("S01", "2024-03-02"), "duration_h"]) and days.loc[("S01", "2024-03-03"), "duration_h"] == 2.0
    windows = diary_windows(sessions, days.reset_index(), 7, today).set_index("client_id")
    assert pd.isna(windows.loc["S01", "headache_hours"]) and windows.loc["S02", "headache_hours"] == 3.5
    assert (windows["headache_days"] == 2).all()


def test_a_study_with_no_sessions_says_so_and_creates_nothing(tmp_path, monkeypatch, capsys):
    """The default output folder is study/ in the study folder, never the working directory; with nothing to analyse
    the one error line comes before any folder is made."""
    monkeypatch.setenv("BIOFEEDBACK_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert main(["study", "--workers", "1"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no recorded sessions" in err[0]
    assert list(tmp_path.iterdir()) == []
