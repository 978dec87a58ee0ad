"""Draw one :class:`~._metrics.PlaybackReport` as a timeline picture (PNG or SVG).

On one time axis from the request (seconds):

* **top**: body bytes received (KiB, left axis) and seconds of audio decoded and played
  (right axis), with reconnects and stalls marked on the bytes line;
* **middle**: the audio buffered ahead of the device (ms) against the start threshold
  (``buffer_ms``) and, over each rebuffering, the threshold it waited for; underruns
  marked where the buffer ran dry;
* **bottom**: the states as coloured bars named inside (and, for a run of several
  utterances, one band per utterance with its index).

Vertical lines mark TTFB, first audio and a cancellation (barge-in). The title says the
outcome, the format and, for a failure, the error.

matplotlib is imported only here and only when a picture is drawn, with its object API
(a :class:`~matplotlib.figure.Figure` on the Agg canvas): no pyplot, no global state.
"""

from __future__ import annotations

import importlib.util
import itertools
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._exceptions import ConfigError, MissingDependencyError
from ._metrics import PlaybackReport, TimelineEntry
from ._vocabulary import Cause, PlaybackState

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["PLOT_FORMATS", "check_plot_path", "plot_report", "require_matplotlib"]

#: File name endings :func:`plot_report` writes.
PLOT_FORMATS = (".png", ".svg")

INSTALL_HINT = "pip install 'trio-tts-stream[plot]'"

_STATE_COLOURS = {
    PlaybackState.BUFFERING: "#f2c14e",
    PlaybackState.PLAYING: "#5fad56",
    PlaybackState.REBUFFERING: "#e4572e",
    PlaybackState.DRAINING: "#4d9de0",
}
_STATE_HELP = {
    PlaybackState.BUFFERING: "buffering (silent, filling up)",
    PlaybackState.PLAYING: "playing",
    PlaybackState.REBUFFERING: "rebuffering (ran dry, refilling)",
    PlaybackState.DRAINING: "draining (all received, playing out)",
}


def require_matplotlib() -> None:
    """Check that matplotlib can be imported, without importing it.

    Raises:
        MissingDependencyError: It is not installed.
    """
    try:
        found = importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MissingDependencyError(
            f"drawing a plot needs matplotlib, which is not installed: {INSTALL_HINT}"
        )


def check_plot_path(path: str | Path) -> Path:
    """``path`` as a :class:`~pathlib.Path`, if it ends in ``.png`` or ``.svg``.

    Raises:
        ConfigError: Any other ending.
    """
    p = Path(path)
    if p.suffix.lower() not in PLOT_FORMATS:
        raise ConfigError(f"the plot file must end in .png or .svg, not {str(path)!r}")
    return p


def plot_report(report: PlaybackReport, path: str | Path) -> Path:
    """Draw ``report`` into ``path`` (``.png`` or ``.svg``, by the ending).

    Returns:
        The path written.

    Raises:
        ConfigError: ``path`` ends in neither ``.png`` nor ``.svg``.
        MissingDependencyError: matplotlib is not installed.
        OSError: The file cannot be written.
    """
    target = check_plot_path(path)
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependencyError(
            f"drawing a plot needs matplotlib, which is not installed: {INSTALL_HINT}"
        ) from None
    # Text stays text in an SVG (searchable, small); the setting is restored after.
    with matplotlib.rc_context({"svg.fonttype": "none", "font.size": 9}):
        fig = Figure(figsize=(11, 7), dpi=110, layout="constrained")
        FigureCanvasAgg(fig)
        top, mid, bar = fig.subplots(
            3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2.2, 0.9]}
        )
        _draw(fig, top, mid, bar, report)
        fig.savefig(target, format=target.suffix.lower()[1:])
    return target


# -- drawing ------------------------------------------------------------------------------


_Band = tuple[float, float, PlaybackState]


