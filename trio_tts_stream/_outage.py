"""A speaker's output outages: when to try the device again, and what to report (pure).

Theory of operation: when a speaker's output fails mid-utterance (the sound server died,
the headset was unplugged: see :mod:`._watchdog`), the speaker holds its queue, and
tries to reopen the output: at once, then after 0.1, 0.2, 0.4 ... seconds, at most
``max_delay_s`` apart, until ``retry_s`` after the failure. :class:`Reopening` is that
schedule; the speaker sleeps and tries. The first try that opens the output ends the
outage; the utterance that was playing carries on from its first unheard word, the ones
queued behind it follow. If the time runs out, the held utterances fail with the
output's error and the speaker goes on (a later ``say`` tries the output again).
:class:`DeviceOutage` is what the speaker reports afterwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["DeviceOutage", "Reopening"]


@dataclass(frozen=True)
class DeviceOutage:
    """One output outage of a speaker (:attr:`Speaker.outages`).

    Attributes:
        started_at: When the failure was noticed (trio's clock).
        ended_at: When the output was open again (trio's clock); ``None`` if the speaker
            gave up (``recovered`` is false) or it is still going on.
        reason: The output's error message.
        attempts: Tries to reopen the output.
        recovered: The output came back within the speaker's ``device_retry_s``.
        resumed: Utterances held during the outage that carried on afterwards (the one
            that was playing resumes at its first unheard word).
        failed: Utterances that failed because of it.
    """

    started_at: float
    ended_at: float | None
    reason: str
    attempts: int
    recovered: bool
    resumed: int
    failed: int

    @property
    def duration_s(self) -> float | None:
        """How long the output was gone, if it came back."""
        return None if self.ended_at is None else self.ended_at - self.started_at


class Reopening:
    """When to try to reopen a failed output, and when to stop trying.

    Args:
        started: When the output failed.
        retry_s: Give up this long after ``started``.
        first_delay_s: The wait after the first (immediate) try.
        max_delay_s: The longest wait between two tries.

    Raises:
        ValueError: A duration is negative or not finite.
    """

    def __init__(
        self,
        started: float,
        retry_s: float,
        *,
        first_delay_s: float = 0.1,
        max_delay_s: float = 2.0,
    ) -> None:
        for name, value in (
            ("retry_s", retry_s),
            ("first_delay_s", first_delay_s),
            ("max_delay_s", max_delay_s),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value!r} must be a non-negative number of seconds")
        self.deadline = started + retry_s
        self._delay = first_delay_s
        self._max = max_delay_s
        self.attempts = 0

    def failed_attempt(self, now: float) -> float | None:
        """A try at ``now`` did not open the output: when to try next, or ``None`` to
        give up (the next try would come after the deadline)."""
        self.attempts += 1
        at = now + self._delay
        self._delay = min(self._max, max(2 * self._delay, 0.01))
        return at if at <= self.deadline else None
