"""Adaptive playout and underrun fades on real PortAudio into the PulseAudio null sink,
read back at the ALSA tap (what the device was given, sample for sample)."""

from __future__ import annotations

import numpy as np
import pytest
import trio
from _audio_rig import AudioTap

import trio_tts_stream as tts
from trio_tts_stream.server._faults import FaultPlan
from trio_tts_stream.testing import open_test_server, synthesize_tone

pytestmark = pytest.mark.audio

TEXT = "Adaptive playout on a real device, stretched a little and never clicking."


def steps(x: np.ndarray) -> float:
    return float(np.abs(np.diff(x.astype(np.int32))).max())


async def test_a_speaker_on_a_device_plays_adaptively(audio_tap: AudioTap) -> None:
    with trio.fail_after(30):
        async with (
            open_test_server(realtime_factor=1.2, ttfb_ms=200) as server,
            tts.SoundDeviceSink(audio_tap.device) as sink,
            tts.open_speaker(base_url=server.base_url, sink=sink) as speaker,
        ):
            report = await speaker.say(TEXT).wait()
    assert report.playout == "adaptive"  # the default on a sound device
    # the largest 20 ms piece seen, one block, and the fade reserve
    assert report.buffer_ms == 20 + sink.blocksize_ms + sink.underrun_fade_ms
    assert report.stretched_ms > 0
    played = audio_tap.read()[:, 0]
    nonzero = np.flatnonzero(played)
    heard = played[nonzero[0] : nonzero[-1] + 1]
    reference = synthesize_tone(TEXT)
    # Every decoded frame plus the stretch reached the device, plus the silence of any
    # underrun (a few trailing zero samples of the tone are not in the nonzero span).
    expected = len(reference) + round((report.stretched_ms + report.underrun_ms) * 24)
    assert abs(len(heard) - expected) <= 48 + 240 * report.underruns, report.underrun_ms
    assert steps(heard) <= steps(reference) * 1.01


async def test_an_underrun_on_a_device_fades_instead_of_clicking(audio_tap: AudioTap) -> None:
    stall = FaultPlan(stall_after_bytes=48000, stall_ms=600)  # 1 s into the audio
    reference = synthesize_tone(TEXT)
    with trio.fail_after(30):
        async with open_test_server(faults=stall, realtime_factor=1.5) as server:
            async with tts.SoundDeviceSink(audio_tap.device) as sink:
                assert sink.underrun_fade_ms == 5.0
                config = tts.StreamConfig(playout="exact")
                report = await tts.speak(TEXT, base_url=server.base_url, sink=sink, config=config)
    assert report.underruns >= 1
    played = audio_tap.read()[:, 0]
    nonzero = np.flatnonzero(played)
    heard = played[nonzero[0] : nonzero[-1] + 1]
    # The gap is there, and its edges are ramps: no step larger than the speech's own.
    silent = np.flatnonzero(np.convolve(heard == 0, np.ones(240), "valid") == 240)
    assert len(silent) > 0
    assert steps(heard) <= steps(reference) * 1.01
