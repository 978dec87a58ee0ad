"""Tests for the SPSC ring buffer and the consumer's playout logic (``_ringbuffer.py``).

Frames carry distinct values (frame index and channel encoded in the sample), so any
reordering, duplication or loss shows up. Hypothesis checks the ring and the playout
against plain Python models under random interleavings of writes, reads, gate changes
and discards. The thread races are replayed deterministically: a tracer runs the other
thread's action before *every* bytecode of one side in turn (the points where the GIL
can switch threads).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import tracemalloc
from collections import deque
from collections.abc import Callable, Collection
from types import CodeType, FrameType
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_tts_stream._ringbuffer import _MAX_MARKS, Gate, Playout, RingBuffer, SinkStatistics

Array = npt.NDArray[Any]
DTYPES = [np.int16, np.float32]
CHANNELS = [1, 2]


def frames(start: int, n: int, channels: int, dtype: npt.DTypeLike = np.int16) -> Array:
    """``n`` distinct frames: sample (i, c) = (start + i) * channels + c (+1, so never 0)."""
    index = np.arange(start, start + n, dtype=np.int64)[:, None] * channels
    values = index + np.arange(channels, dtype=np.int64)[None, :] + 1
    return (values % 30000).astype(dtype)


def frames_at(indices: list[int], channels: int, dtype: npt.DTypeLike) -> Array:
    """The frames :func:`frames` gives for each index in ``indices``."""
    index = np.array(indices, dtype=np.int64).reshape(-1, 1) * channels
    values = index + np.arange(channels, dtype=np.int64)[None, :] + 1
    return (values % 30000).astype(dtype)


class WakeCounter:
    """Stands in for ``TrioToken.run_sync_soon``: counts calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def make_playout(
    capacity: int = 64,
    channels: int = 1,
    sample_rate: int = 1000,
    dtype: npt.DTypeLike = np.int16,
) -> tuple[Playout, WakeCounter]:
    wake = WakeCounter()
    return Playout(capacity, channels, sample_rate, dtype, wake=wake), wake


def garbage(n: int, channels: int, dtype: npt.DTypeLike) -> Array:
    """An output block full of non-zero junk, to see what ``fill`` overwrites."""
    return np.full((n, channels), 7, dtype=dtype)


def check_accounting(playout: Playout) -> SinkStatistics:
    """Every frame written is played, dropped or still buffered; return the statistics."""
    stats = playout.statistics()
    ring = playout.ring
    assert stats.frames_played + stats.frames_dropped + stats.buffered == stats.frames_written
    assert 0 <= stats.buffered <= ring.capacity
    assert 0 <= ring.free <= ring.capacity
    assert 0 <= ring.frames_read <= ring.frames_written
    assert min(stats.frames_played, stats.frames_dropped) >= 0
    return stats


