"""Audio sinks: where decoded blocks go.

Every sink is a :class:`BufferedSink`: an async context manager around a ring buffer
(:class:`~._ringbuffer.Playout`). The player writes blocks with
:meth:`AudioSink.write_some` / :meth:`AudioSink.wait_writable` and drives the gate
(:meth:`~AudioSink.play`, :meth:`~AudioSink.end_of_data`, :meth:`~AudioSink.abort`);
the sink's consumer takes frames out at its own pace:

* :class:`SoundDeviceSink` (:mod:`._portaudio`): a PortAudio callback stream (the real
  speaker). The callback runs on PortAudio's thread and only calls ``Playout.fill``.
* :class:`NullSink` (here): a trio task that consumes one block per block period on
  trio's clock (catching up when the loop was late, :mod:`._clocked`) and discards it:
  a speaker without a sound card (benchmarks, autojump tests).
* :class:`FrameSink` (:mod:`._framesink`): the same clock, handing each block as an
  encoded frame (int16, float32, G.711) to an async consumer: a network transport.
* :class:`WavFileSink` (:mod:`._wavsink`): writes a WAV file, in a worker thread, as
  the gate lets audio through, as fast as it comes.

:class:`AudioSink` (:mod:`._sinkbase`) is the protocol the player uses; a custom output
subclasses :class:`BufferedSink` and supplies only its consumer.

A sink outlives a single utterance: ``open(fmt)`` is a no-op when the format is
unchanged, frame positions (``frames_written`` / ``frames_played``) are monotonic over
the sink's life, and :meth:`~AudioSink.wait_heard` waits for one position, so several
utterances can be queued back to back on one open output stream.

Positions and time: ``mark(pos)`` asks the consumer to stamp when frame ``pos`` is
heard; :meth:`~AudioSink.heard_time` returns that moment on *trio's* clock.
``wait_heard(pos)`` returns once frame ``pos - 1`` has been heard in full, i.e. the
device's output latency has passed too; stopping a PortAudio stream earlier drops its
last 26-43 ms.
"""

from __future__ import annotations

from ._clocked import ClockedSink
from ._framesink import AudioFrame, FrameSink
from ._portaudio import SoundDeviceSink, import_sounddevice, portaudio_errors
from ._sinkbase import AudioSink, BufferedSink
from ._wavsink import WavFileSink

__all__ = [
    "AudioFrame",
    "AudioSink",
    "BufferedSink",
    "FrameSink",
    "NullSink",
    "SoundDeviceSink",
    "WavFileSink",
    "import_sounddevice",
    "portaudio_errors",
]


class NullSink(ClockedSink):
    """Discards audio, consuming it in real time on trio's clock.

    A speaker without a sound card: the same gate, underrun and timing behaviour as a
    real device with zero output latency, driven by a trio task, so it is exact under
    ``trio.testing.MockClock(autojump_threshold=0)``. When the event loop is late it
    catches up (consumes every block due by then at once) and counts the lateness
    (``statistics().late_blocks`` / ``max_late_ms``), so it stays real time under load.

    Args:
        buffer_s: Ring capacity in seconds.
        blocksize_ms: Consumer block length.
        dtype: Sample type of the ring (``"int16"`` or ``"float32"``).
        samplerate: Fixed output rate (streams are resampled to it); ``None``: the first
            stream's rate.
        channels: Fixed output channel count (mono is copied to every channel, more
            channels are mixed to mono); ``None``: the first stream's.
    """

    def __init__(
        self,
        *,
        buffer_s: float = 2.0,
        blocksize_ms: float = 20.0,
        dtype: str = "float32",
        samplerate: int | None = None,
        channels: int | None = None,
    ) -> None:
        super().__init__(
            buffer_s=buffer_s,
            dtype=dtype,
            blocksize_ms=blocksize_ms,
            samplerate=samplerate,
            channels=channels,
        )
