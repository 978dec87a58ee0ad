"""Streaming Opus-in-Ogg decoder (RFC 7845), as sent for ``response_format="opus"``.

Theory of operation
-------------------
:class:`~.ogg.OggDemuxer` turns the bytes into packets of the first Opus stream of each
chain link (other multiplexed streams are ignored). Each logical Opus stream starts with
two header packets, ``OpusHead`` (channels, pre-skip, output gain, mapping family) and
``OpusTags`` (metadata, skipped); every later packet is audio, decoded by a PyAV
:class:`~._pyav.PacketDecoder` at 48 kHz, the only rate Ogg Opus timestamps use.

The decoder owns the RFC 7845 sample accounting. FFmpeg gets the ``OpusHead`` with its
pre-skip and output gain zeroed, and this module applies both, so the result does not
depend on what a given FFmpeg build does with them:

* **pre-skip**: the first ``pre_skip`` decoded samples are encoder delay and dropped.
* **output gain**: every sample is scaled by ``10 ** (gain / (20 * 256))``. Samples are not
  clipped (as for the other PyAV formats), so a positive gain can exceed ``[-1, 1)``.
* **granule positions**: a page's granule position is the stream position (counting the
  pre-skip) of the end of the last packet completed on it. Packet durations come from the
  packets' TOC bytes, so the stream position is known whatever the codec's own latency.
  Decoded audio is released when a granule position confirms it: normally each page's
  audio as soon as the page arrives, so the first audio comes out with the first audio
  page. Audio beyond the latest granule position is held back: on the end-of-stream page
  it is the end trimming (the encoder padded the last packet), and at :meth:`flush` a
  stream that ended without one is trimmed to its final granule position too.
* A granule position *larger* than the samples decoded means lost pages (or a stream
  that was cut at its start): decoding just continues, the gap is not filled.
* A first audio page whose granule position is *smaller* than its samples is invalid
  unless it ends the stream (RFC 7845 section 4.5); rather than failing, its leading
  excess samples are dropped, like Vorbis's start trimming.
* Unusable granule positions (``-1`` or ``0`` on a page where packets end, or one smaller
  than the previous page's, as written by muxers that do not track them) are taken as
  confirming everything decoded: such a stream plays in full, untrimmed, still page by
  page.

A new ``OpusHead`` (a chained stream) ends the current logical stream (drained and trimmed)
and starts a fresh codec. Corrupt pages are skipped by the demuxer and counted in
:attr:`OpusDecoder.errors`, with packets the codec rejects.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .._exceptions import DecodeError, UnsupportedFormatError
from .._format import AudioFormat, Block
from ._pyav import PacketDecoder
from .ogg import OggDemuxer, OggPacket

__all__ = ["OpusDecoder", "OpusHead", "opus_packet_frames"]

#: Ogg Opus always counts (and we always decode) at 48 kHz.
OPUS_RATE = 48000

#: Give up on a stream holding no Ogg page in its first this many bytes.
NOT_OGG_AFTER = 64 * 1024

#: First bytes of the header packet of codecs that may be found in Ogg, for error messages.
_OGG_CODECS = (
    (b"OpusHead", "opus"),
    (b"\x01vorbis", "vorbis"),
    (b"\x7fFLAC", "flac"),
    (b"Speex   ", "speex"),
    (b"\x80theora", "theora"),
    (b"fishead\0", "skeleton"),
    (b"CELT    ", "celt"),
    (b"PCM     ", "pcm"),
)

_ADVICE = "ask the server for response_format='opus' (Opus in Ogg)"


def _codec_of(header: bytes) -> str:
    for magic, name in _OGG_CODECS:
        if header.startswith(magic):
            return name
    return "unknown codec"


def _is_opus_head(packet: bytes) -> bool:
    return packet.startswith(b"OpusHead")


def opus_packet_frames(packet: bytes) -> int:
    """Duration of an Opus packet in samples at 48 kHz, from its TOC byte (RFC 6716 3.1).

    Returns:
        ``120`` to ``5760`` samples, or ``0`` for an empty or malformed packet.
    """
    if not packet:
        return 0
    toc = packet[0]
    config = toc >> 3
    if config < 12:  # SILK-only: 10, 20, 40, 60 ms
        size = (480, 960, 1920, 2880)[config & 3]
    elif config < 16:  # hybrid: 10, 20 ms
        size = 480 << (config & 1)
    else:  # CELT-only: 2.5, 5, 10, 20 ms
        size = 120 << (config & 3)
    code = toc & 3
    if code == 0:
        count = 1
    elif code < 3:
        count = 2
    elif len(packet) < 2:
        return 0
    else:
        count = packet[1] & 0x3F
    frames = size * count
    return frames if frames <= 5760 else 0


@dataclass(frozen=True)
class OpusHead:
    """The Ogg Opus identification header (RFC 7845 section 5.1).

    Attributes:
        version: Encapsulation version (``1``; ``0``-``15`` are compatible).
        channels: Output channel count.
        pre_skip: Samples (at 48 kHz) to drop from the start of the decoded output.
        input_sample_rate: Rate of the encoder's input (informational; ``0`` = unknown).
        output_gain: Gain to apply, in dB as Q7.8 fixed point (``256`` = +1 dB).
        mapping_family: Channel mapping family (``0``: mono/stereo, ``1``: up to 8 ch).
        packet: The whole header packet.
    """

    version: int
    channels: int
    pre_skip: int
    input_sample_rate: int
    output_gain: int
    mapping_family: int
    packet: bytes

    @classmethod
    def parse(cls, packet: bytes) -> OpusHead:
        """Parse and check an ``OpusHead`` packet.

        Raises:
            DecodeError: The header is malformed.
            UnsupportedFormatError: Its version or channel mapping is not supported.
        """
        if len(packet) < 19 or not _is_opus_head(packet):
            raise DecodeError(f"malformed OpusHead header packet ({len(packet)} bytes)")
        version, channels, pre_skip, rate, gain, family = struct.unpack_from("<BBHIhB", packet, 8)
        if version >> 4:
            raise UnsupportedFormatError(
                f"Ogg Opus encapsulation version {version} is not supported (only 0-15)"
            )
        if channels == 0:
            raise DecodeError("malformed OpusHead: 0 channels")
        if family == 0:
            if channels > 2:
                raise DecodeError(f"malformed OpusHead: {channels} channels in mapping family 0")
        elif family == 1:
            if channels > 8 or len(packet) < 21 + channels:
                raise DecodeError(f"malformed OpusHead: bad mapping table for {channels} ch")
        else:
            raise UnsupportedFormatError(
                f"Opus channel mapping family {family} is not supported (only 0 and 1)"
            )
        return cls(version, channels, pre_skip, rate, gain, family, bytes(packet))

    @property
    def gain_factor(self) -> float:
        """The linear factor :attr:`output_gain` stands for."""
        return float(10.0 ** (self.output_gain / (20.0 * 256.0)))

    def codec_extradata(self) -> bytes:
        """This header with pre-skip and output gain zeroed: we apply those ourselves."""
        raw = bytearray(self.packet)
        raw[10:12] = b"\0\0"
        raw[16:18] = b"\0\0"
        return bytes(raw)


class _Blocks:
    """A FIFO of blocks with a frame count, cut at any frame."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.frames = 0

    def append(self, block: Block) -> None:
        self.blocks.append(block)
        self.frames += len(block)

    def pop_front(self, frames: int) -> list[Block]:
        """Remove and return the first ``min(frames, self.frames)`` frames."""
        out: list[Block] = []
        while frames > 0 and self.blocks:
            block = self.blocks[0]
            if len(block) <= frames:
                out.append(self.blocks.pop(0))
            else:
                out.append(block[:frames])
                self.blocks[0] = block[frames:]
            frames -= len(out[-1])
            self.frames -= len(out[-1])
        return out

    def clear(self) -> int:
        dropped = self.frames
        self.blocks.clear()
        self.frames = 0
        return dropped


