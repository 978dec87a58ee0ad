"""Real PortAudio playback into the PulseAudio null sink, read back sample for sample.

The rig (tests/_audio_rig.py) gives an ALSA ``tap`` device that records, bit-exact,
everything PortAudio handed to ALSA, and a ``parec`` recorder of what the null sink
actually rendered (the monitor), with timestamps.
"""

from __future__ import annotations

import numpy as np
import trio
from _audio_rig import AudioTap, ParecRecorder, find_exact

import trio_tts_stream as tts
from trio_tts_stream.testing import open_test_server, synthesize_tone

TEXT = "Every sample reaches the speaker, and the tail is not clipped."


def first_nonzero(samples: np.ndarray) -> int:
    loud = np.flatnonzero(samples)
    assert len(loud), "nothing but silence was played"
    return int(loud[0])


async def test_portaudio_plays_the_exact_samples(audio_tap: AudioTap) -> None:
    expected = synthesize_tone(TEXT)
    with trio.fail_after(30):
        async with open_test_server(realtime_factor=3, ttfb_ms=50) as server:
            async with tts.SoundDeviceSink(audio_tap.device) as sink:
                report = await tts.speak(TEXT, base_url=server.base_url, sink=sink)
    assert report.outcome is tts.Outcome.COMPLETED
    assert report.frames_played == len(expected)
    assert report.underruns == 0
    assert report.ttfa_ms is not None
    assert report.ttfb_ms is not None
    assert report.ttfa_ms > report.ttfb_ms
    played = audio_tap.read()[:, 0]
    start = first_nonzero(played)
    np.testing.assert_array_equal(played[start : start + len(expected)], expected)
    # Nothing but silence after the utterance (no repeats, no garbage).
    assert not np.any(played[start + len(expected) :])


async def test_portaudio_tail_is_heard(audio_monitor: ParecRecorder) -> None:
    """The monitor (what the null sink rendered) holds the last samples too."""
    expected = synthesize_tone(TEXT)
    with trio.fail_after(30):
        async with open_test_server(realtime_factor=4) as server:
            async with tts.SoundDeviceSink("pulse") as sink:
                report = await tts.speak(TEXT, base_url=server.base_url, sink=sink)
            await trio.sleep(0.3)  # let the monitor deliver what was rendered
    recording = audio_monitor.stop()
    assert report.outcome is tts.Outcome.COMPLETED
    heard = recording.samples
    # The last 40 ms (the part a stopped PortAudio stream loses) were rendered exactly.
    tail = expected[-960:]
    assert find_exact(heard, tail) >= 0, "the tail of the utterance was clipped"
    head = expected[:960]
    assert find_exact(heard, head) >= 0


async def test_barge_in_silences_a_real_device(audio_tap: AudioTap) -> None:
    long_text = "A long answer that is interrupted by the user. " * 10
    with trio.fail_after(30):
        async with open_test_server(realtime_factor=1.5) as server:
            async with tts.SoundDeviceSink(audio_tap.device, blocksize_ms=10) as sink:
                request = tts.SpeechRequest(long_text, base_url=server.base_url)
                async with tts.open_playback(request, sink=sink) as pb:
                    while pb.statistics().played_s < 0.5:  # noqa: ASYNC110 (polling)
                        await trio.sleep(0.005)
                    pb.cancel()
                cancelled_at = sink.statistics().frames_played
                await trio.sleep(0.3)
                after = sink.statistics().frames_played
    assert pb.report.outcome is tts.Outcome.CANCELLED
    assert after == cancelled_at  # nothing more of the utterance was consumed
    played = audio_tap.read()[:, 0]
    start = first_nonzero(played)
    audible = np.flatnonzero(played[start:])
    expected = synthesize_tone(long_text)
    heard = int(audible[-1]) + 1
    # What was played is an exact prefix of the utterance, cut within 2 blocks of the
    # moment of cancellation.
    np.testing.assert_array_equal(played[start : start + heard], expected[:heard])
    assert abs(heard - pb.report.frames_played) <= 2 * 240 + 10
