"""The phrase cache: complete TTS responses kept by what produced them.

Theory of operation
-------------------
A voice agent says "One moment, please." many times; asking the server again costs a
round trip and its time to first byte. :class:`PhraseCache` keeps the *body bytes* of
complete, successful responses, keyed by :func:`cache_key` -- a SHA-256 over every
request field that changes the audio (base URL, model, voice, format, speed,
instructions, stream format, pcm rate and channels, the text), never the API key.
A hit is replayed through the same decoder path as a download (an async iterable of the
stored bytes), so it sounds the same and is reported the same, with no request.

Bounds: ``max_bytes`` in memory (LRU eviction; a body larger than the bound is not
kept) and, with ``directory``, ``max_disk_bytes`` on disk (LRU by access time). A disk
entry is one file: a header line with the body's length and SHA-256, then the body,
written to a temporary file and renamed into place (atomic: a crash leaves the old entry
or none). An entry whose length or checksum does not match is deleted and counted in
``corrupt``; the caller downloads again: a corrupt entry is never played.

Concurrent identical requests share one download: the first becomes the *leader* and
records its body as it arrives (:class:`Flight`, a :class:`~._download.BodyTap`); the
others *follow* it, receiving the same bytes as they come, so they start as soon as the
leader's first byte is in. If the leader's download is retried, fails or is cancelled
before its end, followers fail with :class:`~._exceptions.NetworkError` (the speaker
counts them as failed utterances, like any other download error).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import trio

from ._exceptions import ConfigError, NetworkError
from ._http import SpeechRequest

__all__ = ["CacheStatistics", "Flight", "PhraseCache", "cache_key"]

_T = TypeVar("_T")

_log = logging.getLogger("trio_tts_stream")

_MAGIC = b"TTSCACHE1"
_CHUNK = 16384  # bytes per chunk when a hit is replayed


def cache_key(request: SpeechRequest) -> str:
    """The cache key of ``request``: every field that changes the audio, not the key."""
    fields = {
        "base_url": request.base_url.rstrip("/"),
        "model": request.model,
        "voice": request.voice,
        "response_format": request.response_format,
        "speed": request.speed,
        "instructions": request.instructions,
        "stream_format": request.stream_format,
        "sample_rate": request.sample_rate,
        "channels": request.channels,
        "input": request.input,
    }
    blob = json.dumps(fields, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class CacheStatistics:
    """Counters of a :class:`PhraseCache`.

    Attributes:
        hits: Lookups answered from the cache (memory or disk).
        misses: Lookups that had to download.
        shared: Lookups that followed another request's download.
        entries: Entries in memory.
        bytes: Bytes in memory.
        disk_bytes: Bytes on disk (0 without a directory).
        stored: Responses stored.
        corrupt: Disk entries found corrupt or truncated (deleted, downloaded again).
    """

    hits: int
    misses: int
    shared: int
    entries: int
    bytes: int
    disk_bytes: int
    stored: int
    corrupt: int


class Flight:
    """One download being recorded for the cache and shared with followers."""

    def __init__(self, limit: int) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self._limit = limit
        self.failed = False
        self.finished = False
        self._changed = trio.Event()

    # -- BodyTap ---------------------------------------------------------------

    def data(self, chunk: bytes) -> None:
        if self.failed:
            return
        self._size += len(chunk)
        if self._size > self._limit:  # too big to keep: stop recording
            self.broken()
            return
        self._chunks.append(chunk)
        self._wake()

    def broken(self) -> None:
        self.failed = True
        self._chunks = []
        self._wake()

    # -- leader / followers --------------------------------------------------------

    def finish(self) -> bytes:
        """The download completed: return the body and let followers finish."""
        self.finished = True
        self._wake()
        return b"".join(self._chunks)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def follow(self) -> AsyncIterator[bytes]:
        """The leader's body bytes as they arrive.

        Raises:
            NetworkError: The leader's download did not complete.
        """
        i = 0
        while True:
            while i < len(self._chunks):
                yield self._chunks[i]
                i += 1
            if self.failed:
                raise NetworkError("the shared download of this phrase did not complete")
            if self.finished:
                return
            await self._changed.wait()


class PhraseCache:
    """A bounded cache of complete TTS responses (see the module docstring).

    Args:
        max_bytes: Memory bound (default 32 MiB, about 11 minutes of 24 kHz pcm).
        directory: Keep entries on disk here too (created if missing); ``None``:
            memory only.
        max_disk_bytes: Disk bound (default 256 MiB).

    Raises:
        ConfigError: A bound is not positive.
    """

    def __init__(
        self,
        max_bytes: int = 32 * 1024 * 1024,
        *,
        directory: str | os.PathLike[str] | None = None,
        max_disk_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        if max_bytes < 1 or max_disk_bytes < 1:
            raise ConfigError("the cache's byte bounds must be positive")
        self.max_bytes = max_bytes
        self.max_disk_bytes = max_disk_bytes
        self.directory = Path(directory) if directory is not None else None
        self._mem: OrderedDict[str, bytes] = OrderedDict()
        self._mem_bytes = 0
        self._flights: dict[str, Flight] = {}
        self._disk_bytes: int | None = None  # scanned on first use
        self._hits = self._misses = self._shared = self._stored = self._corrupt = 0

    def __repr__(self) -> str:
        return (
            f"<PhraseCache entries={len(self._mem)} bytes={self._mem_bytes} "
            f"directory={str(self.directory) if self.directory else None!r}>"
        )

    def statistics(self) -> CacheStatistics:
        """Counters so far."""
        return CacheStatistics(
            hits=self._hits,
            misses=self._misses,
            shared=self._shared,
            entries=len(self._mem),
            bytes=self._mem_bytes,
            disk_bytes=self._disk_bytes or 0,
            stored=self._stored,
            corrupt=self._corrupt,
        )

    # -- lookups -------------------------------------------------------------------

    async def lookup(self, key: str) -> bytes | Flight | None:
        """The stored body, a download in flight to follow, or ``None`` (a miss: the
        caller downloads, recording with :meth:`begin`)."""
        body = self._mem.get(key)
        if body is not None:
            self._mem.move_to_end(key)
            self._hits += 1
            await trio.lowlevel.checkpoint()
            return body
        flight = self._flights.get(key)
        if flight is not None and not flight.failed:
            self._shared += 1
            await trio.lowlevel.checkpoint()
            return flight
        if self.directory is not None:
            body = await self._disk(self._read_disk, key)
            flight = self._flights.get(key)  # one may have started meanwhile
            if body is not None:
                self._hits += 1
                self._keep(key, body)
                return body
            if flight is not None and not flight.failed:
                self._shared += 1
                return flight
        self._misses += 1
        return None

    def begin(self, key: str) -> Flight:
        """Start recording the download of ``key`` (followers may join it)."""
        flight = Flight(self.max_bytes)
        self._flights[key] = flight
        return flight

    async def complete(self, key: str, flight: Flight, ok: bool) -> None:
        """The leader's download of ``key`` ended; store it if ``ok`` (complete and
        successful, recorded in one attempt)."""
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not ok or flight.failed:
            flight.broken()
            await trio.lowlevel.checkpoint()
            return
        body = flight.finish()
        if not body:
            await trio.lowlevel.checkpoint()
            return
        self._stored += 1
        self._keep(key, body)
        if self.directory is not None:
            await self._disk(self._write_disk, key, body)
        else:
            await trio.lowlevel.checkpoint()

    async def _disk(self, fn: Callable[..., _T], *args: object) -> _T | None:
        """Run a disk operation in a worker thread. A disk that fails (full, read-only,
        not a directory) turns the cache into a memory-only one, with one warning: the
        speech goes on."""
        try:
            return await trio.to_thread.run_sync(fn, *args)
        except OSError as exc:
            _log.warning(
                "the phrase cache's directory %s failed (%s); keeping entries in memory only",
                self.directory,
                exc.strerror or exc,
            )
            self.directory = None
            return None

    @staticmethod
    async def replay(body: bytes) -> AsyncIterator[bytes]:
        """A stored body as a byte source, in chunks."""
        for i in range(0, len(body), _CHUNK):
            yield body[i : i + _CHUNK]
            await trio.lowlevel.checkpoint()

    # -- memory ----------------------------------------------------------------------

    def _keep(self, key: str, body: bytes) -> None:
        if len(body) > self.max_bytes:
            return
        old = self._mem.pop(key, None)
        if old is not None:
            self._mem_bytes -= len(old)
        self._mem[key] = body
        self._mem_bytes += len(body)
        while self._mem_bytes > self.max_bytes:
            _, dropped = self._mem.popitem(last=False)
            self._mem_bytes -= len(dropped)

    # -- disk (worker thread) -----------------------------------------------------------

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{key}.tts"

    def _scan(self) -> int:
        assert self.directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        return sum(p.stat().st_size for p in self.directory.glob("*.tts"))

    def _read_disk(self, key: str) -> bytes | None:
        if self._disk_bytes is None:
            self._disk_bytes = self._scan()
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError:
            return None
        header, sep, body = data.partition(b"\n")
        parts = header.split(b" ")
        valid = (
            sep == b"\n"
            and len(parts) == 3
            and parts[0] == _MAGIC
            and parts[1].isdigit()
            and int(parts[1]) == len(body)
            and hashlib.sha256(body).hexdigest().encode() == parts[2]
        )
        if not valid:
            self._corrupt += 1
            self._unlink(path)
            return None
        os.utime(path)  # LRU by access time
        return body

    def _unlink(self, path: Path) -> None:
        try:
            size = path.stat().st_size
            path.unlink()
        except OSError:
            return
        if self._disk_bytes is not None:
            self._disk_bytes = max(0, self._disk_bytes - size)

    def _write_disk(self, key: str, body: bytes) -> None:
        if self._disk_bytes is None:
            self._disk_bytes = self._scan()
        if len(body) > self.max_disk_bytes:
            return
        assert self.directory is not None
        path = self._path(key)
        header = b"%s %d %s\n" % (_MAGIC, len(body), hashlib.sha256(body).hexdigest().encode())
        if path.exists():
            self._unlink(path)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(header)
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._disk_bytes += len(header) + len(body)
        if self._disk_bytes > self.max_disk_bytes:
            entries = sorted(self.directory.glob("*.tts"), key=lambda p: p.stat().st_mtime)
            for old in entries:
                if self._disk_bytes <= self.max_disk_bytes:
                    break
                if old != path:
                    self._unlink(old)
