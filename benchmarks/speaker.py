"""The speaker's benchmark, judged at the PulseAudio monitor (what a listener hears).

Run: ``python benchmarks/speaker.py`` (needs pulseaudio, parec and PortAudio; the rig of
tests/_audio_rig.py starts a private daemon). Prints a markdown report, then a last line
``RESULT <json>`` (every measured value, the core count, the date and the load average);
``--json PATH`` also writes that JSON to ``PATH`` (``benchmarks/charts.py`` draws it):

* gap between queued utterances: the speaker vs sequential ``Player.speak`` calls;
* interrupt-to-silence: from ``interrupt()`` to the last non-zero sample the null sink
  rendered, and the fade's shape (largest step at the cut vs the speech's own);
* from the last token of a sentence (tokens at 30/s) to its first audio;
* first audio on a cache hit vs a miss (server TTFB 300 ms);
* 32 speakers in one process (NullSinks): CPU per audio second, underruns.

Server: ``python -m trio_tts_stream serve`` in another process, tone engine, TTFB
300 ms, 2x real time unless said.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _audio_rig import Recording, find_exact, open_audio_rig
from _measure import ServerProcess

import trio_tts_stream as tts
from trio_tts_stream.testing import synthesize_tone

RATE = 24000
SENTENCES = [
    "The first answer sentence comes here.",
    "A second sentence follows it at once.",
    "And a third one closes the answer.",
]


def locate(heard: np.ndarray, samples: np.ndarray) -> tuple[int, int]:
    """(first, last+1) index of ``samples`` in ``heard`` (by its head and tail)."""
    start = find_exact(heard, samples[:480])
    end = find_exact(heard, samples[-480:])
    if start < 0 or end < 0:
        raise RuntimeError("the utterance was not found at the monitor")
    return start, end + 480


def gaps_ms(rec: Recording, texts: list[str]) -> list[float]:
    spans = [locate(rec.samples, synthesize_tone(t)) for t in texts]
    return [(b[0] - a[1]) * 1000 / RATE for a, b in itertools.pairwise(spans)]


async def queued_gap(base_url: str, rig: Any, use_speaker: bool) -> list[float]:
    rec = rig.recorder()
    rec.start()
    try:
        async with tts.SoundDeviceSink("pulse", blocksize_ms=10) as sink:
            if use_speaker:
                async with tts.open_speaker(base_url=base_url, sink=sink) as sp:
                    for t in SENTENCES:
                        sp.say(t)
            else:
                async with tts.open_player(base_url=base_url, sink=sink) as player:
                    for t in SENTENCES:
                        await player.speak(t)
        await trio.sleep(0.3)
    finally:
        recording = rec.stop()
    return gaps_ms(recording, SENTENCES)


async def interrupt_once(base_url: str, rig: Any) -> dict[str, float]:
    text = "A long answer that the user talks over after about a second. " * 4
    expected = synthesize_tone(text)
    rec = rig.recorder()
    rec.start()
    try:
        async with (
            tts.SoundDeviceSink("pulse", blocksize_ms=10) as sink,
            tts.open_speaker(base_url=base_url, sink=sink, fade_ms=10) as sp,
        ):
            sp.say(text)
            while sink.audio_format is None or sink.statistics().frames_played < RATE:  # noqa: ASYNC110
                await trio.sleep(0.005)
            called = time.perf_counter()
            result = await sp.interrupt()
            await trio.sleep(0.4)
    finally:
        recording = rec.stop()
    heard = recording.samples
    at = find_exact(heard, expected[:480])
    last = at + int(np.flatnonzero(heard[at:])[-1])
    steps = np.abs(np.diff(heard[last - 480 : last + 2].astype(np.int32))).max()
    own = np.abs(np.diff(expected[: last - at].astype(np.int32))).max()
    return {
        "monitor_ms": (recording.time_of(last + 1) - called) * 1000,
        "library_ms": result.silence_ms or float("nan"),
        "step_ratio": float(steps) / float(own),
    }


async def tokens(text: str, log: dict[str, float]) -> AsyncIterator[str]:
    words = text.split(" ")
    for i, word in enumerate(words):
        await trio.sleep(1 / 30)
        if word.endswith("."):
            log[str(i)] = time.perf_counter()
        yield word + ("" if i == len(words) - 1 else " ")


async def token_to_audio(base_url: str, rig: Any) -> list[float]:
    text = " ".join(SENTENCES)
    log: dict[str, float] = {}
    rec = rig.recorder()
    rec.start()
    try:
        async with (
            tts.SoundDeviceSink("pulse", blocksize_ms=10) as sink,
            tts.open_speaker(base_url=base_url, sink=sink) as sp,
        ):
            await sp.say_stream(tokens(text, log))
        await trio.sleep(0.3)
    finally:
        recording = rec.stop()
    # The first sentence: the later ones are queued behind it and play right after it.
    t_end = log[min(log, key=int)]
    start, _ = locate(recording.samples, synthesize_tone(SENTENCES[0]))
    return [(recording.time_of(start) - t_end) * 1000]


async def cache_first_audio(base_url: str, rig: Any) -> tuple[float, float]:
    phrase = "One moment, please."
    samples = synthesize_tone(phrase)
    out = []
    rec = rig.recorder()
    rec.start()
    try:
        async with (
            tts.SoundDeviceSink("pulse", blocksize_ms=10) as sink,
            tts.open_speaker(base_url=base_url, sink=sink, cache=True) as sp,
        ):
            said = []
            for _ in range(2):
                said.append(time.perf_counter())
                await sp.say(phrase).wait()
                await trio.sleep(0.5)
    finally:
        recording = rec.stop()
    heard = recording.samples
    first = find_exact(heard, samples[:480])
    second = first + len(samples) + find_exact(heard[first + len(samples) :], samples[:480])
    out = [
        (recording.time_of(first) - said[0]) * 1000,
        (recording.time_of(second) - said[1]) * 1000,
    ]
    return out[0], out[1]


async def many_speakers(base_url: str, n: int = 32) -> dict[str, float]:
    texts = [
        f"Speaker {i} says a few sentences. It goes on for a while. The end." for i in range(n)
    ]
    underruns = 0
    audio_s = 0.0

    async def one(i: int, client: Any) -> None:
        nonlocal underruns, audio_s
        async with (
            tts.NullSink() as sink,
            tts.open_speaker(base_url=base_url, sink=sink, client=client) as sp,
        ):
            for sentence in texts[i].split(". "):
                sp.say(sentence)
            await sp.wait_idle()
        underruns += sink.statistics().underruns
        audio_s += sink.statistics().frames_played / RATE

    import httpx

    cpu0, wall0 = time.process_time(), time.perf_counter()
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=200)) as client:
        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(one, i, client)
    cpu = time.process_time() - cpu0
    return {
        "speakers": n,
        "audio_s": audio_s,
        "cpu_ms_per_audio_s": cpu * 1000 / audio_s,
        "wall_s": time.perf_counter() - wall0,
        "underruns": underruns,
    }


def fmt(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):.1f} ms (min {min(values):.1f}, "
        f"max {max(values):.1f}, n={len(values)})"
    )


def _spread(values: list[float]) -> dict[str, Any] | None:
    """Median, min, max and the values, for the JSON (``None`` if nothing was measured)."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return None
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
        "n": len(values),
        "values": [round(v, 2) for v in values],
    }


