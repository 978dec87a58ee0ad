"""The ``serve`` command: run the test server from the command line.

The lead's CLI wires it in as ``python -m trio_tts_stream serve``::

    parser = subparsers.add_parser("serve", help="run a local OpenAI-compatible TTS server")
    add_serve_arguments(parser)
    ...
    trio.run(run_serve, args)
"""

from __future__ import annotations

import argparse
import ssl
import sys

import trio

from .._exceptions import ConfigError
from ._server import ENGINES, open_test_server

__all__ = ["add_serve_arguments", "run_serve"]


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
    try:
        async with open_test_server(
            host=args.host,
            port=args.port,
            ttfb_ms=args.ttfb_ms,
            realtime_factor=args.realtime_factor,
            chunk_ms=args.chunk_ms,
            ssl_context=ssl_context,
            api_key=args.api_key,
            engine=args.engine,
            wav_exact_sizes=args.wav_exact_sizes,
        ) as server:
            print(
                f"serving OpenAI-compatible TTS on {server.base_url}", file=sys.stderr, flush=True
            )
            await trio.sleep_forever()
    except OSError as exc:  # e.g. the port is in use
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc}") from exc
