#!/usr/bin/env python3
"""Check README.md's two set-up commands, taken from the README itself.

* "Set up and run": its fenced ``sh`` block must hold exactly one command. The command runs
  as written (``bash -c``), with a timeout, in a copy of this checkout in a temporary
  directory, with ``PATH`` pointing at a fresh ``python3 -m venv``. It must exit 0 and
  leave speech: a new WAV file (the CLI writes ``speech.wav`` when there is no output
  device) at least 0.3 s long whose peak and RMS are well above silence.
* "Set up and test": its fenced ``sh`` block must hold exactly one command, the one CI
  runs (``bash .ci/run``, which runs this check, then ``nox -db uv``).

The command sees no PulseAudio server (``PULSE_SERVER`` names a socket that does not
exist) and no TTS configuration (``OPENAI_*`` and ``TRIO_TTS_STREAM_*`` removed), so on a
machine without a sound card it deterministically speaks with the bundled espeak voice
into ``speech.wav``. On a machine whose sound card PortAudio still finds, the CLI plays
there and writes no file: the samples cannot be checked, which is an error on CI
(``CI=true``) and a warning elsewhere. No file and no device is always an error.

Usage: ``python3 .ci/check_readme.py [--readme FILE] [--timeout SECONDS] [--keep]``;
``--print`` only prints the two commands. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import dataclasses
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUN_SECTION = "Set up and run"
TEST_SECTION = "Set up and test"
CI_TEST_COMMAND = "bash .ci/run"
"""What CI runs; the README's test command must be exactly this."""

MIN_DURATION_S = 0.3
MIN_PEAK = 0.03  # of full scale, about -30 dBFS
MIN_RMS = 0.003  # about -50 dBFS
SHELL_LANGUAGES = frozenset({"", "sh", "bash", "shell", "console", "zsh"})
FALLBACK_NOTE = "writing the speech to"  # the CLI's note when it has no speaker


class ReadmeError(Exception):
    """The README does not have the expected shape, or a command failed its check."""


# --------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([^`\s]*)[^`]*$")


@dataclasses.dataclass(frozen=True)
class Block:
    """A fenced code block: its language (first word of the info string) and text."""

    language: str
    text: str


def section(markdown: str, heading: str) -> list[str]:
    """The lines under the heading titled ``heading`` (any level), up to the next heading
    of the same or a higher level. Headings inside fenced blocks do not count.

    Raises:
        ReadmeError: No heading, or more than one, has that title; or a fenced block is
            not closed.
    """
    found: list[list[str]] = []
    current: list[str] | None = None
    level = 0
    fence = ""
    for line in markdown.splitlines():
        if fence:
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = ""
        elif match := _FENCE.match(line):
            fence = match[1]
        elif match := _HEADING.match(line):
            if current is not None and len(match[1]) <= level:
                current = None
            if match[2].strip() == heading:
                level = len(match[1])
                current = []
                found.append(current)
                continue
        if current is not None:
            current.append(line)
    if fence:
        raise ReadmeError(f"README: a fenced block ({fence}) is not closed")
    if not found:
        raise ReadmeError(f"README has no heading {heading!r}")
    if len(found) > 1:
        raise ReadmeError(f"README has {len(found)} headings {heading!r}; expected one")
    return found[0]


def fenced_blocks(lines: list[str]) -> list[Block]:
    """The fenced code blocks in ``lines``.

    Raises:
        ReadmeError: A block is not closed.
    """
    blocks: list[Block] = []
    fence = ""
    language = ""
    body: list[str] = []
    for line in lines:
        if not fence:
            if match := _FENCE.match(line):
                fence, language, body = match[1], match[2].lower(), []
            continue
        stripped = line.strip()
        if stripped.startswith(fence) and not stripped.strip(fence[0]):
            blocks.append(Block(language, "\n".join(body)))
            fence = ""
        else:
            body.append(line)
    if fence:
        raise ReadmeError(f"a fenced block ({fence}{language}) is not closed")
    return blocks


def shell_commands(script: str) -> list[str]:
    """The commands of a shell block: one per line, backslash continuations joined, blank
    lines and ``#`` comment lines dropped."""
    commands: list[str] = []
    pending = ""
    for raw in script.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        commands.append((pending + line).strip())
        pending = ""
    if pending.strip():
        commands.append(pending.strip())
    return [c for c in commands if c]


