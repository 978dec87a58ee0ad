"""Tests for :class:`StreamConfig`: defaults, validation, and ``from_env`` precedence.

Environments are passed as ``environ=`` dicts; the one test of the ``os.environ``
default uses ``monkeypatch``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from trio_tts_stream._config import ENV_VARIABLES, StreamConfig
from trio_tts_stream._exceptions import ConfigError, TTSStreamError

OURS = {field: names[0] for field, names in ENV_VARIABLES.items()}
VOICEMODE = {field: names[1] for field, names in ENV_VARIABLES.items() if names[1] is not None}


# -- defaults and shape ------------------------------------------------------------------


def test_defaults() -> None:
    config = StreamConfig()
    assert config.streaming is True
    assert config.buffer_ms == 150
    assert config.chunk_size == 4096
    assert config.max_buffer_s == 2.0
    assert config.rebuffer_ms == 300
    assert config.queue_blocks == 16
    assert config.connect_timeout_s == 10
    assert config.read_timeout_s == 30


def test_is_frozen() -> None:
    config = StreamConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.buffer_ms = 10.0  # type: ignore[misc]


def test_env_variable_table() -> None:
    fields = {f.name for f in dataclasses.fields(StreamConfig)}
    assert set(ENV_VARIABLES) <= fields
    assert OURS == {
        "streaming": "TRIO_TTS_STREAM_STREAMING_ENABLED",
        "buffer_ms": "TRIO_TTS_STREAM_BUFFER_MS",
        "chunk_size": "TRIO_TTS_STREAM_CHUNK_SIZE",
        "max_buffer_s": "TRIO_TTS_STREAM_MAX_BUFFER",
        "rebuffer_ms": "TRIO_TTS_STREAM_REBUFFER_MS",
    }
    assert VOICEMODE == {
        "streaming": "VOICEMODE_STREAMING_ENABLED",
        "buffer_ms": "VOICEMODE_STREAM_BUFFER_MS",
        "chunk_size": "VOICEMODE_STREAM_CHUNK_SIZE",
        "max_buffer_s": "VOICEMODE_STREAM_MAX_BUFFER",
    }


# -- validation --------------------------------------------------------------------------

INVALID: list[tuple[str, Any]] = [
    ("streaming", 1),
    ("streaming", 0),
    ("streaming", "yes"),
    ("streaming", None),
    ("max_buffer_s", 0.049),
    ("max_buffer_s", 0),
    ("max_buffer_s", -1.0),
    ("max_buffer_s", 600.001),
    ("max_buffer_s", math.nan),
    ("max_buffer_s", math.inf),
    ("max_buffer_s", "2"),
    ("max_buffer_s", None),
    ("buffer_ms", -0.001),
    ("buffer_ms", 2000.001),  # above max_buffer_s * 1000 with the default 2.0 s
    ("buffer_ms", math.nan),
    ("buffer_ms", math.inf),
    ("buffer_ms", -math.inf),
    ("buffer_ms", "150"),
    ("rebuffer_ms", -1),
    ("rebuffer_ms", 2000.5),
    ("rebuffer_ms", math.nan),
    ("rebuffer_ms", "300"),
    ("chunk_size", 0),
    ("chunk_size", -4096),
    ("chunk_size", (1 << 20) + 1),
    ("chunk_size", 4096.0),
    ("chunk_size", "4096"),
    ("queue_blocks", 0),
    ("queue_blocks", 4097),
    ("queue_blocks", 1.5),
    ("queue_blocks", None),
    ("connect_timeout_s", 0),
    ("connect_timeout_s", -1.0),
    ("connect_timeout_s", math.nan),
    ("connect_timeout_s", math.inf),
    ("read_timeout_s", 0.0),
    ("read_timeout_s", -0.5),
    ("read_timeout_s", math.nan),
    ("read_timeout_s", math.inf),
    ("read_timeout_s", "30"),
    # bool is an int subclass, but True is not a number of anything.
    ("max_buffer_s", True),
    ("buffer_ms", True),
    ("buffer_ms", False),
    ("rebuffer_ms", False),
    ("chunk_size", True),
    ("queue_blocks", True),
    ("connect_timeout_s", True),
    ("read_timeout_s", True),
    ("fallback_limit_bytes", 4095),
    ("fallback_limit_bytes", 0),
    ("fallback_limit_bytes", 65536.0),
    ("fallback_limit_bytes", True),
]


@pytest.mark.parametrize(("field", "value"), INVALID, ids=repr)
def test_invalid_value_names_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        StreamConfig(**{field: value})
    message = str(info.value)
    assert message.startswith(f"{field}=")
    assert repr(value) in message


def test_config_error_is_a_library_error_and_a_value_error() -> None:
    with pytest.raises(TTSStreamError):
        StreamConfig(chunk_size=0)
    with pytest.raises(ValueError, match="chunk_size"):
        StreamConfig(chunk_size=0)


VALID_EDGES: list[dict[str, Any]] = [
    {"streaming": False},
    {"max_buffer_s": 0.05, "buffer_ms": 50.0, "rebuffer_ms": 50.0},
    {"max_buffer_s": 600},
    {"max_buffer_s": 1, "buffer_ms": 0, "rebuffer_ms": 1000},
    {"buffer_ms": 2000.0, "rebuffer_ms": 2000.0},
    {"chunk_size": 1},
    {"chunk_size": 1 << 20},
    {"queue_blocks": 1},
    {"queue_blocks": 4096},
    {"connect_timeout_s": 1e-6, "read_timeout_s": 1e-6},
    {"connect_timeout_s": 3600, "read_timeout_s": 3600},
    {"fallback_limit_bytes": 4096},
    {"fallback_limit_bytes": 1 << 34},
]


@pytest.mark.parametrize("values", VALID_EDGES, ids=repr)
def test_edge_values_are_accepted(values: dict[str, Any]) -> None:
    config = StreamConfig(**values)
    for name, value in values.items():
        assert getattr(config, name) == value


def test_buffer_limit_follows_max_buffer() -> None:
    StreamConfig(max_buffer_s=5.0, buffer_ms=5000.0, rebuffer_ms=5000.0)
    with pytest.raises(ConfigError) as info:
        StreamConfig(max_buffer_s=5.0, buffer_ms=5000.5)
    assert str(info.value) == (
        "buffer_ms=5000.5 is invalid: it must be a number of ms from 0 to what "
        "max_buffer_s=5 holds (5000); lower it or raise max_buffer_s"
    )
    with pytest.raises(ConfigError) as info:
        StreamConfig(max_buffer_s=0.25, buffer_ms=100.0, rebuffer_ms=251.0)
    assert str(info.value) == (
        "rebuffer_ms=251.0 is invalid: it must be a number of ms from 0 to what "
        "max_buffer_s=0.25 holds (250); lower it or raise max_buffer_s"
    )


@pytest.mark.parametrize("max_buffer_s", [0.29, 0.57, 1.1, 2.01, 4.02, 8.03, 16.06])
def test_buffer_of_exactly_max_buffer_is_accepted(max_buffer_s: float) -> None:
    # "from 0 to what max_buffer_s holds": the whole buffer is allowed. For most of these,
    # max_buffer_s * 1000 rounds below the decimal value (2.01 * 1000 == 2009.9999999999998),
    # and the message would then reject 2010 ms saying the limit is (2010).
    ms = round(max_buffer_s * 1000)
    config = StreamConfig(max_buffer_s=max_buffer_s, buffer_ms=float(ms), rebuffer_ms=float(ms))
    assert (config.buffer_ms, config.rebuffer_ms) == (ms, ms)
    config = StreamConfig.from_env(
        {"TRIO_TTS_STREAM_MAX_BUFFER": str(max_buffer_s), "TRIO_TTS_STREAM_BUFFER_MS": str(ms)}
    )
    assert config.buffer_ms == ms


def test_replace_validates_and_copies() -> None:
    config = StreamConfig()
    changed = config.replace(buffer_ms=400.0, streaming=False)
    assert (changed.buffer_ms, changed.streaming) == (400.0, False)
    assert (config.buffer_ms, config.streaming) == (150.0, True)
    with pytest.raises(ConfigError, match=r"^buffer_ms="):
        config.replace(buffer_ms=-1.0)


# -- from_env ----------------------------------------------------------------------------


def test_from_env_empty_gives_defaults() -> None:
    assert StreamConfig.from_env({}) == StreamConfig()


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for names in ENV_VARIABLES.values():
        for name in names:
            if name is not None:
                monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRIO_TTS_STREAM_BUFFER_MS", "420")
    assert StreamConfig.from_env().buffer_ms == 420.0
    # An explicit mapping replaces os.environ entirely.
    assert StreamConfig.from_env({}).buffer_ms == 150.0


OUR_VALUES: list[tuple[str, str, Any]] = [
    ("streaming", "false", False),
    ("buffer_ms", "250", 250.0),
    ("buffer_ms", "12.5", 12.5),
    ("chunk_size", "1024", 1024),
    ("max_buffer_s", "5", 5.0),
    ("max_buffer_s", "0.5", 0.5),
    ("rebuffer_ms", "75", 75.0),
]


@pytest.mark.parametrize(("field", "raw", "value"), OUR_VALUES, ids=repr)
def test_from_env_our_variables(field: str, raw: str, value: Any) -> None:
    config = StreamConfig.from_env({OURS[field]: raw})
    assert getattr(config, field) == value
    assert type(getattr(config, field)) is type(value)
    others = {f: getattr(StreamConfig(), f) for f in ENV_VARIABLES if f != field}
    assert {f: getattr(config, f) for f in others} == others


@pytest.mark.parametrize(("field", "raw", "value"), OUR_VALUES[:-1], ids=repr)
def test_from_env_voicemode_variables(field: str, raw: str, value: Any) -> None:
    config = StreamConfig.from_env({VOICEMODE[field]: raw})
    assert getattr(config, field) == value


def test_from_env_all_at_once() -> None:
    config = StreamConfig.from_env(
        {
            "TRIO_TTS_STREAM_STREAMING_ENABLED": "0",
            "TRIO_TTS_STREAM_BUFFER_MS": "500",
            "TRIO_TTS_STREAM_CHUNK_SIZE": "8192",
            "TRIO_TTS_STREAM_MAX_BUFFER": "10",
            "TRIO_TTS_STREAM_REBUFFER_MS": "800",
            "UNRELATED": "x",
        }
    )
    assert config == StreamConfig(
        streaming=False, buffer_ms=500, chunk_size=8192, max_buffer_s=10, rebuffer_ms=800
    )


@pytest.mark.parametrize("field", sorted(VOICEMODE))
def test_ours_win_over_voicemode(field: str) -> None:
    ours, theirs = {
        "streaming": ("true", "false"),
        "buffer_ms": ("100", "900"),
        "chunk_size": ("2048", "512"),
        "max_buffer_s": ("3", "7"),
    }[field]
    config = StreamConfig.from_env({OURS[field]: ours, VOICEMODE[field]: theirs})
    assert config == StreamConfig.from_env({OURS[field]: ours})
    assert config != StreamConfig.from_env({VOICEMODE[field]: theirs})


def test_ours_win_even_when_voicemode_is_unusable() -> None:
    config = StreamConfig.from_env(
        {"TRIO_TTS_STREAM_BUFFER_MS": "100", "VOICEMODE_STREAM_BUFFER_MS": "garbage"}
    )
    assert config.buffer_ms == 100.0


@pytest.mark.parametrize("blank", ["", " ", "\t\n"], ids=repr)
def test_blank_variables_are_ignored(blank: str) -> None:
    assert StreamConfig.from_env({"TRIO_TTS_STREAM_BUFFER_MS": blank}) == StreamConfig()
    config = StreamConfig.from_env(
        {"TRIO_TTS_STREAM_BUFFER_MS": blank, "VOICEMODE_STREAM_BUFFER_MS": "250"}
    )
    assert config.buffer_ms == 250.0


def test_values_are_stripped() -> None:
    config = StreamConfig.from_env(
        {"TRIO_TTS_STREAM_BUFFER_MS": "  250 ", "TRIO_TTS_STREAM_STREAMING_ENABLED": " Off\n"}
    )
    assert (config.buffer_ms, config.streaming) == (250.0, False)


def test_overrides_win_over_both() -> None:
    env = {"TRIO_TTS_STREAM_BUFFER_MS": "100", "VOICEMODE_STREAM_BUFFER_MS": "900"}
    config = StreamConfig.from_env(env, buffer_ms=333.0, chunk_size=100)
    assert (config.buffer_ms, config.chunk_size) == (333.0, 100)


@pytest.mark.parametrize("name", ["TRIO_TTS_STREAM_BUFFER_MS", "VOICEMODE_STREAM_BUFFER_MS"])
def test_override_wins_over_an_unusable_variable(name: str) -> None:
    # Explicit arguments have the highest precedence, so a variable they replace is
    # never used and must not be able to fail the call (just as an unusable voicemode
    # variable is ignored when ours is set).
    config = StreamConfig.from_env({name: "garbage"}, buffer_ms=200.0)
    assert config.buffer_ms == 200.0


@pytest.mark.parametrize(
    ("field", "value"),
    [("streaming", False), ("chunk_size", 512), ("max_buffer_s", 3.0), ("rebuffer_ms", 10.0)],
)
def test_override_skips_both_variables_of_its_field(field: str, value: Any) -> None:
    env = {name: "garbage" for name in ENV_VARIABLES[field] if name is not None}
    assert StreamConfig.from_env(env, **{field: value}) == StreamConfig(**{field: value})
    # Without the override the same variables are parsed, and fail.
    with pytest.raises(ConfigError, match=OURS[field]):
        StreamConfig.from_env(env)


def test_none_override_does_not_skip_the_variable() -> None:
    with pytest.raises(ConfigError, match="TRIO_TTS_STREAM_BUFFER_MS"):
        StreamConfig.from_env({"TRIO_TTS_STREAM_BUFFER_MS": "garbage"}, buffer_ms=None)


def test_override_skips_only_its_own_variable() -> None:
    with pytest.raises(ConfigError, match="TRIO_TTS_STREAM_CHUNK_SIZE"):
        StreamConfig.from_env(
            {"TRIO_TTS_STREAM_BUFFER_MS": "garbage", "TRIO_TTS_STREAM_CHUNK_SIZE": "big"},
            buffer_ms=100.0,
        )


@pytest.mark.parametrize(("field", "value"), [("buffer_ms", True), ("chunk_size", False)])
def test_bool_override_of_a_numeric_field_is_rejected(field: str, value: bool) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}={value!r} "):
        StreamConfig.from_env({OURS[field]: "100"}, **{field: value})


def test_none_overrides_are_ignored() -> None:
    env = {"TRIO_TTS_STREAM_BUFFER_MS": "100", "VOICEMODE_STREAM_CHUNK_SIZE": "512"}
    config = StreamConfig.from_env(
        env, buffer_ms=None, chunk_size=None, streaming=None, queue_blocks=None
    )
    assert config == StreamConfig(buffer_ms=100.0, chunk_size=512)


def test_overrides_of_fields_without_variables() -> None:
    config = StreamConfig.from_env({}, queue_blocks=4, read_timeout_s=2.5)
    assert (config.queue_blocks, config.read_timeout_s) == (4, 2.5)


def test_unknown_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no_such_option"):
        StreamConfig.from_env({}, no_such_option=1)


def test_from_env_does_not_modify_the_mapping() -> None:
    env = {"TRIO_TTS_STREAM_BUFFER_MS": " 250 "}
    StreamConfig.from_env(env, chunk_size=10)
    assert env == {"TRIO_TTS_STREAM_BUFFER_MS": " 250 "}


UNPARSABLE: list[tuple[str, str, str]] = [
    ("TRIO_TTS_STREAM_BUFFER_MS", "abc", "a number"),
    ("TRIO_TTS_STREAM_BUFFER_MS", "150ms", "a number"),
    ("VOICEMODE_STREAM_BUFFER_MS", "1,5", "a number"),
    ("TRIO_TTS_STREAM_CHUNK_SIZE", "4096.0", "a whole number"),
    ("TRIO_TTS_STREAM_CHUNK_SIZE", "4k", "a whole number"),
    ("VOICEMODE_STREAM_CHUNK_SIZE", "lots", "a whole number"),
    ("TRIO_TTS_STREAM_MAX_BUFFER", "2s", "a number"),
    ("VOICEMODE_STREAM_MAX_BUFFER", "two", "a number"),
    ("TRIO_TTS_STREAM_REBUFFER_MS", "x", "a number"),
    ("TRIO_TTS_STREAM_STREAMING_ENABLED", "maybe", "true or false"),
    ("TRIO_TTS_STREAM_STREAMING_ENABLED", "2", "true or false"),
    ("VOICEMODE_STREAMING_ENABLED", "enabled", "true or false"),
]


@pytest.mark.parametrize(("name", "raw", "want"), UNPARSABLE, ids=repr)
def test_unparsable_variable_names_the_variable(name: str, raw: str, want: str) -> None:
    with pytest.raises(ConfigError) as info:
        StreamConfig.from_env({name: raw})
    message = str(info.value)
    assert name in message
    assert repr(raw) in message
    assert want in message


INVALID_ENV: list[tuple[str, str, str]] = [
    ("TRIO_TTS_STREAM_BUFFER_MS", "-5", "buffer_ms"),
    ("TRIO_TTS_STREAM_BUFFER_MS", "nan", "buffer_ms"),
    ("TRIO_TTS_STREAM_BUFFER_MS", "inf", "buffer_ms"),
    ("TRIO_TTS_STREAM_BUFFER_MS", "2500", "buffer_ms"),
    ("VOICEMODE_STREAM_BUFFER_MS", "-5", "buffer_ms"),
    ("TRIO_TTS_STREAM_CHUNK_SIZE", "0", "chunk_size"),
    ("VOICEMODE_STREAM_CHUNK_SIZE", "99999999", "chunk_size"),
    ("TRIO_TTS_STREAM_MAX_BUFFER", "0", "max_buffer_s"),
    ("VOICEMODE_STREAM_MAX_BUFFER", "1000", "max_buffer_s"),
    ("TRIO_TTS_STREAM_REBUFFER_MS", "-1", "rebuffer_ms"),
]


@pytest.mark.parametrize(("name", "raw", "field"), INVALID_ENV, ids=repr)
def test_invalid_variable_names_the_variable_and_field(name: str, raw: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        StreamConfig.from_env({name: raw})
    message = str(info.value)
    assert name in message
    assert repr(raw) in message
    assert f"{field}=" in message


def test_invalid_ours_is_named_not_voicemodes() -> None:
    with pytest.raises(ConfigError) as info:
        StreamConfig.from_env(
            {"TRIO_TTS_STREAM_BUFFER_MS": "-5", "VOICEMODE_STREAM_BUFFER_MS": "100"}
        )
    assert "TRIO_TTS_STREAM_BUFFER_MS" in str(info.value)
    assert "VOICEMODE" not in str(info.value)


def test_env_value_made_invalid_by_an_override_still_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        StreamConfig.from_env({"TRIO_TTS_STREAM_BUFFER_MS": "100"}, max_buffer_s=0.05)
    assert "TRIO_TTS_STREAM_BUFFER_MS" in str(info.value)
    assert "buffer_ms=" in str(info.value)


def test_max_buffer_variable_too_small_for_the_default_buffer() -> None:
    # The default buffer_ms (150) does not fit in 0.1 s: the message names max_buffer_s
    # and its value, which is what the user set.
    with pytest.raises(ConfigError, match=r"^buffer_ms=150\.0 .*max_buffer_s=0\.1 holds \(100\)"):
        StreamConfig.from_env({"TRIO_TTS_STREAM_MAX_BUFFER": "0.1"})


def test_invalid_override_does_not_blame_the_environment() -> None:
    with pytest.raises(ConfigError) as info:
        StreamConfig.from_env({"TRIO_TTS_STREAM_BUFFER_MS": "100"}, buffer_ms=-1.0)
    message = str(info.value)
    assert message.startswith("buffer_ms=-1.0")
    assert "TRIO_TTS_STREAM" not in message


def test_invalid_override_of_a_field_without_variable() -> None:
    with pytest.raises(ConfigError, match=r"^queue_blocks=0 "):
        StreamConfig.from_env({"TRIO_TTS_STREAM_BUFFER_MS": "100"}, queue_blocks=0)


@pytest.mark.parametrize(
    "raw", ["1", "true", "TRUE", "True", "yes", "YES", "on", "On", " true "], ids=repr
)
def test_true_spellings(raw: str) -> None:
    for name in ("TRIO_TTS_STREAM_STREAMING_ENABLED", "VOICEMODE_STREAMING_ENABLED"):
        assert StreamConfig.from_env({name: raw}).streaming is True
    # Default is True: make sure a true value really overrides a false one below it.
    config = StreamConfig.from_env(
        {"TRIO_TTS_STREAM_STREAMING_ENABLED": raw, "VOICEMODE_STREAMING_ENABLED": "false"}
    )
    assert config.streaming is True


@pytest.mark.parametrize("raw", ["0", "false", "FALSE", "False", "no", "NO", "off", "OFF"])
def test_false_spellings(raw: str) -> None:
    for name in ("TRIO_TTS_STREAM_STREAMING_ENABLED", "VOICEMODE_STREAMING_ENABLED"):
        assert StreamConfig.from_env({name: raw}).streaming is False


@pytest.mark.parametrize("raw", ["y", "n", "t", "f", "10", "-1", "truee", "enable"])
def test_other_boolean_spellings_are_rejected(raw: str) -> None:
    with pytest.raises(ConfigError, match="TRIO_TTS_STREAM_STREAMING_ENABLED"):
        StreamConfig.from_env({"TRIO_TTS_STREAM_STREAMING_ENABLED": raw})
