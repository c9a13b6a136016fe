"""The session file (crash-safe, one per session) and its exporters (EDF+, CSV, BIDS-style physio, HDF5)."""

from biofeedback.store.errors import StoreError
from biofeedback.store.export import FORMATS, export_session
from biofeedback.store.listing import list_clients, list_sessions
from biofeedback.store.paths import data_home, device_alias, new_session_path, validate_client_id
from biofeedback.store.session_file import COMMIT_INTERVAL_S, SessionReader, SessionWriter

__all__ = [
    "COMMIT_INTERVAL_S",
    "FORMATS",
    "SessionReader",
    "SessionWriter",
    "StoreError",
    "data_home",
    "device_alias",
    "export_session",
    "list_clients",
    "list_sessions",
    "new_session_path",
    "validate_client_id",
]
