"""Retries, stalls and resumes, scripted with httpx.MockTransport under autojump_clock."""

from __future__ import annotations

import random
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
import trio

import trio_tts_stream as tts
from trio_tts_stream._resume import OverlapSkipper, PrefixDigest, Verdict
from trio_tts_stream._retry import RetryPolicy, RetryState, is_retryable

RATE = 24000


def speech(seconds: float, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return (
        (rng.standard_normal(int(seconds * RATE)) * 3000)
        .clip(-30000, 30000)
        .astype("<i2")
        .tobytes()
    )


class Body(httpx.AsyncByteStream):
    """A response body sent in 4800-byte pieces every 20 ms, failing as scripted."""

    def __init__(
        self,
        data: bytes,
        *,
        drop_at: int | None = None,
        stall_at: int | None = None,
        stall_s: float = 0.0,
    ) -> None:
        self.data, self.drop_at, self.stall_at, self.stall_s = data, drop_at, stall_at, stall_s

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self.data), 4800):
            if self.drop_at is not None and i >= self.drop_at:
                raise httpx.ReadError("connection reset by peer (scripted)")
            if self.stall_at is not None and i >= self.stall_at:
                await trio.sleep(self.stall_s)
                self.stall_at = None
            yield self.data[i : i + 4800]
            await trio.sleep(0.02)


Script = Callable[[int, httpx.Request], httpx.Response]


