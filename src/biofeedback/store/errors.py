"""The one error type of the session store."""

from __future__ import annotations

from biofeedback.errors import BiofeedbackError, Reason


class StoreError(BiofeedbackError):
    """A session file cannot be created, read or exported; the message says what to do next.

    The message is always one line, fit to show a user as is.
    """

    default_reason = Reason.BAD_FILE
