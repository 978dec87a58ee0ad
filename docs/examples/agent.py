"""Tutorial: the speaking half of a trio voice agent, with barge-in.

Start a TTS server first, e.g. the bundled one with its espeak voice, paced like a real
server (1.5x real time, first byte after 300 ms):

    python -m trio_tts_stream serve --engine espeak --ttfb-ms 300 --realtime-factor 1.5
"""

from __future__ import annotations

import os

import trio

import trio_tts_stream as tts

BASE_URL = os.environ.get("TTS_BASE_URL", "http://127.0.0.1:8880/v1")
API_KEY = os.environ.get("TTS_API_KEY")  # None: no Authorization header

LONG_ANSWER = (
    "The weather tomorrow looks mixed. In the morning expect light rain from the west, "
    "clearing around noon, with sunny spells in the afternoon and a fresh breeze. "
    "Temperatures reach about eighteen degrees, and the evening stays dry."
)


class Speaker:
    """Speaks one utterance at a time on one open output; interruptible at any moment."""

    def __init__(self, sink: tts.AudioSink) -> None:
        self._sink = sink
        self._playback: tts.Playback | None = None

    async def say(self, text: str, voice: str = "nova") -> tts.PlaybackReport:
        """Speak ``text``; return the report when it is done or interrupted."""
        request = tts.SpeechRequest(text, base_url=BASE_URL, api_key=API_KEY, voice=voice)
        async with tts.open_playback(request, sink=self._sink) as playback:
            self._playback = playback
            try:
                await playback.wait()  # returns early if barge_in() cancels it
            finally:
                self._playback = None
        return playback.report

    def barge_in(self) -> None:
        """The user started talking: silence now (within one audio block)."""
        if self._playback is not None:
            self._playback.cancel()


def describe(report: tts.PlaybackReport) -> None:
    """Print what the user heard. ``None`` fields mean "did not happen"."""
    heard_s = report.frames_played / (report.output_sample_rate or 1)
    ttfa = "never" if report.ttfa_ms is None else f"after {report.ttfa_ms:.0f} ms"
    print(
        f"{report.outcome.value}: heard {heard_s:.2f} s of {report.audio_s:.2f} s received; "
        f"first audio {ttfa}; {report.underruns} underruns"
    )


async def pretend_user(speaker: Speaker) -> None:
    """Stands in for your voice-activity detector: interrupts after two seconds."""
    await trio.sleep(2.0)
    speaker.barge_in()


async def main() -> None:
    # One output stream for the whole conversation: opened once, kept warm.
    async with tts.SoundDeviceSink(blocksize_ms=10) as sink:
        speaker = Speaker(sink)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pretend_user, speaker)
            describe(await speaker.say(LONG_ANSWER))  # interrupted after 2 s
            describe(await speaker.say("Sorry, go ahead."))  # plays to the end
        try:
            await speaker.say("Who is speaking?", voice="no-such-voice")
        except tts.TTSStreamError as exc:  # every error of the library is one of these
            print(f"error: {exc}")
            if exc.report is not None:  # what was played before it failed
                describe(exc.report)


if __name__ == "__main__":
    trio.run(main)
