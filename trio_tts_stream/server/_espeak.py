"""A local voice engine: espeak-ng, embedded through ctypes (the ``espeak`` extra).

The library and its data come from the PyPI package ``espeakng-loader``; resampling from
espeak-ng's native rate (22050 Hz) to the requested one uses ``soxr``. Both are installed
by ``pip install 'trio-tts-stream[espeak]'``; :func:`espeak_available` says whether they
are there, and :class:`EspeakEngine` raises :class:`~trio_tts_stream.ConfigError` with
that command when they are not.

Voices and speed
----------------
The eleven OpenAI voice names map to fixed espeak-ng voices, a language plus a voice
variant (:data:`ESPEAK_VOICES`; male voices on male variants, female on female ones,
``fable`` British, ``verse`` Scottish). ``speed`` becomes words per minute,
``175 * speed`` (espeak-ng's default rate is 175), clamped to ``80..700``
(:func:`speed_to_wpm`): espeak-ng does not go slower than 80 wpm, so OpenAI speeds below
0.46 all sound like 0.46; 700 wpm is OpenAI's top speed 4.0. Above 450 wpm espeak-ng
switches to time-stretching (Sonic), and the switch is not seamless: 440 wpm comes out
about 6% *shorter* than 450 wpm. Durations otherwise shrink in proportion to the speed.

Determinism
-----------
Same text, voice, speed and sample rate, same samples, whatever ran before. Two things
stand in the way, both measured:

* espeak-ng keeps synthesis state in C statics that ``espeak_Terminate`` does not reset
  (the pitch "flutter" position, the gain control, the glottal cycle count): two identical
  calls in a row differ, by up to a few hundred samples in length. Each synthesis
  therefore runs in a freshly loaded copy of the library: load (``dlopen``),
  ``espeak_Initialize``, synthesize, ``espeak_Terminate``, unload (``dlclose``). This
  costs about 3 ms per synthesis, and leaks about 2-4 KB per synthesis (memory espeak-ng
  allocates when it loads a voice and never frees). It relies on ``dlclose`` really
  unloading the library, as glibc does when nothing else holds it: if another package in
  the same process has loaded the same ``libespeak-ng`` file, the two share its state
  (and its lock is not ours), and the output may depend on earlier calls again.
* Voice variants with "breath" (``f2``, ``f3``, ``f5``, ...) and the Klatt variants mix in
  noise from C's process-wide ``rand()``; none of them is used.

Threading
---------
espeak-ng is one global synthesizer per process, so one synthesis runs at a time: every
synthesis holds a process-wide :class:`threading.Lock` from loading the library until it
unloads it. Synthesis runs in ``AUDIO_OUTPUT_SYNCHRONOUS`` mode: ``espeak_Synth`` returns
when the text is done, calling the synth callback on the calling thread each time it has
filled its buffer (:data:`BLOCK_MS` of audio). The callback resamples the block and hands
it on; returning 1 from it aborts the synthesis.

* :meth:`EspeakEngine.synthesize_all` runs in the calling thread and returns everything.
* :meth:`EspeakEngine.synthesize` starts a worker thread on the first ``next()``, which
  puts blocks into a bounded :class:`queue.Queue`; closing the generator aborts the
  synthesis and joins the thread.
* :meth:`EspeakEngine.synthesize_async` is for trio. On the first ``__anext__`` it starts
  the synthesis in a thread from trio's thread cache
  (:func:`trio.lowlevel.start_thread_soon`, what :func:`trio.to_thread.run_sync` runs on),
  and the callback sends each block into a bounded trio memory channel with
  :func:`trio.from_thread.run`, which waits while the channel is full. When the generator
  ends for any reason (exhausted, closed with ``aclose()``, the consumer cancelled or
  failed, or garbage collected), it sets an abort flag, closes the channel and waits
  (shielded) for the thread: the blocked send fails, the callback returns 1, espeak-ng
  stops within one block, and the synthesis is over (the thread back in trio's cache)
  before the generator finishes closing, about 1 ms after the consumer stops (measured).

  It is not built on :func:`trio.to_thread.run_sync` because that needs a task to await
  it, hence a nursery inside the generator, and a nursery cannot be suspended across
  ``yield``: a consumer that simply ``break``-s out of ``async for`` then corrupts trio's
  cancel-scope stack (measured: ``TrioInternalError``). Without a nursery, the generator
  is safe to abandon; still close it promptly (``contextlib.aclosing``) rather than leave
  it to the garbage collector.

**Back-pressure holds the lock.** While the consumer is behind by ``max_buffered_blocks``
blocks, the synthesis waits inside the callback, holding the lock, and every other espeak
synthesis in the process waits too. A consumer that paces its reading in real time
(a server sending audio at 1x) should pass ``max_buffered_blocks=None`` (unbounded: the
memory ceiling is then the whole audio, about 2.9 MB per minute at 24 kHz; synthesis runs
at several hundred times real time) or read eagerly into its own buffer. A synthesis
waiting for the lock notices an abort within 50 ms.
"""

