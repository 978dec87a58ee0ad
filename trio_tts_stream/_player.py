"""The player: a nursery pairing the download task with the playback task.

Theory of operation
-------------------
``open_playback`` owns a nursery with three tasks:

* the **download task** (:func:`._download.run_download`) reads the source, decodes it
  and sends the format, then blocks, into a bounded memory channel;
* the **playback task** writes each block into the sink's ring buffer (waiting for room
  when it is full: that is the backpressure that bounds memory), and turns buffer
  levels into state-machine events: start when ``buffer_ms`` is buffered, resume after
  an underrun when ``rebuffer_ms`` is; at end of stream it lets the sink drain and waits
  until the last frame has been *heard*;
* a **watcher** that wakes whenever the audio consumer reports something (an underrun,
  room, a stamped mark) so the state timeline is right even while the network is silent;
* the **pre-open** (:meth:`Playback._preopen`): a sound device (:class:`SoundDeviceSink`)
  is opened while the request is in flight, at the format the request names (headerless
  ``pcm``: OpenAI's 24 kHz mono; other formats: the same rate, when soxr is there to
  resample), so that it is running when the first bytes arrive rather than being opened
  on the path to first audio. When the stream's format turns out to differ, the audio is
  resampled (and its channels mapped) rather than the device reopened. Files, the null
  sink and custom sinks open on the first decoded format, as before (exact samples at the
  stream's own rate), unless their format is fixed (``samplerate=`` and ``channels=``).
  An output already open (a speaker's) is ready at once.

A download failure does not tear the nursery down: the error is kept, the audio
already received is played out, and then the error is raised (outcome ``failed``).
Cancellation (barge-in) aborts the sink at once: buffered audio is dropped and the next
device block is silence; the HTTP response is closed on the way out.
"""

from __future__ import annotations

import importlib.util
import ssl
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import httpx
import numpy as np
import trio

from ._adaptive import AdaptiveBuffering
from ._config import StreamConfig
from ._download import BodyTap, run_download
from ._exceptions import AudioDeviceError, TTSStreamError, unwrap_single_exception
from ._format import AudioFormat, Block, FormatHint
from ._http import EarlyRequest, Source, SpeechRequest, default_endpoint, shared_client
from ._jitter import ArrivalJitter, StretchControl
from ._metrics import MetricsRecorder, OutputTotals, PlaybackReport
from ._resample import Resampler
from ._ringbuffer import SinkStatistics
from ._sinks import AudioSink, SoundDeviceSink, import_sounddevice
from ._state import PlaybackController
from ._timestretch import TimeStretcher
from ._vocabulary import Cause, Gate, Outcome, PlaybackState

__all__ = [
    "ADAPTIVE_FORMATS",
    "Playback",
    "PlaybackStatistics",
    "Player",
    "default_playout",
    "open_playback",
    "open_player",
    "play",
    "speak",
]


@dataclass(frozen=True)
class PlaybackStatistics:
    """A live snapshot of a playback (for status lines).

    Attributes:
        state: The current state.
        buffered_ms: Audio buffered ahead of the device.
        played_s: Audio of this playback consumed by the device.
        received_s: Audio decoded so far.
        bytes_received: Body bytes received so far.
        underruns: Underruns so far.
    """

    state: PlaybackState
    buffered_ms: float
    played_s: float
    received_s: float
    bytes_received: int
    underruns: int


