"""Benchmarks of trio_tts_stream: latency, CPU and memory, streaming vs buffered, per format,
and over a degraded network.

Usage::

    python benchmarks/run.py                  # the full suite (about 6 minutes)
    python benchmarks/run.py --quick          # a smoke run (about a minute)
    python benchmarks/run.py --json out.json  # also write every measurement as JSON
    python benchmarks/run.py --only network   # one section (or several, comma-separated)
    nox -s bench -- --quick                   # the same through nox

Prints a markdown report on stdout (progress goes to stderr). See benchmarks/README.md
for what is measured and how.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

from _measure import (
    BENCH_DIR,
    BenchmarkError,
    PulseNullSink,
    ServerProcess,
    Spread,
    audio_seconds,
    markdown_table,
    response_body,
    run_worker,
    text_for_seconds,
)
from _network import (
    BUFFERINGS,
    JITTER_FACTOR,
    JITTER_SEED,
    PCM_KBPS,
    RESILIENCE_CASES,
    Buffering,
    Link,
    convergence_lines,
    jitter_summary,
    link_estimate_s,
    link_scenario,
    link_table,
    network_failures,
    network_method,
    resilience_estimate_s,
    resilience_scenario,
    resilience_table,
    same_audio_line,
    timeline_note,
)

import trio_tts_stream as tts

TTFB_MS = 300.0
"""The test server's time to first byte (the issue's scenario)."""
FACTORS = (1.5, 6.5)
"""Real-time factors of the test server (the issue's scenario)."""
MODES = ("stream", "buffered")
FORMATS = ("pcm", "wav", "mp3", "aac", "flac", "opus")
"""Every OpenAI ``response_format``, in the order of the per-format tables."""
DECODE_CHUNK = 4096
"""Bytes per ``decode()`` call in the decode-cost benchmark (the player's default read)."""
SECTIONS = ("latency", "formats", "speaker", "network", "memory", "decode")
"""What ``--only`` can select (default: all)."""
LONG_SPEED = 0.25
"""Speech speed of the long streams: the tone engine then speaks 2308 characters (under the
server's 4096-character limit) for 10 minutes."""


@dataclass(frozen=True)
class Plan:
    """What one invocation measures.

    Attributes:
        name: ``"full"`` or ``"quick"``.
        seconds: Audio per utterance in the latency scenarios.
        runs: Measured utterances per latency scenario (after one warm-up).
        long_seconds: Stream lengths of the memory scenarios.
        clock_rate: Virtual seconds per real second in the memory scenarios.
        sample_every: Virtual seconds between RSS samples.
        speaker_factors: Real-time factors of the speaker scenario (streaming mode).
        speaker_runs: Measured utterances per speaker factor.
        format_seconds: Audio per utterance in the per-format latency scenarios.
        format_runs: Measured utterances per per-format latency scenario.
        format_factors: Real-time factors of the per-format latency scenarios.
        decode_seconds: Audio decoded per format in the decode-cost benchmark.
        decode_repeats: Measured decodes per format (after one warm-up).
        net_seconds: Audio per utterance in the network scenarios.
        net_utterances: Utterances in a row per network link and buffering.
        net_bandwidths: Link bandwidths, in multiples of the stream's bitrate.
        net_jitters: Jitter of the jitter scenarios, in ms.
        net_big_ring_s: If set, the slowest bandwidth is also played adaptively with this
            ``max_buffer_s`` (a ring that can hold the head start it needs).
        resilience_factors: Server real-time factors of the drop and stall scenarios.
        jobs: Scenarios run at the same time (each in its own processes).
        net_jobs: Network scenarios run at the same time (they wait on the real clock
            most of the time: each client uses a few % of a core).
    """

    name: str
    seconds: float
    runs: int
    long_seconds: tuple[float, ...]
    clock_rate: float
    sample_every: float
    speaker_factors: tuple[float, ...]
    speaker_runs: int
    format_seconds: float
    format_runs: int
    format_factors: tuple[float, ...]
    decode_seconds: float
    decode_repeats: int
    net_seconds: float
    net_utterances: int
    net_bandwidths: tuple[float, ...]
    net_jitters: tuple[float, ...]
    net_big_ring_s: float | None
    resilience_factors: tuple[float, ...]
    jobs: int
    net_jobs: int


FULL = Plan(
    name="full",
    seconds=10.0,
    runs=5,
    long_seconds=(10.0, 600.0),
    clock_rate=50.0,
    sample_every=5.0,
    speaker_factors=FACTORS,
    speaker_runs=3,
    format_seconds=10.0,
    format_runs=3,
    format_factors=(2.0, 6.5),
    decode_seconds=60.0,
    decode_repeats=5,
    net_seconds=10.0,
    net_utterances=3,
    net_bandwidths=(0.8, 1.0, 1.5, 3.0),
    net_jitters=(0.0, 50.0, 150.0, 300.0),
    net_big_ring_s=4.0,
    resilience_factors=(1.5, 6.5),
    jobs=6,
    net_jobs=8,
)
QUICK = Plan(
    name="quick",
    seconds=3.0,
    runs=2,
    long_seconds=(10.0, 120.0),
    clock_rate=50.0,
    sample_every=2.0,
    speaker_factors=(6.5,),
    speaker_runs=1,
    format_seconds=3.0,
    format_runs=1,
    format_factors=(2.0,),
    decode_seconds=60.0,
    decode_repeats=2,
    net_seconds=3.0,
    net_utterances=2,
    net_bandwidths=(0.8, 3.0),
    net_jitters=(300.0,),
    net_big_ring_s=None,
    resilience_factors=(1.5,),
    jobs=6,
    net_jobs=8,
)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Scenarios


def latency_scenario(
    seconds: float, runs: int, factor: float, mode: str, response_format: str = "pcm"
) -> dict[str, Any]:
    """One latency scenario: its own server process and client process."""
    with ServerProcess(ttfb_ms=TTFB_MS, realtime_factor=factor) as server:
        text = text_for_seconds(seconds)
        args = ["latency", "--base-url", server.base_url, "--text", text]
        args += ["--format", response_format, "--runs", str(runs)]
        args += ["--buffered"] if mode == "buffered" else []
        result = run_worker(args)
    return {"factor": factor, "text_audio_s": audio_seconds(text), **result}


def latency_estimate_s(seconds: float, runs: int, factor: float, mode: str) -> float:
    """Roughly how long a latency scenario takes (to start the longest ones first)."""
    per_run = TTFB_MS / 1000 + seconds + (seconds / factor if mode == "buffered" else 0.0)
    return 3.0 + runs * per_run


def decode_scenario(plan: Plan, formats: Sequence[str]) -> dict[str, Any]:
    """Decode cost: the test server's bodies, rendered here, decoded in a fresh process."""
    text = text_for_seconds(plan.decode_seconds)
    args = ["decode", "--chunk-size", str(DECODE_CHUNK), "--repeats", str(plan.decode_repeats)]
    encode_s: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="ttsbench.") as tmp:
        for fmt in formats:
            t0 = time.perf_counter()
            body = response_body(text, fmt)
            encode_s[fmt] = time.perf_counter() - t0
            path = Path(tmp) / f"{fmt}.body"
            path.write_bytes(body)
            args += ["--body", f"{fmt}={path}"]
        result = run_worker(args)
    return {"text_audio_s": audio_seconds(text), "render_s": encode_s, **result}


