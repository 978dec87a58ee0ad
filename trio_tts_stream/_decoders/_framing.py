"""Splitting a sync-word byte stream (MP3, ADTS AAC) into whole frames: pure.

:class:`SyncFramer` is shared by :mod:`.mp3` and :mod:`.aac`: each gives it a header parser
(``parse(buf, pos)`` -> ``(frame_length, key)``); the framer skips ID3v2/ID3v1/APE tags as
they stream past, resyncs after garbage and counts each run of it. See :mod:`.mp3` for the
theory of operation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable

from .._exceptions import DecodeError

__all__ = ["HeaderParser", "SyncFramer", "not_audio_message"]

HeaderParser = Callable[[bytearray, int], "tuple[int, Hashable] | None"]
"""``parse(buf, pos)`` -> ``(frame_length, key)`` for a valid header at ``buf[pos:]``, else
``None``. ``key`` names the stream parameters that must stay constant between frames."""

#: Bytes that can start a frame header (``0xFF``) or a tag (``ID3``, ``TAG``, ``APETAGEX``).
_CANDIDATE = re.compile(rb"[\xffITA]")

#: Garbage bytes tolerated before the first frame before we decide the response is not audio.
_MAX_LEADING_GARBAGE = 64 * 1024

_NEED_MORE = -1


class SyncFramer:
    """Split a byte stream into whole frames of a sync-word codec (MP3, ADTS AAC).

    Args:
        parse_header: Header parser (see :data:`HeaderParser`).
        header_size: Bytes ``parse_header`` needs.
        codec: Codec name for error messages (``"mp3"``, ``"aac"``).

    Attributes:
        frames: Frames returned so far.
        garbage_runs: Runs of undecodable bytes skipped between frames.
        garbage_bytes: Bytes in those runs.
        trailing_bytes_dropped: Bytes after the last frame that formed no frame (a
            truncated final frame or junk), counted at :meth:`finish`.
        received: Bytes fed so far.
        cut_frame: ``(have, need)`` when the stream ended inside a frame of the stream
            being followed (its header was there, ``have`` of its ``need`` bytes were),
            else ``None``; set by :meth:`finish`.
    """

    def __init__(self, parse_header: HeaderParser, header_size: int, codec: str) -> None:
        self._parse = parse_header
        self._header_size = header_size
        self._codec = codec
        self._buf = bytearray()
        self._skip = 0  # tag bytes still to skip
        self._locked: Hashable | None = None  # key of the stream we are locked on
        self._last_key: Hashable | None = None
        self._garbage = 0  # bytes in the current run of garbage
        self.head = b""  # first bytes of the stream, for error messages
        self.frames = 0
        self.garbage_runs = 0
        self.garbage_bytes = 0
        self.trailing_bytes_dropped = 0
        self.received = 0
        self.cut_frame: tuple[int, int] | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """Consume ``data``; return the frames completed by it.

        Raises:
            DecodeError: No frame was found in the first 64 KiB (not counting tags).
        """
        return self._run(data, final=False)

    def finish(self) -> list[bytes]:
        """End of stream: return the last frames; leftover bytes are trailing garbage."""
        frames = self._run(b"", final=True)
        self.trailing_bytes_dropped += self._garbage
        self._garbage = 0
        return frames

    def _run(self, data: bytes, *, final: bool) -> list[bytes]:
        self.received += len(data)
        if len(self.head) < 32:
            self.head += data[: 32 - len(self.head)]
        view = memoryview(data)
        if self._skip and not self._buf:  # skip tag bytes without copying them
            take = min(self._skip, len(view))
            self._skip -= take
            view = view[take:]
        buf = self._buf
        buf += view
        parse = self._parse
        size = self._header_size
        frames: list[bytes] = []
        pos = 0
        end = len(buf)
        while pos < end:
            if self._skip:
                take = min(self._skip, end - pos)
                self._skip -= take
                pos += take
                continue
            avail = end - pos
            byte = buf[pos]
            if byte == 0xFF:
                header = parse(buf, pos) if avail >= size else None
                if header is None and avail < size and not final:
                    break
                if header is not None:
                    length, key = header
                    if key == self._locked:
                        if avail >= length:
                            frames.append(self._take(buf, pos, length, key))
                            pos += length
                            continue
                        if not final:
                            break
                        self.cut_frame = (avail, length)
                    elif avail >= length + size:
                        after = pos + length
                        following = parse(buf, after)
                        if (following is not None and following[1] == key) or _starts_tag(
                            buf, after
                        ):
                            frames.append(self._take(buf, pos, length, key))
                            pos += length
                            continue
                    elif not final:
                        break
                    elif avail >= length and self._last_key in (None, key):
                        frames.append(self._take(buf, pos, length, key))
                        pos += length
                        continue
            elif byte in b"ITA":
                tag = self._tag_size(buf, pos, end, final)
                if tag == _NEED_MORE and not final:
                    break
                if tag > 0:
                    self._end_garbage(forgiven=self._ape_items(buf, pos, tag))
                    self._skip = tag
                    continue
            # Not a frame or a tag here: skip to the next byte that could start one.
            self._locked = None
            found = _CANDIDATE.search(buf, pos + 1)
            stop = end if found is None else found.start()
            self._garbage += stop - pos
            pos = stop
            if self.frames == 0 and self.garbage_bytes + self._garbage > _MAX_LEADING_GARBAGE:
                raise DecodeError(not_audio_message(self._codec, self.head, self.received))
        del buf[:pos]
        return frames

    def _tag_size(self, buf: bytearray, pos: int, end: int, final: bool) -> int:
        """Bytes to skip for a tag at ``pos``; 0 if there is none; ``_NEED_MORE`` if undecided."""
        byte = buf[pos]
        if byte == 0x49:  # "I": ID3v2
            found = _magic(buf, pos, end, b"ID3", 10)
            if found is None:
                return _NEED_MORE
            if not found:
                return 0
            major, revision, flags = buf[pos + 3], buf[pos + 4], buf[pos + 5]
            size_bytes = buf[pos + 6 : pos + 10]
            if not 2 <= major <= 4 or revision == 0xFF or any(b & 0x80 for b in size_bytes):
                return 0
            size = 0
            for b in size_bytes:
                size = size << 7 | b
            return 10 + size + (10 if major == 4 and flags & 0x10 else 0)
        if byte == 0x54:  # "T": ID3v1
            # 128 bytes at the very end of a file; as we cannot see the end coming, accept it
            # when the stream ends or a frame or tag follows (text may contain "TAG").
            found = _magic(buf, pos, end, b"TAG", 128 + self._header_size)
            if found is False:
                return 0
            after = pos + 128
            if found is None:
                if not final:
                    return _NEED_MORE
                return 128 if end == after else 0
            return 128 if _starts_tag(buf, after) or self._parse(buf, after) is not None else 0
        if byte == 0x41:  # "A": APEv2 header or footer
            found = _magic(buf, pos, end, b"APETAGEX", 32)
            if found is None:
                return _NEED_MORE
            if not found:
                return 0
            version = int.from_bytes(buf[pos + 8 : pos + 12], "little")
            size = int.from_bytes(buf[pos + 12 : pos + 16], "little")
            flags = int.from_bytes(buf[pos + 20 : pos + 24], "little")
            if version not in (1000, 2000) or size < 32:
                return 0
            return 32 + size if flags & (1 << 29) else 32  # header: skip the tag; footer: itself
        return 0

    def _take(self, buf: bytearray, pos: int, length: int, key: Hashable) -> bytes:
        self._end_garbage()
        self._locked = self._last_key = key
        self.frames += 1
        return bytes(buf[pos : pos + length])

    def _end_garbage(self, *, forgiven: bool = False) -> None:
        if self._garbage:
            if not forgiven:
                self.garbage_runs += 1
                self.garbage_bytes += self._garbage
            self._garbage = 0

    def _ape_items(self, buf: bytearray, pos: int, tag: int) -> bool:
        """True when an APE *footer* at ``pos`` covers the garbage run before it."""
        if buf[pos] != 0x41 or tag != 32:  # not a footer (a header skips the whole tag)
            return False
        declared = int.from_bytes(buf[pos + 12 : pos + 16], "little")
        return self._garbage <= declared - 32


def _starts_tag(buf: bytearray, pos: int) -> bool:
    head = bytes(buf[pos : pos + 4])
    return head[:3] in (b"ID3", b"TAG") or head == b"APET"


def _magic(buf: bytearray, pos: int, end: int, magic: bytes, need: int) -> bool | None:
    """``magic`` is at ``pos`` and ``need`` bytes are there: True; undecided: None; else False."""
    k = min(end - pos, len(magic))
    if buf[pos : pos + k] != magic[:k]:
        return False
    return True if end - pos >= need else None


def cut_frame_message(codec: str, cut: tuple[int, int] | None) -> str | None:
    """The ``truncated`` note for a stream that ended inside a frame, or ``None``."""
    if cut is None:
        return None
    have, need = cut
    return f"the {codec} stream was cut mid-frame: its last frame has {have} of {need} bytes"


def not_audio_message(codec: str, head: bytes, received: int) -> str:
    """The :class:`DecodeError` message for a response with no decodable frame."""
    if received == 0:
        return f"the response is empty: no {codec} audio"
    return (
        f"the response is not {codec} audio: no decodable {codec} frame in {received} "
        f"bytes starting with {head!r} (an error message, or another format? check "
        "response_format and the server's Content-Type)"
    )