class Playback:
    """Handle on one playback, yielded by :func:`open_playback`.

    Do not construct it yourself.
    """

    def __init__(
        self,
        source: Source,
        *,
        sink: AudioSink,
        config: StreamConfig,
        client: httpx.AsyncClient,
        hint: FormatHint,
        fade_ms: float = 0.0,
        lead_silence_s: float = 0.0,
        tap: BodyTap | None = None,
        jitter: ArrivalJitter | None = None,
        format_choice: str | None = None,
        started: float | None = None,
        early: EarlyRequest | None = None,
    ) -> None:
        self._source = source
        self._early = early  # the request, already sent (the CLI's fast start)
        # The output's pre-open (see _preopen): done, or what it raised.
        self._preopened: trio.Event | None = None
        self._preopen_error: AudioDeviceError | None = None
        self._sink = sink
        self._config = config
        self._client = client
        self._hint = hint
        self._metrics = MetricsRecorder()
        self._ctl = PlaybackController(
            trio.current_time() if started is None else started,
            start_ms=config.buffer_ms,
            rebuffer_ms=config.rebuffer_ms,
            growth=config.underrun_growth,
            max_ms=config.max_buffer_s * 1000,
        )
        self._scope = trio.CancelScope()
        self._done = trio.Event()
        self._sink_opened = trio.Event()
        self._fmt: AudioFormat | None = None  # the decoded stream's format
        self._out_fmt: AudioFormat | None = None  # the sink's format
        self._resampler: Resampler | None = None
        self._start_pos = 0
        self._written = 0
        # The output's counters when this playback opened it (it may outlive us).
        self._underruns0 = 0
        self._underrun_frames0 = 0
        self._played0 = 0
        self._error: TTSStreamError | None = None
        self._report: PlaybackReport | None = None
        #: What the output did with our audio, kept when the output failed: a recovered
        #: sink counts a new device's frames, not ours.
        self._final_totals: OutputTotals | None = None
        self._fade_ms = fade_ms
        self._lead_frames_s = lead_silence_s
        self._tap = tap
        #: Set once every frame of this playback is in the output (or it ended): the
        #: next utterance of a speaker may start writing behind it.
        self.all_written = trio.Event()
        #: When the last frame ended being heard (trio's clock), once it has.
        self.end_heard: float | None = None
        #: Set when the download ended (completed, failed or cancelled).
        self.downloaded = trio.Event()
        self._first_heard: float | None = None  # kept once known (the mark is freed)
        # Adaptive playout (StreamConfig.playout): the link's jitter (a speaker shares
        # one across utterances), the stretch factor's control, the stretcher (made
        # when the output opens, at its rate).
        self._adaptive = config.playout == "adaptive"
        self._metrics.playout = config.playout or "exact"
        self._metrics.format_choice = format_choice
        self._jitter = jitter if jitter is not None else ArrivalJitter()
        self._stretch_ctl = StretchControl(
            max_stretch=config.max_stretch, max_speedup=config.max_speedup
        )
        self._stretcher: TimeStretcher | None = None
        self._in_frames = 0  # frames offered to the stretcher
        self._start_pad_ms = 0.0  # one output block and the sink's fade reserve
        self._throttled = False  # the last write waited for room (backpressure)

    # -- public ---------------------------------------------------------------

    @property
    def state(self) -> PlaybackState:
        """The current state."""
        return self._ctl.state

    @property
    def report(self) -> PlaybackReport:
        """The final report.

        Raises:
            RuntimeError: The playback has not finished yet (use :meth:`wait`).
        """
        if self._report is None:
            raise RuntimeError("the playback has not finished; await wait() first")
        return self._report

    def cancel(self) -> None:
        """Stop now (barge-in): silence within one device block; outcome ``cancelled``."""
        self._scope.cancel()

    async def wait(self) -> PlaybackReport:
        """Wait until the playback is done and return its report."""
        await self._done.wait()
        return self.report

    def statistics(self) -> PlaybackStatistics:
        """A live snapshot."""
        out = self._out_fmt
        rate = out.sample_rate if out else self._hint.sample_rate
        totals = self._totals()
        live = out is not None and self._final_totals is None
        buffered = self._sink.statistics().buffered if live else 0
        return PlaybackStatistics(
            state=self._ctl.state,
            buffered_ms=buffered * 1000 / rate,
            played_s=totals.frames_played / rate,
            received_s=self._metrics.frames_decoded
            / (self._fmt.sample_rate if self._fmt else self._hint.sample_rate),
            bytes_received=self._metrics.bytes_received,
            underruns=totals.underruns,
        )

    def _totals(self) -> OutputTotals:
        """What the output did with this playback's audio so far."""
        if self._out_fmt is None:
            return OutputTotals()
        if self._final_totals is not None:
            return self._final_totals
        st = self._sink.statistics()
        return OutputTotals(
            frames_played=max(0, min(st.frames_played - self._played0, self._written)),
            underruns=st.underruns - self._underruns0,
            underrun_frames=st.underrun_frames - self._underrun_frames0,
            level_sum=st.level_sum,
            level_count=st.level_count,
            level_min=st.level_min,
            first_heard=self._first_heard_time(),
        )

    def _first_heard_time(self) -> float | None:
        if self._first_heard is None:
            self._first_heard = self._sink.heard_time(self._start_pos)
        return self._first_heard

    # -- tasks ----------------------------------------------------------------

    @property
    def first_heard(self) -> float | None:
        """When the first frame was heard (trio's clock), once it has."""
        return self._totals().first_heard if self._first_heard is None else self._first_heard

    async def _run(self, turn: trio.Event | None = None) -> None:
        """Download at once; play once ``turn`` is set (a speaker's prefetch)."""
        send, receive = trio.open_memory_channel[AudioFormat | Block](self._config.queue_blocks)
        output_failed = False
        try:
            with self._scope:
                try:
                    with unwrap_single_exception():
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(self._download, send)
                            nursery.start_soon(self._watch)
                            nursery.start_soon(self._preopen, turn is not None)
                            if turn is not None:
                                await turn.wait()
                            await self._playback(receive)
                            nursery.cancel_scope.cancel()
                except AudioDeviceError as exc:
                    # The output failed (or could not open): the playback fails with the
                    # report of what was heard until then.
                    self._error, output_failed = exc, True
        finally:
            now = trio.current_time()
            self.all_written.set()
            if self._ctl.state is not PlaybackState.DONE:
                if self._out_fmt is not None:  # only our own audio is dropped
                    self._sink.abort(self._fade_ms)
                self._ctl.stop(Cause.FAILED if output_failed else Cause.CANCELLED, now)
            self._report = self._build_report()
            if self._out_fmt is not None and getattr(self._sink, "failed", None) is not None:
                self._final_totals = self._totals()
            self._done.set()
        if self._error is not None:
            self._error.report = self._report
            raise self._error

    async def _download(self, send: trio.MemorySendChannel[AudioFormat | Block]) -> None:
        try:
            await run_download(
                self._source,
                send,
                client=self._client,
                config=self._config,
                recorder=self._metrics,
                hint=self._hint,
                tap=self._tap,
                early=self._early,
            )
        except TTSStreamError as exc:
            self._error = exc
        finally:
            self.downloaded.set()

    @property
    def download_complete(self) -> bool:
        """The body was received whole, in one attempt, with no error or known
        truncation (what a cache may keep)."""
        m = self._metrics
        return (
            self.downloaded.is_set()
            and self._error is None
            and not self._scope.cancel_called
            and m.retries == 0
            and m.reconnects == 0
            and not m.restarted
            and m.truncated is None
            and m.bytes_received > 0
        )

    @property
    def decoded_frames(self) -> int:
        """Frames decoded so far, at the output's rate."""
        if self._fmt is None or self._out_fmt is None:
            return 0
        return round(
            self._metrics.frames_decoded * self._out_fmt.sample_rate / self._fmt.sample_rate
        )

    @property
    def stretched_frames(self) -> int:
        """Frames adaptive playout added so far (negative: removed), at the output's
        rate: the output carries ``decoded_frames + stretched_frames``."""
        return self._stretcher.added if self._stretcher is not None else 0

    def _refresh_report(self) -> PlaybackReport:
        """Rebuild the report after it ended (a fade-out played after the cancel)."""
        self._report = self._build_report()
        return self._report

    async def _watch(self) -> None:
        await self._sink_opened.wait()
        while True:
            await self._sink.wait_changed()
            self._update()

    def _preopen_format(self) -> AudioFormat | None:
        """The format to open the output at before the response is here, or ``None`` to
        wait for the decoded format (see the module docstring)."""
        sink, hint = self._sink, self._hint
        want = AudioFormat(hint.sample_rate, hint.channels)
        if getattr(sink, "samplerate", None) and getattr(sink, "channels", None):
            return want  # the sink's own format is fixed: it opens at that anyway
        if not isinstance(sink, SoundDeviceSink):
            return None  # a file or a clock: cheap to open, and exact at the stream's rate
        if hint.name == "pcm" or hint.sse or importlib.util.find_spec("soxr") is not None:
            # A listener: resample a stream at another rate rather than open late.
            return want
        return None

    async def _preopen(self, prefetch: bool = False) -> None:
        """Open the output while the request is in flight (the download task sends it
        meanwhile): PortAudio's start-up and the device's open leave the path to first
        audio. A failure is kept and raised where the output would have been opened.
        A speaker's prefetch (``prefetch``) never opens: the output is the one its
        utterance before opens."""
        sink = self._sink
        if getattr(sink, "audio_format", None) is not None:  # already running
            self._metrics.device_ready_time = trio.current_time()
            return
        fmt = None if prefetch else self._preopen_format()
        if fmt is None:
            return
        self._preopened = done = trio.Event()
        try:
            if isinstance(sink, SoundDeviceSink) and "sounddevice" not in sys.modules:
                # Importing sounddevice initializes PortAudio (tens of ms, in C): in a
                # thread, so the trio thread sends the request meanwhile.
                await trio.to_thread.run_sync(import_sounddevice)
            await sink.open(await sink.output_format_for(fmt))
            self._metrics.device_ready_time = trio.current_time()
        except AudioDeviceError as exc:
            self._preopen_error = exc
        finally:
            done.set()

    async def _open_sink(self, fmt: AudioFormat) -> None:
        sink = self._sink
        if self._preopened is not None:
            await self._preopened.wait()
            if self._preopen_error is not None:
                raise self._preopen_error
        # Pre-opened: the open output keeps its format and the stream is resampled.
        out = await sink.output_format_for(fmt)
        if out.sample_rate != fmt.sample_rate:
            self._resampler = Resampler(fmt.sample_rate, out.sample_rate, fmt.channels)
        await sink.open(out)
        if self._metrics.device_ready_time is None:
            self._metrics.device_ready_time = trio.current_time()
        self._fmt, self._out_fmt = fmt, out
        if self._adaptive:
            # Start as soon as the output can play two blocks (the one it is about to
            # take and the next, plus its underrun-fade reserve: measured on a device,
            # one block alone ran dry at once at 1.2x), or more for large decoded blocks
            # (_adapt_start); the target is built by stretching (see _stretch). After
            # an underrun, resume at half of buffer_ms.
            # A link that already showed jitter (to a speaker) starts with what it
            # needs, never later than exact playout would.
            self._start_pad_ms = self._block_ms() + float(getattr(sink, "underrun_fade_ms", 0.0))
            start = self._block_ms() + self._start_pad_ms
            learnt = self._jitter.jitter_ms(trio.current_time())
            self._ctl.start_ms = min(self._ctl.start_ms, max(start, learnt))
            self._ctl.rebuffer_ms = min(
                self._ctl.rebuffer_ms, max(start, self._config.buffer_ms / 2, learnt)
            )
            self._stretcher = TimeStretcher(out.sample_rate, fmt.channels)
            self._jitter.start()
        if self._lead_frames_s > 0 and sink.statistics().buffered > 0:
            # A pause between a speaker's utterances, exact to the frame, only when the
            # one before is still playing (otherwise the silence is already there).
            silence = np.zeros((round(self._lead_frames_s * out.sample_rate), 1), np.float32)
            offset = 0
            while offset < len(silence):
                offset += sink.write_some(silence[offset:])
                if offset < len(silence):
                    await sink.wait_writable()
        st = sink.statistics()
        self._start_pos = st.frames_written
        # Audio of an earlier utterance still queued ahead of ours counts as played
        # before ours starts.
        self._played0 = st.frames_played + st.buffered
        self._underruns0 = st.underruns
        self._underrun_frames0 = st.underrun_frames
        self._apply(self._ctl.output_opened(busy=st.buffered > 0))
        sink.reset_level()
        sink.mark(self._start_pos)
        self._sink_opened.set()

    async def _playback(self, receive: trio.MemoryReceiveChannel[AudioFormat | Block]) -> None:
        sink = self._sink
        async with receive:
            async for item in receive:
                if isinstance(item, AudioFormat):
                    await self._open_sink(item)
                    continue
                if self._resampler is not None:
                    item = self._resampler.process(item)
                if self._stretcher is not None:
                    if self._ctl.state is PlaybackState.BUFFERING:
                        self._adapt_start(len(item))
                    item = self._stretch(item)
                await self._write(item)
        if self._resampler is not None:
            tail = self._resampler.flush()
            await self._write(self._stretch(tail) if self._stretcher is not None else tail)
        if self._stretcher is not None:
            await self._write(self._stretcher.flush())
            self._metrics.on_stretch(1.0, trio.current_time())
        now = trio.current_time()
        if self._out_fmt is None:
            # Nothing decodable arrived.
            if self._error is not None:
                self._ctl.stop(Cause.FAILED, now)
                return
            self._ctl.end_of_stream(now)
            self._ctl.drained(now)
            return
        self._update()
        self._ctl.end_of_stream(trio.current_time())
        self._apply(self._ctl.gate)
        self.all_written.set()
        end = await sink.wait_heard(self._start_pos + self._written)
        self.end_heard = end if end is not None else trio.current_time()
        if self._error is not None:
            self._ctl.stop(Cause.FAILED, trio.current_time())
        else:
            self._ctl.drained(trio.current_time())

    async def _write(self, block: Block) -> None:
        sink = self._sink
        offset = 0
        while True:
            n = sink.write_some(block[offset:])
            offset += n
            self._written += n
            self._update()
            if offset >= len(block):
                return
            self._throttled = True
            await sink.wait_writable()

    def _adapt_start(self, frames: int) -> None:
        """Adaptive playout, before the start: the decoded blocks say how the stream
        comes (20 ms pcm pieces, 24 ms mp3 frames, ...); until the next one arrives the
        output must live on what it has, so the start waits for the largest block seen
        plus one device block (and the fade reserve), never past ``buffer_ms``.
        Measured: mp3 at 1.0x ran dry at once with a start of two device blocks."""
        assert self._out_fmt is not None
        block_ms = frames * 1000 / self._out_fmt.sample_rate
        wanted = min(self._config.buffer_ms, block_ms + self._start_pad_ms)
        self._ctl.start_ms = max(self._ctl.start_ms, wanted)

    def _block_ms(self) -> float:
        """The output's block length in ms (10 ms if the sink does not say)."""
        block_s = getattr(self._sink, "block_s", None)
        return float(block_s) * 1000 if isinstance(block_s, (int, float)) else 10.0

    def _stretch(self, block: Block) -> Block:
        """Adaptive playout: note the arrival, pick the stretch factor from the level
        and the jitter target, and stretch ``block`` (trio thread, no await)."""
        stretcher, out = self._stretcher, self._out_fmt
        assert stretcher is not None
        assert out is not None
        now = trio.current_time()
        rate = out.sample_rate
        self._jitter.arrival(now, self._in_frames / rate, throttled=self._throttled)
        self._throttled = False
        self._in_frames += len(block)
        st = self._sink.statistics()
        block_ms = self._block_ms()
        level_ms = (st.buffered + stretcher.pending) * 1000 / rate
        target = self._jitter.target_ms(
            now,
            block_ms=block_ms,
            floor_ms=self._config.buffer_ms,
            cap_ms=0.75 * st.capacity * 1000 / rate,
        )
        # The look-ahead a stretch holds back must not starve the output: below one
        # block plus one period, play as it comes.
        floor = block_ms + stretcher.pmax * 1000 / rate
        if level_ms < floor and not stretcher.active:
            ratio = 1.0
        else:
            ratio = self._stretch_ctl.update(level_ms, target, len(block) / rate)
        m = self._metrics
        m.on_stretch(ratio, now)
        m.target_ms, m.jitter_ms = target, self._jitter.jitter_ms(now)
        before = stretcher.added
        result = stretcher.process(block, ratio)
        m.stretched_s += (stretcher.added - before) / rate
        return result

    def _update(self) -> None:
        """Show the controller what the output reports; apply its decision (trio thread,
        no await)."""
        fmt = self._out_fmt
        if fmt is None or self._ctl.state is PlaybackState.DONE:
            return
        st = self._sink.statistics()
        now = trio.current_time()
        if now >= self._metrics.next_sample_at:
            self._sample(st, now)
        self._apply(
            self._ctl.observe(
                fmt.frames_to_ms(st.buffered),
                full=st.buffered >= st.capacity,
                underruns=st.underruns - self._underruns0,
                now=now,
            )
        )

    def _sample(self, st: SinkStatistics, now: float) -> None:
        """One point of the report's time series (see ``MetricsRecorder.on_sample``)."""
        fmt, out = self._fmt, self._out_fmt
        if fmt is None or out is None:
            return
        played = max(0, min(st.frames_played - self._played0, self._written))
        self._metrics.on_sample(
            now,
            self._metrics.frames_decoded / fmt.sample_rate,
            played / out.sample_rate,
            st.buffered * 1000 / out.sample_rate,
        )

    def _apply(self, gate: Gate | None) -> None:
        """Set the output's gate as the controller decided (``None``: leave it)."""
        if gate is Gate.RUNNING:
            self._sink.play()
        elif gate is Gate.DRAINING:
            self._sink.end_of_data()
        elif gate is Gate.PAUSED:
            self._sink.pause()

    # -- report ---------------------------------------------------------------

    def _build_report(self) -> PlaybackReport:
        totals = self._totals()
        if self._out_fmt is not None and self._final_totals is None:
            self._sink.unmark(self._start_pos)
            self._sample(self._sink.statistics(), trio.current_time())  # the last point
        return self._metrics.report(
            outcome=self._ctl.machine.outcome or Outcome.CANCELLED,
            error=str(self._error) if self._error is not None else None,
            streaming=self._config.streaming,
            buffer_ms=self._ctl.start_ms,
            decoded=self._fmt,
            output=self._out_fmt,
            totals=totals,
            transitions=self._ctl.machine.timeline,
            rebuffer_ms=self._ctl.rebuffer_ms,
            rebuffer_thresholds_ms=self._ctl.thresholds,
        )


