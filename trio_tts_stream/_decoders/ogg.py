"""A pure, incremental Ogg page demuxer (RFC 3533): bytes in, codec packets out.

Theory of operation
-------------------
An Ogg stream is a sequence of *pages*. Each page is a 27-byte header, a segment table and
a body::

    offset  size  field
         0     4  capture pattern  b"OggS"
         4     1  stream structure version (0)
         5     1  header type flags: 0x01 continued packet, 0x02 BOS, 0x04 EOS
         6     8  granule position (int64 LE; -1 = no packet ends on this page)
        14     4  bitstream serial number (u32 LE)
        18     4  page sequence number (u32 LE)
        22     4  CRC-32 of the whole page with this field zeroed (u32 LE)
        26     1  number of segments n
        27     n  segment table (lacing values, one byte each)
      27+n     -  body: sum(lacing values) bytes

A *packet* is the concatenation of consecutive segments up to and including the first one
shorter than 255 bytes (so a packet of exactly 255 bytes ends with a 0-byte segment). A page
whose last lacing value is 255 ends with an unfinished packet, which continues on the next
page of the same logical stream (that page has the "continued" flag). Several logical
streams (serial numbers) may be interleaved page by page (*multiplexing*), and a new group
of streams may follow the end of the previous one (*chaining*).

:class:`OggDemuxer` buffers bytes until it holds a whole page (at most 65,307 bytes), checks
its CRC (polynomial 0x04C11DB7, not reflected, initial value 0, no final xor) and returns the
packets that complete on it. It never trusts a page it cannot verify:

* Bytes that do not start a page (garbage, a page with a bad CRC, a false ``OggS`` inside
  other data) are skipped one byte at a time to the next ``OggS`` whose page verifies
  (*resync*). A page claiming a long body is waited for before it can be rejected, so after
  corruption valid pages may be returned up to 64 KiB later than they arrived.
* Per logical stream it tracks the page sequence number: after a gap (a lost page) the
  unfinished packet of the previous page is dropped, and so are the leading segments of a
  continued page whose start was lost; a packet is never glued to the wrong bytes.

Every decision depends only on the bytes, never on how they were chunked, so any chunking
of the input yields the same packets. Memory is bounded by one page plus, per logical
stream, one unfinished packet of at most ``max_packet_size`` bytes; :meth:`OggDemuxer.follow`
restricts packet assembly to one stream.

CRC computation uses :func:`zlib.crc32` on bit-reversed bytes (C speed): the non-reflected
CRC of a message equals the bit-reversed reflected CRC of its bit-reversed bytes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["OggDemuxer", "OggPacket", "ogg_crc32"]

_CAPTURE = b"OggS"
_HEADER = struct.Struct("<4sBBqIIIB")  # capture .. number of segments: 27 bytes
_HEADER_SIZE = _HEADER.size
_FLAG_CONTINUED = 0x01
_FLAG_BOS = 0x02
_FLAG_EOS = 0x04

#: Largest possible page: header + 255 lacing values + 255 * 255 body bytes.
MAX_PAGE_SIZE = _HEADER_SIZE + 255 + 255 * 255

#: Bit-reversal of every byte value, for :meth:`bytes.translate`.
_REVERSE_BITS = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _reverse32(value: int) -> int:
    return int(f"{value:032b}"[::-1], 2)


def ogg_crc32(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """Ogg's CRC-32: polynomial 0x04C11DB7, not reflected, initial value 0, no final xor.

    Args:
        data: Bytes to checksum (for a page: the whole page with its CRC field zeroed).
        crc: A previous result, to checksum data given in several pieces.

    Returns:
        The CRC as an unsigned 32-bit integer (``ogg_crc32(b"123456789") == 0x89A1897F``).
    """
    # zlib.crc32(d, v) runs the reflected register from ~v and returns the register
    # inverted; start from the (bit-reversed) previous CRC and undo the final inversion.
    raw = zlib.crc32(bytes(data).translate(_REVERSE_BITS), _reverse32(crc) ^ 0xFFFFFFFF)
    return _reverse32(raw ^ 0xFFFFFFFF)


@dataclass(frozen=True)
class OggPacket:
    """One codec packet from a logical Ogg stream.

    Attributes:
        data: The packet's bytes.
        serial: Serial number of the logical stream it belongs to.
        granule: The granule position of the page it ends on if it is the *last* packet
            ending on that page, else ``-1`` (as in libogg): a codec applies a page's
            granule position once it has decoded that page's packets.
        page_sequence: Sequence number of the page it ends on.
        link: Index of the chain link (group of logical streams) it belongs to: ``0``
            for the first, ``+1`` after each new beginning-of-stream group.
        bos: It is the first packet of a beginning-of-stream page (a codec header).
        eos: It is the last packet ending on an end-of-stream page.
        ends_page: It is the last packet ending on its page (the one that carries the
            page's granule position, even when that is ``-1``).
    """

    data: bytes
    serial: int
    granule: int
    page_sequence: int
    link: int = 0
    bos: bool = False
    eos: bool = False
    ends_page: bool = False


class _LogicalStream:
    """Packet-assembly state of one serial number."""

    __slots__ = ("losses_seen", "next_sequence", "partial")

    def __init__(self, sequence: int, losses_seen: int) -> None:
        self.next_sequence = sequence
        self.partial: bytearray | None = None  # unfinished packet from the previous page
        self.losses_seen = losses_seen  # the demuxer's sync-loss count at this stream's last page


class OggDemuxer:
    """Incremental Ogg demuxer: ``feed(bytes)`` returns the packets completed so far.

    Args:
        select: If given, assemble packets of one logical stream per chain link only: the
            first whose beginning-of-stream packet satisfies ``select(packet_bytes)`` (e.g.
            ``lambda p: p.startswith(b"OpusHead")``). The first packet of *every*
            beginning-of-stream page is still returned, so a consumer sees which codecs a
            stream holds. ``None`` assembles every stream.
        max_packet_size: Largest packet assembled across pages (bytes); a longer one is
            dropped and counted in :attr:`errors`. Bounds the memory held per stream.

    Attributes:
        pages: Valid (CRC-checked) pages seen, of every logical stream.
        bad_pages: Candidate pages rejected (bad CRC, unknown version, or cut off at the
            end of the stream).
        skipped_bytes: Bytes that were not part of any valid page.
        sequence_gaps: Times an assembled stream's page sequence number jumped (lost pages).
        errors: Corruption events: each rejected candidate page, each run of garbage bytes
            not directly after one, each packet dropped as unfinished or oversized, and
            each sequence gap not already explained by one of those.
        first_page_offset: Stream offset of the first valid page, ``None`` until found.
        bytes_received: Total bytes fed.
        link: Index of the current chain link (see :attr:`OggPacket.link`).
        selected: Serial of the stream ``select`` chose in the current link, else ``None``.
        in_headers: No page other than beginning-of-stream pages was seen yet in the
            current link (RFC 3533: a link's BOS pages all come before its other pages).
    """

    def __init__(
        self,
        *,
        select: Callable[[bytes], bool] | None = None,
        max_packet_size: int = 1 << 20,
    ) -> None:
        self.select = select
        self.max_packet_size = max_packet_size
        self._buf = bytearray()
        self._streams: dict[int, _LogicalStream] = {}
        self._in_sync = True  # False while skipping bytes after a failure
        self._sync_losses = 0
        self._flushed = False
        self.pages = 0
        self.bad_pages = 0
        self.skipped_bytes = 0
        self.sequence_gaps = 0
        self.errors = 0
        self.first_page_offset: int | None = None
        self.bytes_received = 0
        self.link = 0
        self.selected: int | None = None
        self.in_headers = True

    def feed(self, data: bytes | bytearray | memoryview) -> list[OggPacket]:
        """Consume the next bytes; return the packets completed by whole, valid pages.

        Raises:
            RuntimeError: Called after :meth:`flush`.
        """
        if self._flushed:
            raise RuntimeError("OggDemuxer.feed() called after flush()")
        self.bytes_received += len(data)
        self._buf += data
        return self._parse(final=False)

    def flush(self) -> list[OggPacket]:
        """End of stream: resync through what is left; reject a final incomplete page.

        A packet left unfinished (its continuation never came) is dropped silently: the
        truncation is counted by the rejected page, if any.
        """
        if self._flushed:
            return []
        self._flushed = True
        packets = self._parse(final=True)
        self._streams.clear()
        return packets

    # -- byte level: find and verify pages -------------------------------------------

    def _lose_sync(self) -> None:
        if self._in_sync:
            self._in_sync = False
            self._sync_losses += 1

    def _skip_garbage(self, count: int) -> None:
        if self._in_sync:
            self.errors += 1
        self._lose_sync()
        self.skipped_bytes += count

    def _reject_candidate(self) -> None:
        """The ``OggS`` at the read position does not start a valid page: skip its 'O'."""
        self.bad_pages += 1
        self.errors += 1
        self._lose_sync()
        self.skipped_bytes += 1

    def _parse(self, *, final: bool) -> list[OggPacket]:
        buf = self._buf
        pos = 0
        end = len(buf)
        packets: list[OggPacket] = []
        while pos < end:
            if buf[pos : pos + 4] != _CAPTURE:
                if end - pos < 4 and not final and _CAPTURE.startswith(buf[pos:end]):
                    break  # perhaps the start of a capture pattern: wait for more
                found = buf.find(_CAPTURE, pos + 1)
                if found < 0:
                    found = end if final else max(pos + 1, end - 3)
                self._skip_garbage(found - pos)
                pos = found
                continue
            # A candidate page: decide only once all of it is here (or at end of stream).
            if end - pos < _HEADER_SIZE:
                if not final:
                    break
                self._reject_candidate()
                pos += 1
                continue
            _, version, flags, granule, serial, sequence, crc, nsegs = _HEADER.unpack_from(buf, pos)
            if version != 0:
                self._reject_candidate()
                pos += 1
                continue
            body = pos + _HEADER_SIZE + nsegs
            page_end = body + sum(buf[pos + _HEADER_SIZE : body]) if end >= body else -1
            if page_end < 0 or end < page_end:
                if not final:
                    break
                self._reject_candidate()
                pos += 1
                continue
            page = bytearray(buf[pos:page_end])
            page[22:26] = b"\0\0\0\0"
            if ogg_crc32(page) != crc:
                self._reject_candidate()
                pos += 1
                continue
            if self.first_page_offset is None:
                self.first_page_offset = self.bytes_received - end + pos
            self._in_sync = True
            self.pages += 1
            self._on_page(page, _HEADER_SIZE + nsegs, flags, granule, serial, sequence, packets)
            pos = page_end
        del buf[:pos]
        return packets

    # -- page level: assemble packets ------------------------------------------------

    def _on_page(
        self,
        page: bytearray,
        body: int,
        flags: int,
        granule: int,
        serial: int,
        sequence: int,
        out: list[OggPacket],
    ) -> None:
        bos = bool(flags & _FLAG_BOS)
        eos = bool(flags & _FLAG_EOS)
        if bos and not self.in_headers:  # a BOS page after data pages: a new chain link
            self.link += 1
            self.in_headers = True
            self.selected = None
            self._streams.clear()
        if not bos:
            self.in_headers = False

        stream = self._streams.get(serial)
        if bos or stream is None:
            if not bos and self.select is not None:
                return  # not the selected stream
            stream = self._streams[serial] = _LogicalStream(sequence, self._sync_losses)
        if stream.next_sequence != sequence:
            self.sequence_gaps += 1
            if stream.losses_seen == self._sync_losses:
                self.errors += 1  # pages went missing without corruption we could see
            stream.partial = None
        stream.next_sequence = (sequence + 1) & 0xFFFFFFFF
        stream.losses_seen = self._sync_losses

        # Packet spans in ``page``: a packet ends at the first lacing value below 255.
        spans: list[tuple[int, int]] = []
        start = offset = body
        for value in page[_HEADER_SIZE:body]:
            offset += value
            if value < 255:
                spans.append((start, offset))
                start = offset
        unfinished = body > _HEADER_SIZE and page[body - 1] == 255

        partial = stream.partial
        stream.partial = None
        if flags & _FLAG_CONTINUED:
            if partial is None:  # its start was lost (or never sent): drop the fragment
                if spans:
                    spans.pop(0)
                else:
                    unfinished = False
        elif partial is not None:
            self.errors += 1  # the continuation of the unfinished packet never came
            partial = None

        datas: list[bytes] = []
        for a, b in spans:
            if partial is not None:
                partial += page[a:b]
                data = bytes(partial)
                partial = None
                if len(data) > self.max_packet_size:
                    self.errors += 1
                    continue
            else:
                data = bytes(page[a:b])
            datas.append(data)
        if unfinished:
            if partial is None:
                partial = page[start:offset]
            else:
                partial += page[start:offset]
            if len(partial) > self.max_packet_size:
                self.errors += 1
                partial = None
            stream.partial = partial
        elif body == _HEADER_SIZE:
            stream.partial = partial  # an empty page changes nothing

        if bos and self.select is not None:
            if self.selected is None and datas and self.select(datas[0]):
                self.selected = serial
            elif serial != self.selected:
                del self._streams[serial]  # report its header, assemble nothing more
                datas = datas[:1]
        if eos:
            self._streams.pop(serial, None)
        last = len(datas) - 1
        for index, data in enumerate(datas):
            out.append(
                OggPacket(
                    data,
                    serial,
                    granule if index == last else -1,
                    sequence,
                    self.link,
                    bos=bos and index == 0,
                    eos=eos and index == last,
                    ends_page=index == last,
                )
            )
