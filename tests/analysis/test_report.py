"""Reports, trends and the diary: rendered files (pictures saved under tests/_artifacts/analysis for a look),
a real virtual-sensor recording, and sessions that cannot be fully compared."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
import os
import re
import stat
from pathlib import Path

import pytest
from conftest import Script, write_session

from biofeedback.analysis import PRIMARY, compare, load_session
from biofeedback.analysis.diary import add_entry, read_diary
from biofeedback.analysis.report import figures, headlines, render_html, write_report
from biofeedback.analysis.trend import session_trend, trend_figure
from biofeedback.analysis.plots import emg_figure, png_bytes
from biofeedback.cli import main

ARTIFACTS = Path(__file__).resolve().parents[1] / "_artifacts" / "analysis"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
UNROUNDED = re.compile(r"(?<![\d.])(?:[1-9]\d*\.\d{3,}|0\.0*[1-9]\d{3,})")
"""A decimal number with four or more significant digits after its point: not rounded for a reader."""
PROTOCOL = (Path(__file__).resolve().parents[1] / "data" / "protocols" / "analysis-report.toml").read_text()
CALIBRATION = (Path(__file__).resolve().parents[1] / "data" / "calibration" / "test-quick.toml").read_text()


def _quiet(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        code = main(list(argv))
    return code, buf.getvalue()


@pytest.fixture(scope="module")
def virtual_recording(tmp_path_factory) -> Path:
    """A calibrated session recorded through the virtual BLE sensors (release scripted after treatment; the muscle
    activity alone, ``--virtual-body clean``, so that its 70-s phases always show the release the report is about)."""
    tmp = tmp_path_factory.mktemp("virtual")
    (tmp / "p.toml").write_text(PROTOCOL)
    (tmp / "c.toml").write_text(CALIBRATION)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BIOFEEDBACK_HOME", str(tmp / "home"))
        code, out = _quiet("calibrate", "--client", "V001", "--virtual", "--auto", "--speed", "20", "--protocol", str(tmp / "c.toml"),
                            "--virtual-body", "clean")
        assert code == 0, out
        code, out = _quiet("session", "--client", "V001", "--virtual", "--auto", "--speed", "20", "--protocol",
                           str(tmp / "p.toml"), "--answers", "all-clear", "--headless", "--virtual-body", "clean")
        assert code == 0, out
    (path,) = sorted((tmp / "home/clients/V001/sessions").glob("*.bfsession"))
    return path


def _save_pictures(name: str, pngs: dict[str, bytes]) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for key, png in pngs.items():
        assert png.startswith(PNG_MAGIC) and len(png) > 10_000, key
        (ARTIFACTS / f"{name}-{key}.png").write_bytes(png)


def pdf_pages(path: Path, name: str) -> list[str]:
    """Each page's text (pdfium's extraction); each page saved as PNG under tests/_artifacts/analysis for a look."""
    import pypdfium2

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    doc = pypdfium2.PdfDocument(path)
    try:
        texts = []
        for i in range(len(doc)):
            page = doc[i]
            page.render(scale=1.4).to_pil().save(ARTIFACTS / f"{name}-page{i + 1}.png")
            texts.append(page.get_textpage().get_text_range())
        return texts
    finally:
        doc.close()


def shown_text(page: str) -> str:
    """An HTML page without its embedded pictures."""
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)


def test_report_of_a_virtual_recording(virtual_recording, tmp_path, monkeypatch):
    out = tmp_path / "reports"
    monkeypatch.setenv("BIOFEEDBACK_HOME", str(virtual_recording.parents[3]))  # the client sheet reads V001's sessions
    code, text = _quiet("report", str(virtual_recording), "--html", "--pdf", "--json", "--out", str(out))
    assert code == 0, text
    assert "processing" in text  # progress went to stderr
    summary = json.loads(next(out.glob("*-report.json")).read_text())
    assert summary["tension_unit"] == "%RVC"
    assert summary["overall"]["label"] == "released", summary["overall"]["text"]
    tension = next(m for m in summary["metrics"] if m["key"] == PRIMARY)
    assert tension["change"] < -15 and tension["change_ci"][1] < 0
    assert "%RVC" in next(m for m in summary["metrics"] if m["key"].endswith("left_trapezius.rms_uv"))["levels"]
    assert summary["exclusions"]["baseline"]["beats_used"] > 60
    for f in out.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    left = next(m for m in summary["metrics"] if m["key"] == "emg.left_trapezius.rms_uv")
    pages = pdf_pages(next(out.glob("*-report.pdf")), "virtual-report")
    n = len(pages)
    assert n >= 3 and all(f"Page {i} of {n}" in t for i, t in enumerate(pages, 1))
    first = pages[0]
    # the therapist's page: the headline per side in plain words with its interval, traces, exclusions, sensors
    assert "Session summary" in first and "Researcher appendix" not in first
    assert f"Left shoulder: tension fell by {abs(left['change']):.0f} %" in " ".join(first.split())
    assert (f"most likely between {abs(left['change_ci'][1]):.0f} and {abs(left['change_ci'][0]):.0f} % lower"
            in " ".join(first.split()))
    assert "Right shoulder:" in first and "Markers and notes" in first and "trigger-point pressure" in first
    left_out = " ".join(first.split("Left out, and why")[1].split("Sensors")[0].split())
    assert re.search(r"(baseline|post): |nothing: every second", left_out), left_out
    assert "open-emg" in first and "virtual" in first  # the sensors as recorded
    assert "Researcher appendix" in pages[1]
    everything = "\n".join(pages)
    assert "µV" in everything and not re.search(r"(?<![A-Za-z])uV", everything)
    assert "{'" not in everything and not UNROUNDED.search(everything)  # no raw dicts, numbers rounded
    client = pdf_pages(next(out.glob("*-client.pdf")), "virtual-client")
    assert "Your session on" in client[0] and "Page 1 of" in client[0] and "your shoulders relaxed" in client[0]
    assert "Researcher" not in "".join(client) and "SDC" not in "".join(client)
    html_page = shown_text(next(out.glob("*-report.html")).read_text())
    assert "Left shoulder:" in html_page and "data:image" not in html_page
    data = load_session(virtual_recording)
    _save_pictures("virtual", figures(data, compare(data, n_boot=200)))


def test_marker_labels_on_the_traces_never_overlap(make_session):
    data = load_session(make_session(seed=3))
    close = [{"kind": "marker", "t_s": 130.0 + 1.5 * i, "duration_s": 0.0, "label": f"technique {i}", "data": None}
             for i in range(9)]
    data = dataclasses.replace(data, markers=close + data.markers)
    fig = emg_figure(data)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = [t for ax in fig.axes for t in ax.texts if t.get_gid() == "marker-label"]
    assert sorted(int(t.get_text()) for t in labels) == list(range(1, len(data.markers) + 1))
    boxes = [t.get_bbox_patch().get_window_extent(renderer) for t in labels]
    touching = [(labels[i].get_text(), labels[j].get_text()) for i in range(len(boxes)) for j in range(i)
                if boxes[i].overlaps(boxes[j])]
    assert touching == []
    _save_pictures("markers", {"emg": png_bytes(fig)})


def test_html_report_is_self_contained_with_every_plot(make_session):
    data = load_session(make_session(Script(emg_drop=0.3, rsa_gain=1.6), seed=11))
    c = compare(data, n_boot=300)
    pngs = figures(data, c)
    assert set(pngs) == {"emg", "heart", "bars", "tachogram"}
    _save_pictures("synthetic", pngs)
    page = render_html(c, data, pngs)
    assert page.count("data:image/png;base64,") == 4
    assert "src=\"http" not in page and "<link" not in page
    text = shown_text(page)
    left = c.metric("emg.left_trapezius.rms_uv")
    assert f"tension fell by {abs(left.change):.0f} %" in text
    assert "µV" in text and not re.search(r"(?<![A-Za-z])uV", text)
    assert "{'" not in text and not UNROUNDED.search(text)
    first = page.split("data:image/png;base64,")[1].split('"')[0]
    assert base64.b64decode(first).startswith(PNG_MAGIC)
    doc = c.to_dict()
    json.dumps(doc, allow_nan=False)
    for m in doc["metrics"]:
        assert {"a", "a_ci", "b", "b_ci", "change", "change_ci", "sdc", "effect_size", "verdict", "sentence"} <= set(m)


def test_too_short_session_says_what_cannot_be_judged(make_session, tmp_path):
    short = [("baseline", "rest", 20.0), ("treatment", "treatment", 20.0), ("post", "rest", 40.0)]
    data = load_session(make_session(Script(phases=short), seed=1))
    c = compare(data, n_boot=100)
    assert c.overall["label"] == "not comparable"
    # The 20-s baseline less the filters' warm-up (0.35 s) is clean: 20 s, below the 30 s a level needs.
    assert re.search(r"too little clean data in baseline \((19|20) s; needs 30 s\)", c.metric(PRIMARY).sentence)
    assert "too few clean beats in baseline" in c.metric("heart.rmssd_ms").sentence
    assert "neurokit2 HRV needs ≥ 60 s" in c.neurokit["baseline"]["note"]
    left, _, heart = headlines(c)  # in plain words, and why
    assert re.fullmatch(r"tension could not be compared: too little clean data in baseline \((19|20) s; needs 30 s\)\.",
                        left["text"]) and left["who"] == "Left shoulder:"
    assert heart["text"].startswith("heart-rate variability could not be compared: too few clean beats in baseline")
    assert write_report(data, c, tmp_path / "r", pdf_out=True)


def test_missing_sensor_and_missing_post_phase(make_session, tmp_path):
    heart_only = load_session(make_session(Script(emg=False, rsa_gain=1.6), seed=4))
    c = compare(heart_only, n_boot=300)
    assert any("no EMG sensor" in n for n in c.notes)
    assert c.overall["label"] == "not comparable"
    assert "Trapezius tension cannot be compared (no EMG in this recording)" in c.overall["text"]
    assert headlines(c)[0] == {"who": "Shoulders:", "text": "tension was not measured (no EMG in this recording).",
                               "verdict": ""}
    assert c.metric("heart.rmssd_ms").verdict == "rose"
    assert set(figures(heart_only, c)) == {"heart", "bars", "tachogram"}

    no_post = [("baseline", "rest", 90.0), ("treatment", "treatment", 60.0)]
    c = compare(load_session(make_session(Script(phases=no_post), seed=5, name="nopost.bfsession")), n_boot=200)
    assert any("no post-treatment rest phase" in n for n in c.notes)
    assert c.overall["label"] == "not comparable"
    m = c.metric(PRIMARY)
    assert m.a > 0 and m.verdict == "not available" and "no post phase" in m.sentence
    assert any("frequency-domain HRV needs ≥ 2 minutes" in n for n in c.neurokit["baseline"]["notes"])


def test_diary_is_private_and_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("BIOFEEDBACK_HOME", str(tmp_path))
    assert _quiet("diary", "--client", "C009", "add", "--intensity", "6", "--duration-h", "3", "--medication", "ibuprofen",
                  "--date", "2024-03-02")[0] == 0
    add_entry("C009", 2, 0.5, date="2024-03-01")
    path = tmp_path / "clients" / "C009" / "headache-diary.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [e["date"] for e in read_diary("C009")] == ["2024-03-01", "2024-03-02"]
    code, text = _quiet("diary", "--client", "C009", "list")
    assert code == 0 and "2024-03-02  intensity  6.0/10    3.0 h  ibuprofen" in text
    code, text = _quiet("diary", "--client", "C009", "add", "--intensity", "11", "--duration-h", "1")
    assert code == 2 and "--intensity must be 0-10" in text
    code, text = _quiet("diary", "--client", "C009", "add", "--intensity", "3", "--duration-h", "1", "--date", "2/3/24")
    assert code == 2 and "YYYY-MM-DD" in text
    assert not any(p.name.endswith(".part") for p in path.parent.iterdir())


def test_trend_across_sessions_with_diary(tmp_path, monkeypatch):
    monkeypatch.setenv("BIOFEEDBACK_HOME", str(tmp_path))
    folder = tmp_path / "clients" / "C010" / "sessions"
    folder.mkdir(parents=True)
    for k, drop in enumerate((0.3, 0.0, 0.25)):
        write_session(folder / f"2024030{k + 1}T100000Z.bfsession", Script(emg_drop=drop, rsa_gain=1.0 + drop * 2), 20 + k,
                      client="C010", utc=1.7093e9 + k * 86400 * 7)
    add_entry("C010", 7, 5, "ibuprofen", date="2024-03-03")
    add_entry("C010", 3, 1, date="2024-03-12")
    rows = session_trend("C010")
    assert [r["verdict"] for r in rows] == ["released", "no clear change", "released"]
    _save_pictures("trend", {"trend": png_bytes(trend_figure(rows, read_diary("C010")))})
    code, text = _quiet("trend", "--client", "C010", "--html", "--json", "--out", str(tmp_path / "out"))
    assert code == 0, text
    assert "headache diary:" in text and "ibuprofen" in text
    doc = json.loads((tmp_path / "out" / "C010-trend.json").read_text())
    assert len(doc["sessions"]) == 3 and len(doc["diary"]) == 2
    assert "data:image/png;base64," in (tmp_path / "out" / "C010-trend.html").read_text()


def test_report_command_errors_are_one_line(make_session):
    path = make_session(seed=1)
    code, text = _quiet("report", str(path), "--compare", "baseline", "after")
    assert code == 2
    assert text.strip().endswith("no phase 'after' in s1.bfsession; its phases are: baseline, treatment, post")
    code, text = _quiet("report", str(path.with_name("missing.bfsession")))
    assert code == 2 and "no session file" in text
    assert os.path.exists(path)


def test_pdf_without_pango_is_one_line_naming_what_to_install(make_session, tmp_path):
    """A machine without Pango: the system's library loader (cffi's dlopen, not ours) refuses every Pango name."""
    import subprocess
    import sys

    session = make_session(seed=2)
    out = tmp_path / "reports"
    script = ("import cffi.api as api\n"
              "load = api.FFI.dlopen\n"
              "def refuse(self, name, flags=0):\n"
              "    if 'pango' in str(name):\n"
              "        raise OSError(f'cannot load library {name!r}: No such file or directory')\n"
              "    return load(self, name, flags)\n"
              "api.FFI.dlopen = refuse\n"
              "from biofeedback.cli import main\n"
              f"raise SystemExit(main(['report', {str(session)!r}, '--pdf', '--html', '--out', {str(out)!r}]))\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert run.returncode == 2, run.stderr
    [line] = [x for x in run.stderr.splitlines() if not x.startswith("...")]
    assert line.startswith("biofeedback: error: PDF reports need the Pango text library")
    assert "apt install libpango-1.0-0" in line and "cannot load library" in line
    assert "-----" not in run.stdout + run.stderr  # WeasyPrint's own notice held back
    assert not out.exists()  # said before anything was written
