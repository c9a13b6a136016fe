"""The sensors a client's sessions use, remembered in the client's folder (``clients/<id>/sensors.json``, 0600).

A therapist chooses once (``session --sensors bitalino`` for one BITalino carrying EMG and ECG, or
``--sensors open-emg,polar-verity`` for EMG from one device and the heart from another); later sessions of the
same client use that choice until another is given. The file holds profile names only, no device address.
"""

from __future__ import annotations

import json
from pathlib import Path

from biofeedback.errors import Reason
from biofeedback.store.errors import StoreError
from biofeedback.store.paths import data_home, find_client_dir, private_dir, validate_client_id, write_private

SENSORS_FILE = "sensors.json"


def _path(client_id: str) -> Path:
    return private_dir(private_dir(data_home() / "clients") / validate_client_id(client_id)) / SENSORS_FILE


def remember_sensors(client_id: str, profiles: list[str] | tuple[str, ...]) -> Path:
    """Remember the profile names a client's sessions connect to (0600 file in a 0700 folder)."""
    return write_private(_path(client_id), json.dumps({"profiles": list(profiles)}, indent=1) + "\n")


def remembered_sensors(client_id: str) -> tuple[str, ...] | None:
    """The profile names last chosen for a client, or None when none was chosen; a damaged file is one StoreError.
    Creates nothing (a lookup for a client without a folder leaves none behind)."""
    folder = find_client_dir(client_id)
    path = None if folder is None else folder / SENSORS_FILE
    if path is None or not path.exists():
        return None
    try:
        profiles = json.loads(path.read_text(encoding="utf-8"))["profiles"]
        if not isinstance(profiles, list) or not profiles or not all(isinstance(p, str) for p in profiles):
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise StoreError(f"{path}: not a remembered sensor choice; delete it or choose again with --sensors",
                         Reason.BAD_FILE) from None
    return tuple(profiles)
