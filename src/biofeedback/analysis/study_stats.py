"""A study's group statistics: tension across sessions per client and overall, and its link with the headache diary.

Models (statsmodels; each stated with its assumptions and limits in ``study-models.txt`` and ``study-report.html``,
written from ``MODEL_TEXT``):

1. Per client: ordinary least squares of the baseline tension on the session index (slope per session, t interval).
2. Overall: a linear mixed-effects model, ``statsmodels.formula.api.mixedlm`` fitted by REML, with a random intercept
   per client and the session index as fixed effect, for the baseline tension and for the within-session change (%).
3. Tension change and the following days: the same mixed model with the session's tension change (post - baseline,
   in the tension unit) as fixed effect, for the headache days and the mean daily intensity of the ``K`` days after
   the session (``diary_windows``); only windows that have been observed whole (ending on or before the study date).

Tension models use the sessions of the study's most common tension unit (µV without a calibration, %RVC with one);
sessions in another unit are counted out and said so. The 95 % intervals of the mixed models are Wald intervals
(normal), those of the per-client lines t intervals.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from biofeedback.analysis.plots import png_bytes
from biofeedback.store.paths import write_private

CLIENT_COLUMNS = {
    "client_id": ("", "pseudonymous client ID"),
    "sessions": ("count", "sessions of the client in the study (readable or not)"),
    "sessions_with_level": ("count", "sessions with a baseline tension level"),
    "released": ("count", "sessions whose verdict is 'released'"),
    "tension_unit": ("", "unit of the client's tension levels"),
    "first_baseline": ("tension_unit", "baseline tension of the client's first session with a level"),
    "last_baseline": ("tension_unit", "baseline tension of the client's last session with a level"),
    "slope": ("tension_unit per session", "OLS slope of baseline tension on session index (negative: falling)"),
    "slope_ci_low": ("tension_unit per session", "95 % t interval of the slope, lower end"),
    "slope_ci_high": ("tension_unit per session", "upper end"),
    "p_value": ("", "two-sided p of slope = 0"),
    "note": ("", "why there is no slope"),
}
MODEL_COLUMNS = {
    "model": ("", "which model (study-models.txt states each)"),
    "outcome": ("", "the dependent variable (a column of the sessions table)"),
    "outcome_unit": ("", "its unit"),
    "predictor": ("", "the fixed effect (a column of the sessions table)"),
    "predictor_unit": ("", "its unit"),
    "estimate": ("outcome_unit per predictor_unit", "fixed-effect coefficient of the predictor"),
    "se": ("outcome_unit per predictor_unit", "its standard error"),
    "ci_low": ("outcome_unit per predictor_unit", "95 % Wald interval, lower end"),
    "ci_high": ("outcome_unit per predictor_unit", "upper end"),
    "p_value": ("", "two-sided Wald p of estimate = 0"),
    "intercept": ("outcome_unit", "fixed intercept"),
    "client_sd": ("outcome_unit", "SD of the clients' random intercepts"),
    "residual_sd": ("outcome_unit", "residual SD"),
    "n_obs": ("count", "sessions in the fit"),
    "n_clients": ("count", "clients in the fit"),
    "converged": ("true/false", "the REML optimiser converged"),
    "note": ("", "warnings of the fit, or why it was not fitted"),
}
TREND_MODELS = (("tension across sessions", "baseline_tension", "session_index"),
                ("session change across sessions", "tension_change_pct", "session_index"))
DIARY_MODELS = (("tension change and headache days", "headache_days", "tension_change"),
                ("tension change and headache intensity", "mean_intensity", "tension_change"))
WINDOW_COLUMNS = ("window_start", "window_end", "window_complete", "headache_days", "mean_intensity", "headache_hours")
"""Columns ``diary_windows`` adds to the sessions table."""
MIN_CLIENTS = 2
"""Least clients for a mixed model (a random intercept needs more than one group)."""
MIN_TREND_SESSIONS = 3
"""Least sessions with a level for a client's own line (two points give no interval)."""

