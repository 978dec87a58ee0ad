"""Tests for the pcm and wav decoders and the decoder registry.

Every decoder is fed three ways (whole, one byte at a time, with trailing data), and
hypothesis checks that *any* chunking of the input yields identical samples. Expected
samples come from an independent pure-Python reference (``int.from_bytes`` /
``struct.unpack`` per sample), from the ``wave`` module, or from ffmpeg.
"""

from __future__ import annotations

import io
import itertools
import shutil
import struct
import subprocess
import sys
import wave
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import cast

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_tts_stream._decoders import (
    _MISSING,
    DECODERS,
    PcmDecoder,
    WavDecoder,
    available_formats,
    create_decoder,
    sniff_format,
)
from trio_tts_stream._decoders._base import Decoder
from trio_tts_stream._exceptions import ConfigError, DecodeError, UnsupportedFormatError
from trio_tts_stream._format import AudioFormat, float_to_int16

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

# (sample format, format tag, bits) for every encoding the WAV decoder supports.
ENCODINGS = [
    ("u8", 1, 8),
    ("s16", 1, 16),
    ("s24", 1, 24),
    ("s32", 1, 32),
    ("f32", 3, 32),
    ("f64", 3, 64),
]
WIDTH = {"u8": 1, "s16": 2, "s24": 3, "s32": 4, "f32": 4, "f64": 8}
GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


# -- helpers ---------------------------------------------------------------------------


def run(decoder: Decoder, chunks: Iterable[bytes]) -> F32:
    """Feed ``chunks`` then flush; check every block's shape/dtype; concatenate."""
    blocks = []
    for chunk in chunks:
        blocks += decoder.decode(chunk)
    blocks += decoder.flush()
    fmt = decoder.audio_format
    assert fmt is not None
    for block in blocks:
        assert_owns_memory(block)
        assert block.dtype == np.float32
        assert block.ndim == 2
        assert block.shape[1] == fmt.channels
        assert block.shape[0] > 0  # no empty blocks
        assert block.flags.c_contiguous
    if not blocks:
        return np.empty((0, fmt.channels), dtype=np.float32)
    return np.concatenate(blocks)


def assert_owns_memory(block: F32) -> None:
    """``block`` is C-contiguous and its memory belongs to numpy, not to an input buffer."""
    assert block.flags.c_contiguous
    root = block
    while isinstance(root.base, np.ndarray):
        root = root.base
    assert root.base is None
    assert root.flags.owndata


def feed_all(decoder: Decoder, chunks: Iterable[bytes]) -> None:
    """Feed ``chunks`` without flushing (for tests that expect decode() to raise)."""
    for piece in chunks:
        decoder.decode(piece)


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def irregular(data: bytes) -> list[bytes]:
    """Chunks of 1, 2, 3, ... 7 bytes, repeating (never frame-aligned for long)."""
    chunks, pos, size = [], 0, 1
    while pos < len(data):
        chunks.append(data[pos : pos + size])
        pos += size
        size = size % 7 + 1
    return chunks


