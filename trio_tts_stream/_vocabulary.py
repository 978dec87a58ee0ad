"""The words the playback modules share: states, causes, outcomes, transitions, gates.

A leaf module (it imports nothing of the package), so that the state machine, the
metrics, the exceptions and the ring buffer can all use them without an import cycle.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Cause", "Gate", "Outcome", "PlaybackState", "Transition"]


class _Word(str, enum.Enum):
    """An enum whose members are also their string values.

    ``Cause.UNDERRUN == "underrun"`` holds, ``str()`` and ``json.dumps`` give the value:
    the report's ``--json`` form and code written against the former plain-string fields
    keep working while the attributes are typed.
    """

    def __str__(self) -> str:
        return str(self.value)


class PlaybackState(_Word):
    """Where a playback is."""

    BUFFERING = "buffering"
    PLAYING = "playing"
    REBUFFERING = "rebuffering"
    DRAINING = "draining"
    DONE = "done"


class Outcome(_Word):
    """How a playback in state ``DONE`` ended."""

    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


class Cause(_Word):
    """The event behind a transition."""

    THRESHOLD_REACHED = "threshold_reached"
    EOS_BEFORE_THRESHOLD = "eos_before_threshold"
    UNDERRUN = "underrun"
    REBUFFERED = "rebuffered"
    END_OF_STREAM = "end_of_stream"
    DRAINED = "drained"
    CANCELLED = "cancelled"
    FAILED = "failed"


class Gate(enum.Enum):
    """What the audio consumer does with its buffer: the controller's decision.

    * ``PAUSED``: play silence, consume nothing.
    * ``RUNNING``: consume; running dry is an underrun.
    * ``DRAINING``: consume; running dry is the end of the audio.
    """

    PAUSED = "paused"
    RUNNING = "running"
    DRAINING = "draining"


@dataclass(frozen=True)
class Transition:
    """One recorded state change.

    Attributes:
        time: When it happened (the caller's clock, seconds).
        cause: The event.
        source: The state before.
        target: The state after.
    """

    time: float
    cause: Cause
    source: PlaybackState
    target: PlaybackState
