"""How-to: speak into a telephone call's media WebSocket, 20 ms of G.711 mu-law per message.

The shape is that of the common media-stream APIs (Twilio's ``media`` event and its
kin): JSON text messages, each with one 20 ms frame of 8 kHz mu-law, base64-encoded, and
a ``mark`` message after an utterance so the far end can say when it was played.
``send`` is your WebSocket's send (``trio_websocket``'s ``send_message``, for example).
Run ``pytest docs/examples/test_media_stream.py`` to check it against the bundled server.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable

import trio

import trio_tts_stream as tts
from trio_tts_stream.testing import open_test_server

Send = Callable[[str], Awaitable[None]]


async def forward_frames(sink: tts.FrameSink, stream_sid: str, send: Send) -> None:
    """Send every frame of ``sink`` as a media message, as it becomes due."""
    async for frame in sink:
        payload = base64.b64encode(frame.data).decode("ascii")
        await send(
            json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})
        )


async def speak_into_call(text: str, base_url: str, stream_sid: str, send: Send) -> None:
    """Speak ``text`` into the call: frames go out in real time while it downloads."""
    async with trio.open_nursery() as nursery, tts.FrameSink(encoding="mulaw") as sink:
        nursery.start_soon(forward_frames, sink, stream_sid, send)
        async with tts.open_speaker(base_url=base_url, sink=sink) as speaker:
            await speaker.say(text).wait()
        await send(json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": "0"}}))
        nursery.cancel_scope.cancel()


async def test_a_call_gets_20_ms_mulaw_messages_in_real_time() -> None:
    sent: list[tuple[float, dict[str, object]]] = []

    async def send(message: str) -> None:  # stands in for the WebSocket
        sent.append((trio.current_time(), json.loads(message)))

    async with open_test_server(realtime_factor=2.0) as server:
        await speak_into_call("Hello caller, how can I help?", server.base_url, "MZ1", send)
    media = [m for _, m in sent if m["event"] == "media"]
    payloads = [base64.b64decode(m["media"]["payload"]) for m in media]  # type: ignore[index]
    assert all(len(p) == 160 for p in payloads)  # 20 ms of 8 kHz, one byte per sample
    times = [t for t, m in sent if m["event"] == "media"]
    assert times[-1] - times[0] >= 0.02 * (len(times) - 1) - 0.1  # paced, not a burst
    assert sent[-1][1]["event"] == "mark"