#: Formats that adaptive playout serves better on a sound device (benchmarks.rst):
#: uncompressed audio arrives evenly; compressed formats arrive in encoder bursts that a
#: two-block start does not cover, so they keep exact playout by default.
ADAPTIVE_FORMATS = ("pcm", "wav")


def default_playout(
    config: StreamConfig, sink: AudioSink, response_format: str | None
) -> StreamConfig:
    """The config with the playout a listener is best served by when none was chosen
    (``config.playout is None``): adaptive for uncompressed audio on a sound device,
    exact otherwise. A playout the config names is kept."""
    if (
        config.playout is None
        and isinstance(sink, SoundDeviceSink)
        and response_format in ADAPTIVE_FORMATS
    ):
        return config.replace(playout="adaptive")
    return config


@asynccontextmanager
async def _own_resources(
    sink: AudioSink | None,
    client: httpx.AsyncClient | None,
    config: StreamConfig,
    verify: ssl.SSLContext | bool,
) -> AsyncIterator[tuple[AudioSink, httpx.AsyncClient]]:
    """The sink and client given, or ours: the run's shared client (see
    :func:`~._http.shared_client`) and a device sink opened here, closed on exit."""
    async with AsyncExitStack() as stack:
        if client is None:
            client = shared_client(verify)
        if sink is None:
            sink = await stack.enter_async_context(SoundDeviceSink(buffer_s=config.max_buffer_s))
        assert sink is not None
        yield sink, client


