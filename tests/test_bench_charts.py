"""benchmarks/charts.py: every chart renders from results shaped like the scripts' JSON.

Synthetic results (built here, in the shape of ``run.py --json``, ``playout.py``'s
``RESULT`` line and ``speaker.py --json``) render to valid PNGs; a missing section
raises :class:`MissingResultsError` from its chart and is skipped by ``render_all`` and
the command line; and the committed data in ``docs/_bench_data/`` renders every chart,
so the committed numbers and the chart code cannot drift apart.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import charts  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _spread(median: float, low: float | None = None, high: float | None = None) -> dict[str, Any]:
    return {
        "median": median,
        "min": median if low is None else low,
        "max": median if high is None else high,
        "n": 3,
    }


def _latency_summary(factor: float, mode: str, ttfa: float, fmt: str | None) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "factor": factor,
        "mode": mode,
        "audio_s": 10.01,
        "runs": 3,
        "completed": 3,
        "ttfa_ms": _spread(ttfa, ttfa - 2, ttfa + 5),
        "ttfb_ms": _spread(304.0),
        "ttfb_headers_ms": _spread(303.0),
        "underruns_total": 0,
    }
    if fmt is not None:
        summary["response_format"] = fmt
    return summary


def _utterance(ttfa: float, underruns: int, underrun_ms: float) -> dict[str, Any]:
    return {
        "ttfa_ms": ttfa,
        "underruns": underruns,
        "underrun_ms": underrun_ms,
        "start_threshold_ms": 150.0,
        "outcome": "completed",
    }


def run_results() -> dict[str, Any]:
    """A small ``run.py --json`` with the latency, formats and network sections."""
    formats = []
    for fmt, extra in (("pcm", 0.0), ("mp3", 60.0), ("opus", 10.0)):
        for factor in (2.0, 6.5):
            for mode in ("stream", "buffered"):
                ttfa = 300 + (150 + extra) / factor if mode == "stream" else 300 + 10010 / factor
                formats.append({"summary": _latency_summary(factor, mode, ttfa, fmt), "raw": {}})
    latency = [
        {"summary": _latency_summary(f, m, 300 + (150 if m == "stream" else 10010) / f, None)}
        for f in (1.5, 6.5)
        for m in ("stream", "buffered")
    ]
    links = []
    for kind, values in (("bandwidth", (0.8, 3.0)), ("jitter", (0.0, 300.0))):
        for value in values:
            for buffering, ring in (("fixed", None), ("adaptive", None)):
                slow = kind == "bandwidth" and value < 1
                grow = 2000.0 if slow and buffering == "adaptive" else 0.0
                us = [
                    _utterance(500.0 + grow * i, 7, 2564) if slow else _utterance(400.0, 0, 0.0)
                    for i in range(3)
                ]
                links.append(
                    {
                        "kind": kind,
                        "value": value,
                        "kbps": value * 384 if kind == "bandwidth" else None,
                        "buffering": buffering,
                        "max_buffer_s": ring,
                        "text_audio_s": 10.01,
                        "utterances": us,
                    }
                )
    links.append({**links[0], "buffering": "adaptive", "max_buffer_s": 4.0})
    return {
        "date": "2026-12-07T23:30Z",
        "cpus": 2,
        "commit": "abc1234",
        "load_average": {"start": 0.3, "network": 1.1, "end": 0.9},
        "ttfb_ms": 300.0,
        "latency": latency,
        "formats": formats,
        "network": {"links": links, "resilience": []},
    }


def playout_results() -> dict[str, Any]:
    """A small ``playout.py`` ``RESULT`` json."""
    summary = []
    for condition in ("1x", "2x", "1.2x, jitter 50 ms", "1.2x, bursts 2500,500"):
        for fmt in ("pcm", "mp3"):
            for mode in ("exact", "adaptive"):
                first = (160.0 if mode == "exact" else 40.0) * (2 if fmt == "mp3" else 1)
                gaps = 1 if "bursts" in condition else 0
                summary.append(
                    {
                        "condition": condition,
                        "format": fmt,
                        "mode": mode,
                        "runs": 3 if "jitter" in condition else 1,
                        "first_sound_ms": {"median": first, "min": first - 3, "max": first + 9},
                        "gaps": gaps,
                        "gap_ms": 200.0 * gaps,
                    }
                )
    return {
        "date": "2026-12-07T23:40Z",
        "cpus": 2,
        "load_average": {"start": 0.5, "end": 0.7},
        "audio_s": 5.2,
        "ttfb_ms": 200.0,
        "buffer_ms": 150.0,
        "device_latency_ms": 20.0,
        "summary": summary,
        "runs": [],
    }


def speaker_results() -> dict[str, Any]:
    """A small ``speaker.py --json``."""
    return {
        "date": "2026-12-07T23:50Z",
        "cpus": 2,
        "load_average": {"start": 0.4, "end": 0.6},
        "server": {"ttfb_ms": 300, "realtime_factor": 2},
        "queued_gap_speaker_ms": _spread(0.0),
        "queued_gap_player_ms": _spread(375.0, 365.0, 385.0),
        "interrupt_monitor_ms": _spread(37.6, 34.7, 39.1),
        "token_to_audio_ms": _spread(431.0, 431.0, 433.0),
        "cache_miss_ms": _spread(397.0),
        "cache_hit_ms": _spread(21.0),
        "many_speakers": {"speakers": 32, "cpu_ms_per_audio_s": 11.6, "underruns": 0},
    }


def check_png(path: Path) -> tuple[int, int]:
    """The PNG's (height, width), after checking it is a readable PNG under 150 KB."""
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert 0 < len(data) < 150 * 1024
    image = imread(path)
    height, width = image.shape[:2]
    assert width >= 600
    assert height >= 300
    return height, width


