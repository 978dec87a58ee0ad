"""A sink for network transports: fixed-size encoded frames at real-time pace.

Theory of operation
-------------------
:class:`FrameSink` is a :class:`~._clocked.ClockedSink`: its consumer task fills one
frame-sized block from the ring every ``frame_ms`` on trio's clock (catching up when the
loop was late), so gates, underruns and their fades, barge-in fades, marks and "heard"
times are exactly those of the device sink, with the heard time of a frame being its due
time plus ``latency_ms``. Each block that carried audio is encoded (int16, float32 or
G.711, :mod:`._g711`) into an :class:`AudioFrame` and put in a bounded queue that the
transport's task drains with :meth:`FrameSink.receive` or ``async for``. The pace is the
clock's, never the consumer's: a consumer that takes a frame more than one frame after it
was due is counted (``late_frames``), and one that falls ``max_queue_ms`` behind loses
the oldest frames (``overflow_frames``) rather than making the audio late for ever.
Memory is bounded by the ring (``buffer_s``) plus ``max_queue_ms`` of frames.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import trio

from . import _g711
from ._clocked import ClockedSink
from ._exceptions import ConfigError
from ._format import AudioFormat

__all__ = ["ENCODINGS", "AudioFrame", "FrameSink"]

#: Frame encodings: linear int16 / float32 (native byte order, interleaved), and G.711.
ENCODINGS = ("int16", "float32", "mulaw", "alaw")

_G711_RATE = 8000


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """One frame of a :class:`FrameSink`.

    Attributes:
        data: The payload: interleaved samples in ``encoding`` (int16 and float32 in
            native byte order, G.711 one byte per sample).
        encoding: ``"int16"``, ``"float32"``, ``"mulaw"`` or ``"alaw"``.
        sample_rate: Frames per second.
        channels: Samples per frame instant.
        index: Frame number since the output opened; frames without audio (an idle
            output) are not sent unless ``idle_frames``, so numbers can jump.
        position: Sink position (:attr:`SinkStatistics.frames_played` scale) of the
            first sample: what ``mark`` / ``heard_time`` refer to.
        due: When the frame is due, on trio's clock (it is heard at ``due`` plus the
            sink's ``latency_ms``).
    """

    data: bytes
    encoding: str
    sample_rate: int
    channels: int
    index: int
    position: int
    due: float

    @property
    def frames(self) -> int:
        """Samples per channel in this frame."""
        width = 4 if self.encoding == "float32" else 2 if self.encoding == "int16" else 1
        return len(self.data) // (width * self.channels)

    @property
    def duration_s(self) -> float:
        """Seconds of audio in this frame."""
        return self.frames / self.sample_rate

    def samples(self) -> npt.NDArray[Any]:
        """The linear samples, shape ``(frames, channels)`` (int16 or float32).

        Raises:
            ValueError: The frame is G.711 (send its ``data`` as it is).
        """
        if self.encoding not in ("int16", "float32"):
            raise ValueError(f"a {self.encoding} frame has no linear samples")
        return np.frombuffer(self.data, dtype=self.encoding).reshape(-1, self.channels)


class FrameSink(ClockedSink):
    """Hands fixed-size encoded frames to an async consumer at real-time pace.

    For a telephone call or a WebRTC peer rather than a sound card. Use it as the
    ``sink`` of :func:`play`, a player or a speaker, and drain it in a task of your own::

        async with trio.open_nursery() as nursery, tts.FrameSink(encoding="mulaw") as sink:
            async def forward() -> None:
                async for frame in sink:
                    await websocket.send_message(base64.b64encode(frame.data).decode())
            nursery.start_soon(forward)
            await tts.play(request, sink=sink)

    Frames are produced on trio's clock, ``frame_ms`` apart, whether or not anyone
    takes them (see the module docstring for lateness and the queue's bound); positions,
    marks, heard times, underrun fades (``underrun_fade_ms`` = 5) and barge-in fades are
    those of :class:`SoundDeviceSink`, so a speaker's "what was heard" stays true. The
    iteration ends when the sink is closed and the queued frames are taken.

    Args:
        frame_ms: Frame length in ms (1-200; 20 is what media streams use).
        encoding: One of :data:`ENCODINGS`; ``"mulaw"`` and ``"alaw"`` are G.711 and
            need 8 kHz (the default rate for them).
        samplerate: Output rate (streams are resampled to it); ``None``: the first
            stream's rate (8000 for G.711).
        channels: Output channels (``None``: the first stream's; 1 for G.711).
        buffer_s: Ring capacity in seconds.
        max_queue_ms: Frames waiting for the consumer beyond this are dropped, oldest
            first, and counted (``overflow_frames``).
        latency_ms: The transport's delay from a frame's due time to the listener, added
            to heard times (0: heard when due).
        idle_frames: Also send frames of silence while nothing plays (a continuous
            stream); by default only frames that carry audio are sent (an underrun's
            gap and the fades around it count as audio only where they took some).

    Raises:
        ConfigError: An argument is out of range.
    """

    underrun_fade_ms = 5.0

    def __init__(
        self,
        *,
        frame_ms: float = 20.0,
        encoding: str = "int16",
        samplerate: int | None = None,
        channels: int | None = None,
        buffer_s: float = 2.0,
        max_queue_ms: float = 1000.0,
        latency_ms: float = 0.0,
        idle_frames: bool = False,
    ) -> None:
        if encoding not in ENCODINGS:
            raise ConfigError(f"encoding={encoding!r} is invalid: it must be one of {ENCODINGS}")
        if encoding in _g711.LAWS:
            if samplerate not in (None, _G711_RATE):
                raise ConfigError(
                    f"samplerate={samplerate!r} is invalid for {encoding}: G.711 is 8000 Hz"
                )
            samplerate = _G711_RATE
            channels = 1 if channels is None else channels
        if not (isinstance(max_queue_ms, (int, float)) and max_queue_ms >= frame_ms):
            raise ConfigError(
                f"max_queue_ms={max_queue_ms!r} is invalid: it must be at least frame_ms"
            )
        if not (isinstance(latency_ms, (int, float)) and 0 <= latency_ms <= 10_000):
            raise ConfigError(f"latency_ms={latency_ms!r} is invalid: it must be 0..10000")
        super().__init__(
            buffer_s=buffer_s,
            dtype="float32" if encoding == "float32" else "int16",
            blocksize_ms=frame_ms,
            samplerate=samplerate,
            channels=channels,
        )
        self.frame_ms = float(frame_ms)
        self.encoding = encoding
        self.max_queue_ms = float(max_queue_ms)
        self.idle_frames = idle_frames
        self._latency_s = latency_ms / 1000.0
        self._queue: collections.deque[AudioFrame] = collections.deque()
        self._max_queue = 1
        self._ready = trio.lowlevel.ParkingLot()
        self._ended = False

    async def _start_consumer(self, fmt: AudioFormat, playout: Any) -> None:
        self._max_queue = max(1, math.floor(self.max_queue_ms / self.frame_ms + 1e-9))
        await super()._start_consumer(fmt, playout)

    def _emit(
        self, block: npt.NDArray[np.generic], index: int, position: int, due: float, audio: bool
    ) -> None:
        if not (audio or self.idle_frames):
            return
        fmt = self.audio_format
        assert fmt is not None
        if self.encoding in _g711.LAWS:
            data = _g711.encode(block, self.encoding)  # type: ignore[arg-type]
        else:
            data = block.tobytes()
        if len(self._queue) >= self._max_queue:
            self._queue.popleft()
            self._require().overflow_frames += 1
        self._queue.append(
            AudioFrame(data, self.encoding, fmt.sample_rate, fmt.channels, index, position, due)
        )
        if self._ready:
            self._ready.unpark_all()

    # -- the transport's side ------------------------------------------------------

    def receive_nowait(self) -> AudioFrame:
        """The oldest frame waiting.

        Raises:
            trio.WouldBlock: None is waiting.
            trio.EndOfChannel: The sink is closed and every frame was taken.
        """
        if not self._queue:
            if self._ended:
                raise trio.EndOfChannel
            raise trio.WouldBlock
        frame = self._queue.popleft()
        if trio.current_time() - frame.due > frame.duration_s:
            self._require().late_frames += 1
        return frame

    async def receive(self) -> AudioFrame:
        """Wait for the next frame.

        Raises:
            trio.EndOfChannel: The sink is closed and every frame was taken.
        """
        while True:
            while not self._queue and not self._ended:
                await self._ready.park()
            await trio.lowlevel.checkpoint()
            try:
                return self.receive_nowait()
            except trio.WouldBlock:  # another task took it during the checkpoint
                continue

    def __aiter__(self) -> FrameSink:
        return self

    async def __anext__(self) -> AudioFrame:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    @property
    def queued(self) -> int:
        """Frames waiting for the consumer."""
        return len(self._queue)

    async def aclose(self) -> None:
        await super().aclose()
        self._ended = True
        self._ready.unpark_all()
