"""The first run after an install compiles the numba kernels: that must happen before acquisition, never
inside a live session (where it held up the acquisition loop and the first seconds of EMG were lost)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from biofeedback.store import SessionReader
from biofeedback.stream import StreamKind

pytestmark = pytest.mark.serial  # starts processes of its own: run alone, after the parallel part

PROTOCOL = Path(__file__).resolve().parent / "data" / "protocols" / "session-short.toml"


def test_a_session_with_an_empty_kernel_cache_records_all_of_its_emg(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache"), "BIOFEEDBACK_HOME": str(tmp_path / "home")}
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from biofeedback.cli import main; sys.exit(main())",
         "session", "--client", "C001", "--virtual", "--speed", "20", "--protocol", str(PROTOCOL),
         "--auto", "--answers", "all-clear", "--headless"],
        env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr
    assert "signal processing compiled in" in run.stderr  # the cache really was empty
    [path] = (tmp_path / "home" / "clients" / "C001" / "sessions").glob("*.bfsession")
    with SessionReader(path) as r:
        assert r.gaps() == []
        t, x = r.samples(StreamKind.EMG)
        phases = r.phases()
    start, end = phases[0]["t_s"], phases[-1]["t_s"] + phases[-1]["duration_s"]
    covered = np.diff(t[(t >= start) & (t <= end)])
    assert covered.size and covered.max() < 0.1, f"EMG stalled for {covered.max():.1f} session seconds"
