"""The network section of the benchmarks: the runner's side.

TTFA and underruns over a degraded link (a bandwidth below, at and above the stream's
bitrate; jitter), fixed against adaptive buffering over several utterances in a row, and
recovery from dropped connections and a stall. Each scenario starts its own test server
(``python -m trio_tts_stream serve`` with the fault flags) and runs the client in a fresh
process (``_worker.py network``); this module plans them, and turns their JSON into the
report's tables, verdict lines and failures.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _measure import (
    SAMPLE_RATE,
    ServerProcess,
    Spread,
    audio_seconds,
    markdown_table,
    response_body,
    run_worker,
    text_for_seconds,
)

import trio_tts_stream as tts

__all__ = [
    "BUFFERINGS",
    "DROP_FRACTIONS",
    "JITTER_FACTOR",
    "JITTER_SEED",
    "PCM_KBPS",
    "RESILIENCE_CASES",
    "STALL_FRACTION",
    "Buffering",
    "Link",
    "convergence_lines",
    "jitter_summary",
    "link_estimate_s",
    "link_scenario",
    "link_table",
    "needed_start_ms",
    "network_failures",
    "network_method",
    "resilience_estimate_s",
    "resilience_faults",
    "resilience_scenario",
    "resilience_table",
    "same_audio_line",
    "timeline_lags",
    "timeline_note",
]

TTFB_MS = 300.0
"""The test server's time to first byte in every network scenario."""
PCM_KBPS = SAMPLE_RATE * 16 / 1000
"""Bitrate of the stream: 24 kHz mono 16-bit ``pcm`` is 384 kbit/s."""
JITTER_FACTOR = 1.2
"""Real-time factor of the server in the jitter scenarios."""
JITTER_SEED = 1
"""``--seed`` of the jitter scenarios: the same delays in every run and mode."""
DROP_FRACTIONS = (0.2, 0.5, 0.8)
"""Where the three drops cut the body (fraction of its bytes, then made odd, so that
each cut also splits a sample)."""
STALL_FRACTION = 0.4
"""Where the stall starts (fraction of the body's bytes, made odd)."""
STALL_FACTOR = 2.5
"""The stall lasts this many times ``stall_timeout_s`` (5 s): long enough to count as a
stall even for a client that was not waiting for bytes when it began (a full ring holds
2 s); shorter than ``dead_timeout_s`` (15 s), so it is ridden out on the same
connection, as a CPU server's pause between sentences must be."""
RESILIENCE_CASES = ("undisturbed", "drops", "stall")


@dataclass(frozen=True)
class Link:
    """A degraded link between the test server and the client.

    Attributes:
        kind: ``"bandwidth"``: the server sends as fast as the client reads, through a
            link of ``value`` times the stream's bitrate. ``"jitter"``: the server
            releases audio at :data:`JITTER_FACTOR` times real time, each 20 ms piece
            held back by a random 0 to ``value`` ms (seeded).
        value: Multiple of :data:`PCM_KBPS`, or the jitter in ms.
    """

    kind: str
    value: float

    @property
    def realtime_factor(self) -> float | None:
        """The server's ``--realtime-factor`` (``None``: as fast as the client reads)."""
        return None if self.kind == "bandwidth" else JITTER_FACTOR

    @property
    def kbps(self) -> float | None:
        """The link's kbit/s, for a bandwidth link."""
        return self.value * PCM_KBPS if self.kind == "bandwidth" else None

    def server_args(self) -> list[str]:
        """The ``serve`` fault flags."""
        if self.kind == "bandwidth":
            return ["--bandwidth-kbps", f"{self.value * PCM_KBPS:g}"]
        return ["--jitter-ms", f"{self.value:g}", "--seed", str(JITTER_SEED)]

    @property
    def label(self) -> str:
        if self.kind == "bandwidth":
            return f"{self.value:g}x ({self.value * PCM_KBPS:.0f} kbit/s)"
        return f"{self.value:g} ms"


@dataclass(frozen=True)
class Buffering:
    """How the client buffers over several utterances.

    Attributes:
        name: ``"fixed"``: a plain ``play()`` per utterance with
            ``StreamConfig(underrun_growth=1.0)``; ``"adaptive"``: one ``open_player()``
            (``adaptive=True``, the default ``StreamConfig``) for all of them.
        max_buffer_s: ``StreamConfig.max_buffer_s`` if not the default.
    """

    name: str
    max_buffer_s: float | None = None

    @property
    def label(self) -> str:
        if self.max_buffer_s is None:
            return self.name
        return f"{self.name}, {self.max_buffer_s:g} s ring"


