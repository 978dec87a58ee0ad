"""The speaker against the bundled server, with sinks that record what the *consumer*
output (silence included), under trio's autojump clock."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing

import trio_tts_stream as tts
from trio_tts_stream.testing import open_test_server, synthesize_tone

TEXTS = ["First sentence here.", "Second one, a bit longer than the first.", "Third."]
RATE = 24000


class Heard(tts.NullSink):
    """A NullSink that records every block its consumer produced (int16), silence and
    fades included: what a listener would hear, frame by frame."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(dtype="int16", **kwargs)
        self.blocks: list[np.ndarray] = []

    async def _start_consumer(self, fmt: tts.AudioFormat, playout: Any) -> None:
        fill = playout.fill

        def recording_fill(out: np.ndarray, now: float, latency: float = 0.0) -> None:
            fill(out, now, latency)
            self.blocks.append(out[:, 0].copy())

        playout.fill = recording_fill
        await super()._start_consumer(fmt, playout)

    def output(self) -> np.ndarray:
        return np.concatenate(self.blocks) if self.blocks else np.zeros(0, np.int16)

    def sound(self) -> np.ndarray:
        """The output from its first non-zero sample to its last."""
        out = self.output()
        nz = np.flatnonzero(out)
        return out[nz[0] : nz[-1] + 1] if len(nz) else out[:0]


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def wait_while(predicate: Any) -> None:
    while predicate():  # noqa: ASYNC110 (polling state, under the autojump clock)
        await trio.sleep(0.005)


def tone(text: str) -> np.ndarray:
    return synthesize_tone(text)


def trimmed(samples: np.ndarray) -> np.ndarray:
    nz = np.flatnonzero(samples)
    return samples[nz[0] : nz[-1] + 1] if len(nz) else samples[:0]


async def test_queued_utterances_play_as_the_exact_concatenation(
    clock: trio.testing.MockClock,
) -> None:
    async with open_test_server(realtime_factor=2.0, ttfb_ms=300) as server, Heard() as sink:
        async with tts.open_speaker(base_url=server.base_url, sink=sink) as speaker:
            utts = [speaker.say(t) for t in TEXTS]
            reports = [await u.wait() for u in utts]
        stats = speaker.statistics()
    want = trimmed(np.concatenate([tone(t) for t in TEXTS]))
    got = sink.sound()
    assert len(got) == len(want)
    assert np.array_equal(got, want)  # no frame inserted between the utterances
    assert [u.state for u in utts] == [tts.UtteranceState.COMPLETED] * 3
    assert all(r.outcome is tts.Outcome.COMPLETED for r in reports)
    assert [r.text_heard for r in reports] == TEXTS
    assert stats.completed == 3
    assert stats.gaps == 0
    assert stats.failed == 0
    assert len(server.requests) == 3


async def test_prefetch_requests_ahead_of_playback(clock: trio.testing.MockClock) -> None:
    """While the first plays, the next `lookahead` are already requested."""
    texts = [f"Sentence number {i} is here." for i in range(5)]
    async with open_test_server(realtime_factor=4.0) as server, Heard() as sink:
        async with tts.open_speaker(base_url=server.base_url, sink=sink, lookahead=2) as sp:
            utts = [sp.say(t) for t in texts]
            await wait_while(lambda: utts[0].state is not tts.UtteranceState.PLAYING)
            await trio.sleep(0.2)
            # one playing + two ahead; the rest wait as text only
            assert len(server.requests) == 3
            await sp.wait_idle()
    assert len(server.requests) == 5
    assert np.array_equal(sink.sound(), trimmed(np.concatenate([tone(t) for t in texts])))


async def test_pause_between_utterances_is_exact_to_the_frame(
    clock: trio.testing.MockClock,
) -> None:
    async with open_test_server(realtime_factor=3.0) as server, Heard() as sink:
        async with tts.open_speaker(base_url=server.base_url, sink=sink, pause_ms=250) as sp:
            for t in TEXTS:
                sp.say(t)
    gap = np.zeros(round(0.25 * RATE), np.int16)
    want = trimmed(np.concatenate([tone(TEXTS[0]), gap, tone(TEXTS[1]), gap, tone(TEXTS[2])]))
    assert np.array_equal(sink.sound(), want)