def memory_scenario(plan: Plan, seconds: float, mode: str) -> dict[str, Any]:
    """One long stream under a fast virtual clock; the server sends as fast as it may."""
    with ServerProcess(ttfb_ms=0.0, realtime_factor=None) as server:
        text = text_for_seconds(seconds, speed=LONG_SPEED)
        audio_s = audio_seconds(text, speed=LONG_SPEED)
        args = ["longstream", "--base-url", server.base_url, "--text", text]
        args += ["--rate", f"{plan.clock_rate:g}", "--speed", f"{LONG_SPEED:g}"]
        args += ["--audio-s", f"{audio_s:g}"]
        args += ["--sample-every", f"{plan.sample_every:g}"]
        args += ["--buffered"] if mode == "buffered" else []
        return {"text_audio_s": audio_s, **run_worker(args)}


def speaker_estimate_s(plan: Plan) -> float:
    """Roughly how long the speaker scenario takes."""
    return 3.0 + sum(3.0 + plan.speaker_runs * (plan.seconds + 1.0) for _ in plan.speaker_factors)


def speaker_scenario(plan: Plan) -> dict[str, Any]:
    """TTFA at a real PortAudio device (a PulseAudio null sink), measured with parec."""
    missing = PulseNullSink.missing()
    if missing is not None:
        return {"skipped": missing}
    results = []
    with PulseNullSink() as pulse:
        for factor in plan.speaker_factors:
            with ServerProcess(ttfb_ms=TTFB_MS, realtime_factor=factor) as server:
                text = text_for_seconds(plan.seconds)
                args = ["speaker", "--base-url", server.base_url, "--text", text]
                args += ["--runs", str(plan.speaker_runs)]
                result = run_worker(args, env=pulse.env)
                results.append({"factor": factor, "text_audio_s": audio_seconds(text), **result})
    return {"scenarios": results}


def _run_all(
    jobs: int, tasks: Sequence[tuple[str, Callable[[], dict[str, Any]]]]
) -> dict[str, dict[str, Any]]:
    """Run ``tasks`` (name, function) with at most ``jobs`` at a time; log as they end."""
    out: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures: dict[str, Future[dict[str, Any]]] = {n: pool.submit(f) for n, f in tasks}
        for name, future in futures.items():
            try:
                out[name] = future.result()
            except BenchmarkError as exc:
                out[name] = {"error": str(exc)}
            _log(f"  done: {name}" + (" (FAILED)" if "error" in out[name] else ""))
    return out


# --------------------------------------------------------------------------------------
# Report


def _spread(runs: list[dict[str, Any]], key: str) -> Spread | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return Spread.of(values) if values else None


def _fmt(spread: Spread | None, fmt: str = ".0f") -> str:
    return "n/a" if spread is None else spread.format(fmt)


def summarize_latency(result: dict[str, Any]) -> dict[str, Any]:
    """Median/min/max of each per-run measurement, CPU per audio second, memory."""
    runs = result["runs"]
    cpu = Spread.of(r["cpu_s"] / r["audio_s"] * 1000 for r in runs)
    summary: dict[str, Any] = {
        "factor": result["factor"],
        "mode": result["mode"],
        "audio_s": result["text_audio_s"],
        "runs": len(runs),
        "completed": sum(r["outcome"] == "completed" for r in runs),
        "cpu_ms_per_audio_s": cpu.to_dict(),
        "underruns_total": sum(r["underruns"] for r in runs),
        "rss_after_imports_mib": round(result["rss_start_mib"], 1),
        "peak_rss_mib": round(result["peak_rss_mib"], 1),
        "peak_minus_imports_mib": round(result["peak_rss_mib"] - result["rss_start_mib"], 2),
    }
    for key in ("ttfb_headers_ms", "ttfb_ms", "ttfa_ms", "wall_s"):
        spread = _spread(runs, key)
        summary[key] = None if spread is None else spread.to_dict()
    return summary


