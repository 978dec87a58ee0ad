"""What a playback measured: the :class:`PlaybackReport` and the recorder that builds it.

Definitions (all times on trio's clock, relative to the moment the request was sent):

* ``ttfb_ms``: request sent -> first body byte received.
* ``ttfa_ms``: request sent -> first sample *heard*: for :class:`SoundDeviceSink` the
  callback's ``outputBufferDacTime - currentTime`` estimates when the block reaches the
  DAC; for :class:`NullSink` and :class:`WavFileSink`, when the sample is consumed.
* Start-up phases: ``launch_ms`` (process launch -> request sent, the CLI's),
  ``device_ready_ms`` (request sent -> output running: the player opens it while the
  request is in flight) and ``first_byte_to_audio_ms`` (``ttfa_ms - ttfb_ms``).
* ``underruns`` / ``underrun_ms``: times the output ran dry while playing, and the
  silence that caused. ``buffer_ms_avg`` / ``buffer_ms_min``: audio buffered ahead of the
  device, sampled at every device block while playing.
* ``decode_ms_mean`` / ``decode_ms_p95``: wall time of one decoder call per received chunk.
* ``throughput_kbps``: body kilobits per second from first to last byte.
* ``samples``: the playback's time series (bytes, audio decoded and played, buffer
  level), one point at most every ``SAMPLE_INTERVAL_S`` of trio time; at most
  ``MAX_SAMPLES`` are kept: when full, every other point is dropped and the interval
  doubles, so a long playback costs the same memory as a 30 s one (it has coarser points).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._format import AudioFormat
from ._vocabulary import Cause, Outcome, PlaybackState, Transition

__all__ = [
    "DECODE_SAMPLE",
    "MAX_EVENTS",
    "MAX_SAMPLES",
    "SAMPLE_INTERVAL_S",
    "STRETCH_POINTS",
    "MetricsRecorder",
    "NetworkEvent",
    "OutputTotals",
    "PlaybackReport",
    "Sample",
    "StretchEntry",
    "TimelineEntry",
    "UtteranceSpan",
    "combine_series",
]

#: Decoder call times kept for the p95 (a reservoir sample beyond this many calls).
DECODE_SAMPLE = 4096
#: Most stretch-factor changes a report keeps (the timeline stays bounded).
STRETCH_POINTS = 512
#: Most time-series points a report keeps (when full: every other one is dropped and
#: the interval doubles).
MAX_SAMPLES = 2048
#: Trio time between two time-series points at the start, seconds.
SAMPLE_INTERVAL_S = 0.015
#: Most network events (retries, reconnects, stalls) a report keeps.
MAX_EVENTS = 256


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
class Sample:
    """One point of a playback's time series, relative to the request.

    Attributes:
        t_ms: Milliseconds after the request was sent.
        bytes_received: Body bytes received so far.
        decoded_s: Seconds of audio decoded so far.
        played_s: Seconds of this playback's audio the output consumed so far.
        buffered_ms: Audio buffered ahead of the device (the whole output's ring).
    """

    t_ms: float
    bytes_received: int
    decoded_s: float
    played_s: float
    buffered_ms: float


@dataclass(frozen=True)
class NetworkEvent:
    """A network event, relative to the request: when the playback noticed it (at the
    next body byte or time-series point, within ``SAMPLE_INTERVAL_S`` or so).

    Attributes:
        t_ms: Milliseconds after the request was sent.
        kind: ``"retry"`` (a request repeated before any audio), ``"reconnect"``
            (after audio) or ``"stall"`` (a pause of at least ``stall_timeout_s``).
    """

    t_ms: float
    kind: str


@dataclass(frozen=True)
class UtteranceSpan:
    """One utterance of a combined report (the CLI's ``say -``), on its time axis.

    Attributes:
        index: Its position, from 0.
        start_ms: Its request, in ms after the first utterance's request.
        end_ms: Its last state change (heard to the end, cancelled or failed).
        outcome: How it ended.
        timeline_entries: How many entries of the combined ``timeline`` are its own
            (they come utterance by utterance, in order).
    """

    index: int
    start_ms: float
    end_ms: float
    outcome: Outcome
    timeline_entries: int = 0


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
        rebuffer_ms: The rebuffer threshold the first underrun waited for (or would
            have).
        rebuffer_thresholds_ms: The threshold each underrun waited for, in order (it
            grows by ``underrun_growth``).
        request_time: When the request was sent, on trio's clock (seconds): places the
            reports of one run on one time axis.
        samples: The time series of bytes, audio decoded and played and the buffer
            level (:class:`Sample`; at most ``MAX_SAMPLES``, see :mod:`._metrics`).
        network_events: Retries, reconnects and stalls with their times
            (:class:`NetworkEvent`; at most ``MAX_EVENTS``). Underruns are in
            ``timeline`` (cause ``underrun``).
        launch_ms: Process launch -> request sent, for the CLI's ``say`` (the process's
            start time as the OS keeps it: 10 ms resolution on Linux); ``None``
            elsewhere.
        device_ready_ms: Request sent -> the output running (opened while the request
            is in flight; 0 when it already was): below ``ttfb_ms``, the device waited
            for the audio, not the audio for the device.
        first_byte_to_audio_ms: First body byte -> first sample heard
            (``ttfa_ms - ttfb_ms``): decoding, buffering and the device's latency.
        utterances: For a combined report of several utterances (the CLI's ``say -``):
            where each one lies on the time axis (:class:`UtteranceSpan`); else empty.
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
    rebuffer_ms: float | None = None
    rebuffer_thresholds_ms: tuple[float, ...] = ()
    request_time: float | None = None
    samples: tuple[Sample, ...] = ()
    network_events: tuple[NetworkEvent, ...] = ()
    utterances: tuple[UtteranceSpan, ...] = ()
    launch_ms: float | None = None
    device_ready_ms: float | None = None
    first_byte_to_audio_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: enums as their values; ``timeline``, ``stretch_timeline``,
        ``samples``, ``network_events`` and ``utterances`` as lists of dicts; tuples of
        numbers as lists."""
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
            elif f.name == "samples":
                value = [
                    {
                        "t_ms": round(p.t_ms, 3),
                        "bytes_received": p.bytes_received,
                        "decoded_s": round(p.decoded_s, 4),
                        "played_s": round(p.played_s, 4),
                        "buffered_ms": round(p.buffered_ms, 3),
                    }
                    for p in value
                ]
            elif f.name == "network_events":
                value = [{"t_ms": round(e.t_ms, 3), "kind": e.kind} for e in value]
            elif f.name == "utterances":
                value = [
                    {
                        "index": u.index,
                        "start_ms": round(u.start_ms, 3),
                        "end_ms": round(u.end_ms, 3),
                        "outcome": str(u.outcome),
                        "timeline_entries": u.timeline_entries,
                    }
                    for u in value
                ]
            elif f.name == "rebuffer_thresholds_ms":
                value = [round(v, 3) for v in value]
            elif isinstance(value, float):
                value = round(value, 3)
            out[f.name] = value
        return out

    def plot(self, path: str | Path) -> Path:
        """Draw this playback's timeline into ``path`` (``.png`` or ``.svg``): bytes
        arriving, audio decoded and played, the buffer level against the start and
        rebuffer thresholds, the states, underruns, reconnects and stalls, TTFB and first
        audio (see :doc:`metrics`). Needs matplotlib (the ``plot`` extra); takes a
        fraction of a second of CPU, so in a live trio program run it in a thread
        (``trio.to_thread.run_sync(report.plot, path)``).

        Returns:
            The path written.

        Raises:
            MissingDependencyError: matplotlib is not installed.
            ConfigError: ``path`` does not end in ``.png`` or ``.svg``.
            OSError: The file cannot be written.
        """
        from ._plot import plot_report

        return plot_report(self, path)


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
    #: When the output was running (the player; trio's clock).
    device_ready_time: float | None = None
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
    # -- time series (player): (time, bytes, decoded s, played s, buffered ms)
    samples: list[tuple[float, int, float, float, float]] = field(default_factory=list)
    #: The player records a point when trio's clock has reached this.
    next_sample_at: float = -math.inf
    sample_interval_s: float = SAMPLE_INTERVAL_S
    #: (time, kind) of retries, reconnects and stalls, at most MAX_EVENTS.
    events: list[tuple[float, str]] = field(default_factory=list)
    _seen: tuple[int, int, int] = (0, 0, 0)  # retries, reconnects, stalls already noted

    def on_sample(self, now: float, decoded_s: float, played_s: float, buffered_ms: float) -> None:
        """One time-series point (the caller checks ``now >= next_sample_at`` first, so
        a point costs nothing between intervals). At ``MAX_SAMPLES`` points every other
        one is dropped and the interval doubles."""
        self._note_network(now)
        samples = self.samples
        samples.append((now, self.bytes_received, decoded_s, played_s, buffered_ms))
        self.next_sample_at = now + self.sample_interval_s
        if len(samples) >= MAX_SAMPLES:
            del samples[1::2]
            self.sample_interval_s *= 2

    def _note_network(self, now: float) -> None:
        """Note the retries, reconnects and stalls counted since the last call."""
        seen = self._seen
        if seen == (self.retries, self.reconnects, self.stalls):
            return
        counts = (self.retries, self.reconnects, self.stalls)
        for kind, before, count in zip(("retry", "reconnect", "stall"), seen, counts, strict=True):
            for _ in range(max(0, count - before)):
                if len(self.events) < MAX_EVENTS:
                    self.events.append((now, kind))
        self._seen = (self.retries, self.reconnects, self.stalls)

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
        if self._seen != (self.retries, self.reconnects, self.stalls):
            self._note_network(now)

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
        rebuffer_ms: float | None = None,
        rebuffer_thresholds_ms: Sequence[float] = (),
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
            rebuffer_ms: The rebuffer threshold it started with.
            rebuffer_thresholds_ms: The threshold each underrun waited for.
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
        base = self.request_time if self.request_time is not None else 0.0
        ttfb_ms = self.since_request_ms(self.first_byte_time)
        ttfa_ms = self.since_request_ms(totals.first_heard)
        device_ms = self.since_request_ms(self.device_ready_time)
        return PlaybackReport(
            outcome=outcome,
            error=error,
            mode=mode,
            fallback_reason=self.fallback_reason,
            format=self.format,
            sample_rate=decoded.sample_rate if decoded else None,
            channels=decoded.channels if decoded else None,
            buffer_ms=buffer_ms,
            ttfb_ms=ttfb_ms,
            ttfa_ms=ttfa_ms,
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
            rebuffer_ms=rebuffer_thresholds_ms[0] if rebuffer_thresholds_ms else rebuffer_ms,
            rebuffer_thresholds_ms=tuple(rebuffer_thresholds_ms),
            request_time=self.request_time,
            samples=tuple(
                Sample((t - base) * 1000.0, b, d, p, level) for t, b, d, p, level in self.samples
            ),
            network_events=tuple(NetworkEvent((t - base) * 1000.0, k) for t, k in self.events),
            device_ready_ms=None if device_ms is None else max(0.0, device_ms),
            first_byte_to_audio_ms=None
            if ttfa_ms is None or ttfb_ms is None
            else ttfa_ms - ttfb_ms,
        )


def combine_series(
    reports: Sequence[PlaybackReport], *, utterances: bool = False
) -> dict[str, Any]:
    """The time fields of one report made of ``reports`` (the parts of an utterance, or
    a run's utterances), on the first one's time axis: the timelines and events
    shifted by each report's request time, the samples merged (the counters summed, the
    buffer level as each point saw the shared output), and with ``utterances`` one
    :class:`UtteranceSpan` per report. Returns keyword arguments for
    ``dataclasses.replace``."""
    first = next((r.request_time for r in reports if r.request_time is not None), None)
    offsets = [
        (r.request_time - first) * 1000.0
        if first is not None and r.request_time is not None
        else 0.0
        for r in reports
    ]
    timeline = tuple(
        dataclasses.replace(e, t_ms=e.t_ms + o)
        for r, o in zip(reports, offsets, strict=True)
        for e in r.timeline
    )
    events = tuple(
        NetworkEvent(e.t_ms + o, e.kind)
        for r, o in zip(reports, offsets, strict=True)
        for e in r.network_events
    )[:MAX_EVENTS]
    points = sorted(
        (
            (p.t_ms + o, i, p)
            for i, (r, o) in enumerate(zip(reports, offsets, strict=True))
            for p in r.samples
        ),
        key=lambda x: (x[0], x[1]),
    )
    last = [(0, 0.0, 0.0)] * len(reports)
    total_b, total_d, total_p = 0, 0.0, 0.0
    merged: list[Sample] = []
    for t, i, p in points:
        b, d, pl = last[i]
        total_b += p.bytes_received - b
        total_d += p.decoded_s - d
        total_p += p.played_s - pl
        last[i] = (p.bytes_received, p.decoded_s, p.played_s)
        merged.append(Sample(t, total_b, total_d, total_p, p.buffered_ms))
    if len(merged) > MAX_SAMPLES:
        step = math.ceil(len(merged) / MAX_SAMPLES)
        merged = merged[-1::-step][::-1]  # the last point stays
    spans: tuple[UtteranceSpan, ...] = ()
    if utterances:
        spans = tuple(
            UtteranceSpan(
                i,
                o,
                o + max([e.t_ms for e in r.timeline] + [p.t_ms for p in r.samples[-1:]] + [0.0]),
                r.outcome,
                len(r.timeline),
            )
            for i, (r, o) in enumerate(zip(reports, offsets, strict=True))
        )
    return {
        "timeline": timeline,
        "network_events": events,
        "samples": tuple(merged),
        "utterances": spans,
        "request_time": first,
        "rebuffer_thresholds_ms": tuple(v for r in reports for v in r.rebuffer_thresholds_ms),
    }
