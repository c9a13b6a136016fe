"""Screening, calibration retries, export/sessions, and bad input: one error line, exit 2, files untouched."""

from __future__ import annotations

import json
import shutil

import pytest

from biofeedback.session.protocol import SessionError, load_protocol
from tests.session.conftest import SPEED, digest, load_json, run


def test_shipped_protocols_load():
    default = load_protocol()
    assert [p.name for p in default.phases] == ["baseline", "treatment", "post"]
    assert default.phases[0].duration_s == 180 and default.phases[1].duration_s is None
    assert {"trigger-point", "myofascial", "pnf", "craniosacral", "indian-head", "gb20", "li4"} <= {t.key for t in default.techniques}
    assert {q.key for q in default.questions} == {"consent", "acute_migraine", "new_headache", "cervical_spine"}
    assert load_protocol("home-relaxation").phases[1].kind == "treatment"


def test_bad_protocol_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[phases]]\nname = "x"\nkind = "nap"\n')
    with pytest.raises(SessionError, match="kind must be one of"):
        load_protocol(bad)


def test_contraindication_stops_the_start_and_is_logged(tmp_path, monkeypatch, capsys, recorded):
    monkeypatch.setenv("BIOFEEDBACK_HOME", str(tmp_path))
    code, out, err = run(capsys, "session", "--client", "C002", "--virtual", "--headless", "--protocol",
                         str(recorded.protocol), "--answers", "consent=yes,acute_migraine=yes")
    assert code == 2
    assert err.strip().splitlines()[-1] == ("biofeedback: error: session not started: acute severe migraine attack: "
                                            "reschedule (answers kept in the client's screening log)")
    assert not (tmp_path / "clients/C002/sessions").exists() or not any((tmp_path / "clients/C002/sessions").iterdir())
    log = tmp_path / "clients/C002/screening.jsonl"
    record = json.loads(log.read_text().splitlines()[-1])
    assert record["answers"] == {"consent": True, "acute_migraine": True} and record["stopped"]
    assert oct(log.stat().st_mode & 0o777) == "0o600"


def test_unattended_session_needs_answers(tmp_path, monkeypatch, capsys, recorded):
    monkeypatch.setenv("BIOFEEDBACK_HOME", str(tmp_path))
    code, _, err = run(capsys, "session", "--client", "C002", "--virtual", "--headless", "--protocol", str(recorded.protocol))
    assert code == 2 and "--answers all-clear" in err and len(err.strip().splitlines()) == 1


def test_calibration_retries_then_passes(tmp_path, monkeypatch, capsys, recorded):
    """First try: contractions 120/70/120 µV (spread > 15 %) -> retry; second try equal -> saved."""
    monkeypatch.setenv("BIOFEEDBACK_HOME", str(tmp_path))
    code, out, err = run(capsys, "calibrate", "--client", "C003", "--virtual", "--auto", "--speed", SPEED,
                         "--protocol", str(recorded.calibration_protocol), "--virtual-contractions", "120,70,120;120,120,120")
    assert code == 0, err
    assert "differ by more than 15%" in out and "retrying" in out
    (saved,) = (tmp_path / "clients/C003/calibration").glob("*.json")
    cal = load_json(saved)
    assert cal["tries"] == 2 and max(cal["spread"]) <= 0.15
    assert 100 < cal["rvc_rms_uv"][0] < 140 and cal["rvc_rms_uv"][0] > 2 * cal["rest_rms_uv"][0]


def test_calibration_fails_after_max_tries(tmp_path, monkeypatch, capsys, recorded):
    monkeypatch.setenv("BIOFEEDBACK_HOME", str(tmp_path))
    code, out, err = run(capsys, "calibrate", "--client", "C004", "--virtual", "--auto", "--speed", SPEED,
                         "--protocol", str(recorded.calibration_protocol), "--virtual-contractions", "120,70,120")
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("biofeedback: error: calibration failed after 2 tries:") and "nothing was saved" in line
    assert not list((tmp_path / "clients/C004/calibration").glob("*.json"))


def test_calibration_equal_contractions_pass(recorded):
    cal = load_json(recorded.calibration)
    assert cal["tries"] == 1 and max(cal["spread"]) <= 0.15


@pytest.mark.parametrize("fmt", ["csv", "edf", "bids", "hdf5"])
def test_export_latest(recorded_home, tmp_path, capsys, recorded, fmt):
    before = digest(recorded.session)
    code, out, err = run(capsys, "export", "latest", "--client", "C001", "--format", fmt, "--out", str(tmp_path / fmt))
    assert code == 0, err
    assert any((tmp_path / fmt).rglob("*"))
    assert digest(recorded.session) == before


def test_sessions_lists_and_shows_corrupt_files(recorded_home, capsys, recorded):
    folder = recorded.session.parent
    corrupt = folder / "20000101T000000Z.bfsession"
    truncated = folder / "20000101T000001Z.bfsession"
    corrupt.write_bytes(b"not a session at all" * 10)
    shutil.copy(recorded.session, truncated)
    with open(truncated, "r+b") as f:
        f.truncate(truncated.stat().st_size // 2)
    try:
        code, out, err = run(capsys, "sessions", "--client", "C001")
        assert code == 0
        assert str(recorded.session) in out and "test-short" in out and "complete" in out
        assert sum("CORRUPT" in line for line in out.splitlines()) == 2
        for bad in (corrupt, truncated):
            before = digest(bad)
            code, out, err = run(capsys, "export", str(bad), "--format", "csv", "--out", str(folder / "x"))
            assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("biofeedback: error: ")
            assert digest(bad) == before
    finally:
        corrupt.unlink()
        truncated.unlink()


@pytest.mark.parametrize("argv, says", [
    (["export", "latest", "--format", "wav"], "unknown export format 'wav'"),
    (["export", "/nonexistent/x.bfsession", "--format", "csv"], "no session file"),
    (["export", "latest", "--client", "C999", "--format", "csv"], "no readable recorded session for client C999"),
    (["sessions", "--client", "John Smith"], "looks like a real name"),
    (["session", "--client", "a@b.org", "--virtual"], "looks like an email address"),
    (["calibrate", "--client", "C001", "--virtual", "--protocol", "nosuch"], "no protocol file 'nosuch'"),
])
def test_bad_input_is_one_error_line(recorded_home, capsys, recorded, argv, says):
    before = digest(recorded.session)
    code, out, err = run(capsys, *argv)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("biofeedback: error: ") and says in line
    assert digest(recorded.session) == before
