"""Statistics for autocorrelated physiological series: moving-block bootstrap, block length, SDC, effect size.

Windowed EMG values and successive heartbeats are autocorrelated, so resampling single values would
make confidence intervals too narrow. The moving-block bootstrap (Künsch 1989) resamples runs of
``block`` consecutive units, which keeps the dependence within a block. The block length is chosen
from the data: the larger of n^(1/3) and the first lag at which the autocorrelation falls inside its
±2/√n noise band (capped at n/3).

The smallest detectable change (SDC95 = 1.96·√2·SEM, Weir 2005) treats each 30-s segment of a
resting phase as one repeated measurement of the resting level: SEM is the pooled within-phase SD of
the segment levels, so a change below the SDC is no larger than what two 30-s measurements of the
same rest would differ by.
"""

from __future__ import annotations

import numpy as np

Z95 = 1.959963984540054
"""Standard normal quantile for two-sided 95 %."""
CI_LEVEL = 0.95
N_BOOT = 1000
"""Bootstrap resamples per comparison."""


def block_length(x: np.ndarray) -> int:
    """Moving-block length for series ``x`` (units): max(n^(1/3), first lag with |ACF| < 2/√n), at most n/3."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    n = x.size
    if n < 4:
        return 1
    base = int(np.ceil(n ** (1.0 / 3.0)))
    d = x - x.mean()
    var = float(np.dot(d, d))
    lag = 1
    if var > 0:
        limit = 2.0 / np.sqrt(n)
        while lag < n // 3 and abs(float(np.dot(d[:-lag], d[lag:])) / var) >= limit:
            lag += 1
    return int(max(1, min(max(base, lag), n // 3)))


def moving_block_indices(n: int, block: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) indices of moving-block bootstrap resamples of a series of length ``n``."""
    block = max(1, min(block, n))
    k = -(-n // block)
    starts = rng.integers(0, n - block + 1, size=(n_boot, k))
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(n_boot, k * block)
    return idx[:, :n]


def percentile_ci(values: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """Percentile interval of bootstrap values (NaN resamples ignored)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(v, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def pooled_within(groups: list[np.ndarray]) -> tuple[float, int]:
    """Pooled standard deviation of values within groups (ddof=1 per group) and its degrees of freedom; NaN and 0
    if no group has two values."""
    ss, df = 0.0, 0
    for g in groups:
        g = np.asarray(g, dtype=float)
        g = g[np.isfinite(g)]
        if g.size >= 2:
            ss += float(np.sum((g - g.mean()) ** 2))
            df += g.size - 1
    return (float(np.sqrt(ss / df)), df) if df > 0 else (float("nan"), 0)


def smallest_detectable_change(sem: float, df: int | None = None) -> float:
    """SDC95 = q·√2·SEM (Weir 2005, J Strength Cond Res 19:231), same unit as ``sem``: q = 1.96, or, when the SEM is
    estimated with few degrees of freedom ``df``, Student's t quantile (0.975, df), as Weir's SEM-based intervals do
    for small samples (an SD from two or three segments per phase is often far too small by chance)."""
    if df is None:
        return Z95 * np.sqrt(2.0) * sem
    from scipy import stats

    return float(stats.t.ppf(0.975, df)) * np.sqrt(2.0) * sem if df > 0 else float("nan")
