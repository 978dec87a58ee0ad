"""Tests for the Ogg demuxer and the Opus-in-Ogg decoder.

Ogg pages are built and parsed here independently of the module under test (a bitwise
reference CRC, a tiny muxer), and real streams come from ffmpeg's and PyAV's libopus
encoders. Every stream is fed whole, one byte at a time, in 4096-byte chunks and in
hypothesis-chosen chunks, which must all yield identical samples. Opus is lossy, so the
decoded audio is compared with the (soxr-resampled) input by correlation, and exactly
with other decodes of the same packets.
"""

from __future__ import annotations

import functools
import io
import itertools
import re
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import av
import numpy as np
import numpy.typing as npt
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_tts_stream._decoders._pyav import frame_to_block
from trio_tts_stream._decoders.ogg import OggDemuxer, OggPacket, ogg_crc32
from trio_tts_stream._decoders.opus import OpusDecoder, OpusHead, opus_packet_frames
from trio_tts_stream._exceptions import DecodeError, UnsupportedFormatError
from trio_tts_stream._format import AudioFormat

F32 = npt.NDArray[np.float32]
FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed")


# -- independent Ogg tools ---------------------------------------------------------------


def _crc_table() -> list[int]:
    table = []
    for index in range(256):
        crc = index << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


CRC_TABLE = _crc_table()


def ref_crc(data: bytes) -> int:
    """RFC 3533's CRC, the straightforward MSB-first table-driven way."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ CRC_TABLE[(crc >> 24) ^ byte]
    return crc


@dataclass(frozen=True)
class Page:
    flags: int
    granule: int
    serial: int
    sequence: int
    lacing: bytes
    body: bytes

    def to_bytes(self, crc: int | None = None) -> bytes:
        header = struct.pack(
            "<4sBBqIIIB",
            b"OggS",
            0,
            self.flags,
            self.granule,
            self.serial,
            self.sequence,
            0,
            len(self.lacing),
        )
        unsigned = header + self.lacing + self.body
        if crc is None:
            crc = ref_crc(unsigned)
        return unsigned[:22] + struct.pack("<I", crc) + unsigned[26:]

    def packets(self) -> list[bytes]:
        """The packet pieces on this page (the last one unfinished if lacing ends in 255)."""
        pieces, pos, size = [], 0, 0
        for value in self.lacing:
            size += value
            if value < 255:
                pieces.append(self.body[pos : pos + size])
                pos += size
                size = 0
        if size:
            pieces.append(self.body[pos : pos + size])
        return pieces


def parse_pages(data: bytes) -> list[Page]:
    """Split a well-formed Ogg stream into pages, checking every CRC."""
    pages, pos = [], 0
    while pos < len(data):
        capture, version, flags, granule, serial, sequence, _crc, n = struct.unpack_from(
            "<4sBBqIIIB", data, pos
        )
        assert capture == b"OggS"
        assert version == 0
        lacing = data[pos + 27 : pos + 27 + n]
        body = data[pos + 27 + n : pos + 27 + n + sum(lacing)]
        page = Page(flags, granule, serial, sequence, lacing, body)
        assert page.to_bytes() == data[pos : pos + 27 + n + len(body)]  # CRC verified
        pages.append(page)
        pos += 27 + n + len(body)
    return pages


def join(pages: Iterable[Page]) -> bytes:
    return b"".join(page.to_bytes() for page in pages)


def lacing_of(size: int) -> bytes:
    return bytes([255] * (size // 255) + [size % 255])


def mux(
    packets: Sequence[tuple[bytes, int]],
    *,
    serial: int,
    max_body: int,
    final_granule: int | None = None,
    bos: bool = True,
    eos: bool = True,
    first_sequence: int = 0,
) -> list[Page]:
    """Paginate ``(packet, end granule)`` pairs: the first packet on a BOS page of its own,
    the second on a page of its own, the rest packed into bodies of at most ``max_body``
    bytes (so packets span pages). The last page gets ``final_granule`` and EOS."""
    pages: list[Page] = []
    seq = first_sequence

    def emit(flags: int, granule: int, lacing: list[int], body: bytes) -> None:
        nonlocal seq
        pages.append(Page(flags, granule, serial, seq, bytes(lacing), body))
        seq += 1

    for index, (data, granule) in enumerate(packets[:2]):
        emit(0x02 if bos and index == 0 else 0, granule, list(lacing_of(len(data))), data)
    # (segment size, packet index, last segment of its packet)
    segments = []
    for index, (data, _) in enumerate(packets[2:], start=2):
        lacing = lacing_of(len(data))
        offset = 0
        for k, value in enumerate(lacing):
            segments.append((data[offset : offset + value], index, k == len(lacing) - 1))
            offset += value
    lacing_values: list[int] = []
    body = b""
    continued = False
    granule = -1
    for k, (piece, index, last) in enumerate(segments):
        lacing_values.append(len(piece))
        body += piece
        if last:
            granule = packets[index][1]
        final = k == len(segments) - 1
        if final or len(lacing_values) == 255 or len(body) + 255 > max_body:
            flags = 0x01 if continued else 0
            if final:
                flags |= 0x04 if eos else 0
                if final_granule is not None:
                    granule = final_granule
            emit(flags, granule, lacing_values, body)
            continued = not last
            lacing_values, body, granule = [], b"", -1
    return pages


def packets_with_granules(pages: Sequence[Page]) -> tuple[list[tuple[bytes, int]], int]:
    """The packets of a well-formed single Opus stream with each one's end granule, and
    the final page's granule position (the durations come from the TOC bytes)."""
    packets: list[bytes] = []
    partial = b""
    page_granules: list[tuple[int, int]] = []  # (number of packets completed so far, granule)
    for page in pages:
        pieces = page.packets()
        if page.flags & 1:
            pieces[0] = partial + pieces[0]
            partial = b""
        if page.lacing and page.lacing[-1] == 255:
            partial = pieces.pop()
        packets += pieces
        if pieces:
            page_granules.append((len(packets), page.granule))
    ends = [0] * len(packets)
    position = 0
    for index, data in enumerate(packets[2:], start=2):
        position += opus_packet_frames(data)
        ends[index] = position
    return list(zip(packets, ends, strict=True)), pages[-1].granule


