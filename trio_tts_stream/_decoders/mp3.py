"""Streaming MP3 (MPEG-1/2/2.5 Layer III) decoder with gapless trimming.

Theory of operation
-------------------
Framing is ours, decoding is FFmpeg's: :class:`~._framing.SyncFramer` splits the byte stream into
whole frames, :class:`~._pyav.PacketDecoder` decodes each one with FFmpeg's ``mp3float``
decoder (the one FFmpeg picks by default; the decoder *named* ``mp3`` is its fixed-point
twin, which rounds every sample to 16 bits). The framer is shared with :mod:`.aac` (ADTS
has the same shape: a sync word, then a header that gives the frame length).

**Framing.** At each position the framer expects one of:

* a frame header. While *locked* (the previous frame was good), a header with the same
  stream parameters (MPEG version, sample rate, mono/stereo) is trusted and the frame is
  emitted as soon as its last byte arrives. Otherwise (start of stream, after garbage, or
  after a parameter change) a candidate is only accepted when the bytes right after it
  start another header with the same parameters (or a tag), which rules out false syncs
  in garbage at the cost of one frame of look-ahead;
* a tag, skipped as it streams past without being buffered: ID3v2 (``ID3``, syncsafe
  size, +10 bytes with a footer; also in mid-stream, between concatenated files), ID3v1
  (``TAG``, 128 bytes, taken as a tag only if the stream ends or a frame or tag follows
  it) or APEv2 (``APETAGEX``, header or footer). Bytes before an APE footer that fit
  inside the tag's declared size are its items, not garbage;
* anything else is garbage: the framer drops the lock and scans (with one ``re`` search)
  to the next byte that could start a header or a tag. Each run of garbage counts as one
  error (``errors`` = garbage runs + frames the codec rejected). A run of garbage still
  open at end of stream is a truncated final frame or junk and is reported in
  ``trailing_bytes_dropped`` instead. More than 64 KiB of garbage before the first frame
  raises :class:`~trio_tts_stream.DecodeError` at once (an error page, another format).

Every decision depends only on a bounded window of bytes after the current position, and
waits until those bytes have arrived (or end of stream), so any chunking of the input
yields the same frames. Only Layer III is accepted (the ``mp3`` decoder cannot decode
Layers I/II, and TTS servers do not send them); free-format streams are rejected.

**Gapless playback.** An encoder (LAME, and FFmpeg's mp3 muxer) usually writes a first
frame with no audio that carries a ``Xing`` (VBR) or ``Info`` (CBR) tag, often followed by
a LAME tag holding the *encoder delay* and *padding* (12 bits each, 21 bytes into the LAME
tag). That frame is never decoded. With a LAME tag (encoder string ``LAME``, ``Lavf`` or
``Lavc``, as FFmpeg checks), :class:`Mp3Decoder` drops ``delay + 529`` samples at the head
(529 is the decoder's own delay) and ``padding - 529`` at the tail, which is FFmpeg's rule
and gives back exactly the encoder's input. The tail is only known to be the tail at end of
stream, so those (at most ~3500) samples are held back until :meth:`Mp3Decoder.flush`;
they are kept if the stream was truncated (fewer frames than the Xing tag announced).
A stream that an encoder writes to a pipe (as TTS servers stream) has no Xing frame at
all: it would decode with LAME's ``576 + 529`` samples of delay at the head (46 ms at
24 kHz). With ``assume_lame_delay`` (the default) those are trimmed anyway, since LAME is
what nearly every server encodes with; the tail keeps the encoder's padding (less than one
frame), which no header describes.

A ``Xing``/``Info``/``VBRI`` frame in mid-stream starts a new stream (concatenated
files): the previous one is finished (its padding dropped) and a fresh codec context
decodes the next, trimmed by its own LAME tag, so the output is exactly the concatenation
of the streams decoded one by one.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

from .._exceptions import DecodeError, UnsupportedFormatError
from .._format import AudioFormat, Block
from ._framing import SyncFramer, cut_frame_message, not_audio_message
from ._pyav import PacketDecoder

__all__ = [
    "DECODER_DELAY",
    "LAME_DEFAULT_DELAY",
    "Mp3Decoder",
    "VbrHeader",
    "parse_mp3_header",
    "parse_vbr_header",
]

#: LAME's encoder delay when nothing says otherwise (no Xing/LAME header).
LAME_DEFAULT_DELAY = 576

#: Decoder delay of the MPEG audio synthesis filterbank, in samples (LAME's convention).
DECODER_DELAY = 529


# -- MPEG audio frames ------------------------------------------------------------------

_BITRATES_V1 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_BITRATES_V2 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
#: Sample rates by version bits (0: MPEG-2.5, 2: MPEG-2, 3: MPEG-1) and rate index.
_RATES = {0: (11025, 12000, 8000), 2: (22050, 24000, 16000), 3: (44100, 48000, 32000)}


def parse_mp3_header(buf: bytearray | bytes, pos: int) -> tuple[int, Hashable] | None:
    """Parse a Layer III frame header at ``buf[pos:pos+4]``.

    Returns:
        ``(frame_length, key)``, where ``key`` = (version bits, rate index, mono), or
        ``None`` if these 4 bytes are not a valid Layer III header (bad sync, reserved
        version, Layer I/II, free-format or bad bitrate, reserved rate or emphasis).
    """
    b1 = buf[pos + 1]
    b2 = buf[pos + 2]
    b3 = buf[pos + 3]
    if buf[pos] != 0xFF or b1 & 0xE6 != 0xE2:  # sync and Layer III
        return None
    version = (b1 >> 3) & 3
    bitrate_index = b2 >> 4
    rate_index = (b2 >> 2) & 3
    if version == 1 or bitrate_index in (0, 15) or rate_index == 3 or b3 & 3 == 2:
        return None
    rate = _RATES[version][rate_index]
    padding = (b2 >> 1) & 1
    if version == 3:
        length = 144000 * _BITRATES_V1[bitrate_index] // rate + padding
    else:
        length = 72000 * _BITRATES_V2[bitrate_index] // rate + padding
    return length, (version, rate_index, b3 >> 6 == 3)


@dataclass(frozen=True)
class VbrHeader:
    """What the first, audio-less frame of an MP3 stream tells (``Xing``/``Info``/``VBRI``).

    Attributes:
        tag: ``"Xing"``, ``"Info"`` or ``"VBRI"``.
        frames: Audio frames in the stream (not counting this one), or ``None``.
        encoder: The LAME tag's 9-byte encoder string (``"LAME3.100"``, ``"Lavc59.37"``),
            or ``""``.
        delay: Encoder delay in samples from the LAME tag, or ``None`` without one.
        padding: Samples of padding the encoder added at the end, or ``None``.
    """

    tag: str
    frames: int | None = None
    encoder: str = ""
    delay: int | None = None
    padding: int | None = None


def parse_vbr_header(frame: bytes) -> VbrHeader | None:
    """Find a ``Xing``/``Info`` tag (with its LAME tag) or a ``VBRI`` tag in ``frame``.

    The ``Xing`` tag sits right after the side information (17 or 32 bytes for MPEG-1,
    9 or 17 for MPEG-2/2.5, mono or not), the ``VBRI`` tag 32 bytes after the header.
    Encoder delay and padding are read only from a LAME tag whose encoder string starts
    with ``LAME``, ``Lavf`` or ``Lavc``, like FFmpeg does.
    """
    version = (frame[1] >> 3) & 3
    mono = frame[3] >> 6 == 3
    side = (17 if mono else 32) if version == 3 else (9 if mono else 17)
    starts = (4 + side,) if frame[1] & 1 else (4 + side, 6 + side)  # +2 after a CRC
    for start in starts:
        tag = frame[start : start + 4]
        if tag not in (b"Xing", b"Info"):
            continue
        flags = int.from_bytes(frame[start + 4 : start + 8], "big")
        pos = start + 8
        frames = None
        if flags & 1:
            frames = int.from_bytes(frame[pos : pos + 4], "big")
            pos += 4
        pos += (4 if flags & 2 else 0) + (100 if flags & 4 else 0) + (4 if flags & 8 else 0)
        if len(frame) < pos + 24:
            return VbrHeader(tag.decode(), frames)
        encoder = frame[pos : pos + 9].decode("latin-1").rstrip("\x00 ")
        if encoder[:4] not in ("LAME", "Lavf", "Lavc"):
            return VbrHeader(tag.decode(), frames, encoder)
        delays = int.from_bytes(frame[pos + 21 : pos + 24], "big")
        return VbrHeader(tag.decode(), frames, encoder, delays >> 12, delays & 0xFFF)
    if frame[36:40] == b"VBRI":
        return VbrHeader("VBRI", int.from_bytes(frame[50:54], "big") or None)
    return None


def _header_format(frame: bytes) -> AudioFormat:
    """Sample rate and channels announced by a frame header."""
    version = (frame[1] >> 3) & 3
    rate = _RATES[version][(frame[2] >> 2) & 3]
    return AudioFormat(rate, 1 if frame[3] >> 6 == 3 else 2)


class Mp3Decoder:
    """Incremental MP3 decoder: ID3/APE tags skipped, gapless trimming, resync on garbage.

    Attributes:
        vbr_header: The ``Xing``/``Info``/``VBRI`` frame of the current stream, if any.
        streams: Streams seen: 1, plus one per ``Xing``/``Info``/``VBRI`` frame that
            started a new stream in mid-stream (concatenated files).
    """

    name: str = "mp3"

    def __init__(self, *, assume_lame_delay: bool = True) -> None:
        #: Without a Xing/LAME header (every mp3 that an encoder streams to a pipe, as TTS
        #: servers do), trim LAME's default encoder delay (576) plus the decoder delay
        #: (529) at the head anyway, so the audio starts where the speech starts. LAME
        #: (libmp3lame, used by FFmpeg) is what nearly every TTS server encodes with.
        self.assume_lame_delay = assume_lame_delay
        self._framer = SyncFramer(parse_mp3_header, 4, "mp3")
        self._codec: PacketDecoder | None = None
        self._format: AudioFormat | None = None
        self._past_errors = 0  # errors of codec contexts of earlier streams
        self._decoded_any = False
        self.vbr_header: VbrHeader | None = None
        self._vbr_frame = b""
        self.streams = 1
        # Per-stream trimming state.
        self._head_skip = 0  # samples still to drop at the head
        self._tail_hold = 0  # samples to hold back as possible padding
        self._held: list[Block] = []
        self._held_frames = 0
        self._stream_frames = 0  # audio frames given to the codec in this stream
        self._out: list[Block] = []
        self._flushed = False
        self._truncated: str | None = None

    @property
    def audio_format(self) -> AudioFormat | None:
        """Sample rate and channels once the first frame was decoded, else ``None``."""
        return self._format

    @property
    def errors(self) -> int:
        """Frames the codec rejected plus runs of garbage bytes skipped between frames."""
        codec = self._codec.errors if self._codec is not None else 0
        return self._framer.garbage_runs + self._past_errors + codec

    @property
    def trailing_bytes_dropped(self) -> int:
        """Bytes after the last frame that formed no frame (e.g. a truncated final frame)."""
        return self._framer.trailing_bytes_dropped

    @property
    def truncated(self) -> str | None:
        """Why the stream is known to have ended early (after :meth:`flush`), else ``None``."""
        return self._truncated or cut_frame_message("mp3", self._framer.cut_frame)

    def decode(self, data: bytes) -> list[Block]:
        """Consume the next bytes of the stream; return the completed blocks.

        Raises:
            DecodeError: Nothing that looks like MP3 in the first 64 KiB.
            UnsupportedFormatError: The sample rate or channel count changed mid-stream.
        """
        for frame in self._framer.feed(data):
            self._on_frame(frame)
        return self._take_output()

    def flush(self) -> list[Block]:
        """End of stream: decode the last frames, drop the encoder's padding.

        Raises:
            DecodeError: No MP3 frame could be decoded from the whole response.
        """
        if self._flushed:
            return []
        self._flushed = True
        for frame in self._framer.finish():
            self._on_frame(frame)
        self._end_stream()
        if self._format is None:
            if self.vbr_header is None or self._decoded_any:
                framer = self._framer
                message = not_audio_message("mp3", framer.head, framer.received)
                if framer.frames:
                    message += f" ({framer.frames} frames found, none decodable)"
                raise DecodeError(message)
            # A valid stream with no audio frames at all: its format is in the header.
            self._format = _header_format(self._vbr_frame)
        return self._take_output()

    def _on_frame(self, frame: bytes) -> None:
        vbr = parse_vbr_header(frame)
        if vbr is not None:
            if self._codec is not None or self.vbr_header is not None:
                self._end_stream()
                self.streams += 1
            self.vbr_header = vbr
            self._vbr_frame = frame
            if vbr.delay is not None and vbr.padding is not None:
                self._head_skip = vbr.delay + DECODER_DELAY
                self._tail_hold = max(0, vbr.padding - DECODER_DELAY)
            return
        if self._codec is None:
            self._codec = PacketDecoder("mp3float")
            if self.vbr_header is None and self.assume_lame_delay:
                self._head_skip = LAME_DEFAULT_DELAY + DECODER_DELAY
        self._decoded_any = True
        self._stream_frames += 1
        self._release(self._codec.decode(frame))

    def _release(self, blocks: list[Block]) -> None:
        if not blocks:
            return
        self._check_format()
        for block in blocks:
            if self._head_skip:
                cut = min(self._head_skip, len(block))
                self._head_skip -= cut
                block = block[cut:]
                if not len(block):
                    continue
            if not self._tail_hold:
                self._out.append(block)
                continue
            self._held.append(block)
            self._held_frames += len(block)
            while self._held_frames - len(self._held[0]) >= self._tail_hold:
                first = self._held.pop(0)
                self._held_frames -= len(first)
                self._out.append(first)
            excess = self._held_frames - self._tail_hold
            if excess > 0:
                first = self._held[0]
                self._out.append(first[:excess])
                self._held[0] = first[excess:]
                self._held_frames -= excess

    def _check_format(self) -> None:
        assert self._codec is not None
        fmt = self._codec.audio_format
        if self._format is None:
            self._format = fmt
        elif fmt is not None and fmt != self._format:
            raise UnsupportedFormatError(
                f"mp3 stream changed from {self._format.sample_rate} Hz/"
                f"{self._format.channels} ch to {fmt.sample_rate} Hz/{fmt.channels} ch "
                "in mid-stream; ask the server for one constant format"
            )

    def _end_stream(self) -> None:
        """Finish the current stream: drain the codec, drop the padding unless truncated."""
        if self._codec is not None:
            self._release(self._codec.decode(None))
            self._past_errors += self._codec.errors
            self._codec = None
        announced = self.vbr_header.frames if self.vbr_header is not None else None
        truncated = announced is not None and self._stream_frames < announced
        if truncated:
            self._out += self._held
            self._truncated = (
                f"the mp3 stream ended after {self._stream_frames} of the {announced} "
                "frames its Xing/Info header announced"
            )
        self._held = []
        self._held_frames = 0
        self._head_skip = self._tail_hold = self._stream_frames = 0

    def _take_output(self) -> list[Block]:
        out, self._out = self._out, []
        if len(out) > 1:
            return [np.concatenate(out)]
        return out

    def __repr__(self) -> str:
        fmt = self._format
        where = "format unknown" if fmt is None else f"{fmt.sample_rate} Hz x{fmt.channels}"
        return f"<Mp3Decoder {where} frames={self._framer.frames} errors={self.errors}>"
