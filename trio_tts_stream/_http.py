"""The HTTP edge: the one place that speaks HTTP, and where httpx exceptions become ours.

Sources:

* :class:`SpeechRequest`: ``POST {base_url}/audio/speech`` on an OpenAI-compatible server.
* a ``str`` URL: ``GET`` an audio file (resumable with ``Range``).
* any ``AsyncIterable[bytes]``: bring your own client.

:func:`open_byte_stream` opens a source and yields a :class:`ByteStream`: the response's
announced content type, its body as chunks of at most ``chunk_size`` (never waiting for
a whole chunk), and what a resume needs (status, ETag, where a ``206`` body starts). An
error status becomes a typed :class:`~._exceptions.HTTPStatusError` with the server's
own message (secrets redacted); transport failures become
:class:`~._exceptions.NetworkError`, :class:`~._exceptions.StreamTimeout` or
:class:`~._exceptions.TLSError` in :func:`map_http_errors`. :func:`shared_client` is the
one client (and connection pool) a trio run's playbacks share when given none.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import ssl
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterator
from contextlib import aclosing, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeAlias, cast

import httpx
import trio

from ._config import StreamConfig
from ._exceptions import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    DecodeError,
    HTTPStatusError,
    NetworkError,
    NotFoundError,
    RateLimitError,
    ServerError,
    SourceError,
    StreamTimeout,
    TLSError,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "ByteStream",
    "EarlyRequest",
    "Source",
    "SpeechRequest",
    "default_endpoint",
    "SHARED_LIMITS",
    "map_http_errors",
    "open_byte_stream",
    "safe_url",
    "shared_client",
    "warn_plain_http_key",
]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_log = logging.getLogger("trio_tts_stream")
_MAX_ERROR_BODY = 64 * 1024


@dataclass(frozen=True)
class SpeechRequest:
    """An OpenAI-compatible ``/audio/speech`` request.

    Attributes:
        input: The text to speak.
        model: TTS model name.
        voice: Voice name.
        response_format: ``pcm``, ``wav``, ``mp3``, ``aac``, ``flac`` or ``opus``.
        speed: Speaking speed (0.25-4.0), or ``None`` for the server's default.
        instructions: Voice instructions (gpt-4o-mini-tts), or ``None``.
        base_url: API base, e.g. ``https://api.openai.com/v1``.
        api_key: Bearer token; never shown in ``repr``, logs or errors.
        sample_rate: Sample rate of headerless ``pcm`` (OpenAI: 24000).
        channels: Channels of headerless ``pcm`` (OpenAI: 1).
        stream_format: ``"audio"`` (the default: the body is the audio) or ``"sse"``
            (OpenAI's event stream: the audio comes base64 in ``speech.audio.delta``
            events, ``speech.audio.done`` ends it; played as it arrives all the same).
    """

    input: str
    model: str = "gpt-4o-mini-tts"
    voice: str = "alloy"
    response_format: str = "pcm"
    speed: float | None = None
    instructions: str | None = None
    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = field(default=None, repr=False)
    sample_rate: int = 24000
    channels: int = 1
    stream_format: str = "audio"

    def __post_init__(self) -> None:
        if self.stream_format not in ("audio", "sse"):
            raise ConfigError(
                f"stream_format={self.stream_format!r} is invalid: it must be 'audio' or 'sse'"
            )
        if not self.input.strip():
            raise ConfigError("the text to speak is empty: give some text")
        if self.speed is not None and not 0.25 <= self.speed <= 4.0:
            raise ConfigError(f"speed={self.speed!r} is invalid: it must be 0.25..4.0")
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"base_url={safe_url(self.base_url)!r} is invalid: it must start with "
                "http:// or https://"
            )

    @property
    def url(self) -> str:
        """The endpoint URL."""
        return self.base_url.rstrip("/") + "/audio/speech"

    def json_body(self) -> dict[str, Any]:
        """The JSON request body."""
        body: dict[str, Any] = {
            "model": self.model,
            "input": self.input,
            "voice": self.voice,
            "response_format": self.response_format,
        }
        if self.speed is not None:
            body["speed"] = self.speed
        if self.instructions:
            body["instructions"] = self.instructions
        if self.stream_format != "audio":
            body["stream_format"] = self.stream_format
        return body


def default_endpoint(base_url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """Fill in ``base_url`` / ``api_key`` from ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``
    (then OpenAI's URL) where not given; an empty key means none."""
    url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
    return url, key or None


Source: TypeAlias = "SpeechRequest | str | AsyncIterable[bytes]"


@dataclass
class ByteStream:
    """An open source: its announced content type, its body chunks, and what a resume
    needs (status, ETag, where a ``206`` body starts)."""

    content_type: str | None
    chunks: AsyncGenerator[bytes, None]
    url: str | None = None
    status_code: int = 200
    etag: str | None = None
    range_start: int | None = None
    accepts_ranges: bool = False


def _strong_etag(value: str | None) -> str | None:
    """A strong ETag (``If-Range`` may only use those), else ``None``."""
    if value is None or value.startswith("W/"):
        return None
    return value


def _range_start(value: str | None) -> int | None:
    """First byte of ``Content-Range: bytes N-M/T``, else ``None``."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(?:\d+|\*)\s*", value or "")
    return int(match.group(1)) if match else None


def _generator(iterator: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    """httpx's body iterators are async generators; say so, to close them explicitly."""
    return cast("AsyncGenerator[bytes, None]", iterator)


def _redact(text: str, secret: str | None) -> str:
    if secret:
        text = text.replace(secret, "***")
    return re.sub(r"\b(sk-[A-Za-z0-9]{0,4})[A-Za-z0-9_\-*.]{4,}", r"\1***", text)


def _server_message(body: bytes) -> str:
    """The error text from an OpenAI-style JSON body, or the start of a plain one."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:300]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if isinstance(data.get("detail"), str):
            return str(data["detail"])
    return " ".join(text.split())[:300]


def _status_error(
    status: int, url: str, body: bytes, headers: httpx.Headers, api_key: str | None
) -> HTTPStatusError:
    message = _redact(_server_message(body), api_key)
    retry_after: float | None = None
    with suppress(ValueError):
        retry_after = float(headers.get("retry-after", ""))
    cls: type[HTTPStatusError]
    if status in (401, 403):
        cls, hint = (
            AuthenticationError,
            ("the API key was rejected: check --api-key / OPENAI_API_KEY"),
        )
    elif status == 404:
        cls, hint = NotFoundError, "not found: check --base-url (usually ends in /v1) and --model"
    elif status == 429:
        cls, hint = RateLimitError, "rate limited: wait and try again"
    elif status >= 500:
        cls, hint = ServerError, "the server failed: try again later"
    else:
        cls, hint = BadRequestError, "the server rejected the request"
    text = f"HTTP {status} from {url}: {hint}"
    if message:
        text += f" (server said: {message})"
    return cls(text, status_code=status, server_message=message, url=url, retry_after=retry_after)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _is_dns_failure(exc: BaseException) -> bool:
    import socket

    return any(isinstance(e, socket.gaierror) for e in _causes(exc))


def _is_tls_failure(exc: BaseException) -> bool:
    import ssl

    return any(
        isinstance(e, ssl.SSLError)
        or "CERTIFICATE_VERIFY_FAILED" in str(e)
        or "SSL" in type(e).__name__
        for e in _causes(exc)
    )


def safe_url(url: str) -> str:
    """``url`` as it may be shown: no userinfo (``user:password@``), no query string.

    Works on malformed URLs too (a ``base_url`` that httpx cannot parse is still shown
    without its credentials).
    """
    url = re.split(r"[?#]", url, maxsplit=1)[0]
    # Whatever precedes an "@" up to a slash is userinfo, however malformed the rest.
    return re.sub(r"(^|/)[^/@]*@", r"\1", url)


@contextmanager
def map_http_errors(url: str) -> Iterator[None]:
    """Turn every httpx exception into ours (the one mapping boundary), keeping it as the
    ``__cause__``; the message is one line and never contains credentials."""
    url = safe_url(url)
    try:
        yield
    except httpx.TimeoutException as exc:
        kind = "connecting to" if isinstance(exc, httpx.ConnectTimeout) else "reading from"
        raise StreamTimeout(
            f"timed out {kind} {url}; check the server or raise the timeout"
        ) from exc
    except httpx.UnsupportedProtocol as exc:
        raise ConfigError(
            f"cannot fetch {url}: only http:// and https:// URLs are supported "
            f"({_one_line(str(exc))})"
        ) from exc
    except httpx.TransportError as exc:
        if _is_tls_failure(exc):
            reason = next((str(e) for e in _causes(exc) if str(e)), type(exc).__name__)
            raise TLSError(
                f"TLS failed for {url}: {reason}. Check the certificate (or pass a CA bundle "
                "with --ca-file)."
            ) from exc
        detail = _one_line(str(exc) or type(exc).__name__)
        if _is_dns_failure(exc):
            host = httpx.URL(url).host
            raise NetworkError(
                f"cannot resolve the host name {host!r} of {url}: check --base-url / the URL"
            ) from exc
        if isinstance(exc, httpx.ConnectError):
            raise NetworkError(
                f"cannot connect to {url}: {detail}. Is the server running?"
            ) from exc
        raise NetworkError(f"connection to {url} failed: {detail}") from exc
    except httpx.DecodingError as exc:
        raise DecodeError(
            f"the response from {url} could not be decoded: its Content-Encoding is broken "
            f"({_one_line(str(exc))}); the server is misconfigured"
        ) from exc
    except httpx.TooManyRedirects as exc:
        raise SourceError(
            f"too many redirects from {url}: the server redirects in a loop; check the URL"
        ) from exc
    except httpx.InvalidURL as exc:
        raise ConfigError(f"invalid URL {url!r}: {_one_line(str(exc))}") from exc
    except (httpx.HTTPError, httpx.StreamError, httpx.CookieConflict) as exc:
        # Anything else httpx may raise (its own HTTPStatusError is never asked for).
        raise SourceError(
            f"request to {url} failed: {type(exc).__name__}: {_one_line(str(exc))}"
        ) from exc


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


_warned_plain_http: set[str] = set()


def warn_plain_http_key(url: str, api_key: str | None) -> None:
    """Log one warning per host when an API key would cross the network unencrypted."""
    if not api_key:
        return
    parsed = httpx.URL(url)
    host = parsed.host
    if parsed.scheme != "http" or _is_loopback(host) or host in _warned_plain_http:
        return
    _warned_plain_http.add(host)
    _log.warning(
        "sending the API key over plain http to %s: anyone on the network can read it; use https",
        host,
    )


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _prepare(
    source: SpeechRequest | str,
    client: httpx.AsyncClient,
    config: StreamConfig,
    resume_from: int,
    etag: str | None,
) -> tuple[httpx.Request, str, str | None]:
    """The request for ``source``, the URL to show (no credentials or query), the key."""
    if isinstance(source, SpeechRequest):
        url = source.url
        headers = {"Accept": "text/event-stream" if source.stream_format == "sse" else "*/*"}
        if source.api_key:
            headers["Authorization"] = f"Bearer {source.api_key}"
        warn_plain_http_key(url, source.api_key)
        with map_http_errors(url):
            request = client.build_request("POST", url, json=source.json_body(), headers=headers)
        api_key = source.api_key
    else:
        url = source
        get_headers = {}
        if resume_from > 0:
            get_headers["Range"] = f"bytes={resume_from}-"
            if etag:
                get_headers["If-Range"] = etag
        with map_http_errors(url):
            request = client.build_request("GET", url, headers=get_headers)
        api_key = None
    shown_url = str(request.url.copy_with(username=None, password=None, query=None))
    # The body's pauses are the download loop's to judge (see _stall): httpx's own
    # read timeout would cut a pause the loop means to ride out. The wait for the
    # response headers is bounded here instead.
    request.extensions["timeout"] = httpx.Timeout(
        config.read_timeout_s, connect=config.connect_timeout_s, read=None
    ).as_dict()
    return request, shown_url, api_key


class EarlyRequest:
    """A request sent before the playback that reads it exists: the CLI's fast start.

    ``nursery.start_soon(early.run)`` sends it at once (the response's headers are
    awaited there, bounded like any attempt's); the playback's download then takes it as
    its first attempt (``open_playback(..., early=early)``) instead of sending it again,
    so the request is in flight while the player's modules load and the device opens.
    A failure is raised, as :func:`open_byte_stream` would raise it, by the attempt that
    takes it (and retried like any). :meth:`aclose` releases a response nobody took.

    Args:
        source: What to request (a :class:`SpeechRequest` or a URL to ``GET``).
        client: The client to send it with (the one the playback will use).
        config: The timeouts.
    """

    def __init__(
        self, source: SpeechRequest | str, *, client: httpx.AsyncClient, config: StreamConfig
    ) -> None:
        self.source = source
        self.client = client
        self.config = config
        #: When sending began (trio's clock), once :meth:`run` started.
        self.sent_at: float | None = None
        self._done = trio.Event()
        self._prepared: tuple[httpx.Request, str, str | None] | None = None
        self._response: httpx.Response | None = None
        self._error: Exception | None = None
        self._timed_out = False
        self._taken = False

    async def run(self) -> None:
        """Send the request and wait for the response's headers (never raises: a failure
        is kept for the attempt that takes it)."""
        self.sent_at = trio.current_time()
        try:
            self._prepared = request, _, _ = _prepare(
                self.source, self.client, self.config, 0, None
            )
            limit = self.config.connect_timeout_s + self.config.read_timeout_s
            with trio.move_on_after(limit) as wait:
                self._response = await self.client.send(request, stream=True)
            self._timed_out = wait.cancelled_caught
        except Exception as exc:
            self._error = exc
        finally:
            self._done.set()

    async def take(
        self,
    ) -> tuple[tuple[httpx.Request, str, str | None], httpx.Response | None, Exception | None]:
        """Wait for the response: ((request, shown URL, key), the response or ``None``
        when it timed out, what sending raised). Raises what preparing it raised."""
        if self._taken:
            raise RuntimeError("an early request is taken once")
        self._taken = True
        await self._done.wait()
        if self._prepared is None:
            if self._error is not None:
                raise self._error  # already one of ours (see _prepare)
            raise NetworkError("the request was cancelled before it was sent")
        return self._prepared, None if self._timed_out else self._response, self._error

    async def aclose(self) -> None:
        """Close the response if no playback took it."""
        response, self._response = self._response, None
        if response is not None and not self._taken:
            with trio.CancelScope(shield=True):
                await response.aclose()


@asynccontextmanager
async def open_byte_stream(
    source: Source,
    *,
    client: httpx.AsyncClient,
    config: StreamConfig,
    resume_from: int = 0,
    etag: str | None = None,
    early: EarlyRequest | None = None,
) -> AsyncIterator[ByteStream]:
    """Open ``source`` and yield its body as chunks of at most ``config.chunk_size``.

    For a GET URL, ``resume_from > 0`` asks for ``Range: bytes=N-`` (with ``If-Range``
    when an ``etag`` is known); check :attr:`ByteStream.range_start` before trusting it.
    ``early``: the request of this source already sent (:class:`EarlyRequest`; only for
    a first attempt): its response is used instead of sending again.
    """
    if isinstance(source, (SpeechRequest, str)):
        response: httpx.Response | None = None
        failed: Exception | None = None
        if early is not None:
            (request, shown_url, api_key), response, failed = await early.take()
        else:
            request, shown_url, api_key = _prepare(source, client, config, resume_from, etag)
        with map_http_errors(shown_url):
            if failed is not None:
                raise failed
            if early is None:
                limit = config.connect_timeout_s + config.read_timeout_s
                with trio.move_on_after(limit):
                    response = await client.send(request, stream=True)
            if response is None:
                raise StreamTimeout(
                    f"no response from {shown_url} in "
                    f"{config.connect_timeout_s + config.read_timeout_s:g} s; check the "
                    "server or raise the timeout"
                )
            try:
                if response.status_code >= 400:
                    body = b""
                    async with aclosing(_generator(response.aiter_bytes())) as pieces:
                        async for piece in pieces:
                            body += piece
                            if len(body) >= _MAX_ERROR_BODY:
                                break
                    raise _status_error(
                        response.status_code, shown_url, body, response.headers, api_key
                    )

                async def chunks() -> AsyncGenerator[bytes, None]:
                    # Not aiter_bytes(chunk_size): httpx would hold bytes back until a
                    # whole chunk_size has arrived (512 ms of 64 kbit/s mp3 for 4096).
                    # chunk_size is the most we hand the decoder at once, never a wait.
                    size = config.chunk_size
                    with map_http_errors(shown_url):
                        async with aclosing(_generator(response.aiter_bytes())) as body:
                            async for data in body:
                                for i in range(0, len(data), size):
                                    yield data[i : i + size]

                got = response.headers
                yield ByteStream(
                    got.get("content-type"),
                    chunks(),
                    shown_url,
                    status_code=response.status_code,
                    etag=_strong_etag(got.get("etag")),
                    range_start=_range_start(got.get("content-range"))
                    if response.status_code == 206
                    else None,
                    accepts_ranges=got.get("accept-ranges", "").lower() == "bytes"
                    and "content-encoding" not in got,
                )
            finally:
                with trio.CancelScope(shield=True):
                    await response.aclose()
    else:

        async def rechunk() -> AsyncGenerator[bytes, None]:
            size = config.chunk_size
            iterator = aiter(source)
            try:
                async for data in iterator:
                    for i in range(0, len(data), size):
                        yield bytes(data[i : i + size])
            finally:
                # We drove this iterator; close it when we stop early (cancel, error).
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    with trio.CancelScope(shield=True):
                        await aclose()

        yield ByteStream(None, rechunk())


#: Connection-pool limits of the shared client: room for many concurrent streams (one
#: connection each) and their keep-alive between utterances.
SHARED_LIMITS = httpx.Limits(
    max_connections=1024, max_keepalive_connections=256, keepalive_expiry=30.0
)

# One client per trio run and TLS setting (see shared_client).
_CLIENTS: trio.lowlevel.RunVar[dict[object, httpx.AsyncClient]] = trio.lowlevel.RunVar(
    "trio_tts_stream_clients"
)


def shared_client(verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    """The HTTP client that every playback without a ``client=`` of this trio run shares.

    One per ``verify`` setting (``True``, ``False`` or one ``ssl.SSLContext``), with one
    connection pool (:data:`SHARED_LIMITS`), so many streams in a process reuse
    connections and TLS sessions instead of each building a client (57 ms of CPU each,
    on the trio thread). Timeouts are set per request (:func:`open_byte_stream`), so one
    client fits every config. The client is closed when the run ends, by a trio system
    task that owns it.
    """
    try:
        clients = _CLIENTS.get()
    except LookupError:
        clients = {}
        _CLIENTS.set(clients)
    client = clients.get(verify)
    if client is None:
        client = httpx.AsyncClient(verify=verify, follow_redirects=True, limits=SHARED_LIMITS)
        clients[verify] = client
        trio.lowlevel.spawn_system_task(_close_at_exit, client, name="trio_tts_stream client")
    return client


async def _close_at_exit(client: httpx.AsyncClient) -> None:
    """Own ``client`` until the run ends (system tasks are cancelled then), then close it."""
    try:
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True), suppress(Exception):
            await client.aclose()
