"""Tests for ``_format.py`` (AudioFormat, sample conversion) and ``_metrics.py``.

Conversions are checked exhaustively (all 65536 int16 values); percentiles against
numpy's nearest-rank method and an exact integer computation of the rank.
"""

from __future__ import annotations

import dataclasses
import json
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_tts_stream._format import AudioFormat, float_to_int16, int16_to_float
from trio_tts_stream._metrics import MetricsRecorder, PlaybackReport, TimelineEntry
from trio_tts_stream._state import PlaybackStateMachine
from trio_tts_stream._vocabulary import Cause, Outcome, PlaybackState

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)

# -- AudioFormat -------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "channels"), [(1000, 1), (768_000, 32), (24000, 2)])
def test_audio_format_accepts_edges(rate: int, channels: int) -> None:
    fmt = AudioFormat(rate, channels)
    assert (fmt.sample_rate, fmt.channels) == (rate, channels)


@pytest.mark.parametrize(
    ("rate", "channels", "field"),
    [
        (999, 1, "sample_rate"),
        (768_001, 1, "sample_rate"),
        (0, 1, "sample_rate"),
        (-24000, 1, "sample_rate"),
        (24000, 0, "channels"),
        (24000, 33, "channels"),
        (24000, -1, "channels"),
    ],
)
def test_audio_format_rejects(rate: int, channels: int, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        AudioFormat(rate, channels)


def test_audio_format_is_frozen_and_hashable() -> None:
    fmt = AudioFormat(24000, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fmt.sample_rate = 48000  # type: ignore[misc]
    assert {fmt, AudioFormat(24000, 1)} == {fmt}
    assert AudioFormat(24000, 1) != AudioFormat(24000, 2)


@pytest.mark.parametrize(
    ("rate", "frames", "ms"),
    [
        (24000, 24000, 1000.0),
        (24000, 0, 0.0),
        (8000, 8, 1.0),
        (48000, 1, 1 / 48),
        (44100, 441, 10.0),
    ],
)
def test_frames_to_ms(rate: int, frames: int, ms: float) -> None:
    assert AudioFormat(rate, 1).frames_to_ms(frames) == pytest.approx(ms, rel=1e-15)


@pytest.mark.parametrize(
    ("rate", "ms", "frames"),
    [
        (24000, 150, 3600),
        (24000, 0, 0),
        (24000, 0.5, 12),
        (24000, 1.99, 47),  # 47.76 frames: rounded down
        (44100, 1, 44),  # 44.1
        (44100, 10, 441),
        (48000, 0.99, 47),  # 47.52
        (1000, 2.5, 2),
        (22050, 2000, 44100),
    ],
)
def test_ms_to_frames_rounds_down(rate: int, ms: float, frames: int) -> None:
    assert AudioFormat(rate, 2).ms_to_frames(ms) == frames


def test_ms_to_frames_returns_int() -> None:
    assert type(AudioFormat(24000, 1).ms_to_frames(10.0)) is int


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 32000, 48000, 96000])
def test_ms_to_frames_inverts_frames_to_ms_at_whole_khz_rates(rate: int) -> None:
    fmt = AudioFormat(rate, 1)
    for n in range(0, 5 * rate, 7):
        assert fmt.ms_to_frames(fmt.frames_to_ms(n)) == n


@pytest.mark.parametrize("rate", [11025, 22050, 44100])
def test_ms_to_frames_inverts_frames_to_ms_within_one_frame(rate: int) -> None:
    # n * 1000 / rate is not exact here; rounding down may then lose one frame.
    fmt = AudioFormat(rate, 1)
    for n in range(0, 2 * rate, 3):
        assert n - 1 <= fmt.ms_to_frames(fmt.frames_to_ms(n)) <= n


# -- sample conversion -------------------------------------------------------------------


def test_int16_to_float_is_exact_for_every_value() -> None:
    out = int16_to_float(ALL_INT16)
    assert out.dtype == np.float32
    assert out.shape == ALL_INT16.shape
    # Independent reference: exact division in float64 (a power of two divisor).
    np.testing.assert_array_equal(out.astype(np.float64), ALL_INT16.astype(np.float64) / 32768)
    assert out.min() == -1.0
    assert out.max() == np.float32(32767 / 32768)
    assert out.max() < 1.0


def test_int16_float_int16_round_trip_is_exact() -> None:
    back = float_to_int16(int16_to_float(ALL_INT16))
    assert back.dtype == np.int16
    np.testing.assert_array_equal(back, ALL_INT16)


