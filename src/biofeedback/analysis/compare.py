"""Before/after comparison of two phases of a session, with honest statistics and plain-word verdicts.

Every exclusion comes from the loaded session (``analysis.data``: its annotations, ``emg.valid``,
``beats.valid`` and ``enough_clean``, the least clean data for a level), so the summary and this
comparison agree about what was clean. Units of resampling: EMG in ``data.WINDOW_S`` windows (the
250 ms moving RMS inside them, excluded samples left out), heartbeats one by one (corrected RR;
successive differences only between adjacent beats).
Each phase is resampled on its own by moving blocks (``stats``), the metric recomputed on every
resample, and the 95 % percentile interval of the change taken. A change counts ("fell", "rose")
only when its interval excludes zero *and* it is at least the smallest detectable change (SDC95)
from the within-phase variability of 30-s segments (Student's t for their few degrees of freedom: an SD from two or
three segments per phase is often far too small by chance, and slow drift of resting tension then passes for a
change); otherwise it is "no clear change". Symmetry and APDF are computed on each side's normalised amplitude
(``side_references``). The effect
size is the change over that within-phase SD (log scale for ratio metrics), a standardised mean
difference in the style of Cohen's d.

The overall verdict rests on one pre-chosen metric, the tension index of both trapezius sides
(``PRIMARY``), so the chance of a false "released" stays at the interval's 5 %; the other metrics
are reported beside it, never promoted to the verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from biofeedback.analysis.data import (
    GAP_RATE_HZ,
    WINDOW_S,
    EmgTrack,
    EmgWindows,
    PhaseSpan,
    Progress,
    SessionData,
    contiguous_with_previous,
    enough_clean,
    signal_loss_s,
    too_little,
)
from biofeedback.analysis.stats import (
    N_BOOT,
    block_length,
    moving_block_indices,
    percentile_ci,
    pooled_within,
    smallest_detectable_change,
)
from biofeedback.dsp import (
    BAEVSKY_SI,
    FREQUENCY_DEFAULTS,
    PNS,
    SNS,
    Calibration,
    TensionIndex,
    baevsky_stress_index,
    emg_gaps,
    frequency_hrv,
    pns_index,
    sns_index,
    spectrum_unavailable_reason,
)
from biofeedback.dsp.emg import UPPER_EDGE_FRACTION_OF_FS
from biofeedback.dsp.emg import GAP_RMS_WINDOW_S
from biofeedback.errors import BiofeedbackError, Reason
from biofeedback.vocab import Verdict

RESAMPLE_BATCH_VALUES = 1 << 21
"""Values of resampled units a bootstrap statistic takes at a time (16 MB): the resamples are judged in batches of
rows, each row on its own, so memory stays bounded however long the phase (issue 19) and the replicates are the same."""
QUANTILE_BLOCKS = 256
"""Runs the sorted values of a phase are cut into for the bootstrap's APDF (``_Quantile.resampled``): the work per
resample is (windows x runs) + (values / runs), linear in the phase's length."""
SEGMENT_S = 30.0
"""Segment length for the within-phase variability behind the SDC."""
MIN_VERDICT_SEGMENTS = 2
"""Least 30-s segments in each phase to judge a change (so a phase needs about 60 s of clean data)."""
MIN_BEATS = 30
EMG_GAP_RVC_FRACTION = 0.005
"""EMG gap threshold with an RVC calibration: 0.5 %RVC (Hägg & Åström 1997)."""
EMG_GAP_FALLBACK_UV = 3.0
"""EMG gap threshold without a calibration: just above the 1-3 µV RMS noise of good electrodes at rest."""
NK_TIME_MIN_S = 60.0
"""neurokit2 time-domain HRV needs at least a minute of clean beats."""
NK_FREQUENCY_MIN_S = 120.0
"""Frequency-domain HRV needs at least two minutes (two cycles of 0.04 Hz is 50 s; LF needs far more; Task Force 1996 asks 5 min)."""
PRIMARY = "emg.both.tension_index"
BASELINE_NAMES = ("baseline", "pre", "rest")
POST_NAMES = ("post", "post-rest", "after")
NK_COLUMNS = {"HRV_MeanNN": "ms", "HRV_SDNN": "ms", "HRV_RMSSD": "ms", "HRV_pNN50": "%"}
"""neurokit2 time-domain columns shown in the report, with their units."""
NK_FREQUENCY = {"psd_method": "welch", "interpolation_rate": 4, "normalize": False}
"""neurokit2 ``hrv_frequency`` arguments: Welch, 4 Hz as ours, powers in ms² (not scaled to the spectrum's maximum).
Its segment length cannot be set (its keyword arguments reach both its interpolator and its PSD)."""
NK_FREQUENCY_SETTINGS = ("neurokit2 hrv_frequency: quadratic spline at 4 Hz, no detrend, Welch with Hann segments of "
                         "half the series (two segments' worth, 50 % overlap), zero-padded to twice; trapezoid over "
                         "[lo, hi); LF n.u. over its total power 0-0.5 Hz")


class AnalysisError(BiofeedbackError):
    """The analysis cannot run as asked; the message (one line) says what to do instead."""


