"""Requests: validating an OpenAI speech request, and the errors the server answers.

Pure: a request body in, a validated :class:`_SpeechRequest` or an OpenAI-style
:class:`_HTTPError` out, with messages worded as OpenAI's API words them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._bodies import (
    _DEFAULT_FORMAT,
    _FORMATS,
    _format_error,
    _short,
)
from ._engines import _Engine
from ._ranges import FullBody, PartialBody

__all__ = ["MAX_INPUT_CHARS", "RecordedRequest"]

MAX_INPUT_CHARS = 4096
"""Longest ``input`` accepted, as OpenAI's limit."""

_SPEED_MIN = 0.25
_SPEED_MAX = 4.0
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received, as :attr:`SpeechServer.requests` lists it.

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
            :attr:`SpeechServer.requests`): the number
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
    stream_format: str = "audio"


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
    if stream_format not in ("audio", "sse"):
        return _bad(
            f"Invalid value for 'stream_format': {_short(stream_format)}. Supported values "
            "are: 'audio' and 'sse'.",
            "stream_format",
            "invalid_value",
        )
    # "instructions" is accepted and ignored, as by OpenAI's tts-1 models.
    return _SpeechRequest(text, voice, float(speed), response_format, stream_format)


def _redacted_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    result: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("ascii", "replace")
        value = "<redacted>" if name == "authorization" else raw_value.decode("latin-1")
        result[name] = f"{result[name]}, {value}" if name in result else value
    return result
