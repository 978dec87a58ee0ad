"""Fast start (issue 16): `say` imports only what it uses, the request goes out first,
the output opens while it is in flight, and the report says how long each phase took."""

from __future__ import annotations

import json
import subprocess
import sys

import trio
from _cli_helpers import run_cli

import trio_tts_stream as tts
from trio_tts_stream.testing import open_test_server

HEAVY = ("av", "numpy", "sounddevice", "trio_tts_stream.testing", "trio_tts_stream.server")


def modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_importing_the_cli_loads_no_server_pyav_numpy_or_portaudio() -> None:
    loaded = modules_after("import trio_tts_stream._cli")
    assert not loaded & set(HEAVY)


def test_the_say_parser_leaves_out_the_serve_options() -> None:
    loaded = modules_after(
        "from trio_tts_stream._cli import build_parser\n"
        "build_parser(serve_options=False).parse_args(['say', 'hi'])"
    )
    assert "av" not in loaded
    assert "trio_tts_stream.server" not in loaded


def test_serve_help_still_lists_its_options() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    assert "--ttfb-ms" in result.stdout


def test_lazy_exports_resolve() -> None:
    assert tts.PlaybackReport.__name__ == "PlaybackReport"
    assert "speak" in dir(tts)


class RecordingSink(tts.NullSink):
    """A fixed-format null sink that notes when it was opened (trio's clock)."""

    opened_at: float | None = None

    async def open(self, fmt: tts.AudioFormat) -> None:
        await super().open(fmt)
        if self.opened_at is None:
            self.opened_at = trio.current_time()


async def test_a_fixed_output_opens_before_the_first_byte(autojump_clock: trio.abc.Clock) -> None:
    async with (
        open_test_server(ttfb_ms=300) as server,
        RecordingSink(samplerate=24000, channels=1) as sink,
    ):
        request = tts.SpeechRequest("Opened while in flight.", base_url=server.base_url)
        report = await tts.play(request, sink=sink)
    assert report.request_time is not None
    assert report.ttfb_ms is not None
    assert sink.opened_at is not None
    first_byte = report.request_time + report.ttfb_ms / 1000
    assert sink.opened_at < first_byte
    assert report.device_ready_ms is not None
    assert report.device_ready_ms < report.ttfb_ms
    assert report.first_byte_to_audio_ms == report.ttfa_ms - report.ttfb_ms  # type: ignore[operator]
    assert {"launch_ms", "device_ready_ms", "first_byte_to_audio_ms"} <= set(report.to_dict())


async def test_a_mismatched_rate_is_resampled_not_reopened(autojump_clock: trio.abc.Clock) -> None:
    async with (
        open_test_server(ttfb_ms=300) as server,
        RecordingSink(samplerate=48000, channels=1) as sink,
    ):
        request = tts.SpeechRequest("Twice the rate.", base_url=server.base_url)
        report = await tts.play(request, sink=sink)
    assert report.sample_rate == 24000
    assert report.output_sample_rate == 48000
    assert report.frames_played == round(report.audio_s * 48000)


def test_say_stats_and_json_show_the_startup_phases(served: str) -> None:
    result = run_cli("say", "Quick.", "--base-url", served, "--null", "--json", "--stats")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["launch_ms"] is not None
    assert report["launch_ms"] > 0
    assert report["device_ready_ms"] is not None
    assert report["first_byte_to_audio_ms"] is not None
    for row in ("launch -> request sent", "request -> device ready", "first byte -> first sound"):
        assert row in result.stderr
