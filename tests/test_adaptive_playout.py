"""Adaptive playout end to end, under autojump_clock, against the fault server.

Start with the second decoded block (one output block beyond the first), zero
underruns where exact playout with that same start has them, stretched audio keeps its
pitch; the speaker learns the link (jitter, format) across utterances.
"""

from __future__ import annotations

import numpy as np
import pytest
import trio

import trio_tts_stream as tts
from trio_tts_stream._decoders import available_formats
from trio_tts_stream.server._faults import FaultPlan
from trio_tts_stream.testing import open_test_server, synthesize_tone

TEXT = "A jitter buffer that starts at once must never leave a hole in the speech. " * 2
BLOCK_MS = 10.0
# The start waits for one output block beyond the largest decoded block: with the
# server's 20 ms pieces at 1.2x, that is the second piece, 16.7 ms after the first.
NEXT_PIECE_MS = 20 / 1.2


class Collect(tts.NullSink):
    """A NullSink that keeps every frame the consumer plays, silence included."""

    def __init__(self) -> None:
        super().__init__(blocksize_ms=BLOCK_MS)
        self.frames: list[np.ndarray] = []

    async def _start_consumer(self, fmt: tts.AudioFormat, playout: object) -> None:
        await super()._start_consumer(fmt, playout)  # type: ignore[arg-type]
        fill = playout.fill  # type: ignore[attr-defined]

        def recording(out: np.ndarray, now: float, latency: float = 0.0) -> None:
            fill(out, now, latency)
            self.frames.append(out[:, 0].copy())

        playout.fill = recording  # type: ignore[attr-defined]

    def heard(self) -> np.ndarray:
        return np.concatenate(self.frames) if self.frames else np.zeros(0, np.float32)


async def speak(
    faults: FaultPlan | None,
    playout: str,
    *,
    buffer_ms: float = 150.0,
    rf: float = 1.2,
    sink: tts.NullSink | None = None,
) -> tts.PlaybackReport:
    async with open_test_server(faults=faults, realtime_factor=rf, ttfb_ms=100) as server:
        async with sink or tts.NullSink(blocksize_ms=BLOCK_MS) as out:
            config = tts.StreamConfig(playout=playout, buffer_ms=buffer_ms)
            return await tts.speak(TEXT, base_url=server.base_url, sink=out, config=config)


def first_sound_after_first_byte(report: tts.PlaybackReport) -> float:
    assert report.ttfa_ms is not None
    assert report.ttfb_ms is not None
    return report.ttfa_ms - report.ttfb_ms


async def test_starts_within_one_block_and_builds_the_target_by_stretching(
    autojump_clock: trio.abc.Clock,
) -> None:
    adaptive = await speak(None, "adaptive")
    exact = await speak(None, "exact")
    assert adaptive.outcome is tts.Outcome.COMPLETED
    assert first_sound_after_first_byte(adaptive) <= NEXT_PIECE_MS + BLOCK_MS + 1e-6
    assert first_sound_after_first_byte(exact) >= 100  # 150 ms at 1.2x
    assert adaptive.underruns == 0
    assert adaptive.playout == "adaptive"
    assert adaptive.buffer_ms == 20 + BLOCK_MS  # a 20 ms piece and one block more
    assert adaptive.target_ms == 150.0
    assert 20 < adaptive.stretched_ms < 0.12 * adaptive.audio_s * 1000
    assert adaptive.frames_played == round(
        (adaptive.audio_s + adaptive.stretched_ms / 1000) * 24000
    )
    factors = [e.factor for e in adaptive.stretch_timeline]
    assert max(factors) == pytest.approx(1.12)
    assert factors[-1] == 1.0
    assert exact.stretched_ms == 0
    assert exact.stretch_timeline == ()


async def test_sentence_bursts_no_gap_where_exact_with_the_same_start_has_one(
    autojump_clock: trio.abc.Clock,
) -> None:
    bursts = FaultPlan(burst_ms=2000, burst_pause_ms=400)
    adaptive = await speak(bursts, "adaptive")
    same_start = await speak(bursts, "exact", buffer_ms=adaptive.buffer_ms)
    assert first_sound_after_first_byte(adaptive) <= NEXT_PIECE_MS + BLOCK_MS + 1e-6
    assert adaptive.underruns == 0
    assert same_start.underruns >= 1
    assert adaptive.jitter_ms is not None
    assert adaptive.jitter_ms >= 350  # the pauses were measured


async def test_jitter_never_makes_adaptive_worse_than_exact_with_the_same_start(
    autojump_clock: trio.abc.Clock,
) -> None:
    """150 ms jitter at 1.2x over six seeds. On a first utterance a piece late by more
    than the first block can still leave a gap (nothing is known yet about the link);
    adaptive playout never has more gap than exact playout starting as early."""
    gap_adaptive = gap_exact = 0.0
    for seed in range(6):
        plan = FaultPlan(jitter_ms=150, seed=seed)
        adaptive = await speak(plan, "adaptive")
        exact = await speak(plan, "exact", buffer_ms=adaptive.buffer_ms)
        # (the second piece may itself be up to 150 ms late)
        assert first_sound_after_first_byte(adaptive) <= NEXT_PIECE_MS + 150 + BLOCK_MS
        assert adaptive.underrun_ms <= exact.underrun_ms + BLOCK_MS
        gap_adaptive += adaptive.underrun_ms
        gap_exact += exact.underrun_ms
    assert gap_adaptive <= gap_exact


