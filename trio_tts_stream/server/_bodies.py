"""Response bodies: encoders, the format table, and the pure rendering and pacing core.

Response formats live in a small registry (:data:`_FORMATS`): a format is a content type
plus an incremental encoder (``encode(int16 samples) -> bytes``, ``flush() -> bytes``).
``pcm`` and ``wav`` are written here (the WAV header by :func:`trio_tts_stream._wav.wav_header`,
the package's one writer); ``mp3``, ``opus`` (Ogg), ``aac`` (ADTS) and ``flac`` come from
:mod:`._encode` (PyAV), and are answered with a 400 naming the missing extra when PyAV is
not installed. Every format encodes the same samples, and is paced the same way: piece
``k`` holds what the encoder produced once it had been fed audio up to the end of piece
``k`` (:func:`render_chunks`), and goes out when that audio is due
(:func:`chunk_schedule`). A compressed encoder emits whole codec frames, and only after
its look-ahead, so some pieces are empty and the first audio bytes come a codec frame or
two later than with ``pcm`` (see :mod:`._encode`).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from .._wav import wav_header
from ._engines import _ENGINES, ENGINES, SAMPLE_RATE, Samples

try:
    from ._encode import ENCODERS as _PYAV_ENCODERS
except ImportError:  # PyAV is optional (the "formats" extra): serve pcm and wav only
    _PYAV_ENCODERS = {}

__all__ = [
    "OPENAI_RESPONSE_FORMATS",
    "RESPONSE_FORMATS",
    "chunk_schedule",
    "render_chunks",
    "sse_delta",
    "sse_done",
]

OPENAI_RESPONSE_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
"""Every ``response_format`` OpenAI knows (all implemented here when PyAV is installed)."""

_DEFAULT_FORMAT = "mp3"  # OpenAI's default (a 400 without PyAV)
_FORMATS_EXTRA = "trio-tts-stream[formats]"


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


def _render_pieces(blocks: Iterator[Samples], pieces: _Pieces) -> Generator[bytes, None, None]:
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
        self._rest: Samples = np.empty(0, dtype=np.int16)
        self._held: bytes | None = None

    def feed(self, samples: Samples) -> list[bytes]:
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


def sse_delta(piece: bytes) -> bytes:
    """A piece of a body as OpenAI's ``stream_format="sse"`` sends it: one
    ``speech.audio.delta`` event with the bytes in base64 (nothing for an empty piece)."""
    if not piece:
        return b""
    event = {"type": "speech.audio.delta", "audio": base64.b64encode(piece).decode()}
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def sse_done(input_chars: int) -> bytes:
    """The ``speech.audio.done`` event that ends an SSE speech stream, with the usage."""
    usage = {"input_tokens": input_chars, "output_tokens": 0, "total_tokens": input_chars}
    return b"data: " + json.dumps({"type": "speech.audio.done", "usage": usage}).encode() + b"\n\n"


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


def _short(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


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
