"""Tests of the espeak-ng voice engine (trio_tts_stream.server._espeak).

Skipped as a whole when the ``espeak`` extra (``espeakng-loader`` and ``soxr``) is not
installed. The engine really synthesizes here (about 1 ms per second of audio), so texts
are kept short except where a long synthesis is the point (and those are aborted early).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from contextlib import aclosing
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import trio

pytest.importorskip("espeakng_loader", reason="the espeak extra (espeakng-loader) is not installed")
pytest.importorskip("soxr", reason="the espeak extra (soxr) is not installed")

from trio_tts_stream._exceptions import ConfigError
from trio_tts_stream.server import _espeak
from trio_tts_stream.server._espeak import (
    ESPEAK_VOICES,
    VOICES,
    EspeakEngine,
    espeak_available,
    speed_to_wpm,
)

_Samples = npt.NDArray[np.int16]

SHORT = "Hello there. How are you doing today?"
MEDIUM = "The quick brown fox jumps over the lazy dog, and then it runs far away. " * 3
# About 15 minutes of speech: a full synthesis would hold espeak-ng for about a second.
LONG = "The quick brown fox jumps over the lazy dog, and then it runs far away. " * 200
MALE = ("ash", "ballad", "echo", "fable", "onyx", "verse")
FEMALE = ("alloy", "coral", "nova", "sage", "shimmer")


@pytest.fixture(scope="module")
def engine() -> EspeakEngine:
    return EspeakEngine()


def _perturb_libc_rand(seed: int) -> None:
    """Move C's global rand() state, which some espeak-ng voices would draw noise from."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None)
        libc.srand(seed)
        for _ in range(seed):
            libc.rand()


