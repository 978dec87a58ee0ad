"""Deterministic network faults for the test server: pure, time passed in.

A :class:`FaultPlan` says what goes wrong, request by request; the server asks it for
the :class:`RequestFaults` of each request (:meth:`FaultPlan.for_request`) and lets
those decide what happens before the response headers, and when each byte of the body
goes out (:meth:`RequestFaults.shaper`). Everything is a function of the plan, the
request's number and the body's schedule: the same plan gives the same faults, at the
same (virtual) times, in every run.

Theory of operation
-------------------
**Numbering.** Requests are numbered from 0 in the order the server receives them (over
all connections, whatever they ask for). The plan is a script that runs through its
phases in order::

    requests [0, C)            close_before_headers = C: the connection is closed
                               without any response
    requests [C, C + F)        fail_first = F: an OpenAI-style JSON error with status
                               fail_status (and Retry-After if retry_after is set)
    requests C + F + j         "body request j": served, with the body faults below
                               (j = 0, 1, ...)

so ``FaultPlan(fail_first=1, drop_after_bytes=(1000,))`` answers request 0 with a 503,
drops request 1 after 1000 body bytes, and serves request 2 and later cleanly: what a
client that retries and then resumes meets. Body faults apply only to responses that
have an audio body (200 and 206); an error response (400, 404, ...) is sent whole, and
uses up its body request number all the same.

**Body faults**, for body request ``j``:

* ``drop_after_bytes[j]`` (if ``j`` is in range): the connection is closed after that
  many body bytes (payload bytes, not counting chunk framing), at the moment the next
  byte would have gone out. A body of at most that many bytes is sent whole.
* ``truncate_after_bytes`` (body request 0 only): the same cut, but the response has a
  ``Content-Length`` for the whole body (the server renders it all first), so the
  client sees a well-framed body that ends early. With both, the earlier cut wins.
* ``stall_after_bytes`` and ``stall_ms`` (body request 0, or every body request with
  ``stall_every_request``): every byte from offset ``stall_after_bytes`` on goes out
  exactly ``stall_ms`` later than it would have: the sender (and the link below)
  pauses, then carries on where it was. The arrival gap before that byte is
  ``stall_ms`` plus whatever gap the schedule had there.
* ``jitter_ms`` (every body request): each piece of the body is held back by a
  uniform random 0 to ``jitter_ms`` ms from its due time (a latency, not a gap: delays
  do not add up, and a piece never overtakes the one before it, as on TCP). The
  random numbers come from ``random.Random`` seeded with ``seed`` and the request
  number, so they are the same in every process and do not depend on other requests.
* ``burst_ms`` and ``burst_pause_ms`` (every body request): the body comes in bursts,
  as from a server that synthesizes sentence by sentence: after every ``burst_ms`` of
  audio (piece ``k`` starts ``k * chunk_ms`` into the audio) everything later is due
  ``burst_pause_ms`` later, on top of the server's pacing.
* ``bandwidth_kbps`` (every body request): the body goes through a link of that many
  kilobits (1000 bits) per second, in segments of at most 10 ms of the link's time;
  each segment is sent when its last byte would have left the link.

The times are worked out piece by piece from each piece's due time, which comes from the
server's pacing (``ttfb_ms``, ``realtime_factor``): the due time plus the jitter (never
before the previous piece), then the link; the stall then moves everything from its
offset on, and the cut ends the body. The headers go out at the first piece's due
time plus its jitter (with the first body bytes if they go out then), so the stall and
the link delay only body bytes: ``stall_after_bytes=0`` is a pause between the headers
and the body.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, replace

from .._exceptions import ConfigError

__all__ = [
    "FAIL_STATUSES",
    "FaultPlan",
    "RequestFaults",
    "Send",
    "Shaper",
    "parse_byte_counts",
    "retry_after_value",
]

FAIL_STATUSES = (429, 500, 502, 503, 504)
"""The statuses :attr:`FaultPlan.fail_status` can take (the ones worth retrying)."""

_SEGMENT_S = 0.01  # the link sends segments of at most this much of its time


# OpenAI-style error bodies for the failure statuses: (type, code, message).
_FAIL_ERRORS: dict[int, tuple[str, str | None, str]] = {
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again later.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    502: ("server_error", None, "Bad gateway."),
    503: (
        "server_error",
        None,
        "The engine is currently overloaded, please try again later.",
    ),
    504: ("server_error", None, "Gateway timeout."),
}


def parse_byte_counts(text: str) -> tuple[int, ...]:
    """Parse ``"N[,N...]"`` (as ``--drop-after-bytes`` takes it) into byte counts.

    Raises:
        ConfigError: If a value is not a whole number >= 0.
    """
    counts: list[int] = []
    for item in text.split(","):
        try:
            value = int(item.strip())
        except ValueError:
            raise ConfigError(
                f"expected byte counts as N[,N...] (whole numbers >= 0), got {text!r}"
            ) from None
        if value < 0:
            raise ConfigError(f"byte counts must be >= 0, got {value} in {text!r}")
        counts.append(value)
    return tuple(counts)


def _check_count(name: str, value: object, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be a whole number >= 0, got {value!r}")


def _check_number(name: str, value: object, *, positive: bool = False) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or (positive and value == 0)
    ):
        bound = "> 0" if positive else ">= 0"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")


@dataclass(frozen=True)
class FaultPlan:
    """What goes wrong, request by request (see the module docstring for the order).

    The default plan injects nothing.

    Attributes:
        seed: Seeds the random numbers (only ``jitter_ms`` uses any).
        drop_after_bytes: For body request ``j``, close the connection after
            ``drop_after_bytes[j]`` body bytes; later body requests are not dropped.
        stall_after_bytes: Pause before the body byte at this offset ...
        stall_ms: ... for this long (both or neither).
        stall_every_request: Stall every body request, not only the first.
        bandwidth_kbps: Send bodies through a link of this many kbit/s (on top of the
            server's pacing); ``None``: no limit.
        jitter_ms: Hold each piece of a body back by a random 0 to ``jitter_ms`` ms.
        burst_ms: Send bodies in bursts of this much audio ...
        burst_pause_ms: ... with this pause between them (both or neither).
        fail_first: Answer this many requests (after ``close_before_headers``) with
            ``fail_status`` and an OpenAI-style JSON error.
        fail_status: One of :data:`FAIL_STATUSES`.
        retry_after: Seconds to put in those errors' ``Retry-After`` header (and in
            milliseconds in ``retry-after-ms``, as OpenAI does); ``None``: no header.
        close_before_headers: Close the connection of this many first requests, after
            reading them, without any response.
        truncate_after_bytes: Send body request 0 with a ``Content-Length`` for the
            whole body, but close after this many bytes of it.

    Raises:
        ConfigError: If a value is out of range, or only half of a pair is set
            (``stall_after_bytes``/``stall_ms``; ``retry_after`` needs ``fail_first``).
    """

    seed: int = 0
    drop_after_bytes: tuple[int, ...] = ()
    stall_after_bytes: int | None = None
    stall_ms: float = 0.0
    stall_every_request: bool = False
    bandwidth_kbps: float | None = None
    jitter_ms: float = 0.0
    burst_ms: float | None = None
    burst_pause_ms: float = 0.0
    fail_first: int = 0
    fail_status: int = 503
    retry_after: float | None = None
    close_before_headers: int = 0
    truncate_after_bytes: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an int, got {self.seed!r}")
        if isinstance(self.drop_after_bytes, (str, bytes)):
            raise ConfigError(
                f"drop_after_bytes must be a sequence of byte counts, got {self.drop_after_bytes!r}"
            )
        try:
            drops = tuple(self.drop_after_bytes)
        except TypeError:
            raise ConfigError(
                f"drop_after_bytes must be a sequence of byte counts, got {self.drop_after_bytes!r}"
            ) from None
        for value in drops:
            _check_count("drop_after_bytes", value)
        object.__setattr__(self, "drop_after_bytes", drops)
        _check_count("stall_after_bytes", self.stall_after_bytes, optional=True)
        _check_number("stall_ms", self.stall_ms)
        if (self.stall_after_bytes is None) != (self.stall_ms == 0):
            raise ConfigError(
                "stall_after_bytes and stall_ms go together: set both (stall_ms > 0) or "
                f"neither; got stall_after_bytes={self.stall_after_bytes!r}, "
                f"stall_ms={self.stall_ms!r}"
            )
        if self.stall_every_request and self.stall_after_bytes is None:
            raise ConfigError("stall_every_request needs stall_after_bytes and stall_ms")
        if self.bandwidth_kbps is not None:
            _check_number("bandwidth_kbps", self.bandwidth_kbps, positive=True)
        _check_number("jitter_ms", self.jitter_ms)
        if self.burst_ms is not None:
            _check_number("burst_ms", self.burst_ms, positive=True)
        _check_number("burst_pause_ms", self.burst_pause_ms)
        if (self.burst_ms is None) != (self.burst_pause_ms == 0):
            raise ConfigError(
                "burst_ms and burst_pause_ms go together: set both (burst_pause_ms > 0) or "
                f"neither; got burst_ms={self.burst_ms!r}, burst_pause_ms={self.burst_pause_ms!r}"
            )
        _check_count("fail_first", self.fail_first)
        if self.fail_status not in FAIL_STATUSES:
            raise ConfigError(
                f"fail_status must be one of {', '.join(map(str, FAIL_STATUSES))}, "
                f"got {self.fail_status!r}"
            )
        if self.retry_after is not None:
            _check_number("retry_after", self.retry_after)
            if self.fail_first == 0:
                raise ConfigError("retry_after needs fail_first > 0 (it goes on those errors)")
        _check_count("close_before_headers", self.close_before_headers)
        _check_count("truncate_after_bytes", self.truncate_after_bytes, optional=True)

    @property
    def active(self) -> bool:
        """Whether this plan injects any fault at all."""
        return self != FaultPlan(seed=self.seed)

    def for_request(self, index: int) -> RequestFaults:
        """The faults of request number ``index`` (from 0, in the order received).

        Raises:
            ValueError: If ``index`` is negative.
        """
        if index < 0:
            raise ValueError(f"request index must be >= 0, got {index}")
        faults = RequestFaults(index=index, seed=self.seed)
        if index < self.close_before_headers:
            return replace(faults, close_before_headers=True)
        index -= self.close_before_headers
        if index < self.fail_first:
            return replace(faults, fail_status=self.fail_status, retry_after=self.retry_after)
        j = index - self.fail_first
        stall = self.stall_after_bytes is not None and (j == 0 or self.stall_every_request)
        return replace(
            faults,
            body_index=j,
            drop_after_bytes=self.drop_after_bytes[j] if j < len(self.drop_after_bytes) else None,
            truncate_after_bytes=self.truncate_after_bytes if j == 0 else None,
            stall_after_bytes=self.stall_after_bytes if stall else None,
            stall_ms=self.stall_ms if stall else 0.0,
            bandwidth_kbps=self.bandwidth_kbps,
            jitter_ms=self.jitter_ms,
            burst_ms=self.burst_ms,
            burst_pause_ms=self.burst_pause_ms,
        )


@dataclass(frozen=True)
class RequestFaults:
    """The faults of one request, from :meth:`FaultPlan.for_request`.

    Attributes:
        index: The request's number (from 0, in the order the server received them).
        seed: The plan's seed.
        close_before_headers: Close the connection without any response.
        fail_status: Answer with this status and an OpenAI-style JSON error
            (:meth:`error`), or ``None``.
        retry_after: Seconds for the error's ``Retry-After`` header, or ``None``.
        body_index: Which body request this is (``j`` in the module docstring), or
            ``None`` for a request closed or failed before its headers.
        drop_after_bytes: Close the connection after this many body bytes, or ``None``.
        truncate_after_bytes: Send a ``Content-Length`` for the whole body but close
            after this many bytes of it, or ``None``.
        stall_after_bytes: Pause before the body byte at this offset, or ``None`` ...
        stall_ms: ... for this long.
        bandwidth_kbps: Link speed for the body, or ``None``.
        jitter_ms: Random extra delay per body piece, up to this.
        burst_ms: Audio per burst of the body, or ``None`` ...
        burst_pause_ms: ... and the pause after each burst.
    """

    index: int
    seed: int = 0
    close_before_headers: bool = False
    fail_status: int | None = None
    retry_after: float | None = None
    body_index: int | None = None
    drop_after_bytes: int | None = None
    truncate_after_bytes: int | None = None
    stall_after_bytes: int | None = None
    stall_ms: float = 0.0
    bandwidth_kbps: float | None = None
    jitter_ms: float = 0.0
    burst_ms: float | None = None
    burst_pause_ms: float = 0.0

    def burst_delay_s(self, audio_ms: float) -> float:
        """How much later than paced the audio from ``audio_ms`` on is due (bursts)."""
        if self.burst_ms is None:
            return 0.0
        return math.floor(audio_ms / self.burst_ms + 1e-9) * self.burst_pause_ms / 1000.0

    @property
    def before_headers(self) -> bool:
        """Whether the request is answered (or not) without a body: closed or failed."""
        return self.close_before_headers or self.fail_status is not None

    @property
    def cut_after_bytes(self) -> int | None:
        """Where the body ends early: the earlier of the drop and the truncation."""
        cuts = [c for c in (self.drop_after_bytes, self.truncate_after_bytes) if c is not None]
        return min(cuts) if cuts else None

    @property
    def shapes_body(self) -> bool:
        """Whether any body fault applies: the body is not sent as the server paces it."""
        return (
            self.cut_after_bytes is not None
            or self.stall_after_bytes is not None
            or self.bandwidth_kbps is not None
            or self.jitter_ms > 0
            or self.burst_ms is not None
        )

    def describe(self) -> str | None:
        """What this request meets, in words (``None`` if nothing), e.g. for a log."""
        if self.close_before_headers:
            return "closed before the headers"
        if self.fail_status is not None:
            text = f"failed with {self.fail_status}"
            if self.retry_after is not None:
                text += f" (Retry-After {retry_after_value(self.retry_after)})"
            return text
        parts: list[str] = []
        if self.truncate_after_bytes is not None:
            parts.append(f"truncated after {self.truncate_after_bytes} bytes")
        if self.drop_after_bytes is not None:
            parts.append(f"dropped after {self.drop_after_bytes} bytes")
        if self.stall_after_bytes is not None:
            parts.append(f"stalled {self.stall_ms:g} ms after {self.stall_after_bytes} bytes")
        if self.bandwidth_kbps is not None:
            parts.append(f"limited to {self.bandwidth_kbps:g} kbit/s")
        if self.jitter_ms > 0:
            parts.append(f"jitter up to {self.jitter_ms:g} ms")
        if self.burst_ms is not None:
            parts.append(f"bursts of {self.burst_ms:g} ms, {self.burst_pause_ms:g} ms apart")
        return ", ".join(parts) or None

    def error(self) -> tuple[str, str | None, str]:
        """``(type, code, message)`` of the OpenAI-style error for :attr:`fail_status`.

        Raises:
            ValueError: If this request does not fail.
        """
        if self.fail_status is None:
            raise ValueError("this request does not fail")
        return _FAIL_ERRORS[self.fail_status]

    def error_headers(self) -> tuple[tuple[str, str], ...]:
        """The extra headers of the error: ``Retry-After`` and ``retry-after-ms``, if set."""
        if self.retry_after is None:
            return ()
        return (
            ("retry-after", retry_after_value(self.retry_after)),
            ("retry-after-ms", str(round(self.retry_after * 1000))),
        )

    def rng(self) -> random.Random:
        """This request's random numbers: the same for the same seed and index."""
        return random.Random(f"trio-tts-stream faults {self.seed} {self.index}")

    def shaper(self) -> Shaper:
        """A :class:`Shaper` for this request's body."""
        return Shaper(self)

    def schedule(self, pieces: Iterable[tuple[float, bytes]]) -> list[Send]:
        """The sends of a whole body given as ``(due time, piece)`` pairs (see :class:`Shaper`)."""
        shaper = self.shaper()
        out: list[Send] = []
        for due, piece in pieces:
            out += shaper.feed(due, piece)
        return out


