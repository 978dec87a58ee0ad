"""An output whose consumer stops: the watchdog, the failing waits, ``recover()``, and a
speaker that holds its queue, reopens the output with backoff and resumes at the first
word not heard, all under trio's autojump clock with a consumer that can be stopped and
an output that can refuse to open (the real sound-server kills are in
tests/test_device_faults_portaudio.py)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing

import trio_tts_stream as tts
from trio_tts_stream._outage import Reopening
from trio_tts_stream._watchdog import ConsumerWatchdog
from trio_tts_stream.testing import open_test_server, synthesize_tone

RATE = 24000
LONG = (
    "The first words are heard before the output dies, and the rest of this sentence "
    "is spoken after the sound comes back, from the word where it stopped."
)


class Unplugged(tts.NullSink):
    """A NullSink whose consumer can stop (``unplug``: it keeps running but no longer
    takes frames, as a device that stopped clocking) and that refuses to open while
    ``down`` (a sound server that is gone). Records every block consumed."""

    consumer_timeout_s = 0.5

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(dtype="int16", **kwargs)
        self.blocks: list[np.ndarray] = []
        self.dead = False
        self.down = False
        self.opens = 0
        self.refused = 0

    def unplug(self) -> None:
        self.dead = self.down = True

    def plug_in(self) -> None:
        self.down = False

    async def _start_consumer(self, fmt: tts.AudioFormat, playout: Any) -> None:
        if self.down:
            self.refused += 1
            await trio.lowlevel.checkpoint()
            raise tts.AudioDeviceError("cannot open the audio output: connection refused")
        self.dead = False
        self.opens += 1
        fill = playout.fill

        def recording_fill(out: np.ndarray, now: float, latency: float = 0.0) -> None:
            if self.dead and playout is self._playout:
                return  # no fill: what a stopped device looks like from trio
            fill(out, now, latency)
            self.blocks.append(out[:, 0].copy())

        playout.fill = recording_fill
        await super()._start_consumer(fmt, playout)

    def output(self) -> np.ndarray:
        return np.concatenate(self.blocks) if self.blocks else np.zeros(0, np.int16)


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def played_at_least(sink: tts.BufferedSink, seconds: float) -> None:
    while (  # noqa: ASYNC110 (polling, under the autojump clock)
        sink.audio_format is None or sink.statistics().frames_played < seconds * RATE
    ):
        await trio.sleep(0.01)


# -- the pure parts -------------------------------------------------------------------


def test_watchdog_fires_after_the_timeout_since_the_last_run() -> None:
    dog = ConsumerWatchdog(0.5, period_s=0.1)
    dog.started(10.0)
    t = 10.0
    for _ in range(20):  # the consumer runs every 10 ms: never
        t += 0.1
        assert dog.look(t, t - 0.01) is None
    last = t - 0.01
    looks = []
    while True:
        t += 0.1
        idle = dog.look(t, last)
        looks.append(idle)
        if idle is not None:
            break
    assert looks[:-1] == [None] * (len(looks) - 1)
    assert idle is not None
    assert 0.5 < idle <= 0.6 + 1e-9
    assert idle == pytest.approx(t - last)


def test_watchdog_counts_from_the_start_when_the_consumer_never_ran() -> None:
    dog = ConsumerWatchdog(0.5, period_s=0.1)
    dog.started(0.0)
    assert [dog.look(0.1 * k, -math.inf) for k in range(1, 6)] == [None] * 5
    assert dog.look(0.6, -math.inf) == pytest.approx(0.6)


def test_a_late_watchdog_gives_the_consumer_a_fresh_timeout() -> None:
    """The process itself was not running (suspended, overloaded): the consumer had no
    chance either, so a look 3 s late is not a stopped device."""
    dog = ConsumerWatchdog(0.5, period_s=0.1)
    dog.started(0.0)
    assert dog.look(0.1, 0.09) is None
    assert dog.look(3.1, 0.09) is None  # woke 3 s late
    assert dog.late_looks == 1
    assert dog.look(3.2, 3.15) is None  # the consumer ran again: fine
    assert dog.look(3.3, 3.15) is None
    # ... and if it does not run again, the timeout counts from the late look.
    assert dog.look(3.5, 3.15) is None
    assert dog.look(3.6, 3.15) is None
    assert dog.look(3.7, 3.15) is not None


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_watchdog_rejects_bad_durations(bad: float) -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        ConsumerWatchdog(bad)


def test_reopening_backs_off_and_gives_up_at_the_deadline() -> None:
    plan = Reopening(100.0, 5.0)
    now, tries = 100.0, []
    while (at := plan.failed_attempt(now)) is not None:
        tries.append(round(at - now, 3))
        now = at
    assert tries == [0.1, 0.2, 0.4, 0.8, 1.6]  # the next, 2.0 (the cap), would be late
    assert now <= 105.0
    assert plan.attempts == len(tries) + 1
    plan = Reopening(0.0, 60.0)
    delays = [plan.failed_attempt(0.0) for _ in range(8)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]
    assert Reopening(0.0, 0.0).failed_attempt(0.0) is None


# -- the sink -------------------------------------------------------------------------


async def test_a_stopped_consumer_fails_the_playback_with_its_report(
    clock: trio.testing.MockClock,
) -> None:
    async with open_test_server(realtime_factor=2.0) as server, Unplugged() as sink:
        request = tts.SpeechRequest(LONG, base_url=server.base_url)
        async with trio.open_nursery() as nursery:

            async def unplug_later() -> None:
                await played_at_least(sink, 1.0)
                sink.unplug()
                nursery.unplug_time = trio.current_time()  # type: ignore[attr-defined]

            nursery.start_soon(unplug_later)
            with pytest.raises(tts.AudioDeviceError, match="the audio output stopped") as info:
                await tts.play(request, sink=sink)
            failed_after = trio.current_time() - nursery.unplug_time  # type: ignore[attr-defined]
        assert sink.failed is not None
        # Detected between the timeout and the timeout plus one look.
        assert 0.5 <= failed_after <= 0.5 + 0.1 + 0.011
        report = info.value.report
        assert report is not None
        assert report.outcome is tts.Outcome.FAILED
        assert "audio output stopped" in (report.error or "")
        assert 1.0 <= report.frames_played / RATE < 1.1  # what was heard
        assert report.audio_s > report.frames_played / RATE
        # Every wait and write raises from now on, and open() too, until recover().
        with pytest.raises(tts.AudioDeviceError):
            await sink.wait_changed()
        with pytest.raises(tts.AudioDeviceError):
            sink.write_some(np.zeros((10, 1), np.float32))
        with pytest.raises(tts.AudioDeviceError):
            await sink.open(tts.AudioFormat(RATE, 1))
        sink.plug_in()
        await sink.recover()
        assert sink.failed is None
        assert sink.audio_format is None
        report = await tts.play(
            tts.SpeechRequest("Back again.", base_url=server.base_url), sink=sink
        )
        assert report.outcome is tts.Outcome.COMPLETED
        assert report.frames_played == len(synthesize_tone("Back again."))
        assert sink.opens == 2


async def test_a_running_consumer_is_never_declared_stopped(
    clock: trio.testing.MockClock,
) -> None:
    async with open_test_server(realtime_factor=1.0) as server, Unplugged() as sink:
        report = await tts.play(tts.SpeechRequest(LONG, base_url=server.base_url), sink=sink)
        await trio.sleep(5)  # idle, open: still consuming silence
        assert sink.failed is None
    assert report.outcome is tts.Outcome.COMPLETED


async def test_sinks_on_trio_clock_are_not_watched(clock: trio.testing.MockClock) -> None:
    assert tts.NullSink.consumer_timeout_s is None
    assert tts.SoundDeviceSink.consumer_timeout_s == 0.5
    async with tts.NullSink() as sink:
        await sink.open(tts.AudioFormat(RATE, 1))
        assert sink._watch_scope is None


# -- the speaker ----------------------------------------------------------------------


async def test_speaker_holds_the_queue_and_resumes_at_the_first_unheard_word(
    clock: trio.testing.MockClock,
) -> None:
    async with open_test_server(realtime_factor=2.0) as server, Unplugged() as sink:
        async with tts.open_speaker(base_url=server.base_url, sink=sink) as speaker:
            first = speaker.say(LONG)
            second = speaker.say("And this one follows.")
            await played_at_least(sink, 2.0)
            sink.unplug()
            unplugged_at = trio.current_time()
            await trio.sleep(3.0)
            assert speaker.outages
            assert speaker.outages[-1].ended_at is None
            assert not first.done
            assert not second.done
            sink.plug_in()
            back_at = trio.current_time()
            r1 = await first.wait()
            r2 = await second.wait()
        stats = speaker.statistics()
    assert r1.outcome is tts.Outcome.COMPLETED
    assert r2.outcome is tts.Outcome.COMPLETED
    bodies = [r.json["input"] for r in server.requests if r.json]
    # The interrupted utterance was asked again from a word boundary, not from the start.
    assert bodies[0] == LONG
    resumed = next(b for b in bodies[1:] if b != "And this one follows.")
    assert LONG.endswith(resumed)
    assert resumed != LONG
    assert LONG[: len(LONG) - len(resumed)].endswith(" ")
    # The words heard before and the words resumed cover the text, repeating at most one.
    heard_chars = len(LONG) - len(resumed)
    heard_s = 2.0
    assert heard_chars >= 0.5 * heard_s * len(LONG) / (len(synthesize_tone(LONG)) / RATE)
    assert bodies.count("And this one follows.") >= 1
    assert bodies[-1] == "And this one follows." or bodies[-2] == "And this one follows."
    # The whole of the resumed text and of the next utterance were played afterwards.
    out = sink.output()
    tail = np.concatenate([synthesize_tone(resumed), synthesize_tone("And this one follows.")])
    assert len(np.flatnonzero(out)) >= len(np.flatnonzero(tail))
    assert r1.text_heard == LONG  # the words heard before, then the resumed ones
    # The outage is reported: when, how long, how many attempts, what carried on.
    (outage,) = speaker.outages
    assert outage.recovered
    assert outage.started_at == pytest.approx(unplugged_at + 0.5, abs=0.12)
    assert outage.ended_at is not None
    assert back_at <= outage.ended_at <= back_at + 2.0 + 0.01
    assert outage.duration_s is not None
    assert outage.duration_s > 2.9
    assert outage.attempts >= 5
    assert sink.refused == outage.attempts - 1
    assert outage.resumed == 2
    assert outage.failed == 0
    assert "audio output stopped" in outage.reason
    assert stats.outages == 1
    assert stats.outage_s == pytest.approx(outage.duration_s)
    assert stats.completed == 2
    assert stats.failed == 0


async def test_speaker_gives_up_after_device_retry_s_and_goes_on(
    clock: trio.testing.MockClock,
) -> None:
    async with open_test_server(realtime_factor=2.0) as server, Unplugged() as sink:
        async with tts.open_speaker(
            base_url=server.base_url, sink=sink, device_retry_s=2.0
        ) as speaker:
            first = speaker.say(LONG)
            second = speaker.say("Queued behind it.")
            await played_at_least(sink, 1.0)
            sink.unplug()
            with pytest.raises(tts.AudioDeviceError, match="did not come back within 2 s") as e1:
                await first.wait()
            with pytest.raises(tts.AudioDeviceError, match="did not come back"):
                await second.wait()
            assert e1.value.report is not None
            assert e1.value.report.outcome is tts.Outcome.FAILED
            assert e1.value.report.frames_played >= RATE
            # The speaker goes on: once the device is back, the next utterance plays.
            sink.plug_in()
            third = await speaker.say("Back again.").wait()
        stats = speaker.statistics()
    assert third.outcome is tts.Outcome.COMPLETED
    assert third.frames_played == len(synthesize_tone("Back again."))
    (outage,) = speaker.outages
    assert not outage.recovered
    assert outage.ended_at is None
    assert outage.failed == 2
    assert outage.resumed == 0
    assert stats.failed == 2
    assert stats.completed == 1
    assert stats.outages == 1


async def test_speaker_with_no_retry_fails_the_utterance_at_once(
    clock: trio.testing.MockClock,
) -> None:
    async with open_test_server(realtime_factor=2.0) as server, Unplugged() as sink:
        async with tts.open_speaker(
            base_url=server.base_url, sink=sink, device_retry_s=0
        ) as speaker:
            utt = speaker.say(LONG)
            await played_at_least(sink, 1.0)
            sink.unplug()
            t0 = trio.current_time()
            with pytest.raises(tts.AudioDeviceError, match="audio output stopped"):
                await utt.wait()
            assert trio.current_time() - t0 <= 0.62
    assert speaker.outages == []


async def test_interrupt_during_an_outage_drops_the_held_utterances(
    clock: trio.testing.MockClock,
) -> None:
    async with open_test_server(realtime_factor=2.0) as server, Unplugged() as sink:
        async with tts.open_speaker(base_url=server.base_url, sink=sink) as speaker:
            utt = speaker.say(LONG)
            await played_at_least(sink, 1.0)
            sink.unplug()
            while not speaker.outages:  # noqa: ASYNC110 (autojump)
                await trio.sleep(0.05)
            await speaker.interrupt()
            report = await utt.wait()
            assert report.outcome is tts.Outcome.CANCELLED
            sink.plug_in()
            after = await speaker.say("Back again.").wait()
    assert after.outcome is tts.Outcome.COMPLETED


def test_device_retry_s_is_checked() -> None:
    async def main() -> None:
        async with tts.open_speaker(base_url="http://127.0.0.1:9/v1", device_retry_s=-1):
            pass

    with pytest.raises(tts.ConfigError, match="device_retry_s"):
        trio.run(main)
