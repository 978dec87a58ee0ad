"""Start-up of ``python -m trio_tts_stream say``: launch -> request -> device -> sound.

Run: ``python benchmarks/startup.py`` (needs pulseaudio, parec and PortAudio; the rig of
tests/_audio_rig.py starts a private daemon; about 30 seconds). Prints a markdown table
and a last line ``RESULT <json>`` (with the core count, the date and the load average);
``--json PATH`` also writes that JSON to ``PATH``.

``say`` runs as a user runs it: a fresh ``python -m trio_tts_stream say TEXT --base-url
URL --json`` process per launch, on the default output device (ALSA ``pulse`` into the
rig's null sink), ``pcm``, default playout. The server is the bundled test server (tone
engine, TTFB 300 ms, real time) in a thread of *this* process, so that it can stamp when
each request arrived on the same clock (:func:`time.perf_counter`, system-wide
``CLOCK_MONOTONIC``) as the launch and as ``parec``'s recording of the monitor. One
warm-up launch (page cache), then ``--runs`` (5) measured ones; medians (min-max).

Phases:

* **launch -> request at server**: ``perf_counter`` just before ``subprocess.Popen`` to
  the server's receipt of the whole request (``RecordedRequest.received_at``).
* **request -> device ready** (the report's ``device_ready_ms``: the request left ->
  the output stream was running). Negative-free and below ``ttfb_ms`` means the device
  was ready before the first byte.
* **first byte -> first sound at the monitor**: the server sends the first body byte at
  ``received_at + TTFB``; the first sound is the first non-zero monitor sample after the
  request (the device plays exact zeros until then), timed as the rig's
  :class:`Recording` does (~2 ms). The library's own figure is ``ttfa_ms - ttfb_ms``.
* the CLI's own ``launch -> request sent`` (``launch_ms``: process start, from
  ``/proc``, 10 ms resolution) for comparison; ``python -c pass`` and ``say --help``
  give the interpreter's and the imports' share.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _audio_rig import Recording, open_audio_rig
from _measure import Spread, markdown_table, text_for_seconds

from trio_tts_stream.server import SpeechServer, open_server

TTFB_MS = 300.0
TEXT_SECONDS = 1.5
RUNS = 5


class ServerThread:
    """The test server in a thread of this process, with its clock's ``perf_counter``
    offset (trio's system clock is ``perf_counter`` plus a constant)."""

    def __init__(self, ttfb_ms: float) -> None:
        self.ttfb_ms = ttfb_ms
        self.server: SpeechServer | None = None
        self.offset = 0.0  # perf_counter() - trio.current_time()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._ready: queue.Queue[BaseException | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="tts-server", daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        error = self._ready.get(timeout=30)
        if error is not None:
            raise error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(10)

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return self.server.base_url

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to __enter__ if it did not start
            self._ready.put(exc)

    async def _main(self) -> None:
        self.offset = time.perf_counter() - trio.current_time()
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with open_server(ttfb_ms=self.ttfb_ms, realtime_factor=1.0) as server:
            self.server = server
            self._ready.put(None)
            await self._stop.wait()

    def received(self, index: int) -> float:
        """When request ``index`` arrived, on ``perf_counter``."""
        assert self.server is not None
        return self.server.requests[index].received_at + self.offset


def child_environment(pycache: Path) -> dict[str, str]:
    """The launched processes' environment: bytecode cached in ``pycache`` (as an
    installed package has it; ``PYTHONDONTWRITEBYTECODE`` would make every launch compile
    the package's modules again), nothing written into the checkout."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def launch_times(argv: Sequence[str], runs: int, env: dict[str, str]) -> Spread:
    """Median wall time of ``runs`` launches of ``argv`` to its exit, ms."""
    times = []
    for _ in range(runs + 1):
        t = time.perf_counter()
        subprocess.run(
            argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        times.append((time.perf_counter() - t) * 1000)
    return Spread.of(times[1:])


def say_once(server: ServerThread, text: str, env: dict[str, str]) -> dict[str, Any]:
    """One launch of ``say``; the raw times (perf_counter) and the report."""
    index = len(server.server.requests) if server.server else 0
    argv = [sys.executable, "-m", "trio_tts_stream", "say", text]
    argv += ["--base-url", server.base_url, "--json"]
    launched = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    ended = time.perf_counter()
    if done.returncode != 0:
        raise RuntimeError(f"say failed ({done.returncode}): {done.stderr.strip()}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "launched": launched,
        "received": server.received(index),
        "ended": ended,
        "report": report,
    }


def analyse(rec: Recording, run: dict[str, Any]) -> dict[str, Any]:
    report = run["report"]
    received = run["received"]
    first_byte = received + TTFB_MS / 1000
    start = max(0, rec.index_at(received))
    k = rec.first_sound(start=start)
    sound = rec.time_of(k) if k >= 0 else None
    ttfb, ttfa = report.get("ttfb_ms"), report.get("ttfa_ms")
    ready = report.get("device_ready_ms")
    return {
        "launch_to_request_ms": (received - run["launched"]) * 1000,
        "cli_launch_ms": report.get("launch_ms"),
        "device_ready_ms": ready,
        "ttfb_ms": ttfb,
        "device_before_first_byte": ready is not None and ttfb is not None and ready < ttfb,
        "first_byte_to_sound_monitor_ms": None if sound is None else (sound - first_byte) * 1000,
        "first_byte_to_sound_report_ms": None if ttfa is None or ttfb is None else ttfa - ttfb,
        "launch_to_sound_ms": None if sound is None else (sound - run["launched"]) * 1000,
        "launch_to_exit_ms": (run["ended"] - run["launched"]) * 1000,
    }


def _spread(runs: Sequence[dict[str, Any]], key: str) -> Spread | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return Spread.of(values) if values else None


def main(runs: int, json_path: Path | None) -> None:
    text = text_for_seconds(TEXT_SECONDS)
    with (
        tempfile.TemporaryDirectory(prefix="tts-startup-") as pycache,
        open_audio_rig() as rig,
        ServerThread(TTFB_MS) as server,
    ):
        env = child_environment(Path(pycache))  # after the rig: PULSE_SERVER, ALSA config
        python_pass = launch_times([sys.executable, "-c", "pass"], runs, env)
        say_help = launch_times(
            [sys.executable, "-m", "trio_tts_stream", "say", "--help"], runs, env
        )
        recorder = rig.recorder().start()
        try:
            say_once(server, text, env)  # warm-up: page cache, PulseAudio's first client
            measured = []
            for _ in range(runs):
                measured.append(say_once(server, text, env))
                time.sleep(0.3)
        finally:
            rec = recorder.stop()
    per_run = [analyse(rec, run) for run in measured]
    keys = [
        ("launch_to_request_ms", "launch -> request at server"),
        ("cli_launch_ms", "launch -> request sent (CLI's launch_ms)"),
        ("device_ready_ms", "request -> device ready (report)"),
        ("ttfb_ms", "request -> first byte (report)"),
        ("first_byte_to_sound_monitor_ms", "first byte -> first sound (monitor)"),
        ("first_byte_to_sound_report_ms", "first byte -> first sound (report)"),
        ("launch_to_sound_ms", "launch -> first sound (monitor)"),
        ("launch_to_exit_ms", "launch -> exit"),
    ]
    rows = [["`python -c pass`", python_pass.format()], ["`say --help`", say_help.format()]]
    summary: dict[str, Any] = {
        "python_pass_ms": python_pass.to_dict(1),
        "say_help_ms": say_help.to_dict(1),
    }
    for key, label in keys:
        spread = _spread(per_run, key)
        rows.append([label, "-" if spread is None else spread.format()])
        summary[key] = None if spread is None else spread.to_dict(1)
    before = sum(r["device_before_first_byte"] for r in per_run)
    rows.append(["device ready before first byte", f"{before} of {len(per_run)}"])
    summary["device_before_first_byte"] = f"{before}/{len(per_run)}"
    print(
        f"Start-up of `say`, median (min-max) of {runs} launches, ms; server TTFB "
        f"{TTFB_MS:g} ms; {os.cpu_count()} cores\n"
    )
    print(markdown_table(["phase", "ms"], rows))
    result = {
        "benchmark": "startup",
        "runs": runs,
        "ttfb_ms": TTFB_MS,
        "cores": os.cpu_count(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "loadavg": list(os.getloadavg()),
        "summary": summary,
        "per_run": per_run,
        "median_check": statistics.median(r["launch_to_request_ms"] for r in per_run),
    }
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        print(f"wrote {json_path}", file=sys.stderr)
    print("RESULT " + json.dumps(result, separators=(",", ":")))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Start-up phases of `say`.")
    parser.add_argument("--runs", type=int, default=RUNS, help="measured launches (default 5)")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the results here")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    main(args.runs, args.json)
