"""Resampling to the output's rate and the buffered fallback for unstreamable input."""

from __future__ import annotations

import shutil
import sys
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import soxr
import trio

import trio_tts_stream as tts
from trio_tts_stream._resample import Resampler

RATE = 24000


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * RATE)) * 2000).clip(-30000, 30000).astype("<i2")


async def chunks(data: bytes, size: int = 3000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]
        await trio.sleep(0.01)


@pytest.mark.parametrize("out_rate", [16000, 44100, 48000])
def test_resampler_streams_like_one_shot(out_rate: int) -> None:
    x = noise(1.0).astype(np.float32) / np.float32(32768)
    rs = Resampler(RATE, out_rate, 1)
    pieces = [rs.process(x[i : i + 1000].reshape(-1, 1)) for i in range(0, len(x), 1000)]
    pieces.append(rs.flush())
    streamed = np.concatenate(pieces)[:, 0]
    one_shot = soxr.resample(x, RATE, out_rate)
    assert len(streamed) == len(one_shot)
    np.testing.assert_array_equal(streamed, one_shot)
    assert len(rs.flush()) == 0


async def test_output_rate_is_resampled(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    samples = noise(0.8, seed=4)
    path = tmp_path / "out.wav"
    async with tts.WavFileSink(path, samplerate=16000, dtype="float32") as sink:
        report = await tts.play(chunks(samples.tobytes()), sink=sink, response_format="pcm")
    assert report.sample_rate == RATE
    assert report.output_sample_rate == 16000
    assert report.audio_s == pytest.approx(0.8)
    expected = soxr.resample(samples.astype(np.float32) / 32768, RATE, 16000)
    data = np.frombuffer(path.read_bytes()[44:], dtype="<f4")
    assert report.frames_played == len(expected) == len(data)
    np.testing.assert_array_equal(data, expected)


async def test_stereo_output_gets_mono_in_both_channels(autojump_clock: trio.abc.Clock) -> None:
    samples = noise(0.3)
    async with tts.NullSink(channels=2) as sink:
        report = await tts.play(chunks(samples.tobytes()), sink=sink, response_format="pcm")
        assert sink.audio_format == tts.AudioFormat(RATE, 2)
    assert report.frames_played == len(samples)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
async def test_unstreamable_wav_falls_back_to_buffered(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """mu-law WAV: our streaming WAV decoder refuses it; PyAV decodes it whole."""
    samples = noise(0.5, seed=9)
    raw = tmp_path / "in.raw"
    raw.write_bytes(samples.tobytes())
    mulaw = tmp_path / "mulaw.wav"
    await trio.run_process(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-f",
            "s16le",
            "-ar",
            "24000",
            "-ac",
            "1",
            "-i",
            str(raw),
            "-c:a",
            "pcm_mulaw",
            str(mulaw),
        ],
    )
    out = tmp_path / "out.wav"
    async with tts.WavFileSink(out) as sink:
        report = await tts.play(chunks(mulaw.read_bytes()), sink=sink)
    assert report.mode == "buffered-fallback"
    assert report.fallback_reason is not None
    assert "wav" in report.fallback_reason
    assert report.frames_played == len(samples)
    with wave.open(str(out)) as w:
        decoded = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int32)
    # mu-law is lossy (8 bits): close, not equal.
    assert np.max(np.abs(decoded - samples)) < 1100
    assert np.corrcoef(decoded, samples)[0, 1] > 0.99


async def test_garbage_is_a_decode_error_not_a_hang(autojump_clock: trio.abc.Clock) -> None:
    garbage = bytes(range(256)) * 40
    async with tts.NullSink() as sink:
        with pytest.raises(tts.DecodeError):
            await tts.play(chunks(garbage), sink=sink, response_format="wav")


async def test_content_type_disagreeing_with_bytes_plays_the_bytes_and_says_so(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A WAV file labelled audio/mpeg: the RIFF magic wins, bit-exact, with a note."""
    import httpx

    from trio_tts_stream.testing import wav_header

    samples = noise(0.2)
    body = wav_header(RATE, data_bytes=samples.nbytes) + samples.tobytes()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "audio/mpeg"})

    path = tmp_path / "out.wav"
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        async with tts.WavFileSink(path) as sink:
            report = await tts.play("https://x.example/a.mp3", sink=sink, client=client)
    assert report.format == "wav"
    assert report.format_note is not None
    assert "audio/mpeg" in report.format_note
    assert "a WAV file" in report.format_note
    with wave.open(str(path)) as w:
        played = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    np.testing.assert_array_equal(played, samples)


def test_missing_soxr_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing extra is a configuration problem (CLI exit 2), not a device fault."""
    from trio_tts_stream._cli import EXIT_USAGE, _exit_code

    monkeypatch.setitem(sys.modules, "soxr", None)  # `import soxr` raises ImportError
    with pytest.raises(tts.ConfigError, match=r"pip install 'trio-tts-stream\[formats\]'") as info:
        Resampler(RATE, 16000, 1)
    assert not isinstance(info.value, tts.AudioDeviceError)
    assert "16000 Hz" in str(info.value)
    assert _exit_code(info.value) == EXIT_USAGE