def extract_block(markdown: str, heading: str, language: str) -> str:
    """The text of the one fenced ``language`` block under ``heading``.

    Raises:
        ReadmeError: The section is missing, or holds no such block or more than one.
    """
    blocks = [b for b in fenced_blocks(section(markdown, heading)) if b.language == language]
    if len(blocks) != 1:
        raise ReadmeError(
            f"README section {heading!r} has {len(blocks)} ```{language} blocks; expected one"
        )
    return blocks[0].text


def extract_command(markdown: str, heading: str) -> str:
    """The one shell command under ``heading``: its section must hold exactly one shell
    block (fenced ``sh``) and that block exactly one command.

    Raises:
        ReadmeError: It does not.
    """
    blocks = [b for b in fenced_blocks(section(markdown, heading)) if b.language in SHELL_LANGUAGES]
    if len(blocks) != 1:
        raise ReadmeError(
            f"README section {heading!r} has {len(blocks)} shell blocks; "
            "expected exactly one ```sh block"
        )
    if blocks[0].language != "sh":
        raise ReadmeError(
            f"README section {heading!r}: the shell block is ```{blocks[0].language}, "
            "expected ```sh"
        )
    commands = shell_commands(blocks[0].text)
    if len(commands) != 1:
        listed = "".join(f"\n    {c}" for c in commands)
        raise ReadmeError(
            f"README section {heading!r} holds {len(commands)} commands; expected exactly "
            f"one (join steps with &&):{listed}"
        )
    return commands[0]


def check_test_command(command: str) -> None:
    """The README's test command must be what CI runs."""
    if " ".join(command.split()) != CI_TEST_COMMAND:
        raise ReadmeError(
            f"README section {TEST_SECTION!r} says {command!r}, but CI runs "
            f"{CI_TEST_COMMAND!r}: make the README say that (or change CI with it)"
        )


# --------------------------------------------------------------------------------------
# The speech
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WavStats:
    """Duration (s), peak and RMS (fractions of full scale) of a WAV file."""

    duration_s: float
    peak: float
    rms: float

    def describe(self) -> str:
        def dbfs(x: float) -> str:
            return f"{20 * math.log10(x):.1f} dBFS" if x > 0 else "-inf dBFS"

        return f"{self.duration_s:.2f} s, peak {dbfs(self.peak)}, RMS {dbfs(self.rms)}"


def wav_stats(path: Path) -> WavStats:
    """Measure a PCM WAV file (8, 16, 24 or 32 bit integer samples).

    Raises:
        ReadmeError: It is not such a file.
    """
    try:
        with wave.open(str(path), "rb") as wav:
            width, rate = wav.getsampwidth(), wav.getframerate()
            frames = wav.getnframes()
            data = wav.readframes(frames)
    except (OSError, EOFError, wave.Error) as exc:
        raise ReadmeError(f"{path.name} is not a readable PCM WAV file: {exc}") from None
    if width == 1:
        samples = [b - 128 for b in data]
    elif width in (2, 4):
        values = array.array("h" if width == 2 else "i")
        values.frombytes(data[: len(data) - len(data) % width])
        if sys.byteorder == "big":
            values.byteswap()
        samples = values.tolist()
    elif width == 3:
        samples = [
            int.from_bytes(data[i : i + 3], "little", signed=True)
            for i in range(0, len(data) - 2, 3)
        ]
    else:
        raise ReadmeError(f"{path.name}: unsupported sample width {width}")
    full_scale = float(1 << (8 * width - 1))
    peak = max((abs(s) for s in samples), default=0) / full_scale
    rms = math.sqrt(sum(s * s for s in samples) / len(samples)) / full_scale if samples else 0.0
    return WavStats(frames / rate if rate else 0.0, peak, rms)


def check_speech(path: Path) -> WavStats:
    """Measure ``path`` and require audible speech.

    Raises:
        ReadmeError: Too short or (nearly) silent.
    """
    stats = wav_stats(path)
    if stats.duration_s < MIN_DURATION_S:
        raise ReadmeError(f"{path.name} holds {stats.duration_s:.3f} s; expected speech")
    if stats.peak < MIN_PEAK or stats.rms < MIN_RMS:
        raise ReadmeError(f"{path.name} is (nearly) silent: {stats.describe()}")
    return stats


# --------------------------------------------------------------------------------------
# Running the command
# --------------------------------------------------------------------------------------


