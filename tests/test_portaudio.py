"""PortAudio without a device: the one error mapper, the real-time callback called by
hand with fake status objects, and SoundDeviceSink on a scripted fake sounddevice."""

from __future__ import annotations

import sys
import tracemalloc
import types
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import sounddevice
import trio

import trio_tts_stream as tts
from trio_tts_stream._portaudio import DeviceCallback, import_sounddevice, portaudio_errors
from trio_tts_stream._ringbuffer import Gate, Playout

FMT = tts.AudioFormat(24000, 1)


# -- portaudio_errors ---------------------------------------------------------------


def test_portaudio_error_becomes_one_audio_device_error_line() -> None:
    cause = sounddevice.PortAudioError("Error opening RawOutputStream: Device unavailable", -9985)
    with pytest.raises(tts.AudioDeviceError) as info, portaudio_errors("cannot open 'x'"):
        raise cause
    message = str(info.value)
    assert message.startswith("cannot open 'x': Error opening RawOutputStream: Device unavailable")
    assert "[PaErrorCode -9985]" in message
    assert "python -m trio_tts_stream devices" in message
    assert "\n" not in message
    assert info.value.__cause__ is cause


def test_value_error_of_several_lines_becomes_one_line() -> None:
    with pytest.raises(tts.AudioDeviceError) as info, portaudio_errors("no device", hint="Fix."):
        raise ValueError("Multiple output devices found for 'x':\n[0] x one\n[1] x two")
    assert str(info.value) == (
        "no device: Multiple output devices found for 'x':; [0] x one; [1] x two. Fix."
    )


def test_oserror_before_sounddevice_is_imported_is_a_missing_portaudio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "sounddevice")
    with pytest.raises(tts.AudioDeviceError) as info, portaudio_errors("cannot load"):
        raise OSError("PortAudio library not found")
    assert "PortAudio library not found" in str(info.value)
    assert "libportaudio2" in str(info.value)
    assert "--output" in str(info.value)


def test_import_sounddevice_maps_a_missing_portaudio(monkeypatch: pytest.MonkeyPatch) -> None:
    class Blocker:
        def find_spec(self, name: str, path: object = None, target: object = None) -> None:
            if name == "sounddevice":
                raise OSError("PortAudio library not found")

    monkeypatch.delitem(sys.modules, "sounddevice")
    monkeypatch.setattr(sys, "meta_path", [Blocker(), *sys.meta_path])
    with pytest.raises(tts.AudioDeviceError, match="libportaudio2"):
        import_sounddevice()


@pytest.mark.parametrize(
    "exc", [tts.ConfigError("ours"), RuntimeError("a bug"), trio.Cancelled._create()]
)
def test_other_errors_pass_unchanged(exc: BaseException) -> None:
    with pytest.raises(type(exc)) as info, portaudio_errors("x"):
        raise exc
    assert info.value is exc


# -- DeviceCallback -----------------------------------------------------------------


@dataclass
class Flags:
    """Stands in for sounddevice.CallbackFlags."""

    output_underflow: bool = False


@dataclass
class TimeInfo:
    """Stands in for PortAudio's PaStreamCallbackTimeInfo."""

    currentTime: float = 100.0  # PortAudio's names
    outputBufferDacTime: float = 100.008


@dataclass
class Wakes:
    count: int = 0

    def __call__(self) -> None:
        self.count += 1


@dataclass
class Clock:
    now: float = 5.0

    def __call__(self) -> float:
        return self.now


def make_callback(
    frames: int = 48, channels: int = 1, capacity: int = 1000
) -> tuple[DeviceCallback, Playout, Wakes]:
    wakes = Wakes()
    playout = Playout(capacity, channels, 24000, np.int16, wake=wakes)
    return DeviceCallback(playout, frames, clock=Clock()), playout, wakes


def ramp(n: int, channels: int = 1) -> np.ndarray:
    return (np.arange(n * channels, dtype=np.int16) + 1).reshape(n, channels)


def test_callback_fills_the_device_buffer_and_stamps_marks_with_the_dac_time() -> None:
    callback, playout, _ = make_callback(channels=2)
    playout.ring.write(ramp(100, 2))
    playout.mark(10)
    playout.set_gate(Gate.RUNNING)
    outdata = bytearray(48 * 2 * 2)
    callback(outdata, 48, TimeInfo(), Flags())
    np.testing.assert_array_equal(np.frombuffer(outdata, np.int16).reshape(48, 2), ramp(48, 2))
    assert playout.mark_time(10) == pytest.approx(5.0 + 0.008 + 10 / 24000)
    st = playout.statistics()
    assert (st.frames_played, st.device_underflows, st.callback_errors) == (48, 0, 0)


