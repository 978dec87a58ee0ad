"""Tests of the one decision about what a body is (trio_tts_stream._detect).

A table of (Content-Type, request, first bytes) -> decision, then the pieces: tag
lengths, Content-Type parsing, the text test and the quote in error messages.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_tts_stream._detect import (
    SNIFF_BYTES,
    BodyFormat,
    decide,
    head_needed,
    parse_content_type,
    quote_body,
    tag_length,
)
from trio_tts_stream._exceptions import DecodeError, NotAudioError, UnsupportedFormatError
from trio_tts_stream._format import FormatHint

PCM = FormatHint("pcm")
NONE = FormatHint(None)


def id3(size: int = 20, *, footer: bool = False) -> bytes:
    """An ID3v2.4 tag of ``size`` bytes after its header (syncsafe), padding only."""
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    flags = 0x10 if footer else 0
    tag = b"ID3\x04\x00" + bytes([flags]) + syncsafe + bytes(size)
    return tag + (b"3DI\x04\x00" + bytes([flags]) + syncsafe if footer else b"")


def ape(size: int = 40) -> bytes:
    """An APEv2 tag with a header (version, size without the header, item count, flags,
    8 reserved bytes), as some encoders put at the start."""
    return b"APETAGEX" + struct.pack("<IIII", 2000, size, 0, 0xA0000000) + bytes(8 + size)


WAV = b"RIFF\x24\x08\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\xc0\x5d\x00\x00" + bytes(40)
RF64 = b"RF64\xff\xff\xff\xffWAVEds64" + bytes(40)
FLAC = b"fLaC\x00\x00\x00\x22" + bytes(40)
OGG = b"OggS\x00\x02" + bytes(40)
ADTS = b"\xff\xf1\x50\x80\x02\x1f\xfc" + bytes(40)
MP3 = b"\xff\xfb\x90\x64" + bytes(40)
M4A = b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00" + bytes(40)
WEBM = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81" + bytes(40)
AIFF = b"FORM\x00\x00\x10\x00AIFFCOMM" + bytes(40)
# Quiet speech as pcm: small samples, full of 0x00 and 0xff bytes.
SPEECH = np.array([0, 3, -2, 40, -300, 1200, -1, 7] * 8, dtype="<i2").tobytes()
HTML = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>"
JSON = b'{"error": {"message": "Invalid voice", "type": "invalid_request_error"}}'
SSE = b'data: {"type": "speech.audio.delta", "audio": "AAAA"}\n\n'
PLAIN = b"Internal Server Error: the model is still loading, try again later"


@pytest.mark.parametrize(
    ("content_type", "hint", "head", "name", "noted"),
    [
        # Unambiguous magic wins over everything, noted when something else was said.
        (None, PCM, WAV, "wav", True),
        ("audio/wav", FormatHint("wav"), WAV, "wav", False),
        ("audio/pcm", PCM, WAV, "wav", True),
        ("audio/mpeg", FormatHint("mp3"), WAV, "wav", True),
        ("application/octet-stream", FormatHint("wav"), RF64, "wav", False),
        ("audio/mpeg", FormatHint("mp3"), FLAC, "flac", True),
        (None, NONE, FLAC, "flac", False),
        ("audio/ogg; codecs=opus", FormatHint("opus"), OGG, "opus", False),
        ("text/plain", FormatHint("wav"), WAV, "wav", True),  # a mislabelled file is audio
        # Behind an ID3 or APE tag, the bytes after it decide.
        (None, FormatHint("aac"), id3() + ADTS, "aac", False),
        ("audio/mpeg", FormatHint("mp3"), id3() + ADTS, "aac", True),
        ("audio/aac", FormatHint("aac"), id3() + ADTS, "aac", False),
        ("audio/flac", FormatHint("flac"), id3(300, footer=True) + FLAC, "flac", False),
        ("audio/mpeg", FormatHint("mp3"), id3() + FLAC, "flac", True),
        (None, NONE, id3() + MP3, "mp3", False),
        (None, NONE, id3() + bytes(40), "mp3", False),  # only the tag: mp3 by convention
        ("audio/aac", FormatHint("aac"), id3() + bytes(40), "aac", False),  # ... weakly
        (None, NONE, ape() + FLAC, "flac", False),
        # Containers without a streaming decoder: decoded whole.
        ("audio/mp4", FormatHint("aac"), M4A, None, True),
        (None, NONE, WEBM, None, False),
        (None, FormatHint("wav"), AIFF, None, True),
        ("audio/webm", NONE, SPEECH, None, False),
        # The Content-Type, over the request and over a frame sync.
        ("audio/mpeg", PCM, MP3, "mp3", True),
        ("audio/pcm", PCM, MP3, "pcm", False),
        ("audio/aac", FormatHint("mp3"), SPEECH, "aac", True),
        ("Audio/MPEG", NONE, SPEECH, "mp3", False),
        # A frame sync alone: pcm for a pcm request, the codec otherwise.
        (None, PCM, MP3, "pcm", False),
        (None, PCM, ADTS, "pcm", False),
        (None, FormatHint("wav"), MP3, "mp3", True),
        (None, NONE, MP3, "mp3", False),
        ("application/octet-stream", NONE, ADTS, "aac", False),
        # Nothing said by the bytes or the type: the request.
        (None, PCM, SPEECH, "pcm", False),
        ("application/octet-stream", FormatHint("mp3"), SPEECH, "mp3", False),
        (None, PCM, bytes(64), "pcm", False),  # silence
    ],
)
def test_the_decision_table(
    content_type: str | None, hint: FormatHint, head: bytes, name: str | None, noted: bool
) -> None:
    decision = decide(head, content_type, hint)
    assert decision.name == name
    assert (decision.note is not None) is noted, decision.note
    assert (decision.reason is not None) is (name is None)


@pytest.mark.parametrize(
    ("content_type", "hint", "head", "match"),
    [
        ("text/html; charset=utf-8", PCM, HTML, "'text/html', not audio: '<!DOCTYPE html>"),
        ("application/json", PCM, JSON, "'application/json', not audio"),
        ("application/problem+json", PCM, JSON, "not audio"),
        ("text/event-stream", PCM, SSE, "an event stream"),
        ("text/plain", PCM, PLAIN, "Internal Server Error"),
        ("image/png", PCM, b"\x89PNG\r\n\x1a\n" + bytes(40), "'image/png', not audio"),
        ("application/xml", FormatHint("mp3"), b"<?xml version='1.0'?><Error>", "not audio"),
        # Text bytes with no magic, whatever the label says.
        (None, PCM, HTML, "the response is text"),
        (None, PCM, JSON, "the response is text"),
        (None, PCM, PLAIN, "the response is text"),
        ("application/octet-stream", PCM, SSE, "the response is text"),
        ("audio/mpeg", FormatHint("mp3"), JSON, "the response is text"),
        ("audio/pcm", PCM, HTML, "the response is text"),
        (None, PCM, b"\xef\xbb\xbf" + JSON, "the response is text"),  # a UTF-8 BOM
        # Nothing to go by at all: pcm is never assumed.
        (None, NONE, SPEECH, "cannot tell what the response is"),
        ("application/octet-stream", NONE, SPEECH, "pass response_format"),
    ],
)
def test_non_audio_is_refused_with_the_start_of_the_body(
    content_type: str | None, hint: FormatHint, head: bytes, match: str
) -> None:
    with pytest.raises(NotAudioError, match=match) as info:
        decide(head, content_type, hint)
    assert isinstance(info.value, DecodeError)  # CLI exit 5, like every decode failure
    assert "\n" not in str(info.value)


def test_plain_text_under_an_audio_type_needs_structure_to_be_refused() -> None:
    """Under audio/pcm, 32 printable bytes could in principle be loud pcm: only markup,
    JSON or an event stream is refused there; with no type, any text is."""
    assert decide(PLAIN, "audio/pcm", PCM).name == "pcm"
    with pytest.raises(NotAudioError):
        decide(PLAIN, None, PCM)


@pytest.mark.parametrize(
    ("content_type", "rate", "channels", "big", "noted"),
    [
        ("audio/pcm", 24000, 1, False, False),
        ("audio/pcm;rate=22050", 22050, 1, False, True),
        ("audio/pcm; rate=24000; channels=1", 24000, 1, False, False),
        ('audio/pcm; Rate="16000"; CHANNELS=2', 16000, 2, False, True),
        ("audio/L16; rate=24000", 24000, 1, True, False),
        ("audio/L16; rate=8000; channels=1", 8000, 1, True, True),
        ("audio/l16;rate=24000;endianness=little-endian", 24000, 1, False, False),
        ("audio/pcm;endianness=big-endian", 24000, 1, True, False),
    ],
)
def test_pcm_parameters_in_the_content_type_are_honoured(
    content_type: str, rate: int, channels: int, big: bool, noted: bool
) -> None:
    decision = decide(SPEECH, content_type, PCM)
    assert decision == BodyFormat(
        "pcm", rate, channels, big_endian=big, note=decision.note, reason=None
    )
    assert (decision.note is not None) is noted
    if noted:
        assert "expected 24000 Hz" in str(decision.note) or "expected 1" in str(decision.note)


def test_the_request_describes_pcm_the_type_does_not() -> None:
    assert decide(SPEECH, None, FormatHint("pcm", 16000, 2)) == BodyFormat("pcm", 16000, 2)


@pytest.mark.parametrize("value", ["rate=abc", "rate=10", "channels=0", "rate=9999999"])
def test_impossible_pcm_parameters_are_an_error(value: str) -> None:
    with pytest.raises(UnsupportedFormatError, match="cannot be played"):
        decide(SPEECH, f"audio/pcm; {value}", PCM)


def test_parse_content_type() -> None:
    assert parse_content_type(None) == ("", {})
    assert parse_content_type("") == ("", {})
    assert parse_content_type(" Audio/PCM ; Rate=22050;channels = 1; ;x") == (
        "audio/pcm",
        {"rate": "22050", "channels": "1"},
    )


def test_tag_lengths() -> None:
    assert tag_length(id3(20)) == 30
    assert tag_length(id3(300, footer=True)) == 320
    assert tag_length(id3(200_000)) == 200_010  # syncsafe: 7 bits per byte
    assert tag_length(ape(40)) == 32 + 40
    assert tag_length(b"ID3\x04\x00") == 0  # not yet known
    assert tag_length(WAV) == 0


def test_head_needed_grows_to_the_end_of_a_tag() -> None:
    assert head_needed(b"") == SNIFF_BYTES
    assert head_needed(WAV[:5]) == SNIFF_BYTES
    tag = id3(500)
    assert head_needed(tag[:4]) > 10  # the header is not complete yet
    assert head_needed(tag[:10]) == len(tag) + 12
    assert head_needed(id3(4)[:10]) == SNIFF_BYTES  # a tiny tag: the usual sniff covers it


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-2000, 2000), min_size=SNIFF_BYTES, max_size=64).map(
        lambda xs: np.array(xs, dtype="<i2").tobytes()
    )
)
def test_speech_like_pcm_is_never_taken_for_text(head: bytes) -> None:
    assert decide(head, None, PCM).name == "pcm"
    assert decide(head, "audio/pcm", PCM).name == "pcm"


def test_the_quote_is_one_short_escaped_line() -> None:
    quote = quote_body(b"<html>\n  <body>\x00\xff\xfe" + b"x" * 500)
    assert quote.startswith("'<html> <body>\\x00\\xff\\xfe")
    assert quote.endswith("...")
    assert len(quote) < 120
    assert "\n" not in quote
    assert quote_body(b"ok") == "'ok'"
