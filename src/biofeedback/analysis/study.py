"""Study analysis: every session of a study folder (one or many clients) into tidy tables, as Dask tasks.

The per-session work (``analyse_session``: ``load_session``, ``summarize`` and ``compare`` of one recording) is one
Dask task per session, run on local worker processes (a ``distributed.LocalCluster``, one single-threaded process
per worker: the analysis holds the GIL) or on a cluster reached by its scheduler address. A worker must see the
session files at the paths the command sees them (a shared file system) and run the same biofeedback version.

Each task's result is kept in the output folder (``cache/<key>.json``, 0600), keyed by the file's resolved path,
size and modification time, the software version and the bootstrap count (``session_key``): a re-run submits no
task for a session that is unchanged, and redoes one that was re-recorded or repaired.

Tables (``TABLES``; CSV and Parquet, each column described in ``data-dictionary.csv``):

=============  ====================================================================================
``sessions``   one row per session: client, date, index, baseline and post tension, change, verdict,
               and the diary of the following days (``study_stats.diary_windows``)
``levels``     one row per session x phase x metric (``summary.summarize``: EMG RMS per side, clean
               seconds, HR, RMSSD, beats)
``changes``    one row per session x metric: baseline->post levels and change with 95 % CIs, SDC,
               effect size and verdict (``compare.compare``)
``diary_days`` one row per client x calendar day from the first session or entry to the study date
``client_trends`` one row per client: sessions, verdicts, the slope of baseline tension per session
``models``     one row per mixed-effects model (``study_stats``)
=============  ====================================================================================

Group statistics, plots and the stated models are ``study_stats``'s job. Dates are local calendar dates of the
machine that runs the study (the diary's dates are local dates too); times are UTC.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

import biofeedback
from biofeedback.analysis.compare import PRIMARY, AnalysisError, _clean, compare, default_phases
from biofeedback.analysis.data import Progress, load_session
from biofeedback.analysis.diary import read_diary
from biofeedback.analysis.study_stats import CLIENT_COLUMNS, MODEL_COLUMNS, WINDOW_COLUMNS, GroupStatistics, \
    diary_windows, group_statistics, write_group_outputs
from biofeedback.analysis.summary import summarize
from biofeedback.errors import BiofeedbackError, Reason
from biofeedback.store import list_clients, list_sessions
from biofeedback.store.paths import data_home, private_dir, write_private

STUDY_BOOT = 500
"""Bootstrap resamples per session (as ``trend.TREND_BOOT``: many sessions; a single report uses more)."""
CACHE_FOLDER = "cache"
TASK_PREFIX = "biofeedback-session"
"""Dask key prefix of the per-session tasks (``<prefix>-<session_key>``), so a scheduler's records name them."""
DEFAULT_WORKERS = 2
DIARY_WINDOW_DAYS = 7
"""Days after a session whose headaches are linked to it (the day after the session to the K-th day after)."""

