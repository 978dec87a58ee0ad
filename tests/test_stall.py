"""The pure stall watch: when a pause in a body means a dead connection."""

from __future__ import annotations

import pytest

from trio_tts_stream._stall import StallPolicy, StallWatch

POLICY = StallPolicy(stall_s=2.0, dead_s=15.0, first_byte_s=30.0)


def test_first_byte_waits_the_read_timeout_and_is_not_a_pause() -> None:
    watch = StallWatch(POLICY)
    assert watch.patience(0, got_body=False) == 30.0
    assert watch.on_pause_ended(20.0, got_body=False) is False  # thinking time, not a pause
    assert watch.stalls == 0
    assert watch.longest_pause_s == 0.0


def test_a_long_pause_after_audio_is_ridden_out_and_counted() -> None:
    watch = StallWatch(POLICY)
    assert watch.patience(1000, got_body=True) == 15.0  # far beyond stall_s
    assert watch.on_pause_ended(1.0, got_body=True) is False
    assert watch.on_pause_ended(6.0, got_body=True) is True
    assert watch.stalls == 1
    assert watch.longest_pause_s == 6.0


def test_patience_grows_with_the_longest_pause_survived() -> None:
    watch = StallWatch(POLICY)
    watch.on_pause_ended(12.0, got_body=True)
    assert watch.patience(5000, got_body=True) == 24.0  # margin x longest
    assert watch.patience(0, got_body=False) == 30.0  # the first-byte wait is separate


def test_a_restall_at_the_same_place_escalates_the_wait() -> None:
    watch = StallWatch(POLICY)
    watch.on_dead(50_000)
    assert watch.stalls == 1
    assert watch.patience(50_000 + 4096, got_body=True) == 30.0  # same place: doubled
    assert watch.patience(10_000, got_body=True) == 15.0  # earlier in the re-request: not
    watch.on_dead(50_100)
    assert watch.patience(50_000, got_body=True) == 60.0  # and again
    watch.on_dead(200_000)  # somewhere else: a new place, one doubling there
    assert watch.patience(200_000, got_body=True) == 30.0
    assert watch.patience(50_000, got_body=True) == 15.0


def test_headers_then_nothing_twice_escalates_the_first_byte_wait() -> None:
    watch = StallWatch(POLICY)
    watch.on_dead(0)
    assert watch.patience(0, got_body=False) == 60.0


@pytest.mark.parametrize("pause", [1.99, 2.0])
def test_stall_threshold_is_inclusive(pause: float) -> None:
    watch = StallWatch(POLICY)
    assert watch.on_pause_ended(pause, got_body=True) is (pause >= 2.0)
