"""The bundled server's profiles of real servers, and the client against each of them.

The profiles reproduce how Kokoro-FastAPI, openedai-speech and servers with one encoder
or a file-object body put audio on the wire (see docs/servers.rst). The client must play
each at the right rate and length, with no click from a trailer, without taking a
server's pause for a dead connection, and start as soon as the bytes allow.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
import trio
from test_network_sim import Collect

import trio_tts_stream as tts
from trio_tts_stream.server._profiles import KOKORO_THINK_S, profile_body
from trio_tts_stream.testing import open_test_server, render_chunks, synthesize_tone

TEXT = (
    "Kokoro thinks between its chunks of sentences. Each chunk is written at once. "
    "Then the wire is silent for a while, and the next chunk follows."
)
REFERENCE = synthesize_tone(TEXT)
LOSSLESS = ("pcm", "wav", "flac")


async def speak(
    profile: str, fmt: str, config: tts.StreamConfig | None = None
) -> tuple[tts.PlaybackReport, np.ndarray, int]:
    async with open_test_server(profile=profile) as server, Collect() as sink:
        report = await tts.speak(
            TEXT, base_url=server.base_url, response_format=fmt, sink=sink, config=config
        )
        return report, sink.played(), len(server.requests)


def kokoro_pieces(fmt: str) -> tuple[bytes, ...]:
    return profile_body(
        "kokoro-fastapi",
        REFERENCE,
        fmt,
        sample_rate=24000,
        ttfb_s=0.0,
        chunk_ms=20,
        plain=(),
    ).pieces


@pytest.mark.parametrize("fmt", ["pcm", "wav", "mp3", "flac", "opus", "aac"])
async def test_kokoro_fastapi_pauses_are_ridden_out_and_every_sample_plays(
    fmt: str, autojump_clock: trio.abc.Clock
) -> None:
    if fmt != "pcm":
        pytest.importorskip("av")
    report, played, requests = await speak("kokoro-fastapi", fmt)
    assert requests == 1  # the synthesis was never restarted
    assert report.outcome is tts.Outcome.COMPLETED
    assert report.reconnects == 0
    assert report.stalls >= 1  # pauses of 2.4 s on the wire (backpressure may hide one)
    assert report.longest_pause_ms >= 2000
    assert report.ttfa_ms is not None
    assert report.ttfa_ms < KOKORO_THINK_S * 1000  # heard before the second write came
    assert report.truncated is None
    if fmt in LOSSLESS:
        np.testing.assert_array_equal(played, REFERENCE)  # wav: its trailer not played
    else:
        assert report.output_sample_rate is not None
        at_24k = len(played) * 24000 / report.output_sample_rate
        assert abs(at_24k - len(REFERENCE)) <= 2048  # codec delay and padding


def test_kokoro_fastapi_bodies_have_the_container_details_of_its_writer() -> None:
    pytest.importorskip("av")
    wav = kokoro_pieces("wav")
    header = wav[0][:78]
    assert header[:4] == b"RIFF"
    assert header[4:8] == b"\xff\xff\xff\xff"
    assert b"LIST" in header
    assert header[70:78] == b"data\xff\xff\xff\xff"
    trailer = wav[-1]
    assert len(trailer) == 78
    data = sum(map(len, wav)) - 78 - 78
    assert struct.unpack_from("<I", trailer, 74)[0] == data  # the sizes, rewritten
    assert trailer[8:74] == bytes(66)

    mp3 = b"".join(kokoro_pieces("mp3"))
    assert mp3[:3] == b"ID3"
    assert b"Xing" not in mp3[:4096]
    assert b"Info" not in mp3[:4096]

    flac = b"".join(kokoro_pieces("flac"))
    assert flac[:4] == b"fLaC"
    streaminfo = flac[8:42]
    total = int.from_bytes(streaminfo[13:18], "big") & ((1 << 36) - 1)
    assert total == 0
    pos, padding = 4, 0
    while True:  # walk the metadata blocks
        kind, size = flac[pos] & 0x7F, int.from_bytes(flac[pos + 1 : pos + 4], "big")
        if kind == 1:
            padding = size
        if flac[pos] & 0x80:
            break
        pos += 4 + size
    assert padding == 8192

    opus = b"".join(kokoro_pieces("opus"))
    granules = []
    at = opus.find(b"OggS")
    while at != -1:
        granules.append(int.from_bytes(opus[at + 6 : at + 14], "little"))
        at = opus.find(b"OggS", at + 1)
    audio = [g for g in granules if g > 0]
    steps = np.diff(audio[:-1])
    assert len(steps) >= 3
    assert np.median(steps) >= 40_000  # pages of about one second at 48 kHz


async def test_openedai_speech_pcm_at_22050_plays_at_22050(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_test_server(profile="openedai-speech") as server, Collect() as sink:
        report = await tts.speak(TEXT, base_url=server.base_url, response_format="pcm", sink=sink)
    assert report.sample_rate == 22050  # not 9 % fast at 24 kHz
    assert report.format_note is not None
    assert "rate=22050" in report.format_note
    assert report.audio_s == pytest.approx(len(REFERENCE) / 24000, abs=0.001)


@pytest.mark.parametrize("fmt", ["pcm", "mp3"])
async def test_wav_answered_for_another_format_plays_exactly(
    fmt: str, autojump_clock: trio.abc.Clock
) -> None:
    report, played, _ = await speak("wav-always", fmt)
    assert report.format == "wav"
    assert report.format_note is not None
    assert "WAV file" in report.format_note
    np.testing.assert_array_equal(played, REFERENCE)  # the header not played as samples


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "aac"])
async def test_tiny_chunks_split_at_every_newline_play_as_the_whole_body(
    fmt: str, autojump_clock: trio.abc.Clock
) -> None:
    if fmt != "wav":
        pytest.importorskip("av")
    plain, plain_played, _ = await speak_plain(fmt)
    report, played, _ = await speak("file-lines", fmt)
    assert report.outcome is tts.Outcome.COMPLETED
    np.testing.assert_array_equal(played, plain_played)
    body = b"".join(render_chunks(TEXT, response_format=fmt))
    assert body.count(b"\n") > 50  # hundreds of writes for the same bytes
    assert plain.format == report.format


async def speak_plain(fmt: str) -> tuple[tts.PlaybackReport, np.ndarray, int]:
    async with open_test_server() as server, Collect() as sink:
        report = await tts.speak(TEXT, base_url=server.base_url, response_format=fmt, sink=sink)
        return report, sink.played(), len(server.requests)