BUFFERINGS = (Buffering("fixed"), Buffering("adaptive"))


# --------------------------------------------------------------------------------------
# Scenarios


def link_scenario(
    seconds: float, utterances: int, link: Link, buffering: Buffering
) -> dict[str, Any]:
    """``utterances`` utterances in a row over ``link``: a server and a client process."""
    text = text_for_seconds(seconds)
    t0 = time.perf_counter()
    with ServerProcess(
        ttfb_ms=TTFB_MS, realtime_factor=link.realtime_factor, extra_args=link.server_args()
    ) as server:
        args = ["network", "--base-url", server.base_url, "--text", text]
        args += ["--utterances", str(utterances), "--buffering", buffering.name, "--warmup"]
        if buffering.max_buffer_s is not None:
            args += ["--max-buffer-s", f"{buffering.max_buffer_s:g}"]
        result = run_worker(args)
    return {
        "kind": link.kind,
        "value": link.value,
        "kbps": link.kbps,
        "buffering": buffering.name,
        "max_buffer_s": buffering.max_buffer_s,
        "text_audio_s": audio_seconds(text),
        "server_args": link.server_args(),
        "scenario_s": time.perf_counter() - t0,
        **result,
    }


def link_estimate_s(seconds: float, utterances: int, link: Link) -> float:
    """Roughly how long a link scenario takes (to start the longest first)."""
    slowest = min(1.0, link.value) if link.kind == "bandwidth" else 1.0
    return 5.0 + utterances * (TTFB_MS / 1000 + seconds / slowest + 0.5)


def resilience_faults(body_bytes: int, case: str) -> list[str]:
    """The ``serve`` fault flags of a resilience case for a body of ``body_bytes``."""

    def odd(fraction: float) -> int:
        return int(body_bytes * fraction) | 1

    if case == "undisturbed":
        return []
    if case == "drops":
        return ["--drop-after-bytes", ",".join(str(odd(f)) for f in DROP_FRACTIONS)]
    if case == "stall":
        stall_ms = STALL_FACTOR * tts.StreamConfig().stall_timeout_s * 1000
        return ["--stall-after-bytes", str(odd(STALL_FRACTION)), "--stall-ms", f"{stall_ms:g}"]
    raise ValueError(f"unknown resilience case {case!r}")


def resilience_scenario(seconds: float, factor: float, case: str) -> dict[str, Any]:
    """One utterance through a fault plan, twice, each with its own server: into a
    ``NullSink`` (timed on the real clock) and into a ``WavFileSink`` (its samples)."""
    text = text_for_seconds(seconds)
    body = response_body(text, "pcm")
    faults = resilience_faults(len(body), case)
    passes: dict[str, Any] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ttsbench.") as tmp:
        for name in ("timed", "wav"):
            with ServerProcess(
                ttfb_ms=TTFB_MS, realtime_factor=factor, extra_args=faults
            ) as server:
                # No warm-up over HTTP: the fault plan counts requests from the first.
                args = ["network", "--base-url", server.base_url, "--text", text]
                args += ["--utterances", "1", "--buffering", "default"]
                if name == "wav":
                    args += ["--wav", str(Path(tmp) / "out.wav")]
                passes[name] = run_worker(args)
    return {
        "factor": factor,
        "case": case,
        "server_args": faults,
        "text_audio_s": audio_seconds(text),
        "body_bytes": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "scenario_s": time.perf_counter() - t0,
        **passes,
    }


def resilience_estimate_s(seconds: float, factor: float, case: str) -> float:
    """Roughly how long a resilience scenario takes."""
    download = TTFB_MS / 1000 + seconds / factor
    timed = max(seconds + 0.5, download)
    if case == "drops":
        redo = sum(DROP_FRACTIONS) * seconds / factor + len(DROP_FRACTIONS) * 0.5
        return 10.0 + timed + redo + download + redo
    if case == "stall":
        redo = STALL_FACTOR * 2.0 + STALL_FRACTION * seconds / factor
        return 10.0 + timed + redo + download + redo
    return 10.0 + timed + download


