"""A real audio device with no sound card: the rig behind the ``audio`` tests and benchmarks.

The rig starts a private PulseAudio daemon whose only sink is a null sink named ``out``
(24 kHz, mono, ``s16le``, ``norewinds=1``) on a socket in its own temporary directory, and
points the process at it (``PULSE_SERVER``). It then writes an ALSA configuration
(``ALSA_CONFIG_PATH``) that defines one extra PCM, ``tap``::

    client --(PortAudio)--> ALSA "tap" (type file) --> ALSA "pulse" --> null sink "out"
                                  |                                          |
                        <tap dir>/<rate>-<channels>-<FORMAT>.raw      "out.monitor" (parec)

and re-initializes PortAudio so that ``sounddevice`` lists ``tap``, ``pulse`` and
``default`` whatever the import order was. Two ways to read back what was played:

* **The tap** (:class:`AudioTap`): the ALSA ``file`` plugin writes every frame the client
  handed to ALSA, bit-exact and in the client's own sample format, one file per opened
  stream. The file names carry rate, channel count and ALSA format (``%r-%c-%f``), so
  :class:`TapStream` decodes any of them. The plugin holds writes back up to a period and
  flushes on close: read a tap only after its streams are closed, and never use it for
  timing. It also cannot see the samples PortAudio drops when a stream stops (see
  AUDIO-FACTS.md, "tail loss"): use the monitor for that.
* **The monitor** (:class:`ParecRecorder`): ``parec`` records ``out.monitor``, the audio
  the null sink actually rendered; every read is timestamped with
  :func:`time.perf_counter`, so the recording knows when each sample was heard (to ~2 ms).
  ``parec`` can take up to a second to start: start it before playing.

Each tap lives in its own directory: :meth:`AudioRig.new_tap` re-points the symlink the ALSA
configuration writes through, so every test sees only the streams it opened. Every rig has
its own temporary directory, daemon and socket, so parallel test sessions do not meet.

Nothing here needs pytest (only :func:`skip_or_fail` imports it, when called), so
benchmarks can use the rig too; the pytest fixtures live in ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NoReturn

import numpy as np
import numpy.typing as npt

__all__ = [
    "SINK_NAME",
    "SINK_RATE",
    "TAP_DEVICE",
    "AudioRig",
    "AudioTap",
    "ParecRecorder",
    "PulseServer",
    "Recording",
    "RigError",
    "TapFileName",
    "TapStream",
    "alsa_tap_config",
    "find_exact",
    "is_ci",
    "missing_prerequisites",
    "open_audio_rig",
    "parse_tap_file_name",
    "skip_or_fail",
    "start_pulseaudio",
    "to_int16",
]

SINK_NAME = "out"
"""Name of the null sink; its monitor source is ``out.monitor``."""
SINK_RATE = 24000
"""Sample rate of the null sink (and of :class:`ParecRecorder` by default)."""
TAP_DEVICE = "tap"
"""ALSA PCM (and PortAudio device) name of the file tap."""
SYSTEM_ALSA_CONF = Path("/usr/share/alsa/alsa.conf")

_TAP_LINK = "tap-current"
_TAP_NAME_RE = re.compile(
    r"^(?P<rate>\d+)-(?P<channels>\d+)-(?P<format>[A-Z0-9_]+)\.raw(?:\.(?P<n>\d+))?$"
)
_FORMAT_DTYPES: Mapping[str, str] = {
    "S16_LE": "<i2",
    "S32_LE": "<i4",
    "FLOAT_LE": "<f4",
    "FLOAT64_LE": "<f8",
    "U8": "u1",
    "S8": "i1",
}


class RigError(RuntimeError):
    """The audio rig could not be started or used."""


# --------------------------------------------------------------------------------------
# Prerequisites
# --------------------------------------------------------------------------------------


def missing_prerequisites() -> list[str]:
    """What this machine lacks to run the rig, as human-readable reasons (empty: nothing).

    Checks the ``pulseaudio`` and ``parec`` programs, the PortAudio shared library and
    ALSA's system configuration. Whether ALSA's ``pulse`` plugin (Debian's
    ``libasound2-plugins``) is there shows only once the rig runs: :func:`open_audio_rig`
    then raises :class:`RigError` naming it.
    """
    missing = []
    for program, package in (("pulseaudio", "pulseaudio"), ("parec", "pulseaudio-utils")):
        if shutil.which(program) is None:
            missing.append(f"program {program!r} not found (apt-get install {package})")
    if ctypes.util.find_library("portaudio") is None:
        missing.append("PortAudio library not found (apt-get install libportaudio2)")
    if not SYSTEM_ALSA_CONF.is_file():
        missing.append(f"{SYSTEM_ALSA_CONF} not found (apt-get install libasound2-data)")
    return missing


def is_ci(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether we run on CI (``CI`` set to ``true``, ``1`` or ``yes``, any case)."""
    return environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def skip_or_fail(reason: str, environ: Mapping[str, str] = os.environ) -> NoReturn:
    """Skip the current test because the rig is unavailable, or fail it on CI.

    On a developer's machine a missing package should not break the suite; on CI it must,
    or the real-audio tests would silently stop running.
    """
    import pytest

    if is_ci(environ):
        pytest.fail(f"audio rig unavailable on CI: {reason}", pytrace=False)
    pytest.skip(f"audio rig unavailable: {reason}")


