"""Sinks: NullSink timing under autojump, WavFileSink files, lazy sounddevice, reuse."""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio

import trio_tts_stream as tts
from trio_tts_stream import AudioFormat, _wavsink
from trio_tts_stream._format import float_to_int16
from trio_tts_stream._ringbuffer import Gate, Playout
from trio_tts_stream._sinks import BufferedSink
from trio_tts_stream._wav import WAV_HEADER_BYTES, wav_header

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
        # Woken once a refill batch (100 ms at 24 kHz) is free, not at the first frame.
        assert 0.1 <= trio.current_time() - t0 <= 0.1 + 0.021
        assert sink.write_some(ramp(20000)) >= 2400


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
        first = await tts.play(source(0.5), sink=sink, response_format="pcm")
        second = await tts.play(source(0.3), sink=sink, response_format="pcm")
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


# -- WavFileSink: file I/O in a worker thread --------------------------------------------


async def test_wav_file_sink_writes_only_in_worker_threads_in_bounded_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trio_thread = threading.current_thread()
    batches: list[tuple[threading.Thread, int]] = []
    write_batch = _wavsink._write_batch

    def recording(f: Any, frames: np.ndarray) -> None:
        batches.append((threading.current_thread(), len(frames)))
        write_batch(f, frames)

    monkeypatch.setattr(_wavsink, "_write_batch", recording)
    path = tmp_path / "threads.wav"
    block = ramp(30000)
    async with tts.WavFileSink(path, buffer_s=0.5, batch_s=0.1) as sink:
        await sink.open(FMT)
        sink.play()
        await write_all(sink, block)  # 30000 frames through a 12000-frame ring
        await sink.wait_heard(30000)
        # wait_heard means written: the frames are in the file, not in a buffer.
        assert path.stat().st_size == WAV_HEADER_BYTES + 2 * 30000
    assert batches
    assert all(thread is not trio_thread for thread, _ in batches)
    assert max(n for _, n in batches) <= 2400  # batch_s=0.1 at 24 kHz
    assert sum(n for _, n in batches) == 30000
    data = path.read_bytes()
    assert data[:WAV_HEADER_BYTES] == wav_header(24000, 1, data_bytes=60000)
    np.testing.assert_array_equal(np.frombuffer(data[44:], "<i2"), float_to_int16(block)[:, 0])


async def test_wav_file_sink_marks_and_paused_wait(tmp_path: Path) -> None:
    async with tts.WavFileSink(tmp_path / "marks.wav") as sink:
        await sink.open(FMT)
        sink.write_some(ramp(4800))
        sink.mark(100)
        with pytest.raises(tts.AudioDeviceError, match="paused"):
            await sink.wait_heard(4800)
        assert sink.heard_time(100) is None
        before = trio.current_time()
        sink.play()
        await sink.wait_heard(4800)
        heard = sink.heard_time(100)
        assert heard is not None
        # Stamped as "taken for writing at t, frame 100 is 100/24000 s into the batch".
        offset = 100 / 24000
        assert before + offset <= heard <= trio.current_time() + offset
        st = sink.statistics()
        assert (st.frames_played, st.buffered, st.underruns) == (4800, 0, 0)


async def test_wav_file_sink_back_to_back_utterances_are_gapless(tmp_path: Path) -> None:
    async def source(value: int, seconds: float) -> AsyncIterator[bytes]:
        yield (np.full(int(seconds * 24000), value, dtype="<i2")).tobytes()

    path = tmp_path / "two.wav"
    async with tts.WavFileSink(path) as sink:
        await tts.play(source(1000, 0.5), sink=sink, response_format="pcm")
        await tts.play(source(-1000, 0.3), sink=sink, response_format="pcm")
    with wave.open(str(path)) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    np.testing.assert_array_equal(data, np.r_[np.full(12000, 1000), np.full(7200, -1000)])


async def test_wav_file_sink_refuses_a_second_format(tmp_path: Path) -> None:
    path = tmp_path / "one.wav"
    async with tts.WavFileSink(path) as sink:
        await sink.open(FMT)
        sink.play()
        await write_all(sink, ramp(100))
        await sink.wait_heard(100)
        with pytest.raises(tts.AudioDeviceError, match="one WAV file holds one format"):
            await sink.open(AudioFormat(16000, 1))
    with wave.open(str(path)) as w:  # the first format's audio is kept, finished
        assert (w.getframerate(), w.getnframes()) == (24000, 100)


def test_bad_batch_size() -> None:
    with pytest.raises(tts.ConfigError, match="batch_s"):
        tts.WavFileSink("x.wav", batch_s=0)


# -- a custom output: subclass BufferedSink ----------------------------------------------


class ListSink(BufferedSink):
    """Keeps every frame the gate lets through, consumed on the trio thread."""

    def __init__(self) -> None:
        super().__init__(buffer_s=0.1, dtype="int16", blocksize_ms=10)
        self.frames: list[np.ndarray] = []
        self._live: Playout | None = None

    async def _start_consumer(self, fmt: AudioFormat, playout: Playout) -> None:
        playout.wake = self._on_wake
        playout.same_thread = True
        self._live = playout
        await trio.lowlevel.checkpoint()

    def _pump(self) -> None:
        playout = self._live
        while playout is not None and playout.gate is not Gate.PAUSED and playout.ring.buffered:
            out = np.empty((playout.ring.buffered, playout.ring.channels), playout.ring.dtype)
            playout.fill(out, trio.current_time())
            self.frames.append(out)

    async def _stop_consumer(self) -> None:
        self._live = None
        await trio.lowlevel.checkpoint()


async def test_a_custom_buffered_sink_plays_through_the_player(
    autojump_clock: trio.abc.Clock,
) -> None:
    pcm = (np.arange(7200) % 3000 - 1500).astype("<i2")

    async def source() -> AsyncIterator[bytes]:
        for i in range(0, len(pcm) * 2, 1000):
            yield pcm.tobytes()[i : i + 1000]
            await trio.sleep(0.01)

    async with ListSink() as sink:
        assert isinstance(sink, tts.AudioSink)
        report = await tts.play(source(), sink=sink, response_format="pcm")
        st = sink.statistics()
    assert report.frames_played == len(pcm)
    assert (st.frames_played, st.underruns, st.callback_errors) == (len(pcm), 0, 0)
    np.testing.assert_array_equal(np.concatenate(sink.frames)[:, 0], pcm)


async def test_a_buffered_sink_without_a_consumer_says_so() -> None:
    class Incomplete(BufferedSink):
        pass

    async with Incomplete(buffer_s=1, dtype="int16", blocksize_ms=10) as sink:
        with pytest.raises(NotImplementedError, match="Incomplete must implement _start_consumer"):
            await sink.open(FMT)
