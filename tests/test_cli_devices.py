"""`devices` against the rig's real PulseAudio sink, and playing to a listed device."""

from __future__ import annotations

import re

import numpy as np
from _audio_rig import AudioRig, AudioTap, ParecRecorder
from _cli_helpers import clean_env, run_cli

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


def test_say_to_a_device_by_index(audio_tap: AudioTap, served: str, audio_rig: AudioRig) -> None:
    text = "Played on the device the user picked."
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
    played = audio_tap.read()[:, 0]
    start = int(np.flatnonzero(played)[0])
    expected = synthesize_tone(text)
    np.testing.assert_array_equal(played[start : start + len(expected)], expected)


def test_ctrl_c_silences_the_speaker_within_200_ms(
    served: str, audio_rig: AudioRig, audio_monitor: ParecRecorder
) -> None:
    """SIGINT mid-playback: the sink's monitor hears nothing 200 ms later; exit 130."""
    import signal
    import subprocess
    import sys
    import time

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
        time.sleep(3.0)  # start-up, 300 ms TTFB, then a good second of speech
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
