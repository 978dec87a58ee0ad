"""The shared PyAV piece: compressed packets in, float32 blocks out.

Format modules (mp3, aac, flac, opus) do their own framing (splitting the byte stream
into codec packets) and hand each packet to :class:`PacketDecoder`, which owns one
``av.CodecContext``, converts decoded frames to :data:`~trio_tts_stream.Block` arrays,
counts packets that fail to decode (corrupt input is skipped, never fatal) and rejects a
change of sample rate or channel count in mid-stream.

Importing this module imports PyAV; the registry leaves these formats out when that fails.
"""

from __future__ import annotations

from typing import Any

import av
import numpy as np

from .._exceptions import DecodeError, UnsupportedFormatError
from .._format import AudioFormat, Block

__all__ = ["PacketDecoder", "frame_to_block"]

_SCALE = {"s16": 1 / 32768, "s32": 1 / 2147483648, "u8": 1 / 128}


def frame_to_block(frame: Any) -> Block:
    """Convert a PyAV ``AudioFrame`` to a C-contiguous float32 ``(frames, channels)`` block."""
    data = frame.to_ndarray()
    fmt = frame.format
    channels = frame.layout.nb_channels
    # planar: (channels, n) -> (n, channels); packed: (1, n * channels) -> (n, channels)
    data = data.T if fmt.is_planar else data.reshape(-1, channels)
    base = fmt.name.rstrip("p")
    if base == "u8":
        block = (data.astype(np.float32) - 128) * np.float32(_SCALE["u8"])
    elif base in _SCALE:
        block = data.astype(np.float32) * np.float32(_SCALE[base])
    else:  # flt, dbl
        block = data.astype(np.float32)
    out: Block = np.ascontiguousarray(block)
    return out


class PacketDecoder:
    """One codec context: ``decode(packet)`` returns blocks; ``decode(None)`` flushes.

    Args:
        codec: FFmpeg decoder name (``"mp3"``, ``"aac"``, ``"flac"``, ``"opus"``).
        extradata: Codec setup bytes (FLAC STREAMINFO, ``OpusHead``), if the codec needs them.
        sample_rate: Rate to announce to the codec (raw opus needs it).
        channels: Channel count to announce to the codec, when known.

    Attributes:
        errors: Packets that failed to decode and were skipped.
        audio_format: Format of the decoded audio, once a frame has been decoded.
    """

    def __init__(
        self,
        codec: str,
        *,
        extradata: bytes | None = None,
        sample_rate: int | None = None,
        channels: int | None = None,
    ) -> None:
        self.codec = codec
        ctx: Any = av.CodecContext.create(codec, "r")
        self._ctx = ctx
        if extradata is not None:
            ctx.extradata = extradata
        if sample_rate is not None:
            ctx.sample_rate = sample_rate
        if channels is not None:
            ctx.layout = "mono" if channels == 1 else "stereo" if channels == 2 else channels
        self.errors = 0
        self.audio_format: AudioFormat | None = None
        self._flushed = False

    def decode(self, packet: bytes | Any | None) -> list[Block]:
        """Decode one packet (``bytes`` or an ``av.Packet``); ``None`` drains the codec.

        Raises:
            UnsupportedFormatError: The sample rate or channel count changed mid-stream.
        """
        if packet is None:
            if self._flushed:
                return []
            self._flushed = True
        elif isinstance(packet, (bytes, bytearray, memoryview)):
            packet = av.Packet(bytes(packet))
        try:
            frames = self._ctx.decode(packet)
        except av.error.EOFError:
            return []
        except (av.error.FFmpegError, ValueError) as exc:
            if packet is None:
                return []
            self.errors += 1
            if self.errors > 1000 and self.audio_format is None:
                raise DecodeError(f"{self.codec}: nothing decodable in 1000 packets") from exc
            return []
        blocks = []
        for frame in frames:
            fmt = AudioFormat(frame.sample_rate, frame.layout.nb_channels)
            if self.audio_format is None:
                self.audio_format = fmt
            elif fmt != self.audio_format:
                raise UnsupportedFormatError(
                    f"{self.codec} stream changed from {self.audio_format.sample_rate} Hz/"
                    f"{self.audio_format.channels} ch to {fmt.sample_rate} Hz/{fmt.channels} ch "
                    "in mid-stream; ask the server for one constant format"
                )
            block = frame_to_block(frame)
            if len(block):
                blocks.append(block)
        return blocks


def decode_whole(data: bytes) -> tuple[str, AudioFormat, list[Block]]:
    """Decode a complete file of any container/codec FFmpeg knows (the buffered fallback).

    Returns:
        ``(codec name, format, blocks)`` of the first audio stream.

    Raises:
        DecodeError: FFmpeg cannot find audio in ``data``.
    """
    import io

    try:
        with av.open(io.BytesIO(data), "r") as container:
            streams = container.streams.audio
            if not streams:
                raise DecodeError("the response holds no audio stream")
            stream = streams[0]
            blocks: list[Block] = []
            fmt: AudioFormat | None = None
            for frame in container.decode(stream):
                frame_fmt = AudioFormat(frame.sample_rate, frame.layout.nb_channels)
                if fmt is None:
                    fmt = frame_fmt
                elif frame_fmt != fmt:
                    raise UnsupportedFormatError(
                        "the audio changes sample rate or channels in mid-stream"
                    )
                blocks.append(frame_to_block(frame))
            if fmt is None:
                raise DecodeError("the response holds no decodable audio")
            return str(stream.codec_context.name), fmt, blocks
    except av.error.FFmpegError as exc:
        raise DecodeError(
            f"the response is not audio FFmpeg can decode ({exc}); check response_format"
        ) from exc