def latency_table(results: list[dict[str, Any]]) -> str:
    rows = []
    for result in results:
        runs = result["runs"]
        cpu = Spread.of(r["cpu_s"] / r["audio_s"] * 1000 for r in runs)
        underruns = sum(r["underruns"] for r in runs)
        rows.append(
            [
                result["mode"],
                f"{result['factor']:g}x",
                _fmt(_spread(runs, "ttfa_ms")),
                _fmt(_spread(runs, "ttfb_headers_ms")),
                _fmt(_spread(runs, "ttfb_ms")),
                f"{underruns} in {len(runs)} runs",
                cpu.format(".1f"),
                f"{result['peak_rss_mib']:.1f} ({result['rss_start_mib']:.1f})",
                f"{result['peak_rss_mib'] - result['rss_start_mib']:+.1f}",
            ]
        )
    return markdown_table(
        [
            "mode",
            "server speed",
            "TTFA ms",
            "TTFB ms (headers)",
            "TTFB ms (report)",
            "underruns",
            "client CPU ms / audio s",
            "peak RSS MiB (after imports)",
            "peak - imports",
        ],
        rows,
    )


def _sample_at(samples: list[dict[str, float]], played_s: float) -> dict[str, float] | None:
    for sample in samples:
        if sample["played_s"] >= played_s:
            return sample
    return None


def summarize_memory(result: dict[str, Any]) -> dict[str, Any]:
    """RSS when 1 minute had been played, at the end, and the growth in between."""
    samples = result["samples"]
    end = samples[-1]
    minute = _sample_at(samples, 60.0) if result["audio_s"] > 60.0 else None
    growth = per_minute = blocks = None
    if minute is not None:
        growth = end["rss_mib"] - minute["rss_mib"]
        minutes = (end["played_s"] - minute["played_s"]) / 60
        per_minute = growth * 1024 / minutes if minutes > 0 else None
        blocks = end["python_blocks"] - minute["python_blocks"]
    return {
        "mode": result["mode"],
        "audio_s": result["audio_s"],
        "clock_rate": result["clock_rate"],
        "outcome": result["outcome"],
        "underruns": result["underruns"],
        "buffer_ms_avg": result["buffer_ms_avg"],
        "rss_after_imports_mib": result["rss_start_mib"],
        "rss_at_1min_mib": None if minute is None else minute["rss_mib"],
        "rss_at_end_mib": end["rss_mib"],
        "peak_rss_mib": result["peak_rss_mib"],
        "growth_1min_to_end_mib": growth,
        "growth_kib_per_audio_min": per_minute,
        "python_blocks_growth_1min_to_end": blocks,
        "wall_s": result["wall_s"],
        "cpu_s": result["cpu_s"],
    }


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.3g} min" if seconds >= 60 else f"{seconds:.3g} s"


def memory_table(summaries: list[dict[str, Any]]) -> str:
    def mib(value: float | None, sign: bool = False) -> str:
        if value is None:
            return "-"
        return f"{value:+.2f}" if sign else f"{value:.1f}"

    rows = [
        [
            s["mode"],
            _duration(s["audio_s"]),
            mib(s["rss_after_imports_mib"]),
            mib(s["rss_at_1min_mib"]),
            mib(s["rss_at_end_mib"]),
            mib(s["peak_rss_mib"]),
            mib(s["growth_1min_to_end_mib"], sign=True),
            "-"
            if s["growth_kib_per_audio_min"] is None
            else f"{s['growth_kib_per_audio_min']:.0f}",
            str(s["underruns"]),
            f"{s['wall_s']:.1f}",
        ]
        for s in summaries
    ]
    return markdown_table(
        [
            "mode",
            "stream",
            "RSS after imports",
            "RSS at 1 min played",
            "RSS at end",
            "peak RSS",
            "growth 1 min -> end",
            "KiB / audio min",
            "underruns",
            "wall s",
        ],
        rows,
    )


def speaker_table(scenarios: list[dict[str, Any]]) -> str:
    rows = []
    for result in scenarios:
        runs = result["runs"]
        diffs = [
            r["ttfa_ms"] - r["ttfa_speaker_ms"]
            for r in runs
            if r["ttfa_ms"] is not None and r["ttfa_speaker_ms"] is not None
        ]
        rows.append(
            [
                result["mode"],
                f"{result['factor']:g}x",
                _fmt(_spread(runs, "ttfa_speaker_ms")),
                _fmt(_spread(runs, "ttfa_ms")),
                _fmt(Spread.of(diffs) if diffs else None, "+.1f"),
                _fmt(_spread(runs, "device_latency_ms"), ".1f"),
                str(sum(r["underruns"] for r in runs)),
            ]
        )
    return markdown_table(
        [
            "mode",
            "server speed",
            "TTFA ms at the speaker (parec)",
            "TTFA ms (report)",
            "report - speaker ms",
            "device latency ms",
            "underruns",
        ],
        rows,
    )


def _kbps(byte_count: float, seconds: float) -> float:
    return byte_count * 8 / seconds / 1000


def _cpu_ms(runs: list[dict[str, Any]]) -> Spread | None:
    values = [r["cpu_s"] / r["audio_s"] * 1000 for r in runs if r["audio_s"]]
    return Spread.of(values) if values else None


def summarize_format(result: dict[str, Any]) -> dict[str, Any]:
    """One per-format latency scenario: :func:`summarize_latency` plus the bandwidth."""
    runs = result["runs"]
    return {
        **summarize_latency(result),
        "response_format": result["response_format"],
        "kbit_per_audio_s": Spread.of(
            _kbps(r["bytes_received"], result["text_audio_s"]) for r in runs
        ).to_dict(),
        "decode_errors_total": sum(r["decode_errors"] for r in runs),
    }


