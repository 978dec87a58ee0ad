"""The stream decoder: response bytes in, one :class:`AudioFormat` then blocks out.

Pure and synchronous, in the shape of h11: no trio, no httpx, no clock (a timer is
passed in). The download loop (:mod:`._download`) owns the I/O and hands every body
chunk to :meth:`StreamDecoder.feed`, which returns the events it produced::

    decoder = StreamDecoder(FormatHint("mp3"), timer=time.perf_counter)
    decoder.begin_response(content_type)
    for chunk in body:
        for event in decoder.feed(chunk):   # AudioFormat once, then Blocks
            ...
    events = decoder.finish()

Theory of operation
-------------------
* **Choosing the decoder.** The first bytes are held back until there are enough to
  decide (:data:`~._detect.SNIFF_BYTES`, or a leading ID3/APE tag and as many after it),
  then :func:`~._detect.decide` says what the body is, once: its magic bytes, then its
  ``Content-Type``, then the :class:`~._format.FormatHint`. A body that is not audio
  (HTML, JSON, an event stream) raises :class:`~._exceptions.NotAudioError` before a
  byte of it is decoded; a disagreement resolved by the bytes goes into
  ``recorder.format_note``.
* **The buffered fallback.** Until the first audio is produced, every byte of the
  response from its first one is kept (at most ``fallback_limit`` bytes). If no streaming
  decoder takes the stream (an unknown container, a decoder that refuses its first
  bytes, even at the end of the body) before any audio was produced, the whole body,
  from its first byte, is decoded with PyAV at :meth:`finish` (``recorder.fallback_reason``
  says why), so the result does not depend on how the body was split. A body that
  produces no audio within ``fallback_limit`` bytes is an error, fallback or not:
  memory stays bounded on an endless body of garbage.
* **No silent success.** A response that produced no audio at all (an empty body, or
  bytes nothing could decode) raises :class:`~._exceptions.DecodeError` at
  :meth:`finish`: it is never a completed utterance.
* **Resuming.** Every emitted frame goes into a :class:`~._resume.PrefixDigest`. A new
  response that continues the same bytes (a ``206`` at the next byte) keeps the
  decoder; one that starts again from its first byte is decoded afresh and its first
  frames are skipped once :class:`~._resume.OverlapSkipper` has verified that they are
  the ones already emitted. A mismatch raises
  :class:`~._exceptions.ResumeMismatchError` (the download loop applies the
  ``resume_mismatch`` policy: fail, or :meth:`StreamDecoder.reset` and start again).
* **OpenAI's event stream.** When the request asked for ``stream_format="sse"`` and the
  response is ``text/event-stream``, :class:`~._sse.SseAudioStream` turns its events into
  the audio bytes they carry before anything else sees them; an error event is an error.
* **Stream ends.** A decoder that knows its stream was cut short (an Ogg stream with no
  end-of-stream page, an mp3 or ADTS frame cut in the middle, WAV data shorter than its
  header says) sets ``truncated``; it goes into ``recorder.truncated``. What came is
  played either way.
* **Accounting.** Decode times, frames, corrupted-frame counts, the format chosen and the
  fallback reason go into the :class:`~._metrics.MetricsRecorder` passed in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeAlias

from ._decoders import create_decoder
from ._decoders._base import Decoder
from ._detect import SNIFF_BYTES, BodyFormat, decide, head_needed, parse_content_type
from ._exceptions import DecodeError, ResumeMismatchError, UnsupportedFormatError
from ._format import AudioFormat, Block, FormatHint
from ._metrics import MetricsRecorder
from ._resume import OverlapSkipper, PrefixDigest, Verdict
from ._sse import SseAudioStream

__all__ = [
    "DEFAULT_FALLBACK_LIMIT",
    "SNIFF_BYTES",
    "Event",
    "StreamDecoder",
    "choose_decoder",
]

#: Default bound on the bytes kept for the whole-body fallback, and on the body read
#: before its first audio (as ``StreamConfig.fallback_limit_bytes``).
DEFAULT_FALLBACK_LIMIT = 32 * 1024 * 1024

Event: TypeAlias = "AudioFormat | Block"
"""What :meth:`StreamDecoder.feed` returns: the stream's format (once), then blocks."""

