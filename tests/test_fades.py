"""Fades in the consumer's real-time logic (Playout): pure, block by block."""

from __future__ import annotations

import numpy as np

from trio_tts_stream._ringbuffer import Playout
from trio_tts_stream._vocabulary import Gate

RATE = 1000


def playout(n: int = 100, fade: int = 8) -> Playout:
    p = Playout(1000, 1, RATE, np.float32)
    p.set_fade(fade)
    p.ring.write(np.ones((n, 1), np.float32))
    p.set_gate(Gate.RUNNING)
    return p


def fill(p: Playout, frames: int) -> np.ndarray:
    out = np.full((frames, 1), 7.0, np.float32)  # garbage: fill must overwrite it all
    p.fill(out, 0.0)
    return out[:, 0]


def test_barge_in_fades_the_dropped_audio_then_silence() -> None:
    p = playout()
    assert np.all(fill(p, 10) == 1.0)
    dropped = p.discard(fade=True)
    assert dropped == 90
    assert p.ring.buffered == 0  # at once, for the producer
    p.ring.write(np.full((5, 1), 0.5, np.float32))  # the next utterance, written now
    out = fill(p, 10)
    ramp = out[:8]
    assert np.all(np.diff(ramp) < 0)
    assert ramp[0] > 0.9
    assert ramp[-1] < 0.1
    assert np.all(out[8:] == 0)  # silence, not the new audio
    assert not p.fading
    # The gate was paused by the discard; the new audio plays when it opens, faded in.
    p.set_gate(Gate.RUNNING)
    nxt = fill(p, 5)
    assert np.all(np.diff(nxt) > 0)
    assert nxt[-1] < 0.5
    assert p.statistics().frames_played == 10 + 8 + 5


def test_a_fade_longer_than_a_block_spans_blocks_and_is_not_restarted() -> None:
    p = playout(fade=12)
    p.discard(fade=True)
    first = fill(p, 5)
    p.discard(fade=True)  # a second barge-in while fading: no jump back to full level
    second = fill(p, 5)
    third = fill(p, 5)
    ramp = np.concatenate([first, second, third[:2]])
    assert np.all(np.diff(ramp) < 0)
    assert np.all(third[2:] == 0)
    assert not p.fading


def test_no_fade_cuts_at_once() -> None:
    p = playout(fade=0)
    fill(p, 10)
    p.discard(fade=True)
    assert np.all(fill(p, 10) == 0)


def test_a_barge_in_on_an_empty_ring_asks_no_fade() -> None:
    p = playout(n=10)
    fill(p, 10)
    p.discard(fade=True)
    assert not p.fading


def test_hold_fades_out_keeps_the_audio_and_release_fades_in() -> None:
    p = playout(n=50, fade=4)
    fill(p, 10)
    p.hold_output(fade=True)
    out = fill(p, 10)
    assert np.all(np.diff(out[:4]) < 0)
    assert np.all(out[4:] == 0)
    assert np.all(fill(p, 10) == 0)  # held: silence, nothing consumed
    assert p.ring.buffered == 50 - 14
    assert p.underruns == 0
    p.release_output()
    back = fill(p, 10)
    assert np.all(np.diff(back[:4]) > 0)
    assert np.all(back[4:] == 1.0)
    assert p.ring.buffered == 50 - 24


def test_int16_fades_use_the_scratch_buffer() -> None:
    p = Playout(1000, 2, RATE, np.int16)
    p.set_fade(6)
    p.ring.write(np.full((20, 2), 10000, np.int16))
    p.set_gate(Gate.RUNNING)
    p.discard(fade=True)
    out = np.zeros((8, 2), np.int16)
    p.fill(out, 0.0)
    assert out.dtype == np.int16
    assert np.array_equal(out[:, 0], out[:, 1])
    assert np.all(np.diff(out[:6, 0].astype(int)) < 0)
    assert np.all(out[6:] == 0)


def test_marks_are_stamped_during_a_fade() -> None:
    p = playout()
    fill(p, 10)
    p.mark(12)
    p.discard(fade=True)
    out = np.zeros((10, 1), np.float32)
    p.fill(out, 5.0)
    assert p.mark_time(12) == 5.0 + 2 / RATE
    assert p.heard_until == 5.0 + 8 / RATE
