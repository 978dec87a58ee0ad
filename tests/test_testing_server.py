"""Tests of trio_tts_stream.testing: the tone synthesizer and the OpenAI-compatible server."""

from __future__ import annotations

import argparse
import io
import itertools
import json
import logging
import math
import ssl
import struct
import subprocess
import sys
import time
import types
import wave
import zlib
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import numpy.typing as npt
import pytest
import trio
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_tts_stream.testing as testing
from trio_tts_stream._exceptions import ConfigError
from trio_tts_stream.server import _bodies, _connection, _encode, _tone
from trio_tts_stream.server._serve_cli import add_serve_arguments, run_serve
from trio_tts_stream.testing import (
    ENGINES,
    MAX_INPUT_CHARS,
    OPENAI_RESPONSE_FORMATS,
    RESPONSE_FORMATS,
    SAMPLE_RATE,
    VOICES,
    TestServer,
    chunk_schedule,
    open_test_server,
    render_chunks,
    serve,
    synthesize_tone,
    tone_blocks,
    tone_frames,
    wav_header,
)

TEXT = "Hello world. This is a streaming test!"
FULL_SCALE = 32768
ALL_FORMATS = "'mp3', 'opus', 'aac', 'flac', 'wav', 'pcm'"
COMPRESSED = ("mp3", "opus", "aac", "flac")
CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


def speech(text: Any = TEXT, **fields: Any) -> dict[str, Any]:
    """A valid request body, with ``fields`` added or replaced."""
    return {"model": "tts-1", "input": text, "voice": "alloy", "response_format": "pcm", **fields}


def http_client(base_url: str, **kwargs: Any) -> httpx.AsyncClient:
    """An httpx client for a plain-http server: skips loading the CA bundle (~40 ms)."""
    assert base_url.startswith("http://")
    return httpx.AsyncClient(base_url=base_url, verify=False, **kwargs)


def samples_of(body: bytes) -> npt.NDArray[np.int16]:
    return np.frombuffer(body, dtype="<i2").astype(np.int16)


def assert_openai_error(response: httpx.Response, status: int, param: str | None = None) -> str:
    """Check an OpenAI-style error response and return its message."""
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["param"] == param
    return str(error["message"])


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    async with open_test_server() as srv:
        yield srv
        assert srv.errors == []


@pytest.fixture
async def client(server: TestServer) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(server.base_url) as c:
        yield c


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ssl_context(ca: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_ssl_context(ca: Any) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


# --------------------------------------------------------------------------------------
# The public surface


def test_all_is_complete() -> None:
    public = {
        name
        for name, value in vars(testing).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }
    assert public == set(testing.__all__)
    for name in ("open_test_server", "serve", "TestServer", "synthesize_tone"):
        assert name in testing.__all__


# --------------------------------------------------------------------------------------
# The tone synthesizer


def test_tone_is_deterministic_within_a_process() -> None:
    a = synthesize_tone(TEXT, voice="nova", speed=1.3)
    b = synthesize_tone(TEXT, voice="nova", speed=1.3)
    assert a.dtype == np.int16
    assert a.ndim == 1
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, synthesize_tone(TEXT, voice="onyx", speed=1.3))
    # Same length, different characters: different pitches, different samples.
    assert not np.array_equal(a, synthesize_tone(TEXT[::-1], voice="nova", speed=1.3))


def test_tone_is_deterministic_across_processes() -> None:
    # Load _tone.py alone (it needs only numpy), in a process with another hash seed.
    code = (
        "import importlib.util as u, zlib; "
        f"s = u.spec_from_file_location('tone', {_tone.__file__!r}); "
        "m = u.module_from_spec(s); s.loader.exec_module(m); "
        f"print(zlib.crc32(m.synthesize_tone({TEXT!r}, voice='sage').tobytes()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345"},
    )
    assert int(out.stdout) == zlib.crc32(synthesize_tone(TEXT, voice="sage").tobytes())


