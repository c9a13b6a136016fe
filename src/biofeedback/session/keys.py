"""Keys from the terminal, each stamped with the session time of the key press (not of its handling).

Where the terminal gives single keys (``termios``: Linux, macOS) a key acts as it is pressed. Without ``termios``
(Windows) keys come as whole lines from stdin: a letter, then Enter; the time stamp is then that of the Enter.
"""

from __future__ import annotations

import asyncio
import os
import select
import sys
import threading
from dataclasses import dataclass

from biofeedback.stream import SessionClock

POLL_S = 0.1
LINE_KEYS_HINT = "keys: this terminal reads whole lines: type a letter, then Enter (n, then the note)"


@dataclass(frozen=True)
class Key:
    t_s: float
    """Session time of the key press."""
    key: str
    """One character; "\\n" for Enter."""
    text: str = ""
    """For ``n`` (note): the line typed after it."""


class KeyReader:
    """Reads single keys from a terminal in cbreak mode on a thread; ``n`` then reads a note line.

    Without ``termios`` it reads whole lines instead (says so once, on entering): a line's first letter is the key,
    an empty line is Enter, and ``n`` takes the rest of its line, or else the next line, as the note.
    """

    def __init__(self, clock: SessionClock, loop: asyncio.AbstractEventLoop) -> None:
        self.clock = clock
        self.queue: asyncio.Queue[Key] = asyncio.Queue()
        self._loop = loop
        try:
            import termios
            import tty
        except ImportError:
            self._termios = self._tty = None
        else:
            self._termios, self._tty = termios, tty
            self._fd = sys.stdin.fileno()
            self._saved = termios.tcgetattr(self._fd)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="keys", daemon=True)

    @property
    def single_keys(self) -> bool:
        """Whether keys act as pressed (a terminal in cbreak mode), not as lines ended by Enter."""
        return self._termios is not None

    def __enter__(self) -> KeyReader:
        if self.single_keys:
            self._tty.setcbreak(self._fd)
        else:
            print(LINE_KEYS_HINT, flush=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.single_keys:
            self._thread.join(1.0)
            self._termios.tcsetattr(self._fd, self._termios.TCSADRAIN, self._saved)
        # A line reader stays blocked in readline until the next line or the end of input; it is a daemon thread.

    def _run(self) -> None:
        next_key = self._pressed_key if self.single_keys else self._line_key
        while (key := next_key()) is not None:
            self._loop.call_soon_threadsafe(self.queue.put_nowait, key)

    def _read(self) -> str | None:
        while not self._stop.is_set():
            if select.select([self._fd], [], [], POLL_S)[0]:
                return os.read(self._fd, 1).decode(errors="replace")
        return None

    def _pressed_key(self) -> Key | None:
        if (ch := self._read()) is None:
            return None
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
        return Key(t, "\n" if ch == "\r" else ch, text)

    def _line_key(self) -> Key | None:
        line = sys.stdin.readline()
        if not line or self._stop.is_set():
            return None
        t = self.clock.now_s()
        line = line.rstrip("\r\n")
        ch = line[:1] or "\n"
        if ch != "n":
            return Key(t, ch)
        if not (text := line[1:].strip()):
            sys.stdout.write("note: ")
            sys.stdout.flush()
            text = sys.stdin.readline().rstrip("\r\n")
        return Key(t, ch, text)
