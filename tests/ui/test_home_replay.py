"""The replay's clock under the replay controls: pause holds session time, resume goes on from there, a seek jumps
ahead (never back), at any speed."""

from __future__ import annotations

import time

import pytest

from biofeedback.sensors.replay import ReplayClock
from biofeedback.ui.replay_controls import clock_text

WALL_S = 0.05


@pytest.mark.parametrize("speed", [1.0, 8.0])
def test_pause_resume_and_seek_ahead(speed):
    clock = ReplayClock(speed)
    time.sleep(WALL_S)
    clock.pause()
    held = clock.now_s()
    assert held >= WALL_S * speed and clock.paused
    time.sleep(WALL_S)
    assert clock.now_s() == held
    assert clock.seek_s(held + 30.0) == pytest.approx(held + 30.0, abs=1e-9) and clock.paused
    assert clock.seek_s(1.0) == pytest.approx(held + 30.0, abs=1e-9)  # never back
    clock.resume()
    t0 = time.monotonic()
    time.sleep(WALL_S)
    ran_s = (time.monotonic() - t0) * speed
    assert held + 30.0 + 0.9 * ran_s <= clock.now_s() <= held + 30.0 + ran_s + 0.02 * speed
    now = clock.now_s()
    assert clock.seek_s(now + 100.0) >= now + 100.0 and not clock.paused
    assert clock.wall_seconds(speed) == pytest.approx(1.0)


def test_clock_text():
    assert [clock_text(t) for t in (0, 59.9, 61, 3600)] == ["0:00", "0:59", "1:01", "60:00"]