CLIENT_ID = {"client_id": ("", "pseudonymous client ID")}
SESSION_ID = {**CLIENT_ID, "session": ("", "session file name (its UTC start time)")}
SESSION_COLUMNS = {
    **SESSION_ID,
    "path": ("", "session file as the study read it"),
    "started_utc": ("ISO 8601 UTC", "start of the recording"),
    "date": ("YYYY-MM-DD", "local calendar date of the start"),
    "session_index": ("1, 2, ...", "order of the session among the client's readable sessions, oldest first"),
    "protocol": ("", "protocol name stored in the recording"),
    "mode": ("", "how it was recorded (session, relax, ...), as stored in the recording"),
    "duration_s": ("s", "length of the recording (session clock)"),
    "tension_unit": ("uV or %RVC", "unit of the tension index: %RVC with a calibration, else uV"),
    "phase_a": ("", "baseline rest phase compared (compare.default_phases)"),
    "phase_b": ("", "post-treatment rest phase compared"),
    "baseline_tension": ("tension_unit", "tension index of both trapezius sides in phase_a (mean of clean 250 ms RMS)"),
    "post_tension": ("tension_unit", "tension index of both sides in phase_b"),
    "tension_change": ("tension_unit", "post_tension - baseline_tension (negative: tension fell)"),
    "tension_change_pct": ("%", "100 * (post_tension / baseline_tension - 1)"),
    "tension_change_ci_low": ("%", "lower end of the 95 % moving-block bootstrap interval of tension_change_pct"),
    "tension_change_ci_high": ("%", "upper end of that interval"),
    "verdict": ("", "overall before/after verdict: released, tension rose, no clear change, not comparable"),
    "verdict_text": ("", "the verdict in words, with its interval and measurement noise"),
    "window_start": ("YYYY-MM-DD", "first diary day linked to this session (the day after it)"),
    "window_end": ("YYYY-MM-DD", "last diary day linked to this session"),
    "window_complete": ("true/false", "window_end is on or before the study date, so the window was observed whole"),
    "headache_days": ("days", "days in the window with at least one diary entry"),
    "mean_intensity": ("0-10", "mean over the window's days of the day's highest intensity (0 on a day without entry)"),
    "headache_hours": ("h", "sum of the durations of the window's entries (empty when one is unknown)"),
    "problems": ("", "what is missing or doubtful in the recording, in words; empty if nothing"),
    "error": ("", "why the session could not be analysed (then most columns are empty)"),
}
LEVEL_COLUMNS = {
    **SESSION_ID,
    "phase": ("", "phase name"),
    "phase_kind": ("", "rest, treatment or task"),
    "start_s": ("s", "phase start (session clock)"),
    "duration_s": ("s", "phase length"),
    "metric": ("", "emg.<side>_trapezius.rms_uv, emg.<side>_trapezius.clean_s, heart.hr_bpm, heart.rmssd_ms, heart.beats"),
    "value": ("unit", "the phase's value (empty where too little clean data)"),
    "unit": ("", "unit of value"),
    "note": ("", "why an EMG value is missing"),
}
CHANGE_COLUMNS = {
    **SESSION_ID,
    "metric": ("", f"metric key as in the session report ({PRIMARY} is the verdict's)"),
    "label": ("", "metric in words"),
    "group": ("", "emg or heart"),
    "unit": ("", "unit of the levels"),
    "phase_a": ("", "baseline phase"),
    "phase_b": ("", "post phase"),
    "level_a": ("unit", "level in phase_a"),
    "level_a_ci_low": ("unit", "95 % interval of level_a, lower end"),
    "level_a_ci_high": ("unit", "95 % interval of level_a, upper end"),
    "level_b": ("unit", "level in phase_b"),
    "level_b_ci_low": ("unit", "95 % interval of level_b, lower end"),
    "level_b_ci_high": ("unit", "95 % interval of level_b, upper end"),
    "change": ("change_unit", "level_b - level_a, or the change in % for ratio metrics"),
    "change_unit": ("", "% for ratio metrics, else the metric's unit"),
    "change_ci_low": ("change_unit", "95 % moving-block bootstrap interval of change, lower end"),
    "change_ci_high": ("change_unit", "upper end"),
    "sdc": ("change_unit", "smallest detectable change (SDC95 from 30-s segments)"),
    "effect_size": ("SD", "change over the within-phase SD (log scale for ratio metrics)"),
    "verdict": ("", "fell, rose (interval excludes 0 and change >= SDC), no clear change, not available"),
    "sentence": ("", "the change in words"),
}
DIARY_COLUMNS = {
    **CLIENT_ID,
    "date": ("YYYY-MM-DD", "calendar day"),
    "headache": ("0/1", "1 if the diary has an entry that day"),
    "intensity_max": ("0-10", "highest intensity entered that day (0 without entry)"),
    "duration_h": ("h", "sum of the day's entries' durations (empty when one was entered without its duration)"),
    "medication": ("", "medication entered that day, joined with '; '"),
    "entries": ("count", "diary entries that day"),
    "sessions": ("count", "sessions recorded that day"),
    "days_since_session": ("days", "days since the client's latest session on or before this day (empty before the first)"),
}
TABLES = {"sessions": SESSION_COLUMNS, "levels": LEVEL_COLUMNS, "changes": CHANGE_COLUMNS, "diary_days": DIARY_COLUMNS,
          "client_trends": CLIENT_COLUMNS, "models": MODEL_COLUMNS}
