"""The buffer between the trio thread (producer) and the audio thread (consumer).

Theory of operation
-------------------
:class:`RingBuffer` is single-producer/single-consumer frame storage allocated once.
``write`` runs only on the trio thread and moves only ``_written``; ``read_into`` runs
only on the consumer (the PortAudio callback thread, or a trio task for virtual sinks)
and moves only ``_read``. Both counters are monotonic Python ints; each side copies its
samples *before* publishing the new counter, so the other side never sees frames that
are not there yet. Rebinding an int attribute is atomic under the GIL.

:class:`Playout` wraps the ring with what the consumer must decide on its own, in real
time, without waiting for trio: the *gate* (``PAUSED``: emit silence, consume nothing;
``RUNNING``: consume, and running dry is an underrun; ``DRAINING``: consume, and running
dry is the end), underrun accounting, the buffer level seen by the device, and
timestamps of marked frames (when was frame N heard?), and fades. Its :meth:`Playout.fill` always
fills the whole output block, never blocks, never allocates sample memory, and calls
``wake`` (which the sink binds to ``TrioToken.run_sync_soon(..., idempotent=True)``)
when trio has something to react to: room for a waiting writer, an underrun, a mark
stamped.

On an underrun ``fill`` stops consuming by itself (it records the gate generation it
starved on; the output stays silent while that generation is current): the playback task
then rebuffers and reopens the gate, so a slow link gives one clean gap instead of a
stutter, even if a little audio arrives meanwhile.

Fades (barge-in and pause without a click): trio computes a raised-cosine ramp once
(:meth:`Playout.set_fade`) and asks for a fade-out by bumping ``fade_req``
(:meth:`Playout.discard` with ``fade=True``, or :meth:`Playout.hold`). The consumer then
plays the next ``len(ramp)`` frames multiplied by the ramp -- for a barge-in, the start
of the audio being dropped, never audio written after the discard -- and only then
applies the discard or stops; it publishes ``fade_done`` and wakes trio. The first audio
it plays after a fade-out is faded in with the same ramp reversed. The multiply goes
through a scratch buffer allocated with the ramp, so ``fill`` still never allocates.
A second fade asked for while one is running does not restart it (no jump in level).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._vocabulary import Gate

__all__ = ["Gate", "Playout", "RingBuffer", "SinkStatistics"]

_MAX_MARKS = 8


class RingBuffer:
    """Fixed-capacity SPSC frame ring.

    Args:
        capacity: Frames it holds.
        channels: Samples per frame.
        dtype: Sample type of the storage (the device's type).
    """

    def __init__(self, capacity: int, channels: int, dtype: npt.DTypeLike = np.int16) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least one frame")
        self.capacity = capacity
        self.channels = channels
        self._data = np.zeros((capacity, channels), dtype=dtype)
        self._written = 0
        self._read = 0
        # Barge-in: the producer asks to drop everything up to _discard_to; the consumer
        # does it (only it moves _read) and counts it in _dropped.
        self._discard_to = 0
        self._dropped = 0

    @property
    def dtype(self) -> np.dtype[np.generic]:
        """Sample type of the storage."""
        return self._data.dtype

    @property
    def frames_written(self) -> int:
        """Frames ever written (monotonic)."""
        return self._written

    @property
    def frames_read(self) -> int:
        """Frames ever read (monotonic)."""
        return self._read

    @property
    def frames_dropped(self) -> int:
        """Frames discarded unplayed, including a discard not yet applied."""
        return self._dropped + max(0, self._discard_to - self._read)

    @property
    def buffered(self) -> int:
        """Frames written and not yet read or discarded."""
        return self._written - max(self._read, self._discard_to)

    @property
    def free(self) -> int:
        """Frames that can be written now."""
        return self.capacity - (self._written - self._read)

    def write(self, frames: npt.NDArray[np.generic]) -> int:
        """Copy as many leading frames of ``frames`` as fit; return how many (producer)."""
        n = min(len(frames), self.capacity - (self._written - self._read))
        if n <= 0:
            return 0
        start = self._written % self.capacity
        first = min(n, self.capacity - start)
        self._data[start : start + first] = frames[:first]
        if n > first:
            self._data[: n - first] = frames[first:n]
        self._written += n
        return n

    def read_into(self, out: npt.NDArray[np.generic], limit: int | None = None) -> int:
        """Copy up to ``len(out)`` (or ``limit``) frames into ``out``; return how many
        (consumer). Does not touch the rest of ``out``."""
        self.apply_discard()
        n = min(len(out), self._written - self._read)
        if limit is not None:
            n = min(n, limit)
        return self._take(out, n)

    def read_fading_into(self, out: npt.NDArray[np.generic], limit: int) -> int:
        """Copy up to ``limit`` frames into ``out`` *before* applying a requested discard
        (consumer; a fade-out plays the start of what is being dropped). Reads no further
        than the discard point, so audio written after it is not touched."""
        end = self._discard_to if self._discard_to > self._read else self._written
        return self._take(out, min(len(out), limit, end - self._read))

    def _take(self, out: npt.NDArray[np.generic], n: int) -> int:
        """Copy the next ``n`` frames (if positive) into ``out``, wrapping around the end
        of the storage, and publish the read index (consumer)."""
        if n <= 0:
            return 0
        start = self._read % self.capacity
        first = min(n, self.capacity - start)
        out[:first] = self._data[start : start + first]
        if n > first:
            out[first:n] = self._data[: n - first]
        self._read += n
        return n

    def request_discard(self) -> int:
        """Ask the consumer to drop everything written so far (producer); return how many
        frames that is. :attr:`buffered` is 0 at once; the consumer applies it before
        its next read."""
        n = self._written - max(self._read, self._discard_to)
        self._discard_to = self._written
        return n

    def apply_discard(self) -> int:
        """Apply a requested discard (consumer); return the frames it freed."""
        to = self._discard_to
        n = to - self._read
        if n <= 0:
            return 0
        self._dropped += n
        self._read = to
        return n


@dataclass(frozen=True)
class SinkStatistics:
    """A snapshot of an audio sink's buffer and consumer: what ``sink.statistics()``
    returns (a :class:`Playout`'s counters).

    Not the player's ``PlaybackStatistics`` (one utterance, in seconds): these are the
    sink's own frame counters over its whole life.

    Attributes:
        frames_written: Frames ever written.
        frames_played: Frames ever consumed by the device (dropped frames excluded).
        frames_dropped: Frames discarded unplayed (barge-in); a discard the consumer has
            not applied yet is counted as requested, and can shrink by the block that
            was already being played.
        buffered: Frames waiting to be played.
        capacity: Ring capacity in frames.
        gate: The current gate.
        starved: Silent after an underrun until the gate is set again (the gate itself
            still reads ``RUNNING``).
        underruns: Underrun events.
        underrun_frames: Frames of silence played because of underruns.
        level_min: Least buffered frames seen by the device while running (-1: never).
        level_sum: Sum of buffered frames seen at each running block (for the average).
        level_count: Running blocks seen.
        device_underflows: Device blocks PortAudio flagged as an output underflow (its
            callback ``status``); always 0 for sinks without a device. Many hosts never
            set the flag (PulseAudio does not): ``underruns`` is the reliable count.
        callback_errors: Device callbacks that raised and played silence instead
            (a bug if it is ever non-zero).
        late_blocks: Blocks a consumer on trio's clock (:class:`NullSink`,
            :class:`FrameSink`) produced more than one block after they were due,
            because the event loop was busy; it caught them up at once.
        max_late_ms: The largest such lateness, in ms.
        late_frames: :class:`AudioFrame` s (``frame_ms`` each, not sample frames) that
            a :class:`FrameSink`'s consumer took more than one frame after they were due
            (0 for other sinks).
        overflow_frames: :class:`AudioFrame` s a :class:`FrameSink` dropped, unsent,
            because its consumer had fallen ``max_queue_ms`` behind (0 for other sinks).
    """

    frames_written: int
    frames_played: int
    frames_dropped: int
    buffered: int
    capacity: int
    gate: Gate
    starved: bool
    underruns: int
    underrun_frames: int
    level_min: int
    level_sum: int
    level_count: int
    device_underflows: int = 0
    callback_errors: int = 0
    late_blocks: int = 0
    max_late_ms: float = 0.0
    late_frames: int = 0
    overflow_frames: int = 0


class Playout:
    """The consumer's real-time logic around a :class:`RingBuffer`.

    Every decision-carrying field has one writer. Trio writes ``gate`` and ``gate_gen``
    (bumped by each :meth:`set_gate`), mark positions and discard requests; the consumer
    writes ``starved_gen``, the read index, mark times and the counters. On an underrun the
    consumer records the generation of the gate it found running, and the output counts as
    paused while that generation is current: a gate change that races with an underrun
    wins and is never lost. ``want_space`` is a handshake (trio sets it, the consumer
    clears it and wakes once ``refill_frames`` are free; trio re-checks after setting
    it), and the buffer-level statistics
    may lose one sample when trio resets them mid-block.

    Args:
        capacity: Ring capacity in frames.
        channels: Samples per frame.
        sample_rate: Frames per second (to time marks inside a block).
        dtype: Sample type of the device.
        wake: Called (from the consumer's thread) when trio should look; must not block.
    """

    def __init__(
        self,
        capacity: int,
        channels: int,
        sample_rate: int,
        dtype: npt.DTypeLike = np.int16,
        wake: Callable[[], object] | None = None,
    ) -> None:
        self.ring = RingBuffer(capacity, channels, dtype)
        self.sample_rate = sample_rate
        self.wake: Callable[[], object] = wake if wake is not None else (lambda: None)
        #: Set when the consumer runs on the trio thread: discards apply at once.
        self.same_thread = False
        self.gate = Gate.PAUSED
        self.gate_gen = 0
        self.starved_gen = -1
        self.underruns = 0
        self.underrun_frames = 0
        # Written only by a device callback around fill() (see SoundDeviceSink).
        self.device_underflows = 0
        self.callback_errors = 0
        # Written only by a consumer on trio's clock (see _clocked.ClockedSink).
        self.late_blocks = 0
        self.max_late_s = 0.0
        # Written only by a FrameSink (on the trio thread).
        self.late_frames = 0
        self.overflow_frames = 0
        self.want_space = False
        #: A writer waiting for room is woken when this much is free, not at the first
        #: free frame: a full ring is refilled in batches (at 100 streams, one wake-up
        #: of the writer per 100 ms instead of one per consumed block counts).
        self.refill_frames = max(1, min(capacity // 4, sample_rate // 10))
        #: When the end of the last consumed frame is heard (consumer's clock).
        self.heard_until = float("-inf")
        #: When the consumer last ran (``now`` of the latest :meth:`fill`; its clock):
        #: what a sink's watchdog looks at.
        self.last_fill = float("-inf")
        self.reset_level()
        # Marks: frame position -> time it is heard (NaN until stamped). Fixed arrays so
        # the consumer never allocates.
        # trio writes _mark_pos (and clears the time first), the consumer only the time.
        self._mark_pos = np.full(_MAX_MARKS, -1, dtype=np.int64)
        self._mark_time = np.full(_MAX_MARKS, np.nan, dtype=np.float64)
        # Fades. trio writes _ramp/_scratch (set_fade), fade_req and hold; the consumer
        # fade_done, _fo_gen, _fo_pos and _fi_pos.
        self._ramp = np.zeros(0, dtype=np.float32)  # 1 -> 0, raised cosine
        self._scratch = np.zeros((0, channels), dtype=np.float32)
        #: Held by the user (speaker pause): emit silence, consume nothing, no underrun.
        self.hold = False
        self.fade_req = 0
        self.fade_done = 0
        self._fo_gen = 0
        self._fo_pos = 0
        self._fi_pos = 0  # frames of the fade-in applied; >= len(ramp): none pending
        # Underruns fade too (both ways), with their own short ramp (set_underrun_fade):
        # the consumer keeps that many frames in reserve while RUNNING, so the audio
        # before a gap can always be faded out.
        self._uramp = np.zeros(0, dtype=np.float32)
        self._fi_ramp = self._ramp  # the ramp of the pending fade-in
        #: Frames played while fading out (they count as played), over the life.
        self.faded_frames = 0

    # -- trio side -------------------------------------------------------------

    @property
    def starved(self) -> bool:
        """Silent after an underrun until the next :meth:`set_gate`."""
        return self.gate is Gate.RUNNING and self.starved_gen == self.gate_gen

    def set_gate(self, gate: Gate) -> None:
        """Open, pause or drain (each call also ends a starved pause)."""
        self.gate = gate
        self.gate_gen += 1

    def reset_level(self) -> None:
        """Restart the buffer-level statistics (at the start of an utterance)."""
        self.level_min = -1
        self.level_sum = 0
        self.level_count = 0

    @property
    def fade_frames(self) -> int:
        """Length of the fade ramp in frames (0: cut)."""
        return len(self._ramp)

    @property
    def fading(self) -> bool:
        """A fade-out was asked for and the consumer has not finished it."""
        return self.fade_req != self.fade_done

    def set_fade(self, frames: int) -> None:
        """Compute the fade ramp (``frames`` long; 0: no fade) once, on the trio side.

        Ignored while a fade is running (the consumer is reading the ramp)."""
        frames = max(0, int(frames))
        if frames == len(self._ramp) or self.fading:
            return
        self._ramp = _raised_cosine(frames)
        self._fi_ramp = self._ramp
        self._fi_pos = frames
        self._size_scratch()

    def set_underrun_fade(self, frames: int) -> None:
        """Fade the audio out over ``frames`` before an underrun's gap, and in after it
        (0: cut, as a device does). Call before the output starts."""
        frames = max(0, int(frames))
        if frames != len(self._uramp):
            self._uramp = _raised_cosine(frames)
            self._size_scratch()

    def _size_scratch(self) -> None:
        frames = max(len(self._ramp), len(self._uramp))
        if len(self._scratch) != frames:
            self._scratch = np.zeros((frames, self.ring.channels), dtype=np.float32)

    def _ask_fade(self) -> None:
        if not self.fading:
            self.fade_req += 1

    def hold_output(self, fade: bool = True) -> None:
        """Stop consuming (user pause) after a fade-out of the ramp's length; keep the
        buffered audio. Unlike the gate, the player's controller never changes it."""
        if not self.hold:
            if fade:
                self._ask_fade()
            self.hold = True

    def release_output(self) -> None:
        """Consume again after :meth:`hold_output`; the audio fades in."""
        self.hold = False

    def mark(self, position: int) -> None:
        """Ask for the time at which frame ``position`` is heard (see :meth:`mark_time`).

        Raises:
            RuntimeError: All mark slots are in use.
        """
        free = np.flatnonzero(self._mark_pos < 0)
        if len(free) == 0:
            raise RuntimeError("too many pending marks")
        i = int(free[0])
        self._mark_time[i] = np.nan
        self._mark_pos[i] = position

    def mark_time(self, position: int) -> float | None:
        """When frame ``position`` was heard (consumer's clock), or ``None`` if not yet."""
        hits = np.flatnonzero(self._mark_pos == position)
        if len(hits) == 0:
            return None
        t = float(self._mark_time[int(hits[0])])
        return None if t != t else t  # NaN: not yet

    def unmark(self, position: int) -> None:
        """Free the slot of ``position`` (stamped or not)."""
        for i in np.flatnonzero(self._mark_pos == position):
            self._mark_pos[i] = -1

    def discard(self, fade: bool = False) -> int:
        """Pause and drop everything buffered (barge-in); return frames dropped.

        Without ``fade`` the next block the consumer produces is silence; with it, the
        first :attr:`fade_frames` of the dropped audio are played fading out first (they
        count as played, not dropped)."""
        self.set_gate(Gate.PAUSED)
        n = self.ring.request_discard()
        if fade and len(self._ramp) and n:
            self._ask_fade()
        elif self.same_thread and not self.fading:
            self.ring.apply_discard()
        return n

    def statistics(self) -> SinkStatistics:
        """A consistent-enough snapshot (single reads of each counter)."""
        ring = self.ring
        dropped = ring.frames_dropped
        return SinkStatistics(
            frames_written=ring.frames_written,
            frames_played=ring.frames_read - ring._dropped,
            frames_dropped=dropped,
            buffered=ring.buffered,
            capacity=ring.capacity,
            gate=self.gate,
            starved=self.starved,
            underruns=self.underruns,
            underrun_frames=self.underrun_frames,
            level_min=self.level_min,
            level_sum=self.level_sum,
            level_count=self.level_count,
            device_underflows=self.device_underflows,
            callback_errors=self.callback_errors,
            late_blocks=self.late_blocks,
            max_late_ms=self.max_late_s * 1000.0,
            late_frames=self.late_frames,
            overflow_frames=self.overflow_frames,
        )

    # -- consumer side ---------------------------------------------------------

    def fill(self, out: npt.NDArray[np.generic], now: float, latency: float = 0.0) -> None:
        """Fill the whole output block ``out`` (consumer; real-time safe).

        Args:
            out: The device's output buffer, shape ``(frames, channels)``.
            now: The consumer's clock when ``out`` starts to be produced.
            latency: Seconds from ``now`` until the first frame of ``out`` is heard.
        """
        self.last_fill = now
        n = len(out)
        gen = self.gate_gen  # read the generation before the gate (see class docstring)
        gate = self.gate
        ring = self.ring
        req = self.fade_req
        if req != self.fade_done:
            self._fade_out(out, now, latency, req)
            return
        if self.hold:
            if ring.apply_discard() and self.want_space:
                self.want_space = False
                self.wake()
            out[:] = 0
            return
        if ring.apply_discard() and self.want_space:
            self.want_space = False
            self.wake()
        if gate is Gate.RUNNING and self.starved_gen == gen:
            out[:] = 0
            self.underrun_frames += n
            return
        first_pos = ring.frames_read
        got = 0
        dry = False
        if gate is not Gate.PAUSED:
            if gate is Gate.RUNNING:
                avail = ring.frames_written - first_pos
                if self.level_min < 0 or avail < self.level_min:
                    self.level_min = avail
                self.level_sum += avail
                self.level_count += 1
                # Less than this block plus the underrun ramp: the gap starts here, after
                # what there is, faded out (the reserve is what makes that possible).
                dry = avail < n + len(self._uramp)
            got = ring.read_into(out)
            if self._fi_pos < len(self._fi_ramp) and got:
                self._fade_in(out, got)
        if got < n or dry:
            out[got:] = 0
            if gate is Gate.RUNNING and self.gate_gen == gen:
                # (A gate change during this block, e.g. a barge-in discard that emptied
                # the ring, is not an underrun.)
                k = min(got, len(self._uramp))
                if k:
                    self._ramp_into(out[got - k :], k, len(self._uramp) - k, False, self._uramp)
                    self._fi_ramp, self._fi_pos = self._uramp, 0
                self.starved_gen = gen
                self.underruns += 1
                self.underrun_frames += n - got
                self.wake()
        if got:
            self._stamp(first_pos, got, now, latency)

    def _ramp_into(
        self,
        out: npt.NDArray[np.generic],
        got: int,
        r0: int,
        up: bool,
        ramp: npt.NDArray[np.float32],
    ) -> None:
        """Multiply ``out[:got]`` by ``ramp`` from ``r0`` (reversed if ``up``), in place."""
        k = len(ramp)
        seg = ramp[k - r0 - got : k - r0][::-1] if up else ramp[r0 : r0 + got]
        scratch = self._scratch[:got]
        scratch[...] = out[:got]
        scratch *= seg[:, None]
        out[:got] = scratch

    def _fade_in(self, out: npt.NDArray[np.generic], got: int) -> None:
        ramp = self._fi_ramp
        k = min(got, len(ramp) - self._fi_pos)
        self._ramp_into(out, k, self._fi_pos, True, ramp)
        self._fi_pos += k

    def _fade_out(self, out: npt.NDArray[np.generic], now: float, latency: float, req: int) -> None:
        ring = self.ring
        if self._fo_gen != req:
            self._fo_gen = req
            self._fo_pos = 0
        want = min(len(out), len(self._ramp) - self._fo_pos)
        first_pos = ring.frames_read
        got = ring.read_fading_into(out, want) if want > 0 else 0
        if got:
            self._ramp_into(out, got, self._fo_pos, False, self._ramp)
            self._fo_pos += got
            self.faded_frames += got
        out[got:] = 0
        if got < want or self._fo_pos >= len(self._ramp):
            ring.apply_discard()
            self._fi_ramp, self._fi_pos = self._ramp, 0  # what plays next fades in
            self.fade_done = req
            self.want_space = False
            self.wake()
        if got:
            self._stamp(first_pos, got, now, latency)

    def _stamp(self, first_pos: int, got: int, now: float, latency: float) -> None:
        """Record when the ``got`` frames from ``first_pos`` are heard; stamp marks."""
        heard = now + latency
        self.heard_until = heard + got / self.sample_rate
        if self.want_space and self.ring.free >= self.refill_frames:
            self.want_space = False
            self.wake()
        marks = self._mark_pos
        if marks.max() >= first_pos:  # any mark at or after this block?
            last_pos = first_pos + got
            for i in range(_MAX_MARKS):
                pos = marks[i]
                if first_pos <= pos < last_pos and self._mark_time[i] != self._mark_time[i]:
                    self._mark_time[i] = heard + (pos - first_pos) / self.sample_rate
                    self.wake()


def _raised_cosine(frames: int) -> npt.NDArray[np.float32]:
    """A ramp from 1 to 0 over ``frames`` (raised cosine, sampled at mid-points)."""
    t = (np.arange(frames, dtype=np.float64) + 0.5) / max(frames, 1)
    return (0.5 * (1.0 + np.cos(np.pi * t))).astype(np.float32)