def client_for(script: Script) -> tuple[httpx.AsyncClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return script(len(seen), request)

    return httpx.AsyncClient(transport=httpx.MockTransport(handler)), seen


async def play_to_wav(
    source: tts.Source,
    client: httpx.AsyncClient,
    path: Path,
    config: tts.StreamConfig | None = None,
) -> tts.PlaybackReport:
    async with client, tts.WavFileSink(path) as sink:
        return await tts.play(
            source, sink=sink, client=client, config=config, response_format="pcm"
        )


def wav_bytes(path: Path) -> bytes:
    with wave.open(str(path)) as w:
        data: bytes = w.readframes(w.getnframes())
    return data


REQUEST = tts.SpeechRequest("hello", base_url="https://tts.example/v1")


async def test_5xx_then_success_is_retried_transparently(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    data = speech(1.0)

    def script(n: int, request: httpx.Request) -> httpx.Response:
        if n <= 2:
            return httpx.Response(503, json={"error": {"message": "overloaded"}})
        return httpx.Response(200, stream=Body(data), headers={"content-type": "audio/pcm"})

    client, seen = client_for(script)
    report = await play_to_wav(REQUEST, client, tmp_path / "o.wav")
    assert len(seen) == 3
    assert report.retries == 2
    assert report.reconnects == 0
    assert wav_bytes(tmp_path / "o.wav") == data


async def test_retry_after_is_honoured(autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    times: list[float] = []

    def script(n: int, request: httpx.Request) -> httpx.Response:
        times.append(trio.current_time())
        if n == 1:
            return httpx.Response(
                429, json={"error": {"message": "slow down"}}, headers={"retry-after": "3"}
            )
        return httpx.Response(200, stream=Body(speech(0.2)))

    client, _ = client_for(script)
    report = await play_to_wav(REQUEST, client, tmp_path / "o.wav")
    assert report.retries == 1
    assert times[1] - times[0] >= 3.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_not_retried(status: int, autojump_clock: trio.abc.Clock) -> None:
    client, seen = client_for(
        lambda n, r: httpx.Response(status, json={"error": {"message": "no"}})
    )
    async with client, tts.NullSink() as sink:
        with pytest.raises(tts.HTTPStatusError):
            await tts.play(REQUEST, sink=sink, client=client)
    assert len(seen) == 1


async def test_retries_are_bounded(autojump_clock: trio.abc.Clock) -> None:
    client, seen = client_for(lambda n, r: httpx.Response(502, json={"error": {"message": "bad"}}))
    config = tts.StreamConfig(max_attempts=4)
    async with client, tts.NullSink() as sink:
        with pytest.raises(tts.ServerError, match="gave up after 4 attempts"):
            await tts.play(REQUEST, sink=sink, client=client, config=config)
    assert len(seen) == 4


async def test_drop_mid_stream_resumes_post_without_loss_or_repeat(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    data = speech(3.0, seed=1)
    drops = {1: 4800 * 10, 2: 4800 * 20}  # deterministic server, drops twice

    def script(n: int, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Body(data, drop_at=drops.get(n)))

    client, seen = client_for(script)
    report = await play_to_wav(REQUEST, client, tmp_path / "o.wav")
    assert len(seen) == 3
    assert report.reconnects == 2
    assert report.skipped_overlap_frames == (4800 * 10 + 4800 * 20) // 2
    assert report.outcome is tts.Outcome.COMPLETED
    assert wav_bytes(tmp_path / "o.wav") == data


async def test_stall_is_detected_and_recovered(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    data = speech(2.0, seed=2)

    def script(n: int, request: httpx.Request) -> httpx.Response:
        stall = 4800 * 8 if n == 1 else None
        return httpx.Response(200, stream=Body(data, stall_at=stall, stall_s=60.0))

    client, _ = client_for(script)
    start = trio.current_time()
    report = await play_to_wav(
        REQUEST, client, tmp_path / "o.wav", tts.StreamConfig(dead_timeout_s=1.5)
    )
    assert report.stalls == 1
    assert report.reconnects == 1
    assert trio.current_time() - start < 20  # not waited out (60 s)
    assert wav_bytes(tmp_path / "o.wav") == data


async def test_mismatching_resume_is_an_error_by_default(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    def script(n: int, request: httpx.Request) -> httpx.Response:
        # A non-deterministic server: each request renders different audio.
        return httpx.Response(
            200, stream=Body(speech(2.0, seed=n), drop_at=4800 * 5 if n == 1 else None)
        )

    client, _ = client_for(script)
    with pytest.raises(tts.ResumeMismatchError, match="different audio") as info:
        await play_to_wav(REQUEST, client, tmp_path / "o.wav")
    assert info.value.report is not None
    assert info.value.report.frames_played == 4800 * 5 // 2  # what arrived was played


async def test_mismatching_resume_can_restart(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    bodies = {n: speech(1.0, seed=n) for n in (1, 2, 3)}

    def script(n: int, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Body(bodies[n], drop_at=4800 * 3 if n == 1 else None))

    client, seen = client_for(script)
    report = await play_to_wav(
        REQUEST, client, tmp_path / "o.wav", tts.StreamConfig(resume_mismatch="restart")
    )
    assert report.restarted
    assert len(seen) == 3
    # Played: the first 3 pieces of body 1, then all of body 3 (body 2 was only checked).
    assert wav_bytes(tmp_path / "o.wav") == bodies[1][: 4800 * 3] + bodies[3]


async def test_get_source_resumes_with_range(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    data = speech(2.0, seed=3)
    etag = '"v1-abc"'

    def script(n: int, request: httpx.Request) -> httpx.Response:
        headers = {"etag": etag, "accept-ranges": "bytes", "content-type": "audio/pcm"}
        rng = request.headers.get("range")
        if rng is None:
            return httpx.Response(200, stream=Body(data, drop_at=4800 * 6), headers=headers)
        assert request.headers.get("if-range") == etag
        start = int(rng.removeprefix("bytes=").rstrip("-"))
        headers["content-range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        return httpx.Response(206, stream=Body(data[start:]), headers=headers)

    client, seen = client_for(script)
    report = await play_to_wav("https://cdn.example/a.pcm", client, tmp_path / "o.wav")
    assert report.reconnects == 1
    assert report.resumed_bytes == 4800 * 6
    assert report.skipped_overlap_frames == 0
    assert seen[1].headers["range"] == f"bytes={4800 * 6}-"
    assert wav_bytes(tmp_path / "o.wav") == data


async def test_get_without_range_support_falls_back_to_verified_overlap(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    data = speech(1.5, seed=4)

    def script(n: int, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Body(data, drop_at=4800 * 4 if n == 1 else None))

    client, _ = client_for(script)
    report = await play_to_wav("https://cdn.example/a.pcm", client, tmp_path / "o.wav")
    assert report.resumed_bytes == 0
    assert report.skipped_overlap_frames == 4800 * 4 // 2
    assert wav_bytes(tmp_path / "o.wav") == data


# -- the pure parts -------------------------------------------------------------------


def test_retryable_classification() -> None:
    def status(code: int) -> tts.HTTPStatusError:
        return tts.HTTPStatusError("x", status_code=code)

    assert all(is_retryable(status(c)) for c in (408, 429, 500, 502, 503, 504))
    assert not any(is_retryable(status(c)) for c in (400, 401, 403, 404, 422))
    assert is_retryable(tts.NetworkError("reset"))
    assert is_retryable(tts.StreamTimeout("stalled"))
    assert not is_retryable(tts.TLSError("untrusted"))
    assert not is_retryable(tts.DecodeError("bad"))


def test_backoff_is_full_jitter_bounded_and_deadlined() -> None:
    policy = RetryPolicy(max_attempts=6, base_s=0.5, cap_s=3.0, deadline_s=100.0)
    state = RetryState(policy, started_at=0.0, rng=random.Random(1))
    exc = tts.NetworkError("reset")
    delays = [state.next_delay(exc, 0.0) for _ in range(6)]
    assert delays[-1] is None  # 6 attempts in all
    ceilings = [0.5, 1.0, 2.0, 3.0, 3.0]
    for delay, ceiling in zip(delays, ceilings, strict=False):
        assert delay is not None
        assert 0.0 <= delay <= ceiling
    late = RetryState(policy, started_at=0.0, rng=random.Random(1))
    assert late.next_delay(exc, 99.99 + 0.5) is None or policy.deadline_s >= 99.99


def test_overlap_skipper_any_blocking() -> None:
    rng = np.random.default_rng(0)
    played = rng.standard_normal((1000, 1)).astype(np.float32)
    digest = PrefixDigest()
    for piece in np.array_split(played, 7):
        digest.update(piece)
    again = np.concatenate([played, rng.standard_normal((500, 1)).astype(np.float32)])
    for cuts in ([], [1, 999, 1000, 1001], [333, 666]):
        skipper = OverlapSkipper(digest.frames, digest.crc)
        out = [b for b in (skipper.feed(p) for p in np.split(again, cuts)) if b is not None]
        assert skipper.verdict is Verdict.MATCH
        np.testing.assert_array_equal(np.concatenate(out), again[1000:])
    other = again.copy()
    other[500] += 0.001
    skipper = OverlapSkipper(digest.frames, digest.crc)
    assert skipper.feed(other) is None
    assert skipper.verdict is Verdict.MISMATCH


async def test_a_slow_first_byte_is_not_a_stall(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    """A server that thinks for 5 s before its first audio byte is waited for (read
    timeout), not treated as stalled (stall_timeout_s applies once audio flows)."""
    data = speech(0.5)

    class Thinking(Body):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            await trio.sleep(5.0)
            async for piece in super().__aiter__():
                yield piece

    client, seen = client_for(lambda n, r: httpx.Response(200, stream=Thinking(data)))
    report = await play_to_wav(REQUEST, client, tmp_path / "o.wav")
    assert len(seen) == 1
    assert report.stalls == 0
    assert wav_bytes(tmp_path / "o.wav") == data
