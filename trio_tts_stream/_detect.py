"""What is this body? The one decision about a response's format, made from its first bytes.

Pure: bytes and header values in, a :class:`BodyFormat` (or an exception) out. The
stream decoder (:mod:`._stream_decoder`) holds the first bytes of a response until
:func:`head_needed` says there are enough, then asks :func:`decide` once.

Theory of operation
-------------------
Three witnesses, in this order of trust:

1. **Unambiguous magic bytes** (after any leading ID3v2 or APE tag, which say nothing
   about the codec behind them): ``RIFF``/``RF64`` ... ``WAVE``, ``fLaC``, ``OggS``, and
   containers with no streaming decoder here (MP4 ``ftyp``, Matroska/WebM, AIFF, AMR, CAF),
   which go to the whole-body fallback. They win over everything, and where the
   ``Content-Type`` or the request said otherwise, :attr:`BodyFormat.note` says so.
2. **The Content-Type.** A non-audio type (``text/*``, JSON, XML, HTML, an event stream,
   an image, a PDF...) is a :class:`~._exceptions.NotAudioError` that quotes the start of
   the body. A known audio type chooses the decoder, its ``rate=``/``channels=``
   parameters describe pcm, and ``audio/L16`` is big-endian unless it says
   ``endianness=little-endian`` (RFC 2586). An audio type with no streaming decoder
   (``audio/webm``, ``audio/mp4``) goes to the fallback.
3. **The request** (:class:`~._format.FormatHint`). An mp3 or ADTS frame sync is a weak
   witness: raw pcm can start with the same bytes, so it loses to a pcm request, and wins
   over any other request or over none.

Bytes that read as text (HTML, JSON, an SSE ``data:`` line, a plain error message) and
carry no magic are never audio: they raise :class:`~._exceptions.NotAudioError` even under
an audio Content-Type when they are structured text. With nothing declared, no magic and
no request, the format cannot be told: that is a ``NotAudioError`` too, never pcm by
default (pcm is only assumed when it was asked for or declared).
"""

from __future__ import annotations

from dataclasses import dataclass

from ._exceptions import NotAudioError, UnsupportedFormatError
from ._format import AudioFormat, FormatHint

__all__ = [
    "SNIFF_BYTES",
    "BodyFormat",
    "decide",
    "head_needed",
    "magic",
    "parse_content_type",
    "quote_body",
    "tag_length",
]

#: Bytes after a leading tag that recognise every magic number.
_MAGIC_BYTES = 12

#: Bytes needed with no leading tag to recognise every magic number and tell text
#: from audio (32 bytes of pcm are 0.7 ms at 24 kHz).
SNIFF_BYTES = 32

#: ``Content-Type`` -> decoder name, for the audio types servers send.
AUDIO_TYPES = {
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/vnd.wave": "wav",
    "audio/pcm": "pcm",
    "audio/l16": "pcm",
    "audio/raw": "pcm",
    "audio/x-raw": "pcm",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/mpeg3": "mp3",
    "audio/x-mpeg": "mp3",
    "audio/aac": "aac",
    "audio/x-aac": "aac",
    "audio/aacp": "aac",
    "audio/flac": "flac",
    "audio/x-flac": "flac",
    "audio/ogg": "opus",
    "audio/opus": "opus",
    "application/ogg": "opus",
}

#: Types that are never audio, besides every ``text/*``, ``image/*``, ``*+json`` and
#: ``*+xml``.
_NOT_AUDIO = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/x-javascript",
        "application/pdf",
        "application/zip",
        "application/gzip",
        "application/x-www-form-urlencoded",
        "application/problem+json",
        "multipart/form-data",
        "multipart/mixed",
    }
)


def _fallback_container(head: bytes) -> str | None:
    """Containers recognised by their bytes that no streaming decoder here reads (they
    are decoded whole, with PyAV): a description, or ``None``."""
    if head[4:8] == b"ftyp":
        return "an MP4/M4A file"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "a Matroska/WebM file"
    if head.startswith(b"FORM") and head[8:12] in (b"AIFF", b"AIFC"):
        return "an AIFF file"
    if head.startswith(b"#!AMR"):
        return "an AMR file"
    if head.startswith(b"caff"):
        return "a CAF file"
    return None


#: Openings of structured text: no audio format starts like these, and pcm does so only
#: by a coincidence the text test below rules out.
_TEXT_OPENINGS = (b"<", b"{", b"[", b"data:", b"event:", b"id:", b"retry:", b":")


@dataclass(frozen=True)
class BodyFormat:
    """What a response body is, as :func:`decide` found.

    Attributes:
        name: The decoder to stream it with (``"pcm"``, ``"wav"``, ...), or ``None``: no
            streaming decoder reads it, decode the whole body (``reason`` says why).
        sample_rate: Frames per second of pcm (from the Content-Type or the request).
        channels: Channels of pcm.
        big_endian: pcm samples are big-endian (``audio/L16``).
        note: How a disagreement between the bytes, the Content-Type and the request was
            resolved, for the report; ``None`` when they agree.
        reason: Why ``name`` is ``None``.
    """

    name: str | None
    sample_rate: int = 24000
    channels: int = 1
    big_endian: bool = False
    note: str | None = None
    reason: str | None = None


