"""One name and one unit per stress quantity: the dashboard (offscreen: tile captions, plot title, legend), the
report of a recorded session (HTML and JSON) and every export say the same as ``dsp.HEART_QUANTITIES``, and
never a bare "stress index" that could be either Baevsky's SI (1/s²) or its square root (1/s)."""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from biofeedback.analysis import compare, load_session  # noqa: E402
from biofeedback.analysis.report import render_html  # noqa: E402
from biofeedback.dsp import BAEVSKY_SI, HEART_QUANTITIES, KUBIOS_SI, PNS, SNS  # noqa: E402
from biofeedback.store import FORMATS, SessionWriter, export_session  # noqa: E402
from biofeedback.stream import NS_PER_S, Block  # noqa: E402
from biofeedback.vocab import EventKind  # noqa: E402

PROTOCOL = Path(__file__).resolve().parent / "data" / "protocols" / "dashboard-short.toml"
PHASES = (("baseline", "rest", 300.0), ("treatment", "treatment", 60.0), ("post", "rest", 300.0))


def bare_stress_names(text: str) -> list[str]:
    """Every 'stress index' in ``text`` that is not part of one of the quantities' full names."""
    for q in HEART_QUANTITIES:
        text = text.replace(q.name, "")
    return re.findall(r".{0,30}stress index.{0,30}", text, flags=re.IGNORECASE)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """A heart session as the recorder writes it: raw RR, the live corrector's RR and flags, three phases, and a
    minute of ECG (EDF+ needs a sampled signal)."""
    path = tmp_path_factory.mktemp("names") / "names.bfsession"
    rng = np.random.default_rng(0)
    rr, t = [], 1.0
    while t < sum(d for _, _, d in PHASES):
        r = 900 + 40 * np.sin(2 * np.pi * 0.25 * t) + 20 * np.sin(2 * np.pi * 0.1 * t) + rng.normal(0, 10)
        t += r / 1000.0
        rr.append(r)
    rr = np.array(rr)
    with SessionWriter(path, {"client_id": "N001", "utc_anchor": 1.7e9}) as w:
        w.add_beats("polar-h10", np.cumsum(rr) / 1000.0 + 1.0, rr, rr, np.zeros(rr.size, dtype=int))
        for i0 in range(0, 60 * 130, 130):
            w.add_block(Block("ecg", "polar-h10", int(i0 / 130 * NS_PER_S), rng.normal(0, 50, (130, 1)), rate_hz=130.0,
                              first_index=i0, channels=("ecg",)), i0 / 130)
        start = 0.0
        for name, kind, dur in PHASES:
            w.add_event(EventKind.PHASE, start, name, dur, {"kind": kind})
            start += dur
    return path


def test_dashboard_names_the_live_value_kubios_si_with_its_unit(qtbot, tmp_path):
    from biofeedback.sensors.profiles import load_profiles
    from biofeedback.session.protocol import load_protocol
    from biofeedback.session.runner import SessionPlan
    from biofeedback.ui.dashboard import Dashboard
    from biofeedback.ui.worker import start_worker

    (tmp_path / "p.toml").write_text(PROTOCOL.read_text(), encoding="utf-8")
    protocol = load_protocol(tmp_path / "p.toml")
    plan = SessionPlan("C001", protocol, True, 1.0, False, None, {"answers": {}, "source": "test"}, None)
    dash = Dashboard(start_worker(plan, load_profiles()), protocol)  # scans, never connects
    qtbot.addWidget(dash)
    try:
        caption = dash.captions["stress"].text()
        hrv = dash.plots["hrv"]
        title = hrv.titleLabel.text
        legend = [label.text for _, label in hrv.legend.items]
        texts = [caption, title, *legend, *(c.text() for c in dash.captions.values())]
        # The live value is √SI over the live window, shown raw: its name and unit on the tile and in the legend (the
        # plot's title, short enough for a 1366 px screen, names the window)
        assert KUBIOS_SI.label in caption and KUBIOS_SI.label in legend and "HRV over" in title
        for text in texts:
            assert not bare_stress_names(text), text
            assert BAEVSKY_SI.name not in text and PNS.name not in text and SNS.name not in text
    finally:
        dash.end_session()
        dash.worker.join(30.0)


def test_report_html_and_json_use_the_same_names_and_units(recorded):
    data = load_session(recorded)
    c = compare(data, n_boot=100)
    page = html.unescape(re.sub(r"data:image/png;base64,[^'\"]+", "", render_html(c, data, {})))
    doc = json.loads(json.dumps(c.to_dict()))
    by_key = {m["key"]: m for m in doc["metrics"]}
    for q in (BAEVSKY_SI, PNS, SNS):  # the report's per-phase quantities
        m = by_key[f"heart.{q.key}"]
        assert (m["label"], m["unit"]) == (q.name, q.unit)
        assert f"<td>{q.name}</td><td>{q.unit}</td>" in page
        assert m["sentence"].startswith(q.name)
    for q in HEART_QUANTITIES:  # every quantity is defined once, with its unit
        assert page.count(f"<b>{q.label}</b>") == 1
    assert not bare_stress_names(page)
    assert not bare_stress_names(json.dumps(doc, ensure_ascii=False))


def test_exports_hold_no_stress_quantity(recorded, tmp_path):
    # The exports carry raw and corrected RR, never a stress index; so none can name one differently.
    for fmt in FORMATS:
        written = export_session(recorded, fmt, tmp_path / fmt)
        assert written, fmt
        for path in written:
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            for f in files:
                data = f.read_bytes()
                assert b"stress" not in data.lower() and BAEVSKY_SI.unit.encode() not in data, f
