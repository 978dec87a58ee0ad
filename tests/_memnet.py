"""In-memory connections to the test server, for tests under an autojump clock.

Why: an autojump clock jumps to the next deadline as soon as every task waits, and a
kernel socket's own timers (delayed ACKs, zero-window probes after a client's
backpressure filled the window) run on *real* time. While the kernel waits 40-200 ms of
real time, the virtual clock races through seconds of deadlines, and a playback
"underruns" or "stalls" that no real network would have stalled (it happened about once
in 15 runs of the speaker's long-text test). So, under autojump, httpx connections to a
server of this process go through :class:`MemoryBackend` instead: a pair of bounded
in-memory pipes (``capacity`` bytes each way, like a socket buffer, so backpressure still
reaches the server) that the server serves with :meth:`SpeechServer.serve_stream`
exactly as an accepted socket (TLS included). Connections to anything else use the
real network. The bytes, HTTP and TLS are the real ones; only the kernel is left out.
"""

from __future__ import annotations

from typing import Any

import httpcore
import trio
from httpcore._backends.trio import TrioStream

from trio_tts_stream.server._connection import running_server


class _Pipe:
    """One direction: a bounded byte buffer with a writer and a reader."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.buffer = bytearray()
        self.writer_closed = False
        self.reader_closed = False
        self.changed = trio.lowlevel.ParkingLot()


class PipeStream(trio.abc.Stream):
    """One end of a bidirectional in-memory connection."""

    def __init__(self, incoming: _Pipe, outgoing: _Pipe) -> None:
        self._in = incoming
        self._out = outgoing
        self._closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while True:
            if self._closed:
                raise trio.ClosedResourceError("this end is closed")
            if self._out.reader_closed:
                raise trio.BrokenResourceError("the other end is closed")
            room = self._out.capacity - len(self._out.buffer)
            if room > 0 and view:
                self._out.buffer += view[:room]
                view = view[room:]
                self._out.changed.unpark_all()
            if not view:
                await trio.lowlevel.checkpoint()
                return
            await self._out.changed.park()

    async def wait_send_all_might_not_block(self) -> None:
        while len(self._out.buffer) >= self._out.capacity and not self._out.reader_closed:
            await self._out.changed.park()
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while True:
            if self._closed:
                raise trio.ClosedResourceError("this end is closed")
            if self._in.buffer:
                n = len(self._in.buffer) if max_bytes is None else max_bytes
                data = bytes(self._in.buffer[:n])
                del self._in.buffer[:n]
                self._in.changed.unpark_all()
                await trio.lowlevel.checkpoint()
                return data
            if self._in.writer_closed:
                await trio.lowlevel.checkpoint()
                return b""
            await self._in.changed.park()

    def readable(self) -> bool:
        """Data or end of stream is waiting (what a pool checks before reusing)."""
        return bool(self._in.buffer) or self._in.writer_closed

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._out.writer_closed = True
            self._in.reader_closed = True
            self._in.changed.unpark_all()
            self._out.changed.unpark_all()
        await trio.lowlevel.checkpoint()


def pipe_pair(capacity: int = 256 * 1024) -> tuple[PipeStream, PipeStream]:
    """Two connected ends: (client, server)."""
    up, down = _Pipe(capacity), _Pipe(capacity)
    return PipeStream(down, up), PipeStream(up, down)


class _ClientStream(TrioStream):
    """httpcore's trio stream over a :class:`PipeStream` (perhaps inside TLS)."""

    def __init__(self, stream: trio.abc.Stream, pipe: PipeStream) -> None:
        super().__init__(stream)
        self._pipe = pipe

    async def start_tls(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        tls = await super().start_tls(*args, **kwargs)
        assert isinstance(tls, TrioStream)
        return _ClientStream(tls._stream, self._pipe)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return self._pipe.readable()
        if info in ("socket", "client_addr", "server_addr"):
            return None
        return super().get_extra_info(info)


class MemoryBackend(httpcore.TrioBackend):
    """Connect to servers of this process in memory, to anything else over the network."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        server = running_server(port)
        if server is None or host not in ("127.0.0.1", "localhost", "::1", server.host):
            return await super().connect_tcp(host, port, timeout, local_address, socket_options)
        client, server_end = pipe_pair()
        server.serve_stream(server_end)
        await trio.lowlevel.checkpoint()
        return _ClientStream(client, client)


def install(monkeypatch: Any) -> None:
    """Make every httpx connection pool created from now on use :class:`MemoryBackend`."""
    original = httpcore.AsyncConnectionPool.__init__

    def init(self: httpcore.AsyncConnectionPool, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._network_backend = MemoryBackend()

    monkeypatch.setattr(httpcore.AsyncConnectionPool, "__init__", init)
