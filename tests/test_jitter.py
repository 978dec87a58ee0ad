"""Adaptive playout policy (pure): jitter target, stretch factor, format choice, and the
consumer's underrun fades."""

from __future__ import annotations

import numpy as np
import pytest

from trio_tts_stream._adaptive import FormatChoice
from trio_tts_stream._jitter import ArrivalJitter, StretchControl
from trio_tts_stream._ringbuffer import Gate, Playout


def feed(j: ArrivalJitter, times: list[float], piece_s: float) -> None:
    for i, t in enumerate(times):
        j.arrival(t, i * piece_s)


def test_a_link_faster_than_real_time_has_no_jitter() -> None:
    j = ArrivalJitter()
    feed(j, [i * 0.02 / 1.2 for i in range(200)], 0.02)
    assert j.jitter_ms(3.0) == 0.0
    assert j.target_ms(3.0, block_ms=10, floor_ms=150, cap_ms=1500) == 150


def test_a_pause_between_sentences_is_the_jitter() -> None:
    j = ArrivalJitter()
    times = [i * 0.02 / 1.2 for i in range(100)]
    times += [times[-1] + 0.5 + i * 0.02 / 1.2 for i in range(1, 100)]
    feed(j, times, 0.02)
    # The pause adds 0.5 s less the 20 ms the piece before it brought, less the
    # 20/1.2 ms it arrived early: 496.7 ms, remembered with a 20 s half-life.
    assert j.jitter_ms(times[100]) == pytest.approx(500 + 20 / 1.2 - 20, abs=1e-6)
    now = times[-1]
    assert j.jitter_ms(now) == pytest.approx(
        j.jitter_ms(times[100]) * 0.5 ** ((now - times[100]) / 20)
    )
    assert j.target_ms(now, block_ms=10, floor_ms=150, cap_ms=1500) == pytest.approx(
        j.jitter_ms(now) + 10
    )
    assert j.target_ms(now, block_ms=10, floor_ms=150, cap_ms=300) == 300


def test_a_run_of_late_pieces_adds_up() -> None:
    j = ArrivalJitter()
    times = [0.0, 0.02, 0.06, 0.10, 0.14, 0.16]  # 20 ms pieces, three 20 ms late in a row
    feed(j, times, 0.02)
    assert j.jitter_ms(0.14) == pytest.approx(60, abs=1e-6)


def test_backpressure_and_new_streams_are_not_jitter() -> None:
    j = ArrivalJitter()
    j.arrival(0.0, 0.0)
    j.arrival(1.0, 0.02, throttled=True)  # we held it back ourselves
    assert j.jitter_ms(1.0) == 0.0
    j.start()
    j.arrival(5.0, 0.0)  # a new stream after a TTFB: a new anchor
    assert j.jitter_ms(5.0) == 0.0


def test_the_remembered_peak_halves_with_its_half_life() -> None:
    j = ArrivalJitter(half_life_s=10.0)
    feed(j, [0.0, 0.52], 0.02)
    assert j.jitter_ms(0.52) == pytest.approx(500)
    assert j.jitter_ms(10.52) == pytest.approx(250)
    assert j.arrivals == 2


def test_stretch_factor_slews_up_below_target_and_back_with_hysteresis() -> None:
    c = StretchControl(max_stretch=0.12, slew_per_s=0.5)
    ratios = [c.update(50, 150, 0.02) for _ in range(20)]
    assert ratios[0] == pytest.approx(1.01)
    assert max(np.diff(ratios)) <= 0.01 + 1e-12  # smooth
    assert ratios[-1] == pytest.approx(1.12)
    assert c.update(160, 150, 0.02) == pytest.approx(1.12)  # inside the hysteresis
    down = [c.update(200, 150, 0.02) for _ in range(20)]
    assert down[-1] == 1.0
    assert min(np.diff(down)) >= -0.01 - 1e-12


def test_speedup_is_off_by_default_and_sheds_surplus_when_on() -> None:
    off = StretchControl()
    assert all(off.update(2000, 150, 0.02) == 1.0 for _ in range(10))
    on = StretchControl(max_speedup=0.05)
    ratios = [on.update(400, 150, 0.02) for _ in range(20)]
    assert ratios[-1] == pytest.approx(0.95)
    assert on.update(250, 150, 0.02) < 1.0  # still above 1.5 x target
    back = [on.update(200, 150, 0.02) for _ in range(20)]
    assert back[-1] == 1.0


