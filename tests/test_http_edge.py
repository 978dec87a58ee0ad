"""The HTTP edge: every httpx exception becomes one of ours, with its cause kept, in one
line, without credentials; plain-http keys are warned about once per host.

The broken servers here are real HTTP servers on 127.0.0.1 (a thread running
:mod:`http.server`), answering with the canned misbehaviour a test asks for.
"""

from __future__ import annotations

import http.server
import inspect
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

import httpx
import pytest
import trio
from _cli_helpers import run_cli

import trio_tts_stream as tts
from trio_tts_stream._exceptions import unwrap_single_exception
from trio_tts_stream._http import map_http_errors, safe_url, warn_plain_http_key
from trio_tts_stream.testing import open_test_server

SECRET = "sk-secret-KEY-0123456789abcdef"


# -- every httpx exception is mapped ---------------------------------------------------


def httpx_exception_classes() -> list[type[Exception]]:
    """Every exception class httpx exports (its whole public hierarchy)."""
    classes = [
        obj
        for name in httpx.__all__
        if inspect.isclass(obj := getattr(httpx, name)) and issubclass(obj, Exception)
    ]
    assert len(classes) > 20  # the enumeration itself works
    return sorted(classes, key=lambda c: c.__name__)


def make(cls: type[Exception]) -> Exception:
    request = httpx.Request("GET", "https://user:pw@example.com/x")
    if issubclass(cls, httpx.HTTPStatusError):
        return cls("boom", request=request, response=httpx.Response(500, request=request))
    if issubclass(cls, httpx.RequestError):
        return cls("boom\nsecond line", request=request)
    if cls is httpx.StreamError or not issubclass(cls, httpx.StreamError):
        return cls("boom")
    # StreamConsumed, StreamClosed, ...: they build their own message.
    return cast("Callable[[], Exception]", cls)()


@pytest.mark.parametrize("cls", httpx_exception_classes(), ids=lambda c: c.__name__)
def test_every_httpx_exception_becomes_ours(cls: type[Exception]) -> None:
    original = make(cls)
    with pytest.raises(tts.TTSStreamError) as info:
        with map_http_errors(f"https://me:{SECRET}@api.example.com/v1/audio/speech?k=q"):
            raise original
    error = info.value
    assert error.__cause__ is original
    message = str(error)
    assert "\n" not in message
    assert SECRET not in message
    assert "me:" not in message
    assert "k=q" not in message
    assert "api.example.com/v1/audio/speech" in message


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectTimeout("t"), tts.StreamTimeout),
        (httpx.ReadTimeout("t"), tts.StreamTimeout),
        (httpx.ConnectError("refused"), tts.NetworkError),
        (httpx.RemoteProtocolError("peer closed"), tts.NetworkError),
        (httpx.DecodingError("bad gzip"), tts.DecodeError),
        (httpx.TooManyRedirects("loop"), tts.SourceError),
        (httpx.UnsupportedProtocol("ftp"), tts.ConfigError),
        (httpx.InvalidURL("bad"), tts.ConfigError),
        (httpx.StreamClosed(), tts.SourceError),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v.__name__,
)
def test_the_mapping_picks_the_right_type(exc: Exception, expected: type[Exception]) -> None:
    with pytest.raises(expected):
        with map_http_errors("http://127.0.0.1:1/v1/audio/speech"):
            raise exc


def test_retrying_is_decided_by_the_mapped_type() -> None:
    from trio_tts_stream._retry import is_retryable

    def mapped(exc: Exception) -> BaseException:
        with pytest.raises(tts.TTSStreamError) as info:
            with map_http_errors("http://127.0.0.1:1/"):
                raise exc
        return info.value

    assert is_retryable(mapped(httpx.ReadError("reset")))
    assert not is_retryable(mapped(httpx.DecodingError("bad gzip")))
    assert not is_retryable(mapped(httpx.TooManyRedirects("loop")))


# -- URLs are shown without credentials ------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@host:8443/v1?key=1#f", "https://host:8443/v1"),
        ("http://host/v1", "http://host/v1"),
        ("htp:/user:pw@host", "htp:/user:pw@host".replace("user:pw@", "")),
        ("user:pw@host/v1", "host/v1"),
        ("ftp://a:b@c", "ftp://c"),
        ("", ""),
    ],
)
def test_safe_url_drops_userinfo_and_query(url: str, shown: str) -> None:
    assert safe_url(url) == shown


