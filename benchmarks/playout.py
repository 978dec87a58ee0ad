"""Exact vs adaptive playout, judged at the PulseAudio monitor (what a listener hears).

Run: ``python benchmarks/playout.py`` (needs pulseaudio, parec and PortAudio; the rig of
tests/_audio_rig.py starts a private daemon; about 5 minutes). Prints a markdown table and
a last line ``RESULT <json>`` (with the core count, the date and the load average);
``--json PATH`` also writes that JSON to ``PATH`` (``benchmarks/charts.py`` draws it).

``StreamConfig(playout="exact", buffer_ms=150)`` starts once 150 ms are buffered;
``playout="adaptive"`` starts after the largest decoded block plus one output block and
stretches speech (up to 12 % slower) to build its buffer up. Both play the same ~5 s
text in ``pcm`` and ``mp3`` through the real PortAudio device (ALSA ``pulse``, 10 ms
blocks) into the rig's null sink, while ``parec`` records its monitor. Server:
``python -m trio_tts_stream serve`` in another process, tone engine, TTFB 200 ms, one
process per delivery condition (its fault options
are per process), shared by both modes and both formats:

* 1.0x, 1.2x, 2x, 6.5x real time, no jitter;
* 1.2x with ``--jitter-ms`` 50 and 150 (three seeds each, one process per seed);
* 1.2x with ``--bursts 2500,500`` (0.5 s pause after every 2.5 s of audio).

Measured per utterance:

* **first byte -> first sound (monitor)**: the first body byte is the report's ``ttfb_ms``
  after the request left (an httpx request hook, ``perf_counter``); the first sound is
  the first non-zero monitor sample after the request (the sink plays exact zeros when
  idle), timed as the rig's :class:`Recording` does (sample ``k`` heard at
  ``t0 + k / rate``, ~2 ms). The library's own figure is ``ttfa_ms - ttfb_ms``.
* **gaps**: runs of monitor samples with ``|x| <= 64`` longer than 20 ms between the first
  and the last loud sample of the utterance. The tone engine's own audio has no quiet run
  longer than a fraction of a millisecond (checked and printed at the start), so every
  such run is a gap in playback.
* the report's ``underruns``, ``underrun_ms``, ``stretched_ms``, ``target_ms`` and
  ``jitter_ms``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _audio_rig import AudioRig, Recording, open_audio_rig
from _measure import ServerProcess, audio_seconds, markdown_table, text_for_seconds

import trio_tts_stream as tts
from trio_tts_stream.testing import synthesize_tone

RATE = 24000
TTFB_MS = 200.0
BUFFER_MS = 150.0
TEXT_SECONDS = 5.2
QUIET = 64
"""A monitor sample with ``abs(x) <= QUIET`` (-54 dBFS) counts as silent."""
GAP_MS = 20.0
"""A silent run longer than this inside an utterance is a gap."""
PAUSE_S = 0.4
"""Silence between utterances."""
FORMATS = ("pcm", "mp3")
MODES = ("exact", "adaptive")
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Condition:
    """One server configuration (one server process)."""

    label: str
    factor: float
    jitter_ms: float = 0.0
    seed: int = 0
    bursts: str | None = None

    def extra_args(self) -> list[str]:
        args = ["--engine", "tone"]
        if self.jitter_ms:
            args += ["--jitter-ms", f"{self.jitter_ms:g}", "--seed", str(self.seed)]
        if self.bursts is not None:
            args += ["--bursts", self.bursts]
        return args


CONDITIONS: tuple[Condition, ...] = (
    *(Condition(f"{f:g}x", f) for f in (1.0, 1.2, 2.0, 6.5)),
    *(
        Condition(f"1.2x, jitter {j} ms", 1.2, jitter_ms=j, seed=s)
        for j in (50, 150)
        for s in SEEDS
    ),
    Condition("1.2x, bursts 2500,500", 1.2, bursts="2500,500"),
)


class RequestClock:
    """httpx event hooks: ``perf_counter`` when the last request left and its headers came."""

    def __init__(self) -> None:
        self.sent = math.nan
        self.headers = math.nan

    async def on_request(self, request: httpx.Request) -> None:
        self.sent, self.headers = time.perf_counter(), math.nan

    async def on_response(self, response: httpx.Response) -> None:
        self.headers = time.perf_counter()


@dataclass(frozen=True)
class Run:
    """One utterance as played (analysed once the recording is stopped)."""

    condition: Condition
    fmt: str
    mode: str
    report: tts.PlaybackReport
    sent: float
    headers: float


def quiet_runs(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.int64]:
    """Lengths (frames) of the runs of samples with ``abs(x) <= QUIET``."""
    quiet = (np.abs(samples.astype(np.int32)) <= QUIET).astype(np.int8)
    edges = np.diff(np.concatenate(([0], quiet, [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return (ends - starts).astype(np.int64)


def analyse(rec: Recording, run: Run, until: float) -> dict[str, Any]:
    """The monitor's view of ``run``: samples heard from its request until ``until``."""
    report = run.report
    lo = max(0, rec.index_at(run.sent))
    hi = min(len(rec.samples), rec.index_at(until))
    seg = rec.samples[lo:hi]
    level = np.abs(seg.astype(np.int32))
    sounding = np.flatnonzero(level > 0)
    loud = np.flatnonzero(level > QUIET)
    out: dict[str, Any] = {
        "condition": run.condition.label,
        "seed": run.condition.seed,
        "format": run.fmt,
        "mode": run.mode,
        "outcome": str(report.outcome),
        "ttfb_ms": report.ttfb_ms,
        "headers_ms": (run.headers - run.sent) * 1000,
        "ttfa_ms": report.ttfa_ms,
        "library_first_sound_ms": (
            None
            if report.ttfa_ms is None or report.ttfb_ms is None
            else report.ttfa_ms - report.ttfb_ms
        ),
        "underruns": report.underruns,
        "underrun_ms": report.underrun_ms,
        "stretched_ms": report.stretched_ms,
        "target_ms": report.target_ms,
        "jitter_ms": report.jitter_ms,
        "audio_ms": report.audio_s * 1000,
    }
    if len(sounding) == 0 or len(loud) == 0 or report.ttfb_ms is None:
        out.update(first_sound_ms=None, gaps=None, gap_ms=None, heard_ms=None)
        return out
    first, last = int(sounding[0]), int(loud[-1]) + 1
    first_byte = run.sent + report.ttfb_ms / 1000
    runs = quiet_runs(seg[first:last])
    gaps = runs[runs > GAP_MS * RATE / 1000]
    out.update(
        first_sound_ms=(rec.time_of(lo + first) - first_byte) * 1000,
        gaps=len(gaps),
        gap_ms=float(gaps.sum()) * 1000 / RATE,
        longest_gap_ms=float(gaps.max()) * 1000 / RATE if len(gaps) else 0.0,
        heard_ms=(last - first) * 1000 / RATE,
    )
    return out


