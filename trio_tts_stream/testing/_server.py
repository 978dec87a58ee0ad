"""An OpenAI-compatible text-to-speech server for tests, benchmarks and local use.

Built on raw trio sockets and h11, with no server framework. It answers
``POST /v1/audio/speech`` like OpenAI's API does, but with audio from a local engine
(:data:`ENGINES`: the deterministic tone of
:func:`~trio_tts_stream.testing.synthesize_tone`, or real speech from espeak-ng),
streamed with ``Transfer-Encoding: chunked`` in pieces of ``chunk_ms`` of audio, after
a configurable time to first byte and at a configurable multiple of real time. Errors
are OpenAI-style JSON. :meth:`TestServer.render` returns exactly the body a request
would get, so tests can compare what a client played with what was sent, bit for bit.

Theory of operation
-------------------
One task per connection (:func:`trio.serve_listeners`); a connection loops over
requests (keep-alive) with an :class:`h11.Connection`. For each request the handler reads
the whole body (at most ``max_body_bytes`` of it is kept), validates it, and sends piece
``k`` of the response body (see the pure :func:`render_chunks`) at
``received + chunk_schedule(...)[k]``, where ``received`` is the moment the request was
fully received. The audio is synthesized as the pieces go out, so a long input
neither delays the first byte nor blocks the event loop for long (see *Engines* below).
Waiting uses :func:`trio.sleep_until`, so the timing is exact under pytest-trio's
``autojump_clock``. The response headers go out together with the first piece, so the
first byte the client sees is sent at ``ttfb_ms``. A client that disconnects ends its
own task quietly (no traceback); any other exception in a connection task is logged and
kept in :attr:`TestServer.errors`, and never stops the server. Idle keep-alive
connections are kept until the client closes them or the server stops.

Response formats live in a small registry (:data:`_FORMATS`): a format is a content type
plus an incremental encoder (``encode(int16 samples) -> bytes``, ``flush() -> bytes``).
``pcm`` and ``wav`` are written here; ``mp3``, ``opus`` (Ogg), ``aac`` (ADTS) and ``flac``
come from :mod:`._encode` (PyAV), and are answered with a 400 naming the missing extra
when PyAV is not installed. Every format encodes the same samples, and is paced the same
way: piece ``k`` holds what the encoder produced once it had been fed audio up to the end
of piece ``k``, and goes out when that audio is due. A compressed encoder emits whole
codec frames, and only after its look-ahead, so some pieces are empty and the first audio
bytes come a codec frame or two later than with ``pcm`` (see :mod:`._encode`). Encoding
runs in the connection's task, between sends: an unpaced body is sent at least every
second of audio, so that a slow codec does not hold the event loop for long, and a
``realtime_factor`` above the codec's speed (opus: ~75x on one core) falls behind the
schedule instead of keeping it.

Faults and audio files
----------------------
Each request gets a number (from 0, in the order received) and, from the server's
:class:`~trio_tts_stream.testing.FaultPlan`, its faults (see :mod:`._faults`). A request
closed or failed before its headers is recorded and then closed, or answered with the
plan's status. For a body, the request's sans-IO :class:`~._faults.Shaper` turns piece
``k`` and its due time into the writes that actually happen: delayed (jitter, stall,
bandwidth) and maybe cut short, after which the connection is closed. Without faults the
writes are the pieces at their due times, as above. A truncated speech body
(``truncate_after_bytes``) is rendered in full first, for its ``Content-Length``.

``GET {FILES_PATH}{name}`` serves a file registered with :meth:`TestServer.add_file` or
:meth:`TestServer.audio_url` (the bytes of a speech response, in the same pieces) with
``Content-Length``, ``ETag`` and ``Range`` (see :mod:`._ranges`); a range is the same
pieces, cut at its ends, paced from ``ttfb_ms`` on. Faults apply to these bodies too.

Engines
-------
An engine (:data:`_ENGINES`) makes int16 mono samples at :data:`SAMPLE_RATE` in two ways:
``stream``, for the server, an async generator of blocks (and the total number of frames
if it is known up front), and ``render``, for :func:`render_chunks`,
:meth:`TestServer.render` and :meth:`TestServer.reference_pcm`, in the calling thread.
Both give the same samples, so :meth:`TestServer.render` is exactly what the server
sends. The sans-IO :class:`_Pieces` turns blocks of any size into the body's pieces.

* ``tone`` computes its blocks lazily in the connection's task, a second of audio
  (under a millisecond of work) at a time, and knows its length up front.
* ``espeak`` synthesizes in a worker thread (:mod:`._espeak`: one synthesis at a time
  per process, at several hundred times real time) into an unbounded queue: a paced
  response must not hold up the synthesis of the others, which would wait for it. The
  memory ceiling is the whole audio of the responses in progress, about 2.9 MB per
  minute of audio. The length is known only at the end, and only ``wav_exact_sizes``
  needs it: with that option an ``espeak`` response is synthesized in full before its
  first byte (a few milliseconds per second of audio); otherwise pieces go out as the
  synthesis makes them. A response whose client goes away aborts its synthesis (within
  a block of espeak-ng, about a millisecond), which frees espeak-ng for the next one.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import re
import ssl
import struct
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterable, Iterator
from contextlib import aclosing, asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol

import h11
import numpy as np
import numpy.typing as npt
import outcome
import trio
import trio.testing

from .._exceptions import ConfigError
from . import _espeak
from ._faults import FaultPlan, Shaper
from ._ranges import FullBody, NotSatisfiable, PartialBody, select_range, slice_pieces, strong_etag
from ._tone import VOICES, tone_blocks, tone_frames

try:
    from ._encode import ENCODERS as _PYAV_ENCODERS
except ImportError:  # PyAV is optional (the "formats" extra): serve pcm and wav only
    _PYAV_ENCODERS = {}

__all__ = [
    "ENGINES",
    "FILES_PATH",
    "MAX_INPUT_CHARS",
    "OPENAI_RESPONSE_FORMATS",
    "RESPONSE_FORMATS",
    "SAMPLE_RATE",
    "SPEECH_PATH",
    "RecordedRequest",
    "TestServer",
    "chunk_schedule",
    "open_test_server",
    "render_chunks",
    "serve",
    "wav_header",
]

_log = logging.getLogger("trio_tts_stream.testing")

SAMPLE_RATE = 24000
"""Sample rate of every response, as OpenAI's ``pcm`` (s16le, mono)."""

SPEECH_PATH = "/v1/audio/speech"
"""The speech endpoint (``POST``)."""

FILES_PATH = "/v1/audio/files/"
"""Where the audio files of :meth:`TestServer.add_file` and :meth:`TestServer.audio_url`
are served (``GET`` and ``HEAD``, with ``Range``), followed by the file's name."""

MAX_INPUT_CHARS = 4096
"""Longest ``input`` accepted, as OpenAI's limit."""

OPENAI_RESPONSE_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
"""Every ``response_format`` OpenAI knows (all implemented here when PyAV is installed)."""