# --------------------------------------------------------------------------------------
# Tables


def _per(values: Sequence[float | int | None], fmt: str) -> str:
    """Per-utterance values as ``a / b / c``."""
    return " / ".join("-" if v is None else format(v, fmt) for v in values)


def _utterances(result: dict[str, Any]) -> list[dict[str, Any]]:
    return list(result["utterances"])


def _sort_key(result: dict[str, Any]) -> tuple[float, int, float]:
    order = ("fixed", "default", "adaptive").index(result["buffering"])
    return (result["value"], order, result["max_buffer_s"] or 0.0)


def _buffering_label(result: dict[str, Any]) -> str:
    return Buffering(result["buffering"], result["max_buffer_s"]).label


def link_table(results: list[dict[str, Any]]) -> str:
    """One row per link and buffering; per-utterance cells ``first / second / ...``."""
    rows = []
    for result in sorted(results, key=_sort_key):
        us = _utterances(result)
        ratios = [u["delivery_ratio"] for u in us if u["delivery_ratio"] is not None]
        rows.append(
            [
                Link(result["kind"], result["value"]).label,
                _buffering_label(result),
                _per([u["start_threshold_ms"] for u in us], ".0f"),
                _per([u["ttfa_ms"] for u in us], ".0f"),
                _per([u["underruns"] for u in us], "d"),
                _per([u["underrun_ms"] for u in us], ".0f"),
                _per([u["stalled_ms"] for u in us], ".0f"),
                _per([u["buffer_ms_min"] for u in us], ".0f"),
                f"{sum(u['outcome'] == 'completed' for u in us)}/{len(us)}",
                Spread.of(ratios).format(".2f") if ratios else "-",
            ]
        )
    return markdown_table(
        [
            "link" if results and results[0]["kind"] == "bandwidth" else "jitter",
            "buffering",
            "start threshold ms",
            "TTFA ms",
            "underruns",
            "underrun ms",
            "stalled ms (wall)",
            "least buffer ms",
            "completed",
            "delivery ratio",
        ],
        rows,
    )


def needed_start_ms(audio_s: float, ratio: float) -> float:
    """Head start for a whole utterance of ``audio_s`` over a link delivering ``ratio``
    times real time to play without a gap (0 at ``ratio >= 1``)."""
    return 0.0 if ratio >= 1 else audio_s * 1000 * (1 / ratio - 1)


def _ms(value: float) -> str:
    """A signed difference in whole ms (never ``-0``)."""
    return f"{round(value) + 0:+d}"


def convergence_lines(results: list[dict[str, Any]]) -> list[str]:
    """Fixed against adaptive over each link, in words (a markdown list)."""
    by_link: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for result in results:
        by_link.setdefault((result["kind"], result["value"]), []).append(result)
    lines = []
    for (kind, value), group in sorted(by_link.items()):
        fixed = [r for r in group if r["buffering"] == "fixed"]
        adaptives = sorted((r for r in group if r["buffering"] == "adaptive"), key=_sort_key)
        if not fixed or not adaptives:
            continue
        f_us = _utterances(fixed[0])
        everything = [u for r in group for u in _utterances(r)]
        if not any(u["underruns"] for u in everything):
            a_us = _utterances(adaptives[0])
            least = [u["buffer_ms_min"] for u in everything if u["buffer_ms_min"] is not None]
            text = f"- {Link(kind, value).label}: no underrun with either buffering"
            if least:
                text += f" (least audio buffered ahead while playing: {min(least):.0f} ms)"
            starts = _per([u["start_threshold_ms"] for u in a_us], ".0f")
            text += f"; adaptive's start thresholds {starts} ms{_ttfa_against(a_us, f_us)}"
        else:
            f_silence = sum(u["underrun_ms"] for u in f_us) / len(f_us) / 1000
            text = (
                f"- {Link(kind, value).label}: fixed "
                f"{_per([u['underruns'] for u in f_us], 'd')} underruns "
                f"({f_silence:.2f} s of silence per utterance)"
            )
            for adaptive in adaptives:
                a_us = _utterances(adaptive)
                last = a_us[-1]
                text += (
                    f"; {_buffering_label(adaptive)} "
                    f"{_per([u['underruns'] for u in a_us], 'd')} underruns, the last "
                    f"utterance {last['underrun_ms']:.0f} ms of silence from a start "
                    f"threshold of {last['start_threshold_ms']:.0f} ms{_ttfa_against(a_us, f_us)}"
                )
        ratios = [u["delivery_ratio"] for u in f_us if u["delivery_ratio"]]
        if kind == "bandwidth" and ratios:
            ratio = _median(ratios)
            audio_s = fixed[0]["text_audio_s"]
            need = needed_start_ms(audio_s, ratio)
            ring = tts.StreamConfig().max_buffer_s * 1000
            if need > 0:
                text += (
                    f". A {audio_s:.1f} s utterance delivered at {ratio:.2f}x needs a "
                    f"{need:.0f} ms head start to play without a gap (the policy asks 10% "
                    f"more: {1.1 * need:.0f} ms)"
                )
                if 1.1 * need > ring:
                    text += f", more than the default {ring / 1000:g} s ring holds"
            elif ratio < 2 <= value:
                text += (
                    f". The link carries {value:g}x real time, but the client read at "
                    f"{ratio:.2f}x: once the ring is full, backpressure paces the download, "
                    "and the policy shrinks the threshold only at a delivery ratio of 2 or more"
                )
        lines.append(text + ".")
    return lines


