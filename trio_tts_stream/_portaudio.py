"""PortAudio through :mod:`sounddevice`: the one place its errors become ours, the
real-time callback, and :class:`SoundDeviceSink`.

Every sounddevice call of the package (importing it, checking settings, querying
devices, opening, starting, stopping and closing a stream; the CLI's ``devices``) runs
inside :func:`portaudio_errors`, which turns ``sounddevice.PortAudioError``,
``ValueError`` (an unknown device or setting) and ``OSError`` (no PortAudio library)
into :class:`AudioDeviceError` with a one-line message, ``raise ... from``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import ModuleType
from typing import Any

import numpy as np
import trio

from ._exceptions import AudioDeviceError, TTSStreamError
from ._format import AudioFormat
from ._ringbuffer import Playout
from ._sinkbase import BufferedSink

__all__ = [
    "DeviceCallback",
    "SoundDeviceSink",
    "abandoned_streams",
    "import_sounddevice",
    "portaudio_errors",
]

STOP_TIMEOUT_S = 1.0
"""Longest wait for PortAudio to stop and close a stream. A sound server that hangs
(rather than dies) blocks ``Pa_StopStream`` until it answers again: past this, the stream
is abandoned (see :func:`abandoned_streams`)."""

_ABANDONED: list[Any] = []


def abandoned_streams() -> int:
    """How many PortAudio streams this process gave up stopping (a hung sound server).

    Their stop calls are still blocked in PortAudio's threads, so the exit handler of
    sounddevice, which would wait for them too, is unregistered when the first one is
    abandoned; a program that must exit at once afterwards (the CLI) calls
    :func:`os._exit` after flushing its output, since the C libraries' own exit
    handlers may still trip over the blocked stream.
    """
    return len(_ABANDONED)


def _abandon(stream: Any) -> None:
    import atexit

    if not _ABANDONED:
        sd = sys.modules.get("sounddevice")
        handler = getattr(sd, "_exit_handler", None)
        if handler is not None:
            atexit.unregister(handler)
    _ABANDONED.append(stream)


_LIST_HINT = "List devices with `python -m trio_tts_stream devices`, or use --output FILE.wav."
_NO_PORTAUDIO = (
    "PortAudio is not available ({}). Install it (Debian/Ubuntu: "
    "`apt-get install libportaudio2`; macOS: `brew install portaudio`) "
    "or write to a file instead (--output FILE.wav)."
)


def _one_line(exc: BaseException) -> str:
    """The exception's text on one line (sounddevice lists ambiguous devices on several)."""
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


@contextmanager
def portaudio_errors(doing: str, hint: str = _LIST_HINT) -> Iterator[None]:
    """Map PortAudio's errors raised inside the block to :class:`AudioDeviceError`.

    ``sounddevice.PortAudioError``, ``ValueError`` and ``OSError`` become
    ``AudioDeviceError("{doing}: {reason}. {hint}")`` (one line), except that an
    ``OSError`` while sounddevice is not imported yet is the missing PortAudio library,
    with the install hint. Our own errors (``TTSStreamError``, also a ``ConfigError``,
    which is a ``ValueError``) pass unchanged.

    Args:
        doing: What failed, e.g. ``"cannot open audio output device 'x'"``.
        hint: How to fix it (default: list the devices or write a file).
    """
    try:
        yield
    except TTSStreamError:
        raise
    except Exception as exc:
        sd = sys.modules.get("sounddevice")
        portaudio_error = getattr(sd, "PortAudioError", None)
        if isinstance(exc, OSError) and portaudio_error is None:
            raise AudioDeviceError(_NO_PORTAUDIO.format(_one_line(exc))) from exc
        if not isinstance(exc, (OSError, ValueError)) and not (
            isinstance(portaudio_error, type) and isinstance(exc, portaudio_error)
        ):
            raise
        tail = f" {hint}" if hint else ""
        raise AudioDeviceError(f"{doing}: {_one_line(exc)}.{tail}") from exc


def _output_devices(sd: ModuleType) -> str:
    """`` The output devices here: 0 'tap', 1 'pulse'.`` (or that there are none), for a
    message about a device that does not exist."""
    try:
        devices = [
            f"{i} {str(d['name'])!r}"
            for i, d in enumerate(sd.query_devices())
            if int(d["max_output_channels"]) > 0
        ]
    except Exception:  # the list is a courtesy: never hide the real error behind it
        return " " + _LIST_HINT
    if not devices:
        return " There is no output device here; use --output FILE.wav."
    return f" The output devices here: {', '.join(devices)} (or use --output FILE.wav)."


def import_sounddevice() -> ModuleType:
    """Import :mod:`sounddevice`, mapping a missing PortAudio to :class:`AudioDeviceError`."""
    with portaudio_errors("cannot load PortAudio"):
        import sounddevice
    module: ModuleType = sounddevice
    return module