# -- RingBuffer --------------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [0, -1, -100])
def test_ring_rejects_empty_capacity(capacity: int) -> None:
    with pytest.raises(ValueError, match="capacity"):
        RingBuffer(capacity, 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", CHANNELS)
def test_ring_initial_state(dtype: npt.DTypeLike, channels: int) -> None:
    ring = RingBuffer(10, channels, dtype)
    assert ring.capacity == 10
    assert ring.channels == channels
    assert ring.dtype == np.dtype(dtype)
    assert ring.buffered == 0
    assert ring.free == 10
    assert ring.frames_written == 0
    assert ring.frames_read == 0
    assert ring.frames_dropped == 0


def test_ring_default_dtype_is_int16() -> None:
    assert RingBuffer(4, 1).dtype == np.dtype(np.int16)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", CHANNELS)
def test_ring_write_then_read(dtype: npt.DTypeLike, channels: int) -> None:
    ring = RingBuffer(16, channels, dtype)
    data = frames(0, 10, channels, dtype)
    assert ring.write(data) == 10
    assert (ring.buffered, ring.free, ring.frames_written) == (10, 6, 10)
    out = np.zeros((10, channels), dtype=dtype)
    assert ring.read_into(out) == 10
    np.testing.assert_array_equal(out, data)
    assert (ring.buffered, ring.free, ring.frames_read) == (0, 16, 10)


def test_ring_write_copies_its_input() -> None:
    ring = RingBuffer(8, 1)
    data = frames(0, 4, 1)
    ring.write(data)
    expected = data.copy()
    data[:] = 0
    out = np.zeros((4, 1), dtype=np.int16)
    ring.read_into(out)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("channels", CHANNELS)
def test_ring_wraparound(channels: int) -> None:
    ring = RingBuffer(8, channels)
    ring.write(frames(0, 6, channels))
    out = np.zeros((4, channels), dtype=np.int16)
    assert ring.read_into(out) == 4
    np.testing.assert_array_equal(out, frames(0, 4, channels))
    # 6 more frames: 2 fit before the end of the storage, 4 wrap to the start.
    assert ring.write(frames(6, 6, channels)) == 6
    assert ring.buffered == 8
    assert ring.free == 0
    out = np.zeros((8, channels), dtype=np.int16)
    assert ring.read_into(out) == 8
    np.testing.assert_array_equal(out, frames(4, 8, channels))
    assert ring.frames_written == 12
    assert ring.frames_read == 12


def test_ring_read_wraps_in_two_pieces() -> None:
    ring = RingBuffer(5, 1)
    ring.write(frames(0, 4, 1))
    ring.read_into(np.zeros((3, 1), dtype=np.int16))
    ring.write(frames(4, 4, 1))  # storage now holds frames 5,6,7 | 3,4 (read starts at 3)
    out = np.zeros((5, 1), dtype=np.int16)
    assert ring.read_into(out) == 5
    np.testing.assert_array_equal(out, frames(3, 5, 1))


def test_ring_partial_write_when_nearly_full() -> None:
    ring = RingBuffer(8, 2)
    assert ring.write(frames(0, 5, 2)) == 5
    # Only the 3 leading frames fit.
    assert ring.write(frames(5, 10, 2)) == 3
    assert ring.free == 0
    assert ring.frames_written == 8
    out = np.zeros((8, 2), dtype=np.int16)
    ring.read_into(out)
    np.testing.assert_array_equal(out, frames(0, 8, 2))


def test_ring_write_when_full_writes_nothing() -> None:
    ring = RingBuffer(4, 1)
    assert ring.write(frames(0, 10, 1)) == 4
    assert ring.write(frames(4, 1, 1)) == 0
    assert ring.frames_written == 4
    out = np.zeros((4, 1), dtype=np.int16)
    ring.read_into(out)
    np.testing.assert_array_equal(out, frames(0, 4, 1))


def test_ring_empty_write_and_read() -> None:
    ring = RingBuffer(4, 1)
    assert ring.write(np.zeros((0, 1), dtype=np.int16)) == 0
    out = np.full((3, 1), 9, dtype=np.int16)
    assert ring.read_into(out) == 0
    np.testing.assert_array_equal(out, 9)  # untouched
    assert ring.frames_read == 0


def test_ring_read_into_with_limit_leaves_the_rest_of_out_alone() -> None:
    ring = RingBuffer(16, 1)
    ring.write(frames(0, 10, 1))
    out = np.full((8, 1), -5, dtype=np.int16)
    assert ring.read_into(out, limit=3) == 3
    np.testing.assert_array_equal(out[:3], frames(0, 3, 1))
    np.testing.assert_array_equal(out[3:], -5)
    assert ring.buffered == 7
    assert ring.read_into(out, limit=0) == 0
    assert ring.read_into(out, limit=-2) == 0
    assert ring.buffered == 7


def test_ring_read_into_limit_above_what_is_buffered() -> None:
    ring = RingBuffer(16, 1)
    ring.write(frames(0, 2, 1))
    out = np.full((8, 1), -5, dtype=np.int16)
    assert ring.read_into(out, limit=6) == 2
    np.testing.assert_array_equal(out[:2], frames(0, 2, 1))
    np.testing.assert_array_equal(out[2:], -5)


def test_ring_read_into_limit_larger_than_out_copies_at_most_len_out() -> None:
    # "Copy up to len(out) (or limit) frames into out": a limit larger than the block
    # must not make it copy more frames than ``out`` has room for.
    ring = RingBuffer(16, 1)
    ring.write(frames(0, 10, 1))
    out = np.zeros((4, 1), dtype=np.int16)
    assert ring.read_into(out, limit=6) == 4
    np.testing.assert_array_equal(out, frames(0, 4, 1))
    assert ring.frames_read == 4


def test_ring_request_discard_hides_the_frames_at_once() -> None:
    ring = RingBuffer(8, 1)
    ring.write(frames(0, 6, 1))
    ring.read_into(np.zeros((2, 1), dtype=np.int16))
    assert ring.request_discard() == 4
    # The producer sees the discard at once...
    assert ring.buffered == 0
    assert ring.frames_dropped == 4
    # ...but only the consumer moves the read position, so the room comes back when it
    # applies the discard.
    assert ring.frames_read == 2
    assert ring.free == 4
    ring.apply_discard()
    assert (ring.frames_read, ring.frames_dropped, ring.buffered, ring.free) == (6, 4, 0, 8)
    ring.apply_discard()  # nothing pending: a no-op
    assert (ring.frames_read, ring.frames_dropped, ring.free) == (6, 4, 8)
    # The ring keeps working after a discard, across the wrap point.
    assert ring.write(frames(100, 8, 1)) == 8
    out = np.zeros((8, 1), dtype=np.int16)
    assert ring.read_into(out) == 8
    np.testing.assert_array_equal(out, frames(100, 8, 1))
    assert (ring.frames_written, ring.frames_read, ring.frames_dropped) == (14, 14, 4)


def test_ring_request_discard_of_nothing() -> None:
    ring = RingBuffer(8, 1)
    assert ring.request_discard() == 0
    ring.apply_discard()
    assert (ring.frames_read, ring.frames_dropped, ring.free) == (0, 0, 8)
    ring.write(frames(0, 3, 1))
    ring.read_into(np.zeros((3, 1), dtype=np.int16))
    assert ring.request_discard() == 0
    assert ring.frames_dropped == 0
    ring.apply_discard()
    assert (ring.frames_read, ring.frames_dropped) == (3, 0)


def test_ring_read_into_applies_a_pending_discard_first() -> None:
    ring = RingBuffer(16, 2)
    ring.write(frames(0, 6, 2))
    assert ring.request_discard() == 6
    out = np.full((4, 2), -5, dtype=np.int16)
    assert ring.read_into(out) == 0  # the discarded frames are never read
    np.testing.assert_array_equal(out, -5)
    assert (ring.frames_read, ring.frames_dropped, ring.free) == (6, 6, 16)
    # Frames written after the request survive it.
    ring.write(frames(0, 5, 2))
    assert ring.request_discard() == 5
    ring.write(frames(100, 3, 2))
    assert ring.buffered == 3
    assert ring.frames_dropped == 11
    out = np.full((8, 2), -5, dtype=np.int16)
    assert ring.read_into(out) == 3
    np.testing.assert_array_equal(out[:3], frames(100, 3, 2))
    np.testing.assert_array_equal(out[3:], -5)
    assert (ring.frames_read, ring.frames_dropped, ring.buffered) == (14, 11, 0)


def test_ring_requests_accumulate_until_applied() -> None:
    ring = RingBuffer(8, 1)
    ring.write(frames(0, 4, 1))
    assert ring.request_discard() == 4
    ring.write(frames(4, 3, 1))
    assert ring.request_discard() == 3  # only what was written since the last request
    assert ring.request_discard() == 0
    assert (ring.buffered, ring.frames_dropped, ring.free) == (0, 7, 1)
    assert ring.write(frames(7, 5, 1)) == 1  # the undrained discard still takes room
    ring.apply_discard()
    assert (ring.frames_read, ring.frames_dropped, ring.buffered, ring.free) == (7, 7, 1, 7)
    out = np.zeros((4, 1), dtype=np.int16)
    assert ring.read_into(out) == 1
    np.testing.assert_array_equal(out[:1], frames(7, 1, 1))


def test_ring_read_into_with_limit_after_a_discard() -> None:
    ring = RingBuffer(16, 1)
    ring.write(frames(0, 4, 1))
    ring.request_discard()
    ring.write(frames(50, 6, 1))
    out = np.zeros((8, 1), dtype=np.int16)
    assert ring.read_into(out, limit=5) == 5  # min(len(out), buffered, limit)
    np.testing.assert_array_equal(out[:5], frames(50, 5, 1))
    assert ring.read_into(out, limit=5) == 1
    np.testing.assert_array_equal(out[:1], frames(55, 1, 1))


def test_ring_capacity_one() -> None:
    ring = RingBuffer(1, 2)
    out = np.zeros((1, 2), dtype=np.int16)
    for i in range(5):
        assert ring.write(frames(i, 3, 2)) == 1
        assert ring.write(frames(i, 1, 2)) == 0
        assert ring.read_into(out) == 1
        np.testing.assert_array_equal(out, frames(i, 1, 2))


RingOp = tuple[str, int, int | None]

# ("write", n, None), ("read", block, limit), ("request", 0, None) or ("apply", 0, None).
# Strategies are built once: building them inside a composite strategy makes hypothesis
# several times slower.
RING_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 40), st.none()),
        st.tuples(st.just("read"), st.integers(0, 40), st.none() | st.integers(-2, 50)),
        st.tuples(st.sampled_from(["request", "apply"]), st.just(0), st.none()),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(capacity=st.integers(1, 33), channels=st.integers(1, 3), ops=RING_OPS)
