"""Streaming RIFF/WAVE decoder.

Theory of operation
-------------------
A WAV stream is a 12-byte ``RIFF`` header (``RIFF`` or ``RF64``, a size, ``WAVE``)
followed by chunks, each an 8-byte header (4-byte id, little-endian 32-bit size) and
``size`` bytes of body plus one pad byte when ``size`` is odd. :class:`WavDecoder` is a
small state machine that never needs more than one chunk header (or the ``fmt ``/``ds64``
body, at most :data:`_MAX_HEADER_CHUNK` bytes) in memory:

``riff``
    collect the 12-byte RIFF header; reject anything else as early as its first byte.
``chunk``
    collect the next 8-byte chunk header and dispatch on its id.
``body``
    collect the body of a ``fmt `` or ``ds64`` chunk and parse it.
``skip``
    discard the body of any other chunk (``LIST``, ``fact``, ``JUNK``, ...) as it
    streams past, without buffering it.
``data``
    convert samples to float32 blocks (one block per :meth:`WavDecoder.decode` call).
    A data size of ``0`` or ``0xFFFFFFFF`` means "unknown length" (what servers and
    ``ffmpeg ... pipe:`` write when streaming): the chunk then runs to end of stream.
    Otherwise decoding stops after ``size`` bytes.
``done``
    the data chunk is complete; later bytes (trailing chunks) are counted and ignored.

**The header-patch trailer.** A server that writes WAV through a seekable in-memory
buffer it empties after every write (PyAV/FFmpeg into ``BytesIO``, as a Kokoro-FastAPI
release did) sends, after the data, what the muxer wrote when it went back to fill in
the sizes: a block as long as the header, zeros except the RIFF size at offset 4 and the
data size in the header's last 4 bytes. Played, those sizes are a click. So when the data
runs to end of stream, the last header-length bytes are held back (about 1.6 ms of 24 kHz
audio for a 78-byte header) and, at the end, dropped if they are such a patch: exactly
the header's length, every byte zero or equal to the header's byte except the two size
fields, and the data size (or the RIFF size) equal to what the data before the block
adds up to. Audio never matches that by chance; anything else is played.

Supported encodings: PCM (format tag 1) 8-bit unsigned and 16/24/32-bit signed; IEEE float
(tag 3) 32/64-bit; and ``WAVE_FORMAT_EXTENSIBLE`` (0xFFFE) with a PCM or IEEE-float
sub-format GUID. Anything else raises :class:`~trio_tts_stream.UnsupportedFormatError`.
"""

from __future__ import annotations

import struct
from typing import Literal

from .._exceptions import DecodeError, UnsupportedFormatError
from .._format import AudioFormat, Block
from .pcm import SampleFormat, _FrameConverter

__all__ = ["WavDecoder"]

_State = Literal["riff", "chunk", "body", "skip", "data", "done"]

_TAG_PCM = 0x0001
_TAG_FLOAT = 0x0003
_TAG_EXTENSIBLE = 0xFFFE

#: The 14 bytes that follow the 2-byte format tag in a KSDATAFORMAT_SUBTYPE_* GUID.
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"

#: Names of common non-PCM format tags, for error messages.
_TAG_NAMES = {
    0x0002: "Microsoft ADPCM",
    0x0006: "A-law",
    0x0007: "mu-law",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0050: "MPEG audio",
    0x0055: "MPEG Layer III (mp3)",
    0x00FF: "AAC",
    0x1610: "AAC (ADTS)",
    0x6750: "Vorbis",
    0x704F: "Opus",
    0xF1AC: "FLAC",
}

_PCM_FORMATS: dict[int, SampleFormat] = {8: "u8", 16: "s16", 24: "s24", 32: "s32"}

#: Largest ``fmt `` or ``ds64`` body we buffer (real ones are 16-40 bytes).
_MAX_HEADER_CHUNK = 4096

#: Longest header (bytes before the data) for which a header-patch trailer is looked for.
_MAX_PATCHED_HEADER = 1024

#: Data sizes that mean "unknown, read to end of stream".
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)

_ADVICE = "ask the server for response_format='pcm' or 'wav' with PCM samples"


