"""Many real-time streams in one process: N concurrent utterances into frame sinks.

Usage::

    python benchmarks/load.py                      # 1, 16, 64, 128, 256 streams of pcm
    python benchmarks/load.py --streams 100 --format mp3
    python benchmarks/load.py --streams 64 --profile /tmp/load.prof   # cProfile

Each level runs once with every stream started at the same moment (the worst case:
a thundering herd of requests) and once with the starts spread evenly over
``--stagger`` seconds (calls arriving one after another; all still play at once). The
server runs in another process (``python -m trio_tts_stream serve``, TTFB 300 ms,
2x real time, 20 ms pieces). The client process starts N utterances of about
``--seconds`` of audio at once, each into its own :class:`~trio_tts_stream.FrameSink`
(20 ms frames) drained by a task that base64-encodes every frame, as a media-stream
WebSocket would. Everything runs on the shared HTTP client, whose construction is inside
the timed region. Reported: underruns per stream, late frames (the consumer took a
frame more than one frame after it was due), late blocks (the frame clock woke late and
caught up) and the worst lateness, first byte (TTFB: how much of the start is the
server's and the connection's) and first audio (TTFA), both from the call, median / p95, the
client's CPU per second of audio (process time, all threads, over the whole run), and
its peak RSS.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))

from _measure import ServerProcess, text_for_seconds

import trio_tts_stream as tts


@dataclass
class Result:
    streams: int
    stagger_s: float
    fmt: str
    underruns: int
    streams_with_underruns: int
    late_frames: int
    late_blocks: int
    max_late_ms: float
    ttfa_median_ms: float
    ttfa_p95_ms: float
    ttfb_median_ms: float
    ttfb_p95_ms: float
    audio_s: float
    wall_s: float
    cpu_ms_per_audio_s: float
    rss_mib: float
    failed: int


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def run_load(
    base_url: str, n: int, fmt: str, seconds: float, stagger_s: float = 0.0
) -> Result:
    text = text_for_seconds(seconds)
    ttfas: list[float] = []
    ttfbs: list[float] = []
    underruns: list[int] = []
    late_frames = late_blocks = failed = 0
    max_late = 0.0
    audio_s = 0.0

    async def consume(sink: tts.FrameSink) -> None:
        async for frame in sink:
            base64.b64encode(frame.data)

    async def one(i: int) -> None:
        nonlocal late_frames, late_blocks, max_late, audio_s, failed
        await trio.sleep(stagger_s * i / n)  # calls arriving one after another
        request = tts.SpeechRequest(
            f"{text} ({i})", base_url=base_url, response_format=fmt, model="tts-1"
        )
        async with trio.open_nursery() as nursery, tts.FrameSink() as sink:
            nursery.start_soon(consume, sink)
            try:
                report = await tts.play(request, sink=sink)
            except tts.TTSStreamError:
                failed += 1
                nursery.cancel_scope.cancel()
                return
            stats = sink.statistics()
            nursery.cancel_scope.cancel()
        if report.ttfa_ms is not None:
            ttfas.append(report.ttfa_ms)
        if report.ttfb_ms is not None:
            ttfbs.append(report.ttfb_ms)
        underruns.append(report.underruns)
        late_frames += stats.late_frames
        late_blocks += stats.late_blocks
        max_late = max(max_late, stats.max_late_ms)
        audio_s += report.audio_s

    cpu0, wall0 = time.process_time(), time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return Result(
        streams=n,
        stagger_s=stagger_s,
        fmt=fmt,
        underruns=sum(underruns),
        streams_with_underruns=sum(1 for u in underruns if u),
        late_frames=late_frames,
        late_blocks=late_blocks,
        max_late_ms=max_late,
        ttfa_median_ms=statistics.median(ttfas) if ttfas else float("nan"),
        ttfa_p95_ms=p95(ttfas) if ttfas else float("nan"),
        ttfb_median_ms=statistics.median(ttfbs) if ttfbs else float("nan"),
        ttfb_p95_ms=p95(ttfbs) if ttfbs else float("nan"),
        audio_s=audio_s,
        wall_s=wall,
        cpu_ms_per_audio_s=cpu * 1000 / audio_s if audio_s else float("nan"),
        rss_mib=rss_kib / 1024,
        failed=failed,
    )


def row(r: Result) -> str:
    return (
        f"| {r.streams} | {r.stagger_s:g} s | {r.fmt} | "
        f"{r.underruns} ({r.streams_with_underruns} streams) | "
        f"{r.late_frames} | {r.late_blocks} / {r.max_late_ms:.0f} ms | "
        f"{r.ttfb_median_ms:.0f} / {r.ttfb_p95_ms:.0f} ms | "
        f"{r.ttfa_median_ms:.0f} / {r.ttfa_p95_ms:.0f} ms | {r.audio_s:.0f} s in "
        f"{r.wall_s:.1f} s | {r.cpu_ms_per_audio_s:.2f} ms ({r.cpu_ms_per_audio_s / 10:.2f} %) "
        f"| {r.rss_mib:.0f} MiB | {r.failed} |"
    )


HEADER = (
    "| streams | starts over | format | underruns | late frames | late blocks / worst | "
    "TTFB median / p95 | TTFA median / p95 | audio | CPU per audio s (% of a core) | "
    "peak RSS | failed |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def run_one(
    n: int,
    fmt: str,
    seconds: float,
    profile: str | None,
    stagger_s: float = 0.0,
    server_cpus: set[int] | None = None,
) -> Result:
    """One load level in a fresh client process state (a new trio run, a new client)."""
    with ServerProcess(ttfb_ms=300, realtime_factor=2.0, chunk_ms=20, cpus=server_cpus) as server:
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            result = trio.run(run_load, server.base_url, n, fmt, seconds, stagger_s)
            profiler.disable()
            profiler.dump_stats(profile)
            return result
        return trio.run(run_load, server.base_url, n, fmt, seconds, stagger_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1,16,64,128,256")
    parser.add_argument("--format", default="pcm")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--stagger",
        default="0,2",
        help="seconds over which the streams start (comma-separated: each is a run)",
    )
    parser.add_argument("--profile", default=None, help="write a cProfile of the last level")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="server on the last CPU, this client on the others (Linux): no CPU contention",
    )
    args = parser.parse_args()
    server_cpus = None
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            parser.error("--pin needs at least 2 CPUs")
        server_cpus = {cpus[-1]}
        os.sched_setaffinity(0, set(cpus[:-1]))
    levels = [int(s) for s in args.streams.split(",")]
    print(f"# Load: concurrent real-time streams in one process ({os.cpu_count()} cores)\n")
    print(
        f"Server in another process: TTFB 300 ms, 2x real time, 20 ms pieces; "
        f"{args.seconds:g} s utterances into FrameSinks (20 ms frames, base64 per frame)"
        + (
            f"; server pinned to CPU {sorted(server_cpus)}, client to the others"
            if server_cpus
            else ""
        )
        + ".\n"
    )
    print(HEADER)
    for stagger in [float(x) for x in args.stagger.split(",")]:
        for fmt in args.format.split(","):
            for i, n in enumerate(levels):
                profile = args.profile if i == len(levels) - 1 else None
                print(row(run_one(n, fmt, args.seconds, profile, stagger, server_cpus)), flush=True)


if __name__ == "__main__":
    main()
