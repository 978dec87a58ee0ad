"""Tests of the test server's ``espeak`` engine: real speech, streamed as it is synthesized.

Skipped as a whole when the ``espeak`` extra (``espeakng-loader`` and ``soxr``) is not
installed; the nox test sessions install it. espeak-ng synthesizes at several hundred
times real time here, so most texts are a sentence; the long ones are there to prove
streaming and aborting, and are never synthesized to the end over HTTP.
"""

from __future__ import annotations

import argparse
import io
import math
import ssl
import struct
import time
import wave
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import trio
import trustme

pytest.importorskip("espeakng_loader", reason="the espeak extra (espeakng-loader) is not installed")
pytest.importorskip("soxr", reason="the espeak extra (soxr) is not installed")
av = pytest.importorskip("av", reason="the formats extra (PyAV) is not installed")

from _cli_helpers import serve_process  # noqa: E402 (after the skips)

from trio_tts_stream.server import _encode, _espeak  # noqa: E402
from trio_tts_stream.server._espeak import EspeakEngine  # noqa: E402
from trio_tts_stream.server._serve_cli import add_serve_arguments  # noqa: E402
from trio_tts_stream.testing import (  # noqa: E402
    ENGINES,
    OPENAI_RESPONSE_FORMATS,
    SAMPLE_RATE,
    TestServer,
    chunk_schedule,
    espeak_available,
    open_test_server,
    render_chunks,
)

_Samples = npt.NDArray[np.int16]

TEXT = "Hello there. How are you doing today?"  # about 2 s of speech
SENTENCE = "The quick brown fox jumps over the lazy dog, and then it runs far away. "
# About 3 minutes of speech: synthesized in a few tenths of a second.
MINUTES = SENTENCE * 40
# The longest input (4096 characters): about 10 minutes of speech at speed 0.25 (espeak-ng's
# slowest), about 6000 blocks of 100 ms; a full synthesis takes about a second.
LONG = SENTENCE * 56
LONG_SPEED = 0.25
CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
# The codec frame: decoded audio may be padded to a whole frame at the end.
FRAME = {"mp3": 576, "aac": 1024, "opus": 480}


def speech(text: str = TEXT, **fields: Any) -> dict[str, Any]:
    """A valid request body, with ``fields`` added or replaced."""
    return {"model": "tts-1", "input": text, "voice": "nova", "response_format": "pcm", **fields}


def http_client(base_url: str, **kwargs: Any) -> httpx.AsyncClient:
    """An httpx client for a plain-http server: skips loading the CA bundle."""
    assert base_url.startswith("http://")
    return httpx.AsyncClient(base_url=base_url, verify=False, **kwargs)


def samples_of(body: bytes) -> _Samples:
    return np.frombuffer(body, dtype="<i2").astype(np.int16)