_SPEED_MIN = 0.25
_SPEED_MAX = 4.0
_DEFAULT_FORMAT = "mp3"  # OpenAI's default (a 400 without PyAV)
_FORMATS_EXTRA = "trio-tts-stream[formats]"
_RECEIVE_SIZE = 65536
_SEND_SIZE = 65536  # unpaced bodies are written in batches of about this many bytes,
_SEND_AUDIO_MS = 1000  # or of this much audio (bounds how long encoding holds the loop)
_DRAIN_LIMIT = 16 * 1024 * 1024  # read and discard at most this much of an oversized body
_CLOSE_TIMEOUT = 1.0
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


# --------------------------------------------------------------------------------------
# Engines and formats (registries)


_Samples = npt.NDArray[np.int16]


class _Engine(Protocol):
    """A synthesizer: int16 mono samples for ``(text, voice, speed, sample_rate)``.

    The methods check their arguments when called (``ValueError``), before synthesizing.
    """

    @property
    def name(self) -> str: ...

    @property
    def voices(self) -> tuple[str, ...]: ...

    def check(self) -> None:
        """Raise :class:`ConfigError` (saying what to install) if the engine cannot run."""

    def render(
        self, text: str, voice: str, speed: float, sample_rate: int
    ) -> tuple[int, Iterator[_Samples]]:
        """``(total frames, the samples in blocks)``, made in the calling thread."""

    def stream(
        self, text: str, voice: str, speed: float, sample_rate: int
    ) -> tuple[int | None, AsyncGenerator[_Samples, None]]:
        """``(total frames if known up front, the same samples in blocks as they are made)``.

        Close the generator when done with it (``aclosing``): that ends the synthesis.
        """


class _ToneEngine:
    """:func:`~trio_tts_stream.testing.synthesize_tone`, computed a second at a time."""

    name = "tone"
    voices: tuple[str, ...] = VOICES

    def check(self) -> None:
        pass

    def render(
        self, text: str, voice: str, speed: float, sample_rate: int
    ) -> tuple[int, Iterator[_Samples]]:
        frames = tone_frames(text, speed=speed, sample_rate=sample_rate)
        return frames, tone_blocks(text, voice=voice, speed=speed, sample_rate=sample_rate)

    def stream(
        self, text: str, voice: str, speed: float, sample_rate: int
    ) -> tuple[int | None, AsyncGenerator[_Samples, None]]:
        frames, blocks = self.render(text, voice, speed, sample_rate)
        return frames, _async_blocks(blocks)


class _EspeakEngine:
    """espeak-ng (:mod:`._espeak`, the ``espeak`` extra)."""

    name = "espeak"
    voices: tuple[str, ...] = _espeak.VOICES

    def check(self) -> None:
        _espeak.EspeakEngine()

    def render(
        self, text: str, voice: str, speed: float, sample_rate: int
    ) -> tuple[int, Iterator[_Samples]]:
        samples = _espeak.EspeakEngine().synthesize_all(
            text, voice=voice, speed=speed, sample_rate=sample_rate
        )
        return len(samples), iter((samples,))

    def stream(
        self, text: str, voice: str, speed: float, sample_rate: int
    ) -> tuple[int | None, AsyncGenerator[_Samples, None]]:
        # Unbounded: a synthesis waiting for a slow (or paced) reader would hold
        # espeak-ng's process-wide lock, and every other request would wait for it.
        blocks = _espeak.EspeakEngine().synthesize_async(
            text, voice=voice, speed=speed, sample_rate=sample_rate, max_buffered_blocks=None
        )
        return None, _busy_waiting(blocks) if _autojump_clock() else blocks


async def _async_blocks(blocks: Iterable[_Samples]) -> AsyncGenerator[_Samples, None]:
    for block in blocks:
        yield block


def _autojump_clock() -> bool:
    """Whether this trio run's clock jumps ahead when every task is waiting.

    As pytest-trio's ``autojump_clock`` does. It cannot see a worker thread working.
    """
    clock = trio.lowlevel.current_clock()
    return isinstance(clock, trio.testing.MockClock) and clock.autojump_threshold < math.inf


async def _busy_waiting(blocks: AsyncGenerator[_Samples, None]) -> AsyncGenerator[_Samples, None]:
    """``blocks``, waited for without letting an autojump clock jump.

    While the synthesis thread works, every task may be waiting, and an autojump clock
    would jump to the next deadline (a client's timeout, say): synthesis would take
    virtual time, at random. Instead this keeps the run busy (zero-length sleeps) while
    it waits for a block, so that synthesis takes no virtual time, as with ``tone``, and
    the server's timing is exact in virtual time. Costs CPU while waiting: for tests only.
    """
    async with aclosing(blocks):
        while (block := await _next_busy_waiting(blocks)) is not None:
            yield block


async def _next_busy_waiting(blocks: AsyncGenerator[_Samples, None]) -> _Samples | None:
    """The next block (``None`` at the end), checkpointing until it is there."""
    result: list[outcome.Outcome[_Samples | None]] = []

    async def receive() -> None:
        result.append(await outcome.acapture(anext, blocks, None))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        while not result:  # busy on purpose: waiting on an Event would let time jump
            await trio.lowlevel.checkpoint()
    return result[0].unwrap()


_ENGINES: dict[str, _Engine] = {"tone": _ToneEngine(), "espeak": _EspeakEngine()}

ENGINES: tuple[str, ...] = tuple(_ENGINES)
"""The synthesizers: ``"tone"`` (always there) and ``"espeak"`` (needs the ``espeak``
extra; see :func:`~trio_tts_stream.testing.espeak_available`)."""


@dataclass(frozen=True)
class _EncoderOptions:
    sample_rate: int
    total_frames: int  # 0 if not known up front (only read with wav_exact_sizes)
    wav_exact_sizes: bool  # exact lengths in headers, for every format that has them


class _Encoder(Protocol):
    """Incremental int16 mono samples -> response body bytes.

    The header comes with the first call. ``close()`` releases resources; it is called
    also when a response is abandoned half way (the client went away).
    """

    def encode(self, samples: npt.NDArray[np.int16]) -> bytes: ...

    def flush(self) -> bytes: ...

    def close(self) -> None: ...


class _PCMEncoder:
    """Raw signed 16-bit little-endian samples, no header (OpenAI's ``pcm``)."""

    def __init__(self, options: _EncoderOptions) -> None:
        del options

    def encode(self, samples: npt.NDArray[np.int16]) -> bytes:
        return samples.astype("<i2", copy=False).tobytes()

    def flush(self) -> bytes:
        return b""

    def close(self) -> None:
        pass


class _WAVEncoder:
    """A 44-byte RIFF/WAVE header, then the ``pcm`` bytes.

    Like streaming servers, the RIFF and data chunk sizes are ``0xFFFFFFFF`` (unknown
    length) unless ``wav_exact_sizes`` is set.
    """

    def __init__(self, options: _EncoderOptions) -> None:
        self._header = wav_header(
            options.sample_rate,
            data_bytes=2 * options.total_frames if options.wav_exact_sizes else None,
        )

    def encode(self, samples: npt.NDArray[np.int16]) -> bytes:
        header, self._header = self._header, b""
        return header + samples.astype("<i2", copy=False).tobytes()

    def flush(self) -> bytes:
        header, self._header = self._header, b""
        return header

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class _Format:
    name: str
    content_type: str
    encoder: Callable[[_EncoderOptions], _Encoder]


