"""Compressed response bodies for the test server: one incremental encoder per format.

Each encoder turns int16 mono samples into the bytes of one OpenAI response format, as
the audio is produced: :meth:`~_PyAVEncoder.encode` takes any number of samples and
returns whatever the muxer has written so far, :meth:`~_PyAVEncoder.flush` ends the
stream. The header is returned by the first call. Samples are re-cut into the codec's
frame size before they reach PyAV, so the bytes do not depend on how the input was cut,
and every encoder and muxer runs with ``fflags=+bitexact`` (no random Ogg serial numbers,
no version strings): the same samples give the same bytes on the same PyAV build.

Importing this module imports PyAV (``pip install trio-tts-stream[formats]``); the server
leaves these formats out when that fails.

Streaming into a non-seekable output
------------------------------------
The muxers write into a file object whose ``seekable()`` is false, so none of them can go
back and fill in the header at the end, as they do for a file. What each body holds:

``mp3`` (:class:`MP3Encoder`, ``audio/mpeg``)
    An ID3v2.4 tag (20 bytes: no frames under bitexact, 10 bytes of padding; decoders
    must skip it), then CBR MPEG-2 layer III frames of
    576 samples (192 bytes at 64 kbit/s, 24 kHz mono) straight from libmp3lame. FFmpeg
    writes its Xing/Info header only to seekable outputs, so by default there is none:
    no gapless information, and decoders cannot trim the encoder delay (576 samples, plus
    the 529 of the decoder: the audio starts :attr:`MP3Encoder.priming` = 1105 samples
    late) or the padding at the end (under one frame more). With ``exact_sizes`` the
    encoder writes an Info frame itself, up front, after the ID3 tag: the frame count
    and byte count (exact: libmp3lame emits ``ceil(n / 576) + 2`` frames for ``n``
    samples, all 192 bytes), a linear TOC, and a LAME tag with the encoder delay (576)
    and the end padding, so that gapless decoders (FFmpeg's demuxer, for one) return
    exactly the input samples. Its music CRC is 0: it cannot be known before the audio is
    encoded (decoders do not check it); its tag CRC covers the frame up to the CRC, as
    LAME and FFmpeg's demuxer compute it. A decoder that does not know Info frames
    decodes it as one frame (576 samples) of silence.
``aac`` (:class:`AACEncoder`, ``audio/aac``)
    ADTS: a 7-byte header before each AAC-LC frame of 1024 samples, nothing else, and
    nothing in it to rewrite. ADTS has no place for the encoder delay: decoders output
    :attr:`AACEncoder.priming` = 1024 samples of priming first, and pad the end to a
    whole frame.
``flac`` (:class:`FLACEncoder`, ``audio/flac``)
    ``fLaC``, a STREAMINFO block as the encoder knows it when it starts (block size 2304,
    24 kHz, 16 bit; minimum/maximum frame size, total samples and MD5 all 0, which FLAC
    defines as "unknown"), a VORBIS_COMMENT block and 8 KiB of PADDING, then the frames.
    With ``exact_sizes`` the total number of samples is filled in up front (the MD5
    stays 0). Lossless, no delay.
``opus`` (:class:`OpusEncoder`, ``audio/ogg``)
    Ogg pages (serial number 0): ``OpusHead`` (pre-skip 312 at 48 kHz, that is
    :attr:`OpusEncoder.priming` = 156 samples at 24 kHz; input rate 24000), ``OpusTags``,
    then one page per 20 ms packet (FFmpeg's default is one page a second: a second of
    latency). The end is trimmed exactly by the last page's granule position, so Ogg
    decoders return exactly the input (at 48 kHz, as Opus decoders do). The muxer closes
    a page when the next packet arrives: a page goes out one packet (20 ms) after its
    audio was encoded. Small pages cost 28 bytes each, about 11 kbit/s on top of the 32
    kbit/s VBR (the tone averages about 37 kbit/s in all). Nothing is rewritten at the
    end.

Encoder look-ahead and speed
----------------------------
The first audio bytes come out once libmp3lame has had 1728 samples (72 ms), the AAC
encoder 2048 (85 ms), FLAC one block of 2304 (96 ms), libopus one 20 ms frame (and the
page then waits for the next packet). Encoding in 20 ms pieces runs at about 115x real
time for mp3, 210x for aac, 77x for opus and 1500x for flac (60 s of the tone, one core
of a busy 2-core development machine).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar, cast

import av
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from av.audio.stream import AudioStream

__all__ = [
    "AACEncoder",
    "ENCODERS",
    "FLACEncoder",
    "MP3Encoder",
    "OpusEncoder",
    "mp3_frame_count",
    "mp3_info_frame",
]

_Samples = npt.NDArray[np.int16]


class _Collector:
    """A write-only, non-seekable file object that keeps what the muxer writes."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        return len(chunk)

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        """Everything written since the last call."""
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class _PyAVEncoder:
    """int16 mono samples in, the bytes of one container format out, incrementally.

    Args:
        sample_rate: Rate of the input samples (and of the encoded stream).
        total_frames: Number of samples that will be encoded in all (used by
            ``exact_sizes``).
        exact_sizes: Put the exact length in the header where the format has a place for
            it, as an encoder that knows the length up front would (mp3: an Info frame;
            flac: STREAMINFO's total samples). Other formats ignore it.
    """

    container: ClassVar[str]
    codec: ClassVar[str]
    content_type: ClassVar[str]
    bit_rate: ClassVar[int | None] = None
    container_options: ClassVar[Mapping[str, str]] = {}
    priming: ClassVar[int] = 0
    """Samples a decoder that does not trim outputs before the first input sample."""

    def __init__(self, sample_rate: int, total_frames: int, *, exact_sizes: bool = False) -> None:
        self._sample_rate = sample_rate
        self._total_frames = total_frames
        self._exact_sizes = exact_sizes
        self._out = _Collector()
        self._container = av.open(
            self._out,
            "w",
            format=self.container,
            options={"fflags": "+bitexact", **self.container_options},
        )
        stream = cast("AudioStream", self._container.add_stream(self.codec, rate=sample_rate))
        ctx = stream.codec_context
        ctx.layout = "mono"
        ctx.time_base = Fraction(1, sample_rate)
        if self.bit_rate is not None:
            ctx.bit_rate = self.bit_rate
        self._stream = stream
        self._container.start_encoding()
        self._frame_size: int = ctx.frame_size or 1024
        self._pending: _Samples = np.empty(0, dtype=np.int16)
        self._pts = 0
        self._closed = False
        self._start(self._out.take())

    def _start(self, header: bytes) -> None:
        """Called with the header the muxer wrote; writes what should follow it."""
        self._out.write(header)

    def encode(self, samples: _Samples) -> bytes:
        """Encode ``samples``; return the bytes the stream has gained (maybe none)."""
        if samples.size:
            pending = np.concatenate([self._pending, samples]) if self._pending.size else samples
            full = len(pending) - len(pending) % self._frame_size
            for i in range(0, full, self._frame_size):
                self._encode_frame(pending[i : i + self._frame_size])
            self._pending = pending[full:].copy()
        return self._out.take()

    def flush(self) -> bytes:
        """Encode what is left, end the stream and return its last bytes."""
        if self._closed:
            return b""
        if self._pending.size:
            self._encode_frame(self._pending)
            self._pending = np.empty(0, dtype=np.int16)
        self._mux(self._stream.encode(None))
        self.close()
        return self._out.take()

    def close(self) -> None:
        """Release the codec and muxer (also when the stream was not finished)."""
        if not self._closed:
            self._closed = True
            self._container.close()

    def _encode_frame(self, samples: _Samples) -> None:
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = self._sample_rate
        frame.time_base = Fraction(1, self._sample_rate)
        frame.pts = self._pts
        self._pts += len(samples)
        self._mux(self._stream.encode(frame))

    def _mux(self, packets: list[Any]) -> None:
        for packet in packets:
            self._container.mux(packet)