from __future__ import annotations

import ctypes
import importlib
import math
import os
import queue
import sys
import threading
from collections.abc import AsyncGenerator, Callable, Generator
from contextlib import suppress
from dataclasses import dataclass
from functools import cache, partial
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
import outcome
import trio

from .._exceptions import ConfigError
from .._format import float_to_int16, int16_to_float

__all__ = [
    "BLOCK_MS",
    "DEFAULT_WPM",
    "ESPEAK_VOICES",
    "MAX_WPM",
    "MIN_WPM",
    "VOICES",
    "EspeakEngine",
    "espeak_available",
    "speed_to_wpm",
]

_Samples = npt.NDArray[np.int16]

ESPEAK_VOICES: MappingProxyType[str, str] = MappingProxyType(
    {
        "alloy": "en-us+steph",
        "ash": "en-us+m3",
        "ballad": "en+m6",
        "coral": "en-us+f4",
        "echo": "en-us+m2",
        "fable": "en-gb-x-rp+m1",
        "onyx": "en-us+m8",
        "nova": "en-us+f1",
        "sage": "en+belinda",
        "shimmer": "en-us+Andrea",
        "verse": "en-gb-scotland+m4",
    }
)
"""OpenAI voice name -> espeak-ng voice (``language+variant``), fixed."""

VOICES: tuple[str, ...] = tuple(ESPEAK_VOICES)
"""The OpenAI voice names the espeak engine knows."""

DEFAULT_WPM = 175
"""espeak-ng's default rate, words per minute: speed 1.0."""

MIN_WPM = 80
"""The slowest rate espeak-ng honours (it clamps slower requests to this itself)."""

MAX_WPM = 700
"""The fastest rate used: ``DEFAULT_WPM * 4.0``, OpenAI's top speed."""

BLOCK_MS = 100
"""espeak-ng's output buffer in milliseconds of audio: blocks are about this long."""

_INSTALL_HINT = "the espeak voice needs: pip install 'trio-tts-stream[espeak]'"
_POLL_S = 0.05  # how often a blocked worker checks its abort flag

# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # report errors instead of calling exit()
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_EE_OK = 0

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

# One synthesis at a time in the whole process (espeak-ng is a global synthesizer).
_LOCK = threading.Lock()


def espeak_available() -> bool:
    """Whether the ``espeak`` extra (``espeakng-loader`` and ``soxr``) is installed."""
    try:
        _paths()
    except ConfigError:
        return False
    return True


def speed_to_wpm(speed: float) -> int:
    """The espeak-ng rate for an OpenAI ``speed``: ``175 * speed`` clamped to ``80..700``.

    Raises:
        ValueError: If ``speed`` is not a positive finite number.
    """
    number = isinstance(speed, (int, float)) and not isinstance(speed, bool)
    if not (number and math.isfinite(speed) and speed > 0):
        raise ValueError(f"speed must be a positive number, got {speed!r}")
    return min(MAX_WPM, max(MIN_WPM, round(DEFAULT_WPM * speed)))


