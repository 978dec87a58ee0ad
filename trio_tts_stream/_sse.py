"""OpenAI's SSE speech stream (``stream_format="sse"``): events in, audio bytes out. Pure.

Theory of operation
-------------------
With ``stream_format="sse"`` the speech endpoint answers ``text/event-stream``: a
sequence of server-sent events, each a few ``field: value`` lines ended by a blank line
(WHATWG HTML, "Server-sent events"). Lines end in ``\\r\\n``, ``\\n`` or ``\\r``; ``data``
lines of one event are joined with ``\\n``; a line starting with ``:`` is a comment; other
fields (``event``, ``id``, ``retry``) do not carry audio. Each event's data is a JSON
object:

* ``{"type": "speech.audio.delta", "audio": "<base64>"}``: the next bytes of the audio
  body, in the ``response_format`` asked for (``pcm`` by default);
* ``{"type": "speech.audio.done", "usage": {...}}``: the end;
* ``{"type": "error", "error": {"message": ..., "type": ..., "code": ...}}`` (or any
  object with an ``error`` member): the server failed mid-stream.

:class:`SseAudioStream` keeps at most one incomplete line and one event's data (bounded
by ``max_event_bytes``), and returns the decoded audio bytes of every complete event, so
the audio decoder downstream sees an ordinary body and plays it as it arrives.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from ._exceptions import DecodeError, SourceError

__all__ = ["MAX_EVENT_BYTES", "SseAudioStream"]

MAX_EVENT_BYTES = 4 * 1024 * 1024
"""Most bytes of one event (its data lines) kept before it is complete."""


class SseAudioStream:
    """Decode an OpenAI speech event stream into the audio bytes it carries.

    Args:
        max_event_bytes: Bound on one event's size; a longer one is a
            :class:`DecodeError` (memory stays bounded on a hostile body).

    Attributes:
        done: ``speech.audio.done`` was received.
        events: Events with audio received.
        usage: The ``usage`` object of the done event, if any.
    """

    def __init__(self, *, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self.done = False
        self.events = 0
        self.usage: dict[str, Any] | None = None
        self._line = bytearray()  # the incomplete last line
        self._data: list[bytes] = []  # the data lines of the current event
        self._size = 0
        self._cr = False  # the last byte was \r: a \n right after it ends nothing

    def feed(self, chunk: bytes) -> bytes:
        """Take the next bytes of the body; return the audio of the events they complete.

        Raises:
            SourceError: The server sent an error event.
            DecodeError: An event is not the JSON, or the base64, of a speech event, or
                is longer than ``max_event_bytes``.
        """
        audio = bytearray()
        start = 0
        if self._cr and chunk[:1] == b"\n":
            start = 1
        self._cr = False
        n = len(chunk)
        i = start
        while i < n:
            byte = chunk[i]
            if byte in (0x0A, 0x0D):
                self._line += chunk[start:i]
                line, self._line = bytes(self._line), bytearray()
                audio += self._on_line(line)
                if byte == 0x0D:
                    if i + 1 < n and chunk[i + 1] == 0x0A:
                        i += 1
                    elif i + 1 == n:
                        self._cr = True
                i += 1
                start = i
                continue
            i += 1
        self._line += chunk[start:]
        if len(self._line) + self._size > self.max_event_bytes:
            raise DecodeError(
                f"an event in the event stream is longer than {self.max_event_bytes} bytes: "
                "this is not OpenAI's speech event stream"
            )
        return bytes(audio)

    def finish(self) -> bytes:
        """The body ended: dispatch a last event not followed by a blank line.

        Returns:
            Its audio, if any.
        """
        audio = b""
        if self._line:
            line, self._line = bytes(self._line), bytearray()
            audio += self._on_line(line)
        audio += self._dispatch()
        return audio

    # -- internals --------------------------------------------------------------------

    def _on_line(self, line: bytes) -> bytes:
        if not line:
            return self._dispatch()
        if line.startswith(b":"):
            return b""  # a comment (keep-alive)
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data.append(value)
            self._size += len(value) + 1
            if self._size > self.max_event_bytes:
                raise DecodeError(
                    f"an event in the event stream is longer than {self.max_event_bytes} "
                    "bytes: this is not OpenAI's speech event stream"
                )
        return b""

    def _dispatch(self) -> bytes:
        if not self._data:
            return b""
        data = b"\n".join(self._data)
        self._data, self._size = [], 0
        try:
            event = json.loads(data)
        except ValueError:
            raise DecodeError(f"an event of the event stream is not JSON: {_quote(data)}") from None
        if not isinstance(event, dict):
            raise DecodeError(f"an event of the event stream is not an object: {_quote(data)}")
        kind = event.get("type")
        if kind == "error" or "error" in event:
            raise SourceError(f"the server reported an error in its event stream: {_error(event)}")
        if kind == "speech.audio.delta":
            encoded = event.get("audio")
            if not isinstance(encoded, str):
                raise DecodeError("a speech.audio.delta event has no base64 'audio' string")
            try:
                audio = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise DecodeError(
                    f"a speech.audio.delta event's audio is not base64: {_quote(data)}"
                ) from None
            self.events += 1
            return audio
        if kind == "speech.audio.done":
            self.done = True
            usage = event.get("usage")
            self.usage = usage if isinstance(usage, dict) else None
        return b""  # other event types carry no audio (e.g. transcript deltas)


def _error(event: dict[str, Any]) -> str:
    error = event.get("error")
    if isinstance(error, dict):
        message = str(error.get("message") or "no message")
        extra = [str(error[k]) for k in ("type", "code") if error.get(k)]
        text = message + (f" ({', '.join(extra)})" if extra else "")
    else:
        text = str(error if error is not None else event.get("message", "no message"))
    return " ".join(text.split())[:300]


def _quote(data: bytes) -> str:
    text = data[:100].decode("utf-8", "replace")
    return repr(text) + ("..." if len(data) > 100 else "")
