"""How-to: test code that speaks, against the bundled server (pytest + pytest-trio).

Run with ``pytest`` in trio mode (``trio_mode = true`` in the pytest configuration).
"""

from __future__ import annotations

import ssl
import wave
from pathlib import Path

import numpy as np
import pytest
import trio
import trustme

import trio_tts_stream as tts
from trio_tts_stream.testing import (
    RESPONSE_FORMATS,
    FaultPlan,
    espeak_available,
    open_test_server,
)

TEXT = "A sentence long enough to be interrupted by the network. " * 3


def wav_samples(path: Path) -> np.ndarray:
    with wave.open(str(path)) as played:
        return np.frombuffer(played.readframes(played.getnframes()), dtype="<i2")


async def test_every_sample_arrives(tmp_path: Path) -> None:
    async with open_test_server() as server, tts.WavFileSink(tmp_path / "out.wav") as sink:
        report = await tts.speak("Hello there.", base_url=server.base_url, sink=sink)
    assert report.outcome is tts.Outcome.COMPLETED
    # pcm, wav and flac are bit-exact: what was played is what the server encoded.
    np.testing.assert_array_equal(
        wav_samples(tmp_path / "out.wav"), server.reference_pcm("Hello there.")
    )


async def test_first_audio_after_the_initial_buffer(autojump_clock: trio.abc.Clock) -> None:
    # Under the autojump clock the server's pacing and the NullSink run on virtual
    # time: the test takes milliseconds and the numbers are exact.
    async with (
        open_test_server(ttfb_ms=300, realtime_factor=1.5) as server,
        tts.NullSink() as sink,
    ):
        report = await tts.speak(
            "A sentence of a few seconds.", base_url=server.base_url, sink=sink
        )
    assert report.ttfb_ms is not None
    assert report.ttfa_ms is not None
    assert 300 <= report.ttfb_ms < 310
    # 150 ms of audio arrives 100 ms after the first byte at 1.5x; then one 20 ms block.
    assert report.ttfa_ms - report.ttfb_ms <= 150 / 1.5 + 20 + 5
    assert report.underruns == 0


async def test_barge_in(autojump_clock: trio.abc.Clock) -> None:
    text = "A long answer that the user interrupts. " * 10
    async with open_test_server(realtime_factor=1.0) as server, tts.NullSink() as sink:
        request = tts.SpeechRequest(text, base_url=server.base_url)
        async with tts.open_playback(request, sink=sink) as playback:
            await trio.sleep(1.0)  # the user speaks after one second
            playback.cancel()
        assert playback.report.outcome is tts.Outcome.CANCELLED
        heard_s = playback.report.frames_played / 24000
        assert 0.8 < heard_s < 1.0
        # The HTTP response was closed: the server sees its client go away.
        with trio.fail_after(5):
            while server.open_connections:  # noqa: ASYNC110
                await trio.sleep(0.01)
        assert server.errors == []


async def test_request_carries_key_and_voice() -> None:
    async with open_test_server(api_key="sk-test-123") as server, tts.NullSink() as sink:
        await tts.speak(
            "Hi.", base_url=server.base_url, api_key="sk-test-123", voice="nova", sink=sink
        )
        with pytest.raises(tts.AuthenticationError):
            await tts.speak("Hi.", base_url=server.base_url, api_key="wrong", sink=sink)
    first = server.requests[0]
    assert first.json["voice"] == "nova"
    assert first.headers["authorization"] == "<redacted>"  # the key itself is not recorded
    assert [r.status for r in server.requests] == [200, 401]


@pytest.mark.parametrize("response_format", RESPONSE_FORMATS)
async def test_every_format(response_format: str, autojump_clock: trio.abc.Clock) -> None:
    async with open_test_server(realtime_factor=4) as server, tts.NullSink() as sink:
        report = await tts.speak(
            "Every format streams.",
            base_url=server.base_url,
            response_format=response_format,
            sink=sink,
        )
    assert report.format == response_format
    assert report.mode == "stream"
    assert report.audio_s > 1.0