class EspeakEngine:
    """Speech from espeak-ng, streamed in blocks as it is synthesized.

    Every method takes ``text``, an OpenAI ``voice`` name (one of :data:`VOICES`), a
    ``speed`` (see :func:`speed_to_wpm`) and the output ``sample_rate``, and produces mono
    int16 samples. Arguments are checked when the method is called, before any
    synthesis. The output is deterministic (see the module documentation).

    Raises:
        ConfigError: On construction, if the ``espeak`` extra is not installed.
    """

    name = "espeak"
    voices: tuple[str, ...] = VOICES

    def __init__(self) -> None:
        _paths()

    def synthesize_all(
        self, text: str, *, voice: str, speed: float = 1.0, sample_rate: int = 24000
    ) -> _Samples:
        """Synthesize ``text`` in the calling thread and return all of its samples.

        Blocks the thread (also waiting for any other espeak synthesis to finish): from
        trio, use :meth:`synthesize_async`.

        Raises:
            ValueError: If ``voice``, ``speed`` or ``sample_rate`` is invalid.
        """
        job = _Job.make(text, voice, speed, sample_rate)
        blocks: list[_Samples] = []

        def emit(block: _Samples) -> bool:
            blocks.append(block)
            return True

        _run(job, emit, threading.Event())
        return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int16)

    def synthesize(
        self,
        text: str,
        *,
        voice: str,
        speed: float = 1.0,
        sample_rate: int = 24000,
        max_buffered_blocks: int | None = 32,
    ) -> Generator[_Samples, None, None]:
        """Yield the samples of ``text`` in blocks as espeak-ng produces them.

        A worker thread synthesizes into a queue of at most ``max_buffered_blocks`` blocks
        (``None``: unbounded) from the first ``next()`` on. Close the generator (or
        exhaust it) to stop: closing aborts the synthesis and joins the worker. Blocks
        are about :data:`BLOCK_MS` ms long; some may be shorter, none is empty.

        Raises:
            ValueError: At once (not on iteration) if an argument is invalid.
        """
        job = _Job.make(text, voice, speed, sample_rate)
        return _iterate(job, _check_buffer(max_buffered_blocks))

    def synthesize_async(
        self,
        text: str,
        *,
        voice: str,
        speed: float = 1.0,
        sample_rate: int = 24000,
        max_buffered_blocks: int | None = 32,
    ) -> AsyncGenerator[_Samples, None]:
        """Yield the blocks of ``text`` as espeak-ng produces them, synthesized off trio's thread.

        ::

            async with contextlib.aclosing(engine.synthesize_async(text, voice="nova")) as blocks:
                async for block in blocks:
                    ...

        The blocks come through a trio memory channel of ``max_buffered_blocks`` blocks
        (``None``: unbounded; read the module documentation before bounding it for a
        reader slower than real time). Closing the generator early aborts the synthesis
        and waits for its thread (about a millisecond; up to 50 ms more if the
        synthesis was still waiting for another one to finish). An error in the
        synthesis is raised after the last block it produced.

        Raises:
            ValueError: At once (not on iteration) if an argument is invalid.
        """
        job = _Job.make(text, voice, speed, sample_rate)
        return _generate(job, _check_buffer(max_buffered_blocks))


# --------------------------------------------------------------------------------------
# Jobs and the synthesis itself (any thread)


@dataclass(frozen=True)
class _Job:
    text: bytes  # UTF-8, no NUL
    voice: bytes  # espeak-ng voice name
    wpm: int
    sample_rate: int

    @classmethod
    def make(cls, text: str, voice: str, speed: float, sample_rate: int) -> _Job:
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        try:
            espeak_voice = ESPEAK_VOICES[voice]
        except (KeyError, TypeError):
            known = ", ".join(VOICES)
            raise ValueError(f"unknown voice {voice!r}; known voices: {known}") from None
        wpm = speed_to_wpm(speed)
        if (
            not (isinstance(sample_rate, int) and not isinstance(sample_rate, bool))
            or sample_rate < 1
        ):
            raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
        # espeak-ng reads a NUL-terminated string: a NUL would end the text early.
        data = text.replace("\0", " ").encode("utf-8", "replace")
        return cls(data, espeak_voice.encode("ascii"), wpm, sample_rate)


def _check_buffer(max_buffered_blocks: int | None) -> int:
    """The queue size for ``max_buffered_blocks``: 0 means unbounded."""
    if max_buffered_blocks is None:
        return 0
    if not (isinstance(max_buffered_blocks, int) and max_buffered_blocks >= 1):
        raise ValueError(f"max_buffered_blocks must be None or >= 1, got {max_buffered_blocks!r}")
    return max_buffered_blocks