def format_table(results: list[dict[str, Any]]) -> str:
    """One row per format and server speed: streaming and buffered side by side."""
    by_key = {(r["response_format"], r["factor"], r["mode"]): r for r in results}
    rows = []
    for fmt in FORMATS:
        for factor in sorted({r["factor"] for r in results}):
            stream = by_key.get((fmt, factor, "stream"))
            buffered = by_key.get((fmt, factor, "buffered"))
            if stream is None and buffered is None:
                continue
            both = [r for res in (stream, buffered) if res is not None for r in res["runs"]]
            audio_s = (stream or buffered or {})["text_audio_s"]

            def runs_of(res: dict[str, Any] | None) -> list[dict[str, Any]]:
                return [] if res is None else list(res["runs"])

            def underruns(res: dict[str, Any] | None) -> str:
                return "-" if res is None else str(sum(r["underruns"] for r in res["runs"]))

            rows.append(
                [
                    fmt,
                    f"{factor:g}x",
                    _fmt(_spread(runs_of(stream), "ttfa_ms")),
                    _fmt(_spread(runs_of(buffered), "ttfa_ms")),
                    _fmt(_spread(both, "ttfb_headers_ms")),
                    _fmt(_spread(both, "ttfb_ms")),
                    f"{underruns(stream)} / {underruns(buffered)}",
                    _fmt(_cpu_ms(runs_of(stream)), ".1f"),
                    _fmt(_cpu_ms(runs_of(buffered)), ".1f"),
                    _fmt(Spread.of(_kbps(r["bytes_received"], audio_s) for r in both), ".1f"),
                ]
            )
    return markdown_table(
        [
            "format",
            "server speed",
            "TTFA ms streaming",
            "TTFA ms buffered",
            "TTFB ms (headers)",
            "TTFB ms (report)",
            "underruns (stream / buffered)",
            "CPU ms / audio s streaming",
            "CPU ms / audio s buffered",
            "kbit/s",
        ],
        rows,
    )


def summarize_decode(entry: dict[str, Any]) -> dict[str, Any]:
    """One format of the decode benchmark: speed, CPU, per-chunk cost, first block."""
    passes = entry["passes"]
    audio_s = passes[0]["audio_s"]
    return {
        "format": entry["format"],
        "audio_s": audio_s,
        "body_bytes": entry["body_bytes"],
        "kbit_per_audio_s": _kbps(entry["body_bytes"], audio_s),
        "audio_ms_per_chunk": entry["chunk_size"] / (entry["body_bytes"] / audio_s) * 1000,
        "x_realtime": Spread.of(p["audio_s"] / p["wall_s"] for p in passes).to_dict(1),
        "cpu_ms_per_audio_s": Spread.of(p["cpu_s"] / p["audio_s"] * 1000 for p in passes).to_dict(),
        "chunk_us_median": entry["chunk_us_median"],
        "chunk_us_p95": entry["chunk_us_p95"],
        "chunk_us_max": entry["chunk_us_max"],
        "first_block_bytes": entry["first_block_bytes"],
        "first_block_ms": entry["first_block_ms"],
        "errors": max(p["errors"] for p in passes),
    }


def decode_table(summaries: list[dict[str, Any]]) -> str:
    def spread(d: dict[str, float], fmt: str) -> str:
        return Spread(d["median"], d["min"], d["max"], int(d["n"])).format(fmt)

    rows = [
        [
            s["format"],
            f"{s['kbit_per_audio_s']:.1f}",
            f"{s['audio_ms_per_chunk']:.0f}",
            spread(s["x_realtime"], ",.0f"),
            spread(s["cpu_ms_per_audio_s"], ".2f"),
            f"{s['chunk_us_median']:.0f}",
            f"{s['chunk_us_p95']:.0f}",
            f"{s['chunk_us_max']:.0f}",
            "-" if s["first_block_bytes"] is None else f"{s['first_block_bytes']:,}",
            "-" if s["first_block_ms"] is None else f"{s['first_block_ms']:.3g}",
        ]
        for s in summaries
    ]
    return markdown_table(
        [
            "format",
            "kbit/s",
            f"audio ms per {DECODE_CHUNK} B",
            "x real time",
            "CPU ms / audio s",
            "µs per chunk (median)",
            "p95",
            "max",
            "bytes before first block",
            "first block ms",
        ],
        rows,
    )


def ring_ceiling_mib(config: tts.StreamConfig) -> float:
    """The client's documented buffer ceiling with a float32 NullSink and 24 kHz mono pcm:
    the ring, the decoded-block queue (a 4096-byte read is 2048 frames) and one read."""
    frames_per_block = config.chunk_size // 2
    ring = config.max_buffer_s * 24000 * 4
    queue = config.queue_blocks * frames_per_block * 4
    return (ring + queue + config.chunk_size) / 2**20