async def test_format_change_between_utterances_resamples(
    clock: trio.testing.MockClock,
) -> None:
    async with open_test_server(realtime_factor=3.0) as server, Heard() as sink:
        async with tts.open_speaker(base_url=server.base_url, sink=sink) as sp:
            a = sp.say("At the output rate.")
            b = sp.say("In wav at the same rate.", response_format="wav")
            c = sp.say("Flac to end.", response_format="flac")
            ra, rb, rc = await a.wait(), await b.wait(), await c.wait()
    assert sink.audio_format == tts.AudioFormat(RATE, 1)
    assert (ra.format, rb.format, rc.format) == ("pcm", "wav", "flac")
    assert all(r.outcome is tts.Outcome.COMPLETED for r in (ra, rb, rc))


async def test_interrupt_fades_out_within_one_block_and_reports_what_was_heard(
    clock: trio.testing.MockClock,
) -> None:
    text = "This is a long utterance that will be interrupted in the middle of it. " * 3
    fade_ms = 10.0
    async with open_test_server(realtime_factor=2.0) as server, Heard(blocksize_ms=20) as sink:
        async with tts.open_speaker(base_url=server.base_url, sink=sink, fade_ms=fade_ms) as sp:
            utt = sp.say(text)
            later = sp.say("Never heard.")
            await wait_while(lambda: utt.state is not tts.UtteranceState.PLAYING or not sink.blocks)
            await trio.sleep(1.5)
            blocks_before = len(sink.blocks)
            result = await sp.interrupt()
            blocks_after = len(sink.blocks)
            report = await utt.wait()
            assert later.state is tts.UtteranceState.CANCELLED
            # Silence from here on.
            await trio.sleep(0.5)
            sp.say("After.")  # the next say starts from silence with a fade-in
    out = sink.output()
    block = 480
    fade = round(fade_ms * RATE / 1000)
    # The fade ran in the very next consumer block: silence within one block + fade.
    assert blocks_after - blocks_before <= math.ceil((block + fade) / block) + 1
    cut = blocks_before * block
    original = tone(text)
    start = int(np.flatnonzero(out)[0])
    heard = out[start:]
    n_before = cut - start
    assert np.array_equal(heard[:n_before], original[:n_before])
    faded = heard[n_before : n_before + fade].astype(np.float64)
    ramp_ratio = faded / np.where(
        original[n_before : n_before + fade] == 0, 1, original[n_before : n_before + fade]
    )
    assert np.all(np.abs(faded) <= np.abs(original[n_before : n_before + fade]) + 1)
    assert abs(ramp_ratio[0]) > 0.9
    assert abs(ramp_ratio[-1]) < 0.1
    after_fade = heard[n_before + fade : n_before + fade + int(0.4 * RATE)]
    assert not after_fade.any()
    assert report.outcome is tts.Outcome.CANCELLED
    assert result.utterance is utt
    assert result.dropped == 2
    assert result.frames == n_before + fade == report.frames_played
    assert 0 < len(result.text_heard) < len(text)
    assert text.startswith(result.text_heard)
    share = result.frames / len(original)
    assert abs(len(result.text_heard) / len(text) - share) < 0.1
    assert result.silence_ms is not None
    assert result.silence_ms <= 20 + fade_ms + 1
    # The utterance after the interrupt fades in: its first samples are attenuated.
    nxt = tone("After.")
    tail = trimmed(out[n_before + start + fade :])
    assert len(tail) == len(trimmed(nxt)) or len(tail) <= len(nxt)
    assert abs(int(tail[0])) < abs(int(nxt[0])) or nxt[0] == 0


async def test_pause_and_resume_fade_and_lose_nothing(clock: trio.testing.MockClock) -> None:
    text = "A sentence that is paused in the middle and then resumed again later on."
    async with open_test_server(realtime_factor=4.0) as server, Heard() as sink:
        async with tts.open_speaker(base_url=server.base_url, sink=sink, fade_ms=10) as sp:
            utt = sp.say(text)
            await wait_while(lambda: utt.state is not tts.UtteranceState.PLAYING or not sink.blocks)
            await trio.sleep(1.0)
            sp.pause()
            assert sp.paused
            await trio.sleep(2.0)
            sp.resume()
            report = await utt.wait()
    assert report.outcome is tts.Outcome.COMPLETED
    original = tone(text)
    sound = sink.sound()
    # A silence of about 2 s sits inside the sound; every frame was played once.
    silent = np.flatnonzero(sound == 0)
    runs = np.split(silent, np.flatnonzero(np.diff(silent) != 1) + 1)
    longest = max(runs, key=len)
    assert len(longest) >= int(1.9 * RATE)
    fade = 240
    p = int(np.flatnonzero(sound[: len(original)] != original[: len(sound)])[0])
    assert p >= int(longest[0]) - fade - 2  # exact up to the fade-out
    resumed = sound[int(longest[-1]) + 1 :]
    rest = original[p + 2 * fade :]  # after the fade-out and the fade-in
    assert np.array_equal(resumed[-len(rest) :], rest)
    # Nothing lost or repeated: what was heard is the whole utterance, once.
    assert len(resumed) + p + fade >= len(original) - 2 * fade
    assert len(resumed) + p + fade <= len(original)


