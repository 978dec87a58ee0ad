"""`say` with nothing configured: the embedded espeak voice over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from _cli_helpers import clean_env, run_cli

pytest.importorskip("espeakng_loader", reason="the espeak extra is not installed")

TEXT = "Hello from the embedded voice."


def test_embedded_default_speaks_into_a_wav(tmp_path: Path) -> None:
    from trio_tts_stream.server._espeak import EspeakEngine

    out = tmp_path / "hello.wav"
    result = run_cli("say", TEXT, "--output", str(out), "--json")
    assert result.returncode == 0, result.stderr
    note = result.stderr.strip().splitlines()
    assert len(note) == 1
    assert "embedded espeak voice" in note[0]
    assert "http://127.0.0.1:" in note[0]
    assert "--base-url" in note[0]
    assert "OPENAI_API_KEY" in note[0]
    report = json.loads(result.stdout)
    assert report["outcome"] == "completed"
    with wave.open(str(out)) as w:
        played = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    expected = EspeakEngine().synthesize_all(TEXT, voice="alloy")
    np.testing.assert_array_equal(played, expected)
    assert len(played) / 24000 > 1.0  # speech, not a blip
    assert np.abs(played.astype(np.int32)).max() > 3000


def test_a_configured_server_is_used_instead(served: str, tmp_path: Path) -> None:
    result = run_cli("say", "hi", "--base-url", served, "--null")
    assert result.returncode == 0, result.stderr
    assert "embedded" not in result.stderr


def test_without_the_extra_it_says_how_to_get_it(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['espeakng_loader'] = None\n"
        "from trio_tts_stream._cli import main\n"
        "raise SystemExit(main(sys.argv[1:]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "say", "Hello", "--null"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
    )
    assert result.returncode == 2
    assert "pip install 'trio-tts-stream[espeak]'" in result.stderr
    assert "--base-url" in result.stderr
    assert "Traceback" not in result.stderr