# --------------------------------------------------------------------------------------
# mp3: the Info (gapless) frame, written up front


_MP3_SAMPLES_PER_FRAME = 576  # MPEG-2/2.5 layer III (the rates below 32 kHz)
_MP3_BIT_RATE = 64000
_LAME_DELAY = 576  # libmp3lame's encoder delay (ENCDELAY); decoders add 528 + 1
_MP3_DECODER_DELAY = 529
_MP3_SAMPLE_RATE_INDEX = {24000: 1, 16000: 2}  # MPEG-2; 22050 Hz has no whole frame size
_MP3_BIT_RATE_INDEX = 8  # 64 kbit/s in the MPEG-2 layer III table
_XING_OFFSET = 4 + 9  # header + MPEG-2 mono side information
_XING_FLAGS = 0x0F  # frames, bytes, TOC, quality
_LAME_VENDOR = b"Lavf"


def mp3_frame_count(samples: int) -> int:
    """Audio frames libmp3lame (through FFmpeg) emits for ``samples`` samples at < 32 kHz.

    ``ceil(samples / 576) + 2``: the encoder delay and its flush take two frames more.
    Checked against the encoder for many lengths in the tests.
    """
    return -(-samples // _MP3_SAMPLES_PER_FRAME) + 2


def _crc16(data: bytes) -> int:
    """CRC-16/ARC (poly 0x8005 reflected, init 0): the CRC of LAME tags."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def mp3_info_frame(samples: int, *, sample_rate: int = 24000) -> bytes:
    """The Info frame (Xing header with a LAME tag) for ``samples`` samples of 64 kbit/s mono.

    Written before the first audio frame, it tells gapless decoders the stream's length
    and how much to trim: ``delay`` = 576 at the start, ``padding`` at the end, so that
    they return exactly ``samples`` samples. Its layout is FFmpeg's (which writes the
    same frame, but only when it can seek back at the end); the music CRC is 0.

    Raises:
        ValueError: If ``sample_rate`` is not 16000 or 24000 Hz (the MPEG-2 rates with a
            whole number of bytes per frame).
    """
    try:
        rate_index = _MP3_SAMPLE_RATE_INDEX[sample_rate]
    except KeyError:
        raise ValueError(f"no mp3 Info frame for {sample_rate} Hz") from None
    frame_bytes = 72 * _MP3_BIT_RATE // sample_rate
    frames = mp3_frame_count(samples)
    padding = frames * _MP3_SAMPLES_PER_FRAME - samples - _LAME_DELAY
    stream_bytes = (frames + 1) * frame_bytes  # the audio frames and this one
    # Sync, MPEG-2, layer III, no CRC; bit rate, sample rate, no padding; mono.
    header = 0xFFF30000 | _MP3_BIT_RATE_INDEX << 12 | rate_index << 10 | 0b11 << 6
    toc = bytes(min(255, 256 * i // 100) for i in range(100))
    lame = (
        _LAME_VENDOR.ljust(21, b"\0")  # vendor (9), revision, lowpass, replay gain, flags, ABR
        + (_LAME_DELAY << 12 | padding).to_bytes(3, "big")
        + bytes(4)  # misc, mp3 gain, preset and surround
        + struct.pack(">IH", stream_bytes, 0)  # music length, music CRC (unknown up front)
    )
    body = struct.pack(">I", header) + bytes(_XING_OFFSET - 4) + b"Info"
    body += struct.pack(">III", _XING_FLAGS, frames, stream_bytes) + toc + bytes(4) + lame
    # The tag CRC covers the frame up to itself, as LAME and FFmpeg's demuxer compute it.
    # (FFmpeg's muxer always covers 190 bytes, right only for MPEG-1 stereo frames.)
    body += struct.pack(">H", _crc16(body))
    return body.ljust(frame_bytes, b"\0")


class MP3Encoder(_PyAVEncoder):
    """``mp3``: CBR 64 kbit/s libmp3lame frames after an ID3v2 tag (and an Info frame)."""

    container = "mp3"
    codec = "libmp3lame"
    content_type = "audio/mpeg"
    bit_rate = _MP3_BIT_RATE
    priming = _LAME_DELAY + _MP3_DECODER_DELAY

    def _start(self, header: bytes) -> None:
        self._out.write(header)
        if self._exact_sizes:
            self._out.write(mp3_info_frame(self._total_frames, sample_rate=self._sample_rate))


class AACEncoder(_PyAVEncoder):
    """``aac``: AAC-LC at 64 kbit/s in ADTS frames."""

    container = "adts"
    codec = "aac"
    content_type = "audio/aac"
    bit_rate = 64000
    priming = 1024


class FLACEncoder(_PyAVEncoder):
    """``flac``: FLAC, 16 bit, with FFmpeg's metadata blocks."""

    container = "flac"
    codec = "flac"
    content_type = "audio/flac"

    def _start(self, header: bytes) -> None:
        if self._exact_sizes:
            header = _with_flac_total_samples(header, self._total_frames)
        self._out.write(header)