@asynccontextmanager
async def open_playback(
    source: Source,
    *,
    sink: AudioSink | None = None,
    config: StreamConfig | None = None,
    client: httpx.AsyncClient | None = None,
    verify: ssl.SSLContext | bool = True,
    response_format: str | None = None,
    sample_rate: int = 24000,
    channels: int = 1,
) -> AsyncIterator[Playback]:
    """Start playing ``source``; the block can watch, cancel or wait for it.

    Leaving the block waits for the playback to finish (call :meth:`Playback.cancel`
    first to stop it); an exception in the block cancels it. The report is then in
    :attr:`Playback.report`.

    Args:
        source: A :class:`SpeechRequest`, a URL to GET, or an ``AsyncIterable[bytes]``.
        sink: Where to play; default a new :class:`SoundDeviceSink` on the default
            device (closed at the end). A sink you pass is left open.
        config: Buffering and network settings; default :meth:`StreamConfig.from_env`.
        client: An ``httpx.AsyncClient`` to use (left open; the config's timeouts apply per
            request); default the shared client of this trio run (:ref:`serving`).
        verify: TLS verification for the default client: ``True``, ``False`` or an
            ``ssl.SSLContext`` (e.g. trusting a private CA).
        response_format: Format of the source when the response does not say;
            default the request's ``response_format``; for other sources none: the
            response's ``Content-Type`` and bytes decide (pcm is never assumed).
        sample_rate: Sample rate of headerless pcm.
        channels: Channels of headerless pcm.

    Raises:
        TTSStreamError: The source, the decoder or the device failed (after playing the
            audio that did arrive); the exception's ``report`` holds the report.
    """
    async with _open_playback(
        source,
        sink=sink,
        config=config,
        client=client,
        verify=verify,
        response_format=response_format,
        sample_rate=sample_rate,
        channels=channels,
    ) as playback:
        yield playback


