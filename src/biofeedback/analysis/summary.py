"""A simple before/after summary of a recording: mean EMG RMS per side, HR and RMSSD per resting phase.

EMG RMS is the mean of ``dsp.EmgProcessor``'s 250 ms moving RMS over the phase, leaving out hands-on
intervals, recorded gaps and samples the processor flags (warm-up, electrode off, ...). HR and RMSSD
use the corrected RR of the beats in the phase. The full statistics are the analysis package's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from biofeedback.dsp import EmgProcessor, mean_hr_bpm, rmssd
from biofeedback.store import SessionReader, StoreError
from biofeedback.stream import StreamKind
from biofeedback.vocab import EventKind, Verdict


def _outside(t: np.ndarray, intervals: list[tuple[float, float]]) -> np.ndarray:
    keep = np.ones(t.size, dtype=bool)
    for a, b in intervals:
        keep &= ~((t >= a) & (t < b))
    return keep


def summarize(path) -> list[dict]:
    """Per phase: name, start_s, duration_s, emg_rms_uv {channel: µV}, hr_bpm, rmssd_ms, beats."""
    with SessionReader(path) as r:
        phases = r.phases()
        excluded = [(e["t_s"], e["t_s"] + e["duration_s"]) for e in r.events(EventKind.HANDS_ON)]
        excluded += [(g.start_s, g.end_s) for g in r.gaps()]
        emg = None
        try:
            t, x = r.samples(StreamKind.EMG)
            channels, rate = r.channels(StreamKind.EMG), r.rate_hz(StreamKind.EMG)
            out = EmgProcessor(rate, channels=x.shape[1]).process(x)
            emg = (t, out.rms_uv, out.bad.any(axis=1), channels)
        except StoreError:
            pass
        beats = r.beats()
    rows = []
    for ph in phases:
        a, b = ph["t_s"], ph["t_s"] + ph["duration_s"]
        row = {"phase": ph["label"], "start_s": a, "duration_s": ph["duration_s"], "emg_rms_uv": {}, "hr_bpm": None,
               "rmssd_ms": None, "beats": 0}
        if emg is not None:
            t, rms, bad, channels = emg
            sel = (t >= a) & (t < b) & ~bad & _outside(t, excluded)
            if sel.any():
                row["emg_rms_uv"] = {c: float(v) for c, v in zip(channels, rms[sel].mean(axis=0))}
        bt = beats["t_s"]
        sel = (bt >= a) & (bt < b)
        rr = beats["rr_corrected_ms"][sel]
        rr = rr[np.isfinite(rr)]
        row["beats"] = int(rr.size)
        if rr.size >= 3:
            row["hr_bpm"], row["rmssd_ms"] = float(mean_hr_bpm(rr)), float(rmssd(rr))
        rows.append(row)
    return rows


def format_summary(rows: list[dict]) -> str:
    lines = []
    for row in rows:
        emg = ", ".join(f"{c.split('_')[0]} {v:.1f}" for c, v in row["emg_rms_uv"].items()) or "--"
        hr = "--" if row["hr_bpm"] is None else f"{row['hr_bpm']:.0f} bpm"
        rm = "--" if row["rmssd_ms"] is None else f"{row['rmssd_ms']:.1f} ms"
        lines.append(f"  {row['phase']:<12} {row['start_s']:7.1f} s +{row['duration_s']:6.1f} s  EMG RMS µV {emg}  "
                     f"HR {hr}  RMSSD {rm}")
    return "\n".join(lines)


@dataclass(frozen=True)
class SessionOutcome:
    """What the end of a session shows: its recording, the per-phase summary and the before/after verdict."""

    path: Path
    summary: list[dict]
    verdict: Verdict
    verdict_text: str
    """The verdict in plain words, or why there is none."""

    def text(self) -> str:
        """The summary lines and the verdict, as the terminal prints them at the end of a session."""
        return (f"{format_summary(self.summary)}\nverdict: {self.verdict_text}"
                + (f"\nfull report: biofeedback report {self.path} --html" if self.verdict != Verdict.NOT_COMPARABLE else ""))


def session_outcome(path) -> SessionOutcome:
    """Summary and verdict of the recording at ``path``, computed once for whichever front end asked."""
    from biofeedback.analysis.compare import AnalysisError, compare
    from biofeedback.analysis.data import load_session

    rows = summarize(path)
    try:
        overall = compare(load_session(path)).overall
        verdict, text = Verdict(overall["label"]), overall["text"]
    except AnalysisError as exc:
        verdict, text = Verdict.NOT_COMPARABLE, f"not available ({exc})"
    return SessionOutcome(Path(path), rows, verdict, text)
