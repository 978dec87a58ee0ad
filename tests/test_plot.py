"""The report's time series and its picture (``report.plot``, ``say --plot``).

The pictures are drawn from reports built by hand (cheap); one end-to-end run of the
CLI against a pausing test server checks that a real playback's picture shows the
rebuffering.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from _cli_helpers import run_cli, serve_process

import trio_tts_stream as tts
from trio_tts_stream import _cli
from trio_tts_stream._metrics import (
    MAX_SAMPLES,
    SAMPLE_INTERVAL_S,
    MetricsRecorder,
    NetworkEvent,
    PlaybackReport,
    Sample,
    TimelineEntry,
    combine_series,
)
from trio_tts_stream._speaker import _combine
from trio_tts_stream._vocabulary import Cause, Outcome, PlaybackState

S, C = PlaybackState, Cause
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def matplotlib_installed() -> None:
    # noxfile.py installs the plot extra in every test session: this never skips in CI.
    pytest.importorskip("matplotlib")


def make_report(
    outcome: Outcome = Outcome.COMPLETED,
    timeline: tuple[tuple[float, PlaybackState, Cause], ...] = (
        (300.0, S.PLAYING, C.THRESHOLD_REACHED),
        (900.0, S.DRAINING, C.END_OF_STREAM),
        (1400.0, S.DONE, C.DRAINED),
    ),
    *,
    error: str | None = None,
    samples: bool = True,
    **changes: object,
) -> PlaybackReport:
    """A report of a 1 s utterance (the timeline and samples as given)."""
    points = (
        tuple(
            Sample(
                t_ms=float(t),
                bytes_received=min(48_000, (t - 100) * 60) if t > 100 else 0,
                decoded_s=min(1.0, max(0.0, (t - 100) / 800)),
                played_s=min(1.0, max(0.0, (t - 300) / 1100)),
                buffered_ms=max(0.0, 200 - abs(t - 600) / 3),
            )
            for t in range(120, 1400, 20)
        )
        if samples
        else ()
    )
    fields: dict[str, object] = {
        "outcome": outcome,
        "error": error,
        "mode": "stream",
        "format": "pcm",
        "sample_rate": 24000,
        "channels": 1,
        "buffer_ms": 150.0,
        "ttfb_ms": 100.0,
        "ttfa_ms": 310.0,
        "underruns": 0,
        "underrun_ms": 0.0,
        "buffer_ms_avg": 120.0,
        "buffer_ms_min": 20.0,
        "bytes_received": 48_000,
        "throughput_kbps": 400.0,
        "decode_ms_mean": 0.01,
        "decode_ms_p95": 0.02,
        "reconnects": 0,
        "frames_played": 24000,
        "audio_s": 1.0,
        "timeline": tuple(TimelineEntry(t, s, c) for t, s, c in timeline),
        "rebuffer_ms": 300.0,
        "request_time": 10.0,
        "samples": points,
    }
    fields.update(changes)
    return PlaybackReport(**fields)  # type: ignore[arg-type]


def check_svg(path: Path) -> str:
    assert path.is_file()
    text = path.read_text()
    root = ET.fromstring(text)
    assert root.tag.endswith("svg")
    return text


def check_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC


# -- pictures of constructed reports --------------------------------------------------------


@pytest.mark.usefixtures("matplotlib_installed")
def test_completed_playback_as_svg_names_the_states_and_ttfb(tmp_path: Path) -> None:
    out = make_report().plot(tmp_path / "done.svg")
    text = check_svg(out)
    for word in ("TTFB", "first audio", "buffering", "playing", "draining", "completed"):
        assert word in text


@pytest.mark.usefixtures("matplotlib_installed")
def test_rebuffering_playback_shows_underruns_stalls_and_reconnects(tmp_path: Path) -> None:
    report = make_report(
        timeline=(
            (300.0, S.PLAYING, C.THRESHOLD_REACHED),
            (500.0, S.REBUFFERING, C.UNDERRUN),
            (800.0, S.PLAYING, C.REBUFFERED),
            (900.0, S.DRAINING, C.END_OF_STREAM),
            (1400.0, S.DONE, C.DRAINED),
        ),
        underruns=1,
        stalls=1,
        reconnects=1,
        rebuffer_thresholds_ms=(300.0,),
        network_events=(NetworkEvent(450.0, "stall"), NetworkEvent(700.0, "reconnect")),
    )
    text = check_svg(report.plot(tmp_path / "rebuffer.svg"))
    for word in ("rebuffering", "underrun", "stall", "reconnect", "rebuffer threshold"):
        assert word in text
    check_png(report.plot(tmp_path / "rebuffer.png"))


@pytest.mark.usefixtures("matplotlib_installed")
def test_cancelled_playback_marks_the_cancel(tmp_path: Path) -> None:
    report = make_report(
        Outcome.CANCELLED,
        ((300.0, S.PLAYING, C.THRESHOLD_REACHED), (600.0, S.DONE, C.CANCELLED)),
    )
    text = check_svg(report.plot(tmp_path / "cancelled.svg"))
    assert "cancelled" in text
    check_png(report.plot(tmp_path / "cancelled.png"))


@pytest.mark.usefixtures("matplotlib_installed")
def test_failed_playback_shows_the_error(tmp_path: Path) -> None:
    report = make_report(
        Outcome.FAILED,
        (
            (300.0, S.PLAYING, C.THRESHOLD_REACHED),
            (700.0, S.DRAINING, C.END_OF_STREAM),
            (900.0, S.DONE, C.FAILED),
        ),
        error="the stream from http://x/v1 stalled: no byte for 15 s after 4000 bytes",
    )
    text = check_svg(report.plot(tmp_path / "failed.svg"))
    assert "failed" in text
    assert "stalled: no byte" in text
    check_png(report.plot(tmp_path / "failed.png"))


@pytest.mark.usefixtures("matplotlib_installed")
def test_a_report_without_audio_plots(tmp_path: Path) -> None:
    report = make_report(
        Outcome.FAILED,
        ((50.0, S.DONE, C.FAILED),),
        samples=False,
        format=None,
        sample_rate=None,
        ttfb_ms=None,
        ttfa_ms=None,
        audio_s=0.0,
        error="connection refused",
    )
    check_png(report.plot(tmp_path / "empty.png"))
    bare = make_report(Outcome.CANCELLED, (), samples=False, ttfb_ms=None, ttfa_ms=None)
    assert "no audio" in check_svg(bare.plot(tmp_path / "bare.svg"))


@pytest.mark.usefixtures("matplotlib_installed")
def test_a_speakers_utterances_are_bands_on_one_axis(tmp_path: Path) -> None:
    first = make_report(request_time=10.0)
    second = make_report(
        Outcome.CANCELLED,
        ((300.0, S.PLAYING, C.THRESHOLD_REACHED), (700.0, S.DONE, C.CANCELLED)),
        request_time=11.0,
    )
    combined = _combine([first, second], utterances=True)
    assert [u.index for u in combined.utterances] == [0, 1]
    assert combined.utterances[1].start_ms == pytest.approx(1000.0)
    assert combined.timeline[-1].t_ms == pytest.approx(1700.0)  # on the first's axis
    text = check_svg(combined.plot(tmp_path / "speaker.svg"))
    assert "#0" in text
    assert "#1" in text
    assert "barge-in" in text


def test_plot_refuses_other_endings(tmp_path: Path) -> None:
    with pytest.raises(tts.ConfigError, match=r"\.png or \.svg"):
        make_report().plot(tmp_path / "x.pdf")


def test_plot_without_matplotlib_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(tts.MissingDependencyError, match=r"pip install 'trio-tts-stream\[plot\]'"):
        make_report().plot(tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# -- recording the series ------------------------------------------------------------------


def test_samples_stay_bounded_by_decimation() -> None:
    m = MetricsRecorder()
    now = 0.0
    recorded = 0
    for _ in range(200_000):
        now += 0.001
        if now >= m.next_sample_at:
            m.on_sample(now, now, now, 100.0)
            recorded += 1
    assert len(m.samples) < MAX_SAMPLES
    assert m.sample_interval_s > SAMPLE_INTERVAL_S
    assert recorded < 200_000 * 0.001 / SAMPLE_INTERVAL_S  # the interval was respected
    times = [s[0] for s in m.samples]
    assert times == sorted(times)
    assert times[-1] > 199.0  # the recent end is there


def test_network_events_are_noted_with_their_time() -> None:
    m = MetricsRecorder()
    m.on_request(1.0)
    m.on_bytes(100, 1.1)
    m.stalls = 1
    m.on_bytes(100, 2.5)
    m.reconnects += 1
    m.on_sample(3.0, 0.1, 0.05, 20.0)
    assert m.events == [(2.5, "stall"), (3.0, "reconnect")]


def test_to_dict_is_json_ready_with_the_series() -> None:
    report = make_report(network_events=(NetworkEvent(5.0, "retry"),))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["samples"][0] == {
        "t_ms": 120.0,
        "bytes_received": 1200,
        "decoded_s": 0.025,
        "played_s": 0.0,
        "buffered_ms": 40.0,
    }
    assert data["network_events"] == [{"t_ms": 5.0, "kind": "retry"}]
    assert data["utterances"] == []


def test_combined_samples_sum_the_counters() -> None:
    a = make_report(request_time=0.0)
    b = make_report(request_time=0.5)
    merged = combine_series([a, b])["samples"]
    assert merged[-1].bytes_received == a.samples[-1].bytes_received * 2
    assert merged[-1].played_s == pytest.approx(a.samples[-1].played_s * 2)
    assert [s.t_ms for s in merged] == sorted(s.t_ms for s in merged)


# -- the CLI -----------------------------------------------------------------------------------


def test_cli_plot_without_matplotlib_exits_2_before_any_request(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    # Port 9 (discard) is never contacted: the check comes first.
    code = _cli.main(
        [
            "say",
            "hi",
            "--null",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--plot",
            f"{tmp_path}/x.png",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "pip install 'trio-tts-stream[plot]'" in err
    assert "Traceback" not in err


def test_cli_plot_needs_png_or_svg(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = _cli.main(["say", "hi", "--null", "--plot", str(tmp_path / "x.jpg")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == f"error: --plot FILE must end in .png or .svg, not '{tmp_path}/x.jpg'"


@pytest.mark.usefixtures("matplotlib_installed")
def test_cli_plots_a_rebuffering_playback(tmp_path: Path) -> None:
    out = tmp_path / "timeline.svg"
    # The body pauses for 0.8 s after 12 kB (0.25 s of audio): the 150 ms buffered run
    # out, an underrun, rebuffering.
    with serve_process(
        "--ttfb-ms", "100", "--realtime-factor", "1.5", "--jitter-ms", "30",
        "--stall-after-bytes", "12000", "--stall-ms", "800",
    ) as pausing:  # fmt: skip
        result = run_cli(
            "say", "A short sentence, then a pause.", "--base-url", pausing, "--null",
            "--stats", "--plot", str(out),
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"plot written to {out}"
    text = check_svg(out)
    for word in ("TTFB", "first audio", "rebuffering", "underrun", "no data"):
        assert word in text