def _segments(report: PlaybackReport) -> list[tuple[float, list[TimelineEntry]]]:
    """(request time in s, its timeline entries) per utterance; one for a single
    playback (or when the spans do not account for the timeline)."""
    spans = report.utterances
    if spans and sum(u.timeline_entries for u in spans) == len(report.timeline):
        out: list[tuple[float, list[TimelineEntry]]] = []
        i = 0
        for u in spans:
            out.append((u.start_ms / 1000, list(report.timeline[i : i + u.timeline_entries])))
            i += u.timeline_entries
        return out
    return [(0.0, list(report.timeline))]


def _bands(report: PlaybackReport, end_s: float) -> list[list[_Band]]:
    """The state bands (start s, end s, state) of each utterance, before ``DONE``.

    A playback buffers from its request; after a part's ``DONE`` the next part is taken
    as buffering until its first event. The output plays one thing at a time, so a band
    that begins before the one drawn last ended (a prefetched utterance waiting for its
    turn) is drawn from that end on: the bands show what the listener got.
    """
    result: list[list[_Band]] = []
    floor = 0.0

    def add(bands: list[_Band], a: float, b: float, state: PlaybackState) -> None:
        nonlocal floor
        a = max(a, floor)
        if b > a:
            bands.append((a, b, state))
            floor = b

    for start, entries in _segments(report):
        bands: list[_Band] = []
        state: PlaybackState | None = PlaybackState.BUFFERING
        since = start
        done = False
        for e in entries:
            t = e.t_ms / 1000
            if state is not None:
                add(bands, since, t, state)
            since = t
            done = e.state is PlaybackState.DONE
            state = PlaybackState.BUFFERING if done else e.state
        if entries and not done and state is not None:
            add(bands, since, end_s, state)  # not finished (a report built by hand)
        result.append(bands)
    return result


def _end_s(report: PlaybackReport) -> float:
    times = [e.t_ms for e in report.timeline] + [p.t_ms for p in report.samples[-1:]]
    times += [u.end_ms for u in report.utterances]
    times += [v for v in (report.ttfb_ms, report.ttfa_ms) if v is not None]
    return max([*times, 100.0]) / 1000


def _title(report: PlaybackReport) -> str:
    fmt = report.format or "no audio"
    if report.sample_rate:
        fmt += f", {report.sample_rate} Hz"
    parts = [
        f"{report.outcome.value}",
        fmt,
        f"{report.audio_s:.2f} s of audio",
        f"{report.underruns} underrun{'s' if report.underruns != 1 else ''}",
    ]
    if report.reconnects:
        parts.append(f"{report.reconnects} reconnect{'s' if report.reconnects != 1 else ''}")
    if report.stalls:
        parts.append(f"{report.stalls} stall{'s' if report.stalls != 1 else ''}")
    title = "playback " + " | ".join(parts)
    if report.error:
        title += "\n" + textwrap.shorten("error: " + report.error, 150, placeholder=" ...")
    return title


