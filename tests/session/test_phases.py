"""The one phase machine, on its own: events and their times, whatever the ticks (no sensors, no clock)."""

from __future__ import annotations

import pytest

from biofeedback.session.phases import ENDED_EARLY, PhaseMachine
from biofeedback.session.protocol import protocol_from_doc

DOC = """
name = "unit"
[[techniques]]
key = "tp"
label = "trigger-point pressure"
[[techniques]]
key = "gb20"
label = "acupressure GB20"
[[phases]]
name = "baseline"
kind = "rest"
duration_s = 20
[[phases]]
name = "treatment"
kind = "treatment"
duration_s = 30
[[phases.script]]
at_s = 3
action = "technique"
technique = "tp"
[[phases.script]]
at_s = 3
action = "hands-on"
[[phases.script]]
at_s = 12.5
action = "hands-off"
[[phases.script]]
at_s = 20
action = "note"
text = "eased"
[[phases]]
name = "post"
kind = "rest"
duration_s = 20
"""


@pytest.fixture
def protocol(tmp_path):
    import tomllib

    return protocol_from_doc(tomllib.loads(DOC), tmp_path / "unit.toml")


class Log(list):
    def __call__(self, kind, t_s, label, duration_s=0.0, data=None):
        self.append((str(kind), round(t_s, 9), label, round(duration_s, 9)))


EXPECTED = [
    ("phase-start", 5.0, "baseline", 0.0),
    ("phase", 5.0, "baseline", 20.0),
    ("phase-start", 25.0, "treatment", 0.0),
    ("marker", 28.0, "technique: trigger-point pressure", 0.0),
    ("hands-on", 28.0, "hands on", 9.5),
    ("note", 45.0, "eased", 0.0),
    ("phase", 25.0, "treatment", 30.0),
    ("phase-start", 55.0, "post", 0.0),
    ("phase", 55.0, "post", 20.0),
]


@pytest.mark.parametrize("tick_s", [0.05, 0.7, 3.3, 100.0])
def test_unattended_events_fall_at_their_scripted_times_however_often_it_is_ticked(protocol, tick_s):
    log = Log()
    m = PhaseMachine(protocol, log, auto=True)
    m.start(0, 5.0)
    t = 5.0
    while not m.finished:
        t += tick_s
        m.tick(t)
    assert log == EXPECTED
    assert m.history == {0: (5.0, 25.0), 1: (25.0, 55.0), 2: (55.0, 75.0)}


def test_a_phase_start_is_written_before_the_phase_ends(protocol):
    """A session killed mid-phase must still know its phase: ``phase-start`` comes at the start."""
    log = Log()
    m = PhaseMachine(protocol, log, auto=True)
    m.start(0, 0.0)
    m.tick(10.0)
    assert log == [("phase-start", 0.0, "baseline", 0.0)]


def test_attended_dashboard_waits_for_the_next_phase_and_takes_clicks_at_their_time(protocol):
    log = Log()
    m = PhaseMachine(protocol, log, auto=False)  # no chain: the therapist starts each phase
    m.start(0, 1.0)
    m.tick(40.0)
    assert m.phase is None and m.history[0] == (1.0, 21.0)  # ended at its planned length, not at the late tick
    m.tick(60.0)
    assert m.phase is None and not m.finished
    m.start(1, 61.0)
    m.hands(62.0)
    m.technique(63.0, 2)
    m.technique(63.5, 9)  # no technique 9: nothing
    m.note(64.0, "  ")  # empty note: nothing
    m.tick(70.0)  # attended: scripted markers are not applied
    m.finish(70.0)
    assert log[2:] == [
        ("phase-start", 61.0, "treatment", 0.0),
        ("marker", 63.0, "technique: acupressure GB20", 0.0),
        ("hands-on", 62.0, "hands on", 8.0),
        ("phase", 61.0, "treatment", 9.0),
        ("marker", 70.0, ENDED_EARLY, 0.0),
    ]
    assert m.finished and m.guidance == "acupressure GB20"


def test_enter_moves_on_and_a_finish_after_every_phase_is_not_early(protocol):
    log = Log()
    m = PhaseMachine(protocol, log, chain=True)
    m.start(0, 0.0)
    m.next(4.0)
    m.next(9.0)
    m.tick(29.0)  # post ends at its planned 20 s and the session is over
    assert m.finished and [e for e in log if e[0] == "phase"] == [
        ("phase", 0.0, "baseline", 4.0), ("phase", 4.0, "treatment", 5.0), ("phase", 9.0, "post", 20.0)]
    assert not any(e[2] == ENDED_EARLY for e in log)


def test_listeners_hear_each_start_and_end_once(protocol):
    heard = []
    m = PhaseMachine(protocol, Log(), auto=True)
    m.listeners.append(lambda phase, t, started: heard.append((phase.name, t, started)))
    m.start(0, 0.0)
    m.tick(1000.0)
    assert heard == [("baseline", 0.0, True), ("baseline", 20.0, False), ("treatment", 20.0, True),
                     ("treatment", 50.0, False), ("post", 50.0, True), ("post", 70.0, False)]


def test_a_click_handled_after_the_machine_moved_on_never_runs_a_phase_backwards(protocol):
    """At --speed 20 one tick is a session second: Enter pressed at 19.9 s may be handled after the baseline already
    ended at its planned 20 s and the treatment started. It then ends the treatment at its start, not before it."""
    log = Log()
    m = PhaseMachine(protocol, log, auto=True)
    m.start(0, 0.0)
    m.tick(20.5)
    m.next(19.9)
    phases = [e for e in log if e[0] == "phase"]
    assert phases == [("phase", 0.0, "baseline", 20.0), ("phase", 20.0, "treatment", 0.0)]
    assert all(d >= 0 for *_, d in log) and m.started_s == 20.0


def test_keys_before_the_first_phase_start_it_or_end_the_session(protocol):
    from types import SimpleNamespace

    from biofeedback.cli.terminal import _key
    from biofeedback.session.keys import Key

    log = Log()
    run = SimpleNamespace(machine=PhaseMachine(protocol, log, chain=True), plan=SimpleNamespace(protocol=protocol))
    _key(run, Key(1.0, "h"))  # the sensors are still connecting: no hands-on before any phase
    assert log == [] and not run.machine.started
    _key(run, Key(2.0, "\n"))  # Enter starts the baseline now
    assert log == [("phase-start", 2.0, "baseline", 0.0)]
    _key(run, Key(3.0, "q"))
    assert run.machine.finished and log[-1] == ("marker", 3.0, ENDED_EARLY, 0.0)