def test_conversion_keeps_block_shape() -> None:
    samples = ALL_INT16.reshape(-1, 4)
    block = int16_to_float(samples)
    assert block.shape == (16384, 4)
    assert block.flags.c_contiguous
    np.testing.assert_array_equal(float_to_int16(block), samples)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, 32767),
        (1.5, 32767),
        (100.0, 32767),
        (math.inf, 32767),
        (-1.0, -32768),
        (-1.0001, -32768),
        (-7.0, -32768),
        (-math.inf, -32768),
        (0.0, 0),
        (-0.0, 0),
        (32767.4 / 32768, 32767),
        (32767.6 / 32768, 32767),
        (0.3 / 32768, 0),
        (0.7 / 32768, 1),
        (-0.7 / 32768, -1),
        (1000.2 / 32768, 1000),
        (-1000.8 / 32768, -1001),
    ],
)
def test_float_to_int16_rounds_and_clips(value: float, expected: int) -> None:
    out = float_to_int16(np.array([[value]], dtype=np.float32))
    assert out.dtype == np.int16
    assert out.shape == (1, 1)
    assert int(out[0, 0]) == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-4.0, 4.0, width=32), min_size=1, max_size=64))
def test_float_to_int16_is_nearest_clipped(values: list[float]) -> None:
    block = np.array(values, dtype=np.float32).reshape(-1, 1)
    out = float_to_int16(block)
    for x, y in zip(values, out[:, 0].tolist(), strict=True):
        exact = Fraction(x) * 32768
        assert -32768 <= y <= 32767
        if -32768 <= exact <= 32767:
            assert abs(Fraction(y) - exact) <= Fraction(1, 2)
        else:
            assert y == (32767 if exact > 0 else -32768)


# -- MetricsRecorder ---------------------------------------------------------------------


def test_recorder_starts_empty() -> None:
    rec = MetricsRecorder()
    assert rec.request_time is None
    assert rec.since_request_ms(5.0) is None
    assert rec.throughput_kbps() is None
    assert rec.decode_ms() == (None, None)
    assert rec.bytes_received == 0
    assert rec.frames_decoded == 0


def test_request_time_is_the_first_request() -> None:
    rec = MetricsRecorder()
    rec.on_request(100.0)
    rec.on_request(105.0)  # a reconnect does not move the origin
    assert rec.request_time == 100.0


def test_ttfb_is_relative_to_the_request() -> None:
    rec = MetricsRecorder()
    rec.on_request(100.0)
    rec.on_bytes(10, 100.25)
    rec.on_bytes(20, 100.5)
    assert rec.first_byte_time == 100.25
    assert rec.last_byte_time == 100.5
    assert rec.bytes_received == 30
    assert rec.since_request_ms(rec.first_byte_time) == pytest.approx(250.0)
    assert rec.since_request_ms(None) is None
    assert rec.since_request_ms(99.0) == pytest.approx(-1000.0)


def test_since_request_without_request() -> None:
    rec = MetricsRecorder()
    rec.on_bytes(1, 3.0)
    assert rec.since_request_ms(rec.first_byte_time) is None


def test_throughput() -> None:
    rec = MetricsRecorder()
    rec.on_request(0.0)
    rec.on_bytes(500, 1.0)
    rec.on_bytes(1500, 3.0)
    # 2000 bytes = 16 kbit over 2 s.
    assert rec.throughput_kbps() == pytest.approx(8.0)


def test_throughput_needs_a_time_span() -> None:
    rec = MetricsRecorder()
    rec.on_bytes(4096, 1.0)
    assert rec.throughput_kbps() is None
    rec.on_bytes(4096, 1.0)
    assert rec.throughput_kbps() is None
    rec.on_bytes(8192, 1.5)
    assert rec.throughput_kbps() == pytest.approx(16384 * 8 / 1000 / 0.5)


def test_on_decode_accumulates() -> None:
    rec = MetricsRecorder()
    rec.on_decode(0.001)
    rec.on_decode(0.003)
    assert rec.decode_sample == [0.001, 0.003]
    assert rec.decode_calls == 2
    mean, p95 = rec.decode_ms()
    assert mean == pytest.approx(2.0)
    assert p95 == pytest.approx(3.0)


def test_recorders_do_not_share_lists() -> None:
    a, b = MetricsRecorder(), MetricsRecorder()
    a.on_decode(0.5)
    assert b.decode_sample == []


@pytest.mark.parametrize("n", [1, 2, 3, 19, 20, 21, 39, 40, 41, 100, 101, 997])
def test_decode_p95_is_nearest_rank(n: int) -> None:
    rng = np.random.default_rng(n)
    times = rng.exponential(0.002, size=n)
    rec = MetricsRecorder()
    for t in rng.permutation(times).tolist():
        rec.on_decode(t)
    mean, p95 = rec.decode_ms()
    assert mean == pytest.approx(float(np.mean(times)) * 1000, rel=1e-12)
    reference = float(np.percentile(times, 95, method="inverted_cdf")) * 1000
    assert p95 == pytest.approx(reference, rel=1e-12)
    rank = -(-95 * n // 100)  # exact ceil(0.95 n), 1-based
    assert p95 == pytest.approx(float(np.sort(times)[rank - 1]) * 1000, rel=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=300))
