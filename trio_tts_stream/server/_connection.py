"""An OpenAI-compatible text-to-speech server for tests, benchmarks and local use.

Built on raw trio sockets and h11, with no server framework. It answers
``POST /v1/audio/speech`` like OpenAI's API does, but with audio from a local engine
(:data:`ENGINES`: the deterministic tone of
:func:`~trio_tts_stream.server.synthesize_tone`, or real speech from espeak-ng),
streamed with ``Transfer-Encoding: chunked`` in pieces of ``chunk_ms`` of audio, after
a configurable time to first byte and at a configurable multiple of real time. Errors
are OpenAI-style JSON. :meth:`SpeechServer.render` returns exactly the body a request
would get, so tests can compare what a client played with what was sent, bit for bit.

Theory of operation
-------------------
One task per connection (:func:`trio.serve_listeners`); a connection loops over
requests (keep-alive) with an :class:`h11.Connection`. For each request the handler reads
the whole body (at most ``max_body_bytes`` of it is kept), validates it, and sends piece
``k`` of the response body (see the pure :func:`~._bodies.render_chunks`) at
``received + chunk_schedule(...)[k]``, where ``received`` is the moment the request was
fully received. The audio is synthesized as the pieces go out, so a long input
neither delays the first byte nor blocks the event loop for long (see *Engines* below).
Waiting uses :func:`trio.sleep_until`, so the timing is exact under pytest-trio's
``autojump_clock``. The response headers go out together with the first piece, so the
first byte the client sees is sent at ``ttfb_ms``. A client that disconnects ends its
own task quietly (no traceback); any other exception in a connection task is logged and
kept in :attr:`SpeechServer.errors`, and never stops the server. Idle keep-alive
connections are kept until the client closes them or the server stops.

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

``GET {FILES_PATH}{name}`` serves a file registered with :meth:`SpeechServer.add_file` or
:meth:`SpeechServer.audio_url` (the bytes of a speech response, in the same pieces) with
``Content-Length``, ``ETag`` and ``Range`` (see :mod:`._ranges`); a range is the same
pieces, cut at its ends, paced from ``ttfb_ms`` on. Faults apply to these bodies too.
"""

from __future__ import annotations

import hmac
import logging
import math
import ssl
import weakref
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from contextlib import aclosing, asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import h11
import numpy as np
import numpy.typing as npt
import trio
import trio.testing

from ._bodies import (
    _FORMATS,
    _chunk_frames,
    _EncoderOptions,
    _open_body,
    _piece_due,
    _Pieces,
    _short,
    sse_delta,
    sse_done,
)
from ._engines import _ENGINES, SAMPLE_RATE, _async_blocks, _Engine
from ._faults import FaultPlan, Shaper
from ._misanswers import misanswer_pieces
from ._options import ServerOptions, ServerOptionsChanges
from ._profiles import profile_body, sample_rate_of
from ._ranges import NotSatisfiable, PartialBody, select_range, slice_pieces, strong_etag
from ._requests import (
    _FILE_NAME,
    RecordedRequest,
    _File,
    _FileRequest,
    _HTTPError,
    _parse_speech_request,
    _redacted_headers,
    _SpeechRequest,
)

__all__ = ["FILES_PATH", "SPEECH_PATH", "SpeechServer", "open_server", "serve"]

if TYPE_CHECKING:
    from typing_extensions import Unpack

_log = logging.getLogger("trio_tts_stream.server")

SPEECH_PATH = "/v1/audio/speech"
"""The speech endpoint (``POST``)."""

FILES_PATH = "/v1/audio/files/"
"""Where the audio files of :meth:`SpeechServer.add_file` and
:meth:`SpeechServer.audio_url` are served (``GET`` and ``HEAD``, with ``Range``),
followed by the file's name."""

_RECEIVE_SIZE = 65536
_SEND_SIZE = 65536  # unpaced bodies are written in batches of about this many bytes,
_SEND_AUDIO_MS = 1000  # or of this much audio (bounds how long encoding holds the loop)
_DRAIN_LIMIT = 16 * 1024 * 1024  # read and discard at most this much of an oversized body
_CLOSE_TIMEOUT = 1.0


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
    misanswer: str | None
    profile: str | None

    @classmethod
    def create(cls, options: ServerOptions) -> _Config:
        return cls(
            ttfb_ms=options.ttfb_ms,
            realtime_factor=options.realtime_factor,
            chunk_ms=options.chunk_ms,
            api_key=options.api_key,
            max_body_bytes=options.max_body_bytes,
            engine=_ENGINES[options.engine],
            wav_exact_sizes=options.wav_exact_sizes,
            faults=options.faults or FaultPlan(),
            misanswer=options.misanswer,
            profile=options.profile,
        )


