"""Network simulation: the player against the fault-injecting test server over HTTPS.

Every drop/stall case uses the deterministic tone voice, so the played audio must equal
the undisturbed reference exactly: no sample lost, none repeated.
"""

from __future__ import annotations

import json
import ssl
import wave
from pathlib import Path

import numpy as np
import pytest
import trio
import trustme
from _cli_helpers import run_cli, serve_process
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trio_tts_stream as tts
from trio_tts_stream.server._faults import FaultPlan
from trio_tts_stream.testing import open_test_server, synthesize_tone

TEXT = "A network that drops, stalls and crawls must not change a single sample."
REFERENCE = synthesize_tone(TEXT)
BODY_BYTES = len(REFERENCE) * 2


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ssl(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def client_ssl(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


class Collect(tts.NullSink):
    """A NullSink that keeps every frame it is given, as int16."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(dtype="int16", **kwargs)  # type: ignore[arg-type]
        self.frames: list[np.ndarray] = []

    def write_some(self, block: tts.Block) -> int:
        n = super().write_some(block)
        self.frames.append(np.rint(block[:n, 0] * 32768).astype(np.int16))
        return n

    def played(self) -> np.ndarray:
        return np.concatenate(self.frames) if self.frames else np.zeros(0, np.int16)


async def speak_through(
    faults: FaultPlan,
    server_ssl: ssl.SSLContext,
    client_ssl: ssl.SSLContext,
    *,
    config: tts.StreamConfig | None = None,
    realtime_factor: float | None = 2.0,
    text: str = TEXT,
) -> tuple[tts.PlaybackReport, np.ndarray]:
    async with (
        open_test_server(
            ssl_context=server_ssl, faults=faults, realtime_factor=realtime_factor
        ) as server,
        Collect() as sink,
    ):
        report = await tts.speak(
            text, base_url=server.base_url, sink=sink, verify=client_ssl, config=config
        )
        return report, sink.played()


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    offsets=st.lists(st.integers(1, BODY_BYTES - 1), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
)
async def test_drops_at_any_offset_lose_and_repeat_nothing(
    offsets: list[int],
    seed: int,
    server_ssl: ssl.SSLContext,
    client_ssl: ssl.SSLContext,
    autojump_clock: trio.abc.Clock,
) -> None:
    report, played = await speak_through(
        FaultPlan(seed=seed, drop_after_bytes=tuple(offsets)),
        server_ssl,
        client_ssl,
        realtime_factor=None,
    )
    assert report.outcome is tts.Outcome.COMPLETED
    assert report.reconnects + report.retries == len(offsets)
    np.testing.assert_array_equal(played, REFERENCE)


async def test_stall_longer_than_the_timeout_is_recovered(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, autojump_clock: trio.abc.Clock
) -> None:
    start = trio.current_time()
    report, played = await speak_through(
        FaultPlan(stall_after_bytes=BODY_BYTES // 3, stall_ms=60_000),
        server_ssl,
        client_ssl,
        config=tts.StreamConfig(dead_timeout_s=1.0),
    )
    assert report.stalls == 1
    assert report.reconnects == 1
    assert trio.current_time() - start < 30  # detected, not waited out
    np.testing.assert_array_equal(played, REFERENCE)


async def test_bandwidth_below_real_time_completes_with_rebuffers(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, autojump_clock: trio.abc.Clock
) -> None:
    # pcm is 384 kbit/s; give it 80 % of that.
    report, played = await speak_through(
        FaultPlan(bandwidth_kbps=0.8 * 384), server_ssl, client_ssl, realtime_factor=None
    )
    assert report.outcome is tts.Outcome.COMPLETED
    # A 20 % deficit over ~4.7 s is ~0.95 s of missing audio; the rebuffer threshold
    # starts at 300 ms and grows x1.5 per underrun, so 300 + 450 + ... covers it in at
    # most 3 gaps.
    assert 1 <= report.underruns <= 3
    assert report.delivery_ratio is not None
    assert report.delivery_ratio == pytest.approx(0.8, rel=0.1)
    np.testing.assert_array_equal(played, REFERENCE)


async def test_jitter_and_bursts_play_everything(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, autojump_clock: trio.abc.Clock
) -> None:
    report, played = await speak_through(
        FaultPlan(seed=7, jitter_ms=120), server_ssl, client_ssl, realtime_factor=1.3
    )
    assert report.outcome is tts.Outcome.COMPLETED
    np.testing.assert_array_equal(played, REFERENCE)


async def test_5xx_storm_is_retried_with_retry_after(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, autojump_clock: trio.abc.Clock
) -> None:
    start = trio.current_time()
    report, played = await speak_through(
        FaultPlan(fail_first=3, fail_status=503, retry_after=1.0), server_ssl, client_ssl
    )
    assert report.retries == 3
    assert trio.current_time() - start >= 3.0  # Retry-After honoured each time
    np.testing.assert_array_equal(played, REFERENCE)


async def test_close_before_headers_is_retried(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, autojump_clock: trio.abc.Clock
) -> None:
    report, played = await speak_through(FaultPlan(close_before_headers=2), server_ssl, client_ssl)
    assert report.retries == 2
    np.testing.assert_array_equal(played, REFERENCE)


async def test_truncated_body_with_content_length_is_resumed(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, autojump_clock: trio.abc.Clock
) -> None:
    report, played = await speak_through(
        FaultPlan(truncate_after_bytes=BODY_BYTES // 2), server_ssl, client_ssl
    )
    assert report.reconnects == 1
    np.testing.assert_array_equal(played, REFERENCE)


async def test_untrusted_certificate_fails_at_once(
    server_ssl: ssl.SSLContext, autojump_clock: trio.abc.Clock
) -> None:
    async with open_test_server(ssl_context=server_ssl) as server, Collect() as sink:
        with pytest.raises(tts.TLSError, match="certificate"):
            await tts.speak(TEXT, base_url=server.base_url, sink=sink)
        assert server.requests == []  # no retry loop: not even one request got through


async def test_get_url_resumes_with_range(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, autojump_clock: trio.abc.Clock
) -> None:
    plan = FaultPlan(drop_after_bytes=(BODY_BYTES // 4, BODY_BYTES // 4))
    async with open_test_server(ssl_context=server_ssl, faults=plan) as server, Collect() as sink:
        url = server.audio_url(TEXT, response_format="pcm")
        report = await tts.play(url, sink=sink, verify=client_ssl)
        played = sink.played()
    assert report.reconnects == 2
    assert report.resumed_bytes == BODY_BYTES // 4 * 3  # 1/4, then 1/4 + 1/4
    assert report.skipped_overlap_frames == 0
    np.testing.assert_array_equal(played, REFERENCE)


async def test_32_concurrent_faulty_streams_all_finish(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, autojump_clock: trio.abc.Clock
) -> None:
    outcomes: list[str] = []
    plan = FaultPlan(
        seed=3,
        drop_after_bytes=tuple(range(5000, 5000 + 32 * 997, 997)),
        jitter_ms=30,
        fail_first=4,
    )

    async with open_test_server(ssl_context=server_ssl, faults=plan, realtime_factor=3) as server:

        async def one(i: int) -> None:
            async with Collect() as sink:
                try:
                    report = await tts.speak(
                        f"Stream number {i} of thirty two.",
                        base_url=server.base_url,
                        sink=sink,
                        verify=client_ssl,
                    )
                    outcomes.append(report.outcome.value)
                except tts.TTSStreamError as exc:  # failing cleanly is allowed
                    outcomes.append(type(exc).__name__)

        with trio.fail_after(300):
            async with trio.open_nursery() as nursery:
                for i in range(32):
                    nursery.start_soon(one, i)
    assert len(outcomes) == 32
    assert outcomes.count("completed") >= 28, outcomes


def test_cli_three_drops_give_the_undisturbed_audio(tmp_path: Path) -> None:
    """The issue's acceptance check: say --output against serve with three drops."""
    clean_out, faulty_out = tmp_path / "clean.wav", tmp_path / "faulty.wav"
    with serve_process() as url:
        clean = run_cli("say", TEXT, "--base-url", url, "--output", str(clean_out), "--json")
    drops = f"{BODY_BYTES // 5},{BODY_BYTES // 3},{BODY_BYTES // 2}"
    with serve_process("--drop-after-bytes", drops, "--realtime-factor", "4") as url:
        faulty = run_cli("say", TEXT, "--base-url", url, "--output", str(faulty_out), "--json")
    assert clean.returncode == 0, clean.stderr
    assert faulty.returncode == 0, faulty.stderr
    assert json.loads(faulty.stdout)["reconnects"] == 3

    def samples(path: Path) -> bytes:
        with wave.open(str(path)) as w:
            data: bytes = w.readframes(w.getnframes())
        return data

    assert samples(faulty_out) == samples(clean_out) == REFERENCE.tobytes()
