"""``say -`` through the speaker: a pipe is spoken sentence by sentence as it arrives;
``--cache-dir`` replays a repeated phrase without a request."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _cli_helpers import clean_env, run_cli
from test_cli import read_wav

from trio_tts_stream.testing import synthesize_tone

FIRST = "The first sentence arrives alone."
SECOND = "The **second** one comes much later."


def test_pipe_speaks_the_first_sentence_before_stdin_closes(served: str, tmp_path: Path) -> None:
    out = tmp_path / "pipe.wav"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trio_tts_stream",
            "say",
            "-",
            "--base-url",
            served,
            "--output",
            str(out),
            "--stats",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(FIRST + " ")
        proc.stdin.flush()
        deadline = time.monotonic() + 30
        # The WAV file grows past its header while stdin is still open.
        while not (out.exists() and out.stat().st_size > 44 + 4800):
            assert time.monotonic() < deadline, "nothing was spoken before stdin closed"
            assert proc.poll() is None
            time.sleep(0.05)
        stdout, stderr = proc.communicate(SECOND, timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    second_spoken = SECOND.replace("**", "")  # markdown is not read aloud
    want = np.concatenate([synthesize_tone(FIRST), synthesize_tone(second_spoken)])
    np.testing.assert_array_equal(read_wav(out), want)
    assert "utterances" in stdout
    assert "2 completed" in stdout


def test_cache_dir_replays_a_phrase_without_a_request(served: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = (
        "say",
        "Cached phrase.",
        "--base-url",
        served,
        "--null",
        "--stats",
        "--cache-dir",
        str(cache),
    )
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert "0 hits, 1 misses" in first.stdout
    assert len(list(cache.glob("*.tts"))) == 1
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr
    assert "1 hits, 0 misses" in second.stdout


def test_pipe_with_nothing_speakable_is_one_clear_error(served: str) -> None:
    result = run_cli("say", "-", "--base-url", served, "--null", stdin="```\ncode only\n```\n")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: no text to speak: the input had nothing speakable"
    ]
