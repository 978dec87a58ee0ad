"""Adaptive buffering across utterances: pure, fed with each playback's report.

Policy (numbers are the defaults):

* **Within a stream** (:class:`~._state.PlaybackController`): the first underrun rebuffers
  ``rebuffer_ms`` (300 ms); every further one multiplies that by ``underrun_growth`` (1.5),
  capped by the buffer's capacity.
* **Across streams** (:class:`AdaptiveBuffering`, used by :class:`~._player.Player`): after
  each utterance the start threshold for the next one moves with what was measured:

  - an underrun happened: ``start_ms *= 1.5`` (capped by ``max_buffer_s``), and
  - the link delivered audio slower than real time (``delivery_ratio`` r < 1): the whole
    next utterance can only play without a gap if it starts ``D * (1/r - 1)`` late, D
    being its length; with the last utterance's length as the estimate plus 10 % margin,
    ``start_ms = max(start_ms, 1.1 * D * (1/r - 1))``, capped by the buffer;
  - the link delivered at 2x real time or faster and nothing ran dry: start sooner,
    ``start_ms *= 0.75``, never below ``max(40 ms, buffer_ms / 2)``;
  - in between: unchanged.
"""

from __future__ import annotations

__all__ = ["AdaptiveBuffering"]


class AdaptiveBuffering:
    """The start threshold for the next utterance.

    Args:
        base_ms: The configured initial buffer (``StreamConfig.buffer_ms``).
        max_ms: The buffer's capacity in ms (``max_buffer_s * 1000``).
    """

    GROW = 1.5
    SHRINK = 0.75
    MARGIN = 1.1
    FAST = 2.0

    def __init__(self, base_ms: float, max_ms: float) -> None:
        self.base_ms = base_ms
        self.max_ms = max_ms
        self.min_ms = min(base_ms, max(40.0, base_ms / 2))
        self.start_ms = base_ms

    def update(self, *, underruns: int, delivery_ratio: float | None, audio_s: float) -> float:
        """Account for one finished utterance; return the next start threshold."""
        start = self.start_ms * (self.GROW if underruns > 0 else 1.0)
        if delivery_ratio is not None and delivery_ratio > 0:
            if delivery_ratio < 1.0:
                needed = self.MARGIN * audio_s * 1000 * (1 / delivery_ratio - 1)
                start = max(start, needed)
            elif delivery_ratio >= self.FAST and not underruns:
                start = max(self.min_ms, start * self.SHRINK)
        self.start_ms = min(self.max_ms, start)
        return self.start_ms
