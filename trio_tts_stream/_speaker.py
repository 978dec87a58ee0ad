"""The speaker: a queue of utterances played gaplessly on one open output.

Theory of operation
-------------------
:func:`open_speaker` owns a nursery, one HTTP client and one output. ``say`` appends an
:class:`Utterance` to the queue and returns at once; a text longer than ``max_chars``
becomes several *parts* (one request each, cut at sentence ends by
:func:`~._segment.split_text`) that play as one utterance.

The **conveyor** task turns queued parts into :class:`~._player.Playback` objects, in
order, each with its own download task started at once (prefetch), but at most
``lookahead + 1`` parts at a time that have not yet written all their audio: one playing
and ``lookahead`` downloading and decoding into their own bounded channels. A part
*plays* (writes into the output's ring) once the part before it has written its last
frame (its ``all_written`` event): the ring then holds the tail of part k followed,
frame for frame, by the start of part k+1, so nothing is inserted between them. Part k
meanwhile waits for its own last frame to be heard. ``pause_ms`` inserts exactly that
many frames of silence before an utterance that follows another still playing.

**Barge-in** (:meth:`Speaker.interrupt`, or cancelling the scope around the speaker)
empties the queue, asks the output for a fade-out of ``fade_ms`` (applied by the audio
consumer from a precomputed ramp, see :mod:`._ringbuffer`), cancels every part (their
downloads and HTTP responses close on the way out), and waits for the output to be
silent; what was heard is then in each interrupted utterance's report. The next audio
after a fade-out fades in.

**Failures** stay with their utterance: a part that raises (HTTP 400, a decode error)
fails its utterance (its other parts are cancelled) and :meth:`Utterance.wait` raises the
error; the conveyor goes on with the next one.

**Text streaming** (:meth:`Speaker.say_stream`): LLM fragments go through the text
filter's streaming stage, then the :class:`~._segment.Segmenter`; each unit is cleaned
(inline markdown, emoji) and said the moment the segmenter releases it.

Memory ceiling: the output ring (``max_buffer_s`` of audio) plus, for each of the
``lookahead + 1`` active parts, ``queue_blocks`` decoded blocks in its channel and the
kernel's socket buffer; queued utterances beyond that are only their text. With the
defaults (2 s ring, lookahead 2, 64 blocks of at most 100 ms of 24 kHz mono float32)
that is at most 2 s + 3 x 6.4 s of audio: about 2.5 MB.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import ssl
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import trio

from ._adaptive import FormatChoice
from ._cache import CacheStatistics, Flight, PhraseCache, cache_key
from ._config import StreamConfig
from ._decoders import available_formats
from ._exceptions import (
    AudioDeviceError,
    BadRequestError,
    ConfigError,
    TTSStreamError,
    UnsupportedFormatError,
    unwrap_single_exception,
)
from ._format import AudioFormat, FormatHint
from ._http import Source, SpeechRequest, default_endpoint
from ._jitter import ArrivalJitter
from ._metrics import PlaybackReport, combine_series
from ._outage import DeviceOutage, Reopening
from ._player import Playback, _own_resources, default_playout
from ._segment import Segmenter, split_text
from ._sinkbase import AudioSink, BufferedSink
from ._textfilter import MarkdownFilter, TextFilter
from ._vocabulary import Outcome

__all__ = [
    "Interruption",
    "Speaker",
    "SpeakerClosedError",
    "SpeakerStatistics",
    "Utterance",
    "UtteranceState",
    "open_speaker",
]

#: Characters per second assumed for the part of an utterance not yet decoded when it
#: is interrupted (used only to estimate how much of its text was heard).
_CHARS_PER_S = 15.0
#: Outages a speaker remembers (:attr:`Speaker.outages`); older ones are only counted.
_MAX_OUTAGES = 32


class SpeakerClosedError(TTSStreamError):
    """``say`` on a speaker whose ``async with`` block has ended."""


class UtteranceState(str, enum.Enum):
    """Where an :class:`Utterance` is."""

    QUEUED = "queued"  #: waiting, or downloading ahead (prefetch)
    PLAYING = "playing"  #: its audio is going to the output
    COMPLETED = "completed"  #: heard to the end
    CANCELLED = "cancelled"  #: dropped (cancel, interrupt); see its report
    FAILED = "failed"  #: its request or decoding failed; wait() raises
    SKIPPED = "skipped"  #: empty text: no request was made

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class SpeakerStatistics:
    """A speaker's figures so far (:meth:`Speaker.statistics`).

    Attributes:
        queued: Utterances waiting or downloading ahead.
        said: Utterances accepted by ``say`` with text to speak.
        completed: Utterances heard to the end.
        failed: Utterances whose request or decoding failed.
        cancelled: Utterances dropped by cancel or interrupt.
        say_to_first_audio_ms: From ``say`` to the first sample heard, for the latest
            utterance said while the speaker was idle (a queued one waits its turn).
        say_to_first_audio_ms_max: The largest of those.
        gaps: Unintended silences of more than 1 ms between consecutive parts that were
            queued in time (the second was said before the first had been heard).
        gap_ms_total: Their total length (``pause_ms`` excluded).
        gap_ms_max: The longest.
        interrupts: Barge-ins.
        interrupt_to_silence_ms: From the latest ``interrupt()`` to the end of the last
            frame heard (the fade included), on the output's clock.
        cache: The phrase cache's counters, if there is a cache.
        outages: Times the output failed (:attr:`Speaker.outages` has each).
        outage_s: Their total length, of those that ended.
    """

    queued: int
    said: int
    completed: int
    failed: int
    cancelled: int
    say_to_first_audio_ms: float | None
    say_to_first_audio_ms_max: float | None
    gaps: int
    gap_ms_total: float
    gap_ms_max: float
    interrupts: int
    interrupt_to_silence_ms: float | None
    cache: CacheStatistics | None
    outages: int = 0
    outage_s: float = 0.0


@dataclass(frozen=True)
class Interruption:
    """What :meth:`Speaker.interrupt` stopped.

    Attributes:
        utterance: The utterance that was being heard, if any.
        frames: Frames of it heard (the fade included).
        seconds: The same in seconds.
        text_heard: The approximate part of its text heard (see
            :attr:`PlaybackReport.text_heard`).
        dropped: Utterances dropped, the interrupted one included.
        silence_ms: From the call to the output's silence.
    """

    utterance: Utterance | None
    frames: int
    seconds: float
    text_heard: str
    dropped: int
    silence_ms: float | None


@dataclass
class _Outage:
    """The outage going on (see :class:`DeviceOutage`)."""

    started_at: float
    reason: str
    format: AudioFormat | None
    attempts: int = 0
    resumed: set[Utterance] = dataclasses.field(default_factory=set)


class _Part:
    """One request of an utterance."""

    def __init__(self, utterance: Utterance, index: int, request: SpeechRequest) -> None:
        self.utterance = utterance
        self.index = index
        self.request = request
        self.playback: Playback | None = None
        self.auto_format = False  # response_format="auto": the speaker picks per request
        #: The output failed under it: the part ends here and what is left of its text
        #: is a new part after it (or it is requeued whole if nothing was heard).
        self.held = False
        self.heard_text: str | None = None  # of a held part: what was heard before


class Utterance:
    """One ``say``: its text, state and, once done, its report. Made by the speaker."""

    def __init__(self, text: str, requests: list[SpeechRequest], said_at: float) -> None:
        self.text = text
        self._parts = [_Part(self, i, r) for i, r in enumerate(requests)]
        self._said_at = said_at
        self._state = UtteranceState.QUEUED if requests else UtteranceState.SKIPPED
        self._done = trio.Event()
        self._error: TTSStreamError | None = None
        self._report: PlaybackReport | None = None
        self._cancel_requested = False
        self._on_done: Callable[[Utterance], None] | None = None
        self._idle_at_say = False  # nothing else was queued or playing when it was said
        if not requests:
            self._report = dataclasses.replace(_empty_report(Outcome.CANCELLED), text_heard="")
            self._done.set()

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        return f"<Utterance {text!r} {self._state.value}>"

    @property
    def state(self) -> UtteranceState:
        """Where it is."""
        return self._state

    @property
    def parts(self) -> int:
        """Requests it is made of (more than one for text above ``max_chars``)."""
        return len(self._parts)

    @property
    def report(self) -> PlaybackReport:
        """The report (see :meth:`wait`).

        Raises:
            RuntimeError: It has not finished.
        """
        if self._report is None:
            raise RuntimeError("the utterance has not finished; await wait() first")
        return self._report

    @property
    def done(self) -> bool:
        """It has finished (any outcome)."""
        return self._done.is_set()

    async def wait(self) -> PlaybackReport:
        """Wait until it has finished; return its report.

        A cancelled or interrupted utterance returns its report (outcome
        ``cancelled``, with what was heard).

        Raises:
            TTSStreamError: Its request or decoding failed (``exc.report`` holds the
                report).
        """
        await self._done.wait()
        if self._error is not None:
            raise self._error
        return self.report

    def cancel(self) -> None:
        """Drop it, queued or playing (a playing one fades out). Others go on; note
        that audio of the *next* utterance already in the output is dropped with it."""
        if self._done.is_set():
            return
        self._cancel_requested = True
        started = False
        for part in self._parts:
            if part.playback is not None and not part.playback._done.is_set():
                part.playback.cancel()
                started = True
        if not started:
            self._finish()

    # -- speaker side ------------------------------------------------------------

    def _mark_playing(self) -> None:
        if self._state is UtteranceState.QUEUED:
            self._state = UtteranceState.PLAYING

    def _hold_part(self, part: _Part, remainder: str | None) -> _Part | None:
        """The output failed under ``part``: keep what was heard of it and return a new
        part for the rest of its text (``remainder``; ``None``: all of it, nothing was
        heard, the part is replaced), or ``None`` if nothing is left to say."""
        index = self._parts.index(part)
        if remainder is None:
            new = _Part(self, part.index, part.request)
            self._parts[index] = new
        elif remainder.strip():
            part.held = True
            new = _Part(self, part.index, dataclasses.replace(part.request, input=remainder))
            self._parts.insert(index + 1, new)
        else:
            part.held = True
            return None
        new.auto_format = part.auto_format
        return new

    def _fail(self, error: TTSStreamError) -> None:
        """Fail it now (held over an outage that did not end)."""
        if self._done.is_set():
            return
        self._error = error
        self._cancel_requested = True
        self._finish()

    def _part_ended(self, part: _Part, error: TTSStreamError | None) -> None:
        if error is not None and self._error is None and not self._cancel_requested:
            self._error = error
            for other in self._parts:  # the rest of a failed utterance goes too
                if other is not part and other.playback is not None:
                    other.playback.cancel()
            self._cancel_requested = True
        if all(p.playback is not None and p.playback._done.is_set() for p in self._parts) or (
            self._cancel_requested
            and all(p.playback is None or p.playback._done.is_set() for p in self._parts)
        ):
            self._finish()

    def _finish(self) -> None:
        if self._done.is_set():
            return
        reports = [
            dataclasses.replace(p.playback.report, outcome=Outcome.COMPLETED, error=None)
            if p.held
            else p.playback.report
            for p in self._parts
            if p.playback is not None
        ]
        report = _combine(reports) if reports else _empty_report(Outcome.CANCELLED)
        if self._cancel_requested and any(p.held for p in self._parts):
            report = dataclasses.replace(report, outcome=Outcome.CANCELLED)  # not resumed
        if self._error is not None:
            report = dataclasses.replace(report, outcome=Outcome.FAILED, error=str(self._error))
        report = dataclasses.replace(report, text_heard=self._text_heard())
        self._report = report
        if self._error is not None:
            self._error.report = report
            self._state = UtteranceState.FAILED
        elif report.outcome is Outcome.COMPLETED and not self._cancel_requested:
            self._state = UtteranceState.COMPLETED
        else:
            self._state = UtteranceState.CANCELLED
        self._done.set()
        if self._on_done is not None:
            self._on_done(self)

    def _refresh(self) -> None:
        """After a fade-out: recount what was heard."""
        for part in self._parts:
            if part.playback is not None and part.playback._report is not None:
                part.playback._refresh_report()
        if self._report is not None:
            reports = [p.playback.report for p in self._parts if p.playback is not None]
            if reports:
                self._report = dataclasses.replace(
                    _combine(reports),
                    outcome=self._report.outcome,
                    error=self._report.error,
                    text_heard=self._text_heard(),
                )

    def _heard(self) -> tuple[int, float]:
        frames, seconds = 0, 0.0
        for part in self._parts:
            pb = part.playback
            if pb is None:
                continue
            totals = pb._totals()
            frames += totals.frames_played
            rate = pb._out_fmt.sample_rate if pb._out_fmt else 24000
            seconds += totals.frames_played / rate
        return frames, seconds

    def _text_heard(self) -> str:
        """Time alignment: each part's share of its text heard is its share of audio
        heard (see :func:`_part_heard`)."""
        heard: list[str] = []
        for part in self._parts:
            if part.held:  # the output failed under it; the rest is the next part
                heard.append(part.heard_text or "")
                continue
            got = _part_heard(part)
            if got is None:
                break
            heard.append(got[0])
            if not got[1]:
                break
        return " ".join(h for h in heard if h)


def _part_heard(part: _Part) -> tuple[str, bool] | None:
    """What was heard of a part's text, cut back to a word boundary, and whether it was
    heard to its end; ``None`` if none of it was. The part's share of text heard is its
    share of audio heard; the not-yet-decoded rest is estimated at 15 characters/s."""
    pb = part.playback
    text = part.request.input
    if pb is None or pb._out_fmt is None:
        return None
    played = pb._totals().frames_played
    rate = pb._out_fmt.sample_rate
    total = pb.decoded_frames + pb.stretched_frames  # what the output carries
    if not pb.download_complete:  # the rest is not decoded: estimate it
        total = max(total, round(len(text) / _CHARS_PER_S * rate))
    if total <= 0 or played <= 0:
        return None
    if played >= total:
        return text, True
    cut = round(len(text) * played / total)
    space = text.rfind(" ", 0, cut + 1)
    return text[: space if space > 0 else cut].rstrip(), False


def _empty_report(outcome: Outcome) -> PlaybackReport:
    return PlaybackReport(
        outcome=outcome,
        error=None,
        mode="stream",
        format=None,
        sample_rate=None,
        channels=None,
        buffer_ms=0.0,
        ttfb_ms=None,
        ttfa_ms=None,
        underruns=0,
        underrun_ms=0.0,
        buffer_ms_avg=None,
        buffer_ms_min=None,
        bytes_received=0,
        throughput_kbps=None,
        decode_ms_mean=None,
        decode_ms_p95=None,
        reconnects=0,
        frames_played=0,
        audio_s=0.0,
    )


def _combine(reports: list[PlaybackReport], *, utterances: bool = False) -> PlaybackReport:
    """One report for the parts of an utterance (or, with ``utterances``, for a run's
    utterances, each an :class:`~._metrics.UtteranceSpan`): the first part's timings
    (TTFB, TTFA, format), sums of the counters, the worst outcome, and the timelines and
    time series on the first request's time axis."""
    first = reports[0]
    if len(reports) == 1:
        return first
    outcome = Outcome.COMPLETED
    for r in reports:
        if r.outcome is Outcome.FAILED:
            outcome = Outcome.FAILED
        elif r.outcome is Outcome.CANCELLED and outcome is Outcome.COMPLETED:
            outcome = Outcome.CANCELLED
    mins = [r.buffer_ms_min for r in reports if r.buffer_ms_min is not None]
    return dataclasses.replace(
        first,
        outcome=outcome,
        error=next((r.error for r in reports if r.error), None),
        underruns=sum(r.underruns for r in reports),
        underrun_ms=sum(r.underrun_ms for r in reports),
        buffer_ms_min=min(mins) if mins else None,
        bytes_received=sum(r.bytes_received for r in reports),
        reconnects=sum(r.reconnects for r in reports),
        retries=sum(r.retries for r in reports),
        stalls=sum(r.stalls for r in reports),
        frames_played=sum(r.frames_played for r in reports),
        audio_s=sum(r.audio_s for r in reports),
        decode_errors=sum(r.decode_errors for r in reports),
        truncated=next((r.truncated for r in reports if r.truncated), None),
        longest_pause_ms=max(r.longest_pause_ms for r in reports),
        **combine_series(reports, utterances=utterances),
    )


