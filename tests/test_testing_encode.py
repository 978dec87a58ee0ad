"""Tests of trio_tts_stream.server._encode: the test server's compressed encoders."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from trio_tts_stream.testing import SAMPLE_RATE, render_chunks, synthesize_tone

av = pytest.importorskip("av")
_encode = pytest.importorskip("trio_tts_stream.server._encode")

TEXT = "Hello world. This is a streaming test!"  # 2.47 s of audio
N = len(synthesize_tone(TEXT))
CHUNK = 480  # 20 ms, the server's default piece

# (format, exact_sizes) -> (samples a plain decoder outputs before the audio, codec frame)
LAYOUT = {
    ("mp3", False): (1105, 576),  # no gapless info: encoder delay 576 + decoder delay 529
    ("mp3", True): (0, 576),  # the Info frame: FFmpeg trims delay and padding exactly
    ("aac", False): (1024, 1024),  # ADTS cannot say: the priming frame is decoded
    ("aac", True): (1024, 1024),
    ("flac", False): (0, 2304),
    ("flac", True): (0, 2304),
    ("opus", False): (0, 480),  # Ogg: pre-skip and the last granule trim exactly
    ("opus", True): (0, 480),
}
LOSSY_MIN_CORRELATION = 0.9
# The header each format starts with: (magic, bytes). mp3: an empty ID3v2 tag (bitexact);
# flac: STREAMINFO, VORBIS_COMMENT, 8 KiB of PADDING; opus: the OpusHead and OpusTags pages.
HEADER = {"mp3": (b"ID3", 20), "aac": (b"", 0), "flac": (b"fLaC", 8256), "opus": (b"OggS", 97)}
CONTENT_TYPES = {"mp3": "audio/mpeg", "aac": "audio/aac", "flac": "audio/flac", "opus": "audio/ogg"}


def encode(
    fmt: str,
    samples: npt.NDArray[np.int16],
    *,
    cuts: list[int] | None = None,
    exact_sizes: bool = False,
) -> list[bytes]:
    """The outputs of one encoder fed ``samples`` in pieces of ``cuts`` (default CHUNK)."""
    encoder = _encode.ENCODERS[fmt](SAMPLE_RATE, len(samples), exact_sizes=exact_sizes)
    outputs = []
    sizes = iter(cuts) if cuts is not None else None
    i = 0
    while i < len(samples):
        n = next(sizes) if sizes is not None else CHUNK
        outputs.append(encoder.encode(samples[i : i + n]))
        i += n
    outputs.append(encoder.flush())
    assert encoder.flush() == b""  # idempotent
    return outputs


def decode(body: bytes) -> npt.NDArray[np.float64]:
    """Demux and decode a whole body with PyAV; mono samples at 24 kHz, int16 scale."""
    out: list[npt.NDArray[Any]] = []
    with av.open(io.BytesIO(body)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.channels == 1
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        for frame in container.decode(stream):
            out += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate([np.zeros(0), *out]).astype(np.float64) * 32768.0


def lag_of(decoded: npt.NDArray[np.float64], reference: npt.NDArray[np.int16]) -> int:
    """Where the reference starts in ``decoded`` (cross-correlation of the first 0.2 s)."""
    head = reference[:4800].astype(np.float64)
    return int(np.argmax(np.correlate(decoded[: len(head) + 3000], head, "valid")))


@pytest.fixture(scope="module")
def reference() -> npt.NDArray[np.int16]:
    return synthesize_tone(TEXT)


@pytest.fixture(scope="module")
def bodies(reference: npt.NDArray[np.int16]) -> dict[tuple[str, bool], list[bytes]]:
    return {key: encode(key[0], reference, exact_sizes=key[1]) for key in LAYOUT}


@pytest.mark.parametrize(("fmt", "exact_sizes"), list(LAYOUT))
def test_body_decodes_to_the_reference(
    fmt: str,
    exact_sizes: bool,
    reference: npt.NDArray[np.int16],
    bodies: dict[tuple[str, bool], list[bytes]],
) -> None:
    delay, frame = LAYOUT[fmt, exact_sizes]
    decoded = decode(b"".join(bodies[fmt, exact_sizes]))
    assert lag_of(decoded, reference) == delay
    audio = decoded[delay:]
    # As long as the input, up to the padding of the last codec frame where the format
    # cannot say how much of it to drop.
    assert 0 <= len(audio) - N < (frame if delay else 1)
    audio = audio[:N]
    if fmt == "flac":
        np.testing.assert_array_equal(audio, reference)
    else:
        correlation = np.corrcoef(audio, reference.astype(np.float64))[0, 1]
        assert correlation > LOSSY_MIN_CORRELATION
        assert not np.array_equal(audio, reference)  # lossy indeed: the check above matters


@pytest.mark.parametrize("fmt", sorted(_encode.ENCODERS))
def test_content_types_and_priming(fmt: str) -> None:
    cls = _encode.ENCODERS[fmt]
    assert cls.content_type == CONTENT_TYPES[fmt]
    # The priming a class documents is what a decoder that does not trim outputs first
    # (measured above); for opus it is the OpusHead pre-skip, which Ogg decoders trim.
    if fmt != "opus":
        assert cls.priming == LAYOUT[fmt, False][0]


def test_opus_pre_skip_is_the_priming(bodies: dict[tuple[str, bool], list[bytes]]) -> None:
    header = bodies["opus", False][0]
    head = header[header.index(b"OpusHead") :]
    version, channels, pre_skip, input_rate = struct.unpack_from("<BBHI", head, 8)
    assert (version, channels, input_rate) == (1, 1, SAMPLE_RATE)
    assert pre_skip == 2 * _encode.OpusEncoder.priming  # 48 kHz units
    assert header.startswith(b"OggS")
    assert struct.unpack_from("<I", header, 14)[0] == 0  # bitexact: serial number 0


# --------------------------------------------------------------------------------------
# Streaming: output as the audio comes in, final when written


@pytest.mark.parametrize("fmt", sorted(_encode.ENCODERS))
def test_encoders_stream(
    fmt: str, reference: npt.NDArray[np.int16], bodies: dict[tuple[str, bool], list[bytes]]
) -> None:
    outputs = bodies[fmt, False]
    body = b"".join(outputs)
    # The header comes with the first piece (ADTS has none), audio a codec frame or two
    # later.
    magic, header = HEADER[fmt]
    assert outputs[0].startswith(magic)
    assert len(outputs[0]) >= header
    first_audio = int(np.argmax(np.cumsum([len(out) for out in outputs]) > header))
    latency = (first_audio + 1) * CHUNK  # input samples fed before audio came out
    assert latency <= {"mp3": 1920, "aac": 2400, "flac": 2400, "opus": 960}[fmt]
    # Nearly everything is out before the end: the flush holds at most the last frames.
    assert len(outputs[-1]) < 0.1 * len(body)
    assert sum(1 for out in outputs if out) > 0.1 * len(outputs)

    # What was written mid-stream is final: half of the output decodes on its own to
    # the start of the whole decoded body (nothing is rewritten at the end).
    half = b"".join(outputs[: len(outputs) // 2])
    whole = decode(body)
    start = decode(half)
    assert len(start) > 0.4 * N
    if fmt == "opus":  # the resampler's tail differs at a cut: compare before it
        start = start[:-100]
    np.testing.assert_allclose(start, whole[: len(start)], atol=1e-3)


def test_output_does_not_depend_on_how_the_input_is_cut(reference: npt.NDArray[np.int16]) -> None:
    rng = np.random.default_rng(7)
    clip = reference[:30000]
    for fmt in _encode.ENCODERS:
        expected = b"".join(encode(fmt, clip))
        for cuts in ([len(clip)], [1, 2, 3, *rng.integers(1, 3000, 100).tolist()]):
            assert b"".join(encode(fmt, clip, cuts=cuts)) == expected, fmt
    # ... so the server's bodies are the same for every chunk_ms.
    for fmt in ("mp3", "flac"):
        bodies = {
            b"".join(render_chunks("abc def", response_format=fmt, chunk_ms=ms))
            for ms in (7, 20, 55)
        }
        assert len(bodies) == 1


def test_the_output_is_not_seekable() -> None:
    collector = _encode._Collector()
    assert collector.seekable() is False
    assert not hasattr(collector, "seek")
    assert collector.write(memoryview(b"abc")) == 3
    assert collector.take() == b"abc"
    assert collector.take() == b""


def test_closing_an_unfinished_encoder(reference: npt.NDArray[np.int16]) -> None:
    for fmt in _encode.ENCODERS:
        encoder = _encode.ENCODERS[fmt](SAMPLE_RATE, N)
        encoder.encode(reference[:5000])
        encoder.close()
        encoder.close()
        assert encoder.flush() == b""


# --------------------------------------------------------------------------------------
# Determinism


def test_same_input_same_bytes(
    reference: npt.NDArray[np.int16], bodies: dict[tuple[str, bool], list[bytes]]
) -> None:
    for (fmt, exact_sizes), outputs in bodies.items():
        assert encode(fmt, reference, exact_sizes=exact_sizes) == outputs


def test_same_bytes_in_another_process(bodies: dict[tuple[str, bool], list[bytes]]) -> None:
    code = (
        "import zlib; from trio_tts_stream.testing import render_chunks; "
        f"print(*(zlib.crc32(b''.join(render_chunks({TEXT!r}, response_format=f))) "
        "for f in ('mp3', 'aac', 'flac', 'opus')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "4321"},
    )
    expected = [zlib.crc32(b"".join(bodies[f, False])) for f in ("mp3", "aac", "flac", "opus")]
    assert [int(v) for v in out.stdout.split()] == expected


# --------------------------------------------------------------------------------------
# mp3: the Info frame written up front


def _ffmpeg_seekable_mp3(samples: npt.NDArray[np.int16]) -> bytes:
    """What FFmpeg's mp3 muxer writes into a seekable file (it fills in Xing at the end)."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp3", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libmp3lame", rate=SAMPLE_RATE)
        stream.codec_context.layout = "mono"
        stream.codec_context.bit_rate = 64000
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return out.getvalue()


