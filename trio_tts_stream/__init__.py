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

from ._cache import CacheStatistics, PhraseCache
from ._config import ENV_VARIABLES, StreamConfig
from ._decoders import available_formats, create_decoder, sniff_format
from ._decoders._base import Decoder
from ._exceptions import (
    AudioDeviceError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    DecodeError,
    HTTPStatusError,
    MissingDependencyError,
    NetworkError,
    NotAudioError,
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
from ._format import AudioFormat, Block, FormatHint
from ._http import DEFAULT_BASE_URL, Source, SpeechRequest
from ._metrics import (
    NetworkEvent,
    PlaybackReport,
    Sample,
    StretchEntry,
    TimelineEntry,
    UtteranceSpan,
)
from ._player import (
    Playback,
    PlaybackStatistics,
    Player,
    open_playback,
    open_player,
    play,
    speak,
)
from ._ringbuffer import SinkStatistics
from ._segment import Segmenter
from ._sinks import (
    AudioFrame,
    AudioSink,
    BufferedSink,
    FrameSink,
    NullSink,
    SoundDeviceSink,
    WavFileSink,
)
from ._speaker import (
    Interruption,
    Speaker,
    SpeakerClosedError,
    SpeakerStatistics,
    Utterance,
    UtteranceState,
    open_speaker,
)
from ._textfilter import MarkdownFilter, TextFilter
from ._vocabulary import Cause, Outcome, PlaybackState

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_VARIABLES",
    "AudioDeviceError",
    "AudioFormat",
    "AudioFrame",
    "AudioSink",
    "AuthenticationError",
    "BadRequestError",
    "Block",
    "BufferedSink",
    "CacheStatistics",
    "Cause",
    "ConfigError",
    "DecodeError",
    "Decoder",
    "FormatHint",
    "FrameSink",
    "HTTPStatusError",
    "Interruption",
    "MarkdownFilter",
    "MissingDependencyError",
    "NetworkError",
    "NetworkEvent",
    "NotAudioError",
    "NotFoundError",
    "NullSink",
    "Outcome",
    "PhraseCache",
    "Playback",
    "PlaybackReport",
    "PlaybackState",
    "PlaybackStatistics",
    "Player",
    "RateLimitError",
    "ResumeMismatchError",
    "Sample",
    "Segmenter",
    "ServerError",
    "SinkStatistics",
    "SoundDeviceSink",
    "Source",
    "SourceError",
    "Speaker",
    "SpeakerClosedError",
    "SpeakerStatistics",
    "SpeechRequest",
    "StateTransitionError",
    "StreamConfig",
    "StreamTimeout",
    "StretchEntry",
    "TLSError",
    "TTSStreamError",
    "TextFilter",
    "TimelineEntry",
    "UnsupportedFormatError",
    "Utterance",
    "UtteranceSpan",
    "UtteranceState",
    "WavFileSink",
    "__version__",
    "available_formats",
    "create_decoder",
    "open_playback",
    "open_player",
    "open_speaker",
    "play",
    "sniff_format",
    "speak",
]
