"""Tests for the incremental FLAC decoder.

Streams come from ffmpeg (``-f flac pipe:``, as a server would stream them) and from
PyAV, made from deterministic integer PCM generated here, so every test checks the output
bit for bit against the source samples (FLAC is lossless). Frame boundaries for the
reference come from PyAV's demuxer (its packets are the stream's frames), never from the
decoder under test; headers are rewritten with an independent table-driven CRC.
"""

from __future__ import annotations

import functools
import io
import itertools
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

av = pytest.importorskip("av")

from trio_tts_stream._decoders._base import Decoder  # noqa: E402
from trio_tts_stream._decoders.flac import (  # noqa: E402
    FlacDecoder,
    StreamInfo,
    _crc8,
    _crc16,
    _FrameHeader,
    _parse_frame_header,
)
from trio_tts_stream._exceptions import DecodeError, UnsupportedFormatError  # noqa: E402
from trio_tts_stream._format import AudioFormat  # noqa: E402

F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed")


# -- independent references ------------------------------------------------------------


def _table(poly: int, width: int) -> list[int]:
    mask, top = (1 << width) - 1, 1 << (width - 1)
    out = []
    for byte in range(256):
        crc = byte << (width - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ poly if crc & top else crc << 1) & mask
        out.append(crc)
    return out


CRC8_TABLE = _table(0x07, 8)
CRC16_TABLE = _table(0x8005, 16)


def ref_crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = CRC8_TABLE[crc ^ byte]
    return crc


def ref_crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ CRC16_TABLE[(crc >> 8) ^ byte]
    return crc


def bitwise_crc16(data: bytes) -> int:
    """Bit by bit, straight from the definition (checks the tables too)."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


@dataclass(frozen=True)
class Frame:
    pos: int  # byte offset in the stream
    size: int  # bytes
    first_sample: int
    samples: int


@dataclass(frozen=True)
class Encoded:
    data: bytes
    pcm: I32  # (frames, channels), the source samples
    bits: int
    rate: int
    frames: tuple[Frame, ...]  # from PyAV's demuxer

    @property
    def audio_start(self) -> int:
        return self.frames[0].pos


def demux_frames(data: bytes) -> tuple[Frame, ...]:
    """Frame positions and sample ranges, from PyAV's demuxer (file-level, not streaming)."""
    with av.open(io.BytesIO(data)) as container:
        packets = [p for p in container.demux(audio=0) if p.size]
        frames = tuple(Frame(p.pos, p.size, p.pts, p.duration) for p in packets)
    for a, b in itertools.pairwise(frames):
        assert a.pos + a.size == b.pos
        assert a.first_sample + a.samples == b.first_sample
    return frames


