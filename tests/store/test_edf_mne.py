"""MNE reads the EDF+ export as it is: typed channels, the session's bad stretches, each annotation once.

MNE takes a channel's type from its EDF+ label only with ``infer_types=True`` (``mne/io/edf/edf.py``: a label
"<TYPE> <name>" with TYPE one of its known types; without it every channel is EEG). That is how MNE reads typed
labels, not a workaround: the labels follow the EDF+ convention, and the test reads them that way.
"""

from __future__ import annotations

from collections import Counter

import mne
import numpy as np

from biofeedback.analysis import BAD_ACQ_SKIP, BAD_CONTACT, BAD_HANDS_ON, load_session
from biofeedback.store import SessionWriter, export_session
from biofeedback.stream import NS_PER_S, Block, BlockFlag, Gap
from biofeedback.vocab import EventKind

EMG_RATE_HZ, EMG_BLOCK = 512.0, 64
"""Binary-exact sample times: a block is 0.125 s."""
ECG_RATE_HZ, ECG_BLOCK = 130.0, 65
CONTACT_LOST = ((5.0, 6.0), (12.5, 13.0))
"""EMG blocks (start, end) flagged as lost skin contact, session seconds."""
EMG_GAP = (8.0, 9.0)
HANDS_ON = (15.0, 2.0)
"""Onset and duration, session seconds."""
SECONDS = 20.0
RR_MS = 800.0


def _session(path):
    rng = np.random.default_rng(3)
    with SessionWriter(path, {"client_id": "M001", "utc_anchor": 1.7e9, "protocol": "trapezius-release"}) as w:
        for i0 in range(0, int(SECONDS * EMG_RATE_HZ), EMG_BLOCK):
            t0 = i0 / EMG_RATE_HZ
            if EMG_GAP[0] <= t0 < EMG_GAP[1]:
                continue
            lost = any(a <= t0 < b for a, b in CONTACT_LOST)
            w.add_block(Block("emg", "open-emg", int(t0 * NS_PER_S), rng.normal(0.0, 20.0, (EMG_BLOCK, 2)),
                              rate_hz=EMG_RATE_HZ, first_index=i0, flags=BlockFlag.SENSOR_CONTACT_LOST if lost else 0,
                              channels=("left_trapezius", "right_trapezius")), t0)
        w.add_gap(Gap("emg", "open-emg", *EMG_GAP, "disconnect", int(EMG_RATE_HZ)))
        for i0 in range(0, int(SECONDS * ECG_RATE_HZ), ECG_BLOCK):
            t0 = i0 / ECG_RATE_HZ
            w.add_block(Block("ecg", "h10", int(t0 * NS_PER_S), rng.normal(0.0, 300.0, (ECG_BLOCK, 1)),
                              rate_hz=ECG_RATE_HZ, first_index=i0, channels=("ecg",)), t0)
        beats = np.arange(0.8, SECONDS, RR_MS / 1000)
        for t in beats:  # the strap's RR stream as well as the beats: the two once gave two annotations a beat
            w.add_block(Block("rr", "h10", int(t * NS_PER_S), np.array([[RR_MS]])), None)
        w.add_beats("h10", beats, np.full(beats.size, RR_MS), np.full(beats.size, RR_MS), np.zeros(beats.size))
        w.add_event(EventKind.HANDS_ON, HANDS_ON[0], "hands on", HANDS_ON[1])
        w.add_event(EventKind.PHASE, 0.0, "baseline", 10.0, {"kind": "rest"})
        w.add_event(EventKind.PHASE, 10.0, "post", 10.0, {"kind": "rest"})
        w.add_event(EventKind.MARKER, 3.0, "pain 4/10")
    return path, beats


def test_mne_reads_types_bad_stretches_and_each_annotation_once(tmp_path):
    path, beats = _session(tmp_path / "m.bfsession")
    (edf,) = export_session(path, "edf", tmp_path / "out")
    raw = mne.io.read_raw_edf(edf, preload=True, infer_types=True, verbose="error")
    assert dict(zip(raw.ch_names, raw.get_channel_types())) == {
        "L-trapezius": "emg", "R-trapezius": "emg", "1": "ecg"}
    assert raw.info["sfreq"] == EMG_RATE_HZ
    a = raw.annotations
    rows = [(round(o, 6), round(d, 6), t) for o, d, t in zip(a.onset, a.duration, a.description)]
    assert not [r for r, n in Counter(rows).items() if n > 1]
    rr = [(o, t) for o, _, t in rows if t.startswith("RR ")]
    assert len(rr) == beats.size and {t for _, t in rr} == {f"RR {RR_MS:g} ms"}  # one per beat
    assert not [t for *_, t in rows if t.split(" ")[0] in ("HR", "RR:", "rr")]
    assert ("marker: pain 4/10") in a.description and "phase: baseline" in a.description

    # The bad stretches are the analysis container's, in MNE's words (MNE counts BAD_* as bad segments).
    def stretches(description: str) -> list[tuple[float, float]]:
        return [(o, d) for o, d, t in rows if t.split(":")[0].split(" ")[0] == description]

    expected = load_session(path).annotations
    for description in (BAD_CONTACT, BAD_HANDS_ON):
        want = [(round(x.onset_s, 6), round(x.duration_s, 6)) for x in expected if x.description == description]
        assert stretches(description) == want, description
    assert stretches(BAD_CONTACT) == [(a, round(b - a - 0.5 / EMG_RATE_HZ, 6)) for a, b in CONTACT_LOST]
    gaps = [(o, d) for o, d, t in rows if t.startswith(f"{BAD_ACQ_SKIP} gap emg/open-emg")]
    assert gaps == [(EMG_GAP[0], EMG_GAP[1] - EMG_GAP[0])]
    good = raw.get_data(picks="emg", reject_by_annotation="omit")
    assert good.shape[1] < raw.n_times - (EMG_GAP[1] - EMG_GAP[0] + HANDS_ON[1] + 1.4) * EMG_RATE_HZ


def test_without_infer_types_mne_calls_every_channel_eeg(tmp_path):
    """MNE's rule, stated so the first test's ``infer_types=True`` is seen to be needed, not a habit."""
    path, _ = _session(tmp_path / "m.bfsession")
    (edf,) = export_session(path, "edf", tmp_path / "out")
    raw = mne.io.read_raw_edf(edf, preload=False, verbose="error")
    assert set(raw.get_channel_types()) == {"eeg"} and "EMG L-trapezius" in raw.ch_names