async def test_failed_utterance_raises_from_wait_and_the_speaker_goes_on(
    clock: trio.testing.MockClock,
) -> None:
    async with open_test_server(realtime_factor=3.0) as server, Heard() as sink:
        async with tts.open_speaker(base_url=server.base_url, sink=sink) as sp:
            ok1 = sp.say("Before the bad one.")
            bad = sp.say("Unknown voice.", voice="no-such-voice")
            ok2 = sp.say("After the bad one.")
            with pytest.raises(tts.BadRequestError) as info:
                await bad.wait()
            assert info.value.report is not None
            assert info.value.report.outcome is tts.Outcome.FAILED
            await ok2.wait()
        stats = sp.statistics()
    assert bad.state is tts.UtteranceState.FAILED
    assert ok1.state is ok2.state is tts.UtteranceState.COMPLETED
    assert stats.failed == 1
    assert stats.completed == 2
    want = trimmed(np.concatenate([tone("Before the bad one."), tone("After the bad one.")]))
    assert np.array_equal(sink.sound(), want)


async def test_empty_text_makes_no_request_and_closed_speaker_refuses(
    clock: trio.testing.MockClock,
) -> None:
    async with open_test_server() as server, Heard() as sink:
        async with tts.open_speaker(base_url=server.base_url, sink=sink) as sp:
            empty = sp.say("   \n ")
            assert empty.state is tts.UtteranceState.SKIPPED
            report = await empty.wait()
            assert report.outcome is not tts.Outcome.COMPLETED
        assert len(server.requests) == 0
        with pytest.raises(tts.SpeakerClosedError, match="closed"):
            sp.say("too late")


async def test_long_text_is_split_and_plays_as_one_gapless_utterance(
    clock: trio.testing.MockClock,
) -> None:
    sentences = [f"This is sentence number {i} of a long text." for i in range(12)]
    text = " ".join(sentences)
    async with open_test_server(realtime_factor=3.0) as server, Heard() as sink:
        async with tts.open_speaker(base_url=server.base_url, sink=sink, max_chars=120) as sp:
            utt = sp.say(text)
            report = await utt.wait()
    assert utt.parts == len(server.requests) > 1
    inputs = [r.json["input"] for r in server.requests]
    assert all(len(i) <= 120 for i in inputs)
    assert " ".join(inputs) == text
    assert all(i.endswith(".") for i in inputs)  # cut at sentence ends
    want = trimmed(np.concatenate([tone(i) for i in inputs]))
    assert np.array_equal(sink.sound(), want)
    assert report.outcome is tts.Outcome.COMPLETED
    assert report.text_heard == text
    assert report.frames_played == sum(len(tone(i)) for i in inputs)


async def test_cancel_a_queued_utterance_drops_only_it(clock: trio.testing.MockClock) -> None:
    async with open_test_server(realtime_factor=3.0) as server, Heard() as sink:
        async with tts.open_speaker(base_url=server.base_url, sink=sink, lookahead=0) as sp:
            a, b, c = (sp.say(t) for t in TEXTS)
            b.cancel()
            assert b.state is tts.UtteranceState.CANCELLED
    assert a.state is c.state is tts.UtteranceState.COMPLETED
    assert np.array_equal(sink.sound(), trimmed(np.concatenate([tone(TEXTS[0]), tone(TEXTS[2])])))
    assert [r.json["input"] for r in server.requests] == [TEXTS[0], TEXTS[2]]


