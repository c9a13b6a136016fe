"""biofeedback.analysis: after the session — before/after comparison, statistics, trends, diary, reports.

==============================  ==============================================================
name                            what
==============================  ==============================================================
``load_session``                ``SessionData``: phases, markers, hands-on, gaps, processed EMG
                                (250 ms RMS at 20 Hz with exclusions), corrected beats
``compare``                     ``Comparison`` of two phases (default baseline vs post rest):
                                per-metric ``MetricChange`` with levels, change, 95 % CI,
                                SDC, effect size, verdict sentence; overall verdict; notes on
                                what could not be compared; exclusions; neurokit2 HRV
``default_phases``              the baseline and post-treatment rest phases of a session
``block_length``                moving-block length from the autocorrelation
``moving_block_indices``        moving-block bootstrap resample indices
``smallest_detectable_change``  SDC95 = 1.96·√2·SEM (Weir 2005)
==============================  ==============================================================

Statistics: ``biofeedback.analysis.stats`` and ``biofeedback.analysis.compare`` (module docstrings).
"""

from biofeedback.analysis.compare import (
    PRIMARY,
    AnalysisError,
    Comparison,
    MetricChange,
    compare,
    default_phases,
    neurokit_hrv,
)
from biofeedback.analysis.data import PhaseSpan, SessionData, load_session
from biofeedback.analysis.stats import block_length, moving_block_indices, smallest_detectable_change

__all__ = [
    "PRIMARY",
    "AnalysisError",
    "Comparison",
    "MetricChange",
    "PhaseSpan",
    "SessionData",
    "block_length",
    "compare",
    "default_phases",
    "load_session",
    "moving_block_indices",
    "neurokit_hrv",
    "smallest_detectable_change",
]
