"""Measurement helpers shared by the benchmark runner and its worker processes.

Everything here is small and synchronous: reading a process's memory from
``/proc/self/status``, summarising repeated runs, choosing a text that the test server's
``tone`` engine speaks for a given time (and the body it sends for it), starting the test
server in its own process, and running a worker process that prints one JSON object.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

# The audio rig of the test suite (tests/_audio_rig.py) is shared with the benchmarks.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

if TYPE_CHECKING:
    from _audio_rig import PulseServer

__all__ = [
    "BENCH_DIR",
    "SAMPLE_RATE",
    "BenchmarkError",
    "PulseNullSink",
    "ServerProcess",
    "Spread",
    "audio_seconds",
    "markdown_table",
    "peak_rss_mib",
    "response_body",
    "rss_mib",
    "run_worker",
    "text_for_seconds",
]

SAMPLE_RATE = 24000
"""Sample rate of the test server's audio."""

BENCH_DIR = Path(__file__).resolve().parent
"""The ``benchmarks`` directory (the worker script lives here)."""

_PHRASE = (
    "streaming speech plays while the rest of the answer is still on its way so the "
    "listener hears the first word after a fraction of a second instead of waiting for "
    "the whole reply to download"
)


class BenchmarkError(RuntimeError):
    """A benchmark could not run (a process failed, an output was malformed)."""


# --------------------------------------------------------------------------------------
# Memory