def retry_after_value(seconds: float) -> str:
    """``seconds`` as a ``Retry-After`` value: whole seconds as an integer (the standard
    form), else a decimal with up to millisecond precision (``"0.25"``; not standard
    HTTP, but handy under a virtual clock, and read by clients that parse a float)."""
    if seconds == int(seconds):
        return str(int(seconds))
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Send:
    """One write of a response body: send ``data`` at ``at``.

    Attributes:
        at: Seconds after the request was received (as the server's schedule).
        data: Body bytes, possibly none (the first send carries the headers).
        close: Close the connection after this send: the body was cut short.
    """

    at: float
    data: bytes
    close: bool = False


class Shaper:
    """Sans-IO: the pieces of one body with their due times in, timed sends out.

    Feed the pieces in order with :meth:`feed`; send what it returns, each at its
    :attr:`Send.at` (never decreasing). The first send carries the headers. Once a
    send with ``close`` set came out the body is cut: close the connection after it,
    and feed nothing more (:meth:`feed` returns nothing then).

    Args:
        faults: The request's faults.

    Attributes:
        faults: The request's faults.
        sent: Body bytes handed out so far.
        cut: Whether the body was cut short.
    """

    def __init__(self, faults: RequestFaults) -> None:
        self.faults = faults
        self.sent = 0
        self.cut = False
        self._rng = faults.rng() if faults.jitter_ms else None
        self._last = -math.inf  # time of the last send: sends never go back in time
        self._link_free = -math.inf  # when the link has sent all it was given
        self._header_at: float | None = None  # the first piece's time, until the first send
        self._segment = 0
        if faults.bandwidth_kbps is not None:
            self._segment = max(1, int(faults.bandwidth_kbps * 1000 / 8 * _SEGMENT_S))

    def feed(self, due: float, piece: bytes) -> list[Send]:
        """The sends for the next piece of the body, due at ``due``.

        Args:
            due: When the server's pacing would send the piece (seconds after the
                request was received; not decreasing from piece to piece).
            piece: The piece's bytes (may be empty: it then gives an empty send).
        """
        if self.cut:
            return []
        faults = self.faults
        # One draw per piece, empty or not: the numbers do not depend on the contents.
        jitter = self._rng.uniform(0, faults.jitter_ms) / 1000.0 if self._rng else 0.0
        # Times are worked out as if there were no stall; _emit adds it.
        release = max(due + jitter, self._last)
        if self._header_at is None and self._last == -math.inf:
            self._header_at = release
        out: list[Send] = []
        # Split the piece at the stall point: the bytes before it are not delayed.
        stall_at = faults.stall_after_bytes
        parts = [piece]
        if stall_at is not None and self.sent < stall_at < self.sent + len(piece):
            parts = [piece[: stall_at - self.sent], piece[stall_at - self.sent :]]
        cut_at = faults.cut_after_bytes
        for part in parts:
            if cut_at is not None and self.sent + len(part) > cut_at:
                if cut_at > self.sent:
                    self._transmit(release, part[: cut_at - self.sent], out)
                # Closed when the next byte would have gone out.
                self._emit(Send(max(release, self._link_free), b"", close=True), out)
                self.cut = True
                return out
            self._transmit(release, part, out)
        return out

    def applied(self) -> str | None:
        """The faults that have hit the body so far, in words (as
        :meth:`RequestFaults.describe`), or ``None``: a cut only once it happened, a stall
        once a byte after it went out, the link and the jitter once a piece did."""
        f = self.faults
        truncated = self.cut and f.truncate_after_bytes == f.cut_after_bytes
        stalled = f.stall_after_bytes is not None and self.sent > f.stall_after_bytes
        fed = self._last != -math.inf
        return replace(
            f,
            truncate_after_bytes=f.truncate_after_bytes if truncated else None,
            drop_after_bytes=f.drop_after_bytes if self.cut and not truncated else None,
            stall_after_bytes=f.stall_after_bytes if stalled else None,
            bandwidth_kbps=f.bandwidth_kbps if self.sent else None,
            jitter_ms=f.jitter_ms if fed else 0.0,
        ).describe()

    def _transmit(self, release: float, data: bytes, out: list[Send]) -> None:
        kbps = self.faults.bandwidth_kbps
        if kbps is None or not data:
            self._emit(Send(release, data), out)
            return
        for i in range(0, len(data), self._segment):
            segment = data[i : i + self._segment]
            start = max(release, self._link_free)
            self._link_free = start + len(segment) * 8 / (kbps * 1000.0)
            self._emit(Send(self._link_free, segment), out)

    def _emit(self, send: Send, out: list[Send]) -> None:
        """Hand out ``send``, timed as if there were no stall (and after the last one)."""
        self._last = max(self._last, send.at)
        at = self._last
        stall_at = self.faults.stall_after_bytes
        if stall_at is not None and self.sent >= stall_at:
            at += self.faults.stall_ms / 1000.0  # from the stall point on, all moves on
        if self._header_at is not None:
            # The first send carries the headers: they go out at the first piece's time
            # (plus jitter) even when a stall or the link holds the first bytes back.
            if at > self._header_at:
                out.append(Send(self._header_at, b""))
            self._header_at = None
        self.sent += len(send.data)
        out.append(Send(at, send.data, send.close))