def _draw(fig: Any, top: Axes, mid: Axes, bar: Axes, report: PlaybackReport) -> None:
    from matplotlib.patches import Patch

    end = _end_s(report)
    samples = report.samples
    t = [p.t_ms / 1000 for p in samples]
    per_utterance = _bands(report, end)
    bands = [band for group in per_utterance for band in group]

    # State colours behind the curves, so a stall lines up with what it caused.
    for ax in (top, mid):
        for a, b, state in bands:
            ax.axvspan(a, b, color=_STATE_COLOURS[state], alpha=0.10, lw=0)

    # -- top: what arrived, was decoded, was played
    if report.ttfb_ms is not None and samples:
        t_bytes = [report.ttfb_ms / 1000, *t]
        kib = [0.0, *(p.bytes_received / 1024 for p in samples)]
    else:
        t_bytes, kib = t, [p.bytes_received / 1024 for p in samples]
    top.step(t_bytes, kib, where="post", color="#444444", lw=1.4, label="bytes received (KiB)")
    top.set_ylabel("received (KiB)")
    top.set_ylim(bottom=0, top=max([*kib, 1.0]) * 1.15)
    audio = top.twinx()
    audio.plot(t, [p.decoded_s for p in samples], color="#4d9de0", lw=1.6, label="audio decoded")
    audio.plot(t, [p.played_s for p in samples], color="#2e7d32", lw=1.6, label="audio played")
    audio.set_ylabel("audio (s)")
    audio.set_ylim(bottom=0, top=max([report.audio_s, *(p.decoded_s for p in samples), 0.1]) * 1.15)
    _network_marks(top, report, t_bytes, kib)
    handles, labels = top.get_legend_handles_labels()
    h2, l2 = audio.get_legend_handles_labels()
    _pauses(top, report)
    top.legend(handles + h2, labels + l2, loc="lower right", fontsize=8, framealpha=0.85)
    if not samples:
        top.text(
            0.5,
            0.5,
            "no audio reached the output",
            transform=top.transAxes,
            ha="center",
            va="center",
            color="#777777",
            fontsize=12,
        )

    # -- middle: the buffer and its thresholds
    mid.plot(t, [p.buffered_ms for p in samples], color="#6a4c93", lw=1.4, label="buffered")
    mid.axhline(report.buffer_ms, color="#b8860b", ls="--", lw=1.0, label="start threshold")
    rebuffer_bands = [(a, b) for a, b, s in bands if s is PlaybackState.REBUFFERING]
    thresholds = list(report.rebuffer_thresholds_ms)
    for k, (a, b) in enumerate(rebuffer_bands):
        level = thresholds[k] if k < len(thresholds) else report.rebuffer_ms
        if level is not None:
            mid.hlines(
                level,
                a,
                b,
                color="#e4572e",
                ls="--",
                lw=1.2,
                label="rebuffer threshold" if k == 0 else "_nolegend_",
            )
    if not rebuffer_bands and report.rebuffer_ms is not None:
        mid.axhline(report.rebuffer_ms, color="#e4572e", ls=":", lw=0.9, label="rebuffer threshold")
    underruns = [e.t_ms / 1000 for e in report.timeline if e.cause is Cause.UNDERRUN]
    if underruns:
        mid.plot(
            underruns,
            [0.0] * len(underruns),
            "v",
            color="#c0392b",
            ms=9,
            clip_on=False,
            label="underrun (ran dry)",
        )
    levels = [p.buffered_ms for p in samples] + [report.buffer_ms, report.rebuffer_ms or 0.0]
    mid.set_ylim(bottom=0, top=max([*levels, 10.0]) * 1.2)
    mid.set_ylabel("buffered (ms)")
    mid.legend(loc="upper left", fontsize=8, framealpha=0.85)

    # -- bottom: states (and utterances)
    rows = 2 if report.utterances else 1
    for a, b, state in bands:
        bar.broken_barh(
            [(a, b - a)], (rows - 1, 0.8), facecolor=_STATE_COLOURS[state], edgecolor="white"
        )
        if b - a > end * 0.011 * len(state.value):  # where the name fits
            bar.text((a + b) / 2, rows - 0.6, state.value, ha="center", va="center", fontsize=8)
    for u, group in zip(report.utterances, per_utterance, strict=False):
        heard = [(a, b) for a, b, st in group if st is not PlaybackState.BUFFERING]
        if heard:  # from its first sound to its end
            a, b = heard[0][0], heard[-1][1]
            colour = "#9e9e9e" if u.index % 2 else "#cfcfcf"
            bar.broken_barh([(a, b - a)], (0, 0.8), color=colour, lw=0)
        else:
            a = b = u.end_ms / 1000
        label = f"#{u.index}" if heard else f"#{u.index} (not heard)"
        bar.text((a + b) / 2, 0.4, label, ha="center", va="center", fontsize=8)
    bar.set_ylim(0, rows)
    bar.set_yticks(
        [r + 0.4 for r in range(rows)], ["utterance", "state"] if rows == 2 else ["state"]
    )
    bar.set_xlabel("time since the request (s)")
    bar.set_xlim(0, end * 1.03)
    bar.legend(
        handles=[Patch(color=_STATE_COLOURS[s], label=_STATE_HELP[s]) for s in _STATE_COLOURS],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.9),
        ncol=4,
        fontsize=8,
        frameon=False,
    )

    _vertical_marks(top, (mid, bar), report)
    fig.suptitle(_title(report), fontsize=10)