# -- signals and encoders ----------------------------------------------------------------


def speechlike(rate: int, seconds: float, channels: int, seed: int = 0) -> npt.NDArray[np.int16]:
    """A deterministic voiced-speech-like signal: a gliding harmonic tone in syllables."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(rate * seconds)) / rate
    pitch = 140 + 40 * np.sin(2 * np.pi * 1.3 * t + seed)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 3.1 * t + seed)
    mono = 0.25 * voice * envelope + 0.003 * rng.standard_normal(len(t))
    if channels == 2:
        other = 0.2 * np.sin(2 * np.pi * 330 * t) * envelope[::-1]
        data = np.stack([mono, 0.6 * mono + other], axis=1)
    else:
        data = mono[:, None]
    return np.round(data * 32767).astype(np.int16)


@functools.cache
def _ffmpeg_opus_args() -> tuple[str, ...]:
    assert FFMPEG is not None
    encoders = subprocess.run(
        [FFMPEG, "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout
    if re.search(r"\blibopus\b", encoders):
        return ("-c:a", "libopus")
    return ("-c:a", "opus", "-strict", "-2", "-ar", "48000")  # the native encoder


@functools.cache
def ffmpeg_ogg(
    rate: int,
    channels: int,
    bitrate: str,
    seconds: float = 1.0,
    *,
    seed: int = 0,
    extra: tuple[str, ...] = (),
    codec: tuple[str, ...] | None = None,
) -> bytes:
    """``speechlike(...)`` encoded by the ffmpeg command line into Ogg."""
    assert FFMPEG is not None
    pcm = speechlike(rate, seconds, channels, seed)
    args = [FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "s16le", "-ar", str(rate)]
    args += ["-ac", str(channels), "-i", "-", *(codec or _ffmpeg_opus_args())]
    args += ["-b:a", bitrate, *extra, "-f", "ogg", "-"]
    return subprocess.run(args, input=pcm.tobytes(), capture_output=True, check=True).stdout


@functools.cache
def pyav_ogg(rate: int, channels: int, bitrate: int, seconds: float = 1.0) -> bytes:
    """``speechlike(...)`` encoded into Ogg Opus with PyAV (libopus)."""
    pcm = speechlike(rate, seconds, channels)
    layout = "mono" if channels == 1 else "stereo"
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=rate, layout=layout)
        stream.bit_rate = bitrate
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout=layout)
        frame.sample_rate = rate
        frame.pts = 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buffer.getvalue()


# -- feeding ------------------------------------------------------------------------------


def run(decoder: OpusDecoder, chunks: Iterable[bytes]) -> F32:
    """Feed ``chunks`` then flush; check every block; concatenate."""
    blocks = []
    for chunk in chunks:
        blocks += decoder.decode(chunk)
    blocks += decoder.flush()
    fmt = decoder.audio_format
    assert fmt is not None
    assert fmt.sample_rate == 48000
    for block in blocks:
        assert block.dtype == np.float32
        assert block.ndim == 2
        assert block.shape[1] == fmt.channels
        assert len(block) > 0
        assert block.flags.c_contiguous
    if not blocks:
        return np.empty((0, fmt.channels), dtype=np.float32)
    return np.concatenate(blocks)


def decode(data: bytes, chunks: Callable[[bytes], list[bytes]] | None = None) -> F32:
    return run(OpusDecoder(), chunks(data) if chunks else [data])


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def fixed(size: int) -> Callable[[bytes], list[bytes]]:
    return lambda data: [data[i : i + size] for i in range(0, len(data), size)]


def split_at(data: bytes, points: Iterable[int]) -> list[bytes]:
    edges = [0, *sorted(set(points)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def demux_all(
    data: bytes,
    chunks: Iterable[bytes] | None = None,
    select: Callable[[bytes], bool] | None = None,
) -> tuple[list[OggPacket], OggDemuxer]:
    demuxer = OggDemuxer(select=select)
    packets = []
    for chunk in [data] if chunks is None else chunks:
        packets += demuxer.feed(chunk)
    packets += demuxer.flush()
    return packets, demuxer


def best_lag(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], span: int = 40) -> int:
    n = min(len(a), len(b)) - 2 * span
    scores = [
        float(np.dot(a[span : span + n], b[span + lag : span + lag + n]))
        for lag in range(-span, span + 1)
    ]
    return int(np.argmax(scores)) - span


def correlation(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


def resampled_input(rate: int, channels: int, seconds: float = 1.0) -> npt.NDArray[np.float64]:
    pcm = speechlike(rate, seconds, channels).astype(np.float32) / 32768
    out = np.asarray(soxr.resample(pcm, rate, 48000), dtype=np.float64)
    return out.reshape(len(out), channels)


# -- CRC ------------------------------------------------------------------------------------


def test_crc_check_value() -> None:
    # CRC-32/CKSUM (same polynomial, init 0, not reflected) checks "123456789" as
    # 0x765E7680 after its final xor with 0xFFFFFFFF; Ogg has no final xor.
    assert ogg_crc32(b"123456789") == 0x765E7680 ^ 0xFFFFFFFF == ref_crc(b"123456789")
    assert ogg_crc32(b"") == 0
    assert ogg_crc32(b"\0" * 100) == 0


@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=600), cut=st.integers(min_value=0, max_value=600))
def test_crc_matches_reference_and_chains(data: bytes, cut: int) -> None:
    assert ogg_crc32(data) == ref_crc(data)
    assert ogg_crc32(data[cut:], ogg_crc32(data[:cut])) == ogg_crc32(data)


@needs_ffmpeg
def test_crc_of_pages_written_by_ffmpeg() -> None:
    data = ffmpeg_ogg(24000, 1, "24k")
    pages = parse_pages(data)  # checks every page's CRC with ref_crc
    assert len(pages) >= 3
    for page in pages:
        raw = page.to_bytes()
        (stored,) = struct.unpack_from("<I", raw, 22)
        assert ogg_crc32(raw[:22] + b"\0\0\0\0" + raw[26:]) == stored


# -- demuxer: hand-built pages ----------------------------------------------------------


def test_lacing_sizes_and_flags() -> None:
    sizes = [0, 1, 254, 255, 256, 510, 511, 3000]
    packets = [bytes([i]) * size for i, size in enumerate(sizes)]
    body = b"".join(packets)
    lacing = b"".join(lacing_of(len(p)) for p in packets)
    pages = [
        Page(0x02, 0, 7, 0, lacing_of(5), b"head!"),
        Page(0, 1234, 7, 1, lacing, body),
        Page(0x04, 5678, 7, 2, lacing_of(3), b"end"),
    ]
    data = join(pages)
    for chunks in ([data], bytewise(data)):
        got, demuxer = demux_all(data, chunks)
        assert [p.data for p in got] == [b"head!", *packets, b"end"]
        assert [p.granule for p in got] == [0] + [-1] * 7 + [1234, 5678]
        assert [p.bos for p in got] == [True] + [False] * 9
        assert [p.eos for p in got] == [False] * 9 + [True]
        assert {p.serial for p in got} == {7}
        assert [p.page_sequence for p in got] == [0] + [1] * 8 + [2]
        assert demuxer.pages == 3
        assert demuxer.errors == demuxer.bad_pages == demuxer.skipped_bytes == 0
        assert demuxer.first_page_offset == 0


def test_packet_spanning_several_pages() -> None:
    big = bytes(range(256)) * 300  # 76800 bytes: more than one page can hold
    pages = mux(
        [(b"head", 0), (b"tags", 0), (b"a" * 10, 1), (big, 2), (b"b" * 300, 3)],
        serial=1,
        max_body=20000,
    )
    assert len(pages) >= 6
    assert any(page.flags & 1 for page in pages)  # continued pages
    data = join(pages)
    got, demuxer = demux_all(data, bytewise(data))
    assert [p.data for p in got] == [b"head", b"tags", b"a" * 10, big, b"b" * 300]
    assert demuxer.errors == 0
    # Granule positions only where a packet ends last on a page; -1 pages give none.
    assert got[-1].granule == 3
    assert got[-1].eos


def _spanning_pages() -> list[Page]:
    """Page 1 ends with the start of packet B, page 2 is all B, page 3 ends B and has C."""
    b = bytes(range(200)) * 3
    return [
        Page(0x02, 0, 9, 0, lacing_of(4), b"HEAD"),
        Page(0, 10, 9, 1, lacing_of(5) + b"\xff", b"AAAAA" + b[:255]),
        Page(0x01, -1, 9, 2, b"\xff", b[255:510]),
        Page(0x01, 30, 9, 3, bytes([90]) + lacing_of(3), b[510:] + b"CCC"),
        Page(0x04, 40, 9, 4, lacing_of(3), b"DDD"),
    ]


def test_continued_packet_reassembled() -> None:
    data = join(_spanning_pages())
    got, demuxer = demux_all(data)
    assert [p.data for p in got] == [b"HEAD", b"AAAAA", bytes(range(200)) * 3, b"CCC", b"DDD"]
    assert demuxer.errors == 0


def test_continuation_of_a_lost_page_is_dropped_not_glued() -> None:
    pages = _spanning_pages()
    lost = join(pages[:2] + pages[3:])  # the middle of packet B never arrives
    got, demuxer = demux_all(lost)
    assert [p.data for p in got] == [b"HEAD", b"AAAAA", b"CCC", b"DDD"]
    assert demuxer.sequence_gaps == 1
    assert demuxer.errors == 1  # an unexplained gap

    # The same page arriving corrupted: one error (the bad page explains the gap).
    corrupt = bytearray(pages[2].to_bytes())
    corrupt[40] ^= 0x10
    data = join(pages[:2]) + bytes(corrupt) + join(pages[3:])
    got, demuxer = demux_all(data)
    assert [p.data for p in got] == [b"HEAD", b"AAAAA", b"CCC", b"DDD"]
    assert demuxer.bad_pages == 1
    assert demuxer.sequence_gaps == 1
    assert demuxer.errors == 1
    assert demuxer.skipped_bytes == len(corrupt)

    # Losing the page that starts B: its continuation pages are dropped too.
    got, _ = demux_all(join(pages[:1] + pages[2:]))
    assert [p.data for p in got] == [b"HEAD", b"CCC", b"DDD"]


def test_unfinished_packet_without_continuation_is_dropped() -> None:
    pages = _spanning_pages()
    # Page 2 claims to start fresh (no continued flag) although B is unfinished.
    fresh = replace(pages[2], flags=0, lacing=lacing_of(5), body=b"EEEEE")
    got, demuxer = demux_all(join([pages[0], pages[1], fresh, pages[4]]))
    assert [p.data for p in got] == [b"HEAD", b"AAAAA", b"EEEEE", b"DDD"]  # then a gap
    assert demuxer.errors == 2


def test_resync_after_garbage_and_false_captures() -> None:
    pages = _spanning_pages()
    clean, _ = demux_all(join(pages))
    fake_header = b"OggS\x00\x00" + bytes(20) + b"\x05" + b"\x10" * 5  # CRC cannot match
    garbage = [b"\x00\x01junk", b"OggSOggS" + fake_header + b"xyz" * 50, b"Ogg", b"O"]
    data = b"".join(p.to_bytes() + g for p, g in zip(pages, [*garbage, b""], strict=True))
    for chunks in ([data], bytewise(data), fixed(7)(data)):
        got, demuxer = demux_all(data, chunks)
        assert [p.data for p in got] == [p.data for p in clean]
        assert [p.granule for p in got] == [p.granule for p in clean]
        assert demuxer.skipped_bytes == sum(map(len, garbage))
        assert demuxer.sequence_gaps == 0
        assert demuxer.errors > 0


def test_leading_garbage_and_first_page_offset() -> None:
    data = b"HTTP junk" + join(_spanning_pages())
    got, demuxer = demux_all(data)
    assert len(got) == 5
    assert demuxer.first_page_offset == 9
    assert demuxer.errors == 1


def test_truncated_final_page_is_rejected_at_flush() -> None:
    data = join(_spanning_pages())
    got, demuxer = demux_all(data[:-2])
    assert [p.data for p in got] == [b"HEAD", b"AAAAA", bytes(range(200)) * 3, b"CCC"]
    assert demuxer.bad_pages == 1
    assert demuxer.errors == 1


def test_feed_after_flush_is_an_error() -> None:
    demuxer = OggDemuxer()
    demuxer.flush()
    assert demuxer.flush() == []
    with pytest.raises(RuntimeError):
        demuxer.feed(b"OggS")


def _two_streams(link_serials: tuple[int, int] = (1, 2)) -> list[Page]:
    a, b = link_serials
    return [
        Page(0x02, 0, a, 0, lacing_of(5), b"VorbH"),
        Page(0x02, 0, b, 0, lacing_of(5), b"OpusH"),
        Page(0, -1, a, 1, b"\xff", b"v" * 255),  # unfinished
        Page(0, 100, b, 1, lacing_of(2) + lacing_of(2), b"o1o2"),
        Page(0x01, 5, a, 2, lacing_of(1), b"v"),
        Page(0x04, 200, b, 2, lacing_of(2), b"o3"),
        Page(0x04, 9, a, 3, lacing_of(2), b"v2"),
    ]


def test_multiplexed_streams_all_assembled_without_select() -> None:
    got, demuxer = demux_all(join(_two_streams()))
    assert [(p.serial, p.data) for p in got] == [
        (1, b"VorbH"),
        (2, b"OpusH"),
        (2, b"o1"),
        (2, b"o2"),
        (1, b"v" * 256),
        (2, b"o3"),
        (1, b"v2"),
    ]
    assert demuxer.errors == 0


def test_select_follows_the_first_matching_stream_only() -> None:
    data = join(_two_streams())
    for chunks in ([data], bytewise(data)):
        got, demuxer = demux_all(data, chunks, select=lambda p: p.startswith(b"Opus"))
        assert [(p.serial, p.data, p.bos) for p in got] == [
            (1, b"VorbH", True),  # the header of every stream is reported
            (2, b"OpusH", True),
            (2, b"o1", False),
            (2, b"o2", False),
            (2, b"o3", False),
        ]
        assert demuxer.selected == 2
        assert not demuxer.in_headers


def test_chain_links_are_numbered() -> None:
    first = mux([(b"H1", 0), (b"T1", 0), (b"x" * 10, 1)], serial=5, max_body=100)
    second = mux([(b"H2", 0), (b"T2", 0), (b"y" * 10, 2)], serial=6, max_body=100)
    third = mux([(b"H3", 0), (b"T3", 0), (b"z" * 10, 3)], serial=5, max_body=100)  # reused
    got, demuxer = demux_all(join(first + second + third), select=lambda p: p[:1] == b"H")
    assert [(p.link, p.serial, p.data) for p in got] == [
        (0, 5, b"H1"),
        (0, 5, b"T1"),
        (0, 5, b"x" * 10),
        (1, 6, b"H2"),
        (1, 6, b"T2"),
        (1, 6, b"y" * 10),
        (2, 5, b"H3"),
        (2, 5, b"T3"),
        (2, 5, b"z" * 10),
    ]
    assert demuxer.link == 2
    assert demuxer.errors == 0


@st.composite
def damaged_stream(draw: st.DrawFn) -> bytes:
    """Hand-built pages with garbage (some containing ``OggS``) spliced in at random."""
    pages = _spanning_pages() + [
        replace(p, serial=9, sequence=p.sequence + 5, flags=p.flags & ~0x02)
        for p in _spanning_pages()[1:]
    ]
    pieces = []
    for page in pages:
        pieces.append(page.to_bytes())
        if draw(st.booleans()):
            pieces.append(draw(st.binary(max_size=40)) + draw(st.sampled_from([b"", b"OggS"])))
    return b"".join(pieces)


@settings(max_examples=40, deadline=None)
@given(data=damaged_stream(), cuts=st.lists(st.integers(min_value=0, max_value=4000)))
def test_demuxer_any_chunking_same_packets(data: bytes, cuts: list[int]) -> None:
    whole, reference = demux_all(data)
    got, demuxer = demux_all(data, split_at(data, [c for c in cuts if c < len(data)]))
    assert got == whole
    assert (demuxer.errors, demuxer.skipped_bytes, demuxer.bad_pages) == (
        reference.errors,
        reference.skipped_bytes,
        reference.bad_pages,
    )


# -- Opus: header and TOC -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("packet", "frames"),
    [
        (bytes([0 << 3]), 480),  # SILK NB 10 ms
        (bytes([3 << 3]), 2880),  # SILK 60 ms
        (bytes([(9 << 3) | 1]), 1920),  # SILK 20 ms x2 (code 1)
        (bytes([(13 << 3) | 2]), 1920),  # hybrid 20 ms x2 (code 2)
        (bytes([12 << 3]), 480),  # hybrid 10 ms
        (bytes([16 << 3]), 120),  # CELT 2.5 ms
        (bytes([31 << 3]), 960),  # CELT 20 ms
        (bytes([(31 << 3) | 3, 6]), 5760),  # CELT 20 ms x6 (code 3) = 120 ms
        (bytes([(31 << 3) | 3, 7]), 0),  # 140 ms: invalid
        (bytes([(31 << 3) | 3]), 0),  # code 3 without its count byte
        (b"", 0),
    ],
)
def test_opus_packet_frames(packet: bytes, frames: int) -> None:
    assert opus_packet_frames(packet) == frames


def opus_head(
    channels: int = 1, pre_skip: int = 312, gain: int = 0, family: int = 0, version: int = 1
) -> bytes:
    head = b"OpusHead" + struct.pack("<BBHIhB", version, channels, pre_skip, 24000, gain, family)
    if family == 1:
        head += bytes([channels, channels - 1 if channels > 1 else 0]) + bytes(range(channels))
    return head


def test_opus_head_parse() -> None:
    head = OpusHead.parse(opus_head(2, 3840, -256))
    assert (head.channels, head.pre_skip, head.output_gain) == (2, 3840, -256)
    assert head.input_sample_rate == 24000
    assert head.gain_factor == pytest.approx(10 ** (-1 / 20))
    extradata = head.codec_extradata()
    assert extradata[10:12] == extradata[16:18] == b"\0\0"
    assert extradata[:10] == head.packet[:10]
    assert OpusHead.parse(opus_head(6, family=1)).channels == 6


@pytest.mark.parametrize(
    ("packet", "error", "match"),
    [
        (opus_head(version=16), UnsupportedFormatError, "version 16"),
        (opus_head(family=2), UnsupportedFormatError, "mapping family 2"),
        (opus_head(family=255), UnsupportedFormatError, "mapping family 255"),
        (opus_head(channels=0), DecodeError, "0 channels"),
        (opus_head(channels=3), DecodeError, "3 channels"),
        (opus_head()[:15], DecodeError, "malformed"),
    ],
)
def test_opus_head_rejected(packet: bytes, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        OpusHead.parse(packet)


# -- Opus: real streams -------------------------------------------------------------------

STREAMS = [
    (24000, 1, "12k"),
    (24000, 1, "32k"),
    (48000, 1, "20k"),
    (48000, 1, "64k"),
    (24000, 2, "96k"),
    (48000, 2, "128k"),
]


@needs_ffmpeg
@pytest.mark.parametrize(("rate", "channels", "bitrate"), STREAMS)
def test_ffmpeg_stream_decodes_to_the_input(rate: int, channels: int, bitrate: str) -> None:
    data = ffmpeg_ogg(rate, channels, bitrate)
    decoder = OpusDecoder()
    out = run(decoder, [data])
    assert decoder.audio_format == AudioFormat(48000, channels)
    assert decoder.errors == 0
    assert decoder.head is not None
    assert decoder.head.pre_skip > 0
    # libopus writes exact granule positions: the length is exactly the input's.
    assert len(out) == 48000  # 1 s at 48 kHz
    reference = resampled_input(rate, channels)
    for channel in range(channels):
        got = out[:, channel].astype(np.float64)
        assert best_lag(got, reference[:, channel]) == 0  # pre-skip removed exactly
        assert correlation(got, reference[:, channel]) > 0.9


@needs_ffmpeg
@pytest.mark.parametrize(("rate", "channels", "bitrate"), [STREAMS[1], STREAMS[4]])
def test_chunking_gives_identical_samples(rate: int, channels: int, bitrate: str) -> None:
    data = ffmpeg_ogg(rate, channels, bitrate, extra=("-page_duration", "60000"))
    expected = decode(data)
    for chunks in (bytewise, fixed(4096), fixed(27)):
        np.testing.assert_array_equal(decode(data, chunks), expected)


@pytest.mark.parametrize(("rate", "channels"), [(24000, 1), (48000, 2)])
def test_pyav_stream_decodes_to_the_input(rate: int, channels: int) -> None:
    data = pyav_ogg(rate, channels, 64000 * channels)
    out = decode(data)
    assert len(out) == 48000
    reference = resampled_input(rate, channels)
    for channel in range(channels):
        got = out[:, channel].astype(np.float64)
        assert best_lag(got, reference[:, channel]) == 0
        assert correlation(got, reference[:, channel]) > 0.9


def test_matches_pyav_container_decode() -> None:
    """FFmpeg's own demuxer applies pre-skip and end trimming: same samples, bit for bit."""
    data = pyav_ogg(48000, 2, 128000)
    with av.open(io.BytesIO(data)) as container:
        reference = np.concatenate([frame_to_block(f) for f in container.decode(audio=0)])
    np.testing.assert_array_equal(decode(data), reference)