@asynccontextmanager
async def _open_playback(
    source: Source,
    *,
    sink: AudioSink | None = None,
    config: StreamConfig | None = None,
    client: httpx.AsyncClient | None = None,
    verify: ssl.SSLContext | bool = True,
    response_format: str | None = None,
    sample_rate: int = 24000,
    channels: int = 1,
    early: EarlyRequest | None = None,
) -> AsyncIterator[Playback]:
    """:func:`open_playback`, and ``early``: the request of ``source``, already sent
    with ``client`` (the CLI's fast start): the playback's time starts when it was."""
    config = config if config is not None else StreamConfig.from_env()
    sse = False
    if isinstance(source, SpeechRequest):
        response_format = response_format or source.response_format
        sample_rate, channels = source.sample_rate, source.channels
        sse = source.stream_format == "sse"
    hint = FormatHint(response_format, sample_rate, channels, sse)
    started = trio.current_time()  # the timings count getting a client and a sink
    if early is not None and early.sent_at is not None:
        started = early.sent_at
    async with _own_resources(sink, client, config, verify) as (sink, client):
        playback = Playback(
            source,
            sink=sink,
            config=config,
            client=client,
            hint=hint,
            started=started,
            early=early,
        )
        with unwrap_single_exception():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(playback._run)
                try:
                    yield playback
                except BaseException:
                    playback.cancel()
                    raise


