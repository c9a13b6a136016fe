"""One error base for every error of ours, with a machine-readable reason where a caller could act on it.

Modelled on bleak's ``bleak/exc.py``: ``BiofeedbackError`` is the one type the ``biofeedback`` command
catches; its message is one line that says what to do next. ``reason`` (a ``Reason``) lets a program
act without parsing the words (retry a scan, offer the virtual sensors, pick another file).
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why an operation failed, for callers that act on it."""

    UNSPECIFIED = "unspecified"
    BAD_ARGUMENT = "bad-argument"
    """A command-line argument or setting is wrong: the message says what to type instead."""
    BAD_PROFILE = "bad-profile"
    """A device profile (``devices/*.toml``) is malformed."""
    BAD_PROTOCOL = "bad-protocol"
    """A session or calibration protocol TOML is malformed."""
    NO_SENSOR = "no-sensor"
    """No usable sensor was found or every sensor failed."""
    SENSOR_FAILED = "sensor-failed"
    BAD_FILE = "bad-file"
    """A session file (or another input file) is missing, damaged or of the wrong kind."""
    NOT_ENOUGH_DATA = "not-enough-data"
    """A recording holds too little clean data for the question asked."""
    STOPPED = "stopped"
    """The user stopped (screening said no, a window closed before anything was recorded)."""


class BiofeedbackError(Exception):
    """Base of every error of ours. The message is one line fit to show a user as is."""

    default_reason: Reason = Reason.UNSPECIFIED

    def __init__(self, message: str = "", reason: Reason | None = None) -> None:
        super().__init__(" ".join(str(message).split()))
        self.reason = reason or self.default_reason


class UsageError(BiofeedbackError):
    """A wrong argument or setting; the message says what to type instead."""

    default_reason = Reason.BAD_ARGUMENT
