"""Tutorial: speak through the bundled espeak voice from a trio program."""

from __future__ import annotations

import trio

import trio_tts_stream as tts
from trio_tts_stream.testing import open_test_server


async def main() -> None:
    # The same local server that `say` starts when no TTS server is configured.
    async with open_test_server(engine="espeak") as server:
        # The default sound device. No sound card? Use tts.WavFileSink("hello.wav").
        async with tts.SoundDeviceSink() as speaker:
            report = await tts.speak(
                "Hello from trio. This sentence plays while it downloads.",
                base_url=server.base_url,
                voice="nova",
                sink=speaker,
            )
    print(f"{report.outcome.value}: {report.audio_s:.1f} s of audio")
    print(f"first byte after {report.ttfb_ms:.0f} ms, first audio after {report.ttfa_ms:.0f} ms")
    print(f"{report.underruns} underruns")


if __name__ == "__main__":
    trio.run(main)
