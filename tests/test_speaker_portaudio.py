"""The speaker on real PortAudio into the PulseAudio null sink: gapless at the device
(the bit-exact tap), and a barge-in that fades to silence (the monitor)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import trio
from _audio_rig import AudioTap, ParecRecorder, find_exact

import trio_tts_stream as tts
from trio_tts_stream.testing import open_test_server, synthesize_tone

pytestmark = pytest.mark.audio

TEXTS = ["The first of three.", "The second, right behind it.", "And the third one."]


async def test_queued_utterances_reach_the_device_without_a_gap(audio_tap: AudioTap) -> None:
    with trio.fail_after(30):
        async with open_test_server(realtime_factor=3, ttfb_ms=200) as server:
            async with (
                tts.SoundDeviceSink(audio_tap.device) as sink,
                # exact playout: the samples at the tap must be the server's
                tts.open_speaker(base_url=server.base_url, sink=sink, playout="exact") as speaker,
            ):
                utts = [speaker.say(t) for t in TEXTS]
            stats = speaker.statistics()
    assert all(u.state is tts.UtteranceState.COMPLETED for u in utts)
    played = audio_tap.read()[:, 0]
    expected = np.concatenate([synthesize_tone(t) for t in TEXTS])
    start = int(np.flatnonzero(played)[0])
    np.testing.assert_array_equal(played[start : start + len(expected)], expected)
    assert not np.any(played[start + len(expected) :])
    assert stats.gaps == 0


async def test_interrupt_fades_to_silence_at_the_monitor(audio_monitor: ParecRecorder) -> None:
    text = "A long answer that the user talks over after a second or so. " * 4
    expected = synthesize_tone(text)
    fade_ms = 10.0
    with trio.fail_after(30):
        async with open_test_server(realtime_factor=2) as server:
            async with (
                tts.SoundDeviceSink("pulse", blocksize_ms=10) as sink,
                tts.open_speaker(
                    base_url=server.base_url, sink=sink, fade_ms=fade_ms, playout="exact"
                ) as sp,
            ):
                sp.say(text)
                while not (  # noqa: ASYNC110 (polling the output's counters)
                    sink.audio_format is not None and sink.statistics().frames_played > 24000
                ):
                    await trio.sleep(0.005)
                called = time.perf_counter()
                result = await sp.interrupt()
                await trio.sleep(0.5)
    recording = audio_monitor.stop()
    heard = recording.samples
    assert result.silence_ms is not None
    # (How soon, at the monitor, is a benchmark figure: benchmarks/speaker.py. Here only
    # a gross bound; the exact bound at the consumer is tested under the autojump clock.)
    assert result.silence_ms < 250
    # Where the utterance starts in what the null sink rendered.
    at = find_exact(heard, expected[:480])
    assert at >= 0
    loud = np.flatnonzero(heard[at:])
    last = at + int(loud[-1])
    n = last - at + 1  # frames of the utterance rendered, fade included
    fade = round(fade_ms * 24)
    assert abs(n - result.frames) <= 2 * 240
    # Exact up to the fade, then a ramp down: no sample louder than the original, the
    # last ones near zero, and nothing but silence after it.
    body = n - fade
    np.testing.assert_array_equal(heard[at : at + body - 48], expected[: body - 48])
    tail = heard[at + body : at + n].astype(np.int32)
    assert np.all(np.abs(tail) <= np.abs(expected[body:n].astype(np.int32)) + 1)
    assert np.abs(tail[-24:]).max() <= 0.2 * np.abs(expected[body - 24 : n]).max() + 2
    assert not np.any(heard[last + 1 :])
    # No click: the largest step at the cut is no larger than the speech's own steps.
    steps = np.abs(np.diff(heard[at + body - 240 : last + 2].astype(np.int32)))
    own = np.abs(np.diff(expected[:body].astype(np.int32))).max()
    assert steps.max() <= own
    silent_at = recording.time_of(last + 1)
    print(f"interrupt-to-silence at the monitor: {(silent_at - called) * 1000:.1f} ms")
