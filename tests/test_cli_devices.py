"""`devices` against the rig's real PulseAudio sink, and playing to a listed device."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import sounddevice
from _audio_rig import AudioRig, AudioTap, ParecRecorder
from _cli_helpers import clean_env, run_cli

from trio_tts_stream._cli import EXIT_DEVICE, main
from trio_tts_stream.testing import synthesize_tone


def test_devices_lists_the_rig_outputs(audio_rig: AudioRig) -> None:
    result = run_cli("devices", env=clean_env(**audio_rig.environment()))
    assert result.returncode == 0, result.stderr
    rows = result.stdout.rstrip("\n").splitlines()
    parsed = [re.match(r"^([* ])\s+(\d+)\s+(.+?)\s+\((\d+) Hz, (\d+) ch\)$", r) for r in rows]
    assert all(parsed), rows
    names = {m.group(3) for m in parsed if m}
    assert {"tap", "pulse"} <= names
    assert sum(m.group(1) == "*" for m in parsed if m) == 1  # exactly one default
    tap = next(m for m in parsed if m and m.group(3) == "tap")
    assert int(tap.group(2)) == audio_rig.tap_device


def test_devices_with_a_broken_device_is_one_error_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = types.ModuleType("sounddevice")

    def query_devices(*args: object, **kwargs: object) -> object:
        raise sounddevice.PortAudioError("Error querying device -1", -9996)

    broken.PortAudioError = sounddevice.PortAudioError  # type: ignore[attr-defined]
    broken.default = types.SimpleNamespace(device=(None, 0))  # type: ignore[attr-defined]
    broken.query_devices = query_devices  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sounddevice", broken)
    assert main(["devices"]) == EXIT_DEVICE
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "error: cannot list the audio devices: Error querying device -1 [PaErrorCode -9996]. "
        "Check that a sound server or an ALSA device is available.\n"
    )


def test_devices_without_portaudio_is_one_error_line() -> None:
    code = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
sys.meta_path.insert(0, Blocker())
from trio_tts_stream._cli import main
sys.exit(main(["devices"]))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == EXIT_DEVICE
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: PortAudio is not available (PortAudio library not found)")
    assert "libportaudio2" in lines[0]


def test_say_to_a_device_by_index(audio_tap: AudioTap, served: str, audio_rig: AudioRig) -> None:
    text = "Played on the device the user picked."
    result = run_cli(
        "say",
        text,
        "--base-url",
        served,
        "--device",
        str(audio_tap.device),
        "--playout",
        "exact",
        "--json",
        env=clean_env(**audio_rig.environment()),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["playout"] == "exact"
    played = audio_tap.read()[:, 0]
    start = int(np.flatnonzero(played)[0])
    expected = synthesize_tone(text)
    np.testing.assert_array_equal(played[start : start + len(expected)], expected)


def test_say_on_a_device_defaults_to_adaptive_playout(
    audio_tap: AudioTap, served: str, audio_rig: AudioRig
) -> None:
    text = "Adaptive on a device, by default."
    result = run_cli(
        "say",
        text,
        "--base-url",
        served,
        "--device",
        str(audio_tap.device),
        "--json",
        env=clean_env(**audio_rig.environment()),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["playout"] == "adaptive"
    assert report["buffer_ms"] == 35.0  # a 20 ms piece, a 10 ms block, the 5 ms fade
    played = audio_tap.read()[:, 0]
    assert np.count_nonzero(played) >= len(synthesize_tone(text)) * 0.95


def test_ctrl_c_silences_the_speaker_within_200_ms(
    served: str, audio_rig: AudioRig, audio_monitor: ParecRecorder
) -> None:
    """SIGINT mid-playback: the sink's monitor hears nothing 200 ms later; exit 130."""
    import signal

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trio_tts_stream",
            "say",
            "Interrupt me please. " * 20,
            "--base-url",
            served,
            "--device",
            "pulse",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(**audio_rig.environment()),
    )
    try:
        wait_until_heard(audio_monitor, seconds=1.0)  # start-up, 300 ms TTFB, then speech
        assert proc.poll() is None
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    time.sleep(0.3)
    recording = audio_monitor.stop()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    loud = np.flatnonzero(np.abs(recording.samples.astype(np.int32)) > 64)
    assert len(loud), "nothing was heard before the interrupt"
    last_heard = recording.time_of(int(loud[-1]))
    assert recording.time_of(int(loud[0])) < sent  # it was speaking
    print(f"sound stopped {1000 * (last_heard - sent):.0f} ms after SIGINT")
    assert last_heard - sent <= 0.200, f"sound went on {1000 * (last_heard - sent):.0f} ms"


def wait_until_heard(recorder: ParecRecorder, seconds: float, timeout: float = 20) -> None:
    """Return once the monitor has recorded ``seconds`` of sound after the first loud
    sample (a fixed sleep was flaky on a loaded machine: start-up can exceed 3 s)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        data = b"".join(list(recorder._chunks))  # what the reader thread has so far
        samples = np.frombuffer(data[: len(data) - len(data) % 2], "<i2")
        loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 64)
        if len(loud) and len(samples) - int(loud[0]) >= seconds * recorder.rate:
            return
        time.sleep(0.05)
    raise AssertionError(f"no speech heard within {timeout} s")
