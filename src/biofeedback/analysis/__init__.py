"""biofeedback.analysis: after the session — before/after comparison, statistics, trends, diary, reports.

==============================  ==============================================================
name                            what
==============================  ==============================================================
``load_session``                ``SessionData``, the one loaded-session container every reader of a
                                recording uses: phases, markers, recorded gaps, processed EMG (250 ms
                                RMS at 20 Hz, ``emg.valid``), corrected beats (``beats.valid``) and
                                ``annotations`` (``BAD_hands_on``, ``BAD_ACQ_SKIP``, ``BAD_contact``)
``enough_clean``                the one least-clean-data rule (``MIN_CLEAN_S``) for a phase's level,
                                asked by the summary and the comparison alike
``summarize``                   per-phase summary rows from a ``SessionData`` (``analysis.summary``)
``session_outcome``             summary and verdict of a recording from one load
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
Exclusion rules live in one place, ``biofeedback.analysis.data`` (module docstring).
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
from biofeedback.analysis.data import (
    BAD_ACQ_SKIP,
    BAD_CONTACT,
    BAD_HANDS_ON,
    MIN_CLEAN_S,
    Annotation,
    Annotations,
    PhaseSpan,
    SessionData,
    enough_clean,
    load_session,
)
from biofeedback.analysis.stats import block_length, moving_block_indices, smallest_detectable_change
from biofeedback.analysis.summary import SessionOutcome, format_summary, session_outcome, summarize

__all__ = [
    "BAD_ACQ_SKIP",
    "BAD_CONTACT",
    "BAD_HANDS_ON",
    "MIN_CLEAN_S",
    "PRIMARY",
    "AnalysisError",
    "Annotation",
    "Annotations",
    "Comparison",
    "MetricChange",
    "PhaseSpan",
    "SessionData",
    "SessionOutcome",
    "block_length",
    "compare",
    "default_phases",
    "enough_clean",
    "format_summary",
    "load_session",
    "moving_block_indices",
    "neurokit_hrv",
    "session_outcome",
    "smallest_detectable_change",
    "summarize",
]
