"""The decoder protocol every format implements.

A decoder is pure and incremental, in the style of h11 and httpx's ``_decoders``: it
never does I/O and never reads a clock. ``decode(data)`` takes the next bytes of the
stream, in chunks of *any* size, and returns the blocks it could complete; ``flush()``
is called once at end of stream and returns what is left. Feeding the same bytes with a
different chunking yields identical samples. Errors are :class:`~trio_tts_stream.DecodeError`.
"""

from __future__ import annotations

from typing import Protocol

from .._format import AudioFormat, Block

__all__ = ["Decoder"]


class Decoder(Protocol):
    """Incremental bytes -> sample blocks decoder for one stream."""

    #: Format name as used in ``response_format`` (``"pcm"``, ``"wav"``, ...).
    name: str

    @property
    def audio_format(self) -> AudioFormat | None:
        """The stream's format once known (after the header), else ``None``."""
        ...

    def decode(self, data: bytes) -> list[Block]:
        """Consume ``data`` and return the completed blocks (possibly none)."""
        ...

    def flush(self) -> list[Block]:
        """Signal end of stream; return the remaining blocks.

        Raises:
            DecodeError: If the stream ended in a way that loses audio the caller should
                know about (e.g. a WAV stream that ended before its header completed).
        """
        ...
