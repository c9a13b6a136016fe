"""A live Lab Streaming Layer outlet of a running session: raw and derived streams and the session's events.

LSL is how research labs put physiological streams, stimuli and other devices on one clock (LabRecorder records
them to XDF). ``LslOutlet`` is a network listener, so it runs only when the user asks (``--lsl``). It listens on the
session's hub, its one live processor and its events, and makes one outlet per stream when that stream's first data
arrive (rate and channels known then):

==========================  ===========  ==========================================  =========================
stream name                 type         channels (unit)                             rate
==========================  ===========  ==========================================  =========================
``biofeedback EMG``         EMG          one per trapezius side (µV)                 the sensor's (e.g. 1000 Hz)
``biofeedback ECG``         ECG          ECG (µV)                                    the sensor's nominal rate
``biofeedback RR``          RR           RR interval (ms), at each beat              irregular
``biofeedback tension``     Tension      tension index per side (µV, %RVC, ...)      the tension trace's (50 Hz)
``biofeedback HRV``         HRV          HR (bpm), RMSSD (ms), √SI (1/s)             irregular (decided beats)
``biofeedback markers``     Markers      ``kind: label`` of each session event       irregular
==========================  ===========  ==========================================  =========================

Timestamps come from the session clock, put on LSL's clock (``pylsl.local_clock``) at the outlet's start:
``lsl_s = anchor + session_s / speed``, so at ``--speed 1`` a sample's LSL time is its arrival on the session clock
(device times already aligned by the drift fit), and at other speeds the wall time it was replayed at.
Every stream carries its channel labels, units and types in its ``desc`` (the XDF metadata conventions), and a
``source_id`` made from the client ID, so LabRecorder can pick a stream up again after a restart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from biofeedback.stream import Block, StreamKind

if TYPE_CHECKING:
    import pylsl

    from biofeedback.session.runner import SessionRun

NAME_PREFIX = "biofeedback"
HRV_CHANNELS = (("HR", "bpm"), ("RMSSD", "ms"), ("KubiosStressIndexSqrtSI", "1/s"))
"""The HRV stream's channels: the live processor's HRV ring columns."""


class LslOutlet:
    """LSL outlets for one ``SessionRun`` (create on the run's loop once its acquisition runs; ``close`` at the end)."""

    def __init__(self, run: SessionRun) -> None:
        import pylsl

        self._lsl = pylsl
        self.run = run
        self.speed = run.acq.clock.speed
        self.anchor_s = pylsl.local_clock() - run.acq.clock.now_s() / self.speed
        self.outlets: dict[str, pylsl.StreamOutlet] = {}
        self.source_id = f"{NAME_PREFIX}-{run.plan.client_id or 'monitor'}"
        self._detach = run.acq.hub.listen(self.on_block)
        run.live.trace_listeners.append(self.on_trace)
        run.event_listeners.append(self.on_event)

    def close(self) -> None:
        """Stop listening and withdraw the outlets."""
        self._detach()
        for listeners, fn in ((self.run.live.trace_listeners, self.on_trace), (self.run.event_listeners, self.on_event)):
            if fn in listeners:
                listeners.remove(fn)
        self.outlets.clear()  # pylsl withdraws an outlet when it is deleted

    def lsl_times(self, session_s) -> np.ndarray:
        return self.anchor_s + np.asarray(session_s, dtype=float) / self.speed

    def _outlet(self, key: str, kind: str, channels: list[tuple[str, str]], rate_hz: float, fmt: str = "float32"):
        outlet = self.outlets.get(key)
        if outlet is None:
            pylsl = self._lsl
            info = pylsl.StreamInfo(f"{NAME_PREFIX} {key}", kind, len(channels), rate_hz or pylsl.IRREGULAR_RATE, fmt,
                                    f"{self.source_id}-{key}")
            desc = info.desc()
            desc.append_child_value("manufacturer", "biofeedback")
            chans = desc.append_child("channels")
            for label, unit in channels:
                ch = chans.append_child("channel")
                ch.append_child_value("label", label)
                ch.append_child_value("unit", unit)
                ch.append_child_value("type", kind)
            outlet = self.outlets[key] = pylsl.StreamOutlet(info)
        return outlet

    def on_block(self, block: Block) -> None:
        if block.times_s is None or not block.n:
            return
        unit = StreamKind.UNITS.get(block.stream, "")
        if block.stream in (StreamKind.EMG, StreamKind.ECG) and block.rate_hz:
            channels = list(block.channels) or [f"{block.stream}{i + 1}" for i in range(block.data.shape[1])]
            outlet = self._outlet(block.stream.upper(), block.stream.upper(), [(c, unit) for c in channels],
                                  float(block.rate_hz))
        elif block.stream == StreamKind.RR:
            outlet = self._outlet("RR", "RR", [("RR", "ms")], 0.0)
        else:
            return
        outlet.push_chunk(np.ascontiguousarray(block.data, dtype=np.float32), self.lsl_times(block.times_s).tolist())

    def on_trace(self, name: str, t_s: np.ndarray, x: np.ndarray) -> None:
        """A derived stream's new rows from the live processor: 'tension' (per EMG channel) or 'hrv'."""
        if name == "tension":
            unit = self.run.live.index.unit
            outlet = self._outlet("tension", "Tension", [(c, unit) for c in self.run.live.emg_channels],
                                  self.run.live.trace_rate_hz)
        else:
            outlet = self._outlet("HRV", "HRV", list(HRV_CHANNELS), 0.0)
        outlet.push_chunk(np.ascontiguousarray(x, dtype=np.float32), self.lsl_times(t_s).tolist())

    def on_event(self, kind: str, t_s: float, label: str, duration_s: float) -> None:
        outlet = self._outlet("markers", "Markers", [("event", "")], 0.0, "string")
        text = f"{kind}: {label}" + (f" ({duration_s:.3f} s)" if duration_s else "")
        outlet.push_sample([text], float(self.lsl_times(t_s)))