def parse_content_type(value: str | None) -> tuple[str, dict[str, str]]:
    """Split a ``Content-Type`` into its lower-cased media type and its parameters.

    ``"audio/pcm; rate=22050; Channels=1"`` -> ``("audio/pcm", {"rate": "22050",
    "channels": "1"})``. Parameter names are lower-cased, quotes around values removed;
    ``None`` or an empty header gives ``("", {})``.
    """
    if not value:
        return "", {}
    mime, _, rest = value.partition(";")
    params = {}
    for item in rest.split(";"):
        key, sep, val = item.partition("=")
        if sep and key.strip():
            params[key.strip().lower()] = val.strip().strip('"')
    return mime.strip().lower(), params


def tag_length(head: bytes) -> int:
    """Length of the ID3v2 or APE tag that starts ``head`` (0: none, or not yet known).

    An ID3v2 tag is its 10-byte header, the syncsafe size it gives, and a 10-byte footer
    when flag bit 4 is set. An APE tag at the start has a 32-byte header whose size field
    excludes that header.
    """
    if head.startswith(b"ID3") and len(head) >= 10:
        size = 0
        for byte in head[6:10]:
            size = (size << 7) | (byte & 0x7F)
        return 10 + size + (10 if head[5] & 0x10 else 0)
    if head.startswith(b"APETAGEX") and len(head) >= 16:
        return 32 + int.from_bytes(head[12:16], "little")
    return 0


def head_needed(head: bytes) -> int:
    """How many bytes of a body :func:`decide` wants: enough for the magic after a tag.

    May grow as more of ``head`` arrives (a tag's size is in its header). Deciding with
    fewer (a short body) is allowed.
    """
    if (head.startswith(b"ID3") and len(head) < 10) or (
        head.startswith(b"APETAGEX") and len(head) < 16
    ):
        return 16 + SNIFF_BYTES
    tag = tag_length(head)
    return max(SNIFF_BYTES, tag + _MAGIC_BYTES) if tag else SNIFF_BYTES


def quote_body(head: bytes, limit: int = 100) -> str:
    """The start of a body, for an error message: at most ``limit`` characters, printable
    ASCII only (everything else escaped), one line."""
    text = head[: limit * 4].decode("utf-8", "backslashreplace")
    out = []
    for char in text:
        if char in "\r\n\t":
            out.append(" ")
        elif char.isprintable() and ord(char) < 0x7F:
            out.append(char)
        else:
            out.append(char.encode("unicode_escape").decode("ascii"))
    quoted = " ".join("".join(out).split())[:limit]
    return f"'{quoted}'" + (" ..." if len(head) > len(quoted) else "")


def _looks_like_text(head: bytes, *, structured_only: bool) -> bool:
    """Whether the first bytes of a body are text (UTF-8, printable or whitespace).

    Raw pcm near silence is full of NUL and 0xFF bytes; 16 printable bytes in a row from
    loud pcm happen about once in 10**7 bodies. With ``structured_only`` the text must
    also open like markup, JSON or an event stream.
    """
    sample = head[:64].removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark
    if len(sample) < 8 and not sample.startswith(_TEXT_OPENINGS):
        return False
    text = sample.decode("utf-8", "ignore")  # a character cut at the end is dropped
    if len(text.encode()) < len(sample) - 3:
        return False
    if not all(char.isprintable() or char in "\r\n\t" for char in text):
        return False
    if structured_only:
        return sample.lstrip(b" \r\n\t").startswith(_TEXT_OPENINGS)
    return True


def _is_not_audio(mime: str) -> bool:
    top, _, sub = mime.partition("/")
    return (
        top in ("text", "image", "font", "model")
        or mime in _NOT_AUDIO
        or sub.endswith(("+json", "+xml"))
    )


def _is_adts(head: bytes) -> bool:
    """12-bit sync, layer 00, a valid sampling-frequency index (0-12)."""
    return (
        len(head) >= 3 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0 and (head[2] >> 2) & 15 <= 12
    )


def _is_mp3(head: bytes) -> bool:
    """11-bit sync, a defined MPEG version, Layer III, a real bitrate and sample rate.

    Free-format (bitrate index 0) and Layers I/II are rejected: TTS servers never send
    them, and raw PCM near silence (``ff ff 00 00`` = samples -1, 0) would match them.
    """
    if len(head) < 3 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 3
    return version != 1 and layer == 1 and 0 < bitrate < 15 and rate != 3


_DESCRIPTIONS = {
    "wav": "a WAV file",
    "flac": "a FLAC stream",
    "opus": "an Ogg stream",
    "mp3": "mp3 frames",
    "aac": "ADTS (AAC) frames",
}


