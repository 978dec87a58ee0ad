"""Test helpers: the local server (:mod:`trio_tts_stream.server`) with fault injection.

:func:`open_test_server` is :func:`~trio_tts_stream.server.open_server`: it runs the
OpenAI-compatible server for the duration of an ``async with`` block, and a
:class:`FaultPlan` (``faults=``) injects network faults into it, deterministically:
dropped connections, stalls, a bandwidth limit, jitter, error statuses with
``Retry-After``. :meth:`TestServer.render` gives the exact body of any request and
:meth:`TestServer.reference_pcm` the samples it encodes, so a client's output can be
checked bit for bit (``pcm``, ``wav``, ``flac``) or against the reference (lossy formats).
:meth:`TestServer.audio_url` serves the same audio at a ``GET`` URL with ``Range``
support. Everything the server module exports is re-exported here, under the names
tests have always used.
"""

from __future__ import annotations

from .._wav import wav_header
from ..server import (
    ENGINES,
    FILES_PATH,
    MAX_INPUT_CHARS,
    OPENAI_RESPONSE_FORMATS,
    RESPONSE_FORMATS,
    SAMPLE_RATE,
    SPEECH_PATH,
    VOICES,
    RecordedRequest,
    ServerOptions,
    chunk_schedule,
    espeak_available,
    render_chunks,
    serve,
    synthesize_tone,
    tone_blocks,
    tone_frames,
)
from ..server import SpeechServer as TestServer
from ..server import open_server as open_test_server
from ..server._faults import FaultPlan, RequestFaults

__all__ = [
    "ENGINES",
    "FILES_PATH",
    "MAX_INPUT_CHARS",
    "OPENAI_RESPONSE_FORMATS",
    "RESPONSE_FORMATS",
    "SAMPLE_RATE",
    "SPEECH_PATH",
    "VOICES",
    "FaultPlan",
    "RecordedRequest",
    "RequestFaults",
    "ServerOptions",
    "TestServer",
    "chunk_schedule",
    "espeak_available",
    "open_test_server",
    "render_chunks",
    "serve",
    "synthesize_tone",
    "tone_blocks",
    "tone_frames",
    "wav_header",
]