@dataclass(eq=False)
class SpeechServer:
    """A running test server, as yielded by :func:`open_server`.

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
    _nursery: trio.Nursery | None = field(default=None, repr=False)
    _ssl_context: ssl.SSLContext | None = field(default=None, repr=False)

    def serve_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one more connection that arrives on ``stream`` (any trio stream, e.g.
        an in-memory one), exactly as one accepted on the listening socket (TLS included
        when the server has it). Tests that run under an autojump clock use this: a
        kernel socket's own timers (delayed ACKs, zero-window probes) run on real time,
        which a virtual clock races past.

        Raises:
            RuntimeError: The server is not running.
        """
        if self._nursery is None:
            raise RuntimeError("the server is not running")
        if self._ssl_context is not None:
            stream = trio.SSLStream(
                stream, self._ssl_context, server_side=True, https_compatible=True
            )
        self._nursery.start_soon(_handle_connection, self, stream)

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
        engine they are :func:`~trio_tts_stream.server.synthesize_tone`'s. The
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

    def __init__(self, stream: trio.abc.Stream, server: SpeechServer) -> None:
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
        if config.misanswer is not None:
            content_type, lines = misanswer_pieces(config.misanswer)
            head = self._response_head(200, content_type, [("transfer-encoding", "chunked")], close)
            sender = _PiecesSender(self, received_at, head, shaper)
            await sender.send_all(lines)
            return
        if config.profile is not None:
            await self._send_profiled(request, received_at, close, shaper, config.profile)
            return
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
            content_type = fmt.content_type
            wrap: Callable[[bytes], bytes] = _same
            if request.stream_format == "sse":
                content_type, wrap = "text/event-stream", sse_delta
            pieces = _Pieces(
                fmt.encoder(_EncoderOptions(SAMPLE_RATE, total or 0, config.wav_exact_sizes)),
                _chunk_frames(config.chunk_ms),
            )
            try:
                if shaper.faults.truncate_after_bytes is not None:
                    # A Content-Length for the whole body: render it all first.
                    body = [piece async for block in source for piece in pieces.feed(block)]
                    body += pieces.finish()
                    body = [wrap(piece) for piece in body]
                    if request.stream_format == "sse":
                        body.append(sse_done(len(request.text)))
                    headers = [("content-length", str(sum(len(p) for p in body)))]
                    head = self._response_head(200, content_type, headers, close)
                    await _PiecesSender(self, received_at, head, shaper).send_all(body)
                    return
                head = self._response_head(
                    200, content_type, [("transfer-encoding", "chunked")], close
                )
                sender = _PiecesSender(self, received_at, head, shaper)
                async for block in source:
                    for piece in pieces.feed(block):
                        if not await sender.send(wrap(piece)):
                            return
                last = [wrap(piece) for piece in pieces.finish()]
                if request.stream_format == "sse":
                    last.append(sse_done(len(request.text)))
                for piece in last:
                    if not await sender.send(piece):
                        return
            finally:
                pieces.close()  # the client may have gone: release the encoder now
            await sender.end()

    async def _send_profiled(
        self,
        request: _SpeechRequest,
        received_at: float,
        close: bool,
        shaper: Shaper,
        profile: str,
    ) -> None:
        config = self._config
        rate = sample_rate_of(profile, request.response_format, SAMPLE_RATE)
        _, blocks = config.engine.render(request.text, request.voice, request.speed, rate)
        samples = np.concatenate([np.empty(0, dtype=np.int16), *blocks])
        plain = tuple(
            _open_body(
                request.text,
                voice=request.voice,
                speed=request.speed,
                response_format=request.response_format,
                chunk_ms=config.chunk_ms,
                engine=config.engine.name,
                wav_exact_sizes=config.wav_exact_sizes,
            )
        )
        # Encoding a whole utterance takes milliseconds per second of audio; done here, in
        # the connection's task, as the plain server encodes (a worker thread would not
        # be waited for by trio's autojump clock in tests).
        body = profile_body(
            profile,
            samples,
            request.response_format,
            sample_rate=rate,
            ttfb_s=config.ttfb_ms / 1000,
            chunk_ms=config.chunk_ms,
            plain=plain,
        )
        head = self._response_head(
            200, body.content_type, [("transfer-encoding", "chunked")], close
        )
        sender = _PiecesSender(self, received_at, head, shaper, due=body.due)
        await sender.send_all(body.pieces)

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
        self,
        connection: _Connection,
        received_at: float,
        head: bytes,
        shaper: Shaper,
        *,
        due: tuple[float, ...] | None = None,
    ) -> None:
        self._connection = connection
        config = connection._config
        self._due: Callable[[int], float] = partial(
            _piece_due,
            ttfb_ms=config.ttfb_ms,
            chunk_ms=config.chunk_ms,
            realtime_factor=config.realtime_factor,
        )
        if due is not None:
            self._due = due.__getitem__
        self._chunk_ms = config.chunk_ms
        self._received_at = received_at
        self._shaper = shaper
        # Every write on its own when its time matters.
        self._paced = (
            config.realtime_factor is not None or shaper.faults.shapes_body or due is not None
        )
        self._batch = max(1, round(_SEND_AUDIO_MS / config.chunk_ms))
        self._pending = bytearray(head)
        self._pieces = 0  # pieces handed to send()
        self._writes = 0

    async def send(self, piece: bytes) -> bool:
        """Send the next piece when due; return ``False`` if the body was cut (close the
        connection then, and send nothing more)."""
        k = self._pieces
        self._pieces += 1
        due = self._due(k) + self._shaper.faults.burst_delay_s(k * self._chunk_ms)
        for write in self._shaper.feed(due, piece):
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


