"""The bad-input matrix (issue 13): damaged session files x every command that reads them, hostile arguments, and
malformed protocol TOML, calibration JSON and diary JSON.

Every case runs the ``biofeedback`` command in-process. None may print a traceback or hang (each has a wall-clock
limit); a command fails with exit status 2 and one line naming the file and field (or the argument) at fault, or, where
only damaged rows of a session are skipped, succeeds and reads the rest. Validation happens before any sensor
connects: no case here reaches a (virtual) sensor.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pytest

from biofeedback.cli import main
from biofeedback.store import SessionReader, list_sessions
from tests.store.conftest import write_session

CASE_LIMIT_S = 20
"""Wall-clock seconds one case may take before it counts as a hang (a command's start-up, with its imports, shares
CI's two cores with the other test worker: a `trend` case once took over 10 s there)."""
CLIENT = "C001"
SESSION_NAME = "20231115T000000Z.bfsession"
GOOD_NAME = "20231114T221320Z.bfsession"
CALIBRATION_META = {"file": "20231114T220000Z.json", "utc": "20231114T220000Z", "protocol": "quick",
                    "rest_rms_uv": [10.0, 12.0], "rvc_rms_uv": [60.0, 70.0], "mvc_rms_uv": None,
                    "tension_index_unit": "%RVC"}


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    """``biofeedback argv`` in-process: (exit status, stdout, stderr); a parser error counts as its exit status.
    Fails the test on a traceback (any exception out of ``main``) or after ``CASE_LIMIT_S``."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_LIMIT_S)
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    except Hang:
        pytest.fail(f"hang: biofeedback {' '.join(argv)} ran longer than {CASE_LIMIT_S} s")
    except Exception as exc:  # noqa: BLE001 - a traceback is exactly what this matrix looks for
        pytest.fail(f"traceback: biofeedback {' '.join(argv)} raised {type(exc).__name__}: {exc}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def error_line(code: int, err: str) -> str:
    """The one error line of a failed command (ours, or the argument parser's)."""
    assert code == 2, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("biofeedback"), err
    assert "error:" in line
    return line


# --- damaged session files ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_session(tmp_path_factory) -> Path:
    """A closed 6 s session (EMG with a gap, ECG, HR, beats, phases, markers) with a realistic calibration."""
    path = tmp_path_factory.mktemp("good") / GOOD_NAME
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BIOFEEDBACK_HOME", str(path.parent / "home"))
        write_session(path)
    _sql(path, "UPDATE meta SET value = ? WHERE key = 'calibration'", (json.dumps(CALIBRATION_META),))
    return path


def _sql(path: Path, sql: str, args: tuple = ()) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute(sql, args)
        conn.commit()
        conn.execute("PRAGMA journal_mode = DELETE")  # one file, no -wal beside it
    finally:
        conn.close()


def _meta(key: str, json_text: str | None):
    if json_text is None:
        return f"DELETE FROM meta WHERE key = '{key}'", ()
    return "INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json_text)


NAN_F32 = struct.pack("<f", float("nan"))
INF_F32 = struct.pack("<f", float("inf"))
EMG_BLOCK = "(SELECT min(b.id) + 4 FROM blocks b JOIN streams s ON s.id = b.stream_id WHERE s.stream = 'emg')"
HR_BLOCK = "(SELECT min(b.id) + 1 FROM blocks b JOIN streams s ON s.id = b.stream_id WHERE s.stream = 'hr')"

DAMAGED_META = {
    # name: (sql, args, field the message must name)
    "meta-not-json": (*_meta("utc_anchor", "{{"), "utc_anchor"),
    "utc-anchor-missing": (*_meta("utc_anchor", None), "utc_anchor"),
    "utc-anchor-1e300": (*_meta("utc_anchor", "1e300"), "utc_anchor"),
    "utc-anchor-negative": (*_meta("utc_anchor", "-1e20"), "utc_anchor"),
    "utc-anchor-text": (*_meta("utc_anchor", '"monday"'), "utc_anchor"),
    "utc-anchor-nan": (*_meta("utc_anchor", "NaN"), "utc_anchor"),
    "client-id-missing": (*_meta("client_id", None), "client_id"),
    "client-id-path": (*_meta("client_id", '"../../x"'), "client_id"),
    "speed-zero": (*_meta("speed", "0"), "speed"),
    "speed-infinite": (*_meta("speed", "Infinity"), "speed"),
    "complete-text": (*_meta("complete", '"yes"'), "complete"),
    "calibration-text": (*_meta("calibration", '"x"'), "calibration"),
    "calibration-zero-rvc": (*_meta("calibration", json.dumps({**CALIBRATION_META, "rvc_rms_uv": [0, 70]})),
                             "calibration.rvc_rms_uv[0]"),
    "calibration-text-rest": (*_meta("calibration", json.dumps({**CALIBRATION_META, "rest_rms_uv": ["a", 1]})),
                              "calibration.rest_rms_uv[0]"),
    "protocol-toml-not-table": (*_meta("protocol_toml", "[1, 2]"), "protocol_toml"),
}
DAMAGED_ROWS = {
    # name: (sql, args); the damaged rows are skipped, the rest is read
    "block-count-disagrees": (f"UPDATE blocks SET n = n + 3 WHERE id = {EMG_BLOCK}", ()),
    "block-channels-disagree": (f"UPDATE blocks SET n_channels = 3 WHERE id = {EMG_BLOCK}", ()),
    "block-data-cut": (f"UPDATE blocks SET data = substr(data, 1, 10) WHERE id = {EMG_BLOCK}", ()),
    "block-nan-samples": (f"UPDATE blocks SET data = ? WHERE id = {EMG_BLOCK}", (NAN_F32 * 40,)),
    "block-infinite-samples": (f"UPDATE blocks SET data = ? WHERE id = {EMG_BLOCK}", (INF_F32 * 40,)),
    "block-time-text": (f"UPDATE blocks SET t_first_s = 'NaN' WHERE id = {EMG_BLOCK}", ()),
    "block-time-huge": (f"UPDATE blocks SET t_first_s = 1e300 WHERE id = {EMG_BLOCK}", ()),
    "block-rate-zero": (f"UPDATE blocks SET rate_hz = 0 WHERE id = {EMG_BLOCK}", ()),
    "hr-nan": (f"UPDATE blocks SET data = ? WHERE id = {HR_BLOCK}", (NAN_F32,)),
    "hr-times-cut": (f"UPDATE blocks SET times = x'00' WHERE id = {HR_BLOCK}", ()),
    "ecg-stream-rate-zero": ("UPDATE streams SET rate_hz = 0 WHERE stream = 'ecg'", ()),
    "ecg-stream-rate-negative": ("UPDATE streams SET rate_hz = -5 WHERE stream = 'ecg'", ()),
    "ecg-stream-channels-not-json": ("UPDATE streams SET channels = '{{' WHERE stream = 'ecg'", ()),
    "beat-infinite": ("UPDATE beats SET rr_raw_ms = 1e308 * 10 WHERE id = 3", ()),
    "beat-text": ("UPDATE beats SET rr_raw_ms = 'abc' WHERE id = 3", ()),
    "event-data-not-json": ("UPDATE events SET data = '{{' WHERE kind = 'marker'", ()),
    "event-time-text": ("UPDATE events SET t_s = 'abc' WHERE kind = 'marker'", ()),
    "phase-duration-infinite": ("UPDATE events SET duration_s = 1e308 * 10 WHERE label = 'post'", ()),
    "gap-end-text": ("UPDATE gaps SET end_s = 'x'", ()),
}


def _commands(path: Path) -> dict[str, list[str]]:
    out = path.parent.parent / "out"
    return {
        "sessions": ["sessions"],
        "report": ["report", str(path), "--json", "--out", str(out / "report")],
        **{f"export-{fmt}": ["export", str(path), "--format", fmt, "--out", str(out / fmt)]
           for fmt in ("edf", "csv", "bids", "hdf5")},
        "replay": ["replay", str(path), "--headless", "--speed", "1000"],
        "monitor-replay": ["monitor", "--replay", str(path), "--speed", "1000"],
        "trend": ["trend", "--client", CLIENT],
    }


COMMANDS = list(_commands(Path("x/y")))


@pytest.fixture
def damaged(good_session, home, monkeypatch):
    """Make a damaged copy of the good session beside an undamaged one in the client's folder."""
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    folder = home / "clients" / CLIENT / "sessions"
    folder.mkdir(parents=True)
    shutil.copy(good_session, folder / GOOD_NAME)

    def make(sql: str, args: tuple) -> Path:
        path = folder / SESSION_NAME
        shutil.copy(good_session, path)
        _sql(path, sql, args)
        return path
    return make


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", DAMAGED_META)
def test_damaged_metadata_is_one_line_naming_file_and_field(case, command, damaged, capsys):
    sql, args, field = DAMAGED_META[case]
    path = damaged(sql, args)
    code, out, err = run(capsys, _commands(path)[command])
    if command == "sessions":  # the damaged session is listed as such; the good one lists normally
        assert code == 0
        lines = out.strip().splitlines()
        assert len(lines) == 2 and any(GOOD_NAME in line and "complete" in line and "CORRUPT" not in line
                                       for line in lines)
        assert any(SESSION_NAME in line and "CORRUPT" in line and field in line for line in lines)
        return
    if command == "trend":  # the trend names the damaged session and goes on with the others
        assert code == 0 and GOOD_NAME in out + err
        assert SESSION_NAME in out + err and field in out + err
        return
    line = error_line(code, err)
    assert SESSION_NAME in line and field in line, line


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", DAMAGED_ROWS)
def test_damaged_rows_are_skipped_and_the_rest_is_read(case, command, damaged, capsys):
    path = damaged(*DAMAGED_ROWS[case])
    code, out, err = run(capsys, _commands(path)[command])
    assert code == 0, err
    if command.startswith("replay") or command.startswith("monitor"):
        assert "skipped" in err and path.name in err  # the replay says what it left out


@pytest.mark.parametrize("case", DAMAGED_ROWS)
def test_reader_reports_each_damaged_row_and_keeps_the_others(case, damaged, good_session):
    path = damaged(*DAMAGED_ROWS[case])
    with SessionReader(good_session) as good, SessionReader(path) as bad:
        kept = {s: len(bad.samples(s)[0]) for s, _ in bad.streams()}
        whole = {s: len(good.samples(s)[0]) for s, _ in good.streams()}
        assert len(list(bad.raw_blocks())) <= len(list(good.raw_blocks()))
        bad.beats(), bad.gaps(), bad.events(), bad.phases()
        assert np.isfinite(bad.duration_s()) and bad.duration_s() <= good.duration_s()
        assert len(bad.problems) == 1 and bad.problems[0].startswith(f"{SESSION_NAME}: skipped 1 damaged")
        assert not good.problems
    lost = {s: whole[s] - kept.get(s, 0) for s in whole if whole[s] != kept.get(s, 0)}
    assert sum(lost.values()) <= max(whole.values())  # at most one block, or one damaged stream, is left out
    if case.startswith("block-"):
        assert lost == {"emg": 20}  # exactly the damaged block's samples


def test_listing_shows_a_damaged_session_beside_the_good_ones(damaged):
    damaged(*_meta("utc_anchor", "1e300"))
    entries = list_sessions(CLIENT)
    assert [e["path"].name for e in entries] == [SESSION_NAME, GOOD_NAME]  # unknown start first
    assert "utc_anchor" in entries[0]["error"] and entries[1]["error"] is None
    assert entries[1]["started"] == "2023-11-14T22:13:20Z" and entries[1]["complete"]


# --- hostile arguments -----------------------------------------------------------------------------------------------
HOSTILE_ARGUMENTS = [
    (["monitor", "--virtual", "--speed", "1e308"], "--speed"),
    (["monitor", "--virtual", "--speed", "1e-300"], "--speed"),
    (["monitor", "--virtual", "--speed", "nan"], "--speed"),
    (["monitor", "--virtual", "--speed", "-inf"], "--speed"),
    (["monitor", "--virtual", "--seed", "-1"], "--seed"),
    (["monitor", "--virtual", "--seed", str(2 ** 32)], "--seed"),
    (["monitor", "--virtual", "--seed", "1.5"], "--seed"),
    (["monitor", "--virtual", "--seconds", "nan"], "--seconds"),
    (["monitor", "--virtual", "--seconds", "1e308"], "--seconds"),
    (["monitor", "--virtual", "--virtual-hr", "1e9"], "--virtual-hr"),
    (["monitor", "--virtual", "--virtual-emg-uv", "nan,30"], "--virtual-emg-uv"),
    (["monitor", "--virtual", "--virtual-emg-uv", "1e308,30"], "--virtual-emg-uv"),
    (["monitor", "--virtual", "--virtual-disconnect-at", "inf"], "--virtual-disconnect-at"),
    (["monitor", "--virtual", "--virtual-drop-rate", "nan"], "--virtual-drop-rate"),
    (["monitor", "--virtual", "--virtual-corrupt-rate", "-0.5"], "--virtual-corrupt-rate"),
    (["monitor", "--virtual", "--virtual-electrode-off", "nan,5"], "--virtual-electrode-off"),
    (["scan", "--virtual", "--timeout", "1e308"], "--timeout"),
    (["replay", "latest", "--speed", "1e308"], "--speed"),
    (["export", "latest", "--format", "csv", "--shift-days", "1e8"], "--shift-days"),
    (["export", "latest", "--format", "csv", "--shift-days", "100000000"], "--shift-days"),
    (["calibrate", "--client", CLIENT, "--virtual", "--virtual-contractions", "90,nan"], "--virtual-contractions"),
    (["relax", "--client", CLIENT, "--virtual", "--minutes", "1e308"], "--minutes"),
    (["relax", "--client", CLIENT, "--virtual", "--minutes", "nan"], "--minutes"),
    (["relax", "--client", CLIENT, "--virtual", "--minutes", "-5"], "--minutes"),
    (["relax", "--client", CLIENT, "--virtual", "--rate", "nan"], "--rate"),
    (["relax", "--client", CLIENT, "--virtual", "--target", "inf"], "--target"),
    (["relax", "--client", CLIENT, "--virtual", "--ratio", "1:0"], "--ratio"),
    (["relax", "--client", CLIENT, "--virtual", "--ratio", "nan:1"], "--ratio"),
    (["relax", "--client", CLIENT, "--virtual", "--ratio", "0:0"], "--ratio"),
    (["relax", "--client", CLIENT, "--virtual", "--virtual-resonance-bpm", "nan"], "--virtual-resonance-bpm"),
    (["diary", "--client", CLIENT, "add", "--intensity", "nan", "--duration-h", "1"], "--intensity"),
    (["diary", "--client", CLIENT, "add", "--intensity", "3", "--duration-h", "inf"], "--duration-h"),
    (["session", "--client", "../../etc", "--virtual"], "client ID"),
    (["sessions", "--client", "x" * 100], "client ID"),
]


def _argv_id(case) -> str:
    argv = case.values[0] if hasattr(case, "values") else case[0]
    return " ".join(argv[-2:])


@pytest.mark.parametrize("argv, names", HOSTILE_ARGUMENTS, ids=[_argv_id(a) for a in HOSTILE_ARGUMENTS])
def test_hostile_argument_is_one_line_naming_it(argv, names, damaged, capsys):
    damaged("SELECT 1", ())  # a recorded session for 'latest'
    code, out, err = run(capsys, argv)
    assert names in error_line(code, err)


# --- malformed TOML and JSON -----------------------------------------------------------------------------------------
PHASE = '[[phases]]\nname = "baseline"\nkind = "rest"\nduration_s = 5\n'
BAD_PROTOCOLS = {
    # name: (TOML text, field the message must name)
    "not-toml": ("[[phases]\nname = ", "not valid TOML"),
    "phases-a-number": ("phases = 1\n", "phases"),
    "phase-a-number": ("phases = [1]\n", "phases[0]"),
    "script-numbers": (PHASE + "script = [1, 2]\n", "phases[0].script[0]"),
    "duration-nan": (PHASE.replace("5", "nan"), "phases[0].duration_s"),
    "duration-1e308": (PHASE.replace("5", "1e308"), "phases[0].duration_s"),
    "duration-negative": (PHASE.replace("5", "-1"), "phases[0].duration_s"),
    "duration-text": (PHASE.replace("5", '"5"'), "phases[0].duration_s"),
    "kind-a-number": (PHASE.replace('"rest"', "3"), "phases[0].kind"),
    "name-missing": (PHASE.replace('name = "baseline"\n', ""), "phases[0]"),
    "marker-at-nan": (PHASE + '[[phases.script]]\nat_s = nan\naction = "note"\n', "phases[0].script[0].at_s"),
    "marker-action-unknown": (PHASE + '[[phases.script]]\nat_s = 1\naction = "dance"\n', "phases[0].script[0].action"),
    "techniques-text": ('techniques = "x"\n' + PHASE, "techniques"),
    "screening-numbers": ("screening = [1]\n" + PHASE, "screening[0]"),
    "stop-if-text": ('[[screening]]\nkey = "a"\ntext = "b"\nstop_if = "yes"\n' + PHASE, "screening[0].stop_if"),
}
BAD_RELAX_TABLES = {
    "relax-a-number": ("relax = 1\n", "[relax]"),
    "relax-minutes-nan": ("[relax]\nminutes = nan\n", "[relax] minutes"),
    "relax-rate-text": ('[relax]\nrate_bpm = "six"\n', "[relax] rate_bpm"),
    "relax-ratio-bad": ('[relax]\ninhale_exhale = "1:0"\n', "[relax] inhale_exhale"),
    "relax-resonance-text": ('[relax]\nfind_resonance = "yes"\n', "[relax] find_resonance"),
}
CALIBRATION = ('[rest]\nduration_s = 4\nsettle_s = 1\n[reference]\ncount = 2\nhold_s = 3\nrelax_s = 2\ntrim_s = 0.5\n'
               'lead_in_s = 1\n[quality]\nmax_tries = 1\n')
BAD_CALIBRATIONS = {
    "count-1e9": (CALIBRATION.replace("count = 2", "count = 1e9"), "[reference] count"),
    "count-fraction": (CALIBRATION.replace("count = 2", "count = 2.5"), "[reference] count"),
    "hold-nan": (CALIBRATION.replace("hold_s = 3", "hold_s = nan"), "[reference] hold_s"),
    "rest-1e308": (CALIBRATION.replace("duration_s = 4", "duration_s = 1e308"), "[rest] duration_s"),
    "tries-1e9": (CALIBRATION.replace("max_tries = 1", "max_tries = 1e9"), "[quality] max_tries"),
    "rest-a-number": ("rest = 1\n" + CALIBRATION.split("[reference]")[1].join(["[reference]", ""]), "[rest]"),
    "mvc-enabled-text": (CALIBRATION + '[mvc]\nenabled = "yes"\n', "[mvc] enabled"),
    "not-toml": ("[rest\n", "not valid TOML"),
}
SESSION_ARGS = ["--virtual", "--headless", "--auto", "--answers", "all-clear"]


@pytest.mark.parametrize("case", BAD_PROTOCOLS)
def test_bad_protocol_names_file_and_field_before_sensors(case, tmp_path, capsys):
    text, field = BAD_PROTOCOLS[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    code, out, err = run(capsys, ["session", "--client", CLIENT, "--protocol", str(path), *SESSION_ARGS])
    line = error_line(code, err)
    assert path.name in line and field in line, line
    assert "connect" not in out + err.lower().replace("connected", "")


@pytest.mark.parametrize("case", BAD_RELAX_TABLES)
def test_bad_relax_table_names_file_and_field(case, tmp_path, capsys):
    text, field = BAD_RELAX_TABLES[case]
    shipped = Path(__file__).resolve().parents[1] / "protocols" / "home-relaxation.toml"
    doc = shipped.read_text()
    doc = "\n".join(line for line in doc.splitlines() if not line.startswith("[relax]"))  # our table instead
    path = tmp_path / f"{case}.toml"
    path.write_text(text + doc if text.startswith("relax =") else doc + "\n" + text)
    code, out, err = run(capsys, ["relax", "--client", CLIENT, "--protocol", str(path), "--minutes", "5",
                                  *SESSION_ARGS[:2], "--answers", "all-clear"]
                         if "minutes" not in case else
                         ["relax", "--client", CLIENT, "--protocol", str(path), *SESSION_ARGS[:2], "--answers",
                          "all-clear"])
    line = error_line(code, err)
    assert path.name in line and field in line, line


@pytest.mark.parametrize("case", BAD_CALIBRATIONS)
def test_bad_calibration_protocol_names_file_and_field(case, tmp_path, capsys):
    text, field = BAD_CALIBRATIONS[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    code, out, err = run(capsys, ["calibrate", "--client", CLIENT, "--virtual", "--auto", "--protocol", str(path)])
    line = error_line(code, err)
    assert path.name in line and field in line, line


SAVED_CALIBRATIONS = {
    "not-json": ("{{", "JSON"),
    "a-list": ("[1, 2]", "the file"),
    "rest-missing": (json.dumps({"rvc_rms_uv": [60, 70]}), "rest_rms_uv"),
    "rest-text": (json.dumps({"rest_rms_uv": ["a", "b"], "rvc_rms_uv": [60, 70]}), "rest_rms_uv[0]"),
    "rvc-zero": (json.dumps({"rest_rms_uv": [10, 12], "rvc_rms_uv": [0, 70]}), "rvc_rms_uv[0]"),
    "rvc-nan": ('{"rest_rms_uv": [10, 12], "rvc_rms_uv": [NaN, 70]}', "rvc_rms_uv[0]"),
    "rvc-empty": (json.dumps({"rest_rms_uv": [10, 12], "rvc_rms_uv": []}), "rvc_rms_uv"),
    "rvc-one-channel-short": (json.dumps({"rest_rms_uv": [10, 12], "rvc_rms_uv": [60]}), "rvc_rms_uv"),
    "mvc-text": (json.dumps({"rest_rms_uv": [10, 12], "rvc_rms_uv": [60, 70], "mvc_rms_uv": "x"}), "mvc_rms_uv"),
}


@pytest.mark.parametrize("command", ["session", "relax"])
@pytest.mark.parametrize("case", SAVED_CALIBRATIONS)
def test_bad_saved_calibration_names_file_and_field(case, command, home, capsys):
    text, field = SAVED_CALIBRATIONS[case]
    folder = home / "clients" / CLIENT / "calibration"
    folder.mkdir(parents=True)
    (folder / "20240101T000000Z.json").write_text(text)
    argv = ([command, "--client", CLIENT, "--protocol", "demo", *SESSION_ARGS] if command == "session" else
            [command, "--client", CLIENT, "--minutes", "5", *SESSION_ARGS[:2], "--answers", "all-clear"])
    code, out, err = run(capsys, argv)
    line = error_line(code, err)
    assert "20240101T000000Z.json" in line and field in line, line


DIARIES = {
    "not-json": ("[{", "JSON"),
    "a-table": ("{}", "the diary"),
    "entry-a-number": ("[1]", "entry 0"),
    "date-missing": (json.dumps([{"intensity": 3, "duration_h": 1}]), "entry 0"),
    "date-wrong": (json.dumps([{"date": "yesterday", "intensity": 3, "duration_h": 1}]), "entry 0 date"),
    "intensity-text": (json.dumps([{"date": "2024-01-01", "intensity": "bad", "duration_h": 1}]), "entry 0 intensity"),
    "intensity-nan": ('[{"date": "2024-01-01", "intensity": NaN, "duration_h": 1}]', "entry 0 intensity"),
    "duration-huge": (json.dumps([{"date": "2024-01-01", "intensity": 3, "duration_h": 1e308}]), "entry 0 duration_h"),
    "medication-number": (json.dumps([{"date": "2024-01-01", "intensity": 3, "duration_h": 1, "medication": 5}]),
                          "entry 0 medication"),
}


@pytest.mark.parametrize("command", ["list", "add", "trend"])
@pytest.mark.parametrize("case", DIARIES)
def test_bad_diary_names_file_and_entry(case, command, home, capsys):
    text, field = DIARIES[case]
    folder = home / "clients" / CLIENT
    folder.mkdir(parents=True)
    diary = folder / "headache-diary.json"
    diary.write_text(text)
    argv = {"list": ["diary", "--client", CLIENT, "list"],
            "add": ["diary", "--client", CLIENT, "add", "--intensity", "3", "--duration-h", "1"],
            "trend": ["trend", "--client", CLIENT]}[command]
    code, out, err = run(capsys, argv)
    line = error_line(code, err)
    assert str(diary) in line and field in line, line
    assert diary.read_text() == text  # never rewritten over


def test_matrix_cases_name_distinct_problems():
    """Each table's cases are distinct: a copy-paste slip would test one case twice."""
    for table in (DAMAGED_META, DAMAGED_ROWS, BAD_PROTOCOLS, BAD_CALIBRATIONS, SAVED_CALIBRATIONS, DIARIES):
        values = [json.dumps(v, default=repr) for v in table.values()]
        assert len(set(values)) == len(values)
