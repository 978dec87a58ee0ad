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
import os
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
    ResumeMismatchError,
    ServerError,
    SourceError,
    StreamTimeout,
    TLSError,
    UnsupportedFormatError,
)
from ._format import AudioFormat, Block
from ._metrics import MetricsRecorder
from ._resume import OverlapSkipper, PrefixDigest, Verdict
from ._retry import RetryPolicy, RetryState, give_up_message

__all__ = [
    "DEFAULT_BASE_URL",
    "ByteStream",
    "DownloadResult",
    "default_endpoint",
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
            reason = next((str(e) for e in _causes(exc) if str(e)), type(exc).__name__)
            raise TLSError(
                f"TLS failed for {url}: {reason}. Check the certificate (or pass a CA bundle "
                "with --ca-file)."
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
    source: Source,
    *,
    client: httpx.AsyncClient,
    config: StreamConfig,
    resume_from: int = 0,
    etag: str | None = None,
) -> AsyncIterator[ByteStream]:
    """Open ``source`` and yield its body as chunks of at most ``config.chunk_size``.

    For a GET URL, ``resume_from > 0`` asks for ``Range: bytes=N-`` (with ``If-Range``
    when an ``etag`` is known); check :attr:`ByteStream.range_start` before trusting it.
    """
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
            get_headers = {}
            if resume_from > 0:
                get_headers["Range"] = f"bytes={resume_from}-"
                if etag:
                    get_headers["If-Range"] = etag
            with map_http_errors(url):
                request = client.build_request("GET", url, headers=get_headers)
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

                got = response.headers
                yield ByteStream(
                    got.get("content-type"),
                    chunks(),
                    safe_url,
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


@dataclass
class DownloadResult:
    """What the download task found out.

    Attributes:
        format: The format that was decoded (``None`` if the body was empty).
        fallback_reason: Why the stream was decoded whole instead of incrementally, or
            ``None`` when it streamed.
        decode_errors: Corrupted frames or packets skipped.
        retries: Requests repeated before any audio was played (transparent).
        reconnects: Connections re-established after audio had been played.
        stalls: Times no byte arrived for ``stall_timeout_s``.
        resumed_bytes: Bytes not downloaded again thanks to ``Range`` resumes.
        skipped_overlap_frames: Frames of re-requested streams dropped after verifying
            they equal what was already played.
        restarted: A re-requested stream differed from what was played and the
            utterance was started again from its beginning (``resume_mismatch="restart"``).
    """

    format: str | None = None
    fallback_reason: str | None = None
    decode_errors: int = 0
    retries: int = 0
    reconnects: int = 0
    stalls: int = 0
    resumed_bytes: int = 0
    skipped_overlap_frames: int = 0
    restarted: bool = False


class _Restart(Exception):
    """Internal: start the utterance again from its first sample."""


class _Download:
    """One source, over as many attempts as it takes (see :func:`run_download`)."""

    def __init__(
        self,
        source: Source,
        send_channel: trio.MemorySendChannel[AudioFormat | Block],
        *,
        client: httpx.AsyncClient,
        config: StreamConfig,
        metrics: MetricsRecorder,
        result: DownloadResult,
        response_format: str,
        sample_rate: int,
        channels: int,
    ) -> None:
        self.source = source
        self.send = send_channel
        self.client = client
        self.config = config
        self.metrics = metrics
        self.result = result
        self.requested = response_format
        self.sample_rate = sample_rate
        self.channels = channels
        self.reopenable = isinstance(source, (SpeechRequest, str))
        # What has been sent on (survives reconnects).
        self.fmt_sent: AudioFormat | None = None
        self.digest = PrefixDigest()
        self.held: list[Block] = []
        # Per attempt.
        self.decoder: Decoder | None = None
        self.skipper: OverlapSkipper | None = None
        self.head = b""
        self.body: bytearray | None = None  # the whole body, once falling back
        self.bytes_fed = 0  # body bytes of the current response given to the decoder
        self.etag: str | None = None
        self.accepts_ranges = False

    # -- attempts ---------------------------------------------------------------

    async def run(self) -> None:
        config = self.config
        policy = RetryPolicy(max_attempts=config.max_attempts, deadline_s=config.retry_deadline_s)
        retry = RetryState(policy, started_at=trio.current_time())
        while True:
            progress = self.digest.frames
            try:
                await self._attempt()
                break
            except _Restart:
                self.result.restarted = True
                self._reset()
                continue
            except SourceError as exc:
                if self.digest.frames > progress:
                    # This connection delivered new audio before it failed: the bound is
                    # on failures in a row, so a long stream may survive many drops.
                    retry = RetryState(policy, started_at=trio.current_time())
                delay = retry.next_delay(exc, trio.current_time()) if self.reopenable else None
                if delay is None:
                    exc.args = (give_up_message(exc, retry),)
                    raise
                if self.digest.frames and config.streaming:
                    self.result.reconnects += 1
                else:
                    self.result.retries += 1
                    self._reset()
                await trio.sleep(delay)
        await self._finish()

    def _reset(self) -> None:
        """Start over: forget the current response and everything sent (only used when
        nothing was played yet, or to restart the utterance)."""
        self.decoder = None
        self.skipper = None
        self.head = b""
        self.body = None
        self.bytes_fed = 0
        self.held = []
        self.digest = PrefixDigest()

    async def _attempt(self) -> None:
        resume_from = self.bytes_fed if (self.decoder is not None and self.accepts_ranges) else 0
        async with open_byte_stream(
            self.source,
            client=self.client,
            config=self.config,
            resume_from=resume_from,
            etag=self.etag,
        ) as stream:
            if resume_from and stream.range_start == resume_from:
                self.result.resumed_bytes += resume_from  # same decoder, next byte
            elif self.decoder is not None or self.digest.frames:
                # A new response from its first byte: decode it afresh and skip (after
                # verifying) what was already sent.
                self.decoder, self.head, self.body, self.bytes_fed = None, b"", None, 0
                if self.digest.frames:
                    self.skipper = OverlapSkipper(self.digest.frames, self.digest.crc)
            self.etag = stream.etag or self.etag
            self.accepts_ranges = stream.accepts_ranges and isinstance(self.source, str)
            await self._read(stream)

    async def _read(self, stream: ByteStream) -> None:
        stall = self.config.stall_timeout_s
        # A slow server may think for a while before its first audio byte (a CPU TTS
        # model): that wait gets the read timeout; once audio flows, a pause longer than
        # stall_timeout_s is a stall.
        first = max(stall, self.config.read_timeout_s)
        async with aclosing(stream.chunks) as chunks:
            iterator = aiter(chunks)
            got_any = False
            while True:
                with trio.move_on_after(stall if got_any else first) as scope:
                    chunk = await anext(iterator, None)
                got_any = True
                if scope.cancelled_caught:
                    self.result.stalls += 1
                    raise StreamTimeout(
                        f"no audio bytes for {stall:g} s from {stream.url or 'the source'}: "
                        "the stream stalled"
                    )
                if chunk is None:
                    return
                self.metrics.on_bytes(len(chunk), trio.current_time())
                await self._take(chunk, stream.content_type)

    async def _take(self, chunk: bytes, content_type: str | None) -> None:
        self.bytes_fed += len(chunk)
        if self.body is not None:
            self.body += chunk
            return
        if self.decoder is None:
            self.head += chunk
            if len(self.head) < 12:
                return
            chunk, self.head = self.head, b""
            self._start(chunk, content_type)
            if self.body is not None:
                self.body += chunk
                return
        await self._emit(self._decode(chunk))

    def _start(self, first: bytes, content_type: str | None) -> None:
        try:
            self.decoder = _choose_decoder(
                first, content_type, self.requested, self.sample_rate, self.channels
            )
            self.result.format = self.decoder.name
        except UnsupportedFormatError as exc:
            if not _can_decode_whole() or "disagree" in str(exc) or self.digest.frames:
                raise
            self.result.fallback_reason = str(exc)
            self.body = bytearray()

    def _decode(self, data: bytes, final: bool = False) -> list[Block]:
        decoder = self.decoder
        assert decoder is not None
        t0 = time.perf_counter()
        try:
            blocks = decoder.decode(data) if data else []
            if final:
                blocks += decoder.flush()
        except DecodeError as exc:
            if self.fmt_sent or self.digest.frames or not _can_decode_whole():
                raise
            # Nothing played yet: keep every byte and decode it whole at the end.
            self.result.fallback_reason = f"{decoder.name} decoder refused the stream: {exc}"
            self.body = bytearray(data)
            return []
        finally:
            self.metrics.on_decode(time.perf_counter() - t0)
        _count_errors(decoder, self.result)
        return blocks

    async def _emit(self, blocks: list[Block], fmt: AudioFormat | None = None) -> None:
        if not blocks:
            return
        fmt = fmt or (self.decoder.audio_format if self.decoder is not None else None)
        assert fmt is not None
        if self.skipper is not None:
            blocks = self._skip_overlap(blocks)
            if not blocks:
                return
        if self.fmt_sent is None:
            await self.send.send(fmt)
            self.fmt_sent = fmt
        elif fmt != self.fmt_sent:
            raise UnsupportedFormatError(
                f"the stream changed from {self.fmt_sent} to {fmt} when it was re-requested"
            )
        for block in blocks:
            self.digest.update(block)
            self.metrics.frames_decoded += len(block)
            if self.config.streaming:
                await self.send.send(block)
            else:
                self.held.append(block)

    def _skip_overlap(self, blocks: list[Block]) -> list[Block]:
        skipper = self.skipper
        assert skipper is not None
        out = []
        for block in blocks:
            before = skipper.seen
            rest = skipper.feed(block)
            self.result.skipped_overlap_frames += skipper.seen - before
            if skipper.verdict is Verdict.MISMATCH:
                if self.config.resume_mismatch == "restart":
                    _log.warning(
                        "the re-requested stream differs from the audio already played; "
                        "restarting the utterance from its beginning"
                    )
                    raise _Restart
                raise ResumeMismatchError(
                    f"after a reconnect the server sent different audio than before (the "
                    f"first {skipper.frames} frames do not match what was played), so the "
                    "stream cannot be resumed without a glitch; set "
                    "resume_mismatch='restart' to start the utterance again instead"
                )
            if rest is not None:
                out.append(rest)
        if skipper.verdict is Verdict.MATCH:
            self.skipper = None
        return out

    async def _finish(self) -> None:
        if self.body is None and self.decoder is None:
            if not self.head:
                return
            self._start(self.head, None)
            if self.body is not None:
                self.body += self.head
        if self.body is None:
            await self._emit(self._decode(self.head, final=True))
        else:
            from ._decoders._pyav import decode_whole

            t0 = time.perf_counter()
            name, fmt, blocks = decode_whole(bytes(self.body))
            self.metrics.on_decode(time.perf_counter() - t0)
            self.result.format = name
            await self._emit(blocks, fmt)
        for block in self.held:
            await self.send.send(block)


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
    (``result.fallback_reason`` says why).

    Network trouble is retried (:mod:`._retry`): a drop, a reset, a timeout, a stall (no
    byte for ``stall_timeout_s``), 408/429/5xx. Before any audio was sent the request is
    simply made again. After, a GET source resumes with ``Range`` (bit-identical), and a
    POST is re-requested and resumed past the frames already sent once they are verified
    to match (:mod:`._resume`). Closes ``send_channel`` at the end; fills in ``result``.

    Raises:
        SourceError: The source failed for good (after what was received was sent on).
        ResumeMismatchError: A re-requested stream differed from what was played.
        DecodeError: The bytes could not be decoded, incrementally or whole.
    """
    async with send_channel:
        metrics.on_request(trio.current_time())
        await _Download(
            source,
            send_channel,
            client=client,
            config=config,
            metrics=metrics,
            result=result,
            response_format=response_format,
            sample_rate=sample_rate,
            channels=channels,
        ).run()


_log = logging.getLogger("trio_tts_stream")


def _count_errors(decoder: Decoder, result: DownloadResult) -> None:
    errors = int(getattr(decoder, "errors", 0))
    if errors and not result.decode_errors:
        _log.warning(
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
