"""Benchmark charts for ``docs/benchmarks.rst``, drawn from the benchmarks' JSON results.

Run: ``python benchmarks/charts.py`` (reads ``docs/_bench_data/``, writes
``docs/_static/bench/``; ``nox -s bench`` runs it last), or name the inputs:
``python benchmarks/charts.py --run-json run.json --playout-json playout.json
--speaker-json speaker.json --out DIR``.

Theory of operation: the benchmark scripts write their results as JSON (``run.py
--json``, ``playout.py --json`` / its ``RESULT`` line, ``speaker.py --json``); the bench
session keeps them in ``docs/_bench_data/`` (committed), so a chart can be redrawn
without measuring again and the committed pictures always come from committed numbers.
Each chart is a pure function of one result dict and an output directory: it reads only
the summaries (medians with min and max) the scripts computed, draws one PNG (about
100 dpi, well under 150 KB) and returns its path. Charts and their sources:

* ``first_audio.png`` (run.py ``formats`` and ``latency``): TTFA against the server's
  delivery rate, streaming and buffered side by side, one line per format;
* ``network.png`` (run.py ``network``): fixed vs adaptive buffering, TTFA and the
  underrun total per link (bandwidth and jitter);
* ``playout.png`` (playout.py): exact vs adaptive playout, first byte to first sound per
  delivery rate and format, and the gaps heard at the monitor per condition;
* ``speaker.png`` (speaker.py): the speaker's figures at the monitor.

A result without the section a chart needs (``run.py --only network`` has no per-format
results; a missing file) raises :class:`MissingResultsError` from that chart's function;
:func:`render_all` and the command line skip that chart, say why on stderr, and leave
its old picture alone (``--require-all`` makes a skipped chart an error). Every chart
carries a footnote with the source file, the date, the core count and the load average.

matplotlib is imported only when a chart is drawn, with its object API (a
:class:`~matplotlib.figure.Figure` on the Agg canvas), as in ``trio_tts_stream._plot``:
no pyplot, no global state.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "docs" / "_bench_data"
"""Where the bench session keeps the results (committed)."""
OUT_DIR = ROOT / "docs" / "_static" / "bench"
"""Where the committed charts go."""
SOURCES = {"run": "run.json", "playout": "playout.json", "speaker": "speaker.json"}
"""Each source's file name in a results directory."""

DPI = 100
FORMAT_ORDER = ("pcm", "wav", "mp3", "aac", "flac", "opus")
_COLOURS = {
    "pcm": "#1f77b4",
    "wav": "#17becf",
    "mp3": "#d62728",
    "aac": "#ff7f0e",
    "flac": "#2ca02c",
    "opus": "#9467bd",
}
_MARKERS = {"pcm": "o", "wav": "v", "mp3": "s", "aac": "D", "flac": "^", "opus": "P"}
_BUFFERING_COLOURS = {"fixed": "#8c8c8c", "adaptive": "#1f77b4", "adaptive, 4 s ring": "#2ca02c"}

Results = Mapping[str, Any]


class MissingResultsError(LookupError):
    """The results lack the section a chart is drawn from."""


# -- reading ------------------------------------------------------------------------------


def load_results(path: str | Path) -> dict[str, Any]:
    """One script's results: a JSON file, or captured output ending in ``RESULT <json>``.

    Raises:
        MissingResultsError: The file does not exist.
        ValueError: It holds neither JSON nor a ``RESULT`` line.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise MissingResultsError(f"{p} does not exist") from None
    if text.lstrip().startswith("{"):
        data = json.loads(text)
    else:
        lines = [line for line in text.splitlines() if line.startswith("RESULT ")]
        if not lines:
            raise ValueError(f"{p} holds neither JSON nor a 'RESULT <json>' line")
        data = json.loads(lines[-1].removeprefix("RESULT "))
    if not isinstance(data, dict):
        raise ValueError(f"{p} does not hold a JSON object")
    return data


def load_directory(directory: str | Path) -> dict[str, dict[str, Any] | None]:
    """Every source's results in ``directory`` (``None`` for a file that is not there)."""
    out: dict[str, dict[str, Any] | None] = {}
    for source, name in SOURCES.items():
        try:
            out[source] = load_results(Path(directory) / name)
        except MissingResultsError:
            out[source] = None
    return out


def _section(results: Results, key: str, what: str) -> Any:
    value = results.get(key)
    if not value:
        raise MissingResultsError(f"the results have no {key!r} section ({what})")
    return value