# --------------------------------------------------------------------------------------
# PulseAudio
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class PulseServer:
    """A private PulseAudio daemon with one null sink, started by :func:`start_pulseaudio`.

    Attributes:
        directory: The daemon's own directory (socket, state, log).
        process: The watchdog shell running ``pulseaudio`` (see :func:`start_pulseaudio`).
        startup_seconds: Time from spawning the daemon to its socket accepting connections.
    """

    directory: Path
    process: subprocess.Popen[bytes]
    startup_seconds: float

    @property
    def socket_path(self) -> Path:
        """The native protocol socket."""
        return self.directory / "native"

    @property
    def server(self) -> str:
        """Value for ``PULSE_SERVER``."""
        return f"unix:{self.socket_path}"

    @property
    def log_path(self) -> Path:
        """Where the daemon's stderr goes."""
        return self.directory / "pulseaudio.log"

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the daemon: close the watchdog's stdin (it then sends SIGTERM to the
        daemon); SIGKILL the whole process group after ``timeout`` seconds."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


_WATCHDOG = """
exec 3<&0
"$@" </dev/null &
pid=$!
{ read -r _ <&3; kill "$pid" 2>/dev/null; } &
watch=$!
wait "$pid"
rc=$?
kill "$watch" 2>/dev/null
exit "$rc"
"""
# Runs the daemon and kills it when our end of its stdin pipe closes, so that a test run
# that dies without cleaning up (SIGKILL, a crash) leaves no daemon behind.


