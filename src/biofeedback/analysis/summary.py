"""A simple before/after summary of a recording: mean EMG RMS per side, HR and RMSSD per phase.

Everything is read from the loaded session (``analysis.data.SessionData``), which holds the one set of
exclusion rules: EMG RMS is the mean of the 250 ms moving RMS over the valid samples of the phase's
windows (hands-on intervals, recorded gaps, contact loss and samples the processor flags left out),
the same number the comparison reports as the phase's level. Where a side has less clean EMG than the
comparison needs for a level (``data.enough_clean``), the row gives no number but a ``note`` saying so. Stretches
without a muscle signal (electrode off, lost contact, a flat line or one at the rail: ``signal_loss_s``) read "no
signal" with their seconds, never a tension of 0; stretches left out for a poor signal over a muscle's (mains hum,
motion, the chain settling after a gap) are named apart as "poor signal", since the muscle was there.
HR and RMSSD use the valid corrected RR of the phase, successive differences only between adjacent
beats. The full statistics are ``analysis.compare``'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from biofeedback.analysis.data import BAD_HANDS_ON, Annotation, Annotations, BeatTrack, EmgTrack, PhaseSpan, \
    SessionData, enough_clean, load_session, signal_loss_s, too_little
from biofeedback.dsp import mean_hr_bpm
from biofeedback.vocab import EventKind, Verdict

MIN_SUMMARY_BEATS = 3
"""Least valid beats in a phase for its HR and RMSSD in the summary."""


def _side(channel: str) -> str:
    return channel.split("_")[0]


def summarize(data: SessionData | str | Path) -> list[dict]:
    """Per phase: phase, start_s, duration_s, emg_rms_uv {channel: µV} (channels with enough clean EMG),
    emg_clean_s {channel: s}, emg_no_signal_s and emg_poor_signal_s {channel: s} (``signal_loss_s``), note (why EMG
    is missing, or None), hr_bpm, rmssd_ms, beats."""
    if not isinstance(data, SessionData):
        data = load_session(data)
    rows = []
    for ph in data.phases:
        row = {"phase": ph.name, "start_s": ph.start_s, "duration_s": ph.duration_s, "emg_rms_uv": {}, "emg_clean_s": {},
               "note": None, "hr_bpm": None, "rmssd_ms": None, "beats": 0}
        if data.emg is not None:
            row["emg_no_signal_s"], row["emg_poor_signal_s"] = signal_loss_s(data.emg, ph)
            short = []
            for c, ch in enumerate(data.emg.channels):
                w = data.emg.channel_windows(ph, c)
                row["emg_clean_s"][ch] = w.clean_s
                if enough_clean(w.clean_s, w.n):
                    row["emg_rms_uv"][ch] = float(np.nanmean(w.values))
                else:
                    short.append(f"{_side(ch)} {w.clean_s:.0f} s")
            if short:
                row["note"] = too_little(ph.name, ", ".join(short))
        if data.beats is not None:
            _, rr, d = data.beats.in_span(ph)
            row["beats"] = int(rr.size)
            if rr.size >= MIN_SUMMARY_BEATS and np.isfinite(d).any():
                row["hr_bpm"] = float(mean_hr_bpm(rr))
                row["rmssd_ms"] = float(np.sqrt(np.nanmean(d * d)))
        rows.append(row)
    return rows


NO_SIGNAL_SHOWN_S = 1.0
"""Least seconds without a usable signal (none, or a poor one) in a phase for the summary to say so."""


def _emg_side(row: dict, channel: str) -> str:
    """One side's level in a summary line: µV, '--' or 'no signal', with the seconds that had no signal and those
    that had a poor one."""
    lost = row.get("emg_no_signal_s", {}).get(channel, 0.0)
    poor = row.get("emg_poor_signal_s", {}).get(channel, 0.0)
    none = f"no signal {lost:.0f} s" if lost >= NO_SIGNAL_SHOWN_S else ""
    bad = f"poor signal {poor:.0f} s" if poor >= NO_SIGNAL_SHOWN_S else ""
    if channel not in row["emg_rms_uv"]:
        level, said = (none, [bad]) if none else ("--", [bad])
    else:
        level, said = f"{row['emg_rms_uv'][channel]:.1f}", [none, bad]
    said = "; ".join(x for x in said if x)
    return f"{_side(channel)} {level}" + (f" ({said})" if said else "")


def format_summary(rows: list[dict]) -> str:
    lines = []
    for row in rows:
        emg = ", ".join(_emg_side(row, c) for c in row["emg_clean_s"]) or "--"
        if row["note"]:
            emg += f" [{row['note']}]"
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
    compared: bool = True
    """The comparison ran (False: the recording cannot be compared at all, e.g. it has no phases)."""
    losses: tuple[str, ...] = ()
    """Data the recording lost: values the writer could not store, parts of the file found damaged."""

    def text(self) -> str:
        """The summary lines, what the recording lost, and the verdict, as the terminal prints them at the end of a
        session; the report command to run whenever there is a comparison to report."""
        return (f"{format_summary(self.summary)}" + "".join(f"\nlost: {loss}" for loss in self.losses)
                + f"\nverdict: {self.verdict_text}"
                + (f"\nfull report: biofeedback report {self.path} --html" if self.compared else ""))


class LiveTally:
    """What the live processor worked out while a session ran, kept for a summary the moment the session ends.

    The runner hands on, as they come, the rows of the live processor's tension trace (tension index per channel at
    the trace rate, and 1.0 where the block was clean, else 0.0), its decided beats' corrected HR (NaN where a beat
    was removed or at a gap), and the phase machine's phase and hands-on events. ``summary()`` puts them through
    ``summarize``'s own rules (windows, least clean data, hands-on excluded, successive differences only between
    adjacent beats), so its rows have the same shape and meaning, from the live chain's values: the live EMG
    processor runs on through a gap where the offline one restarts, and the live RR correction looks five beats
    ahead where the offline one sees the whole stretch, so the numbers differ a little from the recording's
    analysis, which follows (``session_outcome``). Cost: 17 bytes per trace row (about 1.2 MB per session-hour at
    20 Hz) and 16 per beat; the summary takes well under a second for a 4-hour session (``tools/bench_long.py``).
    """

    def __init__(self) -> None:
        self._tension: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._hr: list[tuple[np.ndarray, np.ndarray]] = []
        self.phases: list[PhaseSpan] = []
        self.hands_on: list[tuple[float, float]] = []

    def add_tension(self, t_s: np.ndarray, rows: np.ndarray) -> None:
        """Rows of the tension trace: tension per channel, then the clean flag (1.0 clean)."""
        if len(t_s):
            rows = np.asarray(rows, dtype=float)
            self._tension.append((np.asarray(t_s, dtype=float), rows[:, :-1].astype(np.float32), rows[:, -1] == 1.0))

    def add_hr(self, t_s: np.ndarray, hr_bpm: np.ndarray) -> None:
        """Decided beats' times and corrected HR (bpm; NaN: removed, or a gap)."""
        if len(t_s):
            self._hr.append((np.asarray(t_s, dtype=float), np.asarray(hr_bpm, dtype=float)))

    def add_event(self, kind: str, t_s: float, label: str, duration_s: float, data: dict | None) -> None:
        """A session event: phases (with their duration, when they end) and hands-on intervals are kept."""
        if kind == EventKind.PHASE:
            self.phases.append(PhaseSpan(label, (data or {}).get("kind", "rest"), t_s, t_s + duration_s))
        elif kind == EventKind.HANDS_ON:
            self.hands_on.append((t_s, t_s + duration_s))

    def summary(self, channels: tuple[str, ...], trace_rate_hz: float, reference_uv: np.ndarray | None,
                path: Path | None = None) -> list[dict]:
        """``summarize``'s rows of the live values; the tension index is turned back into µV of RMS with the
        calibration's ``reference_uv`` (per channel; None: the index is in µV)."""
        annotations = Annotations(tuple(Annotation(a, b - a, BAD_HANDS_ON) for a, b in sorted(self.hands_on)))
        emg = beats = None
        if self._tension and channels:
            t = np.concatenate([x[0] for x in self._tension])
            tension = np.concatenate([x[1] for x in self._tension]).astype(float)
            clean = np.concatenate([x[2] for x in self._tension])
            rms = tension if reference_uv is None else tension * np.asarray(reference_uv, dtype=float) / 100.0
            bad = ~clean[:, None] | ~np.isfinite(rms)
            emg = EmgTrack(tuple(channels), trace_rate_hz, t, rms, bad, annotations)
        if self._hr:
            t = np.concatenate([x[0] for x in self._hr])
            with np.errstate(divide="ignore", invalid="ignore"):
                rr = 60000.0 / np.concatenate([x[1] for x in self._hr])
            zeros = np.zeros(t.size, dtype=np.uint8)
            beats = BeatTrack(t, rr, rr, zeros, annotations, rr, zeros)
        data = SessionData(path or Path(), {}, 0.0, sorted(self.phases, key=lambda p: p.start_s), [], annotations, [],
                           emg, beats, None)
        return summarize(data)


def session_outcome(path) -> SessionOutcome:
    """Summary and verdict of the recording at ``path``, both from one loaded session."""
    from biofeedback.analysis.compare import AnalysisError, compare

    data = load_session(path)
    rows = summarize(data)
    losses = tuple(data.losses)
    try:
        overall = compare(data, with_neurokit=False).overall  # no neurokit2 cross-check here: 2.4 s to import
        verdict, text = Verdict(overall["label"]), overall["text"]
    except AnalysisError as exc:
        return SessionOutcome(Path(path), rows, Verdict.NOT_COMPARABLE, f"not available ({exc})", False, losses)
    return SessionOutcome(Path(path), rows, verdict, text, True, losses)