def _f0(samples: _Samples, rate: int = 24000) -> float:
    """Median pitch (Hz) of the loud, periodic 40 ms frames (autocorrelation peak)."""
    x = samples.astype(np.float64)
    n = int(0.04 * rate)
    loud = 0.3 * np.max(np.abs(x))
    lo, hi = rate // 400, rate // 60
    pitches = []
    for start in range(0, len(x) - n, n // 2):
        frame = x[start : start + n]
        if np.max(np.abs(frame)) < loud:
            continue
        frame = frame - frame.mean()
        ac = np.correlate(frame, frame, "full")[n - 1 :]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.5 * ac[0]:
            pitches.append(rate / lag)
    assert pitches, "no voiced frames found"
    return float(np.median(pitches))


def _render_espeak_voice(name: str, text: str) -> _Samples:
    """Synthesize with a raw espeak-ng voice name (bypassing the OpenAI mapping)."""
    job = _espeak._Job(text.encode(), name.encode(), 175, 24000)
    blocks: list[_Samples] = []

    def emit(block: _Samples) -> bool:
        blocks.append(block)
        return True

    _espeak._run(job, emit, threading.Event())
    return np.concatenate(blocks)


def _rms(samples: _Samples) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


# --------------------------------------------------------------------------------------
# Availability and arguments


def test_available() -> None:
    assert espeak_available()
    assert EspeakEngine.name == "espeak"
    assert EspeakEngine().voices == VOICES
    assert set(VOICES) == set(MALE) | set(FEMALE)
    assert len(VOICES) == 11


def test_missing_extra_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _espeak._paths.cache_clear()
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # import raises ImportError
    try:
        assert not espeak_available()
        with pytest.raises(ConfigError, match=r"pip install 'trio-tts-stream\[espeak\]'"):
            EspeakEngine()
    finally:
        _espeak._paths.cache_clear()


@pytest.mark.parametrize(
    ("speed", "wpm"),
    [(1.0, 175), (2.0, 350), (4.0, 700), (0.5, 88), (0.25, 80), (0.4, 80), (10.0, 700)],
)
def test_speed_to_wpm(speed: float, wpm: int) -> None:
    assert speed_to_wpm(speed) == wpm


@pytest.mark.parametrize("speed", [0.0, -1.0, float("nan"), float("inf"), "1"])
def test_speed_to_wpm_rejects(speed: Any) -> None:
    with pytest.raises(ValueError, match="speed"):
        speed_to_wpm(speed)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"voice": "nobody"}, "unknown voice 'nobody'"),
        ({"voice": "en-us"}, "unknown voice"),  # only OpenAI names, not raw espeak ones
        ({"voice": "alloy", "speed": 0.0}, "speed"),
        ({"voice": "alloy", "sample_rate": 0}, "sample_rate"),
        ({"voice": "alloy", "sample_rate": 24000.0}, "sample_rate"),
    ],
)
async def test_invalid_arguments_raise_at_call_time(
    engine: EspeakEngine, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        engine.synthesize_all(SHORT, **kwargs)
    with pytest.raises(ValueError, match=match):
        engine.synthesize(SHORT, **kwargs)  # not on iteration: no next() here
    with pytest.raises(ValueError, match=match):
        engine.synthesize_async(SHORT, **kwargs)


async def test_invalid_buffer_size(engine: EspeakEngine) -> None:
    with pytest.raises(ValueError, match="max_buffered_blocks"):
        engine.synthesize(SHORT, voice="alloy", max_buffered_blocks=0)
    with pytest.raises(ValueError, match="max_buffered_blocks"):
        engine.synthesize_async(SHORT, voice="alloy", max_buffered_blocks=0)


# --------------------------------------------------------------------------------------
# The audio


def test_speech_at_24k(engine: EspeakEngine) -> None:
    audio = engine.synthesize_all(SHORT, voice="nova")
    assert audio.dtype == np.int16
    assert audio.ndim == 1
    assert 1.0 < len(audio) / 24000 < 5.0
    assert _rms(audio) > 1000  # speech, not silence
    # The same speech at espeak-ng's native rate: resampling keeps the duration exactly.
    native = engine.synthesize_all(SHORT, voice="nova", sample_rate=22050)
    assert abs(len(audio) - round(len(native) * 24000 / 22050)) <= 1
    low = engine.synthesize_all(SHORT, voice="nova", sample_rate=16000)
    assert abs(len(low) - round(len(native) * 16000 / 22050)) <= 1
    # ... and the same pitch.
    assert _f0(audio) == pytest.approx(_f0(native, 22050), rel=0.05)


def test_duration_grows_with_text(engine: EspeakEngine) -> None:
    one = len(engine.synthesize_all("The quick brown fox jumps over the lazy dog.", voice="echo"))
    three = len(engine.synthesize_all(" ".join(["The quick brown fox jumps."] * 6), voice="echo"))
    assert 2.0 < three / one < 4.5


def test_duration_shrinks_with_speed(engine: EspeakEngine) -> None:
    frames = {s: len(engine.synthesize_all(MEDIUM, voice="sage", speed=s)) for s in (0.5, 1, 2, 4)}
    assert frames[0.5] > frames[1] > frames[2] > frames[4]
    # Roughly in proportion (0.5 is 88 wpm; 4.0 is 700 wpm, time-stretched by espeak-ng).
    assert 1.6 < frames[1] / frames[2] < 2.4
    assert 1.6 < frames[2] / frames[4] < 2.4
    assert 1.6 < frames[0.5] / frames[1] < 2.4


def test_slowest_speeds_are_clamped(engine: EspeakEngine) -> None:
    slowest = engine.synthesize_all(SHORT, voice="ash", speed=0.25)
    assert np.array_equal(slowest, engine.synthesize_all(SHORT, voice="ash", speed=0.45))
    assert len(slowest) > len(engine.synthesize_all(SHORT, voice="ash", speed=0.5))


def test_odd_text(engine: EspeakEngine) -> None:
    assert engine.synthesize_all("", voice="alloy").dtype == np.int16  # no error
    with_nul = engine.synthesize_all("one\0two", voice="alloy")
    assert np.array_equal(with_nul, engine.synthesize_all("one two", voice="alloy"))
    assert _rms(engine.synthesize_all("caf\u00e9 \ud800 na\u00efve", voice="alloy")) > 500


# --------------------------------------------------------------------------------------
# Determinism and voices


def test_deterministic_whatever_ran_before(engine: EspeakEngine) -> None:
    first = engine.synthesize_all(MEDIUM, voice="fable", speed=1.3)
    engine.synthesize_all("Something else entirely!", voice="shimmer", speed=3.0)
    _perturb_libc_rand(12345)
    again = engine.synthesize_all(MEDIUM, voice="fable", speed=1.3)
    assert np.array_equal(first, again)
    streamed = np.concatenate(list(engine.synthesize(MEDIUM, voice="fable", speed=1.3)))
    assert np.array_equal(first, streamed)


@pytest.mark.parametrize("voice", VOICES)
def test_every_voice_is_deterministic(engine: EspeakEngine, voice: str) -> None:
    _perturb_libc_rand(1)
    first = engine.synthesize_all(MEDIUM, voice=voice)
    _perturb_libc_rand(77)
    assert np.array_equal(first, engine.synthesize_all(MEDIUM, voice=voice))


def test_voices_differ(engine: EspeakEngine) -> None:
    audio = {v: engine.synthesize_all(SHORT, voice=v) for v in VOICES}
    digests = {audio[v].tobytes() for v in VOICES}
    assert len(digests) == len(VOICES)
    pitch = {v: _f0(audio[v]) for v in VOICES}
    # Male voices are low, female ones high (espeak-ng variants m* ~80-100 Hz, f* ~170+).
    assert max(pitch[v] for v in MALE) < 130 < min(pitch[v] for v in FEMALE)
    assert pitch["shimmer"] > 1.8 * pitch["onyx"]


@pytest.mark.parametrize("voice", VOICES)
def test_variant_exists_and_applies(voice: str) -> None:
    """espeak-ng ignores an unknown variant silently: check the file and the effect."""
    language, variant = ESPEAK_VOICES[voice].split("+")
    _, data = _espeak._paths()
    assert os.path.isfile(os.path.join(os.fsdecode(data), "voices", "!v", variant))
    with_variant = _render_espeak_voice(ESPEAK_VOICES[voice], SHORT)
    without = _render_espeak_voice(language, SHORT)
    assert not (len(with_variant) == len(without) and np.array_equal(with_variant, without))


def test_unknown_espeak_voice_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no voice 'xx-nowhere'"):
        _render_espeak_voice("xx-nowhere", SHORT)
    assert not _espeak._LOCK.locked()


# --------------------------------------------------------------------------------------
# Streaming (sync)


def test_blocks_arrive_while_synthesis_runs(engine: EspeakEngine) -> None:
    start = time.perf_counter()
    blocks = engine.synthesize(LONG, voice="onyx", max_buffered_blocks=1)
    try:
        first = next(blocks)
        first_s = time.perf_counter() - start
        assert first.dtype == np.int16
        assert 0 < len(first) <= 24000  # a block, not the whole text
        assert first_s < 1.0
        # Back-pressure: the worker is still inside espeak-ng, waiting for us.
        time.sleep(0.05)
        assert _espeak._LOCK.locked()
        second = next(blocks)
        assert len(second) > 0
    finally:
        blocks.close()
    closed_s = time.perf_counter() - start
    assert not _espeak._LOCK.locked()  # aborted, and the worker has let go
    assert closed_s < 1.0


def test_streamed_blocks_equal_the_whole(engine: EspeakEngine) -> None:
    whole = engine.synthesize_all(MEDIUM, voice="coral")
    blocks = list(engine.synthesize(MEDIUM, voice="coral", max_buffered_blocks=2))
    assert len(blocks) > 5
    assert all(len(b) > 0 for b in blocks)
    assert np.array_equal(np.concatenate(blocks), whole)


def test_errors_propagate_and_release_the_lock(
    engine: EspeakEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    original = _espeak._Resampler.process

    def failing(self: _espeak._Resampler, samples: _Samples) -> _Samples:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError("boom in the callback")
        return original(self, samples)

    monkeypatch.setattr(_espeak._Resampler, "process", failing)
    with pytest.raises(OSError, match="boom"):
        engine.synthesize_all(MEDIUM, voice="alloy")
    assert not _espeak._LOCK.locked()
    calls = 0
    got: list[_Samples] = []

    def consume() -> None:
        for block in engine.synthesize(MEDIUM, voice="alloy"):
            got.append(block)

    with pytest.raises(OSError, match="boom"):
        consume()
    assert len(got) == 2  # what came before the failure
    assert not _espeak._LOCK.locked()


# --------------------------------------------------------------------------------------
# Streaming (trio)


async def _collect(engine: EspeakEngine, text: str, **kwargs: Any) -> _Samples:
    async with aclosing(engine.synthesize_async(text, **kwargs)) as blocks:
        return np.concatenate([b async for b in blocks])


async def test_async_equals_sync(engine: EspeakEngine) -> None:
    whole = engine.synthesize_all(MEDIUM, voice="verse", speed=0.8)
    for size in (1, 32, None):
        got = await _collect(engine, MEDIUM, voice="verse", speed=0.8, max_buffered_blocks=size)
        assert np.array_equal(got, whole)


async def test_async_first_block_before_the_end(engine: EspeakEngine) -> None:
    text = LONG[: len(LONG) // 4]  # about 4 minutes of speech, synthesized in full
    start = time.perf_counter()
    first_s = None
    frames = 0
    async with aclosing(engine.synthesize_async(text, voice="nova", max_buffered_blocks=None)) as b:
        async for block in b:
            if first_s is None:
                first_s = time.perf_counter() - start
            frames += len(block)
    total_s = time.perf_counter() - start
    assert first_s is not None
    assert frames / 24000 > 120
    assert first_s < 0.25 * total_s


async def test_async_close_aborts_promptly(engine: EspeakEngine) -> None:
    with trio.fail_after(10):
        async with aclosing(engine.synthesize_async(LONG, voice="onyx")) as blocks:
            async for block in blocks:
                assert len(block) > 0
                await trio.sleep(0.05)
                assert _espeak._LOCK.locked()  # still synthesizing (held back by us)
                break
            start = time.perf_counter()
        # aclose() returned: the worker has aborted espeak-ng and finished.
        assert time.perf_counter() - start < 0.5
        assert not _espeak._LOCK.locked()


async def test_async_cancel_aborts_promptly(engine: EspeakEngine) -> None:
    got = 0
    start = time.perf_counter()
    with trio.fail_after(10):
        with trio.move_on_after(0.1) as scope:
            async with aclosing(engine.synthesize_async(LONG, voice="echo")) as blocks:
                async for _ in blocks:
                    got += 1
                    await trio.sleep(0.01)
        # Cancelled at 0.1 s; the synthesis (about a second in full) was aborted at once.
        assert time.perf_counter() - start < 0.1 + 0.4
        assert scope.cancelled_caught
        assert got >= 1
        assert not _espeak._LOCK.locked()


async def test_async_abandoned_generator_is_cleaned_up(engine: EspeakEngine) -> None:
    blocks = engine.synthesize_async(LONG, voice="ash")
    with trio.fail_after(10):
        first = await blocks.__anext__()
        assert len(first) > 0
        await blocks.aclose()
        assert not _espeak._LOCK.locked()


async def test_async_error_after_the_blocks(
    engine: EspeakEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    original = _espeak._Resampler.process

    def failing(self: _espeak._Resampler, samples: _Samples) -> _Samples:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise OSError("boom")
        return original(self, samples)

    monkeypatch.setattr(_espeak._Resampler, "process", failing)
    got = 0

    async def consume() -> None:
        nonlocal got
        async with aclosing(engine.synthesize_async(MEDIUM, voice="alloy")) as blocks:
            async for _ in blocks:
                got += 1

    with pytest.raises(OSError, match="boom"):
        await consume()
    assert got == 3
    assert not _espeak._LOCK.locked()


@pytest.fixture
def library_spy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record, at each library load, how many loaded libraries there are."""
    live = [0]
    seen: list[int] = []
    original_init = _espeak._Library.__init__
    original_close = _espeak._Library.close

    def init(self: _espeak._Library, path: str) -> None:
        original_init(self, path)
        live[0] += 1
        seen.append(live[0])

    def close(self: _espeak._Library) -> None:
        live[0] -= 1
        original_close(self)

    monkeypatch.setattr(_espeak._Library, "__init__", init)
    monkeypatch.setattr(_espeak._Library, "close", close)
    return seen


async def test_concurrent_async_syntheses_are_serialized(
    engine: EspeakEngine, library_spy: list[int]
) -> None:
    jobs = [(MEDIUM, "nova", 1.0), (SHORT + " " + SHORT, "onyx", 1.7), (MEDIUM, "fable", 0.6)]
    expected = [engine.synthesize_all(t, voice=v, speed=s) for t, v, s in jobs]
    library_spy.clear()
    results: dict[int, _Samples] = {}

    async def run(i: int) -> None:
        text, voice, speed = jobs[i]
        results[i] = await _collect(engine, text, voice=voice, speed=speed, max_buffered_blocks=2)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for i in range(len(jobs)):
                nursery.start_soon(run, i)
    for i in range(len(jobs)):
        assert np.array_equal(results[i], expected[i])
    assert library_spy == [1, 1, 1]  # never two espeak-ng instances at once


def test_concurrent_threads_are_serialized(engine: EspeakEngine, library_spy: list[int]) -> None:
    expected = {v: engine.synthesize_all(MEDIUM, voice=v) for v in ("coral", "verse")}
    library_spy.clear()
    results: list[tuple[str, _Samples]] = []

    def run(voice: str) -> None:
        results.append((voice, np.concatenate(list(engine.synthesize(MEDIUM, voice=voice)))))

    threads = [threading.Thread(target=run, args=(v,)) for v in expected for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert len(results) == 4
    for voice, audio in results:
        assert np.array_equal(audio, expected[voice])
    assert library_spy == [1, 1, 1, 1]