def _median(spread: Mapping[str, Any] | None) -> float | None:
    return None if spread is None else float(spread["median"])


def _err(spread: Mapping[str, Any] | None) -> tuple[float, float]:
    """(below, above) the median: the min-max whisker."""
    if spread is None:
        return (0.0, 0.0)
    m = float(spread["median"])
    return (m - float(spread["min"]), float(spread["max"]) - m)


# -- drawing helpers ----------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    # Room at the bottom for the footnote, which the layout does not place.
    fig.get_layout_engine().set(rect=(0.0, 0.05, 1.0, 0.95))  # type: ignore[call-arg,union-attr]
    return fig


def footnote_text(results: Results, source: str) -> str:
    """Where the numbers come from: the file, date, cores, load average (and commit)."""
    parts = [f"data: docs/_bench_data/{SOURCES[source]}"]
    if results.get("date"):
        parts.append(str(results["date"]).replace("T", " "))
    if results.get("cpus"):
        parts.append(f"{results['cpus']} cores")
    load = results.get("load_average")
    if isinstance(load, Mapping) and load:
        values = [float(v) for v in load.values() if v is not None]
        start = load.get("start")
        first = float(start) if start is not None else values[0]
        parts.append(f"1-min load average {first:.2f} at the start, at most {max(values):.2f}")
    if results.get("commit"):
        parts.append(f"commit {results['commit']}")
    return " | ".join(parts)


def _finish(fig: Figure, results: Results, source: str, path: Path) -> Path:
    fig.text(0.005, 0.008, footnote_text(results, source), fontsize=7, color="#555555")
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    # A chart has few colours: a 256-colour palette keeps it sharp at a third of the size.
    from PIL import Image

    with Image.open(buffer) as image:
        image.convert("RGB").quantize(colors=256).save(path, format="PNG", optimize=True)
    return path


def _log_x(ax: Axes, ticks: Sequence[float]) -> None:
    ax.set_xscale("log")
    ax.set_xticks(list(ticks))
    ax.set_xticklabels([f"{t:g}x" for t in ticks])
    ax.minorticks_off()
    ax.set_xlim(min(ticks) / 1.15, max(ticks) * 1.15)


# -- a. first audio against the delivery rate -------------------------------------------