class Speaker:
    """Speaks utterance after utterance on one output. Made by :func:`open_speaker`;
    see that function for the arguments."""

    def __init__(
        self,
        *,
        sink: AudioSink,
        client: httpx.AsyncClient,
        config: StreamConfig,
        tts: dict[str, object],
        lookahead: int,
        pause_ms: float,
        fade_ms: float,
        max_chars: int,
        cache: PhraseCache | None,
        text_filter: Callable[[], TextFilter] | None,
        device_retry_s: float = 30.0,
    ) -> None:
        self.sink = sink
        self.config = config
        #: The link's arrival jitter, learnt over all utterances (adaptive playout).
        self.jitter = ArrivalJitter()
        #: The format choice of ``response_format="auto"``.
        self.formats = FormatChoice(tuple(f for f in ("opus", "mp3") if f in available_formats()))
        self._client = client
        self._tts = tts
        self.lookahead = lookahead
        self.pause_ms = pause_ms
        self.fade_ms = fade_ms
        self.max_chars = max_chars
        self.cache = cache
        self._text_filter = text_filter
        self._queue: deque[_Part] = deque()
        self.device_retry_s = device_retry_s
        self._inflight: list[_Part] = []  # started by the conveyor, not ended, in order
        self._held: list[_Part] = []  # to play first once the output is back, in order
        self._outage: _Outage | None = None  # the outage going on
        self._held_now: set[_Part] = set()  # in flight when it began: held when they end
        self._outages: deque[DeviceOutage] = deque(maxlen=_MAX_OUTAGES)
        self._streams: set[trio.CancelScope] = set()  # running say_stream calls
        self._queue_changed = trio.Event()
        self._active: list[Utterance] = []  # said, not finished
        self._idle = trio.Event()
        self._idle.set()
        self._closed = False
        self._closing = False
        self._nursery: trio.Nursery | None = None
        self._prev_end: tuple[Playback, float] | None = None  # last part heard to its end
        self._last_part: Playback | None = None
        # statistics
        self._said = self._completed = self._failed = self._cancelled = 0
        self._s2fa: float | None = None
        self._s2fa_max: float | None = None
        self._gaps = 0
        self._gap_total = 0.0
        self._gap_max = 0.0
        self._interrupts = 0
        self._i2s: float | None = None
        self._outage_count = 0
        self._outage_s = 0.0

    def __repr__(self) -> str:  # never the key
        return (
            f"<Speaker queued={len(self._active)} said={self._said} "
            f"lookahead={self.lookahead}{' closed' if self._closed else ''}>"
        )

    # -- public ----------------------------------------------------------------------

    def say(
        self,
        text: str,
        *,
        model: str | None = None,
        voice: str | None = None,
        response_format: str | None = None,
        speed: float | None = None,
        instructions: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        stream_format: str | None = None,
    ) -> Utterance:
        """Queue ``text`` and return at once; the arguments override the speaker's TTS
        defaults for this utterance. Empty or white-space text makes no request (the
        utterance is ``skipped``).

        Raises:
            SpeakerClosedError: The speaker's block has ended.
        """
        if self._closed or self._closing:
            raise SpeakerClosedError(
                "this speaker is closed: say() works only inside its `async with "
                "open_speaker(...)` block"
            )
        overrides = {
            "model": model,
            "voice": voice,
            "response_format": response_format,
            "speed": speed,
            "instructions": instructions,
            "base_url": base_url,
            "api_key": api_key,
            "stream_format": stream_format,
        }
        fields = dict(self._tts)
        fields.update({k: v for k, v in overrides.items() if v is not None})
        auto = fields["response_format"] == "auto"
        if auto:
            fields["response_format"] = "pcm"  # chosen per request by the conveyor
        pieces = split_text(text, self.max_chars) if text.strip() else []
        requests = [SpeechRequest(piece, **fields) for piece in pieces]  # type: ignore[arg-type]
        utt = Utterance(text, requests, trio.current_time())
        for part in utt._parts:
            part.auto_format = auto
        if not requests:
            return utt
        utt._idle_at_say = not self._active
        self._said += 1
        utt._on_done = self._utterance_done
        self._active.append(utt)
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        self._queue.extend(utt._parts)
        self._wake_conveyor()
        return utt

    async def say_stream(
        self,
        chunks: AsyncIterable[str],
        *,
        first_chars: int = 40,
        max_unit_chars: int = 300,
        idle_release_s: float = 0.3,
        **tts: str | float | None,
    ) -> list[Utterance]:
        """Speak text as it arrives (an LLM's tokens): each speakable unit is said the
        moment it is complete. Returns the utterances, in order, once ``chunks`` ends
        (they may still be playing: ``await speaker.wait_idle()``), or at once when
        :meth:`interrupt` stops it (the rest of ``chunks`` is not read).

        Args:
            chunks: Text fragments in any chunking.
            first_chars: The first unit may end at a comma once it is this long.
            max_unit_chars: Longest unit (a run without punctuation is cut).
            idle_release_s: A sentence end is confirmed by the next word (a lower-case
                one means it was not an end); when none comes for this long, the
                sentence is said anyway.
            **tts: Overrides as for :meth:`say`.
        """
        filt = self._text_filter() if self._text_filter is not None else None
        seg = Segmenter(max_chars=min(max_unit_chars, self.max_chars), first_chars=first_chars)
        said: list[Utterance] = []

        def speak(units: list[str]) -> None:
            for unit in units:
                text = filt.clean(unit) if filt is not None else unit
                if text.strip():
                    said.append(self.say(text, **tts))  # type: ignore[arg-type]

        # The fragments are read by a task of their own, so that waiting for the next one
        # can time out without cancelling the caller's iterator.
        send, receive = trio.open_memory_channel[str](16)

        async def pump() -> None:
            async with send:
                async for chunk in chunks:
                    await send.send(chunk)

        with trio.CancelScope() as stream_scope:  # interrupt() cancels it
            self._streams.add(stream_scope)
            try:
                await self._consume_stream(pump, receive, seg, speak, idle_release_s, filt)
            finally:
                self._streams.discard(stream_scope)
        return said

    async def _consume_stream(
        self,
        pump: Callable[[], Awaitable[None]],
        receive: trio.MemoryReceiveChannel[str],
        seg: Segmenter,
        speak: Callable[[list[str]], None],
        idle_release_s: float,
        filt: TextFilter | None,
    ) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump)
            async with receive:
                while True:
                    wait = idle_release_s if seg.pending_end() else math.inf
                    with trio.move_on_after(wait) as scope:
                        try:
                            chunk = await receive.receive()
                        except trio.EndOfChannel:
                            break
                    if scope.cancelled_caught:
                        speak(seg.release())  # a sentence end, then a pause: say it
                        continue
                    speak(seg.feed(filt.feed(chunk) if filt is not None else chunk))
        speak(seg.feed(filt.flush()) if filt is not None else [])
        speak(seg.flush())

    async def wait_idle(self) -> None:
        """Wait until everything queued has been heard (or has failed or been dropped)."""
        await self._idle.wait()

    def pause(self) -> None:
        """Fade out and hold the output; nothing is dropped, downloads go on until their
        buffers are full. :meth:`resume` fades back in.

        Raises:
            ConfigError: The sink cannot hold (it is not a :class:`BufferedSink`).
        """
        self._buffered_sink("pause").hold(self.fade_ms)

    def resume(self) -> None:
        """Undo :meth:`pause`."""
        self._buffered_sink("resume").release()

    @property
    def paused(self) -> bool:
        """:meth:`pause` is in force."""
        return isinstance(self.sink, BufferedSink) and self.sink.held

    async def interrupt(self) -> Interruption:
        """Barge-in: fade out within one block + ``fade_ms``, drop everything buffered
        and queued, cancel every download; return what was heard of the utterance that
        was playing. A pause is lifted (the next ``say`` is heard)."""
        t0 = trio.current_time()
        self._interrupts += 1
        dropped = [u for u in self._active if not u.done]
        current = next(
            (u for u in dropped if any(p.playback and p.playback._out_fmt for p in u._parts)),
            None,
        )
        for scope in self._streams:  # a say_stream in progress stops too
            scope.cancel()
        self._queue.clear()
        self._held.clear()
        self.sink.abort(self.fade_ms)
        for utt in dropped:
            utt.cancel()
        silent_at: float | None = None
        if isinstance(self.sink, BufferedSink):
            with trio.move_on_after(1.0):
                silent_at = await self.sink.wait_silent()
            if self.sink.held:
                self.sink.release()
        for utt in dropped:
            with trio.move_on_after(1.0):
                await utt._done.wait()
            utt._refresh()
        self._i2s = None if silent_at is None else max(0.0, (silent_at - t0) * 1000)
        self._last_part = None
        frames, seconds = current._heard() if current is not None else (0, 0.0)
        return Interruption(
            utterance=current,
            frames=frames,
            seconds=seconds,
            text_heard=(current.report.text_heard or "") if current and current.done else "",
            dropped=len(dropped),
            silence_ms=self._i2s,
        )

    def statistics(self) -> SpeakerStatistics:
        """The speaker's figures so far."""
        return SpeakerStatistics(
            queued=sum(1 for u in self._active if u.state is UtteranceState.QUEUED),
            said=self._said,
            completed=self._completed,
            failed=self._failed,
            cancelled=self._cancelled,
            say_to_first_audio_ms=self._s2fa,
            say_to_first_audio_ms_max=self._s2fa_max,
            gaps=self._gaps,
            gap_ms_total=self._gap_total,
            gap_ms_max=self._gap_max,
            interrupts=self._interrupts,
            interrupt_to_silence_ms=self._i2s,
            cache=self.cache.statistics() if self.cache is not None else None,
            outages=self._outage_count,
            outage_s=self._outage_s,
        )

    @property
    def outages(self) -> list[DeviceOutage]:
        """The output's outages (the latest 32), oldest first, the one going on last."""
        ongoing = [self._outage_record()] if self._outage is not None else []
        return [*self._outages, *ongoing]

    # -- internals ----------------------------------------------------------------------

    def _buffered_sink(self, what: str) -> BufferedSink:
        if not isinstance(self.sink, BufferedSink):
            raise ConfigError(f"cannot {what}: {type(self.sink).__name__} is not a BufferedSink")
        return self.sink

    def _wake_conveyor(self) -> None:
        self._queue_changed.set()
        self._queue_changed = trio.Event()

    def _utterance_done(self, utt: Utterance) -> None:
        if utt.state is UtteranceState.COMPLETED:
            self._completed += 1
        elif utt.state is UtteranceState.FAILED:
            self._failed += 1
        else:
            self._cancelled += 1
        if utt in self._active:
            self._active.remove(utt)
        if not self._active:
            self._idle.set()

    async def _conveyor(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        assert self._nursery is not None
        slots = trio.Semaphore(self.lookahead + 1)
        task_status.started()
        while True:
            if self._outage is not None:
                await self._restore_output()
                continue
            queue = self._held or self._queue
            if not queue:
                await self._queue_changed.wait()
                continue
            part = queue[0]
            if part.utterance._cancel_requested or part.utterance.done:
                queue.pop(0) if isinstance(queue, list) else queue.popleft()
                continue
            await slots.acquire()
            queue = self._held or self._queue
            if self._outage is not None or not queue or queue[0] is not part:
                slots.release()  # dropped, or the output failed, meanwhile
                continue
            queue.pop(0) if isinstance(queue, list) else queue.popleft()
            if part.utterance._cancel_requested:
                slots.release()
                continue
            choice = None
            if part.auto_format:
                fmt, choice = self.formats.choose()
                part.request = dataclasses.replace(part.request, response_format=fmt)
            source, tap, key = await self._source_for(part.request)
            if part.utterance._cancel_requested or part.utterance.done:
                if tap is not None and self.cache is not None:
                    await self.cache.complete(key, tap, False)
                slots.release()
                continue
            pause_s = self.pause_ms / 1000 if part.index == 0 else 0.0
            req = part.request
            hint = FormatHint(
                req.response_format, req.sample_rate, req.channels, req.stream_format == "sse"
            )
            config = default_playout(self.config, self.sink, req.response_format)
            playback = Playback(
                source,
                sink=self.sink,
                config=config,
                client=self._client,
                hint=hint,
                fade_ms=self.fade_ms,
                lead_silence_s=pause_s,
                tap=tap,
                jitter=self.jitter,
                format_choice=choice,
            )
            part.playback = playback
            turn = self._last_part.all_written if self._last_part is not None else None
            self._last_part = playback
            self._inflight.append(part)
            self._nursery.start_soon(self._run_part, part, playback, turn, slots, tap, key)

    # -- output outages ------------------------------------------------------------------

    def _output_lost(self, error: AudioDeviceError) -> bool:
        """A part failed with ``error``: was it the output failing (then hold the queue
        and start an outage), and can the speaker wait for it to come back?"""
        sink = self.sink
        if self._outage is None:
            if (
                self.device_retry_s <= 0
                or self._closed
                or not isinstance(sink, BufferedSink)
                or sink.failed is None
            ):
                return False
            self._outage = _Outage(trio.current_time(), str(sink.failed), sink.audio_format)
            self._outage_count += 1
            self._last_part = None
            for other in self._inflight:  # parts downloading ahead start again later
                self._held_now.add(other)
                if other.playback is not None:
                    other.playback.cancel()
            self._wake_conveyor()
        return True

    def _hold(self, part: _Part) -> None:
        """Keep ``part`` for after the outage: the rest of its text if some was heard
        (from the first word not heard whole), else all of it."""
        utt = part.utterance
        if utt._cancel_requested or utt.done:
            return
        got = _part_heard(part)
        if got is None:
            new = utt._hold_part(part, None)
        else:
            heard, whole = got
            part.heard_text = heard
            new = utt._hold_part(part, "" if whole else part.request.input[len(heard) :].lstrip())
        if self._outage is not None:
            self._outage.resumed.add(utt)
        if new is not None:
            self._held.append(new)
            self._held.sort(key=lambda p: (self._order(p.utterance), p.utterance._parts.index(p)))

    def _order(self, utt: Utterance) -> int:
        return self._active.index(utt) if utt in self._active else len(self._active)

    def _outage_record(
        self, ended_at: float | None = None, recovered: bool = False, failed: int = 0
    ) -> DeviceOutage:
        o = self._outage
        assert o is not None
        return DeviceOutage(
            started_at=o.started_at,
            ended_at=ended_at,
            reason=o.reason,
            attempts=o.attempts,
            recovered=recovered,
            resumed=len(o.resumed) if recovered else 0,
            failed=failed,
        )

    async def _restore_output(self) -> None:
        """The conveyor, during an outage: reopen the output on the schedule of
        :class:`Reopening`; on success the held parts go first, on giving up they fail."""
        o = self._outage
        assert o is not None
        sink = self.sink
        assert isinstance(sink, BufferedSink)
        for part in list(self._inflight):  # let the parts still running end (cancelled)
            if part.playback is not None:
                await part.playback._done.wait()  # (they are held as they end)
        schedule = Reopening(o.started_at, self.device_retry_s)
        while True:
            o.attempts += 1
            try:
                await sink.recover()
                if o.format is not None:
                    await sink.open(o.format)
                break
            except AudioDeviceError as exc:
                at = schedule.failed_attempt(trio.current_time())
                if at is None or self._closed:
                    self._give_up(str(exc))
                    return
                await trio.sleep_until(at)
        now = trio.current_time()
        self._outages.append(self._outage_record(now, recovered=True))
        self._outage_s += now - o.started_at
        self._outage = None

    def _give_up(self, last_error: str) -> None:
        o = self._outage
        assert o is not None
        message = (
            f"{o.reason}; it did not come back within {self.device_retry_s:g} s "
            f"(last try: {last_error})"
        )
        failed = {p.utterance for p in self._held} | o.resumed
        self._held.clear()
        self._outages.append(self._outage_record(None, recovered=False, failed=len(failed)))
        self._outage = None
        for utt in failed:
            utt._fail(AudioDeviceError(message))

    async def _source_for(self, request: SpeechRequest) -> tuple[Source, Flight | None, str]:
        if self.cache is None:
            await trio.lowlevel.checkpoint()
            return request, None, ""
        key = cache_key(request)
        found = await self.cache.lookup(key)
        if isinstance(found, bytes):
            return PhraseCache.replay(found), None, key
        if isinstance(found, Flight):
            return found.follow(), None, key
        return request, self.cache.begin(key), key

    async def _run_part(
        self,
        part: _Part,
        playback: Playback,
        turn: trio.Event | None,
        slots: trio.Semaphore,
        tap: Flight | None,
        key: str,
    ) -> None:
        error: TTSStreamError | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_release_when, playback.all_written, slots)
            if tap is not None:
                nursery.start_soon(self._store_when_downloaded, playback, tap, key)
            if turn is not None:
                nursery.start_soon(_mark_playing_when, turn, part.utterance)
            else:
                part.utterance._mark_playing()
            try:
                await playback._run(turn)
            except TTSStreamError as exc:
                error = exc
            finally:
                if part in self._inflight:
                    self._inflight.remove(part)
                self._measure(part, playback)
                if isinstance(error, AudioDeviceError) and self._output_lost(error):
                    error = None
                    self._held_now.discard(part)
                    self._hold(part)
                elif part in self._held_now:
                    self._held_now.discard(part)
                    self._hold(part)
                elif part.auto_format:
                    self._learn_format(part.request.response_format, playback, error)
                part.utterance._part_ended(part, error)

    def _learn_format(self, fmt: str, playback: Playback, error: TTSStreamError | None) -> None:
        """``response_format="auto"``: feed the choice what this request measured."""
        if isinstance(error, (BadRequestError, UnsupportedFormatError)) and fmt != "pcm":
            self.formats.refused(fmt)
            return
        report = playback.report
        if report.outcome is Outcome.CANCELLED or not playback.downloaded.is_set():
            return
        ratio, kbps = report.delivery_ratio, report.throughput_kbps
        if ratio is None and report.bytes_received and report.outcome is Outcome.COMPLETED:
            ratio = kbps = math.inf  # the whole body came at once
        self.formats.update(fmt, ratio, kbps)

    async def _store_when_downloaded(self, playback: Playback, tap: Flight, key: str) -> None:
        assert self.cache is not None
        await playback.downloaded.wait()
        await self.cache.complete(key, tap, playback.download_complete)

    def _measure(self, part: _Part, playback: Playback) -> None:
        report = playback.report
        first = playback.first_heard
        if part.index == 0 and first is not None and part.utterance._idle_at_say:
            ms = (first - part.utterance._said_at) * 1000
            self._s2fa = ms
            self._s2fa_max = ms if self._s2fa_max is None else max(self._s2fa_max, ms)
        prev = self._prev_end
        if prev is not None and first is not None:
            _, prev_end = prev
            queued_in_time = part.utterance._said_at < prev_end
            if queued_in_time:
                rate = playback._out_fmt.sample_rate if playback._out_fmt else 24000
                pause = self.pause_ms / 1000 if part.index == 0 else 0.0
                gap = (first - prev_end - pause) * 1000
                if gap > max(1.0, 1000 / rate):
                    self._gaps += 1
                    self._gap_total += gap
                    self._gap_max = max(self._gap_max, gap)
        if report.outcome is Outcome.COMPLETED and playback.end_heard is not None:
            self._prev_end = (playback, playback.end_heard)
        else:
            self._prev_end = None


