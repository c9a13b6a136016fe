"""Lists of clients and sessions, for the ``biofeedback sessions [--client ID]`` command.

Listing a client's sessions also tidies what killed sessions left in their folder (``session_file.tidy_leftovers``:
a ``.part`` is deleted, a dead writer's ``-wal`` folded back into its file), so a session that was cut short is
listed as such, and nothing of it lingers beside it.
"""

from __future__ import annotations

import time
from pathlib import Path

from biofeedback.store.errors import StoreError
from biofeedback.store.paths import SESSION_SUFFIX, data_home, validate_client_id
from biofeedback.store.session_file import SessionReader, session_state, tidy_leftovers


def utc_iso(utc_s: float) -> str:
    """UTC seconds since the epoch as ``YYYY-mm-ddTHH:MM:SSZ``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(utc_s))


def list_clients(home: Path | None = None) -> list[str]:
    """Client IDs that have a folder under ``<home>/clients``, sorted."""
    clients = (data_home(create=False) if home is None else Path(home)) / "clients"
    if not clients.is_dir():
        return []
    return sorted(p.name for p in clients.iterdir() if p.is_dir() and _is_client_id(p.name))


def list_sessions(client_id: str | None = None, home: Path | None = None) -> list[dict]:
    """Sessions, oldest first: path, client_id, started (UTC ISO), duration_s, protocol, complete, state, error.

    ``state`` is ``complete``, ``recording`` (being written now) or ``cut short`` (its writer stopped without closing
    it: killed, crashed, power lost; what was committed is kept). A file that cannot be read is listed with
    ``error`` set (one line) and None for what is unknown.
    """
    home = data_home(create=False) if home is None else Path(home)
    clients = [validate_client_id(client_id)] if client_id is not None else list_clients(home)
    sessions = []
    for client in clients:
        folder = home / "clients" / client / "sessions"
        tidy_leftovers(folder)
        for path in sorted(folder.glob(f"*{SESSION_SUFFIX}")):
            entry = {"path": path, "client_id": client, "started": None, "duration_s": None, "protocol": None,
                     "complete": None, "state": None, "error": None}
            try:
                with SessionReader(path) as reader:
                    meta = reader.meta
                    entry.update(
                        client_id=meta.get("client_id", client),
                        started=utc_iso(meta["utc_anchor"]) if isinstance(meta.get("utc_anchor"), (int, float)) else None,
                        duration_s=reader.duration_s(), protocol=meta.get("protocol"),
                        complete=bool(meta.get("complete")),
                    )
                entry["state"] = session_state(path, entry["complete"])
            except StoreError as exc:
                entry["error"] = str(exc)
            sessions.append(entry)
    return sorted(sessions, key=lambda e: (e["started"] or "", str(e["path"])))


def _is_client_id(name: str) -> bool:
    try:
        validate_client_id(name)
    except StoreError:
        return False
    return True
