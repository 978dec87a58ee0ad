"""Adaptive playout policy: the target level from arrival jitter, and the stretch factor.

Pure: times and levels are passed in.

Theory of operation
-------------------
*Adaptive* playout (``StreamConfig.playout="adaptive"``) starts as soon as the largest
decoded block plus one output block is buffered (see the player) and then builds the
buffer up to a *target level* by playing speech slightly slower (:mod:`._timestretch`),
as WebRTC's NetEQ does with its jitter buffer.

**Target from jitter** (:class:`ArrivalJitter`). If playback ran at real time from the
first arrival with nothing buffered, audio block ``i`` (arriving at ``t_i`` after
``A_i`` seconds of audio) would be late by ``d_i = t_i - A_i`` minus a constant. The
buffer that rides out a run of late arrivals is the rise of ``d`` since its last low
point, a CUSUM of the inter-arrival excess ``g_i = d_i - d_{i-1}`` floored at zero
(``deficit``): a link faster than real time keeps it at zero, a pause of 0.5 s between
sentences raises it by 0.5 s, a run of delayed packets by their delay. The jitter is
the peak deficit, forgetting old peaks with a half-life (``half_life_s``, 20 s), so a
speaker keeps what it learnt about the link across utterances. Arrivals the player
itself held back (its buffer was full: backpressure) are not jitter and are skipped;
each new stream (:meth:`ArrivalJitter.start`) re-anchors ``d``. The target is the
jitter plus one block, bounded by ``buffer_ms`` and three quarters of the buffer's
capacity (:meth:`ArrivalJitter.target_ms`).

**Stretch factor** (:class:`StretchControl`). Below target the factor heads for
``1 + max_stretch``; it returns to 1.0 only once the level is ``hysteresis`` above the
target (no flapping at the threshold). With ``max_speedup > 0`` a level above twice the
target heads for ``1 - max_speedup`` until it is back under 1.5 times the target. The
factor moves at most ``slew_per_s`` per second of audio, so it changes smoothly.
"""

from __future__ import annotations

import math

__all__ = ["ArrivalJitter", "StretchControl"]


class ArrivalJitter:
    """Arrival-jitter estimate of a link (see the module docstring).

    Args:
        half_life_s: Time in which a remembered peak halves.
    """

    def __init__(self, half_life_s: float = 20.0) -> None:
        self.half_life_s = half_life_s
        self._d: float | None = None
        self.deficit_s = 0.0
        self._peak = 0.0
        self._peak_at = 0.0
        #: Arrivals counted.
        self.arrivals = 0

    def start(self) -> None:
        """A new stream begins: the next arrival re-anchors the delay."""
        self._d = None
        self.deficit_s = 0.0

    def arrival(self, now: float, audio_before_s: float, *, throttled: bool = False) -> None:
        """Audio arrived at ``now`` after ``audio_before_s`` seconds of earlier audio.

        Args:
            now: Arrival time.
            audio_before_s: Audio of this stream received before this arrival.
            throttled: The player held this arrival back itself (backpressure).
        """
        d = now - audio_before_s
        if self._d is not None and not throttled:
            self.deficit_s = max(0.0, self.deficit_s + (d - self._d))
            peak = self.peak_s(now)
            if self.deficit_s >= peak:
                self._peak, self._peak_at = self.deficit_s, now
        self._d = d
        self.arrivals += 1

    def peak_s(self, now: float) -> float:
        """The remembered peak deficit at ``now``, decayed."""
        age = max(0.0, now - self._peak_at)
        return self._peak * math.pow(0.5, age / self.half_life_s)

    def jitter_ms(self, now: float) -> float:
        """The jitter estimate (ms)."""
        return 1000.0 * self.peak_s(now)

    def target_ms(self, now: float, *, block_ms: float, floor_ms: float, cap_ms: float) -> float:
        """The buffer level to aim for: jitter plus one block, within
        ``[floor_ms, cap_ms]``."""
        return min(cap_ms, max(floor_ms, self.jitter_ms(now) + block_ms))


class StretchControl:
    """The stretch factor from the buffer level (see the module docstring).

    Args:
        max_stretch: Most slowing (0.12: play 12 % slower).
        max_speedup: Most speeding up to shed surplus latency (0: never).
        slew_per_s: Most change of the factor per second of audio.
        hysteresis: Fraction above the target at which stretching stops.
    """

    def __init__(
        self,
        *,
        max_stretch: float = 0.12,
        max_speedup: float = 0.0,
        slew_per_s: float = 0.5,
        hysteresis: float = 0.2,
    ) -> None:
        self.max_stretch = max_stretch
        self.max_speedup = max_speedup
        self.slew_per_s = slew_per_s
        self.hysteresis = hysteresis
        self.ratio = 1.0
        self._mode = 0  # +1 stretching, -1 speeding up, 0 neither

    def update(self, level_ms: float, target_ms: float, audio_s: float) -> float:
        """The factor for the next ``audio_s`` seconds of audio, given the level now."""
        if level_ms < target_ms:
            self._mode = 1
        elif self._mode == 1 and level_ms >= target_ms * (1 + self.hysteresis):
            self._mode = 0
        if self.max_speedup > 0:
            if level_ms > 2 * target_ms:
                self._mode = -1
            elif self._mode == -1 and level_ms <= 1.5 * target_ms:
                self._mode = 0
        want = {1: 1 + self.max_stretch, -1: 1 - self.max_speedup, 0: 1.0}[self._mode]
        step = self.slew_per_s * audio_s
        if abs(want - self.ratio) <= step:
            self.ratio = want
        else:
            self.ratio += step if want > self.ratio else -step
        return self.ratio
