"""The pitch-period time stretcher (pure): exact at 1.0, pitch kept, no discontinuity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_tts_stream._timestretch import TimeStretcher
from trio_tts_stream.testing import synthesize_tone

RATE = 24000


def sine(freq: float = 220.0, seconds: float = 2.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(RATE * seconds)) / RATE
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)[:, None]


def speechlike() -> np.ndarray:
    samples = synthesize_tone("Speech that stretches must keep its voice, and no click.")
    return (samples.astype(np.float32) / 32768)[:, None]


def stretch(x: np.ndarray, ratios: list[float] | float, block: int = 240) -> np.ndarray:
    st_ = TimeStretcher(RATE)
    out = []
    for i, start in enumerate(range(0, len(x), block)):
        ratio = ratios if isinstance(ratios, float) else ratios[i % len(ratios)]
        out.append(st_.process(x[start : start + block], ratio))
    out.append(st_.flush())
    y = np.concatenate(out)
    assert len(y) == len(x) + st_.added
    return y


def pitch(y: np.ndarray) -> float:
    """The strongest frequency (Hann window, zero-padded FFT, parabolic peak)."""
    v = y[:, 0].astype(np.float64)
    n = len(v)
    spec = np.abs(np.fft.rfft(v * np.hanning(n), 8 * n))
    k = int(np.argmax(spec))
    a, b, c = spec[k - 1], spec[k], spec[k + 1]
    return float((k + 0.5 * (a - c) / (a - 2 * b + c)) * RATE / (8 * n))


def max_step(y: np.ndarray) -> float:
    return float(np.abs(np.diff(y[:, 0])).max())


@settings(max_examples=30, deadline=None)
@given(block=st.integers(1, 2000))
def test_ratio_one_passes_every_sample_through_in_any_chunking(block: int) -> None:
    x = speechlike()[:12000]
    y = stretch(x, 1.0, block)
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("ratio", [1.12, 1.05, 0.9])
def test_a_tone_keeps_its_pitch_and_has_no_discontinuity(ratio: float) -> None:
    x = sine()
    y = stretch(x, ratio)
    assert len(y) / len(x) == pytest.approx(ratio, abs=0.01)
    assert pitch(y) == pytest.approx(pitch(x), rel=0.01)
    assert max_step(y) <= max_step(x) * 1.01


@pytest.mark.parametrize("ratio", [1.12, 0.9])
def test_speech_keeps_its_steps_and_reaches_the_ratio(ratio: float) -> None:
    x = speechlike()
    y = stretch(x, ratio)
    assert len(y) / len(x) == pytest.approx(ratio, abs=0.02)
    assert max_step(y) <= max_step(x) * 1.01


def test_a_changing_factor_never_clicks() -> None:
    x = sine(180.0, 3.0)
    ramp = [1.0 + 0.12 * abs(np.sin(i / 7)) for i in range(40)]  # smooth up and down
    y = stretch(x, ramp)
    assert len(y) > len(x)
    assert pitch(y) == pytest.approx(180.0, rel=0.01)
    assert max_step(y) <= max_step(x) * 1.01


def test_outside_the_crossfades_the_output_is_the_input() -> None:
    x = sine(200.0, 1.0)
    st_ = TimeStretcher(RATE)
    y = np.concatenate([st_.process(x[:12000], 1.12), st_.process(x[12000:], 1.0), st_.flush()])
    assert st_.operations > 0
    # The tail after the last operation is a verbatim copy of the input's tail.
    np.testing.assert_array_equal(y[-6000:], x[-6000:])


def test_noise_is_not_garbled() -> None:
    rng = np.random.default_rng(1)
    x = (0.3 * rng.standard_normal((RATE, 1))).astype(np.float32)
    st_ = TimeStretcher(RATE)
    y = np.concatenate([st_.process(x[i : i + 240], 1.12) for i in range(0, RATE, 240)])
    y = np.concatenate([y, st_.flush()])
    assert st_.operations == 0  # no period to repeat: left alone
    np.testing.assert_array_equal(y, x)


def test_silence_stretches() -> None:
    x = np.zeros((RATE, 1), np.float32)
    y = stretch(x, 1.12)
    assert len(y) / len(x) == pytest.approx(1.12, abs=0.01)
    assert not y.any()


def test_the_credit_is_bounded_and_lookahead_is_released() -> None:
    st_ = TimeStretcher(RATE)
    out = st_.process(np.zeros((0, 1), np.float32), 1.0)
    assert len(out) == 0
    x = sine()
    st_.process(x[:4800], 1.25)
    assert abs(st_.credit) <= 2 * st_.pmax
    assert st_.pending <= st_.lookahead or not st_.active
    rest = st_.flush()
    assert st_.pending == 0
    assert len(rest) >= 0


def test_stereo_blocks_keep_their_channels() -> None:
    mono = sine(250.0, 1.0)
    x = np.concatenate([mono, -mono], axis=1)
    st_ = TimeStretcher(RATE, 2)
    y = np.concatenate([st_.process(x[i : i + 480], 1.1) for i in range(0, len(x), 480)])
    y = np.concatenate([y, st_.flush()])
    assert y.shape[1] == 2
    np.testing.assert_array_equal(y[:, 0], -y[:, 1])


def test_bad_pitch_range_is_refused() -> None:
    with pytest.raises(ValueError, match="min_pitch_hz"):
        TimeStretcher(RATE, min_pitch_hz=500, max_pitch_hz=400)