_log = logging.getLogger("trio_tts_stream")


class StreamDecoder:
    """Decode one utterance's response bodies, over as many responses as it takes.

    Args:
        hint: What was asked for (used when the response does not say).
        recorder: Where decode times, frames and counters go; default a new one.
        timer: A monotonic clock in seconds (``time.perf_counter``) to time decoder
            calls with; ``None`` records no times.
        fallback_limit: Most bytes kept for the whole-body fallback, and most bytes of a
            response read without any audio coming out of it.
    """

    def __init__(
        self,
        hint: FormatHint,
        *,
        recorder: MetricsRecorder | None = None,
        timer: Callable[[], float] | None = None,
        fallback_limit: int = DEFAULT_FALLBACK_LIMIT,
    ) -> None:
        self.hint = hint
        self.fallback_limit = fallback_limit
        self.recorder = recorder if recorder is not None else MetricsRecorder()
        self._timer = timer
        # What has been emitted (survives responses; reset() forgets the digest only:
        # the format stays announced).
        self._format: AudioFormat | None = None
        self._digest = PrefixDigest()
        # Per response.
        self._content_type: str | None = None
        self._sse: SseAudioStream | None = None  # the event stream of this response
        self._decoder: Decoder | None = None
        self._skipper: OverlapSkipper | None = None
        self._head = b""
        self._body: bytearray | None = None  # the whole body, once falling back
        # Every byte of this response, until audio comes out (None: no longer kept).
        self._kept: bytearray | None = bytearray()
        #: Body bytes of the current response fed so far.
        self.bytes_fed = 0

    @property
    def frames_emitted(self) -> int:
        """Frames emitted since the start (or the last :meth:`reset`)."""
        return self._digest.frames

    @property
    def resume_offset(self) -> int:
        """Where a byte-range resume of the current response would continue (0: it can
        not; a fresh response is needed)."""
        return self.bytes_fed if self._decoder is not None else 0

    def reset(self) -> None:
        """Forget the current response and everything emitted (a retry before any audio
        was played, or a restart of the utterance)."""
        self._drop_response()
        self._skipper = None
        self._digest = PrefixDigest()

    def begin_response(self, content_type: str | None, *, continues: bool = False) -> None:
        """A new response starts.

        Args:
            content_type: Its ``Content-Type`` header, if any.
            continues: It continues the previous body at byte :attr:`resume_offset` (an
                accepted ``Range`` resume): keep the decoder. Otherwise it starts from
                its first byte: decode it afresh and skip the frames already emitted,
                after verifying them.
        """
        self._content_type = content_type
        if continues:
            return
        self._sse = None
        if self.hint.sse:
            if parse_content_type(content_type)[0] == "text/event-stream":
                self._sse = SseAudioStream()
                self._content_type = None  # the events' audio has no Content-Type
            else:
                self.recorder.format_note = (
                    "asked for an event stream (stream_format='sse'); the server sent "
                    "a plain audio body, played as such"
                )
        self._drop_response()
        if self._digest.frames:
            self._skipper = OverlapSkipper(self._digest.frames, self._digest.crc)

    def feed(self, chunk: bytes) -> list[Event]:
        """Decode the next body chunk.

        Raises:
            UnsupportedFormatError: No decoder can take the stream.
            DecodeError: The bytes are not decodable (and the fallback cannot help).
            ResumeMismatchError: A re-requested stream differs from what was emitted.
        """
        if self._sse is not None:
            chunk = self._sse.feed(chunk)
            if not chunk:
                return []
        self.bytes_fed += len(chunk)
        if self.bytes_fed > self.fallback_limit:
            if self._body is not None:
                raise DecodeError(
                    f"the response is longer than fallback_limit_bytes={self.fallback_limit}, "
                    f"the most that is kept to decode it whole ({self.recorder.fallback_reason})"
                )
            if self._format is None:
                raise DecodeError(self._no_audio(f"in its first {self.fallback_limit} bytes"))
        if self._body is not None:
            self._body += chunk
            return []
        if self._kept is not None:
            self._kept += chunk
            if len(self._kept) > self.fallback_limit:
                self._kept = None  # too late to fall back: only the streaming decoder
        if self._decoder is None:
            self._head += chunk
            if len(self._head) < head_needed(self._head):
                return []
            chunk, self._head = self._head, b""
            self._start(chunk)
            if self._body is not None:
                return []
        return self._emit(self._decode(chunk))

    def finish(self) -> list[Event]:
        """The body ended: flush the decoder (or decode the kept body whole).

        Raises:
            As :meth:`feed`.
        """
        if self._sse is not None:
            sse, self._sse = self._sse, None
            tail = sse.finish()
            events = self.feed(tail) if tail else []
            if not sse.done:
                self.recorder.truncated = (
                    f"the event stream ended without speech.audio.done after {sse.events} "
                    "audio events"
                )
            return events + self.finish()
        if self._body is None and self._decoder is None:
            if not self._head:
                return self._audio_or_error([])
            self._start(self._head)
        if self._body is None:
            head, self._head = self._head, b""
            events = self._emit(self._decode(head, final=True))
            if self._body is None:  # the flush did not switch to the fallback
                return self._audio_or_error(events)
        from ._decoders._pyav import decode_whole

        body, self._body = bytes(self._body), None
        t0 = self._time()
        try:
            name, fmt, blocks = decode_whole(body)
        except DecodeError as exc:
            # Our reason first; FFmpeg's text is only the detail.
            raise DecodeError(
                f"{self.recorder.fallback_reason}; decoding the whole body "
                f"({len(body)} bytes) found no audio either: {exc}"
            ) from exc
        finally:
            self._record_decode(t0)
        self.recorder.format = name
        return self._audio_or_error(self._emit(blocks, fmt))

    def _audio_or_error(self, events: list[Event]) -> list[Event]:
        if self._format is None:
            raise DecodeError(self._no_audio(""))
        return events

    def _no_audio(self, where: str) -> str:
        if not self.bytes_fed:
            return "the server sent an empty body: there is no audio to play"
        reason = f" ({self.recorder.fallback_reason})" if self.recorder.fallback_reason else ""
        return (
            f"the response held no audio {where}".rstrip()
            + f": {self.bytes_fed} bytes, none of them decodable{reason}"
        )

    # -- internals ----------------------------------------------------------------

    def _drop_response(self) -> None:
        self._decoder = None
        self._head = b""
        self._body = None
        self._kept = bytearray()
        self.bytes_fed = 0

    def _time(self) -> float:
        return self._timer() if self._timer is not None else 0.0

    def _record_decode(self, t0: float) -> None:
        if self._timer is not None:
            self.recorder.on_decode(self._timer() - t0)

    def _start(self, first: bytes) -> None:
        decision = decide(first, self._content_type, self.hint)
        if decision.note:
            self.recorder.format_note = decision.note
            _log.info("%s", decision.note)
        try:
            self._decoder = _decoder_for(decision)
        except UnsupportedFormatError as exc:
            if not can_decode_whole() or self._digest.frames:
                raise
            self.recorder.fallback_reason = str(exc)
            self._body = self._take_kept()
            return
        self.recorder.format = self._decoder.name

    def _decode(self, data: bytes, final: bool = False) -> list[Block]:
        decoder = self._decoder
        assert decoder is not None
        t0 = self._time()
        try:
            blocks = decoder.decode(data) if data else []
            if final:
                blocks += decoder.flush()
                self._note_end(decoder)
        except DecodeError as exc:
            if self._format is not None or self._digest.frames or not can_decode_whole():
                raise
            # Nothing emitted yet: decode every byte, from the first, whole at the end.
            self.recorder.fallback_reason = f"{decoder.name} decoder refused the stream: {exc}"
            self._body = self._take_kept()
            return []
        finally:
            self._record_decode(t0)
        self._count_errors(decoder)
        return blocks

    def _note_end(self, decoder: Decoder) -> None:
        """Say in the report how the stream ended, when it was not cleanly."""
        truncated = getattr(decoder, "truncated", None)
        if truncated:
            self.recorder.truncated = str(truncated)
            _log.warning("%s; what came was played", truncated)
        trailer = getattr(decoder, "trailer", None)
        if trailer:
            _log.info("dropped the end of the stream, not audio: %s", trailer)

    def _take_kept(self) -> bytearray:
        kept, self._kept = self._kept, None
        if kept is None:
            raise DecodeError(
                f"{self.recorder.fallback_reason}, and more than fallback_limit_bytes="
                f"{self.fallback_limit} bytes came before it, too many to decode them whole"
            )
        return kept

    def _count_errors(self, decoder: Decoder) -> None:
        errors = int(getattr(decoder, "errors", 0))
        if errors and not self.recorder.decode_errors:
            _log.warning(
                "%s stream has corrupted data: skipping undecodable frames (counted in the "
                "report's decode_errors)",
                decoder.name,
            )
        self.recorder.decode_errors = errors

    def _emit(self, blocks: list[Block], fmt: AudioFormat | None = None) -> list[Event]:
        if not blocks:
            return []
        self._kept = None  # the decoder produces audio: no fallback from here on
        if fmt is None:
            assert self._decoder is not None
            fmt = self._decoder.audio_format
        assert fmt is not None
        if self._skipper is not None:
            blocks = self._skip_overlap(blocks)
            if not blocks:
                return []
        events: list[Event] = []
        if self._format is None:
            self._format = fmt
            events.append(fmt)
        elif fmt != self._format:
            raise UnsupportedFormatError(
                f"the stream changed from {self._format} to {fmt} when it was re-requested"
            )
        for block in blocks:
            self._digest.update(block)
            self.recorder.frames_decoded += len(block)
        events.extend(blocks)
        return events

    def _skip_overlap(self, blocks: list[Block]) -> list[Block]:
        skipper = self._skipper
        assert skipper is not None
        out = []
        for block in blocks:
            before = skipper.seen
            rest = skipper.feed(block)
            self.recorder.skipped_overlap_frames += skipper.seen - before
            if skipper.verdict is Verdict.MISMATCH:
                raise ResumeMismatchError(
                    f"after a reconnect the server sent different audio than before (the "
                    f"first {skipper.frames} frames do not match what was played), so the "
                    "stream cannot be resumed without a glitch; set "
                    "resume_mismatch='restart' to start the utterance again instead"
                )
            if rest is not None:
                out.append(rest)
        if skipper.verdict is Verdict.MATCH:
            self._skipper = None
        return out


def can_decode_whole() -> bool:
    """Whether the buffered fallback (PyAV) is installed."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def choose_decoder(head: bytes, content_type: str | None, hint: FormatHint) -> Decoder:
    """The streaming decoder :func:`~._detect.decide` chooses for a body.

    Raises:
        NotAudioError: The body is not audio, or its format cannot be told.
        UnsupportedFormatError: The chosen format has no streaming decoder here.
    """
    return _decoder_for(decide(head, content_type, hint))


def _decoder_for(decision: BodyFormat) -> Decoder:
    if decision.name is None:
        raise UnsupportedFormatError(str(decision.reason))
    return create_decoder(
        decision.name,
        sample_rate=decision.sample_rate,
        channels=decision.channels,
        big_endian=decision.big_endian,
    )