async def play(
    source: Source,
    *,
    sink: AudioSink | None = None,
    config: StreamConfig | None = None,
    client: httpx.AsyncClient | None = None,
    verify: ssl.SSLContext | bool = True,
    response_format: str | None = None,
    sample_rate: int = 24000,
    channels: int = 1,
) -> PlaybackReport:
    """Play ``source`` to the end and return the report. Arguments as for
    :func:`open_playback`.

    Raises:
        TTSStreamError: See :func:`open_playback`.
    """
    async with open_playback(
        source,
        sink=sink,
        config=config,
        client=client,
        verify=verify,
        response_format=response_format,
        sample_rate=sample_rate,
        channels=channels,
    ) as playback:
        pass
    return playback.report


async def speak(
    text: str,
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
) -> PlaybackReport:
    """Ask an OpenAI-compatible server to speak ``text`` and play it as it downloads.

    ``base_url`` and ``api_key`` default to ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``.
    ``stream_format="sse"`` asks for OpenAI's event stream (see :class:`SpeechRequest`).

    Returns:
        The :class:`PlaybackReport`.

    Raises:
        TTSStreamError: See :func:`open_playback`.
    """
    base_url, api_key = default_endpoint(base_url, api_key)
    request = SpeechRequest(
        input=text,
        model=model,
        voice=voice,
        response_format=response_format,
        speed=speed,
        instructions=instructions,
        base_url=base_url,
        api_key=api_key,
        stream_format=stream_format,
    )
    return await play(request, sink=sink, config=config, client=client, verify=verify)


