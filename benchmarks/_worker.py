"""The client side of the benchmarks, run by ``run.py`` in a fresh process per scenario.

A fresh process per scenario keeps its CPU time and peak RSS the client's alone (the test
server runs in another process) and unmixed with other scenarios. Each command prints
one JSON object on stdout.

Commands:

* ``latency``: speak a text ``--runs`` times into a :class:`~trio_tts_stream.NullSink`
  on trio's real clock, in ``--format`` (``response_format``, default ``pcm``). Per run:
  TTFB (as the report gives it, and as the arrival of the response headers, which the
  test server sends with the first body byte), TTFA, underruns, body bytes, the mode and
  format the player reports, and the process CPU time spent in ``speak()``. For the
  process: RSS after the imports and the peak RSS.
* ``longstream``: play one long stream under ``trio.testing.MockClock(rate=R)``: virtual
  time runs R times faster than real time and the :class:`~trio_tts_stream.NullSink`
  consumes on that clock, so ten minutes of audio play in 600/R seconds while the player
  runs its real code (ring buffer, backpressure, HTTP). RSS is sampled as it plays.
* ``speaker``: like ``latency`` but into a :class:`~trio_tts_stream.SoundDeviceSink` (a
  PulseAudio null sink), recording the sink's monitor with ``parec`` to find when the
  first sample was really played.
* ``network``: speak a text ``--utterances`` times in a row over a degraded link (the
  server's fault flags) into a :class:`~trio_tts_stream.NullSink`, with ``--buffering``
  ``fixed`` (a plain :func:`~trio_tts_stream.play` per utterance with
  ``StreamConfig(underrun_growth=1.0)``), ``default`` (the same with the default
  ``StreamConfig``) or ``adaptive`` (one :func:`~trio_tts_stream.open_player` for all
  utterances). Per utterance: the report's start threshold, TTFA, underruns, underrun
  time, reconnects, stalls, delivery ratio, the wall time of the call and a SHA-256 of
  the samples handed to the sink. With ``--wav PATH`` the sink is a
  :class:`~trio_tts_stream.WavFileSink` instead, and the SHA-256 of the file's samples
  is returned.
* ``decode``: no network and no trio. For each ``--body FORMAT=PATH`` (a response body
  the runner rendered), decode it with ``create_decoder(FORMAT)`` in ``--chunk-size``
  pieces, once to warm up and ``--repeats`` times measured: wall and CPU time per pass,
  wall time of every ``decode()`` call; then feed a new decoder one byte at a time to
  find how many bytes it needs before it returns its first block.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import wave
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import numpy as np
import trio
import trio.lowlevel
import trio.testing
from _measure import peak_rss_mib, rss_mib

import trio_tts_stream as tts

WARMUP_TEXT = "Hello."
"""The uncounted first utterance of ``latency`` and ``speaker`` (0.39 s of tone)."""


class _HeaderTimer:
    """httpx event hooks: when each request was sent and its response headers arrived."""

    def __init__(self) -> None:
        self.sent: float | None = None
        self.headers: float | None = None

    async def on_request(self, request: httpx.Request) -> None:
        self.sent, self.headers = trio.current_time(), None

    async def on_response(self, response: httpx.Response) -> None:
        self.headers = trio.current_time()

    def ttfb_ms(self) -> float | None:
        if self.sent is None or self.headers is None:
            return None
        return (self.headers - self.sent) * 1000


def _client(config: tts.StreamConfig, timer: _HeaderTimer) -> httpx.AsyncClient:
    """One long-lived client per process, as an application keeps one (plain HTTP)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(config.read_timeout_s, connect=config.connect_timeout_s),
        event_hooks={"request": [timer.on_request], "response": [timer.on_response]},
    )