@needs_ffmpeg
@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=20000), max_size=30))
def test_any_chunking_gives_identical_samples(cuts: list[int]) -> None:
    data = damaged_opus()
    expected, errors = damaged_reference()
    decoder = OpusDecoder()
    np.testing.assert_array_equal(
        run(decoder, split_at(data, [c for c in cuts if c < len(data)])), expected
    )
    assert decoder.errors == errors


@functools.cache
def damaged_opus() -> bytes:
    """A stream with garbage between pages, a corrupted page and a lost page."""
    pages = [p.to_bytes() for p in parse_pages(ffmpeg_ogg(24000, 1, "24k", 1.5, extra=PAGES_50MS))]
    corrupt = bytearray(pages[8])
    corrupt[-5] ^= 0xFF
    pages[8] = bytes(corrupt)
    del pages[14]
    pages.insert(5, b"\x00garbage OggS\x00" * 3)
    return b"".join(pages)


@functools.cache
def damaged_reference() -> tuple[F32, int]:
    decoder = OpusDecoder()
    out = run(decoder, [damaged_opus()])
    return out, decoder.errors


PAGES_50MS = ("-page_duration", "50000")


# -- Opus: granule positions, header fields -------------------------------------------------


def repaginated(data: bytes, max_body: int, **changes: int) -> bytes:
    """The packets of ``data`` laid out on new pages (bodies of at most ``max_body``)."""
    pages = parse_pages(data)
    packets, final = packets_with_granules(pages)
    return join(mux(packets, serial=pages[0].serial, max_body=max_body, final_granule=final))