class Player:
    """Plays utterance after utterance on one sink, adapting its buffering to the link.

    Made by :func:`open_player`, which owns the sink and the HTTP client. Each
    :meth:`play` / :meth:`speak` uses the start threshold that
    :class:`~trio_tts_stream._adaptive.AdaptiveBuffering` derived from the utterances
    before it (see that module for the policy and its numbers), and keeps the output
    stream open between utterances.
    """

    def __init__(
        self,
        sink: AudioSink,
        *,
        config: StreamConfig,
        client: httpx.AsyncClient,
        base_url: str | None = None,
        api_key: str | None = None,
        adaptive: bool = True,
    ) -> None:
        self.sink = sink
        self.config = config
        self._client = client
        self._base_url = base_url
        self._api_key = api_key
        self._adaptive = (
            AdaptiveBuffering(config.buffer_ms, config.max_buffer_s * 1000) if adaptive else None
        )
        #: The report of the latest utterance (only the latest is kept: a long
        #: conversation must not grow memory).
        self.last_report: PlaybackReport | None = None
        #: Utterances played so far.
        self.utterances = 0

    def __repr__(self) -> str:  # no key, ever
        return f"<Player start_ms={self.start_ms:.0f} utterances={self.utterances}>"

    @property
    def start_ms(self) -> float:
        """The start threshold the next utterance will use."""
        return self._adaptive.start_ms if self._adaptive else self.config.buffer_ms

    async def play(
        self,
        source: Source,
        *,
        response_format: str | None = None,
        sample_rate: int = 24000,
        channels: int = 1,
    ) -> PlaybackReport:
        """Play one source to the end (see :func:`play`); adapt to how it went.

        Raises:
            TTSStreamError: As :func:`open_playback`; the policy still learns from it.
        """
        config = self.config.replace(buffer_ms=self.start_ms)
        try:
            report = await play(
                source,
                sink=self.sink,
                config=config,
                client=self._client,
                response_format=response_format,
                sample_rate=sample_rate,
                channels=channels,
            )
        except TTSStreamError as exc:
            if exc.report is not None:
                self._learn(exc.report)
            raise
        self._learn(report)
        return report

    async def speak(
        self,
        text: str,
        *,
        model: str = "gpt-4o-mini-tts",
        voice: str = "alloy",
        response_format: str = "pcm",
        speed: float | None = None,
        instructions: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        stream_format: str = "audio",
    ) -> PlaybackReport:
        """Speak ``text`` (arguments as :class:`SpeechRequest`; the player's ``base_url``
        and ``api_key`` are the defaults)."""
        base_url, api_key = default_endpoint(
            base_url or self._base_url, api_key if api_key is not None else self._api_key
        )
        request = SpeechRequest(
            text,
            model=model,
            voice=voice,
            response_format=response_format,
            speed=speed,
            instructions=instructions,
            base_url=base_url,
            api_key=api_key,
            stream_format=stream_format,
        )
        return await self.play(request)

    def _learn(self, report: PlaybackReport) -> None:
        self.last_report = report
        self.utterances += 1
        if self._adaptive is not None and report.outcome is not Outcome.CANCELLED:
            self._adaptive.update(
                underruns=report.underruns,
                delivery_ratio=report.delivery_ratio,
                audio_s=report.audio_s,
            )


@asynccontextmanager
async def open_player(
    *,
    sink: AudioSink | None = None,
    config: StreamConfig | None = None,
    client: httpx.AsyncClient | None = None,
    verify: ssl.SSLContext | bool = True,
    base_url: str | None = None,
    api_key: str | None = None,
    adaptive: bool = True,
) -> AsyncIterator[Player]:
    """A :class:`Player` with its own output (default: the default sound device) and
    HTTP client, kept open for all its utterances.

    Args:
        sink: Output to use (left open); default a new :class:`SoundDeviceSink`.
        config: Settings; default :meth:`StreamConfig.from_env`.
        client: HTTP client to use (left open); default the shared client of this trio
            run (one connection pool for all playbacks, :ref:`serving`).
        verify: TLS verification for the default client.
        base_url: Default API base for :meth:`Player.speak`.
        api_key: Default API key for :meth:`Player.speak` (never shown).
        adaptive: Adapt the start threshold between utterances.
    """
    config = config if config is not None else StreamConfig.from_env()
    async with _own_resources(sink, client, config, verify) as (sink, client):
        yield Player(
            sink,
            config=config,
            client=client,
            base_url=base_url,
            api_key=api_key,
            adaptive=adaptive,
        )