"""Each table's columns: name -> (unit, meaning); the data dictionary is written from these."""


class StudyError(AnalysisError):
    """The study cannot run as asked (no sessions, a scheduler out of reach, workers of another version)."""


# --- one session: the Dask task ----------------------------------------------------------------
def local_date(utc_s: float) -> str:
    """The local calendar date (YYYY-MM-DD) of UTC seconds since the epoch."""
    return dt.datetime.fromtimestamp(utc_s).date().isoformat()


def analyse_session(path: str, client_id: str, n_boot: int = STUDY_BOOT) -> dict:
    """One session's rows: ``session`` (dict), ``levels`` and ``changes`` (lists of dicts), JSON-ready. Runs on a Dask
    worker; a recording that cannot be read or compared gives a session row with ``error`` instead of raising."""
    name = Path(path).name
    row = {"client_id": client_id, "session": name, "path": str(path), "error": None}
    try:
        data = load_session(path)
    except BiofeedbackError as exc:
        return {"session": {**row, "error": str(exc)}, "levels": [], "changes": []}
    meta = data.meta
    utc = meta.get("utc_anchor")
    row.update(client_id=meta.get("client_id", client_id), protocol=meta.get("protocol"), mode=meta.get("mode"),
               started_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(utc)), date=local_date(utc),
               duration_s=data.duration_s, problems="; ".join(data.problems))
    units = {"rms_uv": "uV", "clean_s": "s"}
    levels = []
    for r in summarize(data):
        base = {"client_id": row["client_id"], "session": name, "phase": r["phase"],
                "phase_kind": next(p.kind for p in data.phases if p.name == r["phase"]), "start_s": r["start_s"],
                "duration_s": r["duration_s"]}
        for ch, clean_s in r["emg_clean_s"].items():
            levels.append({**base, "metric": f"emg.{ch}.rms_uv", "value": r["emg_rms_uv"].get(ch), "unit": units["rms_uv"],
                           "note": None if ch in r["emg_rms_uv"] else r["note"]})
            levels.append({**base, "metric": f"emg.{ch}.clean_s", "value": clean_s, "unit": units["clean_s"], "note": None})
        for key, unit in (("hr_bpm", "bpm"), ("rmssd_ms", "ms"), ("beats", "count")):
            levels.append({**base, "metric": f"heart.{key}", "value": r[key], "unit": unit, "note": None})
    row["phase_a"], row["phase_b"] = default_phases(data)
    try:
        c = compare(data, n_boot=n_boot, with_neurokit=False)
    except AnalysisError as exc:
        row.update(verdict="not comparable", verdict_text=f"not available ({exc})")
        return _clean({"session": row, "levels": levels, "changes": []})
    row.update(verdict=str(c.overall["label"]), verdict_text=c.overall["text"], tension_unit=c.tension_unit)
    if c.notes:
        row["problems"] = "; ".join(c.notes)
    changes = []
    for m in c.metrics:
        changes.append({
            "client_id": row["client_id"], "session": name, "metric": m.key, "label": m.label, "group": m.group,
            "unit": m.unit, "phase_a": c.phase_a.name if c.phase_a else None, "phase_b": c.phase_b.name if c.phase_b else None,
            "level_a": m.a, "level_a_ci_low": m.a_ci[0], "level_a_ci_high": m.a_ci[1],
            "level_b": m.b, "level_b_ci_low": m.b_ci[0], "level_b_ci_high": m.b_ci[1],
            "change": m.change, "change_unit": m.change_unit, "change_ci_low": m.change_ci[0],
            "change_ci_high": m.change_ci[1], "sdc": m.sdc, "effect_size": m.effect_size, "verdict": m.verdict,
            "sentence": m.sentence})
        if m.key == PRIMARY:
            row.update(baseline_tension=m.a, post_tension=m.b, tension_change=m.b - m.a,
                       tension_change_pct=m.change, tension_change_ci_low=m.change_ci[0],
                       tension_change_ci_high=m.change_ci[1])
    return _clean({"session": row, "levels": levels, "changes": changes})


