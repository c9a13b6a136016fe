"""Fixtures every test shares."""

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    """BIOFEEDBACK_HOME pointed at a fresh folder: no test touches the user's real recordings."""
    path = tmp_path / "home"
    monkeypatch.setenv("BIOFEEDBACK_HOME", str(path))
    return path
