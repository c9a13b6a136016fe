"""Closed vocabularies of the program, as string-valued enums (stored as their strings, so files keep reading).

Event kinds are what a session file's ``events`` table holds in its ``kind`` column; source states are what
a ``Source`` reports of its link; worker states are what a front end shows while a session runs.
"""

from __future__ import annotations

from enum import StrEnum


class EventKind(StrEnum):
    """Kinds of session events (``SessionWriter.add_event``)."""

    PHASE_START = "phase-start"
    """Written when a phase starts, so a session killed mid-phase still knows its phase."""
    PHASE = "phase"
    """A phase that ended: start and duration."""
    HANDS_ON = "hands-on"
    """An interval with the therapist's hands on the client (excluded from statistics)."""
    MARKER = "marker"
    NOTE = "note"
    CALIBRATION = "calibration"
    FEEDBACK_PAUSED = "feedback-paused"
    """Home relaxation: an interval when the feedback tone was paused (label: the reason)."""
    RECORDING_PROBLEM = "recording-problem"
    """Data the writer refused or could not store (label: what and why), at the time of the data around it."""


class SourceState(StrEnum):
    """The state of one source's link (``SourceStatus.state``)."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    PLAYING = "playing"
    """A replay is playing (no sensor is there)."""
    ENDED = "ended"
    """A replay reached the end of its file."""
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def fine(self) -> bool:
        """True when the link is as it should be (a user needs no action)."""
        return self in (SourceState.CONNECTED, SourceState.PLAYING, SourceState.ENDED)


class WorkerState(StrEnum):
    """Where a running session is, as a front end shows it."""

    STARTING = "starting"
    SCANNING = "scanning"
    FOUND = "found"
    CONNECTING = "connecting"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Verdict(StrEnum):
    """The before/after verdict of a session (``analysis.compare``'s overall label)."""

    RELEASED = "released"
    TENSION_ROSE = "tension rose"
    NO_CLEAR_CHANGE = "no clear change"
    NOT_COMPARABLE = "not comparable"