@pytest.mark.parametrize(
    ("chart", "build"),
    [
        (charts.first_audio_chart, run_results),
        (charts.network_chart, run_results),
        (charts.playout_chart, playout_results),
        (charts.speaker_chart, speaker_results),
    ],
)
def test_chart_renders_a_png(chart: Any, build: Any, tmp_path: Path) -> None:
    path = chart(build(), tmp_path)
    assert path.parent == tmp_path
    check_png(path)


def test_footnote_names_source_date_cores_load_and_commit() -> None:
    text = charts.footnote_text(run_results(), "run")
    assert "run.json" in text
    assert "2026-12-07 23:30Z" in text
    assert "2 cores" in text
    assert "0.30 at the start, at most 1.10" in text
    assert "commit abc1234" in text


@pytest.mark.parametrize(
    ("chart", "results", "section"),
    [
        (charts.first_audio_chart, {"network": {"links": []}}, "formats"),
        (charts.network_chart, {"formats": [1]}, "network"),
        (charts.network_chart, {"network": {"links": [], "resilience": []}}, "network links"),
        (charts.playout_chart, {"date": "x"}, "summary"),
        (charts.speaker_chart, {"date": "x"}, "speaker"),
    ],
)
def test_missing_section_is_a_clear_error(
    chart: Any, results: dict[str, Any], section: str, tmp_path: Path
) -> None:
    with pytest.raises(charts.MissingResultsError, match=section):
        chart(results, tmp_path)
    assert not list(tmp_path.iterdir())


def test_render_all_skips_what_is_missing(tmp_path: Path) -> None:
    run = run_results()
    del run["formats"]
    written, skipped = charts.render_all({"run": run, "playout": None}, tmp_path)
    assert [p.name for p in written] == ["network.png"]
    assert set(skipped) == {"first_audio.png", "playout.png", "speaker.png"}
    assert "formats" in skipped["first_audio.png"]
    assert "playout.json" in skipped["playout.png"]


def test_cli_reads_a_result_line_and_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "run.json").write_text(json.dumps(run_results()))
    captured = tmp_path / "playout.out"
    captured.write_text("# a markdown table\n\nRESULT " + json.dumps(playout_results()) + "\n")
    out = tmp_path / "out"
    argv = ["--data", str(data), "--playout-json", str(captured), "--out", str(out)]
    assert charts.main(argv) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["first_audio.png", "network.png", "playout.png"]
    assert "skipped speaker.png" in capsys.readouterr().err
    assert charts.main([*argv, "--require-all"]) == 1


def test_committed_data_renders_every_chart(tmp_path: Path) -> None:
    results = charts.load_directory(charts.DATA_DIR)
    missing = [source for source, data in results.items() if data is None]
    assert not missing, f"docs/_bench_data/ lacks {missing}"
    written, skipped = charts.render_all(results, tmp_path)
    assert not skipped
    assert sorted(p.name for p in written) == sorted(c.name for c in charts.CHARTS)
    for path in written:
        check_png(path)
        # The committed picture exists too (regenerate: python benchmarks/charts.py).
        assert (charts.OUT_DIR / path.name).is_file()
