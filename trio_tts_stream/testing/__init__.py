"""A local OpenAI-compatible text-to-speech server, for tests, benchmarks and offline use.

:func:`open_test_server` runs it for the duration of an ``async with`` block;
:func:`serve` runs it under ``nursery.start``. It answers ``POST /v1/audio/speech`` with
the deterministic, speech-like audio of :func:`synthesize_tone` (``engine="tone"``, the
default) or with speech from espeak-ng (``engine="espeak"``: the ``espeak`` extra, see
:func:`espeak_available`), streamed with a configurable time to first byte and real-time
factor, in every OpenAI ``response_format`` (``pcm`` and ``wav`` always; ``mp3``,
``opus``, ``aac`` and ``flac`` with PyAV, the ``formats`` extra).
:meth:`TestServer.render` gives the exact body of any request and
:meth:`TestServer.reference_pcm` the samples it encodes, so a client's output can be
checked bit for bit (``pcm``, ``wav``, ``flac``) or against the reference (lossy formats).
:meth:`TestServer.audio_url` serves the same audio at a ``GET`` URL with ``Range``
support, and a :class:`FaultPlan` injects network faults, deterministically: dropped
connections, stalls, a bandwidth limit, jitter, error statuses with ``Retry-After``.
"""

from __future__ import annotations

from ._espeak import espeak_available
from ._faults import FaultPlan, RequestFaults
from ._server import (
    ENGINES,
    FILES_PATH,
    MAX_INPUT_CHARS,
    OPENAI_RESPONSE_FORMATS,
    RESPONSE_FORMATS,
    SAMPLE_RATE,
    SPEECH_PATH,
    RecordedRequest,
    TestServer,
    chunk_schedule,
    open_test_server,
    render_chunks,
    serve,
    wav_header,
)
from ._tone import VOICES, synthesize_tone, tone_blocks, tone_frames

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
