"""Audio sinks: where decoded blocks go.

Every sink is an async context manager around a :class:`~._ringbuffer.Playout`. The
player writes blocks with :meth:`AudioSink.write_nowait` / :meth:`AudioSink.wait_writable`
and drives the gate (:meth:`play`, :meth:`end_of_data`, :meth:`abort`); the sink's
consumer takes frames out at its own pace:

* :class:`SoundDeviceSink`: a PortAudio callback stream (the real speaker). The callback
  runs on PortAudio's thread and only calls :meth:`Playout.fill`.
* :class:`NullSink`: a trio task that consumes one block per block period on trio's
  clock and discards it: a speaker without a sound card (benchmarks, autojump tests).
* :class:`WavFileSink`: writes a WAV file as the gate lets audio through, as fast as it
  comes.

A sink outlives a single utterance: ``open(fmt)`` is a no-op when the format is
unchanged, frame positions (``frames_written`` / ``frames_played``) are monotonic over
the sink's life, and :meth:`wait_heard` waits for one position, so several utterances
can be queued back to back on one open output stream.

Positions and time: ``mark(pos)`` asks the consumer to stamp when frame ``pos`` is
heard; :meth:`heard_time` returns that moment on *trio's* clock. ``wait_heard(pos)``
returns once frame ``pos - 1`` has been heard in full, i.e. the device's output latency
has passed too; stopping a PortAudio stream earlier drops its last 26-43 ms.
"""

from __future__ import annotations

import math
import os
import struct
import time
from contextlib import AsyncExitStack, suppress
from types import ModuleType, TracebackType
from typing import IO, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import trio

from ._exceptions import AudioDeviceError, ConfigError, unwrap_single_exception
from ._format import AudioFormat, Block, float_to_int16
from ._ringbuffer import Gate, Playout, PlayoutStatistics

__all__ = [
    "AudioSink",
    "NullSink",
    "SoundDeviceSink",
    "WavFileSink",
    "import_sounddevice",
]

_DTYPES = ("int16", "float32")


@runtime_checkable
class AudioSink(Protocol):
    """What the player needs from an output. See the module docstring."""

    async def __aenter__(self) -> Any:
        """Enter: the sink may start a task; it is closed on exit."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the sink (:meth:`aclose`)."""
        ...

    @property
    def audio_format(self) -> AudioFormat | None:
        """Format the sink is open with, or ``None`` before :meth:`open`."""
        ...

    @property
    def capacity(self) -> int:
        """Buffer capacity in frames (0 before :meth:`open`)."""
        ...

    async def output_format_for(self, fmt: AudioFormat) -> AudioFormat:
        """The format this output will run at for a stream in ``fmt``.

        An open output keeps its format; otherwise the sink's fixed ``samplerate`` /
        ``channels`` if given, else ``fmt`` if the device accepts it, else the nearest
        format it does. The player resamples and maps channels to match.
        """
        ...

    async def open(self, fmt: AudioFormat) -> None:
        """Start (or keep) the output in ``fmt``; silence until :meth:`play`."""
        ...

    def write_nowait(self, block: Block) -> int:
        """Buffer as many leading frames of ``block`` as fit; return how many."""
        ...

    async def wait_writable(self) -> None:
        """Wait until at least one frame can be written."""
        ...

    async def wait_changed(self) -> None:
        """Wait until the consumer reports something (space, underrun, mark, drain)."""
        ...

    def play(self) -> None:
        """Let the consumer take audio; running dry is an underrun."""
        ...

    def pause(self) -> None:
        """Stop consuming; the device plays silence."""
        ...

    def end_of_data(self) -> None:
        """No more audio is coming for now: play out what is buffered; running dry is not
        an underrun."""
        ...

    def abort(self) -> int:
        """Silence at once: drop buffered audio (barge-in). Returns frames dropped."""
        ...

    def mark(self, position: int) -> None:
        """Ask to stamp when frame ``position`` is heard."""
        ...

    def heard_time(self, position: int) -> float | None:
        """When marked frame ``position`` was heard, on trio's clock, if it has been."""
        ...

    def unmark(self, position: int) -> None:
        """Forget the mark at ``position``."""
        ...

    async def wait_heard(self, position: int) -> None:
        """Wait until every frame before ``position`` has been heard."""
        ...

    def statistics(self) -> PlayoutStatistics:
        """Counters of the buffer and the consumer."""
        ...

    def reset_level(self) -> None:
        """Restart the buffer-level statistics (min/average seen by the device)."""
        ...

    async def aclose(self) -> None:
        """Stop the output and release it."""
        ...