def patch_pages(data: bytes, edit: Callable[[int, Page], Page]) -> bytes:
    return join(edit(index, page) for index, page in enumerate(parse_pages(data)))


@needs_ffmpeg
def test_packets_spanning_pages_decode_identically() -> None:
    data = ffmpeg_ogg(48000, 2, "256k")  # packets of 3 segments (> 510 bytes)
    expected = decode(data)
    for max_body in (1, 600, 4000):
        remuxed = repaginated(data, max_body)
        assert any(page.flags & 1 for page in parse_pages(remuxed))  # continued pages
        np.testing.assert_array_equal(decode(remuxed, fixed(50)), expected)


@needs_ffmpeg
def test_audio_is_released_as_soon_as_its_page_arrives() -> None:
    data = ffmpeg_ogg(48000, 1, "64k")
    pre_skip = OpusHead.parse(parse_pages(data)[0].body).pre_skip
    pages = parse_pages(data)
    packets, final = packets_with_granules(pages)
    assert all(p[0] >> 3 >= 16 for p, _ in packets[2:])  # CELT: the codec has no delay
    pages = mux(packets, serial=1, max_body=1, final_granule=final)  # a packet per page
    decoder = OpusDecoder()
    released = 0
    for page in pages[:-1]:
        released += sum(len(b) for b in decoder.decode(page.to_bytes()))
        if page.granule > 0:
            assert released == page.granule - pre_skip  # nothing held back
    assert decoder.audio_format == AudioFormat(48000, 1)
    released += sum(len(b) for b in decoder.decode(pages[-1].to_bytes()))
    released += sum(len(b) for b in decoder.flush())
    assert released == 48000


