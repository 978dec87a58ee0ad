"""Consumers that keep real time on trio's clock: the base of :class:`~._sinks.NullSink`
and :class:`~._framesink.FrameSink`.

Theory of operation
-------------------
Block ``k`` of the output is due at ``t0 + k * period``. The consumer task sleeps until
the next due time and, when it wakes, produces *every* block due by then, each with its
own due time as its ``now`` (so marks, heard times and underruns are those of a device
that never fell behind), then sleeps again. A loop that is busy (many streams, a slow
task) wakes the consumer late; it then catches up in one batch instead of falling further
behind one block per wake-up, which is how a consumer that took one block per wake-up
once "played" 3.97 s of audio in 23 s. Lateness is counted, never hidden: a block
produced more than one period after it was due counts in ``late_blocks``, the largest
lateness is ``max_late_ms``. A wake-up more than ``RESYNC_S`` late (a suspended
machine, a debugger) is not caught up: the missed time is skipped, counted as lateness,
and the schedule restarts from now. :func:`blocks_due` is that policy, pure.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import trio

from ._exceptions import AudioDeviceError
from ._format import AudioFormat
from ._ringbuffer import Playout
from ._sinkbase import BufferedSink

__all__ = ["ClockedSink", "blocks_due"]

#: A wake-up later than this is not caught up (see the module docstring).
RESYNC_S = 2.0


def blocks_due(now: float, next_due: float, period: float) -> int:
    """How many blocks are due at ``now`` when the next one is due at ``next_due`` (at
    least 1: a wake-up produces the block it woke for)."""
    if now < next_due:
        return 1
    return 1 + math.floor((now - next_due) / period + 1e-9)


class ClockedSink(BufferedSink):
    """A :class:`BufferedSink` whose consumer is a trio task on trio's clock.

    Subclasses get a consumer that calls ``playout.fill`` once per block period, with
    catch-up, and may override :meth:`_emit` to do something with each block.
    """

    #: Seconds from a block's due time until it is heard (passed to ``fill``).
    _latency_s: float = 0.0
    _cancel: trio.CancelScope | None = None

    async def _start_consumer(self, fmt: AudioFormat, playout: Playout) -> None:
        if self._nursery is None:
            name = type(self).__name__
            raise AudioDeviceError(f"use {name} as `async with {name}() as sink:`")
        playout.wake = self._on_wake
        playout.same_thread = True
        self._cancel = await self._nursery.start(self._consume, playout)

    async def _consume(
        self, playout: Playout, task_status: trio.TaskStatus[trio.CancelScope]
    ) -> None:
        with trio.CancelScope() as scope:
            frames = self.block_frames
            out = np.zeros((frames, playout.ring.channels), dtype=playout.ring.dtype)
            period = frames / playout.sample_rate
            ring = playout.ring
            latency = self._latency_s
            t0 = trio.current_time()
            k = 0  # index of the next block
            task_status.started(scope)
            while True:
                now = trio.current_time()
                due = t0 + k * period
                n = blocks_due(now, due, period)
                late = now - due
                if late > RESYNC_S:
                    # Count the gap once, then skip the missed blocks: the block due
                    # now is less than a period late, so the loop below does not count
                    # it again.
                    playout.late_blocks += 1
                    playout.max_late_s = max(playout.max_late_s, late)
                    k += n - 1
                    n = 1
                for _ in range(n):
                    due = t0 + k * period
                    late = now - due
                    if late > period:
                        playout.late_blocks += 1
                        if late > playout.max_late_s:
                            playout.max_late_s = late
                    before = ring.frames_read
                    playout.fill(out, due, latency)
                    self._emit(out, k, before, due, ring.frames_read != before)
                    k += 1
                await trio.sleep_until(t0 + k * period)

    def _emit(
        self, block: npt.NDArray[np.generic], index: int, position: int, due: float, audio: bool
    ) -> None:
        """Called with each block just filled (default: nothing).

        Args:
            block: The block (reused: copy what you keep).
            index: Block number since the consumer started.
            position: Sink frame position of the block's first frame.
            due: When the block is due, on trio's clock.
            audio: Whether the block took anything from the ring (else it is the
                silence of an idle, paused or starved output).
        """

    async def _stop_consumer(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()
            self._cancel = None
        await trio.lowlevel.checkpoint()
