"""A local OpenAI-compatible text-to-speech server: the voice ``say`` uses offline.

:func:`open_server` runs it for the duration of an ``async with`` block; :func:`serve`
runs it under ``nursery.start``; :class:`ServerOptions` says how (both take its fields
as keywords too). It answers ``POST /v1/audio/speech`` with the deterministic,
speech-like audio of :func:`synthesize_tone` (``engine="tone"``, the default) or with
speech from espeak-ng (``engine="espeak"``: the ``espeak`` extra, see
:func:`espeak_available`), streamed with a configurable time to first byte and real-time
factor, in every OpenAI ``response_format`` (``pcm`` and ``wav`` always; ``mp3``,
``opus``, ``aac`` and ``flac`` with PyAV, the ``formats`` extra). ``python -m
trio_tts_stream serve`` runs it from the command line.

The parts, one job per module: ``_engines`` (the synthesizers), ``_bodies`` (encoders,
the format table, rendering and pacing), ``_requests`` (validating a request, the
errors answered), ``_connection`` (h11 connections, the server), ``_options``. Fault
injection for tests lives in :mod:`trio_tts_stream.testing`.
"""

from __future__ import annotations

from ._bodies import OPENAI_RESPONSE_FORMATS, RESPONSE_FORMATS, chunk_schedule, render_chunks
from ._connection import FILES_PATH, SPEECH_PATH, SpeechServer, open_server, serve
from ._engines import ENGINES, SAMPLE_RATE
from ._espeak import espeak_available
from ._options import ServerOptions, ServerOptionsChanges
from ._requests import MAX_INPUT_CHARS, RecordedRequest
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
    "RecordedRequest",
    "ServerOptions",
    "ServerOptionsChanges",
    "SpeechServer",
    "chunk_schedule",
    "espeak_available",
    "open_server",
    "render_chunks",
    "serve",
    "synthesize_tone",
    "tone_blocks",
    "tone_frames",
]