def _ttfa_against(a_us: list[dict[str, Any]], f_us: list[dict[str, Any]]) -> str:
    """``, TTFA a ms against f ms fixed (+d ms)`` for the last adaptive utterance and the
    fixed utterance of the same index (the same request number: the same jitter)."""
    last = a_us[-1]
    if len(a_us) > len(f_us) or last["ttfa_ms"] is None:
        return ""
    ttfa = f_us[len(a_us) - 1]["ttfa_ms"]
    if ttfa is None:
        return ""
    return (
        f", TTFA of the last utterance {last['ttfa_ms']:.0f} ms against {ttfa:.0f} ms "
        f"fixed ({_ms(last['ttfa_ms'] - ttfa)} ms)"
    )


def jitter_summary(results: list[dict[str, Any]]) -> str | None:
    """TTFA and underruns against the jitter, in one line."""
    rows = sorted(
        (r for r in results if r["kind"] == "jitter" and r["buffering"] == "fixed"),
        key=lambda r: float(r["value"]),
    )
    if not rows:
        return None
    ttfas = [
        _median([u["ttfa_ms"] for u in _utterances(r) if u["ttfa_ms"] is not None]) for r in rows
    ]
    total = sum(u["underruns"] for r in results if r["kind"] == "jitter" for u in _utterances(r))
    values = " / ".join(f"{r['value']:g}" for r in rows)
    return (
        f"- Median TTFA (fixed) at {values} ms of jitter: "
        f"{' / '.join(f'{t:.0f}' for t in ttfas)} ms; "
        f"{total} underrun{'' if total == 1 else 's'} in all the jitter runs."
    )


def _median(values: Sequence[float]) -> float:
    return Spread.of(values).median


def _case_label(result: dict[str, Any]) -> str:
    case, args = result["case"], result["server_args"]
    if case == "drops":
        return f"3 drops (after {args[1].replace(',', ', ')} bytes)"
    if case == "stall":
        return f"stall {float(args[3]) / 1000:g} s after {args[1]} bytes"
    return "undisturbed"