MODEL_TEXT = """\
Models
======
Per client: baseline_tension[i] = a + b * session_index[i] + e[i] (ordinary least squares; 95 % t interval of b).

Overall, change across sessions (linear mixed-effects model, REML, statsmodels mixedlm):
  y[i,j] = b0 + b1 * session_index[i,j] + u[j] + e[i,j],  u[j] ~ N(0, client_sd^2),  e[i,j] ~ N(0, residual_sd^2)
  for client j's i-th session, y = baseline_tension (the resting tension before treatment) and, separately,
  y = tension_change_pct (the session's own change from baseline to post rest).

Tension change and the following days (same model):
  h[i,j] = g0 + g1 * tension_change[i,j] + v[j] + e[i,j]
  h = headache_days (days with a diary entry among the {K} days after the session) or mean_intensity (the mean of
  each of those days' highest intensity, 0 on a day without an entry); tension_change = post - baseline tension.

Assumptions
-----------
- A straight line in the session index: each session moves the level by the same amount, whatever the days between.
- One slope for every client (random intercept only); each client's own slope is in client_trends.
- Normal random intercepts and residuals, residuals independent within a client once its intercept is known
  (no carry-over or autocorrelation from one session to the next).
- The diary is complete: a day without an entry was a day without headache.
- Sessions missing from the study are missing at random.

Limits
------
- With few clients the client variance is poorly estimated and the Wald intervals are too narrow; read p values
  with that in mind (a bootstrap over clients or Kenward-Roger intervals would be better with fewer than ~20 clients).
- Tension in uV is not comparable across clients (electrode placement, skin, fat): the random intercept absorbs
  each client's level but not a difference in scale. Calibrated sessions (%RVC) are comparable; the models use the
  study's most common unit only.
- headache_days is a count from 0 to {K} and mean_intensity is bounded: a linear Gaussian model is an approximation
  (a Poisson or binomial mixed model would respect the bounds).
- The link between tension change and headaches is an association, not an effect: both may fall over the weeks for
  other reasons (time, season, medication, other treatment), a higher baseline gives a larger absolute fall, and
  windows of sessions fewer than {K} days apart overlap, so they are not independent.
- Only windows observed whole (ending on or before the study date) are used.
"""


def diary_windows(sessions: pd.DataFrame, days: pd.DataFrame, window_days: int, today: dt.date) -> pd.DataFrame:
    """``sessions`` with the diary of the ``window_days`` days after each session: window_start, window_end,
    window_complete, headache_days, mean_intensity (0 on days without entry), headache_hours."""
    out = sessions.copy()
    cols: dict[str, list] = {c: [] for c in WINDOW_COLUMNS}
    for client, date in zip(out["client_id"], out["date"]):
        if pd.isna(date):
            for c in cols:
                cols[c].append(None)
            continue
        start = dt.date.fromisoformat(date) + dt.timedelta(days=1)
        end = start + dt.timedelta(days=window_days - 1)
        sel = days[(days["client_id"] == client) & (days["date"] >= start.isoformat()) & (days["date"] <= end.isoformat())]
        cols["window_start"].append(start.isoformat())
        cols["window_end"].append(end.isoformat())
        cols["window_complete"].append(end <= today)
        cols["headache_days"].append(int(sel["headache"].sum()))
        cols["mean_intensity"].append(float(sel["intensity_max"].mean()) if len(sel) else None)
        cols["headache_hours"].append(float(sel["duration_h"].sum(skipna=False)))  # NaN: a duration not known
    for c, values in cols.items():
        out[c] = values
    return out.astype({"window_start": "string", "window_end": "string", "window_complete": "boolean",
                       "headache_days": "Int64", "mean_intensity": "Float64", "headache_hours": "Float64"})


def _unit_sessions(sessions: pd.DataFrame) -> tuple[pd.DataFrame, str, list[str]]:
    """Sessions with a tension level in the study's most common unit, that unit, and notes on the others."""
    have = sessions[sessions["baseline_tension"].notna()]
    if have.empty:
        return have, "", []
    unit = have["tension_unit"].mode().iloc[0]
    other = have[have["tension_unit"] != unit]
    notes = [f"{len(other)} sessions in {', '.join(sorted(set(other['tension_unit'])))} left out (the models use {unit})"
             ] if len(other) else []
    return have[have["tension_unit"] == unit], unit, notes


def mixed_model(frame: pd.DataFrame, name: str, outcome: str, predictor: str, units: dict[str, str]) -> dict:
    """One random-intercept model ``outcome ~ predictor`` with clients as groups; a row of MODEL_COLUMNS."""
    import statsmodels.formula.api as smf

    d = frame[["client_id", outcome, predictor]].dropna().astype({outcome: float, predictor: float})
    row = {"model": name, "outcome": outcome, "outcome_unit": units[outcome], "predictor": predictor,
           "predictor_unit": units[predictor], "n_obs": len(d), "n_clients": d["client_id"].nunique(), "note": None}
    if row["n_clients"] < MIN_CLIENTS or len(d) < row["n_clients"] + 2 or d[predictor].nunique() < 2:
        row["note"] = (f"not fitted: needs {MIN_CLIENTS} clients, more sessions than clients + 1 and more than one "
                       f"value of {predictor} (has {row['n_clients']} clients, {len(d)} sessions)")
        return row
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = smf.mixedlm(f"{outcome} ~ {predictor}", d, groups=d["client_id"]).fit(reml=True)
        except (ValueError, np.linalg.LinAlgError) as exc:
            row["note"] = f"not fitted: {exc}"
            return row
    lo, hi = fit.conf_int().loc[predictor]
    row.update(estimate=float(fit.fe_params[predictor]), se=float(fit.bse_fe[predictor]), ci_low=float(lo),
               ci_high=float(hi), p_value=float(fit.pvalues[predictor]), intercept=float(fit.fe_params["Intercept"]),
               client_sd=float(np.sqrt(max(fit.cov_re.iloc[0, 0], 0.0))), residual_sd=float(np.sqrt(fit.scale)),
               converged=bool(fit.converged),
               note="; ".join(dict.fromkeys(str(w.message).split("\n")[0] for w in caught)) or None)
    return row


