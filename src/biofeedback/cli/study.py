"""``biofeedback study``: every session of a study folder into tables, group statistics and plots, as Dask tasks.

Light on purpose: dask, pandas and statsmodels are imported when the command runs (``analysis.study``).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

from biofeedback.validate import check_number, parser_type

MAX_WORKERS = 1024
MAX_WINDOW_DAYS = 90
workers = parser_type(check_number, lo=1, hi=MAX_WORKERS, integer=True, unit="worker processes")
window_days = parser_type(check_number, lo=1, hi=MAX_WINDOW_DAYS, integer=True, unit="days")


def _progress(text: str) -> None:
    print(f"... {text}", file=sys.stderr, flush=True)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``study``."""
    p = sub.add_parser("study", help="analyse every session of a study: tables (CSV, Parquet), mixed models, plots; "
                                     "sessions as Dask tasks, resumable")
    p.add_argument("--home", type=pathlib.Path,
                   help="study folder holding clients/<id>/sessions (default: $BIOFEEDBACK_HOME or the data folder)")
    p.add_argument("--client", action="append", metavar="ID", help="only this client (repeat for more; default: all)")
    p.add_argument("--out", type=pathlib.Path, help="output folder, also the cache of analysed sessions (default: study/ in the study "
                   "folder, never the working directory)")
    p.add_argument("--workers", type=workers, default=os.cpu_count() or 1,
                   help="local Dask worker processes (default: this machine's cores)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="run the sessions on this Dask cluster instead (its workers must see the session files and "
                        "run this biofeedback version)")
    p.add_argument("--diary-days", type=window_days,
                   help="days after a session whose headaches are linked to it (default: a week)")
    p.set_defaults(func=cmd_study)


def cmd_study(args: argparse.Namespace) -> int:
    from biofeedback.analysis.study import DIARY_WINDOW_DAYS, run_study
    from biofeedback.analysis.study_stats import format_models
    from biofeedback.store import validate_client_id

    clients = [validate_client_id(c) for c in args.client] if args.client else None
    window = args.diary_days or DIARY_WINDOW_DAYS
    from biofeedback.store.paths import data_home

    out = args.out or (args.home or data_home(create=False)) / "study"
    study = run_study(out, args.home, clients, args.scheduler, args.workers, window, progress=_progress)
    st = study.stats
    where = f" on {st.workers} Dask workers ({st.cluster}) in {st.tasks_wall_s:.1f} s" if st.analysed or st.failed else ""
    print(f"sessions: {st.analysed} analysed{where}, {st.reused} unchanged since the last run (not redone), "
          f"{len(st.failed)} failed")
    for line in study.skipped + st.failed:
        print(f"  {line}")
    print(format_models(study.group, window, statement=False), end="")
    print(f"wrote {len(study.written)} files to {out} (models, assumptions and limits: {out / 'study-models.txt'})")
    return 0