@needs_ffmpeg
def test_pre_skip_end_trim_and_gain_come_from_the_stream() -> None:
    data = ffmpeg_ogg(24000, 1, "32k", extra=PAGES_50MS)
    base = decode(data)
    last = len(parse_pages(data)) - 1

    def patch(pre_skip: int = 0, gain: int = 0, end: int = 0) -> bytes:
        def edit(index: int, page: Page) -> Page:
            if index == 0:
                head = bytearray(page.body)
                struct.pack_into("<H", head, 10, struct.unpack_from("<H", head, 10)[0] + pre_skip)
                struct.pack_into("<h", head, 16, gain)
                return replace(page, body=bytes(head))
            if index == last:
                return replace(page, granule=page.granule - end)
            return page

        return patch_pages(data, edit)

    np.testing.assert_array_equal(decode(patch(pre_skip=480)), base[480:])
    decoder = OpusDecoder()
    np.testing.assert_array_equal(run(decoder, [patch(end=300)]), base[:-300])
    assert decoder.trimmed_frames == 300 + _end_trim(data)
    louder = decode(patch(gain=6 * 256))
    np.testing.assert_allclose(louder, base * np.float32(10 ** (6 / 20)), rtol=1e-6)
    quieter = decode(patch(gain=-256 * 20))
    np.testing.assert_allclose(quieter, base / 10, rtol=1e-5, atol=1e-9)


