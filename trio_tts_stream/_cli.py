"""Command line: ``python -m trio_tts_stream {say,serve,devices}``.

Exit status: 0 done; 1 unexpected failure; 2 bad option or configuration; 3 the server
answered with an error; 4 network, timeout or TLS failure; 5 undecodable audio; 6 audio
device failure; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import codecs
import dataclasses
import json
import os
import ssl
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, nullcontext, suppress
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import trio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

# Only what every command needs is imported here: ``say`` sends its request first and
# loads the player (numpy, the decoders), PortAudio and the output while it is in
# flight; the test server, its encoders and PyAV load only for ``serve``, the embedded
# voice or a compressed format (tests/test_cli_startup.py pins it).
from ._config import StreamConfig
from ._exceptions import (
    AudioDeviceError,
    ConfigError,
    DecodeError,
    HTTPStatusError,
    SourceError,
    TTSStreamError,
    unwrap_single_exception,
)
from ._stderr import quiet_native_chatter

if TYPE_CHECKING:
    from ._http import SpeechRequest
    from ._metrics import PlaybackReport
    from ._player import Playback, PlaybackStatistics
    from ._sinks import BufferedSink
    from ._speaker import SpeakerStatistics

__all__ = ["build_parser", "main", "run"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_HTTP, EXIT_NETWORK, EXIT_DECODE, EXIT_DEVICE = range(7)
EXIT_INTERRUPTED = 130

_SAY_EXAMPLES = """\
examples:
  python -m trio_tts_stream serve --port 8880 &
  python -m trio_tts_stream say "Hello there" --base-url http://127.0.0.1:8880/v1
  echo "From stdin" | python -m trio_tts_stream say - --output hello.wav
  python -m trio_tts_stream say "Measure me" --null --json --format wav
  python -m trio_tts_stream say "Draw me" --null --stats --plot timeline.png