def client_trends(sessions: pd.DataFrame, unit: str) -> pd.DataFrame:
    """Per client: sessions, released, first and last baseline, and the OLS slope of baseline tension per session."""
    import statsmodels.formula.api as smf

    rows = []
    for client, all_s in sessions.groupby("client_id", sort=True):
        s = all_s[all_s["baseline_tension"].notna() & (all_s["tension_unit"] == unit)].sort_values("session_index")
        row = {"client_id": client, "sessions": len(all_s), "sessions_with_level": len(s),
               "released": int((all_s["verdict"] == "released").sum()), "tension_unit": unit,
               "first_baseline": s["baseline_tension"].iloc[0] if len(s) else None,
               "last_baseline": s["baseline_tension"].iloc[-1] if len(s) else None, "note": None}
        if len(s) < MIN_TREND_SESSIONS:
            row["note"] = f"needs {MIN_TREND_SESSIONS} sessions with a level in {unit} for a slope, has {len(s)}"
        else:
            d = s[["baseline_tension", "session_index"]].astype(float)
            fit = smf.ols("baseline_tension ~ session_index", d).fit()
            lo, hi = fit.conf_int().loc["session_index"]
            row.update(slope=float(fit.params["session_index"]), slope_ci_low=float(lo), slope_ci_high=float(hi),
                       p_value=float(fit.pvalues["session_index"]))
        rows.append(row)
    return pd.DataFrame(rows, columns=list(CLIENT_COLUMNS))


@dataclass
class GroupStatistics:
    """``client_trends`` and ``models`` tables, the tension unit the models use, notes on what was left out."""

    client_trends: pd.DataFrame
    models: pd.DataFrame
    unit: str
    notes: list[str] = field(default_factory=list)

    def model(self, name: str) -> dict:
        return self.models.set_index("model").loc[name].to_dict()


def group_statistics(tables: dict[str, pd.DataFrame], window_days: int) -> GroupStatistics:
    """Per-client lines and the mixed models of ``MODEL_TEXT`` from the study's sessions table."""
    sessions, unit, notes = _unit_sessions(tables["sessions"])
    units = {"baseline_tension": unit, "tension_change_pct": "%", "session_index": "session",
             "headache_days": f"days of {window_days}", "mean_intensity": "0-10", "tension_change": unit}
    rows = [mixed_model(sessions, *m, units) for m in TREND_MODELS]
    observed = sessions[sessions["window_complete"].fillna(False).astype(bool)]
    if len(observed) < len(sessions):
        notes.append(f"{len(sessions) - len(observed)} sessions' following {window_days} days are not over yet; "
                     "the headache models leave them out")
    rows += [mixed_model(observed, *m, units) for m in DIARY_MODELS]
    return GroupStatistics(client_trends(tables["sessions"], unit), pd.DataFrame(rows, columns=list(MODEL_COLUMNS)),
                           unit, notes)


# --- text, plots, report -----------------------------------------------------------------------
def _num(v, digits: int = 2) -> str:
    return "-" if v is None or pd.isna(v) else f"{v:.{digits}f}"


def format_models(group: GroupStatistics, window_days: int, statement: bool = True) -> str:
    """The models, their assumptions and limits (``statement``), then the estimates, as plain text."""
    lines = [MODEL_TEXT.format(K=window_days), "Results", "======="] if statement else []
    for r in group.models.to_dict("records"):
        lines.append(f"{r['model']}: {r['outcome']} ~ {r['predictor']} + (1 | client), {r['n_obs']} sessions of "
                     f"{r['n_clients']} clients")
        if pd.isna(r["estimate"]):
            lines.append(f"  {r['note']}")
            continue
        lines.append(f"  {r['predictor']}: {_num(r['estimate'], 3)} {r['outcome_unit']} per {r['predictor_unit']} "
                     f"(95 % CI {_num(r['ci_low'], 3)} to {_num(r['ci_high'], 3)}, p = {_num(r['p_value'], 4)}); "
                     f"intercept {_num(r['intercept'])}, client SD {_num(r['client_sd'])}, residual SD "
                     f"{_num(r['residual_sd'])}" + ("" if r["converged"] else "; the optimiser did not converge"
                     + (" (client SD at its bound 0: the estimate is that of pooled least squares)"
                        if r["client_sd"] < 0.01 * r["residual_sd"] else "")))
        if pd.notna(r["note"]):
            lines.append(f"  fit warnings: {r['note']}")
    lines += ["", f"Per client (baseline tension, {group.unit} per session):"]
    for r in group.client_trends.to_dict("records"):
        slope = (r["note"] if pd.isna(r["slope"]) else
                 f"slope {_num(r['slope'])} (95 % CI {_num(r['slope_ci_low'])} to {_num(r['slope_ci_high'])})")
        lines.append(f"  {r['client_id']}: {r['sessions']} sessions, {r['released']} released, baseline "
                     f"{_num(r['first_baseline'], 1)} -> {_num(r['last_baseline'], 1)}; {slope}")
    lines += [f"note: {n}" for n in group.notes]
    return "\n".join(lines) + "\n"