def method_text(
    plan: Plan,
    latency_audio_s: float,
    format_audio_s: float,
    sections: Sequence[str] = SECTIONS,
) -> str:
    """The method of the ``sections`` run, as a markdown list (printed under the tables)."""
    config = tts.StreamConfig()
    longest = _duration(max(plan.long_seconds))
    network = network_method(
        plan.net_seconds, plan.net_utterances, plan.net_bandwidths, plan.net_jitters
    )
    bullets = [
        "Server: `python -m trio_tts_stream serve` in its own process (its CPU is not "
        f"counted), tone engine, 24 kHz mono s16 `pcm` in 20 ms HTTP chunks, first byte "
        f"{TTFB_MS:g} ms after the request, then audio released at the given multiple of "
        "real time. One server per scenario.",
        "Client: a fresh Python process per scenario running `trio_tts_stream.speak()` with a "
        "`NullSink` (a headless speaker consuming 20 ms blocks on trio's real clock, zero "
        "output latency), the default `StreamConfig` (start after "
        f"{config.buffer_ms:g} ms buffered, {config.max_buffer_s:g} s ring, "
        f"{config.chunk_size}-byte reads) and one long-lived `httpx.AsyncClient`. "
        "Buffered = `StreamConfig(streaming=False)`: download everything, then play.",
        f"Utterance: {latency_audio_s:.2f} s of audio; one uncounted warm-up "
        f'("Hello.", 0.39 s), then {plan.runs} runs; cells are median (min-max).',
        "TTFA: request sent -> first sample consumed by the sink (the report's `ttfa_ms`). "
        "TTFB (headers): request sent -> response headers received (httpx event hooks); the "
        "server sends them with the first body byte. TTFB (report): the report's `ttfb_ms`, "
        "when the first `chunk_size` read completed.",
        "CPU: `time.process_time()` of the client process (all threads, user + system) "
        "around each `speak()` call, divided by the audio length.",
        "Peak RSS: `VmHWM` of the client process after all its runs (imports included); in "
        "parentheses `VmRSS` after the imports; then the difference, the memory the "
        "utterances themselves needed.",
        f"Per format: the same scenario with `response_format` set (`speak(..., "
        f"response_format=F)`), a {format_audio_s:.2f} s utterance, server speed "
        f"{' and '.join(f'{f:g}x' for f in plan.format_factors)}, {_runs(plan.format_runs)} "
        "after the warm-up (which also loads PyAV for the compressed formats). The test "
        "server encodes incrementally as it sends: `mp3` 64 kbit/s CBR, `aac` 64 kbit/s "
        "ADTS, `flac`, `opus` 32 kbit/s VBR in Ogg with one page per 20 ms packet; `wav` "
        "is `pcm` with a streaming header. kbit/s: body bytes received per second of "
        "audio, headers and container overhead included. A run that fell back to "
        "buffered decoding or skipped corrupt frames counts as failed.",
        f"{plan.jobs} scenarios (latency, per-format and speaker) run at the same time, "
        "longest first (each its own server and client process, all mostly idle); "
        "`--jobs 1` runs them one after another.",
        f"Decode cost: {plan.decode_seconds:g} s of audio per format, the exact body the "
        "test server sends (`TestServer.render`), rendered in the runner and decoded in a "
        "fresh worker process after the other scenarios, so that nothing competes with it. "
        f"`create_decoder(F)` is fed {DECODE_CHUNK}-byte chunks (the player's read size) "
        "then `flush()`; x real time = audio seconds / wall time of the whole pass, CPU = "
        "`time.process_time()` of the pass per audio second; per-chunk times are "
        "`perf_counter_ns()` around each `decode()` call. Bytes before the first block: "
        "a new decoder fed one byte at a time until `decode()` returns audio (the "
        "header, and for flac the metadata padding, comes first); first block ms is how "
        "much audio that first block holds.",
        f"Memory over a long stream: playing {longest} in real time would take {longest}, "
        f"so the client runs under `trio.testing.MockClock(rate={plan.clock_rate:g})`: "
        f"trio's clock, on which the `NullSink` consumes, runs {plan.clock_rate:g}x faster "
        "than real time, while the server (another process) sends as fast as the client "
        "reads, so the ring buffer stays full and backpressure, not pacing, bounds memory. "
        f"Timeouts are scaled by the same factor. Speech speed {LONG_SPEED:g} (the server "
        f"caps input at 4096 characters). `VmRSS` is sampled every {plan.sample_every:g} s "
        "of virtual time; growth is from the sample at which 1 minute had been played to "
        "the end of playback. The documented buffer ceiling (ring + block queue + one read) "
        f"is {ring_ceiling_mib(config):.2f} MiB here.",
        *network,
        f"The network scenarios ({plan.net_jobs} at a time, longest first, each its own "
        "server and client process, each client using a few % of a core) run after the "
        "latency, per-format and speaker scenarios and before the memory ones.",
    ]
    phase1 = ("latency", "formats", "speaker")
    tags = [phase1] * 6 + [("formats",), phase1, ("decode",), ("memory",)]
    tags += [("network",)] * (len(network) + 1)
    chosen = [b for b, tag in zip(bullets, tags, strict=True) if set(tag) & set(sections)]
    return "Method:\n\n" + "\n".join(f"- {b}" for b in chosen) + "\n"


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("trio-tts-stream", "trio", "httpx", "h11", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "?"
    return out


def _commit() -> str | None:
    if shutil.which("git") is None:
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(BENCH_DIR), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


# --------------------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark trio_tts_stream: TTFA, CPU and memory, streaming vs buffered, "
        "per format, and over a degraded network."
    )
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (about a minute)")
    parser.add_argument("--json", metavar="PATH", type=Path, help="write the results as JSON")
    parser.add_argument("--runs", type=int, help="measured runs per latency scenario")
    parser.add_argument(
        "--jobs", type=int, help="scenarios run at the same time (default 6, network 8)"
    )
    parser.add_argument("--no-speaker", action="store_true", help="skip the PulseAudio speaker run")
    parser.add_argument(
        "--only",
        metavar="SECTIONS",
        help=f"comma-separated sections to run, of: {', '.join(SECTIONS)} (default: all)",
    )
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.jobs is not None and args.jobs < 1:
        parser.error("--jobs must be at least 1")
    args.sections = SECTIONS
    if args.only is not None:
        chosen = tuple(s.strip() for s in args.only.split(",") if s.strip())
        unknown = [s for s in chosen if s not in SECTIONS]
        if unknown or not chosen:
            parser.error(f"--only takes sections of: {', '.join(SECTIONS)}")
        args.sections = tuple(s for s in SECTIONS if s in chosen)
    if args.no_speaker:
        args.sections = tuple(s for s in args.sections if s != "speaker")
    return args


