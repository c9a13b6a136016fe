"""The resonance finder on a virtual heart whose breathing-locked swing peaks at a known rate."""

from __future__ import annotations

import pytest

from biofeedback.relax.engine import RelaxSettings
from biofeedback.relax.resonance import ResonanceFinder
from biofeedback.sensors.virtual import HeartScript, Scenario
from biofeedback.store import SessionReader
from tests.relax.conftest import run_headless


@pytest.mark.parametrize("peak_bpm", [5.5])
def test_finder_picks_the_rate_with_the_largest_hr_oscillation(make_protocol, peak_bpm):
    relax_s = ResonanceFinder().duration_s() + 20
    proto = make_protocol(5, relax_s, 5)
    scenario = Scenario(devices=("hrs-strap",), heart=HeartScript.constant(70.0, rsa_ms=30.0))
    settings = RelaxSettings(find_resonance=True, virtual_resonance_bpm=peak_bpm)
    path, session = run_headless(proto, scenario, 40.0, settings)  # a heart strap alone keeps up at 40x
    finder = session.finder
    scores = {s.rate_bpm: s.oscillation_bpm for s in finder.steps}
    assert finder.best_bpm == peak_bpm, scores
    assert all(s.breaths >= 3 for s in finder.steps), scores
    assert scores[peak_bpm] > 1.1 * max(v for r, v in scores.items() if r != peak_bpm), scores
    assert session.pacer.rate_at(session.finder.end_s + 15) == peak_bpm  # the rest of the relaxation at that rate
    with SessionReader(path) as r:
        found = [e for e in r.events("marker") if "resonance" in (e["data"] or {})]
        assert r.meta["relax"]["find_resonance"] is True
    assert len(found) == 1 and found[0]["data"]["resonance"]["best_bpm"] == peak_bpm
