"""The download loop: attempts, retries, stalls and resumes, sending into the channel.

Theory of operation
-------------------
:func:`run_download` opens the source through the HTTP edge (:mod:`._http`), hands each
body chunk to the pure :class:`~._stream_decoder.StreamDecoder`, and sends what it
returns (the stream's :class:`AudioFormat` first, then blocks) into a bounded memory
channel. ``send`` waits when the channel is full, which stops reading the response,
which lets TCP flow control slow the server: memory stays bounded.

What this loop adds to the decoder is time and retrying:

* **Pauses and dead connections** (:mod:`._stall`): a pause in the body is ridden out
  (playback rebuffers meanwhile); only a wait past the watch's patience cancels the read
  (a cancel scope) and counts as a retryable failure. The wait for a response's *first*
  body byte gets the read timeout: a CPU TTS server may think for seconds.
* **First audio deadline** (``first_audio_timeout_s``): one cancel scope around every
  attempt and every wait between them, lifted when the first audio is decoded, so that
  a user's time bound is the time they wait.
* **Retries** (:mod:`._retry`): a drop, a reset, a timeout, a stall, 408/429/5xx. Before
  any audio was sent the request is simply made again; the bound is on failures *in a
  row*, so a long stream that delivers audio between drops survives many of them.
* **Resumes** (:mod:`._resume`): a GET source resumes with ``Range`` (the decoder keeps
  going: bit-identical); anything else is re-requested and the decoder skips, after
  verifying them, the frames already sent.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import aclosing
from typing import Protocol

import httpx
import trio

from ._config import StreamConfig
from ._exceptions import ResumeMismatchError, SourceError, StreamTimeout
from ._format import AudioFormat, Block, FormatHint
from ._http import ByteStream, EarlyRequest, Source, SpeechRequest, open_byte_stream
from ._metrics import MetricsRecorder
from ._retry import RetryPolicy, RetryState, give_up_message
from ._stall import StallPolicy, StallWatch
from ._stream_decoder import Event, StreamDecoder

__all__ = ["BodyTap", "run_download"]

_log = logging.getLogger("trio_tts_stream")


class BodyTap(Protocol):
    """Sees the body bytes as they are read (a phrase cache recording a response)."""

    def data(self, chunk: bytes) -> None:
        """Body bytes, in order, of the current attempt."""

    def broken(self) -> None:
        """The attempt failed and another one follows: the bytes so far are not a body."""


class _Download:
    """One source, over as many attempts as it takes (see :func:`run_download`)."""

    def __init__(
        self,
        source: Source,
        send_channel: trio.MemorySendChannel[AudioFormat | Block],
        *,
        client: httpx.AsyncClient,
        config: StreamConfig,
        recorder: MetricsRecorder,
        hint: FormatHint,
        tap: BodyTap | None = None,
        early: EarlyRequest | None = None,
    ) -> None:
        self.source = source
        self.tap = tap
        self.early = early  # the first attempt's request, already sent
        self.send = send_channel
        self.client = client
        self.config = config
        self.recorder = recorder
        self.decoder = StreamDecoder(
            hint,
            recorder=recorder,
            timer=time.perf_counter,
            fallback_limit=config.fallback_limit_bytes,
        )
        self.reopenable = isinstance(source, (SpeechRequest, str))
        self.shown_url: str | None = None
        self.held: list[Block] = []  # blocks kept until the end (config.streaming=False)
        self.etag: str | None = None
        self.accepts_ranges = False
        self.watch = StallWatch(
            StallPolicy(
                stall_s=config.stall_timeout_s,
                dead_s=max(config.dead_timeout_s, config.stall_timeout_s),
                first_byte_s=config.read_timeout_s,
            )
        )
        self.first_audio = trio.CancelScope()
        self.retry = RetryState(
            RetryPolicy(max_attempts=config.max_attempts, deadline_s=config.retry_deadline_s),
            started_at=0.0,
        )

    async def run(self) -> None:
        limit = self.config.first_audio_timeout_s
        if limit is not None:
            sent = self.recorder.request_time
            self.first_audio.deadline = (trio.current_time() if sent is None else sent) + limit
        with self.first_audio:
            await self._run()
        if self.first_audio.cancelled_caught:
            assert limit is not None
            tries = self.retry.attempts
            raise StreamTimeout(
                f"no audio within {limit:g} s of the request"
                + (f" ({tries} attempts)" if tries > 1 else "")
                + f" from {self.shown_url or 'the source'}; check the server or raise the timeout"
            )

    async def _run(self) -> None:
        config, recorder = self.config, self.recorder
        policy = self.retry.policy
        retry = self.retry = RetryState(policy, started_at=trio.current_time())
        while True:
            progress = self.decoder.frames_emitted
            try:
                await self._attempt()
                break
            except ResumeMismatchError:
                if config.resume_mismatch != "restart":
                    raise
                _log.warning(
                    "the re-requested stream differs from the audio already played; "
                    "restarting the utterance from its beginning"
                )
                self.decoder.reset()
                recorder.restarted = True
                self.held = []
                if self.tap is not None:
                    self.tap.broken()
                continue
            except SourceError as exc:
                if self.decoder.frames_emitted > progress:
                    # This connection delivered new audio before it failed: the bound is
                    # on failures in a row.
                    retry = self.retry = RetryState(policy, started_at=trio.current_time())
                delay = retry.next_delay(exc, trio.current_time()) if self.reopenable else None
                if delay is None:
                    exc.args = (give_up_message(exc, retry),)
                    raise
                if self.tap is not None:
                    self.tap.broken()
                if self.decoder.frames_emitted and config.streaming:
                    recorder.reconnects += 1
                else:
                    recorder.retries += 1
                    self.decoder.reset()
                    self.held = []
                await trio.sleep(delay)
        await self._send(self.decoder.finish())
        for block in self.held:
            await self.send.send(block)

    async def _attempt(self) -> None:
        resume_from = self.decoder.resume_offset if self.accepts_ranges else 0
        early, self.early = self.early, None
        async with open_byte_stream(
            self.source,
            client=self.client,
            config=self.config,
            resume_from=resume_from,
            etag=self.etag,
            early=early,
        ) as stream:
            self.shown_url = stream.url or self.shown_url
            continues = bool(resume_from) and stream.range_start == resume_from
            if continues:
                self.recorder.resumed_bytes += resume_from  # same decoder, next byte
            self.decoder.begin_response(stream.content_type, continues=continues)
            self.etag = stream.etag or self.etag
            self.accepts_ranges = stream.accepts_ranges and isinstance(self.source, str)
            await self._read(stream, resume_from if continues else 0)

    async def _read(self, stream: ByteStream, offset: int) -> None:
        """Read ``stream`` (whose first byte is body offset ``offset``) to its end."""
        watch, recorder = self.watch, self.recorder
        got_body = False
        async with aclosing(stream.chunks) as chunks:
            iterator = aiter(chunks)
            while True:
                patience = watch.patience(offset, got_body=got_body)
                began = trio.current_time()
                with trio.move_on_after(patience) as scope:
                    chunk = await anext(iterator, None)
                if scope.cancelled_caught:
                    watch.on_dead(offset)
                    recorder.stalls = watch.stalls
                    raise StreamTimeout(self._dead_message(stream, patience, got_body, offset))
                if chunk is None:
                    return
                paused = trio.current_time() - began
                if watch.on_pause_ended(paused, got_body=got_body):
                    _log.info(
                        "the stream paused for %.1f s after %d bytes; the connection was kept",
                        paused,
                        offset,
                    )
                recorder.stalls = watch.stalls
                recorder.longest_pause_s = watch.longest_pause_s
                got_body = True
                offset += len(chunk)
                recorder.on_bytes(len(chunk), trio.current_time())
                if self.tap is not None:
                    self.tap.data(chunk)
                await self._send(self.decoder.feed(chunk))

    def _dead_message(
        self, stream: ByteStream, patience: float, got_body: bool, offset: int
    ) -> str:
        where = stream.url or "the source"
        if not got_body:
            return f"{where} sent its response headers and then no body byte for {patience:g} s"
        what = "audio" if self.decoder.frames_emitted else "body"
        return (
            f"the stream from {where} stalled: no byte for {patience:g} s after "
            f"{offset} bytes of {what}"
        )

    async def _send(self, events: list[Event]) -> None:
        for event in events:
            if not isinstance(event, AudioFormat):
                self.first_audio.deadline = math.inf  # the first audio is here
            if isinstance(event, AudioFormat) or self.config.streaming:
                # The read before was a checkpoint: send without another when there is
                # room (one task switch less per block, which counts at 100 streams).
                try:
                    self.send.send_nowait(event)
                except trio.WouldBlock:
                    await self.send.send(event)
            else:
                self.held.append(event)


async def run_download(
    source: Source,
    send_channel: trio.MemorySendChannel[AudioFormat | Block],
    *,
    client: httpx.AsyncClient,
    config: StreamConfig,
    recorder: MetricsRecorder,
    hint: FormatHint,
    tap: BodyTap | None = None,
    early: EarlyRequest | None = None,
) -> None:
    """Download ``source``, decode it and send the format, then blocks, to the channel.

    In streaming mode blocks are sent as they are decoded; otherwise they are held until
    the body is complete (``config.streaming=False``). Network trouble is retried and
    resumed (see the module docstring). Closes ``send_channel`` at the end; fills in
    ``recorder``. ``tap``, if given, sees every body chunk as it is read. ``early``: the
    source's request, already sent (:class:`~._http.EarlyRequest`): the first attempt
    reads its response, and the request's time is when it was sent.

    Raises:
        SourceError: The source failed for good (after what was received was sent on).
        ResumeMismatchError: A re-requested stream differed from what was played.
        DecodeError: The bytes could not be decoded, incrementally or whole.
    """
    async with send_channel:
        sent = early.sent_at if early is not None else None
        recorder.on_request(trio.current_time() if sent is None else sent)
        await _Download(
            source,
            send_channel,
            client=client,
            config=config,
            recorder=recorder,
            hint=hint,
            tap=tap,
            early=early,
        ).run()