def _pyav_format(name: str, encoder: Callable[..., _Encoder], content_type: str) -> _Format:
    def create(options: _EncoderOptions) -> _Encoder:
        return encoder(
            options.sample_rate, options.total_frames, exact_sizes=options.wav_exact_sizes
        )

    return _Format(name, content_type, create)


# The compressed formats are left out when ``import av`` fails, as httpx does with its
# optional decoders; requests for them then get a 400 that names the missing extra.
_FORMATS: dict[str, _Format] = {
    "pcm": _Format("pcm", "audio/pcm", _PCMEncoder),
    "wav": _Format("wav", "audio/wav", _WAVEncoder),
    **{name: _pyav_format(name, cls, cls.content_type) for name, cls in _PYAV_ENCODERS.items()},
}

RESPONSE_FORMATS: tuple[str, ...] = tuple(f for f in OPENAI_RESPONSE_FORMATS if f in _FORMATS)
"""The ``response_format`` values this server implements: all of
:data:`OPENAI_RESPONSE_FORMATS`, or only ``wav`` and ``pcm`` when PyAV is missing."""


def _format_error(response_format: object) -> str:
    """Why ``response_format`` cannot be served."""
    if response_format in OPENAI_RESPONSE_FORMATS:
        return (
            f"response_format {response_format!r} needs PyAV, which is not installed: "
            f"install {_FORMATS_EXTRA}. This server supports: "
            f"{', '.join(repr(f) for f in RESPONSE_FORMATS)}."
        )
    return (
        f"Unsupported response_format {_short(response_format)}. This server supports: "
        f"{', '.join(repr(f) for f in RESPONSE_FORMATS)}."
    )


def wav_header(sample_rate: int, *, data_bytes: int | None = None) -> bytes:
    """A 44-byte canonical WAV header for s16le mono audio.

    Args:
        sample_rate: Frames per second.
        data_bytes: Size of the data chunk, or ``None`` for a streaming header whose RIFF
            and data sizes are both ``0xFFFFFFFF``.
    """
    riff_size = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    data_size = 0xFFFFFFFF if data_bytes is None else data_bytes
    return (
        struct.pack("<4sI4s", b"RIFF", riff_size, b"WAVE")
        + struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, sample_rate, 2 * sample_rate, 2, 16)
        + struct.pack("<4sI", b"data", data_size)
    )


# --------------------------------------------------------------------------------------
# Pure core: rendering and pacing


def render_chunks(
    text: str,
    *,
    voice: str = "alloy",
    speed: float = 1.0,
    response_format: str = "pcm",
    chunk_ms: float = 20,
    engine: str = "tone",
    wav_exact_sizes: bool = False,
) -> list[bytes]:
    """The response body for a request, cut into the pieces the server sends.

    Piece ``k`` holds what the encoder produced when it was fed audio frames
    ``[k * n, (k + 1) * n)``, where ``n`` is ``chunk_ms`` of audio (at least one frame):
    for ``pcm`` exactly those frames; a header goes into the first piece and whatever the
    encoder flushes at the end into the last. A compressed encoder emits whole codec
    frames once its look-ahead is filled, so its pieces hold earlier audio and may be
    empty; the server then sends nothing at that time. The pieces do not depend on how
    the audio is cut: ``b"".join(...)`` is the same for every ``chunk_ms``.

    Args:
        text: The ``input`` of the request.
        voice: The ``voice``.
        speed: The ``speed``.
        response_format: Any of :data:`RESPONSE_FORMATS`.
        chunk_ms: Audio per piece.
        engine: The synthesizer, one of :data:`ENGINES`. ``"espeak"`` synthesizes in
            the calling thread (a few milliseconds per second of audio).
        wav_exact_sizes: Exact lengths in the headers that have them: the RIFF and data
            sizes of ``wav``, an Info (gapless) frame before the ``mp3`` audio, the
            total samples in ``flac``'s STREAMINFO. ``aac`` (ADTS) and ``opus`` (Ogg)
            have no length in their headers.

    Raises:
        ValueError: If the engine, voice, format, speed or chunk_ms is invalid, or the
            format needs PyAV and it is not installed.
        ConfigError: If the engine is not installed (a ``ValueError`` too).
    """
    pieces = _open_body(
        text,
        voice=voice,
        speed=speed,
        response_format=response_format,
        chunk_ms=chunk_ms,
        engine=engine,
        wav_exact_sizes=wav_exact_sizes,
    )
    return list(pieces)


def _open_body(
    text: str,
    *,
    voice: str,
    speed: float,
    response_format: str,
    chunk_ms: float,
    engine: str,
    wav_exact_sizes: bool,
) -> Generator[bytes, None, None]:
    """:func:`render_chunks`, lazily: a generator of the pieces.

    Arguments are checked at once; the audio is synthesized and encoded as the pieces
    are taken. Close the generator if it is not run to the end (it owns the encoder).
    """
    fmt = _FORMATS.get(response_format)
    if fmt is None:
        raise ValueError(_format_error(response_format))
    try:
        eng = _ENGINES[engine]
    except KeyError:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}") from None
    eng.check()
    if voice not in eng.voices:
        raise ValueError(f"unknown voice {voice!r}")
    if not (math.isfinite(chunk_ms) and chunk_ms > 0):
        raise ValueError(f"chunk_ms must be > 0, got {chunk_ms!r}")
    total, blocks = eng.render(text, voice, speed, SAMPLE_RATE)
    encoder = fmt.encoder(_EncoderOptions(SAMPLE_RATE, total, wav_exact_sizes))
    return _render_pieces(blocks, _Pieces(encoder, _chunk_frames(chunk_ms)))


def _render_pieces(blocks: Iterator[_Samples], pieces: _Pieces) -> Generator[bytes, None, None]:
    try:
        for block in blocks:
            yield from pieces.feed(block)
        yield from pieces.finish()
    finally:
        pieces.close()


class _Pieces:
    """Sans-IO: samples in, the pieces of a response body out (see :func:`render_chunks`).

    Re-cuts the samples into pieces of ``step`` frames and encodes each one. A piece is
    handed out once the next one has been encoded, or by :meth:`finish`: what the
    encoder flushes at the end belongs to the last piece. Owns the encoder: call
    :meth:`close` when done, also when abandoning the body.
    """

    def __init__(self, encoder: _Encoder, step: int) -> None:
        self._encoder = encoder
        self._step = step
        self._rest: _Samples = np.empty(0, dtype=np.int16)
        self._held: bytes | None = None

    def feed(self, samples: _Samples) -> list[bytes]:
        """Take more samples; return the pieces now complete (none, one or several)."""
        block = np.concatenate([self._rest, samples]) if self._rest.size else samples
        full = len(block) - len(block) % self._step
        out: list[bytes] = []
        for i in range(0, full, self._step):
            out += self._hold(self._encoder.encode(block[i : i + self._step]))
        self._rest = block[full:]
        return out

    def finish(self) -> list[bytes]:
        """End of the samples: return the last pieces (at least one: the last piece)."""
        out = self._hold(self._encoder.encode(self._rest)) if self._rest.size else []
        self._rest = self._rest[:0]
        last, self._held = self._held, None
        return [*out, (last or b"") + self._encoder.flush()]

    def close(self) -> None:
        self._encoder.close()

    def _hold(self, encoded: bytes) -> list[bytes]:
        previous, self._held = self._held, encoded
        return [] if previous is None else [previous]


