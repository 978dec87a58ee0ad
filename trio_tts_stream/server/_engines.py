"""The synthesizers behind the local server: ``tone`` and ``espeak``.

An engine (:data:`ENGINES`) makes int16 mono samples at :data:`SAMPLE_RATE` in two ways:
``stream``, for the server, an async generator of blocks (and the total number of frames
if it is known up front), and ``render``, for :func:`~._bodies.render_chunks` and
:meth:`SpeechServer.render`, in the calling thread. Both give the same samples, so a
rendered body is exactly what the server sends.

* ``tone`` computes its blocks lazily in the connection's task, a second of audio
  (under a millisecond of work) at a time, and knows its length up front.
* ``espeak`` synthesizes in a worker thread (:mod:`._espeak`: one synthesis at a time
  per process, at several hundred times real time) into an unbounded queue: a paced
  response must not hold up the synthesis of the others, which would wait for it. The
  memory ceiling is the whole audio of the responses in progress, about 2.9 MB per
  minute of audio. The length is known only at the end, and only ``wav_exact_sizes``
  needs it: with that option an ``espeak`` response is synthesized in full before its
  first byte; otherwise pieces go out as the synthesis makes them. A response whose
  client goes away aborts its synthesis (within a block of espeak-ng, about a
  millisecond), which frees espeak-ng for the next one.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Iterable, Iterator
from contextlib import aclosing
from typing import Protocol

import numpy as np
import numpy.typing as npt
import outcome
import trio
import trio.testing

from . import _espeak
from ._tone import VOICES, tone_blocks, tone_frames

__all__ = ["ENGINES", "SAMPLE_RATE", "Samples"]

SAMPLE_RATE = 24000
"""Sample rate of every response, as OpenAI's ``pcm`` (s16le, mono)."""


Samples = npt.NDArray[np.int16]


class _Engine(Protocol):
    """A synthesizer: int16 mono samples for ``(text, voice, speed, sample_rate)``.

    The methods check their arguments when called (``ValueError``), before synthesizing.
    """

    @property
    def name(self) -> str: ...

    @property
    def voices(self) -> tuple[str, ...]: ...

    def check(self) -> None:
        """Raise :class:`ConfigError` (saying what to install) if the engine cannot run."""

    def render(
        self, text: str, voice: str, speed: float, sample_rate: int
    ) -> tuple[int, Iterator[Samples]]:
        """``(total frames, the samples in blocks)``, made in the calling thread."""

    def stream(
        self, text: str, voice: str, speed: float, sample_rate: int
    ) -> tuple[int | None, AsyncGenerator[Samples, None]]:
        """``(total frames if known up front, the same samples in blocks as they are made)``.

        Close the generator when done with it (``aclosing``): that ends the synthesis.
        """


class _ToneEngine:
    """:func:`~trio_tts_stream.server.synthesize_tone`, computed a second at a time."""

    name = "tone"
    voices: tuple[str, ...] = VOICES

    def check(self) -> None:
        pass

    def render(
        self, text: str, voice: str, speed: float, sample_rate: int
    ) -> tuple[int, Iterator[Samples]]:
        frames = tone_frames(text, speed=speed, sample_rate=sample_rate)
        return frames, tone_blocks(text, voice=voice, speed=speed, sample_rate=sample_rate)

    def stream(
        self, text: str, voice: str, speed: float, sample_rate: int
    ) -> tuple[int | None, AsyncGenerator[Samples, None]]:
        frames, blocks = self.render(text, voice, speed, sample_rate)
        return frames, _async_blocks(blocks)


class _EspeakEngine:
    """espeak-ng (:mod:`._espeak`, the ``espeak`` extra)."""

    name = "espeak"
    voices: tuple[str, ...] = _espeak.VOICES

    def check(self) -> None:
        _espeak.EspeakEngine()

    def render(
        self, text: str, voice: str, speed: float, sample_rate: int
    ) -> tuple[int, Iterator[Samples]]:
        samples = _espeak.EspeakEngine().synthesize_all(
            text, voice=voice, speed=speed, sample_rate=sample_rate
        )
        return len(samples), iter((samples,))

    def stream(
        self, text: str, voice: str, speed: float, sample_rate: int
    ) -> tuple[int | None, AsyncGenerator[Samples, None]]:
        # Unbounded: a synthesis waiting for a slow (or paced) reader would hold
        # espeak-ng's process-wide lock, and every other request would wait for it.
        blocks = _espeak.EspeakEngine().synthesize_async(
            text, voice=voice, speed=speed, sample_rate=sample_rate, max_buffered_blocks=None
        )
        return None, _busy_waiting(blocks) if _autojump_clock() else blocks


async def _async_blocks(blocks: Iterable[Samples]) -> AsyncGenerator[Samples, None]:
    for block in blocks:
        yield block


def _autojump_clock() -> bool:
    """Whether this trio run's clock jumps ahead when every task is waiting.

    As pytest-trio's ``autojump_clock`` does. It cannot see a worker thread working.
    """
    clock = trio.lowlevel.current_clock()
    return isinstance(clock, trio.testing.MockClock) and clock.autojump_threshold < math.inf


async def _busy_waiting(blocks: AsyncGenerator[Samples, None]) -> AsyncGenerator[Samples, None]:
    """``blocks``, waited for without letting an autojump clock jump.

    While the synthesis thread works, every task may be waiting, and an autojump clock
    would jump to the next deadline (a client's timeout, say): synthesis would take
    virtual time, at random. Instead this keeps the run busy (zero-length sleeps) while
    it waits for a block, so that synthesis takes no virtual time, as with ``tone``, and
    the server's timing is exact in virtual time. Costs CPU while waiting: for tests only.
    """
    async with aclosing(blocks):
        while (block := await _next_busy_waiting(blocks)) is not None:
            yield block


async def _next_busy_waiting(blocks: AsyncGenerator[Samples, None]) -> Samples | None:
    """The next block (``None`` at the end), checkpointing until it is there."""
    result: list[outcome.Outcome[Samples | None]] = []

    async def receive() -> None:
        result.append(await outcome.acapture(anext, blocks, None))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        while not result:  # busy on purpose: waiting on an Event would let time jump
            await trio.lowlevel.checkpoint()
    return result[0].unwrap()


_ENGINES: dict[str, _Engine] = {"tone": _ToneEngine(), "espeak": _EspeakEngine()}

ENGINES: tuple[str, ...] = tuple(_ENGINES)
"""The synthesizers: ``"tone"`` (always there) and ``"espeak"`` (needs the ``espeak``
extra; see :func:`~trio_tts_stream.server.espeak_available`)."""