class _OpusStream:
    """One logical Opus stream (one chain link): header state, codec, sample accounting.

    Positions are granule positions: sample counts at 48 kHz from the stream's start,
    pre-skip included. ``duration`` sums the TOC durations of the packets decoded and
    ``produced`` counts the samples the codec returned (it may lag a few samples behind);
    ``shift`` maps both onto the granule timeline when a granule position jumps ahead.
    """

    def __init__(self, head: OpusHead) -> None:
        self.head = head
        self.codec = PacketDecoder(
            "opus", extradata=head.codec_extradata(), sample_rate=OPUS_RATE, channels=head.channels
        )
        self.gain = np.float32(head.gain_factor) if head.output_gain else None
        self.skip = head.pre_skip  # decoded samples still to drop (pre-skip)
        self.duration = 0
        self.produced = 0
        self.shift = 0
        self.granule: int | None = None  # the latest granule position applied
        self.pending = _Blocks()  # decoded, past pre-skip, not yet confirmed
        self.trimmed = 0  # samples dropped by granule positions (start and end)

    def on_packet(self, packet: OggPacket) -> list[Block]:
        data = packet.data
        if data.startswith((b"OpusTags", b"OpusHead")):  # no audio packet starts with "Op"
            return []
        self.duration += opus_packet_frames(data)
        self._take(self.codec.decode(data))
        if packet.ends_page:
            return self._apply_granule(packet.granule, end=packet.eos)
        return []

    def finish(self) -> list[Block]:
        """End of this logical stream: drain the codec, trim to the final granule."""
        return self._apply_granule(self.granule, end=True)

    def _take(self, blocks: list[Block]) -> None:
        for block in blocks:
            n = len(block)
            self.produced += n
            if self.skip:
                drop = min(self.skip, n)
                self.skip -= drop
                block = block[drop:]
            if len(block):
                self.pending.append(block)

    def _apply_granule(self, granule: int | None, *, end: bool) -> list[Block]:
        if end:
            self._take(self.codec.decode(None))
        position = self.duration + self.shift
        if (
            granule is None  # finishing a stream that never had a granule position
            or granule < 0  # none on a page where packets end
            or (granule == 0 and self.granule is None)  # "unknown", from some muxers
            or (self.granule is not None and granule < self.granule)  # going backwards
        ):
            granule = position  # unusable: take it as confirming all that was decoded
        if self.granule is None and granule < position and not end:
            # First audio page with too small a granule position: drop leading samples.
            extra = position - granule
            self.shift -= extra
            dropped = sum(len(b) for b in self.pending.pop_front(extra))
            self.skip += extra - dropped
            self.trimmed += extra
            position = granule
        if granule > position:  # lost pages, or a stream cut at its start
            self.shift += granule - position
        self.granule = granule
        hold = max(0, self.produced + self.shift - granule)
        released = self._release(self.pending.frames - hold)
        if end:
            self.trimmed += self.pending.clear()
        return released

    def _release(self, frames: int) -> list[Block]:
        blocks = self.pending.pop_front(frames)
        if self.gain is not None:
            blocks = [block * self.gain for block in blocks]
        return blocks