def chunk_schedule(
    n_chunks: int, *, ttfb_ms: float, chunk_ms: float, realtime_factor: float | None
) -> list[float]:
    """When each piece of a body is due, in seconds after the request was received.

    Piece 0 is due at ``ttfb_ms``. With a ``realtime_factor``, piece ``k`` is due
    ``k * chunk_ms / realtime_factor`` ms after that (audio released at that multiple of
    real time); without one, every piece is due at ``ttfb_ms`` (as fast as the socket
    takes them).
    """
    return [
        _piece_due(k, ttfb_ms=ttfb_ms, chunk_ms=chunk_ms, realtime_factor=realtime_factor)
        for k in range(n_chunks)
    ]


def _piece_due(k: int, *, ttfb_ms: float, chunk_ms: float, realtime_factor: float | None) -> float:
    """``chunk_schedule(n, ...)[k]`` for any ``n > k``: the number of pieces is not needed."""
    start = ttfb_ms / 1000.0
    if realtime_factor is None:
        return start
    return start + k * (chunk_ms / 1000.0 / realtime_factor)


def _chunk_frames(chunk_ms: float) -> int:
    return max(1, round(chunk_ms * SAMPLE_RATE / 1000.0))


# --------------------------------------------------------------------------------------
# Requests: validation and errors


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received, as :attr:`TestServer.requests` lists it.

    Attributes:
        method: HTTP method, e.g. ``"POST"``.
        path: Request target as sent, including any query string.
        headers: Header names (lower case) to values; an ``authorization`` value is
            replaced by ``"<redacted>"``. Repeated headers are joined with ``", "``.
        json: The parsed JSON body, or ``None`` if there was no valid JSON body.
        body: The raw body (empty if it was over ``max_body_bytes``).
        status: The status code the server answered with (0 if it closed the connection
            without an answer, as a :class:`~trio_tts_stream.testing.FaultPlan` can make it).
        received_at: :func:`trio.current_time` when the request was fully received.
        index: The request's number, from 0 in the order received (its position in
            :attr:`TestServer.requests`): the number
            :meth:`~trio_tts_stream.testing.FaultPlan.for_request` takes.
        fault: The faults the response met, in words (``None`` if none), as
            :meth:`~trio_tts_stream.testing.RequestFaults.describe` puts them; for a
            body only those that hit it (a drop once it happened, a stall once a byte
            after it went out), filled in when the response is done.
    """

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    body: bytes
    status: int
    received_at: float
    index: int = 0
    fault: str | None = None


@dataclass(frozen=True)
class _HTTPError:
    status: int
    message: str
    param: str | None = None
    code: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    error_type: str = "invalid_request_error"

    def body(self) -> bytes:
        error = {
            "message": self.message,
            "type": self.error_type,
            "param": self.param,
            "code": self.code,
        }
        return json.dumps({"error": error}).encode()


@dataclass(frozen=True)
class _SpeechRequest:
    text: str
    voice: str
    speed: float
    response_format: str


@dataclass(frozen=True)
class _File:
    """An audio file served at :data:`FILES_PATH`: its body, cut into paced pieces."""

    pieces: tuple[bytes, ...]
    content_type: str
    etag: str
    size: int


@dataclass(frozen=True)
class _FileRequest:
    file: _File
    part: FullBody | PartialBody


def _bad(message: str, param: str | None, code: str | None = None) -> _HTTPError:
    return _HTTPError(400, message, param, code)


def _parse_speech_request(body: bytes, engine: _Engine) -> tuple[Any, _SpeechRequest | _HTTPError]:
    """Parse and validate a speech request body: ``(parsed json or None, result)``."""
    try:
        obj = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None, _bad(
            "We could not parse the JSON body of your request. Send a JSON object with "
            "'model', 'input' and 'voice'.",
            None,
        )
    if not isinstance(obj, dict):
        return obj, _bad("The request body must be a JSON object.", None)
    return obj, _validate(obj, engine)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _validate(obj: dict[str, Any], engine: _Engine) -> _SpeechRequest | _HTTPError:
    model = obj.get("model")
    if not isinstance(model, str) or not model:
        return _bad("You must provide a model parameter (a non-empty string).", "model")

    if "input" not in obj:
        return _bad("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    text = obj["input"]
    if not isinstance(text, str):
        return _bad("Invalid type for 'input': expected a string.", "input", "invalid_type")
    if not text:
        return _bad(
            "Invalid 'input': empty string. Expected a string with minimum length 1.",
            "input",
            "string_below_min_length",
        )
    if len(text) > MAX_INPUT_CHARS:
        return _bad(
            f"Invalid 'input': string too long. Expected a string with maximum length "
            f"{MAX_INPUT_CHARS}, but got a string with length {len(text)} instead.",
            "input",
            "string_above_max_length",
        )

    if "voice" not in obj:
        return _bad("Missing required parameter: 'voice'.", "voice", "missing_required_parameter")
    voice = obj["voice"]
    if not isinstance(voice, str) or voice not in engine.voices:
        return _bad(
            f"Invalid value for 'voice': {_short(voice)}. Supported values are: "
            f"{', '.join(repr(v) for v in engine.voices)}.",
            "voice",
            "invalid_value",
        )

    response_format = obj.get("response_format", _DEFAULT_FORMAT)
    if not isinstance(response_format, str) or response_format not in _FORMATS:
        return _bad(_format_error(response_format), "response_format", "invalid_value")

    speed = obj.get("speed", 1.0)
    if (
        isinstance(speed, bool)
        or not isinstance(speed, (int, float))
        or not math.isfinite(speed)
        or not _SPEED_MIN <= speed <= _SPEED_MAX
    ):
        return _bad(
            f"Invalid 'speed': {_short(speed)}. Expected a number from {_SPEED_MIN} to "
            f"{_SPEED_MAX}.",
            "speed",
            "invalid_value",
        )

    stream_format = obj.get("stream_format", "audio")
    if stream_format != "audio":
        return _bad(
            f"Unsupported stream_format {_short(stream_format)}. This server supports: 'audio'.",
            "stream_format",
            "invalid_value",
        )
    # "instructions" is accepted and ignored, as by OpenAI's tts-1 models.
    return _SpeechRequest(text, voice, float(speed), response_format)


def _short(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _redacted_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    result: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("ascii", "replace")
        value = "<redacted>" if name == "authorization" else raw_value.decode("latin-1")
        result[name] = f"{result[name]}, {value}" if name in result else value
    return result


# --------------------------------------------------------------------------------------
# The I/O shell


@dataclass(frozen=True)
class _Config:
    ttfb_ms: float
    realtime_factor: float | None
    chunk_ms: float
    api_key: str | None
    max_body_bytes: int
    engine: _Engine
    wav_exact_sizes: bool
    faults: FaultPlan

    @classmethod
    def create(
        cls,
        *,
        ttfb_ms: float,
        realtime_factor: float | None,
        chunk_ms: float,
        api_key: str | None,
        max_body_bytes: int,
        engine: str,
        wav_exact_sizes: bool,
        faults: FaultPlan | None,
    ) -> _Config:
        if not (math.isfinite(ttfb_ms) and ttfb_ms >= 0):
            raise ConfigError(f"ttfb_ms must be >= 0, got {ttfb_ms!r}")
        if realtime_factor is not None and not (
            math.isfinite(realtime_factor) and realtime_factor > 0
        ):
            raise ConfigError(f"realtime_factor must be > 0, got {realtime_factor!r}")
        if not (math.isfinite(chunk_ms) and chunk_ms > 0):
            raise ConfigError(f"chunk_ms must be > 0, got {chunk_ms!r}")
        if max_body_bytes < 1:
            raise ConfigError(f"max_body_bytes must be >= 1, got {max_body_bytes!r}")
        if api_key == "":
            raise ConfigError("api_key must not be empty (use None for no authentication)")
        if engine not in _ENGINES:
            raise ConfigError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
        _ENGINES[engine].check()  # ConfigError naming the extra to install
        if faults is not None and not isinstance(faults, FaultPlan):
            raise ConfigError(f"faults must be a FaultPlan or None, got {faults!r}")
        return cls(
            ttfb_ms=ttfb_ms,
            realtime_factor=realtime_factor,
            chunk_ms=chunk_ms,
            api_key=api_key,
            max_body_bytes=max_body_bytes,
            engine=_ENGINES[engine],
            wav_exact_sizes=wav_exact_sizes,
            faults=faults or FaultPlan(),
        )


@dataclass(eq=False)
class TestServer:
    """A running test server, as yielded by :func:`open_test_server`.

    Attributes:
        host: The address it listens on.
        port: The TCP port it listens on.
        base_url: ``http://HOST:PORT/v1`` (``https`` with TLS): the OpenAI base URL.
        requests: Every request received so far, oldest first (``requests[i].index``
            is ``i``, unless the list was changed).
        errors: Unexpected exceptions of connection tasks (server bugs); a client that
            disconnects is not an error. Tests should check that it stays empty.
        open_connections: Connections currently being served.
    """

    __test__ = False  # not a pytest test class

    host: str
    port: int
    base_url: str
    _config: _Config = field(repr=False)
    requests: list[RecordedRequest] = field(default_factory=list, repr=False)
    errors: list[Exception] = field(default_factory=list, repr=False)
    open_connections: int = 0
    _files: dict[str, _File] = field(default_factory=dict, repr=False)
    _received: int = field(default=0, repr=False)  # requests numbered so far

    def add_file(
        self,
        name: str,
        body: bytes,
        content_type: str = "application/octet-stream",
        *,
        byte_rate: float | None = None,
    ) -> str:
        """Serve ``body`` at ``GET {base_url}/audio/files/{name}``; return that URL.

        The file is served with ``Content-Length``, ``Accept-Ranges: bytes`` and a
        strong ``ETag`` (a hash of the body), without asking for the API key (like a
        pre-signed URL), after ``ttfb_ms``, and with the server's faults. A ``GET``
        with ``Range: bytes=N-``, ``bytes=N-M`` or ``bytes=-N`` gets a 206 with
        ``Content-Range``, unless an ``If-Range`` does not match the ``ETag`` (then the
        whole file, 200); a range that starts past the end gets a 416; several ranges,
        or a ``Range`` that does not parse, get the whole file. Adding a name again
        replaces the file.

        Args:
            name: Letters, digits, ``.``, ``_`` and ``-``, starting with a letter or
                digit, at most 200 characters.
            body: The file's bytes.
            content_type: Its ``Content-Type``.
            byte_rate: Bytes per second of audio: the body is then paced like a speech
                response (pieces of ``chunk_ms`` of audio, at ``realtime_factor``); by
                default it is one piece, sent at once.

        Raises:
            ValueError: If the name or ``byte_rate`` is invalid.
        """
        if not (isinstance(name, str) and _FILE_NAME.fullmatch(name)):
            raise ValueError(
                f"invalid file name {name!r}: use up to 200 letters, digits, '.', '_' and "
                "'-', starting with a letter or digit"
            )
        if byte_rate is None:
            pieces: tuple[bytes, ...] = (bytes(body),)
        else:
            if not (math.isfinite(byte_rate) and byte_rate > 0):
                raise ValueError(f"byte_rate must be > 0, got {byte_rate!r}")
            step = max(1, round(byte_rate * self._config.chunk_ms / 1000.0))
            pieces = tuple(body[i : i + step] for i in range(0, len(body), step)) or (b"",)
        self._add(name, pieces, content_type)
        return self._file_url(name)

    def audio_url(
        self,
        text: str,
        voice: str = "alloy",
        speed: float = 1.0,
        response_format: str = "pcm",
    ) -> str:
        """A ``GET`` URL of the audio a speech request with these parameters gets.

        The file's body is :meth:`render`'s (the same bytes), rendered now (in the calling
        thread), and is sent in the same pieces at the same pace as a speech response
        (``ttfb_ms``, ``chunk_ms``, ``realtime_factor``); a ``Range`` request starts at
        ``ttfb_ms`` and keeps that pace from the piece its first byte is in. The URL is
        the same for the same audio. See :meth:`add_file` for the headers.

        Raises:
            ValueError: If the voice, speed or format is not supported.
        """
        pieces = tuple(self._open_body(text, voice, speed, response_format))
        etag = strong_etag(b"".join(pieces))
        name = f"{self._config.engine.name}-{etag.strip(chr(34))[:20]}.{response_format}"
        self._add(name, pieces, _FORMATS[response_format].content_type)
        return self._file_url(name)

    def _update(self, old: RecordedRequest, new: RecordedRequest) -> None:
        """Replace ``old`` in :attr:`requests` by ``new`` (if the test left it there)."""
        for i in range(len(self.requests) - 1, -1, -1):
            if self.requests[i] is old:
                self.requests[i] = new
                return

    def _add(self, name: str, pieces: tuple[bytes, ...], content_type: str) -> None:
        body = b"".join(pieces)
        self._files[name] = _File(pieces, content_type, strong_etag(body), len(body))

    def _file_url(self, name: str) -> str:
        return self.base_url.removesuffix("/v1") + FILES_PATH + name

    def render(
        self,
        text: str,
        voice: str = "alloy",
        speed: float = 1.0,
        response_format: str = "pcm",
    ) -> bytes:
        """Exactly the response body this server sends for these request parameters.

        The same for every call, in every process (with the same PyAV build, for the
        compressed formats; with the same espeak-ng build, for ``espeak``). With the
        ``espeak`` engine it synthesizes in the calling thread (a few milliseconds per
        second of audio, waiting for any synthesis in progress). Decoded, it is
        :meth:`reference_pcm`: exactly for ``pcm``,
        ``wav`` and ``flac``; for the lossy formats up to coding loss and delay (an
        ``mp3`` decoder outputs 1105 samples of encoder and decoder delay first unless
        ``wav_exact_sizes`` put an Info frame in the body, an ``aac`` (ADTS) decoder 1024;
        Ogg decoders trim ``opus`` exactly, at 48 kHz), and the padding of the last
        codec frame.

        Raises:
            ValueError: If the voice or format is not supported.
        """
        return b"".join(self._open_body(text, voice, speed, response_format))

    def reference_pcm(
        self, text: str, voice: str = "alloy", speed: float = 1.0
    ) -> npt.NDArray[np.int16]:
        """The samples every response format encodes: int16 mono at :data:`SAMPLE_RATE`.

        The ``pcm`` body is exactly these samples (little-endian); for the ``tone``
        engine they are :func:`~trio_tts_stream.testing.synthesize_tone`'s. The
        ``espeak`` engine synthesizes them in the calling thread, as :meth:`render`.

        Raises:
            ValueError: If the voice or speed is not supported.
        """
        engine = self._config.engine
        if voice not in engine.voices:
            raise ValueError(f"unknown voice {voice!r}")
        _, blocks = engine.render(text, voice, speed, SAMPLE_RATE)
        return np.concatenate([np.empty(0, dtype=np.int16), *blocks])

    def _open_body(
        self, text: str, voice: str, speed: float, response_format: str
    ) -> Generator[bytes, None, None]:
        return _open_body(
            text,
            voice=voice,
            speed=speed,
            response_format=response_format,
            chunk_ms=self._config.chunk_ms,
            engine=self._config.engine.name,
            wav_exact_sizes=self._config.wav_exact_sizes,
        )


class _Connection:
    """Serves the requests of one client connection, one after another."""

    def __init__(self, stream: trio.abc.Stream, server: TestServer) -> None:
        self._stream = stream
        self._server = server
        self._config = server._config
        self._conn = h11.Connection(h11.SERVER)

    async def run(self) -> None:
        while True:
            try:
                event = await self._next_event()
                if not isinstance(event, h11.Request):
                    return  # ConnectionClosed (or pipelining, which we do not support)
                keep_alive = await self._handle(event)
            except h11.RemoteProtocolError as exc:
                if self._conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    error = _HTTPError(exc.error_status_hint, f"Bad HTTP request: {exc}")
                    await self._send_error(error, close=True, head=False)
                return
            if not keep_alive or self._conn.our_state is not h11.DONE:
                return
            if self._conn.their_state is not h11.DONE:
                return
            self._conn.start_next_cycle()

    async def _next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self._conn.next_event()
            if event is h11.NEED_DATA:
                if self._conn.they_are_waiting_for_100_continue:
                    continue_ = h11.InformationalResponse(status_code=100, headers=[])
                    await self._send(self._conn.send(continue_))
                self._conn.receive_data(bytes(await self._stream.receive_some(_RECEIVE_SIZE)))
            elif event is h11.PAUSED or isinstance(event, h11.Event):
                return event

    async def _handle(self, request: h11.Request) -> bool:
        """Answer one request; return whether the connection can be kept alive."""
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("ascii", "replace")
        headers = _redacted_headers(request.headers)
        head = method == "HEAD"

        body, complete = await self._read_body(headers.get("content-length"))
        received_at = trio.current_time()
        parsed, result = self._route(request, method, target, headers, body)
        # The request's number, and so its faults, are fixed here.
        index = self._server._received
        self._server._received += 1
        faults = self._config.faults.for_request(index)
        if faults.fail_status is not None:
            kind, code, message = faults.error()
            result = _HTTPError(
                faults.fail_status, message, None, code, faults.error_headers(), kind
            )
        if faults.close_before_headers:
            status = 0
        elif isinstance(result, _HTTPError):
            status = result.status
        else:
            partial_ = isinstance(result, _FileRequest) and isinstance(result.part, PartialBody)
            status = 206 if partial_ else 200
        record = RecordedRequest(
            method,
            target,
            headers,
            parsed,
            body or b"",
            status,
            received_at,
            index,
            faults.describe() if faults.before_headers else None,
        )
        self._server.requests.append(record)
        if faults.close_before_headers:
            return False  # the caller closes the connection: no response at all
        if isinstance(result, _HTTPError):
            await self._send_error(result, close=not complete, head=head)
            return complete
        shaper = faults.shaper()
        try:
            if isinstance(result, _FileRequest):
                await self._send_file(result, received_at, not complete, shaper, head=head)
            else:
                await self._send_speech(result, received_at, not complete, shaper)
        finally:
            applied = shaper.applied()
            if applied is not None:
                self._server._update(record, replace(record, fault=applied))
        return complete and not shaper.cut

    def _route(
        self,
        request: h11.Request,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes | None,
    ) -> tuple[Any, _SpeechRequest | _FileRequest | _HTTPError]:
        """What the request asks for: ``(parsed JSON body or None, request or error)``."""
        path = target.split("?", 1)[0]
        if path.startswith(FILES_PATH):
            return None, self._route_file(method, path[len(FILES_PATH) :], headers)
        if path != SPEECH_PATH:
            return None, _HTTPError(
                404, f"Unknown request URL: {method} {target}.", code="unknown_url"
            )
        if method != "POST":
            return None, _HTTPError(
                405,
                f"Method {method} not allowed for {SPEECH_PATH}; use POST.",
                code="method_not_allowed",
                headers=(("allow", "POST"),),
            )
        if not self._authorized(request):
            return None, _HTTPError(
                401,
                "Incorrect or missing API key. Provide it as 'Authorization: Bearer KEY'.",
                code="invalid_api_key",
                headers=(("www-authenticate", "Bearer"),),
            )
        if body is None:
            return None, _HTTPError(
                413,
                f"Request body too large: the limit is {self._config.max_body_bytes} bytes.",
                code="request_too_large",
            )
        return _parse_speech_request(body, self._config.engine)

    def _route_file(
        self, method: str, name: str, headers: dict[str, str]
    ) -> _FileRequest | _HTTPError:
        if method not in ("GET", "HEAD"):
            return _HTTPError(
                405,
                f"Method {method} not allowed for audio files; use GET or HEAD.",
                code="method_not_allowed",
                headers=(("allow", "GET, HEAD"),),
            )
        file = self._server._files.get(name)
        if file is None:
            return _HTTPError(404, f"No audio file named {_short(name)}.", code="file_not_found")
        part = select_range(headers.get("range"), headers.get("if-range"), file.etag, file.size)
        if isinstance(part, NotSatisfiable):
            return _HTTPError(
                416,
                f"Range not satisfiable: {_short(headers.get('range'))}; the file has "
                f"{file.size} bytes.",
                code="range_not_satisfiable",
                headers=(("content-range", part.content_range), ("accept-ranges", "bytes")),
            )
        return _FileRequest(file, part)

    def _authorized(self, request: h11.Request) -> bool:
        if self._config.api_key is None:
            return True
        expected = b"Bearer " + self._config.api_key.encode()
        for name, value in request.headers:
            if name == b"authorization":
                return hmac.compare_digest(value, expected)
        return False

    async def _read_body(self, content_length: str | None) -> tuple[bytes | None, bool]:
        """Read the request body: ``(body or None if over the limit, fully read)``.

        An oversized body is read and discarded (up to :data:`_DRAIN_LIMIT`), so the
        client gets to read our 413 instead of a connection reset.
        """
        limit = self._config.max_body_bytes
        if (
            content_length is not None
            and int(content_length) > limit
            and self._conn.they_are_waiting_for_100_continue
        ):
            return None, False  # never asked for the body: answer 413 at once
        parts: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > _DRAIN_LIMIT:
                    return None, False
                if size <= limit:
                    parts.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return (b"".join(parts) if size <= limit else None), True
            else:  # ConnectionClosed mid-body
                raise trio.BrokenResourceError("client closed the connection mid-request")

    async def _send(self, data: bytes | None) -> None:
        if data:
            await self._stream.send_all(data)

    async def _send_error(self, error: _HTTPError, *, close: bool, head: bool) -> None:
        body = error.body()
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            *error.headers,
        ]
        if close:
            headers.append(("connection", "close"))
        out = self._conn.send(h11.Response(status_code=error.status, headers=headers)) or b""
        if not head:
            out += self._conn.send(h11.Data(data=body)) or b""
        out += self._conn.send(h11.EndOfMessage()) or b""
        await self._send(out)

    async def _send_speech(
        self, request: _SpeechRequest, received_at: float, close: bool, shaper: Shaper
    ) -> None:
        config = self._config
        total, blocks = config.engine.stream(
            request.text, request.voice, request.speed, SAMPLE_RATE
        )
        async with aclosing(blocks):  # ends the synthesis, also if the client went away
            if total is None and config.wav_exact_sizes:
                # The length goes into the header: synthesize everything first.
                whole = [block async for block in blocks]
                total = sum(len(block) for block in whole)
                source = _async_blocks(whole)
            else:
                source = blocks
            fmt = _FORMATS[request.response_format]
            pieces = _Pieces(
                fmt.encoder(_EncoderOptions(SAMPLE_RATE, total or 0, config.wav_exact_sizes)),
                _chunk_frames(config.chunk_ms),
            )
            try:
                if shaper.faults.truncate_after_bytes is not None:
                    # A Content-Length for the whole body: render it all first.
                    body = [piece async for block in source for piece in pieces.feed(block)]
                    body += pieces.finish()
                    headers = [("content-length", str(sum(len(p) for p in body)))]
                    head = self._response_head(200, fmt.content_type, headers, close)
                    await _PiecesSender(self, received_at, head, shaper).send_all(body)
                    return
                head = self._response_head(
                    200, fmt.content_type, [("transfer-encoding", "chunked")], close
                )
                sender = _PiecesSender(self, received_at, head, shaper)
                async for block in source:
                    for piece in pieces.feed(block):
                        if not await sender.send(piece):
                            return
                for piece in pieces.finish():
                    if not await sender.send(piece):
                        return
            finally:
                pieces.close()  # the client may have gone: release the encoder now
            await sender.end()

    async def _send_file(
        self, request: _FileRequest, received_at: float, close: bool, shaper: Shaper, *, head: bool
    ) -> None:
        file, part = request.file, request.part
        headers = [("accept-ranges", "bytes"), ("etag", file.etag)]
        if isinstance(part, PartialBody):
            status, pieces = 206, slice_pieces(file.pieces, part.start, part.stop)
            headers += [("content-range", part.content_range)]
            size = part.stop - part.start
        else:
            status, pieces, size = 200, list(file.pieces), file.size
        headers.append(("content-length", str(size)))
        response = self._response_head(status, file.content_type, headers, close)
        if head:
            await self._send(response + (self._conn.send(h11.EndOfMessage()) or b""))
            return
        await _PiecesSender(self, received_at, response, shaper).send_all(pieces)

    def _response_head(
        self, status: int, content_type: str, headers: list[tuple[str, str]], close: bool
    ) -> bytes:
        """The bytes of a response's status line and headers (sent with the first piece)."""
        headers = [("content-type", content_type), *headers]
        if close:
            headers.append(("connection", "close"))
        return self._conn.send(h11.Response(status_code=status, headers=headers)) or b""


