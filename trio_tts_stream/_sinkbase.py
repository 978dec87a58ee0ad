"""What the player needs from an output (:class:`AudioSink`), and the base class that
gives it to every bundled sink (:class:`BufferedSink`). See :mod:`._sinks` for the
sinks themselves and for positions and time."""

from __future__ import annotations

import math
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt
import trio

from ._exceptions import AudioDeviceError, ConfigError, unwrap_single_exception
from ._format import AudioFormat, Block, float_to_int16
from ._ringbuffer import Gate, Playout, SinkStatistics
from ._watchdog import ConsumerWatchdog

__all__ = ["AudioSink", "BufferedSink"]

_DTYPES = ("int16", "float32")

_S = TypeVar("_S", bound="BufferedSink")


@runtime_checkable
class AudioSink(Protocol):
    """What the player calls on an output; nothing else.

    The bundled sinks are all :class:`BufferedSink` subclasses, which also are async
    context managers with ``audio_format``, ``capacity`` and ``aclose()``; subclass
    :class:`BufferedSink` for a custom output rather than implementing this from scratch.
    """

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

    def write_some(self, block: Block) -> int:
        """Buffer as many leading frames of ``block`` as fit now; return how many
        (possibly 0: then :meth:`wait_writable`). Never blocks, never raises
        ``WouldBlock``."""
        ...

    async def wait_writable(self) -> None:
        """Wait until there is room to write: at least one frame (a sink may wait for
        more, to be refilled in batches)."""
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

    def abort(self, fade_ms: float = 0.0) -> int:
        """Drop buffered audio (barge-in): silence within one block, after a fade-out of
        ``fade_ms`` (0: at once). Returns frames dropped."""
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

    async def wait_heard(self, position: int) -> float | None:
        """Wait until every frame before ``position`` has been heard; return when the
        last of them ends being heard (trio's clock), if known."""
        ...

    def statistics(self) -> SinkStatistics:
        """Counters of the buffer and the consumer."""
        ...

    def reset_level(self) -> None:
        """Restart the buffer-level statistics (min/average seen by the device)."""
        ...


