"""The download task: bytes from a source, through a decoder, into a bounded channel.

Sources:

* :class:`SpeechRequest`: ``POST {base_url}/audio/speech`` on an OpenAI-compatible server.
* a ``str`` URL: ``GET`` an audio file.
* any ``AsyncIterable[bytes]``: bring your own client.

The decoder is chosen from what the response *is* (Content-Type and magic bytes), falling
back to what was asked for. The task sends the stream's :class:`AudioFormat` first and
then its blocks through the channel; ``send`` waits when the channel is full, which stops
reading the response, which lets TCP flow control slow the server: memory stays bounded.

This module is the one place where httpx exceptions become ours
(:func:`map_http_errors`).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterator
from contextlib import aclosing, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeAlias, cast

import httpx
import trio

from ._config import StreamConfig
from ._decoders import create_decoder, sniff_format
from ._decoders._base import Decoder
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
    StreamTimeout,
    TLSError,
    UnsupportedFormatError,
)
from ._format import AudioFormat, Block
from ._metrics import MetricsRecorder

__all__ = [
    "DEFAULT_BASE_URL",
    "ByteStream",
    "DownloadResult",
    "Source",
    "SpeechRequest",
    "map_http_errors",
    "open_byte_stream",
    "run_download",
]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
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

    def __post_init__(self) -> None:
        if not self.input.strip():
            raise ConfigError("the text to speak is empty: give some text")
        if self.speed is not None and not 0.25 <= self.speed <= 4.0:
            raise ConfigError(f"speed={self.speed!r} is invalid: it must be 0.25..4.0")
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"base_url={self.base_url!r} is invalid: it must start with http:// or https://"
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
        return body


Source: TypeAlias = "SpeechRequest | str | AsyncIterable[bytes]"


@dataclass
class ByteStream:
    """An open source: its announced content type and its body chunks."""

    content_type: str | None
    chunks: AsyncGenerator[bytes, None]
    url: str | None = None


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


@contextmanager
def map_http_errors(url: str) -> Iterator[None]:
    """Turn httpx transport exceptions into ours (the one mapping boundary)."""
    try:
        yield
    except httpx.TimeoutException as exc:
        kind = "connecting to" if isinstance(exc, httpx.ConnectTimeout) else "reading from"
        raise StreamTimeout(
            f"timed out {kind} {url}; check the server or raise the timeout"
        ) from exc
    except httpx.TransportError as exc:
        if _is_tls_failure(exc):
            raise TLSError(
                f"TLS failed for {url}: {exc}. Check the certificate (or pass a CA bundle)."
            ) from exc
        detail = str(exc) or type(exc).__name__
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
    except httpx.InvalidURL as exc:
        raise ConfigError(f"invalid URL {url!r}: {exc}") from exc


@asynccontextmanager
async def open_byte_stream(
    source: Source, *, client: httpx.AsyncClient, config: StreamConfig
) -> AsyncIterator[ByteStream]:
    """Open ``source`` and yield its body as chunks of at most ``config.chunk_size``."""
    if isinstance(source, (SpeechRequest, str)):
        if isinstance(source, SpeechRequest):
            url = source.url
            headers = {"Accept": "*/*"}
            if source.api_key:
                headers["Authorization"] = f"Bearer {source.api_key}"
            request = client.build_request("POST", url, json=source.json_body(), headers=headers)
            api_key = source.api_key
        else:
            url = source
            with map_http_errors(url):
                request = client.build_request("GET", url)
            api_key = None
        safe_url = str(request.url.copy_with(username=None, password=None, query=None))
        with map_http_errors(safe_url):
            response = await client.send(request, stream=True)
            try:
                if response.status_code >= 400:
                    body = b""
                    async with aclosing(_generator(response.aiter_bytes())) as pieces:
                        async for piece in pieces:
                            body += piece
                            if len(body) >= _MAX_ERROR_BODY:
                                break
                    raise _status_error(
                        response.status_code, safe_url, body, response.headers, api_key
                    )

                async def chunks() -> AsyncGenerator[bytes, None]:
                    # Not aiter_bytes(chunk_size): httpx would hold bytes back until a
                    # whole chunk_size has arrived (512 ms of 64 kbit/s mp3 for 4096).
                    # chunk_size is the most we hand the decoder at once, never a wait.
                    size = config.chunk_size
                    with map_http_errors(safe_url):
                        async with aclosing(_generator(response.aiter_bytes())) as body:
                            async for data in body:
                                for i in range(0, len(data), size):
                                    yield data[i : i + size]

                yield ByteStream(response.headers.get("content-type"), chunks(), safe_url)
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


@dataclass
class DownloadResult:
    """What the download task found out.

    Attributes:
        format: The format that was decoded (``None`` if the body was empty).
        fallback_reason: Why the stream was decoded whole instead of incrementally, or
            ``None`` when it streamed.
        decode_errors: Corrupted frames or packets skipped.
    """

    format: str | None = None
    fallback_reason: str | None = None
    decode_errors: int = 0


async def run_download(
    source: Source,
    send_channel: trio.MemorySendChannel[AudioFormat | Block],
    *,
    client: httpx.AsyncClient,
    config: StreamConfig,
    metrics: MetricsRecorder,
    result: DownloadResult,
    response_format: str = "pcm",
    sample_rate: int = 24000,
    channels: int = 1,
) -> None:
    """Download ``source``, decode it and send the format, then blocks, to the channel.

    In streaming mode blocks are sent as they are decoded; otherwise they are held until
    the body is complete (``config.streaming=False``). If the incremental decoder refuses
    the stream before producing any audio (an unknown container, a decoder that rejects
    the first bytes), the rest is downloaded and decoded whole with PyAV instead
    (``result.fallback_reason`` says why). Closes ``send_channel`` at the end; fills in
    ``result`` as it goes.

    Raises:
        SourceError: The source failed (after what was received was sent on).
        DecodeError: The bytes could not be decoded, incrementally or whole.
    """
    async with send_channel:
        metrics.on_request(trio.current_time())
        async with open_byte_stream(source, client=client, config=config) as stream:
            decoder: Decoder | None = None
            fmt_sent = False
            held: list[Block] = []
            head = b""
            body: bytearray | None = None  # the whole body, once falling back

            async def emit(fmt: AudioFormat | None, blocks: list[Block]) -> None:
                nonlocal fmt_sent
                if not blocks:
                    return
                if not fmt_sent:
                    assert fmt is not None
                    await send_channel.send(fmt)
                    fmt_sent = True
                if config.streaming:
                    for block in blocks:
                        await send_channel.send(block)
                else:
                    held.extend(blocks)

            def decode(data: bytes, final: bool = False) -> list[Block]:
                nonlocal decoder, body
                assert decoder is not None
                t0 = time.perf_counter()
                try:
                    blocks = decoder.decode(data) if data else []
                    if final:
                        blocks += decoder.flush()
                except DecodeError as exc:
                    if fmt_sent or not _can_decode_whole():
                        raise
                    # Nothing played yet: keep every byte and decode it whole at the end.
                    result.fallback_reason = f"{decoder.name} decoder refused the stream: {exc}"
                    body = bytearray(data)
                    return []
                finally:
                    metrics.on_decode(time.perf_counter() - t0, 0)
                _count_errors(decoder, result)
                metrics.frames_decoded += sum(len(b) for b in blocks)
                return blocks

            def start(first: bytes) -> None:
                nonlocal decoder, body
                try:
                    decoder = _choose_decoder(
                        first, stream.content_type, response_format, sample_rate, channels
                    )
                    result.format = decoder.name
                except UnsupportedFormatError as exc:
                    if not _can_decode_whole() or "disagree" in str(exc):
                        raise
                    result.fallback_reason = str(exc)
                    body = bytearray()

            async with aclosing(stream.chunks) as chunks:
                async for chunk in chunks:
                    metrics.on_bytes(len(chunk), trio.current_time())
                    if body is not None:
                        body += chunk
                        continue
                    if decoder is None:
                        head += chunk
                        if len(head) < 12:
                            continue
                        chunk, head = head, b""
                        start(chunk)
                        if body is not None:
                            body += chunk
                            continue
                    assert decoder is not None
                    blocks = decode(chunk)
                    await emit(decoder.audio_format, blocks)
            if body is None and decoder is None:
                if not head:
                    return
                start(head)
                if body is not None:
                    body += head
            if body is None:
                assert decoder is not None
                blocks = decode(head, final=True)
                await emit(decoder.audio_format, blocks)
            if body is not None:
                from ._decoders._pyav import decode_whole

                t0 = time.perf_counter()
                name, fmt, blocks = decode_whole(bytes(body))
                metrics.on_decode(time.perf_counter() - t0, 0)
                metrics.frames_decoded += sum(len(b) for b in blocks)
                result.format = name
                await emit(fmt, blocks)
            for block in held:
                await send_channel.send(block)


_warned = logging.getLogger("trio_tts_stream")


def _count_errors(decoder: Decoder, result: DownloadResult) -> None:
    errors = int(getattr(decoder, "errors", 0))
    if errors and not result.decode_errors:
        _warned.warning(
            "%s stream has corrupted data: skipping undecodable frames (counted in the "
            "report's decode_errors)",
            decoder.name,
        )
    result.decode_errors = errors


def _can_decode_whole() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _choose_decoder(
    head: bytes, content_type: str | None, requested: str, sample_rate: int, channels: int
) -> Decoder:
    """Trust the response over the request: its Content-Type and magic bytes win.

    A self-describing container (RIFF, ID3, fLaC, OggS) that contradicts a specific audio
    Content-Type is an error: one of them is wrong. Headerless pcm can start with bytes
    that look like an mp3/aac frame sync, so for a pcm request a frame sync alone does not
    override it.
    """
    magic = sniff_format(head, None)
    declared = sniff_format(b"", content_type) if content_type else None
    strong = head.startswith((b"RIFF", b"RF64", b"ID3", b"fLaC", b"OggS"))
    if strong and declared is not None and declared not in (magic, "pcm"):
        raise UnsupportedFormatError(
            f"the response's Content-Type {content_type!r} and its bytes ({magic}) disagree; "
            "the server is misconfigured: ask for another response_format"
        )
    sniffed = sniff_format(head, content_type)
    if requested == "pcm" and sniffed in ("mp3", "aac") and not strong and declared is None:
        sniffed = None
    return create_decoder(sniffed or requested, sample_rate=sample_rate, channels=channels)