@pytest.mark.parametrize("n", [576, 7200, N])
def test_mp3_info_frame_matches_ffmpeg(n: int, reference: npt.NDArray[np.int16]) -> None:
    ffmpeg = _ffmpeg_seekable_mp3(reference[:n])
    at = ffmpeg.index(b"Info") - 13
    theirs = ffmpeg[at : at + 192]
    ours = _encode.mp3_info_frame(n)
    assert len(ours) == 192
    # The same frame but for the TOC (FFmpeg's is coarser), the music CRC (ours cannot
    # know the audio) and the tag CRC that covers them.
    differ = {i for i in range(192) if ours[i] != theirs[i]}
    assert differ - set(range(29, 129)) <= {165, 166, 167, 168}
    assert ours[165:167] == b"\0\0"  # music CRC unknown up front
    assert ours[21:25] == theirs[21:25]  # frames
    assert ours[25:29] == theirs[25:29]  # bytes
    assert ours[154:157] == theirs[154:157]  # delay and padding
    # Our CRC function is FFmpeg's (it covers 190 bytes, the CRC field zeroed) ...
    zeroed = theirs[:167] + b"\0\0" + theirs[169:190]
    assert _encode._crc16(zeroed) == int.from_bytes(theirs[167:169], "big")
    # ... and our tag CRC covers the frame up to itself, as decoders check it.
    assert _encode._crc16(ours[:167]) == int.from_bytes(ours[167:169], "big")
    # A linear TOC, as for any CBR stream.
    assert list(ours[29:34]) == [0, 2, 5, 7, 10]


