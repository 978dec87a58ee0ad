"""A sound server that dies or hangs under a real PortAudio stream, and one that comes
back on the same socket.

Each test runs its own PulseAudio daemon (tests/_audio_rig.py's ``start_pulseaudio``) and
points ``PULSE_SERVER`` at it, so killing it leaves the session's rig alone. PortAudio's
ALSA ``pulse`` device connects to whatever ``PULSE_SERVER`` names when a stream opens,
so no device rescan is needed. Times are printed (``-s``) for the benchmark notes; the
asserts on them are hang guards, not latency claims.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import trio
from _audio_rig import AudioRig, ParecRecorder, PulseServer, find_exact, start_pulseaudio
from _cli_helpers import clean_env, serve_process

import trio_tts_stream as tts
from trio_tts_stream.testing import open_test_server, synthesize_tone

LONG = "A long answer that goes on for several seconds, so that the sound dies under it. " * 3
RATE = 24000
EXIT_DEVICE = 6


class FaultyPulse:
    """A private PulseAudio daemon that a test can kill, freeze and restart."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.server: PulseServer = start_pulseaudio(directory)
        self.frozen: list[int] = []

    @property
    def address(self) -> str:
        return self.server.server

    def _daemon_pids(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.server.process.pid)], capture_output=True, text=True
        ).stdout
        return [int(pid) for pid in out.split()]

    def kill(self) -> float:
        """SIGKILL the daemon (a crash, an unplugged headset); returns when."""
        pids = self._daemon_pids()
        assert pids, "the daemon is not running"
        at = time.perf_counter()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        self.server.process.wait(5)
        return at

    def freeze(self) -> float:
        """SIGSTOP the daemon (a hung sound server); returns when."""
        self.frozen = self._daemon_pids()
        at = time.perf_counter()
        for pid in self.frozen:
            os.kill(pid, signal.SIGSTOP)
        return at

    def restart(self) -> None:
        """Start a new daemon on the same socket."""
        self.server.stop()  # the old one's watchdog pipe
        self.server = start_pulseaudio(self.directory)

    def recorder(self) -> ParecRecorder:
        return ParecRecorder(env={**os.environ, "PULSE_SERVER": self.address})

    def close(self) -> None:
        for pid in self.frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.server.stop()


@pytest.fixture
def faulty_pulse(audio_rig: AudioRig) -> Iterator[FaultyPulse]:
    directory = Path(tempfile.mkdtemp(prefix="tts-fault-"))
    pulse = FaultyPulse(directory)
    os.environ["PULSE_SERVER"] = pulse.address
    try:
        yield pulse
    finally:
        os.environ["PULSE_SERVER"] = audio_rig.server
        pulse.close()


async def played_at_least(sink: tts.BufferedSink, seconds: float) -> None:
    while (  # noqa: ASYNC110 (polling a real device)
        sink.audio_format is None or sink.statistics().frames_played < seconds * RATE
    ):
        await trio.sleep(0.01)


async def test_a_killed_sound_server_fails_the_playback_with_its_report(
    faulty_pulse: FaultyPulse,
) -> None:
    killed_at = failed_at = 0.0
    with trio.fail_after(30):
        async with open_test_server(realtime_factor=2) as server:
            async with tts.SoundDeviceSink("pulse") as sink:
                request = tts.SpeechRequest(LONG, base_url=server.base_url)

                async def kill_later() -> None:
                    nonlocal killed_at
                    await played_at_least(sink, 1.0)
                    killed_at = faulty_pulse.kill()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(kill_later)
                    with pytest.raises(tts.AudioDeviceError, match="audio output stopped") as info:
                        await tts.play(request, sink=sink)
                    failed_at = time.perf_counter()
            closed_at = time.perf_counter()
    print(f"killed -> error {failed_at - killed_at:.3f} s, -> closed {closed_at - killed_at:.3f} s")
    assert failed_at - killed_at < 5  # a hang guard; the figure is in docs/benchmarks.rst
    report = info.value.report
    assert report is not None
    assert report.outcome is tts.Outcome.FAILED
    assert report.frames_played >= RATE  # what was heard before
    assert report.frames_played < len(synthesize_tone(LONG))


