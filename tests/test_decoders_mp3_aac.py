"""Tests for the mp3 and aac (ADTS) decoders.

Test streams are encoded here from deterministic speech-like signals, by the ffmpeg CLI
(libmp3lame CBR/VBR, with and without ID3/Xing tags; FFmpeg's native AAC encoder) and by
PyAV. The oracles are independent of the decoders under test: the input signal itself
(exact length and alignment after gapless trimming), the ffmpeg CLI's own decoding of the
same file, and the decoder fed the whole stream at once (for other chunkings).
"""

from __future__ import annotations

import functools
import io
import itertools
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("av")

import av

from trio_tts_stream._decoders._base import Decoder
from trio_tts_stream._decoders._pyav import frame_to_block
from trio_tts_stream._decoders.aac import AacDecoder, parse_adts_header
from trio_tts_stream._decoders.mp3 import (
    Mp3Decoder,
    VbrHeader,
    parse_mp3_header,
    parse_vbr_header,
)
from trio_tts_stream._exceptions import (
    ConfigError,
    DecodeError,
    UnsupportedFormatError,
)
from trio_tts_stream._format import AudioFormat

F32 = npt.NDArray[np.float32]

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed")

DecoderFactory = Callable[[], Decoder]


# -- signals and encoders ----------------------------------------------------------------


@functools.cache
def speech(rate: int, channels: int, seconds: float = 1.0, seed: int = 0) -> F32:
    """A speech-like test signal, quantized to 16 bits: a gliding 11-harmonic voice with
    syllable-rate amplitude modulation and a little noise; channel 2 has another pitch."""
    rng = np.random.default_rng(seed)
    n = round(rate * seconds)
    t = np.arange(n) / rate
    columns = []
    for ch in range(channels):
        f0 = 120 + 40 * ch + 30 * np.sin(2 * np.pi * 0.7 * t + seed) + 15 * np.sin(5 * t)
        phase = 2 * np.pi * np.cumsum(f0) / rate
        voice = sum(np.sin(k * phase + k * seed) / k for k in range(1, 12))
        envelope = 0.2 + 0.8 * np.sin(np.pi * (4 * t + 0.3 * seed + 0.25 * ch)) ** 2
        columns.append(0.25 * voice * envelope + 0.003 * rng.standard_normal(n))
    ints = np.round(np.clip(np.stack(columns, axis=1), -1, 1) * 32767).astype(np.int16)
    out: F32 = ints.astype(np.float32) / np.float32(32768)
    return out


def to_s16(pcm: F32) -> bytes:
    return np.round(pcm * 32768).astype("<i2").tobytes()


