"""The terminal's live lines: 'µV' where standard output can carry it, 'uV' where it cannot (never a character the
output cannot encode); the symmetry with its scale, '--' until it has a reference."""

from __future__ import annotations

import io
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import signal

from biofeedback.cli.terminal import NewGaps, live_line, monitor_line, unit_text
from biofeedback.session.live import REST_REFERENCE_SESSION_S, SYMMETRY_OWN_REST, LiveProcessor
from biofeedback.stream import Block, SessionClock, StreamHub, StreamKind

FS = 1000.0


def stdout_encoded(monkeypatch, encoding: str) -> io.TextIOWrapper:
    """Standard output replaced by a stream that encodes as ``encoding`` and refuses what it cannot (as a console)."""
    out = io.TextIOWrapper(io.BytesIO(), encoding=encoding, errors="strict")
    monkeypatch.setattr(sys, "stdout", out)
    return out


@pytest.mark.parametrize("encoding, expected", [("utf-8", "µV"), ("latin-1", "µV"), ("ascii", "uV")])
def test_micro_sign_only_where_the_output_can_carry_it(monkeypatch, encoding, expected):
    out = stdout_encoded(monkeypatch, encoding)
    assert unit_text("uV") == expected
    assert unit_text("%RVC") == "%RVC"
    line = monitor_line({"t_s": 1.0, "hr_bpm": 61.0, "rr_count": 3, "rmssd_ms": None,
                         "emg_rms_uv": {"left_trapezius": 4.2, "right_trapezius": 3.9}, "sensors": {}, "gaps": []})
    assert f"EMG RMS {expected} L    4.2 R    3.9" in line
    print(line, file=out)  # the console takes it
    out.flush()


def run_with(live: LiveProcessor, hub: StreamHub) -> SimpleNamespace:
    """What ``live_line`` reads of a ``SessionRun``: its live processor, phases (none), clock, gaps, recording."""
    return SimpleNamespace(live=live, machine=None, now_s=lambda: live.values.emg_t_s,
                           acq=SimpleNamespace(hub=hub), recording_problems=list)


@pytest.mark.parametrize("encoding, unit", [("utf-8", "µV"), ("ascii", "uV")])
def test_live_line_unit_and_symmetry(monkeypatch, encoding, unit):
    out = stdout_encoded(monkeypatch, encoding)
    hub = StreamHub(SessionClock())
    live = LiveProcessor(hub)
    gaps = NewGaps()
    rng = np.random.default_rng(1)
    sos = signal.butter(4, (20.0, 400.0), "bandpass", fs=FS, output="sos")
    seconds = REST_REFERENCE_SESSION_S + 2.0
    x = signal.sosfilt(sos, rng.standard_normal((int(seconds * FS), 2)), axis=0) * [5.0, 10.0]
    lines = []
    for start in range(0, x.shape[0], 100):
        hub.on_block(Block(StreamKind.EMG, "emg", 0, x[start:start + 100], rate_hz=FS,
                           channels=("left_trapezius", "right_trapezius"), times_s=np.arange(start, start + 100) / FS))
        if start % 5000 == 0:
            lines.append(live_line(run_with(live, hub), gaps))
    lines.append(live_line(run_with(live, hub), gaps))
    print(*lines, sep="\n", file=out)
    out.flush()
    first, last = lines[0], lines[-1]
    assert f" {unit}  sym L-R -- % (needs 30 s rest)" in first
    assert "tension L -- R -- " in first, "the first block is a partial window: settling, no tension"
    assert f" {unit}  sym L-R " in last and f"% ({SYMMETRY_OWN_REST})" in last
    sym = float(last.split("sym L-R ")[1].split(" %")[0])
    assert abs(sym) < 30.0  # 2x gain, identical muscles: no asymmetry (raw µV would say -67 %)


def test_a_console_that_cannot_show_the_micro_sign_gets_u_instead_never_a_crash(monkeypatch, tmp_path):
    """Whatever a command prints (the session summary's 'EMG RMS µV', a ×, a −), standard output that only encodes
    ASCII gets a plain stand-in, not a UnicodeEncodeError halfway through."""
    from biofeedback.cli import main

    monkeypatch.setenv("BIOFEEDBACK_HOME", str(tmp_path))
    out = stdout_encoded(monkeypatch, "ascii")
    assert main(["sessions"]) == 0
    print("EMG RMS µV left 3.1 × 2 − 1")
    out.flush()
    assert out.buffer.getvalue().decode("ascii").endswith("EMG RMS uV left 3.1 x 2 - 1\n")


def test_a_whole_session_prints_its_summary_on_an_ascii_console(tmp_path):
    import os
    import subprocess
    from pathlib import Path

    short = Path(__file__).resolve().parent / "data" / "protocols" / "session-short.toml"
    run = subprocess.run([sys.executable, "-c", "import sys; from biofeedback.cli import main; sys.exit(main())",
                          "session", "--client", "A001", "--virtual", "--speed", "30", "--protocol", str(short), "--auto",
                          "--answers", "all-clear", "--headless"],
                         env={**os.environ, "BIOFEEDBACK_HOME": str(tmp_path), "PYTHONIOENCODING": "ascii"},
                         capture_output=True, timeout=240)
    assert run.returncode == 0, run.stderr.decode("ascii", "replace")[-2000:]
    text = run.stdout.decode("ascii")  # every byte ASCII
    assert "EMG RMS uV" in text and "verdict:" in text
