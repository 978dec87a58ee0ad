"""Raw PCM decoding, and the sample-conversion core the WAV decoder shares.

OpenAI's ``response_format="pcm"`` is headerless signed 16-bit little-endian samples at
24000 Hz, mono. :class:`PcmDecoder` turns such bytes into float32 blocks, one block per
:meth:`~PcmDecoder.decode` call, carrying a partial sample frame at a chunk edge over to
the next call.

:class:`_FrameConverter` does the work for every integer/float PCM encoding (8-bit
unsigned, 16/24/32-bit signed, 32/64-bit float, all little-endian) and is reused by
:mod:`.wav`. Conversions to float32 are exact for 8, 16 and 24 bits (``x / 2**(bits-1)``
after centring unsigned 8-bit), rounded to nearest for 32-bit integers, and a plain
``float32`` cast for float data (not clipped).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from .._exceptions import ConfigError
from .._format import AudioFormat, Block

__all__ = ["PcmDecoder", "SampleFormat"]

SampleFormat = Literal["u8", "s16", "s16be", "s24", "s32", "f32", "f64"]
"""Encoding of one sample: unsigned 8-bit, signed 16/24/32-bit or float, little-endian
(``s16be``: signed 16-bit big-endian, RFC 2586's ``audio/L16``)."""

#: Bytes per sample of each encoding.
_SAMPLE_BYTES: dict[SampleFormat, int] = {
    "u8": 1,
    "s16": 2,
    "s16be": 2,
    "s24": 3,
    "s32": 4,
    "f32": 4,
    "f64": 8,
}


def _to_float(raw: memoryview | bytes, sample_format: SampleFormat, channels: int) -> Block:
    """Convert whole frames of little-endian samples to a new float32 block.

    ``raw`` must hold a whole number of frames. The result owns its memory (never a view
    of ``raw``), is C-contiguous and has shape ``(frames, channels)``.
    """
    out: npt.NDArray[np.float32]
    if sample_format in ("s16", "s16be"):
        dtype = "<i2" if sample_format == "s16" else ">i2"
        out = np.frombuffer(raw, dtype=dtype).astype(np.float32)
        out *= np.float32(1.0 / 32768.0)
    elif sample_format == "u8":
        out = np.frombuffer(raw, dtype=np.uint8).astype(np.float32)
        out -= np.float32(128.0)
        out *= np.float32(1.0 / 128.0)
    elif sample_format == "s24":
        triples = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        # Place the 3 bytes in the top of a little-endian int32, then shift back with sign.
        wide = np.zeros((triples.shape[0], 4), dtype=np.uint8)
        wide[:, 1:] = triples
        ints = wide.view("<i4").reshape(-1) >> 8
        out = ints.astype(np.float32)
        out *= np.float32(2.0**-23)
    elif sample_format == "s32":
        # int32 -> float32 rounds once to nearest; the power-of-two scale is exact.
        out = np.frombuffer(raw, dtype="<i4").astype(np.float32)
        out *= np.float32(2.0**-31)
    elif sample_format == "f32":
        out = np.frombuffer(raw, dtype="<f4").astype(np.float32)  # copies
    else:  # "f64"
        out = np.frombuffer(raw, dtype="<f8").astype(np.float32)
    return out.reshape(-1, channels)


class _FrameConverter:
    """Bytes -> float32 blocks of whole frames, carrying a partial frame between calls.

    At most ``frame_bytes - 1`` bytes are ever held. Each :meth:`convert` call returns at
    most one block, so a large chunk costs one numpy conversion, not one per frame.
    """

    def __init__(self, sample_format: SampleFormat, channels: int) -> None:
        self.sample_format: SampleFormat = sample_format
        self.channels = channels
        self.frame_bytes = _SAMPLE_BYTES[sample_format] * channels
        self._partial = bytearray()

    def convert(self, data: memoryview | bytes) -> list[Block]:
        """Return the block of whole frames completed by ``data`` (``[]`` if none)."""
        if not data:
            return []
        frame = self.frame_bytes
        if self._partial:
            # One copy of this chunk, so the carried bytes and the chunk are contiguous.
            joined = self._partial + data
            whole = len(joined) - len(joined) % frame
            self._partial = joined[whole:]
            if not whole:
                return []
            return [_to_float(memoryview(joined)[:whole], self.sample_format, self.channels)]
        whole = len(data) - len(data) % frame
        if whole < len(data):
            self._partial = bytearray(data[whole:])
        if not whole:
            return []
        return [_to_float(memoryview(data)[:whole], self.sample_format, self.channels)]

    def drop_partial(self) -> int:
        """Forget the incomplete frame (end of stream); return how many bytes it had."""
        dropped = len(self._partial)
        self._partial = bytearray()
        return dropped


class PcmDecoder:
    """Incremental decoder for headerless signed 16-bit PCM (little-endian by default).

    Args:
        sample_rate: Frames per second of the stream (OpenAI's ``pcm`` is 24000).
        channels: Interleaved channels per frame (OpenAI's ``pcm`` is mono).
        big_endian: The samples are big-endian (``audio/L16``, RFC 2586).

    Raises:
        ConfigError: If ``sample_rate`` or ``channels`` is out of range.

    Attributes:
        trailing_bytes_dropped: Bytes of an incomplete frame discarded by :meth:`flush`
            (0 for a well-formed stream). A dangling partial frame is not an error: the
            stream is still usable, but a non-zero value hints at a truncated body or a
            mismatched format.
    """

    name: str = "pcm"

    def __init__(
        self, sample_rate: int = 24000, channels: int = 1, *, big_endian: bool = False
    ) -> None:
        try:
            self._format = AudioFormat(sample_rate, channels)
        except ValueError as exc:
            raise ConfigError(f"invalid pcm stream format: {exc}") from exc
        self.big_endian = big_endian
        self._converter = _FrameConverter("s16be" if big_endian else "s16", channels)
        self.trailing_bytes_dropped = 0

    @property
    def audio_format(self) -> AudioFormat:
        """The stream's format, known from the constructor arguments."""
        return self._format

    def decode(self, data: bytes) -> list[Block]:
        """Consume ``data``; return at most one block with every frame it completes."""
        return self._converter.convert(data)

    def flush(self) -> list[Block]:
        """End of stream: drop an incomplete final frame (see ``trailing_bytes_dropped``).

        Returns:
            Always ``[]``: every whole frame was already returned by :meth:`decode`.
        """
        self.trailing_bytes_dropped += self._converter.drop_partial()
        return []

    def __repr__(self) -> str:
        fmt = self._format
        order = "be" if self.big_endian else "le"
        return f"<PcmDecoder s16{order} {fmt.sample_rate} Hz x{fmt.channels}>"