async def test_https_with_a_private_ca() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with open_test_server(ssl_context=server_context) as server, tts.NullSink() as sink:
        assert server.base_url.startswith("https://")
        report = await tts.speak(
            "Secure.", base_url=server.base_url, sink=sink, verify=client_context
        )
        assert report.outcome is tts.Outcome.COMPLETED
        with pytest.raises(tts.TLSError):  # the system's trust store does not know our CA
            await tts.speak("Secure.", base_url=server.base_url, sink=sink)


async def test_retries_server_errors(autojump_clock: trio.abc.Clock) -> None:
    plan = FaultPlan(fail_first=2, fail_status=503, retry_after=0.5)
    async with open_test_server(faults=plan) as server, tts.NullSink() as sink:
        report = await tts.speak(TEXT, base_url=server.base_url, sink=sink)
    assert [r.status for r in server.requests] == [503, 503, 200]
    assert report.retries == 2
    assert report.outcome is tts.Outcome.COMPLETED


async def test_resumes_a_dropped_connection(autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    # The first response is cut after 100 000 bytes (about 2 s of pcm), mid-utterance.
    plan = FaultPlan(drop_after_bytes=(100_000,))
    async with (
        open_test_server(realtime_factor=2, faults=plan) as server,
        tts.WavFileSink(tmp_path / "out.wav") as sink,
    ):
        report = await tts.speak(TEXT, base_url=server.base_url, sink=sink)
    assert report.reconnects == 1
    assert report.skipped_overlap_frames > 0  # re-requested, verified, skipped
    # Not a sample lost or repeated.
    np.testing.assert_array_equal(wav_samples(tmp_path / "out.wav"), server.reference_pcm(TEXT))


async def test_recovers_from_a_stall(autojump_clock: trio.abc.Clock) -> None:
    plan = FaultPlan(stall_after_bytes=50_000, stall_ms=5_000)  # longer than stall_timeout_s
    async with (
        open_test_server(realtime_factor=2, faults=plan) as server,
        tts.NullSink() as sink,
    ):
        report = await tts.speak(TEXT, base_url=server.base_url, sink=sink)
    assert report.stalls == 1
    assert report.outcome is tts.Outcome.COMPLETED


async def test_get_resumes_with_range(autojump_clock: trio.abc.Clock) -> None:
    plan = FaultPlan(drop_after_bytes=(100_000,))
    async with (
        open_test_server(realtime_factor=2, faults=plan) as server,
        tts.NullSink() as sink,
    ):
        url = server.audio_url(TEXT, response_format="wav")  # a file with ETag and Range
        report = await tts.play(url, sink=sink)
    assert report.resumed_bytes == 100_000  # continued at the next byte
    assert report.outcome is tts.Outcome.COMPLETED


@pytest.mark.skipif(not espeak_available(), reason="needs the espeak extra")
async def test_real_speech() -> None:
    async with open_test_server(engine="espeak") as server, tts.NullSink() as sink:
        report = await tts.speak("Real words this time.", base_url=server.base_url, sink=sink)
    assert report.outcome is tts.Outcome.COMPLETED


async def test_the_llm_speaker_example(autojump_clock: trio.abc.Clock) -> None:
    import llm_speaker  # docs/examples/llm_speaker.py

    async with open_test_server(ttfb_ms=300, realtime_factor=1.5) as server, tts.NullSink() as sink:
        heard = await llm_speaker.main(sink=sink, base_url=server.base_url)
    interrupted, sorry = heard
    assert interrupted  # something of the forecast was heard, not all of it
    assert "The forecast" in interrupted or "Tomorrow" in interrupted
    assert "example.com" not in interrupted
    assert "**" not in interrupted
    assert sorry == "Sorry, go ahead."
    inputs = [r.json["input"] for r in server.requests if r.json]
    assert inputs[0] == "The forecast"
    assert all("**" not in i and "](" not in i for i in inputs)