def first_audio_chart(run: Results, out_dir: str | Path) -> Path:
    """``first_audio.png``: TTFA against delivery rate, streaming and buffered, per format.

    Args:
        run: ``run.py --json``'s results; needs the ``formats`` section (the ``latency``
            section's ``pcm`` points are added if present).
        out_dir: The directory to write into.

    Returns:
        The path written.

    Raises:
        MissingResultsError: No per-format results.
    """
    formats = _section(run, "formats", "run.py --only formats")
    rows = [entry["summary"] for entry in formats]
    latency = [entry["summary"] for entry in run.get("latency") or []]
    ttfb = float(run.get("ttfb_ms", 300.0))
    factors = sorted({float(r["factor"]) for r in rows + latency})
    fig = _figure(10.5, 4.6)
    stream_ax, buffered_ax = fig.subplots(1, 2)
    fmts = [f for f in FORMAT_ORDER if any(r["response_format"] == f for r in rows)]
    fmts += sorted({r["response_format"] for r in rows} - set(fmts))
    offsets = {f: 1.0 + 0.012 * (i - (len(fmts) - 1) / 2) for i, f in enumerate(fmts)}
    for ax, mode in ((stream_ax, "stream"), (buffered_ax, "buffered")):
        for fmt in fmts:
            points = sorted(
                (float(r["factor"]), r["ttfa_ms"])
                for r in rows
                if r["response_format"] == fmt and r["mode"] == mode and r["ttfa_ms"]
            )
            if not points:
                continue
            xs = [x * offsets[fmt] for x, _ in points]  # a nudge, so whiskers do not hide
            ax.errorbar(
                xs,
                [float(s["median"]) for _, s in points],
                yerr=list(zip(*(_err(s) for _, s in points), strict=True)),
                color=_COLOURS.get(fmt),
                marker=_MARKERS.get(fmt, "o"),
                markersize=5,
                # Buffered TTFA is the same for every format: markers only, or the lines
                # would hide each other (and the arithmetic's curve).
                linewidth=1.3 if mode == "stream" else 0.0,
                capsize=2,
                label=fmt,
            )
        pcm_latency = sorted(
            (float(r["factor"]), r["ttfa_ms"])
            for r in latency
            if r["mode"] == mode and r["ttfa_ms"]
        )
        if pcm_latency:
            ax.errorbar(
                [x for x, _ in pcm_latency],
                [float(s["median"]) for _, s in pcm_latency],
                yerr=list(zip(*(_err(s) for _, s in pcm_latency), strict=True)),
                color="black",
                marker="x",
                markersize=7,
                linestyle="none",
                capsize=2,
                label=f"pcm, latency section ({pcm_latency[0][1].get('n', '?')} runs)",
            )
        _log_x(ax, factors)
        ax.set_xlabel("server delivery rate (x real time)")
        ax.set_ylabel("time to first audio, ms (median, min-max)")
        ax.grid(True, alpha=0.3)
    # What the arithmetic predicts: streaming waits for TTFB plus the 150 ms start
    # buffer at the server's speed; buffered waits for TTFB plus the whole download.
    fine = [factors[0] * (factors[-1] / factors[0]) ** (i / 50) for i in range(51)]
    audio_s = float(rows[0].get("audio_s") or 10.0)
    stream_ax.plot(
        fine,
        [ttfb + 150.0 / f for f in fine],
        color="#999999",
        linestyle=":",
        label="TTFB + 150 ms / rate",
    )
    buffered_ax.plot(
        fine,
        [ttfb + audio_s * 1000.0 / f for f in fine],
        color="#999999",
        linestyle=":",
        label=f"TTFB + {audio_s:.1f} s / rate",
    )
    stream_ax.set_title("streaming (the default)")
    buffered_ax.set_title("buffered: download, then play")
    handles, labels = stream_ax.get_legend_handles_labels()
    formats_only = [
        (h, t) for h, t in zip(handles, labels, strict=True) if not t.startswith("TTFB")
    ]
    fig.legend(
        [h for h, _ in formats_only],
        [t for _, t in formats_only],
        loc="outside right center",
        fontsize=8,
        title="format",
        title_fontsize=8,
    )
    for ax in (stream_ax, buffered_ax):
        lines = [line for line in ax.get_lines() if line.get_label().startswith("TTFB")]
        ax.legend(handles=lines, fontsize=8, loc="upper right")
    runs = rows[0].get("runs", "?")
    fig.suptitle(
        f"First audio vs delivery rate: TTFB {ttfb:g} ms, {audio_s:.1f} s utterance, "
        f"{runs} runs per point after a warm-up"
    )
    return _finish(fig, run, "run", Path(out_dir) / "first_audio.png")


# -- b. the network benchmark -------------------------------------------------------------


def _buffering_label(result: Mapping[str, Any]) -> str:
    if result.get("max_buffer_s") is None:
        return str(result["buffering"])
    return f"{result['buffering']}, {float(result['max_buffer_s']):g} s ring"


def _link_label(kind: str, value: float, kbps: float | None) -> str:
    if kind == "bandwidth":
        return f"{value:g}x\n({kbps:.0f} kbit/s)" if kbps else f"{value:g}x"
    return f"{value:g} ms"