# --- which sessions, and which of them are already done -----------------------------------------
@dataclass(frozen=True)
class SessionJob:
    """A session of the study and the key of its cached result."""

    path: Path
    client_id: str
    key: str


def session_key(path: Path, n_boot: int = STUDY_BOOT) -> str:
    """Cache key of a session's analysis: its resolved path, size and modification time (ns), the software version
    and the bootstrap count; any of them changing means the session is analysed again."""
    st = path.stat()
    text = "\0".join((str(path.resolve()), str(st.st_size), str(st.st_mtime_ns), biofeedback.__version__, str(n_boot)))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def study_jobs(home: Path, clients: Sequence[str] | None = None, n_boot: int = STUDY_BOOT,
               skipped: list[str] | None = None) -> list[SessionJob]:
    """Every session of ``clients`` (default: every client) under ``home``, oldest first; sessions being recorded
    now are left out (named in ``skipped``): their file is still changing."""
    jobs = []
    for client in (clients or list_clients(home)):
        for s in list_sessions(client, home):
            if s.get("state") == "recording":
                if skipped is not None:
                    skipped.append(f"{s['path']}: being recorded now, left out")
                continue
            jobs.append(SessionJob(Path(s["path"]), client, session_key(Path(s["path"]), n_boot)))
    return jobs


def _cache_path(out_dir: Path, key: str) -> Path:
    return out_dir / CACHE_FOLDER / f"{key}.json"


def cached_result(out_dir: Path, key: str) -> dict | None:
    """The stored result of a session's analysis, or None if there is none (or it cannot be read)."""
    try:
        return json.loads(_cache_path(out_dir, key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# --- running the tasks -------------------------------------------------------------------------
def _worker_version() -> str:
    return biofeedback.__version__


@dataclass
class RunStats:
    """What a study run did: sessions analysed now, taken from the cache, failed; wall time of the tasks."""

    analysed: int = 0
    reused: int = 0
    failed: list[str] = field(default_factory=list)
    tasks_wall_s: float = 0.0
    start_s: float = 0.0
    """Wall time to start (or reach) the cluster."""
    workers: int = 0
    cluster: str = ""


def open_client(scheduler: str | None, workers: int):
    """A ``distributed.Client``: on the cluster at ``scheduler``, else on a new ``LocalCluster`` of ``workers``
    single-threaded processes (no dashboard: it would be a network listener). Close it with ``close_client``."""
    import logging

    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise StudyError(f"cannot reach the Dask scheduler at {scheduler} ({exc}); check the address and that it "
                             f"is running, or leave out --scheduler to use this machine's cores", Reason.BAD_ARGUMENT) from None
        versions = client.run(_worker_version)
        other = {w: v for w, v in versions.items() if v != biofeedback.__version__}
        if other:
            client.close()
            raise StudyError(f"Dask workers run other biofeedback versions ({other}); install "
                             f"biofeedback {biofeedback.__version__} on every worker", Reason.BAD_ARGUMENT)
        return client
    # Loopback only: the local cluster's scheduler and workers talk over TCP, and nothing else may reach them.
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           host="127.0.0.1", silence_logs=logging.ERROR)
    return Client(cluster)


def close_client(client) -> None:
    cluster = client.cluster
    client.close()
    if cluster is not None:
        cluster.close()


def run_jobs(jobs: list[SessionJob], out_dir: Path, client, n_boot: int = STUDY_BOOT,
             progress: Progress | None = None) -> tuple[list[dict], RunStats]:
    """Results of every job, in the jobs' order: from the cache where there is one, else from one Dask task per
    session on ``client`` (a ``distributed.Client``), each stored in the cache as it arrives."""
    from distributed import as_completed

    stats = RunStats()
    results: dict[str, dict] = {}
    todo = []
    for job in jobs:
        found = cached_result(out_dir, job.key)
        if found is not None:
            results[job.key] = found
        else:
            todo.append(job)
    stats.reused = len(jobs) - len(todo)
    if progress:
        progress(f"{len(jobs)} sessions: {stats.reused} unchanged since the last run, {len(todo)} to analyse")
    if not todo:
        return [results[j.key] for j in jobs], stats
    private_dir(out_dir / CACHE_FOLDER)
    stats.workers = len(client.scheduler_info(n_workers=-1)["workers"])
    stats.cluster = client.scheduler.address
    t0 = time.perf_counter()
    futures = {client.submit(analyse_session, str(j.path), j.client_id, n_boot, key=f"{TASK_PREFIX}-{j.key}",
                             pure=False): j for j in todo}
    for done, future in enumerate(as_completed(futures), 1):
        job = futures[future]
        try:
            result = future.result()
        except Exception as exc:  # a worker died or a bug: report the session, keep the rest of the study
            stats.failed.append(f"{job.path}: {type(exc).__name__}: {exc}")
            result = {"session": {"client_id": job.client_id, "session": job.path.name, "path": str(job.path),
                                  "error": f"analysis failed ({type(exc).__name__}: {exc}); run the study again"},
                      "levels": [], "changes": []}
        else:
            write_private(_cache_path(out_dir, job.key), json.dumps(result))
            stats.analysed += 1
        results[job.key] = result
        if progress:
            s = result["session"]
            progress(f"[{done}/{len(todo)}] {job.client_id}/{job.path.name}: {s.get('error') or s.get('verdict')}")
    stats.tasks_wall_s = time.perf_counter() - t0
    return [results[j.key] for j in jobs], stats


# --- tables ------------------------------------------------------------------------------------
def _frame(rows: list[dict], columns: dict) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns)).astype({c: "string" for c in columns if c in _TEXT_COLUMNS})


