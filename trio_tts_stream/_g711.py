"""G.711 companding (ITU-T G.711): 16-bit linear PCM to mu-law and A-law bytes, what
telephone media streams carry (8 kHz, one byte per sample).

Theory of operation: both laws map a 16-bit sample to one byte by a sign bit, a 3-bit
segment (the position of the leading one, i.e. a piecewise-linear logarithm) and a 4-bit
step inside the segment. Rather than compute that per sample, :func:`encoder` builds, once
per law, a 65536-entry table indexed by the sample's bit pattern, so encoding a frame is
one ``numpy.take``. The formulas follow the reference C implementation that ships with
the ITU's software tools (ITU-T G.191, ``g711.c``): mu-law on 14-bit and A-law on
13-bit samples, truncating. The tests check every one of the 65536 inputs against
Python's ``audioop`` (the same reference) where it exists, and decode the codes with
PyAV's (FFmpeg's) ``pcm_mulaw`` / ``pcm_alaw`` decoders: each comes back inside its
G.711 interval. (``audioop`` was removed in Python 3.13; FFmpeg's *encoder* picks the
nearest decoded value instead of the G.711 interval, which differs at segment edges, and
an encoder call per frame costs more than a table lookup.)
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["LAWS", "encode", "encoder"]

#: The G.711 laws by their names in this library.
LAWS = ("mulaw", "alaw")

_MULAW_BIAS = 0x84 >> 2  # on 14-bit samples, as the reference does
_MULAW_CLIP = 8159


def _segment(magnitude: npt.NDArray[np.int32], first_end: int) -> npt.NDArray[np.int32]:
    """The segment (0-7, or 8 past the last) of each magnitude: segment ``s`` ends at
    ``(first_end + 1) << s`` (exclusive)."""
    ends = (first_end + 1) << np.arange(8, dtype=np.int32)
    return np.searchsorted(ends, magnitude, side="right").astype(np.int32)


def _mulaw_table() -> npt.NDArray[np.uint8]:
    x = np.arange(-32768, 32768, dtype=np.int32) >> 2  # 14-bit linear
    mask = np.where(x < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.where(x < 0, -x, x), _MULAW_CLIP) + _MULAW_BIAS
    seg = _segment(magnitude, 0x3F)
    step = (magnitude >> (np.minimum(seg, 7) + 1)) & 0x0F
    code = np.where(seg >= 8, 0x7F, (np.minimum(seg, 7) << 4) | step) ^ mask
    return _by_bit_pattern(code)


def _alaw_table() -> npt.NDArray[np.uint8]:
    x = np.arange(-32768, 32768, dtype=np.int32) >> 3  # 13-bit linear
    mask = np.where(x >= 0, 0xD5, 0x55)
    magnitude = np.where(x >= 0, x, -x - 1)
    seg = _segment(magnitude, 0x1F)
    step = np.where(seg < 2, magnitude >> 1, magnitude >> np.maximum(seg, 1)) & 0x0F
    code = np.where(seg >= 8, 0x7F, (np.minimum(seg, 7) << 4) | step) ^ mask
    return _by_bit_pattern(code)


def _by_bit_pattern(code: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """Reorder a table indexed by ``sample + 32768`` to one indexed by the sample's
    unsigned 16-bit pattern (``int16.view(uint16)``), which needs no addition."""
    return np.roll(code.astype(np.uint8), -32768)


@cache
def encoder(law: str) -> npt.NDArray[np.uint8]:
    """The 65536-entry table of ``law`` (``"mulaw"`` or ``"alaw"``), indexed by an int16
    sample viewed as uint16.

    Raises:
        ValueError: ``law`` is not one of :data:`LAWS`.
    """
    if law == "mulaw":
        table = _mulaw_table()
    elif law == "alaw":
        table = _alaw_table()
    else:
        raise ValueError(f"unknown G.711 law {law!r}: expected one of {LAWS}")
    table.flags.writeable = False
    return table


def encode(samples: npt.NDArray[np.int16], law: str) -> bytes:
    """Encode int16 ``samples`` (any shape, interleaved order) to G.711 ``law`` bytes."""
    flat = np.ascontiguousarray(samples, dtype=np.int16).reshape(-1)
    return encoder(law).take(flat.view(np.uint16)).tobytes()
