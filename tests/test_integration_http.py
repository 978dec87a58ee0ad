"""The player against the real test server over HTTP(S) on 127.0.0.1 (trustme for TLS)."""

from __future__ import annotations

import ssl
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import trio
import trustme

import trio_tts_stream as tts
from trio_tts_stream.testing import TestServer, open_test_server, synthesize_tone

TEXT = "Streaming speech while it downloads."


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_ssl(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="session")
def client_ssl(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
async def https_server(server_ssl: ssl.SSLContext) -> AsyncIterator[TestServer]:
    async with open_test_server(
        ssl_context=server_ssl, ttfb_ms=300, realtime_factor=4, api_key="sk-test-KEY-0123456789"
    ) as server:
        yield server


def wav_samples(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


@pytest.mark.parametrize("fmt", ["pcm", "wav"])
async def test_https_stream_plays_every_sample(
    fmt: str,
    https_server: TestServer,
    client_ssl: ssl.SSLContext,
    tmp_path: Path,
    autojump_clock: trio.abc.Clock,
) -> None:
    out = tmp_path / "out.wav"
    async with tts.WavFileSink(out) as sink:
        report = await tts.speak(
            TEXT,
            base_url=https_server.base_url,
            api_key="sk-test-KEY-0123456789",
            response_format=fmt,
            sink=sink,
            verify=client_ssl,
        )
    expected = synthesize_tone(TEXT)
    assert report.outcome is tts.Outcome.COMPLETED
    assert report.format == fmt
    assert report.frames_played == len(expected)
    np.testing.assert_array_equal(wav_samples(out), expected)
    request = https_server.requests[-1]
    assert request.json is not None
    assert request.json["response_format"] == fmt


async def test_ttfa_is_ttfb_plus_initial_buffer(
    https_server: TestServer, client_ssl: ssl.SSLContext, autojump_clock: trio.abc.Clock
) -> None:
    async with tts.NullSink() as sink:
        report = await tts.speak(
            TEXT,
            base_url=https_server.base_url,
            api_key="sk-test-KEY-0123456789",
            sink=sink,
            verify=client_ssl,
        )
    assert report.ttfb_ms is not None
    assert report.ttfa_ms is not None
    assert report.ttfb_ms >= 300
    assert report.underruns == 0
    # 20 ms chunks at 4x real time: 150 ms is buffered after 8 chunks (35 ms), then
    # the sink's next 20 ms block plays it.
    assert report.ttfa_ms - report.ttfb_ms <= report.buffer_ms + 30
    assert report.throughput_kbps is not None
    assert report.throughput_kbps > 4 * 384 * 0.9


async def test_wrong_key_is_authentication_error_without_the_key(
    https_server: TestServer, client_ssl: ssl.SSLContext
) -> None:
    async with tts.NullSink() as sink:
        with pytest.raises(tts.AuthenticationError) as info:
            await tts.speak(
                TEXT,
                base_url=https_server.base_url,
                api_key="sk-wrong-SECRET-999",
                sink=sink,
                verify=client_ssl,
            )
    assert info.value.status_code == 401
    assert "SECRET" not in str(info.value)
    assert "SECRET" not in repr(info.value)


async def test_untrusted_certificate_is_tls_error(https_server: TestServer) -> None:
    async with tts.NullSink() as sink:
        with pytest.raises(tts.TLSError, match="certificate"):
            await tts.speak(TEXT, base_url=https_server.base_url, api_key="x", sink=sink)


async def test_server_error_message_reaches_the_user(
    https_server: TestServer, client_ssl: ssl.SSLContext
) -> None:
    async with tts.NullSink() as sink:
        with pytest.raises(tts.BadRequestError, match="voice") as info:
            await tts.speak(
                TEXT,
                base_url=https_server.base_url,
                api_key="sk-test-KEY-0123456789",
                voice="nobody",
                sink=sink,
                verify=client_ssl,
            )
    assert info.value.status_code == 400
    assert "nobody" in info.value.server_message


async def test_barge_in_closes_the_response(
    client_ssl: ssl.SSLContext, server_ssl: ssl.SSLContext, autojump_clock: trio.abc.Clock
) -> None:
    long_text = "A long answer that the user interrupts. " * 20
    async with (
        open_test_server(ssl_context=server_ssl, realtime_factor=1.0) as server,
        tts.NullSink() as sink,
    ):
        request = tts.SpeechRequest(long_text, base_url=server.base_url)
        async with tts.open_playback(request, sink=sink, verify=client_ssl) as pb:
            while pb.statistics().played_s < 0.5:  # noqa: ASYNC110 (polling a statistic)
                await trio.sleep(0.01)
            pb.cancel()
        assert pb.report.outcome is tts.Outcome.CANCELLED
        assert sink.statistics().buffered == 0
        # The server sees the client go away and has no connection left open.
        with trio.fail_after(5):
            while server.open_connections:  # noqa: ASYNC110 (polling a counter)
                await trio.sleep(0.01)
        assert server.errors == []
    assert 0.5 <= pb.report.frames_played / 24000 < 0.6


async def test_get_url_source(autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    """A plain audio URL is fetched with GET (here: the speech endpoint rejects GET)."""
    async with open_test_server() as server, tts.NullSink() as sink:
        with pytest.raises(tts.HTTPStatusError) as info:
            await tts.play(server.base_url + "/audio/speech", sink=sink)
    assert info.value.status_code == 405
