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

* **Format across utterances** (:class:`FormatChoice`, a speaker's
  ``response_format="auto"``): pcm needs ~384 kbit/s (24 kHz s16 mono), opus or mp3 a
  fraction of that. After each utterance:

  - pcm delivered at less than ``comfortable`` (1.5x) real time: the next utterance asks
    for the first compressed format available (``opus``, then ``mp3``);
  - compressed: back to pcm when its measured throughput says pcm would arrive at
    ``recover`` (2x) real time or faster, or when compressing did not speed delivery up
    (the server, not the link, is the limit: less than 1.3 times pcm's ratio); else
    pcm is probed again after ``probe_after`` (4) compressed utterances, the interval
    doubling after each probe that fails.
"""

from __future__ import annotations

__all__ = ["AdaptiveBuffering", "FormatChoice"]


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


class FormatChoice:
    """The ``response_format`` of a speaker's next request, from the link it measured.

    Args:
        compressed: Compressed formats to use on a slow link, in order of preference
            (only those this installation decodes are kept).
        pcm_kbps: The bit rate of pcm (24 kHz s16 mono: 384 kbit/s).
        comfortable: Least pcm delivery ratio that keeps pcm.
        recover: pcm delivery ratio the compressed stream's throughput must promise to
            go back to pcm.
        probe_after: Compressed utterances before pcm is tried again.
    """

    SERVER_BOUND = 1.3

    def __init__(
        self,
        compressed: tuple[str, ...] = ("opus", "mp3"),
        *,
        pcm_kbps: float = 384.0,
        comfortable: float = 1.5,
        recover: float = 2.0,
        probe_after: int = 4,
    ) -> None:
        self.compressed = compressed
        self.pcm_kbps = pcm_kbps
        self.comfortable = comfortable
        self.recover = recover
        self.probe_after = probe_after
        self.format = "pcm"
        self.reason = "auto: pcm (nothing measured yet)"
        self._pcm_ratio: float | None = None
        self._since_switch = 0
        self._probe_every = probe_after

    def choose(self) -> tuple[str, str]:
        """The format to ask for next, and why (for the report)."""
        return self.format, self.reason

    def refused(self, fmt: str) -> None:
        """The server does not offer ``fmt``: never ask for it again."""
        self.compressed = tuple(f for f in self.compressed if f != fmt)
        if self.format == fmt:
            self._switch("pcm", f"auto: pcm (the server refused {fmt})")

    def update(
        self, fmt: str | None, delivery_ratio: float | None, throughput_kbps: float | None
    ) -> None:
        """Account for one finished utterance in ``fmt``."""
        if fmt is None or delivery_ratio is None:
            return
        self._since_switch += 1
        if fmt == "pcm":
            self._pcm_ratio = delivery_ratio
            if delivery_ratio < self.comfortable and self.compressed:
                self._switch(
                    self.compressed[0],
                    f"auto: {self.compressed[0]} (pcm arrived at {delivery_ratio:.2f}x real "
                    f"time, below {self.comfortable:g}x)",
                )
            else:
                self._probe_every = self.probe_after
                self.reason = f"auto: pcm (the link delivers pcm at {delivery_ratio:.2f}x)"
            return
        if self.format == "pcm":
            return  # a probe or an override: the pcm utterance decides
        promise = (throughput_kbps or 0.0) / self.pcm_kbps
        if promise >= self.recover:
            self._switch("pcm", f"auto: pcm ({fmt} throughput promises pcm at {promise:.2f}x)")
        elif self._pcm_ratio is not None and delivery_ratio < self.SERVER_BOUND * self._pcm_ratio:
            self._switch(
                "pcm",
                f"auto: pcm ({fmt} was no faster, {delivery_ratio:.2f}x: the server is the limit)",
            )
        elif self._since_switch >= self._probe_every:
            self._probe_every *= 2
            self._switch("pcm", f"auto: pcm (probing the link after {self._since_switch} {fmt})")
        else:
            self.reason = f"auto: {fmt} ({fmt} arrives at {delivery_ratio:.2f}x; pcm would not)"

    def _switch(self, fmt: str, reason: str) -> None:
        self.format, self.reason = fmt, reason
        self._since_switch = 0
