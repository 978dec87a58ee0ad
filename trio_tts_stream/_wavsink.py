""":class:`WavFileSink`: a WAV file as the output, written by a worker thread."""

from __future__ import annotations

import math
import os
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import trio

from ._exceptions import AudioDeviceError, ConfigError
from ._format import AudioFormat
from ._ringbuffer import Gate, Playout
from ._sinkbase import BufferedSink
from ._wav import wav_header

__all__ = ["WavFileSink"]


def _write_batch(f: IO[bytes], frames: npt.NDArray[Any]) -> None:
    """Worker thread: append one batch and hand it to the OS (readers see it)."""
    f.write(frames.data.cast("B"))
    f.flush()


class WavFileSink(BufferedSink):
    """Writes a WAV file as the audio is let through (no real-time pacing).

    The header is written first with the "unknown length" sizes that streaming servers
    use (0xFFFFFFFF), so a partial file is readable; :meth:`aclose` writes everything
    the gate let through and patches the exact sizes in. 16-bit PCM by default,
    ``dtype="float32"`` for IEEE float.

    The trio thread never touches the disk: a writer task in the sink's nursery takes
    what the gate lets through out of the ring, at most ``batch_s`` at a time, and
    writes each batch in a worker thread (``trio.to_thread.run_sync``) while the player
    refills the ring. "Heard" means written: a mark is stamped when its frame is taken
    for writing, and :meth:`wait_heard` returns once the batch holding the frame has
    been written.

    Memory: the ring (``buffer_s``) plus one batch (``batch_s``, at most the ring's
    capacity), allocated once: 2 s + 0.25 s of 24 kHz mono int16 is 108 kB.

    Args:
        path: File to write (created or truncated).
        buffer_s: Ring capacity in seconds.
        dtype: ``"int16"`` or ``"float32"``.
        samplerate: Fixed output rate (streams are resampled to it); ``None``: the first
            stream's rate.
        channels: Fixed output channel count (mono is copied to every channel, more
            channels are mixed to mono); ``None``: the first stream's.
        batch_s: Most audio written by one call in the worker thread, in seconds.

    Raises:
        ConfigError: An argument is out of range.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        buffer_s: float = 2.0,
        dtype: str = "int16",
        samplerate: int | None = None,
        channels: int | None = None,
        batch_s: float = 0.25,
    ) -> None:
        super().__init__(
            buffer_s=buffer_s,
            dtype=dtype,
            blocksize_ms=20.0,
            samplerate=samplerate,
            channels=channels,
        )
        if isinstance(batch_s, bool) or not (
            isinstance(batch_s, (int, float)) and 0.001 <= batch_s <= 60
        ):
            raise ConfigError(f"batch_s={batch_s!r} is invalid: it must be 0.001..60 seconds")
        self.path = os.fspath(path)
        self.batch_s = float(batch_s)
        self._file: IO[bytes] | None = None
        self._started = False  # the file was created: it holds one format
        self._data_bytes = 0
        self._kick = trio.Event()  # set by _pump: the writer has something to look at
        self._writing = False  # a batch is in the worker thread ...
        self._batch_start = 0  # ... starting at this frame position
        self._stopping = False
        self._writer_done = trio.Event()

    async def _start_consumer(self, fmt: AudioFormat, playout: Playout) -> None:
        if self._started:
            raise AudioDeviceError(
                f"{self.path}: one WAV file holds one format; got {fmt} after the first "
                "(resample with a fixed samplerate=/channels=, or use a new sink)"
            )
        assert self._nursery is not None  # open() checked that we were entered
        playout.wake = self._on_wake
        playout.same_thread = True
        header = wav_header(fmt.sample_rate, fmt.channels, dtype=self.dtype)

        def create() -> IO[bytes]:
            f = open(self.path, "wb")  # noqa: SIM115 (closed by _stop_consumer)
            try:
                f.write(header)
                f.flush()
            except BaseException:
                f.close()
                raise
            return f

        try:
            self._file = await trio.to_thread.run_sync(create)
        except OSError as exc:
            raise AudioDeviceError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        self._started = True
        frames = min(playout.ring.capacity, max(1, math.ceil(self.batch_s * fmt.sample_rate)))
        batch = np.zeros((frames, fmt.channels), dtype=playout.ring.dtype)
        self._nursery.start_soon(self._writer, playout, self._file, batch)

    def _pump(self) -> None:
        self._kick.set()

    def _can_take(self, playout: Playout) -> bool:
        if playout.fading:
            return True
        return (
            playout.gate is not Gate.PAUSED
            and not playout.starved
            and not playout.hold
            and playout.ring.buffered > 0
        )

    async def _writer(self, playout: Playout, f: IO[bytes], batch: npt.NDArray[Any]) -> None:
        """The consumer: ring -> batch (trio thread) -> file (worker thread)."""
        try:
            while True:
                while not self._can_take(playout):
                    if self._stopping:
                        return
                    self._kick = event = trio.Event()
                    await event.wait()
                if playout.fading:  # a fade-out: at most the ramp, read by fill itself
                    out = batch[: max(1, min(len(batch), playout.fade_frames))]
                else:
                    out = batch[: playout.ring.buffered]
                playout.fill(out, trio.current_time())  # takes exactly len(out) frames
                self._batch_start = playout.ring.frames_read - len(out)
                self._writing = True
                try:
                    # Not abandoned on cancel: `batch` is reused only after the write.
                    await trio.to_thread.run_sync(_write_batch, f, out)
                except OSError as exc:
                    raise AudioDeviceError(
                        f"cannot write {self.path}: {exc.strerror or exc}"
                    ) from exc
                finally:
                    self._writing = False
                self._data_bytes += out.nbytes
                self._on_wake()
        finally:
            self._writer_done.set()
            self._on_wake()

    def _settled(self, playout: Playout) -> int:
        """Every frame before this position is in the file or was dropped."""
        return self._batch_start if self._writing else playout.ring.frames_read

    async def wait_heard(self, position: int) -> float | None:
        """Wait until every frame before ``position`` has been written to the file."""
        playout = self._require()
        if position <= 0:
            await trio.lowlevel.checkpoint()
            return None
        if playout.ring.frames_written < position:
            raise AudioDeviceError(f"frame {position - 1} was never written; it cannot be heard")
        while self._settled(playout) < position:
            if self._writer_done.is_set():
                raise AudioDeviceError(f"{self.path} is closed; the frames were not written")
            if not self._writing and not self._can_take(playout) and not playout.hold:
                raise AudioDeviceError("the output is paused; the frames will not be heard")
            await self._changed.wait()
        await trio.lowlevel.checkpoint()
        return trio.current_time()

    async def _stop_consumer(self) -> None:
        f, fmt = self._file, self._fmt
        if f is None or fmt is None:
            await trio.lowlevel.checkpoint()
            return
        self._file = None
        with trio.CancelScope(shield=True):  # a file is always finished
            try:
                # Write out what the gate lets through, then let the writer end.
                self._stopping = True
                self._kick.set()
                await self._writer_done.wait()
            finally:
                header = wav_header(
                    fmt.sample_rate, fmt.channels, dtype=self.dtype, data_bytes=self._data_bytes
                )

                def finish() -> None:
                    with f:
                        f.seek(0)
                        f.write(header)

                try:
                    await trio.to_thread.run_sync(finish)
                except OSError as exc:
                    raise AudioDeviceError(
                        f"cannot finish {self.path}: {exc.strerror or exc}"
                    ) from exc
