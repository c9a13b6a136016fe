"""biofeedback.dsp: streaming signal processing for EMG and heart data (numpy/scipy; no I/O, no Qt).

Live and offline use the same code: feed blocks of any size, or a whole recording at once, and get the
same answers to floating-point precision.

EMG (``biofeedback.dsp.emg``)

==============================  ===============================================  ================
name                            returns                                          unit
==============================  ===============================================  ================
``EmgProcessor.process``        ``EmgOutput``: filtered, moving RMS, envelope,   µV; flag bits
                                quality flags, each (n, channels)
``EmgProcessor.rms_delay_ms``   delay of the moving RMS                          ms
``EmgProcessor.envelope_delay_ms``  delay of the low-latency envelope            ms
``TensionIndex.__call__``       tension index per channel (``.unit``)            %RVC, %MVC, %rest or µV
``percent_of_reference``        amplitude relative to rest / RVC / MVC           %
``median_frequency``            median frequency of the spectrum                 Hz
``mean_power_frequency``        mean power frequency                             Hz
``apdf_levels``                 APDF levels (default 10/50/90 %)                 unit of input
``emg_gaps``                    ``EmgGaps``: count, per minute, total, fraction  -, 1/min, s, 0-1
``symmetry_index``              left/right symmetry                              %
==============================  ===============================================  ================
"""

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
    symmetry_index,
)

__all__ = [
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
    "symmetry_index",
]