@dataclass
class MetricChange:
    """One metric in two phases: levels with CIs, the change with its CI, SDC, effect size and verdict."""

    key: str
    label: str
    unit: str
    group: str
    """"emg" or "heart"."""
    kind: str
    """"ratio" (change in %) or "difference" (change in ``unit``)."""
    better: str
    """Direction that means relaxation: "down" or "up"."""
    a: float = float("nan")
    a_ci: tuple[float, float] = (float("nan"), float("nan"))
    b: float = float("nan")
    b_ci: tuple[float, float] = (float("nan"), float("nan"))
    change: float = float("nan")
    change_unit: str = ""
    change_ci: tuple[float, float] = (float("nan"), float("nan"))
    sdc: float = float("nan")
    """Smallest detectable change, in ``change_unit``."""
    effect_size: float = float("nan")
    verdict: str = "not available"
    """"fell", "rose", "no clear change" or "not available"."""
    sentence: str = ""
    n_a: int = 0
    n_b: int = 0
    block_a: int = 0
    block_b: int = 0
    levels: dict = field(default_factory=dict)
    """Extra per-phase levels in other units, e.g. {"%baseline": (a, b), "%RVC": (a, b)}."""


@dataclass
class Comparison:
    """A before/after comparison of one session."""

    session: str
    client_id: str | None
    started_utc: float | None
    phase_a: PhaseSpan | None
    phase_b: PhaseSpan | None
    tension_unit: str
    metrics: list[MetricChange]
    overall: dict
    """label (a ``vocab.Verdict``) and text."""
    notes: list[str]
    """What could not be compared, and why."""
    exclusions: dict
    """Per phase: seconds or beats left out, by reason."""
    neurokit: dict
    """Per phase: neurokit2 HRV values, or a note saying why not."""
    n_boot: int
    emg_processing: dict = field(default_factory=dict)
    """The EMG sensor's rate, the band-pass the EMG numbers come from, and whether spectral measures are available."""
    sensors: list[dict] = field(default_factory=list)
    """Which sensor and rate each quantity came from (``SessionData.sensors``)."""

    def metric(self, key: str) -> MetricChange:
        for m in self.metrics:
            if m.key == key:
                return m
        raise KeyError(key)

    def to_dict(self) -> dict:
        """Every number with its CI, JSON-ready (NaN as null)."""
        return _clean(asdict(self))


def _clean(value):
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


# --- units of resampling ----------------------------------------------------------------------
@dataclass
class _Units:
    """Per phase: arrays sharing their first axis (the resampling units), segment of each unit, duration."""

    arrays: tuple[np.ndarray, ...]
    segment: np.ndarray
    valid_s: float
    block_series: np.ndarray

    @property
    def n(self) -> int:
        return int(self.segment.size)