def test_implausible_dac_time_uses_the_stream_latency() -> None:
    callback, playout, _ = make_callback()
    callback.fallback_latency = 0.035
    playout.ring.write(ramp(48))
    playout.mark(0)
    playout.set_gate(Gate.RUNNING)
    callback(bytearray(96), 48, TimeInfo(outputBufferDacTime=0.0), Flags())
    assert playout.mark_time(0) == pytest.approx(5.035)


def test_output_underflow_flag_is_counted() -> None:
    callback, playout, _ = make_callback()
    playout.ring.write(ramp(200))
    playout.set_gate(Gate.RUNNING)
    for flagged in (True, False, True):
        callback(bytearray(96), 48, TimeInfo(), Flags(output_underflow=flagged))
    st = playout.statistics()
    assert st.device_underflows == 2
    assert st.underruns == 0  # the ring did not run dry: the flag is the device's own
    assert st.frames_played == 144


@pytest.mark.parametrize("frames", [48, 30])
def test_an_exception_plays_silence_and_is_counted_never_raised(frames: int) -> None:
    callback, playout, wakes = make_callback()
    playout.ring.write(ramp(200))
    playout.set_gate(Gate.RUNNING)
    outdata = bytearray(b"\xff" * frames * 2)
    callback(outdata, frames, None, Flags())  # no time info: AttributeError inside
    assert outdata == bytearray(frames * 2)
    assert playout.statistics().callback_errors == 1
    assert wakes.count == 1
    # The next good block plays on.
    callback(outdata, frames, TimeInfo(), Flags())
    assert np.frombuffer(outdata, np.int16)[0] == 1


def test_a_block_of_another_length_is_filled_in_place() -> None:
    callback, playout, _ = make_callback(frames=48)
    playout.ring.write(ramp(100))
    playout.set_gate(Gate.RUNNING)
    outdata = bytearray(30 * 2)
    callback(outdata, 30, TimeInfo(), Flags())
    np.testing.assert_array_equal(np.frombuffer(outdata, np.int16), ramp(30)[:, 0])
    assert playout.statistics().callback_errors == 0


def portaudio_buffer(nbytes: int) -> Any:
    """What sounddevice hands a raw stream's callback: a cffi buffer over C memory.
    (A bytearray is no stand-in here: its slice assignment copies the source first.)"""
    from sounddevice import _ffi

    return _ffi.buffer(_ffi.new("char[]", nbytes))


def peak_bytes(step: Any, times: int = 4) -> int:
    step()  # warm up
    tracemalloc.start()
    try:
        for _ in range(times):
            step()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_callback_allocates_nothing_beyond_fill() -> None:
    """No sample memory, and not even an array header more than ``Playout.fill``
    itself (the views the ring copies through)."""
    frames = 1 << 14

    def running(callback: DeviceCallback | None = None) -> Playout:
        playout = callback.playout if callback else Playout(5 * frames, 1, 24000, np.int16)
        playout.ring.write(ramp(5 * frames - 100))
        playout.mark(3 * frames + 10)
        playout.set_gate(Gate.RUNNING)
        return playout

    bare = running()
    out = np.zeros((frames, 1), dtype=np.int16)
    fill_peak = peak_bytes(lambda: bare.fill(out, 5.0, 0.008))

    callback, _, _ = make_callback(frames=frames, capacity=5 * frames)
    playout = running(callback)
    outdata = portaudio_buffer(frames * 2)
    time_info, status = TimeInfo(), Flags()
    callback_peak = peak_bytes(lambda: callback(outdata, frames, time_info, status))

    assert playout.underruns == bare.underruns == 1  # the dry path ran too
    assert playout.statistics().callback_errors == 0
    assert callback_peak < out.nbytes // 16, callback_peak
    print(f"peak bytes: fill {fill_peak}, callback {callback_peak}")
    assert callback_peak <= fill_peak + 64, (callback_peak, fill_peak)


# -- SoundDeviceSink on a fake sounddevice -------------------------------------------


class FakeStream:
    def __init__(self, sd: FakeSoundDevice, callback: Any, **kwargs: Any) -> None:
        self.sd, self.callback, self.kwargs = sd, callback, kwargs
        self.latency = 0.02
        self.closed = False

    def start(self) -> None:
        if self.sd.fail == "start":
            raise self.sd.PortAudioError("Error starting stream: Device unavailable", -9985)

    def stop(self) -> None:
        if self.sd.fail == "stop":
            raise self.sd.PortAudioError("Error stopping stream: Timed out", -9987)

    def close(self) -> None:
        self.closed = True


