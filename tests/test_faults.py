"""Tests of the test server's pure fault injection (``testing/_faults.py``): no sockets."""

from __future__ import annotations

import itertools
import subprocess
import sys
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_tts_stream._exceptions import ConfigError
from trio_tts_stream.server import _faults
from trio_tts_stream.server._faults import (
    FAIL_STATUSES,
    FaultPlan,
    RequestFaults,
    Send,
    parse_byte_counts,
    retry_after_value,
)

EPS = 1e-9


def schedule(
    n: int, size: int = 100, *, start: float = 0.1, step: float = 0.02
) -> list[tuple[float, bytes]]:
    """A paced body: piece ``k`` of ``size`` bytes due at ``start + k * step``."""
    return [(start + k * step, bytes([k % 256]) * size) for k in range(n)]


def body_of(sends: list[Send]) -> bytes:
    return b"".join(s.data for s in sends)


def arrival(sends: list[Send]) -> list[tuple[float, int]]:
    """``(time, body bytes sent by then)`` after each send."""
    out: list[tuple[float, int]] = []
    total = 0
    for send in sends:
        total += len(send.data)
        out.append((send.at, total))
    return out


def time_of_byte(sends: list[Send], offset: int) -> float:
    """When the body byte at ``offset`` was sent."""
    total = 0
    for send in sends:
        total += len(send.data)
        if total > offset:
            return send.at
    raise AssertionError(f"byte {offset} was never sent")


# --------------------------------------------------------------------------------------
# The plan: which request gets what


def test_the_default_plan_injects_nothing() -> None:
    plan = FaultPlan()
    assert not plan.active
    assert not FaultPlan(seed=42).active
    for index in range(5):
        faults = plan.for_request(index)
        assert faults.index == index
        assert faults.body_index == index
        assert not faults.before_headers
        assert not faults.shapes_body
        assert faults.cut_after_bytes is None
        assert faults.describe() is None
    assert FaultPlan(jitter_ms=1).active
    assert FaultPlan(drop_after_bytes=(0,)).active


def test_phases_run_in_order() -> None:
    plan = FaultPlan(
        close_before_headers=2, fail_first=1, fail_status=429, drop_after_bytes=(100, 200)
    )
    faults = [plan.for_request(i) for i in range(7)]
    assert [f.close_before_headers for f in faults] == [True, True] + [False] * 5
    assert [f.fail_status for f in faults] == [None, None, 429, None, None, None, None]
    assert [f.body_index for f in faults] == [None, None, None, 0, 1, 2, 3]
    assert [f.drop_after_bytes for f in faults] == [None] * 3 + [100, 200, None, None]
    assert [f.before_headers for f in faults] == [True] * 3 + [False] * 4
    assert [f.index for f in faults] == list(range(7))
    assert faults[0].describe() == "closed before the headers"
    assert faults[2].describe() == "failed with 429"
    assert faults[3].describe() == "dropped after 100 bytes"
    assert faults[5].describe() is None
    with pytest.raises(ValueError, match="index"):
        plan.for_request(-1)


def test_closed_and_failed_requests_have_no_body_faults() -> None:
    plan = FaultPlan(
        close_before_headers=1,
        fail_first=1,
        jitter_ms=5,
        bandwidth_kbps=64,
        stall_after_bytes=0,
        stall_ms=10,
        stall_every_request=True,
    )
    for index in (0, 1):
        faults = plan.for_request(index)
        assert faults.before_headers
        assert not faults.shapes_body
    assert plan.for_request(2).shapes_body