@functools.cache
def ffmpeg_encode(
    rate: int,
    channels: int,
    args: tuple[str, ...],
    fmt: str,
    seconds: float = 1.0,
    seed: int = 0,
) -> bytes:
    """Encode :func:`speech` with the ffmpeg CLI to a file (so the mp3 muxer can write
    its Xing/LAME frame) and return the bytes; ``pipe`` in ``args`` writes to a pipe."""
    assert FFMPEG is not None
    to_pipe = "pipe" in args
    args = tuple(a for a in args if a != "pipe")
    cmd = [FFMPEG, "-nostdin", "-v", "error", "-f", "s16le", "-ar", str(rate)]
    cmd += ["-ac", str(channels), "-i", "pipe:0", *args, "-f", fmt]
    pcm = to_s16(speech(rate, channels, seconds, seed))
    if to_pipe:
        return subprocess.run(
            [*cmd, "pipe:1"], input=pcm, capture_output=True, check=True, timeout=60
        ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/out.{fmt}"
        subprocess.run([*cmd, path], input=pcm, capture_output=True, check=True, timeout=60)
        with open(path, "rb") as f:
            return f.read()


def mp3(
    rate: int = 24000, channels: int = 1, *args: str, seconds: float = 1.0, seed: int = 0
) -> bytes:
    """ffmpeg + libmp3lame; CBR 64 kb/s unless ``args`` say otherwise."""
    if not any(a in ("-b:a", "-q:a") for a in args):
        args = ("-b:a", "64k", *args)
    return ffmpeg_encode(rate, channels, ("-c:a", "libmp3lame", *args), "mp3", seconds, seed)


def adts(rate: int = 24000, channels: int = 1, *args: str, seconds: float = 1.0) -> bytes:
    """ffmpeg's native AAC encoder in ADTS, 64 kb/s per channel."""
    args = ("-c:a", "aac", "-b:a", f"{64 * channels}k", *args)
    return ffmpeg_encode(rate, channels, args, "adts", seconds)


def ffmpeg_decode(data: bytes, channels: int, fmt: str) -> F32:
    """The ffmpeg CLI's decoding of ``data`` read from a file (as float32): its mp3
    demuxer trims gaplessly from the LAME tag (only when the input is seekable)."""
    assert FFMPEG is not None
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/in.{fmt}"
        with open(path, "wb") as f:
            f.write(data)
        cmd = [FFMPEG, "-nostdin", "-v", "error", "-i", path, "-f", "f32le", "pipe:1"]
        raw = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
    out: F32 = np.frombuffer(raw, dtype="<f4").reshape(-1, channels).copy()
    return out


def pyav_decode(data: bytes) -> F32:
    """Decoding by PyAV's own demuxer (FFmpeg's, which trims gaplessly from the LAME tag)
    with the same libavcodec as the decoder under test."""
    with av.open(io.BytesIO(data)) as container:
        blocks = [frame_to_block(frame) for frame in container.decode(audio=0)]
    out: F32 = np.concatenate(blocks)
    return out


@functools.cache
def pyav_encode(rate: int, channels: int, fmt: str, codec: str) -> bytes:
    """Encode :func:`speech` with PyAV into an in-memory ``mp3`` or ``adts`` container."""
    pcm = speech(rate, channels)
    layout = "mono" if channels == 1 else "stereo"
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        stream.bit_rate = 64000 * channels
        ints = np.round(pcm * 32768).astype(np.int16)
        for start in range(0, len(ints), 1000):
            piece = np.ascontiguousarray(ints[start : start + 1000].reshape(1, -1))
            frame = av.AudioFrame.from_ndarray(piece, format="s16", layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


# -- feeding helpers ---------------------------------------------------------------------


def run(decoder: Decoder, chunks: Iterable[bytes]) -> F32:
    """Feed ``chunks`` then flush; check every block's shape/dtype; concatenate."""
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


def feed_all(decoder: Decoder, chunks: Iterable[bytes]) -> None:
    """Feed ``chunks`` without flushing (for tests that expect decode() to raise)."""
    for chunk in chunks:
        decoder.decode(chunk)


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def irregular(data: bytes) -> list[bytes]:
    """Chunks of 1, 2, 3, ... 13 bytes, repeating."""
    chunks, pos, size = [], 0, 1
    while pos < len(data):
        chunks.append(data[pos : pos + size])
        pos += size
        size = size % 13 + 1
    return chunks


def in_4k(data: bytes) -> list[bytes]:
    return [data[i : i + 4096] for i in range(0, len(data), 4096)]


def split_at(data: bytes, points: Iterable[int]) -> list[bytes]:
    edges = [0, *sorted(set(points)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


FEEDS = [whole, bytewise, irregular, in_4k]


def best_lag(reference: F32, out: F32, max_lag: int = 60) -> int:
    """Lag (samples) at which ``out`` best matches ``reference`` (channel 0, middle part)."""
    x = reference[:, 0].astype(np.float64)
    y = out[:, 0].astype(np.float64)
    n = min(len(x), len(y)) - 2 * max_lag
    # scores[max_lag + lag] = x[max_lag : max_lag + n] . y[max_lag + lag : max_lag + lag + n]
    scores = np.correlate(y[: n + 2 * max_lag], x[max_lag : max_lag + n], mode="valid")
    return int(np.argmax(scores)) - max_lag


def correlation(a: F32, b: F32) -> float:
    """Pearson correlation of two equally long signals (all channels)."""
    x = a.ravel().astype(np.float64)
    y = b.ravel().astype(np.float64)
    x -= x.mean()
    y -= y.mean()
    return float(np.sum(x * y) / np.sqrt(np.sum(x * x) * np.sum(y * y)))


def id3v2(body_size: int, *, footer: bool = False) -> bytes:
    """An ID3v2.4 tag: one TXXX frame of text, padding to ``body_size``, optional footer."""
    text = b"\x03comment\x00" + b"speech " * 20
    frame = b"TXXX" + bytes(_syncsafe(len(text))) + b"\x00\x00" + text
    body = frame + b"\x00" * (body_size - len(frame))
    header = b"ID3\x04\x00" + (b"\x10" if footer else b"\x00") + bytes(_syncsafe(len(body)))
    return header + body + (b"3DI" + header[3:] if footer else b"")


def _syncsafe(n: int) -> list[int]:
    return [(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F]


def ape_tag(*, with_header: bool) -> bytes:
    """An APEv2 tag with two items, with or without its 32-byte header."""
    items = b"".join(
        struct.pack("<II", len(v), 0) + k + b"\x00" + v
        for k, v in ((b"Title", b"\xff\xfb\x90\x64 not a frame"), (b"Artist", b"TAG speech"))
    )
    size = len(items) + 32
    flags = 1 << 31 if with_header else 0

    def block(extra: int) -> bytes:
        return b"APETAGEX" + struct.pack("<IIII", 2000, size, 2, flags | extra) + b"\x00" * 8

    return (block(1 << 29) if with_header else b"") + items + block(0)


def frame_offsets(
    data: bytes, parse: Callable[[bytes, int], tuple[int, object] | None]
) -> list[int]:
    """Offsets of the frames of a clean stream that starts with an optional ID3v2 tag."""
    pos = 0
    if data.startswith(b"ID3"):
        pos = 10 + sum(b << (7 * (3 - i)) for i, b in enumerate(data[6:10]))
    offsets = []
    while pos + 7 <= len(data):
        header = parse(data, pos)
        assert header is not None, pos
        offsets.append(pos)
        pos += header[0]
    return offsets


# -- mp3: gapless trimming against the input -----------------------------------------------

MP3_CASES = [  # MPEG-2 (576 samples per frame) and MPEG-1 (1152), CBR and VBR
    (24000, 1, ()),
    (24000, 1, ("-q:a", "4")),
    (22050, 2, ("-q:a", "2")),
    (44100, 1, ("-b:a", "128k")),
    (44100, 2, ("-q:a", "5")),
    (48000, 2, ("-b:a", "160k")),
]


@needs_ffmpeg
@pytest.mark.parametrize(("rate", "channels", "args"), MP3_CASES)
def test_mp3_lame_tag_gives_exact_length_and_alignment(
    rate: int, channels: int, args: tuple[str, ...]
) -> None:
    data = mp3(rate, channels, *args)
    pcm = speech(rate, channels)
    decoder = Mp3Decoder()
    assert decoder.audio_format is None
    out = run(decoder, in_4k(data))
    assert decoder.audio_format == AudioFormat(rate, channels)
    assert decoder.errors == 0
    assert decoder.trailing_bytes_dropped == 0
    vbr = decoder.vbr_header
    assert vbr is not None
    assert vbr.tag == ("Xing" if "-q:a" in args else "Info")
    assert vbr.delay == 576  # libmp3lame's encoder delay
    assert vbr.padding is not None
    assert vbr.padding >= 529
    assert out.shape == pcm.shape  # exact length
    assert best_lag(pcm, out) == 0
    assert correlation(pcm, out) > 0.99
    # FFmpeg's demuxer trims the same way (from the same LAME tag): identical samples.
    np.testing.assert_array_equal(out, pyav_decode(data))
    # So does the ffmpeg CLI (another FFmpeg version: the same length, nearly equal values).
    cli = ffmpeg_decode(data, channels, "mp3")
    assert cli.shape == out.shape
    np.testing.assert_allclose(out, cli, rtol=0, atol=2e-3)


@needs_ffmpeg
@pytest.mark.parametrize(
    ("args", "has_id3", "has_xing"),
    [
        (("-id3v2_version", "0"), False, True),
        (("-write_xing", "0"), True, False),
        (("-id3v2_version", "0", "-write_xing", "0"), False, False),
        (("pipe",), True, False),  # ffmpeg writing to a pipe cannot write a Xing frame
    ],
)
def test_mp3_variants_without_id3_or_xing(
    args: tuple[str, ...], has_id3: bool, has_xing: bool
) -> None:
    data = mp3(24000, 1, *args)
    assert data.startswith(b"ID3") == has_id3
    pcm = speech(24000, 1)
    decoder = Mp3Decoder()
    out = run(decoder, irregular(data))
    assert decoder.errors == 0
    assert (decoder.vbr_header is not None) == has_xing
    if has_xing:
        np.testing.assert_array_equal(out, pyav_decode(data))
        assert out.shape == pcm.shape
        assert best_lag(pcm, out) == 0
    else:
        # No LAME tag: LAME's default delay (576 + 529) is assumed and trimmed, so the
        # speech starts at sample 0; the tail keeps the encoder's padding (< 1 frame).
        np.testing.assert_array_equal(out, pyav_decode(data)[1105:])
        assert best_lag(pcm, out) == 0
        assert len(pcm) <= len(out) < len(pcm) + 576
        assert correlation(pcm, out[: len(pcm)]) > 0.99
        raw = run(Mp3Decoder(assume_lame_delay=False), irregular(data))
        np.testing.assert_array_equal(raw, pyav_decode(data))
        assert len(raw) % 576 == 0


@pytest.mark.parametrize(("rate", "channels"), [(24000, 1), (44100, 2)])
def test_mp3_encoded_by_pyav(rate: int, channels: int) -> None:
    data = pyav_encode(rate, channels, "mp3", "libmp3lame")
    pcm = speech(rate, channels)
    decoder = Mp3Decoder()
    out = run(decoder, in_4k(data))
    assert decoder.vbr_header is not None
    assert decoder.vbr_header.encoder.startswith("Lavf")
    assert out.shape == pcm.shape
    assert best_lag(pcm, out) == 0
    assert correlation(pcm, out) > 0.99


# -- mp3: chunking -------------------------------------------------------------------------


@needs_ffmpeg
@pytest.mark.parametrize("feed", FEEDS)
def test_mp3_any_feed_gives_identical_samples(feed: Callable[[bytes], list[bytes]]) -> None:
    data = mp3(24000, 2, "-q:a", "4", seconds=0.5)
    expected = run(Mp3Decoder(), [data])
    decoder = Mp3Decoder()
    np.testing.assert_array_equal(run(decoder, feed(data)), expected)
    assert decoder.errors == 0


def hard_stream() -> bytes:
    """ID3v2, a VBR stream with garbage in two places, APE and ID3v1 tags, a second stream."""
    first = mp3(24000, 1, "-q:a", "4", seconds=0.5)
    second = mp3(24000, 1, seconds=0.3, seed=1)
    junk = np.random.default_rng(3).integers(0, 256, 700, dtype=np.uint8).tobytes()
    return (
        first[:1500]
        + junk
        + first[1500:2500]
        + b"\xff\xfb" * 40  # sync-like bytes that are not frames
        + first[2500:]
        + ape_tag(with_header=False)
        + second
        + b"TAG"
        + b"\x00" * 125
    )


@needs_ffmpeg
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_mp3_any_chunking_of_a_damaged_stream(data: st.DataObject) -> None:
    stream = hard_stream()
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=30), label="splits")
    one_shot = Mp3Decoder()
    expected = run(one_shot, [stream])
    chunked = Mp3Decoder()
    np.testing.assert_array_equal(run(chunked, split_at(stream, points)), expected)
    assert chunked.errors == one_shot.errors >= 2
    assert chunked.streams == one_shot.streams == 2


# -- mp3: tags ---------------------------------------------------------------------------


@needs_ffmpeg
@pytest.mark.parametrize("footer", [False, True])
def test_mp3_id3v2_split_across_chunks(footer: bool) -> None:
    bare = mp3(24000, 1, "-id3v2_version", "0", seconds=0.5)
    expected = run(Mp3Decoder(), [bare])
    tagged = id3v2(3000, footer=footer) + bare
    tag_end = len(tagged) - len(bare)
    for cut in [*range(1, 12), 500, tag_end - 3, tag_end - 1, tag_end, tag_end + 2]:
        decoder = Mp3Decoder()
        np.testing.assert_array_equal(run(decoder, [tagged[:cut], tagged[cut:]]), expected)
        assert decoder.errors == 0
    decoder = Mp3Decoder()
    np.testing.assert_array_equal(run(decoder, [*bytewise(tagged[:4000]), tagged[4000:]]), expected)
    assert decoder.errors == 0


@needs_ffmpeg
def test_mp3_id3v2_with_sync_bytes_inside_is_skipped() -> None:
    """A tag whose body holds a valid-looking frame (e.g. cover art) is not decoded."""
    bare = mp3(24000, 1, "-id3v2_version", "0", seconds=0.5)
    fake = bare[bare.index(b"\xff\xf3", 300) :][:2000]  # real frames, inside the tag
    tag = id3v2(2500)
    tag = tag[:200] + fake + tag[200 + len(fake) :]
    decoder = Mp3Decoder()
    np.testing.assert_array_equal(run(decoder, irregular(tag + bare)), run(Mp3Decoder(), [bare]))
    assert decoder.errors == 0


@needs_ffmpeg
def test_mp3_id3v1_at_end() -> None:
    plain = mp3(24000, 1, seconds=0.5)
    tagged = mp3(24000, 1, "-write_id3v1", "1", "-metadata", "title=TAG test", seconds=0.5)
    assert tagged[-128:-125] == b"TAG"
    for feed in (whole, bytewise):
        decoder = Mp3Decoder()
        np.testing.assert_array_equal(run(decoder, feed(tagged)), run(Mp3Decoder(), [plain]))
        assert decoder.errors == 0
        assert decoder.trailing_bytes_dropped == 0


@needs_ffmpeg
@pytest.mark.parametrize("with_header", [True, False])
def test_mp3_ape_tag_at_end_and_in_between(with_header: bool) -> None:
    plain = mp3(24000, 1, seconds=0.5)
    expected = run(Mp3Decoder(), [plain])
    decoder = Mp3Decoder()
    np.testing.assert_array_equal(
        run(decoder, irregular(plain + ape_tag(with_header=with_header))), expected
    )
    assert decoder.errors == 0
    assert decoder.trailing_bytes_dropped == 0
    # Before an ID3v1 tag, as taggers write it.
    decoder = Mp3Decoder()
    tail = ape_tag(with_header=with_header) + b"TAG" + b"\x20" * 125
    np.testing.assert_array_equal(run(decoder, [plain + tail]), expected)
    assert decoder.errors == 0


# -- mp3: concatenated streams -------------------------------------------------------------


@needs_ffmpeg
@pytest.mark.parametrize("second_args", [(), ("-q:a", "6"), ("-id3v2_version", "0")])
def test_mp3_concatenated_streams_are_trimmed_one_by_one(second_args: tuple[str, ...]) -> None:
    first = mp3(24000, 1, seconds=0.5)
    second = mp3(24000, 1, *second_args, seconds=0.7, seed=1)
    expected = np.concatenate([run(Mp3Decoder(), [first]), run(Mp3Decoder(), [second])])
    assert len(expected) == 12000 + 16800  # both trimmed exactly
    for feed in (whole, irregular):
        decoder = Mp3Decoder()
        np.testing.assert_array_equal(run(decoder, feed(first + second)), expected)
        assert decoder.streams == 2
        assert decoder.errors == 0


@needs_ffmpeg
def test_mp3_concatenated_pipe_streams_decode_straight_through() -> None:
    """Without Xing frames (ffmpeg to a pipe) the streams are one stream: only the head
    of the first is trimmed (the assumed LAME delay); the second keeps its 1105."""
    first = mp3(24000, 1, "pipe", seconds=0.5)
    second = mp3(24000, 1, "pipe", seconds=0.7, seed=1)
    decoder = Mp3Decoder()
    out = run(decoder, in_4k(first + second))
    separate = [run(Mp3Decoder(), [s]) for s in (first, second)]
    assert decoder.errors == 0
    assert decoder.streams == 1
    assert len(out) == sum(map(len, separate)) + 1105
    np.testing.assert_array_equal(out[: len(separate[0])], separate[0])
    tail = out[len(separate[0]) + 1105 :]
    assert correlation(tail[1200:], separate[1][1200:]) > 0.999


@needs_ffmpeg
@pytest.mark.parametrize("pipe", [False, True])
def test_mp3_sample_rate_change_is_unsupported(pipe: bool) -> None:
    extra = ("pipe",) if pipe else ()
    data = mp3(24000, 1, *extra, seconds=0.3) + mp3(
        16000 if pipe else 22050, 1, *extra, seconds=0.3
    )
    with pytest.raises(UnsupportedFormatError, match="changed from 24000 Hz"):
        run(Mp3Decoder(), in_4k(data))


@needs_ffmpeg
def test_mp3_stream_with_no_audio_frames() -> None:
    """An empty input encodes to ID3v2 + an Info frame: valid, silent, format known."""
    data = ffmpeg_encode(24000, 1, ("-c:a", "libmp3lame"), "mp3", 0.0)
    decoder = Mp3Decoder()
    assert run(decoder, [data]).shape == (0, 1)
    assert decoder.audio_format == AudioFormat(24000, 1)
    vbr = decoder.vbr_header
    assert vbr is not None
    assert vbr == VbrHeader("Info", 0, vbr.encoder, 0, 0)


# -- mp3: damage ----------------------------------------------------------------------------


@needs_ffmpeg
@pytest.mark.parametrize("where", ["boundary", "mid-frame"])
@pytest.mark.parametrize("position", [0.2, 0.5, 0.8])
def test_mp3_garbage_mid_stream_is_skipped_and_counted(where: str, position: float) -> None:
    data = mp3(24000, 1, "-q:a", "4")
    clean = run(Mp3Decoder(), [data])
    offsets = frame_offsets(data, parse_mp3_header)
    k = int(position * len(offsets))
    cut = offsets[k] + (0 if where == "boundary" else 101)
    junk = np.random.default_rng(k).integers(0, 256, 1000, dtype=np.uint8).tobytes()
    decoder = Mp3Decoder()
    out = run(decoder, in_4k(data[:cut] + junk + data[cut:]))
    assert decoder.errors >= 1
    if where == "boundary":  # the frames are intact: nothing lost
        np.testing.assert_array_equal(out, clean)
        return
    # Frame k holds garbage now. Its bytes also carry main data of the next frames (bit
    # reservoir) and the filterbank spreads it by 529 samples: measured, the damage ends
    # before output frame k + 4. Everything before frame k and after k + 5 is intact.
    assert len(clean) - 576 <= len(out) <= len(clean)  # the damaged frame may not decode
    before = (k - 1) * 576 - 1105
    intact = len(clean) - ((k + 5) * 576 - 1105)
    np.testing.assert_array_equal(out[:before], clean[:before])
    np.testing.assert_array_equal(out[-intact:], clean[-intact:])
    assert not np.array_equal(out, clean)


@needs_ffmpeg
@pytest.mark.parametrize("fraction", [0.3, 0.61, 0.999])
def test_mp3_truncated_stream_ends_cleanly(fraction: float) -> None:
    data = mp3(24000, 2, "-q:a", "4")
    clean = run(Mp3Decoder(), [data])
    cut = int(len(data) * fraction)
    decoder = Mp3Decoder()
    out = run(decoder, irregular(data[:cut]))
    assert decoder.errors == 0
    assert 0 < len(out) < len(clean)
    np.testing.assert_array_equal(out, clean[: len(out)])
    offsets = frame_offsets(data, parse_mp3_header)
    last_start = max(o for o in offsets if o <= cut)
    assert decoder.trailing_bytes_dropped == cut - last_start
    # Every complete audio frame (not the Xing frame at offsets[0]) is played, minus the
    # encoder + decoder delay: no tail is trimmed from a stream that was cut short.
    complete = offsets.index(last_start) - 1
    assert len(out) == complete * 576 - 576 - 529


@needs_ffmpeg
def test_mp3_truncated_inside_the_header_frames_is_an_error() -> None:
    data = mp3(24000, 1)
    first_audio = frame_offsets(data, parse_mp3_header)[1]
    for cut in (0, 5, 40, first_audio - 1):
        with pytest.raises(DecodeError, match=r"not mp3 audio|empty"):
            run(Mp3Decoder(), [data[:cut]])


# -- mp3: not mp3 --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b'{"error": {"message": "Invalid voice", "type": "invalid_request_error"}}',
        b"<html><body>502 Bad Gateway</body></html>",
        b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\xff\xff\x00\x00" * 1000,
        np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes(),
        b"ID3\x04\x00\x00\x00\x00\x00\x05hello",  # a tag and nothing else
    ],
)
def test_mp3_not_mp3_is_decode_error_at_flush(body: bytes) -> None:
    decoder = Mp3Decoder()
    for piece in irregular(body):
        assert decoder.decode(piece) == []
    with pytest.raises(DecodeError, match=r"not mp3 audio|response is empty") as info:
        decoder.flush()
    if body[:1] in (b"{", b"<", b"R"):
        assert repr(body[:10])[2:-1] in str(info.value)  # says what it got


@needs_ffmpeg
def test_mp3_decoder_rejects_aac_and_aac_decoder_rejects_mp3() -> None:
    with pytest.raises(DecodeError, match="not mp3 audio"):
        run(Mp3Decoder(), [adts()])
    with pytest.raises(DecodeError, match="not aac audio"):
        run(AacDecoder(), [mp3()])


def test_long_non_audio_response_fails_before_its_end() -> None:
    page = b"<p>Service unavailable, try again later.</p>\n" * 3000  # 135 kB
    fed: list[bytes] = []

    def chunks() -> Iterator[bytes]:
        for chunk in in_4k(page):
            fed.append(chunk)
            yield chunk

    with pytest.raises(DecodeError, match="not mp3 audio"):
        feed_all(Mp3Decoder(), chunks())
    assert 64 * 1024 < sum(map(len, fed)) < 80 * 1024  # gave up after 64 KiB
    with pytest.raises(DecodeError, match="not aac audio"):
        AacDecoder().decode(page)


def test_mp3_header_parser() -> None:
    # MPEG-1 Layer III, 128 kb/s, 44100 Hz, padded, joint stereo: 144*128000/44100 + 1
    assert parse_mp3_header(b"\xff\xfb\x92\x64", 0) == (418, (3, 0, False))
    # MPEG-2, 64 kb/s, 24000 Hz, mono: 72*64000/24000
    assert parse_mp3_header(b"\xff\xf3\x84\xc4", 0) == (192, (2, 1, True))
    # MPEG-2.5, 8 kb/s, 8000 Hz
    assert parse_mp3_header(b"\xff\xe3\x18\xc4", 0) == (72, (0, 2, True))
    for bad in (
        b"\xff\xfb\x02\x64",  # free format
        b"\xff\xfb\xf2\x64",  # bitrate index 15
        b"\xff\xfb\x9e\x64",  # rate index 3
        b"\xff\xfd\x92\x64",  # Layer II
        b"\xff\xeb\x92\x64",  # reserved version
        b"\xff\xfb\x92\x66",  # reserved emphasis
        b"\xfe\xfb\x92\x64",
    ):
        assert parse_mp3_header(bad, 0) is None, bad


@needs_ffmpeg
def test_vbr_header_parser() -> None:
    data = mp3(44100, 2, "-q:a", "4", "-id3v2_version", "0")
    first = data[: parse_mp3_header(data, 0)[0]]  # type: ignore[index]
    vbr = parse_vbr_header(first)
    assert vbr is not None
    assert vbr.tag == "Xing"
    assert vbr.encoder.startswith("Lavc")
    assert vbr.delay == 576
    offsets = frame_offsets(data, parse_mp3_header)
    assert vbr.frames == len(offsets) - 1
    assert vbr.padding == vbr.frames * 1152 - 576 - 44100
    assert parse_vbr_header(data[offsets[1] : offsets[2]]) is None


# -- aac -----------------------------------------------------------------------------------

AAC_CASES = [(22050, 1), (24000, 2), (44100, 2), (48000, 1)]


@needs_ffmpeg
@pytest.mark.parametrize(("rate", "channels"), AAC_CASES)
def test_aac_priming_trimmed_and_aligned(rate: int, channels: int) -> None:
    data = adts(rate, channels)
    pcm = speech(rate, channels)
    decoder = AacDecoder()
    assert decoder.audio_format is None
    out = run(decoder, in_4k(data))
    assert decoder.audio_format == AudioFormat(rate, channels)
    assert decoder.errors == 0
    # Priming gone; the tail keeps the encoder's padding (less than one 1024-sample frame).
    assert len(pcm) <= len(out) < len(pcm) + 1024
    assert len(out) % 1024 == 0
    assert best_lag(pcm, out) == 0
    assert correlation(pcm, out[: len(pcm)]) > 0.99
    # The ffmpeg CLI does not trim ADTS priming: its output is ours plus 1024 samples.
    reference = ffmpeg_decode(data, channels, "aac")
    np.testing.assert_allclose(out, reference[1024:], rtol=0, atol=1e-6)
    untrimmed = run(AacDecoder(priming=0), [data])
    assert len(untrimmed) == len(out) + 1024
    assert best_lag(pcm, untrimmed[1024:]) == 0


@pytest.mark.parametrize(("rate", "channels"), [(24000, 1), (44100, 2)])
def test_aac_encoded_by_pyav(rate: int, channels: int) -> None:
    data = pyav_encode(rate, channels, "adts", "aac")
    pcm = speech(rate, channels)
    out = run(AacDecoder(), whole(data))
    assert len(pcm) <= len(out) < len(pcm) + 1024
    assert best_lag(pcm, out) == 0
    assert correlation(pcm, out[: len(pcm)]) > 0.99


@needs_ffmpeg
@pytest.mark.parametrize("feed", FEEDS)
def test_aac_any_feed_gives_identical_samples(feed: Callable[[bytes], list[bytes]]) -> None:
    data = id3v2(700) + adts(24000, 2, seconds=0.5)
    expected = run(AacDecoder(), [data])
    decoder = AacDecoder()
    np.testing.assert_array_equal(run(decoder, feed(data)), expected)
    assert decoder.errors == 0


@needs_ffmpeg
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_aac_any_chunking_of_a_damaged_stream(data: st.DataObject) -> None:
    clean = adts(24000, 1, seconds=0.6)
    junk = np.random.default_rng(4).integers(0, 256, 600, dtype=np.uint8).tobytes()
    stream = id3v2(300) + clean[:2000] + junk + clean[2000:3000] + b"\xff\xf1" * 30 + clean[3000:]
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=30), label="splits")
    one_shot = AacDecoder()
    expected = run(one_shot, [stream])
    chunked = AacDecoder()
    np.testing.assert_array_equal(run(chunked, split_at(stream, points)), expected)
    assert chunked.errors == one_shot.errors >= 2