def _say(base_url: str, pulse: FaultyPulse) -> subprocess.Popen[str]:
    env = clean_env(PULSE_SERVER=pulse.address)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trio_tts_stream",
            "say",
            "--device",
            "pulse",
            "--base-url",
            base_url,
            LONG,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for_sound(pulse: FaultyPulse, recorder: ParecRecorder, timeout: float = 20) -> None:
    """Until the daemon's monitor has rendered some non-silence."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        recorder.catch_up(0.05)
        if np.any(recorder.peek()):
            return
        time.sleep(0.05)
    pytest.fail("say never played anything")


@pytest.mark.parametrize("fault", ["kill", "freeze"])
def test_say_exits_with_one_line_when_the_sound_server_dies_or_hangs(
    faulty_pulse: FaultyPulse, fault: str
) -> None:
    with serve_process("--realtime-factor", "2") as base_url:
        recorder = faulty_pulse.recorder().start()
        try:
            proc = _say(base_url, faulty_pulse)
            try:
                _wait_for_sound(faulty_pulse, recorder)
                time.sleep(0.5)
            finally:
                recorder.close()
            at = faulty_pulse.kill() if fault == "kill" else faulty_pulse.freeze()
            try:
                out, err = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                pytest.fail(f"say hung after the sound server was {fault}ed")
            took = time.perf_counter() - at
        finally:
            if proc.poll() is None:
                proc.kill()
    print(f"{fault}: say exited {proc.returncode} after {took:.2f} s: {err.strip()!r}")
    assert proc.returncode == EXIT_DEVICE
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # no traceback, no PortAudio chatter
    assert lines[0].startswith("error: the audio output stopped: ")
    assert took < 10  # a hang guard; the figure is in docs/benchmarks.rst


async def test_a_speaker_plays_on_when_the_sound_server_comes_back(
    faulty_pulse: FaultyPulse,
) -> None:
    with trio.fail_after(60):
        async with open_test_server(realtime_factor=2) as server:
            async with tts.SoundDeviceSink("pulse") as sink:
                async with tts.open_speaker(base_url=server.base_url, sink=sink) as speaker:
                    first = speaker.say(LONG)
                    await played_at_least(sink, 1.0)
                    faulty_pulse.kill()
                    while not speaker.outages:  # noqa: ASYNC110 (a real device)
                        await trio.sleep(0.02)
                    await trio.sleep(1.0)  # the server stays away for a while
                    assert not first.done
                    faulty_pulse.restart()
                    recorder = faulty_pulse.recorder()
                    await trio.to_thread.run_sync(recorder.start)
                    try:
                        r1 = await first.wait()
                        r2 = await speaker.say("And the next one plays there too.").wait()
                        await trio.sleep(0.3)
                    finally:
                        heard = await trio.to_thread.run_sync(recorder.stop)
    assert r1.outcome is tts.Outcome.COMPLETED
    assert r2.outcome is tts.Outcome.COMPLETED
    (outage,) = speaker.outages
    print(
        f"outage {outage.duration_s:.2f} s, {outage.attempts} attempts, "
        f"resumed {outage.resumed}: {outage.reason}"
    )
    assert outage.recovered
    assert outage.resumed == 1
    # The restarted server rendered the next utterance, sample for sample.
    tail = synthesize_tone("And the next one plays there too.")
    assert find_exact(heard.samples, tail[-2400:]) >= 0
    assert find_exact(heard.samples, tail[:2400]) >= 0


async def test_an_unknown_device_names_the_ones_that_exist(audio_rig: AudioRig) -> None:
    async with tts.SoundDeviceSink("no such device") as sink:
        with pytest.raises(tts.AudioDeviceError) as info:
            await sink.output_format_for(tts.AudioFormat(RATE, 1))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("no usable audio output device 'no such device': ")
    assert f"{audio_rig.pulse_device} 'pulse'" in message
    assert f"{audio_rig.tap_device} 'tap'" in message