def _status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (Linux), or ``None`` elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mib() -> float:
    """Resident set size of this process now, in MiB (``VmRSS``)."""
    kib = _status_kib("VmRSS")
    if kib is None:  # not Linux: the peak is the best we have
        return peak_rss_mib()
    return kib / 1024


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (``VmHWM``, else ``ru_maxrss``)."""
    kib = _status_kib("VmHWM")
    if kib is None:
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kib = maxrss // 1024 if sys.platform == "darwin" else maxrss  # macOS counts bytes
    return kib / 1024


# --------------------------------------------------------------------------------------
# Statistics


@dataclass(frozen=True)
class Spread:
    """Median, minimum and maximum of repeated measurements.

    Attributes:
        median: The median.
        min: The least value.
        max: The greatest value.
        n: How many values.
    """

    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        """Summarise ``values``.

        Raises:
            ValueError: ``values`` is empty.
        """
        data = list(values)
        if not data:
            raise ValueError("no values to summarise")
        return cls(statistics.median(data), min(data), max(data), len(data))

    def to_dict(self, digits: int = 3) -> dict[str, float | int]:
        """JSON-ready dict."""
        return {
            "median": round(self.median, digits),
            "min": round(self.min, digits),
            "max": round(self.max, digits),
            "n": self.n,
        }

    def format(self, fmt: str = ".0f") -> str:
        """``median (min-max)``, or just the value when all are equal."""
        if self.min == self.max:
            return format(self.median, fmt)
        return f"{self.median:{fmt}} ({self.min:{fmt}}-{self.max:{fmt}})"


# --------------------------------------------------------------------------------------
# Texts of a given spoken length


def audio_seconds(text: str, *, speed: float = 1.0) -> float:
    """Seconds of audio the test server's ``tone`` engine returns for ``text``.

    Imports :mod:`trio_tts_stream.testing` (which may load PyAV): call it in the runner,
    never in a client process whose memory is measured.
    """
    from trio_tts_stream.testing import tone_frames

    return tone_frames(text, speed=speed, sample_rate=SAMPLE_RATE) / SAMPLE_RATE


def text_for_seconds(seconds: float, *, speed: float = 1.0) -> str:
    """A deterministic English-looking text that the ``tone`` engine speaks in ``seconds``.

    The engine's duration is proportional to the number of characters (65 ms per
    character at speed 1.0), so the result is within one character of ``seconds``. Like
    :func:`audio_seconds`, for the runner only.
    """
    vocabulary = _PHRASE.split()
    per_char = audio_seconds("x" * 1000, speed=speed) / 1000
    n = max(1, round(seconds / per_char))
    words: list[str] = []
    length = -1
    i = 0
    while length < n:
        word = vocabulary[i % len(vocabulary)]
        words.append(word)
        length += len(word) + 1
        i += 1
    text = " ".join(words)[:n]
    return text[:-1] + "." if text.endswith(" ") else text


def response_body(text: str, response_format: str) -> bytes:
    """Exactly the body the test server (default options) sends for ``text`` in
    ``response_format``: what ``TestServer.render(text, response_format=...)`` returns.

    Like :func:`audio_seconds`, for the runner only (it encodes with PyAV).

    Raises:
        ValueError: The format is not one the test server can encode here.
    """
    from trio_tts_stream.testing import render_chunks

    return b"".join(render_chunks(text, response_format=response_format))


# --------------------------------------------------------------------------------------
# Processes


class ServerProcess:
    """``python -m trio_tts_stream serve --port 0 ...`` in its own process.

    Use as a context manager; :attr:`base_url` is the URL the server announced on the first
    line of its stderr. Its CPU time is not the client's.

    Args:
        ttfb_ms: The server's time to first byte.
        realtime_factor: Multiple of real time at which audio is released; ``None`` for as
            fast as the client reads.
        chunk_ms: Audio per HTTP chunk.
        extra_args: More ``serve`` options (the fault flags: ``--bandwidth-kbps``, ...).
        timeout: Seconds to wait for the announcement.
        cpus: Pin the server to these CPUs (Linux), e.g. to keep it off the client's.
    """

    def __init__(
        self,
        *,
        ttfb_ms: float = 0.0,
        realtime_factor: float | None = None,
        chunk_ms: float = 20.0,
        extra_args: Sequence[str] = (),
        timeout: float = 20.0,
        cpus: set[int] | None = None,
    ) -> None:
        self.cpus = cpus
        self.argv = [
            sys.executable,
            "-m",
            "trio_tts_stream",
            "serve",
            "--port",
            "0",
            "--ttfb-ms",
            f"{ttfb_ms:g}",
            "--chunk-ms",
            f"{chunk_ms:g}",
        ]
        if realtime_factor is not None:
            self.argv += ["--realtime-factor", f"{realtime_factor:g}"]
        self.argv += list(extra_args)
        self.timeout = timeout
        self.base_url = ""
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> ServerProcess:
        process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._process = process
        if self.cpus is not None:
            os.sched_setaffinity(process.pid, self.cpus)
        stderr = process.stderr
        assert stderr is not None
        lines: list[str] = []

        def drain() -> None:
            # The first line is the announcement; then keep reading so that the server
            # never blocks on a full pipe.
            for line in stderr:
                lines.append(line)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        deadline = time.monotonic() + self.timeout
        while not lines and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        announced = lines[0].strip() if lines else ""
        if not announced.startswith("serving") or "http" not in announced:
            self.__exit__(None, None, None)
            reader.join(1)
            raise BenchmarkError(
                f"the test server did not start ({' '.join(self.argv)}): {''.join(lines).strip()!r}"
            )
        self.base_url = announced.split()[-1]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class PulseNullSink:
    """A private PulseAudio daemon whose only sink is a null sink ``out`` (24 kHz mono s16le,
    ``norewinds=1``), for the optional speaker benchmark (see AUDIO-FACTS.md).

    Use as a context manager; give clients :attr:`env` (``PULSE_SERVER``). The daemon reads
    no configuration and keeps its files in a temporary directory removed on exit.
    """

    def __init__(self, *, rate: int = SAMPLE_RATE, timeout: float = 10.0) -> None:
        self.rate = rate
        self.timeout = timeout
        self._dir: Path | None = None
        self._server: PulseServer | None = None

    @staticmethod
    def missing() -> str | None:
        """Why the speaker benchmark cannot run here, or ``None`` if it can."""
        for program in ("pulseaudio", "parec"):
            if shutil.which(program) is None:
                return f"{program} not found (apt-get install pulseaudio pulseaudio-utils)"
        if ctypes.util.find_library("portaudio") is None:
            return "PortAudio not found (apt-get install libportaudio2)"
        return None

    @property
    def env(self) -> dict[str, str]:
        """This process's environment, pointed at the daemon."""
        assert self._server is not None
        env = dict(os.environ)
        env["PULSE_SERVER"] = self._server.server
        return env

    def __enter__(self) -> PulseNullSink:
        # The test suite's audio rig starts the daemon (one copy of that knowledge).
        from _audio_rig import RigError, start_pulseaudio

        self._dir = Path(tempfile.mkdtemp(prefix="ttsbench."))
        try:
            self._server = start_pulseaudio(self._dir, rate=self.rate, timeout=self.timeout)
        except RigError as exc:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            raise BenchmarkError(f"pulseaudio did not start: {exc}") from exc
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def run_worker(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 600.0
) -> dict[str, Any]:
    """Run ``benchmarks/_worker.py ARGS`` in a fresh interpreter and parse its JSON output.

    Raises:
        BenchmarkError: The worker failed or printed no JSON object.
    """
    argv = [sys.executable, str(BENCH_DIR / "_worker.py"), *args]
    full_env = dict(os.environ if env is None else env)
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, env=full_env, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkError(f"worker timed out after {timeout:g} s: {' '.join(args)}") from exc
    if done.returncode != 0:
        raise BenchmarkError(
            f"worker {' '.join(args)} failed with status {done.returncode}:\n"
            f"{done.stderr.strip()[-3000:]}"
        )
    try:
        result = json.loads(done.stdout)
    except ValueError as exc:
        raise BenchmarkError(f"worker printed no JSON: {done.stdout[-500:]!r}") from exc
    if not isinstance(result, dict):
        raise BenchmarkError(f"worker printed {type(result).__name__}, not an object")
    return result


# --------------------------------------------------------------------------------------
# Output


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table with aligned columns."""
    body = [list(map(str, row)) for row in rows]
    widths = [len(h) for h in headers]
    for row in body:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in body)])