def resilience_table(results: list[dict[str, Any]]) -> str:
    """One row per server speed and fault case; extra latency and audio checks against
    the undisturbed case at the same speed."""
    base = {r["factor"]: r for r in results if r["case"] == "undisturbed"}
    rows = []
    for result in sorted(results, key=lambda r: (r["factor"], RESILIENCE_CASES.index(r["case"]))):
        u = result["timed"]["utterances"][0]
        ref = base.get(result["factor"])
        extra = "-"
        same_played = same_wav = "-"
        if ref is not None:
            r0 = ref["timed"]["utterances"][0]
            extra = f"{u['wall_s'] - r0['wall_s']:+.2f}"
            same_played = _yes(u.get("written_sha256") == r0.get("written_sha256"))
            same_wav = _yes(result["wav"]["wav_sha256"] == ref["wav"]["wav_sha256"])
        wav_u = result["wav"]["utterances"][0]
        rows.append(
            [
                f"{result['factor']:g}x",
                _case_label(result),
                f"{u['outcome']} / {wav_u['outcome']}",
                f"{u['reconnects']} / {wav_u['reconnects']}",
                f"{u['stalls']} / {wav_u['stalls']}",
                str(u["underruns"]),
                f"{u['underrun_ms']:.0f}",
                f"{u['rebuffering_ms']:.0f}" + (" †" if timeline_lags(u) else ""),
                f"{u['wall_s']:.2f}",
                extra,
                same_played,
                same_wav,
                _yes(result["wav"]["wav_sha256"] == result["body_sha256"]),
            ]
        )
    return markdown_table(
        [
            "server speed",
            "faults",
            "outcome (timed / WAV)",
            "reconnects",
            "stalls",
            "underruns",
            "underrun ms",
            "rebuffering ms (timeline)",
            "wall s",
            "extra s",
            "played = undisturbed",
            "WAV = undisturbed",
            "WAV = server body",
        ],
        rows,
    )


def timeline_lags(utterance: dict[str, Any]) -> bool:
    """Whether the report's timeline spent clearly less time in ``rebuffering`` than the
    sink spent starved (more than one 20 ms block per underrun, plus 50 ms)."""
    slack = 50.0 + 20.0 * utterance["underruns"]
    return bool(utterance["underrun_ms"] - utterance["rebuffering_ms"] > slack)


def timeline_note(results: list[dict[str, Any]]) -> str | None:
    """A note under the resilience table if a row has a †."""
    if not any(timeline_lags(r["timed"]["utterances"][0]) for r in results):
        return None
    return (
        "† The report's timeline spent less time in `rebuffering` than the sink spent "
        "starved (underrun ms): the player's state stayed `playing` for part of the "
        "silence, until audio arrived again."
    )


def _yes(ok: bool) -> str:
    return "yes" if ok else "**NO**"


def same_audio_line(links: list[dict[str, Any]], resilience: list[dict[str, Any]]) -> str:
    """Whether every utterance handed the sink exactly the same samples."""
    hashes: dict[str, int] = {}
    frames: set[int] = set()
    count = 0
    for result in links:
        for u in _utterances(result):
            if u["outcome"] == "completed":
                hashes[u["written_sha256"]] = hashes.get(u["written_sha256"], 0) + 1
                frames.add(u["written_frames"])
                count += 1
    for result in resilience:
        u = result["timed"]["utterances"][0]
        if u["outcome"] == "completed":
            hashes[u["written_sha256"]] = hashes.get(u["written_sha256"], 0) + 1
            frames.add(u["written_frames"])
            count += 1
    if not count:
        return "No utterance completed."
    if len(hashes) == 1:
        (digest,) = hashes
        (n,) = frames
        return (
            f"Every one of the {count} completed utterances above (the same text) handed the "
            f"sink the same {n:,} frames, SHA-256 {digest[:16]}...: no sample was lost, "
            "repeated or altered by a slow link, jitter, a drop or a stall."
        )
    counts = ", ".join(f"{n} x {digest[:12]}" for digest, n in hashes.items())
    return (
        f"**The {count} completed utterances did not all play the same samples**: "
        f"{len(hashes)} different SHA-256 ({counts}), frame counts {sorted(frames)}."
    )


def network_failures(links: list[dict[str, Any]], resilience: list[dict[str, Any]]) -> list[str]:
    """Failure lines: an utterance that did not complete, audio that differs."""
    out = []
    for result in links:
        name = f"network {Link(result['kind'], result['value']).label} {_buffering_label(result)}"
        for u in _utterances(result):
            if u["outcome"] != "completed":
                out.append(f"{name}: utterance {u['index'] + 1} ended {u['outcome']}: {u['error']}")
    digests = {
        u["written_sha256"] for r in links for u in _utterances(r) if u["outcome"] == "completed"
    }
    if len(digests) > 1:
        out.append(f"network: the utterances played {len(digests)} different sample sequences")
    base = {r["factor"]: r for r in resilience if r["case"] == "undisturbed"}
    for result in resilience:
        name = f"resilience {result['factor']:g}x {result['case']}"
        for pass_name in ("timed", "wav"):
            u = result[pass_name]["utterances"][0]
            if u["outcome"] != "completed":
                out.append(f"{name} ({pass_name}): ended {u['outcome']}: {u['error']}")
        if result["wav"]["wav_sha256"] != result["body_sha256"]:
            out.append(f"{name}: the WAV file's samples differ from the server's body")
        ref = base.get(result["factor"])
        if ref is not None and (
            result["timed"]["utterances"][0]["written_sha256"]
            != ref["timed"]["utterances"][0]["written_sha256"]
        ):
            out.append(f"{name}: the samples played differ from the undisturbed run")
    return out