def split_at(data: bytes, points: Iterable[int]) -> list[bytes]:
    edges = [0, *sorted(set(points)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


FEEDS: list[Callable[[bytes], list[bytes]]] = [whole, bytewise, irregular]


def reference(raw: bytes, sample_format: str, channels: int) -> F32:
    """Independent per-sample decoding in pure Python (whole frames only)."""
    width = WIDTH[sample_format]
    usable = len(raw) - len(raw) % (width * channels)
    values: list[float] = []
    for i in range(0, usable, width):
        b = raw[i : i + width]
        if sample_format == "u8":
            values.append((b[0] - 128) / 128)
        elif sample_format == "f32":
            values.append(struct.unpack("<f", b)[0])
        elif sample_format == "f64":
            values.append(struct.unpack("<d", b)[0])
        else:
            values.append(int.from_bytes(b, "little", signed=True) / 2 ** (8 * width - 1))
    # float64 holds every value exactly; the cast rounds to nearest once (s32, f64 only).
    ref64: F64 = np.array(values, dtype=np.float64).reshape(-1, channels)
    return ref64.astype(np.float32)


def random_payload(sample_format: str, frames: int, channels: int, seed: int) -> bytes:
    """Random samples covering the full range, including both extremes."""
    rng = np.random.default_rng(seed)
    n = frames * channels
    if sample_format == "f32":
        return rng.uniform(-1, 1, n).astype("<f4").tobytes()
    if sample_format == "f64":
        return rng.uniform(-1, 1, n).astype("<f8").tobytes()
    raw = rng.integers(0, 256, n * WIDTH[sample_format], dtype=np.uint8).tobytes()
    if n and sample_format != "u8":  # put the most negative value first, the max last
        w = WIDTH[sample_format]
        lo = (-(2 ** (8 * w - 1))).to_bytes(w, "little", signed=True)
        hi = (2 ** (8 * w - 1) - 1).to_bytes(w, "little", signed=True)
        raw = lo + raw[w:-w] + hi if n > 1 else lo
    return raw


def chunk(chunk_id: bytes, body: bytes) -> bytes:
    """A RIFF chunk with its pad byte when the body size is odd."""
    return chunk_id + struct.pack("<I", len(body)) + body + b"\x00" * (len(body) & 1)


def fmt_body(
    tag: int,
    channels: int,
    rate: int,
    bits: int,
    *,
    extensible: bool = False,
    guid_tail: bytes = GUID_TAIL,
) -> bytes:
    align = channels * bits // 8
    if not extensible:
        return struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    head = struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * align, align, bits)
    return head + struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + guid_tail


def build_wav(
    payload: bytes,
    *,
    tag: int = 1,
    channels: int = 1,
    rate: int = 24000,
    bits: int = 16,
    extensible: bool = False,
    data_size: int | None = None,
    riff_size: int | None = None,
    before_fmt: Sequence[bytes] = (),
    before_data: Sequence[bytes] = (),
    after_data: bytes = b"",
) -> bytes:
    """A hand-built WAV file; sizes default to the correct ones."""
    fmt = chunk(b"fmt ", fmt_body(tag, channels, rate, bits, extensible=extensible))
    size = len(payload) if data_size is None else data_size
    data = b"data" + struct.pack("<I", size) + payload
    if data_size is None and len(payload) % 2:
        data += b"\x00"
    body = b"WAVE" + b"".join(before_fmt) + fmt + b"".join(before_data) + data + after_data
    riff = len(body) if riff_size is None else riff_size
    return b"RIFF" + struct.pack("<I", riff) + body


def header_length(wav: bytes) -> int:
    """Offset of the first sample byte in ``wav``."""
    return wav.index(b"data") + 8


LIST_CHUNK = chunk(b"LIST", b"INFOISFT\x0e\x00\x00\x00Lavf59.27.100\x00")
FACT_CHUNK = chunk(b"fact", struct.pack("<I", 1234))
ODD_CHUNK = chunk(b"JUNK", b"odd")  # 3 bytes + pad byte


# -- pcm ---------------------------------------------------------------------------------


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("channels", [1, 2, 3])
def test_pcm_matches_reference(feed: Callable[[bytes], list[bytes]], channels: int) -> None:
    raw = random_payload("s16", 300, channels, seed=channels)
    decoder = PcmDecoder(channels=channels)
    out = run(decoder, feed(raw))
    assert out.shape == (300, channels)
    np.testing.assert_array_equal(out, reference(raw, "s16", channels))
    assert decoder.trailing_bytes_dropped == 0


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize(("channels", "extra"), [(1, 1), (2, 1), (2, 3), (3, 5)])
def test_pcm_trailing_partial_frame_dropped(
    feed: Callable[[bytes], list[bytes]], channels: int, extra: int
) -> None:
    raw = random_payload("s16", 50, channels, seed=7)
    decoder = PcmDecoder(channels=channels)
    out = run(decoder, feed(raw + b"\x7f" * extra))
    np.testing.assert_array_equal(out, reference(raw, "s16", channels))
    assert decoder.trailing_bytes_dropped == extra


def test_pcm_partial_frame_carried_over() -> None:
    decoder = PcmDecoder(channels=2)
    frame = struct.pack("<hh", -32768, 16384)
    assert decoder.decode(frame[:1]) == []
    assert decoder.decode(frame[1:3]) == []
    [block] = decoder.decode(frame[3:] + frame[:2])
    np.testing.assert_array_equal(block, [[-1.0, 0.5]])
    [block] = decoder.decode(frame[2:])
    np.testing.assert_array_equal(block, [[-1.0, 0.5]])
    assert decoder.flush() == []
    assert decoder.trailing_bytes_dropped == 0


def test_pcm_exact_values_and_round_trip() -> None:
    ints = np.array([-32768, -32767, -1, 0, 1, 16384, 32767], dtype="<i2")
    [block] = PcmDecoder().decode(ints.tobytes())
    expected = np.array([-1.0, -32767 / 32768, -1 / 32768, 0.0, 1 / 32768, 0.5, 32767 / 32768])
    assert np.array_equal(block[:, 0].astype(np.float64), expected)
    np.testing.assert_array_equal(float_to_int16(block)[:, 0], ints)


def test_pcm_one_block_per_call() -> None:
    decoder = PcmDecoder()
    assert decoder.decode(b"") == []
    blocks = decoder.decode(b"\x01\x00" * 4800 + b"\x02")
    assert len(blocks) == 1
    assert blocks[0].shape == (4800, 1)
    blocks = decoder.decode(b"\x00" + b"\x01\x00" * 99)  # completes the carried frame
    assert len(blocks) == 1
    assert blocks[0].shape == (100, 1)


def test_pcm_blocks_do_not_alias_the_input() -> None:
    decoder = PcmDecoder()
    buf = bytearray(struct.pack("<3h", 100, 200, 300) + b"\x01")
    [first] = decoder.decode(cast(bytes, buf))
    buf[:] = b"\xff" * len(buf)  # the caller reuses its buffer
    buf2 = bytearray(b"\x00\x00\x40")
    [second] = decoder.decode(cast(bytes, buf2))  # completes the carried frame
    buf2[:] = b"\xff\xff\xff"
    np.testing.assert_array_equal(first[:, 0] * 32768, [100, 200, 300])
    np.testing.assert_array_equal(second[:, 0] * 32768, [1, 0x4000])
    assert_owns_memory(first)
    assert_owns_memory(second)


def test_pcm_audio_format_and_name() -> None:
    decoder = PcmDecoder(sample_rate=16000, channels=2)
    assert decoder.name == "pcm"
    assert decoder.audio_format == AudioFormat(16000, 2)
    assert PcmDecoder().audio_format == AudioFormat(24000, 1)


@pytest.mark.parametrize(("rate", "channels"), [(0, 1), (24000, 0), (24000, 99), (10**9, 1)])
def test_pcm_invalid_format_is_config_error(rate: int, channels: int) -> None:
    with pytest.raises(ConfigError, match="invalid pcm stream format"):
        PcmDecoder(sample_rate=rate, channels=channels)


@settings(max_examples=80, deadline=None)
@given(
    channels=st.integers(1, 3),
    frames=st.integers(0, 2400),
    extra=st.integers(0, 5),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_pcm_any_chunking_gives_identical_samples(
    channels: int, frames: int, extra: int, seed: int, data: st.DataObject
) -> None:
    raw = random_payload("s16", frames, channels, seed) + b"\x55" * extra
    points = data.draw(st.lists(st.integers(0, len(raw)), max_size=40), label="splits")
    one_shot = PcmDecoder(channels=channels)
    chunked = PcmDecoder(channels=channels)
    expected = run(one_shot, [raw])
    out = run(chunked, split_at(raw, points))
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out, reference(raw, "s16", channels))
    assert chunked.trailing_bytes_dropped == one_shot.trailing_bytes_dropped
    assert chunked.trailing_bytes_dropped == extra % (2 * channels)


# -- wav: valid files --------------------------------------------------------------------


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_wav_written_by_wave_module(
    feed: Callable[[bytes], list[bytes]], channels: int, width: int
) -> None:
    sample_format = {1: "u8", 2: "s16", 3: "s24", 4: "s32"}[width]
    raw = random_payload(sample_format, 240, channels, seed=width * 10 + channels)
    out_file = io.BytesIO()
    with wave.open(out_file, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(8000)
        writer.writeframes(raw)
    wav = out_file.getvalue()

    decoder = WavDecoder()
    out = run(decoder, feed(wav))
    assert decoder.audio_format == AudioFormat(8000, channels)
    assert decoder.sample_format == sample_format
    assert decoder.declared_data_size == len(raw)
    np.testing.assert_array_equal(out, reference(raw, sample_format, channels))
    if width == 2:  # second reference: what the wave module reads back
        with wave.open(io.BytesIO(wav), "rb") as reader:
            frames = reader.readframes(reader.getnframes())
        ints = np.frombuffer(frames, dtype="<i2").reshape(-1, channels)
        assert np.array_equal(out.astype(np.float64), ints / 32768.0)


@pytest.mark.parametrize("extensible", [False, True])
@pytest.mark.parametrize(("sample_format", "tag", "bits"), ENCODINGS)
def test_wav_every_sample_format(sample_format: str, tag: int, bits: int, extensible: bool) -> None:
    raw = random_payload(sample_format, 101, 2, seed=bits + tag)
    wav = build_wav(raw, tag=tag, channels=2, rate=22050, bits=bits, extensible=extensible)
    for feed in FEEDS:
        decoder = WavDecoder()
        out = run(decoder, feed(wav))
        assert decoder.audio_format == AudioFormat(22050, 2)
        assert decoder.sample_format == sample_format
        np.testing.assert_array_equal(out, reference(raw, sample_format, 2))


def test_wav_exact_conversions() -> None:
    cases = {
        "u8": (bytes([0, 1, 128, 255]), [-1.0, -127 / 128, 0.0, 127 / 128]),
        "s24": (
            b"".join(v.to_bytes(3, "little", signed=True) for v in (-(2**23), -1, 1, 2**23 - 1)),
            [-1.0, -(2.0**-23), 2.0**-23, 1 - 2.0**-23],
        ),
        "s32": (
            struct.pack("<4i", -(2**31), -(2**8), 2**8, 2**31 - 1),
            [-1.0, -(2.0**-23), 2.0**-23, 1.0],  # 2**31 - 1 rounds up to 1.0 in float32
        ),
        "f32": (struct.pack("<4f", -1.5, 0.25, 0.0, 1.5), [-1.5, 0.25, 0.0, 1.5]),
    }
    tags = {"u8": (1, 8), "s24": (1, 24), "s32": (1, 32), "f32": (3, 32)}
    for sample_format, (raw, expected) in cases.items():
        tag, bits = tags[sample_format]
        decoder = WavDecoder()
        out = run(decoder, [build_wav(raw, tag=tag, bits=bits)])
        assert out[:, 0].tolist() == expected, sample_format


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("data_size", [0, 0xFFFFFFFF])
@pytest.mark.parametrize("riff_size", [0, 0xFFFFFFFF, None])
def test_wav_streaming_sizes_run_to_end_of_stream(
    feed: Callable[[bytes], list[bytes]], data_size: int, riff_size: int | None
) -> None:
    raw = random_payload("s16", 500, 1, seed=3)
    wav = build_wav(raw, data_size=data_size, riff_size=riff_size, before_data=[LIST_CHUNK])
    decoder = WavDecoder()
    out = run(decoder, feed(wav + b"\x01"))  # plus a dangling half sample
    np.testing.assert_array_equal(out, reference(raw, "s16", 1))
    assert decoder.declared_data_size is None
    assert decoder.trailing_bytes_dropped == 1
    assert decoder.ignored_trailing_bytes == 0


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize(
    "trailer",
    [b"", LIST_CHUNK, chunk(b"id3 ", b"ID3" + b"\x00" * 20) + b"garbage", b"\x01"],
)
def test_wav_known_data_size_ignores_trailing_bytes(
    feed: Callable[[bytes], list[bytes]], trailer: bytes
) -> None:
    raw = random_payload("s16", 300, 2, seed=4)
    wav = build_wav(raw, channels=2, after_data=trailer)
    decoder = WavDecoder()
    out = run(decoder, feed(wav))
    np.testing.assert_array_equal(out, reference(raw, "s16", 2))
    assert decoder.declared_data_size == len(raw)
    assert decoder.ignored_trailing_bytes == len(trailer)
    assert decoder.trailing_bytes_dropped == 0


@pytest.mark.parametrize("feed", FEEDS)
def test_wav_chunks_before_fmt_and_data_are_skipped(feed: Callable[[bytes], list[bytes]]) -> None:
    raw = random_payload("s24", 77, 3, seed=5)
    big = chunk(b"LIST", bytes(range(256)) * 40 + b"x")  # odd size: padded
    wav = build_wav(
        raw,
        channels=3,
        bits=24,
        before_fmt=[ODD_CHUNK, chunk(b"bext", b"")],
        before_data=[FACT_CHUNK, LIST_CHUNK, big, ODD_CHUNK],
    )
    decoder = WavDecoder()
    out = run(decoder, feed(wav))
    np.testing.assert_array_equal(out, reference(raw, "s24", 3))


@pytest.mark.parametrize("feed", FEEDS)
def test_wav_odd_sized_data_chunk_pad_byte_not_decoded(
    feed: Callable[[bytes], list[bytes]],
) -> None:
    raw = bytes([0, 64, 128, 192, 255])  # 5 frames of mono u8: odd data size
    wav = build_wav(raw, bits=8, after_data=LIST_CHUNK)  # pad byte, then a chunk
    decoder = WavDecoder()
    out = run(decoder, feed(wav))
    assert out[:, 0].tolist() == [-1.0, -0.5, 0.0, 0.5, 127 / 128]
    assert decoder.ignored_trailing_bytes == 1 + len(LIST_CHUNK)


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("extra", [b"\x00\x00", b"\x00", b"\x00\x00\xab"])
def test_wav_longer_and_odd_sized_fmt_chunk(
    feed: Callable[[bytes], list[bytes]], extra: bytes
) -> None:
    raw = random_payload("s16", 30, 1, seed=13)
    fmt = chunk(b"fmt ", fmt_body(1, 1, 24000, 16) + extra)  # odd size: padded
    wav = b"RIFF\x00\x00\x00\x00WAVE" + fmt + chunk(b"data", raw)
    np.testing.assert_array_equal(run(WavDecoder(), feed(wav)), reference(raw, "s16", 1))


def test_wav_every_split_point_in_the_header() -> None:
    raw = random_payload("f32", 20, 1, seed=6)
    wav = build_wav(raw, tag=3, bits=32, extensible=True, before_data=[ODD_CHUNK, LIST_CHUNK])
    expected = run(WavDecoder(), [wav])
    np.testing.assert_array_equal(expected, reference(raw, "f32", 1))
    for cut in range(len(wav) + 1):
        np.testing.assert_array_equal(run(WavDecoder(), [wav[:cut], wav[cut:]]), expected)
        for second in range(cut, min(cut + 9, len(wav))):  # three pieces, short middle
            pieces = [wav[:cut], wav[cut:second], wav[second:]]
            np.testing.assert_array_equal(run(WavDecoder(), pieces), expected)


def test_wav_audio_format_known_exactly_after_fmt_chunk() -> None:
    wav = build_wav(b"\x00\x00" * 4, rate=16000, channels=2, before_fmt=[ODD_CHUNK])
    fmt_end = wav.index(b"fmt ") + 8 + 16
    decoder = WavDecoder()
    for i in range(len(wav)):
        assert decoder.audio_format == (None if i < fmt_end else AudioFormat(16000, 2)), i
        assert (decoder.sample_format is None) == (i < fmt_end)
        decoder.decode(wav[i : i + 1])
    assert decoder.audio_format == AudioFormat(16000, 2)


def test_wav_one_block_per_call_and_no_aliasing() -> None:
    raw = random_payload("s16", 1000, 1, seed=8)
    wav = bytearray(build_wav(raw, before_data=[LIST_CHUNK]))
    view = memoryview(wav)
    decoder = WavDecoder()
    cut = header_length(bytes(wav)) + 101  # header, then 50.5 frames
    first = decoder.decode(cast(bytes, view[:cut]))
    second = decoder.decode(cast(bytes, view[cut:]))
    assert [len(b) for b in first] == [50]
    assert [len(b) for b in second] == [950]
    wav[:] = b"\x00" * len(wav)  # the caller overwrites its buffer
    np.testing.assert_array_equal(first[0], reference(raw[:100], "s16", 1))
    np.testing.assert_array_equal(second[0], reference(raw[100:], "s16", 1))
    assert_owns_memory(first[0])
    assert_owns_memory(second[0])


def test_wav_header_only_stream_is_empty_not_an_error() -> None:
    decoder = WavDecoder()
    out = run(decoder, [build_wav(b"", data_size=0xFFFFFFFF)])
    assert out.shape == (0, 1)


def test_wav_rf64() -> None:
    raw = random_payload("s16", 64, 1, seed=9)
    ds64 = chunk(b"ds64", struct.pack("<QQQI", 0, len(raw), 64, 0))
    body = b"WAVE" + ds64 + chunk(b"fmt ", fmt_body(1, 1, 24000, 16))
    body += b"data" + struct.pack("<I", 0xFFFFFFFF) + raw + LIST_CHUNK
    wav = b"RF64" + struct.pack("<I", 0xFFFFFFFF) + body
    for feed in FEEDS:
        decoder = WavDecoder()
        out = run(decoder, feed(wav))
        np.testing.assert_array_equal(out, reference(raw, "s16", 1))
        assert decoder.declared_data_size == len(raw)
        assert decoder.ignored_trailing_bytes == len(LIST_CHUNK)


@st.composite
def wav_files(draw: st.DrawFn) -> tuple[bytes, bytes, str, int]:
    """A WAV file (with random extra chunks and sizes), its payload, format, channels."""
    sample_format, tag, bits = draw(st.sampled_from(ENCODINGS))
    channels = draw(st.integers(1, 3))
    streaming = draw(st.booleans())
    # A real data size of 0 would read as "unknown length", so known sizes are >= 1 frame.
    frames = draw(st.integers(0 if streaming else 1, 600))
    raw = random_payload(sample_format, frames, channels, draw(st.integers(0, 2**32 - 1)))
    extras = [LIST_CHUNK, FACT_CHUNK, ODD_CHUNK, chunk(b"JUNK", b"")]
    wav = build_wav(
        raw,
        tag=tag,
        channels=channels,
        bits=bits,
        extensible=draw(st.booleans()),
        data_size=draw(st.sampled_from([0, 0xFFFFFFFF])) if streaming else None,
        before_fmt=draw(st.lists(st.sampled_from(extras), max_size=2)),
        before_data=draw(st.lists(st.sampled_from(extras), max_size=3)),
        after_data=b"" if streaming else draw(st.sampled_from([b"", LIST_CHUNK, b"zz"])),
    )
    return wav, raw, sample_format, channels


@settings(max_examples=100, deadline=None)
@given(case=wav_files(), data=st.data())
def test_wav_any_chunking_gives_identical_samples(
    case: tuple[bytes, bytes, str, int], data: st.DataObject
) -> None:
    wav, raw, sample_format, channels = case
    points = data.draw(st.lists(st.integers(0, len(wav)), max_size=40), label="splits")
    expected = run(WavDecoder(), [wav])
    np.testing.assert_array_equal(expected, reference(raw, sample_format, channels))
    np.testing.assert_array_equal(run(WavDecoder(), split_at(wav, points)), expected)


# -- wav: written by ffmpeg ----------------------------------------------------------------

FFMPEG = shutil.which("ffmpeg")


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed")
@pytest.mark.parametrize(
    ("codec", "channels", "extra_args", "to_pipe", "sample_format"),
    [
        ("pcm_s16le", 1, [], False, "s16"),  # fmt, LIST, data of known size
        ("pcm_s16le", 1, [], True, "s16"),  # RIFF/data sizes 0xFFFFFFFF
        ("pcm_s24le", 2, [], False, "s24"),  # WAVE_FORMAT_EXTENSIBLE
        ("pcm_s32le", 2, [], True, "s32"),
        ("pcm_f32le", 1, [], False, "f32"),  # extensible float, fact chunk
        ("pcm_s16le", 2, ["-rf64", "always"], False, "s16"),
    ],
)
def test_wav_written_by_ffmpeg(
    tmp_path: Path,
    codec: str,
    channels: int,
    extra_args: list[str],
    to_pipe: bool,
    sample_format: str,
) -> None:
    assert FFMPEG is not None
    ints = np.frombuffer(random_payload("s16", 2400, channels, seed=11), dtype="<i2")
    (tmp_path / "in.raw").write_bytes(ints.tobytes())
    out_path = tmp_path / "out.wav"
    cmd = [FFMPEG, "-nostdin", "-v", "error", "-f", "s16le", "-ar", "24000"]
    cmd += ["-ac", str(channels), "-i", str(tmp_path / "in.raw"), "-c:a", codec, *extra_args]
    cmd += ["-f", "wav", "pipe:1" if to_pipe else str(out_path)]
    proc = subprocess.run(cmd, capture_output=True, check=True, timeout=30)
    wav = proc.stdout if to_pipe else out_path.read_bytes()
    assert b"LIST" in wav[: header_length(wav)]  # ffmpeg's encoder tag precedes the data

    expected = (ints / 32768.0).reshape(-1, channels)  # widening s16 keeps the value exactly
    for feed in (whole, irregular):
        decoder = WavDecoder()
        out = run(decoder, feed(wav))
        assert decoder.audio_format == AudioFormat(24000, channels)
        assert decoder.sample_format == sample_format
        assert decoder.declared_data_size == (None if to_pipe else ints.size * WIDTH[sample_format])
        assert np.array_equal(out.astype(np.float64), expected)


# -- wav: errors ---------------------------------------------------------------------------

ADVICE = "response_format='pcm'"


@pytest.mark.parametrize(
    "body",
    [
        b'{"error": {"message": "Invalid voice", "type": "invalid_request_error"}}',
        b"ID3\x04\x00\x00\x00\x00\x00\x00",
        b"OggS\x00\x02" + b"\x00" * 20,
        b"\xff\xfb\x90\x64" + b"\x00" * 20,
        b"RIFX\x24\x00\x00\x00WAVE",
        b"<html><body>502 Bad Gateway</body></html>",
    ],
)
def test_wav_not_riff_is_rejected_at_once(body: bytes) -> None:
    decoder = WavDecoder()
    first_bad = next(i for i in range(4) if body[i] != b"RIFF"[i])
    for i in range(first_bad):  # a valid prefix is accepted
        assert decoder.decode(body[i : i + 1]) == []
    with pytest.raises(UnsupportedFormatError) as excinfo:
        decoder.decode(body[first_bad:])
    message = str(excinfo.value)
    assert "RIFF" in message
    assert ADVICE in message
    assert repr(body[:4])[2:-1] in message  # shows what was found


def test_wav_riff_but_not_wave() -> None:
    with pytest.raises(UnsupportedFormatError, match=r"b'AVI '.*response_format='pcm'"):
        WavDecoder().decode(b"RIFF\x00\x10\x00\x00AVI LIST")


@pytest.mark.parametrize(
    ("tag", "bits", "extensible", "found"),
    [
        (0x0055, 0, False, r"MPEG Layer III \(mp3\) \(format tag 0x0055\)"),
        (0x0002, 4, False, r"Microsoft ADPCM \(format tag 0x0002\)"),
        (0x0011, 4, False, r"IMA ADPCM \(format tag 0x0011\)"),
        (0x0007, 8, False, r"mu-law"),
        (0x1234, 16, False, r"unknown codec \(format tag 0x1234\)"),
        (0x0001, 12, False, r"12-bit PCM \(format tag 0x0001\)"),
        (0x0003, 16, False, r"16-bit IEEE float"),
        (0x0055, 16, True, r"mp3\) \(WAVE_FORMAT_EXTENSIBLE sub-format 0x0055\)"),
        (0x0001, 20, True, r"20-bit PCM \(WAVE_FORMAT_EXTENSIBLE sub-format 0x0001\)"),
    ],
)
def test_wav_unsupported_codec(tag: int, bits: int, extensible: bool, found: str) -> None:
    wav = build_wav(b"\x00" * 64, tag=tag, bits=bits, extensible=extensible)
    decoder = WavDecoder()
    with pytest.raises(UnsupportedFormatError, match=found) as excinfo:
        feed_all(decoder, irregular(wav))
    assert ADVICE in str(excinfo.value)
    assert decoder.audio_format is None


def test_wav_extensible_with_unknown_guid() -> None:
    ambisonic_tail = b"\x21\x07\xd3\x11\x86\x44\xc8\xc1\xca\x00\x00\x00"  # not the PCM GUID
    body = fmt_body(1, 1, 24000, 16, extensible=True, guid_tail=b"\x00\x00" + ambisonic_tail)
    wav = b"RIFF\xff\xff\xff\xffWAVE" + chunk(b"fmt ", body) + b"data\x00\x00\x00\x00"
    with pytest.raises(UnsupportedFormatError, match=r"sub-format GUID 0100000021.*pcm"):
        WavDecoder().decode(wav)


def _fmt_then_data(fmt_chunk: bytes) -> bytes:
    return b"RIFF\x00\x00\x00\x00WAVE" + fmt_chunk + b"data\x00\x00\x00\x00\x00\x00"


@pytest.mark.parametrize(
    ("wav", "exc_type", "match"),
    [
        (_fmt_then_data(chunk(b"fmt ", fmt_body(1, 0, 24000, 16))), DecodeError, "0 channels"),
        (_fmt_then_data(chunk(b"fmt ", b"\x01\x00" * 7)), DecodeError, "fmt chunk of 14 bytes"),
        (
            _fmt_then_data(b"fmt " + struct.pack("<I", 10**6)),
            DecodeError,
            "'fmt ' chunk of 1000000 bytes",
        ),
        (
            _fmt_then_data(chunk(b"fmt ", fmt_body(1, 1, 24000, 16, extensible=True)[:18])),
            DecodeError,
            "EXTENSIBLE fmt chunk of 18 bytes",
        ),
        (b"RIFF\x00\x00\x00\x00WAVEdata\x04\x00\x00\x00\x00\x00", DecodeError, "before the fmt"),
        (
            _fmt_then_data(chunk(b"fmt ", fmt_body(1, 1, 24000, 16)) * 2),
            DecodeError,
            "more than one fmt",
        ),
        (
            _fmt_then_data(chunk(b"fmt ", fmt_body(1, 1, 0, 16))),
            UnsupportedFormatError,
            "sample_rate",
        ),
        (
            _fmt_then_data(chunk(b"fmt ", fmt_body(1, 40, 24000, 16))),
            UnsupportedFormatError,
            "channels",
        ),
    ],
)
def test_wav_malformed_header(wav: bytes, exc_type: type[Exception], match: str) -> None:
    for feed in (whole, bytewise):
        decoder = WavDecoder()
        with pytest.raises(DecodeError, match=match) as excinfo:
            feed_all(decoder, feed(wav))
        assert excinfo.type is exc_type


def test_wav_truncated_header_raises_from_flush() -> None:
    wav = build_wav(b"\x00\x01" * 10, before_data=[LIST_CHUNK])
    for cut in range(header_length(wav)):
        decoder = WavDecoder()
        assert decoder.decode(wav[:cut]) == []
        with pytest.raises(DecodeError, match="header is incomplete") as excinfo:
            decoder.flush()
        assert excinfo.type is DecodeError
        assert f"after {cut} bytes" in str(excinfo.value)
    decoder = WavDecoder()  # the data chunk header complete: no error, just no audio
    assert decoder.decode(wav[: header_length(wav)]) == []
    assert decoder.flush() == []


def test_wav_empty_stream_raises_from_flush() -> None:
    with pytest.raises(DecodeError, match="after 0 bytes, in the RIFF header"):
        WavDecoder().flush()


def test_wav_short_data_chunk_is_not_an_error() -> None:
    raw = random_payload("s16", 100, 1, seed=12)
    wav = build_wav(raw, data_size=10_000)  # the server promised more than it sent
    decoder = WavDecoder()
    np.testing.assert_array_equal(run(decoder, [wav]), reference(raw, "s16", 1))
    assert decoder.declared_data_size == 10_000


# -- registry and sniffing -----------------------------------------------------------------


def test_registry_contents() -> None:
    formats = available_formats()
    assert formats == tuple(sorted(DECODERS))
    assert {"pcm", "wav"} <= set(formats)
    assert DECODERS["pcm"] is PcmDecoder
    assert DECODERS["wav"] is WavDecoder
    for name in formats:
        assert create_decoder(name).name == name


def test_create_decoder() -> None:
    pcm = create_decoder("pcm", sample_rate=16000, channels=2)
    assert isinstance(pcm, PcmDecoder)
    assert pcm.audio_format == AudioFormat(16000, 2)
    wav = create_decoder(" WAV ", sample_rate=16000)  # sample_rate is for pcm only
    assert isinstance(wav, WavDecoder)
    assert wav.audio_format is None
    assert create_decoder("wav") is not create_decoder("wav")
    with pytest.raises(ConfigError):
        create_decoder("pcm", channels=0)


def test_create_decoder_unknown_name_lists_available() -> None:
    with pytest.raises(UnsupportedFormatError, match="unknown audio format 'speex'") as excinfo:
        create_decoder("speex")
    for name in available_formats():
        assert name in str(excinfo.value)


def test_create_decoder_missing_optional_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_MISSING, "speex", "trio-tts-stream[formats]")
    with pytest.raises(UnsupportedFormatError, match=r"pip install 'trio-tts-stream\[formats\]'"):
        create_decoder("speex")


def test_optional_decoders_load_lazily() -> None:
    """Importing the package does not import PyAV; creating such a decoder does."""
    code = (
        "import sys, trio_tts_stream as t\n"
        "assert 'av' not in sys.modules, 'PyAV imported at package import'\n"
        "assert 'mp3' in t.available_formats()\n"
        "d = t.create_decoder('mp3')\n"
        "assert type(d).__name__ == 'Mp3Decoder' and 'av' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_missing_dependency_leaves_the_format_out() -> None:
    code = (
        "import sys\n"
        "sys.modules['av'] = None\n"
        "import importlib.util\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n == 'av' else real(n, *a)\n"
        "import trio_tts_stream as t\n"
        "assert t.available_formats() == ('pcm', 'wav'), t.available_formats()\n"
        "try:\n"
        "    t.create_decoder('opus')\n"
        "except t.UnsupportedFormatError as e:\n"
        "    assert 'trio-tts-stream[formats]' in str(e)\n"
        "else:\n"
        "    raise AssertionError('no error')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize(
    ("first_bytes", "content_type", "expected"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", None, "wav"),
        (b"RIFF\xff\xff\xff\xffWAVEfmt ", "audio/mpeg", "wav"),  # bytes beat a wrong label
        (b"RF64\xff\xff\xff\xffWAVEds64", None, "wav"),
        (b"RIFF\x24\x00\x00\x00AVI LIST", None, None),
        (b"", "audio/wav", "wav"),
        (b"", "audio/x-wav", "wav"),
        (b"", "Audio/Wave; codecs=1", "wav"),
        (b"\x00\x00\x01\x00", "audio/pcm", "pcm"),
        (b"\x00\x00", "audio/L16; rate=24000; channels=1", "pcm"),
        (b"\xff\xff\xfe\xff", "audio/pcm", "pcm"),  # pcm samples that look like frame sync
        (b"\x00\x00\x01\x00", None, None),
        (b"\x00\x00\x01\x00", "application/octet-stream", None),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00", None, "mp3"),
        (b"\xff\xfb\x90\x64\x00", None, "mp3"),
        (b"\xff\xf3\x90\x64\x00", "application/octet-stream", "mp3"),
        (b"", "audio/mpeg", "mp3"),
        (b"\xff\xf1\x50\x80\x00", None, "aac"),
        (b"\xff\xf9\x50\x80\x00", None, "aac"),
        (b"", "audio/aac", "aac"),
        (b"fLaC\x00\x00\x00\x22", None, "flac"),
        (b"", "audio/flac", "flac"),
        (b"OggS\x00\x02\x00\x00", None, "opus"),
        (b"", "audio/ogg", "opus"),
        (b"\xff\xe9\x90\x64", None, None),  # sync bits with a reserved MPEG version
        (b"\xff\xfb\xf0\x64", None, None),  # bad bitrate index
        (b"\xff\xfb\x0c\x64", None, None),  # reserved sample-rate index
        (b"\xff\xff\xff\xff", None, None),  # pcm: samples -1, -1
        (b"\xff\xff\x00\x00", None, None),  # pcm: samples -1, 0 (Layer I, free format)
        (b"\xff\xff\x90\x00", None, None),  # pcm: samples -1, 144 (Layer I)
        (b"\xff\xfd\x90\x64", None, None),  # Layer II
        (b"\xff\xf1\x3c\x80", None, None),  # ADTS sync, invalid sampling index
        (b"\xff\xfb", None, None),  # too short to tell
        (b"\xff", None, None),
        (b"", None, None),
        (b'{"error": "nope"}', "application/json", None),
    ],
)
def test_sniff_format(first_bytes: bytes, content_type: str | None, expected: str | None) -> None:
    assert sniff_format(first_bytes, content_type) == expected