async def _release_when(event: trio.Event, slots: trio.Semaphore) -> None:
    try:
        await event.wait()
    finally:
        slots.release()


async def _mark_playing_when(event: trio.Event, utt: Utterance) -> None:
    await event.wait()
    utt._mark_playing()


@asynccontextmanager
async def open_speaker(
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    model: str = "gpt-4o-mini-tts",
    voice: str = "alloy",
    response_format: str = "pcm",
    speed: float | None = None,
    instructions: str | None = None,
    stream_format: str = "audio",
    sink: AudioSink | None = None,
    config: StreamConfig | None = None,
    client: httpx.AsyncClient | None = None,
    verify: ssl.SSLContext | bool = True,
    lookahead: int = 2,
    pause_ms: float = 0.0,
    fade_ms: float = 10.0,
    max_chars: int = 4096,
    cache: bool | PhraseCache | None = None,
    text_filter: Callable[[], TextFilter] | None = MarkdownFilter,
    playout: str | None = None,
    device_retry_s: float = 30.0,
) -> AsyncIterator[Speaker]:
    """A :class:`Speaker` with one output and one HTTP client for all its utterances.

    Leaving the block plays out what is queued; an exception or a cancellation of the
    block is a barge-in (fade, drop, cancel). Either way nothing is left running: no
    task, no output stream (unless you passed the sink), no HTTP connection (unless you
    passed the client).

    Args:
        base_url: API base; default ``OPENAI_BASE_URL``, then OpenAI's.
        api_key: Bearer token; default ``OPENAI_API_KEY``; never shown.
        model: TTS model (overridable per utterance, as are the next five).
        voice: Voice.
        response_format: ``pcm``, ``wav``, ``mp3``, ``aac``, ``flac`` or ``opus``, or
            ``"auto"``: pcm while the link delivers it comfortably faster than real
            time, opus or mp3 when it does not (see :class:`~._adaptive.FormatChoice`;
            the choice and its reason are in each report's ``format_choice``).
        speed: Speaking speed, or ``None`` for the server's default.
        instructions: Voice instructions, or ``None``.
        stream_format: ``"audio"`` or ``"sse"``.
        sink: Output to use (left open); default the default sound device.
        config: Buffering and network settings; default :meth:`StreamConfig.from_env`.
        client: HTTP client to use (left open); default the shared client of this trio
            run (one connection pool for all playbacks, :ref:`serving`).
        verify: TLS verification for the default client.
        lookahead: Utterance parts requested and decoded ahead of the one playing.
        pause_ms: Silence between consecutive utterances (exact to the frame).
        fade_ms: Fade-out on interrupt, cancel and pause, and fade-in after (0: cut).
        max_chars: Longest text per request (OpenAI's limit: 4,096); longer text is
            split at sentence ends into requests played as one utterance.
        cache: ``True`` for an in-memory :class:`PhraseCache` with its default bound,
            or a cache object (byte bound, optional directory); ``None``: no cache.
        text_filter: Factory of the filter :meth:`Speaker.say_stream` applies
            (default :class:`MarkdownFilter`); ``None``: speak text as it comes.
        playout: ``"exact"`` or ``"adaptive"`` (see ``StreamConfig.playout``); default
            (``None``): adaptive for pcm and wav on a sound device, where the listener
            hears first sound 2-4 times sooner with no more gaps on a steady link
            (docs/benchmarks.rst has the numbers), exact for compressed formats and on
            any other output, so files and test sinks receive the exact samples; a
            playout the config names is kept.
        device_retry_s: When the output fails (the sound server died, the headset was
            unplugged), how long to keep trying to reopen it (at once, then backing off
            from 0.1 to 2 s) while holding the queue. When it comes back, the utterance
            that was playing resumes at its first word not heard whole and the queue
            follows; when the time runs out they fail with the output's
            :class:`AudioDeviceError`. ``0``: fail at once. :attr:`Speaker.outages`
            reports each outage. Works with every :class:`BufferedSink` output.

    Raises:
        ConfigError: An argument is out of range.
    """
    if isinstance(lookahead, bool) or not isinstance(lookahead, int) or not 0 <= lookahead <= 16:
        raise ConfigError(f"lookahead={lookahead!r} is invalid: it must be 0..16")
    if not (math.isfinite(pause_ms) and 0 <= pause_ms <= 10000):
        raise ConfigError(f"pause_ms={pause_ms!r} is invalid: it must be 0..10000")
    if not (math.isfinite(fade_ms) and 0 <= fade_ms <= 200):
        raise ConfigError(f"fade_ms={fade_ms!r} is invalid: it must be 0..200")
    if not (math.isfinite(device_retry_s) and 0 <= device_retry_s <= 86400):
        raise ConfigError(f"device_retry_s={device_retry_s!r} is invalid: it must be 0..86400")
    if not isinstance(max_chars, int) or max_chars < 16:
        raise ConfigError(f"max_chars={max_chars!r} is invalid: it must be at least 16")
    config = config if config is not None else StreamConfig.from_env()
    if playout is not None:
        config = config.replace(playout=playout)
    base_url, api_key = default_endpoint(base_url, api_key)
    tts: dict[str, object] = {
        "model": model,
        "voice": voice,
        "response_format": response_format,
        "speed": speed,
        "instructions": instructions,
        "base_url": base_url,
        "api_key": api_key,
        "stream_format": stream_format,
    }
    check = dict(tts, response_format="pcm") if response_format == "auto" else tts
    SpeechRequest("check", **check)  # type: ignore[arg-type]  # invalid defaults fail here
    phrase_cache = PhraseCache() if cache is True else (cache or None)
    async with _own_resources(sink, client, config, verify) as (sink, client):
        speaker = Speaker(
            sink=sink,
            client=client,
            config=config,
            tts=tts,
            lookahead=lookahead,
            pause_ms=pause_ms,
            fade_ms=fade_ms,
            max_chars=max_chars,
            cache=phrase_cache,
            text_filter=text_filter,
            device_retry_s=device_retry_s,
        )
        with unwrap_single_exception():
            async with trio.open_nursery() as nursery:
                speaker._nursery = nursery
                await nursery.start(speaker._conveyor)
                try:
                    yield speaker
                    speaker._closing = True
                    await speaker.wait_idle()
                except BaseException:
                    speaker._closing = True
                    with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                        await speaker.interrupt()
                    raise
                finally:
                    speaker._closed = True
                    nursery.cancel_scope.cancel()