def test_ring_matches_a_list_model(capacity: int, channels: int, ops: list[RingOp]) -> None:
    ring = RingBuffer(capacity, channels, np.int32)
    live: deque[int] = deque()  # frame indices still to be read, oldest first
    pending = 0  # frames discarded but not yet stepped over by the consumer
    next_frame = 0
    written = read = dropped = 0
    for kind, n, limit in ops:
        before = (ring.frames_written, ring.frames_read, ring.frames_dropped)
        if kind == "write":
            got = ring.write(frames(next_frame, n, channels, np.int32))
            assert got == min(n, capacity - len(live) - pending)
            live.extend(range(next_frame, next_frame + got))
            next_frame += n  # frames that did not fit are lost, like the caller's tail
            written += got
        elif kind == "read":
            out = np.full((n, channels), -1, dtype=np.int32)
            got = ring.read_into(out, limit)
            read += pending  # the consumer applies a pending discard first
            pending = 0
            want = max(0, min(n, len(live), n if limit is None else limit))
            assert got == want
            expected = [live.popleft() for _ in range(got)]
            np.testing.assert_array_equal(out[:got], frames_at(expected, channels, np.int32))
            np.testing.assert_array_equal(out[got:], -1)
            read += got
        elif kind == "request":
            assert ring.request_discard() == len(live)
            pending += len(live)
            dropped += len(live)
            live.clear()
        else:
            ring.apply_discard()
            read += pending
            pending = 0
        assert ring.frames_written == written >= before[0]
        assert ring.frames_read == read >= before[1]
        assert ring.frames_dropped == dropped >= before[2]
        assert ring.buffered == len(live) <= capacity
        assert ring.free == capacity - len(live) - pending


# -- Playout: gates ----------------------------------------------------------------------


def test_playout_initial_state() -> None:
    playout, wake = make_playout(capacity=32, channels=2, sample_rate=8000)
    assert playout.gate is Gate.PAUSED
    assert playout.sample_rate == 8000
    assert not playout.starved
    assert playout.heard_until == -math.inf
    assert not playout.want_space
    assert not playout.same_thread
    assert playout.statistics() == SinkStatistics(
        frames_written=0,
        frames_played=0,
        frames_dropped=0,
        buffered=0,
        capacity=32,
        gate=Gate.PAUSED,
        starved=False,
        underruns=0,
        underrun_frames=0,
        level_min=-1,
        level_sum=0,
        level_count=0,
    )
    assert wake.calls == 0


def test_playout_without_wake_callback() -> None:
    playout = Playout(8, 1, 1000)
    playout.set_gate(Gate.RUNNING)
    playout.fill(np.zeros((4, 1), dtype=np.int16), 0.0)  # underrun wakes a no-op
    assert playout.underruns == 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", CHANNELS)
def test_paused_emits_zeros_and_consumes_nothing(dtype: npt.DTypeLike, channels: int) -> None:
    playout, wake = make_playout(channels=channels, dtype=dtype)
    playout.ring.write(frames(0, 20, channels, dtype))
    out = garbage(16, channels, dtype)
    playout.fill(out, 1.0)
    np.testing.assert_array_equal(out, 0)
    assert playout.ring.frames_read == 0
    assert playout.ring.buffered == 20
    stats = playout.statistics()
    assert (stats.underruns, stats.underrun_frames, stats.starved) == (0, 0, False)
    assert (stats.level_min, stats.level_sum, stats.level_count) == (-1, 0, 0)
    assert wake.calls == 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", CHANNELS)
def test_running_with_enough_data_copies_exactly(dtype: npt.DTypeLike, channels: int) -> None:
    playout, wake = make_playout(channels=channels, dtype=dtype)
    playout.ring.write(frames(0, 50, channels, dtype))
    playout.set_gate(Gate.RUNNING)
    out = garbage(20, channels, dtype)
    playout.fill(out, 0.0)
    np.testing.assert_array_equal(out, frames(0, 20, channels, dtype))
    playout.fill(out, 0.02)
    np.testing.assert_array_equal(out, frames(20, 20, channels, dtype))
    assert playout.ring.frames_read == 40
    assert playout.gate is Gate.RUNNING
    assert playout.underruns == 0
    assert playout.underrun_frames == 0
    assert not playout.starved
    assert wake.calls == 0


def test_running_with_exactly_one_block_is_not_an_underrun() -> None:
    playout, _ = make_playout()
    playout.ring.write(frames(0, 16, 1))
    playout.set_gate(Gate.RUNNING)
    playout.fill(garbage(16, 1, np.int16), 0.0)
    assert playout.underruns == 0
    assert playout.gate is Gate.RUNNING


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", CHANNELS)
def test_running_dry_is_one_underrun(dtype: npt.DTypeLike, channels: int) -> None:
    playout, wake = make_playout(channels=channels, dtype=dtype)
    playout.ring.write(frames(0, 12, channels, dtype))
    playout.set_gate(Gate.RUNNING)
    out = garbage(20, channels, dtype)
    playout.fill(out, 0.0)
    np.testing.assert_array_equal(out[:12], frames(0, 12, channels, dtype))
    np.testing.assert_array_equal(out[12:], 0)
    assert playout.underruns == 1
    assert playout.underrun_frames == 8
    # The consumer never writes the gate: it stays RUNNING, and the output is starved.
    assert playout.gate is Gate.RUNNING
    assert playout.starved
    assert playout.statistics().starved
    assert wake.calls == 1
    assert playout.ring.frames_read == 12

    # Still starved: silence, counted as underrun frames, not a new underrun, no new wake.
    out = garbage(20, channels, dtype)
    playout.fill(out, 0.02)
    np.testing.assert_array_equal(out, 0)
    playout.fill(garbage(5, channels, dtype), 0.04)
    assert playout.underruns == 1
    assert playout.underrun_frames == 8 + 20 + 5
    assert playout.ring.frames_read == 12
    assert wake.calls == 1


def test_starved_output_waits_for_the_gate_even_when_audio_arrives() -> None:
    # The playback task rebuffers after an underrun; audio arriving meanwhile must not
    # trickle out block by block (a stutter) until the gate is set again.
    playout, wake = make_playout()
    playout.set_gate(Gate.RUNNING)
    playout.fill(garbage(10, 1, np.int16), 0.0)
    assert playout.starved
    assert playout.level_count == 1  # the block that ran dry
    playout.ring.write(frames(0, 30, 1))
    out = garbage(10, 1, np.int16)
    playout.fill(out, 0.01)
    np.testing.assert_array_equal(out, 0)
    assert playout.ring.frames_read == 0
    assert playout.level_count == 1  # starved blocks are not level samples
    assert (playout.underruns, playout.underrun_frames) == (1, 20)
    assert playout.heard_until == -math.inf
    playout.set_gate(Gate.RUNNING)  # reopening RUNNING -> RUNNING ends the starved state
    assert not playout.starved
    playout.fill(out, 0.02)
    np.testing.assert_array_equal(out, frames(0, 10, 1))
    assert (playout.underruns, playout.underrun_frames) == (1, 20)
    assert wake.calls == 1


def test_running_on_an_empty_ring_underruns_at_once() -> None:
    playout, wake = make_playout()
    playout.set_gate(Gate.RUNNING)
    out = garbage(10, 1, np.int16)
    playout.fill(out, 0.0)
    np.testing.assert_array_equal(out, 0)
    assert (playout.underruns, playout.underrun_frames) == (1, 10)
    assert playout.level_min == 0
    assert wake.calls == 1


