"""The one exception hierarchy of trio_tts_stream.

Users catch these types, never httpx's, h11's or PortAudio's: foreign exceptions are
mapped at exactly one boundary each (:mod:`._http` for HTTP, :mod:`._portaudio` for
audio devices) with ``raise ... from``.

::

    TTSStreamError
    ├── ConfigError                 bad argument, option or environment variable
    │   └── MissingDependencyError      an optional extra is not installed
    ├── StateTransitionError        illegal playback-state transition (a bug, not input)
    ├── SourceError                 getting the bytes failed
    │   ├── HTTPStatusError         the server answered with an error status
    │   │   ├── BadRequestError         400 / 422: the server's message says why
    │   │   ├── AuthenticationError     401 / 403: the API key was rejected
    │   │   ├── NotFoundError           404: wrong base URL or model
    │   │   ├── RateLimitError          429
    │   │   └── ServerError             5xx
    │   ├── NetworkError            connection refused, DNS failure, reset, ...
    │   │   └── TLSError                certificate or handshake failure
    │   ├── StreamTimeout           connect/read timeout or a stalled body
    │   └── ResumeMismatchError     a re-requested stream differs from what was played
    ├── DecodeError                 the bytes are not audio we can decode
    │   └── UnsupportedFormatError      unknown or mismatching format
    └── AudioDeviceError            PortAudio missing, no output device, device failed

No message or ``repr`` ever contains an API key: errors are built from status codes,
URLs without credentials and the server's own error text.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    from ._metrics import PlaybackReport

__all__ = [
    "AudioDeviceError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigError",
    "DecodeError",
    "HTTPStatusError",
    "MissingDependencyError",
    "NetworkError",
    "NotFoundError",
    "RateLimitError",
    "ResumeMismatchError",
    "ServerError",
    "SourceError",
    "StateTransitionError",
    "StreamTimeout",
    "TLSError",
    "TTSStreamError",
    "UnsupportedFormatError",
]


class TTSStreamError(Exception):
    """Base class of every error raised by trio_tts_stream.

    Attributes:
        report: When a playback failed, its :class:`PlaybackReport` (what was played
            before the failure), else ``None``.
    """

    report: PlaybackReport | None = None


class ConfigError(TTSStreamError, ValueError):
    """A configuration value (argument, CLI option or environment variable) is invalid."""


class MissingDependencyError(ConfigError):
    """What was asked needs an optional extra that is not installed (``--plot`` without
    matplotlib); the message gives the ``pip install`` command."""


class StateTransitionError(TTSStreamError, RuntimeError):
    """An event is not legal in the current playback state; the state is unchanged."""


class SourceError(TTSStreamError):
    """Fetching the audio bytes failed."""


class HTTPStatusError(SourceError):
    """The server answered with an error status.

    Attributes:
        status_code: The HTTP status code.
        server_message: The error text the server sent (OpenAI-style ``error.message``
            when present), or ``""``.
        url: The request URL, without credentials.
        retry_after: Seconds from a ``Retry-After`` header, or ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        server_message: str = "",
        url: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.server_message = server_message
        self.url = url
        self.retry_after = retry_after


class BadRequestError(HTTPStatusError):
    """400/422: the server rejected the request (unknown voice, bad format, ...)."""


class AuthenticationError(HTTPStatusError):
    """401/403: the API key is missing or was rejected."""


class NotFoundError(HTTPStatusError):
    """404: the base URL or the model is wrong."""


class RateLimitError(HTTPStatusError):
    """429: too many requests."""


class ServerError(HTTPStatusError):
    """5xx: the server failed."""


class NetworkError(SourceError):
    """The connection could not be made or broke (refused, DNS failure, reset)."""


class TLSError(NetworkError):
    """TLS handshake or certificate verification failed; retrying will not help."""


class StreamTimeout(SourceError):
    """Connecting or reading took longer than the configured timeout."""


class ResumeMismatchError(SourceError):
    """After a reconnect the server sent different audio than before, so the stream
    cannot continue seamlessly (``StreamConfig.resume_mismatch="error"``)."""


class DecodeError(TTSStreamError):
    """The received bytes are not audio that can be decoded."""


class UnsupportedFormatError(DecodeError):
    """The audio format is unknown, unsupported, or differs from what was announced."""


class NotAudioError(DecodeError):
    """The response is not audio at all: an HTML page, a JSON error, an event stream, or
    bytes whose format cannot be told with nothing declared or asked for. Nothing of it is
    played; the message quotes the start of the body."""


class AudioDeviceError(TTSStreamError):
    """The audio output failed: PortAudio missing, no output device, or a device error."""


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


@contextmanager
def unwrap_single_exception() -> Iterator[None]:
    """Users catch our exception types: a nursery's group of one becomes that one.

    Used around every nursery whose errors reach users (the player, the sinks, the CLI).
    A group of several distinct errors is raised unchanged.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        if len(leaves) == 1:
            # Keep the leaf's own cause (the httpx or PortAudio error behind it); drop
            # only the group from the chain.
            leaf = leaves[0]
            raise leaf from leaf.__cause__
        raise
