"""How-to: speak an LLM's answer as it streams, and stop when the user talks.

Start a TTS server first, e.g. the bundled one:

    python -m trio_tts_stream serve --engine espeak --ttfb-ms 300 --realtime-factor 1.5
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import trio

import trio_tts_stream as tts

BASE_URL = os.environ.get("TTS_BASE_URL", "http://127.0.0.1:8880/v1")

ANSWER = (
    "## The forecast\n"
    "Tomorrow starts **wet**: light rain from the west until about noon. "
    "Then it clears, e.g. sunny spells by 2 p.m. and 18 degrees. "
    "See [the full report](https://example.com/weather) for details. 🌦️"
)


async def llm_tokens(text: str, per_s: float = 30.0) -> AsyncIterator[str]:
    """Stands in for your LLM client: the answer, a few characters at a time."""
    for i in range(0, len(text), 4):
        await trio.sleep(1 / per_s)
        yield text[i : i + 4]


async def main(sink: tts.AudioSink | None = None, base_url: str = BASE_URL) -> list[str]:
    """Speak the answer while it streams; interrupt it after 3 s; say sorry."""
    heard: list[str] = []
    async with tts.open_speaker(base_url=base_url, sink=sink, voice="nova", cache=True) as sp:
        async with trio.open_nursery() as nursery:
            # Each sentence is requested the moment it is complete, and played gaplessly
            # after the one before; markdown, the link's URL and the emoji are not read.
            nursery.start_soon(sp.say_stream, llm_tokens(ANSWER))
            await trio.sleep(3.0)  # your voice-activity detector fires here
            stopped = await sp.interrupt()  # fade out, drop the rest, cancel downloads
            heard.append(stopped.text_heard)
            print(f"heard {stopped.seconds:.1f} s: {stopped.text_heard!r}")
        sorry = await sp.say("Sorry, go ahead.").wait()
        heard.append(sorry.text_heard or "")
        print(sp.statistics())
    return heard


if __name__ == "__main__":
    trio.run(main)