class OpusDecoder:
    """Incremental decoder for Opus in Ogg (``response_format="opus"``).

    Output is always 48 kHz, ``OpusHead``'s channel count (``audio_format`` is known
    once that header arrived). Each page's audio is returned as soon as the page is
    complete (see the module docstring for the granule-position rules).

    Attributes:
        head: The current stream's :class:`OpusHead`, once seen.
        streams: Logical Opus streams started (more than 1 for chained streams).
        trimmed_frames: Decoded samples dropped by granule positions (end trimming,
            start trimming), pre-skip not included.
        truncated: Set by :meth:`flush` when the last stream had no end-of-stream page.
    """

    name: str = "opus"

    def __init__(self) -> None:
        self._demux = OggDemuxer(select=_is_opus_head)
        self._stream: _OpusStream | None = None
        self._format: AudioFormat | None = None
        self._first_bytes = b""
        self._link = 0  # the demuxer chain link the packets handled last belong to
        self._link_has_opus = False
        self._link_codecs: list[str] = []  # non-Opus codecs seen in the current link
        self._codec_errors = 0  # packet errors of finished streams
        self._trimmed = 0
        self._flushed = False
        self.head: OpusHead | None = None
        self.streams = 0
        self.truncated: str | None = None

    @property
    def audio_format(self) -> AudioFormat | None:
        """48 kHz and the stream's channel count once ``OpusHead`` was read, else ``None``."""
        return self._format

    @property
    def errors(self) -> int:
        """Corrupt pages and garbage skipped, packets lost or undecodable."""
        current = self._stream.codec.errors if self._stream is not None else 0
        return self._demux.errors + self._codec_errors + current

    @property
    def trimmed_frames(self) -> int:
        """Samples dropped by granule positions so far (end and start trimming)."""
        current = self._stream.trimmed if self._stream is not None else 0
        return self._trimmed + current

    def decode(self, data: bytes) -> list[Block]:
        """Consume the next bytes of the stream; return the completed blocks.

        Raises:
            DecodeError: No Ogg page in the first 64 KiB, or a malformed ``OpusHead``.
            UnsupportedFormatError: The Ogg stream holds another codec (e.g. Vorbis).
        """
        if self._flushed:
            raise RuntimeError("OpusDecoder.decode() called after flush()")
        if len(self._first_bytes) < 16:
            self._first_bytes += bytes(data[: 16 - len(self._first_bytes)])
        blocks = self._on_packets(self._demux.feed(data))
        self._check_is_ogg(final=False)
        self._check_link_has_opus(final=False)
        return blocks

    def flush(self) -> list[Block]:
        """End of stream: decode what is left, drain the codec, trim to the final granule.

        Raises:
            DecodeError: The stream was empty, not Ogg, or had no Opus header.
            UnsupportedFormatError: The Ogg stream holds another codec (e.g. Vorbis).
        """
        if self._flushed:
            return []
        self._flushed = True
        blocks = self._on_packets(self._demux.flush())
        self._check_is_ogg(final=True)
        self._check_link_has_opus(final=True)
        if self._stream is not None:
            self.truncated = (
                "the Ogg stream ended without its end-of-stream page: it was cut short "
                f"after {self._demux.bytes_received} bytes"
            )
        blocks += self._end_stream()
        if self.streams == 0:
            raise DecodeError(
                f"Ogg stream of {self._demux.bytes_received} bytes without a readable Opus "
                "header (OpusHead): truncated, or its first page was corrupted"
            )
        return blocks

    # -- internals -------------------------------------------------------------------

    def _on_packets(self, packets: list[OggPacket]) -> list[Block]:
        blocks: list[Block] = []
        for packet in packets:
            if packet.link != self._link:
                self._check_link_has_opus(final=True)
                blocks += self._end_stream()
                self._link = packet.link
                self._link_has_opus = False
                self._link_codecs = []
            if packet.bos:
                if _is_opus_head(packet.data) and not self._link_has_opus:
                    blocks += self._end_stream()
                    self._start_stream(OpusHead.parse(packet.data))
                    self._link_has_opus = True
                elif not _is_opus_head(packet.data):
                    self._link_codecs.append(_codec_of(packet.data))
                continue
            if self._stream is None:
                continue  # stream ended (EOS) or never started: nothing to decode
            blocks += self._stream.on_packet(packet)
            if packet.eos:
                blocks += self._end_stream()
        return blocks

    def _start_stream(self, head: OpusHead) -> None:
        fmt = AudioFormat(OPUS_RATE, head.channels)
        if self._format is None:
            self._format = fmt
        elif fmt != self._format:
            raise UnsupportedFormatError(
                f"chained Ogg Opus stream changed from {self._format.channels} to "
                f"{fmt.channels} channels; ask the server for one constant format"
            )
        self.head = head
        self.streams += 1
        self._stream = _OpusStream(head)

    def _end_stream(self) -> list[Block]:
        stream = self._stream
        if stream is None:
            return []
        self._stream = None
        blocks = stream.finish()
        self._codec_errors += stream.codec.errors
        self._trimmed += stream.trimmed
        return blocks

    def _check_is_ogg(self, *, final: bool) -> None:
        demux = self._demux
        offset = demux.first_page_offset
        if offset is None and (final or demux.skipped_bytes > NOT_OGG_AFTER):
            if demux.bytes_received == 0:
                raise DecodeError("empty response: no Ogg Opus data at all")
            where = f"in {demux.bytes_received} bytes" if final else "in the first 64 KiB"
        elif offset is not None and offset > NOT_OGG_AFTER:
            where = "in the first 64 KiB"
        else:
            return
        raise DecodeError(
            f"not an Ogg stream: no valid Ogg page {where} (it starts with "
            f"{self._first_bytes!r}); the server may have sent another format or an error "
            f"page: {_ADVICE}, or pick the decoder for what it sends"
        )

    def _check_link_has_opus(self, *, final: bool) -> None:
        """Fail once the current link's header pages are over and none was Opus."""
        if self._link_has_opus or not self._link_codecs:
            return
        if final or (self._demux.link == self._link and not self._demux.in_headers):
            names = "+".join(c for c in self._link_codecs if c != "skeleton") or "skeleton"
            raise UnsupportedFormatError(
                f"ogg/{names} is not supported; ask for opus (response_format='opus')"
            )

    def __repr__(self) -> str:
        fmt = self._format
        if fmt is None:
            return "<OpusDecoder (no header yet)>"
        return f"<OpusDecoder {fmt.sample_rate} Hz x{fmt.channels} streams={self.streams}>"