class _PiecesSender:
    """Sends the pieces of one response body, each when it is due, through the faults.

    Piece ``k`` is due at ``received_at + chunk_schedule(...)[k]``; the request's
    :class:`~._faults.Shaper` turns that into the times (and the cut) of the actual
    writes. The headers (``head``) go out with the first write, so the first byte is
    sent at ``ttfb_ms``, not before. Unpaced and without faults, the pieces are sent in
    batches (a checkpoint at least every ``_SEND_AUDIO_MS`` of audio: encoding runs in
    the connection's task, and a slow codec, such as opus at ~75x real time, must not
    hold the event loop for long).
    """

    def __init__(
        self, connection: _Connection, received_at: float, head: bytes, shaper: Shaper
    ) -> None:
        self._connection = connection
        config = connection._config
        self._due = partial(
            _piece_due,
            ttfb_ms=config.ttfb_ms,
            chunk_ms=config.chunk_ms,
            realtime_factor=config.realtime_factor,
        )
        self._received_at = received_at
        self._shaper = shaper
        # Every write on its own when its time matters.
        self._paced = config.realtime_factor is not None or shaper.faults.shapes_body
        self._batch = max(1, round(_SEND_AUDIO_MS / config.chunk_ms))
        self._pending = bytearray(head)
        self._pieces = 0  # pieces handed to send()
        self._writes = 0

    async def send(self, piece: bytes) -> bool:
        """Send the next piece when due; return ``False`` if the body was cut (close the
        connection then, and send nothing more)."""
        k = self._pieces
        self._pieces += 1
        for write in self._shaper.feed(self._due(k), piece):
            n = self._writes
            self._writes += 1
            deadline = self._received_at + write.at
            if trio.current_time() < deadline:
                if n > 0:
                    await self._flush()
                await trio.sleep_until(deadline)
            if write.data:
                self._pending += self._connection._conn.send(h11.Data(data=write.data)) or b""
            if write.close:
                await self._flush()
                return False
            if (
                n == 0
                or self._paced
                or len(self._pending) >= _SEND_SIZE
                or self._pieces % self._batch == 0
            ):
                await self._flush()
        return True

    async def send_all(self, pieces: Iterable[bytes]) -> None:
        """Send ``pieces`` and end the body (unless it is cut)."""
        for piece in pieces:
            if not await self.send(piece):
                return
        await self.end()

    async def end(self) -> None:
        self._pending += self._connection._conn.send(h11.EndOfMessage()) or b""
        await self._flush()

    async def _flush(self) -> None:
        data = bytes(self._pending)
        self._pending.clear()
        await self._connection._send(data)