def make_pcm(
    seconds: float, rate: int, channels: int, bits: int, seed: int = 0, level: float = 0.8
) -> I32:
    """Deterministic speech-like test signal: a chirp with an envelope, noise, silence."""
    n = int(seconds * rate)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    chirp = np.sin(2 * np.pi * (150 + 400 * t) * t)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 3 * t)
    x = np.stack([chirp * envelope * level * (1 - 0.25 * c) for c in range(channels)], axis=1)
    x += rng.normal(0, 0.03 * level, size=(n, channels))
    x[n // 3 : n // 3 + rate // 10] = 0.0  # digital silence: constant subframes
    full = 1 << (bits - 1)
    pcm: I32 = np.clip(np.round(x * (full - 1)), -full, full - 1).astype(np.int32)
    return pcm


def raw_bytes(pcm: I32, bits: int) -> bytes:
    if bits == 16:
        return pcm.astype("<i2").tobytes()
    quads = pcm.astype("<i4").reshape(-1).view(np.uint8).reshape(-1, 4)
    return quads[:, :3].tobytes()


@functools.cache
def ffmpeg_flac(
    rate: int,
    channels: int,
    bits: int = 16,
    seconds: float = 1.0,
    args: tuple[str, ...] = (),
    seed: int = 0,
    level: float = 0.8,
) -> Encoded:
    """Encode with ffmpeg to a pipe, the way a TTS server streams FLAC."""
    if FFMPEG is None:
        pytest.skip("ffmpeg is not installed")
    pcm = make_pcm(seconds, rate, channels, bits, seed, level)
    fmt = "s16le" if bits == 16 else "s24le"
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-f", fmt, "-ar", str(rate)]
    cmd += ["-ac", str(channels), "-i", "pipe:", "-c:a", "flac", *args, "-f", "flac", "pipe:"]
    result = subprocess.run(cmd, input=raw_bytes(pcm, bits), capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return Encoded(result.stdout, pcm, bits, rate, demux_frames(result.stdout))


@functools.cache
def pyav_flac(rate: int, channels: int, seconds: float = 1.0) -> Encoded:
    """Encode 16-bit PCM with PyAV into a seekable buffer (STREAMINFO is completed)."""
    pcm = make_pcm(seconds, rate, channels, 16, seed=1)
    layout = "mono" if channels == 1 else "stereo"
    out = io.BytesIO()
    with av.open(out, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate, layout=layout)
        stream.format = "s16"
        frame = av.AudioFrame.from_ndarray(
            pcm.astype(np.int16).reshape(1, -1), format="s16", layout=layout
        )
        frame.sample_rate = rate
        frame.pts = 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    data = out.getvalue()
    return Encoded(data, pcm, 16, rate, demux_frames(data))


def run(decoder: FlacDecoder, chunks: Iterable[bytes]) -> F32:
    """Feed ``chunks`` then flush; check each block's type and shape; concatenate."""
    blocks = []
    for chunk in chunks:
        blocks += decoder.decode(chunk)
    blocks += decoder.flush()
    fmt = decoder.audio_format
    assert fmt is not None
    for block in blocks:
        assert block.dtype == np.float32
        assert block.ndim == 2
        assert block.shape[1] == fmt.channels
        assert block.shape[0] > 0
        assert block.flags.c_contiguous
    if not blocks:
        return np.empty((0, fmt.channels), dtype=np.float32)
    return np.concatenate(blocks)


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def split_at(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    edges = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def as_ints(out: F32, bits: int) -> npt.NDArray[np.float64]:
    """Scale decoded float32 back to integer sample values (exact for 16/24-bit)."""
    return out.astype(np.float64) * float(1 << (bits - 1))


def assert_exact(out: F32, pcm: I32, bits: int) -> None:
    assert out.shape == pcm.shape
    assert np.array_equal(as_ints(out, bits), pcm)


def without_frames(enc: Encoded, lost: Iterable[int]) -> I32:
    """The source samples minus those of the frames with the given indices."""
    keep = np.ones(len(enc.pcm), dtype=bool)
    for index in lost:
        frame = enc.frames[index]
        keep[frame.first_sample : frame.first_sample + frame.samples] = False
    out: I32 = enc.pcm[keep]
    return out


def coded_number(n: int) -> bytes:
    """FLAC's UTF-8-like coding of a frame or sample number."""
    if n < 0x80:
        return bytes([n])
    extra = 1
    while n >= 1 << (6 * extra + 6 - extra):
        extra += 1
    lead = (0xFF00 >> (extra + 1)) & 0xFF
    out = [lead | (n >> (6 * extra))]
    out += [0x80 | ((n >> (6 * k)) & 0x3F) for k in range(extra - 1, -1, -1)]
    return bytes(out)


def rewrite_headers(enc: Encoded, *, variable: bool, implicit_format: bool) -> bytes:
    """Rebuild every frame header: variable blocking strategy (numbers count samples),
    and/or sample rate and size codes 0 ("see STREAMINFO"); recompute both CRCs."""
    out = bytearray(enc.data[: enc.audio_start])
    for index, frame in enumerate(enc.frames):
        raw = enc.data[frame.pos : frame.pos + frame.size]
        bs_code, rate_code = raw[2] >> 4, raw[2] & 15
        lead, extra = raw[4], 0
        while lead & (0x40 >> extra):
            extra += 1
        end = 5 + extra if lead >= 0xC0 else 5
        bs_bytes = raw[end : end + {6: 1, 7: 2}.get(bs_code, 0)]
        end += len(bs_bytes)
        rate_bytes = raw[end : end + {12: 1, 13: 2, 14: 2}.get(rate_code, 0)]
        end += len(rate_bytes)
        assert ref_crc8(raw[:end]) == raw[end]
        assert ref_crc16(raw) == 0
        body = raw[end + 1 : -2]
        b3 = raw[3]
        if implicit_format:
            rate_code, rate_bytes, b3 = 0, b"", b3 & 0xF1
        number = frame.first_sample if variable else index
        header = bytes([0xFF, 0xF8 | variable, bs_code << 4 | rate_code, b3])
        header += coded_number(number) + bs_bytes + rate_bytes
        header += bytes([ref_crc8(header)])
        new = header + body
        out += new + ref_crc16(new).to_bytes(2, "big")
    return bytes(out)


def metadata_block(kind: int, body: bytes, *, last: bool = False) -> bytes:
    return bytes([kind | (0x80 if last else 0)]) + len(body).to_bytes(3, "big") + body


def with_extra_metadata(
    enc: Encoded, blocks: Sequence[tuple[int, bytes]], *, drop_padding: bool = False
) -> bytes:
    """Insert metadata blocks after STREAMINFO, keeping the last-block flag right."""
    data = enc.data
    pos, parsed = 4, []
    while True:
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        parsed.append((data[pos] & 0x7F, data[pos + 4 : pos + 4 + size]))
        last = data[pos] & 0x80
        pos += 4 + size
        if last:
            break
    assert pos == enc.audio_start
    rest = [(kind, body) for kind, body in parsed[1:] if not (drop_padding and kind == 1)]
    everything = [parsed[0], *blocks, *rest]
    head = b"fLaC" + b"".join(
        metadata_block(kind, body, last=i == len(everything) - 1)
        for i, (kind, body) in enumerate(everything)
    )
    return head + data[pos:]


# -- CRCs ------------------------------------------------------------------------------


@given(st.binary(max_size=1500))
@settings(max_examples=60, deadline=None)
def test_crc16_matches_the_bitwise_definition(data: bytes) -> None:
    assert _crc16(data) == bitwise_crc16(data) == ref_crc16(data)


def test_crc16_of_a_frame_with_its_footer_is_zero() -> None:
    data = bytes(range(256)) * 5 + b"\xff\xf8\x00"
    framed = data + bitwise_crc16(data).to_bytes(2, "big")
    assert _crc16(framed) == 0
    assert _crc16(framed[:-1] + bytes([framed[-1] ^ 1])) != 0


@given(st.binary(max_size=20))
@settings(max_examples=40, deadline=None)
def test_crc8_matches_reference(data: bytes) -> None:
    assert _crc8(bytearray(data), 0, len(data)) == ref_crc8(data)


# -- frame headers ---------------------------------------------------------------------

INFO = StreamInfo(4096, 4096, 0, 0, 24000, 2, 16, 0)


def frame_header(
    codes: bytes, number: bytes, explicit: bytes = b"", *, variable: bool = False
) -> bytes:
    header = bytes([0xFF, 0xF8 | variable]) + codes + number + explicit
    return header + bytes([ref_crc8(header)])


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (frame_header(b"\xc7\x18", b"\x00"), _FrameHeader(6, False, 4096, 0)),  # 24 kHz, L/R
        (frame_header(b"\x17\xa8", b"\x7f"), _FrameHeader(6, False, 192, 127)),  # mid/side
        (frame_header(b"\x30\x10", b"\xc2\x80"), _FrameHeader(7, False, 1152, 128)),
        (frame_header(b"\x60\x10", b"\x05", b"\x63"), _FrameHeader(7, False, 100, 5)),
        (frame_header(b"\x7d\x10", b"\x05", b"\x0f\x9f\x5d\xc0"), _FrameHeader(10, False, 4000, 5)),
        (frame_header(b"\x7c\x10", b"\x05", b"\x0f\x9f\x18"), _FrameHeader(9, False, 4000, 5)),
        (frame_header(b"\x7e\x10", b"\x05", b"\x0f\x9f\x09\x60"), _FrameHeader(10, False, 4000, 5)),
        (
            frame_header(b"\xc0\x10", coded_number(2**36 - 1), variable=True),
            _FrameHeader(12, True, 4096, 2**36 - 1),
        ),
    ],
)
def test_frame_header_parses(header: bytes, expected: _FrameHeader) -> None:
    buf = bytearray(b"junk" + header + b"audio")
    assert _parse_frame_header(buf, 4, INFO) == expected
    assert not isinstance(_parse_frame_header(buf[: 4 + len(header) - 1], 4, INFO), _FrameHeader)


def test_every_single_bit_error_in_a_header_is_rejected() -> None:
    header = frame_header(b"\x7d\x18", coded_number(1000), b"\x0f\x9f\x5d\xc0")
    assert isinstance(_parse_frame_header(bytearray(header), 0, INFO), _FrameHeader)
    for bit in range(8 * len(header)):
        damaged = bytearray(header)
        damaged[bit // 8] ^= 0x80 >> (bit % 8)
        assert _parse_frame_header(damaged + bytes(16), 0, INFO) is None, bit


@pytest.mark.parametrize(
    "header",
    [
        frame_header(b"\xc9\x18", b"\x00"),  # 44.1 kHz, STREAMINFO says 24 kHz
        frame_header(b"\xcc\x18", b"\x00", b"\x30"),  # explicit 48 kHz
        frame_header(b"\xc7\x08", b"\x00"),  # one channel, STREAMINFO says two
        frame_header(b"\xc7\x1c", b"\x00"),  # 24-bit samples, STREAMINFO says 16
        frame_header(b"\xd7\x18", b"\x00"),  # 8192 samples, more than the maximum
        frame_header(b"\x07\x18", b"\x00"),  # block size code 0 (reserved)
        frame_header(b"\xcf\x18", b"\x00"),  # sample rate code 15 (invalid)
        frame_header(b"\xc7\xb8", b"\x00"),  # channel code 11 (reserved)
        frame_header(b"\xc7\x16", b"\x00"),  # sample size code 3 (reserved)
        frame_header(b"\xc7\x19", b"\x00"),  # reserved bit set
        frame_header(b"\xc7\x18", b"\x80"),  # number starts with a continuation byte
        frame_header(b"\xc7\x18", b"\xc2\x00"),  # bad continuation byte
        frame_header(b"\xc7\x18", b"\xff" + bytes(7)),  # no 8-byte numbers
        b"\xff\xfa" + frame_header(b"\xc7\x18", b"\x00")[2:],  # reserved sync bit set
    ],
)
def test_invalid_or_inconsistent_headers_are_rejected(header: bytes) -> None:
    assert _parse_frame_header(bytearray(header + bytes(16)), 0, INFO) is None


# -- bit-exact decoding ----------------------------------------------------------------

FFMPEG_CASES = [
    pytest.param(24000, 1, 16, (), id="24k-mono-16"),
    pytest.param(22050, 1, 16, ("-compression_level", "0"), id="22k-mono-16-c0"),
    pytest.param(44100, 2, 16, ("-compression_level", "12"), id="44k-stereo-16-c12"),
    pytest.param(48000, 2, 24, (), id="48k-stereo-24"),
    pytest.param(24000, 1, 24, ("-frame_size", "1000"), id="24k-mono-24-fs1000"),
    pytest.param(48000, 1, 16, ("-frame_size", "200"), id="48k-mono-16-fs200"),
    pytest.param(44100, 2, 24, ("-frame_size", "4608", "-compression_level", "8"), id="44k-st-24"),
    pytest.param(11025, 1, 16, ("-frame_size", "4000"), id="11025-mono-explicit-rate"),
    pytest.param(12000, 2, 16, (), id="12k-stereo-khz-rate"),
]


@needs_ffmpeg
@pytest.mark.parametrize(("rate", "channels", "bits", "args"), FFMPEG_CASES)
def test_ffmpeg_stream_decodes_bit_exact(
    rate: int, channels: int, bits: int, args: tuple[str, ...]
) -> None:
    enc = ffmpeg_flac(rate, channels, bits, 1.0, args)
    decoder = FlacDecoder()
    whole = run(decoder, [enc.data])
    assert decoder.audio_format == AudioFormat(rate, channels)
    assert decoder.errors == 0
    assert decoder.bytes_skipped == 0
    info = decoder.stream_info
    assert info is not None
    assert (info.sample_rate, info.channels, info.bits_per_sample) == (rate, channels, bits)
    assert_exact(whole, enc.pcm, bits)
    for size in (4096, 777, 17):
        assert np.array_equal(run(FlacDecoder(), chunked(enc.data, size)), whole)


@needs_ffmpeg
@pytest.mark.parametrize(("channels", "bits"), [(1, 16), (2, 24)])
def test_byte_by_byte_is_identical(channels: int, bits: int) -> None:
    enc = ffmpeg_flac(24000, channels, bits, 0.5)
    decoder = FlacDecoder()
    out = run(decoder, chunked(enc.data, 1))
    assert decoder.errors == 0
    assert_exact(out, enc.pcm, bits)


@pytest.mark.parametrize(("rate", "channels"), [(24000, 1), (48000, 2)])
def test_pyav_encoded_stream_decodes_bit_exact(rate: int, channels: int) -> None:
    enc = pyav_flac(rate, channels)
    decoder = FlacDecoder()
    out = run(decoder, chunked(enc.data, 1000))
    assert decoder.errors == 0
    assert_exact(out, enc.pcm, 16)
    info = decoder.stream_info
    assert info is not None
    assert info.total_samples == len(enc.pcm)  # seekable output: STREAMINFO completed


@needs_ffmpeg
@pytest.mark.parametrize(("variable", "implicit"), [(True, False), (False, True), (True, True)])
def test_variable_block_size_and_format_from_streaminfo(variable: bool, implicit: bool) -> None:
    """Sample-numbered (multi-byte coded) frames, and headers whose rate and sample size
    say "see STREAMINFO" (libavcodec then needs STREAMINFO as extradata)."""
    enc = ffmpeg_flac(24000, 2, 16, 1.0, ("-frame_size", "1000"))
    data = rewrite_headers(enc, variable=variable, implicit_format=implicit)
    decoder = FlacDecoder()
    out = run(decoder, chunked(data, 333))
    assert decoder.errors == 0
    assert_exact(out, enc.pcm, 16)


@needs_ffmpeg
@given(cuts=st.lists(st.integers(min_value=0), max_size=40))
@settings(max_examples=40, deadline=None)
def test_any_chunking_gives_identical_samples(cuts: list[int]) -> None:
    enc = ffmpeg_flac(24000, 2, 16, 0.5, ("-frame_size", "576"))
    decoder = FlacDecoder()
    out = run(decoder, split_at(enc.data, cuts))
    assert decoder.errors == 0
    assert_exact(out, enc.pcm, 16)


@functools.cache
def badly_damaged() -> tuple[bytes, F32, int, int]:
    """A stream with inserted garbage, a lost stretch, a broken header and a cut end,
    and what it decodes to in one piece."""
    enc = ffmpeg_flac(24000, 1, 16, 1.0, ("-frame_size", "576"), level=0.05)
    f = enc.frames
    junk = np.random.default_rng(9).integers(0, 256, 700, dtype=np.uint8).tobytes()
    data = bytearray(enc.data[: f[3].pos + 100] + junk + enc.data[f[3].pos + 100 : f[9].pos + 50])
    data += enc.data[f[12].pos + 10 : f[-1].pos + f[-1].size // 2]
    data[len(data) - (f[-1].pos + f[-1].size // 2 - f[20].pos) + 3] ^= 0xFF  # header 20
    decoder = FlacDecoder()
    out = run(decoder, [bytes(data)])
    assert decoder.errors == 4  # frame 3, frames 9-12, frames 19-20, the cut last frame
    assert_exact(out, without_frames(enc, [3, 9, 10, 11, 12, 19, 20, len(f) - 1]), 16)
    return bytes(data), out, decoder.errors, decoder.bytes_skipped


@needs_ffmpeg
@given(cuts=st.lists(st.integers(min_value=0), max_size=60))
@settings(max_examples=30, deadline=None)
def test_any_chunking_of_a_damaged_stream_gives_identical_results(cuts: list[int]) -> None:
    data, expected, errors, skipped = badly_damaged()
    decoder = FlacDecoder()
    out = run(decoder, split_at(data, cuts))
    assert np.array_equal(out, expected)
    assert (decoder.errors, decoder.bytes_skipped) == (errors, skipped)


# -- metadata --------------------------------------------------------------------------


@needs_ffmpeg
def test_big_picture_padding_and_other_metadata_are_skipped() -> None:
    enc = ffmpeg_flac(24000, 1, 16, 0.5)
    rng = np.random.default_rng(5)
    picture = rng.integers(0, 256, 300_000, dtype=np.uint8).tobytes()  # contains sync codes
    extra = [
        (6, picture),  # PICTURE
        (1, bytes(100_000)),  # PADDING
        (3, bytes(18 * 3)),  # SEEKTABLE
        (2, b"TEST" + b"\xff\xf8" * 50),  # APPLICATION
        (1, b""),  # empty PADDING
    ]
    data = with_extra_metadata(enc, extra)
    metadata_end = data.index(enc.data[enc.audio_start : enc.audio_start + 64])
    for chunks in (
        [data],
        chunked(data, 4096),
        chunked(data[:4000], 1) + chunked(data[4000:], 3001),  # headers split anywhere
        chunked(data[: metadata_end + 100], 997) + chunked(data[metadata_end + 100 :], 1),
    ):
        decoder = FlacDecoder()
        out = run(decoder, chunks)
        assert decoder.errors == 0
        assert_exact(out, enc.pcm, 16)


@needs_ffmpeg
def test_metadata_split_at_every_byte() -> None:
    """Every split point in the metadata and the first frames is handled."""
    enc = ffmpeg_flac(24000, 1, 16, 0.25, level=0.001)
    extra = [(4, b"\x03\x00\x00\x00abc\x00\x00\x00\x00"), (1, b"x" * 9)]
    data = with_extra_metadata(enc, extra, drop_padding=True)
    expected = run(FlacDecoder(), [data])
    assert_exact(expected, enc.pcm, 16)
    audio_start = len(data) - (len(enc.data) - enc.audio_start)
    second = audio_start + enc.frames[1].pos - enc.audio_start
    for cut in [*range(audio_start + 40), *range(second - 20, second + 20)]:
        decoder = FlacDecoder()
        out = run(decoder, [data[:cut], data[cut : cut + 3], data[cut + 3 :]])
        assert decoder.errors == 0
        assert np.array_equal(out, expected), cut


@needs_ffmpeg
def test_audio_format_known_from_streaminfo_before_any_audio() -> None:
    enc = ffmpeg_flac(48000, 2, 24, 0.25)
    decoder = FlacDecoder()
    assert decoder.audio_format is None
    assert decoder.stream_info is None
    assert decoder.decode(enc.data[:41]) == []
    assert decoder.audio_format is None
    assert decoder.decode(enc.data[41:42]) == []
    assert decoder.audio_format == AudioFormat(48000, 2)
    assert isinstance(decoder.stream_info, StreamInfo)


@needs_ffmpeg
def test_id3v2_tag_before_the_marker_is_skipped() -> None:
    enc = ffmpeg_flac(24000, 1, 16, 0.25)
    body = b"TIT2" + (20).to_bytes(4, "big") + b"\x00\x00" + b"\x00" * 20
    tag = b"ID3\x04\x00\x00" + bytes([0, 0, 0, len(body)]) + body
    decoder = FlacDecoder()
    out = run(decoder, chunked(tag + enc.data, 7))
    assert decoder.errors == 0
    assert_exact(out, enc.pcm, 16)


@needs_ffmpeg
def test_trailing_id3v1_tag_is_ignored() -> None:
    enc = ffmpeg_flac(24000, 1, 16, 0.25)
    tag = b"TAG" + b"title".ljust(125, b"\x00")
    decoder = FlacDecoder()
    out = run(decoder, [enc.data + tag])
    assert decoder.errors == 0
    assert_exact(out, enc.pcm, 16)


# -- latency ---------------------------------------------------------------------------


@needs_ffmpeg
@pytest.mark.parametrize(
    ("rate", "channels", "bits", "max_kb"), [(24000, 1, 16, 12), (48000, 2, 24, 40)]
)
def test_each_frame_is_returned_as_soon_as_the_next_header_arrives(
    rate: int, channels: int, bits: int, max_kb: int
) -> None:
    enc = ffmpeg_flac(rate, channels, bits, 0.5)
    decoder: Decoder = FlacDecoder()
    returned_at = []  # stream offset at which each block came out
    for offset in range(len(enc.data)):
        for _block in decoder.decode(enc.data[offset : offset + 1]):
            returned_at.append(offset + 1)
    tail = decoder.flush()
    assert len(tail) == 1  # the last frame waits for end of stream
    assert len(returned_at) == len(enc.frames) - 1
    for frame, at in zip(enc.frames[1:], returned_at, strict=True):
        assert frame.pos + 6 <= at <= frame.pos + 16  # the next frame's header only
    # The first block needs the metadata (with ffmpeg's 8 KB of padding) plus one frame
    # and a header: under 2 frames of audio. PyAV's own parser needs ~36 KB at 24 kHz.
    first, second = enc.frames[0], enc.frames[1]
    assert returned_at[0] - enc.audio_start <= first.size + 16 < first.size + second.size
    assert returned_at[0] < max_kb * 1024


# -- damage ----------------------------------------------------------------------------


def damaged_run(data: bytes, chunk: int = 512) -> tuple[F32, FlacDecoder]:
    decoder = FlacDecoder()
    out = run(decoder, chunked(data, chunk))
    return out, decoder


def return_offsets(data: bytes) -> list[tuple[int, int]]:
    """Feed byte by byte: (stream offset, frames) of each block as it comes out."""
    decoder = FlacDecoder()
    offsets = []
    for offset in range(len(data)):
        for block in decoder.decode(data[offset : offset + 1]):
            offsets.append((offset + 1, len(block)))
    return offsets


def assert_prompt_after(data: bytes, enc: Encoded, first_good: int, shift: int) -> None:
    """Frames from ``first_good`` on (found at their original offset minus ``shift``)
    still come out as soon as the next frame's header has arrived."""
    offsets = return_offsets(data)
    good = enc.frames[first_good:]
    assert [n for _at, n in offsets[-(len(good) - 1) :]] == [f.samples for f in good[:-1]]
    for frame, (at, _n) in zip(good[1:], offsets[-(len(good) - 1) :], strict=True):
        assert frame.pos - shift + 6 <= at <= frame.pos - shift + 16


@needs_ffmpeg
def test_garbage_inserted_inside_a_frame_loses_that_frame_only() -> None:
    enc = ffmpeg_flac(24000, 1, 16, 1.0)
    k = 5
    frame = enc.frames[k]
    at = frame.pos + frame.size // 2
    garbage = np.random.default_rng(3).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    out, decoder = damaged_run(enc.data[:at] + garbage + enc.data[at:])
    assert decoder.errors == 1
    assert decoder.bytes_skipped == frame.size + len(garbage)
    assert_exact(out, without_frames(enc, [k]), 16)


@needs_ffmpeg
def test_garbage_full_of_fake_sync_codes_is_survived() -> None:
    enc = ffmpeg_flac(24000, 2, 16, 1.0, ("-frame_size", "1152"))
    rng = np.random.default_rng(4)
    fake = b"".join(
        b"\xff\xf8" + rng.integers(0, 256, 30, dtype=np.uint8).tobytes() for _ in range(300)
    )
    k = 7
    at = enc.frames[k].pos + 10
    data = enc.data[:at] + fake + enc.data[at:]
    out, decoder = damaged_run(data)
    assert decoder.errors >= 1
    assert_exact(out, without_frames(enc, [k]), 16)
    # Identical for any chunking, errors included.
    for size in (1, 4096):
        again, other = damaged_run(data, size)
        assert np.array_equal(again, out)
        assert (other.errors, other.bytes_skipped) == (decoder.errors, decoder.bytes_skipped)


@needs_ffmpeg
@pytest.mark.parametrize("where", [0.1, 0.5, 0.99])
def test_flipped_bits_inside_a_frame_lose_that_frame(where: float) -> None:
    enc = ffmpeg_flac(44100, 2, 24, 1.0)
    k = 3
    frame = enc.frames[k]
    data = bytearray(enc.data)
    data[frame.pos + 16 + int((frame.size - 18) * where)] ^= 0x24
    out, decoder = damaged_run(bytes(data))
    assert decoder.errors == 1
    assert_exact(out, without_frames(enc, [k]), 24)


@needs_ffmpeg
def test_damaged_frame_header_loses_it_and_the_frame_before() -> None:
    enc = ffmpeg_flac(24000, 1, 16, 1.0)
    k = 6
    data = bytearray(enc.data)
    data[enc.frames[k].pos + 2] ^= 0x01  # header CRC-8 fails: no header here any more
    out, decoder = damaged_run(bytes(data))
    assert decoder.errors == 1
    assert_exact(out, without_frames(enc, [k - 1, k]), 16)
    assert_prompt_after(bytes(data), enc, k + 1, 0)  # no waiting for a size limit


@needs_ffmpeg
def test_frame_the_codec_rejects_is_skipped_and_counted() -> None:
    """Valid header and CRC-16, undecodable subframes: PacketDecoder's error is counted."""
    enc = ffmpeg_flac(24000, 1, 16, 1.0)
    k = 4
    frame = enc.frames[k]
    raw = enc.data[frame.pos : frame.pos + frame.size]
    bad = raw[:6] + b"\xff" * 40  # subframe padding bit set: invalid
    bad += ref_crc16(bad).to_bytes(2, "big")
    data = enc.data[: frame.pos] + bad + enc.data[frame.pos + frame.size :]
    out, decoder = damaged_run(data)
    assert decoder.errors == 1
    assert decoder.bytes_skipped == 0  # split fine, then rejected by libavcodec
    assert_exact(out, without_frames(enc, [k]), 16)


@needs_ffmpeg
def test_consecutive_damaged_frames_are_counted_one_by_one() -> None:
    enc = ffmpeg_flac(24000, 1, 16, 1.0, level=0.001)  # small frames, ~1/4 of the limit
    assert max(f.size for f in enc.frames) * 4 < max(f.samples for f in enc.frames) * 2
    data = bytearray(enc.data)
    damaged = [4, 5, 6, 9]
    for k in damaged:
        data[enc.frames[k].pos + enc.frames[k].size // 2] ^= 0x81
    out, decoder = damaged_run(bytes(data))
    assert decoder.errors == len(damaged)
    assert decoder.bytes_skipped == sum(enc.frames[k].size for k in damaged)
    assert_exact(out, without_frames(enc, damaged), 16)


@needs_ffmpeg
def test_lost_bytes_across_frames_resync_on_a_later_frame() -> None:
    """A hole spanning frame boundaries: frame numbers jump, the next good frame is used."""
    enc = ffmpeg_flac(24000, 1, 16, 1.0, ("-frame_size", "576"))
    a, b = enc.frames[10], enc.frames[14]
    cut_from, cut_to = a.pos + a.size // 3, b.pos + b.size // 2
    data = enc.data[:cut_from] + enc.data[cut_to:]
    out, decoder = damaged_run(data)
    assert decoder.errors == 1
    assert_exact(out, without_frames(enc, range(10, 15)), 16)
    assert_prompt_after(data, enc, 15, cut_to - cut_from)


@needs_ffmpeg
def test_garbage_before_the_first_frame_is_skipped() -> None:
    enc = ffmpeg_flac(24000, 1, 16, 0.5)
    junk = b"\x00\xff\xf8\x13junk" * 40
    data = enc.data[: enc.audio_start] + junk + enc.data[enc.audio_start :]
    out, decoder = damaged_run(data, 100)
    assert decoder.errors == 1
    assert decoder.bytes_skipped == len(junk)
    assert_exact(out, enc.pcm, 16)


@needs_ffmpeg
def test_endless_garbage_is_not_buffered() -> None:
    enc = ffmpeg_flac(24000, 1, 16, 0.25)
    garbage = np.random.default_rng(6).integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    decoder = FlacDecoder()
    blocks = decoder.decode(enc.data[: enc.frames[2].pos])
    fed = 0
    for chunk in chunked(garbage, 4096):
        blocks += decoder.decode(chunk)
        fed += len(chunk)
    # Everything but about one maximal frame (~4.6 KB here) has been dropped already.
    assert decoder.bytes_skipped > fed - 10_000
    blocks += decoder.flush()
    assert decoder.errors >= 1
    out = np.concatenate(blocks)
    assert_exact(out, enc.pcm[: enc.frames[1].first_sample], 16)  # frame 1 lost its end


def test_test_server_flac_body_decodes_to_its_pcm_body() -> None:
    pytest.importorskip("trio_tts_stream.server._encode")
    from trio_tts_stream.server import render_chunks

    text = "Streaming FLAC: every frame as soon as the next one starts."
    pcm = b"".join(render_chunks(text, response_format="pcm"))
    decoder = FlacDecoder()
    out = run(decoder, render_chunks(text, response_format="flac", chunk_ms=20))
    assert decoder.errors == 0
    expected = np.frombuffer(pcm, dtype="<i2").astype(np.int32).reshape(-1, 1)
    assert_exact(out, expected, 16)


# -- truncation and end of stream -------------------------------------------------------


@needs_ffmpeg
@pytest.mark.parametrize("into_frame", [1, 3, 7, 0.02, 0.5, 0.97])
def test_truncated_stream_drops_the_partial_last_frame(into_frame: float | int) -> None:
    enc = ffmpeg_flac(24000, 2, 16, 1.0)
    k = 4
    frame = enc.frames[k]
    cut = frame.pos + (into_frame if isinstance(into_frame, int) else int(frame.size * into_frame))
    for chunks in ([enc.data[:cut]], chunked(enc.data[:cut], 1)):
        decoder = FlacDecoder()
        out = run(decoder, chunks)
        assert decoder.errors == 1
        assert decoder.bytes_skipped == cut - frame.pos
        assert_exact(out, enc.pcm[: frame.first_sample], 16)


@needs_ffmpeg
def test_stream_cut_at_a_frame_boundary_has_no_errors() -> None:
    enc = ffmpeg_flac(24000, 1, 16, 1.0)
    frame = enc.frames[3]
    decoder = FlacDecoder()
    out = run(decoder, [enc.data[: frame.pos]])
    assert decoder.errors == 0
    assert_exact(out, enc.pcm[: frame.first_sample], 16)


@needs_ffmpeg
def test_stream_with_no_frames_is_empty_not_an_error() -> None:
    enc = ffmpeg_flac(24000, 1, 16, 0.25)
    decoder = FlacDecoder()
    out = run(decoder, [enc.data[: enc.audio_start]])
    assert out.shape == (0, 1)
    assert decoder.errors == 0


@needs_ffmpeg
@pytest.mark.parametrize("cut", [0, 2, 4, 20, 42, 100])
def test_stream_ending_in_the_metadata_raises_at_flush(cut: int) -> None:
    enc = ffmpeg_flac(24000, 1, 16, 0.25)
    assert cut < enc.audio_start
    decoder = FlacDecoder()
    assert decoder.decode(enc.data[:cut]) == []
    with pytest.raises(DecodeError, match="no audio"):
        decoder.flush()


@needs_ffmpeg
def test_flush_twice_and_decode_after_flush() -> None:
    enc = ffmpeg_flac(24000, 1, 16, 0.25)
    decoder = FlacDecoder()
    out = run(decoder, [enc.data])
    assert len(out) == len(enc.pcm)
    assert decoder.flush() == []
    assert decoder.decode(enc.data) == []


# -- not FLAC --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "hint"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", ""),
        (b"OggS\x00\x02" + bytes(30), "Ogg FLAC"),
        (b"\xff\xfb\x90\x64" + bytes(100), ""),  # MP3 frame
        (b"ID3\x04\x00\x00\x00\x00\x00\x02\x00\x00\xff\xfb\x90\x64", "after an ID3 tag"),
        (b'{"error": {"message": "bad voice"}}', ""),
        (b"<html><body>502 Bad Gateway</body></html>", ""),
        (b"fLaX", ""),
    ],
)
def test_not_flac_raises_decode_error(data: bytes, hint: str) -> None:
    with pytest.raises(UnsupportedFormatError, match="fLaC") as info:
        FlacDecoder().decode(data)
    assert isinstance(info.value, DecodeError)
    assert hint in str(info.value)
    decoder = FlacDecoder()
    for i in range(len(data)):  # rejected as early as it can tell
        try:
            decoder.decode(data[i : i + 1])
        except UnsupportedFormatError:
            break
    else:
        pytest.fail("not rejected")
    assert i < 16


def test_metadata_must_start_with_streaminfo() -> None:
    data = b"fLaC" + metadata_block(4, b"\x00" * 8) + metadata_block(0, bytes(34), last=True)
    with pytest.raises(DecodeError, match="not STREAMINFO"):
        FlacDecoder().decode(data)


def test_streaminfo_of_the_wrong_size_is_malformed() -> None:
    with pytest.raises(DecodeError, match="STREAMINFO block of 30 bytes"):
        FlacDecoder().decode(b"fLaC" + metadata_block(0, bytes(30), last=True))


def test_unsupported_sample_rate_in_streaminfo() -> None:
    body = bytearray(34)
    body[0:4] = b"\x10\x00\x10\x00"
    # sample rate 500 Hz, 1 channel, 16 bits
    fields = (500 << 44) | (0 << 41) | (15 << 36)
    body[10:18] = fields.to_bytes(8, "big")
    with pytest.raises(UnsupportedFormatError, match="sample_rate"):
        FlacDecoder().decode(b"fLaC" + metadata_block(0, bytes(body), last=True))


def test_empty_stream_raises_at_flush() -> None:
    decoder = FlacDecoder()
    assert decoder.decode(b"") == []
    with pytest.raises(DecodeError, match="ended after 0 bytes"):
        decoder.flush()
