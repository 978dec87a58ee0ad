"""Streaming configuration: one frozen object, from arguments and/or the environment.

Precedence, highest first: explicit arguments, ``TRIO_TTS_STREAM_*`` variables, the
``VOICEMODE_*`` variables that voicemode users already set, the defaults below.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._exceptions import ConfigError

__all__ = ["ENV_VARIABLES", "StreamConfig"]

#: field name -> (our variable, voicemode's variable or None)
ENV_VARIABLES: dict[str, tuple[str, str | None]] = {
    "streaming": ("TRIO_TTS_STREAM_STREAMING_ENABLED", "VOICEMODE_STREAMING_ENABLED"),
    "buffer_ms": ("TRIO_TTS_STREAM_BUFFER_MS", "VOICEMODE_STREAM_BUFFER_MS"),
    "chunk_size": ("TRIO_TTS_STREAM_CHUNK_SIZE", "VOICEMODE_STREAM_CHUNK_SIZE"),
    "max_buffer_s": ("TRIO_TTS_STREAM_MAX_BUFFER", "VOICEMODE_STREAM_MAX_BUFFER"),
    "rebuffer_ms": ("TRIO_TTS_STREAM_REBUFFER_MS", None),
}

DEFAULT_REBUFFER_MS = 300.0

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class StreamConfig:
    """How audio is fetched, buffered and started.

    Memory ceiling of one playback: ``max_buffer_s`` seconds of decoded audio in the
    output ring buffer, plus ``queue_blocks`` decoded blocks in the channel between the
    download and playback tasks (one block is what one ``chunk_size`` read decodes to:
    4096 bytes of 24 kHz s16 pcm = 85 ms), plus one ``chunk_size`` read.

    Attributes:
        streaming: Play while downloading. ``False`` downloads everything first, then
            plays (the old behaviour; also the benchmark baseline).
        buffer_ms: Decoded audio (ms) buffered before playback starts.
        chunk_size: Bytes per read from the HTTP response.
        max_buffer_s: Capacity of the output ring buffer in seconds; when it is full the
            download is slowed down (backpressure) instead of using more memory.
        rebuffer_ms: Audio (ms) to buffer again after an underrun before resuming.
            ``None`` (the default) means 300 ms, or the whole buffer when
            ``max_buffer_s`` holds less; after construction it is always a number.
        queue_blocks: Decoded blocks the download task may run ahead of playback.
        connect_timeout_s: Seconds to wait for the connection to the server.
        read_timeout_s: Seconds to wait for the next bytes of the response (httpx's
            read timeout; see also ``stall_timeout_s``).
        stall_timeout_s: A pause in the body at least this long counts as a stall
            (``report.stalls``). It is ridden out: playback rebuffers meanwhile and the
            connection is kept, since a CPU server may think for seconds between
            sentences.
        dead_timeout_s: After the first body byte, a pause this long (or twice the
            longest pause the stream already came back from, whichever is longer) means
            the connection is dead: it is re-requested (and resumed). A re-request that
            stalls at the same place waits twice as long each time (see ``_stall``).
            Before the first body byte the limit is ``read_timeout_s``.
        first_audio_timeout_s: Most seconds from the request to the first decoded audio,
            retries included (``None``: no overall bound, only the per-wait ones); past
            it the playback fails with :class:`StreamTimeout`.
        max_attempts: Requests in a row that may fail without delivering new audio, the
            first included (1 = no retry). A connection that delivered audio before it
            dropped starts the count again.
        retry_deadline_s: No retry starts later than this after the first request.
        resume_mismatch: When a re-requested stream turns out to differ from the audio
            already played: ``"error"`` stops with :class:`ResumeMismatchError`,
            ``"restart"`` plays the utterance again from its start (and says so in the
            report). Audio is never played twice silently.
        underrun_growth: Each underrun multiplies the rebuffer threshold by this, up to
            the whole buffer (1.0 keeps it fixed).
        fallback_limit_bytes: Most bytes of a response kept for decoding it whole (the
            buffered fallback for a stream no incremental decoder takes), and most bytes
            read from a response before its first audio; past it the playback fails with
            :class:`DecodeError` instead of growing (32 MiB: about 17 minutes of 256 kbit/s
            audio).
        playout: ``"exact"`` plays every sample as decoded and starts once ``buffer_ms``
            is buffered; ``None`` (the default) is exact too, except where the library
            picks for a listener: a speaker or ``say`` on a sound device plays pcm and
            wav adaptively (see docs/benchmarks.rst). ``"adaptive"`` starts as soon as
            the largest decoded block so far plus one output block is buffered (at
            least two output blocks), and builds the buffer up to a target level
            derived from the measured arrival jitter (at least ``buffer_ms``) by
            playing speech up to ``max_stretch`` slower, pitch kept (see
            :mod:`trio_tts_stream._jitter`); outside the stretched pitch periods the
            samples are still exact.
        max_stretch: Most slowing in adaptive playout (0.12: 12 % slower), 0 to 0.25.
        max_speedup: Speeding up in adaptive playout when the buffer holds more than
            twice its target, to shed latency (0: never, the default), 0 to 0.25.
    """

    streaming: bool = True
    buffer_ms: float = 150.0
    chunk_size: int = 4096
    max_buffer_s: float = 2.0
    rebuffer_ms: float = None  # type: ignore[assignment]  # resolved in __post_init__
    queue_blocks: int = 16
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    stall_timeout_s: float = 2.0
    dead_timeout_s: float = 15.0
    first_audio_timeout_s: float | None = None
    max_attempts: int = 5
    retry_deadline_s: float = 30.0
    resume_mismatch: str = "error"
    underrun_growth: float = 1.5
    fallback_limit_bytes: int = 32 * 1024 * 1024
    playout: str | None = None
    max_stretch: float = 0.12
    max_speedup: float = 0.0

    def __post_init__(self) -> None:
        def check(name: str, ok: bool, want: str) -> None:
            if not ok:
                value = getattr(self, name)
                raise ConfigError(f"{name}={value!r} is invalid: it must be {want}")

        def finite(x: float) -> bool:
            return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

        def whole(x: int) -> bool:
            return isinstance(x, int) and not isinstance(x, bool)

        check("streaming", isinstance(self.streaming, bool), "True or False")
        check("max_buffer_s", finite(self.max_buffer_s), "a number of seconds from 0.05 to 600")
        check(
            "max_buffer_s",
            finite(self.max_buffer_s) and 0.05 <= self.max_buffer_s <= 600,
            "a number of seconds from 0.05 to 600",
        )
        limit = self.max_buffer_s * 1000
        room = (
            f"a number of ms from 0 to what max_buffer_s={self.max_buffer_s:g} holds "
            f"({limit:g}); lower it or raise max_buffer_s"
        )
        if self.rebuffer_ms is None:
            object.__setattr__(self, "rebuffer_ms", min(DEFAULT_REBUFFER_MS, limit))
        slack = limit + 1e-6  # 2.01 * 1000 == 2009.9999999999998
        check("buffer_ms", finite(self.buffer_ms) and 0 <= self.buffer_ms <= slack, room)
        check("rebuffer_ms", finite(self.rebuffer_ms) and 0 <= self.rebuffer_ms <= slack, room)
        check(
            "chunk_size",
            whole(self.chunk_size) and 1 <= self.chunk_size <= 1 << 20,
            "a whole number of bytes from 1 to 1048576",
        )
        check(
            "queue_blocks",
            whole(self.queue_blocks) and 1 <= self.queue_blocks <= 4096,
            "a whole number from 1 to 4096",
        )
        check(
            "connect_timeout_s",
            finite(self.connect_timeout_s) and self.connect_timeout_s > 0,
            "a positive number of seconds",
        )
        check(
            "read_timeout_s",
            finite(self.read_timeout_s) and self.read_timeout_s > 0,
            "a positive number of seconds",
        )
        check(
            "stall_timeout_s",
            finite(self.stall_timeout_s) and self.stall_timeout_s > 0,
            "a positive number of seconds",
        )
        check(
            "dead_timeout_s",
            finite(self.dead_timeout_s) and self.dead_timeout_s > 0,
            "a positive number of seconds",
        )
        check(
            "first_audio_timeout_s",
            self.first_audio_timeout_s is None
            or (finite(self.first_audio_timeout_s) and self.first_audio_timeout_s > 0),
            "None or a positive number of seconds",
        )
        check(
            "max_attempts",
            whole(self.max_attempts) and 1 <= self.max_attempts <= 100,
            "a whole number from 1 to 100",
        )
        check(
            "retry_deadline_s",
            finite(self.retry_deadline_s) and self.retry_deadline_s >= 0,
            "a number of seconds >= 0",
        )
        check(
            "underrun_growth",
            finite(self.underrun_growth) and 1.0 <= self.underrun_growth <= 10.0,
            "a number from 1.0 (fixed) to 10.0",
        )
        check(
            "resume_mismatch", self.resume_mismatch in ("error", "restart"), "'error' or 'restart'"
        )
        check("playout", self.playout in (None, "exact", "adaptive"), "None, 'exact' or 'adaptive'")
        check(
            "max_stretch",
            finite(self.max_stretch) and 0 <= self.max_stretch <= 0.25,
            "a number from 0 to 0.25",
        )
        check(
            "max_speedup",
            finite(self.max_speedup) and 0 <= self.max_speedup <= 0.25,
            "a number from 0 to 0.25",
        )
        check(
            "fallback_limit_bytes",
            whole(self.fallback_limit_bytes) and self.fallback_limit_bytes >= 4096,
            "a whole number of bytes >= 4096",
        )

    def replace(self, **changes: Any) -> StreamConfig:
        """Return a copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> StreamConfig:
        """Build a config from environment variables, then apply ``overrides``.

        Reads ``TRIO_TTS_STREAM_STREAMING_ENABLED``, ``TRIO_TTS_STREAM_BUFFER_MS``,
        ``TRIO_TTS_STREAM_CHUNK_SIZE``, ``TRIO_TTS_STREAM_MAX_BUFFER`` (seconds) and
        ``TRIO_TTS_STREAM_REBUFFER_MS``, and voicemode's ``VOICEMODE_STREAMING_ENABLED``,
        ``VOICEMODE_STREAM_BUFFER_MS``, ``VOICEMODE_STREAM_CHUNK_SIZE`` and
        ``VOICEMODE_STREAM_MAX_BUFFER``; ours win over voicemode's. Overrides whose value
        is ``None`` are ignored, so CLI options can be passed straight through.

        Raises:
            ConfigError: A variable has a value that cannot be used; the message names it.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field, names in ENV_VARIABLES.items():
            if overrides.get(field) is not None:
                continue  # an explicit argument wins; the variable is not even parsed
            for name in names:
                if name is not None and env.get(name, "").strip():
                    values[field] = _parse(field, name, env[name].strip())
                    break
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except ConfigError as exc:
            source = _source_of(exc, env, overrides)
            if source is None:
                raise
            raise ConfigError(f"{source}: {exc}") from None
        except TypeError as exc:
            raise ConfigError(str(exc)) from None


def _parse(field: str, name: str, raw: str) -> Any:
    kind = {f.name: str(f.type) for f in dataclasses.fields(StreamConfig)}[field]
    try:
        if kind == "bool":
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise ValueError
        if kind == "int":
            return int(raw)
        return float(raw)
    except ValueError:
        want = {"bool": "true or false", "int": "a whole number"}.get(kind, "a number")
        raise ConfigError(
            f"environment variable {name}={raw!r} is invalid: expected {want}"
        ) from None


def _source_of(
    exc: ConfigError, env: Mapping[str, str], overrides: Mapping[str, Any]
) -> str | None:
    """Name the environment variable behind a validation error, if one is."""
    field = str(exc).split("=", 1)[0]
    if field in overrides and overrides[field] is not None:
        return None
    for name in ENV_VARIABLES.get(field, ()):
        if name is not None and env.get(name, "").strip():
            return f"environment variable {name}={env[name].strip()!r}"
    return None
