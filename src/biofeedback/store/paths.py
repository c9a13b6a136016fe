"""Where sessions live, pseudonymous client IDs, and device addresses kept out of files.

Layout: ``<home>/clients/<client_id>/sessions/<YYYYmmddTHHMMSSZ>.bfsession``, where ``<home>`` is
``$BIOFEEDBACK_HOME`` or ``platformdirs.user_data_dir("biofeedback")``. Every folder we create is
0700 and every file 0600: the recordings are health data.
"""

from __future__ import annotations

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


def data_home() -> Path:
    """The per-user data folder (``$BIOFEEDBACK_HOME`` or the platform's user data dir), created 0700."""
    home = Path(os.environ.get(HOME_ENV) or platformdirs.user_data_dir("biofeedback", appauthor=False))
    return private_dir(home)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make it 0700."""
    path = Path(path)
    try:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(path, DIR_MODE)
    except OSError as exc:
        raise StoreError(f"cannot create the private folder {path} ({exc.strerror}); check permissions or set {HOME_ENV}")
    return path


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
