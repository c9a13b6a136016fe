"""Privacy of everything we write (issue 13, item 5), through the real commands.

Under umask 022, one fixture runs every command that writes: ``calibrate``, ``relax --audio-wav``, ``session``,
``diary add``, ``export`` in every format, ``report --html --pdf --json`` and ``trend --html --json``, the exports,
reports and trend with ``--shift-days`` (and once more without, as a control for the date scanner). Then:

* every file created is 0600 and every folder created 0700; a folder that existed keeps its mode, an earlier 0644
  file overwritten becomes 0600;
* no shifted output holds the real date in any common spelling (YYYY-MM-DD, YYYYMMDD, EDF's DD.MM.YY and
  DD-MMM-YYYY, unix times of the day) anywhere in its bytes, inside gzip, PDF streams and HDF5 attributes included,
  while the unshifted control outputs do (so the scanner sees each format).
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import re
import stat
import time
import zlib
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

from biofeedback.cli import main  # noqa: E402
from biofeedback.store import FORMATS, SessionReader  # noqa: E402
from tests.relax.conftest import protocol_text  # noqa: E402

SESSION_PROTOCOL = Path(__file__).resolve().parent / "data" / "protocols" / "session-short.toml"
SHIFT = 40
VIRTUAL = ["--virtual", "--speed", "20"]
"""20x, not 50x: at 50x, beside another test worker, this fixture failed once (its cause not captured; its calibration
and sessions then had about a third of a core per 50 session-seconds); this test is about files and dates, not speed."""


def _run(*argv: str) -> None:
    assert main(list(argv)) == 0, argv


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict:
    """Every writing command run once under umask 022; what existed before, and where each output went."""
    root = tmp_path_factory.mktemp("privacy")
    home, out = root / "home", root / "out"
    os.mkdir(out, 0o755)
    os.chmod(out, 0o755)  # a folder the user made: its mode is not ours to change
    (out / "given").mkdir(mode=0o755)
    os.chmod(out / "given", 0o755)
    existed = {root, out, out / "given"}
    relax_toml = root / "home-relaxation.toml"
    relax_toml.write_text(protocol_text(5, 20, 5))
    existed.add(relax_toml)
    before = time.time()
    old_umask = os.umask(0o022)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BIOFEEDBACK_HOME", str(home))
        try:
            _run("calibrate", "--client", "C001", *VIRTUAL, "--protocol", "quick", "--auto")
            _run("relax", "--client", "C001", *VIRTUAL, "--answers", "all-clear", "--headless", "--protocol",
                 str(relax_toml), "--audio-wav", str(out / "sound" / "relax.wav"))
            _run("session", "--client", "C001", *VIRTUAL, "--protocol", str(SESSION_PROTOCOL), "--auto",
                 "--answers", "all-clear", "--headless")
            _run("diary", "--client", "C001", "add", "--intensity", "5", "--duration-h", "2")
            session = max((home / "clients" / "C001" / "sessions").glob("*.bfsession"))
            for kind, shift in (("shifted", str(SHIFT)), ("control", "0")):
                for fmt in FORMATS:
                    _run("export", str(session), "--format", fmt, "--out", str(out / kind / "export" / fmt),
                         "--shift-days", shift)
                _run("report", str(session), "--html", "--pdf", "--json", "--out", str(out / kind / "report"),
                     "--shift-days", shift)
                _run("trend", "--client", "C001", "--html", "--json", "--out", str(out / kind / "trend"),
                     "--shift-days", shift)
            # into a folder the user made, twice: the second time over files the umask left 0644
            given = [("export", str(session), "--format", "csv", "--out", str(out / "given")),
                     ("report", str(session), "--json", "--html", "--out", str(out / "given"))]
            for argv in given:
                _run(*argv)
            overwritten = sorted((out / "given").iterdir())
            for f in overwritten:
                os.chmod(f, 0o644)
            for argv in given:
                _run(*argv)
        finally:
            os.umask(old_umask)
    with SessionReader(session) as reader:
        anchor = reader.meta["utc_anchor"]
    days = {dt.datetime.fromtimestamp(t, tz).date() for t in (anchor, before, time.time())
            for tz in (dt.timezone.utc, None)}  # the session's, the calibration's and the diary's, UTC and local
    return {"root": root, "existed": existed, "overwritten": overwritten, "out": out, "days": days,
            "session": session}


def test_every_file_written_is_0600_and_every_folder_created_0700_under_umask_022(outputs):
    root, existed = outputs["root"], outputs["existed"]
    seen = {"file": 0, "folder": 0}
    wrong = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path in existed:
                continue
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            kind = "folder" if path.is_dir() else "file"
            seen[kind] += 1
            if mode != (0o700 if kind == "folder" else 0o600):
                wrong.append(f"{kind} {path.relative_to(root)} is {mode:o}")
    assert not wrong, wrong
    names = {p.name for p in root.rglob("*")}
    # every kind of output is among them
    assert {"relax.wav", "device-salt", "headache-diary.json", "C001-trend.html", "C001-trend.json"} <= names
    assert any(n.endswith(".bfsession") for n in names) and any(n.endswith("-report.pdf") for n in names)
    assert any(n.endswith(".edf") for n in names) and any(n.endswith(".h5") for n in names)
    assert any(n.endswith(".tsv.gz") for n in names) and any(n.endswith("_events.csv") for n in names)
    assert len(list((root / "home" / "clients" / "C001" / "calibration").glob("*.json"))) == 1
    assert seen["file"] > 40 and seen["folder"] > 15
    # folders the user made keep their mode; files the umask left 0644 are 0600 once overwritten
    for folder in (outputs["out"], outputs["out"] / "given"):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o755
    assert outputs["overwritten"] and all(stat.S_IMODE(os.stat(f).st_mode) == 0o600 for f in outputs["overwritten"])
    # no leftovers of the sessions beside them
    sessions = root / "home" / "clients" / "C001" / "sessions"
    assert sorted(p.suffix for p in sessions.iterdir()) == [".bfsession", ".bfsession"]


def spellings(day: dt.date) -> list[bytes]:
    """The real date as outputs might spell it."""
    forms = {day.strftime(f) for f in ("%Y-%m-%d", "%Y%m%d", "%d.%m.%y", "%Y/%m/%d", "%d/%m/%Y", "%Y:%m:%d")}
    forms |= {day.strftime("%d-%b-%Y").upper(), day.strftime("%d-%b-%Y")}
    return sorted(f.encode() for f in forms)


_NUMBER = re.compile(rb"(?<![\d.])\d{10}(?:\.\d+)?(?![\d])|(?<![\d.])\d\.\d+e\+0?9(?![\d])")


def unix_times(data: bytes, day: dt.date) -> list[bytes]:
    """Numbers in ``data`` that are unix times of ``day`` (UTC), as decimal or scientific text."""
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()
    return [m.group(0) for m in _NUMBER.finditer(data) if start - 86400 <= float(m.group(0)) < start + 2 * 86400]


def layers(path: Path):
    """(what, bytes) of a file: its raw bytes, gunzipped, each PDF stream inflated and its text joined, HDF5
    attributes, names and string datasets."""
    data = path.read_bytes()
    yield "bytes", data
    if path.name.endswith(".gz"):
        yield "gzip header time", str(int.from_bytes(data[4:8], "little")).encode()
        yield "gunzip", gzip.decompress(data)
    if data.startswith(b"%PDF"):
        for m in re.finditer(rb"stream\r?\n(.*?)endstream", data, re.S):
            if b"/Image" in data[data.rfind(b"endobj", 0, m.start()):m.start()]:
                continue  # an image's pixels (its bytes are still scanned above)
            try:
                inflated = zlib.decompress(m.group(1))
            except zlib.error:
                continue
            yield "pdf stream", inflated
            yield "pdf text", b"".join(re.findall(rb"\(((?:[^()\\]|\\.)*)\)", inflated))
        import pypdfium2  # the laid-out text as a reader sees it (fonts may encode it as glyph numbers in the streams)

        doc = pypdfium2.PdfDocument(data)
        try:
            yield "pdf page text", "\n".join(doc[i].get_textpage().get_text_range() for i in range(len(doc))).encode()
        finally:
            doc.close()
    if path.suffix == ".h5":
        import h5py

        parts = []
        with h5py.File(path, "r") as f:
            def visit(name, obj):
                parts.append(name.encode())
                parts.extend(f"{k}={v!r}".encode() for k, v in obj.attrs.items())
                if isinstance(obj, h5py.Dataset) and obj.dtype.names:
                    parts.append(repr(obj[()]).encode())

            parts.extend(f"{k}={v!r}".encode() for k, v in f.attrs.items())
            f.visititems(visit)
        yield "hdf5 attributes", b"\n".join(parts)


def real_dates(folder: Path, days: set[dt.date]) -> list[str]:
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        places = [path.name.encode()]
        for what, data in [("file name", places[0]), *layers(path)]:
            for day in days:
                hits = [s for s in spellings(day) if s in data] + unix_times(data, day)
                found += [f"{path.relative_to(folder)} ({what}): {h.decode()}" for h in hits]
    return found


@pytest.mark.parametrize("output", ["export/edf", "export/csv", "export/bids", "export/hdf5", "report", "trend"])
def test_shift_days_leaves_the_real_date_nowhere(outputs, output):
    shifted = outputs["out"] / "shifted" / output
    assert any(shifted.rglob("*"))
    assert real_dates(shifted, outputs["days"]) == []
    # the control (no shift) holds it: the scanner sees this format
    assert real_dates(outputs["out"] / "control" / output, outputs["days"])
    # and the shifted date is there instead
    shifted_day = min(outputs["days"]) - dt.timedelta(days=SHIFT)
    assert real_dates(shifted, {shifted_day})


def test_shift_days_reaches_the_calibration_and_the_pdf(outputs):
    """The calibration's file name and time (in the metadata and the calibration event) are shifted with the rest,
    and the PDF names its (shifted) date, so the PDF check is not vacuous."""
    csv = outputs["out"] / "shifted" / "export" / "csv"
    meta = next(csv.glob("*_session.json")).read_text()
    events = next(csv.glob("*_events.csv")).read_text()
    assert '"calibration"' in meta and "calibration" in events
    shifted_day = (min(outputs["days"]) - dt.timedelta(days=SHIFT))
    pdf = next((outputs["out"] / "control" / "report").glob("*.pdf"))
    assert any(s in data for _, data in layers(pdf) for s in spellings(max(outputs["days"])) + spellings(
        min(outputs["days"])))
    assert shifted_day.strftime("%Y%m%d") in meta or shifted_day.strftime("%Y-%m-%d") in meta


READ_ONLY = (["trend", "--client", "C404"], ["diary", "--client", "C404", "list"], ["sessions", "--client", "C404"],
             ["sessions"], ["report", "latest", "--client", "C404"], ["export", "latest", "--client", "C404", "--format", "csv"])
"""Commands that only read (or fail for want of a session): for a client nobody has recorded, they create nothing."""


def test_read_only_commands_create_no_folder(tmp_path, monkeypatch, capsys):
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("BIOFEEDBACK_HOME", str(home))
    monkeypatch.chdir(work)
    for argv in READ_ONLY:
        assert main(argv) in (0, 2), argv
    out = capsys.readouterr()
    assert "no sessions recorded for client C404" in out.out and "no readable recorded session" in out.err
    assert not home.exists() and not any(work.iterdir())
    (home / "clients" / "C001").mkdir(parents=True)  # a data folder in use, another client in it
    for argv in READ_ONLY:
        main(argv)
    capsys.readouterr()
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == ["clients", "clients/C001"]
    assert not any(work.iterdir())


def test_reports_and_exports_go_to_the_clients_folder_not_the_working_directory(tmp_path, monkeypatch, capsys):
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("BIOFEEDBACK_HOME", str(home))
    monkeypatch.chdir(work)
    session = tmp_path / "example-demo.bfsession"
    session.write_bytes((Path(__file__).resolve().parents[1] / "recordings" / "example-demo.bfsession").read_bytes())
    assert main(["report", str(session), "--json"]) == 0
    assert main(["export", str(session), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    reports = home / "clients" / "demo" / "reports"  # the recording's client
    assert (reports / "example-demo-report.json").is_file() and f"wrote {reports / 'example-demo-report.json'}" in out
    assert any((reports / "example-demo-csv").glob("*_events.csv")) and f"to {reports / 'example-demo-csv'}" in out
    assert stat.S_IMODE(reports.stat().st_mode) == 0o700
    assert not any(work.iterdir())
    assert main(["report", str(session), "--json", "--out", "mine"]) == 0  # the working directory only when asked
    assert (work / "mine" / "example-demo-report.json").is_file()
