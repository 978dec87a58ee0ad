"""The CLI as a user runs it: subprocesses against `python -m trio_tts_stream serve`."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from _cli_helpers import clean_env, run_cli

from trio_tts_stream.testing import synthesize_tone

TEXT = "Hello from the command line, streaming as it downloads."
METRIC_KEYS = {
    "ttfb_ms",
    "ttfa_ms",
    "underruns",
    "underrun_ms",
    "buffer_ms_avg",
    "buffer_ms_min",
    "bytes_received",
    "throughput_kbps",
    "decode_ms_mean",
    "decode_ms_p95",
    "reconnects",
    "frames_played",
    "audio_s",
    "outcome",
    "timeline",
    "mode",
    "format",
    "sample_rate",
    "channels",
    "buffer_ms",
}


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


@pytest.mark.parametrize("fmt", ["pcm", "wav"])
def test_say_null_json_reports_streaming_latency(served: str, fmt: str) -> None:
    result = run_cli("say", TEXT, "--base-url", served, "--null", "--json", "--format", fmt)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert set(report) >= METRIC_KEYS
    assert report["outcome"] == "completed"
    assert report["mode"] == "stream"
    assert report["format"] == fmt
    assert (report["sample_rate"], report["channels"], report["buffer_ms"]) == (24000, 1, 150)
    assert report["underruns"] == 0
    assert report["ttfb_ms"] >= 300
    assert report["ttfa_ms"] - report["ttfb_ms"] <= report["buffer_ms"] + 30
    assert report["frames_played"] == len(synthesize_tone(TEXT))


def test_stream_and_no_stream_outputs_are_identical(served: str, tmp_path: Path) -> None:
    streamed, buffered = tmp_path / "streamed.wav", tmp_path / "buffered.wav"
    first = run_cli("say", TEXT, "--base-url", served, "--output", str(streamed), "--json")
    second = run_cli(
        "say", TEXT, "--base-url", served, "--output", str(buffered), "--no-stream", "--json"
    )
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert json.loads(first.stdout)["mode"] == "stream"
    assert json.loads(second.stdout)["mode"] == "buffered"
    a, b = read_wav(streamed), read_wav(buffered)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, synthesize_tone(TEXT))


def test_text_from_stdin(served: str, tmp_path: Path) -> None:
    out = tmp_path / "stdin.wav"
    result = run_cli("say", "-", "--base-url", served, "--output", str(out), stdin=TEXT + "\n")
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(read_wav(out), synthesize_tone(TEXT))


def test_buffer_options_reach_the_report(served: str) -> None:
    result = run_cli(
        "say",
        TEXT,
        "--base-url",
        served,
        "--null",
        "--json",
        "--buffer-ms",
        "400",
        "--max-buffer",
        "1.5",
        "--chunk-size",
        "1000",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["buffer_ms"] == 400
    # 400 ms must be buffered first; the server sends at 2x real time, so that takes
    # ~200 ms after the first byte less what the first chunks carried. A quarter of the
    # buffer separates "the option reached the controller" (>= ~190 ms) from the 150 ms
    # default (~75 ms) without depending on how loaded the machine is.
    assert report["ttfa_ms"] - report["ttfb_ms"] >= 400 / 4


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--voice", "nobody"], 3, "server said"),
        (["--speed", "9"], 2, "speed"),
        (["--buffer-ms", "5000"], 2, "buffer_ms"),
        (["--chunk-size", "zero"], 2, "whole number"),
    ],
)
def test_errors_are_one_line_with_exit_codes(
    served: str, args: list[str], code: int, message: str
) -> None:
    result = run_cli("say", TEXT, "--base-url", served, "--null", *args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_env_variable_is_named(served: str) -> None:
    env = clean_env(TRIO_TTS_STREAM_BUFFER_MS="lots")
    result = subprocess.run(
        [sys.executable, "-m", "trio_tts_stream", "say", TEXT, "--base-url", served, "--null"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 2
    assert "TRIO_TTS_STREAM_BUFFER_MS" in result.stderr


def test_api_key_never_printed(tmp_path: Path) -> None:
    # An https URL nobody listens on: the error must not contain the key.
    result = run_cli(
        "say",
        TEXT,
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--null",
        "--api-key",
        "sk-SECRET-abcdef123456",
    )
    assert result.returncode == 4
    assert "cannot connect" in result.stderr
    assert "SECRET" not in result.stderr + result.stdout


def test_text_from_file_and_stats_table(served: str, tmp_path: Path) -> None:
    text_file = tmp_path / "speech.txt"
    text_file.write_text(TEXT + "\n", encoding="utf-8")
    result = run_cli("say", "--file", str(text_file), "--base-url", served, "--null", "--stats")
    assert result.returncode == 0, result.stderr
    table = dict(line.split("  ", 1) for line in result.stdout.strip().splitlines() if "  " in line)
    assert table["outcome"].strip() == "completed"
    assert table["time to first audio"].strip().endswith(" ms")
    assert table["underruns"].strip().startswith("0 ")
    assert "\r" not in result.stderr  # no live status line when stderr is not a terminal


def test_text_and_file_together_is_an_error(tmp_path: Path) -> None:
    text_file = tmp_path / "t.txt"
    text_file.write_text("x", encoding="utf-8")
    result = run_cli("say", "hello", "--file", str(text_file), "--null")
    assert result.returncode == 2
    assert "not both" in result.stderr


def test_ctrl_c_stops_at_once_with_130(served: str) -> None:
    import signal
    import time

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trio_tts_stream",
            "say",
            TEXT * 4,
            "--base-url",
            served,
            "--null",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        # Start-up (seconds on a loaded machine), then the request, 300 ms TTFB, playing.
        port = int(served.rsplit(":", 1)[1].split("/")[0])
        deadline = time.monotonic() + 30
        while not _connected_to(port):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the CLI never connected"
            time.sleep(0.05)
        time.sleep(1.0)
        assert proc.poll() is None  # 14 s of speech: a good 12 s are left
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted" in err
    # Process exit, including interpreter shutdown (under 0.3 s on an idle machine); far
    # less than the 12 s of speech it would otherwise still play.
    assert elapsed < 4.0


def _connected_to(port: int) -> bool:
    """Whether any socket on this machine has an established TCP connection to ``port``
    on 127.0.0.1 (the tests run one at a time: it is the CLI's)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state = fields[2], fields[3]
        if state == "01" and remote == f"0100007F:{port:04X}":
            return True
    return False
