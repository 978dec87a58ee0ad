"""What a body is, end to end: the bundled server on 127.0.0.1 answers, the player decides.

Bodies that are not audio (a proxy's HTML page, a JSON error, an SSE stream, a plain
message) must never reach the sink; audio the old rules misread (ADTS and FLAC behind an
ID3 tag, mp3 with no hint, pcm with ``rate=`` or big-endian ``audio/L16``) must play in
full at the right rate.
"""

from __future__ import annotations

import tempfile
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _cli_helpers import run_cli, serve_process

import trio_tts_stream as tts
from trio_tts_stream.testing import open_test_server, render_chunks, synthesize_tone

TEXT = "Every byte of this sentence is audio."


def body(fmt: str) -> bytes:
    return b"".join(render_chunks(TEXT, response_format=fmt))


def id3_tag(padding: int = 512) -> bytes:
    """An ID3v2.4 tag with a title frame and padding, as ffmpeg's ``-write_id3v2 1``."""
    title = b"\x03Every byte"
    frame = b"TIT2" + len(title).to_bytes(4, "big") + b"\x00\x00" + title
    size = len(frame) + padding
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x04\x00\x00" + syncsafe + frame + bytes(padding)


@pytest.mark.parametrize(
    ("misanswer", "needle"),
    [
        ("html", "'text/html', not audio: '<!DOCTYPE html>"),
        ("json", "'application/json', not audio: '{\"error\""),
        ("sse", "an event stream"),
        ("text", "Internal Server Error"),
        ("json-as-audio", "the response is text"),
    ],
)
async def test_non_audio_never_reaches_the_sink(
    misanswer: str, needle: str, tmp_path: Path
) -> None:
    path = tmp_path / "out.wav"
    async with open_test_server(misanswer=misanswer) as server, tts.WavFileSink(path) as sink:
        request = tts.SpeechRequest(TEXT, base_url=server.base_url, api_key="sk-test")
        with pytest.raises(tts.NotAudioError) as info:
            await tts.play(request, sink=sink)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)
    assert not path.exists() or path.stat().st_size <= 44  # no frame was written
    report = info.value.report
    assert report is not None
    assert report.outcome is not tts.Outcome.COMPLETED
    assert report.frames_played == 0
    assert report.retries == 0  # not audio is not a network fault: no retry
    assert server.errors == []


@pytest.fixture(scope="module")
def html_server() -> Iterator[str]:
    with serve_process("--misanswer", "html") as url:
        yield url


def test_the_cli_refuses_an_html_page_in_one_line(html_server: str) -> None:
    result = run_cli("say", "hi", "--base-url", html_server, "--null")
    assert result.returncode == 5, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "text/html" in lines[0]
    assert "Traceback" not in result.stderr


async def play_file(
    data: bytes, content_type: str, response_format: str | None = None
) -> tuple[tts.PlaybackReport, np.ndarray]:
    """Serve ``data`` as a file, play its URL into a WAV file (no real-time pacing) and
    read back what was written."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "out.wav"
        async with open_test_server() as server, tts.WavFileSink(path) as sink:
            url = server.add_file("a.bin", data, content_type)
            report = await tts.play(url, sink=sink, response_format=response_format)
        with wave.open(str(path)) as w:
            assert w.getframerate() == report.sample_rate
            samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return report, samples


async def test_flac_behind_an_id3_tag_plays_in_full_bit_exact() -> None:
    pytest.importorskip("av")
    report, samples = await play_file(id3_tag() + body("flac"), "audio/mpeg")
    assert report.format == "flac"
    assert report.format_note is not None
    assert "audio/mpeg" in report.format_note
    np.testing.assert_array_equal(samples, synthesize_tone(TEXT))


@pytest.mark.parametrize("content_type", ["audio/aac", "application/octet-stream"])
async def test_adts_behind_an_id3_tag_plays_in_full(content_type: str) -> None:
    pytest.importorskip("av")
    _plain, plain_samples = await play_file(body("aac"), "audio/aac", "aac")
    report, samples = await play_file(id3_tag() + body("aac"), content_type)
    assert report.format == "aac"
    assert report.decode_errors == 0
    assert len(samples) == len(plain_samples) > 0.9 * len(synthesize_tone(TEXT))
    np.testing.assert_array_equal(samples, plain_samples)


async def test_mp3_with_no_hint_plays_as_mp3() -> None:
    """A GET answered application/octet-stream, no response_format: the frames decide."""
    pytest.importorskip("av")
    report, samples = await play_file(body("mp3"), "application/octet-stream")
    assert report.format == "mp3"
    reference = synthesize_tone(TEXT).astype(np.float64)
    n = min(len(samples), len(reference))
    assert n > 0.95 * len(reference)
    assert np.corrcoef(samples[:n], reference[:n])[0, 1] > 0.98


async def test_pcm_with_a_rate_parameter_plays_at_that_rate() -> None:
    """openedai-speech declares its 22050 Hz pcm as audio/pcm;rate=22050."""
    pcm = synthesize_tone(TEXT, sample_rate=22050)
    report, samples = await play_file(pcm.tobytes(), "audio/pcm;rate=22050", "pcm")
    assert report.sample_rate == 22050
    assert report.audio_s == pytest.approx(len(pcm) / 22050)
    assert report.format_note is not None
    assert "rate=22050" in report.format_note
    np.testing.assert_array_equal(samples, pcm)


async def test_audio_l16_is_big_endian() -> None:
    pcm = synthesize_tone(TEXT)
    report, samples = await play_file(pcm.astype(">i2").tobytes(), "audio/L16; rate=24000")
    assert report.format == "pcm"
    np.testing.assert_array_equal(samples, pcm)


async def test_bytes_with_nothing_to_go_by_are_refused_not_played_as_pcm(
    tmp_path: Path,
) -> None:
    path = tmp_path / "out.wav"
    async with open_test_server() as server, tts.WavFileSink(path) as sink:
        url = server.add_file("a.bin", synthesize_tone(TEXT).tobytes())
        with pytest.raises(tts.NotAudioError, match="pass response_format") as info:
            await tts.play(url, sink=sink)
    assert not path.exists() or path.stat().st_size <= 44
    assert info.value.report is not None
    assert info.value.report.frames_played == 0