class BufferedSink(AudioSink):
    """An :class:`AudioSink` around a ring buffer; subclass it for a custom output.

    It does everything the player sees: the async context manager (a nursery for the
    consumer's tasks), format choice and ``open``, sample conversion (float32 blocks to
    the ring's ``dtype``, mono to N channels, N to mono), the ring
    (:class:`~trio_tts_stream._ringbuffer.Playout`: capacity ``buffer_s``), the gate,
    waiting for space, marks and :meth:`wait_heard`. A subclass only supplies the
    *consumer*, whatever takes frames out of the ring by calling ``playout.fill(out,
    now, latency)`` (which always fills the whole block ``out``, never blocks and never
    allocates, so it may run on a real-time thread):

    * ``async _start_consumer(fmt, playout)`` (required): start consuming ``playout``
      in ``fmt``; called by :meth:`open`. Bind ``playout.wake`` to something that makes
      :meth:`_on_wake` run on the trio thread (directly, and set
      ``playout.same_thread = True``, if the consumer runs on the trio thread; else
      ``TrioToken.run_sync_soon(self._on_wake, idempotent=True)``). Start trio tasks in
      ``self._nursery``. Raise :class:`AudioDeviceError` if the output cannot start.
    * ``async _stop_consumer()`` (required): stop consuming and release the output;
      called by :meth:`aclose` and, on a format change, once the ring is empty.
    * ``async _supported(want)`` (optional): the nearest format the output accepts
      (default: any).
    * ``_pump()`` (optional): runs synchronously on the trio thread after each producer
      action (:meth:`write_some`, :meth:`play`, :meth:`end_of_data`, :meth:`mark`): a
      consumer living on the trio thread wakes up here. Must not block.
    * ``_to_trio_time(t)`` (optional): convert the consumer's ``now`` clock (what it
      passes to ``fill``) to trio's clock (default: the identity, for a consumer that
      passes ``trio.current_time()``).
    * ``consumer_timeout_s`` (optional class attribute): a consumer that can stop on its
      own (a device) sets it; the sink then watches it (:class:`~._watchdog.
      ConsumerWatchdog`) and fails after that long without a ``fill``. A subclass that
      learns otherwise that its output ended calls :meth:`_fail`.

    **Failure.** Once the output has failed (:attr:`failed`: the watchdog, or the
    subclass said so), every wait and write raises :class:`AudioDeviceError` with the
    reason, so no playback waits forever for frames a dead device will never play.
    :meth:`recover` releases the failed output; the next :meth:`open` starts a new one.

    :class:`~trio_tts_stream.NullSink` is the smallest complete example.

    Args:
        buffer_s: Ring capacity in seconds: the memory ceiling is ``buffer_s`` times the
            rate, channels and sample size (2 s of 24 kHz mono int16: 96 kB).
        dtype: Sample type of the ring and the output (``"int16"`` or ``"float32"``).
        blocksize_ms: The consumer's block length (:attr:`block_frames`).
        samplerate: Fixed output rate (streams are resampled to it); ``None``: the first
            stream's rate.
        channels: Fixed output channel count (mono is copied to every channel, more
            channels are mixed to mono); ``None``: the first stream's.

    Raises:
        ConfigError: An argument is out of range.
    """

    #: Seconds of audio per consumer block (set by :meth:`open`).
    block_s: float
    #: An underrun fades the audio out over this many ms before its gap and in after it,
    #: so a listener hears no click (0: a hard cut, the default here, so that outputs
    #: nobody listens to in real time, files and :class:`NullSink`, receive the exact
    #: samples). :class:`SoundDeviceSink` sets 5 ms. Set it before :meth:`open`. With a
    #: fade the consumer keeps that many frames in reserve while playing: a block that
    #: would leave less is where the gap starts.
    underrun_fade_ms: float = 0.0
    #: Seconds without a consumer run (a ``fill``), while open, after which the output
    #: counts as stopped (:attr:`failed`); ``None``: not watched (a consumer on trio's
    #: own clock cannot stop by itself). :class:`SoundDeviceSink` sets 0.5.
    consumer_timeout_s: float | None = None

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
        self._hold: tuple[bool, float] = (False, 0.0)  # hold() before open()
        self._stack: AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None
        self._failure: AudioDeviceError | None = None
        self._watch_scope: trio.CancelScope | None = None

    # -- context manager -------------------------------------------------------

    async def __aenter__(self: _S) -> _S:
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

    async def aclose(self) -> None:
        """Stop the output and release it (a file is finished)."""
        if self._closed:
            return
        self._closed = True
        await self._release()

    async def _release(self) -> None:
        """Stop the watchdog and the consumer."""
        if self._watch_scope is not None:
            self._watch_scope.cancel()
            self._watch_scope = None
        if self._playout is not None:
            await self._stop_consumer()
        else:
            await trio.lowlevel.checkpoint()

    # -- failure -----------------------------------------------------------------

    @property
    def failed(self) -> AudioDeviceError | None:
        """Why the output stopped, if it did (see the class docstring); ``None`` while
        it works."""
        return self._failure

    def _fail(self, reason: str) -> None:
        """The output stopped (trio thread): every wait and write raises
        ``AudioDeviceError(reason)`` from now on, until :meth:`recover`."""
        if self._failure is None and not self._closed:
            self._failure = AudioDeviceError(reason)
            self._on_wake()

    def _check(self) -> None:
        if self._failure is not None:
            # A new exception each time: several tasks may raise it at once.
            raise AudioDeviceError(str(self._failure))

    async def recover(self) -> None:
        """After a failure (:attr:`failed`), release the failed output so that the next
        :meth:`open` starts a new one, on the device as it is now (a restarted sound
        server, a headset plugged in again). Audio still buffered is lost. Does nothing
        while the output works.

        Raises:
            AudioDeviceError: The sink is closed.
        """
        if self._closed:
            raise AudioDeviceError("the sink is closed; create a new one")
        if self._failure is None:
            await trio.lowlevel.checkpoint()
            return
        try:
            await self._release()
        finally:
            self._playout = None
            self._fmt = None
            self._failure = None

    async def _watch_consumer(
        self, scope: trio.CancelScope, playout: Playout, limit_s: float
    ) -> None:
        """Fail the output once its consumer has not run for ``limit_s`` (until
        ``scope`` is cancelled)."""
        dog = ConsumerWatchdog(limit_s)
        dog.started(trio.current_time())
        with scope:
            await self._watch_loop(dog, playout)

    async def _watch_loop(self, dog: ConsumerWatchdog, playout: Playout) -> None:
        while self._playout is playout and self._failure is None:
            await trio.sleep(dog.period_s)
            last = playout.last_fill
            idle = dog.look(
                trio.current_time(),
                self._to_trio_time(last) if last != float("-inf") else last,
            )
            if idle is not None and self._playout is playout:
                self._fail(
                    f"the audio output stopped: no audio callback for {idle:.1f} s "
                    "(the device or the sound server stopped responding)"
                )

    # -- format ----------------------------------------------------------------

    @property
    def audio_format(self) -> AudioFormat | None:
        """Format the sink is open with, or ``None`` before :meth:`open`."""
        return self._fmt

    @property
    def capacity(self) -> int:
        """Ring capacity in frames (0 before :meth:`open`)."""
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

    async def open(self, fmt: AudioFormat) -> None:
        if self._closed:
            raise AudioDeviceError("the sink is closed; create a new one")
        self._check()
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
            await self._release()
        capacity = max(1, math.ceil(self.buffer_s * fmt.sample_rate))
        self._playout = Playout(capacity, fmt.channels, fmt.sample_rate, self.dtype)
        self._playout.set_underrun_fade(round(self.underrun_fade_ms * fmt.sample_rate / 1000))
        held, fade_ms = self._hold
        if held:
            self._playout.set_fade(round(fade_ms * fmt.sample_rate / 1000))
            self._playout.hold = True
        self._fmt = fmt
        self.block_s = self.block_frames / fmt.sample_rate
        try:
            await self._start_consumer(fmt, self._playout)
        except BaseException:
            self._fmt = None
            self._playout = None
            raise
        timeout = self.consumer_timeout_s
        if timeout is not None and self._nursery is not None:
            self._watch_scope = scope = trio.CancelScope()
            self._nursery.start_soon(self._watch_consumer, scope, self._playout, timeout)

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

    def write_some(self, block: Block) -> int:
        playout = self._require()
        self._check()
        if playout.ring.free == 0 or len(block) == 0:
            return 0
        n = playout.ring.write(self._convert(block[: playout.ring.free]))
        self._pump()
        return n

    async def wait_writable(self) -> None:
        playout = self._require()
        room = playout.refill_frames
        while playout.ring.free < room:
            self._check()
            event = self._changed
            playout.want_space = True
            if playout.ring.free >= room:  # consumed between the check and the flag
                break
            await event.wait()
        self._check()
        await trio.lowlevel.checkpoint()

    async def wait_changed(self) -> None:
        self._check()
        await self._changed.wait()
        self._check()

    def _on_wake(self) -> None:
        """Runs on the trio thread when the consumer asked for attention: wakes every
        task waiting in :meth:`wait_changed`, :meth:`wait_writable` or
        :meth:`wait_heard`."""
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

    def abort(self, fade_ms: float = 0.0) -> int:
        if self._playout is None:
            return 0
        playout = self._playout
        if fade_ms > 0:
            playout.set_fade(round(fade_ms * playout.sample_rate / 1000))
        n = playout.discard(fade=fade_ms > 0)
        self._pump()
        return n

    def hold(self, fade_ms: float = 0.0) -> None:
        """Stop consuming (a user's pause) after a fade-out of ``fade_ms``; buffered audio
        is kept, nothing is counted as an underrun, and the player's own gate decisions go
        on underneath. :meth:`release` resumes with a fade-in."""
        self._hold = (True, fade_ms)
        playout = self._playout
        if playout is None:
            return
        if fade_ms > 0:
            playout.set_fade(round(fade_ms * playout.sample_rate / 1000))
        playout.hold_output(fade=fade_ms > 0)
        self._pump()

    def release(self) -> None:
        """Resume after :meth:`hold`; the first audio fades in."""
        self._hold = (False, 0.0)
        if self._playout is not None:
            self._playout.release_output()
            self._pump()

    @property
    def held(self) -> bool:
        """:meth:`hold` is in force."""
        return self._hold[0]

    async def wait_silent(self) -> float:
        """Wait until a fade-out asked for (:meth:`abort`, :meth:`hold`) has been played
        and return when the output goes silent, on trio's clock (the end of the last
        frame heard; at once when nothing was fading)."""
        playout = self._playout
        if playout is None:
            await trio.lowlevel.checkpoint()
            return trio.current_time()
        while playout.fading:
            self._check()
            await self._changed.wait()
        await trio.lowlevel.checkpoint()
        t = playout.heard_until
        return max(self._to_trio_time(t), 0.0) if t != float("-inf") else trio.current_time()

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

    async def wait_heard(self, position: int) -> float | None:
        playout = self._require()
        if position <= 0:
            await trio.lowlevel.checkpoint()
            return None
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
                self._check()
                await self._changed.wait()
            end = self._to_trio_time(t) + 1 / playout.sample_rate
            await trio.sleep_until(end)
            return end
        finally:
            playout.unmark(last)

    def statistics(self) -> SinkStatistics:
        return self._require().statistics()

    def reset_level(self) -> None:
        self._require().reset_level()

    # -- the consumer: what a subclass supplies ------------------------------------

    async def _supported(self, want: AudioFormat) -> AudioFormat:
        """The nearest format the output accepts (any, by default)."""
        await trio.lowlevel.checkpoint()
        return want

    def _to_trio_time(self, t: float) -> float:
        """Convert a consumer timestamp to trio's clock (identity for trio consumers)."""
        return t

    def _pump(self) -> None:
        """Runs on the trio thread after every producer action (default: nothing)."""

    async def _start_consumer(self, fmt: AudioFormat, playout: Playout) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _start_consumer")

    async def _stop_consumer(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _stop_consumer")
