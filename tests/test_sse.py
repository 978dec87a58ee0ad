"""OpenAI's SSE speech stream (stream_format="sse"): the pure event parser, the stream
decoder, the bundled server and the CLI."""

from __future__ import annotations

import base64
import json
import wave
from pathlib import Path

import numpy as np
import pytest
from _cli_helpers import run_cli, serve_process
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_tts_stream as tts
from trio_tts_stream._format import Block, FormatHint
from trio_tts_stream._metrics import MetricsRecorder
from trio_tts_stream._sse import SseAudioStream
from trio_tts_stream._stream_decoder import StreamDecoder
from trio_tts_stream.testing import open_test_server, synthesize_tone

TEXT = "Events that carry speech, base64 by base64."
TONE = synthesize_tone(TEXT)
PCM = TONE.astype("<i2").tobytes()


def delta(audio: bytes, newline: bytes = b"\n") -> bytes:
    event = {"type": "speech.audio.delta", "audio": base64.b64encode(audio).decode()}
    return b"data: " + json.dumps(event).encode() + newline + newline


DONE = b'data: {"type": "speech.audio.done", "usage": {"input_tokens": 5}}\n\n'


def events_body(pieces: list[bytes], newline: bytes = b"\n") -> bytes:
    return b"".join(delta(p, newline) for p in pieces) + DONE.replace(b"\n", newline)


def parse(body: bytes, cuts: list[int]) -> tuple[bytes, SseAudioStream]:
    stream = SseAudioStream()
    out = b""
    start = 0
    for cut in [*sorted(cuts), len(body)]:
        out += stream.feed(body[start:cut])
        start = cut
    return out + stream.finish(), stream


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=8),
    newline=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    cuts=st.lists(st.integers(0, 40_000), max_size=8),
)
def test_audio_of_every_delta_in_any_chunking_and_line_ending(
    sizes: list[int], newline: bytes, cuts: list[int]
) -> None:
    audio = PCM[: sum(sizes)]
    pieces, at = [], 0
    for size in sizes:
        pieces.append(audio[at : at + size])
        at += size
    body = events_body(pieces, newline)
    out, stream = parse(body, [c for c in cuts if c <= len(body)])
    assert out == audio
    assert stream.done
    assert stream.usage == {"input_tokens": 5}


def test_comments_multiline_data_other_events_and_a_last_event_without_blank_line() -> None:
    first = base64.b64encode(b"\x01\x02\x03\x04").decode()
    body = (
        b": keep-alive\n\n"
        b"event: message\nid: 7\n"
        b'data: {"type": "speech.audio.delta",\ndata:  "audio": "' + first.encode() + b'"}\n\n'
        b'data: {"type": "speech.transcript.delta", "delta": "hi"}\n\n'
        + delta(b"\x05\x06").rstrip(b"\n")
    )
    out, stream = parse(body, [3, 40])
    assert out == b"\x01\x02\x03\x04\x05\x06"
    assert stream.events == 2
    assert not stream.done


@pytest.mark.parametrize(
    ("event", "error", "match"),
    [
        (
            b'data: {"type": "error", "error": {"message": "Rate limit reached", '
            b'"type": "requests", "code": "rate_limit_exceeded"}}\n\n',
            tts.SourceError,
            r"error in its event stream: Rate limit reached \(requests, rate_limit_exceeded\)",
        ),
        (b'data: {"error": "model overloaded"}\n\n', tts.SourceError, "model overloaded"),
        (b"data: <html>\n\n", tts.DecodeError, "not JSON"),
        (b"data: [1, 2]\n\n", tts.DecodeError, "not an object"),
        (b'data: {"type": "speech.audio.delta", "audio": "@@@"}\n\n', tts.DecodeError, "base64"),
        (b'data: {"type": "speech.audio.delta"}\n\n', tts.DecodeError, "no base64 'audio'"),
    ],
)
def test_error_and_malformed_events_are_our_errors(
    event: bytes, error: type[Exception], match: str
) -> None:
    stream = SseAudioStream()
    assert stream.feed(delta(b"\x00\x01")) == b"\x00\x01"
    with pytest.raises(error, match=match):
        stream.feed(event)


