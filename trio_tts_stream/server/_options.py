"""How the local server runs: one options object for :func:`serve` and :func:`open_server`."""

from __future__ import annotations

import math
import ssl
from dataclasses import dataclass, field
from typing import TypedDict

from .._exceptions import ConfigError
from ._engines import _ENGINES, ENGINES
from ._faults import FaultPlan
from ._misanswers import MISANSWERS
from ._profiles import PROFILES

__all__ = ["ServerOptions", "ServerOptionsChanges"]


@dataclass(frozen=True)
class ServerOptions:
    """Everything that decides how the server listens, answers and misbehaves.

    Checked when created, so a bad value fails before any socket is opened.

    Attributes:
        host: Address to listen on.
        port: TCP port; 0 picks a free ephemeral port (see :attr:`SpeechServer.port`).
        ttfb_ms: Delay from a request being fully received to the first body byte.
        realtime_factor: Release audio at this multiple of real time (piece ``k`` of the
            body no earlier than ``ttfb_ms + k * chunk_ms / realtime_factor`` ms after the
            request); ``None`` sends as fast as the client reads.
        chunk_ms: Audio per body piece (each piece is one HTTP chunk).
        ssl_context: Serve HTTPS with this server-side context.
        api_key: Require ``Authorization: Bearer <api_key>`` (else 401); never shown in
            ``repr``.
        max_body_bytes: Largest request body accepted (else 413).
        engine: The synthesizer, one of :data:`ENGINES`: ``"tone"``, the deterministic
            speech-like tone of :func:`synthesize_tone`, or ``"espeak"``, speech from
            espeak-ng (the ``espeak`` extra; see :func:`espeak_available`), synthesized
            in a worker thread as the response streams.
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
            to the audio files of :meth:`SpeechServer.audio_url` too.
        misanswer: Answer every speech request ``200`` with a body that is not audio
            instead (one of ``"html"``, ``"json"``, ``"sse"``, ``"text"``,
            ``"json-as-audio"``: a proxy's error page, a JSON error, an event stream, a
            plain message, a JSON error labelled ``audio/mpeg``), as broken servers do;
            ``None`` for audio.
        profile: Answer speech requests the way a popular server does (one of
            ``"kokoro-fastapi"``, ``"openedai-speech"``, ``"wav-always"``,
            ``"file-lines"``; see :mod:`trio_tts_stream.server._profiles` and
            docs/servers.rst); ``None`` for the plain server.

    Raises:
        ConfigError: An option is invalid, or the engine is not installed (the message
            says what to install).
    """

    host: str = "127.0.0.1"
    port: int = 0
    ttfb_ms: float = 0
    realtime_factor: float | None = None
    chunk_ms: float = 20
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    max_body_bytes: int = 65536
    engine: str = "tone"
    wav_exact_sizes: bool = False
    faults: FaultPlan | None = None
    misanswer: str | None = None
    profile: str | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.ttfb_ms) and self.ttfb_ms >= 0):
            raise ConfigError(f"ttfb_ms must be >= 0, got {self.ttfb_ms!r}")
        rtf = self.realtime_factor
        if rtf is not None and not (math.isfinite(rtf) and rtf > 0):
            raise ConfigError(f"realtime_factor must be > 0, got {rtf!r}")
        if not (math.isfinite(self.chunk_ms) and self.chunk_ms > 0):
            raise ConfigError(f"chunk_ms must be > 0, got {self.chunk_ms!r}")
        if self.max_body_bytes < 1:
            raise ConfigError(f"max_body_bytes must be >= 1, got {self.max_body_bytes!r}")
        if self.api_key == "":
            raise ConfigError("api_key must not be empty (use None for no authentication)")
        if self.engine not in _ENGINES:
            raise ConfigError(f"unknown engine {self.engine!r}; known: {', '.join(ENGINES)}")
        _ENGINES[self.engine].check()  # ConfigError naming the extra to install
        if self.faults is not None and not isinstance(self.faults, FaultPlan):
            raise ConfigError(f"faults must be a FaultPlan or None, got {self.faults!r}")
        if self.misanswer is not None and self.misanswer not in MISANSWERS:
            known = ", ".join(MISANSWERS)
            raise ConfigError(f"unknown misanswer {self.misanswer!r}; known: {known}")
        if self.profile is not None and self.profile not in PROFILES:
            raise ConfigError(f"unknown profile {self.profile!r}; known: {', '.join(PROFILES)}")


class ServerOptionsChanges(TypedDict, total=False):
    """The fields of :class:`ServerOptions`, as keyword arguments (for type checkers:
    ``open_server(ttfb_ms=150)`` is ``open_server(ServerOptions(ttfb_ms=150))``)."""

    host: str
    port: int
    ttfb_ms: float
    realtime_factor: float | None
    chunk_ms: float
    ssl_context: ssl.SSLContext | None
    api_key: str | None
    max_body_bytes: int
    engine: str
    wav_exact_sizes: bool
    faults: FaultPlan | None
    misanswer: str | None
    profile: str | None
