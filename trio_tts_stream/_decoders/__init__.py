"""Decoder registry: ``response_format`` name -> incremental decoder.

Like httpx's ``_decoders.py``, every format is a class with ``decode(bytes)`` and
``flush()`` (the :class:`~._base.Decoder` protocol), registered by name in
:data:`DECODERS`. ``pcm`` and ``wav`` are pure numpy and always present; formats that need
an optional dependency (PyAV for mp3/aac/flac/opus) are listed in :data:`_OPTIONAL`,
imported on first use, and left out of the registry when that dependency is not
installed, so
:func:`available_formats` tells the truth about this installation.

:func:`sniff_format` guesses the format of a response from its first bytes and its
``Content-Type``, for servers that ignore ``response_format``.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable

from .._detect import AUDIO_TYPES, magic, parse_content_type
from .._exceptions import UnsupportedFormatError
from ._base import Decoder
from .pcm import PcmDecoder
from .wav import WavDecoder

__all__ = [
    "DECODERS",
    "Decoder",
    "PcmDecoder",
    "WavDecoder",
    "available_formats",
    "create_decoder",
    "sniff_format",
]

DecoderFactory = Callable[[], Decoder]

#: Registered decoders by ``response_format`` name. ``pcm`` is special-cased by
#: :func:`create_decoder`, which passes it the stream's sample rate and channels.
DECODERS: dict[str, DecoderFactory] = {
    "pcm": PcmDecoder,
    "wav": WavDecoder,
}

#: Decoders needing an optional dependency: (name, module, class, top-level package it
#: needs, pip hint). Add a row per codec module, e.g.
#: ``("mp3", ".mp3", "Mp3Decoder", "av", "trio-tts-stream[formats]")``.
_OPTIONAL: tuple[tuple[str, str, str, str, str], ...] = (
    ("aac", ".aac", "AacDecoder", "av", "trio-tts-stream[formats]"),
    ("flac", ".flac", "FlacDecoder", "av", "trio-tts-stream[formats]"),
    ("mp3", ".mp3", "Mp3Decoder", "av", "trio-tts-stream[formats]"),
    ("opus", ".opus", "OpusDecoder", "av", "trio-tts-stream[formats]"),
)

#: Optional formats whose dependency is missing: name -> pip hint.
_MISSING: dict[str, str] = {}


def _lazy(module: str, attr: str) -> DecoderFactory:
    """A factory that imports ``attr`` from ``module`` (relative to this package) on first
    use, so ``import trio_tts_stream`` does not load PyAV (~17 MiB, 0.1-0.2 s) for a client
    that only ever plays pcm."""

    def factory() -> Decoder:
        cls: DecoderFactory = getattr(importlib.import_module(module, __name__), attr)
        return cls()

    factory.__name__ = factory.__qualname__ = attr
    return factory


for _name, _module, _attr, _requires, _hint in _OPTIONAL:
    if importlib.util.find_spec(_requires) is None:
        _MISSING[_name] = _hint
    else:
        DECODERS[_name] = _lazy(_module, _attr)


def available_formats() -> tuple[str, ...]:
    """Names of the formats this installation can decode, sorted."""
    return tuple(sorted(DECODERS))


def create_decoder(
    name: str, *, sample_rate: int = 24000, channels: int = 1, big_endian: bool = False
) -> Decoder:
    """Return a new decoder for the ``response_format`` called ``name``.

    Args:
        name: Format name, e.g. ``"pcm"`` or ``"wav"`` (case-insensitive).
        sample_rate: Frames per second; only used by ``pcm``, which has no header.
        channels: Channels per frame; only used by ``pcm``.
        big_endian: Big-endian samples; only used by ``pcm``.

    Raises:
        UnsupportedFormatError: ``name`` is not a registered format, or its optional
            dependency is not installed.
        ConfigError: ``sample_rate`` or ``channels`` is out of range (``pcm``).
    """
    key = name.strip().lower()
    if key == "pcm":
        return PcmDecoder(sample_rate=sample_rate, channels=channels, big_endian=big_endian)
    factory = DECODERS.get(key)
    if factory is not None:
        return factory()
    available = ", ".join(available_formats())
    if key in _MISSING:
        raise UnsupportedFormatError(
            f"decoding {key!r} needs an optional dependency: pip install "
            f"'{_MISSING[key]}' (formats available now: {available})"
        )
    raise UnsupportedFormatError(f"unknown audio format {name!r}; available formats: {available}")


def sniff_format(first_bytes: bytes, content_type: str | None) -> str | None:
    """Guess a response's audio format; ``None`` when unsure.

    Checks, in order: unambiguous magic bytes after any leading ID3v2/APE tag
    (``RIFF....WAVE``/``RF64`` -> ``wav``, ``fLaC`` -> ``flac``, ``OggS`` -> ``opus``, and
    ADTS or an mp3 frame behind a tag); then the ``Content-Type`` (parameters ignored);
    then a plausible frame header (ADTS -> ``aac``, MPEG Layer III -> ``mp3``). Frame sync
    comes last because raw PCM can begin with the same bytes (``b"\\xff\\xff"`` is the
    sample -1), so a declared ``audio/pcm`` wins over it. The player's full decision
    (non-audio bodies, ``rate=`` parameters, the request) is made by the stream decoder.

    Args:
        first_bytes: The start of the response body (at least 32 bytes, or the whole
            tag and 12 bytes after it).
        content_type: The ``Content-Type`` header, or ``None``.

    Returns:
        A format name (which may not be in :func:`available_formats`), or ``None``.
    """
    name, strong, _ = magic(bytes(first_bytes))
    if strong:
        return name
    mime, _params = parse_content_type(content_type)
    return AUDIO_TYPES.get(mime) or name
