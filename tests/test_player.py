"""The player under trio's autojump clock, with NullSink/WavFileSink and fake sources."""

from __future__ import annotations

import json
import wave
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import trio

import trio_tts_stream as tts
from trio_tts_stream import Cause, Outcome, PlaybackState

RATE = 24000
ONE_ATTEMPT = tts.StreamConfig(max_attempts=1)


def tone(seconds: float, seed: int = 0) -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    return (rng.standard_normal(n) * 3000).clip(-32000, 32000).astype(np.int16)


async def paced(
    data: bytes, *, chunk: int, interval: float, delay: float = 0.0, fail_after: int | None = None
) -> AsyncIterator[bytes]:
    """Yield ``data`` in ``chunk``-byte pieces every ``interval`` seconds."""
    await trio.sleep(delay)
    for i in range(0, len(data), chunk):
        if fail_after is not None and i >= fail_after:
            raise tts.NetworkError("connection reset (scripted)")
        yield data[i : i + chunk]
        await trio.sleep(interval)


def causes(report: tts.PlaybackReport) -> list[str]:
    return [e.cause for e in report.timeline]


async def test_streams_fast_source_without_underrun(autojump_clock: trio.abc.Clock) -> None:
    pcm = tone(3.0).tobytes()
    # 4800 bytes = 100 ms of audio every 25 ms: 4x real time, first byte at 300 ms.
    source = paced(pcm, chunk=4800, interval=0.025, delay=0.3)
    async with tts.NullSink() as sink:
        report = await tts.play(source, sink=sink, config=tts.StreamConfig(), response_format="pcm")
    assert report.outcome is Outcome.COMPLETED
    assert report.underruns == 0
    assert report.frames_played == len(pcm) // 2
    assert report.audio_s == pytest.approx(3.0)
    assert causes(report) == ["threshold_reached", "end_of_stream", "drained"]
    assert report.ttfb_ms == pytest.approx(300.0)
    assert report.ttfa_ms is not None
    assert report.ttfb_ms is not None
    # Two chunks (200 ms) reach the 150 ms threshold at 325 ms; the sink's next block
    # boundary (20 ms blocks) is the moment it is heard.
    assert report.ttfa_ms - report.ttfb_ms <= report.buffer_ms + 20 + 1e-6
    assert report.buffer_ms_min is not None
    assert report.buffer_ms_min > 0
    # Finished when the last sample was heard: first audio + 3 s of audio.
    assert report.timeline[-1].t_ms == pytest.approx(report.ttfa_ms + 3000, abs=21)


async def test_slow_source_rebuffers_and_loses_nothing(autojump_clock: trio.abc.Clock) -> None:
    pcm = tone(2.0).tobytes()
    # 100 ms of audio every 125 ms: 0.8x real time.
    source = paced(pcm, chunk=4800, interval=0.125)
    config = tts.StreamConfig(buffer_ms=150, rebuffer_ms=300)
    async with tts.NullSink() as sink:
        report = await tts.play(source, sink=sink, config=config, response_format="pcm")
    assert report.outcome is Outcome.COMPLETED
    assert report.underruns >= 1
    assert report.underrun_ms > 0
    assert report.frames_played == len(pcm) // 2
    states = [e.state for e in report.timeline]
    assert PlaybackState.REBUFFERING in states
    # Every rebuffer resumed only once 300 ms were buffered, or at end of stream.
    for before, after in zip(report.timeline, report.timeline[1:], strict=False):
        if before.state is PlaybackState.REBUFFERING:
            assert after.cause in ("rebuffered", "end_of_stream")


async def test_short_utterance_starts_at_end_of_stream(autojump_clock: trio.abc.Clock) -> None:
    pcm = tone(0.1).tobytes()  # below the 150 ms threshold
    async with tts.NullSink() as sink:
        report = await tts.play(
            paced(pcm, chunk=4096, interval=0.01), sink=sink, response_format="pcm"
        )
    assert causes(report) == ["eos_before_threshold", "drained"]
    assert report.frames_played == len(pcm) // 2
    assert report.outcome is Outcome.COMPLETED