_TEXT_COLUMNS = {"client_id", "session", "path", "started_utc", "date", "protocol", "mode", "tension_unit", "phase_a",
                 "phase_b", "verdict", "verdict_text", "window_start", "window_end", "problems", "error", "phase",
                 "phase_kind", "metric", "unit", "note", "label", "group", "change_unit", "sentence", "medication"}


def session_tables(results: list[dict]) -> dict[str, pd.DataFrame]:
    """``sessions``, ``levels`` and ``changes`` from the per-session results; sessions get their index per client
    (oldest first, readable sessions only)."""
    sessions = pd.DataFrame([r["session"] for r in results],
                            columns=[c for c in SESSION_COLUMNS if c != "session_index" and c not in WINDOW_COLUMNS])
    sessions = sessions.sort_values(["client_id", "started_utc", "session"], na_position="last").reset_index(drop=True)
    readable = sessions["error"].isna()
    sessions["session_index"] = pd.array([pd.NA] * len(sessions), dtype="Int64")
    sessions.loc[readable, "session_index"] = sessions[readable].groupby("client_id").cumcount() + 1
    return {"sessions": sessions,
            "levels": _frame([row for r in results for row in r["levels"]], LEVEL_COLUMNS),
            "changes": _frame([row for r in results for row in r["changes"]], CHANGE_COLUMNS)}


