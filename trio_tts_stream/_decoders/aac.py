"""Streaming AAC decoder for ADTS streams (``response_format="aac"``).

Theory of operation
-------------------
An ADTS stream is a sequence of self-delimiting frames, each a 7-byte header (9 with a
CRC) followed by raw AAC data:

========================  ====  =========================================================
field                     bits
========================  ====  =========================================================
syncword                    12  ``0xFFF``
ID, layer                  1+2  MPEG-4/MPEG-2; layer is always ``00``
protection_absent            1  ``0``: a 16-bit CRC follows the header
profile                      2  audio object type - 1 (1 = AAC LC)
sampling_frequency_index     4  0-12 (96000 ... 7350 Hz); 13-15 are not allowed
private_bit                  1
channel_configuration        3  0 = defined by a PCE in the payload
(4 flag bits)                4
aac_frame_length            13  whole frame, header included
adts_buffer_fullness        11
number_of_raw_data_blocks    2  raw data blocks in the frame, minus one
========================  ====  =========================================================

Framing is done by :class:`~.mp3.SyncFramer` (the same sync search, lock, look-ahead
confirmation, resync after garbage and ID3/APE tag skipping as MP3; the stream key is
ID, profile, sampling-frequency index and channel configuration). Each whole frame,
header included, goes to FFmpeg's ``aac`` decoder, which reads the ADTS header itself.

**Encoder priming.** ADTS has no field for the encoder delay, but AAC encoders start with
one frame of *priming*: FFmpeg's native encoder, libfdk-aac and Apple's all put 1024
samples before the first input sample (measured for FFmpeg: its ADTS output decodes to
exactly ``1024 + input`` samples at the head, sample-aligned). :class:`AacDecoder` drops
``priming`` samples (default 1024) at the head of the stream. HE-AAC (SBR) streams decode
at twice the header's rate with a different delay; pass the right ``priming`` for them.
The tail keeps the encoder's padding (up to one frame of near-silence, 1024 samples):
ADTS gives no way to know how much of the last frame is real.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from .._exceptions import ConfigError, DecodeError
from .._format import AudioFormat, Block
from ._framing import SyncFramer, cut_frame_message, not_audio_message
from ._pyav import PacketDecoder

__all__ = ["AacDecoder", "parse_adts_header"]

#: Encoder priming of FFmpeg's, Apple's and Fraunhofer's AAC-LC encoders, in samples.
DEFAULT_PRIMING = 1024


def parse_adts_header(buf: bytearray | bytes, pos: int) -> tuple[int, Hashable] | None:
    """Parse an ADTS header at ``buf[pos:pos+7]``.

    Returns:
        ``(frame_length, key)`` with ``key`` = (ID, profile, sampling index, channel
        configuration), or ``None`` if the bytes are not a valid ADTS header (bad sync or
        layer, reserved sampling index, frame shorter than its header).
    """
    b1 = buf[pos + 1]
    b2 = buf[pos + 2]
    b3 = buf[pos + 3]
    if buf[pos] != 0xFF or b1 & 0xF6 != 0xF0:  # 12-bit sync, layer 00
        return None
    rate_index = (b2 >> 2) & 15
    if rate_index > 12:
        return None
    length = (b3 & 3) << 11 | buf[pos + 4] << 3 | buf[pos + 5] >> 5
    if length < (7 if b1 & 1 else 9):
        return None
    channels = (b2 & 1) << 2 | b3 >> 6
    return length, (b1 & 0x08, b2 >> 6, rate_index, channels)


class AacDecoder:
    """Incremental decoder for AAC in ADTS frames, with resync on garbage.

    Args:
        priming: Samples of encoder priming to drop at the head of the stream (see the
            module docstring); 0 keeps everything.

    Raises:
        ConfigError: ``priming`` is negative.
    """

    name: str = "aac"

    def __init__(self, *, priming: int = DEFAULT_PRIMING) -> None:
        if priming < 0:
            raise ConfigError(f"priming must be >= 0 samples, not {priming}")
        self.priming = priming
        self._framer = SyncFramer(parse_adts_header, 7, "aac")
        self._codec = PacketDecoder("aac")
        self._head_skip = priming
        self._flushed = False

    @property
    def audio_format(self) -> AudioFormat | None:
        """Sample rate and channels once the first frame was decoded, else ``None``."""
        return self._codec.audio_format

    @property
    def errors(self) -> int:
        """Frames the codec rejected plus runs of garbage bytes skipped between frames."""
        return self._framer.garbage_runs + self._codec.errors

    @property
    def trailing_bytes_dropped(self) -> int:
        """Bytes after the last frame that formed no frame (e.g. a truncated final frame)."""
        return self._framer.trailing_bytes_dropped

    @property
    def truncated(self) -> str | None:
        """Why the stream is known to have ended early (after :meth:`flush`), else ``None``."""
        return cut_frame_message("aac", self._framer.cut_frame)

    def decode(self, data: bytes) -> list[Block]:
        """Consume the next bytes of the stream; return the completed blocks.

        Raises:
            DecodeError: Nothing that looks like ADTS in the first 64 KiB.
            UnsupportedFormatError: The sample rate or channel count changed mid-stream.
        """
        return self._decode_frames(self._framer.feed(data), final=False)

    def flush(self) -> list[Block]:
        """End of stream: decode the last frames.

        Raises:
            DecodeError: No AAC frame could be decoded from the whole response.
        """
        if self._flushed:
            return []
        self._flushed = True
        out = self._decode_frames(self._framer.finish(), final=True)
        if self._codec.audio_format is None:
            framer = self._framer
            message = not_audio_message("aac", framer.head, framer.received)
            if framer.frames:
                message += f" ({framer.frames} ADTS frames found, none decodable)"
            raise DecodeError(message)
        return out

    def _decode_frames(self, frames: list[bytes], *, final: bool) -> list[Block]:
        blocks: list[Block] = []
        for frame in frames:
            blocks += self._codec.decode(frame)
        if final:
            blocks += self._codec.decode(None)
        if self._head_skip:
            kept: list[Block] = []
            for block in blocks:
                cut = min(self._head_skip, len(block))
                self._head_skip -= cut
                if cut < len(block):
                    kept.append(block[cut:])
            blocks = kept
        if len(blocks) > 1:
            return [np.concatenate(blocks)]
        return blocks

    def __repr__(self) -> str:
        fmt = self.audio_format
        where = "format unknown" if fmt is None else f"{fmt.sample_rate} Hz x{fmt.channels}"
        return f"<AacDecoder {where} frames={self._framer.frames} errors={self.errors}>"