def _report_fields(report: tts.PlaybackReport) -> dict[str, Any]:
    return {
        "outcome": report.outcome.value,
        "ttfb_ms": report.ttfb_ms,
        "ttfa_ms": report.ttfa_ms,
        "underruns": report.underruns,
        "underrun_ms": report.underrun_ms,
        "audio_s": report.audio_s,
        "buffer_ms_avg": report.buffer_ms_avg,
        "buffer_ms_min": report.buffer_ms_min,
        "bytes_received": report.bytes_received,
        "report_mode": report.mode,
        "format": report.format,
        "sample_rate": report.sample_rate,
        "decode_errors": report.decode_errors,
        "decode_ms_p95": report.decode_ms_p95,
    }


# --------------------------------------------------------------------------------------
# latency


async def _latency(args: argparse.Namespace) -> dict[str, Any]:
    config = tts.StreamConfig(streaming=not args.buffered)
    text: str = args.text
    rss_start = rss_mib()
    timer = _HeaderTimer()

    async with _client(config, timer) as client:

        async def once(words: str) -> dict[str, Any]:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            async with tts.NullSink(buffer_s=config.max_buffer_s) as sink:
                report = await tts.speak(
                    words,
                    base_url=args.base_url,
                    api_key="",
                    response_format=args.format,
                    sink=sink,
                    config=config,
                    client=client,
                )
            return {
                **_report_fields(report),
                "ttfb_headers_ms": timer.ttfb_ms(),
                "cpu_s": time.process_time() - cpu0,
                "wall_s": time.perf_counter() - wall0,
            }

        warmup = await once(WARMUP_TEXT)
        rss_warm = rss_mib()
        runs = [await once(text) for _ in range(args.runs)]
    return {
        "mode": "buffered" if args.buffered else "stream",
        "response_format": args.format,
        "text_chars": len(text),
        "warmup": warmup,
        "runs": runs,
        "rss_start_mib": rss_start,
        "rss_after_warmup_mib": rss_warm,
        "rss_end_mib": rss_mib(),
        "peak_rss_mib": peak_rss_mib(),
    }


# --------------------------------------------------------------------------------------
# network


class _HashingNullSink(tts.NullSink):
    """A :class:`~trio_tts_stream.NullSink` that hashes every frame the player writes."""

    def __init__(self, *, buffer_s: float) -> None:
        super().__init__(buffer_s=buffer_s)
        self.digest = hashlib.sha256()
        self.frames = 0

    def write_some(self, block: tts.Block) -> int:
        n = super().write_some(block)
        self.digest.update(np.ascontiguousarray(block[:n]).tobytes())
        self.frames += n
        return n


async def _warmup_bytes() -> AsyncIterator[bytes]:
    """0.4 s of a quiet 24 kHz s16 tone: exercises the player without the server."""
    t = np.arange(9600) / 24000
    pcm = (1000 * np.sin(2 * np.pi * 220 * t)).astype("<i2").tobytes()
    for i in range(0, len(pcm), 4096):
        yield pcm[i : i + 4096]
        await trio.lowlevel.checkpoint()


def _stalled_ms(report: tts.PlaybackReport, wall_s: float) -> float | None:
    """Request-to-end wall time minus TTFA minus the audio: the silence after the first
    sample, timed from outside the library."""
    if report.ttfa_ms is None:
        return None
    return wall_s * 1000 - report.ttfa_ms - report.audio_s * 1000


def _rebuffering_ms(report: tts.PlaybackReport) -> float:
    """Time spent in the rebuffering state, from the report's timeline."""
    total = 0.0
    entries = report.timeline
    for entry, after in itertools.pairwise(entries):
        if entry.state is tts.PlaybackState.REBUFFERING:
            total += after.t_ms - entry.t_ms
    return total


def _wav_sha256(path: str) -> tuple[str, int]:
    """SHA-256 of a WAV file's sample data, and its frame count."""
    with wave.open(path, "rb") as f:
        frames = f.getnframes()
        data = f.readframes(frames)
    return hashlib.sha256(data).hexdigest(), frames


