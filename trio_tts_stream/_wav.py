"""The one WAV header writer of the package (the file sink and the bundled server)."""

from __future__ import annotations

import struct

__all__ = ["WAV_HEADER_BYTES", "wav_header"]

#: Size of the canonical header :func:`wav_header` writes.
WAV_HEADER_BYTES = 44

_UNKNOWN = 0xFFFFFFFF


def wav_header(
    sample_rate: int,
    channels: int = 1,
    *,
    dtype: str = "int16",
    data_bytes: int | None = None,
) -> bytes:
    """A 44-byte canonical RIFF/WAVE header.

    Args:
        sample_rate: Frames per second.
        channels: Samples per frame.
        dtype: ``"int16"`` (PCM, tag 1) or ``"float32"`` (IEEE float, tag 3).
        data_bytes: Size of the data chunk, or ``None`` for a streaming header whose RIFF
            and data sizes are both ``0xFFFFFFFF`` (unknown length, as streaming TTS
            servers send). Sizes past 4 GiB are capped at ``0xFFFFFFFF``.

    Raises:
        ValueError: ``dtype`` is neither ``"int16"`` nor ``"float32"``.
    """
    if dtype == "int16":
        tag, width = 1, 2
    elif dtype == "float32":
        tag, width = 3, 4
    else:
        raise ValueError(f"dtype must be 'int16' or 'float32', not {dtype!r}")
    if data_bytes is None:
        riff_size = data_size = _UNKNOWN
    else:
        riff_size = min(36 + data_bytes, _UNKNOWN)
        data_size = min(data_bytes, _UNKNOWN)
    block_align = channels * width
    return (
        struct.pack("<4sI4s", b"RIFF", riff_size, b"WAVE")
        + struct.pack(
            "<4sIHHIIHH",
            b"fmt ",
            16,
            tag,
            channels,
            sample_rate,
            sample_rate * block_align,
            block_align,
            8 * width,
        )
        + struct.pack("<4sI", b"data", data_size)
    )
