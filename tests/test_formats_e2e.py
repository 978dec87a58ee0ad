"""Every format end to end: the test server encodes, the player streams and decodes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import trio
from _cli_helpers import clean_env

import trio_tts_stream as tts
from trio_tts_stream.testing import open_test_server, synthesize_tone

FORMATS = ["pcm", "wav", "mp3", "aac", "flac", "opus"]
TEXT = "Every format streams with the same low latency."

pytest.importorskip("av")


def _missing(fmt: str) -> bool:
    return fmt not in tts.available_formats()


def _best_alignment(decoded: np.ndarray, reference: np.ndarray) -> tuple[int, float]:
    """(lag, normalised correlation) of ``decoded`` against ``reference`` (FFT)."""
    n = len(decoded) + len(reference)
    size = 1 << (n - 1).bit_length()
    xc = np.fft.irfft(np.fft.rfft(decoded, size) * np.conj(np.fft.rfft(reference, size)), size)
    lags = np.concatenate([np.arange(0, len(decoded)), np.arange(-len(reference) + 1, 0)])
    values = np.concatenate([xc[: len(decoded)], xc[size - len(reference) + 1 :]])
    best = int(np.argmax(values))
    lag = int(lags[best])
    a = decoded[max(lag, 0) :]
    b = reference[max(-lag, 0) :]
    m = min(len(a), len(b))
    corr = float(np.dot(a[:m], b[:m]) / (np.linalg.norm(a[:m]) * np.linalg.norm(b[:m]) + 1e-12))
    return lag, corr


#: How far audio_s may exceed the pcm: ADTS carries no end-padding information, so aac
#: keeps up to one frame (1024 samples = 42.7 ms at 24 kHz) of encoder padding.
SLACK_S = {"aac": 1024 / 24000}


class Collect(tts.NullSink):
    """A NullSink that keeps what it is given (float32)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[np.ndarray] = []

    def write_some(self, block: tts.Block) -> int:
        n = super().write_some(block)
        self.blocks.append(np.array(block[:n, 0]))
        return n

    def samples(self) -> np.ndarray:
        return np.concatenate(self.blocks) if self.blocks else np.zeros(0, np.float32)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_each_format_streams_and_matches_the_pcm(
    fmt: str, autojump_clock: trio.abc.Clock
) -> None:
    if _missing(fmt):
        pytest.fail(f"{fmt} decoder not available: {tts.available_formats()}")
    reference = synthesize_tone(TEXT).astype(np.float32) / 32768
    async with open_test_server(ttfb_ms=300, realtime_factor=2) as server, Collect() as sink:
        report = await tts.speak(TEXT, base_url=server.base_url, response_format=fmt, sink=sink)
        out_rate = sink.audio_format.sample_rate if sink.audio_format else 0
    assert report.outcome is tts.Outcome.COMPLETED
    assert report.mode == "stream"
    assert report.format == fmt
    assert report.underruns == 0
    assert report.decode_errors == 0
    assert report.ttfa_ms is not None
    assert report.ttfb_ms is not None
    assert report.ttfa_ms - report.ttfb_ms <= report.buffer_ms + 60
    assert abs(report.audio_s - len(reference) / 24000) <= SLACK_S.get(fmt, 0.030)
    decoded = sink.samples()
    if out_rate != 24000:  # opus decodes at 48 kHz: compare at the reference's rate
        import soxr

        decoded = soxr.resample(decoded, out_rate, 24000)
    lag, corr = _best_alignment(decoded, reference)
    if fmt in ("pcm", "wav", "flac"):
        np.testing.assert_array_equal(decoded, reference)
        return
    else:
        assert corr > 0.95, (fmt, lag, corr)
        assert abs(lag) <= 2, (fmt, lag)  # gapless: priming trimmed


async def _corrupted(body: bytes) -> AsyncIterator[bytes]:
    rng = np.random.default_rng(5)
    cut = len(body) // 2
    damaged = body[:cut] + rng.integers(0, 256, 700, dtype=np.uint8).tobytes() + body[cut + 300 :]
    for i in range(0, len(damaged), 1000):
        yield damaged[i : i + 1000]
        await trio.sleep(0.005)


@pytest.mark.parametrize("fmt", ["mp3", "aac", "flac", "opus"])
async def test_corrupted_stream_plays_to_the_end(fmt: str, autojump_clock: trio.abc.Clock) -> None:
    if _missing(fmt):
        pytest.fail(f"{fmt} decoder not available")
    async with open_test_server() as server:
        body = server.render(TEXT * 2, response_format=fmt)
    async with tts.NullSink() as sink:
        report = await tts.play(_corrupted(body), sink=sink, response_format=fmt)
    assert report.outcome is tts.Outcome.COMPLETED
    assert report.decode_errors > 0
    expected_s = len(synthesize_tone(TEXT * 2)) / 24000
    assert report.audio_s > expected_s * 0.8


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_say_every_format(served: str, fmt: str, tmp_path: Path) -> None:
    """The issue's acceptance check, as a user runs it."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "trio_tts_stream",
            "say",
            TEXT,
            "--base-url",
            served,
            "--null",
            "--json",
            "--format",
            fmt,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["outcome"] == "completed"
    assert report["underruns"] == 0
    assert report["ttfa_ms"] - report["ttfb_ms"] <= report["buffer_ms"] + 60
    assert abs(report["audio_s"] - len(synthesize_tone(TEXT)) / 24000) <= SLACK_S.get(fmt, 0.030)
