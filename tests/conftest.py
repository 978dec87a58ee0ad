"""Shared pytest fixtures: the real-audio rig (see ``tests/_audio_rig.py``).

Fixtures:

* ``audio_rig`` (session): a private PulseAudio null sink and the ALSA ``tap`` device,
  with ``sounddevice`` re-initialized to see them. Started on first use only.
* ``audio_tap``: a fresh :class:`AudioTap` for this test; ``audio_tap.device`` is the
  ``sounddevice`` index to play to, ``audio_tap.read()`` what was played (int16).
* ``served`` (session): a ``serve`` subprocess (TTFB 300 ms, 2x real time); its URL.
* ``audio_monitor``: a started :class:`ParecRecorder` on the null sink's monitor; call
  ``audio_monitor.stop()`` to get the timestamped :class:`Recording`.

A test marked ``audio``, or using any of these fixtures (which marks it ``audio``), is
skipped when the machine lacks PulseAudio, PortAudio or ALSA's pulse plugin, and fails
instead when ``CI=true``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import _memnet
import pytest
from _audio_rig import (
    AudioRig,
    AudioTap,
    ParecRecorder,
    RigError,
    open_audio_rig,
    skip_or_fail,
)
from _cli_helpers import serve_process

_AUDIO_FIXTURES = frozenset({"audio_rig", "audio_tap", "audio_monitor"})
_AUTOJUMP_FIXTURES = frozenset({"autojump_clock", "clock"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses an audio fixture ``audio`` (so ``-m "not audio"`` works)."""
    for item in items:
        if _AUDIO_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.audio)


@pytest.fixture(autouse=True)
def _in_memory_network_under_autojump(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under an autojump clock, connections to the test server are in memory (see
    ``tests/_memnet.py``: kernel socket timers run on real time, which the clock races)."""
    if _AUTOJUMP_FIXTURES.intersection(request.fixturenames):
        _memnet.install(monkeypatch)


@pytest.fixture(autouse=True)
def _audio_marker_needs_rig(request: pytest.FixtureRequest) -> None:
    """Start (or skip/fail for lack of) the rig for tests marked ``audio``."""
    if request.node.get_closest_marker("audio") is not None:
        request.getfixturevalue("audio_rig")


@pytest.fixture(scope="session")
def audio_rig() -> Iterator[AudioRig]:
    """The session's audio rig (PulseAudio null sink + ALSA tap)."""
    with contextlib.ExitStack() as stack:
        try:
            rig = stack.enter_context(open_audio_rig())
        except RigError as exc:  # also raised for missing prerequisites
            skip_or_fail(str(exc))
        yield rig


@pytest.fixture
def audio_tap(audio_rig: AudioRig, request: pytest.FixtureRequest) -> AudioTap:
    """A tap that holds only the streams this test opens on ``audio_tap.device``."""
    return audio_rig.new_tap(request.node.name)


@pytest.fixture
def audio_monitor(audio_rig: AudioRig) -> Iterator[ParecRecorder]:
    """A running recorder of what the null sink plays; ``.stop()`` returns the Recording."""
    recorder = audio_rig.recorder()
    recorder.start()
    try:
        yield recorder
    finally:
        recorder.close()


@pytest.fixture(scope="session")
def served() -> Iterator[str]:
    """A ``python -m trio_tts_stream serve`` process (TTFB 300 ms, 2x real time)."""
    with serve_process("--ttfb-ms", "300", "--realtime-factor", "2") as url:
        yield url
