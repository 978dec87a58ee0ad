"""Pauses, dead connections and time bounds against the fault-injecting test server.

The server runs in this process over real sockets on 127.0.0.1; trio's autojump clock
makes its minute-long pauses take no wall time. The tone voice is deterministic, so what
was played must equal the reference exactly whatever the network did.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import trio
from _cli_helpers import run_cli, serve_process
from test_network_sim import Collect

import trio_tts_stream as tts
from trio_tts_stream.testing import FaultPlan, open_test_server, synthesize_tone

TEXT = "A server that thinks between sentences is not a dead connection."
REFERENCE = synthesize_tone(TEXT)
BODY_BYTES = len(REFERENCE) * 2


async def speak(
    faults: FaultPlan, config: tts.StreamConfig
) -> tuple[tts.PlaybackReport, np.ndarray, int, float]:
    """Speak TEXT through the fault server into a real-time sink; return the report,
    the samples played, how many requests the server got and how long ``speak`` took."""
    async with open_test_server(faults=faults, realtime_factor=4.0) as server:
        async with Collect() as sink:
            start = trio.current_time()
            report = await tts.speak(TEXT, base_url=server.base_url, sink=sink, config=config)
            took = trio.current_time() - start
        return report, sink.played(), len(server.requests), took


async def test_a_long_pause_on_an_open_connection_is_ridden_out(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Kokoro-FastAPI on a CPU: 6 s of thinking between two multi-sentence writes.
    report, played, requests, _ = await speak(
        FaultPlan(stall_after_bytes=BODY_BYTES // 2, stall_ms=6000, stall_every_request=True),
        tts.StreamConfig(),
    )
    assert requests == 1  # not re-requested: the synthesis was not started again
    assert report.outcome is tts.Outcome.COMPLETED
    assert report.reconnects == 0
    assert report.retries == 0
    assert report.stalls == 1
    assert 5900 <= report.longest_pause_ms <= 6500
    assert report.underruns >= 1  # played out what came, rebuffered, went on
    np.testing.assert_array_equal(played, REFERENCE)


async def test_a_dead_connection_is_detected_by_the_hard_limit_and_resumed(
    autojump_clock: trio.abc.Clock,
) -> None:
    report, played, requests, took = await speak(
        FaultPlan(stall_after_bytes=BODY_BYTES // 3, stall_ms=600_000),
        tts.StreamConfig(dead_timeout_s=5.0),
    )
    assert requests == 2
    assert report.stalls == 1
    assert report.reconnects == 1
    assert took < 15  # 5 s, not the 600 s stall
    np.testing.assert_array_equal(played, REFERENCE)


async def test_a_restall_at_the_same_place_escalates_the_wait(
    autojump_clock: trio.abc.Clock,
) -> None:
    # The server pauses 12 s at the same place in every response: waits of 4 s and 8 s
    # give up, the third attempt waits 16 s and rides the pause out.
    report, played, requests, _ = await speak(
        FaultPlan(stall_after_bytes=BODY_BYTES // 2, stall_ms=12_000, stall_every_request=True),
        tts.StreamConfig(dead_timeout_s=4.0),
    )
    assert requests == 3
    assert report.outcome is tts.Outcome.COMPLETED
    assert report.reconnects == 2
    assert report.stalls == 3  # two dead connections and the pause ridden out
    np.testing.assert_array_equal(played, REFERENCE)


async def test_headers_then_nothing_is_told_apart_from_a_stall_after_audio(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = tts.StreamConfig(read_timeout_s=3.0, max_attempts=1)
    with pytest.raises(tts.StreamTimeout, match="headers and then no body byte for 3 s"):
        await speak(FaultPlan(stall_after_bytes=0, stall_ms=600_000), config)
    config = tts.StreamConfig(dead_timeout_s=3.0, max_attempts=1)
    stalled = r"stalled: no byte for 3 s after \d+ bytes of audio"
    with pytest.raises(tts.StreamTimeout, match=stalled):
        await speak(FaultPlan(stall_after_bytes=5000, stall_ms=600_000), config)


async def test_first_audio_deadline_bounds_the_whole_wait_retries_included(
    autojump_clock: trio.abc.Clock,
) -> None:
    plan = FaultPlan(stall_after_bytes=0, stall_ms=600_000, stall_every_request=True)
    config = tts.StreamConfig(read_timeout_s=2.0, first_audio_timeout_s=5.0)
    async with open_test_server(faults=plan) as server:
        start = trio.current_time()
        bounded = r"no audio within 5 s of the request \(\d attempts\)"
        with pytest.raises(tts.StreamTimeout, match=bounded):
            await tts.speak(TEXT, base_url=server.base_url, sink=tts.NullSink(), config=config)
        assert trio.current_time() - start == pytest.approx(5.0, abs=0.1)
        assert len(server.requests) >= 2  # retried within the bound


async def test_first_audio_deadline_is_lifted_once_audio_plays(
    autojump_clock: trio.abc.Clock,
) -> None:
    # 2 s of tone at 4x real time takes longer than the deadline to play, and pauses.
    report, played, _, _ = await speak(
        FaultPlan(stall_after_bytes=BODY_BYTES // 2, stall_ms=3000),
        tts.StreamConfig(first_audio_timeout_s=1.0),
    )
    assert report.outcome is tts.Outcome.COMPLETED
    np.testing.assert_array_equal(played, REFERENCE)


def test_say_timeout_bounds_the_wait_for_headers_then_nothing() -> None:
    with serve_process(
        "--engine",
        "tone",
        "--stall-after-bytes",
        "0",
        "--stall-ms",
        "600000",
        "--stall-every-request",
    ) as url:
        began = time.monotonic()
        result = run_cli("say", "--base-url", url, "--null", "--timeout", "2", "hello there")
        elapsed = time.monotonic() - began
    assert result.returncode == 4, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "no audio within 2 s of the request" in lines[-1]
    assert "Traceback" not in result.stderr
    assert elapsed < 15  # was five attempts of the timeout each (26-28 s for 5 s)
