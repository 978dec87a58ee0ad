"""Sinks: NullSink timing under autojump, WavFileSink files, lazy sounddevice, reuse."""

from __future__ import annotations

import struct
import subprocess
import sys
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import trio

import trio_tts_stream as tts
from trio_tts_stream import AudioFormat

FMT = AudioFormat(24000, 1)


def ramp(frames: int, channels: int = 1) -> np.ndarray:
    x = (np.arange(frames * channels, dtype=np.int64) % 2000 - 1000).astype(np.float32) / 32768
    return np.ascontiguousarray(x.reshape(frames, channels))


async def write_all(sink: tts.AudioSink, block: np.ndarray) -> None:
    offset = 0
    while offset < len(block):
        offset += sink.write_some(block[offset:])
        if offset < len(block):
            await sink.wait_writable()


async def test_null_sink_consumes_in_real_time(autojump_clock: trio.abc.Clock) -> None:
    async with tts.NullSink(buffer_s=2.0, blocksize_ms=20) as sink:
        await sink.open(FMT)
        assert sink.write_some(ramp(24000)) == 24000
        start = trio.current_time()
        sink.mark(0)
        sink.play()
        sink.end_of_data()
        await sink.wait_heard(24000)
        elapsed = trio.current_time() - start
        heard0 = sink.heard_time(0)
    assert heard0 is not None
    assert heard0 - start <= 0.020 + 1e-9
    assert elapsed == pytest.approx(1.0, abs=0.021)


async def test_null_sink_write_blocks_when_full(autojump_clock: trio.abc.Clock) -> None:
    async with tts.NullSink(buffer_s=0.5) as sink:
        await sink.open(FMT)
        assert sink.capacity == 12000
        assert sink.write_some(ramp(20000)) == 12000
        assert sink.write_some(ramp(10)) == 0
        sink.play()
        t0 = trio.current_time()
        await sink.wait_writable()
        assert trio.current_time() - t0 <= 0.021
        assert sink.write_some(ramp(10)) > 0


async def test_paused_sink_does_not_consume(autojump_clock: trio.abc.Clock) -> None:
    async with tts.NullSink() as sink:
        await sink.open(FMT)
        sink.write_some(ramp(2400))
        await trio.sleep(1.0)
        st = sink.statistics()
        assert (st.frames_played, st.buffered, st.underruns) == (0, 2400, 0)
        with pytest.raises(tts.AudioDeviceError, match="paused"):
            await sink.wait_heard(2400)


async def test_underrun_is_counted_once_then_silence(autojump_clock: trio.abc.Clock) -> None:
    async with tts.NullSink(blocksize_ms=10) as sink:
        await sink.open(FMT)
        sink.write_some(ramp(2400))  # 100 ms
        sink.play()
        await trio.sleep(0.5)
        st = sink.statistics()
        assert st.underruns == 1
        assert st.starved
        assert st.frames_played == 2400
        assert st.underrun_frames == pytest.approx(0.4 * 24000, abs=240)


async def test_sink_outlives_an_utterance_gaplessly(autojump_clock: trio.abc.Clock) -> None:
    """Two utterances on one open sink: the second starts where the first ends."""

    async def source(seconds: float) -> AsyncIterator[bytes]:
        yield (np.ones(int(seconds * 24000), dtype="<i2") * 1000).tobytes()

    async with tts.NullSink() as sink:
        first = await tts.play(source(0.5), sink=sink)
        second = await tts.play(source(0.3), sink=sink)
        st = sink.statistics()
    assert first.frames_played == 12000
    assert second.frames_played == 7200
    assert st.frames_written == 19200
    assert st.frames_played == 19200


