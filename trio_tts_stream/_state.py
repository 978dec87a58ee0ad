"""The playback state machine: pure, synchronous, time passed in.

Theory of operation
-------------------
One playback goes through these states::

                  THRESHOLD_REACHED               END_OF_STREAM
     BUFFERING ---------------------> PLAYING ---------------------> DRAINING
         |                            |     ^                        |    |
         | EOS_BEFORE_THRESHOLD       |     | REBUFFERED             |    | DRAINED
         | (start anyway)    UNDERRUN |     |                        |    v
         |                            v     |      END_OF_STREAM     |   DONE(completed)
         +-----------------------> REBUFFERING ----------------------+
         (to DRAINING)

     any state but DONE --CANCELLED--> DONE(cancelled)
     any state but DONE --FAILED-----> DONE(failed)

* ``BUFFERING``: decoded audio accumulates in the output buffer; the device plays
  silence. Playback starts when the buffer holds ``start_ms`` of audio, or when the
  stream ends first (a short utterance starts anyway).
* ``PLAYING``: the device consumes the buffer. If it runs dry before the stream ends
  the audio callback pauses itself and plays silence (an *underrun*).
* ``REBUFFERING``: after an underrun, wait until ``rebuffer_ms`` of audio is buffered
  (or the stream ends), then resume. Each underrun is one gap, never a stutter.
* ``DRAINING``: every byte has arrived; the device plays out what is buffered. Running
  dry here is the end, not an underrun.
* ``DONE``: the tail has been heard (``DRAINED``: every frame consumed plus the device
  latency), or playback was cancelled or failed. ``DONE`` carries the :class:`Outcome`.

The table :data:`TRANSITIONS` is the whole truth; :class:`PlaybackStateMachine` applies
it, records every transition with its time and cause, and raises
:class:`StateTransitionError` for an event that is illegal in the current state,
leaving the state unchanged. :class:`PlaybackController` adds the buffering policy:
it turns observations (buffer level, underrun, end of stream) into events.
"""

from __future__ import annotations

from types import MappingProxyType

from ._exceptions import StateTransitionError
from ._vocabulary import Cause, Gate, Outcome, PlaybackState, Transition

__all__ = ["TRANSITIONS", "PlaybackController", "PlaybackStateMachine", "transitions_dot"]


_S = PlaybackState
_C = Cause

_TABLE: dict[tuple[PlaybackState, Cause], PlaybackState] = {
    (_S.BUFFERING, _C.THRESHOLD_REACHED): _S.PLAYING,
    (_S.BUFFERING, _C.EOS_BEFORE_THRESHOLD): _S.DRAINING,
    (_S.PLAYING, _C.UNDERRUN): _S.REBUFFERING,
    (_S.PLAYING, _C.END_OF_STREAM): _S.DRAINING,
    (_S.REBUFFERING, _C.REBUFFERED): _S.PLAYING,
    (_S.REBUFFERING, _C.END_OF_STREAM): _S.DRAINING,
    (_S.DRAINING, _C.DRAINED): _S.DONE,
}
for _state in (_S.BUFFERING, _S.PLAYING, _S.REBUFFERING, _S.DRAINING):
    _TABLE[_state, _C.CANCELLED] = _S.DONE
    _TABLE[_state, _C.FAILED] = _S.DONE
del _state

#: (state, cause) -> next state, read-only. Anything absent is illegal.
TRANSITIONS = MappingProxyType(_TABLE)

#: Most rebuffer thresholds a controller remembers (one per underrun).
_THRESHOLDS_KEPT = 512


