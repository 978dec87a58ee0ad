"""Has the consumer of an output stopped? The policy behind a sink's watchdog (pure).

Theory of operation: a sound device's consumer (the PortAudio callback) runs every block
(10 ms) for as long as the stream is open, playing silence when there is nothing to
play. When the device or the sound server goes away, PortAudio may end the stream (the
sink hears of it at once) or may simply stop calling back (a hung or frozen server, a
device that stopped clocking), and then nothing else tells the program: the player
would wait forever for frames to be heard. So the sink's trio side looks every
``period_s`` at when the consumer last ran and declares the output stopped once that is
more than ``timeout_s`` ago.

What must not count is a delay that is ours, not the device's: when the watchdog itself
wakes much later than it asked (the process was suspended, the machine was overloaded,
the trio loop was blocked), the consumer may simply not have had its turn yet, so that
look is skipped and the clock restarts. Measured on the 2-core test machine
(``benchmarks/device_faults.py``; docs/benchmarks.rst, "Device faults"), the longest gap
between two PortAudio callbacks (10 ms blocks, PulseAudio) was 41 ms idle (as the stream
started) and 17 ms with both cores saturated by three busy-looping processes; the
default timeout of 0.5 s is more than ten times the worst, and a stopped output is
reported 0.5-0.6 s after its last callback.
"""

from __future__ import annotations

import math

__all__ = ["ConsumerWatchdog"]


class ConsumerWatchdog:
    """Decides, from the consumer's last run, whether an output has stopped.

    Times are on one clock (the sink converts the consumer's to trio's).

    Args:
        timeout_s: How long without a consumer run means the output stopped.
        period_s: How often the sink looks (default: a fifth of ``timeout_s``).

    Raises:
        ValueError: A duration is not positive and finite.
    """

    def __init__(self, timeout_s: float, period_s: float | None = None) -> None:
        period = timeout_s / 5 if period_s is None else period_s
        for name, value in (("timeout_s", timeout_s), ("period_s", period)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value!r} must be a positive number of seconds")
        self.timeout_s = float(timeout_s)
        self.period_s = float(period)
        self._since = -math.inf  # the consumer's last run, or when watching began
        self._looked = -math.inf  # the watchdog's own last look
        #: Looks skipped because the watchdog itself woke late.
        self.late_looks = 0

    def started(self, now: float) -> None:
        """The consumer was started at ``now``: it has ``timeout_s`` to run first."""
        self._since = self._looked = now

    def look(self, now: float, last_run: float) -> float | None:
        """One look at ``now``; ``last_run`` is when the consumer last ran (``-inf``:
        never). Returns for how long it has not run when that means it stopped, else
        ``None``."""
        if last_run > self._since:
            self._since = last_run
        late = now - self._looked > self.period_s + self.timeout_s / 2
        self._looked = now
        if late:
            # We were not running either: give the consumer a fresh timeout.
            self.late_looks += 1
            self._since = max(self._since, now)
            return None
        idle = now - self._since
        return idle if idle > self.timeout_s else None
