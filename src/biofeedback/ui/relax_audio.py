"""Sound for the relaxation window: a ``QAudioSink`` pulling 16-bit mono PCM from ``relax.audio.FeedbackSynth``.

No sound device (a CI machine, a muted laptop without output): the window stays silent and says so in
one line; it never fails because of sound.
"""

from __future__ import annotations

import sys

from PySide6 import QtCore

from biofeedback.relax.audio import FeedbackSynth, to_pcm16

BUFFER_S = 0.1
"""Sink buffer: short, so the tone follows tension within about a tenth of a second."""


class SynthDevice(QtCore.QIODevice):
    """A read-only device that renders as much audio as the sink asks for."""

    def __init__(self, synth: FeedbackSynth) -> None:
        super().__init__()
        self.synth = synth

    def readData(self, maxlen: int) -> bytes:  # noqa: N802 - Qt's name
        n = max(0, min(maxlen // 2, int(self.synth.rate_hz * BUFFER_S)))
        return to_pcm16(self.synth.render(n)) if n else b""

    def writeData(self, data) -> int:  # noqa: N802 - Qt's name
        return -1

    def bytesAvailable(self) -> int:  # noqa: N802 - Qt's name
        return 4096 + super().bytesAvailable()

    def isSequential(self) -> bool:  # noqa: N802 - Qt's name
        return True


class AudioOut:
    """Plays a synthesiser on the default output; ``ok`` is False (and ``notice`` says why) without one."""

    def __init__(self, synth: FeedbackSynth, notice=lambda text: print(text, file=sys.stderr)) -> None:
        self.synth, self.ok, self.sink, self.device = synth, False, None, None
        try:
            try:
                from PySide6 import QtMultimedia
            except ImportError as exc:
                raise RuntimeError(f"Qt Multimedia could not load ({exc}); it comes with PySide6-Addons and needs "
                                   "the system's sound libraries (PulseAudio or PipeWire on Linux)") from None
            out = QtMultimedia.QMediaDevices.defaultAudioOutput()
            if out.isNull():
                raise RuntimeError("no sound output device")
            fmt = QtMultimedia.QAudioFormat()
            fmt.setSampleRate(synth.rate_hz)
            fmt.setChannelCount(1)
            fmt.setSampleFormat(QtMultimedia.QAudioFormat.SampleFormat.Int16)
            if not out.isFormatSupported(fmt):
                raise RuntimeError(f"the sound device does not play {synth.rate_hz} Hz mono 16-bit")
            self.sink = QtMultimedia.QAudioSink(out, fmt)
            self.sink.setBufferSize(int(synth.rate_hz * BUFFER_S) * 2)
            self.device = SynthDevice(synth)
            self.device.open(QtCore.QIODevice.OpenModeFlag.ReadOnly)
            self.sink.start(self.device)
            # Qt 6.7+ reports QtAudio.Error (QAudio.Error before): compare by name, which both share.
            if self.sink.error().name != "NoError":
                raise RuntimeError(f"the sound device failed ({self.sink.error().name})")
            self.ok = True
        except Exception as exc:  # noqa: BLE001 - any sound failure means: go on silently, say so once
            self.stop()
            notice(f"sound off: {exc}; the feedback is shown on screen only")

    def stop(self) -> None:
        if self.sink is not None:
            self.sink.stop()
        if self.device is not None:
            self.device.close()
        self.sink = self.device = None