def _with_flac_total_samples(header: bytes, total: int) -> bytes:
    """``header`` (``fLaC`` + STREAMINFO first) with STREAMINFO's 36-bit sample count set."""
    if header[:4] != b"fLaC" or header[4] & 0x7F != 0 or total >= 1 << 36:
        raise ValueError("cannot set the FLAC sample count")
    # STREAMINFO data starts at byte 8; the count is the low 4 bits of byte 13 and bytes
    # 14-17 of it.
    out = bytearray(header)
    out[21] = (out[21] & 0xF0) | (total >> 32)
    out[22:26] = (total & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes(out)


class OpusEncoder(_PyAVEncoder):
    """``opus``: libopus at 32 kbit/s (VBR, 20 ms frames) in Ogg, one page per packet."""

    container = "ogg"
    codec = "libopus"
    content_type = "audio/ogg"
    bit_rate = 32000
    # Close each page as soon as the next packet arrives (FFmpeg's default is 1 s).
    container_options: ClassVar[Mapping[str, str]] = {"page_duration": "20000"}
    priming = 156  # OpusHead pre-skip: 312 at 48 kHz


ENCODERS: dict[str, type[_PyAVEncoder]] = {
    "mp3": MP3Encoder,
    "opus": OpusEncoder,
    "aac": AACEncoder,
    "flac": FLACEncoder,
}
"""The compressed OpenAI response formats and their encoders."""