def diary_days(sessions: pd.DataFrame, diaries: dict[str, list[dict]], today: dt.date) -> pd.DataFrame:
    """One row per client and calendar day, from the client's first session or diary entry to ``today``."""
    rows = []
    for client, entries in diaries.items():
        dates = sorted(set(sessions.loc[(sessions["client_id"] == client) & sessions["date"].notna(), "date"]))
        first = min([d for d in dates] + [e["date"] for e in entries], default=None)
        if first is None:
            continue
        by_day: dict[str, list[dict]] = {}
        for e in entries:
            by_day.setdefault(e["date"], []).append(e)
        last_session = None
        day = dt.date.fromisoformat(first)
        while day <= today:
            iso = day.isoformat()
            n_sessions = dates.count(iso)
            if n_sessions:
                last_session = day
            es = by_day.get(iso, [])
            rows.append({"client_id": client, "date": iso, "headache": int(bool(es)),
                         "intensity_max": max((e["intensity"] for e in es), default=0.0),
                         "duration_h": None if any(e["duration_h"] is None for e in es)  # one unknown
                         else float(sum(e["duration_h"] for e in es)),
                         "medication": "; ".join(e["medication"] for e in es if e.get("medication")),
                         "entries": len(es), "sessions": n_sessions,
                         "days_since_session": None if last_session is None else (day - last_session).days})
            day += dt.timedelta(days=1)
    return _frame(rows, DIARY_COLUMNS).astype({"days_since_session": "Int64"})


def data_dictionary() -> pd.DataFrame:
    """table, column, unit, meaning: every column of every table."""
    return pd.DataFrame([{"table": t, "column": c, "unit": u, "meaning": m}
                         for t, cols in TABLES.items() for c, (u, m) in cols.items()])


def write_table(out_dir: Path, name: str, frame: pd.DataFrame) -> list[Path]:
    """``name``.csv and ``name``.parquet in ``out_dir``, 0600."""
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return [write_private(out_dir / f"{name}.csv", frame.to_csv(index=False)),
            write_private(out_dir / f"{name}.parquet", buf.getvalue())]


# --- the whole study ---------------------------------------------------------------------------
@dataclass
class Study:
    """A study's tables, its group statistics and what the run did."""

    tables: dict[str, pd.DataFrame]
    group: GroupStatistics
    stats: RunStats
    skipped: list[str]
    written: list[Path] = field(default_factory=list)


def run_study(out_dir: Path, home: Path | None = None, clients: Sequence[str] | None = None,
              scheduler: str | None = None, workers: int = DEFAULT_WORKERS, window_days: int = DIARY_WINDOW_DAYS,
              n_boot: int = STUDY_BOOT, today: dt.date | None = None, progress: Progress | None = None) -> Study:
    """Analyse every session under ``home`` (default: the data folder) into ``out_dir`` (0700): tables, data
    dictionary, group statistics, plots and the stated models; sessions analysed before and unchanged are not redone."""
    home = data_home(create=False) if home is None else Path(home)
    today = dt.date.today() if today is None else today
    skipped: list[str] = []
    jobs = study_jobs(home, clients, n_boot, skipped)
    if not jobs:  # said before any folder is made
        raise StudyError(f"no recorded sessions under {home / 'clients'}" + (f" for {', '.join(clients)}" if clients else "")
                         + "; record some with `biofeedback session`, or give --home", Reason.NOT_ENOUGH_DATA)
    out_dir = private_dir(Path(out_dir))
    client, t0 = None, time.perf_counter()
    if any(cached_result(out_dir, j.key) is None for j in jobs):
        client = open_client(scheduler, workers)
    start_s = time.perf_counter() - t0
    try:
        results, stats = run_jobs(jobs, out_dir, client, n_boot, progress)
        stats.start_s = start_s
    finally:
        if client is not None:
            close_client(client)
    tables = session_tables(results)
    diaries = {c: read_diary(c, home) for c in dict.fromkeys(j.client_id for j in jobs)}
    tables["diary_days"] = diary_days(tables["sessions"], diaries, today)
    tables["sessions"] = diary_windows(tables["sessions"], tables["diary_days"], window_days, today)[list(SESSION_COLUMNS)]
    group = group_statistics(tables, window_days)
    tables["client_trends"], tables["models"] = group.client_trends, group.models
    study = Study(tables, group, stats, skipped)
    for name, frame in tables.items():
        study.written += write_table(out_dir, name, frame)
    study.written.append(write_private(out_dir / "data-dictionary.csv", data_dictionary().to_csv(index=False)))
    study.written += write_group_outputs(out_dir, group, tables, window_days)
    return study