def test_an_endless_event_is_bounded() -> None:
    stream = SseAudioStream(max_event_bytes=10_000)
    for _ in range(9):
        stream.feed(b"A" * 1000)  # no newline, ever: one line growing
    with pytest.raises(tts.DecodeError, match="longer than 10000 bytes"):
        stream.feed(b"A" * 1001)
    lines = SseAudioStream(max_event_bytes=10_000)
    for _ in range(9):
        lines.feed(b"data: " + b"A" * 1000 + b"\n")  # many data lines, no blank line
    with pytest.raises(tts.DecodeError, match="longer than 10000 bytes"):
        lines.feed(b"data: " + b"A" * 1000 + b"\n")


def decode(body: bytes, content_type: str | None, sse: bool) -> tuple[np.ndarray, MetricsRecorder]:
    recorder = MetricsRecorder()
    decoder = StreamDecoder(FormatHint("pcm", sse=sse), recorder=recorder)
    decoder.begin_response(content_type)
    events = []
    for i in range(0, len(body), 777):
        events += decoder.feed(body[i : i + 777])
    events += decoder.finish()
    blocks: list[Block] = [e for e in events if isinstance(e, np.ndarray)]
    out = np.concatenate(blocks)[:, 0] if blocks else np.zeros(0, np.float32)
    return np.rint(out * 32768).astype(np.int16), recorder


def test_stream_decoder_plays_the_events_when_sse_was_asked_for() -> None:
    body = events_body([PCM[i : i + 4800] for i in range(0, len(PCM), 4800)])
    played, recorder = decode(body, "text/event-stream", sse=True)
    np.testing.assert_array_equal(played, TONE)
    assert recorder.truncated is None


def test_an_event_stream_not_asked_for_is_still_refused() -> None:
    with pytest.raises(tts.NotAudioError, match="event stream"):
        decode(events_body([PCM[:4800]]), "text/event-stream", sse=False)


def test_a_plain_body_when_sse_was_asked_for_plays_with_a_note() -> None:
    played, recorder = decode(PCM, "audio/pcm", sse=True)
    np.testing.assert_array_equal(played, TONE)
    assert recorder.format_note is not None
    assert "plain audio body" in recorder.format_note


def test_an_event_stream_without_its_done_event_is_truncated() -> None:
    body = b"".join(delta(PCM[i : i + 4800]) for i in range(0, len(PCM), 4800))
    played, recorder = decode(body, "text/event-stream", sse=True)
    np.testing.assert_array_equal(played, TONE)
    assert recorder.truncated is not None
    assert "without speech.audio.done" in recorder.truncated


@pytest.mark.parametrize("fmt", ["pcm", "wav", "mp3"])
async def test_speak_with_sse_over_http_plays_what_audio_would(fmt: str, tmp_path: Path) -> None:
    if fmt == "mp3":
        pytest.importorskip("av")
    results = {}
    async with open_test_server(realtime_factor=None) as server:
        for stream_format in ("audio", "sse"):
            path = tmp_path / f"{stream_format}.wav"
            async with tts.WavFileSink(path) as sink:
                report = await tts.speak(
                    TEXT,
                    base_url=server.base_url,
                    response_format=fmt,
                    stream_format=stream_format,
                    sink=sink,
                )
            assert report.outcome is tts.Outcome.COMPLETED
            assert report.truncated is None
            with wave.open(str(path)) as w:
                results[stream_format] = w.readframes(w.getnframes())
        sent = [r.json or {} for r in server.requests]
    assert [s.get("stream_format", "audio") for s in sent] == ["audio", "sse"]
    assert results["sse"] == results["audio"]
    if fmt in ("pcm", "wav"):
        assert results["sse"] == PCM


def test_cli_say_stream_format_sse(tmp_path: Path) -> None:
    out = tmp_path / "o.wav"
    with serve_process("--engine", "tone") as url:
        result = run_cli(
            "say",
            TEXT,
            "--base-url",
            url,
            "--stream-format",
            "sse",
            "--output",
            str(out),
            "--json",
        )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["outcome"] == "completed"
    with wave.open(str(out)) as w:
        assert w.readframes(w.getnframes()) == PCM
