"""The live processor hands the heart sensor's beats to the EMG chain's cardiac artefact removal: a stream of EMG
blocks carrying real ECG (MIT-BIH 100) and RR blocks arriving 0.9 s after their beats, through a real ``StreamHub``,
gives the tension trace of the offline chain fed the whole recording and every beat at once."""

from __future__ import annotations

import numpy as np

from biofeedback.dsp import EmgProcessor
from biofeedback.dsp.cardiac import ARM_BEATS, CONFIRM_WAIT_S, CardiacMethod
from biofeedback.dsp.emg import SESSION_CARDIAC
from biofeedback.session.live import LiveProcessor
from biofeedback.stream import Block, SessionClock, StreamHub, StreamKind
from tests.dsp.test_cardiac import FS, emg_like, real_ecg

BLOCK = 20
RR_LAG_S = 0.9


def test_live_tension_with_late_rr_blocks_equals_the_offline_chain():
    seconds = 20.0
    ecg, beats = real_ecg(seconds, 60.0)
    x = np.stack([emg_like(seconds, 3.0, 21) + ecg, emg_like(seconds, 3.0, 22) + 0.6 * ecg], axis=1)
    hub = StreamHub(SessionClock())
    live = LiveProcessor(hub)
    sent = 0
    for start in range(0, x.shape[0], BLOCK):
        due = np.searchsorted(beats, start / FS - RR_LAG_S)
        if due > sent:  # an RR notification: the beats of the last stretch, with their times
            rr = np.diff(beats[max(sent - 1, 0):due]) * 1000.0
            hub.on_block(Block(StreamKind.RR, "strap", 0, np.c_[np.r_[np.full(due - sent - rr.size, 800.0), rr]],
                               times_s=beats[sent:due]))
            sent = due
        hub.on_block(Block(StreamKind.EMG, "emg", 0, x[start:start + BLOCK], rate_hz=FS, channels=("left", "right"),
                           times_s=np.arange(start, start + BLOCK) / FS))
    offline, _ = EmgProcessor(FS, channels=2, cardiac=SESSION_CARDIAC).rms_every(x, 1, beats_s=beats)
    t, trace = live.tension.snapshot()
    np.testing.assert_array_equal(t, np.arange(0, x.shape[0], 20) / FS)
    np.testing.assert_array_equal(trace[:, :2], offline[::20])
    report = live.cardiac_report()
    assert report["channels"] == ["left", "right"]
    assert report["methods"] == [str(CardiacMethod.TEMPLATE_HEART)] * 2
    # all but those before the template is armed (ARM_BEATS segments, each decided CONFIRM_WAIT_S after its beat)
    assert min(report["beats_subtracted"]) >= beats.size - ARM_BEATS - round(CONFIRM_WAIT_S * beats.size / seconds) - 2
