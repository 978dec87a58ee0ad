"""Draw ``docs/_static/plot_example.png`` (the picture in metrics.rst).

Plays a sentence from the bundled test server, made to misbehave (300 ms TTFB, 1.05x
real time, up to 120 ms of jitter per piece, a 2.5 s pause after 40 kB), into a
:class:`NullSink`, and plots the report. Run from the repository root (needs the
``plot`` extra): ``python docs/make_plot_example.py``. Real time: about 12 s.
"""

from __future__ import annotations

from pathlib import Path

import trio

import trio_tts_stream as tts
from trio_tts_stream.testing import FaultPlan, open_test_server

TEXT = (
    "Hello there, this is a longer sentence so that the stream lasts a few seconds "
    "and the jitter shows up in the buffer level of the picture."
)
OUT = Path(__file__).parent / "_static" / "plot_example.png"


async def main() -> None:
    faults = FaultPlan(jitter_ms=120, stall_after_bytes=40_000, stall_ms=2500)
    async with (
        open_test_server(ttfb_ms=300, realtime_factor=1.05, faults=faults) as server,
        tts.NullSink() as sink,
    ):
        request = tts.SpeechRequest(TEXT, base_url=server.base_url, api_key="test")
        report = await tts.play(request, sink=sink, config=tts.StreamConfig())
    OUT.parent.mkdir(exist_ok=True)
    print(report.plot(OUT))


if __name__ == "__main__":
    trio.run(main)