async def main() -> dict[str, Any]:
    """Measure, print the report and the RESULT line; return the results."""
    began = time.perf_counter()
    load_start = os.getloadavg()[0]
    print(f"# Speaker benchmark ({os.cpu_count()} cores)\n")
    with open_audio_rig() as rig, ServerProcess(ttfb_ms=300, realtime_factor=2) as server:
        url = server.base_url
        speaker_gaps: list[float] = []
        player_gaps: list[float] = []
        for _ in range(3):
            speaker_gaps += await queued_gap(url, rig, use_speaker=True)
            player_gaps += await queued_gap(url, rig, use_speaker=False)
        print(f"- gap between queued utterances, speaker: {fmt(speaker_gaps)}")
        print(f"- gap between utterances, sequential Player.speak: {fmt(player_gaps)}")
        runs = [await interrupt_once(url, rig) for _ in range(5)]
        print(
            "- interrupt to silence at the monitor: "
            + fmt([r["monitor_ms"] for r in runs])
            + "; library's own figure: "
            + fmt([r["library_ms"] for r in runs])
            + f"; largest step at the cut / speech's own: "
            f"{max(r['step_ratio'] for r in runs):.2f}"
        )
        lags: list[float] = []
        for _ in range(5):
            lags += await token_to_audio(url, rig)
        print(
            "- last token of the first sentence (30 tokens/s) to its first audio: "
            f"{fmt(lags)} (the later sentences play gaplessly behind it)"
        )
        misses, hits = [], []
        for _ in range(3):
            miss, hit = await cache_first_audio(url, rig)
            misses.append(miss)
            hits.append(hit)
        print(f"- say to first audio, cache miss: {fmt(misses)}; cache hit: {fmt(hits)}")
    with ServerProcess(ttfb_ms=300, realtime_factor=2) as server:
        load = await many_speakers(server.base_url)
    print(
        f"- {load['speakers']} speakers in one process (NullSinks, one shared client): "
        f"{load['audio_s']:.0f} s of audio in {load['wall_s']:.1f} s, "
        f"{load['cpu_ms_per_audio_s']:.1f} ms of CPU per audio second, "
        f"{load['underruns']} underruns"
    )
    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
        "cpus": os.cpu_count(),
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
        "wall_s": round(time.perf_counter() - began, 1),
        "server": {"ttfb_ms": 300, "realtime_factor": 2},
        "queued_gap_speaker_ms": _spread(speaker_gaps),
        "queued_gap_player_ms": _spread(player_gaps),
        "interrupt_monitor_ms": _spread([r["monitor_ms"] for r in runs]),
        "interrupt_library_ms": _spread([r["library_ms"] for r in runs]),
        "interrupt_step_ratio_max": round(max(r["step_ratio"] for r in runs), 3),
        "token_to_audio_ms": _spread(lags),
        "cache_miss_ms": _spread(misses),
        "cache_hit_ms": _spread(hits),
        "many_speakers": {k: round(v, 2) for k, v in load.items()},
    }
    line = json.dumps(result, separators=(",", ":"))
    print("RESULT " + line)
    return result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The speaker's benchmark, at the monitor.")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the results here")
    return parser.parse_args(argv)


def write_json(result: dict[str, Any], path: Path | None) -> None:
    """Write ``result`` to ``path`` (if given) as JSON."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    json_path = parse_args().json
    write_json(trio.run(main), json_path)