def test_any_gate_change_ends_the_starved_state_and_a_second_gap_is_a_second_underrun() -> None:
    playout, _ = make_playout()
    playout.set_gate(Gate.RUNNING)
    playout.fill(garbage(10, 1, np.int16), 0.0)
    assert playout.starved
    playout.set_gate(Gate.PAUSED)
    assert not playout.starved
    playout.fill(garbage(10, 1, np.int16), 0.01)  # paused silence is not underrun
    assert (playout.underruns, playout.underrun_frames) == (1, 10)
    playout.ring.write(frames(0, 15, 1))
    playout.set_gate(Gate.RUNNING)
    assert not playout.starved
    out = garbage(10, 1, np.int16)
    playout.fill(out, 0.02)
    np.testing.assert_array_equal(out, frames(0, 10, 1))
    assert (playout.underruns, playout.underrun_frames) == (1, 10)
    playout.fill(out, 0.03)
    np.testing.assert_array_equal(out[:5], frames(10, 5, 1))
    assert (playout.underruns, playout.underrun_frames) == (2, 15)
    assert playout.gate is Gate.RUNNING
    assert playout.starved


def test_draining_ends_the_starved_state() -> None:
    playout, _ = make_playout()
    playout.set_gate(Gate.RUNNING)
    playout.fill(garbage(10, 1, np.int16), 0.0)
    playout.ring.write(frames(0, 4, 1))
    playout.set_gate(Gate.DRAINING)
    assert not playout.starved
    assert playout.gate is Gate.DRAINING
    out = garbage(10, 1, np.int16)
    playout.fill(out, 0.01)
    np.testing.assert_array_equal(out[:4], frames(0, 4, 1))
    np.testing.assert_array_equal(out[4:], 0)
    assert (playout.underruns, playout.underrun_frames) == (1, 10)


def test_paused_silence_is_not_underrun_unless_starved() -> None:
    playout, _ = make_playout()
    playout.fill(garbage(10, 1, np.int16), 0.0)
    assert playout.underrun_frames == 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", CHANNELS)
def test_draining_dry_is_not_an_underrun(dtype: npt.DTypeLike, channels: int) -> None:
    playout, wake = make_playout(channels=channels, dtype=dtype)
    playout.ring.write(frames(0, 12, channels, dtype))
    playout.set_gate(Gate.DRAINING)
    out = garbage(20, channels, dtype)
    playout.fill(out, 0.0)
    np.testing.assert_array_equal(out[:12], frames(0, 12, channels, dtype))
    np.testing.assert_array_equal(out[12:], 0)
    playout.fill(out, 0.02)
    np.testing.assert_array_equal(out, 0)
    assert playout.underruns == 0
    assert playout.underrun_frames == 0
    assert not playout.starved
    assert playout.gate is Gate.DRAINING
    assert (playout.level_min, playout.level_sum, playout.level_count) == (-1, 0, 0)
    assert wake.calls == 0


def test_zero_length_block() -> None:
    playout, wake = make_playout()
    playout.ring.write(frames(0, 5, 1))
    playout.set_gate(Gate.RUNNING)
    playout.fill(np.zeros((0, 1), dtype=np.int16), 0.0)
    assert playout.ring.frames_read == 0
    assert playout.underruns == 0
    assert playout.gate is Gate.RUNNING
    assert wake.calls == 0


# -- Playout: level statistics -----------------------------------------------------------


def test_level_statistics_only_while_running() -> None:
    playout, _ = make_playout(capacity=100)
    playout.ring.write(frames(0, 100, 1))
    out = garbage(30, 1, np.int16)
    playout.fill(out, 0.0)  # paused: not counted
    playout.set_gate(Gate.RUNNING)
    playout.fill(out, 0.1)  # sees 100
    playout.fill(out, 0.2)  # sees 70
    playout.ring.write(frames(100, 10, 1))
    playout.fill(out, 0.3)  # sees 50
    playout.set_gate(Gate.DRAINING)
    playout.fill(out, 0.4)  # draining: not counted
    stats = playout.statistics()
    assert (stats.level_min, stats.level_sum, stats.level_count) == (50, 220, 3)
    playout.reset_level()
    stats = playout.statistics()
    assert (stats.level_min, stats.level_sum, stats.level_count) == (-1, 0, 0)


