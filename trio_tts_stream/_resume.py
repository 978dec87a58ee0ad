"""Resuming a stream after a reconnect without losing or repeating a sample: pure.

Theory of operation
-------------------
Two ways to continue after the connection dropped:

* **Byte resume** (GET sources that support ``Range``): ask for ``bytes=N-`` with
  ``If-Range: <etag>`` and accept only a ``206`` whose ``Content-Range`` starts at ``N``.
  The same decoder keeps going, so the output is bit-identical to an uninterrupted run.
* **Sample resume** (POST to a TTS endpoint, or a server that ignores ``Range``): request
  the whole utterance again, decode it with a fresh decoder and drop the frames already
  played, but only after checking that the new stream really starts with them: a
  deterministic server repeats itself exactly, many TTS servers do not (sampling,
  different seeds). :class:`PrefixDigest` keeps a CRC-32 of every frame sent so far
  (constant memory, any blocking); :class:`OverlapSkipper` digests the new stream's first
  frames the same way and, once it has as many, compares. A mismatch is reported, never
  glossed over: the caller then follows its policy (stop with an error, or restart the
  utterance and say so).
"""

from __future__ import annotations

import enum
import zlib

import numpy as np

from ._format import Block

__all__ = ["OverlapSkipper", "PrefixDigest", "Verdict"]


class PrefixDigest:
    """Running CRC-32 and frame count of the blocks sent so far."""

    def __init__(self) -> None:
        self.frames = 0
        self.crc = 0

    def update(self, block: Block) -> None:
        """Account for ``block`` (sent on to playback)."""
        self.crc = zlib.crc32(np.ascontiguousarray(block).data, self.crc)
        self.frames += len(block)


class Verdict(enum.Enum):
    """Where an :class:`OverlapSkipper` is."""

    PENDING = "pending"  # fewer frames than the overlap seen yet
    MATCH = "match"  # the overlap matched: new frames pass through
    MISMATCH = "mismatch"  # the new stream differs from what was played


class OverlapSkipper:
    """Drop the first ``frames`` frames of a re-requested stream, verifying them.

    Args:
        frames: Frames already sent (the overlap to skip).
        crc: CRC-32 of those frames' bytes (:attr:`PrefixDigest.crc`).
    """

    def __init__(self, frames: int, crc: int) -> None:
        self.frames = frames
        self.expected_crc = crc
        self.seen = 0
        self._crc = 0
        self.verdict = Verdict.MATCH if frames == 0 else Verdict.PENDING

    def feed(self, block: Block) -> Block | None:
        """Take the next block of the new stream; return what may be played, if any.

        Once :attr:`verdict` is ``MISMATCH`` this returns ``None`` for everything.
        """
        if self.verdict is Verdict.MATCH:
            return block
        if self.verdict is Verdict.MISMATCH:
            return None
        need = self.frames - self.seen
        head, rest = block[:need], block[need:]
        self._crc = zlib.crc32(np.ascontiguousarray(head).data, self._crc)
        self.seen += len(head)
        if self.seen < self.frames:
            return None
        if self._crc != self.expected_crc:
            self.verdict = Verdict.MISMATCH
            return None
        self.verdict = Verdict.MATCH
        return rest if len(rest) else None