async def speak_once(
    condition: Condition,
    url: str,
    text: str,
    fmt: str,
    mode: str,
    sink: tts.SoundDeviceSink,
    client: httpx.AsyncClient,
    clock: RequestClock,
) -> Run:
    config = tts.StreamConfig(buffer_ms=BUFFER_MS, playout=mode)
    report = await tts.speak(
        text,
        base_url=url,
        api_key="",
        response_format=fmt,
        sink=sink,
        config=config,
        client=client,
    )
    run = Run(condition, fmt, mode, report, clock.sent, clock.headers)
    await trio.sleep(PAUSE_S)
    return run


async def measure(
    condition: Condition,
    rig: AudioRig,
    text: str,
    sink: tts.SoundDeviceSink,
    client: httpx.AsyncClient,
    clock: RequestClock,
    warm_up: bool,
) -> list[dict[str, Any]]:
    """All four utterances (2 formats x 2 modes) against one server process."""
    server = ServerProcess(
        ttfb_ms=TTFB_MS, realtime_factor=condition.factor, extra_args=condition.extra_args()
    )
    with server:
        url = server.base_url
        # The server's first mp3 request loads its encoder: not in a measured one.
        response = await client.post(
            f"{url}/audio/speech",
            json={"model": "tts-1", "voice": "alloy", "input": "Hi.", "response_format": "mp3"},
        )
        response.raise_for_status()
        if warm_up:  # opens the device and the client's decoders once
            for fmt in FORMATS:
                await speak_once(condition, url, "Hello.", fmt, "exact", sink, client, clock)
        # Alternate the order of the modes with the seed: request numbers seed the jitter.
        modes = MODES if condition.seed % 2 == 0 else MODES[::-1]
        rec = rig.recorder()
        rec.start()
        try:
            runs = [
                await speak_once(condition, url, text, fmt, mode, sink, client, clock)
                for fmt in FORMATS
                for mode in modes
            ]
            rec.catch_up(0.05)
        finally:
            recording = rec.stop()
    ends = [r.sent for r in runs[1:]] + [recording.time_of(len(recording.samples))]
    return [analyse(recording, r, end) for r, end in zip(runs, ends, strict=True)]


# --------------------------------------------------------------------------------------
# Report


def _values(runs: Sequence[dict[str, Any]], key: str) -> list[float]:
    return [float(r[key]) for r in runs if r.get(key) is not None]


