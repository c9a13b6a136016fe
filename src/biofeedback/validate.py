"""One validation vocabulary for everything we read: session files, TOML protocols, JSON files and arguments.

Modelled on MNE-Python's ``mne/utils/check.py`` (``_validate_type``, ``_check_option``): each check takes the value,
the name of the field (or argument) and its ``Origin`` (where it was read, and what the reader should do about a bad
value), and either returns the value in the type the caller wants or raises the origin's ``BiofeedbackError`` with one
line naming the file and the field::

    check_number(doc["duration_s"], "phases[0].duration_s", protocol_file(path), lo=0, hi=MAX_DURATION_S)
    -> SessionError: "protocols/x.toml: phases[0].duration_s must be a number of seconds from 0 to 86400, got nan;
       fix the file"

Numbers are always finite: NaN and infinity are refused wherever a number is read. Every range a value must lie in is
a named constant here, so a user (and a test) finds the limits in one place. Light on purpose (no numpy): the command
line parser uses it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from biofeedback.errors import BiofeedbackError, Reason, UsageError

SECONDS_PER_DAY = 86_400
SPEED_RANGE = (0.01, 1000.0)
"""``--speed``: how many times faster than real time virtual sensors (or a replay) run."""
SEED_RANGE = (0, 2 ** 32 - 1)
"""``--seed``: the random seeds numpy accepts."""
SHIFT_DAYS_RANGE = (-36_525, 36_525)
"""``--shift-days``: at most 100 years either way."""
MAX_DURATION_S = 24 * 3600.0
"""Longest phase, protocol step, relaxation or scan: one day (session seconds)."""
MAX_CALIBRATION_COUNT = 20
"""Most reference contractions (and tries) one calibration asks for."""
UTC_RANGE_S = (946_684_800.0, 4_102_444_800.0)
"""A recording's start (``utc_anchor``): 2000-01-01 to 2100-01-01, UTC seconds since the epoch."""
SESSION_TIME_RANGE_S = (-SECONDS_PER_DAY, 7 * SECONDS_PER_DAY)
"""Session seconds a stored time may hold (a block may start a little before the session's zero)."""
MAX_RATE_HZ = 100_000.0
"""Highest sample rate a stored stream may claim."""
EMG_RANGE_UV = (0.0, 100_000.0)
"""An EMG amplitude (RMS, µV) in a saved calibration or a scripted virtual sensor."""
HR_RANGE_BPM = (20.0, 250.0)
"""A heart rate a virtual sensor may be scripted to."""


@dataclass(frozen=True)
class Origin:
    """Where a value was read, the error to raise when it is wrong, and what the user should do then."""

    file: str | None
    """The file the value came from; None for a command-line argument."""
    error: type[BiofeedbackError]
    reason: Reason
    fix: str
    """What to do, e.g. "fix the file"; empty for arguments (the message says what to type)."""

    def fail(self, field: str, problem: str) -> BiofeedbackError:
        """The error for ``field`` (``problem`` says what is wrong), naming the file when there is one."""
        text = f"{field} {problem}" if self.file is None else f"{self.file}: {field} {problem}"
        return self.error(f"{text}; {self.fix}" if self.fix else text, self.reason)


ARGUMENT = Origin(None, UsageError, Reason.BAD_ARGUMENT, "")
"""A command-line argument or a setting given in code."""


def protocol_file(path: str | os.PathLike) -> Origin:
    """A session or calibration protocol TOML the user can edit."""
    from biofeedback.session.protocol import SessionError

    return Origin(str(path), SessionError, Reason.BAD_PROTOCOL, "fix the file")


def data_file(path: str | os.PathLike, fix: str) -> Origin:
    """A JSON file we wrote (a saved calibration, the headache diary); ``fix`` says how to recover."""
    from biofeedback.store.errors import StoreError

    return Origin(str(path), StoreError, Reason.BAD_FILE, fix)


def session_file(path: str | os.PathLike) -> Origin:
    """A recorded session file: it is never changed, only read around what is damaged."""
    from biofeedback.store.errors import StoreError

    return Origin(str(path), StoreError, Reason.BAD_FILE,
                  "the file was left unchanged — restore it from a backup, or list the sessions with "
                  "`biofeedback sessions`")


_TYPE_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text", list: "a list",
               dict: "a table", tuple: "a list"}