class DeviceCallback:
    """The PortAudio callback of a :class:`SoundDeviceSink`: ``Playout.fill`` into the
    device's buffer, on PortAudio's thread.

    sounddevice's contract (``Stream`` docstring): always fill the whole buffer, never
    block or allocate, and no exception reaches anyone. So:

    * On the normal path nothing is allocated: the block is filled into a scratch array
      made once (``frames`` frames) and copied into PortAudio's buffer. A block of
      another length (PortAudio may send one when it does not honour ``blocksize``) is
      filled through a view of the buffer instead, which allocates a small array header.
    * Any exception zero-fills the buffer and is counted in ``playout.callback_errors``
      (``SinkStatistics.callback_errors``); trio is woken to look.
    * PortAudio's ``status`` flags: an output underflow is counted in
      ``playout.device_underflows``. (Many hosts never set it: the ring's own underrun
      count is the reliable one.)

    Args:
        playout: The ring and its real-time logic.
        frames: The stream's block length.
        clock: The callback's clock (its ``now``); :func:`time.perf_counter`.

    Attributes:
        fallback_latency: Seconds from a block's start to its first frame being heard,
            used when PortAudio's ``outputBufferDacTime - currentTime`` is implausible
            (the stream's reported latency, set once it is open).
    """

    def __init__(
        self, playout: Playout, frames: int, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.playout = playout
        self.fallback_latency = 0.0
        self._frames = frames
        self._clock = clock
        self._scratch = np.zeros((frames, playout.ring.channels), dtype=playout.ring.dtype)
        self._scratch_bytes = self._scratch.data.cast("B")
        self._silence = memoryview(bytes(self._scratch.nbytes))

    def __call__(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        playout = self.playout
        try:
            if status.output_underflow:
                playout.device_underflows += 1
            now = self._clock()
            delay = time_info.outputBufferDacTime - time_info.currentTime
            if not 0.0 < delay < 2.0:
                delay = self.fallback_latency
            if frames == self._frames:
                playout.fill(self._scratch, now, delay)
                outdata[:] = self._scratch_bytes
            else:
                out = np.frombuffer(outdata, dtype=self._scratch.dtype)
                playout.fill(out.reshape(frames, self._scratch.shape[1]), now, delay)
        except BaseException:  # nothing above this thread could handle it
            self._failed(outdata)

    def _failed(self, outdata: Any) -> None:
        """Play silence for this block, count the failure and wake trio."""
        with suppress(BaseException):
            self.playout.callback_errors += 1
            if len(outdata) == len(self._silence):
                outdata[:] = self._silence
            else:
                np.frombuffer(outdata, dtype=np.uint8)[:] = 0
            self.playout.wake()


class SoundDeviceSink(BufferedSink):
    """Plays through PortAudio with a callback :class:`sounddevice.RawOutputStream`.

    sounddevice is imported on first :meth:`open`, so the package imports without
    PortAudio. The stream keeps running (playing silence while paused) until
    :meth:`aclose`, so one sink can play many utterances without reopening the device.
    Every PortAudio failure is an :class:`AudioDeviceError`; the callback itself never
    raises (see :class:`DeviceCallback`; ``statistics()`` counts ``callback_errors`` and
    ``device_underflows``).

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

    #: A listener is there: an underrun fades out and back in over 5 ms (no click).
    underrun_fade_ms = 5.0
    #: PortAudio calls back every block (10 ms) while the stream runs: half a second
    #: without a callback is a device or sound server that stopped (see
    #: :mod:`._watchdog` for how the figure was chosen).
    consumer_timeout_s: float | None = 0.5

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
        self._fallback_latency = 0.0

    @property
    def output_latency(self) -> float:
        """PortAudio's reported output latency in seconds (0 before :meth:`open`)."""
        return self._fallback_latency

    def _to_trio_time(self, t: float) -> float:
        return trio.current_time() - (time.perf_counter() - t)

    async def _supported(self, want: AudioFormat) -> AudioFormat:
        sd = import_sounddevice()
        device = self.device

        def check() -> AudioFormat:
            try:
                with portaudio_errors("unsupported output format"):
                    sd.check_output_settings(
                        device=device,
                        samplerate=want.sample_rate,
                        channels=want.channels,
                        dtype=self.dtype,
                    )
                return want
            except AudioDeviceError:
                pass  # not as it is: take the device's own rate, and fewer channels
            try:
                with portaudio_errors(f"no usable audio output device {device!r}", hint=""):
                    info = sd.query_devices(device, "output")
            except AudioDeviceError as exc:
                raise AudioDeviceError(f"{exc}{_output_devices(sd)}") from exc.__cause__
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
        callback = DeviceCallback(playout, self.block_frames)

        def ended() -> None:  # trio thread
            if self._playout is playout and self._stream is not None:
                self._fail(
                    "the audio output stopped: PortAudio ended the stream (the device "
                    "or the sound server went away)"
                )

        def finished() -> None:  # PortAudio's thread, also after our own stop()
            with suppress(trio.RunFinishedError):
                token.run_sync_soon(ended)

        def start() -> Any:
            stream = sd.RawOutputStream(
                samplerate=fmt.sample_rate,
                channels=fmt.channels,
                dtype=self.dtype,
                device=self.device,
                blocksize=self.block_frames,
                latency=self.latency,
                callback=callback,
                finished_callback=finished,
            )
            try:
                stream.start()
            except BaseException:
                stream.close()
                raise
            return stream

        doing = (
            f"cannot open audio output device {self.device!r} at {fmt.sample_rate} Hz, "
            f"{fmt.channels} channel(s)"
        )
        with portaudio_errors(doing):
            self._stream = await trio.to_thread.run_sync(start)
            self._fallback_latency = callback.fallback_latency = float(self._stream.latency)

    async def _stop_consumer(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            await trio.lowlevel.checkpoint()
            return

        def stop() -> None:
            try:
                stream.stop()
            finally:
                stream.close()

        failed = self.failed is not None
        with trio.CancelScope(shield=True):
            with trio.move_on_after(STOP_TIMEOUT_S) as waited:
                try:
                    with portaudio_errors("cannot stop the audio output"):
                        await trio.to_thread.run_sync(stop, abandon_on_cancel=True)
                except AudioDeviceError:
                    if not failed:
                        raise  # a stream that failed may fail to stop too
            if waited.cancelled_caught:
                _abandon(stream)
