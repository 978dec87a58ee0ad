"""What a playback measured: the :class:`PlaybackReport` and the recorder that builds it.

Definitions (all times on trio's clock, relative to the moment the request was sent):

* ``ttfb_ms``: request sent -> first body byte received.
* ``ttfa_ms``: request sent -> first sample *heard*: for :class:`SoundDeviceSink` the
  callback's ``outputBufferDacTime - currentTime`` estimates when the block reaches the
  DAC; for :class:`NullSink` and :class:`WavFileSink`, when the sample is consumed.
* ``underruns`` / ``underrun_ms``: times the output ran dry while playing, and the
  silence that caused. ``buffer_ms_avg`` / ``buffer_ms_min``: audio buffered ahead of the
  device, sampled at every device block while playing.
* ``decode_ms_mean`` / ``decode_ms_p95``: wall time of one decoder call per received chunk.
* ``throughput_kbps``: body kilobits per second from first to last byte.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field
from typing import Any

from ._format import AudioFormat
from ._vocabulary import Cause, Outcome, PlaybackState, Transition

__all__ = [
    "DECODE_SAMPLE",
    "STRETCH_POINTS",
    "MetricsRecorder",
    "OutputTotals",
    "PlaybackReport",
    "StretchEntry",
    "TimelineEntry",
]

#: Decoder call times kept for the p95 (a reservoir sample beyond this many calls).
DECODE_SAMPLE = 4096
#: Most stretch-factor changes a report keeps (the timeline stays bounded).
STRETCH_POINTS = 512


@dataclass(frozen=True)
class TimelineEntry:
    """One state change, relative to the request.

    Attributes:
        t_ms: Milliseconds after the request was sent.
        state: The state entered.
        cause: The event that caused it.
    """

    t_ms: float
    state: PlaybackState
    cause: Cause


@dataclass(frozen=True)
class StretchEntry:
    """The adaptive playout's stretch factor from ``t_ms`` (after the request) on.

    Attributes:
        t_ms: When the factor took this value.
        factor: Output/input duration (1.12: 12 % slower; 1.0: exact).
    """

    t_ms: float
    factor: float


@dataclass(frozen=True)
class PlaybackReport:
    """Everything one playback measured. ``None`` means "did not happen / not known".

    Attributes:
        outcome: ``completed``, ``cancelled`` or ``failed``.
        error: One-line description of the failure, if any.
        mode: ``"stream"`` (play while downloading), ``"buffered"`` (download first, as
            asked) or ``"buffered-fallback"`` (the stream could not be decoded
            incrementally, so it was downloaded and decoded whole).
        fallback_reason: Why ``mode`` is ``"buffered-fallback"``, else ``None``.
        format_note: How the format was decided when the response and the request
            disagreed (for example "asked for pcm, the bytes are a WAV file: played as
            wav"), else ``None``.
        truncated: Why the stream is known to have ended early (an Ogg stream with no
            end-of-stream page, an mp3 cut mid-frame, a WAV shorter than its header
            says), else ``None``: what came was played.
        format: The decoded format name (``"pcm"``, ``"wav"``, ...).
        sample_rate: Decoded sample rate.
        output_sample_rate: Rate of the output (differs when the audio was resampled).
        channels: Decoded channel count.
        buffer_ms: The start threshold this playback used: the config's ``buffer_ms``,
            or what a :class:`Player`'s adaptive policy set it to.
        ttfb_ms: Request sent -> first body byte.
        ttfa_ms: Request sent -> first sample heard.
        underruns: Times the output ran dry while playing.
        underrun_ms: Silence inserted by underruns.
        buffer_ms_avg: Mean audio buffered ahead of the device while playing.
        buffer_ms_min: Least audio buffered ahead of the device while playing.
        bytes_received: Body bytes received.
        throughput_kbps: Body kilobits per second, first to last byte.
        decode_ms_mean: Mean wall time per decoder call.
        decode_ms_p95: 95th percentile wall time per decoder call.
        reconnects: Connections re-established after a drop.
        frames_played: Frames of this utterance consumed by the output (at the output rate).
        audio_s: Seconds of audio decoded.
        decode_errors: Corrupted frames or packets skipped by the decoder.
        retries: Requests repeated before any audio was played.
        stalls: Pauses in the body of at least ``stall_timeout_s``, ridden out or ended
            by a re-request (a dead connection).
        longest_pause_ms: Longest pause in a body after its first byte that ended by
            itself (the connection was kept).
        resumed_bytes: Bytes not downloaded again thanks to ``Range`` resumes.
        skipped_overlap_frames: Frames of re-requested streams dropped after checking
            they equal what was already played.
        restarted: The utterance was started again after a mismatching re-request.
        delivery_ratio: Seconds of audio received per second of download (first to last
            byte): above 1 the link is faster than real time.
        timeline: Every state change.
        playout: ``"exact"`` or ``"adaptive"`` (see ``StreamConfig.playout``).
        stretched_ms: Audio time the adaptive playout added (negative: removed).
        target_ms: The adaptive playout's target level at the end.
        jitter_ms: The arrival jitter it measured (the peak deficit, see ``_jitter``).
        stretch_timeline: The stretch factor over time (adaptive playout; at most
            ``STRETCH_POINTS`` changes are kept).
        format_choice: For a speaker with ``response_format="auto"``: the format asked
            for and why.
        text_heard: For a speaker's utterance, the part of its text that was heard:
            all of it when completed; when interrupted or cancelled, the characters
            whose share of the text equals the share of the audio heard, cut back to a
            word boundary (an approximation: speech rate is taken as even).
    """

    outcome: Outcome
    error: str | None
    mode: str
    format: str | None
    sample_rate: int | None
    channels: int | None
    buffer_ms: float
    ttfb_ms: float | None
    ttfa_ms: float | None
    underruns: int
    underrun_ms: float
    buffer_ms_avg: float | None
    buffer_ms_min: float | None
    bytes_received: int
    throughput_kbps: float | None
    decode_ms_mean: float | None
    decode_ms_p95: float | None
    reconnects: int
    frames_played: int
    audio_s: float
    timeline: tuple[TimelineEntry, ...] = ()
    fallback_reason: str | None = None
    decode_errors: int = 0
    output_sample_rate: int | None = None
    retries: int = 0
    stalls: int = 0
    resumed_bytes: int = 0
    skipped_overlap_frames: int = 0
    restarted: bool = False
    delivery_ratio: float | None = None
    format_note: str | None = None
    truncated: str | None = None
    longest_pause_ms: float = 0.0
    text_heard: str | None = None
    playout: str = "exact"
    stretched_ms: float = 0.0
    target_ms: float | None = None
    jitter_ms: float | None = None
    stretch_timeline: tuple[StretchEntry, ...] = ()
    format_choice: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (enums as their values, timeline as a list of dicts)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Outcome):
                value = str(value)
            elif f.name == "timeline":
                value = [
                    {"t_ms": round(e.t_ms, 3), "state": str(e.state), "cause": str(e.cause)}
                    for e in value
                ]
            elif f.name == "stretch_timeline":
                value = [{"t_ms": round(e.t_ms, 3), "factor": round(e.factor, 4)} for e in value]
            elif isinstance(value, float):
                value = round(value, 3)
            out[f.name] = value
        return out


@dataclass(frozen=True)
class OutputTotals:
    """What the output did with one playback's audio (counted from when it started).

    Attributes:
        frames_played: Frames of this playback consumed by the output.
        underruns: Times the output ran dry while playing.
        underrun_frames: Frames of silence those underruns inserted.
        level_sum: Sum of the buffered frames seen at each running block.
        level_count: Running blocks seen.
        level_min: Least buffered frames seen while running (-1: never).
        first_heard: When the first frame was heard (trio's clock), if it was.
    """

    frames_played: int = 0
    underruns: int = 0
    underrun_frames: int = 0
    level_sum: int = 0
    level_count: int = 0
    level_min: int = -1
    first_heard: float | None = None


@dataclass
class MetricsRecorder:
    """The one recorder of a playback, filled in by the stream decoder, the download
    loop and the player (trio thread only); :meth:`report` builds the report from it.

    Times are on the caller's clock (trio's), except decode durations (seconds of the
    stream decoder's timer).
    """

    # -- the request and its bytes (download loop)
    request_time: float | None = None
    first_byte_time: float | None = None
    last_byte_time: float | None = None
    bytes_received: int = 0
    # -- network resilience (download loop)
    retries: int = 0
    reconnects: int = 0
    stalls: int = 0
    longest_pause_s: float = 0.0
    resumed_bytes: int = 0
    restarted: bool = False
    # -- decoding (stream decoder)
    format: str | None = None
    fallback_reason: str | None = None
    format_note: str | None = None
    truncated: str | None = None
    decode_errors: int = 0
    skipped_overlap_frames: int = 0
    frames_decoded: int = 0
    decode_calls: int = 0
    decode_total_s: float = 0.0
    #: A uniform random sample (reservoir) of at most ``DECODE_SAMPLE`` call times, so
    #: memory stays bounded however long the stream (a plain list grew ~10 MiB/hour).
    decode_sample: list[float] = field(default_factory=list)
    _rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False)
    # -- adaptive playout (player)
    playout: str = "exact"
    stretched_s: float = 0.0
    target_ms: float | None = None
    jitter_ms: float | None = None
    #: (time, factor) at each change, at most STRETCH_POINTS of them.
    stretch_points: list[tuple[float, float]] = field(default_factory=list)
    format_choice: str | None = None

    def on_stretch(self, factor: float, now: float) -> None:
        """The stretch factor is ``factor`` from ``now`` on (kept when it changed by at
        least 0.005, or reached 1.0, and while there is room)."""
        points = self.stretch_points
        if points:
            last = points[-1][1]
            if factor == last or (factor != 1.0 and abs(factor - last) < 0.005):
                return
        elif factor == 1.0:
            return
        if len(points) < STRETCH_POINTS:
            points.append((now, factor))

    def on_request(self, now: float) -> None:
        """The request is being sent."""
        if self.request_time is None:
            self.request_time = now

    def on_bytes(self, n: int, now: float) -> None:
        """``n`` body bytes arrived."""
        if self.first_byte_time is None:
            self.first_byte_time = now
        self.last_byte_time = now
        self.bytes_received += n

    def on_decode(self, seconds: float) -> None:
        """One decoder call took ``seconds``."""
        self.decode_calls += 1
        self.decode_total_s += seconds
        if len(self.decode_sample) < DECODE_SAMPLE:
            self.decode_sample.append(seconds)
        else:  # Vitter's algorithm R
            j = self._rng.randrange(self.decode_calls)
            if j < DECODE_SAMPLE:
                self.decode_sample[j] = seconds

    def since_request_ms(self, t: float | None) -> float | None:
        """``t`` relative to the request, in ms."""
        if t is None or self.request_time is None:
            return None
        return (t - self.request_time) * 1000.0

    def throughput_kbps(self) -> float | None:
        """Kilobits per second from first to last byte."""
        if self.first_byte_time is None or self.last_byte_time is None:
            return None
        span = self.last_byte_time - self.first_byte_time
        if span <= 0:
            return None
        return self.bytes_received * 8 / 1000 / span

    def delivery_ratio(self, audio_s: float) -> float | None:
        """Audio seconds received per second of download, first to last byte."""
        if self.first_byte_time is None or self.last_byte_time is None or audio_s <= 0:
            return None
        span = self.last_byte_time - self.first_byte_time
        return audio_s / span if span > 0 else None

    def decode_ms(self) -> tuple[float | None, float | None]:
        """(mean, p95) of decoder call times in ms (the p95 from the reservoir sample: exact
        up to ``DECODE_SAMPLE`` calls)."""
        if not self.decode_calls:
            return None, None
        ordered = sorted(self.decode_sample)
        mean = self.decode_total_s / self.decode_calls * 1000
        p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)] * 1000
        return mean, p95

    def timeline(self, transitions: list[Transition]) -> tuple[TimelineEntry, ...]:
        """Convert state-machine transitions to report entries."""
        base = self.request_time if self.request_time is not None else 0.0
        return tuple(
            TimelineEntry((t.time - base) * 1000.0, t.target, t.cause) for t in transitions
        )

    def report(
        self,
        *,
        outcome: Outcome,
        error: str | None,
        streaming: bool,
        buffer_ms: float,
        decoded: AudioFormat | None,
        output: AudioFormat | None,
        totals: OutputTotals,
        transitions: list[Transition],
    ) -> PlaybackReport:
        """The report of a finished playback.

        Args:
            outcome: How it ended.
            error: The failure's one-line message, if it failed.
            streaming: Whether it played while downloading (else downloaded first).
            buffer_ms: The start threshold it used.
            decoded: The decoded stream's format (``None``: no audio was decoded).
            output: The output's format (``None``: the output never opened).
            totals: What the output did with this playback's audio.
            transitions: The state machine's timeline.
        """
        rate = output.sample_rate if output else None
        audio_s = self.frames_decoded / decoded.sample_rate if decoded else 0.0
        buffer_avg = buffer_min = None
        if rate is not None and totals.level_count:
            buffer_avg = totals.level_sum / totals.level_count * 1000 / rate
            buffer_min = totals.level_min * 1000 / rate
        if not streaming:
            mode = "buffered"
        elif self.fallback_reason is not None:
            mode = "buffered-fallback"
        else:
            mode = "stream"
        decode_mean, decode_p95 = self.decode_ms()
        return PlaybackReport(
            outcome=outcome,
            error=error,
            mode=mode,
            fallback_reason=self.fallback_reason,
            format=self.format,
            sample_rate=decoded.sample_rate if decoded else None,
            channels=decoded.channels if decoded else None,
            buffer_ms=buffer_ms,
            ttfb_ms=self.since_request_ms(self.first_byte_time),
            ttfa_ms=self.since_request_ms(totals.first_heard),
            underruns=totals.underruns,
            underrun_ms=totals.underrun_frames * 1000 / rate if rate else 0.0,
            buffer_ms_avg=buffer_avg,
            buffer_ms_min=buffer_min,
            bytes_received=self.bytes_received,
            throughput_kbps=self.throughput_kbps(),
            decode_ms_mean=decode_mean,
            decode_ms_p95=decode_p95,
            reconnects=self.reconnects,
            frames_played=totals.frames_played,
            audio_s=audio_s,
            decode_errors=self.decode_errors,
            retries=self.retries,
            stalls=self.stalls,
            resumed_bytes=self.resumed_bytes,
            skipped_overlap_frames=self.skipped_overlap_frames,
            restarted=self.restarted,
            delivery_ratio=self.delivery_ratio(audio_s),
            format_note=self.format_note,
            truncated=self.truncated,
            longest_pause_ms=self.longest_pause_s * 1000,
            output_sample_rate=rate,
            timeline=self.timeline(transitions),
            playout=self.playout,
            stretched_ms=self.stretched_s * 1000,
            target_ms=self.target_ms,
            jitter_ms=self.jitter_ms,
            stretch_timeline=tuple(
                StretchEntry(self.since_request_ms(t) or 0.0, f) for t, f in self.stretch_points
            ),
            format_choice=self.format_choice,
        )