def copy_checkout(source: Path, target: Path) -> None:
    """Copy the working tree (tracked and untracked, not ignored files, as they are now)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=source,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout.decode()
    except (OSError, subprocess.SubprocessError):
        ignore = shutil.ignore_patterns(
            ".git", ".nox", ".venv", "venv", "__pycache__", "*.pyc", "*_cache", "_build", "*.wav"
        )
        shutil.copytree(source, target, ignore=ignore, symlinks=True)
        return
    target.mkdir(parents=True)
    for name in filter(None, listed.split("\0")):
        src = source / name
        if not src.is_file():  # deleted in the working tree
            continue
        dst = target / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst, follow_symlinks=False)


def command_environment(venv: Path, scratch: Path) -> dict[str, str]:
    """The environment of a fresh shell with ``venv`` activated, no TTS configuration and
    no PulseAudio server. The machine's pip settings (index, proxy, certificates) stay."""
    drop = ("OPENAI_", "TRIO_TTS_STREAM_", "VOICEMODE_", "PULSE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "ALSA_CONFIG_PATH", "CONDA_PREFIX"):
        env.pop(name, None)
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", os.defpath)])
    env["PULSE_SERVER"] = f"unix:{scratch / 'no-pulseaudio-here'}"  # none, and no autospawn
    env["JACK_NO_START_SERVER"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_command(command: str, cwd: Path, env: dict[str, str], timeout: float) -> list[str]:
    """Run ``command`` with ``bash -c``; echo its output (indented) as it comes and return
    it as lines.

    Raises:
        ReadmeError: It timed out or exited non-zero.
    """
    proc = subprocess.Popen(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,  # its own process group, killed whole on timeout
    )
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            print(f"    | {line}", end="", flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        status = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        reader.join(10)
        raise ReadmeError(f"the README's run command timed out after {timeout:.0f} s") from None
    except BaseException:
        _kill_group(proc)
        raise
    reader.join(30)
    if status != 0:
        raise ReadmeError(f"the README's run command exited with status {status}")
    return lines


def has_output_device(venv: Path, env: dict[str, str]) -> bool:
    """Whether PortAudio, as the venv's ``sounddevice`` sees it in ``env``, has a default
    output device."""
    probe = "import sounddevice as sd; sd.query_devices(kind='output')"
    try:
        result = subprocess.run(
            [str(venv / "bin" / "python"), "-c", probe],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0


def check_run_command(command: str, *, timeout: float, keep: bool = False) -> str:
    """Run the README's run command in a fresh venv and copy of the checkout; return a
    one-line result.

    Raises:
        ReadmeError: It failed, or left no audible speech.
    """
    scratch = Path(tempfile.mkdtemp(prefix="readme-check-"))
    try:
        checkout = scratch / "checkout"
        venv = scratch / "venv"
        copy_checkout(REPO, checkout)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        before = {p.name for p in checkout.glob("*.wav")}
        print(f"    $ cd {checkout} && PATH={venv / 'bin'}:$PATH", flush=True)
        print(f"    $ {command}", flush=True)
        env = command_environment(venv, scratch)
        output = run_command(command, checkout, env, timeout)
        written = sorted(p for p in checkout.glob("*.wav") if p.name not in before)
        if not written:
            if any(FALLBACK_NOTE in line for line in output):
                raise ReadmeError("the CLI said it wrote the speech to a file, but there is none")
            if not has_output_device(venv, env):
                raise ReadmeError(
                    "the run command left no WAV file, and there is no audio output device "
                    "it could have played on"
                )
            message = (
                "the CLI played on an audio device and wrote no WAV file, so its samples "
                "cannot be checked here (CI has no sound card)"
            )
            if os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}:
                raise ReadmeError(message)
            return f"exit 0; WARNING: {message}"
        results = [f"{p.name}: {check_speech(p).describe()}" for p in written]
        return "exit 0, " + "; ".join(results)
    finally:
        if keep:
            print(f"    (kept {scratch})")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds (default 900)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--print", action="store_true", help="only print the two commands")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        markdown = args.readme.read_text(encoding="utf-8")
        run = extract_command(markdown, RUN_SECTION)
        test = extract_command(markdown, TEST_SECTION)
        if args.print:
            print(run)
            print(test)
            return 0
        check_test_command(test)
        print(f"README test command: {test!r} (what CI runs)", flush=True)
        print(f"README run command: {run!r}", flush=True)
        result = check_run_command(run, timeout=args.timeout, keep=args.keep)
    except (ReadmeError, OSError, subprocess.SubprocessError) as exc:
        print(f"README check FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"README check passed in {time.monotonic() - started:.0f} s: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