"""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a whole number > 0, got {text!r}")
    return value


def build_parser(*, serve_options: bool = True) -> argparse.ArgumentParser:
    """The argument parser (also used to document the CLI). ``serve_options=False``
    leaves out the ``serve`` command's options, whose choices come from the test server
    (importing it loads PyAV): :func:`main` builds them only for ``serve``."""
    parser = argparse.ArgumentParser(
        prog="python -m trio_tts_stream",
        description="Play text-to-speech audio while it downloads.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    say = sub.add_parser(
        "say",
        help="speak text through an OpenAI-compatible /audio/speech endpoint",
        description="Ask an OpenAI-compatible server to speak TEXT and play it as it arrives.",
        epilog=_SAY_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    say.add_argument(
        "text",
        metavar="TEXT",
        nargs="?",
        help="text to speak; - speaks a pipe sentence by sentence as it arrives "
        "(markdown is not read aloud); nothing reads all of stdin",
    )
    say.add_argument("--file", metavar="FILE", help="read the text to speak from FILE")
    say.add_argument("--base-url", help="API base URL (default: $OPENAI_BASE_URL or OpenAI's)")
    say.add_argument("--api-key", help="API key (default: $OPENAI_API_KEY); never printed")
    say.add_argument("--model", default="gpt-4o-mini-tts", help="TTS model (default: %(default)s)")
    say.add_argument("--voice", default="alloy", help="voice (default: %(default)s)")
    say.add_argument(
        "--format",
        default="pcm",
        dest="response_format",
        choices=["pcm", "wav", "mp3", "aac", "flac", "opus"],
        help="response_format to ask for (default: %(default)s)",
    )
    say.add_argument("--speed", type=float, help="speaking speed, 0.25 to 4.0")
    say.add_argument("--instructions", help="voice instructions (gpt-4o-mini-tts)")
    out = say.add_mutually_exclusive_group()
    out.add_argument("--device", help="output device index or name (see `devices`)")
    out.add_argument("--output", metavar="FILE.wav", help="write a WAV file instead of playing")
    out.add_argument(
        "--null",
        action="store_true",
        help="play into a silent real-time sink (measure without a speaker)",
    )
    say.add_argument(
        "--no-stream",
        action="store_true",
        help="download everything before playing (the slow old way)",
    )
    say.add_argument(
        "--buffer-ms",
        type=_positive_float,
        help="audio to buffer before starting, ms (default 150)",
    )
    say.add_argument(
        "--playout",
        choices=("exact", "adaptive"),
        help="adaptive: start after one decoded and one device block, stretch speech "
        "(pitch kept) to build the buffer; exact: start after --buffer-ms, every sample "
        "as sent (default: adaptive for pcm/wav on a sound device, else exact)",
    )
    say.add_argument(
        "--rebuffer-ms",
        type=_positive_float,
        help="audio to buffer after an underrun, ms (default 300)",
    )
    say.add_argument(
        "--max-buffer",
        type=_positive_float,
        metavar="SECONDS",
        help="output buffer capacity, seconds (default 2.0)",
    )
    say.add_argument(
        "--chunk-size",
        type=_positive_int,
        help="most bytes handed to the decoder at once; never a wait (default 4096)",
    )
    say.add_argument("--ca-file", help="trust this CA bundle (PEM) for https")
    say.add_argument(
        "--stall-timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="reconnect (and resume) when the body pauses this long after its first byte; "
        "shorter pauses are ridden out (default 15)",
    )
    say.add_argument(
        "--max-attempts",
        type=_positive_int,
        metavar="N",
        help="requests per utterance in all, retries included (default 5; 1 = no retry)",
    )
    say.add_argument(
        "--resume-mismatch",
        choices=["error", "restart"],
        help="when a re-requested stream differs from what was played: stop with an "
        "error (default) or play the utterance again from its start",
    )
    say.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="give up when the first audio has not come this long after the start, "
        "retries included; also bounds connecting and the wait for a response "
        "(default: no overall bound; connect 10 s, response 30 s)",
    )
    say.add_argument(
        "--stream-format",
        choices=["audio", "sse"],
        help="'sse' asks for OpenAI's event stream (base64 audio in speech.audio.delta "
        "events), played as it arrives like any body (default: audio)",
    )
    say.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object with the report on stdout at the end",
    )
    say.add_argument(
        "--stats", action="store_true", help="print a table of the measurements at the end"
    )
    say.add_argument(
        "--plot",
        metavar="FILE",
        help="draw the playback's timeline (bytes, audio, buffer, states, underruns) into "
        "FILE, .png or .svg (needs matplotlib: pip install 'trio-tts-stream[plot]')",
    )
    say.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="keep complete responses in DIR and replay repeated phrases from it",
    )

    serve = sub.add_parser(
        "serve",
        help="run the bundled OpenAI-compatible test TTS server",
        description="Serve POST /v1/audio/speech on 127.0.0.1 with a deterministic voice.",
        epilog="example:\n  python -m trio_tts_stream serve --port 8880 --ttfb-ms 300 "
        "--realtime-factor 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if serve_options:
        from .server._serve_cli import add_serve_arguments

        add_serve_arguments(serve)

    sub.add_parser(
        "devices",
        help="list audio output devices",
        description="List PortAudio output devices (index, name, default rate, channels).",
        epilog="example:\n  python -m trio_tts_stream devices",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def _exit_code(exc: TTSStreamError) -> int:
    if isinstance(exc, ConfigError):
        return EXIT_USAGE
    if isinstance(exc, HTTPStatusError):
        return EXIT_HTTP
    if isinstance(exc, SourceError):
        return EXIT_NETWORK
    if isinstance(exc, DecodeError):
        return EXIT_DECODE
    if isinstance(exc, AudioDeviceError):
        return EXIT_DEVICE
    return EXIT_FAILURE


def _read_text(args: argparse.Namespace) -> str:
    if args.file is not None and args.text is not None:
        raise ConfigError("give the text either as TEXT or with --file, not both")
    if args.file is not None:
        try:
            with open(args.file, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--file {args.file!r} cannot be read: {exc}") from None
    elif args.text in (None, "-"):
        if args.text is None and sys.stdin.isatty():
            raise ConfigError("no text to speak: pass TEXT, --file FILE, or pipe text into `say -`")
        text = sys.stdin.read()
    else:
        text = args.text
    if not text.strip():
        raise ConfigError("no text to speak: pass TEXT, --file FILE, or pipe text into `say -`")
    return text.strip()


def _status_line(stats: PlaybackStatistics) -> str:
    return (
        f"{stats.state.value:<11} buffered {stats.buffered_ms:5.0f} ms | "
        f"played {stats.played_s:5.1f} s of {stats.received_s:5.1f} s received | "
        f"underruns {stats.underruns}"
    )


async def _show_status(playback: Playback, stream: TextIO) -> None:
    """Redraw a one-line status every 100 ms (only used when stderr is a terminal)."""
    try:
        while True:
            stream.write("\r\x1b[K" + _status_line(playback.statistics()))
            stream.flush()
            await trio.sleep(0.1)
    finally:
        stream.write("\r\x1b[K")
        stream.flush()


def _stats_table(report: PlaybackReport) -> str:
    def fmt(value: object, unit: str = "") -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:,.1f}{unit}"
        return f"{value}{unit}"

    rows = [
        ("outcome", fmt(report.outcome.value)),
        ("launch -> request sent", fmt(report.launch_ms, " ms")),
        ("request -> device ready", fmt(report.device_ready_ms, " ms")),
        ("first byte -> first sound", fmt(report.first_byte_to_audio_ms, " ms")),
        ("mode", fmt(report.mode)),
        ("format", f"{report.format} {fmt(report.sample_rate)} Hz, {fmt(report.channels)} ch"),
        ("time to first byte", fmt(report.ttfb_ms, " ms")),
        ("time to first audio", fmt(report.ttfa_ms, " ms")),
        ("initial buffer", fmt(report.buffer_ms, " ms")),
        ("audio", fmt(report.audio_s, " s")),
        ("underruns", f"{report.underruns} ({report.underrun_ms:,.0f} ms of silence)"),
        (
            "buffer while playing",
            f"avg {fmt(report.buffer_ms_avg, ' ms')}, min {fmt(report.buffer_ms_min, ' ms')}",
        ),
        (
            "received",
            f"{report.bytes_received:,} bytes at {fmt(report.throughput_kbps, ' kbit/s')}",
        ),
        (
            "decode per chunk",
            f"mean {fmt(report.decode_ms_mean, ' ms')}, p95 {fmt(report.decode_ms_p95, ' ms')}",
        ),
        ("decode errors", fmt(report.decode_errors)),
        ("reconnects", f"{report.reconnects} (retries {report.retries}, stalls {report.stalls})"),
        (
            "resumed",
            f"{report.resumed_bytes:,} bytes by Range, "
            f"{report.skipped_overlap_frames:,} verified frames skipped",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


DEFAULT_OUTPUT = "speech.wav"


def _no_speaker_reason() -> str | None:
    """Why the default output device cannot be used, or ``None`` when it can (imports
    sounddevice, which starts PortAudio: run it in a thread)."""
    from ._portaudio import import_sounddevice, portaudio_errors

    try:
        sd = import_sounddevice()
    except AudioDeviceError:
        return (
            "PortAudio is not installed (Debian/Ubuntu: `sudo apt-get install libportaudio2`; "
            "macOS: `brew install portaudio`)"
        )
    try:
        with portaudio_errors("no default output device"):
            sd.query_devices(kind="output")
    except AudioDeviceError:
        return (
            "there is no audio output device (list them with `python -m trio_tts_stream devices`)"
        )
    return None


def _with_playout(
    args: argparse.Namespace, config: StreamConfig, sink: BufferedSink
) -> StreamConfig:
    """``--playout``, or its default (``default_playout``): adaptive for pcm and wav
    on a sound device (first sound 2-4 times sooner; docs/benchmarks.rst), the config's
    for compressed formats, a file or the null sink (exact samples)."""
    from ._player import default_playout

    if args.playout is not None:
        return config.replace(playout=args.playout)
    return default_playout(config, sink, args.response_format)


async def _make_sink(args: argparse.Namespace, config: StreamConfig) -> BufferedSink:
    """The output the options ask for; checking the default device (PortAudio's start)
    runs in a thread, so that a request already sent is read meanwhile."""
    from ._sinks import NullSink, SoundDeviceSink, WavFileSink

    if args.output:
        return WavFileSink(args.output, buffer_s=config.max_buffer_s)
    if args.null:
        return NullSink(buffer_s=config.max_buffer_s)
    device: int | str | None = args.device
    if device is None and (reason := await trio.to_thread.run_sync(_no_speaker_reason)):
        # No speaker: still give the user the speech, in a file.
        print(
            f"note: {reason}; writing the speech to {DEFAULT_OUTPUT} instead "
            "(choose the file with --output FILE.wav)",
            file=sys.stderr,
        )
        return WavFileSink(DEFAULT_OUTPUT, buffer_s=config.max_buffer_s)
    if isinstance(device, str) and device.isdigit():
        device = int(device)
    return SoundDeviceSink(device, buffer_s=config.max_buffer_s)


@asynccontextmanager
async def _embedded_server(args: argparse.Namespace) -> AsyncIterator[str | None]:
    """With no server configured, run the bundled espeak voice on 127.0.0.1 and yield
    its URL; otherwise yield ``None``."""
    configured = (
        args.base_url
        or os.environ.get("OPENAI_BASE_URL")
        or args.api_key
        or os.environ.get("OPENAI_API_KEY")
    )
    if configured:
        yield None
        return
    from .server import espeak_available, open_server

    if not espeak_available():
        raise ConfigError(
            "no TTS server configured and the embedded voice is not installed: "
            "pip install 'trio-tts-stream[espeak]', or point at a server with --base-url URL "
            "(and --api-key / OPENAI_API_KEY for OpenAI)"
        )
    async with open_server(engine="espeak") as server:
        print(
            f"note: no --base-url or OPENAI_API_KEY given: speaking with the embedded espeak "
            f"voice served on {server.base_url} (use --base-url URL or set OPENAI_API_KEY "
            "for a real TTS server)",
            file=sys.stderr,
        )
        yield server.base_url


def _launch_time() -> float | None:
    """When this process was started, on :func:`time.perf_counter`'s clock (Linux:
    ``/proc/self/stat``, in clock ticks: 10 ms resolution), or ``None`` when unknown."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return time.perf_counter() - age if 0 <= age < 3600 else None


