"""Fixtures and helpers every test shares."""

import os
import shutil
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parent / "_artifacts"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"


def save_screenshot(widget, name: str) -> Path:
    """``widget``'s picture as tests/_artifacts/NAME.png (and docs/screenshots/ with BIOFEEDBACK_UPDATE_SCREENSHOTS=1)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    assert widget.grab().save(str(path))
    if os.environ.get("BIOFEEDBACK_UPDATE_SCREENSHOTS"):  # refresh the README's pictures on purpose only
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SCREENSHOTS / path.name)
    return path


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    """BIOFEEDBACK_HOME pointed at a fresh folder: no test touches the user's real recordings."""
    path = tmp_path / "home"
    monkeypatch.setenv("BIOFEEDBACK_HOME", str(path))
    return path