def network_chart(run: Results, out_dir: str | Path) -> Path:
    """``network.png``: fixed vs adaptive buffering per link, bandwidth and jitter.

    Top row: TTFA of the last utterance (bar) and of the first (dot); bottom row: the
    underrun milliseconds summed over the utterances, with the per-utterance underrun
    counts written above each bar.

    Args:
        run: ``run.py --json``'s results; needs ``network.links``.
        out_dir: The directory to write into.

    Returns:
        The path written.

    Raises:
        MissingResultsError: No network link results.
    """
    network = _section(run, "network", "run.py --only network")
    links = network.get("links") if isinstance(network, Mapping) else None
    if not links:
        raise MissingResultsError("the results have no network links (run.py --only network)")
    kinds = [k for k in ("bandwidth", "jitter") if any(r["kind"] == k for r in links)]
    fig = _figure(11.0, 6.4)
    axes = fig.subplots(2, len(kinds), squeeze=False, sharex="col")
    utterances = max(len(r["utterances"]) for r in links)
    # One underrun scale for both columns: a column without underruns shows flat zeros.
    most = max(sum(float(u["underrun_ms"] or 0.0) for u in r["utterances"]) for r in links)
    for col, kind in enumerate(kinds):
        rows = [r for r in links if r["kind"] == kind]
        values = sorted({float(r["value"]) for r in rows})
        labels = list(
            dict.fromkeys(
                _buffering_label(r)
                for r in sorted(rows, key=lambda r: (r["buffering"], r.get("max_buffer_s") or 0))
            )
        )
        labels.sort(key=lambda b: (b != "fixed", b))
        width = 0.8 / len(labels)
        ttfa_ax, under_ax = axes[0][col], axes[1][col]
        for j, label in enumerate(labels):
            xs: list[float] = []
            last: list[float] = []
            first: list[float] = []
            under_ms: list[float] = []
            counts: list[str] = []
            for i, value in enumerate(values):
                match = [
                    r for r in rows if float(r["value"]) == value and _buffering_label(r) == label
                ]
                if not match:
                    continue
                us = match[0]["utterances"]
                xs.append(i + (j - (len(labels) - 1) / 2) * width)
                last.append(float(us[-1]["ttfa_ms"] or 0.0))
                first.append(float(us[0]["ttfa_ms"] or 0.0))
                under_ms.append(sum(float(u["underrun_ms"] or 0.0) for u in us))
                counts.append("/".join(str(u["underruns"]) for u in us))
            colour = _BUFFERING_COLOURS.get(label, "#7f7f7f")
            ttfa_ax.bar(xs, last, width * 0.95, color=colour, label=label)
            ttfa_ax.plot(
                xs,
                first,
                linestyle="none",
                marker="o",
                markersize=4,
                color="black",
                label="first utterance" if j == 0 else None,
            )
            bars = under_ax.bar(xs, under_ms, width * 0.95, color=colour, label=label)
            under_ax.bar_label(bars, labels=counts, fontsize=7, padding=1)
        ticks = list(range(len(values)))
        kbps = {float(r["value"]): r.get("kbps") for r in rows}
        under_ax.set_xticks(ticks)
        under_ax.set_xticklabels([_link_label(kind, v, kbps[v]) for v in values])
        if kind == "bandwidth":
            ttfa_ax.set_title("bandwidth: link speed in multiples of the pcm bitrate")
            under_ax.set_xlabel("link bandwidth (x the stream's 384 kbit/s)")
        else:
            ttfa_ax.set_title("jitter: 1.2x real time, each 20 ms piece held back 0-J ms")
            under_ax.set_xlabel("jitter J, ms")
        ttfa_ax.set_ylabel(f"TTFA, ms (bar: utterance {utterances}, dot: 1st)")
        under_ax.set_ylabel(f"underrun ms, sum of {utterances} utterances")
        ttfa_ax.legend(fontsize=8)
        under_ax.text(
            0.99,
            0.97,
            "labels: underruns per utterance",
            transform=under_ax.transAxes,
            ha="right",
            va="top",
            fontsize=7,
        )
        under_ax.set_ylim(0, max(most * 1.15, 100.0))
        for ax in (ttfa_ax, under_ax):
            ax.grid(True, axis="y", alpha=0.3)
    seconds = float(links[0].get("text_audio_s") or 0.0)
    fig.suptitle(
        f"Network: fixed vs adaptive buffering, pcm, TTFB {float(run.get('ttfb_ms', 300)):g} ms, "
        f"{utterances} x {seconds:.1f} s utterances in a row per link"
    )
    return _finish(fig, run, "run", Path(out_dir) / "network.png")


# -- c. playout: exact vs adaptive --------------------------------------------------------

_STEADY = re.compile(r"(\d+(?:\.\d+)?)x")