def test_statistics_snapshot() -> None:
    playout, _ = make_playout(capacity=40, channels=2)
    playout.ring.write(frames(0, 30, 2))
    playout.set_gate(Gate.RUNNING)
    playout.fill(garbage(25, 2, np.int16), 0.0)
    playout.fill(garbage(25, 2, np.int16), 0.1)
    stats = playout.statistics()
    assert stats == SinkStatistics(
        frames_written=30,
        frames_played=30,
        frames_dropped=0,
        buffered=0,
        capacity=40,
        gate=Gate.RUNNING,
        starved=True,
        underruns=1,
        underrun_frames=20,
        level_min=5,
        level_sum=35,
        level_count=2,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.underruns = 0  # type: ignore[misc]


# -- Playout: wakes ----------------------------------------------------------------------


def test_want_space_wakes_once_when_frames_are_consumed() -> None:
    playout, wake = make_playout(capacity=16)
    playout.ring.write(frames(0, 16, 1))
    playout.want_space = True
    out = garbage(4, 1, np.int16)
    playout.fill(out, 0.0)  # paused: nothing consumed, no room made
    assert playout.want_space
    assert wake.calls == 0
    playout.set_gate(Gate.RUNNING)
    playout.fill(out, 0.1)
    assert not playout.want_space
    assert wake.calls == 1
    playout.fill(out, 0.2)
    assert wake.calls == 1


def test_want_space_waits_for_a_refill_batch() -> None:
    # A full ring is refilled in batches: the waiting writer is woken once
    # ``refill_frames`` (a quarter of the ring here, at most 100 ms) are free, not at the
    # first consumed block.
    playout, wake = make_playout(capacity=64, sample_rate=1000)
    assert playout.refill_frames == 16
    playout.ring.write(frames(0, 64, 1))
    playout.set_gate(Gate.RUNNING)
    playout.want_space = True
    out = garbage(4, 1, np.int16)
    for i in range(3):
        playout.fill(out, i * 0.004)
        assert (wake.calls, playout.want_space, playout.ring.free) == (0, True, 4 * (i + 1))
    playout.fill(out, 0.012)
    assert (wake.calls, playout.want_space, playout.ring.free) == (1, False, 16)
    big, _ = make_playout(capacity=48000, sample_rate=24000)
    assert big.refill_frames == 2400  # 100 ms


def test_want_space_wakes_when_a_discard_makes_room() -> None:
    # The writer waits for room (``want_space``) in a full ring; trio aborts (barge-in)
    # and the consumer then frees the whole ring by applying the discard. That is room
    # for a waiting writer, so the consumer must wake trio: with the gate paused nothing
    # is consumed afterwards, and no later block would ever wake it.
    playout, wake = make_playout(capacity=16)
    playout.ring.write(frames(0, 16, 1))
    assert playout.ring.free == 0
    playout.want_space = True
    playout.discard()
    assert playout.ring.free == 0  # not applied yet: the consumer runs on another thread
    playout.fill(garbage(4, 1, np.int16), 0.0)
    assert playout.ring.free == 16
    assert not playout.want_space
    assert wake.calls == 1


# -- Playout: when the consumed audio is heard --------------------------------------------


def test_heard_until_is_the_end_of_the_last_consumed_block() -> None:
    rate = 8000
    playout, wake = make_playout(capacity=100, sample_rate=rate)
    playout.ring.write(frames(0, 50, 1))
    playout.set_gate(Gate.RUNNING)
    playout.fill(garbage(16, 1, np.int16), 10.0, latency=0.25)
    assert playout.heard_until == pytest.approx(10.0 + 0.25 + 16 / rate, abs=1e-12)
    playout.fill(garbage(16, 1, np.int16), 11.0)  # latency defaults to 0
    assert playout.heard_until == pytest.approx(11.0 + 16 / rate, abs=1e-12)
    assert wake.calls == 0  # nothing for trio to react to


def test_heard_until_counts_only_the_frames_consumed() -> None:
    rate = 1000
    playout, _ = make_playout(sample_rate=rate)
    playout.ring.write(frames(0, 6, 1))
    playout.set_gate(Gate.RUNNING)
    playout.fill(garbage(20, 1, np.int16), 2.0, latency=0.01)  # 6 frames, then underrun
    assert playout.heard_until == pytest.approx(2.0 + 0.01 + 6 / rate, abs=1e-12)
    playout.fill(garbage(20, 1, np.int16), 2.02, latency=0.01)  # starved: silence only
    assert playout.heard_until == pytest.approx(2.0 + 0.01 + 6 / rate, abs=1e-12)


def test_heard_until_is_not_moved_by_silence() -> None:
    playout, _ = make_playout()
    playout.ring.write(frames(0, 20, 1))
    playout.fill(garbage(8, 1, np.int16), 1.0)  # paused
    assert playout.heard_until == -math.inf
    playout.set_gate(Gate.DRAINING)
    playout.fill(garbage(8, 1, np.int16), 2.0)
    assert playout.heard_until == pytest.approx(2.008, abs=1e-12)
    playout.discard()
    playout.fill(garbage(8, 1, np.int16), 3.0)  # discarded frames are not heard
    assert playout.heard_until == pytest.approx(2.008, abs=1e-12)
    playout.ring.write(frames(20, 3, 1))
    playout.set_gate(Gate.DRAINING)
    playout.fill(garbage(8, 1, np.int16), 4.0)
    assert playout.heard_until == pytest.approx(4.003, abs=1e-12)
    playout.fill(garbage(8, 1, np.int16), 5.0)  # drained dry: nothing new is heard
    assert playout.heard_until == pytest.approx(4.003, abs=1e-12)


def test_heard_until_agrees_with_the_mark_of_the_last_frame() -> None:
    # The sinks use ``heard_until - 1/rate`` as the time the last consumed frame is heard
    # when they marked it too late; a mark stamp gives that same time.
    rate = 24000
    playout, _ = make_playout(capacity=1000, sample_rate=rate)
    playout.ring.write(frames(0, 1000, 1))
    playout.mark(479)
    playout.set_gate(Gate.RUNNING)
    playout.fill(garbage(480, 1, np.int16), 7.5, latency=0.035)
    stamped = playout.mark_time(479)
    assert stamped is not None
    assert playout.heard_until - 1 / rate == pytest.approx(stamped, abs=1e-9)


# -- Playout: marks ----------------------------------------------------------------------


@pytest.mark.parametrize("gate", [Gate.RUNNING, Gate.DRAINING], ids=lambda g: g.name)
def test_mark_is_stamped_when_its_block_is_consumed(gate: Gate) -> None:
    rate = 1000
    playout, wake = make_playout(capacity=100, sample_rate=rate)
    playout.ring.write(frames(0, 100, 1))
    playout.mark(25)
    assert playout.mark_time(25) is None
    playout.set_gate(gate)
    out = garbage(20, 1, np.int16)
    playout.fill(out, 10.0, latency=0.05)  # frames 0..19
    assert playout.mark_time(25) is None
    assert wake.calls == 0
    playout.fill(out, 10.02, latency=0.05)  # frames 20..39
    t = playout.mark_time(25)
    assert t == pytest.approx(10.02 + 0.05 + 5 / rate, rel=0, abs=1e-12)
    assert wake.calls == 1
    playout.fill(out, 10.04, latency=0.05)
    assert playout.mark_time(25) == t  # stamped once, not re-stamped
    assert wake.calls == 1


def test_mark_at_block_edges() -> None:
    rate = 8000
    playout, _ = make_playout(capacity=64, sample_rate=rate)
    playout.ring.write(frames(0, 64, 1))
    for pos in (16, 31, 32):
        playout.mark(pos)
    playout.set_gate(Gate.RUNNING)
    out = garbage(16, 1, np.int16)
    playout.fill(out, 0.0)  # 0..15
    playout.fill(out, 1.0, latency=0.25)  # 16..31
    assert playout.mark_time(16) == pytest.approx(1.25, abs=1e-12)
    assert playout.mark_time(31) == pytest.approx(1.25 + 15 / rate, abs=1e-12)
    assert playout.mark_time(32) is None  # first frame of the next block
    playout.fill(out, 2.0)
    assert playout.mark_time(32) == pytest.approx(2.0, abs=1e-12)


def test_mark_is_not_stamped_while_paused() -> None:
    playout, _ = make_playout()
    playout.ring.write(frames(0, 10, 1))
    playout.mark(0)
    playout.fill(garbage(10, 1, np.int16), 1.0)
    assert playout.mark_time(0) is None


def test_mark_time_unknown_position() -> None:
    playout, _ = make_playout()
    assert playout.mark_time(3) is None
    playout.mark(4)
    assert playout.mark_time(3) is None


def test_too_many_marks() -> None:
    playout, _ = make_playout()
    for pos in range(_MAX_MARKS):
        playout.mark(pos)
    with pytest.raises(RuntimeError, match="marks"):
        playout.mark(_MAX_MARKS)
    playout.unmark(3)
    playout.mark(100)  # the freed slot is usable again
    with pytest.raises(RuntimeError):
        playout.mark(101)


def test_unmark_frees_stamped_slots_too() -> None:
    playout, _ = make_playout(capacity=64)
    playout.ring.write(frames(0, 64, 1))
    for pos in range(_MAX_MARKS):
        playout.mark(pos)
    playout.set_gate(Gate.RUNNING)
    playout.fill(garbage(_MAX_MARKS, 1, np.int16), 0.0)
    assert all(playout.mark_time(pos) is not None for pos in range(_MAX_MARKS))
    for pos in range(_MAX_MARKS):
        playout.unmark(pos)
        assert playout.mark_time(pos) is None
    for pos in range(100, 100 + _MAX_MARKS):
        playout.mark(pos)


def test_unmarking_a_pending_mark_keeps_the_others_working() -> None:
    playout, _ = make_playout(capacity=64)
    playout.ring.write(frames(0, 64, 1))
    playout.mark(10)
    playout.mark(20)
    playout.unmark(10)
    playout.set_gate(Gate.RUNNING)
    playout.fill(garbage(32, 1, np.int16), 3.0)
    assert playout.mark_time(10) is None
    assert playout.mark_time(20) == pytest.approx(3.0 + 20 / 1000, abs=1e-12)


def test_unmarking_a_stamped_mark_keeps_later_marks_working() -> None:
    playout, _ = make_playout(capacity=64)
    playout.ring.write(frames(0, 64, 1))
    playout.mark(2)
    playout.set_gate(Gate.RUNNING)
    playout.fill(garbage(8, 1, np.int16), 0.0)
    assert playout.mark_time(2) is not None
    playout.unmark(2)
    playout.mark(12)
    playout.fill(garbage(8, 1, np.int16), 1.0)  # 8..15
    assert playout.mark_time(12) == pytest.approx(1.0 + 4 / 1000, abs=1e-12)


def test_remarking_a_position_forgets_the_old_stamp() -> None:
    playout, _ = make_playout(capacity=64)
    playout.ring.write(frames(0, 64, 1))
    playout.mark(1)
    playout.set_gate(Gate.RUNNING)
    playout.fill(garbage(4, 1, np.int16), 0.0)
    assert playout.mark_time(1) is not None
    playout.unmark(1)
    playout.mark(1)
    assert playout.mark_time(1) is None


# -- Playout: discard --------------------------------------------------------------------


def test_discard_pauses_and_drops() -> None:
    playout, wake = make_playout(capacity=64)
    playout.ring.write(frames(0, 40, 1))
    playout.set_gate(Gate.RUNNING)
    playout.fill(garbage(10, 1, np.int16), 0.0)
    assert playout.discard() == 30
    assert playout.gate is Gate.PAUSED
    # Pending until the consumer's next block, but already counted.
    stats = check_accounting(playout)
    assert (stats.frames_played, stats.frames_dropped, stats.buffered) == (10, 30, 0)
    assert playout.ring.frames_read == 10
    out = garbage(10, 1, np.int16)
    playout.fill(out, 0.1)
    np.testing.assert_array_equal(out, 0)
    assert playout.ring.frames_read == 40
    assert playout.ring.free == 64
    stats = check_accounting(playout)
    assert (stats.frames_played, stats.frames_dropped, stats.buffered) == (10, 30, 0)
    assert playout.underruns == 0
    assert playout.underrun_frames == 0
    assert wake.calls == 0
    # New audio after the barge-in plays normally.
    playout.ring.write(frames(500, 10, 1))
    playout.set_gate(Gate.RUNNING)
    playout.fill(out, 0.2)
    np.testing.assert_array_equal(out, frames(500, 10, 1))
    assert playout.discard() == 0
    playout.ring.write(frames(600, 5, 1))
    assert playout.discard() == 5
    stats = check_accounting(playout)
    assert (stats.frames_written, stats.frames_played, stats.frames_dropped) == (55, 20, 35)


def test_discard_on_the_same_thread_applies_at_once() -> None:
    playout, _ = make_playout(capacity=16)
    playout.same_thread = True
    playout.ring.write(frames(0, 16, 1))
    assert playout.discard() == 16
    assert (playout.ring.frames_read, playout.ring.free, playout.ring.buffered) == (16, 16, 0)
    stats = check_accounting(playout)
    assert (stats.frames_played, stats.frames_dropped) == (0, 16)
    assert playout.ring.write(frames(100, 16, 1)) == 16  # the room is there already


@pytest.mark.parametrize("gate", list(Gate), ids=lambda g: g.name)
def test_discard_in_any_gate_pauses(gate: Gate) -> None:
    playout, _ = make_playout()
    playout.ring.write(frames(0, 20, 1))
    playout.set_gate(gate)
    playout.discard()
    assert playout.gate is Gate.PAUSED
    out = garbage(8, 1, np.int16)
    playout.fill(out, 0.0)
    np.testing.assert_array_equal(out, 0)
    assert (playout.underruns, playout.underrun_frames) == (0, 0)


def test_discard_while_starved_ends_the_starved_state() -> None:
    playout, _ = make_playout()
    playout.set_gate(Gate.RUNNING)
    playout.fill(garbage(10, 1, np.int16), 0.0)
    playout.ring.write(frames(0, 5, 1))  # arrived during the rebuffer
    assert playout.starved
    assert playout.discard() == 5
    assert not playout.starved
    playout.fill(garbage(10, 1, np.int16), 0.01)
    assert (playout.underruns, playout.underrun_frames) == (1, 10)  # paused, not starved
    assert playout.ring.frames_read == 5


def test_new_audio_written_before_the_discard_is_applied_survives() -> None:
    # Barge-in, then the next utterance's first frames arrive before the consumer ran.
    playout, _ = make_playout(capacity=32)
    playout.ring.write(frames(0, 20, 1))
    playout.discard()
    assert playout.ring.write(frames(200, 20, 1)) == 12  # the discarded frames take room
    playout.set_gate(Gate.RUNNING)
    out = garbage(8, 1, np.int16)
    playout.fill(out, 0.0)
    np.testing.assert_array_equal(out, frames(200, 8, 1))
    stats = check_accounting(playout)
    assert (stats.frames_played, stats.frames_dropped, stats.buffered) == (8, 20, 4)


# -- Playout: writes in place, allocates nothing -----------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_fill_writes_into_out_in_place(dtype: npt.DTypeLike) -> None:
    playout, _ = make_playout(channels=2, dtype=dtype)
    playout.ring.write(frames(0, 6, 2, dtype))
    playout.set_gate(Gate.RUNNING)
    device = np.full((20, 2), 7, dtype=dtype)
    out = device[5:15]  # a view: writes must land in ``device``
    playout.fill(out, 0.0)
    np.testing.assert_array_equal(device[5:11], frames(0, 6, 2, dtype))
    np.testing.assert_array_equal(device[11:15], 0)
    np.testing.assert_array_equal(device[:5], 7)
    np.testing.assert_array_equal(device[15:], 7)


def test_fill_does_not_allocate_sample_memory() -> None:
    block = 1 << 15
    channels = 2
    playout, _ = make_playout(capacity=4 * block, channels=channels, dtype=np.float32)
    playout.ring.write(frames(0, 4 * block - 100, channels, np.float32))
    for pos in (10, block + 10, 2 * block + 10):
        playout.mark(pos)
    out = np.zeros((block, channels), dtype=np.float32)
    playout.set_gate(Gate.RUNNING)
    playout.fill(out, 0.0)  # warm up
    tracemalloc.start()
    try:
        for i in range(1, 5):  # the last block runs dry: zero tail + underrun path
            playout.fill(out, float(i), latency=0.01)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert playout.underruns == 1
    assert peak < out.nbytes // 16, peak


# ("write", n), ("fill", block frames), ("gate", index into Gate), ("discard", 0) or
# ("reset", 0).
PLAYOUT_OPS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["write", "fill", "fill"]), st.integers(0, 24)),
        st.tuples(st.just("gate"), st.integers(0, len(Gate) - 1)),
        st.tuples(st.sampled_from(["discard", "reset"]), st.just(0)),
    ),
    max_size=50,
)


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(1, 40), same_thread=st.booleans(), ops=PLAYOUT_OPS)
def test_playout_matches_a_model(
    capacity: int, same_thread: bool, ops: list[tuple[str, int]]
) -> None:
    rate, latency = 1000, 0.125
    playout, _ = make_playout(capacity=capacity, channels=2, sample_rate=rate, dtype=np.int32)
    playout.same_thread = same_thread
    live: deque[int] = deque()
    pending = 0  # discarded, not yet applied by the consumer
    next_frame = played_total = dropped = 0
    gate = Gate.PAUSED
    starved = False
    underruns = underrun_frames = 0
    level_min, level_sum, level_count = -1, 0, 0
    heard_until = -math.inf
    for step, (kind, n) in enumerate(ops):
        if kind == "write":
            got = playout.ring.write(frames(next_frame, n, 2, np.int32))
            assert got == min(n, capacity - len(live) - pending)
            live.extend(range(next_frame, next_frame + got))
            next_frame += got
        elif kind == "gate":
            gate = list(Gate)[n]
            playout.set_gate(gate)
            starved = False
        elif kind == "discard":
            assert playout.discard() == len(live)
            gate, starved = Gate.PAUSED, False
            dropped += len(live)
            pending += len(live)
            live.clear()
            if same_thread:
                pending = 0
        elif kind == "reset":
            playout.reset_level()
            level_min, level_sum, level_count = -1, 0, 0
        else:
            now = float(step)
            out = np.full((n, 2), -1, dtype=np.int32)
            playout.fill(out, now, latency)
            pending = 0
            played: list[int] = []
            if starved:
                underrun_frames += n
            elif gate is not Gate.PAUSED:
                if gate is Gate.RUNNING:
                    level_min = len(live) if level_min < 0 else min(level_min, len(live))
                    level_sum += len(live)
                    level_count += 1
                played = [live.popleft() for _ in range(min(n, len(live)))]
                if len(played) < n and gate is Gate.RUNNING:
                    starved = True
                    underruns += 1
                    underrun_frames += n - len(played)
            np.testing.assert_array_equal(out[: len(played)], frames_at(played, 2, np.int32))
            np.testing.assert_array_equal(out[len(played) :], 0)
            if played:
                heard_until = now + latency + len(played) / rate
            played_total += len(played)
        stats = check_accounting(playout)
        assert stats.gate is gate
        assert stats.starved is starved
        assert (stats.underruns, stats.underrun_frames) == (underruns, underrun_frames)
        assert (stats.level_min, stats.level_sum, stats.level_count) == (
            level_min,
            level_sum,
            level_count,
        )
        assert stats.buffered == len(live) <= capacity
        assert playout.ring.free == capacity - len(live) - pending
        assert stats.frames_written == next_frame
        assert (stats.frames_played, stats.frames_dropped) == (played_total, dropped)
        assert playout.heard_until == heard_until