@pytest.mark.parametrize("n", [575, 576, 577, 622, 1151, 1152, 1153, 1198, 3000, 24001])
def test_mp3_exact_sizes_decode_to_exactly_the_input(
    n: int, reference: npt.NDArray[np.int16]
) -> None:
    # FFmpeg's own Info frame is off for n % 576 in 1..46 (it caps the padding at 1105);
    # ours is not. (Below 576 samples FFmpeg's demuxer cannot trim both ends of the same
    # frame, whatever the header says; the tone is never that short: 300 ms at least.)
    body = b"".join(encode("mp3", reference[:n], exact_sizes=True))
    frames = _encode.mp3_frame_count(n)
    assert len(body) == 20 + 192 * (frames + 1)  # ID3 tag, Info frame, audio frames
    decoded = decode(body)
    assert len(decoded) == n
    if n >= 3000:
        assert np.corrcoef(decoded, reference[:n])[0, 1] > LOSSY_MIN_CORRELATION


def test_mp3_frame_count(reference: npt.NDArray[np.int16]) -> None:
    for n in [*range(1, 1400, 53), 575, 576, 577, 1727, 1728, 1729, 9999]:
        body = b"".join(encode("mp3", reference[:n]))
        assert (len(body) - 20) // 192 == _encode.mp3_frame_count(n), n
        assert (len(body) - 20) % 192 == 0


def test_mp3_info_frame_needs_a_whole_frame_size() -> None:
    assert len(_encode.mp3_info_frame(100, sample_rate=16000)) == 288
    with pytest.raises(ValueError, match="22050"):
        _encode.mp3_info_frame(100, sample_rate=22050)


def test_mp3_without_exact_sizes_has_no_info_frame(
    bodies: dict[tuple[str, bool], list[bytes]],
) -> None:
    plain = b"".join(bodies["mp3", False])
    exact = b"".join(bodies["mp3", True])
    assert plain.startswith(b"ID3\x04")
    assert b"Info" not in plain[:400]
    assert b"Xing" not in plain
    assert exact[:20] == plain[:20]
    assert exact[20:212] == _encode.mp3_info_frame(N)
    assert exact[212:] == plain[20:]


# --------------------------------------------------------------------------------------
# flac: STREAMINFO


def _streaminfo_total(body: bytes) -> int:
    assert body[:4] == b"fLaC"
    assert body[4] & 0x7F == 0  # STREAMINFO first
    info = body[8:42]
    return int.from_bytes(info[13:18], "big") & ((1 << 36) - 1)


def test_flac_total_samples(bodies: dict[tuple[str, bool], list[bytes]]) -> None:
    plain = b"".join(bodies["flac", False])
    exact = b"".join(bodies["flac", True])
    assert _streaminfo_total(plain) == 0  # unknown, as a streaming encoder writes it
    assert _streaminfo_total(exact) == N
    assert plain[26:42] == bytes(16)  # MD5 unknown in both
    assert exact[26:42] == bytes(16)
    # Apart from the count, the same bytes.
    assert exact[:21] == plain[:21]
    assert exact[26:] == plain[26:]
    with av.open(io.BytesIO(exact)) as container:
        assert container.streams.audio[0].duration == N
    with pytest.raises(ValueError, match="FLAC"):
        _encode._with_flac_total_samples(b"OggS" + plain[4:], 5)