def _network_marks(ax: Axes, report: PlaybackReport, t: list[float], kib: list[float]) -> None:
    """Reconnects, stalls and retries on the bytes line, where they were noticed."""
    styles = {
        "stall": ("s", "#ff8c00", "stall (body paused)"),
        "reconnect": ("X", "#8e24aa", "reconnect"),
        "retry": ("P", "#795548", "retry"),
    }
    for kind, (marker, colour, label) in styles.items():
        times = [e.t_ms / 1000 for e in report.network_events if e.kind == kind]
        if not times:
            continue
        ys = [_value_at(t, kib, x) for x in times]
        ax.plot(times, ys, marker, color=colour, ms=9, ls="none", label=label, zorder=5)


#: A gap between body bytes at least this long is labelled on the picture (ms).
PAUSE_LABEL_MS = 250.0


def _pauses(ax: Axes, report: PlaybackReport) -> None:
    """Label the network's silences: runs of samples where no body byte came, between
    the first and the last byte (the time series only, so to within a sample)."""
    samples = report.samples
    still_from: float | None = None
    for prev, cur in itertools.pairwise(samples):
        if cur.bytes_received == prev.bytes_received:
            if still_from is None:
                still_from = prev.t_ms
            continue
        if still_from is not None and cur.t_ms - still_from >= PAUSE_LABEL_MS:
            a, b = still_from / 1000, cur.t_ms / 1000
            ax.axvspan(a, b, ymax=0.035, color="#ff8c00", alpha=0.7, lw=0)
            ax.annotate(
                f"no data for {b - a:.2f} s",
                ((a + b) / 2, prev.bytes_received / 1024),
                xytext=(0, 5),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7,
                color="#b35900",
            )
        still_from = None


def _value_at(t: list[float], values: list[float], x: float) -> float:
    """The step function (t, values) at ``x``."""
    y = 0.0
    for ti, vi in zip(t, values, strict=True):
        if ti > x:
            break
        y = vi
    return y


def _vertical_marks(top: Axes, others: tuple[Axes, ...], report: PlaybackReport) -> None:
    """TTFB, first audio and a cancellation, as labelled lines across every panel."""
    marks: list[tuple[float, str, str]] = []
    if report.ttfb_ms is not None:
        marks.append((report.ttfb_ms, f"TTFB {report.ttfb_ms:.0f} ms", "#555555"))
    if report.ttfa_ms is not None:
        marks.append((report.ttfa_ms, f"first audio {report.ttfa_ms:.0f} ms", "#2e7d32"))
    cancel = next((e.t_ms for e in report.timeline if e.cause is Cause.CANCELLED), None)
    if cancel is not None:
        what = "barge-in" if report.utterances else "cancelled"
        marks.append((cancel, f"{what} {cancel:.0f} ms", "#c0392b"))
    failed = next((e.t_ms for e in report.timeline if e.cause is Cause.FAILED), None)
    if failed is not None:
        marks.append((failed, f"failed {failed:.0f} ms", "#c0392b"))
    for k, (t_ms, label, colour) in enumerate(marks):
        x = t_ms / 1000
        for ax in (top, *others):
            ax.axvline(x, color=colour, lw=1.0, ls="-.")
        # Labels at staggered heights so that close lines stay readable.
        top.annotate(
            label,
            (x, 0.98 - 0.08 * (k % 3)),
            xycoords=("data", "axes fraction"),
            xytext=(3, 0),
            textcoords="offset points",
            va="top",
            fontsize=8,
            color=colour,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
        )
