"""The recorder: listens on a ``StreamHub`` and writes everything of a session into a ``SessionWriter``."""

from __future__ import annotations

from biofeedback.dsp import BeatMetrics
from biofeedback.session.live import LiveProcessor
from biofeedback.store import SessionWriter, device_alias
from biofeedback.stream import Block, Gap, StreamHub


class Recorder:
    """Writes every block and gap of a hub, the beats the live processor decides (raw and corrected RR with flags),
    and session events.

    Beats are corrected once, by the session's ``LiveProcessor`` (``dsp.LiveHrv``, Lipponen & Tarvainen), which
    decides a beat once five more have arrived and flushes its corrector at a gap; the recorder writes what it
    decides. ``close`` closes the live processor first, so the beats still held are written.
    """

    def __init__(self, writer: SessionWriter, hub: StreamHub, live: LiveProcessor) -> None:
        self.writer = writer
        self.hub = hub
        self.live = live
        self._closed = False
        self._detach = hub.listen(self.on_block, self.on_gap)
        live.beat_listeners.append(self.add_beats)

    def on_block(self, block: Block) -> None:
        self.writer.add_block(block, None if block.times_s is None else float(block.times_s[0]))

    def on_gap(self, gap: Gap) -> None:
        self.writer.add_gap(gap)

    def add_beats(self, source: str, decided: list[BeatMetrics]) -> None:
        self.writer.add_beats(source, [m.time_s for m in decided], [m.rr_raw_ms for m in decided],
                              [m.rr_ms for m in decided], [m.flag for m in decided])

    def event(self, kind: str, t_s: float, label: str, duration_s: float = 0.0, data: dict | None = None) -> None:
        self.writer.add_event(kind, t_s, label, duration_s, data)

    def record_devices(self, sources) -> None:
        """Device info of each source (profile, model, firmware; the address only as a salted alias) and, per stream,
        how its clock behaved (e.g. a Polar H10's measured ECG rate and clock jumps: ``Driver.timing_report``)."""
        self.writer.set_meta("devices", [
            {"source": s.name, "profile": s.profile.name, "alias": device_alias(s.device.address),
             "device_info": dict(s.status.device_info), "virtual": bool(getattr(s.backend, "virtual", False)),
             "timing": {k: v for d in s.drivers for k, v in d.timing_report().items()}}
            for s in sources
        ])

    def close(self) -> None:
        """Detach from the hub, write held beats and what the EMG chain did about the cardiac artefact (meta
        ``cardiac``: ``LiveProcessor.cardiac_report``), and close the file; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._detach()
        try:
            self.live.close()
            cardiac = self.live.cardiac_report()
            if cardiac is not None:
                self.writer.set_meta("cardiac", cardiac)
        finally:
            self.writer.close()