async def _network(args: argparse.Namespace) -> dict[str, Any]:
    buffering: str = args.buffering
    config = tts.StreamConfig(underrun_growth=1.0) if buffering == "fixed" else tts.StreamConfig()
    if args.max_buffer_s is not None:
        config = config.replace(max_buffer_s=args.max_buffer_s)
    text: str = args.text
    timer = _HeaderTimer()
    utterances: list[dict[str, Any]] = []

    async with _client(config, timer) as client:
        # Warm up the player's code paths without a request to the server (whose fault
        # plan counts requests); --warmup also speaks a short text over HTTP.
        async with tts.NullSink(buffer_s=config.max_buffer_s) as warm_sink:
            await tts.play(_warmup_bytes(), sink=warm_sink, config=config, response_format="pcm")
            if args.warmup:
                await tts.speak(
                    WARMUP_TEXT,
                    base_url=args.base_url,
                    api_key="",
                    sink=warm_sink,
                    config=config,
                    client=client,
                )
        request = tts.SpeechRequest(text, base_url=args.base_url, api_key="")
        sink: tts.NullSink | tts.WavFileSink
        if args.wav:
            sink = tts.WavFileSink(args.wav, buffer_s=config.max_buffer_s)
        else:
            sink = _HashingNullSink(buffer_s=config.max_buffer_s)
        async with sink, AsyncExitStack() as stack:
            player: tts.Player | None = None
            if buffering == "adaptive":
                player = await stack.enter_async_context(
                    tts.open_player(sink=sink, config=config, client=client)
                )
            for index in range(args.utterances):
                if isinstance(sink, _HashingNullSink):
                    sink.digest, sink.frames = hashlib.sha256(), 0
                start_ms = config.buffer_ms if player is None else player.start_ms
                error: str | None = None
                wall0 = time.perf_counter()
                try:
                    if player is not None:
                        report = await player.play(request)
                    else:
                        report = await tts.play(request, sink=sink, config=config, client=client)
                except tts.TTSStreamError as exc:
                    if exc.report is None:
                        raise
                    report, error = exc.report, str(exc)
                wall_s = time.perf_counter() - wall0
                entry = {
                    **_report_fields(report),
                    "index": index,
                    "error": error,
                    "planned_start_ms": start_ms,
                    "start_threshold_ms": report.buffer_ms,
                    "delivery_ratio": report.delivery_ratio,
                    "reconnects": report.reconnects,
                    "retries": report.retries,
                    "stalls": report.stalls,
                    "skipped_overlap_frames": report.skipped_overlap_frames,
                    "restarted": report.restarted,
                    "wall_s": wall_s,
                    "stalled_ms": _stalled_ms(report, wall_s),
                    "rebuffering_ms": _rebuffering_ms(report),
                    "timeline": [
                        [round(e.t_ms, 1), e.state.value, e.cause] for e in report.timeline
                    ],
                }
                if isinstance(sink, _HashingNullSink):
                    entry["written_sha256"] = sink.digest.hexdigest()
                    entry["written_frames"] = sink.frames
                utterances.append(entry)
    out: dict[str, Any] = {
        "buffering": buffering,
        "text_chars": len(text),
        "utterances": utterances,
        "cpu_s": time.process_time(),
        "peak_rss_mib": peak_rss_mib(),
    }
    if args.wav:
        out["wav_sha256"], out["wav_frames"] = _wav_sha256(args.wav)
    return out


# --------------------------------------------------------------------------------------
# longstream