def test_stall_and_truncation_hit_the_first_body_request() -> None:
    plan = FaultPlan(fail_first=2, stall_after_bytes=10, stall_ms=250, truncate_after_bytes=500)
    first, second = plan.for_request(2), plan.for_request(3)
    assert (first.stall_after_bytes, first.stall_ms) == (10, 250)
    assert first.truncate_after_bytes == 500
    assert first.cut_after_bytes == 500
    assert "truncated after 500 bytes" in (first.describe() or "")
    assert "stalled 250 ms after 10 bytes" in (first.describe() or "")
    assert (second.stall_after_bytes, second.stall_ms, second.truncate_after_bytes) == (
        None,
        0.0,
        None,
    )
    assert second.describe() is None

    every = FaultPlan(stall_after_bytes=10, stall_ms=250, stall_every_request=True)
    assert all(every.for_request(i).stall_after_bytes == 10 for i in range(4))


def test_link_faults_hit_every_body_request() -> None:
    plan = FaultPlan(bandwidth_kbps=64, jitter_ms=3, fail_first=1)
    for index in (1, 2, 10):
        faults = plan.for_request(index)
        assert (faults.bandwidth_kbps, faults.jitter_ms) == (64, 3)
        assert faults.describe() == "limited to 64 kbit/s, jitter up to 3 ms"


def test_the_earlier_cut_wins() -> None:
    assert FaultPlan(drop_after_bytes=(300,), truncate_after_bytes=500).for_request(
        0
    ).cut_after_bytes == (300)
    assert FaultPlan(drop_after_bytes=(900,), truncate_after_bytes=500).for_request(
        0
    ).cut_after_bytes == (500)


def test_failure_errors_and_retry_after() -> None:
    for status in FAIL_STATUSES:
        faults = FaultPlan(fail_first=1, fail_status=status).for_request(0)
        kind, code, message = faults.error()
        assert kind in ("server_error", "requests")
        assert message
        assert faults.error_headers() == ()
        assert (code == "rate_limit_exceeded") == (status == 429)
    faults = FaultPlan(fail_first=1, retry_after=0.25).for_request(0)
    assert dict(faults.error_headers()) == {"retry-after": "0.25", "retry-after-ms": "250"}
    assert faults.describe() == "failed with 503 (Retry-After 0.25)"
    faults = FaultPlan(fail_first=1, retry_after=2).for_request(0)
    assert dict(faults.error_headers()) == {"retry-after": "2", "retry-after-ms": "2000"}
    with pytest.raises(ValueError, match="does not fail"):
        FaultPlan().for_request(0).error()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0"),
        (3, "3"),
        (2.0, "2"),
        (0.5, "0.5"),
        (1.25, "1.25"),
        (0.0004, "0"),
        (0.1239, "0.124"),
    ],
)
def test_retry_after_value(seconds: float, text: str) -> None:
    assert retry_after_value(seconds) == text
    assert float(text) == pytest.approx(seconds, abs=5e-4)