async def test_an_empty_source_fails_instead_of_completing(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Never a silent success: an utterance that produced no audio is not "completed".
    async with tts.NullSink() as sink:
        with pytest.raises(tts.DecodeError, match="empty body") as info:
            await tts.play(paced(b"", chunk=1, interval=0.01), sink=sink)
    report = info.value.report
    assert report is not None
    assert report.outcome is Outcome.FAILED
    assert report.frames_played == 0
    assert report.ttfa_ms is None


async def test_cancel_silences_within_one_block(autojump_clock: trio.abc.Clock) -> None:
    pcm = tone(5.0).tobytes()
    async with tts.NullSink() as sink:
        async with tts.open_playback(
            paced(pcm, chunk=9600, interval=0.01), sink=sink, response_format="pcm"
        ) as pb:
            while pb.statistics().played_s < 1.0:  # noqa: ASYNC110 (polling a statistic)
                await trio.sleep(0.01)
            assert pb.state is PlaybackState.PLAYING
            pb.cancel()
        report = pb.report
        after_cancel = sink.statistics()
        assert after_cancel.buffered == 0
        await trio.sleep(1.0)
        assert sink.statistics().frames_played == after_cancel.frames_played
    assert report.outcome is Outcome.CANCELLED
    assert causes(report)[-1] == "cancelled"
    assert 1.0 * RATE <= report.frames_played <= 1.05 * RATE


async def test_outer_cancel_scope_stops_playback(autojump_clock: trio.abc.Clock) -> None:
    pcm = tone(5.0).tobytes()
    async with tts.NullSink() as sink:
        with trio.move_on_after(1.0) as scope:
            await tts.play(paced(pcm, chunk=9600, interval=0.01), sink=sink, response_format="pcm")
        assert scope.cancelled_caught
        played = sink.statistics().frames_played
        assert sink.statistics().buffered == 0
        await trio.sleep(0.5)
        assert sink.statistics().frames_played == played
        assert played <= 1.0 * RATE  # at most what was due by the cancel (a tie at 1.0 s)


async def test_download_failure_plays_what_arrived_then_raises(
    autojump_clock: trio.abc.Clock,
) -> None:
    pcm = tone(2.0).tobytes()
    source = paced(pcm, chunk=4800, interval=0.02, fail_after=4800 * 5)
    async with tts.NullSink() as sink:
        with pytest.raises(tts.NetworkError, match="scripted") as info:
            await tts.play(source, sink=sink, response_format="pcm")
    report = info.value.report
    assert report is not None
    assert report.outcome is Outcome.FAILED
    assert report.frames_played == 5 * 2400
    assert causes(report)[-1] == "failed"


async def test_backpressure_bounds_read_ahead(autojump_clock: trio.abc.Clock) -> None:
    """A source much faster than real time is read only as fast as it plays."""
    pcm = tone(30.0).tobytes()
    read_log: list[tuple[float, int]] = []

    async def instant() -> AsyncIterator[bytes]:
        total = 0
        for i in range(0, len(pcm), 4096):
            total += len(pcm[i : i + 4096])
            read_log.append((trio.current_time(), total))
            yield pcm[i : i + 4096]
            await trio.lowlevel.checkpoint()

    config = tts.StreamConfig(max_buffer_s=1.0, queue_blocks=4)
    start = trio.current_time()
    async with tts.NullSink(buffer_s=1.0) as sink:
        report = await tts.play(instant(), sink=sink, config=config, response_format="pcm")
    assert report.frames_played == len(pcm) // 2
    # Bytes read by time t never exceed what was played by t plus the ring (1 s), the
    # channel (4 blocks + the one in hand) and one read, in seconds of audio.
    ahead_limit_s = 1.0 + 6 * 4096 / 2 / RATE
    for t, total in read_log:
        played_by_t = max(0.0, t - start)
        assert total / 2 / RATE <= played_by_t + ahead_limit_s + 0.05


async def test_buffered_mode_downloads_everything_first(autojump_clock: trio.abc.Clock) -> None:
    pcm = tone(1.0).tobytes()
    source = paced(pcm, chunk=4800, interval=0.05)  # 10 chunks over 0.5 s
    config = tts.StreamConfig(streaming=False)
    async with tts.NullSink() as sink:
        report = await tts.play(source, sink=sink, config=config, response_format="pcm")
    assert report.mode == "buffered"
    assert report.frames_played == len(pcm) // 2
    assert report.ttfa_ms is not None
    assert report.ttfa_ms >= 450


async def test_wav_file_sink_stream_and_buffered_identical(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    samples = tone(1.3, seed=7)
    outputs = []
    for streaming in (True, False):
        path = tmp_path / f"out-{streaming}.wav"
        async with tts.WavFileSink(path) as sink:
            await tts.play(
                paced(samples.tobytes(), chunk=999, interval=0.01),
                sink=sink,
                config=tts.StreamConfig(streaming=streaming),
                response_format="pcm",
            )
        with wave.open(str(path)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
            outputs.append(np.frombuffer(w.readframes(w.getnframes()), dtype="<i2"))
    np.testing.assert_array_equal(outputs[0], samples)
    np.testing.assert_array_equal(outputs[1], samples)


async def test_wav_source_is_sniffed(autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    samples = tone(0.5, seed=3)
    path = tmp_path / "in.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(samples.tobytes())
    async with tts.NullSink() as sink:
        report = await tts.play(paced(path.read_bytes(), chunk=500, interval=0.005), sink=sink)
    assert report.format == "wav"
    assert report.sample_rate == 16000
    assert report.frames_played == len(samples)


def _transport(
    status: int, body: Mapping[str, object], seen: list[httpx.Request]
) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=body)

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    ("status", "exc_type", "hint"),
    [
        (400, tts.BadRequestError, "rejected"),
        (401, tts.AuthenticationError, "API key"),
        (403, tts.AuthenticationError, "API key"),
        (404, tts.NotFoundError, "base-url"),
        (429, tts.RateLimitError, "rate limited"),
        (500, tts.ServerError, "server failed"),
    ],
)
async def test_http_errors_are_typed_and_never_leak_the_key(
    status: int, exc_type: type[tts.HTTPStatusError], hint: str
) -> None:
    key = "sk-proj-SECRETSECRETSECRET1234"
    seen: list[httpx.Request] = []
    body = {
        "error": {
            "message": f"Incorrect API key provided: {key}. Voice 'zzz' unknown",
            "type": "invalid_request_error",
        }
    }
    request = tts.SpeechRequest(input="hi", base_url="https://tts.example/v1", api_key=key)
    async with (
        httpx.AsyncClient(transport=_transport(status, body, seen)) as client,
        tts.NullSink() as sink,
    ):
        with pytest.raises(exc_type) as info:
            await tts.play(request, sink=sink, client=client, config=ONE_ATTEMPT)
    err = info.value
    assert err.status_code == status
    assert hint in str(err)
    assert "Voice 'zzz' unknown" in str(err)
    for text in (str(err), repr(err), err.server_message, repr(request)):
        assert "SECRETSECRET" not in text
    assert err.report is not None
    assert err.report.outcome is Outcome.FAILED
    sent = seen[0]
    assert sent.headers["authorization"] == f"Bearer {key}"
    assert sent.url == "https://tts.example/v1/audio/speech"
    assert json.loads(sent.content) == {
        "model": "gpt-4o-mini-tts",
        "input": "hi",
        "voice": "alloy",
        "response_format": "pcm",
    }


async def test_connection_refused_is_network_error() -> None:
    with trio.socket.socket() as s:  # find a port nobody listens on
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    request = tts.SpeechRequest(input="hi", base_url=f"http://127.0.0.1:{port}/v1")
    async with tts.NullSink() as sink:
        with pytest.raises(tts.NetworkError, match="cannot connect"):
            await tts.play(request, sink=sink)


async def test_open_playback_exposes_live_statistics(autojump_clock: trio.abc.Clock) -> None:
    pcm = tone(1.0).tobytes()
    seen_states = set()
    async with tts.NullSink() as sink:
        async with tts.open_playback(
            paced(pcm, chunk=2400, interval=0.02), sink=sink, response_format="pcm"
        ) as pb:
            while True:
                stats = pb.statistics()
                seen_states.add(stats.state)
                assert 0 <= stats.played_s <= stats.received_s + 1e-9
                if stats.state is PlaybackState.DONE:
                    break
                await trio.sleep(0.01)
        report = await pb.wait()
    assert {PlaybackState.BUFFERING, PlaybackState.PLAYING, PlaybackState.DONE} <= seen_states
    assert report.outcome is Outcome.COMPLETED
    with pytest.raises(tts.StateTransitionError):
        pb._ctl.machine.fire(Cause.UNDERRUN, 0.0)


async def test_get_url_source_plays_wav(autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    samples = tone(0.4, seed=11)
    path = tmp_path / "clip.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=path.read_bytes(), headers={"content-type": "audio/wav"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        async with tts.NullSink() as sink:
            report = await tts.play("https://cdn.example/clip.wav", sink=sink, client=client)
    assert seen[0].method == "GET"
    assert report.format == "wav"
    assert report.frames_played == len(samples)


async def test_underrun_shows_in_the_timeline_while_the_network_is_silent(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The state goes to REBUFFERING when the device runs dry, not when data returns."""
    pcm = tone(2.0).tobytes()

    async def gap() -> AsyncIterator[bytes]:
        yield pcm[:9600]  # 200 ms
        await trio.sleep(3.0)  # silence on the wire
        yield pcm[9600:]

    async with tts.NullSink() as sink:
        config = tts.StreamConfig(stall_timeout_s=10)
        async with tts.open_playback(gap(), sink=sink, config=config, response_format="pcm") as pb:
            await trio.sleep(1.0)
            assert pb.state is PlaybackState.REBUFFERING
        report = pb.report
    underrun = next(e for e in report.timeline if e.cause is tts.Cause.UNDERRUN)
    assert underrun.t_ms < 300  # ~200 ms of audio played, then dry
    assert report.underrun_ms == pytest.approx(2800, abs=40)
