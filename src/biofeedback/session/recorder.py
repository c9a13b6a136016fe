"""The recorder: listens on a ``StreamHub`` and writes everything of a session into a ``SessionWriter``."""

from __future__ import annotations

import numpy as np

from biofeedback.dsp import LiveHrv
from biofeedback.store import SessionWriter, device_alias
from biofeedback.stream import Block, Gap, StreamHub, StreamKind


class Recorder:
    """Writes every block, gap and beat (raw and corrected RR with flags) of a hub, plus session events.

    Beats are corrected by ``dsp.LiveHrv`` (Lipponen & Tarvainen), which decides a beat once five more
    have arrived; ``close`` writes the beats still held. A gap in a beat stream flushes and restarts
    its corrector, so no correction spans a gap.
    """

    def __init__(self, writer: SessionWriter, hub: StreamHub) -> None:
        self.writer = writer
        self.hub = hub
        self._hrv: dict[str, LiveHrv] = {}
        self._closed = False
        self._detach = hub.listen(self.on_block, self.on_gap)

    def on_block(self, block: Block) -> None:
        self.writer.add_block(block, None if block.times_s is None else float(block.times_s[0]))
        if block.stream == StreamKind.RR and block.times_s is not None and block.n:
            hrv = self._hrv.setdefault(block.source, LiveHrv())
            self._write_beats(block.source, hrv.add_beats(np.asarray(block.times_s), block.data[:, 0]))

    def on_gap(self, gap: Gap) -> None:
        self.writer.add_gap(gap)
        if gap.stream == StreamKind.RR and gap.source in self._hrv:
            hrv = self._hrv[gap.source]
            self._write_beats(gap.source, hrv.flush())
            hrv.reset()

    def _write_beats(self, source: str, decided) -> None:
        if decided:
            self.writer.add_beats(source, [m.time_s for m in decided], [m.rr_raw_ms for m in decided],
                                  [m.rr_ms for m in decided], [m.flag for m in decided])

    def event(self, kind: str, t_s: float, label: str, duration_s: float = 0.0, data: dict | None = None) -> None:
        self.writer.add_event(kind, t_s, label, duration_s, data)

    def record_devices(self, sources) -> None:
        """Device info of each source (profile, model, firmware; the address only as a salted alias)."""
        self.writer.set_meta("devices", [
            {"source": s.name, "profile": s.profile.name, "alias": device_alias(s.device.address),
             "device_info": dict(s.status.device_info), "virtual": bool(getattr(s.backend, "virtual", False))}
            for s in sources
        ])

    def close(self) -> None:
        """Detach from the hub, write held beats and close the file; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._detach()
        try:
            for source, hrv in self._hrv.items():
                self._write_beats(source, hrv.flush())
        finally:
            self.writer.close()