def test_tone_does_not_depend_on_the_block_size(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "a longer text, so that many segments cross block boundaries " * 3
    reference = synthesize_tone(text, voice="shimmer")
    monkeypatch.setattr(_tone, "_BLOCK", 1000)
    np.testing.assert_array_equal(synthesize_tone(text, voice="shimmer"), reference)


@pytest.mark.parametrize("text", ["", "a", "Hello", " leading space", "!?", TEXT])
@pytest.mark.parametrize("speed", [0.25, 1.0, 4.0])
def test_tone_starts_at_full_amplitude(text: str, speed: float) -> None:
    samples = synthesize_tone(text, speed=speed).astype(np.int32)
    assert abs(samples[0]) > 0.4 * FULL_SCALE
    first_10_ms = samples[: SAMPLE_RATE // 100].astype(np.float64)
    assert np.sqrt(np.mean(first_10_ms**2)) > 0.12 * FULL_SCALE  # a loud tone, not a blip
    # Found after leading silence as the first non-zero sample:
    padded = np.concatenate([np.zeros(1234, dtype=np.int32), samples])
    assert int(np.flatnonzero(padded)[0]) == 1234


def test_tone_duration_is_proportional_to_text_and_inverse_to_speed() -> None:
    ms_per_char = 65
    for chars in (10, 100, 400):
        text = "x" * chars
        n = len(synthesize_tone(text))
        assert n == tone_frames(text)
        assert n == pytest.approx(chars * ms_per_char * SAMPLE_RATE / 1000, abs=1)
        assert len(synthesize_tone(text, speed=2.0)) == pytest.approx(n / 2, abs=1)
        assert len(synthesize_tone(text, speed=0.5)) == pytest.approx(n * 2, abs=1)
    assert len(synthesize_tone("Hi")) == int(0.3 * SAMPLE_RATE)  # minimum 300 ms
    assert len(synthesize_tone("Hi", sample_rate=16000)) == int(0.3 * 16000)


def test_tone_level_and_continuity() -> None:
    samples = synthesize_tone(TEXT * 3, voice="shimmer").astype(np.int32)
    peak = int(np.abs(samples).max())
    assert 0.45 * FULL_SCALE <= peak <= 0.5 * FULL_SCALE + 1  # about half scale, no clipping
    # Continuous phase and envelope: no clicks. The steepest possible harmonic tone at
    # shimmer's highest pitch moves by at most ~2600 between samples; a click by ~16000.
    assert int(np.abs(np.diff(samples)).max()) < 3000
    assert abs(samples[-1]) < 100  # fades out


def test_tone_has_quieter_gaps_between_words() -> None:
    text = "aaaaaa bbbbbb"  # each character gets 65 ms; the space is the gap
    samples = synthesize_tone(text).astype(np.float64)
    slot = len(samples) // len(text)

    def rms(char_index: int) -> float:
        mid = (char_index + 0.5) * slot
        part = samples[int(mid - slot / 4) : int(mid + slot / 4)]
        return float(np.sqrt(np.mean(part**2)))

    assert rms(6) < 0.3 * rms(1)
    assert rms(6) < 0.3 * rms(10)


def test_tone_voices_change_the_pitch() -> None:
    def dominant_hz(voice: str) -> float:
        samples = synthesize_tone("mmmm " * 20, voice=voice).astype(np.float64)
        spectrum = np.abs(np.fft.rfft(samples))
        return float(np.argmax(spectrum) * SAMPLE_RATE / len(samples))

    assert dominant_hz("onyx") < dominant_hz("alloy") < dominant_hz("shimmer")
    assert len({synthesize_tone("hello", voice=v).tobytes() for v in VOICES}) == len(VOICES)


def test_tone_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="voice"):
        synthesize_tone("hi", voice="bob")
    with pytest.raises(ValueError, match="speed"):
        synthesize_tone("hi", speed=0)
    with pytest.raises(ValueError, match="speed"):
        synthesize_tone("hi", speed=math.nan)


def test_tone_blocks_are_the_tone_computed_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    reference = synthesize_tone(TEXT * 5, voice="fable", speed=0.8)
    for block_frames in (333, 24000, 10**7):
        blocks = list(tone_blocks(TEXT * 5, voice="fable", speed=0.8, block_frames=block_frames))
        assert all(len(b) == block_frames for b in blocks[:-1])
        np.testing.assert_array_equal(np.concatenate(blocks), reference)

    rendered: list[tuple[int, int]] = []
    render = _tone._Layout.render

    def counting_render(layout: Any, b0: int, b1: int) -> npt.NDArray[np.int16]:
        rendered.append((b0, b1))
        return render(layout, b0, b1)

    monkeypatch.setattr(_tone._Layout, "render", counting_render)
    blocks_iter = tone_blocks("x" * 4000, block_frames=24000)  # 260 s of audio
    assert rendered == []
    next(blocks_iter)
    assert rendered == [(0, 24000)]
    # Bad arguments fail at the call, not at the first block.
    with pytest.raises(ValueError, match="voice"):
        tone_blocks("hi", voice="bob")
    with pytest.raises(ValueError, match="block_frames"):
        tone_blocks("hi", block_frames=0)


def test_tone_is_fast() -> None:
    text = "Speech-like test tone, fast. " * 64  # ~2 minutes of audio
    start = time.perf_counter()
    samples = synthesize_tone(text)
    elapsed = time.perf_counter() - start
    assert len(samples) > 110 * SAMPLE_RATE
    assert elapsed < 2.0  # typically ~0.1 s: 1000x real time


# --------------------------------------------------------------------------------------
# Pure rendering and pacing


def test_chunk_schedule() -> None:
    assert chunk_schedule(3, ttfb_ms=150, chunk_ms=20, realtime_factor=None) == [0.15] * 3
    assert chunk_schedule(4, ttfb_ms=100, chunk_ms=20, realtime_factor=2.0) == pytest.approx(
        [0.1, 0.11, 0.12, 0.13]
    )
    assert chunk_schedule(2, ttfb_ms=0, chunk_ms=40, realtime_factor=0.5) == pytest.approx(
        [0.0, 0.08]
    )
    assert chunk_schedule(0, ttfb_ms=0, chunk_ms=20, realtime_factor=1.0) == []


def test_render_chunks_pcm() -> None:
    chunks = render_chunks(TEXT, voice="echo", speed=1.5, chunk_ms=20)
    expected = synthesize_tone(TEXT, voice="echo", speed=1.5).tobytes()
    assert b"".join(chunks) == expected
    assert {len(c) for c in chunks[:-1]} == {2 * 480}  # 20 ms at 24 kHz, s16le
    assert 0 < len(chunks[-1]) <= 960
    assert len(chunks) == math.ceil(len(expected) / 960)


def test_render_chunks_wav() -> None:
    pcm = synthesize_tone(TEXT).tobytes()
    chunks = render_chunks(TEXT, response_format="wav", chunk_ms=10)
    assert len(chunks[0]) == 44 + 480
    assert b"".join(chunks) == wav_header(SAMPLE_RATE) + pcm
    exact = b"".join(render_chunks(TEXT, response_format="wav", wav_exact_sizes=True))
    assert exact == wav_header(SAMPLE_RATE, data_bytes=len(pcm)) + pcm


def test_render_chunks_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="response_format"):
        render_chunks("hi", response_format="ogg")
    with pytest.raises(ValueError, match="voice"):
        render_chunks("hi", voice="bob")
    with pytest.raises(ValueError, match="engine"):
        render_chunks("hi", engine="nope")
    with pytest.raises(ValueError, match="chunk_ms"):
        render_chunks("hi", chunk_ms=0)