def transitions_dot() -> str:
    """:data:`TRANSITIONS` as a Graphviz ``digraph`` (the docs draw it at build time, so
    the picture is the table): one edge per (state, cause) pair, labelled with the
    cause; ``DONE`` appears once per outcome."""
    lines = [
        "digraph playback_states {",
        '  rankdir=LR; bgcolor="transparent";',
        '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]

    def node(state: PlaybackState, cause: Cause) -> str:
        if state is PlaybackState.DONE:
            return f"done_{_OUTCOMES[cause].value}"
        return str(state.value)

    for state in PlaybackState:
        if state is not PlaybackState.DONE:
            lines.append(f'  {state.value} [label="{state.name}"];')
    for outcome in Outcome:
        label = f"DONE ({outcome.value})"
        lines.append(f'  done_{outcome.value} [label="{label}", fillcolor="#f1f1f1"];')
    for (source, cause), target in TRANSITIONS.items():
        stop = cause in (Cause.CANCELLED, Cause.FAILED)
        style = ', style=dashed, color="#888888", fontcolor="#666666"' if stop else ""
        lines.append(
            f'  {node(source, cause)} -> {node(target, cause)} [label="{cause.value}"{style}];'
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


#: The gate each state wants. ``REBUFFERING`` keeps ``RUNNING``: the consumer paused
#: itself when it ran dry (see :mod:`._ringbuffer`), and re-setting the gate resumes it.
_GATES = {
    _S.BUFFERING: Gate.PAUSED,
    _S.PLAYING: Gate.RUNNING,
    _S.REBUFFERING: Gate.RUNNING,
    _S.DRAINING: Gate.DRAINING,
    _S.DONE: Gate.PAUSED,
}

_OUTCOMES = {
    _C.DRAINED: Outcome.COMPLETED,
    _C.CANCELLED: Outcome.CANCELLED,
    _C.FAILED: Outcome.FAILED,
}


class PlaybackStateMachine:
    """Applies :data:`TRANSITIONS` and records the timeline.

    Args:
        now: The start time (the caller's clock).
    """

    def __init__(self, now: float) -> None:
        self.started_at = now
        self.state = PlaybackState.BUFFERING
        self.outcome: Outcome | None = None
        self.timeline: list[Transition] = []

    def can_fire(self, cause: Cause) -> bool:
        """Whether ``cause`` is legal in the current state."""
        return (self.state, cause) in TRANSITIONS

    def fire(self, cause: Cause, now: float) -> PlaybackState:
        """Apply ``cause`` at time ``now`` and return the new state.

        Raises:
            StateTransitionError: ``cause`` is illegal in the current state; nothing changed.
        """
        try:
            target = TRANSITIONS[self.state, cause]
        except KeyError:
            raise StateTransitionError(
                f"{cause.value!r} is not a legal event in state {self.state.value!r}"
            ) from None
        self.timeline.append(Transition(now, cause, self.state, target))
        self.state = target
        if target is PlaybackState.DONE:
            self.outcome = _OUTCOMES[cause]
        return target


class PlaybackController:
    """Buffering policy on top of :class:`PlaybackStateMachine`: the one place that
    decides the output's gate.

    Feed it observations (:meth:`output_opened`, :meth:`observe`, :meth:`end_of_stream`);
    it fires the events they imply, and :attr:`gate` is the decision the player applies
    to the output (``PAUSED`` while buffering, ``RUNNING`` while playing or rebuffering,
    ``DRAINING`` once every byte has arrived).

    Args:
        now: The start time.
        start_ms: Buffered audio needed to start playing.
        rebuffer_ms: Buffered audio needed to resume after an underrun.
        growth: Each underrun after the first multiplies ``rebuffer_ms`` by this (1.0:
            fixed): the first gap waits for ``rebuffer_ms``, the next for 1.5 times that,
            ..., so a link that keeps running dry gets longer, rarer gaps instead of many
            short ones.
        max_ms: Cap for the grown threshold (the buffer's capacity).
    """

    def __init__(
        self,
        now: float,
        *,
        start_ms: float,
        rebuffer_ms: float,
        growth: float = 1.0,
        max_ms: float = float("inf"),
    ) -> None:
        self.machine = PlaybackStateMachine(now)
        self.start_ms = start_ms
        self.rebuffer_ms = rebuffer_ms
        self.growth = growth
        self.max_ms = max_ms
        #: Underrun events fired (the output's own count is what :meth:`observe` reads).
        self.underruns = 0
        #: The rebuffer threshold each underrun waited for (at most 512 kept).
        self.thresholds: list[float] = []
        self._output_underruns = 0

    @property
    def state(self) -> PlaybackState:
        """The current state."""
        return self.machine.state

    @property
    def gate(self) -> Gate:
        """What the output should do now."""
        return _GATES[self.machine.state]

    def output_opened(self, *, busy: bool) -> Gate | None:
        """The output is ready for this playback; return the gate to set, if any.

        Args:
            busy: Audio queued ahead of ours (an earlier utterance) is still playing: it
                is left to play out (gapless), so no gate is set.
        """
        return None if busy else self.gate

    def observe(self, buffered_ms: float, *, full: bool, underruns: int, now: float) -> Gate | None:
        """The output's level and underrun count (since this playback started); fire what
        they imply and return the gate to set, if it must be set again.

        Args:
            buffered_ms: Audio buffered ahead of the device.
            full: The buffer is full: playing must start, whatever the threshold.
            underruns: Times the output ran dry during this playback.
            now: The caller's clock.
        """
        if underruns > self._output_underruns:
            self._output_underruns = underruns
            self.underrun(now)
        if self.buffer_level(float("inf") if full else buffered_ms, now) is not None:
            return self.gate
        return None

    def buffer_level(self, buffered_ms: float, now: float) -> Cause | None:
        """The buffer holds ``buffered_ms``; start or resume if that is enough."""
        state = self.machine.state
        if state is PlaybackState.BUFFERING and buffered_ms >= self.start_ms:
            self.machine.fire(Cause.THRESHOLD_REACHED, now)
            return Cause.THRESHOLD_REACHED
        if state is PlaybackState.REBUFFERING and buffered_ms >= self.rebuffer_ms:
            self.machine.fire(Cause.REBUFFERED, now)
            return Cause.REBUFFERED
        return None

    def underrun(self, now: float) -> Cause | None:
        """The output ran dry while playing (ignored outside ``PLAYING``); from the second
        underrun on, the rebuffer threshold grows by ``growth`` up to ``max_ms``."""
        if self.machine.state is PlaybackState.PLAYING:
            self.machine.fire(Cause.UNDERRUN, now)
            self.underruns += 1
            if self.underruns > 1:
                self.rebuffer_ms = min(self.max_ms, self.rebuffer_ms * self.growth)
            if len(self.thresholds) < _THRESHOLDS_KEPT:
                self.thresholds.append(self.rebuffer_ms)
            return Cause.UNDERRUN
        return None

    def end_of_stream(self, now: float) -> Cause:
        """Every byte has arrived and been decoded."""
        if self.machine.state is PlaybackState.BUFFERING:
            cause = Cause.EOS_BEFORE_THRESHOLD
        else:
            cause = Cause.END_OF_STREAM
        self.machine.fire(cause, now)
        return cause

    def drained(self, now: float) -> None:
        """The last frame has been heard."""
        self.machine.fire(Cause.DRAINED, now)

    def stop(self, cause: Cause, now: float) -> bool:
        """Cancel or fail (``cause``) unless already done; return whether it fired.

        Raises:
            ValueError: ``cause`` is neither ``CANCELLED`` nor ``FAILED``.
        """
        if cause not in (Cause.CANCELLED, Cause.FAILED):
            raise ValueError(f"stop() takes CANCELLED or FAILED, not {cause.value!r}")
        if self.machine.state is PlaybackState.DONE:
            return False
        self.machine.fire(cause, now)
        return True