def _run(job: _Job, emit: Callable[[_Samples], bool], stop: threading.Event) -> None:
    """Synthesize ``job``, passing each block to ``emit`` (in this thread).

    ``emit`` returns False, or ``stop`` is set, to abort. Holds the process lock while
    espeak-ng runs (including inside ``emit``), but not for the final block.
    """
    lib_path, data_path = _paths()
    while not _LOCK.acquire(timeout=_POLL_S):
        if stop.is_set():
            return
    try:
        if stop.is_set():
            return
        lib = _Library(lib_path)
        try:
            native_rate = lib.initialize(data_path)
            resampler = _Resampler(native_rate, job.sample_rate)
            lib.set_voice(job.voice)
            lib.set_rate(job.wpm)
            completed = lib.synthesize(job.text, resampler, emit, stop)
        finally:
            lib.close()
    finally:
        _LOCK.release()
    if completed:
        tail = resampler.flush()
        if tail.size:
            emit(tail)


class _Resampler:
    """int16 at espeak-ng's rate -> int16 at ``out_rate`` (soxr in float32: exact stream)."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self._stream: Any = None
        if in_rate != out_rate:
            import soxr

            self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32")

    def process(self, samples: _Samples) -> _Samples:
        if self._stream is None:
            return samples
        out = self._stream.resample_chunk(int16_to_float(samples), last=False)
        return float_to_int16(out)

    def flush(self) -> _Samples:
        if self._stream is None:
            return np.zeros(0, dtype=np.int16)
        out = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        return float_to_int16(out)


class _Library:
    """One freshly loaded instance of libespeak-ng: its C statics start from scratch.

    Use each instance for one synthesis, then :meth:`close` it (which unloads the
    library: no function of it may be called afterwards). Callers hold ``_LOCK``.
    """

    def __init__(self, path: str) -> None:
        lib = ctypes.CDLL(path)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,  # text
            ctypes.c_size_t,  # size
            ctypes.c_uint,  # position
            ctypes.c_int,  # position_type
            ctypes.c_uint,  # end_position
            ctypes.c_uint,  # flags
            ctypes.c_void_p,  # unique_identifier
            ctypes.c_void_p,  # user_data
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.argtypes = []
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_Terminate.argtypes = []
        lib.espeak_Terminate.restype = ctypes.c_int
        self._lib: ctypes.CDLL | None = lib
        self._initialized = False

    def _c(self) -> ctypes.CDLL:
        if self._lib is None:
            raise RuntimeError("the espeak-ng library has been unloaded")
        return self._lib

    def initialize(self, data_path: bytes) -> int:
        """``espeak_Initialize``; returns espeak-ng's native sample rate."""
        rate = int(
            self._c().espeak_Initialize(
                _AUDIO_OUTPUT_SYNCHRONOUS, BLOCK_MS, data_path, _INITIALIZE_DONT_EXIT
            )
        )
        if rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialize with data at {data_path!r}")
        self._initialized = True
        return rate

    def set_voice(self, name: bytes) -> None:
        status = int(self._c().espeak_SetVoiceByName(name))
        if status != _EE_OK:
            raise RuntimeError(f"espeak-ng has no voice {name.decode()!r} (error {status})")

    def set_rate(self, wpm: int) -> None:
        status = int(self._c().espeak_SetParameter(_PARAM_RATE, wpm, 0))
        if status != _EE_OK:
            raise RuntimeError(f"espeak-ng refused a rate of {wpm} wpm (error {status})")

    def synthesize(
        self,
        text: bytes,
        resampler: _Resampler,
        emit: Callable[[_Samples], bool],
        stop: threading.Event,
    ) -> bool:
        """Run ``espeak_Synth``; returns whether it ran to the end (was not aborted)."""
        errors: list[BaseException] = []
        aborted = False

        def on_audio(wav: Any, n: int, events: Any) -> int:
            # Called by espeak-ng in this thread. Never let an exception escape: ctypes
            # would print it and return 0 ("continue"). Keep it and abort instead.
            nonlocal aborted
            try:
                if n > 0 and wav:
                    block = resampler.process(np.ctypeslib.as_array(wav, shape=(n,)).copy())
                    if block.size and not emit(block):
                        aborted = True
                if stop.is_set():
                    aborted = True
            except BaseException as exc:
                errors.append(exc)
                aborted = True
            return 1 if aborted else 0

        callback = _SynthCallback(on_audio)  # referenced until espeak_Synth returns
        lib = self._c()
        lib.espeak_SetSynthCallback(callback)
        status = int(
            lib.espeak_Synth(text, len(text) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        )
        lib.espeak_Synchronize()
        if errors:
            raise errors[0]
        if status != _EE_OK and not aborted:
            raise RuntimeError(f"espeak-ng failed to synthesize (error {status})")
        return not aborted

    def close(self) -> None:
        """``espeak_Terminate`` and unload the library (idempotent)."""
        lib, self._lib = self._lib, None
        if lib is None:
            return
        if self._initialized:
            lib.espeak_Terminate()
        handle = lib._handle
        del lib
        _unload(handle)


def _unload(handle: int) -> None:
    import _ctypes

    if sys.platform == "win32":
        _ctypes.FreeLibrary(handle)
    else:
        _ctypes.dlclose(handle)


@cache
def _paths() -> tuple[str, bytes]:
    """(library file, data directory) of espeakng-loader; ConfigError if missing."""
    try:
        # (imported by name: the package has no type information)
        espeakng_loader: Any = importlib.import_module("espeakng_loader")
        import soxr  # noqa: F401 (needed to resample; checked here to fail early)
    except ImportError as exc:
        raise ConfigError(f"{_INSTALL_HINT} ({exc})") from exc
    lib_path = str(espeakng_loader.get_library_path())
    try:
        data_path = str(espeakng_loader.get_data_path())
    except RuntimeError as exc:
        raise ConfigError(f"{_INSTALL_HINT} ({exc})") from exc
    if not os.path.isfile(lib_path):
        raise ConfigError(f"{_INSTALL_HINT} (no espeak-ng library at {lib_path})")
    return lib_path, os.fsencode(data_path)


# --------------------------------------------------------------------------------------
# Thread and trio plumbing


def _iterate(job: _Job, size: int) -> Generator[_Samples, None, None]:
    """The generator behind :meth:`EspeakEngine.synthesize`."""
    blocks: queue.Queue[_Samples | None] = queue.Queue(size)  # None: the end
    stop = threading.Event()
    failure: list[BaseException] = []

    def put(item: _Samples | None) -> bool:
        while not stop.is_set():
            try:
                blocks.put(item, timeout=_POLL_S)
            except queue.Full:
                continue
            return True
        return False

    def work() -> None:
        try:
            _run(job, put, stop)
        except BaseException as exc:
            failure.append(exc)
        finally:
            put(None)

    thread = threading.Thread(target=work, name="trio-tts-stream-espeak", daemon=True)
    thread.start()
    try:
        while (block := blocks.get()) is not None:
            yield block
        if failure:
            raise failure[0]
    finally:
        stop.set()
        thread.join()


async def _generate(job: _Job, size: int) -> AsyncGenerator[_Samples, None]:
    """The async generator behind :meth:`EspeakEngine.synthesize_async`."""
    send, receive = trio.open_memory_channel[_Samples](math.inf if size == 0 else size)
    stop = threading.Event()
    done = trio.Event()
    token = trio.lowlevel.current_trio_token()
    failure: list[BaseException] = []

    def emit(block: _Samples) -> bool:  # worker thread, inside espeak-ng's callback
        if stop.is_set():
            return False
        try:
            trio.from_thread.run(send.send, block, trio_token=token)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False  # the consumer is gone: abort
        except (trio.Cancelled, trio.RunFinishedError):
            return False  # the trio run is shutting down
        return True

    def finish() -> None:  # trio thread
        send.close()
        done.set()

    def deliver(result: outcome.Outcome[None]) -> None:  # worker thread, when it is done
        if isinstance(result, outcome.Error):
            failure.append(result.error)
        with suppress(trio.RunFinishedError):
            token.run_sync_soon(finish)

    trio.lowlevel.start_thread_soon(
        partial(_run, job, emit, stop), deliver, name="trio-tts-stream espeak"
    )
    try:
        async for block in receive:
            yield block
        if failure:
            raise failure[0]
    finally:
        stop.set()
        receive.close()
        with trio.CancelScope(shield=True):
            await done.wait()