@settings(max_examples=25, deadline=None)
@given(
    response_format=st.sampled_from(["pcm", "wav", "mp3", "flac"]),
    cuts=st.lists(st.integers(0, 60000), max_size=12),
)
def test_pieces_do_not_depend_on_how_the_samples_arrive(
    response_format: str, cuts: list[int]
) -> None:
    # The server feeds the samples as the engine makes them (espeak-ng: blocks of about
    # 100 ms, of varying size); the pieces must be those of render_chunks all the same.
    text = "Hi there, you."
    expected = render_chunks(text, response_format=response_format)
    samples = synthesize_tone(text)
    options = _bodies._EncoderOptions(SAMPLE_RATE, len(samples), False)
    pieces = _bodies._Pieces(_bodies._FORMATS[response_format].encoder(options), 480)
    got: list[bytes] = []
    try:
        bounds = [0, *sorted(c % (len(samples) + 1) for c in cuts), len(samples)]
        for start, end in itertools.pairwise(bounds):
            got += pieces.feed(samples[start:end])
        got += pieces.finish()
    finally:
        pieces.close()
    assert got == expected


# --------------------------------------------------------------------------------------
# The server: successful responses


async def test_pcm_body_is_the_tone(server: TestServer, client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/audio/speech",
        json=speech(instructions="Speak calmly."),
        headers={"Authorization": "Bearer sk-secret"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/pcm"
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.content == synthesize_tone(TEXT).tobytes()
    assert response.content == server.render(TEXT)

    [record] = server.requests
    assert record.method == "POST"
    assert record.path == "/v1/audio/speech"
    assert record.json == speech(instructions="Speak calmly.")
    assert record.status == 200
    assert record.headers["authorization"] == "<redacted>"
    assert "sk-secret" not in repr(record)
    assert record.headers["content-type"] == "application/json"


async def test_voice_and_speed_are_applied(server: TestServer, client: httpx.AsyncClient) -> None:
    response = await client.post("/audio/speech", json=speech(voice="coral", speed=2.5))
    assert response.status_code == 200
    assert samples_of(response.content).tolist() == (
        synthesize_tone(TEXT, voice="coral", speed=2.5).tolist()
    )
    assert response.content == server.render(TEXT, voice="coral", speed=2.5)
    # Integer speeds are numbers too.
    response = await client.post("/audio/speech", json=speech(speed=2))
    assert response.content == synthesize_tone(TEXT, speed=2.0).tobytes()


async def test_streaming_wav_body(server: TestServer, client: httpx.AsyncClient) -> None:
    response = await client.post("/audio/speech", json=speech(response_format="wav"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    body = response.content
    assert body == server.render(TEXT, response_format="wav")
    riff, riff_size, wave_id = struct.unpack_from("<4sI4s", body, 0)
    assert (riff, riff_size, wave_id) == (b"RIFF", 0xFFFFFFFF, b"WAVE")
    fmt_id, fmt_size, tag, channels, rate, byte_rate, align, bits = struct.unpack_from(
        "<4sIHHIIHH", body, 12
    )
    assert (fmt_id, fmt_size, tag, channels, rate, byte_rate, align, bits) == (
        b"fmt ",
        16,
        1,
        1,
        24000,
        48000,
        2,
        16,
    )
    data_id, data_size = struct.unpack_from("<4sI", body, 36)
    assert (data_id, data_size) == (b"data", 0xFFFFFFFF)
    np.testing.assert_array_equal(samples_of(body[44:]), synthesize_tone(TEXT))


async def test_wav_with_exact_sizes_reads_with_the_wave_module() -> None:
    async with (
        open_test_server(wav_exact_sizes=True) as srv,
        http_client(srv.base_url) as client,
    ):
        response = await client.post("/audio/speech", json=speech(response_format="wav"))
    assert response.status_code == 200
    expected = synthesize_tone(TEXT)
    with wave.open(io.BytesIO(response.content), "rb") as wav:
        assert wav.getnchannels() == 1
        assert wav.getsampwidth() == 2
        assert wav.getframerate() == SAMPLE_RATE
        assert wav.getnframes() == len(expected)
        frames = wav.readframes(wav.getnframes())
    np.testing.assert_array_equal(samples_of(frames), expected)
    assert srv.errors == []


async def test_keep_alive_serves_several_requests(
    server: TestServer, client: httpx.AsyncClient
) -> None:
    for text in ("one", "two", "three"):
        response = await client.post("/audio/speech", json=speech(text))
        assert response.content == server.render(text)
        error = await client.post("/audio/speech", json=speech(""))
        assert error.status_code == 400
    assert [r.status for r in server.requests] == [200, 400] * 3


# --------------------------------------------------------------------------------------
# The server: errors


@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        (speech(""), "input", "empty"),
        ({"model": "tts-1", "voice": "alloy", "response_format": "pcm"}, "input", "input"),
        (speech(42), "input", "string"),
        (speech("x" * (MAX_INPUT_CHARS + 1)), "input", "4096"),
        (speech(voice="bob"), "voice", "alloy"),
        ({"model": "tts-1", "input": "hi", "response_format": "pcm"}, "voice", "voice"),
        (speech(voice=["alloy"]), "voice", "voice"),
        (speech(speed=0.2), "speed", "0.25"),
        (speech(speed=4.5), "speed", "4.0"),
        (speech(speed="fast"), "speed", "speed"),
        (speech(speed=True), "speed", "speed"),
        (speech(response_format="ogg"), "response_format", ALL_FORMATS),
        (speech(response_format="MP3"), "response_format", ALL_FORMATS),
        (speech(response_format=["mp3"]), "response_format", "Unsupported"),
        (speech(stream_format="chunks"), "stream_format", "sse"),
        ({"input": "hi", "voice": "alloy", "response_format": "pcm"}, "model", "model"),
        ([1, 2, 3], None, "object"),
    ],
)
async def test_invalid_requests_get_400(
    server: TestServer, client: httpx.AsyncClient, body: Any, param: str, needle: str
) -> None:
    response = await client.post("/audio/speech", json=body)
    assert needle in assert_openai_error(response, 400, param)
    assert server.requests[-1].status == 400
    assert server.requests[-1].json == body


async def test_response_format_defaults_to_mp3_like_openai(
    server: TestServer, client: httpx.AsyncClient
) -> None:
    body = speech()
    del body["response_format"]
    response = await client.post("/audio/speech", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/mpeg"
    assert response.content == server.render(TEXT, response_format="mp3")


NAN_SPEED = b'{"model": "tts-1", "input": "hi", "voice": "alloy", "speed": NaN}'


@pytest.mark.parametrize("content", [b"{not json", NAN_SPEED, b"\xff\xfe", b""])
async def test_unparsable_bodies_get_400(
    server: TestServer, client: httpx.AsyncClient, content: bytes
) -> None:
    response = await client.post(
        "/audio/speech", content=content, headers={"content-type": "application/json"}
    )
    assert "JSON" in assert_openai_error(response, 400)
    assert server.requests[-1].body == content


async def test_input_at_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    async with client.stream(
        "POST", "/audio/speech", json=speech("y" * MAX_INPUT_CHARS, speed=4.0)
    ) as response:
        assert response.status_code == 200


async def test_wrong_path_is_404(server: TestServer, client: httpx.AsyncClient) -> None:
    for path in ("/audio/speeches", "/models", "/../audio/transcriptions"):
        assert_openai_error(await client.post(path, json=speech()), 404)
    response = await client.get(server.base_url.removesuffix("/v1") + "/")
    assert_openai_error(response, 404)


async def test_wrong_method_is_405(client: httpx.AsyncClient) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = await client.request(method, "/audio/speech")
        assert_openai_error(response, 405)
        assert response.headers["allow"] == "POST"
    response = await client.head("/audio/speech")
    assert response.status_code == 405
    assert response.content == b""


async def test_api_key_is_required_when_set() -> None:
    key = "sk-test-0123456789"
    async with (
        open_test_server(api_key=key) as srv,
        http_client(srv.base_url) as client,
    ):
        missing = await client.post("/audio/speech", json=speech())
        wrong = await client.post(
            "/audio/speech", json=speech(), headers={"Authorization": "Bearer sk-wrong"}
        )
        not_bearer = await client.post(
            "/audio/speech", json=speech(), headers={"Authorization": key}
        )
        right = await client.post(
            "/audio/speech", json=speech(), headers={"Authorization": f"Bearer {key}"}
        )
    for response in (missing, wrong, not_bearer):
        assert_openai_error(response, 401)
        assert key not in response.text
        assert "sk-wrong" not in response.text
    assert right.status_code == 200
    assert right.content == srv.render(TEXT)
    assert [r.status for r in srv.requests] == [401, 401, 401, 200]
    assert all(key not in repr(r) for r in srv.requests)
    assert srv.errors == []


async def test_body_over_the_limit_is_413() -> None:
    async with (
        open_test_server(max_body_bytes=1000) as srv,
        http_client(srv.base_url) as client,
    ):
        small = await client.post("/audio/speech", json=speech("z" * 800))
        big = await client.post("/audio/speech", json=speech("z" * 1000))
        # The oversized body was read and discarded: the connection is still usable.
        after = await client.post("/audio/speech", json=speech("z"))
    assert small.status_code == 200
    assert_openai_error(big, 413)
    assert after.status_code == 200
    assert srv.requests[1].body == b""
    assert srv.errors == []


async def test_100_continue_with_a_body_over_the_limit_gets_413_and_close() -> None:
    async with open_test_server(max_body_bytes=100) as srv:
        stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
        async with stream:
            await stream.send_all(
                b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n"
            )
            reply = await _read_until_eof(stream)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    assert srv.errors == []


async def test_100_continue_and_http_1_0() -> None:
    payload = json.dumps(speech("hi")).encode()
    async with open_test_server() as srv:
        stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
        async with stream:
            await stream.send_all(
                b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(payload)
            )
            with trio.fail_after(5):
                interim = await stream.receive_some()
            assert interim.startswith(b"HTTP/1.1 100 ")
            await stream.send_all(payload)
            reply = await _read_until_eof(stream)
        head, _, _ = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"transfer-encoding: chunked" in head.lower()

        # An HTTP/1.0 client cannot take chunks: the body ends when the connection does.
        stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
        async with stream:
            await stream.send_all(
                b"POST /v1/audio/speech HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(payload)
                + payload
            )
            reply = await _read_until_eof(stream)
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"chunked" not in head.lower()
        assert body == srv.render("hi")
    assert srv.errors == []


async def test_malformed_http_gets_400_and_the_server_keeps_serving() -> None:
    async with open_test_server() as srv:
        stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
        async with stream:
            await stream.send_all(b"THIS IS NOT HTTP\r\n\r\n")
            reply = await _read_until_eof(stream)
        assert reply.startswith(b"HTTP/1.1 400 ")
        async with http_client(srv.base_url) as client:
            response = await client.post("/audio/speech", json=speech())
        assert response.content == srv.render(TEXT)
    assert srv.errors == []


async def _read_until_eof(stream: trio.abc.ReceiveStream) -> bytes:
    data = bytearray()
    with trio.fail_after(5):
        while chunk := await stream.receive_some():
            data += chunk
    return bytes(data)


# --------------------------------------------------------------------------------------
# The server: TLS


async def test_tls(server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext) -> None:
    async with open_test_server(ssl_context=server_ssl_context) as srv:
        assert srv.base_url == f"https://127.0.0.1:{srv.port}/v1"
        async with httpx.AsyncClient(base_url=srv.base_url, verify=client_ssl_context) as client:
            response = await client.post("/audio/speech", json=speech(response_format="wav"))
            assert response.content == srv.render(TEXT, response_format="wav")
            assert_openai_error(
                await client.post("/audio/speech", json=speech(voice="x")), 400, "voice"
            )
        # A client that does not trust the certificate fails; the server shrugs it off.
        async with httpx.AsyncClient(base_url=srv.base_url) as untrusting:
            with pytest.raises(httpx.ConnectError):
                await untrusting.post("/audio/speech", json=speech())
        async with httpx.AsyncClient(base_url=srv.base_url, verify=client_ssl_context) as client:
            response = await client.post("/audio/speech", json=speech())
            assert response.content == srv.render(TEXT)
    assert srv.errors == []


# --------------------------------------------------------------------------------------
# The server: timing


async def _timed_download(
    srv: TestServer, body: dict[str, Any]
) -> tuple[float, list[tuple[float, int]], bytes]:
    """POST ``body``; return (time headers arrived, [(time, bytes) per piece], body)."""
    pieces: list[tuple[float, int]] = []
    data = bytearray()
    async with http_client(srv.base_url, timeout=None) as client:
        start = trio.current_time()
        async with client.stream("POST", "/audio/speech", json=body) as response:
            headers_at = trio.current_time() - start
            assert response.status_code == 200
            async for piece in response.aiter_raw():
                pieces.append((trio.current_time() - start, len(piece)))
                data += piece
    return headers_at, pieces, bytes(data)


async def test_ttfb_and_realtime_pacing(autojump_clock: trio.abc.Clock) -> None:
    text = "twenty characters!!!"  # 1.3 s of audio = 65 pieces of 20 ms
    async with open_test_server(ttfb_ms=250, realtime_factor=2.0, chunk_ms=20) as srv:
        with trio.fail_after(60):
            headers_at, pieces, body = await _timed_download(srv, speech(text))
    assert body == srv.render(text)
    n_chunks = math.ceil(len(body) / 960)
    assert n_chunks == 65
    due = chunk_schedule(n_chunks, ttfb_ms=250, chunk_ms=20, realtime_factor=2.0)
    # Headers travel with the first piece, at exactly the TTFB (virtual time).
    assert headers_at == pytest.approx(0.25, abs=1e-6)
    assert pieces[0][0] == pytest.approx(0.25, abs=1e-6)
    # Never ahead of the schedule; done exactly when the last piece is due.
    received = 0
    for at, size in pieces:
        received += size
        released = sum(1 for t in due if t <= at + 1e-9)
        assert received <= 960 * released
    assert pieces[-1][0] == pytest.approx(due[-1], abs=1e-6)
    assert pieces[-1][0] == pytest.approx(0.25 + 64 * 0.010, abs=1e-6)
    assert srv.errors == []


async def test_ttfb_without_pacing_sends_everything_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_test_server(ttfb_ms=400) as srv:
        with trio.fail_after(60):
            headers_at, pieces, body = await _timed_download(srv, speech(TEXT * 10))
    assert body == srv.render(TEXT * 10)
    assert headers_at == pytest.approx(0.4, abs=1e-6)
    assert [at for at, _ in pieces] == pytest.approx([0.4] * len(pieces), abs=1e-6)


async def test_ttfb_counts_from_the_end_of_the_request(autojump_clock: trio.abc.Clock) -> None:
    async with open_test_server(ttfb_ms=100) as srv:
        stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
        async with stream:
            payload = json.dumps(speech("hi")).encode()
            head = (
                b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n" % len(payload)
            )
            start = trio.current_time()
            await stream.send_all(head + payload[:10])
            await trio.sleep(1.0)  # a slow client: the clock starts at the last byte
            await stream.send_all(payload[10:])
            first = await stream.receive_some(1)
            first_at = trio.current_time() - start
            rest = await _read_until_eof(stream)
    assert first == b"H"
    assert first_at == pytest.approx(1.1, abs=1e-6)
    assert srv.requests[0].received_at - start == pytest.approx(1.0, abs=1e-6)
    assert (first + rest).endswith(b"0\r\n\r\n")  # chunked, properly terminated


async def test_long_inputs_are_synthesized_while_streaming(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered: list[int] = []
    render = _tone._Layout.render

    def counting_render(layout: Any, b0: int, b1: int) -> npt.NDArray[np.int16]:
        rendered.append(b0)
        return render(layout, b0, b1)

    monkeypatch.setattr(_tone._Layout, "render", counting_render)
    long_text = "x" * MAX_INPUT_CHARS  # 266 s of audio
    async with (
        open_test_server(ttfb_ms=100, realtime_factor=1.0) as srv,
        http_client(srv.base_url, timeout=None) as client,
    ):
        async with client.stream("POST", "/audio/speech", json=speech(long_text)) as r:
            assert r.status_code == 200
            # At the first byte only the first second of audio has been synthesized.
            assert rendered == [0]
        await _wait_idle(srv)
    assert srv.errors == []


async def test_pacing_on_the_real_clock() -> None:
    text = "x" * 10  # 650 ms of audio: 0.1 s TTFB + 0.6375 s / 4 = about 0.26 s
    async with open_test_server(ttfb_ms=100, realtime_factor=4.0) as srv:
        start = time.perf_counter()
        headers_at, _, body = await _timed_download(srv, speech(text))
        elapsed = time.perf_counter() - start
    assert body == srv.render(text)
    assert headers_at >= 0.1
    assert elapsed >= 0.1 + 0.63 / 4
    assert elapsed < 5.0
    assert srv.errors == []


# --------------------------------------------------------------------------------------
# The server: compressed formats


def decode(body: bytes) -> npt.NDArray[np.float64]:
    """Demux and decode a body with PyAV: mono samples at 24 kHz, int16 scale."""
    out: list[npt.NDArray[Any]] = []
    with av.open(io.BytesIO(body)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        for frame in container.decode(audio=0):
            out += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate([np.zeros(0), *out]).astype(np.float64) * 32768.0


@pytest.mark.parametrize("response_format", OPENAI_RESPONSE_FORMATS)
async def test_every_format(
    server: TestServer, client: httpx.AsyncClient, response_format: str
) -> None:
    response = await client.post("/audio/speech", json=speech(response_format=response_format))
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPES[response_format]
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.content == server.render(TEXT, response_format=response_format)
    reference = server.reference_pcm(TEXT)
    np.testing.assert_array_equal(reference, synthesize_tone(TEXT))
    if response_format in ("pcm", "wav"):
        np.testing.assert_array_equal(
            samples_of(response.content[-2 * len(reference) :]), reference
        )
        return
    decoded = decode(response.content)
    delay = _encode.ENCODERS[response_format].priming if response_format != "opus" else 0
    audio = decoded[delay : delay + len(reference)]
    assert len(audio) == len(reference)
    assert len(decoded) - delay - len(reference) < 1024  # at most a frame of padding
    assert np.corrcoef(audio, reference.astype(np.float64))[0, 1] > 0.9


async def test_reference_pcm(server: TestServer) -> None:
    np.testing.assert_array_equal(
        server.reference_pcm("hi", voice="ash", speed=2.0),
        synthesize_tone("hi", voice="ash", speed=2.0),
    )
    with pytest.raises(ValueError, match="voice"):
        server.reference_pcm("hi", voice="bob")
    with pytest.raises(ValueError, match="speed"):
        server.reference_pcm("hi", speed=0)


FIVE_SECONDS = "Streaming speech arrives while it is still being made, bit by bit, in time: o"


@pytest.mark.parametrize("response_format", COMPRESSED)
async def test_compressed_formats_stream_in_real_time(
    autojump_clock: trio.abc.Clock, response_format: str
) -> None:
    assert tone_frames(FIVE_SECONDS) == pytest.approx(5 * SAMPLE_RATE, rel=0.01)
    async with open_test_server(realtime_factor=1.0) as srv:
        with trio.fail_after(60):
            body = speech(FIVE_SECONDS, response_format=response_format)
            headers_at, pieces, data = await _timed_download(srv, body)
    chunks = render_chunks(FIVE_SECONDS, response_format=response_format)
    assert data == b"".join(chunks)
    due = chunk_schedule(len(chunks), ttfb_ms=0, chunk_ms=20, realtime_factor=1.0)

    def received_by(t: float) -> int:
        return sum(size for at, size in pieces if at <= t + 1e-9)

    def released_by(t: float) -> int:
        return sum(len(c) for c, d in zip(chunks, due, strict=True) if d <= t + 1e-9)

    # Never ahead of the audio: the bytes the encoder had made when it had been fed the
    # audio due by then, and no more.
    for at, _ in pieces:
        assert received_by(at) <= released_by(at)
    # The first audio (not only the header) arrives within 0.3 s: at least 0.1 s of it.
    assert headers_at == pytest.approx(0.0, abs=1e-6)
    assert len(decode(data[: received_by(0.3)])) >= 0.1 * SAMPLE_RATE
    # Streamed, not sent at the end: about half of it by half time, the rest at 5 s.
    assert 0.3 < received_by(2.5) / len(data) < 0.7
    assert pieces[-1][0] == pytest.approx(due[-1], abs=1e-6)
    assert due[-1] == pytest.approx(5.0, abs=0.03)
    assert srv.errors == []


async def test_every_knob_works_for_every_format(
    autojump_clock: trio.abc.Clock,
    server_ssl_context: ssl.SSLContext,
    client_ssl_context: ssl.SSLContext,
) -> None:
    key = "sk-formats"
    async with (
        open_test_server(
            ttfb_ms=120,
            realtime_factor=8.0,
            chunk_ms=30,
            ssl_context=server_ssl_context,
            api_key=key,
            wav_exact_sizes=True,
        ) as srv,
        httpx.AsyncClient(
            base_url=srv.base_url,
            verify=client_ssl_context,
            headers={"Authorization": f"Bearer {key}"},
            timeout=None,
        ) as client,
    ):
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
            assert data == srv.render(TEXT, response_format=response_format)
            bodies[response_format] = data
            assert headers_at == pytest.approx(0.12, abs=1e-6)
            # The last of the pieces of 30 ms (720 frames) is due (n - 1) * 30 ms / 8 later.
            n_pieces = math.ceil(tone_frames(TEXT) / 720)
            assert done_at == pytest.approx(0.12 + (n_pieces - 1) * 0.03 / 8, abs=1e-6)
            unauthorized = await client.post(
                "/audio/speech", json=body, headers={"Authorization": "Bearer no"}
            )
            assert_openai_error(unauthorized, 401)
    n = tone_frames(TEXT)
    # The exact sizes: an Info frame before the mp3 audio, the total in flac's STREAMINFO.
    assert bodies["mp3"][20 + 13 : 20 + 17] == b"Info"
    assert len(decode(bodies["mp3"])) == n
    assert int.from_bytes(bodies["flac"][21:26], "big") & ((1 << 36) - 1) == n
    assert struct.unpack_from("<I", bodies["wav"], 40)[0] == 2 * n
    assert srv.errors == []


async def test_unpaced_bodies_are_sent_a_second_of_audio_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sends: list[int] = []
    send = _connection._Connection._send

    async def counting_send(self: Any, data: bytes | None) -> None:
        sends.append(len(data or b""))
        await send(self, data)

    monkeypatch.setattr(_connection._Connection, "_send", counting_send)
    async with open_test_server() as srv, http_client(srv.base_url) as client:
        response = await client.post(
            "/audio/speech", json=speech(FIVE_SECONDS, response_format="opus")
        )
    assert len(response.content) < 65536 / 2  # one batch by size: batched by audio instead
    # The first piece, a batch per second of the 5 s, the end of the body.
    assert len([s for s in sends if s]) >= 6
    assert srv.errors == []


def test_without_pyav_compressed_formats_get_a_clear_400() -> None:
    # A process where "import av" fails, as when the formats extra is not installed.
    code = f"""
import json, sys
sys.modules["av"] = None
import httpx, trio
from trio_tts_stream import testing

result = {{"formats": testing.RESPONSE_FORMATS}}
try:
    testing.render_chunks("hi", response_format="opus")
except ValueError as exc:
    result["render"] = str(exc)

async def main():
    async with testing.open_test_server() as srv:
        async with httpx.AsyncClient(base_url=srv.base_url, verify=False) as client:
            body = {speech("hi", response_format="flac")!r}
            response = await client.post("/audio/speech", json=body)
            result["flac"] = [response.status_code, response.json()["error"]]
            del body["response_format"]
            response = await client.post("/audio/speech", json=body)
            result["default"] = [response.status_code, response.json()["error"]]
            body["response_format"] = "pcm"
            response = await client.post("/audio/speech", json=body)
            result["pcm"] = [response.status_code, response.content == srv.render("hi")]
            result["errors"] = len(srv.errors)

trio.run(main)
result["av"] = sys.modules["av"]
print(json.dumps(result))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    result = json.loads(out.stdout)
    assert result["formats"] == ["wav", "pcm"]
    assert result["av"] is None
    hint = "install trio-tts-stream[formats]"
    assert hint in result["render"]
    for name in ("flac", "default"):
        status, error = result[name]
        assert status == 400
        assert error["param"] == "response_format"
        assert hint in error["message"]
        assert "'wav', 'pcm'" in error["message"]
    assert result["pcm"] == [200, True]
    assert result["errors"] == 0


# --------------------------------------------------------------------------------------
# The server: robustness


async def _wait_idle(srv: TestServer) -> None:
    with trio.fail_after(10):
        while srv.open_connections:  # noqa: ASYNC110 (a test polling a plain counter)
            await trio.sleep(0.01)


@pytest.mark.parametrize(
    ("response_format", "realtime_factor"),
    [("pcm", None), ("pcm", 20.0), ("opus", 20.0), ("mp3", 20.0)],
)
async def test_client_disconnect_mid_body(
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    response_format: str,
    realtime_factor: float | None,
) -> None:
    closed: list[str] = []
    if response_format != "pcm":
        encoder = _encode.ENCODERS[response_format]
        close = encoder.close

        def counting_close(self: Any) -> None:
            closed.append(response_format)
            close(self)

        monkeypatch.setattr(encoder, "close", counting_close)
    # ~190 s of audio (9 MB of pcm): more than the socket buffers hold, so the server is
    # mid-body (paced, compressed bodies take 190 / 20 s to send).
    long_text = "A rather long text to speak. " * 100
    async with (
        open_test_server(realtime_factor=realtime_factor) as srv,
        http_client(srv.base_url) as client,
    ):
        body = speech(long_text, response_format=response_format)
        async with client.stream("POST", "/audio/speech", json=body) as r:
            # The headers came with the first piece: the server is mid-body now.
            assert r.status_code == 200
        # Closing an unfinished response closes its connection: the server notices on its
        # next write and ends that connection's task, releasing the encoder.
        await _wait_idle(srv)
        if response_format != "pcm":
            assert closed == [response_format]
        response = await client.post("/audio/speech", json=speech())
        assert response.content == srv.render(TEXT)
    assert srv.errors == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_client_disconnect_during_ttfb(caplog: pytest.LogCaptureFixture) -> None:
    async with open_test_server(ttfb_ms=50) as srv:
        stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
        payload = json.dumps(speech()).encode()
        await stream.send_all(
            b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
            % len(payload)
            + payload
        )
        await stream.aclose()
        await _wait_idle(srv)
        async with http_client(srv.base_url) as client:
            response = await client.post("/audio/speech", json=speech())
        assert response.content == srv.render(TEXT)
    assert srv.errors == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_errors_in_the_block_are_not_wrapped() -> None:
    with pytest.raises(KeyError, match="boom"):
        async with open_test_server() as srv:
            raise KeyError("boom")
    # The listener is closed afterwards.
    with pytest.raises(OSError, match="connect"):
        await trio.open_tcp_stream("127.0.0.1", srv.port)


async def test_serve_with_nursery_start() -> None:
    async with trio.open_nursery() as nursery:
        srv: TestServer = await nursery.start(serve)
        assert srv.base_url == f"http://127.0.0.1:{srv.port}/v1"
        async with http_client(srv.base_url) as client:
            response = await client.post("/audio/speech", json=speech())
        assert response.content == srv.render(TEXT)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    "options",
    [
        {"chunk_ms": 0},
        {"ttfb_ms": -1},
        {"realtime_factor": 0},
        {"max_body_bytes": 0},
        {"api_key": ""},
        {"faults": {"drop_after_bytes": (1,)}},
        {"engine": "nope"},
    ],
)
async def test_invalid_options_raise_config_error(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        async with open_test_server(**options):
            pass  # pragma: no cover


def test_without_the_espeak_extra_espeak_fails_at_start_with_the_install_hint() -> None:
    # A process where espeakng-loader cannot be imported, as without the espeak extra.
    code = """
import json, sys
sys.modules["espeakng_loader"] = None
import trio
from trio_tts_stream import testing
from trio_tts_stream._cli import main
from trio_tts_stream._exceptions import ConfigError

result = {"available": testing.espeak_available(), "engines": list(testing.ENGINES)}

async def start():
    try:
        async with testing.open_test_server(engine="espeak"):
            result["server"] = "started"
    except ConfigError as exc:
        result["server"] = str(exc)
    async with testing.open_test_server() as srv:  # the tone still works
        result["tone"] = len(srv.reference_pcm("hi"))

trio.run(start)
try:
    testing.render_chunks("hi", engine="espeak")
except ConfigError as exc:
    result["render"] = str(exc)
result["exit"] = main(["serve", "--engine", "espeak", "--port", "0"])
print(json.dumps(result))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    result = json.loads(out.stdout)
    hint = "pip install 'trio-tts-stream[espeak]'"
    assert result["available"] is False
    assert result["engines"] == ["tone", "espeak"]
    assert hint in result["server"]
    assert hint in result["render"]
    assert result["tone"] == tone_frames("hi")
    assert result["exit"] == 2  # a configuration error
    # The CLI says so in one line, without a traceback.
    assert out.stderr.count("\n") == 1
    assert out.stderr.startswith("error: ")
    assert hint in out.stderr


def test_formats_and_voices() -> None:
    assert (
        RESPONSE_FORMATS == OPENAI_RESPONSE_FORMATS == ("mp3", "opus", "aac", "flac", "wav", "pcm")
    )
    assert len(VOICES) == 11
    assert ENGINES == ("tone", "espeak")


# --------------------------------------------------------------------------------------
# The serve command


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(argv)


def test_serve_arguments_defaults() -> None:
    args = _parse([])
    assert (args.host, args.port, args.engine) == ("127.0.0.1", 8880, "tone")
    assert (args.ttfb_ms, args.realtime_factor, args.chunk_ms) == (0.0, None, 20.0)
    assert (args.certfile, args.keyfile, args.api_key, args.wav_exact_sizes) == (
        None,
        None,
        None,
        False,
    )
    args = _parse(
        ["--port", "0", "--ttfb-ms", "50", "--realtime-factor", "1.5", "--wav-exact-sizes"]
    )
    assert (args.port, args.ttfb_ms, args.realtime_factor, args.wav_exact_sizes) == (
        0,
        50.0,
        1.5,
        True,
    )


async def _start_cli(
    nursery: trio.Nursery, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> str:
    """Start run_serve in ``nursery``; return the base URL it announces."""
    nursery.start_soon(run_serve, _parse(argv))
    with trio.fail_after(10):
        while True:
            err = capsys.readouterr().err
            if err:
                break
            await trio.sleep(0.01)
    prefix = "serving OpenAI-compatible TTS on "
    assert err.startswith(prefix)
    assert err.count("\n") == 1
    return err[len(prefix) :].strip()


async def test_run_serve(capsys: pytest.CaptureFixture[str]) -> None:
    async with trio.open_nursery() as nursery:
        url = await _start_cli(
            nursery, capsys, ["--port", "0", "--api-key", "k", "--wav-exact-sizes"]
        )
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/v1")
        async with http_client(url, headers={"Authorization": "Bearer k"}) as c:
            response = await c.post("/audio/speech", json=speech(response_format="wav"))
        assert response.status_code == 200
        with wave.open(io.BytesIO(response.content)) as wav:
            assert wav.getnframes() == tone_frames(TEXT)
        nursery.cancel_scope.cancel()


async def test_run_serve_tls(
    capsys: pytest.CaptureFixture[str],
    ca: Any,
    client_ssl_context: ssl.SSLContext,
    tmp_path: Path,
) -> None:
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    argv = ["--port", "0", "--certfile", str(tmp_path / "cert.pem")]
    argv += ["--keyfile", str(tmp_path / "key.pem")]
    async with trio.open_nursery() as nursery:
        url = await _start_cli(nursery, capsys, argv)
        assert url.startswith("https://127.0.0.1:")
        async with httpx.AsyncClient(base_url=url, verify=client_ssl_context) as c:
            response = await c.post("/audio/speech", json=speech())
        assert response.content == synthesize_tone(TEXT).tobytes()
        nursery.cancel_scope.cancel()


async def test_run_serve_rejects_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="certfile"):
        await run_serve(_parse(["--keyfile", "key.pem"]))
    with pytest.raises(ConfigError, match="certificate"):
        await run_serve(_parse(["--certfile", str(tmp_path / "missing.pem")]))
    with pytest.raises(ConfigError, match="chunk_ms"):
        await run_serve(_parse(["--port", "0", "--chunk-ms", "0"]))
    async with open_test_server() as srv:
        with pytest.raises(ConfigError, match="cannot listen"):
            await run_serve(_parse(["--port", str(srv.port)]))


# -- one options object ------------------------------------------------------------------


async def test_serve_and_open_server_share_one_options_object() -> None:
    from trio_tts_stream.server import ServerOptions, SpeechServer, open_server

    options = ServerOptions(ttfb_ms=120, api_key="sk-options-KEY-0123456789")
    assert "sk-options" not in repr(options)
    async with open_server(options, chunk_ms=40) as server:
        assert isinstance(server, SpeechServer)
        config = server._config
        assert (config.ttfb_ms, config.chunk_ms, config.api_key) == (
            120,
            40,
            "sk-options-KEY-0123456789",
        )
    async with trio.open_nursery() as nursery:
        started: SpeechServer = await nursery.start(partial(serve, options, realtime_factor=3.0))
        assert (started._config.ttfb_ms, started._config.realtime_factor) == (120, 3.0)
        nursery.cancel_scope.cancel()


async def test_a_misspelled_option_is_a_type_error() -> None:
    from trio_tts_stream.server import open_server

    changes: dict[str, Any] = {"ttfb": 100}
    with pytest.raises(TypeError, match="ttfb"):
        async with open_server(**changes):
            pass  # pragma: no cover


def test_options_are_checked_when_created() -> None:
    from trio_tts_stream.server import ServerOptions

    with pytest.raises(ConfigError, match="chunk_ms must be > 0"):
        ServerOptions(chunk_ms=0)
    with pytest.raises(ConfigError, match="unknown engine"):
        ServerOptions(engine="nope")


async def test_under_autojump_connections_to_the_server_are_in_memory(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The conftest routes autojump tests' connections through ``_memnet`` (why: see it)."""
    import _memnet

    async with open_test_server() as server, httpx.AsyncClient() as client:
        async with client.stream(
            "POST", server.base_url + "/audio/speech", json=speech("Hello")
        ) as r:
            body = await r.aread()
            assert isinstance(r.extensions["network_stream"], _memnet._ClientStream)
    assert body == server.render("Hello")