def _end_trim(data: bytes) -> int:
    """Samples the original stream's last page trims (TOC durations - final granule)."""
    packets, final = packets_with_granules(parse_pages(data))
    return packets[-1][1] - final


@needs_ffmpeg
def test_start_granule_offset_and_start_trim() -> None:
    data = ffmpeg_ogg(24000, 1, "32k", extra=PAGES_50MS)
    base = decode(data)

    def shifted(delta: int) -> bytes:
        return patch_pages(
            data, lambda i, p: replace(p, granule=p.granule + delta) if i >= 2 else p
        )

    # A stream cut at its start (granules larger than the samples): nothing changes.
    np.testing.assert_array_equal(decode(shifted(+48000 * 60)), base)
    # A first audio page claiming fewer samples than it holds: the excess is dropped at
    # the start (and the end trimming stays right).
    decoder = OpusDecoder()
    np.testing.assert_array_equal(run(decoder, [shifted(-700)]), base[700:])
    assert decoder.errors == 0


@needs_ffmpeg
def test_lost_page_decoding_continues() -> None:
    data = ffmpeg_ogg(24000, 1, "24k", 1.5, extra=PAGES_50MS)
    base = decode(data)
    pages = parse_pages(data)
    gone = 10
    lost = pages[gone].granule - pages[gone - 1].granule  # the audio on the lost page
    decoder = OpusDecoder()
    out = run(decoder, [join(pages[:gone] + pages[gone + 1 :])])
    assert decoder.errors == 1
    assert len(out) == len(base) - lost
    pre_skip = OpusHead.parse(pages[0].body).pre_skip
    before = pages[gone - 1].granule - pre_skip
    np.testing.assert_array_equal(out[:before], base[:before])
    # After the gap the codec recovers: compare with the original, 40 ms later.
    after = out[before + 1920 :, 0].astype(np.float64)
    assert correlation(after, base[before + lost + 1920 :, 0].astype(np.float64)) > 0.95


