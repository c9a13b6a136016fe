"""Where sessions live, pseudonymous client IDs, and device addresses kept out of files.

Layout: ``<home>/clients/<client_id>/sessions/<YYYYmmddTHHMMSSZ>.bfsession``, where ``<home>`` is
``$BIOFEEDBACK_HOME`` or ``platformdirs.user_data_dir("biofeedback")``. Every folder we create is
0700 and every file we write 0600, whatever the umask and whether or not the file existed (``private_dir``,
``private_file``, ``write_private``): the recordings are health data. A folder that already existed keeps its
mode: it is not ours to change.

Names and dates that come from a file's data are treated as untrusted: ``safe_name`` makes any of them fit to be
part of a file name (like a typed client ID), ``inside`` refuses a path that leaves its output folder, and
``shift_dates`` moves every date in a value (ISO dates, compact stamps such as a calibration file's name, UTC
seconds) by whole days for anonymity.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

import platformdirs

from biofeedback.store.errors import StoreError

HOME_ENV = "BIOFEEDBACK_HOME"
SESSION_SUFFIX = ".bfsession"
DIR_MODE = 0o700
FILE_MODE = 0o600
SALT_FILE = "device-salt"
"""Per-installation secret mixed into device aliases, so an alias cannot be turned back into an address."""

_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
_ALIAS = re.compile(r"dev-[0-9a-f]{12}")
_MAC = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}(?![0-9A-Fa-f])")
ADDRESS_KEYS = frozenset({"address", "mac", "mac_address", "bd_addr", "device_address", "ble_address"})
"""Keys whose values are device addresses (MAC, or the UUID CoreBluetooth gives instead), whatever their form."""


def data_home(create: bool = True) -> Path:
    """The per-user data folder (``$BIOFEEDBACK_HOME`` or the platform's user data dir), created 0700 unless
    ``create`` is False (a read-only look-up)."""
    home = Path(os.environ.get(HOME_ENV) or platformdirs.user_data_dir("biofeedback", appauthor=False))
    return private_dir(home) if create else home


def find_client_dir(client_id: str, home: Path | None = None) -> Path | None:
    """A client's folder in the data home if it exists, else None; creates nothing (read-only commands use it)."""
    folder = (data_home(create=False) if home is None else Path(home)) / "clients" / validate_client_id(client_id)
    return folder if folder.is_dir() else None


def client_output_dir(client_id: str | None, home: Path | None = None) -> Path:
    """Where a client's reports and exports go by default: ``<home>/clients/<id>/reports`` (created 0700 when written);
    ``<home>/reports`` for a recording without a valid client ID (e.g. an imported one)."""
    home = data_home(create=False) if home is None else Path(home)
    valid = isinstance(client_id, str) and _CLIENT_ID.fullmatch(client_id)
    return home / "clients" / client_id / "reports" if valid else home / "reports"


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents, each 0700 whatever the umask; a folder that already exists (or that
    someone else creates meanwhile) keeps its mode."""
    path = Path(path)
    missing = []
    try:
        folder = path
        while not os.path.lexists(folder) and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        for folder in reversed(missing):
            try:
                os.mkdir(folder, DIR_MODE)
            except FileExistsError:
                continue  # made by someone else: not ours to change
            os.chmod(folder, DIR_MODE)  # the umask may have taken bits
    except OSError as exc:
        raise StoreError(f"cannot create the private folder {path} ({exc.strerror}); check permissions or set {HOME_ENV}")
    if not path.is_dir():
        raise StoreError(f"{path} is not a folder; choose another folder or set {HOME_ENV}")
    return path


def _open_private(path: Path) -> int:
    """A file descriptor of ``path`` emptied and made 0600 (an existing file's mode included); never through a link."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, FILE_MODE)
        else:  # Windows
            os.chmod(path, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def private_file(path: Path) -> Path:
    """Make ``path`` an empty 0600 file, whatever the umask and whatever mode it had, so that a library that then
    opens it by name (EDF, HDF5, PDF, WAV writers) writes into a private file; returns ``path``."""
    path = Path(path)
    try:
        os.close(_open_private(path))
    except OSError as exc:
        raise StoreError(f"cannot write {path} ({exc.strerror}); choose another folder or check its permissions")
    return path


def write_private(path: Path, content: bytes | str) -> Path:
    """Write ``content`` (text as UTF-8) to ``path`` as a 0600 file, whatever the umask and its earlier mode."""
    path = Path(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        with os.fdopen(_open_private(path), "wb") as f:
            f.write(data)
    except OSError as exc:
        raise StoreError(f"cannot write {path} ({exc.strerror}); choose another folder or check its permissions")
    return path


def safe_name(text: Any) -> str:
    """``text`` (a stream, source or other name read from a file) fit to be part of a file name, like a typed client
    ID: letters, digits, '-' and '_' only (anything else becomes '_'), at most 32 characters, never empty."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(text))[:32]
    return name or "_"


def inside(folder: Path, path: Path) -> Path:
    """``path`` if it lies inside ``folder`` (links resolved), else StoreError: no data in a file may steer a write
    out of the folder the user chose."""
    base, target = Path(folder).resolve(), Path(path).resolve()
    if target != base and base not in target.parents:
        raise StoreError(f"refusing to write {path}: it lies outside {folder} (a damaged or hostile session file?)")
    return Path(path)


def validate_client_id(client_id: str) -> str:
    """Return ``client_id`` if it is a pseudonymous code (e.g. ``C001``, ``client-7``), else raise StoreError."""
    if not isinstance(client_id, str) or not _CLIENT_ID.fullmatch(client_id):
        shown = client_id if isinstance(client_id, str) else type(client_id).__name__
        reason = "looks like an email address" if isinstance(client_id, str) and "@" in client_id else (
            "looks like a real name" if isinstance(client_id, str) and " " in client_id.strip() else "is not a valid code"
        )
        raise StoreError(
            f"client ID {shown!r} {reason}; use a pseudonymous code such as C001 or client-7 "
            "(letters, digits, '-' and '_', at most 32 characters, no spaces, no names or emails)"
        )
    return client_id


SECONDS_PER_DAY = 86400
_ISO_DAY = re.compile(r"(?<![0-9])([12][0-9]{3})-([01][0-9])-([0-3][0-9])(?![0-9])")
_COMPACT_DAY = re.compile(r"(?<![0-9])([12][0-9]{3})([01][0-9])([0-3][0-9])(?![0-9])")
_UTC_SECONDS = (946_684_800.0, 4_102_444_800.0)
"""Numbers read as UTC seconds by ``shift_dates(numbers=True)``: 2000 to 2100 (``validate.UTC_RANGE_S``)."""


def _shift_day(match: re.Match, days: int, fmt: str) -> str:
    try:
        day = dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        return (day - dt.timedelta(days=days)).strftime(fmt)
    except (ValueError, OverflowError):
        return match.group(0)  # not a date


def shift_dates(value: Any, days: int, numbers: bool = False) -> Any:
    """A copy of ``value`` (JSON-like) with every date moved ``days`` days back: dates in text as ``YYYY-MM-DD``
    (ISO, also inside date-times) or ``YYYYMMDD`` (compact, also in stamps such as ``20231114T221320Z`` and file
    names), and with ``numbers`` every number between 2000 and 2100 in UTC seconds. Times of day are kept."""
    if not days:
        return value
    if isinstance(value, dict):
        return {shift_dates(k, days): shift_dates(v, days, numbers) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(shift_dates(v, days, numbers) for v in value)
    if isinstance(value, str):
        value = _ISO_DAY.sub(lambda m: _shift_day(m, days, "%Y-%m-%d"), value)
        return _COMPACT_DAY.sub(lambda m: _shift_day(m, days, "%Y%m%d"), value)
    if numbers and isinstance(value, (int, float)) and not isinstance(value, bool) \
            and _UTC_SECONDS[0] <= value <= _UTC_SECONDS[1]:
        return type(value)(value - days * SECONDS_PER_DAY)
    return value


def session_dir(client_id: str, home: Path | None = None) -> Path:
    """The 0700 folder that holds one client's sessions."""
    home = data_home() if home is None else private_dir(home)
    clients = private_dir(home / "clients")
    return private_dir(private_dir(clients / validate_client_id(client_id)) / "sessions")


def new_session_path(client_id: str, started_utc: float) -> Path:
    """A new, unused session file path for a client, named by its UTC start time."""
    folder = session_dir(client_id)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started_utc))
    path = folder / f"{stamp}{SESSION_SUFFIX}"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{stamp}-{n}{SESSION_SUFFIX}"
    return path


def device_alias(address: str) -> str:
    """A stable pseudonym for a device address: salted SHA-256, so the address never reaches a file."""
    if _ALIAS.fullmatch(address):
        return address
    digest = hashlib.sha256(_salt() + address.strip().upper().encode()).hexdigest()
    return f"dev-{digest[:12]}"


def scrub_addresses(value: Any) -> Any:
    """A copy of ``value`` (JSON-like) with every device address replaced by its alias."""
    if isinstance(value, dict):
        return {
            k: (device_alias(str(v)) if str(k).lower() in ADDRESS_KEYS and v else scrub_addresses(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [scrub_addresses(v) for v in value]
    if isinstance(value, str):
        return _MAC.sub(lambda m: device_alias(m.group(0).replace("-", ":")), value)
    return value


_salts: dict[Path, bytes] = {}


def _salt() -> bytes:
    path = data_home() / SALT_FILE
    if path not in _salts:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
        _salts[path] = path.read_bytes()
    return _salts[path]