# -- Playout: producer/consumer interleavings --------------------------------------------
#
# ``fill`` runs on the audio thread while trio calls ``set_gate``/``discard``/``write``;
# the GIL can switch threads between any two bytecodes. ``InterleavedOut`` replays one
# chosen switch: the output block runs a "trio thread" action the first time ``fill``
# stores into it. ``run_switched`` replays every switch in turn: it runs the other side's
# whole action before the k-th bytecode of one side, for k = 0, 1, 2, ... until the side
# finishes first.


class InterleavedOut(np.ndarray[Any, np.dtype[Any]]):
    """An output block that runs ``action`` right after the first store into it."""

    action: Any = None

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        action, self.action = self.action, None
        if action is not None:
            action()


def interleaved_out(frames_: int, channels: int, action: Any) -> InterleavedOut:
    out = np.full((frames_, channels), 7, dtype=np.int16).view(InterleavedOut)
    out.action = action
    return out


#: The code the consumer (audio thread) runs, and the code the producer (trio) runs.
CONSUMER_CODE = frozenset(
    {Playout.fill.__code__, RingBuffer.read_into.__code__, RingBuffer.apply_discard.__code__}
)
PRODUCER_CODE = frozenset(
    {
        Playout.discard.__code__,
        Playout.set_gate.__code__,
        RingBuffer.request_discard.__code__,
        RingBuffer.write.__code__,
    }
)