def playout_chart(playout: Results, out_dir: str | Path) -> Path:
    """``playout.png``: exact vs adaptive playout at the monitor.

    Left: first byte to first sound against the delivery rate on a steady link, per
    format and mode. Right: the gaps heard (> 20 ms of silence inside the utterance) per
    condition, summed over its runs, with their count.

    Args:
        playout: ``playout.py``'s ``RESULT`` json; needs ``summary``.
        out_dir: The directory to write into.

    Returns:
        The path written.

    Raises:
        MissingResultsError: No summary.
    """
    rows = _section(playout, "summary", "playout.py's RESULT line")
    fmts = list(dict.fromkeys(r["format"] for r in rows))
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    fig = _figure(11.0, 4.9)
    first_ax, gap_ax = fig.subplots(1, 2, width_ratios=(1.0, 1.15))
    steady = [c for c in conditions if _STEADY.fullmatch(c)]
    styles = {"exact": ("-", "o"), "adaptive": ("--", "s")}
    for fmt in fmts:
        for mode in modes:
            points = sorted(
                (float(_STEADY.fullmatch(r["condition"])[1]), r["first_sound_ms"])  # type: ignore[index]
                for r in rows
                if r["condition"] in steady
                and r["format"] == fmt
                and r["mode"] == mode
                and r["first_sound_ms"]
            )
            if not points:
                continue
            line, marker = styles.get(mode, ("-.", "^"))
            first_ax.errorbar(
                [x for x, _ in points],
                [float(s["median"]) for _, s in points],
                yerr=list(zip(*(_err(s) for _, s in points), strict=True)),
                color=_COLOURS.get(fmt),
                linestyle=line,
                marker=marker,
                capsize=2,
                label=f"{fmt}, {mode}",
            )
    if steady:
        _log_x(first_ax, sorted(float(_STEADY.fullmatch(c)[1]) for c in steady))  # type: ignore[index]
    first_ax.set_xlabel("server delivery rate (x real time), steady link")
    first_ax.set_ylabel("first byte -> first sound at the monitor, ms")
    first_ax.set_ylim(bottom=0)
    first_ax.set_title("start: exact waits for buffer_ms, adaptive for about two blocks")
    first_ax.grid(True, alpha=0.3)
    first_ax.legend(fontsize=8)
    series = [(fmt, mode) for fmt in fmts for mode in modes]
    height = 0.8 / len(series)
    by_key = {(r["condition"], r["format"], r["mode"]): r for r in rows}
    for j, (fmt, mode) in enumerate(series):
        ys, widths, labels = [], [], []
        for i, condition in enumerate(conditions):
            r = by_key.get((condition, fmt, mode))
            if r is None:
                continue
            ys.append(i + (j - (len(series) - 1) / 2) * height)
            widths.append(float(r["gap_ms"] or 0.0))
            labels.append(f"{r['gaps']} ({float(r['gap_ms']):.0f} ms)" if r["gaps"] else "0")
        bars = gap_ax.barh(
            ys,
            widths,
            height * 0.95,
            color=_COLOURS.get(fmt),
            alpha=1.0 if mode == "exact" else 0.45,
            hatch="" if mode == "exact" else "//",
            edgecolor=_COLOURS.get(fmt),
            label=f"{fmt}, {mode}",
        )
        gap_ax.bar_label(bars, labels=labels, fontsize=7, padding=2)
    runs = {r["condition"]: r["runs"] for r in rows}
    gap_ax.set_yticks(list(range(len(conditions))))
    gap_ax.set_yticklabels(
        [
            c.replace(", ", "\n", 1) + (f" ({runs[c]} runs)" if runs[c] > 1 else "")
            for c in conditions
        ],
        fontsize=8,
    )
    gap_ax.invert_yaxis()
    gap_ax.set_xlabel("gaps > 20 ms heard at the monitor: total ms (label: how many)")
    gap_ax.set_title("gaps per delivery condition")
    gap_ax.margins(x=0.12)
    gap_ax.grid(True, axis="x", alpha=0.3)
    gap_ax.legend(fontsize=8, loc="best")
    fig.suptitle(
        f"Playout: exact (buffer_ms {float(playout.get('buffer_ms', 150)):g}) vs adaptive, "
        f"{float(playout.get('audio_s', 0)):.1f} s utterance, real PortAudio device "
        f"({float(playout.get('device_latency_ms', 0)):.0f} ms output latency), "
        f"TTFB {float(playout.get('ttfb_ms', 0)):g} ms"
    )
    return _finish(fig, playout, "playout", Path(out_dir) / "playout.png")


# -- d. the speaker -----------------------------------------------------------------------

_SPEAKER_ROWS = (
    ("queued_gap_speaker_ms", "gap between queued utterances,\nspeaker (lookahead)"),
    ("queued_gap_player_ms", "gap between utterances,\nsequential Player.speak"),
    ("interrupt_monitor_ms", "interrupt() to silence\n(fade_ms=10)"),
    ("token_to_audio_ms", "last token of a sentence\nto its first audio"),
    ("cache_miss_ms", "say() to first audio,\ncache miss"),
    ("cache_hit_ms", "say() to first audio,\ncache hit"),
)