async def _longstream(args: argparse.Namespace) -> dict[str, Any]:
    rate: float = args.rate
    # The timeouts keep their real-time meaning under the faster virtual clock.
    config = tts.StreamConfig(
        streaming=not args.buffered, connect_timeout_s=10.0 * rate, read_timeout_s=30.0 * rate
    )
    text: str = args.text
    request = tts.SpeechRequest(text, base_url=args.base_url, api_key="", speed=args.speed)
    # Samples go into an array allocated up front, so that sampling does not itself grow
    # the heap while it is being measured (buffered mode downloads first: room for 2x).
    table = np.full((int(2 * args.audio_s / args.sample_every) + 64, 6), np.nan)
    count = 0
    rss_start = rss_mib()
    timer = _HeaderTimer()

    async with (
        _client(config, timer) as client,
        tts.NullSink(buffer_s=config.max_buffer_s) as sink,
        trio.open_nursery() as nursery,
    ):
        t0 = trio.current_time()
        cpu0, wall0 = time.process_time(), time.perf_counter()

        def sample(pb: tts.Playback) -> None:
            nonlocal count
            st = pb.statistics()
            row = count if count < len(table) else len(table) - 1  # full: keep the latest
            table[row] = (
                trio.current_time() - t0,
                st.played_s,
                st.received_s,
                st.buffered_ms,
                rss_mib(),
                sys.getallocatedblocks(),
            )
            count = min(count + 1, len(table))

        async def sampler(pb: tts.Playback) -> None:
            while True:
                sample(pb)
                await trio.sleep(args.sample_every)

        async with tts.open_playback(request, sink=sink, config=config, client=client) as pb:
            nursery.start_soon(sampler, pb)
        nursery.cancel_scope.cancel()
        sample(pb)  # the end of the playback, before anything is torn down
        cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
        virtual_s = trio.current_time() - t0
    keys = ("virtual_s", "played_s", "received_s", "buffered_ms", "rss_mib", "python_blocks")
    samples: list[dict[str, float]] = [
        dict(zip(keys, map(float, row), strict=True)) for row in table[:count]
    ]
    for row_dict in samples:
        row_dict["python_blocks"] = int(row_dict["python_blocks"])
    return {
        "mode": "buffered" if args.buffered else "stream",
        "clock_rate": rate,
        "speed": args.speed,
        "text_chars": len(text),
        **_report_fields(pb.report),
        "virtual_s": virtual_s,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "rss_start_mib": rss_start,
        "peak_rss_mib": peak_rss_mib(),
        "samples": samples,
    }


# --------------------------------------------------------------------------------------
# speaker


