"""biofeedback.dsp: streaming signal processing for EMG and heart data (numpy, scipy, numba kernels; no I/O, no Qt).

Live and offline use the same code: feed blocks of any size, or a whole recording at once, and get the
same answers to floating-point precision.

EMG (``biofeedback.dsp.emg``)

====================================  ==================================================  ======================
name                                  returns                                             unit
====================================  ==================================================  ======================
``EmgProcessor.process``              ``EmgOutput``: filtered, moving RMS, envelope,      µV; flag bits
                                      quality flags, each (n, channels)
``EmgProcessor.rms_delay_ms``         delay of the moving RMS                             ms
``EmgProcessor.envelope_delay_ms``    delay of the low-latency envelope                   ms
``TensionIndex.__call__``             tension index per channel (``.unit``)               %RVC, %MVC, %rest or µV
``percent_of_reference``              amplitude relative to rest / RVC / MVC              %
``median_frequency``                  median frequency of the spectrum                    Hz
``mean_power_frequency``              mean power frequency                                Hz
``apdf_levels``                       APDF levels (default 10/50/90 %)                    unit of input
``emg_gaps``                          ``EmgGaps``: count, per minute, total, fraction     -, 1/min, s, 0-1
``symmetry_index``                    left/right symmetry                                 %
``remove_cardiac_artefact``           ``CardiacRemoval``: raw EMG without the QRS         µV; ``CardiacMethod``
                                      (adaptive per-channel template; ``dsp.cardiac``)    per channel
``CardiacArtefactRemover.process``    the same, streaming, delayed by ``delay_ms``        µV; ms
====================================  ==================================================  ======================

Heart (``biofeedback.dsp.hrv``, ``biofeedback.dsp.ecg``)

====================================  ==================================================  ======================
name                                  returns                                             unit
====================================  ==================================================  ======================
``correct_rr``                        ``RrCorrection``: raw, corrected, NN series,        ms; ``RrFlag`` bits
                                      one flag per beat (Lipponen & Tarvainen 2019)
``LiveHrv.add_beats``                 ``BeatMetrics`` per decided beat: HR, mean HR,      bpm, ms, ln(ms),
                                      RMSSD, ln RMSSD, SDNN, √SI over 60 s (raw)          1/s
``rmssd`` / ``sdnn``                  RMSSD / SDNN (ddof=1)                               ms
``pnn50``                             successive differences > 50 ms                      %
``mean_hr_bpm``                       mean beat-to-beat heart rate                        bpm
``poincare_sd1_sd2``                  Poincaré SD1, SD2                                   ms
``frequency_hrv``                     ``FrequencyHrv``: VLF, LF, HF power; LF, HF in      ms², n.u., ratio
                                      n.u.; LF/HF; the ``FrequencySettings`` used
``lf_hf_ratio``                       LF/HF of ``frequency_hrv``                          ratio
``baevsky_stress_index``              ``BAEVSKY_SI``: AMo/(2·Mo·MxDMn)                    1/s²
``kubios_stress_index``               ``KUBIOS_SI``: √SI, Kubios HRV's "Stress index"     1/s
``pns_index`` / ``sns_index``         ``PNS`` / ``SNS``: this project's indices, mean     SD units
                                      z-score against 5-min norms (not Kubios's)
``hrv_windows``                       neurokit2 HRV per 5-min window                      DataFrame
``detect_r_peaks``                    R-peak sample indices (neurokit2, offline)          samples
``LiveRPeakDetector.process``         ``Beats``: R-peak times and RR (Pan-Tompkins)       s, ms
``beats_from_peaks``                  ``Beats`` from sample indices                       s, ms
====================================  ==================================================  ======================

``HEART_QUANTITIES`` holds the one name and unit of each stress and autonomic quantity (``BAEVSKY_SI``,
``KUBIOS_SI``, ``PNS``, ``SNS``); the dashboard, the reports and the exports take their labels from it.
"""

import time

from biofeedback.dsp.emg import (
    Calibration,
    EmgGaps,
    EmgOutput,
    EmgProcessor,
    QualityFlag,
    QualityThresholds,
    SpectrumUnavailableError,
    TensionIndex,
    apdf_levels,
    emg_gaps,
    mean_power_frequency,
    median_frequency,
    percent_of_reference,
    spectrum_unavailable_reason,
    symmetry_index,
)

from biofeedback.dsp.cardiac import CardiacArtefactRemover, CardiacMethod, CardiacRemoval, remove_cardiac_artefact
from biofeedback.dsp.ecg import Beats, LiveRPeakDetector, beats_from_peaks, detect_r_peaks
from biofeedback.dsp.hrv import (
    BAEVSKY_SI,
    FREQUENCY_DEFAULTS,
    HEART_QUANTITIES,
    KUBIOS_SI,
    PNS,
    SNS,
    BeatMetrics,
    FrequencyHrv,
    FrequencySettings,
    HeartQuantity,
    LiveHrv,
    RrCorrection,
    RrFlag,
    baevsky_stress_index,
    correct_rr,
    frequency_hrv,
    hrv_windows,
    kubios_stress_index,
    lf_hf_ratio,
    mean_hr_bpm,
    pnn50,
    pns_index,
    poincare_sd1_sd2,
    rmssd,
    sdnn,
    sns_index,
)



def load_kernels() -> float:
    """Compile the numba kernels, or load them from numba's cache, before any live data flows; returns the
    wall seconds it took.

    The first run after an install compiles for several seconds. Acquisition calls this before it scans, so
    that stall never falls inside a live session (where it would hold up the acquisition loop).
    """
    start = time.perf_counter()
    EmgProcessor(2000.0, channels=2)
    CardiacArtefactRemover(2000.0, channels=2)
    LiveHrv()
    LiveRPeakDetector(130.0)
    return time.perf_counter() - start


__all__ = [
    "load_kernels",
    "BAEVSKY_SI",
    "FREQUENCY_DEFAULTS",
    "HEART_QUANTITIES",
    "KUBIOS_SI",
    "PNS",
    "SNS",
    "BeatMetrics",
    "FrequencyHrv",
    "FrequencySettings",
    "HeartQuantity",
    "Beats",
    "LiveHrv",
    "LiveRPeakDetector",
    "RrCorrection",
    "RrFlag",
    "baevsky_stress_index",
    "beats_from_peaks",
    "correct_rr",
    "detect_r_peaks",
    "frequency_hrv",
    "hrv_windows",
    "kubios_stress_index",
    "lf_hf_ratio",
    "mean_hr_bpm",
    "pnn50",
    "pns_index",
    "poincare_sd1_sd2",
    "rmssd",
    "sdnn",
    "sns_index",
    "CardiacArtefactRemover",
    "CardiacMethod",
    "CardiacRemoval",
    "remove_cardiac_artefact",
    "Calibration",
    "EmgGaps",
    "EmgOutput",
    "EmgProcessor",
    "QualityFlag",
    "QualityThresholds",
    "SpectrumUnavailableError",
    "TensionIndex",
    "apdf_levels",
    "emg_gaps",
    "mean_power_frequency",
    "median_frequency",
    "percent_of_reference",
    "spectrum_unavailable_reason",
    "symmetry_index",
]
