"""Stateful resampling between the decoded stream and the output device.

One :class:`Resampler` per stream, fed block by block: ``soxr.ResampleStream`` keeps the
filter state across blocks, so the output equals a one-shot resample of the whole stream
(float32 is exact; the total length is exact once :meth:`Resampler.flush` is called).
soxr is imported only when a resampler is needed (the ``formats`` extra).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._exceptions import ConfigError
from ._format import Block

__all__ = ["Resampler"]


class Resampler:
    """Resample float32 blocks from ``in_rate`` to ``out_rate``.

    Args:
        in_rate: Rate of the decoded stream.
        out_rate: Rate of the output.
        channels: Channels per frame.
        quality: soxr quality recipe (``"HQ"`` default; ``"VHQ"``, ``"MQ"``, ``"LQ"``).

    Raises:
        ConfigError: soxr is not installed (a missing extra, not a device fault).
    """

    def __init__(self, in_rate: int, out_rate: int, channels: int, quality: str = "HQ") -> None:
        try:
            import soxr
        except ImportError as exc:
            raise ConfigError(
                f"the output runs at {out_rate} Hz but the audio is {in_rate} Hz, and resampling "
                "needs soxr: pip install 'trio-tts-stream[formats]'"
            ) from exc
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.channels = channels
        self._stream: Any = soxr.ResampleStream(
            in_rate, out_rate, channels, dtype="float32", quality=quality
        )
        self._flushed = False

    def process(self, block: Block) -> Block:
        """Resample the next block (may return fewer or zero frames: the filter's delay)."""
        data = block[:, 0] if self.channels == 1 else block
        out = self._stream.resample_chunk(np.ascontiguousarray(data), last=False)
        return self._shape(out)

    def flush(self) -> Block:
        """End of stream: the remaining frames."""
        if self._flushed:
            return np.zeros((0, self.channels), dtype=np.float32)
        self._flushed = True
        empty = np.zeros((0,) if self.channels == 1 else (0, self.channels), dtype=np.float32)
        return self._shape(self._stream.resample_chunk(empty, last=True))

    def _shape(self, out: Any) -> Block:
        result: Block = np.ascontiguousarray(
            np.asarray(out, dtype=np.float32).reshape(-1, self.channels)
        )
        return result