def _same(piece: bytes) -> bytes:
    return piece


# Exceptions that mean "the client went away or spoke nonsense": end the task quietly.
_CLIENT_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError)


async def _handle_connection(server: SpeechServer, stream: trio.abc.Stream) -> None:
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


# Running servers by port, for :func:`running_server` (in-memory connections in tests).
_RUNNING: weakref.WeakValueDictionary[int, SpeechServer] = weakref.WeakValueDictionary()


def running_server(port: int) -> SpeechServer | None:
    """The server of this process listening on ``port``, if one is running."""
    return _RUNNING.get(port)


def _options(options: ServerOptions | None, changes: ServerOptionsChanges) -> ServerOptions:
    if options is not None and not isinstance(options, ServerOptions):
        raise TypeError(f"options must be a ServerOptions, not {type(options).__name__}")
    return replace(options or ServerOptions(), **changes)


async def serve(
    options: ServerOptions | None = None,
    /,
    *,
    task_status: trio.TaskStatus[SpeechServer] = trio.TASK_STATUS_IGNORED,
    **changes: Unpack[ServerOptionsChanges],
) -> None:
    """Run the server until cancelled; for ``nursery.start``, which returns the server.

    Args:
        options: How to run (default :class:`ServerOptions`).
        task_status: For ``nursery.start``.
        **changes: Fields of :class:`ServerOptions` to change, e.g. ``ttfb_ms=300``.

    Raises:
        ConfigError: An option is invalid (see :class:`ServerOptions`).
        TypeError: A keyword is not a field of :class:`ServerOptions`.
    """
    opts = _options(options, changes)
    host, port, ssl_context = opts.host, opts.port, opts.ssl_context
    config = _Config.create(opts)
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
    server = SpeechServer(
        host=host,
        port=int(sockname[1]),
        base_url=f"{scheme}://{url_host}:{sockname[1]}/v1",
        _config=config,
        _ssl_context=ssl_context,
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(trio.serve_listeners, partial(_handle_connection, server), listeners)
            )
            server._nursery = nursery
            _RUNNING[server.port] = server
            task_status.started(server)
    finally:
        _RUNNING.pop(server.port, None)
        server._nursery = None
        for listener in listeners:
            with trio.CancelScope(shield=True):
                await listener.aclose()


@asynccontextmanager
async def open_server(
    options: ServerOptions | None = None, /, **changes: Unpack[ServerOptionsChanges]
) -> AsyncIterator[SpeechServer]:
    """Run the OpenAI-compatible TTS server for the duration of the ``async with`` block.

    Example::

        async with open_server(ttfb_ms=150, realtime_factor=2.0) as server:
            async with httpx.AsyncClient(base_url=server.base_url) as client:
                response = await client.post("/audio/speech", json={
                    "model": "tts-1", "input": "Hello", "voice": "alloy",
                    "response_format": "pcm"})
            assert response.content == server.render("Hello")

    Args:
        options: How to run (default :class:`ServerOptions`).
        **changes: Fields of :class:`ServerOptions` to change, e.g. ``ttfb_ms=300``.

    Yields:
        The running :class:`SpeechServer`.

    Raises:
        ConfigError: An option is invalid, or the engine is not installed (the message
            says what to install).
        TypeError: A keyword is not a field of :class:`ServerOptions`.
    """
    opts = _options(options, changes)
    # Errors (of starting, or of the caller's block) are re-raised outside the nursery, so
    # that they reach the caller as themselves rather than wrapped in an ExceptionGroup.
    error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        try:
            server: SpeechServer = await nursery.start(partial(serve, opts))
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
