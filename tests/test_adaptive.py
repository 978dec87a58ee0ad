"""Adaptive buffering: the pure policy, and a Player learning from a slow link."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest
import trio

import trio_tts_stream as tts
from trio_tts_stream._adaptive import AdaptiveBuffering
from trio_tts_stream._state import PlaybackController


def test_underrun_grows_the_start_threshold_capped() -> None:
    policy = AdaptiveBuffering(150, 2000)
    assert policy.update(underruns=1, delivery_ratio=1.2, audio_s=3.0) == 225
    for _ in range(20):
        policy.update(underruns=2, delivery_ratio=None, audio_s=1.0)
    assert policy.start_ms == 2000


def test_slow_link_starts_late_enough_for_a_gapless_utterance() -> None:
    policy = AdaptiveBuffering(150, 5000)
    # 2 s of audio delivered at 0.8x real time needs 2 * (1/0.8 - 1) = 0.5 s up front.
    assert policy.update(underruns=0, delivery_ratio=0.8, audio_s=2.0) == pytest.approx(550)


def test_fast_link_starts_sooner_but_not_below_the_floor() -> None:
    policy = AdaptiveBuffering(150, 2000)
    assert policy.update(underruns=0, delivery_ratio=3.0, audio_s=2.0) == pytest.approx(112.5)
    for _ in range(10):
        policy.update(underruns=0, delivery_ratio=5.0, audio_s=2.0)
    assert policy.start_ms == 75  # buffer_ms / 2
    assert policy.update(underruns=0, delivery_ratio=1.5, audio_s=2.0) == 75  # unchanged


def test_rebuffer_threshold_grows_within_a_stream() -> None:
    ctl = PlaybackController(0.0, start_ms=100, rebuffer_ms=200, growth=1.5, max_ms=400)
    ctl.buffer_level(100, 0.1)
    ctl.underrun(0.2)
    assert ctl.rebuffer_ms == 200  # the first gap waits for rebuffer_ms itself
    assert ctl.buffer_level(199, 0.25) is None
    ctl.buffer_level(200, 0.3)
    ctl.underrun(0.4)
    assert ctl.rebuffer_ms == 300
    ctl.buffer_level(300, 0.5)
    ctl.underrun(0.6)
    assert ctl.rebuffer_ms == 400  # capped


async def paced(data: bytes, per_chunk_s: float) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 4800):  # 100 ms of audio per chunk
        yield data[i : i + 4800]
        await trio.sleep(per_chunk_s)


async def test_player_learns_a_slow_link(autojump_clock: trio.abc.Clock) -> None:
    """At 0.8x real time the first utterance rebuffers; the next ones do not."""
    data = (np.sin(np.arange(48000) * 0.01) * 8000).astype("<i2").tobytes()  # 2 s
    config = tts.StreamConfig(max_buffer_s=5.0)
    reports = []
    async with (
        tts.NullSink(buffer_s=5.0) as sink,
        tts.open_player(sink=sink, config=config) as player,
    ):
        for _ in range(3):
            reports.append(await player.play(paced(data, 0.125), response_format="pcm"))
    assert reports[0].underruns >= 1
    # 2 s of audio from the first to the last of 20 chunks 125 ms apart.
    assert reports[0].delivery_ratio == pytest.approx(2.0 / (19 * 0.125))
    first, second = reports[0].buffer_ms, reports[1].buffer_ms
    assert first is not None
    assert second is not None
    assert second > first
    assert reports[2].underruns == 0
    assert all(r.frames_played == 48000 for r in reports)
    assert "sk-" not in repr(player)
