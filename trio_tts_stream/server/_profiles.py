"""Server profiles: how popular OpenAI-compatible TTS servers really put audio on the wire.

``ServerOptions(profile=...)`` (``serve --profile``) makes the speech endpoint answer the
way one of them does, byte for byte where it matters to a client: the container details
their encoders write, the ``Content-Type`` they declare, and when each write goes out.
Each profile is reproduced from the server's published source by doing what it does
(the same PyAV calls on the same kind of buffer), not by pasting bytes.

``kokoro-fastapi`` (remsky/Kokoro-FastAPI, ``StreamingAudioWriter``)
    The text is synthesized a multi-sentence chunk at a time (here: every
    :data:`KOKORO_CHUNK_S` of audio) and each chunk is written when its synthesis is done,
    :data:`KOKORO_THINK_S` after the previous one: more than 2 s of silence on the wire
    between writes, as on a CPU. Every format goes through a PyAV muxer writing into a
    ``BytesIO`` that is emptied after each chunk. So ``mp3`` starts with an ID3v2 tag and has
    no Xing frame (``write_xing=0``); ``flac`` has ``total_samples`` 0 and 8 KiB of
    padding; ``opus`` is Ogg with FFmpeg's default one-second pages, each written only once
    the next one starts (a page late); ``wav`` has FFmpeg's 78-byte header (a ``LIST``
    chunk, sizes ``0xFFFFFFFF``) and, as the release that read the buffer after closing
    the muxer sent, a 78-byte trailer: the header's sizes rewritten into an emptied buffer.
``openedai-speech`` (matatonic/openedai-speech)
    ``pcm`` at the voice's own rate, 22050 Hz (Piper voices), declared
    ``audio/pcm;rate=22050``; other formats as the plain server.
``wav-always``
    A WAV file whatever ``response_format`` asked for (a server with one encoder),
    labelled as what was asked (``audio/pcm``, ``audio/mpeg``, ...), as servers that
    build the media type from the request do.
``file-lines``
    The plain body cut after every ``\\n`` byte: what a server that streams a file object
    (``StreamingResponse(open(path, "rb"))`` iterates it by lines) sends, hundreds of
    tiny chunks for compressed audio.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._wav import wav_header
from ._bodies import _FORMATS
from ._engines import Samples

__all__ = ["KOKORO_CHUNK_S", "KOKORO_THINK_S", "OPENEDAI_RATE", "PROFILES", "ProfileBody"]

PROFILES = ("kokoro-fastapi", "openedai-speech", "wav-always", "file-lines")
"""The profile names :attr:`ServerOptions.profile` takes."""

KOKORO_CHUNK_S = 3.0
"""Seconds of audio Kokoro-FastAPI synthesizes and writes at once (a few sentences)."""
KOKORO_THINK_S = 2.4
"""Seconds its CPU synthesis of such a chunk takes: the pause on the wire between writes."""
OPENEDAI_RATE = 22050
"""The rate openedai-speech's Piper voices speak at, and its pcm is sent at."""


@dataclass(frozen=True)
class ProfileBody:
    """A response as a profile sends it.

    Attributes:
        content_type: The ``Content-Type`` it declares.
        pieces: The body's writes, in order.
        due: When each piece goes out, in seconds after the request; ``None`` to pace
            the pieces as the plain server paces its own.
    """

    content_type: str
    pieces: tuple[bytes, ...]
    due: tuple[float, ...] | None = None


def sample_rate_of(profile: str, response_format: str, default: int) -> int:
    """The rate the audio of a response is synthesized at under ``profile``."""
    if profile == "openedai-speech" and response_format == "pcm":
        return OPENEDAI_RATE
    return default


def profile_body(
    profile: str,
    samples: Samples,
    response_format: str,
    *,
    sample_rate: int,
    ttfb_s: float,
    chunk_ms: float,
    plain: tuple[bytes, ...],
) -> ProfileBody:
    """The body of one response under ``profile``.

    Args:
        profile: One of :data:`PROFILES`.
        samples: The whole utterance, int16 mono at ``sample_rate``.
        response_format: What the request asked for.
        sample_rate: The rate of ``samples``.
        ttfb_s: The server's time to first byte.
        chunk_ms: Audio per piece of the plain server (the profiles that keep its pacing
            cut their bodies the same way).
        plain: The plain server's pieces for the same request (what ``file-lines`` cuts).
    """
    asked = _FORMATS[response_format].content_type
    step = 2 * max(1, round(chunk_ms * sample_rate / 1000))  # bytes of chunk_ms of int16
    if profile == "kokoro-fastapi":
        pieces = _kokoro_pieces(samples, response_format, sample_rate)
        due = tuple(ttfb_s + k * KOKORO_THINK_S for k in range(len(pieces)))
        # The last write of a muxer (what it flushes at the end) follows the last chunk.
        if response_format != "pcm" and len(due) > 1:
            due = (*due[:-1], due[-2])
        return ProfileBody(asked, pieces, due)
    if profile == "openedai-speech":
        if response_format == "pcm":
            return ProfileBody(
                f"audio/pcm;rate={sample_rate}", _cut(samples.astype("<i2").tobytes(), step)
            )
        return ProfileBody(asked, plain)
    if profile == "wav-always":
        pcm = _cut(samples.astype("<i2").tobytes(), step)
        return ProfileBody(asked, (wav_header(sample_rate) + pcm[0], *pcm[1:]))
    if profile == "file-lines":
        return ProfileBody(asked, tuple(_lines(b"".join(plain))))
    raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")


def _cut(body: bytes, step: int) -> tuple[bytes, ...]:
    return tuple(body[i : i + step] for i in range(0, len(body), step)) or (b"",)


def _lines(body: bytes) -> list[bytes]:
    """``body`` cut after every ``\\n``, as iterating a binary file object does."""
    return io.BytesIO(body).readlines()


def _kokoro_pieces(samples: Samples, response_format: str, rate: int) -> tuple[bytes, ...]:
    step = round(KOKORO_CHUNK_S * rate)
    chunks = [samples[i : i + step] for i in range(0, len(samples), step)] or [samples[:0]]
    if response_format == "pcm":
        return tuple(chunk.astype("<i2").tobytes() for chunk in chunks)
    import av  # the formats extra

    codec = {"wav": "pcm_s16le", "mp3": "mp3", "opus": "libopus", "flac": "flac", "aac": "aac"}
    options = {"write_xing": "0"} if response_format == "mp3" else {}
    buffer = io.BytesIO()
    container: Any = av.open(
        buffer,
        mode="w",
        format="adts" if response_format == "aac" else response_format,
        options=options,
    )
    stream: Any = container.add_stream(codec[response_format], rate=rate, layout="mono")
    if response_format in ("mp3", "aac", "opus"):
        stream.bit_rate = 128000
    pieces: list[bytes] = []
    pts = 0
    try:
        for chunk in chunks:
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(chunk, dtype=np.int16).reshape(1, -1),
                format="s16",
                layout="mono",
            )
            frame.sample_rate = rate
            frame.pts = pts
            pts += len(chunk)
            for packet in stream.encode(frame):
                container.mux(packet)
            pieces.append(buffer.getvalue())
            buffer.seek(0)
            buffer.truncate(0)
        for packet in stream.encode(None):
            container.mux(packet)
        if response_format in ("wav", "opus"):
            # Ogg writes its last page when closed; the wav release read after closing
            # too, and so sends the sizes the muxer went back to write: the trailer.
            container.close()
            pieces.append(buffer.getvalue())
        else:
            pieces.append(buffer.getvalue())
            container.close()
    except BaseException:
        container.close()
        raise
    return tuple(pieces)
