"""Device faults on the real audio path: how often PortAudio really calls back, and how
soon ``say`` gives up when the sound server dies or hangs.

1. **Callback gaps** (what the watchdog's threshold must tolerate): a PortAudio stream
   (10 ms blocks, ``latency="low"``, the ``pulse`` device, a private PulseAudio null
   sink) runs for ``--seconds`` idle, then as long again with both cores saturated by
   busy-looping processes; every callback's :func:`time.perf_counter` is recorded and
   the largest and 99.9th-percentile gaps are reported.
2. **Fault to exit**: ``python -m trio_tts_stream say --device pulse`` plays a long text
   from a ``serve`` process (2x real time); once the monitor has rendered sound, the
   daemon is killed (SIGKILL: a crash, an unplugged headset) or frozen (SIGSTOP: a hung
   server); the time from the signal to the process's exit is reported (median of
   ``--runs``), with its exit status and the one line it printed.

Usage::

    python benchmarks/device_faults.py [--seconds 10] [--runs 3]

Prints a markdown report on stdout (progress on stderr); the numbers are in
docs/benchmarks.rst ("Device faults").
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _audio_rig import ParecRecorder, PulseServer, start_pulseaudio

ROOT = Path(__file__).resolve().parents[1]
LONG = "A long answer that goes on for several seconds, so that the sound dies under it. " * 4


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def private_pulse() -> Iterator[PulseServer]:
    directory = Path(tempfile.mkdtemp(prefix="tts-bench-fault-"))
    server = start_pulseaudio(directory)
    try:
        yield server
    finally:
        for pid in _daemon_pids(server):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        server.stop()


def _daemon_pids(server: PulseServer) -> list[int]:
    out = subprocess.run(
        ["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True, check=False
    ).stdout
    return [int(pid) for pid in out.split()]


@contextmanager
def busy_cores(n: int) -> Iterator[None]:
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(max(0, n))]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def callback_gaps(seconds: float, busy: int) -> dict[str, float]:
    """Largest gaps between PortAudio callbacks over ``seconds`` with ``busy`` spinners."""
    import sounddevice as sd

    stamps = np.zeros(int(seconds * 200) + 1000)
    count = [0]

    def callback(outdata: memoryview, frames: int, time_info: object, status: object) -> None:
        i = count[0]
        if i < len(stamps):
            stamps[i] = time.perf_counter()
            count[0] = i + 1
        outdata[:] = bytes(len(outdata))

    with busy_cores(busy):
        stream = sd.RawOutputStream(
            samplerate=24000,
            channels=1,
            dtype="int16",
            blocksize=240,
            latency="low",
            device="pulse",
            callback=callback,
        )
        with stream:
            time.sleep(seconds)
    gaps = np.diff(stamps[: count[0]]) * 1000
    return {
        "callbacks": float(count[0]),
        "max_ms": float(gaps.max()),
        "p999_ms": float(np.percentile(gaps, 99.9)),
        "median_ms": float(np.median(gaps)),
    }


def fault_to_exit(fault: str) -> tuple[float, int, str]:
    """Seconds from the signal to ``say``'s exit, its status and its stderr."""
    with private_pulse() as pulse:
        serve = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trio_tts_stream",
                "serve",
                "--port",
                "0",
                "--realtime-factor",
                "2",
            ],
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert serve.stderr is not None
            match = re.search(r"(http://127\.0\.0\.1:\d+/v1)", serve.stderr.readline())
            assert match, "serve did not print its URL"
            env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
            env["PULSE_SERVER"] = pulse.server
            recorder = ParecRecorder(env=env).start()
            say = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "trio_tts_stream",
                    "say",
                    "--device",
                    "pulse",
                    "--base-url",
                    match.group(1),
                    LONG,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            try:
                deadline = time.perf_counter() + 30
                while not np.any(recorder.peek()) and time.perf_counter() < deadline:
                    time.sleep(0.02)
            finally:
                recorder.close()
            time.sleep(0.5)
            sig = signal.SIGKILL if fault == "kill" else signal.SIGSTOP
            at = time.perf_counter()
            for pid in _daemon_pids(pulse):
                os.kill(pid, sig)
            _, err = say.communicate(timeout=60)
            took = time.perf_counter() - at
            return took, say.returncode, err.strip()
        finally:
            serve.terminate()
            serve.wait(10)


def _watch_load(stop: threading.Event, samples: list[float]) -> None:
    while not stop.wait(0.5):
        samples.append(os.getloadavg()[0])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    print(f"# Device faults ({cores} cores, load {os.getloadavg()[0]:.2f} at start)\n")
    with private_pulse() as pulse:
        os.environ["PULSE_SERVER"] = pulse.server
        rows = []
        for label, busy in (("idle", 0), (f"{cores + 1} busy-looping processes", cores + 1)):
            _log(f"callback gaps, {label} ...")
            gaps = callback_gaps(args.seconds, busy)
            rows.append((label, gaps))
    print("| machine | callbacks | median gap | p99.9 gap | largest gap |")
    print("|---|---|---|---|---|")
    for label, g in rows:
        print(
            f"| {label} | {g['callbacks']:.0f} | {g['median_ms']:.1f} ms | "
            f"{g['p999_ms']:.1f} ms | {g['max_ms']:.1f} ms |"
        )
    print()
    print("| fault | signal to exit (median, min-max) | exit status | stderr |")
    print("|---|---|---|---|")
    for fault in ("kill", "freeze"):
        results = []
        for run in range(args.runs):
            _log(f"{fault}, run {run + 1} ...")
            results.append(fault_to_exit(fault))
        times = [t for t, _, _ in results]
        codes = sorted({c for _, c, _ in results})
        lines = {e for _, _, e in results}
        line = " / ".join(sorted(lines)).replace("|", "\\|")
        print(
            f"| {fault} | {statistics.median(times):.2f} s ({min(times):.2f}-{max(times):.2f}) "
            f"| {codes} | {line} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