def network_tasks(plan: Plan) -> list[tuple[float, str, Callable[[], dict[str, Any]]]]:
    """The network scenarios: (estimated seconds, name, function)."""
    links = [Link("bandwidth", b) for b in plan.net_bandwidths]
    links += [Link("jitter", j) for j in plan.net_jitters]
    runs: list[tuple[Link, Buffering]] = [(link, b) for link in links for b in BUFFERINGS]
    if plan.net_big_ring_s is not None and plan.net_bandwidths:
        slowest = Link("bandwidth", min(plan.net_bandwidths))
        runs.append((slowest, Buffering("adaptive", plan.net_big_ring_s)))
    planned: list[tuple[float, str, Callable[[], dict[str, Any]]]] = [
        (
            link_estimate_s(plan.net_seconds, plan.net_utterances, link),
            f"network {link.kind} {link.label} {buffering.label}",
            partial(link_scenario, plan.net_seconds, plan.net_utterances, link, buffering),
        )
        for link, buffering in runs
    ]
    for factor in plan.resilience_factors:
        for case in RESILIENCE_CASES:
            planned.append(
                (
                    resilience_estimate_s(plan.net_seconds, factor, case),
                    f"resilience {factor:g}x {case}",
                    partial(resilience_scenario, plan.net_seconds, factor, case),
                )
            )
    return planned


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sections: tuple[str, ...] = args.sections
    plan = QUICK if args.quick else FULL
    if args.runs is not None:
        plan = Plan(**{**asdict(plan), "runs": args.runs, "format_runs": args.runs})
    if args.jobs is not None:
        plan = Plan(**{**asdict(plan), "jobs": args.jobs, "net_jobs": args.jobs})
    started = time.perf_counter()
    loads = {"start": _load()}
    commit = _commit()  # what is checked out now is what the scenarios run
    text = text_for_seconds(plan.seconds)
    failed: list[str] = []
    formats, skipped_formats = _formats()
    phase_s: dict[str, float] = {}

    planned: list[tuple[float, str, Callable[[], dict[str, Any]]]] = []
    if "latency" in sections:
        for factor in FACTORS:
            for mode in MODES:
                planned.append(
                    (
                        latency_estimate_s(plan.seconds, plan.runs, factor, mode),
                        f"latency {mode} {factor:g}x",
                        partial(latency_scenario, plan.seconds, plan.runs, factor, mode),
                    )
                )
    if "formats" in sections:
        for fmt in formats:
            for factor in plan.format_factors:
                for mode in MODES:
                    planned.append(
                        (
                            latency_estimate_s(plan.format_seconds, plan.format_runs, factor, mode),
                            f"format {fmt} {mode} {factor:g}x",
                            partial(
                                latency_scenario,
                                plan.format_seconds,
                                plan.format_runs,
                                factor,
                                mode,
                                fmt,
                            ),
                        )
                    )
    if "speaker" in sections:
        planned.append((speaker_estimate_s(plan), "speaker", partial(speaker_scenario, plan)))
    # Longest first, so that the last scenarios to start are short ones.
    planned.sort(key=lambda p: -p[0])
    tasks = [(name, function) for _, name, function in planned]
    phase1: dict[str, dict[str, Any]] = {}
    if tasks:
        _log(
            f"latency scenarios ({plan.name}: {plan.runs} runs of {plan.seconds:g} s each), "
            f"per-format scenarios ({plan.format_runs} runs of {plan.format_seconds:g} s "
            f"each), {plan.jobs} at a time..."
        )
        phase1 = _run_all(plan.jobs, tasks)
        phase_s["latency_formats_speaker"] = time.perf_counter() - started

    network: dict[str, dict[str, Any]] = {}
    net_planned = network_tasks(plan) if "network" in sections else []
    if net_planned:
        _log(
            f"network scenarios ({plan.net_utterances} utterances of {plan.net_seconds:g} s "
            f"per link and buffering; resilience), {plan.net_jobs} at a time..."
        )
        loads["network"] = _load()
        t_phase = time.perf_counter()
        net_planned.sort(key=lambda p: -p[0])
        network = _run_all(plan.net_jobs, [(name, function) for _, name, function in net_planned])
        phase_s["network"] = time.perf_counter() - t_phase

    memory_tasks: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    phase2: dict[str, dict[str, Any]] = {}
    if "memory" in sections:
        _log(f"memory scenarios (MockClock rate {plan.clock_rate:g})...")
        loads["memory"] = _load()
        t_phase = time.perf_counter()
        memory_tasks = [
            (f"memory {mode} {seconds:g} s", partial(memory_scenario, plan, seconds, mode))
            for mode in MODES
            for seconds in plan.long_seconds
        ]
        phase2 = _run_all(min(plan.jobs, 2), memory_tasks)
        phase_s["memory"] = time.perf_counter() - t_phase

    decode: dict[str, Any] = {}
    if "decode" in sections:
        # Alone, so that nothing else competes for the CPU while it is timed.
        _log(f"decode cost ({plan.decode_seconds:g} s per format, {plan.decode_repeats} passes)...")
        loads["decode"] = _load()
        t_phase = time.perf_counter()
        decode = _run_all(1, [("decode", partial(decode_scenario, plan, formats))])["decode"]
        phase_s["decode"] = time.perf_counter() - t_phase

    latency_results = []
    format_results = []
    for name, _ in tasks:
        if name == "speaker":
            continue
        if "error" in phase1[name]:
            failed.append(f"{name}: {phase1[name]['error']}")
            continue
        result = phase1[name]
        failed += _incomplete(name, result["runs"])
        if name.startswith("format"):
            format_results.append(result)
            failed += _wrong_mode(name, result)
        else:
            latency_results.append(result)
    latency_results.sort(key=lambda r: (r["factor"], MODES.index(r["mode"])))
    link_results: list[dict[str, Any]] = []
    resilience_results: list[dict[str, Any]] = []
    for _, name, _ in net_planned:
        if "error" in network[name]:
            failed.append(f"{name}: {network[name]['error']}")
        elif name.startswith("resilience"):
            resilience_results.append(network[name])
        else:
            link_results.append(network[name])
    failed += network_failures(link_results, resilience_results)
    memory_results = []
    for name, _ in memory_tasks:
        if "error" in phase2[name]:
            failed.append(f"{name}: {phase2[name]['error']}")
        else:
            memory_results.append(phase2[name])
            failed += _incomplete(name, [phase2[name]])
    memory_summaries = [summarize_memory(r) for r in memory_results]
    decode_summaries = []
    if "error" in decode:
        failed.append(f"decode: {decode['error']}")
    elif decode:
        decode_summaries = [summarize_decode(e) for e in decode["formats"]]
        failed += [
            f"decode {s['format']}: {s['errors']} corrupt frames reported on a clean stream"
            for s in decode_summaries
            if s["errors"]
        ]
    # The speaker scenario is optional: if it cannot run here, say why, but do not fail.
    speaker = phase1.get("speaker", {"skipped": "--no-speaker or --only"})
    loads["end"] = _load()

    # -- the report -----------------------------------------------------------------
    versions = _versions()
    out: list[str] = [f"# trio_tts_stream benchmarks ({plan.name})", ""]
    load_text = ", ".join(f"{v:.2f} {_LOAD_WHEN[k]}" for k, v in loads.items())
    out.append(
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.platform()}, "
        f"{_cpu_count()} CPUs (1-minute load average {load_text}); "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + (f"; commit {commit}" if commit else "")
    )
    if sections != SECTIONS:
        out += ["", f"Sections run: {', '.join(sections)}.", ""]
    else:
        out += [""]
    if "latency" in sections:
        out += [f"## Latency, CPU and memory: {audio_seconds(text):.2f} s utterance", ""]
        out += [
            f"Test server TTFB {TTFB_MS:g} ms, audio released at "
            f"{' / '.join(f'{f:g}x' for f in FACTORS)} real time, `pcm`; median (min-max) of "
            f"{plan.runs} runs.",
            "",
        ]
        if latency_results:
            out += [latency_table(latency_results), ""]
    format_text = text_for_seconds(plan.format_seconds)
    if "formats" in sections:
        out += [
            f"## Per format: TTFA, CPU and bandwidth: {audio_seconds(format_text):.2f} s utterance"
        ]
        out += [
            "",
            f"The same test server (TTFB {TTFB_MS:g} ms, audio released at "
            f"{' / '.join(f'{f:g}x' for f in plan.format_factors)} real time) in each "
            f"`response_format`; median (min-max) of {_runs(plan.format_runs)} per mode. "
            "Streaming TTFA and buffered TTFA side by side; TTFB over both modes (report: "
            "the first body byte); kbit/s is body bytes per second of audio.",
            "",
        ]
        if skipped_formats:
            out += [f"Not measured: {skipped_formats}", ""]
        if format_results:
            out += [format_table(format_results), ""]
    if "network" in sections:
        out += network_report(plan, link_results, resilience_results, loads.get("network"))
    if "decode" in sections:
        out += [f"## Decode cost: {plan.decode_seconds:g} s of audio per format", ""]
    if decode_summaries:
        out += [
            f"The test server's body for each format, fed to `create_decoder(format)` in "
            f"{DECODE_CHUNK}-byte chunks in a fresh process, alone on the machine (load "
            f"average {loads['decode']:.2f}); {plan.decode_repeats} passes after a warm-up "
            "pass; x real time and CPU are median (min-max) over the passes, the per-chunk "
            "wall times (one `decode()` call each) are pooled over them. The first block is "
            "found with a new decoder fed one byte at a time.",
            "",
            decode_table(decode_summaries),
            "",
        ]
    if "memory" in sections:
        out += ["## Memory over a long stream", ""]
    if memory_summaries:
        out += [memory_table(memory_summaries), ""]
        out += [_memory_verdict(memory_summaries), ""]
    if "speaker" in sections or args.no_speaker:
        out += ["## TTFA at a real PortAudio device (optional)", ""]
        if "scenarios" in speaker:
            out += [
                "`SoundDeviceSink` (latency 'low') on a private PulseAudio null sink; the "
                "sink's monitor recorded with `parec --latency-msec=2`, every read "
                "timestamped: the first sample above the noise floor after the request marks "
                "when audio was really played (to ~2 ms). The report's TTFA is the library's "
                "own estimate (PortAudio's outputBufferDacTime).",
                "",
                speaker_table(speaker["scenarios"]),
                "",
            ]
        else:
            reason = speaker.get("skipped") or f"it failed: {speaker.get('error')}"
            out += [f"Skipped: {reason}", ""]
    out += [method_text(plan, audio_seconds(text), audio_seconds(format_text), sections)]
    elapsed = time.perf_counter() - started
    out += [
        f"Total benchmark time {elapsed:.0f} s ("
        + ", ".join(f"{_PHASE_NAMES[k]} {v:.0f} s" for k, v in phase_s.items())
        + ")."
    ]
    if failed:
        out += ["", "FAILED:", *(f"- {f}" for f in failed)]
    print("\n".join(out))

    if args.json is not None:
        data = {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
            "plan": asdict(plan),
            "sections": list(sections),
            "versions": versions,
            "commit": commit,
            "platform": platform.platform(),
            "cpus": _cpu_count(),
            "load_average": loads,
            "ttfb_ms": TTFB_MS,
            "elapsed_s": elapsed,
            "phase_s": phase_s,
            "latency": [{"summary": summarize_latency(r), "raw": r} for r in latency_results],
            "formats": [{"summary": summarize_format(r), "raw": r} for r in format_results],
            "network": {"links": link_results, "resilience": resilience_results},
            "decode": {"summary": decode_summaries, "raw": decode},
            "memory": [
                {"summary": s, "raw": r}
                for s, r in zip(memory_summaries, memory_results, strict=True)
            ],
            "speaker": speaker,
            "ring_ceiling_mib": ring_ceiling_mib(tts.StreamConfig()),
            "failed": failed,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        _log(f"wrote {args.json}")
    return 1 if failed else 0


_LOAD_WHEN = {
    "start": "at start",
    "network": "before the network scenarios",
    "memory": "before the memory scenarios",
    "decode": "before the decode benchmark",
    "end": "at end",
}
_PHASE_NAMES = {
    "latency_formats_speaker": "latency, per-format and speaker",
    "network": "network",
    "memory": "memory",
    "decode": "decode",
}


def network_report(
    plan: Plan,
    links: list[dict[str, Any]],
    resilience: list[dict[str, Any]],
    load: float | None,
) -> list[str]:
    """The network section of the report (markdown lines)."""
    audio_s = audio_seconds(text_for_seconds(plan.net_seconds))
    out = [
        f"## Network: TTFA and underruns vs bandwidth and jitter, fixed vs adaptive "
        f"buffering: {audio_s:.2f} s utterance",
        "",
        f"Test server TTFB {TTFB_MS:g} ms, `pcm` ({PCM_KBPS:g} kbit/s); one client speaks "
        f"the utterance {plan.net_utterances} times in a row per link and buffering "
        "(cells: first / second / ... utterance). **fixed**: a plain `play()` per "
        "utterance, `StreamConfig(underrun_growth=1.0)`; **adaptive**: one "
        "`open_player()` for all of them (default `StreamConfig`). Stalled ms (wall): "
        "wall time of the call minus TTFA minus the audio: the silence after the first "
        "sample, timed from outside the library."
        + ("" if load is None else f" Load average {load:.2f} at the start of the section."),
        "",
    ]
    bandwidth = [r for r in links if r["kind"] == "bandwidth"]
    jitter = [r for r in links if r["kind"] == "jitter"]
    if bandwidth:
        out += [
            "### Bandwidth",
            "",
            "The server sends as fast as the client reads, through a link of 0.8x to 3x "
            "the stream's bitrate (`--bandwidth-kbps`).",
            "",
            link_table(bandwidth),
            "",
            *convergence_lines(bandwidth),
            "",
        ]
    summary = jitter_summary(jitter)
    if jitter:
        out += [
            "### Jitter",
            "",
            f"The server releases audio at {JITTER_FACTOR:g}x real time; each 20 ms piece "
            f"is held back by a random 0 to J ms (`--jitter-ms J --seed {JITTER_SEED}`), "
            "never overtaking the one before it.",
            "",
            link_table(jitter),
            "",
            *convergence_lines(jitter),
            *([] if summary is None else [summary]),
            "",
        ]
    if resilience:
        out += [
            "### Resilience: drops and a stall",
            "",
            "One utterance from a server at the given speed, undisturbed, dropped three "
            "times, or stalled for longer than `stall_timeout_s`; each case once into a "
            "`NullSink` (timed) and once into a `WavFileSink` (the samples), each with a "
            "fresh server. Extra s: wall time against the undisturbed run.",
            "",
            resilience_table(resilience),
            "",
        ]
        note = timeline_note(resilience)
        if note is not None:
            out += [note, ""]
    if links or resilience:
        out += [same_audio_line(links, resilience), ""]
    return out


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _formats() -> tuple[list[str], str]:
    """The formats both the test server and the client can handle here, and a note on the
    others (PyAV, the ``formats`` extra, is needed for the compressed ones)."""
    from trio_tts_stream.testing import RESPONSE_FORMATS

    client = set(tts.available_formats())
    usable = [f for f in FORMATS if f in client and f in RESPONSE_FORMATS]
    missing = [f for f in FORMATS if f not in usable]
    note = ""
    if missing:
        note = f"{', '.join(missing)} (needs the `formats` extra: pip install -e '.[formats]')"
    return usable, note


def _wrong_mode(name: str, result: dict[str, Any]) -> list[str]:
    """A failure line for each run that was not decoded as asked (a fallback to buffered
    decoding, another format) or that reported corrupt frames."""
    out = []
    for i, run in enumerate(result["runs"]):
        if run["report_mode"] != result["mode"] or run["format"] != result["response_format"]:
            out.append(
                f"{name}: run {i + 1} played {run['format']!r} in mode {run['report_mode']!r}"
            )
        if run["decode_errors"]:
            out.append(f"{name}: run {i + 1} skipped {run['decode_errors']} corrupt frames")
    return out


def _incomplete(name: str, runs: list[dict[str, Any]]) -> list[str]:
    """A failure line for each run of ``name`` that did not complete."""
    return [
        f"{name}: run {i + 1} ended {r['outcome']}"
        for i, r in enumerate(runs)
        if r["outcome"] != "completed"
    ]


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _load() -> float:
    """The 1-minute load average (other work on the machine skews latencies)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _memory_verdict(summaries: list[dict[str, Any]]) -> str:
    lines = []
    ceiling = ring_ceiling_mib(tts.StreamConfig())
    for mode in MODES:
        mine = sorted((s for s in summaries if s["mode"] == mode), key=lambda s: s["audio_s"])
        if len(mine) < 2:
            continue
        short, long = mine[0], mine[-1]
        peak_diff = long["peak_rss_mib"] - short["peak_rss_mib"]
        text = (
            f"- {mode}: peak RSS of the {_duration(long['audio_s'])} stream is "
            f"{peak_diff:+.2f} MiB against the {_duration(short['audio_s'])} stream"
        )
        if mode == "buffered":
            text += " (it holds the whole download before it starts playing)"
        elif long["growth_1min_to_end_mib"] is not None:
            text += (
                f"; RSS grew {long['growth_1min_to_end_mib']:+.2f} MiB from 1 minute played "
                f"to the end ({long['growth_kib_per_audio_min']:.0f} KiB per audio minute)"
            )
        lines.append(text + ".")
    lines.append(f"- Documented buffer ceiling (ring + queue + one read): {ceiling:.2f} MiB.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
