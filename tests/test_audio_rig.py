"""The real-audio rig works: what is played through PortAudio can be read back exactly, and
the monitor knows when it was heard. Plain ``sounddevice``, no library code."""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from _audio_rig import (
    SINK_RATE,
    AudioRig,
    AudioTap,
    ParecRecorder,
    Recording,
    RigError,
    alsa_tap_config,
    find_exact,
    is_ci,
    parse_tap_file_name,
    skip_or_fail,
    to_int16,
)

RATE = SINK_RATE

# sounddevice 0.5.6 sets ``ndarray.shape`` in every numpy callback, which numpy 2.5
# deprecates; with warnings as errors the callback would raise and the stream abort.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Setting the shape on a NumPy array has been deprecated:DeprecationWarning:sounddevice"
)


def _signal(frames: int, seed: int) -> npt.NDArray[np.int16]:
    """Deterministic full-scale noise that starts and ends with the int16 extremes."""
    samples = np.random.default_rng(seed).integers(-32768, 32768, frames, dtype=np.int16)
    samples[0], samples[-1] = -32768, 32767
    return samples


SIGNAL = _signal(RATE // 2, seed=20240611)  # 0.5 s


def _mismatch(heard: npt.NDArray[np.int16], signal: npt.NDArray[np.int16]) -> str:
    """Where ``heard`` best matches the start of ``signal``, and how it differs there."""
    if len(heard) < len(signal):
        return f"only {len(heard)} samples heard"
    h, sg = heard.astype(np.int64), signal.astype(np.int64)
    at = int(np.argmax(np.abs(np.correlate(h, sg[:2000], "valid"))))
    diff = np.nonzero(h[at : at + len(sg)] - sg[: len(h) - at])[0]
    return (
        f"best match at sample {at} of {len(h)}: {len(diff)} samples differ "
        f"(first at {diff[:1].tolist()}, last at {diff[-1:].tolist()}; tail cut?)"
    )


@dataclasses.dataclass
class Playback:
    """What :func:`play` observed."""

    latency: float
    blocksize_seen: set[int]
    handed: dict[int, float]  # signal index -> perf_counter() when the callback took it
    tail_frames: int


def play(
    device: int,
    signal: npt.NDArray[np.int16],
    dtype: str = "int16",
    *,
    tail_seconds: float | None = None,
    gap_until: float | None = None,
    timeout: float = 10.0,
) -> Playback:
    """Play ``signal`` (mono) from a callback, then silence, then stop with CallbackStop.

    Args:
        tail_seconds: Silence fed after the signal before stopping; ``None`` means device
            latency + 50 ms + one block (enough to avoid the tail loss of PortAudio's stop).
        gap_until: Play silence between the two halves of ``signal`` until
            ``time.perf_counter()`` reaches this value.
    """
    import sounddevice as sd

    data: npt.NDArray[Any] = signal if dtype == "int16" else signal.astype(np.float32) / 32768
    half = len(signal) // 2 if gap_until is not None else len(signal)
    state = {"pos": 0, "tail": -1}
    seen: set[int] = set()
    handed: dict[int, float] = {}
    done = threading.Event()
    latency_box: list[float] = []

    def callback(out: npt.NDArray[Any], frames: int, _time: Any, _status: Any) -> None:
        now = time.perf_counter()
        seen.add(frames)
        out.fill(0)
        pos = state["pos"]
        if pos == half and gap_until is not None and now < gap_until:
            return  # still in the gap
        n = min(frames, len(data) - pos)
        if pos < half < pos + n:
            n = half - pos  # stop at the gap, start the second half in a later callback
        if n > 0:
            out[:n, 0] = data[pos : pos + n]
            handed[pos] = now
            state["pos"] = pos + n
            return
        if state["tail"] < 0:
            tail = tail_seconds
            if tail is None:
                tail = latency_box[0] + 0.05 + frames / RATE
            state["tail"] = math.ceil(tail * RATE)
            state["tail_total"] = state["tail"]
        state["tail"] -= frames
        if state["tail"] <= 0:
            raise sd.CallbackStop

    with sd.OutputStream(
        device=device,
        samplerate=RATE,
        channels=1,
        dtype=dtype,
        callback=callback,
        finished_callback=done.set,
    ) as stream:
        latency_box.append(float(stream.latency))
        assert done.wait(timeout), "stream did not finish"
    return Playback(latency_box[0], seen, handed, state.get("tail_total", 0))


def _assert_silent(samples: npt.NDArray[np.int16], what: str) -> None:
    loud = np.flatnonzero(samples)
    assert len(loud) == 0, f"{what}: {len(loud)} non-zero samples, first at {loud[0]}"


# ---------------------------------------------------------------------------------------
# Real audio
# ---------------------------------------------------------------------------------------


@pytest.mark.audio
def test_rig_devices_and_environment(audio_rig: AudioRig) -> None:
    import sounddevice as sd

    tap = sd.query_devices(audio_rig.tap_device)
    pulse = sd.query_devices(audio_rig.pulse_device)
    assert tap["name"] == "tap"
    assert pulse["name"] == "pulse"
    assert tap["max_output_channels"] >= 2
    assert os.environ["PULSE_SERVER"] == audio_rig.server
    assert os.environ["ALSA_CONFIG_PATH"].endswith(f":{audio_rig.alsa_config}")
    assert audio_rig.pulse.process.poll() is None
    # Generous: measured ~0.03-0.07 s on an idle machine.
    assert audio_rig.pulse.startup_seconds < 5.0


@pytest.mark.audio
@pytest.mark.parametrize("which", ["pulse", "default"])
def test_pulse_and_default_devices_play_into_the_sink(
    audio_rig: AudioRig, audio_monitor: ParecRecorder, which: str
) -> None:
    import sounddevice as sd

    device = audio_rig.pulse_device if which == "pulse" else None  # None: PortAudio's default
    signal = _signal(RATE // 10, seed=7)
    with sd.OutputStream(device=device, samplerate=RATE, channels=1, dtype="int16") as stream:
        stream.write(signal)
        stream.write(np.zeros(int(stream.latency * RATE) + RATE // 20, np.int16))
    audio_monitor.catch_up()
    assert find_exact(audio_monitor.stop().samples, signal) >= 0


@pytest.mark.audio
@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_tap_and_monitor_get_every_sample_exactly(
    audio_tap: AudioTap, audio_monitor: ParecRecorder, dtype: str
) -> None:
    playback = play(audio_tap.device, SIGNAL, dtype)
    audio_monitor.catch_up()  # the monitor has recorded the last rendered samples
    recording = audio_monitor.stop()

    (stream,) = audio_tap.streams()
    assert (stream.sample_rate, stream.channels) == (RATE, 1)
    assert stream.alsa_format == {"int16": "S16_LE", "float32": "FLOAT_LE"}[dtype]
    played = audio_tap.read()[:, 0]
    start = find_exact(played, SIGNAL)
    assert start >= 0, "the tap does not hold the signal exactly"
    _assert_silent(played[:start], "tap before the signal")
    after = played[start + len(SIGNAL) :]
    _assert_silent(after, "tap after the signal")
    assert len(after) >= playback.tail_frames
    if dtype == "float32":  # the client's own samples, not a conversion of them
        assert np.array_equal(stream.data[start : start + len(SIGNAL), 0], SIGNAL / 32768)

    heard = recording.samples
    at = find_exact(heard, SIGNAL)
    assert at >= 0, f"the monitor did not hear the signal exactly: {_mismatch(heard, SIGNAL)}"
    _assert_silent(heard[:at], "monitor before the signal")
    _assert_silent(heard[at + len(SIGNAL) :], "monitor after the signal")
    # Silence was fed for latency + margin, and heard: nothing was cut from the tail.
    assert len(heard) - at - len(SIGNAL) >= playback.latency * RATE


@pytest.mark.audio
def test_monitor_detects_the_tail_loss_the_tap_cannot_see(
    audio_tap: AudioTap, audio_monitor: ParecRecorder
) -> None:
    # Stopping right after the last sample: PortAudio's ALSA backend drops what is queued
    # (AUDIO-FACTS.md: 26-43 ms). The tap still holds everything; only the monitor shows it.
    play(audio_tap.device, SIGNAL, tail_seconds=0.0)
    audio_monitor.catch_up(0.15)
    recording = audio_monitor.stop()

    played = audio_tap.read()[:, 0]
    assert find_exact(played, SIGNAL) >= 0

    heard = recording.samples
    assert find_exact(heard, SIGNAL) < 0, "PortAudio no longer drops the tail on stop?"
    head = SIGNAL[: len(SIGNAL) // 2]
    at = find_exact(heard, head)
    assert at >= 0
    mismatch = np.flatnonzero(heard[at : at + len(SIGNAL)] != SIGNAL[: len(heard) - at])
    heard_frames = int(mismatch[0]) if len(mismatch) else len(heard) - at
    lost_ms = (len(SIGNAL) - heard_frames) * 1000 / RATE
    assert 1 <= lost_ms <= 200, f"lost {lost_ms:.1f} ms"


@pytest.mark.audio
def test_monitor_timestamps_match_when_audio_was_handed_over(
    audio_tap: AudioTap, audio_monitor: ParecRecorder
) -> None:
    started = time.perf_counter()
    gap = 0.3
    playback = play(audio_tap.device, SIGNAL, gap_until=started + gap)
    audio_monitor.catch_up()
    recording = audio_monitor.stop()

    half = len(SIGNAL) // 2
    first_at = find_exact(recording.samples, SIGNAL[:half])
    second_at = find_exact(recording.samples, SIGNAL[half:])
    assert 0 <= first_at < second_at
    heard_first = recording.time_of(first_at)
    heard_second = recording.time_of(second_at)
    handed_first, handed_second = playback.handed[0], playback.handed[half]

    # Heard no earlier than handed over (timestamps are good to ~2 ms, allow 15 ms) and no
    # later than the device latency allows (generous: the machine may be busy).
    for heard, handed in ((heard_first, handed_first), (heard_second, handed_second)):
        assert -0.015 <= heard - handed <= playback.latency + 0.25
    # The wall-clock gap between the halves survives to the speaker within a block or two.
    block = max(playback.blocksize_seen) / RATE
    assert (heard_second - heard_first) == pytest.approx(
        handed_second - handed_first, abs=2 * block + 0.03
    )
    assert heard_second - heard_first >= gap - 0.05
    # The recording's clock runs at the sink's rate against perf_counter (within 1 %).
    (t_a, n_a), (t_b, n_b) = recording.reads[0], recording.reads[-1]
    assert (n_b - n_a) / RATE == pytest.approx(t_b - t_a, rel=0.01, abs=0.03)


@pytest.mark.audio
def test_taps_are_fresh_and_keep_streams_in_order(audio_rig: AudioRig) -> None:
    import sounddevice as sd

    first, second = _signal(480, seed=1), _signal(960, seed=2)
    tap = audio_rig.new_tap("ordering")
    assert tap.streams() == []
    assert tap.read().shape == (0, 1)
    with sd.OutputStream(device=tap.device, samplerate=RATE, channels=1, dtype="int16") as s:
        s.write(first)
    with sd.OutputStream(device=tap.device, samplerate=RATE, channels=1, dtype="int16") as s:
        s.write(second)
    stereo = np.stack([_signal(300, seed=3), _signal(300, seed=4)], axis=1)
    other = audio_rig.new_tap("stereo")
    with sd.OutputStream(device=other.device, samplerate=22050, channels=2, dtype="float32") as s:
        s.write(stereo.astype(np.float32) / 32768)

    a, b = tap.streams()  # the later tap did not take anything from this one
    assert a.path.name == f"{RATE}-1-S16_LE.raw"
    assert b.path.name == f"{RATE}-1-S16_LE.raw.0001"
    played = tap.read()[:, 0]
    assert find_exact(played, first) >= 0
    assert find_exact(played, second) > find_exact(played, first)
    assert len(played) == a.frames + b.frames

    (s2,) = other.streams()
    assert (s2.sample_rate, s2.channels, s2.alsa_format) == (22050, 2, "FLOAT_LE")
    got = s2.int16()
    at = find_exact(got[:, 0], stereo[:, 0])
    assert at >= 0
    assert np.array_equal(got[at : at + len(stereo)], stereo)

    with sd.OutputStream(device=other.device, samplerate=RATE, channels=1, dtype="int16") as s:
        s.write(first)
    with pytest.raises(RigError, match="differ"):
        other.read()


# ---------------------------------------------------------------------------------------
# Pure helpers (no audio needed)
# ---------------------------------------------------------------------------------------


def test_parse_tap_file_name() -> None:
    info = parse_tap_file_name("22050-2-FLOAT_LE.raw.0003")
    assert (info.sample_rate, info.channels, info.alsa_format, info.duplicate) == (
        22050,
        2,
        "FLOAT_LE",
        3,
    )
    assert parse_tap_file_name("24000-1-S24_3LE.raw").duplicate == 0
    for bad in ("24000-1-S16_LE.wav", "x-1-S16_LE.raw", "24000-1-s16.raw", "24000-S16_LE.raw"):
        with pytest.raises(ValueError, match="not a tap file name"):
            parse_tap_file_name(bad)


def test_to_int16_is_exact_for_every_int16_value() -> None:
    every = np.arange(-32768, 32768, dtype=np.int64)
    as16 = every.astype(np.int16)
    assert np.array_equal(to_int16(as16), as16)
    assert np.array_equal(to_int16((every / 32768).astype(np.float32)), as16)
    assert np.array_equal(to_int16((every << 16).astype(np.int32)), as16)
    assert np.array_equal(to_int16(np.array([-1.5, 1.0, 2.0], np.float32)), [-32768, 32767, 32767])
    assert np.array_equal(to_int16(np.array([0, 128, 255], np.uint8)), [-32768, 0, 32512])
    assert np.array_equal(to_int16(np.array([-128, 1], np.int8)), [-32768, 256])


def test_find_exact_only_matches_whole_samples() -> None:
    hay = np.array([0, 0x0102, 0x0304, 7, 0x0102, 0x0304], dtype=np.int16)
    assert find_exact(hay, np.array([0x0102, 0x0304], np.int16)) == 1
    assert find_exact(hay, np.array([0x0102, 0x0304], np.int16), start=2) == 4
    assert find_exact(hay, np.array([7, 7], np.int16)) == -1
    # Bytes 02 03 occur straddling samples 1 and 2 (little endian 02 01 04 03): no match.
    assert find_exact(hay, np.array([0x0401], np.int16)) == -1
    assert find_exact(hay, np.array([], np.int16)) == 0
    with pytest.raises(TypeError):
        find_exact(hay, np.array([1], np.int32))


def test_alsa_tap_config_text(tmp_path: Any) -> None:
    text = alsa_tap_config(tmp_path / "out")
    assert text.startswith("pcm.tap {")
    assert f'file "{tmp_path}/out/%r-%c-%f.raw"' in text
    assert 'slave.pcm "pulse"' in text
    assert "truncate false" in text
    with pytest.raises(ValueError, match="quote"):
        alsa_tap_config(tmp_path / 'a"b')


def test_recording_time_arithmetic() -> None:
    samples = np.zeros(2400, np.int16)
    samples[1200] = 5
    # Reads at 10 ms intervals of 240 samples; one came 4 ms late.
    reads = ((1.010, 240), (1.020, 480), (1.034, 720), (1.040, 960))
    recording = Recording(samples, 24000, 1.0, reads, 0.9)
    assert recording.time_of(1200) == pytest.approx(1.05)
    assert recording.index_at(1.05) == 1200
    assert recording.first_sound() == 1200
    assert recording.first_sound(threshold=5) == -1
    assert recording.first_sound(start=1201) == -1
    assert recording.max_read_delay() == pytest.approx(0.004)


@pytest.mark.parametrize(
    ("environ", "outcome"),
    [
        ({"CI": "true"}, pytest.fail.Exception),
        ({"CI": "1"}, pytest.fail.Exception),
        ({}, pytest.skip.Exception),
        ({"CI": "false"}, pytest.skip.Exception),
    ],
)
def test_missing_rig_skips_locally_but_fails_on_ci(
    environ: dict[str, str], outcome: type[BaseException]
) -> None:
    assert is_ci(environ) is (outcome is pytest.fail.Exception)
    with pytest.raises(outcome, match="audio rig unavailable"):
        skip_or_fail("no pulseaudio", environ)
