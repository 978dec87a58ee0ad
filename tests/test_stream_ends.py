"""Stream ends that are not clean: a header-patch trailer after WAV data is not played,
and a stream cut short says so in ``truncated``."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_tts_stream as tts
from trio_tts_stream._decoders.wav import WavDecoder
from trio_tts_stream._format import FormatHint
from trio_tts_stream._metrics import MetricsRecorder
from trio_tts_stream._stream_decoder import StreamDecoder
from trio_tts_stream.testing import open_test_server, render_chunks, synthesize_tone, wav_header

TONE = synthesize_tone("A stream that ends well, and some that do not.")
PCM = TONE.astype("<i2").tobytes()


def lavf_header() -> bytes:
    """The 78-byte header FFmpeg's WAV muxer writes: fmt, a LIST/INFO/ISFT chunk, data,
    with the streaming sizes 0xFFFFFFFF."""
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, 24000, 48000, 2, 16)
    info = b"INFO" + b"ISFT" + struct.pack("<I", 14) + b"Lavf61.7.100\x00\x00"
    lst = b"LIST" + struct.pack("<I", len(info)) + info
    header = b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + fmt + lst
    header += b"data" + struct.pack("<I", 0xFFFFFFFF)
    assert len(header) == 78
    return header


def header_patch(header: bytes, data_bytes: int) -> bytes:
    """What a muxer writing into a buffer emptied after every write sends at the end:
    the header's length of zeros, with the sizes it went back to fill in."""
    patch = bytearray(len(header))
    patch[4:8] = struct.pack("<I", len(header) - 8 + data_bytes)
    patch[-4:] = struct.pack("<I", data_bytes)
    return bytes(patch)


def decode_wav(body: bytes, cuts: list[int]) -> tuple[np.ndarray, WavDecoder]:
    decoder = WavDecoder()
    blocks = []
    start = 0
    for cut in [*sorted(cuts), len(body)]:
        blocks += decoder.decode(body[start:cut])
        start = cut
    blocks += decoder.flush()
    out = np.concatenate(blocks)[:, 0] if blocks else np.zeros(0, np.float32)
    return np.rint(out * 32768).astype(np.int16), decoder


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(0, len(PCM) + 2 * 78), max_size=6))
def test_header_patch_trailer_is_not_played_in_any_chunking(cuts: list[int]) -> None:
    header = lavf_header()
    body = header + PCM + header_patch(header, len(PCM))
    played, decoder = decode_wav(body, cuts)
    np.testing.assert_array_equal(played, TONE)  # not one sample of the sizes: no click
    assert decoder.trailer is not None
    assert "78-byte header patch" in decoder.trailer
    assert decoder.ignored_trailing_bytes == 78


def test_header_patch_after_a_canonical_44_byte_header() -> None:
    header = wav_header(24000)
    played, decoder = decode_wav(header + PCM + header_patch(header, len(PCM)), [1000])
    np.testing.assert_array_equal(played, TONE)
    assert decoder.trailer is not None


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(bytes(78), id="silence"),  # zeros: real silence, played
        pytest.param(header_patch(lavf_header(), 12), id="wrong-size"),  # sizes do not add up
        pytest.param(np.full(39, 1000, "<i2").tobytes(), id="audio"),
    ],
)
def test_a_tail_that_is_not_a_header_patch_is_played(tail: bytes) -> None:
    header = lavf_header()
    played, decoder = decode_wav(header + PCM + tail, [500])
    expected = np.concatenate([TONE, np.frombuffer(tail, "<i2")])
    np.testing.assert_array_equal(played, expected)
    assert decoder.trailer is None


def test_wav_shorter_than_its_declared_size_is_truncated() -> None:
    body = wav_header(24000, data_bytes=len(PCM)) + PCM[: len(PCM) // 2]
    played, decoder = decode_wav(body, [])
    assert len(played) == len(TONE) // 2  # what came is played
    assert decoder.truncated == (
        f"the WAV data ended after {len(PCM) // 2} of the {len(PCM)} bytes its header declares"
    )
    _, whole = decode_wav(wav_header(24000, data_bytes=len(PCM)) + PCM, [])
    assert whole.truncated is None


def stream_decode(body: bytes, name: str) -> tuple[int, MetricsRecorder]:
    recorder = MetricsRecorder()
    decoder = StreamDecoder(FormatHint(name), recorder=recorder)
    decoder.begin_response(None)
    frames = 0
    for event in [*decoder.feed(body), *decoder.finish()]:
        if not hasattr(event, "sample_rate"):
            frames += len(event)
    return frames, recorder


@pytest.mark.parametrize("name", ["opus", "mp3", "aac", "wav"])
def test_a_whole_stream_is_not_truncated(name: str) -> None:
    pytest.importorskip("av")
    frames, recorder = stream_decode(b"".join(render_chunks("Whole.", response_format=name)), name)
    assert frames > 0
    assert recorder.truncated is None


def test_ogg_without_its_end_of_stream_page_is_truncated() -> None:
    pytest.importorskip("av")
    body = b"".join(render_chunks("Cut before the end.", response_format="opus"))
    last_page = body.rindex(b"OggS")
    assert body[last_page + 5] & 0x04  # the EOS page
    frames, recorder = stream_decode(body[:last_page], "opus")
    assert frames > 0  # what came was played
    assert recorder.truncated is not None
    assert "without its end-of-stream page" in recorder.truncated


@pytest.mark.parametrize(("name", "frame"), [("mp3", 192), ("aac", None)])
def test_a_frame_cut_in_the_middle_is_truncated(name: str, frame: int | None) -> None:
    pytest.importorskip("av")
    body = b"".join(render_chunks("Cut in the middle of a frame.", response_format=name))
    cut = body[: len(body) - 50]
    frames, recorder = stream_decode(cut, name)
    assert frames > 0
    assert recorder.truncated is not None
    assert f"the {name} stream was cut mid-frame" in recorder.truncated
    if frame is not None:
        assert f"of {frame} bytes" in recorder.truncated


async def test_truncated_ogg_over_http_plays_and_reports_truncated(tmp_path: Path) -> None:
    pytest.importorskip("av")
    body = b"".join(render_chunks("Cut before the end, over HTTP.", response_format="opus"))
    cut = body[: body.rindex(b"OggS")]
    async with open_test_server() as server, tts.WavFileSink(tmp_path / "o.wav") as sink:
        url = server.add_file("cut.opus", cut, "audio/ogg")
        report = await tts.play(url, sink=sink)
    assert report.outcome is tts.Outcome.COMPLETED
    assert report.frames_played > 0
    assert report.truncated is not None
    assert "without its end-of-stream page" in report.truncated


async def test_header_patch_trailer_over_http_is_not_played(tmp_path: Path) -> None:
    header = lavf_header()
    body = header + PCM + header_patch(header, len(PCM))
    async with open_test_server() as server, tts.WavFileSink(tmp_path / "o.wav") as sink:
        url = server.add_file("patched.wav", body, "audio/wav")
        report = await tts.play(url, sink=sink)
    with wave.open(str(tmp_path / "o.wav")) as w:
        played = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    np.testing.assert_array_equal(played, TONE)
    assert report.truncated is None