async def _say_timed(args: argparse.Namespace) -> PlaybackReport:
    """``say``, with the report's ``launch_ms`` (process launch -> request sent)."""
    launched = _launch_time()
    offset = time.perf_counter() - trio.current_time()  # trio's clock -> perf_counter
    report = await _say(args)
    if launched is None or report.request_time is None:
        return report
    launch_ms = (report.request_time + offset - launched) * 1000
    return dataclasses.replace(report, launch_ms=launch_ms)


def _load_player() -> None:
    """Import what playing needs beyond the request (numpy, the decoders, the player, the
    sinks): in a thread, while the request is in flight."""
    from . import _player, _sinks  # noqa: F401


async def _say(args: argparse.Namespace) -> PlaybackReport:
    from ._http import SpeechRequest, default_endpoint

    config = StreamConfig.from_env(
        streaming=False if args.no_stream else None,
        buffer_ms=args.buffer_ms,
        rebuffer_ms=args.rebuffer_ms,
        max_buffer_s=args.max_buffer,
        chunk_size=args.chunk_size,
        connect_timeout_s=args.timeout,
        read_timeout_s=args.timeout,
        dead_timeout_s=args.stall_timeout,
        first_audio_timeout_s=args.timeout,
        max_attempts=args.max_attempts,
        resume_mismatch=args.resume_mismatch,
    )
    text = "" if args.text == "-" and args.file is None else _read_text(args)
    verify: ssl.SSLContext | bool = True
    if args.ca_file:
        try:
            verify = ssl.create_default_context(cafile=args.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--ca-file {args.ca_file!r} cannot be used: {exc}") from None
    with unwrap_single_exception():
        async with _embedded_server(args) as embedded_url:
            base_url, api_key = default_endpoint(
                embedded_url or args.base_url, args.api_key or None
            )
            if args.text == "-" or args.cache_dir:
                await trio.to_thread.run_sync(_load_player)
                return await _speak(args, text, config, verify, base_url, api_key)
            request = SpeechRequest(
                input=text,
                model=args.model,
                voice=args.voice,
                response_format=args.response_format,
                speed=args.speed,
                instructions=args.instructions,
                base_url=base_url,
                api_key=api_key,
                stream_format=args.stream_format or "audio",
            )
            return await _play(args, request, config, verify)


async def _play(
    args: argparse.Namespace,
    request: SpeechRequest,
    config: StreamConfig,
    verify: ssl.SSLContext | bool,
) -> PlaybackReport:
    """Send the request first (an :class:`~._http.EarlyRequest`); while it is in flight,
    load the player and PortAudio and open the output (the player's pre-open), so the
    device is running when the first bytes arrive."""
    from ._http import EarlyRequest, shared_client

    early = EarlyRequest(request, client=shared_client(verify), config=config)
    try:
        with unwrap_single_exception():
            async with trio.open_nursery() as requests:
                requests.start_soon(early.run)
                await trio.to_thread.run_sync(_load_player)
                from ._player import _open_playback

                sink = await _make_sink(args, config)
                config = _with_playout(args, config, sink)
                async with (
                    sink,
                    _open_playback(
                        request, sink=sink, config=config, verify=verify, early=early
                    ) as playback,
                ):
                    if sys.stderr.isatty():
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(_show_status, playback, sys.stderr)
                            await playback.wait()
                            nursery.cancel_scope.cancel()
    finally:
        await early.aclose()
    return playback.report


async def _stdin_chunks() -> AsyncIterator[str]:
    """Standard input as text fragments, each as soon as it arrives."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stream:
        while data := await stream.receive_some(65536):
            yield decoder.decode(data)
    yield decoder.decode(b"", final=True)


async def _speak(
    args: argparse.Namespace,
    text: str,
    config: StreamConfig,
    verify: ssl.SSLContext | bool,
    base_url: str,
    api_key: str | None,
) -> PlaybackReport:
    """``say -`` and ``--cache-dir``: through a speaker, sentence by sentence."""
    from ._cache import PhraseCache
    from ._speaker import _combine, open_speaker

    cache = PhraseCache(directory=args.cache_dir) if args.cache_dir else None
    sink = await _make_sink(args, config)
    with unwrap_single_exception():
        async with (
            sink,
            open_speaker(
                sink=sink,
                config=config,
                playout=args.playout,  # None: the speaker's default per request
                verify=verify,
                base_url=base_url,
                api_key=api_key,
                model=args.model,
                voice=args.voice,
                response_format=args.response_format,
                speed=args.speed,
                instructions=args.instructions,
                stream_format=args.stream_format or "audio",
                cache=cache,
            ) as speaker,
        ):
            if text:
                utterances = [speaker.say(text)]
            else:
                utterances = await speaker.say_stream(_stdin_chunks())
            await speaker.wait_idle()
    if not utterances:
        raise ConfigError("no text to speak: the input had nothing speakable")
    reports = []
    for utt in utterances:
        reports.append(await utt.wait())  # raises the first failure
    report = _combine(reports, utterances=True)
    if args.stats:
        args.speaker_stats = speaker.statistics()
    return report


def _speaker_table(stats: SpeakerStatistics) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f} ms"

    rows = [
        (
            "utterances",
            f"{stats.completed} completed, {stats.failed} failed, {stats.cancelled} cancelled",
        ),
        ("say to first audio", ms(stats.say_to_first_audio_ms)),
        ("gaps between utterances", f"{stats.gaps} ({stats.gap_ms_total:.0f} ms in all)"),
    ]
    if stats.cache is not None:
        c = stats.cache
        rows.append(("cache", f"{c.hits} hits, {c.misses} misses, {c.disk_bytes} bytes on disk"))
    return "\n".join(f"{k:<24} {v}" for k, v in rows)


def _devices() -> int:
    """List the output devices; a PortAudio failure is one ``AudioDeviceError`` line."""
    from ._portaudio import import_sounddevice, portaudio_errors

    sd = import_sounddevice()
    with portaudio_errors(
        "cannot list the audio devices",
        hint="Check that a sound server or an ALSA device is available.",
    ):
        default_out = sd.default.device[1]
        devices = list(sd.query_devices())
    found = False
    for index, dev in enumerate(devices):
        if dev["max_output_channels"] <= 0:
            continue
        found = True
        mark = "*" if index == default_out else " "
        print(
            f"{mark} {index:3d}  {dev['name']}  "
            f"({dev['default_samplerate']:.0f} Hz, {dev['max_output_channels']} ch)"
        )
    if not found:
        print("no output devices found", file=sys.stderr)
        return EXIT_DEVICE
    return EXIT_OK


def _print_json(report: PlaybackReport) -> None:
    data: dict[str, Any] = report.to_dict()
    print(json.dumps(data, sort_keys=True))


def _check_plot(args: argparse.Namespace) -> None:
    """``--plot FILE``: a .png or .svg name, and matplotlib importable (checked before
    any request is sent).

    Raises:
        ConfigError: Another ending.
        MissingDependencyError: matplotlib is not installed.
    """
    if getattr(args, "plot", None) is None:
        return
    from ._plot import check_plot_path, require_matplotlib

    try:
        check_plot_path(args.plot)
    except ConfigError:
        raise ConfigError(f"--plot FILE must end in .png or .svg, not {args.plot!r}") from None
    require_matplotlib()


def _write_plot(args: argparse.Namespace, report: PlaybackReport) -> str | None:
    """Draw ``report`` into ``--plot FILE``, if given; return the file's name.

    Raises:
        ConfigError: The file cannot be written.
    """
    if getattr(args, "plot", None) is None:
        return None
    try:
        report.plot(args.plot)
    except OSError as exc:
        raise ConfigError(f"--plot {args.plot!r} cannot be written: {exc}") from None
    return str(args.plot)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    words = sys.argv[1:] if argv is None else list(argv)
    # The top-level parser has no option but -h: the command is the first word.
    parser = build_parser(serve_options=bool(words) and words[0] == "serve")
    args = parser.parse_args(argv)
    try:
        if args.command == "devices":
            return _devices()
        if args.command == "serve":
            from .server._serve_cli import run_serve

            trio.run(run_serve, args)
            return EXIT_OK
        _check_plot(args)
        on_device = not (getattr(args, "output", None) or getattr(args, "null", False))
        with quiet_native_chatter() if on_device else nullcontext():
            report = trio.run(_say_timed, args)
        plotted = _write_plot(args, report)
    except TTSStreamError as exc:
        if args.command == "say" and getattr(args, "json", False) and exc.report is not None:
            _print_json(exc.report)
        print(f"error: {exc}", file=sys.stderr)
        if args.command == "say" and exc.report is not None and not isinstance(exc, ConfigError):
            try:  # the picture of a failed playback says where it went wrong
                if (failed_plot := _write_plot(args, exc.report)) is not None:
                    print(f"plot written to {failed_plot}", file=sys.stderr)
            except TTSStreamError as plot_exc:
                print(f"error: {plot_exc}", file=sys.stderr)
        return _exit_code(exc)
    except BaseException as exc:
        if not _interrupted(exc):
            raise
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.json:
        _print_json(report)
    if args.stats:
        table = _stats_table(report)
        speaker_stats = getattr(args, "speaker_stats", None)
        if speaker_stats is not None:
            table += "\n" + _speaker_table(speaker_stats)
        if plotted is not None:
            table += f"\nplot written to {plotted}"
        print(table, file=sys.stderr if args.json else sys.stdout)
    return EXIT_OK


def run() -> NoReturn:
    """The command's entry point: :func:`main`, then exit with its status.

    After a hung sound server PortAudio may hold a stream it could not stop (see
    :func:`~._portaudio.abandoned_streams`); the C libraries' exit handlers could then
    block or crash on it, so the process then ends at once, output flushed.
    """
    code = main()
    portaudio = sys.modules.get(f"{__package__}._portaudio")  # loaded only if it played
    if portaudio is not None and portaudio.abandoned_streams():
        for stream in (sys.stdout, sys.stderr):
            with suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
    sys.exit(code)


def _interrupted(exc: BaseException) -> bool:
    """A Ctrl-C, possibly inside exception groups."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_interrupted(e) for e in exc.exceptions)
    return False
