"""When a pause in a response body means the connection is dead: pure, time passed in.

Theory of operation
-------------------
A TTS server on a CPU writes a multi-sentence chunk, then thinks for seconds before the
next one (Kokoro-FastAPI does). HTTP/1.1 has no ping: a pause on a healthy connection and
a dead connection (a peer gone without a FIN or a reset) look the same from the reading
side until the pause ends. Throwing the connection away early is the worse mistake: the
server starts its synthesis again from the first sentence, pauses at the same place, and
the utterance fails after every attempt. So a pause is ridden out (the playback task
rebuffers meanwhile, as for any underrun) and a connection is declared dead only when:

* **before the first body byte**: nothing came for ``first_byte_s`` (the read timeout):
  "headers, then nothing";
* **after the first body byte**: nothing came for the *patience*, which is the longer of
  ``dead_s`` (a hard limit, much longer than any pause of a thinking server) and
  ``margin`` times the longest pause this stream has already come back from (a server
  that once paused 12 s may well pause 12 s again).

A re-request that stalls at the same place as the one before (the same body offset,
within ``same_place_bytes``) means the server, not the network, pauses there: the patience
at that place doubles with every repeat instead of repeating a wait that already failed.

Pauses longer than ``stall_s`` are counted as stalls whether they end by themselves
or not; only a dead connection is re-requested.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StallPolicy", "StallWatch"]


@dataclass(frozen=True)
class StallPolicy:
    """Bounds on pauses in a response body.

    Attributes:
        stall_s: A pause at least this long is a stall (counted, ridden out).
        dead_s: After the first body byte, a pause this long means a dead connection.
        first_byte_s: Before the first body byte, a pause this long means a dead
            response ("headers, then nothing").
        margin: The patience is at least this many times the longest pause survived.
        same_place_bytes: Two stalls at most this many bytes apart are at the same place.
    """

    stall_s: float
    dead_s: float
    first_byte_s: float
    margin: float = 2.0
    same_place_bytes: int = 16384


class StallWatch:
    """Pauses of one source's responses, over all its attempts.

    Args:
        policy: The bounds.
    """

    def __init__(self, policy: StallPolicy) -> None:
        self.policy = policy
        self.longest_pause_s = 0.0
        self.stalls = 0
        self._dead_at: int | None = None  # body offset of the last dead connection
        self._repeats = 0  # dead connections in a row at that offset

    def patience(self, offset: int, *, got_body: bool) -> float:
        """Seconds to wait for the next body byte at body ``offset``.

        ``got_body`` tells whether this response has sent a body byte yet.
        """
        policy = self.policy
        if got_body:
            wait = max(policy.dead_s, policy.margin * self.longest_pause_s)
        else:
            wait = policy.first_byte_s
        if self._dead_at is not None and abs(offset - self._dead_at) <= policy.same_place_bytes:
            wait *= 2.0**self._repeats
        return wait

    def on_pause_ended(self, pause_s: float, *, got_body: bool) -> bool:
        """Bytes came after a wait of ``pause_s``; return whether it was a stall.

        The wait before a response's first body byte is the server's thinking time,
        not a pause: it counts neither as a stall nor towards the longest pause.
        """
        if not got_body:
            return False
        self.longest_pause_s = max(self.longest_pause_s, pause_s)
        if pause_s >= self.policy.stall_s:
            self.stalls += 1
            return True
        return False

    def on_dead(self, offset: int) -> None:
        """The wait at body ``offset`` ran out of patience: the connection is dead."""
        self.stalls += 1
        same = (
            self._dead_at is not None
            and abs(offset - self._dead_at) <= self.policy.same_place_bytes
        )
        self._repeats = self._repeats + 1 if same else 1
        self._dead_at = offset