def decode(body: bytes) -> npt.NDArray[np.float64]:
    """Demux and decode a body with PyAV: mono samples at 24 kHz, int16 scale."""
    out: list[npt.NDArray[Any]] = []
    with av.open(io.BytesIO(body)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        for frame in container.decode(audio=0):
            out += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate([np.zeros(0), *out]).astype(np.float64) * 32768.0


def rms(samples: npt.NDArray[Any]) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


@pytest.fixture(scope="module")
def engine() -> EspeakEngine:
    return EspeakEngine()


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    async with open_test_server(engine="espeak") as srv:
        yield srv
        assert srv.errors == []


@pytest.fixture
async def client(server: TestServer) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(server.base_url) as c:
        yield c


async def _wait_idle(srv: TestServer) -> None:
    with trio.fail_after(10):
        while srv.open_connections:  # noqa: ASYNC110 (a test polling a plain counter)
            await trio.sleep(0.005)


# --------------------------------------------------------------------------------------
# Audio


def test_espeak_is_an_engine() -> None:
    assert ENGINES == ("tone", "espeak")
    assert espeak_available()


@pytest.mark.parametrize("response_format", OPENAI_RESPONSE_FORMATS)
async def test_every_format_is_the_speech(
    server: TestServer, client: httpx.AsyncClient, engine: EspeakEngine, response_format: str
) -> None:
    response = await client.post("/audio/speech", json=speech(response_format=response_format))
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPES[response_format]
    assert response.headers["transfer-encoding"] == "chunked"
    body = response.content
    assert body == server.render(TEXT, "nova", response_format=response_format)
    reference = server.reference_pcm(TEXT, "nova")
    # The reference is espeak-ng's speech (not the tone): about 2 s, clearly audible.
    np.testing.assert_array_equal(reference, engine.synthesize_all(TEXT, voice="nova"))
    assert 1.0 * SAMPLE_RATE < len(reference) < 4.0 * SAMPLE_RATE
    assert rms(reference) > 1000
    if response_format == "pcm":
        np.testing.assert_array_equal(samples_of(body), reference)
        return
    if response_format == "wav":
        # A streaming header (the length is unknown while synthesizing), then the samples.
        assert struct.unpack_from("<I", body, 4)[0] == 0xFFFFFFFF
        assert struct.unpack_from("<I", body, 40)[0] == 0xFFFFFFFF
        np.testing.assert_array_equal(samples_of(body[44:]), reference)
        return
    decoded = decode(body)
    if response_format == "flac":
        np.testing.assert_array_equal(decoded, reference.astype(np.float64))
        return
    # Samples a decoder outputs before the audio: no gapless information in mp3 and aac
    # (the Ogg container trims opus exactly).
    delay = _encode.ENCODERS[response_format].priming if response_format != "opus" else 0
    # Then the audio, and up to a codec frame of padding; libmp3lame ends with two more
    # frames (1152 samples, 47 more than its priming).
    extra = len(decoded) - delay - len(reference)
    assert 0 <= extra < FRAME[response_format] + (47 if response_format == "mp3" else 0)
    audio = decoded[delay : delay + len(reference)]
    assert np.corrcoef(audio, reference.astype(np.float64))[0, 1] > 0.9


async def test_voice_and_speed_are_applied(server: TestServer, client: httpx.AsyncClient) -> None:
    normal = await client.post("/audio/speech", json=speech(voice="onyx"))
    fast = await client.post("/audio/speech", json=speech(voice="onyx", speed=2.0))
    other = await client.post("/audio/speech", json=speech(voice="shimmer"))
    assert normal.content == server.render(TEXT, "onyx")
    assert fast.content == server.render(TEXT, "onyx", 2.0)
    assert other.content == server.render(TEXT, "shimmer")
    assert 0.3 < len(fast.content) / len(normal.content) < 0.65
    assert other.content != normal.content


async def test_unknown_voice_is_400(server: TestServer, client: httpx.AsyncClient) -> None:
    response = await client.post("/audio/speech", json=speech(voice="bob"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "voice"
    assert "'bob'" in error["message"]
    assert "'nova'" in error["message"]
    with pytest.raises(ValueError, match="voice"):
        server.reference_pcm("hi", voice="bob")
    with pytest.raises(ValueError, match="voice"):
        server.render("hi", voice="bob")
    with pytest.raises(ValueError, match="speed"):
        server.reference_pcm("hi", speed=0)


def test_render_chunks_with_espeak() -> None:
    chunks = render_chunks(TEXT, voice="echo", engine="espeak", chunk_ms=50)
    samples = samples_of(b"".join(chunks))
    np.testing.assert_array_equal(samples, EspeakEngine().synthesize_all(TEXT, voice="echo"))
    assert [len(c) for c in chunks[:-1]] == [2 * 1200] * (len(chunks) - 1)
    assert 0 < len(chunks[-1]) <= 2 * 1200


# --------------------------------------------------------------------------------------
# Streaming and timing


async def test_first_bytes_arrive_while_synthesizing(
    server: TestServer, client: httpx.AsyncClient, engine: EspeakEngine
) -> None:
    # How long the whole text takes to synthesize (in a thread, as the server does).
    start = time.perf_counter()
    reference = await trio.to_thread.run_sync(partial(engine.synthesize_all, MINUTES, voice="nova"))
    synthesis_s = time.perf_counter() - start
    assert len(reference) > 120 * SAMPLE_RATE
    start = time.perf_counter()
    async with client.stream("POST", "/audio/speech", json=speech(MINUTES)) as response:
        first = await response.aiter_raw().__anext__()
        first_byte_s = time.perf_counter() - start
        synthesizing = _espeak._LOCK.locked()
    assert response.status_code == 200
    assert (
        samples_of(first[: len(first) // 2 * 2]).tolist() == reference[: len(first) // 2].tolist()
    )
    # The first bytes came long before the whole text could have been synthesized, and
    # the synthesis was still running when they arrived.
    assert first_byte_s < synthesis_s / 2, (first_byte_s, synthesis_s)
    assert synthesizing


async def _timed_download(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> tuple[float, list[tuple[float, int]], bytes]:
    """POST ``body``; return (time headers arrived, [(time, bytes) per piece], body)."""
    pieces: list[tuple[float, int]] = []
    data = bytearray()
    start = trio.current_time()
    async with client.stream("POST", "/audio/speech", json=body) as response:
        headers_at = trio.current_time() - start
        assert response.status_code == 200
        async for piece in response.aiter_raw():
            pieces.append((trio.current_time() - start, len(piece)))
            data += piece
    return headers_at, pieces, bytes(data)


async def test_ttfb_and_realtime_pacing_in_virtual_time(autojump_clock: trio.abc.Clock) -> None:
    # Synthesis takes no virtual time (the server keeps the run busy while it waits for
    # espeak-ng's thread), so the schedule is kept exactly, as with the tone.
    async with (
        open_test_server(engine="espeak", ttfb_ms=250, realtime_factor=2.0) as srv,
        http_client(srv.base_url, timeout=None) as client,
    ):
        with trio.fail_after(60):
            headers_at, pieces, body = await _timed_download(client, speech())
    assert body == srv.render(TEXT, "nova")
    n_chunks = math.ceil(len(body) / 960)
    due = chunk_schedule(n_chunks, ttfb_ms=250, chunk_ms=20, realtime_factor=2.0)
    assert headers_at == pytest.approx(0.25, abs=1e-6)
    assert pieces[0][0] == pytest.approx(0.25, abs=1e-6)
    received = 0
    for at, size in pieces:
        received += size
        released = sum(1 for t in due if t <= at + 1e-9)
        assert received <= 960 * released
    assert pieces[-1][0] == pytest.approx(due[-1], abs=1e-6)
    assert srv.errors == []


async def test_pacing_on_the_real_clock() -> None:
    async with (
        open_test_server(engine="espeak", ttfb_ms=100, realtime_factor=5.0) as srv,
        http_client(srv.base_url) as client,
    ):
        start = time.perf_counter()
        headers_at, _, body = await _timed_download(client, speech())
        elapsed = time.perf_counter() - start
    seconds = len(body) / 2 / SAMPLE_RATE
    assert body == srv.render(TEXT, "nova")
    assert headers_at >= 0.1
    assert elapsed >= 0.1 + (seconds - 0.02) / 5
    assert elapsed < 5.0
    assert srv.errors == []


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context) for 127.0.0.1."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    return server_context, client_context


async def test_every_knob_works_for_every_format(
    autojump_clock: trio.abc.Clock, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, client_context = tls
    key = "sk-espeak"
    async with (
        open_test_server(
            engine="espeak",
            ttfb_ms=120,
            realtime_factor=8.0,
            chunk_ms=30,
            ssl_context=server_context,
            api_key=key,
            wav_exact_sizes=True,
        ) as srv,
        httpx.AsyncClient(
            base_url=srv.base_url,
            verify=client_context,
            headers={"Authorization": f"Bearer {key}"},
            timeout=None,
        ) as client,
    ):
        n = len(srv.reference_pcm(TEXT, "nova"))
        bodies = {}
        for response_format in OPENAI_RESPONSE_FORMATS:
            body = speech(response_format=response_format)
            start = trio.current_time()
            async with client.stream("POST", "/audio/speech", json=body) as response:
                headers_at = trio.current_time() - start
                data = await response.aread()
            done_at = trio.current_time() - start
            assert response.status_code == 200
            assert response.headers["content-type"] == CONTENT_TYPES[response_format]
            assert data == srv.render(TEXT, "nova", response_format=response_format)
            bodies[response_format] = data
            assert headers_at == pytest.approx(0.12, abs=1e-6)
            n_pieces = math.ceil(n / 720)  # pieces of 30 ms
            assert done_at == pytest.approx(0.12 + (n_pieces - 1) * 0.03 / 8, abs=1e-6)
            unauthorized = await client.post(
                "/audio/speech", json=body, headers={"Authorization": "Bearer no"}
            )
            assert unauthorized.status_code == 401
    # The exact sizes, although espeak-ng only knows the length at the end.
    assert bodies["mp3"][20 + 13 : 20 + 17] == b"Info"
    assert len(decode(bodies["mp3"])) == n
    assert int.from_bytes(bodies["flac"][21:26], "big") & ((1 << 36) - 1) == n
    assert struct.unpack_from("<I", bodies["wav"], 40)[0] == 2 * n
    assert srv.errors == []


# --------------------------------------------------------------------------------------
# Concurrency and aborts


async def test_concurrent_requests(server: TestServer) -> None:
    results: dict[str, bytes] = {}

    async def fetch(voice: str, response_format: str) -> None:
        async with http_client(server.base_url) as client:
            body = speech(voice=voice, response_format=response_format)
            response = await client.post("/audio/speech", json=body)
        assert response.status_code == 200
        results[voice] = response.content

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetch, "alloy", "wav")
            nursery.start_soon(fetch, "onyx", "mp3")
    assert results["alloy"] == server.render(TEXT, "alloy", response_format="wav")
    assert results["onyx"] == server.render(TEXT, "onyx", response_format="mp3")


async def test_a_paced_response_does_not_hold_up_others() -> None:
    # A response paced at twice real time takes a minute and a half; its synthesis must
    # not make other requests wait for it (espeak-ng runs one synthesis at a time).
    short = "Hello there."
    async with (
        open_test_server(engine="espeak", realtime_factor=2.0) as srv,
        http_client(srv.base_url, timeout=None) as slow,
        http_client(srv.base_url, timeout=None) as fast,
    ):
        with trio.fail_after(20):
            async with slow.stream("POST", "/audio/speech", json=speech(MINUTES)) as paced:
                pieces = paced.aiter_raw()
                received = bytearray()
                while len(received) < 9600:  # 0.2 s of audio
                    received += await pieces.__anext__()
                start = time.perf_counter()
                async with fast.stream("POST", "/audio/speech", json=speech(short)) as other:
                    other_pieces = other.aiter_raw()
                    first = await other_pieces.__anext__()
                    first_byte_s = time.perf_counter() - start
                    rest = b"".join([piece async for piece in other_pieces])
                elapsed = time.perf_counter() - start
                assert first + rest == srv.render(short, "nova")
                assert srv.open_connections == 2  # the paced one is still streaming
                received += await pieces.__anext__()
        assert srv.render(MINUTES, "nova").startswith(bytes(received))
        # Held up, the first byte would wait for the paced response (45 s); not held up,
        # it waits at most for the rest of the other synthesis (a few tenths of a second
        # here, up to 3 s on a loaded 2-core CI machine), then the audio at twice real
        # time. The bounds separate the two by a wide margin, not by the machine's speed.
        seconds = len(first + rest) / 2 / SAMPLE_RATE
        assert first_byte_s < 10.0
        assert elapsed < first_byte_s + seconds / 2 + 5.0
    assert srv.errors == []


async def test_client_disconnect_aborts_the_synthesis(monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = 0
    process = _espeak._Resampler.process

    def counting_process(self: Any, samples: _Samples) -> _Samples:
        nonlocal blocks
        blocks += 1
        return process(self, samples)

    monkeypatch.setattr(_espeak._Resampler, "process", counting_process)
    async with (
        open_test_server(engine="espeak", realtime_factor=20.0) as srv,
        http_client(srv.base_url) as client,
    ):
        body = speech(LONG, speed=LONG_SPEED)
        async with client.stream("POST", "/audio/speech", json=body) as response:
            assert response.status_code == 200
            await response.aiter_raw().__anext__()
        # Closing the unfinished response closes its connection: the server notices on its
        # next write, and closing the synthesis ends it and frees espeak-ng.
        start = time.perf_counter()
        await _wait_idle(srv)
        assert not _espeak._LOCK.locked()
        # Most of the 6000 blocks were never synthesized.
        assert blocks < 2000, blocks
        with trio.fail_after(5):
            response = await client.post("/audio/speech", json=speech())
        assert response.content == srv.render(TEXT, "nova")
        assert time.perf_counter() - start < 5.0
    assert srv.errors == []


# --------------------------------------------------------------------------------------
# The serve command


async def test_cli_serve_espeak(engine: EspeakEngine) -> None:
    with serve_process("--engine", "espeak", "--wav-exact-sizes", "--ttfb-ms", "50") as url:
        async with http_client(url) as client:
            response = await client.post("/audio/speech", json=speech(response_format="wav"))
            bad = await client.post("/audio/speech", json=speech(voice="bob"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    # The same speech as espeak-ng makes in this process: synthesis is deterministic.
    reference = engine.synthesize_all(TEXT, voice="nova")
    with wave.open(io.BytesIO(response.content)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (SAMPLE_RATE, 1, 2)
        assert wav.getnframes() == len(reference)
        np.testing.assert_array_equal(samples_of(wav.readframes(wav.getnframes())), reference)
    assert bad.status_code == 400


def test_serve_arguments_accept_the_engines() -> None:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    assert parser.parse_args(["--engine", "espeak"]).engine == "espeak"
    help_text = " ".join(parser.format_help().split())
    assert "{tone,espeak}" in help_text
    assert "pip install 'trio-tts-stream[espeak]'" in help_text