class _MonitorRecorder:
    """``parec`` on the null sink's monitor; every read is timestamped with perf_counter.

    Sample ``k`` of the recording was played at ``offset + k / rate``; each read at time
    ``t`` that ends at sample ``k`` bounds ``offset`` from above by ``t - k / rate``, and
    the least bound is the estimate (``--latency-msec=2``: accurate to a few ms).
    """

    def __init__(self, device: str, rate: int) -> None:
        self.rate = rate
        self._process = subprocess.Popen(
            [
                "parec",
                "-d",
                device,
                "--raw",
                f"--rate={rate}",
                "--channels=1",
                "--format=s16le",
                "--latency-msec=2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._chunks: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        while True:
            data = os.read(stdout.fileno(), 4096)
            now = time.perf_counter()
            if not data:
                return
            with self._lock:
                self._chunks.append((now, data))

    def frames(self) -> int:
        with self._lock:
            return sum(len(d) for _, d in self._chunks) // 2

    def wait_started(self, timeout: float) -> None:
        """Wait until parec records (it can take up to a second to start)."""
        deadline = time.perf_counter() + timeout
        while self.frames() < self.rate // 10:
            if time.perf_counter() > deadline:
                raise RuntimeError("parec recorded nothing")
            time.sleep(0.01)

    def first_sound_after(self, t_from: float, threshold: int = 200) -> float | None:
        """perf_counter time of the first sample louder than ``threshold`` played after
        ``t_from``, or ``None``."""
        with self._lock:
            chunks = list(self._chunks)
        data = b"".join(d for _, d in chunks)
        samples = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")
        ends = np.cumsum([len(d) // 2 for _, d in chunks])
        times = np.array([t for t, _ in chunks])
        offset = float(np.min(times - ends / self.rate))
        start = max(0, int(np.ceil((t_from - offset) * self.rate)))
        loud = np.flatnonzero(np.abs(samples[start:].astype(np.int32)) > threshold)
        if len(loud) == 0:
            return None
        return offset + (start + int(loud[0])) / self.rate

    def close(self) -> None:
        self._process.terminate()
        self._process.wait()
        self._thread.join(2)


async def _speaker(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("parec") is None:
        raise RuntimeError("parec not found")
    config = tts.StreamConfig(streaming=not args.buffered)
    text: str = args.text
    timer = _HeaderTimer()
    recorder = _MonitorRecorder(args.monitor, 24000)
    try:
        recorder.wait_started(5.0)
        async with (
            _client(config, timer) as client,
            tts.SoundDeviceSink(buffer_s=config.max_buffer_s) as sink,
        ):

            async def once(words: str) -> dict[str, Any]:
                await trio.sleep(0.3)  # silence between utterances
                t_request = time.perf_counter()
                report = await tts.speak(
                    words,
                    base_url=args.base_url,
                    api_key="",
                    sink=sink,
                    config=config,
                    client=client,
                )
                await trio.sleep(0.2)  # let parec deliver the start of it
                heard = recorder.first_sound_after(t_request)
                return {
                    **_report_fields(report),
                    "ttfb_headers_ms": timer.ttfb_ms(),
                    "ttfa_speaker_ms": None if heard is None else (heard - t_request) * 1000,
                    "device_latency_ms": sink.output_latency * 1000,
                }

            # The warm-up opens the device (a first utterance pays for that once).
            warmup = await once(WARMUP_TEXT)
            runs = [await once(text) for _ in range(args.runs)]
    finally:
        recorder.close()
    return {
        "mode": "buffered" if args.buffered else "stream",
        "text_chars": len(text),
        "warmup": warmup,
        "runs": runs,
    }


# --------------------------------------------------------------------------------------
# decode


def _first_block(name: str, body: bytes) -> tuple[int | None, int, int | None]:
    """Feed ``body`` to a new decoder one byte at a time until it returns a block.

    Returns:
        (bytes fed when the first block came, or ``None`` if only ``flush()`` produced
        one; frames in that first block; its sample rate).
    """
    decoder = tts.create_decoder(name)
    for n in range(1, len(body) + 1):
        blocks = [b for b in decoder.decode(body[n - 1 : n]) if len(b)]
        if blocks:
            fmt = decoder.audio_format
            return n, len(blocks[0]), None if fmt is None else fmt.sample_rate
    blocks = [b for b in decoder.flush() if len(b)]
    fmt = decoder.audio_format
    return None, len(blocks[0]) if blocks else 0, None if fmt is None else fmt.sample_rate


def _decode_pass(name: str, chunks: list[bytes]) -> dict[str, Any]:
    """Decode ``chunks`` with a new decoder: wall and CPU time, and each call's time."""
    decoder = tts.create_decoder(name)
    call_ns = np.empty(len(chunks) + 1, dtype=np.int64)
    frames = 0
    clock = time.perf_counter_ns
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i, chunk in enumerate(chunks):
        t0 = clock()
        blocks = decoder.decode(chunk)
        call_ns[i] = clock() - t0
        frames += sum(len(b) for b in blocks)
    t0 = clock()
    blocks = decoder.flush()
    call_ns[-1] = clock() - t0
    frames += sum(len(b) for b in blocks)
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    fmt = decoder.audio_format
    if fmt is None or frames == 0:
        raise RuntimeError(f"{name}: the decoder produced no audio")
    return {
        "frames": frames,
        "sample_rate": fmt.sample_rate,
        "audio_s": frames / fmt.sample_rate,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "errors": int(getattr(decoder, "errors", 0)),
        "chunk_ns": call_ns[:-1],
        "flush_ns": int(call_ns[-1]),
    }


def _decode(args: argparse.Namespace) -> dict[str, Any]:
    chunk_size: int = args.chunk_size
    results = []
    for spec in args.body:
        name, _, path = spec.partition("=")
        with open(path, "rb") as f:
            body = f.read()
        chunks = [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)]
        _decode_pass(name, chunks)  # warm-up: imports PyAV, sets up the codec
        passes = [_decode_pass(name, chunks) for _ in range(args.repeats)]
        per_chunk_us = np.concatenate([p["chunk_ns"] for p in passes]) / 1000
        first_bytes, first_frames, first_rate = _first_block(name, body)
        results.append(
            {
                "format": name,
                "body_bytes": len(body),
                "chunk_size": chunk_size,
                "chunks": len(chunks),
                "first_block_bytes": first_bytes,
                "first_block_frames": first_frames,
                "first_block_ms": None if not first_rate else first_frames / first_rate * 1000,
                "chunk_us_median": float(np.median(per_chunk_us)),
                "chunk_us_p95": float(np.percentile(per_chunk_us, 95)),
                "chunk_us_max": float(per_chunk_us.max()),
                "passes": [{k: v for k, v in p.items() if k != "chunk_ns"} for p in passes],
            }
        )
    return {"chunk_size": chunk_size, "repeats": args.repeats, "formats": results}


def main() -> None:
    parser = argparse.ArgumentParser(description="trio_tts_stream benchmark worker")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("latency", "longstream", "speaker"):
        p = sub.add_parser(name)
        p.add_argument("--base-url", required=True)
        p.add_argument("--text", required=True, help="what to speak")
        p.add_argument("--buffered", action="store_true", help="StreamConfig(streaming=False)")
        p.add_argument("--runs", type=int, default=5)
    sub.choices["latency"].add_argument("--format", default="pcm", help="response_format")
    decode = sub.add_parser("decode")
    decode.add_argument(
        "--body", action="append", required=True, metavar="FORMAT=PATH", help="a response body"
    )
    decode.add_argument("--chunk-size", type=int, default=4096, help="bytes per decode() call")
    decode.add_argument("--repeats", type=int, default=5, help="measured passes per format")
    longstream = sub.choices["longstream"]
    longstream.add_argument("--rate", type=float, required=True, help="MockClock rate")
    longstream.add_argument("--speed", type=float, default=1.0, help="speech speed")
    longstream.add_argument("--audio-s", type=float, required=True, help="expected length")
    longstream.add_argument("--sample-every", type=float, default=5.0, help="virtual seconds")
    sub.choices["speaker"].add_argument("--monitor", default="out.monitor")
    network = sub.add_parser("network")
    network.add_argument("--base-url", required=True)
    network.add_argument("--text", required=True, help="what to speak")
    network.add_argument("--utterances", type=int, default=3, help="utterances in a row")
    network.add_argument("--buffering", choices=("fixed", "default", "adaptive"), default="default")
    network.add_argument("--max-buffer-s", type=float, help="StreamConfig.max_buffer_s")
    network.add_argument("--warmup", action="store_true", help="speak a warm-up text first")
    network.add_argument("--wav", metavar="PATH", help="play into a WavFileSink at PATH")
    args = parser.parse_args()
    if args.command == "latency":
        result = trio.run(_latency, args)
    elif args.command == "network":
        result = trio.run(_network, args)
    elif args.command == "decode":
        result = _decode(args)
    elif args.command == "longstream":
        result = trio.run(_longstream, args, clock=trio.testing.MockClock(rate=args.rate))
    else:
        result = trio.run(_speaker, args)
    # The client's memory is measured: it must not have loaded the test server's code
    # (trio_tts_stream.testing imports PyAV when it is installed).
    result["testing_imported"] = "trio_tts_stream.testing" in sys.modules
    result["av_imported"] = "av" in sys.modules
    if result["testing_imported"]:
        raise RuntimeError("the worker imported trio_tts_stream.testing: its RSS is skewed")
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
