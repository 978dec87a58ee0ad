"""Tests for the playback state machine (``_state.py``).

Every (state, cause) pair is tried: legal pairs move to the target the hand-written
table below says, and record the transition; illegal pairs raise
:class:`StateTransitionError` and change nothing. The controller's buffering policy is
checked at its thresholds, and hypothesis drives random observation sequences against a
small reference model.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_tts_stream._exceptions import StateTransitionError, TTSStreamError
from trio_tts_stream._state import TRANSITIONS, PlaybackController, PlaybackStateMachine
from trio_tts_stream._vocabulary import Cause, Gate, Outcome, PlaybackState, Transition

S = PlaybackState
C = Cause

#: The gate each state wants, written out by hand.
GATES = {
    S.BUFFERING: Gate.PAUSED,
    S.PLAYING: Gate.RUNNING,
    S.REBUFFERING: Gate.RUNNING,  # the consumer paused itself when it ran dry
    S.DRAINING: Gate.DRAINING,
    S.DONE: Gate.PAUSED,
}

#: The documented transition table, written out by hand (independently of TRANSITIONS).
EXPECTED: dict[tuple[PlaybackState, Cause], PlaybackState] = {
    (S.BUFFERING, C.THRESHOLD_REACHED): S.PLAYING,
    (S.BUFFERING, C.EOS_BEFORE_THRESHOLD): S.DRAINING,
    (S.BUFFERING, C.CANCELLED): S.DONE,
    (S.BUFFERING, C.FAILED): S.DONE,
    (S.PLAYING, C.UNDERRUN): S.REBUFFERING,
    (S.PLAYING, C.END_OF_STREAM): S.DRAINING,
    (S.PLAYING, C.CANCELLED): S.DONE,
    (S.PLAYING, C.FAILED): S.DONE,
    (S.REBUFFERING, C.REBUFFERED): S.PLAYING,
    (S.REBUFFERING, C.END_OF_STREAM): S.DRAINING,
    (S.REBUFFERING, C.CANCELLED): S.DONE,
    (S.REBUFFERING, C.FAILED): S.DONE,
    (S.DRAINING, C.DRAINED): S.DONE,
    (S.DRAINING, C.CANCELLED): S.DONE,
    (S.DRAINING, C.FAILED): S.DONE,
}

EXPECTED_OUTCOME = {
    C.DRAINED: Outcome.COMPLETED,
    C.CANCELLED: Outcome.CANCELLED,
    C.FAILED: Outcome.FAILED,
}

#: A legal way to reach each state from BUFFERING.
PATHS: dict[PlaybackState, list[Cause]] = {
    S.BUFFERING: [],
    S.PLAYING: [C.THRESHOLD_REACHED],
    S.REBUFFERING: [C.THRESHOLD_REACHED, C.UNDERRUN],
    S.DRAINING: [C.THRESHOLD_REACHED, C.END_OF_STREAM],
    S.DONE: [C.THRESHOLD_REACHED, C.END_OF_STREAM, C.DRAINED],
}

NOT_DONE = [s for s in PlaybackState if s is not S.DONE]
ALL_PAIRS = list(itertools.product(PlaybackState, Cause))


def machine_in(state: PlaybackState, *, start: float = 5.0) -> PlaybackStateMachine:
    """A machine driven to ``state`` along :data:`PATHS`, one second per step."""
    machine = PlaybackStateMachine(start)
    for i, cause in enumerate(PATHS[state], start=1):
        machine.fire(cause, start + i)
    assert machine.state is state
    return machine


def pair_id(pair: tuple[PlaybackState, Cause]) -> str:
    return f"{pair[0].name}-{pair[1].name}"


# -- the table ---------------------------------------------------------------------------


def test_table_is_exactly_the_documented_one() -> None:
    assert TRANSITIONS == EXPECTED


def test_cancel_and_fail_are_legal_from_every_state_but_done() -> None:
    for state in NOT_DONE:
        assert TRANSITIONS[state, C.CANCELLED] is S.DONE
        assert TRANSITIONS[state, C.FAILED] is S.DONE


def test_nothing_is_legal_from_done() -> None:
    assert [cause for cause in Cause if (S.DONE, cause) in TRANSITIONS] == []


def test_nothing_leads_back_to_buffering() -> None:
    assert S.BUFFERING not in TRANSITIONS.values()


def test_every_cause_is_used_and_done_causes_have_an_outcome() -> None:
    assert {cause for _, cause in TRANSITIONS} == set(Cause)
    done_causes = {cause for (_, cause), target in TRANSITIONS.items() if target is S.DONE}
    assert done_causes == set(EXPECTED_OUTCOME)


def test_done_completed_is_reachable_from_every_state_but_done() -> None:
    def reachable(start: PlaybackState) -> set[PlaybackState]:
        seen = {start}
        frontier = [start]
        while frontier:
            state = frontier.pop()
            for (source, _), target in TRANSITIONS.items():
                if source is state and target not in seen:
                    seen.add(target)
                    frontier.append(target)
        return seen

    assert reachable(S.BUFFERING) == set(PlaybackState)
    for state in NOT_DONE:
        # DRAINED is the only way to DONE(completed), and DRAINING must be reachable.
        assert S.DRAINING in reachable(state)


def test_paths_used_by_these_tests_are_legal() -> None:
    for state in PlaybackState:
        assert machine_in(state).state is state


# -- the machine -------------------------------------------------------------------------


def test_new_machine() -> None:
    machine = PlaybackStateMachine(12.5)
    assert machine.started_at == 12.5
    assert machine.state is S.BUFFERING
    assert machine.outcome is None
    assert machine.timeline == []


@pytest.mark.parametrize("pair", ALL_PAIRS, ids=pair_id)
def test_every_state_and_cause(pair: tuple[PlaybackState, Cause]) -> None:
    state, cause = pair
    machine = machine_in(state)
    before_timeline = list(machine.timeline)
    before_outcome = machine.outcome
    legal = pair in EXPECTED
    assert machine.can_fire(cause) is legal

    if legal:
        target = EXPECTED[pair]
        assert machine.fire(cause, 123.25) is target
        assert machine.state is target
        assert machine.timeline[:-1] == before_timeline
        assert machine.timeline[-1] == Transition(
            time=123.25, cause=cause, source=state, target=target
        )
        if target is S.DONE:
            assert machine.outcome is EXPECTED_OUTCOME[cause]
        else:
            assert machine.outcome is None
    else:
        with pytest.raises(StateTransitionError) as info:
            machine.fire(cause, 123.25)
        message = str(info.value)
        assert cause.value in message
        assert state.value in message
        assert machine.state is state
        assert machine.outcome is before_outcome
        assert machine.timeline == before_timeline


@pytest.mark.parametrize("how", list(EXPECTED_OUTCOME), ids=lambda c: c.name)
@pytest.mark.parametrize("cause", list(Cause), ids=lambda c: c.name)
def test_done_is_final_whatever_the_outcome(how: Cause, cause: Cause) -> None:
    machine = machine_in(S.DRAINING)
    machine.fire(how, 50.0)
    timeline = list(machine.timeline)
    assert not machine.can_fire(cause)
    with pytest.raises(StateTransitionError):
        machine.fire(cause, 60.0)
    assert machine.state is S.DONE
    assert machine.outcome is EXPECTED_OUTCOME[how]
    assert machine.timeline == timeline


def test_state_transition_error_is_a_library_error_and_a_runtime_error() -> None:
    machine = PlaybackStateMachine(0.0)
    with pytest.raises(TTSStreamError):
        machine.fire(C.DRAINED, 1.0)
    with pytest.raises(RuntimeError):
        machine.fire(C.DRAINED, 1.0)


def test_timeline_records_the_given_times_not_a_clock() -> None:
    machine = PlaybackStateMachine(1000.0)
    machine.fire(C.THRESHOLD_REACHED, 1000.5)
    machine.fire(C.UNDERRUN, 999.0)  # any float the caller passes is recorded as is
    machine.fire(C.REBUFFERED, -3.0)
    assert [t.time for t in machine.timeline] == [1000.5, 999.0, -3.0]
    assert machine.started_at == 1000.0


def test_transition_is_frozen() -> None:
    t = Transition(1.0, C.UNDERRUN, S.PLAYING, S.REBUFFERING)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.time = 2.0  # type: ignore[misc]


def test_full_happy_path_timeline() -> None:
    machine = PlaybackStateMachine(0.0)
    for i, cause in enumerate(
        [C.THRESHOLD_REACHED, C.UNDERRUN, C.REBUFFERED, C.END_OF_STREAM, C.DRAINED]
    ):
        machine.fire(cause, float(i))
    assert [(t.source, t.target) for t in machine.timeline] == [
        (S.BUFFERING, S.PLAYING),
        (S.PLAYING, S.REBUFFERING),
        (S.REBUFFERING, S.PLAYING),
        (S.PLAYING, S.DRAINING),
        (S.DRAINING, S.DONE),
    ]
    assert machine.outcome is Outcome.COMPLETED


# -- the controller ----------------------------------------------------------------------


def state_of(ctl: PlaybackController) -> PlaybackState:
    """``ctl.state``, read through a call so mypy does not narrow it between events."""
    return ctl.state


def controller_in(
    state: PlaybackState, *, start_ms: float = 100.0, rebuffer_ms: float = 300.0
) -> PlaybackController:
    ctl = PlaybackController(0.0, start_ms=start_ms, rebuffer_ms=rebuffer_ms)
    for i, cause in enumerate(PATHS[state], start=1):
        ctl.machine.fire(cause, float(i))
    assert ctl.state is state
    return ctl


def test_new_controller() -> None:
    ctl = PlaybackController(7.0, start_ms=120.0, rebuffer_ms=250.0)
    assert ctl.state is S.BUFFERING
    assert ctl.machine.started_at == 7.0
    assert ctl.start_ms == 120.0
    assert ctl.rebuffer_ms == 250.0
    assert ctl.gate is Gate.PAUSED


@pytest.mark.parametrize("start_ms", [0.0, 1.0, 150.0, 1999.5])
def test_starts_exactly_at_the_threshold(start_ms: float) -> None:
    ctl = PlaybackController(0.0, start_ms=start_ms, rebuffer_ms=300.0)
    below = start_ms - 1e-9 if start_ms > 0 else -1.0
    assert ctl.buffer_level(below, 1.0) is None
    assert ctl.state is S.BUFFERING
    assert ctl.machine.timeline == []
    assert ctl.buffer_level(start_ms, 2.0) is C.THRESHOLD_REACHED
    assert state_of(ctl) is S.PLAYING
    assert ctl.machine.timeline == [Transition(2.0, C.THRESHOLD_REACHED, S.BUFFERING, S.PLAYING)]


def test_starts_above_the_threshold() -> None:
    ctl = PlaybackController(0.0, start_ms=100.0, rebuffer_ms=300.0)
    assert ctl.buffer_level(5000.0, 0.5) is C.THRESHOLD_REACHED
    assert ctl.state is S.PLAYING


def test_rebuffer_uses_its_own_threshold() -> None:
    ctl = controller_in(S.REBUFFERING, start_ms=100.0, rebuffer_ms=300.0)
    n = len(ctl.machine.timeline)
    # Above the start threshold but below the rebuffer threshold: keep waiting.
    assert ctl.buffer_level(200.0, 10.0) is None
    assert ctl.buffer_level(300.0 - 1e-9, 10.5) is None
    assert ctl.state is S.REBUFFERING
    assert len(ctl.machine.timeline) == n
    assert ctl.buffer_level(300.0, 11.0) is C.REBUFFERED
    assert state_of(ctl) is S.PLAYING
    assert ctl.machine.timeline[-1] == Transition(11.0, C.REBUFFERED, S.REBUFFERING, S.PLAYING)


def test_rebuffer_threshold_may_be_below_the_start_threshold() -> None:
    ctl = controller_in(S.REBUFFERING, start_ms=500.0, rebuffer_ms=50.0)
    assert ctl.buffer_level(49.0, 10.0) is None
    assert ctl.buffer_level(50.0, 11.0) is C.REBUFFERED


@pytest.mark.parametrize("state", [S.PLAYING, S.DRAINING, S.DONE], ids=lambda s: s.name)
def test_buffer_level_is_ignored_when_not_waiting(state: PlaybackState) -> None:
    ctl = controller_in(state)
    timeline = list(ctl.machine.timeline)
    assert ctl.buffer_level(1e9, 100.0) is None
    assert ctl.buffer_level(0.0, 101.0) is None
    assert ctl.state is state
    assert ctl.machine.timeline == timeline


def test_eos_before_threshold_drains() -> None:
    ctl = PlaybackController(0.0, start_ms=100.0, rebuffer_ms=300.0)
    ctl.buffer_level(99.0, 0.5)
    assert ctl.end_of_stream(1.0) is C.EOS_BEFORE_THRESHOLD
    assert ctl.state is S.DRAINING
    assert ctl.gate in (Gate.RUNNING, Gate.DRAINING)
    assert ctl.machine.timeline == [
        Transition(1.0, C.EOS_BEFORE_THRESHOLD, S.BUFFERING, S.DRAINING)
    ]


@pytest.mark.parametrize("state", [S.PLAYING, S.REBUFFERING], ids=lambda s: s.name)
def test_end_of_stream_while_playing_or_rebuffering(state: PlaybackState) -> None:
    ctl = controller_in(state)
    assert ctl.end_of_stream(42.0) is C.END_OF_STREAM
    assert ctl.state is S.DRAINING
    assert ctl.machine.timeline[-1] == Transition(42.0, C.END_OF_STREAM, state, S.DRAINING)


@pytest.mark.parametrize("state", [S.DRAINING, S.DONE], ids=lambda s: s.name)
def test_end_of_stream_twice_is_illegal(state: PlaybackState) -> None:
    ctl = controller_in(state)
    timeline = list(ctl.machine.timeline)
    outcome = ctl.machine.outcome
    with pytest.raises(StateTransitionError):
        ctl.end_of_stream(42.0)
    assert ctl.state is state
    assert ctl.machine.outcome is outcome
    assert ctl.machine.timeline == timeline


def test_underrun_from_playing() -> None:
    ctl = controller_in(S.PLAYING)
    assert ctl.underrun(9.0) is C.UNDERRUN
    assert ctl.state is S.REBUFFERING
    assert ctl.gate is Gate.RUNNING  # starved: the consumer paused itself
    assert ctl.machine.timeline[-1] == Transition(9.0, C.UNDERRUN, S.PLAYING, S.REBUFFERING)


@pytest.mark.parametrize("state", [s for s in PlaybackState if s is not S.PLAYING], ids=str)
def test_underrun_is_ignored_outside_playing(state: PlaybackState) -> None:
    ctl = controller_in(state)
    timeline = list(ctl.machine.timeline)
    outcome = ctl.machine.outcome
    assert ctl.underrun(9.0) is None
    assert ctl.state is state
    assert ctl.machine.outcome is outcome
    assert ctl.machine.timeline == timeline


def test_drained_from_draining_completes() -> None:
    ctl = controller_in(S.DRAINING)
    ctl.drained(77.0)
    assert ctl.state is S.DONE
    assert ctl.machine.outcome is Outcome.COMPLETED
    assert ctl.machine.timeline[-1] == Transition(77.0, C.DRAINED, S.DRAINING, S.DONE)


@pytest.mark.parametrize("state", [s for s in PlaybackState if s is not S.DRAINING], ids=str)
def test_drained_elsewhere_is_illegal(state: PlaybackState) -> None:
    ctl = controller_in(state)
    timeline = list(ctl.machine.timeline)
    with pytest.raises(StateTransitionError):
        ctl.drained(77.0)
    assert ctl.state is state
    assert ctl.machine.timeline == timeline


@pytest.mark.parametrize("state", list(PlaybackState), ids=lambda s: s.name)
def test_gate(state: PlaybackState) -> None:
    assert controller_in(state).gate is GATES[state]


@pytest.mark.parametrize("cause", [C.CANCELLED, C.FAILED], ids=lambda c: c.name)
@pytest.mark.parametrize("state", NOT_DONE, ids=lambda s: s.name)
def test_stop_from_every_live_state(state: PlaybackState, cause: Cause) -> None:
    ctl = controller_in(state)
    assert ctl.stop(cause, 31.0) is True
    assert ctl.state is S.DONE
    assert ctl.machine.outcome is EXPECTED_OUTCOME[cause]
    assert ctl.machine.timeline[-1] == Transition(31.0, cause, state, S.DONE)
    assert ctl.gate is Gate.PAUSED


@pytest.mark.parametrize("second", [C.CANCELLED, C.FAILED], ids=lambda c: c.name)
@pytest.mark.parametrize("first", list(EXPECTED_OUTCOME), ids=lambda c: c.name)
def test_stop_is_idempotent(first: Cause, second: Cause) -> None:
    ctl = controller_in(S.DRAINING)
    if first is C.DRAINED:
        ctl.drained(1.0)
    else:
        assert ctl.stop(first, 1.0) is True
    timeline = list(ctl.machine.timeline)
    assert ctl.stop(second, 2.0) is False
    assert ctl.stop(second, 3.0) is False
    assert ctl.state is S.DONE
    assert ctl.machine.outcome is EXPECTED_OUTCOME[first]
    assert ctl.machine.timeline == timeline


# -- hypothesis: random observation sequences --------------------------------------------


@dataclass(frozen=True)
class Op:
    kind: str  # "level", "underrun", "eos", "drained", "cancel", "fail"
    level: float = 0.0
    dt: float = 0.0


ops = st.one_of(
    st.builds(
        Op,
        kind=st.just("level"),
        level=st.floats(0.0, 1000.0, allow_nan=False),
        dt=st.floats(0.0, 1.0, allow_nan=False),
    ),
    st.builds(
        Op,
        kind=st.sampled_from(["underrun", "eos", "drained", "cancel", "fail"]),
        dt=st.floats(0.0, 1.0, allow_nan=False),
    ),
)


def model_step(
    state: PlaybackState, op: Op, start_ms: float, rebuffer_ms: float
) -> tuple[Cause | None, bool]:
    """What the controller should fire for ``op`` in ``state``: (cause, raises)."""
    if op.kind == "level":
        if state is S.BUFFERING and op.level >= start_ms:
            return C.THRESHOLD_REACHED, False
        if state is S.REBUFFERING and op.level >= rebuffer_ms:
            return C.REBUFFERED, False
        return None, False
    if op.kind == "underrun":
        return (C.UNDERRUN if state is S.PLAYING else None), False
    if op.kind == "eos":
        if state is S.BUFFERING:
            return C.EOS_BEFORE_THRESHOLD, False
        return C.END_OF_STREAM, state in (S.DRAINING, S.DONE)
    if op.kind == "drained":
        return C.DRAINED, state is not S.DRAINING
    cause = C.CANCELLED if op.kind == "cancel" else C.FAILED
    return (None if state is S.DONE else cause), False


def apply(ctl: PlaybackController, op: Op, now: float) -> Cause | None:
    if op.kind == "level":
        return ctl.buffer_level(op.level, now)
    if op.kind == "underrun":
        return ctl.underrun(now)
    if op.kind == "eos":
        return ctl.end_of_stream(now)
    if op.kind == "drained":
        ctl.drained(now)
        return C.DRAINED
    cause = C.CANCELLED if op.kind == "cancel" else C.FAILED
    return cause if ctl.stop(cause, now) else None


def check_consistent(ctl: PlaybackController, times: list[float]) -> None:
    machine = ctl.machine
    timeline = machine.timeline
    assert [t.time for t in timeline] == times
    previous = S.BUFFERING
    for t in timeline:
        assert t.source is previous
        assert TRANSITIONS[t.source, t.cause] is t.target
        previous = t.target
    assert machine.state is previous
    assert ctl.state is previous
    if previous is S.DONE:
        assert machine.outcome is EXPECTED_OUTCOME[timeline[-1].cause]
        assert sum(t.target is S.DONE for t in timeline) == 1
    else:
        assert machine.outcome is None
    assert ctl.gate is GATES[previous]


@settings(max_examples=300, deadline=None)
@given(
    start_ms=st.floats(0.0, 500.0, allow_nan=False),
    rebuffer_ms=st.floats(0.0, 500.0, allow_nan=False),
    sequence=st.lists(ops, max_size=40),
)
def test_random_observations_keep_the_machine_consistent(
    start_ms: float, rebuffer_ms: float, sequence: list[Op]
) -> None:
    ctl = PlaybackController(0.0, start_ms=start_ms, rebuffer_ms=rebuffer_ms)
    now = 0.0
    times: list[float] = []
    for op in sequence:
        now += op.dt
        state = ctl.state
        expected, raises = model_step(state, op, start_ms, rebuffer_ms)
        if raises:
            with pytest.raises(StateTransitionError):
                apply(ctl, op, now)
            assert ctl.state is state
        else:
            assert apply(ctl, op, now) is expected
            if expected is not None:
                times.append(now)
                assert ctl.machine.timeline[-1].cause is expected
                assert ctl.machine.timeline[-1].source is state
        check_consistent(ctl, times)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(list(Cause)), st.floats(-1e6, 1e6, allow_nan=False)),
        max_size=30,
    )
)
def test_random_causes_on_the_bare_machine(events: list[tuple[Cause, float]]) -> None:
    machine = PlaybackStateMachine(0.0)
    expected_state = S.BUFFERING
    expected_timeline: list[Transition] = []
    for cause, now in events:
        target = EXPECTED.get((expected_state, cause))
        if target is None:
            with pytest.raises(StateTransitionError):
                machine.fire(cause, now)
        else:
            assert machine.fire(cause, now) is target
            expected_timeline.append(Transition(now, cause, expected_state, target))
            expected_state = target
        assert machine.state is expected_state
        assert machine.timeline == expected_timeline
        if expected_state is S.DONE:
            assert machine.outcome is EXPECTED_OUTCOME[expected_timeline[-1].cause]
        else:
            assert machine.outcome is None


def test_observe_fires_underruns_from_the_output_count_and_returns_the_gate() -> None:
    ctl = PlaybackController(0.0, start_ms=100.0, rebuffer_ms=50.0)
    assert ctl.output_opened(busy=False) is Gate.PAUSED
    assert ctl.observe(99.0, full=False, underruns=0, now=0.1) is None
    assert ctl.observe(100.0, full=False, underruns=0, now=0.2) is Gate.RUNNING
    assert ctl.observe(0.0, full=False, underruns=1, now=0.3) is None
    assert ctl.state is S.REBUFFERING
    assert ctl.observe(10.0, full=False, underruns=1, now=0.4) is None  # no second event
    assert ctl.underruns == 1
    assert ctl.observe(50.0, full=False, underruns=1, now=0.5) is Gate.RUNNING
    assert (ctl.state, ctl.underruns) == (S.PLAYING, 1)  # a tuple: mypy keeps no narrowing


def test_a_full_buffer_starts_whatever_the_threshold() -> None:
    ctl = PlaybackController(0.0, start_ms=5000.0, rebuffer_ms=50.0)
    assert ctl.observe(2000.0, full=True, underruns=0, now=1.0) is Gate.RUNNING


def test_busy_output_keeps_its_gate() -> None:
    ctl = PlaybackController(0.0, start_ms=100.0, rebuffer_ms=50.0)
    assert ctl.output_opened(busy=True) is None


def test_transitions_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        TRANSITIONS[S.DONE, C.DRAINED] = S.PLAYING  # type: ignore[index]


def test_the_diagram_has_every_transition_as_an_edge() -> None:
    # docs/design.rst draws this DOT source: the picture is the table.
    from trio_tts_stream._state import transitions_dot

    dot = transitions_dot()
    assert dot.startswith("digraph")
    edges = [line.strip() for line in dot.splitlines() if "->" in line]
    assert len(edges) == len(TRANSITIONS)
    outcome = {"drained": "completed", "cancelled": "cancelled", "failed": "failed"}
    for (source, cause), target in TRANSITIONS.items():
        head = f"done_{outcome[cause.value]}" if target is PlaybackState.DONE else target.value
        edge = f'{source.value} -> {head} [label="{cause.value}"'
        assert any(e.startswith(edge) for e in edges), edge


def test_the_design_page_draws_the_generated_diagram() -> None:
    # The docs build (nox -s docs, -W) renders it with sphinx.ext.graphviz.
    from pathlib import Path

    docs = Path(__file__).parent.parent / "docs"
    assert ".. state-diagram::" in (docs / "design.rst").read_text()
    assert '"statediagram"' in (docs / "conf.py").read_text()
