"""The one error type of the session store."""

from __future__ import annotations


class StoreError(Exception):
    """A session file cannot be created, read or exported; the message says what to do next.

    The message is always one line, fit to show a user as is.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