def _spread(values: Sequence[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1 or min(values) == max(values):
        return f"{values[0]:.0f}"
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


def summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Summary of one mode's runs in one condition and format."""

    def spread(key: str) -> dict[str, float] | None:
        v = _values(runs, key)
        if not v:
            return None
        return {
            "median": round(statistics.median(v), 1),
            "min": round(min(v), 1),
            "max": round(max(v), 1),
        }

    return {
        "runs": len(runs),
        "first_sound_ms": spread("first_sound_ms"),
        "library_first_sound_ms": spread("library_first_sound_ms"),
        "gaps": int(sum(_values(runs, "gaps"))),
        "gap_ms": round(sum(_values(runs, "gap_ms")), 1),
        "underruns": int(sum(_values(runs, "underruns"))),
        "underrun_ms": round(sum(_values(runs, "underrun_ms")), 1),
        "stretched_ms": spread("stretched_ms"),
        "target_ms": spread("target_ms"),
        "jitter_ms": spread("jitter_ms"),
    }


def table(results: Sequence[dict[str, Any]]) -> str:
    headers = [
        "delivery",
        "fmt",
        "runs",
        "1st byte->sound, monitor ms",
        "ttfa-ttfb (report) ms",
        "gaps >20 ms: n / ms",
        "underruns: n / ms",
        "stretched ms",
        "target / jitter ms (adaptive)",
    ]
    rows: list[list[str]] = []
    labels = list(dict.fromkeys(r["condition"] for r in results))
    for label in labels:
        for fmt in FORMATS:
            by_mode = {
                m: [
                    r
                    for r in results
                    if (r["condition"], r["format"], r["mode"]) == (label, fmt, m)
                ]
                for m in MODES
            }
            ex, ad = by_mode["exact"], by_mode["adaptive"]

            def pair(key: str, ex: list[dict[str, Any]] = ex, ad: list[dict[str, Any]] = ad) -> str:
                return f"{_spread(_values(ex, key))} / {_spread(_values(ad, key))}"

            def count(runs: list[dict[str, Any]], n: str, ms: str) -> str:
                return f"{sum(_values(runs, n)):.0f} / {sum(_values(runs, ms)):.0f}"

            rows.append(
                [
                    label,
                    fmt,
                    str(len(ex)),
                    pair("first_sound_ms"),
                    pair("library_first_sound_ms"),
                    f"{count(ex, 'gaps', 'gap_ms')} ; {count(ad, 'gaps', 'gap_ms')}",
                    f"{count(ex, 'underruns', 'underrun_ms')} ; "
                    f"{count(ad, 'underruns', 'underrun_ms')}",
                    _spread(_values(ad, "stretched_ms")),
                    f"{_spread(_values(ad, 'target_ms'))} / {_spread(_values(ad, 'jitter_ms'))}",
                ]
            )
    return markdown_table(headers, rows)


async def main() -> dict[str, Any]:
    """Measure, print the report and the RESULT line; return the results."""
    began = time.perf_counter()
    load_start = os.getloadavg()[0]
    text = text_for_seconds(TEXT_SECONDS)
    seconds = audio_seconds(text)
    tone = synthesize_tone(text)
    longest_quiet_ms = float(quiet_runs(tone).max()) * 1000 / RATE
    if longest_quiet_ms >= GAP_MS / 4:
        raise RuntimeError(f"the tone has a quiet run of {longest_quiet_ms:.1f} ms itself")
    print("# Playout benchmark: exact (buffer_ms 150) vs adaptive\n")
    print(
        f"Text: {len(text)} characters, {seconds:.2f} s of tone; its longest run of "
        f"|x| <= {QUIET} is {longest_quiet_ms:.2f} ms (so a quiet run > {GAP_MS:g} ms at "
        f"the monitor is a playback gap). Server TTFB {TTFB_MS:g} ms, 20 ms chunks.\n"
    )
    results: list[dict[str, Any]] = []
    clock = RequestClock()
    config = tts.StreamConfig()
    with open_audio_rig() as rig:
        async with (
            httpx.AsyncClient(
                timeout=httpx.Timeout(config.read_timeout_s, connect=config.connect_timeout_s),
                event_hooks={"request": [clock.on_request], "response": [clock.on_response]},
            ) as client,
            tts.SoundDeviceSink("pulse", blocksize_ms=10) as sink,
        ):
            for i, condition in enumerate(CONDITIONS):
                print(
                    f"[{time.perf_counter() - began:5.0f} s] {condition.label}"
                    f" (seed {condition.seed})",
                    file=sys.stderr,
                    flush=True,
                )
                results += await measure(condition, rig, text, sink, client, clock, warm_up=i == 0)
            latency_ms = sink.output_latency * 1000
    print(
        "Cells: exact / adaptive, median (min-max) over the runs; counts and ms are totals "
        "over the runs (`exact ; adaptive`). Stretched, target and jitter are adaptive's.\n"
    )
    print(table(results))
    wall = time.perf_counter() - began
    print(f"\nPortAudio output latency {latency_ms:.1f} ms; the run took {wall:.0f} s.")
    summaries = []
    for label in dict.fromkeys(r["condition"] for r in results):
        for fmt in FORMATS:
            for mode in MODES:
                runs = [
                    r
                    for r in results
                    if (r["condition"], r["format"], r["mode"]) == (label, fmt, mode)
                ]
                summaries.append({"condition": label, "format": fmt, "mode": mode, **summary(runs)})
    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
        "cpus": os.cpu_count(),
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
        "text_chars": len(text),
        "audio_s": seconds,
        "ttfb_ms": TTFB_MS,
        "buffer_ms": BUFFER_MS,
        "tone_longest_quiet_ms": longest_quiet_ms,
        "device_latency_ms": latency_ms,
        "wall_s": round(wall, 1),
        "summary": summaries,
        "runs": [
            {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in results
        ],
    }
    print("RESULT " + json.dumps(result, separators=(",", ":")))
    return result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Exact vs adaptive playout, at the monitor.")
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