async def test_format_switch_with_audio_buffered_is_refused(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with tts.NullSink() as sink:
        await sink.open(FMT)
        sink.write_some(ramp(100))
        with pytest.raises(tts.AudioDeviceError, match="still buffered"):
            await sink.open(AudioFormat(16000, 1))
        sink.abort()
        await trio.sleep(0.05)
        await sink.open(AudioFormat(16000, 1))
        assert sink.audio_format == AudioFormat(16000, 1)


async def test_mono_is_mapped_to_stereo(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    mono = ramp(1000)
    async with tts.WavFileSink(path) as sink:
        await sink.open(AudioFormat(24000, 2))
        sink.play()
        await write_all(sink, mono)
    with wave.open(str(path)) as w:
        assert w.getnchannels() == 2
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    expected = np.rint(mono[:, 0] * 32768).astype(np.int16)
    np.testing.assert_array_equal(data[:, 0], expected)
    np.testing.assert_array_equal(data[:, 1], expected)


async def test_wav_file_sink_is_valid_while_writing_and_exact_after(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    block = ramp(48000)
    async with tts.WavFileSink(path) as sink:
        await sink.open(FMT)
        sink.play()
        await write_all(sink, block[:24000])
        partial = path.read_bytes()
        await write_all(sink, block[24000:])
    # While writing: the "unknown length" sizes streaming servers use.
    assert partial[:4] == b"RIFF"
    assert struct.unpack("<I", partial[4:8])[0] == 0xFFFFFFFF
    assert struct.unpack("<I", partial[40:44])[0] == 0xFFFFFFFF
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
        assert w.getnframes() == 48000


async def test_wav_file_sink_float32(tmp_path: Path) -> None:
    path = tmp_path / "float.wav"
    block = ramp(500)
    async with tts.WavFileSink(path, dtype="float32") as sink:
        await sink.open(FMT)
        sink.play()
        await write_all(sink, block)
    data = path.read_bytes()
    assert struct.unpack("<H", data[20:22])[0] == 3  # IEEE float
    np.testing.assert_array_equal(np.frombuffer(data[44:], dtype="<f4"), block[:, 0])


async def test_wav_file_sink_unwritable_path(tmp_path: Path) -> None:
    async with tts.WavFileSink(tmp_path / "missing" / "x.wav") as sink:
        with pytest.raises(tts.AudioDeviceError, match="cannot write"):
            await sink.open(FMT)


def test_bad_sink_options() -> None:
    with pytest.raises(tts.ConfigError, match="dtype"):
        tts.NullSink(dtype="int8")
    with pytest.raises(tts.ConfigError, match="buffer_s"):
        tts.WavFileSink("x.wav", buffer_s=0)
    with pytest.raises(tts.ConfigError, match="blocksize_ms"):
        tts.SoundDeviceSink(blocksize_ms=0)


async def test_null_sink_needs_async_with() -> None:
    sink = tts.NullSink()
    with pytest.raises(tts.AudioDeviceError, match="async with"):
        await sink.open(FMT)


def test_package_imports_without_portaudio() -> None:
    """sounddevice is imported lazily: without PortAudio the package still imports and
    a SoundDeviceSink fails with an actionable AudioDeviceError."""
    code = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
sys.meta_path.insert(0, Blocker())
import trio, trio_tts_stream as tts
assert "sounddevice" not in sys.modules
async def main():
    async with tts.SoundDeviceSink() as sink:
        await sink.open(tts.AudioFormat(24000, 1))
try:
    trio.run(main)
except tts.AudioDeviceError as exc:
    print(exc)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "libportaudio2" in result.stdout
    assert "--output" in result.stdout


async def test_unknown_device_is_audio_device_error(audio_rig: object) -> None:
    async with tts.SoundDeviceSink("no-such-device-anywhere") as sink:
        with pytest.raises(tts.AudioDeviceError, match="devices"):
            await sink.open(FMT)


async def test_sinks_must_be_entered(tmp_path: Path) -> None:
    for sink in (tts.WavFileSink(tmp_path / "x.wav"), tts.SoundDeviceSink()):
        with pytest.raises(tts.AudioDeviceError, match="async with"):
            await sink.open(FMT)