async def test_a_speaker_learns_the_jitter_and_then_plays_without_gaps(
    autojump_clock: trio.abc.Clock,
) -> None:
    plan = FaultPlan(jitter_ms=150, seed=3)
    async with (
        open_test_server(faults=plan, realtime_factor=1.2, ttfb_ms=100) as server,
        tts.NullSink(blocksize_ms=BLOCK_MS) as sink,
        tts.open_speaker(base_url=server.base_url, sink=sink, playout="adaptive") as speaker,
    ):
        reports = [await speaker.say(TEXT[:60]).wait() for _ in range(3)]
    first, *later = reports
    assert first.buffer_ms == 20 + BLOCK_MS
    assert first.jitter_ms is not None
    assert first.jitter_ms > 50
    for report in later:
        assert report.underruns == 0
        assert 20 + BLOCK_MS < report.buffer_ms < 150  # still sooner than exact playout


async def test_stretched_tone_keeps_its_pitch(autojump_clock: trio.abc.Clock) -> None:
    sink = Collect()
    report = await speak(None, "adaptive", sink=sink)
    assert report.stretched_ms > 20
    heard = sink.heard()
    heard = heard[np.flatnonzero(heard)[0] :]
    reference = synthesize_tone(TEXT).astype(np.float32) / 32768
    # The tone engine's notes change every ~100 ms; compare the spectrum's centroid-free
    # strongest frequency over the first second, before and after.
    n = 24000

    def peak(x: np.ndarray) -> float:
        spec = np.abs(np.fft.rfft(x[:n] * np.hanning(n), 4 * n))
        return float(np.argmax(spec)) * 24000 / (4 * n)

    assert peak(heard) == pytest.approx(peak(reference), rel=0.01)
    steps_heard = np.abs(np.diff(heard[: len(reference)])).max()
    assert steps_heard <= np.abs(np.diff(reference)).max() * 1.01


async def test_exact_playout_is_still_sample_exact(autojump_clock: trio.abc.Clock) -> None:
    sink = Collect()
    report = await speak(None, "exact", sink=sink)
    heard = sink.heard()
    heard = heard[np.flatnonzero(heard)[0] :]
    reference = synthesize_tone(TEXT).astype(np.float32) / 32768
    np.testing.assert_array_equal(heard[: len(reference)], reference)
    assert report.stretched_ms == 0


@pytest.mark.skipif(
    not {"opus", "mp3"} & set(available_formats()), reason="needs PyAV (formats extra)"
)
async def test_auto_format_goes_compressed_on_a_slow_link_and_back_on_a_fast_one(
    autojump_clock: trio.abc.Clock,
) -> None:
    slow_link = FaultPlan(bandwidth_kbps=250)  # pcm needs 384 kbit/s
    async with (
        open_test_server(faults=slow_link, realtime_factor=None) as slow,
        open_test_server(faults=FaultPlan(bandwidth_kbps=5000), realtime_factor=None) as fast,
        tts.NullSink(blocksize_ms=BLOCK_MS) as sink,
        tts.open_speaker(
            base_url=slow.base_url, sink=sink, response_format="auto", cache=None
        ) as speaker,
    ):
        on_slow = [await speaker.say(f"Sentence {i} on a slow link.").wait() for i in range(2)]
        on_fast = [
            await speaker.say(f"Sentence {i} on a fast link.", base_url=fast.base_url).wait()
            for i in range(2)
        ]
    first, second = on_slow
    assert first.format == "pcm"
    assert first.format_choice is not None
    assert first.delivery_ratio is not None
    assert first.delivery_ratio < 1.5
    assert second.format in ("opus", "mp3")
    assert second.format_choice is not None
    assert "below 1.5x" in second.format_choice
    assert on_fast[0].format == second.format  # decided by the slow link
    assert on_fast[1].format == "pcm"
    assert on_fast[1].format_choice is not None
    assert "pcm" in on_fast[1].format_choice
    for report in on_slow + on_fast:
        assert report.outcome is tts.Outcome.COMPLETED


async def test_playout_and_stretch_are_validated() -> None:
    with pytest.raises(tts.ConfigError, match="playout"):
        tts.StreamConfig(playout="fast")
    with pytest.raises(tts.ConfigError, match="max_stretch"):
        tts.StreamConfig(max_stretch=0.5)
    with pytest.raises(tts.ConfigError, match="max_speedup"):
        tts.StreamConfig(max_speedup=-0.1)


async def test_the_default_playout_is_adaptive_only_for_uncompressed_audio_on_a_device() -> None:
    from trio_tts_stream._player import default_playout

    base = tts.StreamConfig()
    device = tts.SoundDeviceSink()  # not opened: no device is touched
    assert default_playout(base, device, "pcm").playout == "adaptive"
    assert default_playout(base, device, "wav").playout == "adaptive"
    assert default_playout(base, device, "mp3").playout is None  # plays exact
    assert default_playout(base, tts.NullSink(), "pcm").playout is None
    chosen = base.replace(playout="adaptive")
    assert default_playout(chosen, tts.NullSink(), "mp3").playout == "adaptive"
    named = base.replace(playout="exact")  # a playout the user named is kept
    assert default_playout(named, device, "pcm").playout == "exact"


async def test_the_playback_says_how_much_it_stretched(autojump_clock: trio.abc.Clock) -> None:
    async with (
        open_test_server(realtime_factor=1.2, ttfb_ms=100) as server,
        tts.NullSink(blocksize_ms=BLOCK_MS) as sink,
    ):
        request = tts.SpeechRequest(TEXT, base_url=server.base_url)
        config = tts.StreamConfig(playout="adaptive")
        async with tts.open_playback(request, sink=sink, config=config) as playback:
            pass
    report = playback.report
    assert playback.stretched_frames > 0
    assert playback.stretched_frames == round(report.stretched_ms * 24)
    # The speaker's "what was heard" divides by what the output carries, stretch included.
    assert report.frames_played == playback.decoded_frames + playback.stretched_frames