# Exceptions that mean "the client went away or spoke nonsense": end the task quietly.
_CLIENT_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError)


async def _handle_connection(server: TestServer, stream: trio.abc.Stream) -> None:
    server.open_connections += 1
    try:
        await _Connection(stream, server).run()
    except _CLIENT_GONE as exc:
        _log.debug("client connection ended: %r", exc)
    except Exception as exc:  # a bug: log it, keep it, keep serving other connections
        server.errors.append(exc)
        _log.exception("test server connection task failed")
    finally:
        server.open_connections -= 1
        # Graceful close (TLS close_notify), bounded; when cancelled, trio closes at once.
        with trio.move_on_after(_CLOSE_TIMEOUT):
            with suppress(*_CLIENT_GONE):
                await stream.aclose()


async def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ttfb_ms: float = 0,
    realtime_factor: float | None = None,
    chunk_ms: float = 20,
    ssl_context: ssl.SSLContext | None = None,
    api_key: str | None = None,
    max_body_bytes: int = 65536,
    engine: str = "tone",
    wav_exact_sizes: bool = False,
    faults: FaultPlan | None = None,
    task_status: trio.TaskStatus[TestServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the server until cancelled; for ``nursery.start``, which returns the server.

    Takes the same arguments as :func:`open_test_server`.
    """
    config = _Config.create(
        ttfb_ms=ttfb_ms,
        realtime_factor=realtime_factor,
        chunk_ms=chunk_ms,
        api_key=api_key,
        max_body_bytes=max_body_bytes,
        engine=engine,
        wav_exact_sizes=wav_exact_sizes,
        faults=faults,
    )
    tcp_listeners = await trio.open_tcp_listeners(port, host=host)
    if port == 0 and len(tcp_listeners) > 1:
        # Each address family got its own random port: keep one, so the URL is unique.
        for extra in tcp_listeners[1:]:
            await extra.aclose()
        del tcp_listeners[1:]
    sockname = tcp_listeners[0].socket.getsockname()
    listeners: list[trio.abc.Listener[trio.abc.Stream]] = []
    for tcp in tcp_listeners:
        if ssl_context is None:
            listeners.append(tcp)
        else:
            listeners.append(trio.SSLListener(tcp, ssl_context, https_compatible=True))
    url_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
    if ":" in url_host:
        url_host = "[::1]" if url_host == "::" else f"[{url_host}]"
    scheme = "http" if ssl_context is None else "https"
    server = TestServer(
        host=host,
        port=int(sockname[1]),
        base_url=f"{scheme}://{url_host}:{sockname[1]}/v1",
        _config=config,
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(trio.serve_listeners, partial(_handle_connection, server), listeners)
            )
            task_status.started(server)
    finally:
        for listener in listeners:
            with trio.CancelScope(shield=True):
                await listener.aclose()


@asynccontextmanager
async def open_test_server(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ttfb_ms: float = 0,
    realtime_factor: float | None = None,
    chunk_ms: float = 20,
    ssl_context: ssl.SSLContext | None = None,
    api_key: str | None = None,
    max_body_bytes: int = 65536,
    engine: str = "tone",
    wav_exact_sizes: bool = False,
    faults: FaultPlan | None = None,
) -> AsyncIterator[TestServer]:
    """Run an OpenAI-compatible TTS server for the duration of the ``async with`` block.

    Example::

        async with open_test_server(ttfb_ms=150, realtime_factor=2.0) as server:
            async with httpx.AsyncClient(base_url=server.base_url) as client:
                response = await client.post("/audio/speech", json={
                    "model": "tts-1", "input": "Hello", "voice": "alloy",
                    "response_format": "pcm"})
            assert response.content == server.render("Hello")

    Args:
        host: Address to listen on.
        port: TCP port; 0 picks a free ephemeral port (see :attr:`TestServer.port`).
        ttfb_ms: Delay from a request being fully received to the first body byte.
        realtime_factor: Release audio at this multiple of real time (piece ``k`` of the
            body no earlier than ``ttfb_ms + k * chunk_ms / realtime_factor`` ms after the
            request); ``None`` sends as fast as the client reads.
        chunk_ms: Audio per body piece (each piece is one HTTP chunk).
        ssl_context: Serve HTTPS with this server-side context.
        api_key: Require ``Authorization: Bearer <api_key>`` (else 401).
        max_body_bytes: Largest request body accepted (else 413).
        engine: The synthesizer, one of :data:`ENGINES`: ``"tone"``, the deterministic
            speech-like tone of :func:`~trio_tts_stream.testing.synthesize_tone`, or
            ``"espeak"``, speech from espeak-ng (the ``espeak`` extra; see
            :func:`~trio_tts_stream.testing.espeak_available`), synthesized in a worker
            thread as the response streams.
        wav_exact_sizes: Put exact lengths in the headers that have them, as an encoder
            that knows the length up front would: RIFF/data sizes in ``wav`` instead of
            the streaming ``0xFFFFFFFF``, an Info (gapless) frame before the ``mp3``
            audio, the total samples in ``flac``'s STREAMINFO (instead of 0, unknown).
            ``aac`` (ADTS) and ``opus`` (Ogg) have no length in their headers. The
            ``espeak`` engine then synthesizes the whole text before the first byte of a
            response (it knows the length only at the end); ``tone`` knows it up front.
        faults: Network faults to inject, request by request: dropped connections,
            stalls, a bandwidth limit, jitter, error statuses with ``Retry-After``,
            connections closed before the headers, truncated bodies (see
            :class:`~trio_tts_stream.testing.FaultPlan`); ``None`` for none. They apply
            to the audio files of :meth:`TestServer.audio_url` too.

    Yields:
        The running :class:`TestServer`.

    Raises:
        ConfigError: If an option is invalid, or the engine is not installed (the
            message says what to install).
    """
    # Errors (of starting, or of the caller's block) are re-raised outside the nursery, so
    # that they reach the caller as themselves rather than wrapped in an ExceptionGroup.
    error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        try:
            server: TestServer = await nursery.start(
                partial(
                    serve,
                    host=host,
                    port=port,
                    ttfb_ms=ttfb_ms,
                    realtime_factor=realtime_factor,
                    chunk_ms=chunk_ms,
                    ssl_context=ssl_context,
                    api_key=api_key,
                    max_body_bytes=max_body_bytes,
                    engine=engine,
                    wav_exact_sizes=wav_exact_sizes,
                    faults=faults,
                )
            )
        except Exception as exc:  # ConfigError, or OSError when the port is taken
            error = exc
        else:
            try:
                yield server
            except GeneratorExit:
                raise
            except BaseException as exc:
                error = exc
        nursery.cancel_scope.cancel()
    if error is not None:
        raise error
