"""Bodies that are not audio, as real servers send them with a ``200``.

A proxy's HTML error page, a JSON error under a success status, an OpenAI-style SSE
stream where audio bytes were expected, a plain-text message: the client must refuse
each of them with one line, and play none of it. ``ServerOptions(misanswer=...)`` makes
the speech endpoint answer with one of these instead of audio.
"""

from __future__ import annotations

__all__ = ["MISANSWERS", "misanswer_pieces"]

_HTML = (
    b"<!DOCTYPE html>\n<html>\n<head><title>502 Bad Gateway</title></head>\n"
    b"<body>\n<center><h1>502 Bad Gateway</h1></center>\n<hr><center>nginx</center>\n"
    b"</body>\n</html>\n"
)
_JSON = (
    b'{"error": {"message": "The model is still loading, please retry.", '
    b'"type": "server_error", "code": "model_loading"}}'
)
# OpenAI's stream_format="sse" events: base64 audio in speech.audio.delta.
_SSE = (
    b'data: {"type": "speech.audio.delta", "audio": "AAAAAAAAAAAAAAAAAAAAAAAAAAAA"}\n\n'
    b'data: {"type": "speech.audio.delta", "audio": "AQABAAEAAQABAAEAAQABAAEAAQAB"}\n\n'
    b'data: {"type": "speech.audio.done", "usage": {"input_tokens": 5, '
    b'"output_tokens": 10, "total_tokens": 15}}\n\n'
)
_TEXT = b"Internal Server Error: CUDA out of memory. Tried to allocate 20.00 MiB\n"

#: Name -> (Content-Type, body).
MISANSWERS: dict[str, tuple[str, bytes]] = {
    "html": ("text/html; charset=utf-8", _HTML),
    "json": ("application/json", _JSON),
    "sse": ("text/event-stream", _SSE),
    "text": ("text/plain; charset=utf-8", _TEXT),
    "json-as-audio": ("audio/mpeg", _JSON),  # a JSON error labelled as the audio asked for
}


def misanswer_pieces(name: str) -> tuple[str, tuple[bytes, ...]]:
    """The Content-Type and the body of a misanswer, split after every newline (as a
    server that flushes each line sends it)."""
    content_type, body = MISANSWERS[name]
    return content_type, tuple(body.splitlines(keepends=True))