def test_format_choice_goes_compressed_on_a_slow_link_and_back() -> None:
    f = FormatChoice(("opus", "mp3"))
    assert f.choose()[0] == "pcm"
    f.update("pcm", 0.8, 300.0)
    fmt, why = f.choose()
    assert fmt == "opus"
    assert "0.80x" in why
    f.update("opus", 6.0, 900.0)  # 900 kbit/s promises pcm at 2.3x
    fmt, why = f.choose()
    assert fmt == "pcm"
    assert "promises" in why


def test_format_choice_returns_when_compression_did_not_help() -> None:
    f = FormatChoice(("mp3",))
    f.update("pcm", 1.2, 460.0)  # a slow server, not a slow link
    assert f.choose()[0] == "mp3"
    f.update("mp3", 1.25, 40.0)
    fmt, why = f.choose()
    assert fmt == "pcm"
    assert "server is the limit" in why


def test_format_choice_probes_pcm_with_a_growing_interval() -> None:
    f = FormatChoice(("opus",), probe_after=2)
    f.update("pcm", 0.5, 190.0)
    seen = []
    for _ in range(12):
        fmt, _why = f.choose()
        seen.append(fmt)
        if fmt == "pcm":
            f.update("pcm", 0.5, 190.0)  # the probe fails
        else:
            f.update("opus", 3.0, 60.0)  # compressed helps, throughput says little
    probes = [i for i, fmt in enumerate(seen) if fmt == "pcm"]
    assert len(probes) >= 2
    assert probes[1] - probes[0] > 2  # the interval grew


def test_format_choice_drops_a_refused_format_and_needs_a_compressed_one() -> None:
    f = FormatChoice(("opus", "mp3"))
    f.update("pcm", 0.5, 190.0)
    f.refused("opus")
    assert f.choose()[0] == "pcm"
    f.update("pcm", 0.5, 190.0)
    assert f.choose()[0] == "mp3"
    none = FormatChoice(())
    none.update("pcm", 0.5, 190.0)
    assert none.choose()[0] == "pcm"
    none.update(None, None, None)  # nothing measured: no change
    assert none.choose()[0] == "pcm"


# -- underrun fades in the consumer ------------------------------------------------------


def running_playout(fade: int) -> Playout:
    p = Playout(1000, 1, 24000, np.float32)
    p.set_underrun_fade(fade)
    p.set_gate(Gate.RUNNING)
    return p


def test_an_underrun_fades_out_before_its_gap_and_in_after_it() -> None:
    p = running_playout(48)
    p.ring.write(np.full((100, 1), 0.8, np.float32))
    out = np.empty((80, 1), np.float32)
    p.fill(out, 0.0)  # 100 < 80 + 48: the gap starts after these 80, faded out
    assert p.underruns == 1
    assert out[0, 0] == pytest.approx(0.8)
    assert out[-1, 0] < 0.01
    assert np.abs(np.diff(out[:, 0])).max() < 0.05  # a ramp, not a cut
    p.fill(out, 0.01)  # starved: silence
    assert not out.any()
    p.ring.write(np.full((200, 1), 0.8, np.float32))
    p.set_gate(Gate.RUNNING)  # rebuffered
    p.fill(out, 0.02)
    assert out[0, 0] < 0.01  # fades in (it starts with the 20 frames left over)
    assert np.abs(np.diff(out[:, 0])).max() < 0.05
    assert out[-1, 0] == pytest.approx(0.8)
    assert p.statistics().frames_played == 160


def test_without_a_fade_an_underrun_is_what_it_was() -> None:
    p = running_playout(0)
    p.ring.write(np.full((100, 1), 0.8, np.float32))
    out = np.empty((80, 1), np.float32)
    p.fill(out, 0.0)
    assert p.underruns == 0
    assert (out == np.float32(0.8)).all()
    p.fill(out, 0.01)
    assert p.underruns == 1
    assert (out[:20] == np.float32(0.8)).all()
    assert not out[20:].any()


def test_draining_plays_to_the_last_frame_without_a_fade() -> None:
    p = running_playout(48)
    p.ring.write(np.full((100, 1), 0.8, np.float32))
    p.set_gate(Gate.DRAINING)
    out = np.empty((80, 1), np.float32)
    p.fill(out, 0.0)
    assert (out == np.float32(0.8)).all()
    assert p.underruns == 0
