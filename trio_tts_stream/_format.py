"""Audio format description and the sample-block type shared by every module.

Decoded audio travels through the library as *blocks*: C-contiguous ``float32`` numpy
arrays of shape ``(frames, channels)`` with samples in ``[-1.0, 1.0)``. ``float32`` holds
every 16- and 24-bit integer sample exactly, so ``int16 -> float32 -> int16`` round-trips
bit for bit (see :func:`float_to_int16`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["AudioFormat", "Block", "FormatHint", "float_to_int16", "int16_to_float"]

Block: TypeAlias = npt.NDArray[np.float32]
"""A block of decoded audio: ``float32``, shape ``(frames, channels)``."""


@dataclass(frozen=True)
class AudioFormat:
    """Sample rate and channel count of a decoded stream.

    Attributes:
        sample_rate: Frames per second (e.g. 24000 for OpenAI's ``pcm``).
        channels: Samples per frame (1 = mono).
    """

    sample_rate: int
    channels: int

    def __post_init__(self) -> None:
        if not 1000 <= self.sample_rate <= 768_000:
            raise ValueError(f"sample_rate must be 1000..768000 Hz, got {self.sample_rate}")
        if not 1 <= self.channels <= 32:
            raise ValueError(f"channels must be 1..32, got {self.channels}")

    def frames_to_ms(self, frames: int) -> float:
        """Duration of ``frames`` frames in milliseconds."""
        return frames * 1000.0 / self.sample_rate

    def ms_to_frames(self, ms: float) -> int:
        """Number of whole frames in ``ms`` milliseconds (rounded down)."""
        return math.floor(ms * self.sample_rate / 1000 + 1e-9)


@dataclass(frozen=True)
class FormatHint:
    """What a source was asked to be, for when its response does not say.

    The response's ``Content-Type`` and magic bytes win over it; ``sample_rate`` and
    ``channels`` describe headerless ``pcm``, which says nothing about itself.

    Attributes:
        name: The requested ``response_format`` (``"pcm"``, ``"wav"``, ``"mp3"``, ...);
            ``None``: nothing was asked for, the response's bytes and ``Content-Type``
            decide (pcm is never assumed).
        sample_rate: Frames per second of headerless ``pcm`` (OpenAI: 24000).
        channels: Channels of headerless ``pcm`` (OpenAI: 1).
        sse: The request asked for OpenAI's event stream (``stream_format="sse"``): a
            ``text/event-stream`` response carries the audio base64 in its events.
    """

    name: str | None = "pcm"
    sample_rate: int = 24000
    channels: int = 1
    sse: bool = False


def int16_to_float(samples: npt.NDArray[np.int16]) -> Block:
    """Convert int16 samples to float32 blocks exactly (``x / 32768``)."""
    out: Block = samples.astype(np.float32) * np.float32(1.0 / 32768.0)
    return out


def float_to_int16(block: Block) -> npt.NDArray[np.int16]:
    """Convert float32 samples to int16, rounding and clipping (exact inverse of
    :func:`int16_to_float`)."""
    scaled = np.rint(block * np.float32(32768.0))
    out: npt.NDArray[np.int16] = np.clip(scaled, -32768, 32767).astype(np.int16)
    return out