def magic(head: bytes) -> tuple[str | None, bool, str]:
    """What the bytes after any leading tag are: ``(name, strong, description)``.

    ``name`` is a decoder name, ``None`` for a container decoded whole or for nothing
    recognised (then ``description`` is empty); ``strong`` is ``True`` for magic that is
    never a coincidence.
    """
    skip = tag_length(head)
    body = head[skip:]
    if body[:4] in (b"RIFF", b"RF64") and body[8:12] == b"WAVE":
        return "wav", True, _DESCRIPTIONS["wav"]
    if body.startswith(b"fLaC"):
        return "flac", True, _DESCRIPTIONS["flac"]
    if body.startswith(b"OggS"):
        return "opus", True, _DESCRIPTIONS["opus"]
    container = _fallback_container(body)
    if container is not None:
        return None, True, container
    if _is_adts(body):
        return "aac", bool(skip), _DESCRIPTIONS["aac"]
    if _is_mp3(body):
        return "mp3", bool(skip), _DESCRIPTIONS["mp3"]
    if head.startswith(b"ID3"):
        # An ID3 tag with nothing recognisable behind it: mp3 is the convention, but a
        # weak witness (a declared type wins).
        return "mp3", False, "an ID3 tag"
    return None, False, ""


def decide(head: bytes, content_type: str | None, hint: FormatHint) -> BodyFormat:
    """Decide what a body is from its first bytes, its ``Content-Type`` and the request.

    Args:
        head: The start of the body (at least :func:`head_needed` bytes, unless the body
            is shorter).
        content_type: The response's ``Content-Type`` header, if any.
        hint: What was asked for; ``hint.name`` ``None`` means nothing was.

    Returns:
        The decision (see :class:`BodyFormat`).

    Raises:
        NotAudioError: The body is not audio, or its format cannot be told.
        UnsupportedFormatError: The Content-Type's pcm parameters are invalid.
    """
    mime, params = parse_content_type(content_type)
    name, strong, what = magic(head)
    declared = AUDIO_TYPES.get(mime)
    if not strong:
        if mime and _is_not_audio(mime):
            raise NotAudioError(
                f"the server answered {mime!r}, not audio: {quote_body(head)}" + _sse_hint(mime)
            )
        if name is None and _looks_like_text(head, structured_only=declared is not None):
            raise NotAudioError(f"the response is text, not audio: {quote_body(head)}")
    asked = hint.name.strip().lower() if hint.name else None
    if strong:
        chosen, reason = name, None if name else f"the bytes are {what}, decoded whole"
        note = _note(chosen, what, mime, declared, asked)
    elif declared is not None:
        chosen, reason = declared, None
        note = (
            f"asked for {asked}, the server declared {mime}"
            if asked not in (None, declared)
            else None
        )
    elif mime.startswith("audio/") or mime.startswith("video/"):
        chosen, note = None, None
        reason = f"the server declared {mime!r}, which has no streaming decoder here"
    elif name is not None:
        # A frame sync alone: pcm can start with one, so a pcm request keeps pcm.
        chosen = "pcm" if asked == "pcm" else name
        note = f"asked for {asked}, the bytes are {what}" if asked not in (None, chosen) else None
        reason = None
    elif asked is not None:
        chosen, note, reason = asked, None, None
    else:
        raise NotAudioError(
            "cannot tell what the response is: no audio Content-Type"
            + (f" ({mime!r})" if mime else "")
            + ", no known audio format in its first bytes, and no response_format given; "
            f"pass response_format (starts {quote_body(head, 40)})"
        )
    if chosen != "pcm":
        return BodyFormat(chosen, hint.sample_rate, hint.channels, note=note, reason=reason)
    return _pcm(mime, params, hint, note)


def _note(
    chosen: str | None, what: str, mime: str, declared: str | None, asked: str | None
) -> str | None:
    said = []
    if mime and declared != chosen and mime != "application/octet-stream":
        said.append(f"the Content-Type says {mime}")
    if asked is not None and asked != chosen:
        said.append(f"asked for {asked}")
    if not said or (chosen is None and asked not in AUDIO_TYPES.values()):
        return None
    played = f"played as {chosen}" if chosen else "decoded whole"
    return f"{' and '.join(said)}, but the bytes are {what}: {played}"


def _pcm(mime: str, params: dict[str, str], hint: FormatHint, note: str | None) -> BodyFormat:
    rate, channels = hint.sample_rate, hint.channels
    try:
        if "rate" in params:
            rate = int(params["rate"])
        if "channels" in params:
            channels = int(params["channels"])
        AudioFormat(rate, channels)
    except ValueError as exc:
        raise UnsupportedFormatError(
            f"the server's Content-Type {mime!r} describes pcm that cannot be played: {exc}"
        ) from exc
    endianness = params.get("endianness", "big-endian" if mime == "audio/l16" else "")
    big = endianness.lower() == "big-endian"
    changed = []
    if rate != hint.sample_rate:
        changed.append(f"rate={rate} (expected {hint.sample_rate} Hz)")
    if channels != hint.channels:
        changed.append(f"channels={channels} (expected {hint.channels})")
    if changed:
        note = "; ".join(filter(None, [note, f"the server declared {', '.join(changed)}"]))
    return BodyFormat("pcm", rate, channels, big_endian=big, note=note)


def _sse_hint(mime: str) -> str:
    if mime == "text/event-stream":
        return " (an event stream: the server sent SSE where audio bytes were expected)"
    return ""