def test_drop_after_bytes_takes_any_sequence() -> None:
    assert FaultPlan(drop_after_bytes=[5, 0]).drop_after_bytes == (5, 0)  # type: ignore[arg-type]
    assert FaultPlan(drop_after_bytes=[5]) == FaultPlan(drop_after_bytes=(5,))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"seed": 1.5}, "seed"),
        ({"seed": True}, "seed"),
        ({"drop_after_bytes": (10, -1)}, "drop_after_bytes"),
        ({"drop_after_bytes": (1.5,)}, "drop_after_bytes"),
        ({"drop_after_bytes": "100"}, "drop_after_bytes"),
        ({"drop_after_bytes": 100}, "drop_after_bytes"),
        ({"stall_after_bytes": 10}, "stall_ms"),
        ({"stall_ms": 10}, "stall_after_bytes"),
        ({"stall_after_bytes": -1, "stall_ms": 10}, "stall_after_bytes"),
        ({"stall_after_bytes": 1, "stall_ms": -10}, "stall_ms"),
        ({"stall_after_bytes": 1, "stall_ms": float("inf")}, "stall_ms"),
        ({"stall_every_request": True}, "stall_every_request"),
        ({"bandwidth_kbps": 0}, "bandwidth_kbps"),
        ({"bandwidth_kbps": -5}, "bandwidth_kbps"),
        ({"bandwidth_kbps": float("nan")}, "bandwidth_kbps"),
        ({"jitter_ms": -1}, "jitter_ms"),
        ({"fail_first": -1}, "fail_first"),
        ({"fail_first": 1, "fail_status": 404}, "fail_status"),
        ({"fail_first": 1, "fail_status": "503"}, "fail_status"),
        ({"fail_first": 1, "retry_after": -1}, "retry_after"),
        ({"retry_after": 1}, "fail_first"),
        ({"close_before_headers": -2}, "close_before_headers"),
        ({"truncate_after_bytes": -1}, "truncate_after_bytes"),
    ],
)
def test_invalid_plans_raise_config_error(options: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        FaultPlan(**options)


def test_parse_byte_counts() -> None:
    assert parse_byte_counts("100") == (100,)
    assert parse_byte_counts("100, 0,2000") == (100, 0, 2000)
    for bad in ("", "1,,2", "x", "1.5", "-3", "1,-3"):
        with pytest.raises(ConfigError, match="byte counts"):
            parse_byte_counts(bad)


# --------------------------------------------------------------------------------------
# The shaper: when each byte goes out


def test_without_faults_the_schedule_is_unchanged() -> None:
    pieces = [*schedule(5), (0.2, b""), (0.2, b"tail")]
    sends = RequestFaults(index=0).schedule(pieces)
    assert [(s.at, s.data, s.close) for s in sends] == [(d, p, False) for d, p in pieces]


@pytest.mark.parametrize("cut", [0, 1, 99, 100, 101, 250, 499])
def test_drop_cuts_after_exactly_n_bytes(cut: int) -> None:
    pieces = schedule(5)  # 500 bytes, pieces due at 0.1, 0.12, ... 0.18
    sends = FaultPlan(drop_after_bytes=(cut,)).for_request(0).schedule(pieces)
    body = b"".join(p for _, p in pieces)
    assert body_of(sends) == body[:cut]
    assert sends[-1].close
    assert sends[-1].data == b""
    assert not any(s.close for s in sends[:-1])
    # Closed when byte ``cut`` would have gone out: with the piece that holds it.
    assert sends[-1].at == pytest.approx(0.1 + (cut // 100) * 0.02)
    # The first send carries the headers, at the first piece's time.
    assert sends[0].at == pytest.approx(0.1)


@pytest.mark.parametrize("cut", [500, 501, 10**6])
def test_a_body_no_longer_than_the_drop_is_sent_whole(cut: int) -> None:
    pieces = schedule(5)
    sends = FaultPlan(drop_after_bytes=(cut,)).for_request(0).schedule(pieces)
    assert [(s.at, s.data) for s in sends] == pieces
    assert not any(s.close for s in sends)


def test_nothing_is_sent_after_the_cut() -> None:
    shaper = FaultPlan(truncate_after_bytes=150).for_request(0).shaper()
    first = shaper.feed(0.0, b"a" * 100)
    assert (body_of(first), shaper.cut, shaper.sent) == (b"a" * 100, False, 100)
    second = shaper.feed(0.5, b"b" * 100)
    assert body_of(second) == b"b" * 50
    assert second[-1] == Send(0.5, b"", close=True)
    assert (shaper.cut, shaper.sent) == (True, 150)
    assert shaper.feed(0.6, b"c" * 100) == []


def test_applied_says_what_hit_the_body() -> None:
    plan = FaultPlan(
        drop_after_bytes=(250, 10**6),
        stall_after_bytes=150,
        stall_ms=20,
        stall_every_request=True,
        jitter_ms=1,
        bandwidth_kbps=100,
    )
    shaper = plan.for_request(0).shaper()
    assert shaper.applied() is None
    shaper.feed(0.0, bytes(100))
    assert shaper.applied() == "limited to 100 kbit/s, jitter up to 1 ms"
    shaper.feed(0.0, bytes(100))
    assert shaper.applied() == (
        "stalled 20 ms after 150 bytes, limited to 100 kbit/s, jitter up to 1 ms"
    )
    shaper.feed(0.0, bytes(100))
    assert shaper.applied() == (
        "dropped after 250 bytes, stalled 20 ms after 150 bytes, limited to 100 kbit/s, "
        "jitter up to 1 ms"
    )
    # A body too short for the drop and the stall: only the link and the jitter.
    shaper = plan.for_request(1).shaper()
    shaper.feed(0.0, bytes(150))
    assert shaper.applied() == "limited to 100 kbit/s, jitter up to 1 ms"
    # Truncation and drop: the earlier cut is the one that happened.
    for drop, truncate, expected in ((100, 200, "dropped"), (300, 200, "truncated")):
        shaper = (
            FaultPlan(drop_after_bytes=(drop,), truncate_after_bytes=truncate)
            .for_request(0)
            .shaper()
        )
        shaper.feed(0.0, bytes(1000))
        assert shaper.applied() == f"{expected} after {min(drop, truncate)} bytes"


def test_drop_at_zero_sends_only_the_headers() -> None:
    sends = FaultPlan(drop_after_bytes=(0,)).for_request(0).schedule(schedule(3))
    assert sends == [Send(0.1, b"", close=True)]


@pytest.mark.parametrize("offset", [0, 50, 100, 230])
def test_stall_delays_every_byte_from_the_offset(offset: int) -> None:
    pieces = schedule(5)
    plain = RequestFaults(index=0).schedule(pieces)
    sends = FaultPlan(stall_after_bytes=offset, stall_ms=300).for_request(0).schedule(pieces)
    body = b"".join(p for _, p in pieces)
    assert body_of(sends) == body
    assert sends[0].at == pytest.approx(0.1)  # the headers are not held back
    for byte in range(len(body)):
        expected = time_of_byte(plain, byte) + (0.3 if byte >= offset else 0.0)
        assert time_of_byte(sends, byte) == pytest.approx(expected), byte
    if offset:  # the gap in arrival: stall_ms, plus the pacing if on a piece boundary
        gap = time_of_byte(sends, offset) - time_of_byte(sends, offset - 1)
        assert gap == pytest.approx(0.3 + (0.02 if offset % 100 == 0 else 0.0))


def test_stall_on_an_unpaced_body_is_one_gap() -> None:
    pieces = [(0.05, bytes(1000)) for _ in range(4)]
    sends = FaultPlan(stall_after_bytes=1500, stall_ms=200).for_request(0).schedule(pieces)
    assert arrival(sends) == [
        pytest.approx((0.05, 1000)),
        pytest.approx((0.05, 1500)),
        pytest.approx((0.25, 2000)),
        pytest.approx((0.25, 3000)),
        pytest.approx((0.25, 4000)),
    ]


def test_stall_past_the_end_changes_nothing() -> None:
    pieces = schedule(3)
    sends = FaultPlan(stall_after_bytes=300, stall_ms=100).for_request(0).schedule(pieces)
    assert [(s.at, s.data) for s in sends] == pieces


@pytest.mark.parametrize("kbps", [8, 64, 333.3])
def test_bandwidth_of_an_unpaced_body(kbps: float) -> None:
    size = 6000
    pieces = [(0.2, bytes(range(256)) * 4)] * (size // 1024) + [(0.2, bytes(size % 1024))]
    sends = FaultPlan(bandwidth_kbps=kbps).for_request(0).schedule(pieces)
    assert body_of(sends) == b"".join(p for _, p in pieces)
    assert sends[0] == Send(0.2, b"")  # the headers at the due time
    # Each segment leaves when its last byte has: the rate is exactly the link's.
    segment = int(kbps * 1000 / 8 * 0.01)
    for at, sent in arrival(sends)[1:]:
        assert at == pytest.approx(0.2 + sent * 8 / (kbps * 1000))
    assert max(len(s.data) for s in sends) == segment
    assert sends[-1].at == pytest.approx(0.2 + size * 8 / (kbps * 1000))


def test_bandwidth_above_the_pace_only_delays_each_piece() -> None:
    # 100-byte pieces every 20 ms is 40 kbit/s: a 400 kbit/s link keeps up, adding the
    # 2 ms that each piece takes to cross it.
    sends = FaultPlan(bandwidth_kbps=400).for_request(0).schedule(schedule(5))
    assert [s.at for s in sends[1:]] == pytest.approx([0.1 + k * 0.02 + 0.002 for k in range(5)])


def test_bandwidth_below_the_pace_sets_the_pace() -> None:
    # A 20 kbit/s link takes 40 ms per 100-byte piece: it falls behind the 20 ms pace.
    sends = FaultPlan(bandwidth_kbps=20).for_request(0).schedule(schedule(5, step=0.02))
    assert sends[-1].at == pytest.approx(0.1 + 5 * 0.04)
    assert max(len(s.data) for s in sends) == 25


def test_jitter_is_a_bounded_latency_and_deterministic() -> None:
    pieces = schedule(200)
    plan = FaultPlan(seed=7, jitter_ms=5)
    sends = plan.for_request(0).schedule(pieces)
    assert body_of(sends) == b"".join(p for _, p in pieces)
    delays = [s.at - due for s, (due, _) in zip(sends, pieces, strict=True)]
    assert all(-EPS <= d < 0.005 + EPS for d in delays)
    assert max(delays) > 0.004  # spread over the range ...
    assert min(delays) < 0.001
    assert len({round(d, 9) for d in delays}) > 150  # ... and different for each piece
    assert [s.at for s in sends] == sorted(s.at for s in sends)
    # The same seed and request: the same times; another seed or request: others.
    assert plan.for_request(0).schedule(pieces) == sends
    assert FaultPlan(seed=7, jitter_ms=5).for_request(0).schedule(pieces) == sends
    assert FaultPlan(seed=8, jitter_ms=5).for_request(0).schedule(pieces) != sends
    assert plan.for_request(1).schedule(pieces) != sends


def test_jitter_does_not_add_up() -> None:
    # An unpaced body: every piece is due at once, and ends within jitter_ms of it.
    pieces = [(1.0, bytes(10))] * 500
    sends = FaultPlan(seed=1, jitter_ms=20).for_request(3).schedule(pieces)
    assert sends[-1].at < 1.0 + 0.02
    assert sends[-1].at > 1.0 + 0.019  # the running maximum of 500 draws
    assert [s.at for s in sends] == sorted(s.at for s in sends)


def test_jitter_is_the_same_in_another_process() -> None:
    pieces = schedule(20)
    sends = FaultPlan(seed=3, jitter_ms=10).for_request(2).schedule(pieces)
    code = (
        "from trio_tts_stream.server._faults import FaultPlan\n"
        f"pieces = {pieces!r}\n"
        "sends = FaultPlan(seed=3, jitter_ms=10).for_request(2).schedule(pieces)\n"
        "print(repr([s.at for s in sends]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "4321"},
        timeout=60,
    )
    assert out.stdout.strip() == repr([s.at for s in sends])


def test_every_fault_at_once() -> None:
    pieces = schedule(10)
    plan = FaultPlan(
        seed=5,
        jitter_ms=4,
        stall_after_bytes=250,
        stall_ms=100,
        bandwidth_kbps=80,
        truncate_after_bytes=700,
    )
    sends = plan.for_request(0).schedule(pieces)
    body = b"".join(p for _, p in pieces)
    assert body_of(sends) == body[:700]
    assert sends[-1].close
    assert sends[0].at < 0.1 + 0.004
    assert time_of_byte(sends, 250) - time_of_byte(sends, 249) >= 0.1
    assert [s.at for s in sends] == sorted(s.at for s in sends)
    assert plan.for_request(0).schedule(pieces) == sends


def test_feeding_piece_by_piece_is_the_schedule() -> None:
    pieces = schedule(30, size=77)
    faults = FaultPlan(
        seed=2, jitter_ms=3, stall_after_bytes=500, stall_ms=50, bandwidth_kbps=50
    ).for_request(0)
    shaper = faults.shaper()
    fed: list[Send] = []
    for due, piece in pieces:
        fed += shaper.feed(due, piece)
    assert fed == faults.schedule(pieces)
    assert shaper.sent == 30 * 77
    assert not shaper.cut


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 300), min_size=1, max_size=12),
    step=st.sampled_from([0.0, 0.01, 0.02]),
    seed=st.integers(0, 3),
    jitter_ms=st.sampled_from([0.0, 3.0]),
    stall=st.none() | st.tuples(st.integers(0, 2000), st.sampled_from([1.0, 250.0])),
    kbps=st.none() | st.sampled_from([8.0, 64.0, 1000.0]),
    cut=st.none() | st.integers(0, 2000),
)
def test_shaper_invariants(
    sizes: list[int],
    step: float,
    seed: int,
    jitter_ms: float,
    stall: tuple[int, float] | None,
    kbps: float | None,
    cut: int | None,
) -> None:
    pieces = [(0.1 + k * step, bytes([k]) * size) for k, size in enumerate(sizes)]
    body = b"".join(p for _, p in pieces)
    plan = FaultPlan(
        seed=seed,
        jitter_ms=jitter_ms,
        stall_after_bytes=None if stall is None else stall[0],
        stall_ms=0.0 if stall is None else stall[1],
        bandwidth_kbps=kbps,
        drop_after_bytes=() if cut is None else (cut,),
    )
    sends = plan.for_request(0).schedule(pieces)
    cut_short = cut is not None and cut < len(body)
    # The body, or its first ``cut`` bytes, in order, at times that never go back.
    assert body_of(sends) == (body[:cut] if cut_short else body)
    assert [s.close for s in sends] == [False] * (len(sends) - 1) + [cut_short]
    assert all(b.at >= a.at for a, b in itertools.pairwise(sends))
    # The headers go out at the first piece's time plus at most the jitter.
    assert 0.1 - EPS <= sends[0].at < 0.1 + jitter_ms / 1000 + EPS
    # No byte goes out before its piece is due, nor faster than the link.
    offset = 0
    for due, piece in pieces:
        if piece and offset < len(body_of(sends)):
            assert time_of_byte(sends, offset) >= due - EPS
        offset += len(piece)
    if kbps is not None:
        for send in sends:
            assert len(send.data) <= max(1, int(kbps * 1000 / 8 * 0.01))
        sent = len(body_of(sends))
        assert sends[-1].at >= 0.1 + sent * 8 / (kbps * 1000) - EPS
    if stall is not None:
        # Every byte from the stall point on goes out stall_ms later (exactly, but for
        # the link's segments, which start afresh at the stall point).
        unstalled = replace(plan, stall_after_bytes=None, stall_ms=0.0)
        plain = unstalled.for_request(0).schedule(pieces)
        assert body_of(plain) == body_of(sends)
        slack = 0.01 if kbps is not None else 0.0
        for byte in range(len(body_of(sends))):
            shift = stall[1] / 1000 if byte >= stall[0] else 0.0
            moved = time_of_byte(sends, byte) - time_of_byte(plain, byte) - shift
            assert abs(moved) <= slack + EPS


def test_module_all() -> None:
    assert set(_faults.__all__) == {
        "FAIL_STATUSES",
        "FaultPlan",
        "RequestFaults",
        "Send",
        "Shaper",
        "parse_byte_counts",
        "retry_after_value",
    }