@needs_ffmpeg
@pytest.mark.parametrize("where", ["boundary", "mid-frame"])
def test_aac_garbage_mid_stream_is_skipped_and_counted(where: str) -> None:
    data = adts(24000, 1)
    clean = run(AacDecoder(), [data])
    offsets = frame_offsets(data, parse_adts_header)
    k = len(offsets) // 2  # frame k's output starts at (k - 1) * 1024 (after priming)
    cut = offsets[k] + (0 if where == "boundary" else 77)
    junk = np.random.default_rng(9).integers(0, 256, 1000, dtype=np.uint8).tobytes()
    decoder = AacDecoder()
    out = run(decoder, irregular(data[:cut] + junk + data[cut:]))
    assert decoder.errors >= 1
    assert len(clean) - 1024 <= len(out) <= len(clean)  # the damaged frame may not decode
    intact = len(clean) - (k + 2) * 1024 + 1024
    np.testing.assert_array_equal(out[-intact:], clean[-intact:])
    np.testing.assert_array_equal(out[: (k - 1) * 1024], clean[: (k - 1) * 1024])


@needs_ffmpeg
@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.999])
def test_aac_truncated_stream_ends_cleanly(fraction: float) -> None:
    data = adts(44100, 2)
    clean = run(AacDecoder(), [data])
    cut = int(len(data) * fraction)
    decoder = AacDecoder()
    out = run(decoder, irregular(data[:cut]))
    assert decoder.errors == 0
    assert 0 < len(out) < len(clean)
    np.testing.assert_array_equal(out, clean[: len(out)])
    offsets = frame_offsets(data, parse_adts_header)
    assert decoder.trailing_bytes_dropped == cut - max(o for o in offsets if o <= cut)