def shown(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, to quote a bad value in a message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _range_text(lo: float | None, hi: float | None, lo_open: bool) -> str:
    if lo is not None and hi is not None and not lo_open:
        return f" from {lo:g} to {hi:g}"
    parts = []
    if lo is not None:
        parts.append(f"{'above' if lo_open else 'at least'} {lo:g}")
    if hi is not None:
        parts.append(f"at most {hi:g}")
    return " " + " and ".join(parts) if parts else ""


def check_type(value: Any, types: type | tuple[type, ...], field: str, origin: Origin = ARGUMENT) -> Any:
    """``value`` if it is one of ``types`` (``bool`` never passes for a number), else the origin's error."""
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, types) and not (isinstance(value, bool) and bool not in types):
        return value
    words = " or ".join(dict.fromkeys(_TYPE_WORDS.get(t, t.__name__) for t in types))
    raise origin.fail(field, f"must be {words}, got {shown(value)}")


def check_number(value: Any, field: str, origin: Origin = ARGUMENT, *, lo: float | None = None,
                 hi: float | None = None, lo_open: bool = False, integer: bool = False, unit: str = "",
                 allow_none: bool = False) -> Any:
    """A finite number within [lo, hi] (``lo_open``: above ``lo``), as ``int`` when ``integer`` else ``float``.

    Text counts as a number only for arguments (``origin`` ``ARGUMENT``), which arrive as text. ``unit`` words the
    message ("a number of seconds"). None passes (and is returned) only with ``allow_none``.
    """
    if value is None and allow_none:
        return None
    what = ("a whole number" if integer else "a number") + (f" of {unit}" if unit else "")
    problem = f"must be {what}{_range_text(lo, hi, lo_open)}, got {shown(value)}"
    if isinstance(value, str) and origin.file is None:
        try:
            value = float(value) if not integer or any(c in value for c in ".eEnN") else int(value)
        except ValueError:
            raise origin.fail(field, problem) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise origin.fail(field, problem)
    if isinstance(value, float) and not math.isfinite(value):
        raise origin.fail(field, problem)
    if integer and isinstance(value, float):
        if not value.is_integer():
            raise origin.fail(field, problem)
        value = int(value)
    if (lo is not None and (value <= lo if lo_open else value < lo)) or (hi is not None and value > hi):
        raise origin.fail(field, problem)
    return value if integer else float(value)


def check_numbers(value: Any, field: str, origin: Origin = ARGUMENT, *, lo: float | None = None,
                  hi: float | None = None, lo_open: bool = False, unit: str = "", min_len: int = 1,
                  max_len: int | None = None) -> list[float]:
    """A list of ``min_len``..``max_len`` finite numbers, each within [lo, hi]; names the bad item (``field[i]``)."""
    check_type(value, (list, tuple), field, origin)
    if len(value) < min_len or (max_len is not None and len(value) > max_len):
        count = f"{min_len} to {max_len}" if max_len is not None and max_len != min_len else str(min_len)
        count = count if max_len is not None else f"at least {min_len}"
        raise origin.fail(field, f"must hold {count} numbers, got {len(value)}")
    return [check_number(v, f"{field}[{i}]", origin, lo=lo, hi=hi, lo_open=lo_open, unit=unit)
            for i, v in enumerate(value)]


def check_option(value: Any, allowed: Collection, field: str, origin: Origin = ARGUMENT) -> Any:
    """``value`` if it is one of ``allowed``, else the origin's error listing them."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool) and value in allowed:
        return value
    raise origin.fail(field, f"must be one of {', '.join(map(str, allowed))}, got {shown(value)}")


def check_table(value: Any, field: str, origin: Origin, keys: Collection[str] = ()) -> dict:
    """A table (dict) holding at least ``keys``."""
    check_type(value, dict, field, origin)
    missing = [k for k in keys if k not in value]
    if missing:
        raise origin.fail(field, f"lacks {', '.join(missing)}")
    return value


def parser_type(check: Callable[..., Any], **limits: Any) -> Callable[[str], Any]:
    """An argparse ``type=`` from ``check_number`` and its limits: argparse then names the argument in its error."""
    import argparse

    def convert(text: str) -> Any:
        try:
            return check(text, "", ARGUMENT, **limits)
        except BiofeedbackError as exc:
            raise argparse.ArgumentTypeError(str(exc).strip()) from None

    convert.__name__ = limits.get("unit", "number") or "number"
    return convert