def start_pulseaudio(
    directory: Path,
    *,
    rate: int = SINK_RATE,
    channels: int = 1,
    timeout: float = 10.0,
) -> PulseServer:
    """Start a PulseAudio daemon on ``directory/native`` with a null sink ``out``.

    The daemon reads no configuration file, uses no D-Bus and keeps its state and runtime
    files under ``directory``. It runs under a small shell watchdog that stops it when the
    calling process closes the watchdog's stdin, explicitly (:meth:`PulseServer.stop`) or
    by dying.

    Args:
        directory: An existing, private directory (short path: the socket path must fit
            in 107 bytes).
        rate: Null sink sample rate.
        channels: Null sink channel count.
        timeout: Seconds to wait for the socket to accept connections.

    Raises:
        RigError: The daemon exited or did not come up in time (its log is in the message).
    """
    directory = directory.resolve()
    sock = directory / "native"
    if len(os.fsencode(sock)) > 107:
        raise RigError(f"socket path too long for AF_UNIX: {sock}")
    env = dict(os.environ)
    for name in ("state", "runtime", "config"):
        (directory / name).mkdir(exist_ok=True)
    env.update(
        PULSE_STATE_PATH=str(directory / "state"),
        PULSE_RUNTIME_PATH=str(directory / "runtime"),
        XDG_RUNTIME_DIR=str(directory / "runtime"),
        XDG_CONFIG_HOME=str(directory / "config"),
    )
    env.pop("PULSE_SERVER", None)
    argv = [
        "pulseaudio",
        "-n",
        "--daemonize=no",
        "--exit-idle-time=-1",
        "--disable-shm=yes",
        "--use-pid-file=no",
        "--log-level=error",
        f"--load=module-native-protocol-unix socket={sock} auth-anonymous=1",
        f"--load=module-null-sink sink_name={SINK_NAME} rate={rate} channels={channels}"
        " format=s16le norewinds=1",
    ]
    started = time.perf_counter()
    with (directory / "pulseaudio.log").open("wb") as log:
        process = subprocess.Popen(
            ["sh", "-c", _WATCHDOG, "pulseaudio-watchdog", *argv],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    server = PulseServer(directory, process, 0.0)
    deadline = started + timeout
    while True:
        if process.poll() is not None:
            raise RigError(f"pulseaudio exited with code {process.returncode}: {_read_log(server)}")
        if _accepts(sock):
            server.startup_seconds = time.perf_counter() - started
            return server
        if time.perf_counter() > deadline:
            server.stop()
            raise RigError(f"pulseaudio did not start within {timeout} s: {_read_log(server)}")
        time.sleep(0.005)


def _accepts(sock: Path) -> bool:
    if not sock.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(os.fspath(sock))
        except OSError:
            return False
    return True


def _read_log(server: PulseServer) -> str:
    try:
        return server.log_path.read_text(errors="replace").strip() or "(empty log)"
    except OSError as exc:
        return f"(no log: {exc})"


# --------------------------------------------------------------------------------------
# The ALSA file tap
# --------------------------------------------------------------------------------------


def alsa_tap_config(output_dir: Path, *, name: str = TAP_DEVICE, slave: str = "pulse") -> str:
    """ALSA configuration text defining PCM ``name``: a ``file`` plugin in front of ``slave``.

    Every stream opened on it writes a new raw file ``<rate>-<channels>-<FORMAT>.raw`` in
    ``output_dir`` (``.0001``, ``.0002``... are appended when the name exists: the plugin's
    ``truncate false``). PortAudio lists every PCM defined at the top level of the
    configuration, so no ``hint`` is needed; one is given for ``aplay -L``.

    A ``plug`` in front of the file (to fix the written format) is not an option with
    PortAudio 19.6: it does not list a ``plug`` PCM unless the slave's channels are fixed,
    and then the stream's callback is never called (a ``plug`` straight onto ``pulse``
    behaves the same). Hence one file per stream in the stream's own format.
    """
    pattern = _alsa_quote(f"{output_dir}/%r-%c-%f.raw")
    return (
        f"pcm.{name} {{\n"
        f"    type file\n"
        f"    slave.pcm {_alsa_quote(slave)}\n"
        f"    file {pattern}\n"
        f'    format "raw"\n'
        f"    truncate false\n"
        f"    perm 0644\n"
        f'    hint.description "trio_tts_stream test tap: writes what was played to files"\n'
        f"}}\n"
    )


def _alsa_quote(text: str) -> str:
    if any(c in text for c in '"\\\n'):
        raise ValueError(f"cannot quote {text!r} for ALSA configuration")
    return f'"{text}"'


@dataclasses.dataclass(frozen=True)
class TapFileName:
    """What a tap file's name says about its stream (see :func:`parse_tap_file_name`)."""

    sample_rate: int
    channels: int
    alsa_format: str
    duplicate: int


def parse_tap_file_name(name: str) -> TapFileName:
    """Parse ``"24000-1-S16_LE.raw"`` (or ``...raw.0003``) into its parts.

    Raises:
        ValueError: Not a tap file name.
    """
    match = _TAP_NAME_RE.match(name)
    if match is None:
        raise ValueError(f"not a tap file name: {name!r}")
    return TapFileName(
        sample_rate=int(match["rate"]),
        channels=int(match["channels"]),
        alsa_format=match["format"],
        duplicate=int(match["n"] or 0),
    )


def to_int16(samples: npt.NDArray[Any]) -> npt.NDArray[np.int16]:
    """Convert samples of any PortAudio sample type to int16 like the library does.

    Integers keep their top 16 bits (exact for samples that came from int16); floats are
    ``rint(x * 32768)`` clipped to the int16 range (exact inverse of ``x / 32768``).
    """
    kind, size = samples.dtype.kind, samples.dtype.itemsize
    if kind == "f":
        scaled = np.rint(samples.astype(np.float64) * 32768.0)
        return np.clip(scaled, -32768, 32767).astype(np.int16)
    if kind == "u" and size == 1:
        return ((samples.astype(np.int16) - 128) << 8).astype(np.int16)
    if kind == "i":
        if size <= 2:
            return (samples.astype(np.int16) << (8 * (2 - size))).astype(np.int16)
        return (samples.astype(np.int64) >> (8 * (size - 2))).astype(np.int16)
    raise TypeError(f"unsupported sample type {samples.dtype}")


@dataclasses.dataclass(frozen=True)
class TapStream:
    """One stream as the client handed it to ALSA, read from a tap file.

    Attributes:
        path: The tap file.
        sample_rate: The stream's rate in Hz.
        channels: The stream's channel count.
        alsa_format: ALSA's name of the sample format (``"S16_LE"``, ``"FLOAT_LE"``...).
        data: The samples in the stream's own type, shape ``(frames, channels)``
            (``int24`` streams are widened to int32, left-aligned like ``S32_LE``).
    """

    path: Path
    sample_rate: int
    channels: int
    alsa_format: str
    data: npt.NDArray[Any]

    @classmethod
    def read(cls, path: Path) -> TapStream:
        """Read and decode a tap file whose name follows :func:`parse_tap_file_name`."""
        info = parse_tap_file_name(path.name)
        raw = path.read_bytes()
        if info.alsa_format == "S24_3LE":
            usable = len(raw) - len(raw) % 3
            triples = np.frombuffer(raw[:usable], np.uint8).reshape(-1, 3).astype(np.int32)
            data: npt.NDArray[Any] = (
                (triples[:, 0] << 8) | (triples[:, 1] << 16) | (triples[:, 2] << 24)
            ).astype(np.int32)
        else:
            try:
                dtype = np.dtype(_FORMAT_DTYPES[info.alsa_format])
            except KeyError:
                raise ValueError(f"{path}: unsupported ALSA format {info.alsa_format}") from None
            usable = len(raw) - len(raw) % dtype.itemsize
            data = np.frombuffer(raw[:usable], dtype)
        frames = len(data) // info.channels
        data = data[: frames * info.channels].reshape(frames, info.channels)
        return cls(path, info.sample_rate, info.channels, info.alsa_format, data)

    @property
    def frames(self) -> int:
        """Number of whole frames."""
        return int(self.data.shape[0])

    def int16(self) -> npt.NDArray[np.int16]:
        """The samples as int16, shape ``(frames, channels)`` (see :func:`to_int16`)."""
        return to_int16(self.data)


@dataclasses.dataclass(frozen=True)
class AudioTap:
    """The tap files of one test: every stream opened on the ``tap`` device since creation.

    Attributes:
        device: ``sounddevice`` index of the ``tap`` device (pass as ``device=``).
        device_name: ALSA name of the device (``"tap"``).
        directory: Where this tap's files are written.
    """

    device: int
    device_name: str
    directory: Path

    def streams(self) -> list[TapStream]:
        """Every stream opened on the tap since this tap was made, oldest first.

        Streams are ordered by the time their file was last written (then by name), which
        is their opening order when they ran one after the other. Call this after the
        streams are closed: the file plugin flushes its last period on close.
        """
        paths = [p for p in self.directory.iterdir() if _TAP_NAME_RE.match(p.name)]
        paths.sort(key=lambda p: (p.stat().st_mtime_ns, parse_tap_file_name(p.name).duplicate))
        return [TapStream.read(p) for p in paths]

    def read(self) -> npt.NDArray[np.int16]:
        """All samples played through the tap, as int16 of shape ``(frames, channels)``.

        The streams are concatenated in order. With no stream the result has shape
        ``(0, 1)``.

        Raises:
            RigError: The streams differ in channel count or sample rate.
        """
        streams = self.streams()
        if not streams:
            return np.zeros((0, 1), np.int16)
        layouts = {(s.sample_rate, s.channels) for s in streams}
        if len(layouts) > 1:
            raise RigError(f"tap streams differ in (rate, channels): {sorted(layouts)}")
        return np.concatenate([s.int16() for s in streams])


# --------------------------------------------------------------------------------------
# The rig
# --------------------------------------------------------------------------------------


class AudioRig:
    """A running PulseAudio null sink, the ALSA tap, and PortAudio initialized to see them.

    Use :func:`open_audio_rig`. While the rig is open, ``os.environ`` has ``PULSE_SERVER``
    and ``ALSA_CONFIG_PATH`` set (child processes inherit them) and ``sounddevice`` lists
    the devices ``tap``, ``pulse`` and ``default`` (the last two play straight into the
    null sink).

    Attributes:
        directory: The rig's private directory.
        pulse: The daemon.
        alsa_config: The ALSA configuration file defining ``tap``.
        tap_device: ``sounddevice`` index of ``tap``.
        pulse_device: ``sounddevice`` index of ALSA's ``pulse`` device.
    """

    directory: Path
    pulse: PulseServer
    alsa_config: Path
    tap_device: int
    pulse_device: int

    def __init__(self, directory: Path, pulse: PulseServer) -> None:
        self.directory = directory
        self.pulse = pulse
        self.alsa_config = directory / "tap.conf"
        self.tap_device = -1
        self.pulse_device = -1
        self._taps = 0
        self._saved_env: dict[str, str | None] = {}
        self._tap_link = directory / _TAP_LINK

    @property
    def server(self) -> str:
        """``PULSE_SERVER`` value of the rig's daemon."""
        return self.pulse.server

    def environment(self) -> dict[str, str]:
        """The variables the rig sets in ``os.environ`` while open (children inherit them)."""
        return {
            "PULSE_SERVER": self.pulse.server,
            "ALSA_CONFIG_PATH": f"{SYSTEM_ALSA_CONF}:{self.alsa_config}",
        }

    def _install(self) -> None:
        (self.directory / "taps").mkdir()
        self._point_tap_at(self._new_tap_dir("unused"))
        self.alsa_config.write_text(alsa_tap_config(self._tap_link))
        for key, value in self.environment().items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        self.reinitialize_portaudio()

    def _restore_environment(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def reinitialize_portaudio(self) -> None:
        """Make PortAudio rescan devices under the current environment.

        Needed whenever ``sounddevice`` was imported before the rig set the environment; the
        rig does it when it opens. No stream may be open.

        Raises:
            RigError: ``tap`` or ``pulse`` is not listed afterwards.
        """
        import sounddevice as sd

        sd._terminate()
        sd._initialize()
        devices = list(sd.query_devices())
        names = [str(d["name"]) for d in devices]
        try:
            self.tap_device = names.index(TAP_DEVICE)
            self.pulse_device = names.index("pulse")
        except ValueError:
            raise RigError(
                f"PortAudio does not list ALSA devices 'tap' and 'pulse' (found {names});"
                " is ALSA's pulse plugin installed (apt-get install libasound2-plugins)?"
            ) from None

    def _new_tap_dir(self, label: str) -> Path:
        self._taps += 1
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)[:60] or "tap"
        path = self.directory / "taps" / f"{self._taps:04d}-{safe}"
        path.mkdir()
        return path

    def _point_tap_at(self, target: Path) -> None:
        tmp = self.directory / f".{_TAP_LINK}.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(target)
        os.replace(tmp, self._tap_link)

    def new_tap(self, label: str = "tap") -> AudioTap:
        """Start a fresh tap: streams opened on ``tap`` from now on write into a new directory.

        Streams already open keep writing to their old files.
        """
        directory = self._new_tap_dir(label)
        self._point_tap_at(directory)
        return AudioTap(self.tap_device, TAP_DEVICE, directory)

    def recorder(self, **kwargs: Any) -> ParecRecorder:
        """A :class:`ParecRecorder` on this rig's monitor (not started)."""
        kwargs.setdefault("env", {**os.environ, **self.environment()})
        return ParecRecorder(**kwargs)

    def close(self) -> None:
        """Stop the daemon, restore the environment and remove the directory."""
        try:
            self.pulse.stop()
        finally:
            self._restore_environment()
            shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def open_audio_rig() -> Iterator[AudioRig]:
    """Start the rig (PulseAudio, ALSA tap, PortAudio rescan); stop it on exit.

    Raises:
        RigError: A prerequisite is missing (see :func:`missing_prerequisites`) or
            something failed to start.
    """
    missing = missing_prerequisites()
    if missing:
        raise RigError("; ".join(missing))
    directory = Path(tempfile.mkdtemp(prefix="tts-rig-"))
    try:
        pulse = start_pulseaudio(directory)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    rig = AudioRig(directory, pulse)
    try:
        rig._install()
        yield rig
    finally:
        rig.close()


# --------------------------------------------------------------------------------------
# Monitor recorder
# --------------------------------------------------------------------------------------


def find_exact(haystack: npt.NDArray[Any], needle: npt.NDArray[Any], start: int = 0) -> int:
    """Index of the first exact occurrence of ``needle`` in ``haystack`` at or after
    ``start``, or -1. Both are 1-D arrays of the same dtype."""
    if haystack.dtype != needle.dtype:
        raise TypeError(f"dtype mismatch: {haystack.dtype} vs {needle.dtype}")
    if len(needle) == 0:
        return start if start <= len(haystack) else -1
    size = haystack.dtype.itemsize
    hay = np.ascontiguousarray(haystack).tobytes()
    pin = np.ascontiguousarray(needle).tobytes()
    pos = start * size
    while True:
        pos = hay.find(pin, pos)
        if pos < 0:
            return -1
        if pos % size == 0:
            return pos // size
        pos += 1


@dataclasses.dataclass(frozen=True)
class Recording:
    """What the monitor heard, with the time each sample was heard.

    Sample ``k`` was heard at ``t0 + k / sample_rate`` (:func:`time.perf_counter` seconds).
    ``t0`` is the lower envelope of the read timestamps, ``min(t_i - n_i / rate)`` over all
    reads ``i`` (``n_i`` = samples received up to read ``i``): a read can only come late,
    never early, so this is the tightest estimate they give; on an idle machine it is
    within ~2 ms.

    Attributes:
        samples: int16 samples, shape ``(frames,)`` (mono).
        sample_rate: Hz.
        t0: When sample 0 was heard.
        reads: ``(perf_counter time, total samples so far)`` after every read.
        started: When the recorder was started (before ``parec`` was spawned).
    """

    samples: npt.NDArray[np.int16]
    sample_rate: int
    t0: float
    reads: tuple[tuple[float, int], ...]
    started: float

    def time_of(self, index: int) -> float:
        """When sample ``index`` was heard."""
        return self.t0 + index / self.sample_rate

    def index_at(self, when: float) -> int:
        """Index of the sample heard at ``when`` (may be outside the recording)."""
        return round((when - self.t0) * self.sample_rate)

    def first_sound(self, threshold: int = 0, start: int = 0) -> int:
        """Index of the first sample at or after ``start`` with ``abs(sample) > threshold``,
        or -1."""
        loud = np.flatnonzero(np.abs(self.samples[start:].astype(np.int32)) > threshold)
        return int(loud[0]) + start if len(loud) else -1

    def max_read_delay(self) -> float:
        """Largest lateness of a read against the ``t0`` estimate, in seconds (jitter)."""
        return max((t - n / self.sample_rate - self.t0 for t, n in self.reads), default=0.0)


class ParecRecorder:
    """Record the null sink's monitor with ``parec`` and timestamp every read.

    Use as ``with rig.recorder() as rec: ...`` and call :meth:`stop` to get the
    :class:`Recording`, or call :meth:`start` / :meth:`stop` yourself. :meth:`start`
    returns once the first samples have arrived (the monitor delivers silence continuously,
    so recording is then running); this takes up to ~1 s.

    Args:
        device: Source to record.
        rate: Sample rate to record at (the sink's own avoids resampling).
        latency_ms: ``parec --latency-msec``: read granularity, hence timestamp accuracy.
        env: Environment for ``parec`` (must reach the daemon: ``PULSE_SERVER``).
        read_size: Bytes per ``os.read``.
    """

    def __init__(
        self,
        *,
        device: str = f"{SINK_NAME}.monitor",
        rate: int = SINK_RATE,
        latency_ms: int = 2,
        env: Mapping[str, str] | None = None,
        read_size: int = 65536,
    ) -> None:
        self.argv = [
            "parec",
            "-d",
            device,
            "--raw",
            f"--rate={rate}",
            "--channels=1",
            "--format=s16le",
            f"--latency-msec={latency_ms}",
        ]
        self.rate = rate
        self._env = dict(env) if env is not None else None
        self._read_size = read_size
        self._process: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._chunks: list[bytes] = []
        self._reads: list[tuple[float, int]] = []
        self._first_data = threading.Event()
        self._error: BaseException | None = None
        self._started = 0.0
        self.startup_seconds = float("nan")
        """Time from :meth:`start` until the first samples arrived."""

    def start(self, timeout: float = 10.0) -> ParecRecorder:
        """Spawn ``parec`` and wait until it delivers samples.

        Raises:
            RigError: ``parec`` exited or delivered nothing within ``timeout`` seconds.
        """
        if self._process is not None:
            raise RigError("recorder already started")
        self._started = time.perf_counter()
        self._process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self._env,
        )
        assert self._process.stdout is not None
        self._thread = threading.Thread(
            target=self._reader, args=(self._process.stdout,), name="parec-reader", daemon=True
        )
        self._thread.start()
        if not self._first_data.wait(timeout):
            err = self._kill()
            raise RigError(f"parec delivered no audio within {timeout} s: {err}")
        if self._error is not None or not self._reads:
            err = self._kill()
            raise RigError(f"parec failed: {self._error or err}")
        self.startup_seconds = self._reads[0][0] - self._started
        return self

    def _reader(self, stream: IO[bytes]) -> None:
        fd = stream.fileno()
        total = 0
        try:
            while True:
                chunk = os.read(fd, self._read_size)
                now = time.perf_counter()
                if not chunk:
                    break
                self._chunks.append(chunk)
                total += len(chunk)
                self._reads.append((now, total // 2))
                self._first_data.set()
        except BaseException as exc:  # pragma: no cover - reported by start/stop
            self._error = exc
        finally:
            self._first_data.set()

    def _kill(self) -> str:
        process = self._process
        if process is None:
            return ""
        if process.poll() is None:
            process.kill()
        _, err = process.communicate()
        if self._thread is not None:
            self._thread.join()
        return err.decode(errors="replace").strip()

    def peek(self) -> npt.NDArray[np.int16]:
        """The samples recorded so far; the recorder keeps running."""
        data = b"".join(list(self._chunks))
        return np.frombuffer(data[: len(data) // 2 * 2], dtype=np.int16)

    def catch_up(self, seconds: float = 0.05, timeout: float = 5.0) -> None:
        """Wait until ``parec`` has delivered ``seconds`` of audio beyond what it had
        delivered at the call: what was rendered before the call is then recorded, however
        late a loaded machine delivers it (a fixed sleep is not enough there).

        Raises:
            RigError: The audio did not arrive within ``timeout`` seconds.
        """
        if self._process is None:
            raise RigError("recorder not started")
        target = (self._reads[-1][1] if self._reads else 0) + int(seconds * self.rate)
        deadline = time.perf_counter() + timeout
        while not self._reads or self._reads[-1][1] < target:
            if self._process.poll() is not None or time.perf_counter() > deadline:
                raise RigError(f"parec did not deliver {seconds} s more within {timeout} s")
            time.sleep(0.005)

    def stop(self) -> Recording:
        """Stop ``parec`` and return everything it recorded.

        Raises:
            RigError: The recorder was not started, or ``parec`` failed while recording.
        """
        process, thread = self._process, self._thread
        if process is None or thread is None:
            raise RigError("recorder not started")
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        thread.join()
        assert process.stderr is not None
        err = process.stderr.read().decode(errors="replace").strip()
        process.stderr.close()
        if process.stdout is not None:
            process.stdout.close()
        if self._error is not None:
            raise RigError(f"reading from parec failed: {self._error}")
        if process.returncode not in (0, -signal.SIGTERM) and not self._reads:
            raise RigError(f"parec exited with {process.returncode}: {err}")
        data = b"".join(self._chunks)
        samples = np.frombuffer(data[: len(data) - len(data) % 2], "<i2").astype(np.int16)
        reads = tuple(self._reads)
        t0 = min((t - n / self.rate for t, n in reads if n), default=self._started)
        return Recording(samples, self.rate, t0, reads, self._started)

    def close(self) -> None:
        """Kill ``parec`` if it still runs (for cleanup paths; :meth:`stop` is the normal end)."""
        if self._process is not None and self._process.returncode is None:
            self._kill()

    def __enter__(self) -> ParecRecorder:
        if self._process is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


if __name__ == "__main__":  # pragma: no cover - manual check: python tests/_audio_rig.py
    with open_audio_rig() as _rig:
        import sounddevice as _sd

        print(f"pulseaudio up in {_rig.pulse.startup_seconds * 1000:.1f} ms at {_rig.server}")
        print(_sd.query_devices())
        sys.exit(0)