def network_method(
    seconds: float, utterances: int, bandwidths: Sequence[float], jitters: Sequence[float]
) -> list[str]:
    """The network section's method, as markdown bullets (without the leading dash)."""
    config = tts.StreamConfig()
    stall_ms = STALL_FACTOR * config.stall_timeout_s * 1000
    return [
        f"Network: the test server with a {TTFB_MS:g} ms TTFB and fault flags, `pcm` "
        f"({PCM_KBPS:g} kbit/s), a {seconds:g} s utterance spoken {utterances} times in a "
        "row by one client process (one `httpx.AsyncClient`, one `NullSink` for all "
        "utterances, after a warm-up: 0.4 s of in-memory pcm through `play()`, then "
        '"Hello." over the same link). Bandwidth: the server sends as fast as the client '
        "reads, through `--bandwidth-kbps` = "
        f"{', '.join(f'{b:g}' for b in bandwidths)} x {PCM_KBPS:g}. Jitter: the server "
        f"releases audio at {JITTER_FACTOR:g}x real time with `--jitter-ms` "
        f"{', '.join(f'{j:g}' for j in jitters)} (`--seed {JITTER_SEED}`; every 20 ms piece "
        "is held back by a uniform random 0 to J ms, never overtaking the one before it).",
        "Buffering: **fixed** = a plain `play()` per utterance with "
        f"`StreamConfig(underrun_growth=1.0)` (start at {config.buffer_ms:g} ms, rebuffer "
        f"{config.rebuffer_ms:g} ms after every underrun); **adaptive** = one "
        "`open_player()` (`adaptive=True`, the default `StreamConfig`: the rebuffer "
        f"threshold grows {config.underrun_growth:g}x per underrun within an utterance, "
        "and the start threshold moves between utterances with the underruns and the "
        "delivery ratio of the last one). Its first utterance is what a plain `speak()` "
        f"with the defaults does. Ring {config.max_buffer_s:g} s unless the row says "
        "otherwise.",
        "Per utterance: start threshold = the report's `buffer_ms`; TTFA = "
        "`ttfa_ms`; underruns and underrun ms = the report's count and the silence the "
        "sink played while starved; stalled ms (wall) = wall time of the `play()` call "
        "minus TTFA minus the audio length: the same silence timed from outside the "
        "library; least buffer ms = the report's `buffer_ms_min`, the least audio "
        "buffered ahead of the sink while playing; delivery ratio = audio seconds per "
        "second from first to last byte.",
        "Resilience: one utterance from a server at the given speed (TTFB "
        f"{TTFB_MS:g} ms), undisturbed, with 3 drops (`--drop-after-bytes a,b,c` at "
        f"{', '.join(f'{f:.0%}' for f in DROP_FRACTIONS)} of the body, odd byte counts so "
        "that each cut splits a sample: the first request is cut after a bytes, the "
        "re-request after b, the next after c; a POST is resumed by requesting it again "
        "and skipping the samples already played, after checking them), or with one "
        f"stall of {stall_ms:g} ms (`--stall-after-bytes` at {STALL_FRACTION:.0%}, "
        f"`stall_timeout_s` {config.stall_timeout_s:g} s). Each case runs twice with a "
        "fresh server: into a `NullSink` (timed; the hash is of the samples written to "
        "it) and into a `WavFileSink` (no pacing; the SHA-256 of the file's samples, "
        "compared with the undisturbed run's and with the server's body). Extra s = wall "
        "time of the timed `play()` minus the undisturbed one's; reconnects and stalls "
        "are the reports' (timed / WAV pass). Rebuffering ms (timeline) is the time the "
        "report's state timeline spent in `rebuffering`: it should equal the underrun "
        "ms.",
    ]
