"""Running the CLI as a user does: a clean environment, `say`, and a `serve` process."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator

__all__ = ["clean_env", "run_cli", "serve_process"]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any setting the CLI reads, plus ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OPENAI_", "TRIO_TTS_STREAM_", "VOICEMODE_"))
    }
    env.update(extra)
    return env


def run_cli(
    *args: str, stdin: str | None = None, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m trio_tts_stream ARGS``; never raises for a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "trio_tts_stream", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env if env is not None else clean_env(),
        check=False,
    )


@contextlib.contextmanager
def serve_process(*args: str) -> Iterator[str]:
    """``python -m trio_tts_stream serve --port 0 ARGS``; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "trio_tts_stream", "serve", "--port", "0", *args],
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"(https?://127\.0\.0\.1:\d+/v1)", line)
        assert match, f"serve printed {line!r}"
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