async def test_cancelled_scope_is_a_barge_in_that_leaves_nothing_behind(
    clock: trio.testing.MockClock,
) -> None:
    async with open_test_server(realtime_factor=1.0) as server, Heard() as sink:
        with trio.move_on_after(1.0):
            async with tts.open_speaker(base_url=server.base_url, sink=sink) as sp:
                utts = [sp.say(t * 5) for t in TEXTS]
                await sp.wait_idle()
        assert all(u.done for u in utts)
        assert all(u.state is tts.UtteranceState.CANCELLED for u in utts)
        await trio.sleep(0.1)
        assert server.open_connections == 0  # every response and connection closed
        assert sink.statistics().buffered == 0
    out = sink.output()
    last = np.flatnonzero(out)[-1]
    assert last < 1.2 * RATE  # silent soon after the cancel


async def test_two_speakers_on_two_sinks_at_once(clock: trio.testing.MockClock) -> None:
    async with open_test_server(realtime_factor=2.0) as server, Heard() as s1, Heard() as s2:

        async def run(sink: Heard, texts: list[str]) -> None:
            async with tts.open_speaker(base_url=server.base_url, sink=sink) as sp:
                for t in texts:
                    sp.say(t)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, s1, TEXTS)
            nursery.start_soon(run, s2, TEXTS[::-1])
    assert np.array_equal(s1.sound(), trimmed(np.concatenate([tone(t) for t in TEXTS])))
    assert np.array_equal(s2.sound(), trimmed(np.concatenate([tone(t) for t in TEXTS[::-1]])))


async def _tokens(text: str, per_s: float, log: list[float]) -> AsyncIterator[str]:
    for word in text.split(" "):
        await trio.sleep(1 / per_s)
        log.append(trio.current_time())
        yield word + " "


async def test_say_stream_speaks_the_first_sentence_before_the_stream_ends(
    clock: trio.testing.MockClock,
) -> None:
    text = "**Hello** there. This is [a link](https://example.com/x) test. 🎉 Bye now."
    sent: list[float] = []
    async with open_test_server(realtime_factor=3.0) as server, Heard() as sink:
        async with tts.open_speaker(base_url=server.base_url, sink=sink) as sp:
            utts = await sp.say_stream(_tokens(text, 4.0, sent))
            stream_end = trio.current_time()
            first_req = server.requests[0].received_at if server.requests else None
            await sp.wait_idle()
    inputs = [r.json["input"] for r in server.requests]
    assert inputs == ["Hello there.", "This is a link test.", "Bye now."]
    assert [u.text for u in utts] == inputs
    assert first_req is not None
    assert first_req < stream_end - 1.0
    sound = sink.sound()  # with silence between units: tokens arrive slower than speech
    want = np.concatenate([tone(i) for i in inputs])
    assert np.array_equal(sound[sound != 0], want[want != 0])


async def test_cache_hit_makes_no_request_and_sounds_the_same(
    clock: trio.testing.MockClock,
) -> None:
    async with open_test_server(realtime_factor=2.0, ttfb_ms=300) as server, Heard() as sink:
        async with tts.open_speaker(base_url=server.base_url, sink=sink, cache=True) as sp:
            first = await sp.say("One moment, please.").wait()
            await trio.sleep(0.5)
            second = await sp.say("One moment, please.").wait()
            other = await sp.say("One moment, please.", voice="echo").wait()
        stats = sp.statistics()
    assert len(server.requests) == 2  # the repeat was served from the cache
    assert stats.cache is not None
    assert (stats.cache.hits, stats.cache.misses, stats.cache.stored) == (1, 2, 2)
    assert first.audio_s == second.audio_s
    assert second.bytes_received == first.bytes_received
    assert second.ttfa_ms is not None
    assert first.ttfa_ms is not None
    assert second.ttfa_ms < 30 < 300 < first.ttfa_ms  # no TTFB on a hit
    assert other.outcome is tts.Outcome.COMPLETED


async def test_concurrent_identical_requests_share_one_download(
    clock: trio.testing.MockClock,
) -> None:
    async with open_test_server(realtime_factor=2.0) as server, Heard() as s1, Heard() as s2:
        cache = tts.PhraseCache()
        async with (
            tts.open_speaker(base_url=server.base_url, sink=s1, cache=cache) as a,
            tts.open_speaker(base_url=server.base_url, sink=s2, cache=cache) as b,
        ):
            ua, ub = a.say(TEXTS[1]), b.say(TEXTS[1])
            await ua.wait()
            await ub.wait()
    assert len(server.requests) == 1
    assert cache.statistics().shared == 1
    assert np.array_equal(s1.sound(), s2.sound())
    assert np.array_equal(s1.sound(), trimmed(tone(TEXTS[1])))


