"""`devices` against the rig's real PulseAudio sink, and playing to a listed device."""

from __future__ import annotations

import re

import numpy as np
from _audio_rig import AudioRig, AudioTap
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