@needs_ffmpeg
def test_corrupt_page_and_garbage_are_skipped() -> None:
    data = ffmpeg_ogg(24000, 1, "24k", 1.5, extra=PAGES_50MS)
    base = decode(data)
    pages = [p.to_bytes() for p in parse_pages(data)]

    # Garbage (with false capture patterns) between intact pages loses nothing.
    noisy = b"".join(p + b"OggS\x00\x02 noise " * (i % 3) for i, p in enumerate(pages))
    decoder = OpusDecoder()
    np.testing.assert_array_equal(run(decoder, bytewise(noisy)), base)
    assert decoder.errors > 0

    # A corrupted page is skipped and counted; the rest decodes.
    corrupt = bytearray(pages[12])
    corrupt[len(corrupt) // 2] ^= 0x01
    decoder = OpusDecoder()
    out = run(decoder, [b"".join(pages[:12]) + bytes(corrupt) + b"".join(pages[13:])])
    assert decoder.errors == 1
    assert 0 < len(base) - len(out) <= 48000 * 0.06 + 960


@needs_ffmpeg
def test_truncated_final_page() -> None:
    data = ffmpeg_ogg(24000, 1, "24k", extra=PAGES_50MS)
    base = decode(data)
    pages = parse_pages(data)
    pre_skip = OpusHead.parse(pages[0].body).pre_skip
    cut = data[: -len(pages[-1].to_bytes()) // 2]
    decoder = OpusDecoder()
    out = run(decoder, [cut])
    assert decoder.errors == 1
    expected = pages[-2].granule - pre_skip
    np.testing.assert_array_equal(out, base[:expected])


@needs_ffmpeg
def test_chained_streams() -> None:
    first = ffmpeg_ogg(24000, 1, "32k", 0.5, extra=PAGES_50MS)
    second = ffmpeg_ogg(48000, 1, "24k", 0.7, seed=3, extra=("-serial_offset", "77"))
    expected = np.concatenate([decode(first), decode(second)])
    assert len(expected) == 24000 + 33600
    decoder = OpusDecoder()
    np.testing.assert_array_equal(run(decoder, fixed(100)(first + second)), expected)
    assert decoder.streams == 2
    assert decoder.errors == 0

    # A first link cut short (no EOS page) is still played up to its last page.
    pages = parse_pages(first)
    truncated = join(pages[:-1])
    pre_skip = OpusHead.parse(pages[0].body).pre_skip
    out = decode(truncated + second)
    head = pages[-2].granule - pre_skip
    np.testing.assert_array_equal(out, np.concatenate([decode(first)[:head], decode(second)]))


@needs_ffmpeg
def test_chained_stream_changing_channels_is_rejected() -> None:
    data = ffmpeg_ogg(24000, 1, "32k", 0.5) + ffmpeg_ogg(24000, 2, "64k", 0.5)
    with pytest.raises(UnsupportedFormatError, match="from 1 to 2 channels"):
        decode(data)


@needs_ffmpeg
def test_multiplexed_streams_follow_the_first_opus_stream() -> None:
    assert FFMPEG is not None
    pcm_a = speechlike(24000, 1.0, 1, seed=1)
    pcm_b = speechlike(24000, 1.0, 1, seed=2)
    alone = decode(ffmpeg_ogg(24000, 1, "32k", seed=1))
    for codecs in (["-c:a", "libopus"], ["-c:a:0", "libvorbis", "-c:a:1", "libopus"]):
        if "libvorbis" in codecs:
            first, second = pcm_b, pcm_a  # Vorbis first: the Opus stream has signal a
        else:
            first, second = pcm_a, pcm_b
        both = np.concatenate([first, second], axis=1)
        args = [FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "s16le", "-ar", "24000"]
        args += [
            "-ac",
            "2",
            "-i",
            "-",
            "-filter_complex",
            "[0:a]pan=mono|c0=c0[a];[0:a]pan=mono|c0=c1[b]",
        ]
        args += ["-map", "[a]", "-map", "[b]", *codecs, "-b:a", "32k", "-f", "ogg", "-"]
        result = subprocess.run(args, input=both.tobytes(), capture_output=True)
        if result.returncode and "libvorbis" in codecs:
            continue  # no Vorbis encoder here
        result.check_returncode()
        pages = parse_pages(result.stdout)
        assert len({page.serial for page in pages}) == 2
        headers = [page.body[:8] for page in pages if page.flags & 0x02]
        assert headers[1] == b"OpusHead"
        assert headers[0] == (b"\x01vorbis\x00" if "libvorbis" in codecs else b"OpusHead")
        decoder = OpusDecoder()
        out = run(decoder, fixed(512)(result.stdout))
        assert decoder.errors == 0
        assert out.shape == alone.shape
        assert correlation(out[:, 0].astype(np.float64), alone[:, 0].astype(np.float64)) > 0.99


@needs_ffmpeg
def test_vorbis_is_unsupported() -> None:
    data = ffmpeg_ogg(24000, 1, "64k", 0.3, codec=("-c:a", "libvorbis"))
    if not data:
        pytest.skip("no Vorbis encoder")
    decoder = OpusDecoder()
    with pytest.raises(UnsupportedFormatError, match="ogg/vorbis is not supported; ask for opus"):
        decoder.decode(data)  # as soon as the header pages are over
    # Only the first (BOS) page: the verdict waits for the end of the headers.
    first_page = parse_pages(data)[0].to_bytes()
    decoder = OpusDecoder()
    assert decoder.decode(first_page) == []
    with pytest.raises(UnsupportedFormatError, match="ogg/vorbis"):
        decoder.flush()


def test_not_ogg() -> None:
    rng = np.random.default_rng(5)
    noise = rng.integers(0, 256, 70000, dtype=np.uint8).tobytes().replace(b"OggS", b"oggs")
    decoder = OpusDecoder()
    assert decoder.decode(noise[:1000]) == []
    with pytest.raises(DecodeError, match="not an Ogg stream"):
        decoder.flush()
    decoder = OpusDecoder()
    for chunk in fixed(4096)(noise[:65536]):
        assert decoder.decode(chunk) == []  # not yet: 64 KiB of it could be leading junk
    with pytest.raises(DecodeError, match="in the first 64 KiB"):
        decoder.decode(noise[65536:])
    with pytest.raises(DecodeError, match=re.escape("starts with b'RIFF")):
        decode(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(100))
    with pytest.raises(DecodeError, match="empty response"):
        OpusDecoder().flush()


def test_ogg_without_opus_header() -> None:
    pages = mux(
        [(opus_head(), 0), (b"OpusTags" + bytes(8), 0), (bytes([0xF8, 1, 2]), 960)],
        serial=3,
        max_body=100,
    )
    with pytest.raises(DecodeError, match="without a readable Opus header"):
        decode(join(pages[1:]))  # the BOS page is missing


def test_hand_built_stream_with_silence() -> None:
    """Packets made by hand: CELT 20 ms frames of digital silence (TOC 0xF8, 1 byte)."""
    silence = bytes([0xF8, 0xFF, 0xFE])
    packets = [(opus_head(2, pre_skip=100), 0), (b"OpusTags" + bytes(8), 0)]
    packets += [(silence, 960 * k) for k in range(1, 11)]
    data = join(mux(packets, serial=11, max_body=4, final_granule=960 * 10 - 50))
    decoder = OpusDecoder()
    out = run(decoder, bytewise(data))
    assert out.shape == (960 * 10 - 150, 2)
    assert decoder.errors == 0


@pytest.mark.parametrize("granule", [0, -1, "backwards"])
def test_unusable_granules_play_everything_page_by_page(granule: int | str) -> None:
    silence = bytes([0xF8, 0xFF, 0xFE])
    packets = [(opus_head(1, pre_skip=100), 0), (b"OpusTags" + bytes(8), 0)]
    packets += [(silence, 960 * k) for k in range(1, 11)]
    pages = mux(packets, serial=11, max_body=4)
    if granule == "backwards":  # the third audio page goes back in time, then all is fine
        pages[4] = replace(pages[4], granule=10)
    else:
        pages = pages[:2] + [replace(page, granule=int(granule)) for page in pages[2:]]
    decoder = OpusDecoder()
    released = [sum(map(len, decoder.decode(page.to_bytes()))) for page in pages]
    released.append(sum(map(len, decoder.flush())))
    assert released == [0, 0, 960 - 100] + [960] * 9 + [0]