async def test_disk_cache_survives_and_a_corrupt_entry_is_refetched(tmp_path: Path) -> None:
    async with open_test_server(realtime_factor=8.0) as server:
        for round_ in range(3):
            cache = tts.PhraseCache(directory=tmp_path)
            async with tts.NullSink() as sink:
                async with tts.open_speaker(base_url=server.base_url, sink=sink, cache=cache) as sp:
                    report = await sp.say("Kept on disk.").wait()
            assert report.outcome is tts.Outcome.COMPLETED
            if round_ == 1:
                entry = trio.Path(next(iter(await trio.Path(tmp_path).glob("*.tts"))))
                await entry.write_bytes((await entry.read_bytes())[:-10])  # truncated
                assert cache.statistics().hits == 1
        assert cache.statistics().corrupt == 1
        assert len(server.requests) == 2  # first, then the re-fetch of the corrupt entry
        assert len(list(await trio.Path(tmp_path).glob("*.tts"))) == 1
        assert not list(await trio.Path(tmp_path).glob(".tmp-*"))


async def test_interrupt_stops_a_running_say_stream(clock: trio.testing.MockClock) -> None:
    async def endless() -> AsyncIterator[str]:
        i = 0
        while True:
            await trio.sleep(0.2)
            i += 1
            yield f"Sentence {i}. "

    async with open_test_server(realtime_factor=2.0) as server, Heard() as sink:
        async with tts.open_speaker(base_url=server.base_url, sink=sink) as sp:
            said: list[tts.Utterance] = []

            async def run() -> None:
                said.extend(await sp.say_stream(endless()))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run)
                await trio.sleep(1.0)
                result = await sp.interrupt()
            # A request already on its way when interrupt() was called may still land
            # at that moment; nothing may arrive after it returned.
            stopped = trio.current_time()
            await trio.sleep(2.0)
            assert not [r for r in server.requests if r.received_at > stopped]
    assert said
    assert result.dropped >= 1
    assert all(u.done for u in said)


async def test_a_different_rate_between_utterances_is_resampled_not_reopened(
    clock: trio.testing.MockClock,
) -> None:
    async with (
        open_test_server(realtime_factor=3.0) as plain,
        open_test_server(realtime_factor=3.0, profile="openedai-speech") as piper,
        Heard() as sink,
    ):
        async with tts.open_speaker(base_url=plain.base_url, sink=sink) as sp:
            a = sp.say(TEXTS[0])
            b = sp.say(TEXTS[1], base_url=piper.base_url)  # pcm at 22050 Hz
            c = sp.say(TEXTS[2])
            ra, rb, rc = await a.wait(), await b.wait(), await c.wait()
        stats = sp.statistics()
    assert sink.audio_format == tts.AudioFormat(RATE, 1)  # opened once, at 24 kHz
    assert (rb.sample_rate, rb.output_sample_rate) == (22050, RATE)
    assert all(r.outcome is tts.Outcome.COMPLETED for r in (ra, rb, rc))
    resampled = round(len(synthesize_tone(TEXTS[1], sample_rate=22050)) * RATE / 22050)
    assert abs(rb.frames_played - resampled) <= 2
    out = sink.output()
    start = int(np.flatnonzero(out)[0])
    # a and c are exact around the resampled b, with no gap between the three.
    n_a, n_c = len(tone(TEXTS[0])), len(tone(TEXTS[2]))
    assert np.array_equal(out[start : start + n_a], tone(TEXTS[0]))
    c_at = start + n_a + rb.frames_played
    assert np.array_equal(out[c_at : c_at + n_c], tone(TEXTS[2]))
    assert stats.gaps == 0


async def test_a_failing_cache_directory_degrades_to_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_dir = tmp_path / "file"
    await trio.Path(not_a_dir).write_bytes(b"x")
    cache = tts.PhraseCache(directory=not_a_dir)
    async with open_test_server(realtime_factor=8.0) as server, tts.NullSink() as sink:
        async with tts.open_speaker(base_url=server.base_url, sink=sink, cache=cache) as sp:
            first = await sp.say("Still spoken.").wait()
            second = await sp.say("Still spoken.").wait()
    assert first.outcome is second.outcome is tts.Outcome.COMPLETED
    assert len(server.requests) == 1  # the memory cache answered the repeat
    assert cache.directory is None
    assert "keeping entries in memory only" in caplog.text