def test_decode_stats_against_numpy(times: list[float]) -> None:
    rec = MetricsRecorder()
    for t in times:
        rec.on_decode(t)
    mean, p95 = rec.decode_ms()
    assert mean == pytest.approx(float(np.mean(times)) * 1000, rel=1e-9, abs=1e-12)
    reference = float(np.percentile(times, 95, method="inverted_cdf")) * 1000
    assert p95 == reference


def test_decode_memory_is_bounded_and_p95_stays_close() -> None:
    """Long streams keep a fixed-size sample; mean stays exact, p95 close."""
    from trio_tts_stream._metrics import DECODE_SAMPLE

    rng = np.random.default_rng(1)
    times = rng.exponential(0.002, size=DECODE_SAMPLE * 10)
    rec = MetricsRecorder()
    for t in times.tolist():
        rec.on_decode(t)
    assert len(rec.decode_sample) == DECODE_SAMPLE
    mean, p95 = rec.decode_ms()
    assert mean == pytest.approx(float(np.mean(times)) * 1000, rel=1e-9)
    assert p95 == pytest.approx(float(np.percentile(times, 95)) * 1000, rel=0.05)


def test_timeline_conversion() -> None:
    machine = PlaybackStateMachine(10.0)
    machine.fire(Cause.THRESHOLD_REACHED, 10.3)
    machine.fire(Cause.UNDERRUN, 11.0)
    machine.fire(Cause.CANCELLED, 12.5)
    rec = MetricsRecorder()
    rec.on_request(10.0)
    entries = rec.timeline(machine.timeline)
    assert isinstance(entries, tuple)
    assert [(e.state, e.cause) for e in entries] == [
        (PlaybackState.PLAYING, Cause.THRESHOLD_REACHED),
        (PlaybackState.REBUFFERING, "underrun"),
        (PlaybackState.DONE, "cancelled"),
    ]
    assert [e.t_ms for e in entries] == pytest.approx([300.0, 1000.0, 2500.0])


def test_timeline_without_request_is_absolute() -> None:
    machine = PlaybackStateMachine(0.0)
    machine.fire(Cause.EOS_BEFORE_THRESHOLD, 2.0)
    assert MetricsRecorder().timeline(machine.timeline) == (
        TimelineEntry(2000.0, PlaybackState.DRAINING, Cause.EOS_BEFORE_THRESHOLD),
    )
    assert MetricsRecorder().timeline([]) == ()


# -- PlaybackReport ----------------------------------------------------------------------


def full_report(outcome: Outcome = Outcome.COMPLETED) -> PlaybackReport:
    return PlaybackReport(
        outcome=outcome,
        error=None if outcome is Outcome.COMPLETED else "boom",
        mode="stream",
        format="pcm",
        sample_rate=24000,
        channels=1,
        buffer_ms=150.0,
        ttfb_ms=12.3456789,
        ttfa_ms=170.0004,
        underruns=2,
        underrun_ms=41.66666,
        buffer_ms_avg=None,
        buffer_ms_min=0.0,
        bytes_received=96000,
        throughput_kbps=1234.5678,
        decode_ms_mean=0.0123456,
        decode_ms_p95=0.5,
        reconnects=1,
        frames_played=48000,
        audio_s=2.0,
        timeline=(
            TimelineEntry(150.12345, PlaybackState.PLAYING, Cause.THRESHOLD_REACHED),
            TimelineEntry(2100.0, PlaybackState.DRAINING, Cause.END_OF_STREAM),
        ),
    )


@pytest.mark.parametrize("outcome", list(Outcome), ids=lambda o: o.name)
def test_report_to_dict_is_json_with_every_field(outcome: Outcome) -> None:
    report = full_report(outcome)
    data = report.to_dict()
    assert list(data) == [f.name for f in dataclasses.fields(PlaybackReport)]
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["outcome"] == outcome.value
    assert data["error"] == report.error


def test_report_to_dict_values() -> None:
    data = full_report().to_dict()
    assert data["mode"] == "stream"
    assert data["format"] == "pcm"
    assert data["sample_rate"] == 24000
    assert data["ttfb_ms"] == 12.346
    assert data["ttfa_ms"] == 170.0
    assert data["underrun_ms"] == 41.667
    assert data["buffer_ms_avg"] is None
    assert data["buffer_ms_min"] == 0.0
    assert data["throughput_kbps"] == 1234.568
    assert data["decode_ms_mean"] == 0.012
    assert data["underruns"] == 2
    assert data["frames_played"] == 48000
    assert data["timeline"] == [
        {"t_ms": 150.123, "state": "playing", "cause": "threshold_reached"},
        {"t_ms": 2100.0, "state": "draining", "cause": "end_of_stream"},
    ]


def test_report_default_timeline_is_empty() -> None:
    fields = {
        f.name: getattr(full_report(), f.name)
        for f in dataclasses.fields(PlaybackReport)
        if f.name != "timeline"
    }
    report = PlaybackReport(**fields)
    assert report.timeline == ()
    assert report.to_dict()["timeline"] == []