class _PlayoutSink(AudioSink):
    """Shared machinery: format handling, conversion, gate, waiting, marks."""

    #: Seconds of audio per consumer block.
    block_s: float

    def __init__(
        self,
        *,
        buffer_s: float,
        dtype: str,
        blocksize_ms: float,
        samplerate: int | None = None,
        channels: int | None = None,
    ) -> None:
        if dtype not in _DTYPES:
            raise ConfigError(f"dtype={dtype!r} is invalid: it must be one of {_DTYPES}")
        if isinstance(buffer_s, bool) or not (
            isinstance(buffer_s, (int, float)) and 0.02 <= buffer_s <= 600
        ):
            raise ConfigError(f"buffer_s={buffer_s!r} is invalid: it must be 0.02..600 seconds")
        if not (isinstance(blocksize_ms, (int, float)) and 1 <= blocksize_ms <= 200):
            raise ConfigError(f"blocksize_ms={blocksize_ms!r} is invalid: it must be 1..200 ms")
        if samplerate is not None or channels is not None:
            try:
                AudioFormat(samplerate or 24000, channels or 1)
            except ValueError as exc:
                raise ConfigError(f"invalid output format: {exc}") from None
        self.samplerate = samplerate
        self.channels = channels
        self.buffer_s = float(buffer_s)
        self.dtype = dtype
        self.blocksize_ms = float(blocksize_ms)
        self._fmt: AudioFormat | None = None
        self._playout: Playout | None = None
        self._changed = trio.Event()
        self._closed = False
        self._stack: AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None

    # -- context manager -------------------------------------------------------

    async def __aenter__(self) -> Any:
        stack = AsyncExitStack()
        self._nursery = await stack.enter_async_context(trio.open_nursery())
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with unwrap_single_exception():
            try:
                with trio.CancelScope(shield=exc_type is not None):
                    await self.aclose()
            finally:
                stack, self._stack = self._stack, None
                if stack is not None:
                    await stack.__aexit__(exc_type, exc, tb)

    # -- format ----------------------------------------------------------------

    @property
    def audio_format(self) -> AudioFormat | None:
        return self._fmt

    @property
    def capacity(self) -> int:
        return self._playout.ring.capacity if self._playout is not None else 0

    @property
    def block_frames(self) -> int:
        """Frames per consumer block (0 before :meth:`open`)."""
        if self._fmt is None:
            return 0
        return max(1, round(self._fmt.sample_rate * self.blocksize_ms / 1000))

    async def output_format_for(self, fmt: AudioFormat) -> AudioFormat:
        if self._fmt is not None:
            return self._fmt  # an open output keeps its format: the player resamples
        want = AudioFormat(self.samplerate or fmt.sample_rate, self.channels or fmt.channels)
        return await self._supported(want)

    async def _supported(self, want: AudioFormat) -> AudioFormat:
        """The nearest format the output accepts (any, for files and null sinks)."""
        await trio.lowlevel.checkpoint()
        return want

    async def open(self, fmt: AudioFormat) -> None:
        if self._closed:
            raise AudioDeviceError("the sink is closed; create a new one")
        if self._stack is None:
            name = type(self).__name__
            raise AudioDeviceError(
                f"use the sink as `async with {name}(...) as sink:` so that it is closed "
                "(and, for a file, finished) when you are done"
            )
        if fmt == self._fmt:
            return
        if self._playout is not None:
            if self._playout.ring.buffered:
                raise AudioDeviceError(
                    f"cannot switch the output from {self._fmt} to {fmt} while audio is "
                    "still buffered; wait for it to be heard first"
                )
            await self._stop_consumer()
        capacity = max(1, math.ceil(self.buffer_s * fmt.sample_rate))
        self._playout = Playout(capacity, fmt.channels, fmt.sample_rate, self.dtype)
        self._fmt = fmt
        self.block_s = self.block_frames / fmt.sample_rate
        try:
            await self._start_consumer(fmt, self._playout)
        except BaseException:
            self._fmt = None
            self._playout = None
            raise

    def _require(self) -> Playout:
        if self._playout is None:
            raise AudioDeviceError("the sink is not open: call open(fmt) first")
        return self._playout

    # -- writing ---------------------------------------------------------------

    def _convert(self, block: Block) -> npt.NDArray[Any]:
        assert self._fmt is not None
        channels = self._fmt.channels
        if block.ndim != 2:
            raise ValueError("blocks must have shape (frames, channels)")
        if block.shape[1] != channels:
            if block.shape[1] == 1:
                block = np.repeat(block, channels, axis=1)
            elif channels == 1:
                block = block.mean(axis=1, keepdims=True, dtype=np.float32)
            else:
                raise AudioDeviceError(
                    f"cannot map {block.shape[1]} channels onto a {channels}-channel output"
                )
        if self.dtype == "int16":
            return float_to_int16(block)
        return block

    def write_nowait(self, block: Block) -> int:
        playout = self._require()
        if playout.ring.free == 0 or len(block) == 0:
            return 0
        n = playout.ring.write(self._convert(block[: playout.ring.free]))
        self._pump()
        return n

    async def wait_writable(self) -> None:
        playout = self._require()
        while playout.ring.free == 0:
            event = self._changed
            playout.want_space = True
            if playout.ring.free:  # consumed between the check and the flag
                break
            await event.wait()
        await trio.lowlevel.checkpoint()

    async def wait_changed(self) -> None:
        await self._changed.wait()

    def _on_wake(self) -> None:
        """Runs on the trio thread when the consumer asked for attention."""
        self._changed.set()
        self._changed = trio.Event()

    # -- gate --------------------------------------------------------------------

    def play(self) -> None:
        self._require().set_gate(Gate.RUNNING)
        self._pump()

    def pause(self) -> None:
        self._require().set_gate(Gate.PAUSED)

    def end_of_data(self) -> None:
        self._require().set_gate(Gate.DRAINING)
        self._pump()

    def abort(self) -> int:
        if self._playout is None:
            return 0
        return self._playout.discard()

    # -- positions and time ------------------------------------------------------

    def mark(self, position: int) -> None:
        self._require().mark(position)
        self._pump()

    def unmark(self, position: int) -> None:
        if self._playout is not None:
            self._playout.unmark(position)

    def heard_time(self, position: int) -> float | None:
        if self._playout is None:
            return None
        t = self._playout.mark_time(position)
        return None if t is None else self._to_trio_time(t)

    async def wait_heard(self, position: int) -> None:
        playout = self._require()
        if position <= 0:
            await trio.lowlevel.checkpoint()
            return
        if playout.ring.frames_written < position:
            raise AudioDeviceError(f"frame {position - 1} was never written; it cannot be heard")
        last = position - 1
        playout.mark(last)
        try:
            while True:
                t = playout.mark_time(last)
                if t is None and playout.ring.frames_read >= position:
                    # Consumed before the mark was set: the end of the latest consumed
                    # block is heard no earlier than it (at most one block late).
                    t = playout.heard_until - 1 / playout.sample_rate
                if t is not None:
                    break
                if playout.gate is Gate.PAUSED:
                    raise AudioDeviceError("the output is paused; the frames will not be heard")
                await self._changed.wait()
            await trio.sleep_until(self._to_trio_time(t) + 1 / playout.sample_rate)
        finally:
            playout.unmark(last)

    def statistics(self) -> PlayoutStatistics:
        return self._require().statistics()

    def reset_level(self) -> None:
        self._require().reset_level()

    # -- consumer hooks ----------------------------------------------------------

    def _to_trio_time(self, t: float) -> float:
        """Convert a consumer timestamp to trio's clock (identity for trio consumers)."""
        return t

    def _pump(self) -> None:
        """Synchronous consumers run here after every producer action."""

    async def _start_consumer(self, fmt: AudioFormat, playout: Playout) -> None:
        raise NotImplementedError

    async def _stop_consumer(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._playout is not None:
            await self._stop_consumer()


class NullSink(_PlayoutSink):
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


class WavFileSink(_PlayoutSink):
    """Writes a WAV file as the audio is let through (no real-time pacing).

    The header is written first with the "unknown length" sizes that streaming servers
    use (0xFFFFFFFF), so a partial file is readable; :meth:`aclose` patches the exact
    sizes in. 16-bit PCM by default, ``dtype="float32"`` for IEEE float.

    Args:
        path: File to write (created or truncated).
        buffer_s: Ring capacity in seconds.
        dtype: ``"int16"`` or ``"float32"``.
        samplerate: Fixed output rate (streams are resampled to it); ``None``: the first
            stream's rate.
        channels: Fixed output channel count (mono is copied to every channel, more
            channels are mixed to mono); ``None``: the first stream's.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        buffer_s: float = 2.0,
        dtype: str = "int16",
        samplerate: int | None = None,
        channels: int | None = None,
    ) -> None:
        super().__init__(
            buffer_s=buffer_s,
            dtype=dtype,
            blocksize_ms=20.0,
            samplerate=samplerate,
            channels=channels,
        )
        self.path = os.fspath(path)
        self._file: IO[bytes] | None = None
        self._data_bytes = 0
        self._scratch: npt.NDArray[Any] | None = None

    async def _start_consumer(self, fmt: AudioFormat, playout: Playout) -> None:
        if self._file is not None:
            raise AudioDeviceError(
                f"{self.path}: one WAV file holds one format; got {fmt} after {self._fmt}"
            )
        playout.wake = self._on_wake
        playout.same_thread = True
        try:
            self._file = await trio.to_thread.run_sync(open, self.path, "wb")
        except OSError as exc:
            raise AudioDeviceError(f"cannot write {self.path}: {exc.strerror}") from exc
        self._file.write(self._header(fmt, 0xFFFFFFFF))
        self._scratch = np.zeros((self.block_frames, fmt.channels), dtype=playout.ring.dtype)

    def _header(self, fmt: AudioFormat, data_bytes: int) -> bytes:
        width = 2 if self.dtype == "int16" else 4
        tag = 1 if self.dtype == "int16" else 3
        riff = 0xFFFFFFFF if data_bytes == 0xFFFFFFFF else min(36 + data_bytes, 0xFFFFFFFF)
        return (
            b"RIFF"
            + struct.pack("<I", riff)
            + b"WAVE"
            + b"fmt "
            + struct.pack(
                "<IHHIIHH",
                16,
                tag,
                fmt.channels,
                fmt.sample_rate,
                fmt.sample_rate * fmt.channels * width,
                fmt.channels * width,
                8 * width,
            )
            + b"data"
            + struct.pack("<I", data_bytes)
        )

    def _pump(self) -> None:
        playout, out, f = self._playout, self._scratch, self._file
        if playout is None or out is None or f is None or playout.gate is Gate.PAUSED:
            return
        now = trio.current_time()
        while playout.ring.buffered:
            n = min(len(out), playout.ring.buffered)
            playout.fill(out[:n], now)
            f.write(out[:n].tobytes())
            self._data_bytes += out[:n].nbytes

    async def wait_heard(self, position: int) -> None:
        self._pump()
        await super().wait_heard(position)

    async def _stop_consumer(self) -> None:
        f, fmt = self._file, self._fmt
        if f is None or fmt is None:
            return
        self._file = None

        def finish() -> None:
            with f:
                f.seek(0)
                f.write(self._header(fmt, self._data_bytes))

        await trio.to_thread.run_sync(finish)


def import_sounddevice() -> ModuleType:
    """Import :mod:`sounddevice`, mapping a missing PortAudio to :class:`AudioDeviceError`."""
    try:
        import sounddevice
    except OSError as exc:
        raise AudioDeviceError(
            f"PortAudio is not available ({exc}). Install it (Debian/Ubuntu: "
            "`apt-get install libportaudio2`; macOS: `brew install portaudio`) "
            "or write to a file instead (--output FILE.wav)."
        ) from exc
    module: ModuleType = sounddevice
    return module


class SoundDeviceSink(_PlayoutSink):
    """Plays through PortAudio with a callback :class:`sounddevice.RawOutputStream`.

    sounddevice is imported on first :meth:`open`, so the package imports without
    PortAudio. The stream keeps running (playing silence while paused) until
    :meth:`aclose`, so one sink can play many utterances without reopening the device.

    Args:
        device: PortAudio device index or name substring; ``None`` for the default.
        buffer_s: Ring capacity in seconds.
        blocksize_ms: Callback block length: the longest a barge-in takes to silence
            the output (plus the device latency).
        latency: PortAudio's ``latency`` (seconds, ``"low"`` or ``"high"``).
        dtype: Device sample type, ``"int16"`` (exact for 16-bit sources) or ``"float32"``.
        samplerate: Fixed output rate (streams are resampled to it); ``None``: the first
            stream's rate.
        channels: Fixed output channel count (mono is copied to every channel, more
            channels are mixed to mono); ``None``: the first stream's.
    """

    def __init__(
        self,
        device: int | str | None = None,
        *,
        buffer_s: float = 2.0,
        blocksize_ms: float = 10.0,
        latency: float | str | None = "low",
        dtype: str = "int16",
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
        self.device = device
        self.latency = latency
        self._stream: Any = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._fallback_latency = 0.0

    @property
    def output_latency(self) -> float:
        """PortAudio's reported output latency in seconds (0 before :meth:`open`)."""
        return self._fallback_latency

    def _to_trio_time(self, t: float) -> float:
        return trio.current_time() - (time.perf_counter() - t)

    async def _supported(self, want: AudioFormat) -> AudioFormat:
        sd = import_sounddevice()

        def check() -> AudioFormat:
            try:
                sd.check_output_settings(
                    device=self.device,
                    samplerate=want.sample_rate,
                    channels=want.channels,
                    dtype=self.dtype,
                )
                return want
            except (sd.PortAudioError, ValueError):
                pass
            try:
                info = sd.query_devices(self.device, "output")
            except (sd.PortAudioError, ValueError) as exc:
                raise AudioDeviceError(
                    f"no usable audio output device {self.device!r}: {exc}. List devices with "
                    "`python -m trio_tts_stream devices`, or use --output FILE.wav."
                ) from exc
            rate = self.samplerate or int(info["default_samplerate"])
            channels = min(want.channels, int(info["max_output_channels"])) or 1
            return AudioFormat(rate, channels)

        return await trio.to_thread.run_sync(check)

    async def _start_consumer(self, fmt: AudioFormat, playout: Playout) -> None:
        sd = import_sounddevice()
        token = trio.lowlevel.current_trio_token()
        wake = self._on_wake

        def wake_soon() -> None:
            with suppress(trio.RunFinishedError):
                token.run_sync_soon(wake, idempotent=True)

        playout.wake = wake_soon
        fill = playout.fill
        perf_counter = time.perf_counter
        frombuffer = np.frombuffer
        dtype = playout.ring.dtype
        channels = fmt.channels

        def callback(outdata: Any, frames: int, time_info: Any, status: Any) -> None:
            # PortAudio thread: no blocking, no allocation of sample memory (a raw stream
            # hands us a buffer; wrapping it in an ndarray view copies nothing).
            now = perf_counter()
            delay = time_info.outputBufferDacTime - time_info.currentTime
            if not 0.0 < delay < 2.0:
                delay = self._fallback_latency
            fill(frombuffer(outdata, dtype=dtype).reshape(frames, channels), now, delay)

        def start() -> Any:
            stream = sd.RawOutputStream(
                samplerate=fmt.sample_rate,
                channels=fmt.channels,
                dtype=self.dtype,
                device=self.device,
                blocksize=self.block_frames,
                latency=self.latency,
                callback=callback,
            )
            try:
                stream.start()
            except BaseException:
                stream.close()
                raise
            return stream

        try:
            self._stream = await trio.to_thread.run_sync(start)
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioDeviceError(
                f"cannot open audio output device {self.device!r} at {fmt.sample_rate} Hz, "
                f"{fmt.channels} channel(s): {exc}. List devices with "
                "`python -m trio_tts_stream devices`, or use --output FILE.wav."
            ) from exc
        self._fallback_latency = float(self._stream.latency)

    async def _stop_consumer(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return

        def stop() -> None:
            try:
                stream.stop()
            finally:
                stream.close()

        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(stop)