def _window_units(w: EmgWindows) -> _Units:
    """EMG windows as resampling units, each in the ``SEGMENT_S`` segment of the phase it starts in."""
    segment = (w.index * WINDOW_S // SEGMENT_S).astype(int)
    with np.errstate(all="ignore"):
        means = np.nanmean(w.values, axis=1) if w.values.size else np.empty(0)
    return _Units((w.values,), segment, w.clean_s, means)


def _emg_windows(track: EmgTrack, span: PhaseSpan, values: np.ndarray, valid: np.ndarray) -> _Units:
    """Windows of ``values`` (n,) in a phase as resampling units, NaN where excluded."""
    return _window_units(track.windows(span, values, valid))


def _beat_units(data: SessionData, span: PhaseSpan) -> _Units:
    t, rr, d = data.beats.in_span(span)
    segment = ((t - span.start_s) // SEGMENT_S).astype(int)
    return _Units((rr, d), segment, float(rr.sum() / 1000.0), rr)


# --- metric statistics on resampled units (rows = resamples) -----------------------------------
def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1)


def _drawn(idx: np.ndarray, n_units: int) -> np.ndarray:
    """(rows, n_units) float: how often each bootstrap resample (a row of unit indices) drew each unit."""
    r = np.arange(idx.shape[0])
    counts = np.bincount((idx + (r * n_units)[:, None]).ravel(), minlength=idx.shape[0] * n_units)
    return counts.reshape(idx.shape[0], n_units).astype(np.float64)


def _resampled_means(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Per resample, the mean of the finite values of the units it drew: sums and counts per unit once, then one
    matrix product per batch of resamples (equal to ``np.nanmean`` of each resample built the plain way)."""
    v = values.reshape(values.shape[0], -1)
    finite = np.isfinite(v)
    per_unit = np.column_stack((np.where(finite, v, 0.0).sum(axis=1), finite.sum(axis=1)))
    rows = max(1, RESAMPLE_BATCH_VALUES // max(1, v.shape[0]))
    out = np.empty(idx.shape[0])
    for start in range(0, idx.shape[0], rows):
        total = _drawn(idx[start:start + rows], v.shape[0]) @ per_unit
        with np.errstate(all="ignore"):
            out[start:start + rows] = np.where(total[:, 1] > 0, total[:, 0] / total[:, 1], np.nan)
    return out


class _NanMean:
    """Row-wise mean ignoring NaN; ``resampled`` gives it for bootstrap resamples from their unit indices."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.nanmean(_flat(x), axis=1)

    def resampled(self, arrays: tuple[np.ndarray, ...], idx: np.ndarray) -> np.ndarray:
        return _resampled_means(arrays[0], idx)


_nanmean = _NanMean()


class _Quantile:
    """Row-wise ``q`` quantile ignoring NaN (as ``np.nanquantile``, linear), vectorised over resamples.

    Called on resampled arrays it sorts each row. ``resampled`` gives the same numbers for bootstrap resamples from
    their unit indices without sorting any resample: the phase's values are sorted once, each resample is a count
    of how often it drew each unit, and the ranks ``q`` asks for are found in the running total of those counts
    along the sorted values. The work per resample is then linear in the phase's length (a sort per resample
    made a 4 h report take 4.8 times as long as a 1 h one, issue 19)."""

    def __init__(self, q: float) -> None:
        self.q = q

    def __call__(self, x: np.ndarray) -> np.ndarray:
        rows = np.sort(_flat(x), axis=1)  # NaN sorts last
        k = np.isfinite(rows).sum(axis=1)
        pos = self.q * np.maximum(k - 1, 0)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, np.maximum(k - 1, 0))
        r = np.arange(rows.shape[0])
        out = rows[r, lo] + (rows[r, hi] - rows[r, lo]) * (pos - lo)
        return np.where(k > 0, out, np.nan)

    def resampled(self, arrays: tuple[np.ndarray, ...], idx: np.ndarray) -> np.ndarray:
        """``self(arrays[0][idx])`` for (n_boot, n) unit indices ``idx``, without building or sorting the rows."""
        values = arrays[0].reshape(arrays[0].shape[0], -1)
        n_units = values.shape[0]
        unit = np.repeat(np.arange(n_units), values.shape[1])
        v = values.ravel()
        keep = np.isfinite(v)
        order = np.argsort(v[keep], kind="stable")
        v, unit = v[keep][order], unit[keep][order]
        out = np.full(idx.shape[0], np.nan)
        if v.size == 0:
            return out
        # The sorted values in QUANTILE_BLOCKS runs; ``held[u, b]``: how many of unit u's values lie in run b. A
        # resample's count of each run is then one matrix product, and only the run holding the rank is walked.
        width = -(-v.size // QUANTILE_BLOCKS)
        runs = -(-v.size // width)
        held = np.bincount(unit * runs + np.arange(v.size) // width, minlength=n_units * runs)
        held = held.reshape(n_units, runs).astype(np.float64)
        rows = max(1, RESAMPLE_BATCH_VALUES // (8 * max(n_units, runs, width)))  # ~8 temporaries of (rows, width)
        for start in range(0, idx.shape[0], rows):
            block = idx[start:start + rows]
            r = np.arange(block.shape[0])
            counts = _drawn(block, n_units)
            upto = np.cumsum(counts @ held, axis=1)  # (rows, runs): values drawn up to the end of each run
            k = upto[:, -1]
            pos = self.q * np.maximum(k - 1, 0)
            lo = np.floor(pos)
            hi = np.minimum(lo + 1, np.maximum(k - 1, 0))

            def value_of_rank(rank: np.ndarray) -> np.ndarray:
                run = (upto <= rank[:, None]).sum(axis=1).clip(max=runs - 1)
                before = np.where(run > 0, upto[r, np.maximum(run - 1, 0)], 0.0)
                at = run[:, None] * width + np.arange(width)[None, :]
                inside = at < v.size
                drawn = np.where(inside, counts[r[:, None], unit[np.minimum(at, v.size - 1)]], 0.0)
                j = (before[:, None] + np.cumsum(drawn, axis=1) <= rank[:, None]).sum(axis=1)
                return v[np.minimum(run * width + j, v.size - 1)]

            a, b = value_of_rank(lo), value_of_rank(hi)
            out[start:start + block.shape[0]] = np.where(k > 0, a + (b - a) * (pos - lo), np.nan)
        return out


def _apdf(q: float) -> _Quantile:
    """The APDF ``q`` statistic (``_Quantile``)."""
    return _Quantile(q)


def _gaps_per_min(rate_hz: float, threshold: float) -> Callable:
    """EMG gaps per minute of each row of the short-window gap amplitude (``EmgTrack.gap_windows``)."""
    def stat(x: np.ndarray) -> np.ndarray:
        rows = _flat(x)
        return np.array([emg_gaps(r, rate_hz, threshold, valid=np.isfinite(r), window_s=GAP_RMS_WINDOW_S).per_minute
                         for r in rows])
    return stat


class _Symmetry:
    """``dsp.symmetry_index`` of each row's mean left and right amplitude (the per-side normalised amplitudes)."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._index(_nanmean(x[..., 0]), _nanmean(x[..., 1]))

    def resampled(self, arrays: tuple[np.ndarray, ...], idx: np.ndarray) -> np.ndarray:
        return self._index(_resampled_means(arrays[0][..., 0], idx), _resampled_means(arrays[0][..., 1], idx))

    @staticmethod
    def _index(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return 100.0 * (left - right) / ((left + right) / 2.0)


_symmetry = _Symmetry()


def _scaled(u: _Units, factor: float) -> _Units:
    return _Units(tuple(a * factor for a in u.arrays), u.segment, u.valid_s, u.block_series)


def _heart(rr: np.ndarray, d: np.ndarray) -> dict[str, np.ndarray]:
    """Heart metrics of each row of resampled corrected RR (ms) and successive differences (ms)."""
    with np.errstate(all="ignore"):
        mean_rr = rr.mean(axis=1)
        hr = np.mean(60000.0 / rr, axis=1)
        r = np.sqrt(np.nanmean(d * d, axis=1))
        sdnn = rr.std(axis=1, ddof=1)
        sd1 = np.nanstd(d, axis=1, ddof=1) / np.sqrt(2.0)
        sd2 = np.sqrt(np.maximum(2 * sdnn**2 - sd1**2, 0.0))
        si = np.array([baevsky_stress_index(row) for row in rr])
        return {
            "hr_bpm": hr, "rmssd_ms": r, "ln_rmssd": np.log(r), "sdnn_ms": sdnn, BAEVSKY_SI.key: si,
            "pns_index": pns_index(mean_rr, r, 100.0 * sd1 / mean_rr),
            "sns_index": sns_index(hr, np.sqrt(si), 100.0 * sd2 / mean_rr),
        }


HEART_METRICS = (
    # key, label, unit, kind, better
    ("hr_bpm", "Heart rate", "bpm", "difference", "down"),
    ("rmssd_ms", "RMSSD", "ms", "ratio", "up"),
    ("ln_rmssd", "ln RMSSD", "ln(ms)", "difference", "up"),
    ("sdnn_ms", "SDNN", "ms", "ratio", "up"),
    (BAEVSKY_SI.key, BAEVSKY_SI.name, BAEVSKY_SI.unit, "ratio", "down"),
    (PNS.key, PNS.name, PNS.unit, "difference", "up"),
    (SNS.key, SNS.name, SNS.unit, "difference", "down"),
)


# --- one metric --------------------------------------------------------------------------------
def _fmt(v: float, unit: str) -> str:
    digits = 0 if abs(v) >= 100 or unit == "%" else (1 if abs(v) >= 1 else 2)
    return f"{v:.{digits}f}"


def _sentence(m: MetricChange, phases: tuple[str, str]) -> str:
    if m.verdict == "not available":
        return f"{m.label}: {m.sentence}" if m.sentence else f"{m.label}: not available"
    unit = m.change_unit
    sp = " "
    lo, hi = m.change_ci
    noise = f"{_fmt(m.sdc, unit)}{sp}{unit} measurement noise"
    if m.verdict in ("fell", "rose"):
        mag = abs(m.change)
        a, b = sorted((abs(lo), abs(hi)))
        return (f"{m.label} {m.verdict} {_fmt(mag, unit)}{sp}{unit} (95 % CI {_fmt(a, unit)}-{_fmt(b, unit)}{sp}{unit}) "
                f"from {phases[0]} to {phases[1]}, larger than the {noise}")
    why = ("its 95 % CI includes no change" if lo <= 0 <= hi else f"it is within the {noise}")
    return (f"{m.label}: no clear change ({'+' if m.change >= 0 else '-'}{_fmt(abs(m.change), unit)}{sp}{unit}, "
            f"95 % CI {_fmt(lo, unit)} to {_fmt(hi, unit)}{sp}{unit}, measurement noise {_fmt(m.sdc, unit)}{sp}{unit}; {why})")


def _judge(m: MetricChange, ua: _Units, ub: _Units | None, stat: Callable, rng: np.random.Generator, n_boot: int,
           phases: tuple[str, str]) -> MetricChange:
    """Fill levels, change, CI, SDC, effect size and verdict of ``m``."""
    def phase_level(u: _Units, name: str) -> tuple[float, tuple[float, float], np.ndarray, int] | str:
        """Level, its CI, bootstrap replicates and block length of one phase, or why there are none."""
        if not enough_clean(u.valid_s, u.n):
            return too_little(name, f"{u.valid_s:.0f} s")
        block = block_length(u.block_series)
        idx = moving_block_indices(u.n, block, n_boot, rng)
        if hasattr(stat, "resampled"):
            replicates = stat.resampled(u.arrays, idx)
        else:
            rows = max(1, RESAMPLE_BATCH_VALUES // max(1, sum(a[:1].size for a in u.arrays) * u.n))
            replicates = np.concatenate([stat(*(a[idx[i:i + rows]] for a in u.arrays)) for i in range(0, n_boot, rows)])
        return float(stat(*(a[None] for a in u.arrays))[0]), percentile_ci(replicates), replicates, block

    def segments(u: _Units) -> np.ndarray:
        ids, counts = np.unique(u.segment, return_counts=True)
        full = counts >= max(1, counts.max() // 2) if counts.size else counts.astype(bool)
        return np.array([stat(*(a[u.segment == k][None] for a in u.arrays))[0] for k in ids[full]])

    m.n_a = ua.n
    found = phase_level(ua, phases[0])
    if isinstance(found, str):
        m.sentence = found
        return m
    m.a, m.a_ci, boot_a, m.block_a = found
    if ub is None:
        m.sentence = f"no {phases[1]} phase to compare with"
        return m
    m.n_b = ub.n
    found = phase_level(ub, phases[1])
    if isinstance(found, str):
        m.sentence = found
        return m
    m.b, m.b_ci, boot_b, m.block_b = found
    seg_a, seg_b = segments(ua), segments(ub)
    ratio = m.kind == "ratio"
    if ratio and not (m.a > 0 and m.b > 0):
        m.sentence = "a level is zero, so no percentage change can be given"
        return m
    with np.errstate(all="ignore"):
        if ratio:
            m.change_unit = "%"
            m.change = 100.0 * (m.b / m.a - 1.0)
            lo, hi = percentile_ci(np.log(boot_b / boot_a))
            m.change_ci = (100.0 * np.expm1(lo), 100.0 * np.expm1(hi))
            sd, df = pooled_within([np.log(seg_a), np.log(seg_b)])
            sdc_log = smallest_detectable_change(sd, df)
            # The same log-scale SDC as a percentage in the direction of the change (a fall of 26 % is a rise of 35 %).
            m.sdc = 100.0 * (np.expm1(sdc_log) if m.b >= m.a else -np.expm1(-sdc_log))
            shift = np.log(m.b / m.a)
        else:
            m.change_unit = m.unit
            m.change = m.b - m.a
            m.change_ci = percentile_ci(boot_b - boot_a)
            sd, df = pooled_within([seg_a, seg_b])
            sdc_log = m.sdc = smallest_detectable_change(sd, df)
            shift = m.change
    if min(seg_a.size, seg_b.size) < MIN_VERDICT_SEGMENTS or not np.isfinite(sd):
        m.sentence = (f"too short to judge a change (needs {MIN_VERDICT_SEGMENTS} clean {SEGMENT_S:.0f}-s segments "
                      f"in each phase, has {seg_a.size} and {seg_b.size})")
        return m
    m.effect_size = float(shift / sd) if sd > 0 else float("nan")
    lo, hi = m.change_ci
    clear = (lo > 0 or hi < 0) and abs(shift) >= sdc_log
    m.verdict = ("fell" if m.change < 0 else "rose") if clear else "no clear change"
    m.sentence = _sentence(m, phases)
    return m


# --- the comparison ----------------------------------------------------------------------------
def default_phases(data: SessionData) -> tuple[str | None, str | None]:
    """Baseline and post-treatment rest: by name where the protocol uses the usual names, else the first
    rest phase and the last rest phase after a treatment."""
    rests = [p for p in data.phases if p.kind == "rest"]
    a = next((p for p in data.phases if p.name in BASELINE_NAMES), rests[0] if rests else None)
    if a is None:
        return None, None
    later = [p for p in data.phases if p.start_s > a.start_s]
    b = next((p for p in later if p.name in POST_NAMES), None)
    if b is None:
        after_treatment = [p for p in later if p.kind == "rest" and any(
            q.kind == "treatment" and a.start_s < q.start_s < p.start_s for q in data.phases)]
        b = after_treatment[-1] if after_treatment else None
    return a.name, None if b is None else b.name


def _calibration(data: SessionData, channels: tuple[str, ...]) -> Calibration | None:
    cal = data.calibration
    if cal is None or len(cal.get("rvc_rms_uv") or ()) != len(channels):
        return None
    return Calibration(cal.get("rest_rms_uv"), cal.get("rvc_rms_uv"), cal.get("mvc_rms_uv"))


def _side(channel: str) -> str:
    return channel.split("_")[0].capitalize()


OWN_BASELINE = "% own baseline"
"""Unit of an amplitude normalised to that side's own mean in the baseline phase (no calibration)."""


def side_references(data: SessionData, cal: Calibration | None, baseline: PhaseSpan) -> tuple[np.ndarray, str]:
    """Per side, the amplitude (µV) that is 100 on the normalised scale, and that scale's unit: the reference voluntary
    contraction ("%RVC") of the session's calibration (``_calibration``: one with an RVC per side), else that side's
    own mean RMS in the baseline phase (``OWN_BASELINE``; NaN where the side has too little clean baseline). Symmetry
    and APDF use this scale, so a difference in electrode gain between the sides is no asymmetry."""
    track = data.emg
    if cal is not None:
        return np.asarray(cal.rvc_rms_uv, dtype=float), "%RVC"
    refs = []
    for c in range(len(track.channels)):
        w = track.channel_windows(baseline, c)
        refs.append(float(np.nanmean(w.values)) if enough_clean(w.clean_s, w.n) else np.nan)
    return np.array(refs), OWN_BASELINE


def no_signal_s(track: EmgTrack, span: PhaseSpan) -> dict[str, float]:
    """Per channel, seconds of ``span`` (hands-on left out) with no muscle signal (``data.signal_loss_s``: electrode
    off, lost contact, a flat line or one at the rail; the same count the summary shows). Never counted as zero
    tension."""
    return signal_loss_s(track, span)[0]


def _with_no_signal(m: MetricChange, track: EmgTrack, spans: tuple[PhaseSpan | None, ...], channels: tuple[int, ...]) -> None:
    """Where a level is missing, say how much of each phase had no signal on the channels it needs."""
    if m.verdict != "not available":
        return
    lost = [f"{_side(track.channels[c]).lower()} {s:.0f} s of {p.name}" for p in spans if p is not None
            for c, s in enumerate(no_signal_s(track, p).values()) if c in channels and s >= 1.0]
    if lost:
        m.sentence += f"; no signal (electrode off or bad contact): {', '.join(lost)}"


def _emg_metrics(data: SessionData, a: PhaseSpan, b: PhaseSpan | None, rng, n_boot: int, phases) -> tuple[list[MetricChange], str]:
    track = data.emg
    cal = _calibration(data, track.channels)
    index = TensionIndex(cal)
    valid = track.valid
    refs, scale = side_references(data, cal, a)
    out = []
    for c, ch in enumerate(track.channels):
        side = _side(ch)
        units = [_window_units(track.channel_windows(p, c)) if p else None for p in (a, b)]
        gap_units = [_window_units(track.gap_windows(p, c)) if p else None for p in (a, b)]
        scaled = [None if u is None else _scaled(u, 100.0 / refs[c]) for u in units]
        threshold = EMG_GAP_RVC_FRACTION * cal.rvc_rms_uv[c] if cal else EMG_GAP_FALLBACK_UV
        specs = [
            ("rms_uv", f"{side} trapezius tension (RMS)", "µV", "ratio", "down", _nanmean, units),
            ("apdf10", f"{side} trapezius static load (APDF 10 %)", scale, "ratio", "down", _apdf(0.1), scaled),
            ("apdf50", f"{side} trapezius median load (APDF 50 %)", scale, "ratio", "down", _apdf(0.5), scaled),
            ("apdf90", f"{side} trapezius peak load (APDF 90 %)", scale, "ratio", "down", _apdf(0.9), scaled),
            ("emg_gaps_per_min", f"{side} trapezius EMG gaps (< {threshold:.2g} µV for >= 0.2 s)", "1/min",
             "difference", "up", _gaps_per_min(GAP_RATE_HZ, threshold), gap_units),
        ]
        for key, label, unit, kind, better, stat, u in specs:
            if not np.isfinite(refs[c]) and u is scaled:
                m = MetricChange(f"emg.{ch}.{key}", label, unit, "emg", kind, better,
                                 sentence=f"no {OWN_BASELINE} scale: {too_little(a.name, f'{units[0].valid_s:.0f} s')}")
            else:
                m = _judge(MetricChange(f"emg.{ch}.{key}", label, unit, "emg", kind, better), u[0], u[1], stat, rng,
                           n_boot, phases)
            _with_no_signal(m, track, (a, b), (c,))
            if key == "rms_uv" and np.isfinite(m.a):
                m.levels["%baseline"] = (100.0, 100.0 * m.b / m.a)
                if cal is not None:
                    rvc = cal.rvc_rms_uv[c]
                    m.levels["%RVC"] = (100.0 * m.a / rvc, 100.0 * m.b / rvc)
            out.append(m)
    both = valid.all(axis=1)
    ti = index.combined(track.rms_uv)
    units = [_emg_windows(track, p, ti, both) if p else None for p in (a, b)]
    label = "Trapezius tension index (both sides)"
    primary = _judge(MetricChange(PRIMARY, label, index.unit, "emg", "ratio", "down"), units[0], units[1], _nanmean, rng,
                     n_boot, phases)
    _with_no_signal(primary, track, (a, b), tuple(range(len(track.channels))))
    out.insert(0, primary)
    if len(track.channels) == 2 and np.all(np.isfinite(refs)):
        pair = np.where(both[:, None], track.rms_uv * (100.0 / refs), np.nan)
        units = []
        for p in (a, b):
            if p is None:
                units.append(None)
                continue
            left = _emg_windows(track, p, pair[:, 0], both)
            right = _emg_windows(track, p, pair[:, 1], both)
            units.append(_Units((np.stack((left.arrays[0], right.arrays[0]), axis=-1),), left.segment, left.valid_s,
                                left.block_series))
        out.append(_judge(MetricChange("emg.both.symmetry_pct", f"Left/right symmetry index (on {scale}; + = left higher)",
                                       "%", "emg", "difference", "none"), units[0], units[1], _symmetry, rng, n_boot,
                          phases))
    return out, index.unit


def _emg_processing(track: EmgTrack) -> tuple[dict, list[str]]:
    """What the EMG numbers were computed from (sensor rate, band-pass) and whether spectra exist at that rate; notes."""
    rate, (low, high) = track.sensor_rate_hz, track.band_hz
    reason = spectrum_unavailable_reason(rate)
    notes = [f"EMG: {reason}"] if reason else []
    if high < UPPER_EDGE_FRACTION_OF_FS * 1000.0:
        notes.append(f"EMG band-pass {low:g}-{high:g} Hz at the sensor's {rate:g} Hz (the upper edge is at most "
                     f"{UPPER_EDGE_FRACTION_OF_FS:g} of the rate; the usual 20-450 Hz needs 1000 Hz): its levels are not "
                     "comparable with a faster sensor's")
    return {"sensor_rate_hz": rate, "band_hz": (low, high), "spectral": reason or "available"}, notes


def _heart_metrics(data: SessionData, a: PhaseSpan, b: PhaseSpan | None, rng, n_boot: int, phases) -> list[MetricChange]:
    ua = _beat_units(data, a)
    ub = _beat_units(data, b) if b else None
    out = []
    for key, label, unit, kind, better in HEART_METRICS:
        def stat(rr, d, key=key):
            return _heart(rr, d)[key]
        m = MetricChange(f"heart.{key}", label, unit, "heart", kind, better)
        for u, name in ((ua, phases[0]), (ub, phases[1])):
            if u is not None and u.n < MIN_BEATS:
                m.sentence = f"too few clean beats in {name} ({u.n}; needs {MIN_BEATS})"
        out.append(m if m.sentence else _judge(m, ua, ub, stat, rng, n_boot, phases))
    return out


def _exclusions(data: SessionData, span: PhaseSpan) -> dict:
    out: dict = {"duration_s": span.duration_s}
    if data.emg is not None:
        e = data.emg
        sel = (e.t_s >= span.start_s) & (e.t_s < span.end_s)
        present_s = sel.sum() / e.rate_hz
        out["emg_no_data_s"] = max(0.0, span.duration_s - present_s)
        out["emg_hands_on_s"] = float((sel & e.hands_on).sum() / e.rate_hz)
        out["emg_no_signal_s"], out["emg_poor_signal_s"] = signal_loss_s(e, span)
        out["emg_used_s"] = {ch: float((sel & e.valid[:, c]).sum() / e.rate_hz) for c, ch in enumerate(e.channels)}
    if data.beats is not None:
        bt = data.beats
        sel = (bt.t_s >= span.start_s) & (bt.t_s < span.end_s)
        out["beats"] = int((sel & bt.recorded).sum())
        out["beats_hands_on"] = int((sel & bt.hands_on).sum())
        out["beats_removed"] = int((sel & ~np.isfinite(bt.rr_ms)).sum())
        out["beats_inserted"] = int((sel & ~bt.recorded).sum())
        out["beats_corrected"] = int((sel & bt.recorded & (bt.flags != 0) & np.isfinite(bt.rr_ms)).sum())
        out["beats_corrected_live"] = int((sel & (bt.live_flags != 0)).sum())
        out["beats_used"] = int((sel & bt.valid).sum())
    gaps = [g for g in data.gaps if g.end_s > span.start_s and g.start_s < span.end_s]
    out["recorded_gaps"] = len(gaps)
    out["recorded_gap_s"] = float(sum(min(g.end_s, span.end_s) - max(g.start_s, span.start_s) for g in gaps))
    return out


def neurokit_hrv(data: SessionData, span: PhaseSpan) -> dict:
    """HRV over the longest gap-free run of clean beats in a phase: neurokit2's time domain, and the frequency
    domain twice, ours (``dsp.frequency_hrv``) and neurokit2's, each with its settings, LF and HF in ms²."""
    import warnings

    import neurokit2 as nk

    b = data.beats
    if b is None:
        return {"note": "no heartbeats recorded"}
    t, rr, _ = b.in_span(span)
    if t.size < 3:
        return {"note": f"too few clean beats ({t.size})"}
    runs = np.split(np.arange(t.size), np.flatnonzero(~contiguous_with_previous(t, rr)[1:]) + 1)
    run = max(runs, key=lambda r: rr[r].sum())
    seconds = float(rr[run].sum() / 1000.0)
    out: dict = {"seconds": seconds, "beats": int(run.size), "values": {}, "units": NK_COLUMNS, "frequency": {},
                 "notes": []}
    if seconds < NK_TIME_MIN_S:
        out["note"] = f"only {seconds:.0f} s of uninterrupted clean beats; neurokit2 HRV needs ≥ {NK_TIME_MIN_S:.0f} s"
        return out
    peaks = np.round(np.concatenate(([0.0], np.cumsum(rr[run][1:])))).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        part = nk.hrv_time(peaks, sampling_rate=1000)
        out["values"] = {col: float(part[col].iloc[0]) for col in NK_COLUMNS if col in part.columns}
        if peaks[-1] / 1000.0 < NK_FREQUENCY_MIN_S:
            out["notes"].append(f"frequency-domain HRV needs ≥ {NK_FREQUENCY_MIN_S / 60:.0f} minutes of clean beats; "
                                f"this phase has {seconds:.0f} s")
            return out
        ours = frequency_hrv(rr[run])
        theirs = nk.hrv_frequency(peaks, sampling_rate=1000, **NK_FREQUENCY)
    out["frequency"] = {
        "biofeedback": {"lf_ms2": ours.lf_ms2, "hf_ms2": ours.hf_ms2, "lf_nu": ours.lf_nu, "hf_nu": ours.hf_nu,
                        "lf_hf": ours.lf_hf, "settings": f"biofeedback: {FREQUENCY_DEFAULTS.describe()}"},
        "neurokit2": {"lf_ms2": float(theirs["HRV_LF"].iloc[0]), "hf_ms2": float(theirs["HRV_HF"].iloc[0]),
                      "lf_nu": 100.0 * float(theirs["HRV_LFn"].iloc[0]), "hf_nu": 100.0 * float(theirs["HRV_HFn"].iloc[0]),
                      "lf_hf": float(theirs["HRV_LFHF"].iloc[0]), "settings": NK_FREQUENCY_SETTINGS},
    }
    if seconds < 300:
        out["notes"].append("LF power from under 5 minutes is unreliable (Task Force 1996); read it with caution")
    return out


def _overall(metrics: list[MetricChange], phases: tuple[str, str], have_b: bool) -> dict:
    primary = next((m for m in metrics if m.key == PRIMARY), None)
    heart = [m for m in metrics if m.group == "heart" and m.verdict in ("fell", "rose")]
    sides = [m for m in metrics if m.key.endswith(".rms_uv") and m.verdict in ("fell", "rose")]
    if not have_b:
        return {"label": Verdict.NOT_COMPARABLE, "text": f"No {phases[1]} phase: nothing to compare the {phases[0]} with."}
    if primary is None or primary.verdict == "not available":
        why = primary.sentence if primary else "no EMG in this recording"
        label, text = Verdict.NOT_COMPARABLE, f"Trapezius tension cannot be compared ({why})."
    elif primary.verdict == "fell":
        label, text = Verdict.RELEASED, f"Released: {primary.sentence}."
    elif primary.verdict == "rose":
        label, text = Verdict.TENSION_ROSE, f"Tension rose: {primary.sentence}."
    else:
        label, text = Verdict.NO_CLEAR_CHANGE, f"No clear change in trapezius tension: {primary.sentence}."
    if sides:
        text += " " + "; ".join(m.sentence for m in sides) + "."
    if heart:
        text += " Heart: " + "; ".join(m.sentence for m in heart) + "."
    elif any(m.group == "heart" and m.verdict == "no clear change" for m in metrics):
        text += " Heart rate and HRV: no clear change."
    return {"label": label, "text": text}


def compare(data: SessionData, phase_a: str | None = None, phase_b: str | None = None, n_boot: int = N_BOOT,
            seed: int = 0, progress: Progress | None = None, with_neurokit: bool = True) -> Comparison:
    """Compare two phases of a loaded session (default: baseline rest vs post-treatment rest)."""
    if (phase_a is None) != (phase_b is None):
        raise AnalysisError("give both phases to compare (e.g. --compare baseline post), or neither", Reason.BAD_ARGUMENT)
    default_a, default_b = default_phases(data)
    name_a, name_b = (phase_a, phase_b) if phase_a is not None else (default_a, default_b)
    known = ", ".join(p.name for p in data.phases) or "none"
    for name in (phase_a, phase_b):
        if name is not None and data.phase(name) is None:
            raise AnalysisError(f"no phase {name!r} in {data.path.name}; its phases are: {known}", Reason.BAD_ARGUMENT)
    notes = list(data.problems)
    a = data.phase(name_a) if name_a else None
    b = data.phase(name_b) if name_b else None
    if a is None:
        notes.append(f"no resting phase to use as a baseline (phases: {known})")
    elif b is None:
        notes.append(f"no post-treatment rest phase after {a.name!r}: only {a.name} levels are shown (phases: {known})")
    phases = (a.name if a else "baseline", b.name if b else "post")
    rng = np.random.default_rng(seed)
    metrics: list[MetricChange] = []
    unit = "uV"
    processing: dict = {}
    if data.emg is not None:
        processing, emg_notes = _emg_processing(data.emg)
        notes += emg_notes
    if a is not None and data.emg is not None:
        if progress:
            progress(f"EMG statistics ({n_boot} block-bootstrap resamples)")
        emg, unit = _emg_metrics(data, a, b, rng, n_boot, phases)
        metrics += emg
    if a is not None and data.beats is not None:
        if progress:
            progress(f"heart statistics ({n_boot} block-bootstrap resamples)")
        metrics += _heart_metrics(data, a, b, rng, n_boot, phases)
    for m in metrics:
        if m.verdict == "not available" and m.sentence and not m.sentence.startswith(m.label):
            m.sentence = f"{m.label}: {m.sentence}"
    spans = [p for p in (a, b) if p is not None]
    nk: dict = {}
    if with_neurokit:
        if progress and spans:
            progress("neurokit2 HRV per phase")
        nk = {p.name: neurokit_hrv(data, p) for p in spans}
    meta = data.meta
    return Comparison(
        session=str(data.path), client_id=meta.get("client_id"), started_utc=meta.get("utc_anchor"), phase_a=a, phase_b=b,
        tension_unit=unit, metrics=metrics, overall=_overall(metrics, phases, b is not None and a is not None), notes=notes,
        exclusions={p.name: _exclusions(data, p) for p in spans}, neurokit=nk, n_boot=n_boot, emg_processing=processing,
        sensors=data.sensors,
    )