class WavDecoder:
    """Incremental decoder for a streamed WAV (RIFF/WAVE, optionally RF64) file.

    Attributes:
        trailing_bytes_dropped: Bytes of an incomplete final frame discarded by
            :meth:`flush` (0 for a well-formed stream).
        ignored_trailing_bytes: Bytes received after the end of a data chunk of known
            size (trailing chunks such as ``LIST`` or ``id3 ``), which are ignored.
        declared_data_size: The data chunk's size in bytes, or ``None`` while unknown
            or when the header says "until end of stream" (``0`` or ``0xFFFFFFFF``).
        trailer: What was dropped at the end as not audio (a header-patch trailer, see
            the module docstring), else ``None``.
        truncated: Set by :meth:`flush` when the data ended before its declared size.
    """

    name: str = "wav"

    def __init__(self) -> None:
        self._state: _State = "riff"
        self._header = bytearray()  # the partial RIFF header, chunk header or body
        self._need = 12  # bytes to collect into _header in the riff/chunk/body states
        self._chunk_id = b""
        self._skip = 0  # bytes left to discard in the skip state
        self._data_left: int | None = None  # bytes left in the data chunk; None = to EOF
        self._ds64_data_size: int | None = None
        self._format: AudioFormat | None = None
        self._sample_format: SampleFormat | None = None
        self._converter: _FrameConverter | None = None
        self._received = 0
        self.trailing_bytes_dropped = 0
        self.ignored_trailing_bytes = 0
        self.declared_data_size: int | None = None
        self.trailer: str | None = None
        self.truncated: str | None = None
        self._prefix: bytearray | None = bytearray()  # bytes before the data; None: too many
        self._hold = 0  # data bytes held back at the end (the header's length), or 0
        self._tail = bytearray()  # those bytes
        self._data_bytes = 0  # data bytes received (converted or held)

    @property
    def audio_format(self) -> AudioFormat | None:
        """Sample rate and channels once the ``fmt `` chunk was parsed, else ``None``."""
        return self._format

    @property
    def sample_format(self) -> SampleFormat | None:
        """Encoding of the samples (``"s16"``, ``"f32"``, ...) once known, else ``None``."""
        return self._sample_format

    def decode(self, data: bytes) -> list[Block]:
        """Consume the next bytes of the stream; return the completed blocks.

        Raises:
            UnsupportedFormatError: The stream is not RIFF/WAVE, or its samples are not
                PCM or IEEE float.
            DecodeError: The header is malformed.
        """
        self._received += len(data)
        view = memoryview(data)
        pos = 0
        end = len(view)
        blocks: list[Block] = []
        while pos < end:
            state = self._state
            if state == "data":
                take = end - pos if self._data_left is None else min(end - pos, self._data_left)
                blocks += self._take_data(view[pos : pos + take])
                pos += take
                if self._data_left is not None:
                    self._data_left -= take
                    if self._data_left == 0:
                        self._state = "done"
            elif state == "skip":
                take = min(end - pos, self._skip)
                self._keep_prefix(view[pos : pos + take])
                self._skip -= take
                pos += take
                if self._skip == 0:
                    self._begin_chunk_header()
            elif state == "done":
                self.ignored_trailing_bytes += end - pos
                pos = end
            else:  # collecting the RIFF header, a chunk header or a header body
                take = min(end - pos, self._need - len(self._header))
                self._header += view[pos : pos + take]
                self._keep_prefix(view[pos : pos + take])
                pos += take
                if state == "riff":
                    self._check_riff_prefix()
                if len(self._header) == self._need:
                    collected = bytes(self._header)
                    self._header.clear()
                    if state == "riff":
                        self._on_riff_header(collected)
                    elif state == "chunk":
                        self._on_chunk_header(collected)
                    else:
                        self._on_chunk_body(collected)
        return blocks

    def flush(self) -> list[Block]:
        """End of stream: drop an incomplete final frame (see ``trailing_bytes_dropped``).

        A data chunk shorter than its declared size is not an error: every sample that
        arrived was returned.

        Returns:
            The held-back last bytes of a data chunk running to end of stream, unless
            they are a header-patch trailer (see the module docstring).

        Raises:
            DecodeError: The stream ended before the header was complete (no data chunk
                was reached), so there is no audio at all.
        """
        if self._state in ("riff", "chunk", "body", "skip"):
            where = "in the RIFF header" if self._state == "riff" else "before the data chunk"
            raise DecodeError(
                f"WAV stream ended after {self._received} bytes, {where}: the header is "
                "incomplete and there is no audio (truncated or empty response?)"
            )
        blocks: list[Block] = []
        if self._tail:
            tail, self._tail = bytes(self._tail), bytearray()
            if self._is_header_patch(tail):
                self.ignored_trailing_bytes += len(tail)
                self.trailer = (
                    f"a {len(tail)}-byte header patch (the sizes, rewritten after the data)"
                )
            else:
                assert self._converter is not None
                blocks = self._converter.convert(memoryview(tail))
        if self._data_left:
            assert self.declared_data_size is not None
            got = self.declared_data_size - self._data_left
            self.truncated = (
                f"the WAV data ended after {got} of the {self.declared_data_size} bytes "
                "its header declares"
            )
        if self._converter is not None:
            self.trailing_bytes_dropped += self._converter.drop_partial()
        return blocks

    # -- data and the trailer ----------------------------------------------------------

    def _take_data(self, data: memoryview) -> list[Block]:
        converter = self._converter
        assert converter is not None
        self._data_bytes += len(data)
        hold = self._hold
        if not hold:
            return converter.convert(data)
        tail = self._tail
        if len(data) >= hold:
            blocks = converter.convert(memoryview(bytes(tail))) if tail else []
            blocks += converter.convert(data[: len(data) - hold])
            self._tail = bytearray(data[len(data) - hold :])
            return blocks
        tail += data
        excess = len(tail) - hold
        if excess <= 0:
            return []
        blocks = converter.convert(memoryview(bytes(tail[:excess])))
        del tail[:excess]
        return blocks

    def _keep_prefix(self, data: memoryview) -> None:
        if self._prefix is not None:
            if len(self._prefix) + len(data) <= _MAX_PATCHED_HEADER:
                self._prefix += data
            else:
                self._prefix = None  # too long a header to look for its patch

    def _is_header_patch(self, tail: bytes) -> bool:
        header = self._prefix
        assert header is not None  # bytes are held back only when it was kept
        size = len(header)
        if len(tail) != size or size < 44:
            return False
        data = self._data_bytes - size  # the data before the trailer
        riff_field = int.from_bytes(tail[4:8], "little")
        data_field = int.from_bytes(tail[size - 4 :], "little")
        if data_field != data and riff_field != data + size - 8:
            return False
        if riff_field not in (0, data + size - 8, int.from_bytes(header[4:8], "little")):
            return False
        if data_field not in (0, data, int.from_bytes(header[size - 4 :], "little")):
            return False
        return all(
            b == 0 or b == header[i] or 4 <= i < 8 or i >= size - 4 for i, b in enumerate(tail)
        )

    # -- header parsing --------------------------------------------------------------

    def _begin_chunk_header(self) -> None:
        self._state = "chunk"
        self._need = 8

    def _check_riff_prefix(self) -> None:
        """Reject a non-RIFF stream as soon as its first bytes disagree."""
        head = bytes(self._header[:4])
        if not (b"RIFF".startswith(head) or b"RF64".startswith(head)):
            raise UnsupportedFormatError(
                f"expected a WAV stream starting with b'RIFF' but it starts with "
                f"{bytes(self._header[:16])!r}; the server may have sent another format "
                f"or an error page: {_ADVICE}, or pick the decoder for what it sends"
            )

    def _on_riff_header(self, header: bytes) -> None:
        if header[8:12] != b"WAVE":
            raise UnsupportedFormatError(
                f"RIFF stream of type {header[8:12]!r} is not a WAV file (expected b'WAVE'); "
                f"{_ADVICE}"
            )
        self._begin_chunk_header()

    def _on_chunk_header(self, header: bytes) -> None:
        chunk_id = header[:4]
        (size,) = struct.unpack_from("<I", header, 4)
        if chunk_id == b"data":
            self._start_data(size)
        elif chunk_id in (b"fmt ", b"ds64"):
            if self._format is not None and chunk_id == b"fmt ":
                raise DecodeError("malformed WAV: more than one fmt chunk")
            if size > _MAX_HEADER_CHUNK:
                raise DecodeError(
                    f"malformed WAV: {chunk_id.decode('latin-1')!r} chunk of {size} bytes "
                    f"(at most {_MAX_HEADER_CHUNK} expected)"
                )
            self._chunk_id = chunk_id
            self._state = "body"
            self._need = size + (size & 1)
            if self._need == 0:
                self._on_chunk_body(b"")
        else:
            self._skip = size + (size & 1)
            self._state = "skip"
            if self._skip == 0:
                self._begin_chunk_header()

    def _on_chunk_body(self, body: bytes) -> None:
        if self._chunk_id == b"fmt ":
            self._parse_fmt(body)
        else:
            self._parse_ds64(body)
        self._begin_chunk_header()

    def _parse_ds64(self, body: bytes) -> None:
        if len(body) < 16:
            raise DecodeError(f"malformed RF64: ds64 chunk of {len(body)} bytes (need 16+)")
        (self._ds64_data_size,) = struct.unpack_from("<Q", body, 8)

    def _parse_fmt(self, body: bytes) -> None:
        if len(body) < 16:
            raise DecodeError(f"malformed WAV: fmt chunk of {len(body)} bytes (need 16+)")
        tag, channels, sample_rate, _byte_rate, _block_align, bits = struct.unpack_from(
            "<HHIIHH", body
        )
        described = f"format tag 0x{tag:04X}"
        if tag == _TAG_EXTENSIBLE:
            if len(body) < 40:
                raise DecodeError(
                    f"malformed WAV: WAVE_FORMAT_EXTENSIBLE fmt chunk of {len(body)} bytes "
                    "(need 40)"
                )
            guid = body[24:40]
            if guid[2:] != _GUID_TAIL:
                raise UnsupportedFormatError(
                    f"WAV stream uses WAVE_FORMAT_EXTENSIBLE with sub-format GUID "
                    f"{guid.hex()}, which is not PCM or IEEE float; {_ADVICE}"
                )
            (tag,) = struct.unpack_from("<H", guid)
            described = f"WAVE_FORMAT_EXTENSIBLE sub-format 0x{tag:04X}"
        sample_format: SampleFormat
        if tag == _TAG_PCM and bits in (8, 16, 24, 32):
            sample_format = _PCM_FORMATS[bits]
        elif tag == _TAG_FLOAT and bits in (32, 64):
            sample_format = "f32" if bits == 32 else "f64"
        else:
            if tag in (_TAG_PCM, _TAG_FLOAT):
                what = f"{bits}-bit {'PCM' if tag == _TAG_PCM else 'IEEE float'}"
            else:
                what = _TAG_NAMES.get(tag, "an unknown codec")
            raise UnsupportedFormatError(
                f"WAV stream holds {what} ({described}); this decoder handles 8/16/24/32-bit "
                f"PCM and 32/64-bit IEEE float only: {_ADVICE}"
            )
        if channels == 0:
            raise DecodeError("malformed WAV: fmt chunk declares 0 channels")
        try:
            audio_format = AudioFormat(sample_rate, channels)
        except ValueError as exc:
            raise UnsupportedFormatError(f"WAV stream format not supported: {exc}") from None
        self._format = audio_format
        self._sample_format = sample_format
        self._converter = _FrameConverter(sample_format, channels)

    def _start_data(self, size: int) -> None:
        if self._converter is None:
            raise DecodeError("malformed WAV: data chunk before the fmt chunk")
        ds64_size = self._ds64_data_size
        if size == 0xFFFFFFFF and ds64_size is not None and ds64_size != 0xFFFFFFFFFFFFFFFF:
            size = ds64_size  # RF64: the real size lives in the ds64 chunk (0 = unknown)
        self.declared_data_size = None if size in _UNKNOWN_SIZES else size
        self._data_left = self.declared_data_size
        self._state = "data"
        if self._data_left is None and self._prefix is not None:
            self._hold = len(self._prefix)  # see "the header-patch trailer" above

    def __repr__(self) -> str:
        fmt = self._format
        if fmt is None:
            return f"<WavDecoder state={self._state}>"
        return (
            f"<WavDecoder {self._sample_format} {fmt.sample_rate} Hz x{fmt.channels} "
            f"state={self._state}>"
        )
