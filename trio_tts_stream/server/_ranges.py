"""Byte ranges of a stored body (RFC 9110 section 14): pure.

The test server serves pre-rendered audio at GET URLs, and a client that lost its
connection resumes with ``Range: bytes=N-`` and ``If-Range: <etag>``. This module
decides what such a request gets: :func:`select_range` returns a :class:`FullBody`
(200), a :class:`PartialBody` (206, ``Content-Range: bytes first-last/total``) or a
:class:`NotSatisfiable` (416, ``Content-Range: bytes */total``).

What it implements, and what it leaves out (both allowed by RFC 9110):

* One range per request: ``bytes=N-``, ``bytes=N-M`` (``M`` past the end is cut to
  the end) and the suffix ``bytes=-N`` (the last ``N`` bytes). A request for several
  ranges gets the whole body (200), as does any ``Range`` that does not parse or names
  another unit: a server may ignore ``Range``.
* ``If-Range`` with an entity tag: the range is served only if the tag is strongly
  equal to the body's :func:`strong_etag` (a weak tag never is); otherwise the whole
  body. ``If-Range`` with a date never matches (the server sends no
  ``Last-Modified``), so it gets the whole body too.
* A range that starts at or past the end (or ``bytes=-0``, or any range of an empty
  body) is not satisfiable: 416.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "FullBody",
    "NotSatisfiable",
    "PartialBody",
    "select_range",
    "slice_pieces",
    "strong_etag",
]

_RANGE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", re.IGNORECASE | re.ASCII)


def strong_etag(body: bytes) -> str:
    """A strong entity tag for ``body``, quoted: the first 128 bits of its SHA-256."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


@dataclass(frozen=True)
class FullBody:
    """Send the whole body with a 200."""

    total: int


@dataclass(frozen=True)
class PartialBody:
    """Send bytes ``[start, stop)`` of the body with a 206.

    Attributes:
        start: First byte sent.
        stop: One past the last byte sent (``start < stop <= total``).
        total: Length of the whole body.
    """

    start: int
    stop: int
    total: int

    @property
    def content_range(self) -> str:
        """The ``Content-Range`` header value, e.g. ``"bytes 100-999/1000"``."""
        return f"bytes {self.start}-{self.stop - 1}/{self.total}"


@dataclass(frozen=True)
class NotSatisfiable:
    """Answer 416: no byte of the body is in the range."""

    total: int

    @property
    def content_range(self) -> str:
        """The ``Content-Range`` header value of the 416: ``"bytes */total"``."""
        return f"bytes */{self.total}"


def select_range(
    range_header: str | None, if_range: str | None, etag: str, total: int
) -> FullBody | PartialBody | NotSatisfiable:
    """What a GET with these ``Range`` and ``If-Range`` headers gets.

    Args:
        range_header: The ``Range`` header value, or ``None``.
        if_range: The ``If-Range`` header value, or ``None``.
        etag: The body's strong entity tag, quoted (:func:`strong_etag`).
        total: The body's length in bytes.
    """
    if range_header is None:
        return FullBody(total)
    if if_range is not None and if_range.strip() != etag:
        return FullBody(total)  # changed (or a date, or a weak tag): send it all
    match = _RANGE.fullmatch(range_header)
    if match is None:
        return FullBody(total)  # several ranges, another unit, or invalid: ignore it
    first, last = match.group(1), match.group(2)
    if not first:
        if not last:
            return FullBody(total)  # "bytes=-": invalid, ignored
        suffix = int(last)
        if suffix == 0 or total == 0:
            return NotSatisfiable(total)
        return PartialBody(max(0, total - suffix), total, total)
    start = int(first)
    if last and int(last) < start:
        return FullBody(total)  # "bytes=5-2": invalid, ignored
    if start >= total:
        return NotSatisfiable(total)
    stop = total if not last else min(total, int(last) + 1)
    return PartialBody(start, stop, total)


def slice_pieces(pieces: Sequence[bytes], start: int, stop: int) -> list[bytes]:
    """The bytes ``[start, stop)`` of ``b"".join(pieces)``, cut where the pieces are cut.

    The first and last pieces are trimmed; pieces wholly outside the range are left
    out, empty pieces inside it are kept. The server paces the result as it would the
    whole body, so a range starts at once and then keeps the pace of the audio.

    Raises:
        ValueError: If the range is not within the body.
    """
    total = sum(len(p) for p in pieces)
    if not 0 <= start <= stop <= total:
        raise ValueError(f"range [{start}, {stop}) is not within a body of {total} bytes")
    out: list[bytes] = []
    offset = 0
    for piece in pieces:
        end = offset + len(piece)
        if (end > start and offset < stop) or (not piece and start <= offset < stop):
            out.append(piece[max(0, start - offset) : min(len(piece), stop - offset)])
        offset = end
        if offset >= stop:
            break
    return out
