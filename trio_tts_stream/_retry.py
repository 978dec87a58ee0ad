"""When to retry a failed request, and how long to wait: pure, time passed in.

Theory of operation
-------------------
A failure is *retryable* when trying again can help: transport errors (refused,
reset, dropped mid-body), timeouts and stalls, and the statuses 408, 429 and 5xx. A
rejected request (other 4xx) or a TLS failure (an untrusted certificate will still be
untrusted a second later) is final at once.

Waits follow "exponential backoff with full jitter" (AWS architecture blog): attempt
``n`` (1-based) waits a uniform random time in ``[0, min(cap, base * 2**(n-1))]``, which
spreads a herd of clients out better than fixed or "equal" jitter. A server's
``Retry-After`` wins when present (never less than it asks, capped by ``cap``). Attempts
are bounded by ``max_attempts`` and the whole by ``deadline_s`` measured from the first
attempt: a retry that could not start before the deadline is not made.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ._exceptions import (
    HTTPStatusError,
    NetworkError,
    StreamTimeout,
    TLSError,
    TTSStreamError,
)

__all__ = ["RetryPolicy", "RetryState", "give_up_message", "is_retryable"]

_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def is_retryable(exc: BaseException) -> bool:
    """Whether trying again could succeed."""
    if isinstance(exc, TLSError):
        return False
    if isinstance(exc, HTTPStatusError):
        return exc.status_code in _RETRY_STATUSES or exc.status_code >= 500
    return isinstance(exc, (NetworkError, StreamTimeout))


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds and pacing of retries.

    Attributes:
        max_attempts: Attempts in all, the first included (1 = never retry).
        base_s: Backoff scale: the first retry waits up to this long.
        cap_s: Longest single wait (also caps ``Retry-After``).
        deadline_s: No attempt starts later than this after the first one.
    """

    max_attempts: int = 5
    base_s: float = 0.25
    cap_s: float = 4.0
    deadline_s: float = 30.0


@dataclass
class RetryState:
    """Counts attempts for one source and decides each next wait.

    Args:
        policy: The bounds.
        started_at: When the first attempt started (caller's clock).
        rng: Source of jitter (seed it for deterministic tests).
    """

    policy: RetryPolicy
    started_at: float
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 1

    def next_delay(self, exc: BaseException, now: float) -> float | None:
        """Seconds to wait before the next attempt after ``exc``, or ``None`` to give up.

        Counts the retry when it returns a delay.
        """
        if not is_retryable(exc) or self.attempts >= self.policy.max_attempts:
            return None
        ceiling = min(self.policy.cap_s, self.policy.base_s * 2 ** (self.attempts - 1))
        delay = self.rng.uniform(0.0, ceiling)
        if isinstance(exc, HTTPStatusError) and exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self.policy.cap_s))
        if now + delay - self.started_at > self.policy.deadline_s:
            return None
        self.attempts += 1
        return delay


def give_up_message(exc: TTSStreamError, state: RetryState) -> str:
    """``exc``'s message with how many attempts were made, for the final error."""
    if state.attempts <= 1:
        return str(exc)
    return f"{exc} (gave up after {state.attempts} attempts)"
