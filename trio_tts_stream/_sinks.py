"""Audio sinks: where decoded blocks go.

Every sink is a :class:`BufferedSink`: an async context manager around a ring buffer
(:class:`~._ringbuffer.Playout`). The player writes blocks with
:meth:`AudioSink.write_some` / :meth:`AudioSink.wait_writable` and drives the gate
(:meth:`~AudioSink.play`, :meth:`~AudioSink.end_of_data`, :meth:`~AudioSink.abort`);
the sink's consumer takes frames out at its own pace:

* :class:`SoundDeviceSink` (:mod:`._portaudio`): a PortAudio callback stream (the real
  speaker). The callback runs on PortAudio's thread and only calls ``Playout.fill``.
* :class:`NullSink` (here): a trio task that consumes one block per block period on
  trio's clock and discards it: a speaker without a sound card (benchmarks, autojump
  tests), and the smallest example of a :class:`BufferedSink` subclass.
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

import numpy as np
import trio

from ._exceptions import AudioDeviceError
from ._format import AudioFormat
from ._portaudio import SoundDeviceSink, import_sounddevice, portaudio_errors
from ._ringbuffer import Playout
from ._sinkbase import AudioSink, BufferedSink
from ._wavsink import WavFileSink

__all__ = [
    "AudioSink",
    "BufferedSink",
    "NullSink",
    "SoundDeviceSink",
    "WavFileSink",
    "import_sounddevice",
    "portaudio_errors",
]


class NullSink(BufferedSink):
    """Discards audio, consuming it in real time on trio's clock.

    A speaker without a sound card: the same gate, underrun and timing behaviour as a
    real device with zero output latency, driven by a trio task, so it is exact under
    ``trio.testing.MockClock(autojump_threshold=0)``.

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
        self._cancel: trio.CancelScope | None = None

    async def _start_consumer(self, fmt: AudioFormat, playout: Playout) -> None:
        if self._nursery is None:
            raise AudioDeviceError("use NullSink as `async with NullSink() as sink:`")
        playout.wake = self._on_wake
        playout.same_thread = True
        self._cancel = await self._nursery.start(self._consume, playout)

    async def _consume(
        self, playout: Playout, task_status: trio.TaskStatus[trio.CancelScope]
    ) -> None:
        with trio.CancelScope() as scope:
            out = np.zeros((self.block_frames, playout.ring.channels), dtype=playout.ring.dtype)
            period = self.block_frames / playout.sample_rate
            tick = trio.current_time()
            task_status.started(scope)
            while True:
                playout.fill(out, tick)
                tick += period
                await trio.sleep_until(tick)

    async def _stop_consumer(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()
            self._cancel = None
        await trio.lowlevel.checkpoint()
