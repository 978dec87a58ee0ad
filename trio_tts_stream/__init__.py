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

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
    from ._outage import DeviceOutage
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

# The exports load on first use (PEP 562): ``python -m trio_tts_stream say`` sends its
# request before numpy, the decoders and the player are imported (see _cli), and
# ``import trio_tts_stream`` stays cheap. ``from trio_tts_stream import X`` and
# ``trio_tts_stream.X`` work as with eager imports.
_EXPORTS: dict[str, str] = {
    "CacheStatistics": "._cache",
    "PhraseCache": "._cache",
    "ENV_VARIABLES": "._config",
    "StreamConfig": "._config",
    "available_formats": "._decoders",
    "create_decoder": "._decoders",
    "sniff_format": "._decoders",
    "Decoder": "._decoders._base",
    "AudioDeviceError": "._exceptions",
    "AuthenticationError": "._exceptions",
    "BadRequestError": "._exceptions",
    "ConfigError": "._exceptions",
    "DecodeError": "._exceptions",
    "HTTPStatusError": "._exceptions",
    "MissingDependencyError": "._exceptions",
    "NetworkError": "._exceptions",
    "NotAudioError": "._exceptions",
    "NotFoundError": "._exceptions",
    "RateLimitError": "._exceptions",
    "ResumeMismatchError": "._exceptions",
    "ServerError": "._exceptions",
    "SourceError": "._exceptions",
    "StateTransitionError": "._exceptions",
    "StreamTimeout": "._exceptions",
    "TLSError": "._exceptions",
    "TTSStreamError": "._exceptions",
    "UnsupportedFormatError": "._exceptions",
    "AudioFormat": "._format",
    "Block": "._format",
    "FormatHint": "._format",
    "DEFAULT_BASE_URL": "._http",
    "Source": "._http",
    "SpeechRequest": "._http",
    "DeviceOutage": "._outage",
    "NetworkEvent": "._metrics",
    "PlaybackReport": "._metrics",
    "Sample": "._metrics",
    "StretchEntry": "._metrics",
    "TimelineEntry": "._metrics",
    "UtteranceSpan": "._metrics",
    "Playback": "._player",
    "PlaybackStatistics": "._player",
    "Player": "._player",
    "open_playback": "._player",
    "open_player": "._player",
    "play": "._player",
    "speak": "._player",
    "SinkStatistics": "._ringbuffer",
    "Segmenter": "._segment",
    "AudioFrame": "._sinks",
    "AudioSink": "._sinks",
    "BufferedSink": "._sinks",
    "FrameSink": "._sinks",
    "NullSink": "._sinks",
    "SoundDeviceSink": "._sinks",
    "WavFileSink": "._sinks",
    "Interruption": "._speaker",
    "Speaker": "._speaker",
    "SpeakerClosedError": "._speaker",
    "SpeakerStatistics": "._speaker",
    "Utterance": "._speaker",
    "UtteranceState": "._speaker",
    "open_speaker": "._speaker",
    "MarkdownFilter": "._textfilter",
    "TextFilter": "._textfilter",
    "Cause": "._vocabulary",
    "Outcome": "._vocabulary",
    "PlaybackState": "._vocabulary",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # next time a plain global
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
    "DeviceOutage",
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