def test_a_malformed_base_url_is_not_echoed_with_its_credentials() -> None:
    with pytest.raises(tts.ConfigError) as info:
        tts.SpeechRequest("hi", base_url=f"ftp://me:{SECRET}@host/v1")
    assert SECRET not in str(info.value)
    assert "ftp://host/v1" in str(info.value)


# -- a key over plain http ---------------------------------------------------------------


def test_a_key_over_plain_http_is_warned_about_once_per_host(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="trio_tts_stream")
    for _ in range(3):
        warn_plain_http_key("http://tts.example.test/v1/audio/speech", SECRET)
    warn_plain_http_key("http://other.example.test/v1/audio/speech", SECRET)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2
    assert "tts.example.test" in warned[0]
    assert "https" in warned[0]
    assert all(SECRET not in m for m in warned)


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://tts.example.test/v1", SECRET),  # encrypted
        ("http://127.0.0.1:8880/v1", SECRET),  # loopback
        ("http://[::1]:8880/v1", SECRET),
        ("http://localhost:8880/v1", SECRET),
        ("http://nokey.example.test/v1", None),  # nothing to leak
    ],
)
def test_no_warning_when_nothing_crosses_the_network_in_clear(
    url: str, key: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="trio_tts_stream")
    warn_plain_http_key(url, key)
    assert not caplog.records


# -- causes survive the nursery ---------------------------------------------------------


async def test_a_single_error_leaves_the_nursery_with_its_cause() -> None:
    root = httpx.ReadError("reset")

    async def fail() -> None:
        with map_http_errors("http://127.0.0.1:1/"):
            raise root

    async def run() -> None:
        with unwrap_single_exception():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(fail)

    with pytest.raises(tts.NetworkError) as info:
        await run()
    assert info.value.__cause__ is root


# -- real broken servers ----------------------------------------------------------------


class _Broken(http.server.BaseHTTPRequestHandler):
    """``/gzip/...``: a 200 whose gzip Content-Encoding is garbage; ``/loop/...``: a
    redirect to itself."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path.startswith("/gzip/"):
            body = b"this is not gzip at all" * 10
            self.send_response(200)
            self.send_header("Content-Type", "audio/pcm")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(307)
            self.send_header("Location", self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def broken() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Broken)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_broken_gzip_is_a_decode_error_with_its_cause(broken: str) -> None:
    request = tts.SpeechRequest("Hello.", base_url=f"{broken}/gzip/v1")
    with pytest.raises(tts.DecodeError, match="Content-Encoding is broken") as info:
        await tts.play(request, sink=tts.NullSink())
    assert isinstance(info.value.__cause__, httpx.DecodingError)
    assert info.value.report is not None
    assert info.value.report.outcome is tts.Outcome.FAILED


async def test_a_redirect_loop_is_a_source_error(broken: str) -> None:
    request = tts.SpeechRequest("Hello.", base_url=f"{broken}/loop/v1")
    with pytest.raises(tts.SourceError, match="too many redirects") as info:
        await tts.play(request, sink=tts.NullSink())
    assert isinstance(info.value.__cause__, httpx.TooManyRedirects)


@pytest.mark.parametrize(
    ("path", "code", "needle"),
    [("gzip", 5, "Content-Encoding is broken"), ("loop", 4, "too many redirects")],
)
def test_the_cli_says_one_line(broken: str, path: str, code: int, needle: str) -> None:
    result = run_cli("say", "--null", "--base-url", f"{broken}/{path}/v1", "Hello.")
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    assert needle in lines[0]
    assert "Traceback" not in result.stderr


def test_the_shared_client_is_one_per_run_and_setting_and_closed_when_the_run_ends() -> None:
    from trio_tts_stream._http import SHARED_LIMITS, shared_client

    seen: list[Any] = []

    async def main() -> None:
        a, b, c = shared_client(), shared_client(), shared_client(False)
        assert a is b
        assert c is not a
        assert not a.is_closed
        seen.extend([a, c])

    trio.run(main)
    assert all(client.is_closed for client in seen)
    assert (SHARED_LIMITS.max_connections or 0) >= 256

    async def again() -> None:
        assert shared_client() is not seen[0]  # a new run, a new client

    trio.run(again)


async def test_playbacks_without_a_client_reuse_one_connection(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_test_server() as server, tts.NullSink() as sink:
        for text in ("One.", "Two.", "Three."):
            req = tts.SpeechRequest(text, base_url=server.base_url, response_format="pcm")
            await tts.play(req, sink=sink)
        assert server.open_connections == 1  # kept alive and reused, not three clients