def run_switched(
    side: Callable[[], object],
    code: Collection[CodeType],
    at: int,
    other: Callable[[], object],
) -> bool:
    """Run ``side``; just before the ``at``-th bytecode it executes in ``code``, run
    ``other`` to completion (a thread switch). Return False if ``side`` finished first.

    ``other`` runs inside the trace function, where tracing is off, so its own bytecodes
    are not counted.
    """
    if sys.version_info >= (3, 12):
        # CPython 3.12/3.13 (sys.monitoring underneath settrace) deliver "opcode" events
        # only partly to a trace function set this way (f_trace_opcodes): 0 to 12 of the
        # ~50 bytecodes. These races are exercised on 3.10 and 3.11.
        pytest.skip("per-bytecode tracing is unreliable on Python >= 3.12")
    count = 0
    switched = False

    def trace_opcodes(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal count, switched
        if event == "opcode":
            if count == at:
                switched = True
                other()
            count += 1
        return trace_opcodes

    def trace_calls(frame: FrameType, event: str, arg: object) -> Any:
        if frame.f_code not in code:
            return None
        frame.f_trace_lines = False
        frame.f_trace_opcodes = True
        return trace_opcodes

    previous = sys.gettrace()
    sys.settrace(trace_calls)
    try:
        side()
    finally:
        sys.settrace(previous)
    return switched


def every_switch(scenario: Callable[[int], bool], minimum: int) -> int:
    """Run ``scenario(at)`` for at = 0, 1, ... until it reports no switch; return the
    number of switch points (asserting at least ``minimum``, so the tracer really ran)."""
    at = 0
    while scenario(at):
        at += 1
    assert at >= minimum, at
    return at


def test_run_switched_switches_before_each_bytecode_once() -> None:
    ring = RingBuffer(8, 1)
    ring.write(frames(0, 4, 1))
    out = np.zeros((4, 1), dtype=np.int16)
    seen: list[int] = []
    assert run_switched(lambda: ring.read_into(out), CONSUMER_CODE, 0, lambda: seen.append(0))
    assert seen == [0]
    assert ring.frames_read == 4
    assert not run_switched(lambda: ring.read_into(out), CONSUMER_CODE, 10**6, seen.clear)
    assert seen == [0]


def test_discard_during_a_fill_keeps_the_ring_consistent() -> None:
    # Barge-in (``Playout.discard`` on the trio thread) after the consumer copied a block
    # but before it published the new read position.
    playout, _ = make_playout(capacity=64)
    playout.ring.write(frames(0, 40, 1))
    playout.set_gate(Gate.RUNNING)
    returned: list[int] = []
    out = interleaved_out(16, 1, lambda: returned.append(playout.discard()))
    playout.fill(out, 0.0)
    assert returned  # the discard really ran inside the fill
    np.testing.assert_array_equal(out, frames(0, 16, 1))  # the block was already copied
    stats = check_accounting(playout)
    assert (stats.frames_played, stats.frames_dropped, stats.buffered) == (16, 24, 0)
    assert stats.gate is Gate.PAUSED
    assert not stats.starved
    out2 = garbage(16, 1, np.int16)
    playout.fill(out2, 0.016)
    np.testing.assert_array_equal(out2, 0)
    stats = check_accounting(playout)
    assert (stats.frames_played, stats.frames_dropped, stats.buffered) == (16, 24, 0)
    assert playout.ring.frames_read == 40
    assert playout.ring.free == 64


def test_discard_racing_a_fill_at_every_switch_point() -> None:
    def scenario(at: int) -> bool:
        playout, _ = make_playout(capacity=64)
        playout.ring.write(frames(0, 40, 1))
        playout.set_gate(Gate.RUNNING)
        out = garbage(16, 1, np.int16)
        returned: list[int] = []
        if not run_switched(
            lambda: playout.fill(out, 0.0),
            CONSUMER_CODE,
            at,
            lambda: returned.append(playout.discard()),
        ):
            return False
        stats = check_accounting(playout)
        assert stats.buffered == 0
        assert stats.gate is Gate.PAUSED
        assert not stats.starved
        played = stats.frames_played
        assert played in (0, 16)  # the block in flight plays whole or not at all
        np.testing.assert_array_equal(out[:played], frames(0, played, 1))
        np.testing.assert_array_equal(out[played:], 0)
        assert returned[0] in (24, 40)
        # The next block is silence and applies the discard.
        playout.fill(out, 0.016)
        np.testing.assert_array_equal(out, 0)
        stats = check_accounting(playout)
        assert (stats.frames_played, stats.frames_dropped) == (played, 40 - played)
        assert playout.ring.frames_read == 40
        # The ring keeps working: the next utterance plays exactly.
        assert playout.ring.write(frames(100, 64, 1)) == 64
        playout.set_gate(Gate.RUNNING)
        playout.fill(out, 0.032)
        np.testing.assert_array_equal(out, frames(100, 16, 1))
        return True

    every_switch(scenario, minimum=50)


def test_a_fill_at_every_switch_point_of_a_discard() -> None:
    def scenario(at: int) -> bool:
        playout, _ = make_playout(capacity=64)
        playout.ring.write(frames(0, 40, 1))
        playout.set_gate(Gate.RUNNING)
        out = garbage(16, 1, np.int16)
        returned: list[int] = []
        if not run_switched(
            lambda: returned.append(playout.discard()),
            PRODUCER_CODE,
            at,
            lambda: playout.fill(out, 0.0),
        ):
            return False
        stats = check_accounting(playout)
        assert stats.buffered == 0
        assert stats.gate is Gate.PAUSED
        played = stats.frames_played
        assert played in (0, 16)
        np.testing.assert_array_equal(out[:played], frames(0, played, 1))
        np.testing.assert_array_equal(out[played:], 0)
        assert returned[0] == 40 - played
        # The gate is paused before the discard is requested, so the consumer never
        # finds the ring emptied under a running gate.
        assert stats.underruns == 0
        playout.fill(out, 0.016)
        np.testing.assert_array_equal(out, 0)
        stats = check_accounting(playout)
        assert (stats.frames_played, stats.frames_dropped) == (played, 40 - played)
        assert playout.ring.free == 64
        return True

    every_switch(scenario, minimum=10)


def test_reopening_during_an_underrun_is_not_lost() -> None:
    # The consumer found the ring short; before it records the underrun, trio writes the
    # last audio and opens the gate for draining. That DRAINING must win, or the tail is
    # never played (the controller ignores underruns while DRAINING, so nobody reopens).
    playout, _ = make_playout(capacity=64)
    playout.set_gate(Gate.RUNNING)

    def trio_side() -> None:
        playout.ring.write(frames(0, 10, 1))
        playout.set_gate(Gate.DRAINING)

    out = interleaved_out(16, 1, trio_side)
    playout.fill(out, 0.0)
    assert playout.ring.frames_written == 10  # the trio side really ran inside the fill
    np.testing.assert_array_equal(out, 0)
    assert playout.gate is Gate.DRAINING
    assert not playout.starved
    out2 = garbage(16, 1, np.int16)
    playout.fill(out2, 0.016)
    np.testing.assert_array_equal(out2[:10], frames(0, 10, 1))
    np.testing.assert_array_equal(out2[10:], 0)


def heard(*blocks: Array) -> Array:
    """The non-silent frames of ``blocks``, in order (test frames are never all zero)."""
    played = np.concatenate(blocks)
    return played[np.any(played != 0, axis=1)]


def check_gate_change_races_an_underrun(at: int, consumer_side: bool) -> bool:
    """4 frames are buffered for a 16-frame block; trio writes the 10-frame tail and sets
    DRAINING. Wherever the switch falls, all 14 frames are played, in order."""
    playout, _ = make_playout(capacity=64)
    playout.ring.write(frames(0, 4, 1))
    playout.set_gate(Gate.RUNNING)
    out = garbage(16, 1, np.int16)

    def trio_side() -> None:
        playout.ring.write(frames(4, 10, 1))
        playout.set_gate(Gate.DRAINING)

    def consumer() -> None:
        playout.fill(out, 0.0)

    if consumer_side:
        switched = run_switched(consumer, CONSUMER_CODE, at, trio_side)
    else:
        switched = run_switched(trio_side, PRODUCER_CODE, at, consumer)
    if not switched:
        return False
    assert playout.gate is Gate.DRAINING
    assert not playout.starved
    first = out.copy()
    later = [garbage(16, 1, np.int16) for _ in range(2)]
    for i, block in enumerate(later, 1):
        playout.fill(block, 0.016 * i)
    np.testing.assert_array_equal(heard(first, *later), frames(0, 14, 1))
    assert playout.ring.buffered == 0
    assert playout.underruns <= 1
    return True


def test_gate_change_racing_an_underrun_at_every_switch_point_of_the_fill() -> None:
    every_switch(lambda at: check_gate_change_races_an_underrun(at, True), minimum=50)


def test_gate_change_racing_an_underrun_at_every_switch_point_of_trio() -> None:
    every_switch(lambda at: check_gate_change_races_an_underrun(at, False), minimum=20)


def test_reopening_a_starved_output_at_every_switch_point() -> None:
    # The playback task rebuffered and reopens (RUNNING again) while a starved block is
    # being produced: the reopening must not be lost either.
    def scenario(at: int, consumer_side: bool) -> bool:
        playout, _ = make_playout(capacity=64)
        playout.set_gate(Gate.RUNNING)
        playout.fill(garbage(16, 1, np.int16), 0.0)
        assert playout.starved
        out = garbage(16, 1, np.int16)

        def trio_side() -> None:
            playout.ring.write(frames(0, 60, 1))
            playout.set_gate(Gate.RUNNING)

        def consumer() -> None:
            playout.fill(out, 0.016)

        if consumer_side:
            switched = run_switched(consumer, CONSUMER_CODE, at, trio_side)
        else:
            switched = run_switched(trio_side, PRODUCER_CODE, at, consumer)
        if not switched:
            return False
        assert not playout.starved
        first = out.copy()
        later = [garbage(16, 1, np.int16) for _ in range(2)]
        for i, block in enumerate(later, 2):
            playout.fill(block, 0.016 * i)
        played = heard(first, *later)
        assert len(played) in (32, 48)  # at most the racing block is silent
        np.testing.assert_array_equal(played, frames(0, len(played), 1))
        assert playout.underruns == 1
        return True

    every_switch(lambda at: scenario(at, True), minimum=10)
    every_switch(lambda at: scenario(at, False), minimum=10)
