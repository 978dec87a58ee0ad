"""The test server's fault injection and GET audio URLs, seen by a real client (httpx)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import httpx
import pytest
import trio

from trio_tts_stream._exceptions import ConfigError
from trio_tts_stream.server import _encode
from trio_tts_stream.server._ranges import strong_etag
from trio_tts_stream.server._serve_cli import add_serve_arguments, fault_plan, run_serve
from trio_tts_stream.testing import (
    FILES_PATH,
    FaultPlan,
    chunk_schedule,
    open_test_server,
    render_chunks,
    tone_frames,
)

TEXT = "Faults, on purpose."  # 19 characters: 1.235 s of audio, 59280 bytes of pcm
PCM_BYTES = 2 * tone_frames(TEXT)
EPS = 1e-6


def speech(text: str = TEXT, **fields: Any) -> dict[str, Any]:
    return {"model": "tts-1", "input": text, "voice": "alloy", "response_format": "pcm", **fields}


def http_client(base_url: str, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, verify=False, timeout=None, **kwargs)


async def download(
    client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> tuple[httpx.Response, list[tuple[float, int]], bytes, Exception | None]:
    """Send a request and read the body as it comes.

    Returns the response, ``(time, bytes)`` for each read (time from the request), the
    body bytes received, and the exception that ended the body early (or ``None``).
    """
    arrivals: list[tuple[float, int]] = []
    data = bytearray()
    error: Exception | None = None
    start = trio.current_time()
    async with client.stream(method, url, **kwargs) as response:
        try:
            async for piece in response.aiter_raw():
                arrivals.append((trio.current_time() - start, len(piece)))
                data += piece
        except httpx.TransportError as exc:
            error = exc
    return response, arrivals, bytes(data), error


def time_of_byte(arrivals: list[tuple[float, int]], offset: int) -> float:
    total = 0
    for at, size in arrivals:
        total += size
        if total > offset:
            return at
    raise AssertionError(f"byte {offset} never arrived")


# --------------------------------------------------------------------------------------
# Faults on POST /v1/audio/speech


@pytest.mark.parametrize("cut", [0, 1, 960, 1000, PCM_BYTES - 1])
async def test_drop_after_n_body_bytes(cut: int) -> None:
    plan = FaultPlan(drop_after_bytes=(cut, cut + 7))
    async with open_test_server(faults=plan) as srv, http_client(srv.base_url) as client:
        for expected_cut in (cut, cut + 7):
            if expected_cut >= PCM_BYTES:
                break
            response, _, data, error = await download(
                client, "POST", "/audio/speech", json=speech()
            )
            assert response.status_code == 200
            assert isinstance(error, httpx.RemoteProtocolError)
            assert data == srv.render(TEXT)[:expected_cut]
        # The drops are used up: the next request is whole.
        response = await client.post("/audio/speech", json=speech())
        assert response.content == srv.render(TEXT)
    assert [r.fault for r in srv.requests][-1] is None
    assert srv.requests[0].fault == f"dropped after {cut} bytes"
    assert [r.index for r in srv.requests] == list(range(len(srv.requests)))
    assert srv.errors == []


async def test_a_drop_at_or_past_the_end_changes_nothing() -> None:
    plan = FaultPlan(drop_after_bytes=(PCM_BYTES, PCM_BYTES + 1))
    async with open_test_server(faults=plan) as srv, http_client(srv.base_url) as client:
        for _ in range(2):
            response = await client.post("/audio/speech", json=speech())
            assert response.content == srv.render(TEXT)
    assert [r.fault for r in srv.requests] == [None, None]
    assert srv.errors == []


async def test_drop_on_a_paced_body_happens_when_the_next_byte_is_due(
    autojump_clock: trio.abc.Clock,
) -> None:
    plan = FaultPlan(drop_after_bytes=(960 * 10 + 5,))  # 5 bytes into piece 10
    async with (
        open_test_server(faults=plan, ttfb_ms=100, realtime_factor=2.0) as srv,
        http_client(srv.base_url) as client,
    ):
        _, arrivals, data, error = await download(client, "POST", "/audio/speech", json=speech())
    assert isinstance(error, httpx.RemoteProtocolError)
    assert len(data) == 960 * 10 + 5
    # Piece 10 (20 ms of audio at 2x: due 10 ms apart) held the cut: it went at its time.
    assert arrivals[-1][0] == pytest.approx(0.1 + 10 * 0.01, abs=EPS)
    assert srv.errors == []


@pytest.mark.parametrize("response_format", ["mp3", "opus", "wav"])
async def test_drop_in_every_format_releases_the_encoder(
    monkeypatch: pytest.MonkeyPatch, response_format: str
) -> None:
    closed: list[str] = []
    if response_format != "wav":
        encoder = _encode.ENCODERS[response_format]
        close = encoder.close

        def counting_close(self: Any) -> None:
            closed.append(response_format)
            close(self)

        monkeypatch.setattr(encoder, "close", counting_close)
    plan = FaultPlan(drop_after_bytes=(2000,))
    async with open_test_server(faults=plan) as srv, http_client(srv.base_url) as client:
        body = speech(response_format=response_format)
        _, _, data, error = await download(client, "POST", "/audio/speech", json=body)
        assert isinstance(error, httpx.RemoteProtocolError)
        # The server released the encoder before it closed the connection.
        assert closed == ([] if response_format == "wav" else [response_format])
        whole = srv.render(TEXT, response_format=response_format)
        assert data == whole[:2000]
        assert (await client.post("/audio/speech", json=body)).content == whole
    assert srv.errors == []


async def test_truncated_body_with_a_content_length() -> None:
    plan = FaultPlan(truncate_after_bytes=5000)
    async with open_test_server(faults=plan) as srv, http_client(srv.base_url) as client:
        response, _, data, error = await download(
            client, "POST", "/audio/speech", json=speech(response_format="wav")
        )
        whole = srv.render(TEXT, response_format="wav")
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(whole))
        assert "transfer-encoding" not in response.headers
        assert isinstance(error, httpx.RemoteProtocolError)
        assert data == whole[:5000]
        # Only the first body request is truncated; it is chunked again after.
        again = await client.post("/audio/speech", json=speech(response_format="wav"))
        assert again.content == whole
        assert again.headers["transfer-encoding"] == "chunked"
    assert srv.requests[0].fault == "truncated after 5000 bytes"
    assert srv.errors == []


async def test_close_before_headers_then_success() -> None:
    plan = FaultPlan(close_before_headers=2)
    async with open_test_server(faults=plan) as srv, http_client(srv.base_url) as client:
        for _ in range(2):
            with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
                await client.post("/audio/speech", json=speech())
        response = await client.post("/audio/speech", json=speech())
        assert response.content == srv.render(TEXT)
    assert [r.fault for r in srv.requests] == ["closed before the headers"] * 2 + [None]
    assert [r.status for r in srv.requests][2] == 200
    assert srv.errors == []


@pytest.mark.parametrize(("status", "kind"), [(503, "server_error"), (429, "requests")])
async def test_fail_first_with_retry_after(status: int, kind: str) -> None:
    plan = FaultPlan(fail_first=2, fail_status=status, retry_after=1.5)
    async with open_test_server(faults=plan) as srv, http_client(srv.base_url) as client:
        for _ in range(2):
            response = await client.post("/audio/speech", json=speech())
            assert response.status_code == status
            assert response.headers["retry-after"] == "1.5"
            assert response.headers["retry-after-ms"] == "1500"
            assert response.headers["content-type"] == "application/json"
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert error["type"] == kind
            assert error["message"]
        # The same connection (kept alive) then gets the audio.
        response = await client.post("/audio/speech", json=speech())
        assert response.status_code == 200
        assert response.content == srv.render(TEXT)
    assert [r.status for r in srv.requests] == [status, status, 200]
    assert srv.requests[0].fault == f"failed with {status} (Retry-After 1.5)"
    assert srv.errors == []


async def test_faults_count_every_request_in_order() -> None:
    plan = FaultPlan(close_before_headers=1, fail_first=1, drop_after_bytes=(100,))
    async with open_test_server(faults=plan) as srv, http_client(srv.base_url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post("/audio/speech", json=speech())
        assert (await client.post("/audio/speech", json=speech())).status_code == 503
        # Body request 0 is a 400: its drop is used up, the error is sent whole.
        bad = await client.post("/audio/speech", json=speech(voice="bob"))
        assert bad.status_code == 400
        assert bad.json()["error"]["param"] == "voice"
        response = await client.post("/audio/speech", json=speech())
        assert response.content == srv.render(TEXT)
        assert [r.index for r in srv.requests] == [0, 1, 2, 3]
        assert [r.status for r in srv.requests] == [0, 503, 400, 200]
        assert [r.fault for r in srv.requests] == [
            "closed before the headers",
            "failed with 503",
            None,
            None,
        ]
        # Clearing the record does not restart the numbering.
        srv.requests.clear()
        await client.post("/audio/speech", json=speech())
        assert [r.index for r in srv.requests] == [4]
    assert srv.errors == []


async def test_stall_is_a_gap_in_arrival(autojump_clock: trio.abc.Clock) -> None:
    plan = FaultPlan(stall_after_bytes=5000, stall_ms=700)
    async with (
        open_test_server(faults=plan, ttfb_ms=50) as srv,
        http_client(srv.base_url) as client,
    ):
        _, arrivals, data, error = await download(client, "POST", "/audio/speech", json=speech())
        assert error is None
        assert data == srv.render(TEXT)
        assert time_of_byte(arrivals, 0) == pytest.approx(0.05, abs=EPS)
        assert time_of_byte(arrivals, 4999) == pytest.approx(0.05, abs=EPS)
        assert time_of_byte(arrivals, 5000) == pytest.approx(0.75, abs=EPS)
        assert arrivals[-1][0] == pytest.approx(0.75, abs=EPS)
        # The first request only: the next one is not stalled.
        _, arrivals, _, _ = await download(client, "POST", "/audio/speech", json=speech())
        assert arrivals[-1][0] == pytest.approx(0.05, abs=EPS)
    assert [r.fault for r in srv.requests] == ["stalled 700 ms after 5000 bytes", None]
    assert srv.errors == []


async def test_stall_every_request_on_a_paced_body(autojump_clock: trio.abc.Clock) -> None:
    plan = FaultPlan(stall_after_bytes=960 * 3, stall_ms=250, stall_every_request=True)
    async with (
        open_test_server(faults=plan, realtime_factor=1.0) as srv,
        http_client(srv.base_url) as client,
    ):
        for _ in range(2):
            _, arrivals, data, _ = await download(client, "POST", "/audio/speech", json=speech())
            assert data == srv.render(TEXT)
            n = len(render_chunks(TEXT))
            due = chunk_schedule(n, ttfb_ms=0, chunk_ms=20, realtime_factor=1.0)
            # Piece 3 comes 20 ms + 250 ms after piece 2; the rest keeps the pace.
            assert time_of_byte(arrivals, 960 * 3 - 1) == pytest.approx(due[2], abs=EPS)
            assert time_of_byte(arrivals, 960 * 3) == pytest.approx(due[3] + 0.25, abs=EPS)
            assert arrivals[-1][0] == pytest.approx(due[-1] + 0.25, abs=EPS)
    assert srv.errors == []


async def test_bandwidth_limits_the_body(autojump_clock: trio.abc.Clock) -> None:
    kbps = 256.0
    async with (
        open_test_server(faults=FaultPlan(bandwidth_kbps=kbps), ttfb_ms=20) as srv,
        http_client(srv.base_url) as client,
    ):
        _, arrivals, data, _ = await download(client, "POST", "/audio/speech", json=speech())
    assert data == srv.render(TEXT)
    assert srv.requests[0].fault == "limited to 256 kbit/s"
    duration = PCM_BYTES * 8 / (kbps * 1000)  # 1.85 s for 1.235 s of audio
    assert arrivals[-1][0] == pytest.approx(0.02 + duration, abs=1e-3)
    # Steady: half the bytes by half the time.
    half = time_of_byte(arrivals, PCM_BYTES // 2)
    assert half == pytest.approx(0.02 + duration / 2, abs=0.011)
    assert srv.errors == []


async def test_bandwidth_on_top_of_realtime_pacing(autojump_clock: trio.abc.Clock) -> None:
    # 4x real time is 1536 kbit/s of pcm: a 384 kbit/s link sets the pace; a 10 Mbit/s
    # link does not (the body ends with its audio, plus one piece's time on the link).
    async with (
        open_test_server(faults=FaultPlan(bandwidth_kbps=384), realtime_factor=4.0) as slow,
        http_client(slow.base_url) as client,
    ):
        _, arrivals, data, _ = await download(client, "POST", "/audio/speech", json=speech())
        assert data == slow.render(TEXT)
        assert arrivals[-1][0] == pytest.approx(PCM_BYTES * 8 / 384000, abs=1e-3)
    async with (
        open_test_server(faults=FaultPlan(bandwidth_kbps=10000), realtime_factor=4.0) as fast,
        http_client(fast.base_url) as client,
    ):
        _, arrivals, _, _ = await download(client, "POST", "/audio/speech", json=speech())
        n = len(render_chunks(TEXT))
        due = chunk_schedule(n, ttfb_ms=0, chunk_ms=20, realtime_factor=4.0)
        last_piece = PCM_BYTES - 960 * (n - 1)
        assert arrivals[-1][0] == pytest.approx(due[-1] + last_piece * 8 / 1e7, abs=1e-4)


async def test_jitter_is_deterministic_with_the_seed(autojump_clock: trio.abc.Clock) -> None:
    async def arrival_times(seed: int) -> list[list[float]]:
        plan = FaultPlan(seed=seed, jitter_ms=15)
        out = []
        async with (
            open_test_server(faults=plan, realtime_factor=2.0) as srv,
            http_client(srv.base_url) as client,
        ):
            for _ in range(2):
                _, arrivals, data, _ = await download(
                    client, "POST", "/audio/speech", json=speech()
                )
                assert data == srv.render(TEXT)
                out.append([round(at, 9) for at, _ in arrivals])
        return out

    first, again, other = await arrival_times(1), await arrival_times(1), await arrival_times(2)
    assert first == again
    assert first != other
    assert first[0] != first[1]  # each request has its own numbers
    n = len(render_chunks(TEXT))
    due = chunk_schedule(n, ttfb_ms=0, chunk_ms=20, realtime_factor=2.0)
    # Within 15 ms of the schedule, and not all on it.
    assert due[-1] - EPS <= first[0][-1] < due[-1] + 0.015
    assert any(at > d + 1e-3 for at, d in zip(first[0], due, strict=False))


# --------------------------------------------------------------------------------------
# GET audio URLs: Range, 206, ETag


async def test_audio_url_serves_the_rendered_body() -> None:
    async with open_test_server() as srv, http_client(srv.base_url) as client:
        url = srv.audio_url(TEXT, voice="nova", response_format="wav")
        assert url.startswith(srv.base_url + "/audio/files/")
        assert srv.audio_url(TEXT, voice="nova", response_format="wav") == url
        response = await client.get(url)
        whole = srv.render(TEXT, voice="nova", response_format="wav")
        assert response.status_code == 200
        assert response.content == whole
        assert response.headers["content-type"] == "audio/wav"
        assert response.headers["content-length"] == str(len(whole))
        assert response.headers["accept-ranges"] == "bytes"
        assert response.headers["etag"] == strong_etag(whole)
        assert "transfer-encoding" not in response.headers
        head = await client.head(url)
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["content-length"] == str(len(whole))
        assert head.headers["etag"] == strong_etag(whole)
    assert [r.method for r in srv.requests] == ["GET", "HEAD"]
    assert srv.errors == []


async def test_ranges() -> None:
    async with open_test_server() as srv, http_client(srv.base_url) as client:
        url = srv.audio_url(TEXT)
        whole = srv.render(TEXT)
        etag = strong_etag(whole)
        total = len(whole)

        async def get(**headers: str) -> httpx.Response:
            return await client.get(url, headers=headers)

        response = await get(Range="bytes=1000-")
        assert response.status_code == 206
        assert response.content == whole[1000:]
        assert response.headers["content-range"] == f"bytes 1000-{total - 1}/{total}"
        assert response.headers["content-length"] == str(total - 1000)
        assert response.headers["etag"] == etag
        response = await get(Range="bytes=10-19")
        assert (response.status_code, response.content) == (206, whole[10:20])
        response = await get(Range="bytes=-100")
        assert (response.status_code, response.content) == (206, whole[-100:])
        response = await get(Range="bytes=1000-", **{"If-Range": etag})
        assert (response.status_code, response.content) == (206, whole[1000:])
        response = await get(Range="bytes=1000-", **{"If-Range": '"stale"'})
        assert (response.status_code, response.content) == (200, whole)
        response = await get(Range="bytes=0-1,5-9")
        assert (response.status_code, response.content) == (200, whole)
        response = await get(Range=f"bytes={total}-")
        assert response.status_code == 416
        assert response.headers["content-range"] == f"bytes */{total}"
        assert response.json()["error"]["code"] == "range_not_satisfiable"
        # The connection survived all of it.
        response = await get()
        assert response.content == whole
    assert srv.errors == []


async def test_add_file_and_errors() -> None:
    async with open_test_server(api_key="sk-k") as srv, http_client(srv.base_url) as client:
        url = srv.add_file("clip.bin", b"0123456789", "application/octet-stream")
        assert url == srv.base_url + "/audio/files/clip.bin"
        assert url.endswith(FILES_PATH + "clip.bin")
        # A file URL needs no API key (like a pre-signed URL).
        response = await client.get(url, headers={"Range": "bytes=4-"})
        assert (response.status_code, response.content) == (206, b"456789")
        assert response.headers["content-type"] == "application/octet-stream"
        missing = await client.get(srv.base_url + "/audio/files/nope.bin")
        assert missing.status_code == 404
        assert "nope.bin" in missing.json()["error"]["message"]
        post = await client.post(url)
        assert post.status_code == 405
        assert post.headers["allow"] == "GET, HEAD"
        # Adding it again replaces it.
        srv.add_file("clip.bin", b"abc")
        assert (await client.get(url)).content == b"abc"
    for bad in ("", "a/b", "../x", "sp ace", "x" * 300):
        with pytest.raises(ValueError, match="name"):
            srv.add_file(bad, b"")
    assert srv.errors == []


async def test_get_pacing_and_range_pacing(autojump_clock: trio.abc.Clock) -> None:
    async with (
        open_test_server(ttfb_ms=100, realtime_factor=2.0) as srv,
        http_client(srv.base_url) as client,
    ):
        url = srv.audio_url(TEXT)
        whole = srv.render(TEXT)
        n = len(render_chunks(TEXT))
        due = chunk_schedule(n, ttfb_ms=100, chunk_ms=20, realtime_factor=2.0)
        _, arrivals, data, _ = await download(client, "GET", url)
        assert data == whole
        assert arrivals[0][0] == pytest.approx(0.1, abs=EPS)
        assert arrivals[-1][0] == pytest.approx(due[-1], abs=EPS)
        # A range starts at the TTFB, then keeps the pace of its audio from there: from
        # piece 40 (the middle of it) on, n - 40 pieces.
        start = 960 * 40 + 480
        _, arrivals, data, _ = await download(
            client, "GET", url, headers={"Range": f"bytes={start}-"}
        )
        assert data == whole[start:]
        assert arrivals[0][0] == pytest.approx(0.1, abs=EPS)
        assert arrivals[-1][0] == pytest.approx(due[n - 1 - 40], abs=EPS)
    assert srv.errors == []


async def test_drop_on_get_then_resume_with_range() -> None:
    plan = FaultPlan(drop_after_bytes=(3000, 5000))
    async with open_test_server(faults=plan) as srv, http_client(srv.base_url) as client:
        url = srv.audio_url(TEXT, response_format="wav")
        whole = srv.render(TEXT, response_format="wav")
        got = b""
        etag: str | None = None
        attempts = 0
        while len(got) < len(whole):
            attempts += 1
            headers = {"Range": f"bytes={len(got)}-", "If-Range": etag} if etag else {}
            response, _, data, error = await download(client, "GET", url, headers=headers)
            assert response.status_code == (206 if etag else 200)
            etag = response.headers["etag"]
            got += data
            assert (error is None) == (attempts == 3)
    assert got == whole
    assert [len(r.fault or "") > 0 for r in srv.requests] == [True, True, False]
    assert srv.requests[1].headers["range"] == "bytes=3000-"
    assert srv.errors == []


async def test_fail_and_close_apply_to_get_too() -> None:
    plan = FaultPlan(close_before_headers=1, fail_first=1, fail_status=502)
    async with open_test_server(faults=plan) as srv, http_client(srv.base_url) as client:
        url = srv.add_file("a.bin", b"abc")
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(url)
        assert (await client.get(url)).status_code == 502
        assert (await client.get(url)).content == b"abc"
    assert srv.errors == []


async def test_bandwidth_on_get_with_byte_rate(autojump_clock: trio.abc.Clock) -> None:
    async with (
        open_test_server(faults=FaultPlan(bandwidth_kbps=80), realtime_factor=1.0) as srv,
        http_client(srv.base_url) as client,
    ):
        # 2000 bytes at 1000 bytes per second of "audio": 2 s paced, 0.2 s on the link.
        url = srv.add_file("slow.bin", bytes(2000), byte_rate=1000)
        _, arrivals, data, _ = await download(client, "GET", url)
        assert data == bytes(2000)
        # Pieces of 20 bytes (20 ms), the last due at 1.98 s, 2 ms on the link.
        assert arrivals[-1][0] == pytest.approx(1.98 + 0.002, abs=EPS)
    assert srv.errors == []


# --------------------------------------------------------------------------------------
# Options and the serve command


@pytest.mark.parametrize(
    ("faults", "needle"),
    [
        ({"stall_after_bytes": 10}, "stall_ms"),
        ({"fail_first": 1, "fail_status": 404}, "fail_status"),
        ({"bandwidth_kbps": 0}, "bandwidth_kbps"),
    ],
)
async def test_invalid_fault_options_raise_config_error(
    faults: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        async with open_test_server(faults=FaultPlan(**faults)):
            pass  # pragma: no cover


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(argv)


def test_fault_flags() -> None:
    args = _parse([])
    assert args.seed == 0
    assert args.drop_after_bytes is None
    args = _parse(
        [
            "--seed", "9",
            "--drop-after-bytes", "100,200",
            "--stall-after-bytes", "5", "--stall-ms", "250", "--stall-every-request",
            "--bandwidth-kbps", "64",
            "--jitter-ms", "3",
            "--fail-first", "2", "--fail-status", "429", "--retry-after", "0.5",
            "--close-before-headers", "1",
            "--truncate-after-bytes", "700",
        ]
    )  # fmt: skip
    assert fault_plan(args) == FaultPlan(
        seed=9,
        drop_after_bytes=(100, 200),
        stall_after_bytes=5,
        stall_ms=250,
        stall_every_request=True,
        bandwidth_kbps=64,
        jitter_ms=3,
        fail_first=2,
        fail_status=429,
        retry_after=0.5,
        close_before_headers=1,
        truncate_after_bytes=700,
    )


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--drop-after-bytes", "10,x"], "--drop-after-bytes: expected byte counts"),
        (["--stall-after-bytes", "10"], "--stall-after-bytes and --stall-ms go together"),
        (["--fail-first", "1", "--fail-status", "418"], "--fail-status must be one of"),
        (["--retry-after", "1"], "--retry-after needs --fail-first"),
        (["--jitter-ms", "-1"], "--jitter-ms must be"),
    ],
)
async def test_run_serve_rejects_bad_fault_flags(argv: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        await run_serve(_parse(["--port", "0", *argv]))


async def test_run_serve_with_faults(capsys: pytest.CaptureFixture[str]) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            run_serve, _parse(["--port", "0", "--fail-first", "1", "--retry-after", "2"])
        )
        with trio.fail_after(10):
            while not (err := capsys.readouterr().err):  # noqa: ASYNC110 (polling stderr)
                await trio.sleep(0.01)
        url = err.strip().rsplit(" ", 1)[-1]
        async with http_client(url) as client:
            failed = await client.post("/audio/speech", json=speech())
            ok = await client.post("/audio/speech", json=speech())
        assert failed.status_code == 503
        assert failed.headers["retry-after"] == "2"
        assert json.loads(failed.content)["error"]["type"] == "server_error"
        assert ok.status_code == 200
        nursery.cancel_scope.cancel()
