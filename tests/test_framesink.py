"""The frame sink (and the clocked consumer it shares with NullSink), under trio's autojump
clock against the bundled server: exact frames, pacing, catch-up on a busy loop, late
consumers, G.711, fades and barge-in, and many streams at once."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest
import trio
import trio.testing

import trio_tts_stream as tts
from trio_tts_stream import _g711
from trio_tts_stream._clocked import blocks_due
from trio_tts_stream.testing import FaultPlan, open_test_server

RATE = 24000
TEXT = "A sentence for the frame sink, long enough for a few seconds of audio."


def request(server: Any, text: str = TEXT) -> tts.SpeechRequest:
    return tts.SpeechRequest(text, base_url=server.base_url, response_format="pcm")


async def collect(sink: tts.FrameSink, into: list[tuple[float, tts.AudioFrame]]) -> None:
    """A prompt consumer: records (time taken, frame) for every frame."""
    async for frame in sink:
        into.append((trio.current_time(), frame))


async def play_collecting(
    sink: tts.FrameSink,
    play: Callable[[], Awaitable[Any]],
    consumer: Callable[[tts.FrameSink, list[Any]], Awaitable[None]] = collect,
) -> tuple[Any, list[tuple[float, tts.AudioFrame]]]:
    got: list[tuple[float, tts.AudioFrame]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer, sink, got)
        result = await play()
        await sink.wait_heard(sink.statistics().frames_written)
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    return result, got


def joined(frames: list[tuple[float, tts.AudioFrame]]) -> npt.NDArray[Any]:
    return np.concatenate([f.samples()[:, 0] for _, f in frames])


# -- pure parts ----------------------------------------------------------------------


def test_blocks_due() -> None:
    assert blocks_due(0.99, 1.0, 0.02) == 1  # early: the one it woke for
    assert blocks_due(1.0, 1.0, 0.02) == 1
    assert blocks_due(1.019, 1.0, 0.02) == 1
    assert blocks_due(1.02, 1.0, 0.02) == 2
    assert blocks_due(1.3, 1.0, 0.02) == 16


@pytest.mark.parametrize("law", _g711.LAWS)
def test_g711_matches_the_reference_encoder_for_every_sample(law: str) -> None:
    audioop = pytest.importorskip("audioop", reason="audioop left the stdlib in 3.13")
    x = np.arange(-32768, 32768, dtype=np.int16)
    reference = (audioop.lin2ulaw if law == "mulaw" else audioop.lin2alaw)(x.tobytes(), 2)
    assert _g711.encode(x, law) == reference


@pytest.mark.parametrize("law", _g711.LAWS)
def test_g711_codes_decode_inside_their_interval(law: str) -> None:
    """FFmpeg's decoder (the G.711 table) maps each code back to within one quantisation
    step of the input, the step of the segment it is in, and codes are monotonic."""
    x = np.arange(-32768, 32768, dtype=np.int16)
    codes = _g711.encode(x, law)
    ctx: Any = av.CodecContext.create(f"pcm_{law}", "r")
    ctx.sample_rate, ctx.layout = 8000, "mono"
    frames = ctx.decode(av.Packet(codes))
    decoded = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int32)
    assert len(decoded) == len(x)
    error = np.abs(decoded - x.astype(np.int32))
    magnitude = np.abs(x.astype(np.int32))
    # Segment steps double from 2 (mu-law: 4) LSBs at the bottom to 1024 at the top.
    step = np.maximum(16 if law == "alaw" else 8, 2 ** np.floor(np.log2(magnitude + 1)) / 16)
    assert np.all(error <= step + 132)  # mu-law's bias shifts the first segment
    assert np.all(np.diff(decoded) >= 0)  # monotonic in the input
    assert np.median(error) <= np.median(step) / 2 + 1


def test_frame_sink_rejects_bad_arguments() -> None:
    with pytest.raises(tts.ConfigError, match="encoding"):
        tts.FrameSink(encoding="opus")
    with pytest.raises(tts.ConfigError, match="8000"):
        tts.FrameSink(encoding="mulaw", samplerate=16000)
    with pytest.raises(tts.ConfigError, match="max_queue_ms"):
        tts.FrameSink(frame_ms=20, max_queue_ms=10)
    with pytest.raises(tts.ConfigError, match="blocksize_ms"):
        tts.FrameSink(frame_ms=0.5)
    assert tts.FrameSink(encoding="alaw").samplerate == 8000


# -- frames and pacing -------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["int16", "float32"])
async def test_frames_are_exactly_the_stream_and_exactly_paced(
    autojump_clock: trio.abc.Clock, encoding: str
) -> None:
    async with open_test_server(realtime_factor=2.0, ttfb_ms=200) as server:
        async with tts.FrameSink(frame_ms=20, encoding=encoding) as sink:
            report, got = await play_collecting(sink, lambda: tts.play(request(server), sink=sink))
            stats = sink.statistics()
    want = server.reference_pcm(TEXT)
    samples = joined(got)
    if encoding == "float32":
        samples = np.round(samples * 32768).astype(np.int16)
    assert np.array_equal(samples[: len(want)], want)
    assert not samples[len(want) :].any()  # only the last frame's padding
    assert len(samples) - len(want) < 480
    frames = [f for _, f in got]
    assert all(f.frames == 480 and f.sample_rate == RATE and f.channels == 1 for f in frames)
    assert [f.index for f in frames] == list(range(frames[0].index, frames[-1].index + 1))
    assert [f.position for f in frames] == [frames[0].position + 480 * i for i in range(len(got))]
    # Real-time pace on trio's clock: one frame every 20 ms, taken when due.
    dues = np.array([f.due for f in frames])
    assert np.allclose(np.diff(dues), 0.020, atol=1e-9)
    assert all(taken - f.due < 1e-6 for taken, f in got)
    assert stats.late_frames == stats.overflow_frames == stats.late_blocks == 0
    assert report.outcome is tts.Outcome.COMPLETED
    assert report.underruns == 0
    # The first frame's due time is when first audio was heard.
    assert report.ttfa_ms is not None


async def test_marks_are_stamped_at_due_time_plus_latency(autojump_clock: trio.abc.Clock) -> None:
    async with open_test_server(realtime_factor=4.0) as server:
        async with tts.FrameSink(latency_ms=60) as sink, trio.open_nursery() as nursery:
            got: list[tuple[float, tts.AudioFrame]] = []
            nursery.start_soon(collect, sink, got)
            async with tts.open_playback(request(server), sink=sink) as playback:
                while sink.audio_format is None or sink.statistics().frames_written < 5000:  # noqa: ASYNC110
                    await trio.sleep(0.01)
                sink.mark(4000)
                await playback.wait()
            heard = sink.heard_time(4000)
            nursery.cancel_scope.cancel()
    frame = next(f for _, f in got if f.position <= 4000 < f.position + f.frames)
    assert heard == pytest.approx(frame.due + 0.060 + (4000 - frame.position) / RATE)


async def test_g711_frames_through_the_sink(autojump_clock: trio.abc.Clock) -> None:
    """mu-law / A-law frames are the G.711 coding of the 8 kHz int16 frames the same
    stream gives, frame for frame: 160 bytes per 20 ms."""
    async with open_test_server(realtime_factor=3.0) as server:
        async with tts.FrameSink(samplerate=8000) as linear:
            _, ref = await play_collecting(linear, lambda: tts.play(request(server), sink=linear))
        for law in _g711.LAWS:
            async with tts.FrameSink(encoding=law) as sink:
                _, got = await play_collecting(sink, lambda: tts.play(request(server), sink=sink))
            assert all(len(f.data) == 160 and f.sample_rate == 8000 for _, f in got)
            assert len(got) == len(ref)
            for (_, g), (_, r) in zip(got, ref, strict=True):
                assert g.data == _g711.encode(r.samples(), law)
            with pytest.raises(ValueError, match="linear"):
                got[0][1].samples()


# -- real time under load ------------------------------------------------------------


async def busy_loop(clock: trio.testing.MockClock, hog_s: float) -> None:
    """A task that keeps the loop busy: each turn it holds the loop for ``hog_s`` of
    (virtual) time, as a CPU-bound task or 200 streams would, and yields only briefly."""
    while True:
        clock.jump(hog_s)
        await trio.lowlevel.checkpoint()


@pytest.mark.parametrize("sink_type", ["null", "frame"])
async def test_a_busy_loop_does_not_stretch_time(
    autojump_clock: trio.testing.MockClock, sink_type: str
) -> None:
    """The regression: a consumer taking one block per wake-up fell behind a busy loop
    for ever (3.97 s of audio took 23 s). Now each wake-up catches up what is due, the
    audio ends on time, and the lateness is counted."""
    # Big pieces from a fast server, so that the feed needs few turns of the loop (each
    # turn costs the busy task's 30 ms here); the consumer needs one turn per 20 ms block.
    async with open_test_server(realtime_factor=8.0, chunk_ms=1000) as server:
        sink: tts.BufferedSink
        sink = tts.NullSink(dtype="int16") if sink_type == "null" else tts.FrameSink()
        async with sink, trio.open_nursery() as nursery:
            if isinstance(sink, tts.FrameSink):
                nursery.start_soon(collect, sink, [])
            report = await tts.play(request(server), sink=sink)  # warm-up: open the sink
            nursery.start_soon(busy_loop, autojump_clock, 0.030)
            t0 = trio.current_time()
            report = await tts.play(request(server), sink=sink)
            elapsed = trio.current_time() - t0
            stats = sink.statistics()
            nursery.cancel_scope.cancel()
    audio_s = report.audio_s
    assert audio_s > 3
    # Time to first audio plus the audio itself, plus a wake-up or two of lateness.
    # (The end adds a few turns of the loop: the drain, the last wait.) One block per
    # wake-up took 1.6 times as long here: 7.4 s.
    assert elapsed < (report.ttfa_ms or 0) / 1000 + audio_s + 0.4, (elapsed, audio_s)
    assert report.underruns == 0
    assert stats.late_blocks > 0
    assert 20 < stats.max_late_ms < 100
    assert report.frames_played == len(server.reference_pcm(TEXT))


async def test_a_late_consumer_is_counted_not_followed(autojump_clock: trio.abc.Clock) -> None:
    async def slow(sink: tts.FrameSink, into: list[Any]) -> None:
        async for frame in sink:
            into.append((trio.current_time(), frame))
            if frame.index % 10 == 0:
                await trio.sleep(0.1)  # a transport that blocks now and then

    async with open_test_server(realtime_factor=3.0) as server:
        async with tts.FrameSink() as sink:
            report, got = await play_collecting(
                sink, lambda: tts.play(request(server), sink=sink), slow
            )
            stats = sink.statistics()
    late = sum(1 for taken, f in got if taken - f.due > 0.020)
    assert late > 10
    assert stats.late_frames == late
    assert stats.overflow_frames == 0  # 100 ms behind is within max_queue_ms
    # The audio kept its real-time pace: due times are still 20 ms apart ...
    assert np.allclose(np.diff([f.due for _, f in got]), 0.020)
    # ... and nothing was lost.
    want = server.reference_pcm(TEXT)
    assert np.array_equal(joined(got)[: len(want)], want)
    assert report.frames_played == len(want)


async def test_a_consumer_that_falls_too_far_behind_loses_the_oldest_frames(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_test_server(realtime_factor=3.0) as server:
        async with tts.FrameSink(max_queue_ms=200) as sink:
            report = await tts.play(request(server), sink=sink)  # nobody takes frames
            assert sink.queued == 10
            stats = sink.statistics()
            newest = [sink.receive_nowait() for _ in range(10)]
            with pytest.raises(trio.WouldBlock):
                sink.receive_nowait()
    sent = math.ceil(report.frames_played / 480)
    assert stats.overflow_frames == sent - 10
    assert newest[-1].position + 480 >= report.frames_played
    assert stats.late_frames == 0  # the counting is of frames taken


async def test_the_iteration_ends_when_the_sink_closes(autojump_clock: trio.abc.Clock) -> None:
    got: list[Any] = []
    async with open_test_server(realtime_factor=4.0) as server, trio.open_nursery() as nursery:
        async with tts.FrameSink() as sink:
            nursery.start_soon(collect, sink, got)
            await tts.play(request(server, "Short."), sink=sink)
        with trio.fail_after(1):
            while True:
                with pytest.raises(trio.EndOfChannel):
                    await sink.receive()
                break
    assert got


async def test_idle_frames_make_a_continuous_stream(autojump_clock: trio.abc.Clock) -> None:
    async with open_test_server(realtime_factor=4.0, ttfb_ms=300) as server:
        async with tts.FrameSink(idle_frames=True) as sink:
            _, got = await play_collecting(sink, lambda: tts.play(request(server), sink=sink))
    frames = [f for _, f in got]
    assert [f.index for f in frames] == list(range(len(frames)))
    assert not frames[0].data.strip(b"\0")  # silence before the start threshold
    assert not frames[-1].data.strip(b"\0")  # and after the end


# -- fades and barge-in ---------------------------------------------------------------


async def test_an_underrun_fades_out_and_back_in(autojump_clock: trio.abc.Clock) -> None:
    plan = FaultPlan(stall_after_bytes=96_000, stall_ms=2500)
    async with open_test_server(realtime_factor=1.5, faults=plan) as server:
        async with tts.FrameSink() as sink:
            report, got = await play_collecting(sink, lambda: tts.play(request(server), sink=sink))
    assert report.underruns == 1
    frames = [f for _, f in got]
    gap = next(i for i in range(1, len(frames)) if frames[i].index != frames[i - 1].index + 1)
    before, after = frames[gap - 1].samples()[:, 0], frames[gap].samples()[:, 0]
    fade = 120  # 5 ms at 24 kHz
    last = before[np.flatnonzero(before)[-1] - fade + 1 : np.flatnonzero(before)[-1] + 1]
    assert abs(int(last[-1])) < 0.1 * np.abs(last).max()  # faded out to near zero
    first = after[np.flatnonzero(after)[0] :][:fade]
    assert abs(int(first[0])) < 0.1 * np.abs(after).max()  # faded in from near zero
    assert np.abs(first[-20:]).max() > np.abs(first[:20]).max()


async def test_barge_in_fades_through_the_frame_sink_and_heard_is_true(
    autojump_clock: trio.abc.Clock,
) -> None:
    text = "This is a long utterance that will be interrupted in the middle of it. " * 3
    async with open_test_server(realtime_factor=2.0) as server:
        async with tts.FrameSink() as sink, trio.open_nursery() as nursery:
            got: list[tuple[float, tts.AudioFrame]] = []
            nursery.start_soon(collect, sink, got)
            async with tts.open_speaker(base_url=server.base_url, sink=sink, fade_ms=10) as sp:
                utt = sp.say(text)
                while utt.state is not tts.UtteranceState.PLAYING or not got:  # noqa: ASYNC110
                    await trio.sleep(0.01)
                await trio.sleep(1.0)
                result = await sp.interrupt()
                await trio.sleep(0.5)
            nursery.cancel_scope.cancel()
    samples = joined(got)
    original = server.reference_pcm(text)
    start = int(np.flatnonzero(samples)[0])
    # What the transport got is what the speaker says was heard, to the frame.
    played = samples[start : start + result.frames]
    assert len(played) == result.frames
    assert not samples[start + result.frames :].any()
    fade = 240
    cut = result.frames - fade
    assert np.array_equal(played[:cut], original[:cut])
    tail = original[cut : len(played)]
    ratio = played[cut:] / np.where(tail == 0, 1, tail)
    assert ratio[0] > 0.9
    assert abs(ratio[-1]) < 0.1
    assert result.silence_ms is not None
    assert result.silence_ms <= 20 + 10 + 1


# -- many streams ---------------------------------------------------------------------


async def test_32_streams_and_a_stalled_one_do_not_hold_each_other_up(
    autojump_clock: trio.abc.Clock,
) -> None:
    """32 concurrent streams into frame sinks in one process, one of them against a
    server that stalls for 3 s and one whose consumer blocks: every other stream
    starts, plays and ends exactly as if it were alone."""
    plan = FaultPlan(stall_after_bytes=48_000, stall_ms=3000, stall_every_request=True)
    results: dict[int, tuple[tts.PlaybackReport, tts.SinkStatistics, list[Any]]] = {}

    async def one(i: int, server: Any) -> None:
        consumer = collect
        if i == 1:

            async def consumer(sink: tts.FrameSink, into: list[Any]) -> None:
                await trio.sleep_forever()  # never takes a frame

        async with tts.FrameSink() as sink:
            report, got = await play_collecting(
                sink, lambda: tts.play(request(server), sink=sink), consumer
            )
            results[i] = (report, sink.statistics(), got)

    async with (
        open_test_server(realtime_factor=2.0, ttfb_ms=200) as good,
        open_test_server(realtime_factor=2.0, ttfb_ms=200, faults=plan) as stalled,
    ):
        async with trio.open_nursery() as nursery:
            for i in range(32):
                nursery.start_soon(one, i, stalled if i == 0 else good)
    want = good.reference_pcm(TEXT)
    ttfas = {results[i][0].ttfa_ms for i in range(2, 32)}
    assert len(ttfas) == 1  # all the same: nobody waited for anybody
    for i in range(2, 32):
        report, stats, got = results[i]
        assert report.underruns == 0
        assert stats.late_frames == 0
        assert stats.late_blocks == 0
        assert np.array_equal(joined(got)[: len(want)], want)
    stalled_report = results[0][0]
    assert stalled_report.underruns == 1
    assert stalled_report.outcome is tts.Outcome.COMPLETED
    assert results[1][1].overflow_frames > 0  # the blocked consumer's frames were dropped
    assert results[1][0].underruns == 0
