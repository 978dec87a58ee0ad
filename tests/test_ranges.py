"""Tests of the test server's pure byte-range logic (``testing/_ranges.py``)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_tts_stream.server._ranges import (
    FullBody,
    NotSatisfiable,
    PartialBody,
    select_range,
    slice_pieces,
    strong_etag,
)

ETAG = strong_etag(b"the body")


def test_strong_etag() -> None:
    assert strong_etag(b"the body") == ETAG
    assert strong_etag(b"the body!") != ETAG
    assert ETAG.startswith('"')
    assert ETAG.endswith('"')
    assert len(ETAG) == 34
    assert all(c in "0123456789abcdef" for c in ETAG[1:-1])


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, FullBody(1000)),
        ("bytes=0-", PartialBody(0, 1000, 1000)),
        ("bytes=100-", PartialBody(100, 1000, 1000)),
        ("bytes=999-", PartialBody(999, 1000, 1000)),
        ("bytes=100-199", PartialBody(100, 200, 1000)),
        ("bytes=100-100", PartialBody(100, 101, 1000)),
        ("bytes=900-5000", PartialBody(900, 1000, 1000)),
        ("bytes=-100", PartialBody(900, 1000, 1000)),
        ("bytes=-5000", PartialBody(0, 1000, 1000)),
        ("Bytes = 10 - 19 ", PartialBody(10, 20, 1000)),
        ("bytes=1000-", NotSatisfiable(1000)),
        ("bytes=1000-2000", NotSatisfiable(1000)),
        ("bytes=-0", NotSatisfiable(1000)),
        # Ignored (the whole body): invalid, other units, several ranges.
        ("bytes=200-100", FullBody(1000)),
        ("bytes=-", FullBody(1000)),
        ("bytes=abc-", FullBody(1000)),
        ("bytes=0-1,5-9", FullBody(1000)),
        ("items=0-1", FullBody(1000)),
        ("bytes 0-1", FullBody(1000)),
        ("", FullBody(1000)),
        ("bytes=١٢-", FullBody(1000)),  # non-ASCII digits are not digits here
    ],
)
def test_select_range(header: str | None, expected: object) -> None:
    assert select_range(header, None, ETAG, 1000) == expected


def test_content_range_values() -> None:
    assert PartialBody(100, 1000, 1000).content_range == "bytes 100-999/1000"
    assert PartialBody(0, 1, 1).content_range == "bytes 0-0/1"
    assert NotSatisfiable(1000).content_range == "bytes */1000"


def test_empty_body() -> None:
    assert select_range(None, None, ETAG, 0) == FullBody(0)
    assert select_range("bytes=0-", None, ETAG, 0) == NotSatisfiable(0)
    assert select_range("bytes=-5", None, ETAG, 0) == NotSatisfiable(0)


def test_if_range() -> None:
    partial = PartialBody(10, 1000, 1000)
    assert select_range("bytes=10-", ETAG, ETAG, 1000) == partial
    assert select_range("bytes=10-", f" {ETAG} ", ETAG, 1000) == partial
    # Another tag, a weak tag, an unquoted tag or a date: the whole (changed?) body.
    for if_range in (
        strong_etag(b"other"),
        f"W/{ETAG}",
        ETAG.strip('"'),
        "Wed, 21 Oct 2015 07:28:00 GMT",
    ):
        assert select_range("bytes=10-", if_range, ETAG, 1000) == FullBody(1000)
    # If-Range without Range is ignored.
    assert select_range(None, strong_etag(b"other"), ETAG, 1000) == FullBody(1000)
    # A matching If-Range does not make an unsatisfiable range satisfiable.
    assert select_range("bytes=5000-", ETAG, ETAG, 1000) == NotSatisfiable(1000)


def test_slice_pieces() -> None:
    pieces = [b"abc", b"", b"defg", b"h", b"", b"ij"]
    assert slice_pieces(pieces, 0, 10) == pieces
    # Empty pieces inside the range are kept (the pacing counts them), not at its end.
    assert slice_pieces(pieces, 2, 8) == [b"c", b"", b"defg", b"h"]
    assert slice_pieces(pieces, 3, 7) == [b"", b"defg"]
    assert slice_pieces(pieces, 4, 5) == [b"e"]
    assert slice_pieces(pieces, 10, 10) == []
    for start, stop in ((-1, 3), (3, 2), (0, 11)):
        with pytest.raises(ValueError, match="range"):
            slice_pieces(pieces, start, stop)


@settings(max_examples=100, deadline=None)
@given(sizes=st.lists(st.integers(0, 20), max_size=10), data=st.data())
def test_slice_pieces_is_the_range_cut_like_the_pieces(
    sizes: list[int], data: st.DataObject
) -> None:
    pieces = [bytes([k]) * size for k, size in enumerate(sizes)]
    body = b"".join(pieces)
    start = data.draw(st.integers(0, len(body)))
    stop = data.draw(st.integers(start, len(body)))
    out = slice_pieces(pieces, start, stop)
    assert b"".join(out) == body[start:stop]
    # Cut where the pieces are: every piece out but the first and last is a whole piece.
    for inner in out[1:-1]:
        assert inner in pieces
    assert len(out) <= len(pieces)