@needs_ffmpeg
def test_aac_tags_are_skipped() -> None:
    data = adts(24000, 1, seconds=0.5)
    expected = run(AacDecoder(), [data])
    tagged = id3v2(1000, footer=True) + data + ape_tag(with_header=False) + b"TAG" + b"\x00" * 125
    decoder = AacDecoder()
    np.testing.assert_array_equal(run(decoder, irregular(tagged)), expected)
    assert decoder.errors == 0
    assert decoder.trailing_bytes_dropped == 0


@needs_ffmpeg
def test_aac_sample_rate_change_is_unsupported() -> None:
    data = adts(24000, 1, seconds=0.3) + adts(48000, 1, seconds=0.3)
    with pytest.raises(UnsupportedFormatError, match="changed from 24000 Hz"):
        run(AacDecoder(), in_4k(data))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b'{"error": "server overloaded"}',
        b"\xff\xf1" * 5000,  # sync words but no frames
    ],
)
def test_aac_not_aac_is_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError, match=r"not aac audio|response is empty"):
        run(AacDecoder(), irregular(body))


def test_aac_priming_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="priming"):
        AacDecoder(priming=-1)


def test_adts_header_parser() -> None:
    # MPEG-4, AAC LC, 24000 Hz (index 6), mono, 371-byte frame, no CRC.
    header = bytes([0xFF, 0xF1, 0x58, 0x40, 0x2E, 0x7F, 0xFC])
    assert parse_adts_header(header, 0) == (371, (0, 1, 6, 1))
    assert (
        parse_adts_header(bytes([0xFF, 0xF1, 0x7C, 0x40, 0x2E, 0x7F, 0xFC]), 0) is None
    )  # index 15
    assert parse_adts_header(bytes([0xFF, 0xF3, 0x58, 0x40, 0x2E, 0x7F, 0xFC]), 0) is None  # layer
    assert (
        parse_adts_header(bytes([0xFF, 0xF1, 0x58, 0x40, 0x00, 0xDF, 0xFC]), 0) is None
    )  # 6 bytes
    # With a CRC (protection_absent = 0) the header is 9 bytes: 8 is too short, 9 is fine.
    assert parse_adts_header(bytes([0xFF, 0xF0, 0x58, 0x40, 0x01, 0x1F, 0xFC]), 0) is None
    assert parse_adts_header(bytes([0xFF, 0xF0, 0x58, 0x40, 0x01, 0x3F, 0xFC]), 0) == (
        9,
        (0, 1, 6, 1),
    )
