"""Keys from the terminal, each stamped with the session time of the key press (not of its handling)."""

from __future__ import annotations

import asyncio
import os
import select
import sys
import termios
import threading
import tty
from dataclasses import dataclass

from biofeedback.stream import SessionClock

POLL_S = 0.1


@dataclass(frozen=True)
class Key:
    t_s: float
    """Session time of the key press."""
    key: str
    """One character; "\\n" for Enter."""
    text: str = ""
    """For ``n`` (note): the line typed after it."""


class KeyReader:
    """Reads single keys from a terminal in cbreak mode on a thread; ``n`` then reads a note line."""

    def __init__(self, clock: SessionClock, loop: asyncio.AbstractEventLoop) -> None:
        self.clock = clock
        self.queue: asyncio.Queue[Key] = asyncio.Queue()
        self._loop = loop
        self._fd = sys.stdin.fileno()
        self._saved = termios.tcgetattr(self._fd)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="keys", daemon=True)

    def __enter__(self) -> KeyReader:
        tty.setcbreak(self._fd)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(1.0)
        termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)

    def _read(self) -> str | None:
        while not self._stop.is_set():
            if select.select([self._fd], [], [], POLL_S)[0]:
                return os.read(self._fd, 1).decode(errors="replace")
        return None

    def _run(self) -> None:
        while (ch := self._read()) is not None:
            t = self.clock.now_s()
            text = ""
            if ch == "n":
                sys.stdout.write("note: ")
                sys.stdout.flush()
                while (c := self._read()) not in (None, "\n", "\r"):
                    text = text[:-1] if c in ("\x7f", "\b") else text + c
                    sys.stdout.write("\b \b" if c in ("\x7f", "\b") else c)
                    sys.stdout.flush()
                sys.stdout.write("\n")
            self._loop.call_soon_threadsafe(self.queue.put_nowait, Key(t, "\n" if ch == "\r" else ch, text))
