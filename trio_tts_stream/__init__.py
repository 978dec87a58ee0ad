"""trio_tts_stream: play text-to-speech audio while it downloads, on trio.

Quick start::

    import trio
    import trio_tts_stream as tts

    async def main() -> None:
        report = await tts.speak("Hello there!", base_url="http://127.0.0.1:8880/v1")
        print(report.ttfa_ms, report.underruns)

    trio.run(main)
"""

from __future__ import annotations

from ._config import ENV_VARIABLES, StreamConfig
from ._decoders import available_formats, create_decoder, sniff_format
from ._decoders._base import Decoder
from ._download import DEFAULT_BASE_URL, Source, SpeechRequest
from ._exceptions import (
    AudioDeviceError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    DecodeError,
    HTTPStatusError,
    NetworkError,
    NotFoundError,
    RateLimitError,
    ResumeMismatchError,
    ServerError,
    SourceError,
    StateTransitionError,
    StreamTimeout,
    TLSError,
    TTSStreamError,
    UnsupportedFormatError,
)
from ._format import AudioFormat, Block
from ._metrics import PlaybackReport, TimelineEntry
from ._player import (
    Playback,
    PlaybackStatistics,
    Player,
    open_playback,
    open_player,
    play,
    speak,
)
from ._ringbuffer import Gate, PlayoutStatistics
from ._sinks import AudioSink, NullSink, SoundDeviceSink, WavFileSink
from ._state import (
    TRANSITIONS,
    Cause,
    Outcome,
    PlaybackController,
    PlaybackState,
    PlaybackStateMachine,
    Transition,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_VARIABLES",
    "TRANSITIONS",
    "AudioDeviceError",
    "AudioFormat",
    "AudioSink",
    "AuthenticationError",
    "BadRequestError",
    "Block",
    "Cause",
    "ConfigError",
    "DecodeError",
    "Decoder",
    "Gate",
    "HTTPStatusError",
    "NetworkError",
    "NotFoundError",
    "NullSink",
    "Outcome",
    "Playback",
    "PlaybackController",
    "PlaybackReport",
    "PlaybackState",
    "PlaybackStateMachine",
    "PlaybackStatistics",
    "Player",
    "PlayoutStatistics",
    "RateLimitError",
    "ResumeMismatchError",
    "ServerError",
    "SoundDeviceSink",
    "Source",
    "SourceError",
    "SpeechRequest",
    "StateTransitionError",
    "StreamConfig",
    "StreamTimeout",
    "TLSError",
    "TTSStreamError",
    "TimelineEntry",
    "Transition",
    "UnsupportedFormatError",
    "WavFileSink",
    "__version__",
    "available_formats",
    "create_decoder",
    "open_playback",
    "open_player",
    "play",
    "sniff_format",
    "speak",
]
