"""The ``serve`` command: run the test server from the command line.

The lead's CLI wires it in as ``python -m trio_tts_stream serve``::

    parser = subparsers.add_parser("serve", help="run a local OpenAI-compatible TTS server")
    add_serve_arguments(parser)
    ...
    trio.run(run_serve, args)
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import ssl
import sys

import trio

from .._exceptions import ConfigError
from ._connection import open_server
from ._engines import ENGINES
from ._faults import FAIL_STATUSES, FaultPlan, parse_byte_counts
from ._misanswers import MISANSWERS
from ._profiles import PROFILES

__all__ = ["add_serve_arguments", "fault_plan", "run_serve"]


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve`` command's options to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=8880, help="TCP port, 0 for any free port (default 8880)"
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="tone",
        help="synthesizer: tone, a deterministic speech-like tone (default), or espeak, "
        "speech from espeak-ng (pip install 'trio-tts-stream[espeak]')",
    )
    parser.add_argument(
        "--ttfb-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="delay before the first body byte of each response (default 0)",
    )
    parser.add_argument(
        "--realtime-factor",
        type=float,
        default=None,
        metavar="X",
        help="release audio at X times real time (default: as fast as the client reads)",
    )
    parser.add_argument(
        "--chunk-ms",
        type=float,
        default=20.0,
        metavar="MS",
        help="audio per HTTP chunk (default 20)",
    )
    parser.add_argument("--certfile", help="PEM certificate (chain) to serve HTTPS")
    parser.add_argument("--keyfile", help="PEM private key, if not in --certfile")
    parser.add_argument(
        "--api-key", default=None, help="require 'Authorization: Bearer API_KEY' (else 401)"
    )
    parser.add_argument(
        "--wav-exact-sizes",
        action="store_true",
        help="write exact lengths up front (wav sizes, an mp3 Info/LAME frame, flac total "
        "samples) instead of what a streaming encoder sends",
    )
    parser.add_argument(
        "--misanswer",
        choices=sorted(MISANSWERS),
        help="answer speech requests 200 with a body that is not audio (a broken server)",
    )
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        help="answer speech requests as a popular server puts them on the wire "
        "(see docs/servers.rst)",
    )
    _add_fault_arguments(parser)


def _add_fault_arguments(parser: argparse.ArgumentParser) -> None:
    faults = parser.add_argument_group(
        "fault injection",
        "Deterministic network faults. Requests are numbered in the order received; "
        "the first --close-before-headers of them are closed unanswered, the next "
        "--fail-first get --fail-status, and the body faults count from there.",
    )
    faults.add_argument("--seed", type=int, default=0, help="seed of the random jitter (default 0)")
    faults.add_argument(
        "--drop-after-bytes",
        metavar="N[,N...]",
        help="close the connection after N body bytes: the first body request after the "
        "first N, the second after the second N, ...; later ones are whole",
    )
    faults.add_argument(
        "--stall-after-bytes",
        type=int,
        metavar="N",
        help="pause the first body after N bytes, for --stall-ms",
    )
    faults.add_argument(
        "--stall-ms", type=float, default=0.0, metavar="MS", help="length of the stall"
    )
    faults.add_argument(
        "--stall-every-request",
        action="store_true",
        help="stall every body, not only the first",
    )
    faults.add_argument(
        "--bandwidth-kbps",
        type=float,
        metavar="K",
        help="send bodies through a link of K kbit/s (on top of --realtime-factor)",
    )
    faults.add_argument(
        "--jitter-ms",
        type=float,
        default=0.0,
        metavar="J",
        help="hold each body piece back by a random 0..J ms (seeded by --seed)",
    )
    faults.add_argument(
        "--bursts",
        metavar="AUDIO_MS,PAUSE_MS",
        default=None,
        help="send bodies in bursts of AUDIO_MS of audio with PAUSE_MS between them",
    )
    faults.add_argument(
        "--fail-first",
        type=int,
        default=0,
        metavar="K",
        help="answer K requests with --fail-status and an OpenAI-style JSON error",
    )
    faults.add_argument(
        "--fail-status",
        type=int,
        default=503,
        metavar="S",
        help=f"status of those errors: {', '.join(map(str, FAIL_STATUSES))} (default 503)",
    )
    faults.add_argument(
        "--retry-after",
        type=float,
        metavar="SECONDS",
        help="send Retry-After (and retry-after-ms) with those errors",
    )
    faults.add_argument(
        "--close-before-headers",
        type=int,
        default=0,
        metavar="K",
        help="close the connection of the first K requests without any response",
    )
    faults.add_argument(
        "--truncate-after-bytes",
        type=int,
        metavar="N",
        help="send the first body with a Content-Length for all of it, but close after N bytes",
    )


_FAULT_FIELDS = [f.name for f in dataclasses.fields(FaultPlan)]


def fault_plan(args: argparse.Namespace) -> FaultPlan:
    """The :class:`~trio_tts_stream.testing.FaultPlan` the ``serve`` options ask for.

    Raises:
        ConfigError: If an option is invalid; the message names the options.
    """
    bursts: tuple[float | None, float] = (None, 0.0)
    if args.bursts is not None:
        try:
            audio, pause = (float(v) for v in args.bursts.split(","))
        except ValueError:
            raise ConfigError(
                f"--bursts: expected AUDIO_MS,PAUSE_MS (two numbers), got {args.bursts!r}"
            ) from None
        bursts = (audio, pause)
    try:
        return FaultPlan(
            seed=args.seed,
            drop_after_bytes=(
                () if args.drop_after_bytes is None else parse_byte_counts(args.drop_after_bytes)
            ),
            stall_after_bytes=args.stall_after_bytes,
            stall_ms=args.stall_ms,
            stall_every_request=args.stall_every_request,
            bandwidth_kbps=args.bandwidth_kbps,
            jitter_ms=args.jitter_ms,
            burst_ms=bursts[0],
            burst_pause_ms=bursts[1],
            fail_first=args.fail_first,
            fail_status=args.fail_status,
            retry_after=args.retry_after,
            close_before_headers=args.close_before_headers,
            truncate_after_bytes=args.truncate_after_bytes,
        )
    except ConfigError as exc:
        message = re.sub(
            r"\b(" + "|".join(_FAULT_FIELDS) + r")\b",
            lambda m: "--" + m.group(1).replace("_", "-"),
            str(exc),
        )
        if args.drop_after_bytes is not None and "byte counts" in message:
            message = f"--drop-after-bytes: {message}"
        raise ConfigError(message) from None


async def run_serve(args: argparse.Namespace) -> None:
    """Serve until cancelled, announcing the base URL on stderr.

    Raises:
        ConfigError: If the options are inconsistent or invalid, or the engine is not
            installed (the message, one line, says what to install).
    """
    ssl_context: ssl.SSLContext | None = None
    if args.keyfile and not args.certfile:
        raise ConfigError("--keyfile needs --certfile")
    if args.certfile:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ssl_context.load_cert_chain(args.certfile, args.keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the TLS certificate: {exc}") from exc
    faults = fault_plan(args)
    try:
        async with open_server(
            host=args.host,
            port=args.port,
            ttfb_ms=args.ttfb_ms,
            realtime_factor=args.realtime_factor,
            chunk_ms=args.chunk_ms,
            ssl_context=ssl_context,
            api_key=args.api_key,
            engine=args.engine,
            wav_exact_sizes=args.wav_exact_sizes,
            misanswer=args.misanswer,
            profile=args.profile,
            faults=faults,
        ) as server:
            print(
                f"serving OpenAI-compatible TTS on {server.base_url}", file=sys.stderr, flush=True
            )
            await trio.sleep_forever()
    except OSError as exc:  # e.g. the port is in use
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc}") from exc