class FakeSoundDevice(types.ModuleType):
    """A sounddevice whose failures a test scripts (``fail``)."""

    PortAudioError = sounddevice.PortAudioError

    def __init__(self) -> None:
        super().__init__("sounddevice")
        self.fail = ""
        self.streams: list[FakeStream] = []

    def check_output_settings(self, **kwargs: Any) -> None:
        if self.fail == "check":
            raise ValueError("Invalid sample rate")

    def query_devices(self, device: Any = None, kind: Any = None) -> Any:
        if self.fail in ("check", "query"):
            raise ValueError(f"No output device matching {device!r}")
        return {"default_samplerate": 48000.0, "max_output_channels": 2, "name": "fake"}

    def RawOutputStream(self, callback: Any, **kwargs: Any) -> FakeStream:
        stream = FakeStream(self, callback, **kwargs)
        self.streams.append(stream)
        return stream


@pytest.fixture
def fake_sd(monkeypatch: pytest.MonkeyPatch) -> FakeSoundDevice:
    sd = FakeSoundDevice()
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    return sd


async def test_fake_device_plays_through_the_callback(fake_sd: FakeSoundDevice) -> None:
    async with tts.SoundDeviceSink("fake", blocksize_ms=2) as sink:
        sink.underrun_fade_ms = 0  # one block and no more is an underrun: no fade here
        assert await sink.output_format_for(FMT) == FMT
        await sink.open(FMT)
        (stream,) = fake_sd.streams
        assert isinstance(stream.callback, DeviceCallback)
        assert stream.kwargs["blocksize"] == 48
        assert sink.output_latency == 0.02
        sink.write_some(np.full((48, 1), 0.5, dtype=np.float32))
        sink.play()
        outdata = bytearray(96)
        stream.callback(outdata, 48, TimeInfo(), Flags(output_underflow=True))
        assert set(np.frombuffer(outdata, np.int16)) == {16384}
        st = sink.statistics()
        assert (st.frames_played, st.device_underflows) == (48, 1)
    assert stream.closed


async def test_unsupported_settings_fall_back_to_the_device_default(
    fake_sd: FakeSoundDevice,
) -> None:
    fake_sd.fail = "query"  # check passes; query is not needed
    async with tts.SoundDeviceSink() as sink:
        assert await sink.output_format_for(FMT) == FMT
    fake_sd.fail = ""

    def unsupported(**kwargs: Any) -> None:
        raise fake_sd.PortAudioError("Invalid sample rate", -9997)

    fake_sd.check_output_settings = unsupported  # type: ignore[method-assign]
    async with tts.SoundDeviceSink() as sink:
        assert await sink.output_format_for(tts.AudioFormat(24000, 4)) == tts.AudioFormat(48000, 2)


async def test_unknown_device_is_one_audio_device_error_line(fake_sd: FakeSoundDevice) -> None:
    fake_sd.fail = "check"
    async with tts.SoundDeviceSink("x") as sink:
        with pytest.raises(tts.AudioDeviceError) as info:
            await sink.output_format_for(FMT)
    assert str(info.value) == (
        "no usable audio output device 'x': No output device matching 'x'. "
        "List devices with `python -m trio_tts_stream devices`, or use --output FILE.wav."
    )


async def test_failing_start_is_an_audio_device_error(fake_sd: FakeSoundDevice) -> None:
    fake_sd.fail = "start"
    async with tts.SoundDeviceSink("x") as sink:
        with pytest.raises(
            tts.AudioDeviceError,
            match=r"cannot open audio output device 'x' at 24000 Hz, 1 channel\(s\): "
            r"Error starting stream: Device unavailable \[PaErrorCode -9985\]",
        ):
            await sink.open(FMT)
        assert sink.audio_format is None
    assert fake_sd.streams[0].closed


async def test_failing_stop_is_an_audio_device_error_and_still_closes(
    fake_sd: FakeSoundDevice,
) -> None:
    sink = await tts.SoundDeviceSink().__aenter__()
    await sink.open(FMT)
    fake_sd.fail = "stop"
    with pytest.raises(tts.AudioDeviceError, match=r"cannot stop the audio output: .*Timed out"):
        await sink.__aexit__(None, None, None)
    assert fake_sd.streams[0].closed