def tension_figure(sessions: pd.DataFrame, group: GroupStatistics):
    """Baseline and post tension per session index for each client, with the mixed model's fixed line."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    s = sessions[sessions["baseline_tension"].notna() & (sessions["tension_unit"] == group.unit)]
    for i, (client, c) in enumerate(s.groupby("client_id", sort=True)):
        colour = f"C{i % 10}"
        ax.plot(c["session_index"], c["baseline_tension"], "o-", color=colour, label=f"{client} baseline")
        ax.plot(c["session_index"], c["post_tension"], "o--", mfc="none", color=colour, alpha=0.7, label=f"{client} post")
    m = group.model(TREND_MODELS[0][0])
    if not s.empty and not pd.isna(m["estimate"]):
        x = np.array([s["session_index"].min(), s["session_index"].max()], dtype=float)
        ax.plot(x, m["intercept"] + m["estimate"] * x, "k-", lw=2,
                label=f"mixed model: {m['estimate']:+.2f} {group.unit}/session")
    ax.set_xlabel("session (per client, oldest first)")
    ax.set_ylabel(f"resting tension index ({group.unit})")
    ax.set_title("Tension across sessions")
    ax.legend(fontsize=7, ncol=2)
    return fig


def headache_figure(sessions: pd.DataFrame, group: GroupStatistics, window_days: int):
    """Headache days and mean intensity after each session against its tension change, with the models' lines."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    s = sessions[sessions["tension_change"].notna() & sessions["window_complete"].fillna(False).astype(bool)
                 & (sessions["tension_unit"] == group.unit)]
    for ax, (name, outcome, _), label in zip(axes, DIARY_MODELS,
                                             (f"headache days in the {window_days} days after", "mean daily intensity (0-10)")):
        for i, (client, c) in enumerate(s.groupby("client_id", sort=True)):
            ax.plot(c["tension_change"], c[outcome].astype(float), "o", color=f"C{i % 10}", label=client)
        m = group.model(name)
        if not s.empty and not pd.isna(m["estimate"]):
            x = np.array([s["tension_change"].min(), s["tension_change"].max()], dtype=float)
            ax.plot(x, m["intercept"] + m["estimate"] * x, "k-", label=f"mixed model: {m['estimate']:+.3f} per {group.unit}")
        ax.set_xlabel(f"session's tension change, post - baseline ({group.unit})")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle("Tension change and the following days' headaches (association, not effect)")
    return fig


def write_group_outputs(out_dir: Path, group: GroupStatistics, tables: dict[str, pd.DataFrame],
                        window_days: int) -> list[Path]:
    """study-models.txt, study-tension.png, study-headaches.png and study-report.html (all 0600) in ``out_dir``."""
    text = format_models(group, window_days)
    pngs = {"study-tension.png": png_bytes(tension_figure(tables["sessions"], group)),
            "study-headaches.png": png_bytes(headache_figure(tables["sessions"], group, window_days))}
    written = [write_private(out_dir / "study-models.txt", text)]
    written += [write_private(out_dir / name, data) for name, data in pngs.items()]
    s = tables["sessions"]
    overview = html.escape(s[["client_id", "date", "session_index", "baseline_tension", "post_tension",
                              "tension_change_pct", "verdict", "headache_days", "mean_intensity"]].to_string(index=False))
    images = "".join(f"<img alt='{name}' src='data:image/png;base64,{base64.b64encode(data).decode()}'>"
                     for name, data in pngs.items())
    doc = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Study</title>"
           "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto}img{max-width:100%}</style>"
           f"</head><body><h1>Study: {len(s)} sessions of {s['client_id'].nunique()} clients</h1>{images}"
           f"<h2>Models, assumptions, limits and results</h2><pre>{html.escape(text)}</pre>"
           f"<h2>Sessions</h2><pre>{overview}</pre></body></html>")
    written.append(write_private(out_dir / "study-report.html", doc))
    return written