def speaker_chart(speaker: Results, out_dir: str | Path) -> Path:
    """``speaker.png``: the speaker's figures at the monitor (median, min-max, runs).

    Args:
        speaker: ``speaker.py --json``'s results.
        out_dir: The directory to write into.

    Returns:
        The path written.

    Raises:
        MissingResultsError: None of the speaker's measurements are there.
    """
    rows = [(label, speaker[key]) for key, label in _SPEAKER_ROWS if speaker.get(key)]
    if not rows:
        raise MissingResultsError(
            "the results have none of the speaker's measurements (speaker.py --json)"
        )
    fig = _figure(10.0, 4.6)
    ax = fig.subplots()
    ys = list(range(len(rows)))
    medians = [float(s["median"]) for _, s in rows]
    errors = list(zip(*(_err(s) for _, s in rows), strict=True))
    bars = ax.barh(ys, medians, 0.6, xerr=errors, capsize=3, color="#4d9de0")
    ax.bar_label(
        bars,
        labels=[
            f"{float(s['median']):.1f} ms ({float(s['min']):.1f}-{float(s['max']):.1f}, n={s['n']})"
            for _, s in rows
        ],
        fontsize=8,
        padding=6,
    )
    ax.set_yticks(ys)
    ax.set_yticklabels([label for label, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.margins(x=0.2)
    ax.set_xlabel("ms at the PulseAudio monitor (bar: median; whisker: min-max)")
    ax.grid(True, axis="x", alpha=0.3)
    many = speaker.get("many_speakers")
    if isinstance(many, Mapping) and many:
        ax.text(
            0.99,
            0.03,
            f"{many['speakers']:.0f} speakers in one process (NullSinks): "
            f"{float(many['cpu_ms_per_audio_s']):.1f} ms CPU per audio s, "
            f"{many['underruns']:.0f} underruns",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=8,
        )
    server = speaker.get("server") or {}
    ax.set_title(
        "Speaker: real PortAudio device (10 ms blocks) into a PulseAudio null sink, "
        f"server TTFB {server.get('ttfb_ms', 300)} ms at {server.get('realtime_factor', 2)}x",
        fontsize=10,
    )
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="#4d9de0", label="median (min-max)")], fontsize=8)
    return _finish(fig, speaker, "speaker", Path(out_dir) / "speaker.png")


# -- all of them --------------------------------------------------------------------------


@dataclass(frozen=True)
class Chart:
    """One chart: its file, the source it is drawn from, and the function.

    Attributes:
        name: The PNG's file name.
        source: A key of :data:`SOURCES`.
        draw: ``draw(results, out_dir)`` writes the PNG and returns its path.
    """

    name: str
    source: str
    draw: Callable[[Results, Path], Path]


CHARTS = (
    Chart("first_audio.png", "run", first_audio_chart),
    Chart("network.png", "run", network_chart),
    Chart("playout.png", "playout", playout_chart),
    Chart("speaker.png", "speaker", speaker_chart),
)


def render_all(
    results: Mapping[str, Results | None], out_dir: str | Path
) -> tuple[list[Path], dict[str, str]]:
    """Draw every chart whose results are there.

    Args:
        results: Each source's results (a key of :data:`SOURCES`), ``None`` or absent if
            that script's results are not at hand.
        out_dir: The directory to write into.

    Returns:
        The paths written, and for each chart skipped its name and why.
    """
    written: list[Path] = []
    skipped: dict[str, str] = {}
    for chart in CHARTS:
        data = results.get(chart.source)
        if data is None:
            skipped[chart.name] = f"no {SOURCES[chart.source]} results"
            continue
        try:
            written.append(chart.draw(data, Path(out_dir)))
        except MissingResultsError as e:
            skipped[chart.name] = str(e)
    return written, skipped


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Draw the benchmark charts for the docs.")
    parser.add_argument(
        "--data",
        type=Path,
        default=DATA_DIR,
        help=f"results directory with {', '.join(SOURCES.values())} (default: %(default)s)",
    )
    for source in SOURCES:
        parser.add_argument(
            f"--{source}-json",
            type=Path,
            metavar="PATH",
            help=f"{source}'s results (JSON, or output with a RESULT line); overrides --data",
        )
    parser.add_argument(
        "--out", type=Path, default=OUT_DIR, help="output directory (default: %(default)s)"
    )
    parser.add_argument(
        "--require-all", action="store_true", help="exit 1 if any chart had to be skipped"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results: dict[str, dict[str, Any] | None] = load_directory(args.data)
    for source in SOURCES:
        path: Path | None = getattr(args, f"{source}_json")
        if path is not None:
            results[source] = load_results(path)
    written, skipped = render_all(results, args.out)
    for path in written:
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB)", file=sys.stderr)
    for name, why in skipped.items():
        print(f"skipped {name}: {why}", file=sys.stderr)
    return 1 if skipped and args.require_all else 0


if __name__ == "__main__":
    sys.exit(main())
