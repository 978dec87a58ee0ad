"""A deterministic, speech-like tone synthesizer: the test server's ``tone`` engine.

The output is not speech, but it has the properties tests and benchmarks care about:

* **Deterministic**: the samples depend only on the arguments. Pitches come from
  :func:`zlib.crc32` of the characters (never Python's randomised ``hash()``), so the same
  call gives the same bytes in every process and Python version.
* **Speech-like**: the text is laid out as *syllables* (runs of up to three letters of a
  word), each a harmonic tone with its own pitch and a smooth amplitude bump; spaces and
  punctuation become short quieter gaps. Amplitude and phase are continuous everywhere, so
  there are no clicks.
* **Never silent at its start**: the first syllable starts at full amplitude on the first
  sample (a cosine at phase 0), so the start of the audio can be found after any leading
  silence as the first non-zero sample.
* **Length proportional to the text**: :data:`MS_PER_CHAR` ms per character at speed 1.0
  (at least :data:`MIN_DURATION_MS`), divided by ``speed``; see :func:`tone_frames`.
* **Peak about half of full scale** (:data:`PEAK`), never clipping; the last 10 ms fade
  out.

Synthesis is vectorised numpy, computed in cache-sized blocks: ten minutes of audio take
about 0.4 s on an idle machine. :func:`tone_blocks` yields the same samples lazily, a
block at a time, so a server can start streaming a long text at once.
"""

from __future__ import annotations

import math
import string
import zlib
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

__all__ = [
    "MIN_DURATION_MS",
    "MS_PER_CHAR",
    "PEAK",
    "VOICES",
    "synthesize_tone",
    "tone_blocks",
    "tone_frames",
]

MS_PER_CHAR = 65
"""Milliseconds of audio per character of text at speed 1.0."""

MIN_DURATION_MS = 300
"""Shortest output at speed 1.0, in milliseconds (also for empty text)."""

PEAK = 0.5
"""Peak amplitude as a fraction of full scale."""

_VOICE_PITCH_HZ: dict[str, float] = {
    "alloy": 165.0,
    "ash": 120.0,
    "ballad": 140.0,
    "coral": 210.0,
    "echo": 130.0,
    "fable": 175.0,
    "onyx": 100.0,
    "nova": 230.0,
    "sage": 190.0,
    "shimmer": 250.0,
    "verse": 150.0,
}

VOICES: tuple[str, ...] = tuple(_VOICE_PITCH_HZ)
"""The OpenAI voice names the tone engine knows; each has its own base pitch."""

# Envelope levels (fractions of PEAK): syllables rise from _EDGE to 1.0 and back, word gaps
# dip from _EDGE to _GAP and back. Both meet at _EDGE, so the envelope is continuous.
_EDGE = 0.45
_GAP = 0.08
# Harmonic amplitudes of the voiced tone (normalised so their sum is 1: no clipping).
_HARMONICS = (1.0, 0.55, 0.3, 0.15)
# Pitch of a syllable is base * 2**(x) with x in [-_PITCH_SPREAD, +_PITCH_SPREAD] octaves.
_PITCH_SPREAD = 0.35
# Each syllable's pitch falls by this fraction from its start to its end (declination).
_GLIDE = 0.08
_GAP_CHARS = frozenset(string.whitespace + string.punctuation)
_MAX_SYLLABLE = 3
_BLOCK = 32768
_FADE_OUT_MS = 10


def tone_frames(text: str, *, speed: float = 1.0, sample_rate: int = 24000) -> int:
    """Number of frames :func:`synthesize_tone` returns for these arguments.

    ``max(MIN_DURATION_MS, MS_PER_CHAR * len(text)) / speed`` milliseconds, rounded to
    whole frames.
    """
    _check(speed, sample_rate)
    ms = max(MIN_DURATION_MS, MS_PER_CHAR * len(text))
    return max(1, round(ms * sample_rate / (1000.0 * speed)))


def synthesize_tone(
    text: str, *, voice: str = "alloy", speed: float = 1.0, sample_rate: int = 24000
) -> npt.NDArray[np.int16]:
    """Synthesize a deterministic speech-like tone for ``text``.

    Args:
        text: The text to "speak"; only its characters and length matter.
        voice: One of :data:`VOICES`; sets the base pitch.
        speed: Playback speed; the duration is divided by it (pitch is unchanged).
        sample_rate: Output rate in Hz.

    Returns:
        Mono int16 samples, ``tone_frames(text, speed=speed, sample_rate=sample_rate)`` of
        them. The first sample is clearly non-zero.

    Raises:
        ValueError: If ``voice`` is unknown, or ``speed`` or ``sample_rate`` is not positive.
    """
    layout = _Layout(text, voice, speed, sample_rate)
    out = np.empty(layout.frames, dtype=np.int16)
    for b0 in range(0, layout.frames, _BLOCK):
        b1 = min(b0 + _BLOCK, layout.frames)
        out[b0:b1] = layout.render(b0, b1)
    return out


def tone_blocks(
    text: str,
    *,
    voice: str = "alloy",
    speed: float = 1.0,
    sample_rate: int = 24000,
    block_frames: int = 24000,
) -> Iterator[npt.NDArray[np.int16]]:
    """The samples of :func:`synthesize_tone`, computed lazily in consecutive blocks.

    Each block is computed when it is asked for, so the first one is ready at once
    however long the text: this is how the test server streams long inputs. The
    concatenated blocks equal ``synthesize_tone(text, ...)`` exactly.

    Args:
        text: As for :func:`synthesize_tone`.
        voice: As for :func:`synthesize_tone`.
        speed: As for :func:`synthesize_tone`.
        sample_rate: As for :func:`synthesize_tone`.
        block_frames: Frames per block (the last block may be shorter).

    Raises:
        ValueError: At once (not on iteration) if an argument is invalid.
    """
    if block_frames < 1:
        raise ValueError(f"block_frames must be >= 1, got {block_frames!r}")
    layout = _Layout(text, voice, speed, sample_rate)
    return (
        layout.render(b0, min(b0 + block_frames, layout.frames))
        for b0 in range(0, layout.frames, block_frames)
    )


class _Layout:
    """The text laid out in time: segment boundaries, pitches and start phases.

    Computing it costs O(characters); :meth:`render` then computes any range of samples
    independently of the others, which is what makes lazy, blockwise synthesis exact.
    """

    def __init__(self, text: str, voice: str, speed: float, sample_rate: int) -> None:
        try:
            base_hz = _VOICE_PITCH_HZ[voice]
        except KeyError:
            known = ", ".join(VOICES)
            raise ValueError(f"unknown voice {voice!r}; known voices: {known}") from None
        n = tone_frames(text, speed=speed, sample_rate=sample_rate)
        self.frames = n

        # Segments: (is_gap, first char index, end char index, pitch), placed in time in
        # proportion to their characters.
        segments = _segments(text, base_hz)
        n_chars = max(1, len(text))
        starts = np.array(
            [round(first * n / n_chars) for _, first, _, _ in segments] + [n], dtype=np.int64
        )
        lengths = np.diff(starts)
        keep = lengths > 0  # very short texts at high speed: drop segments with no samples
        self._start = starts[:-1][keep]
        self._len = lengths[keep]
        self._is_gap = np.array([seg[0] for seg in segments], dtype=bool)[keep]
        self._pitch = np.array([seg[3] for seg in segments], dtype=np.float64)[keep]

        # Phase at each segment start: the running sum of the per-sample phase steps of
        # all earlier segments, in closed form (see _phase_in_segment), modulo 2 pi.
        self._w = 2.0 * np.pi / sample_rate
        totals = _phase_in_segment(self._len.astype(np.float64), self._len, self._pitch, self._w)
        self._phase0 = np.concatenate(([0.0], np.cumsum(totals)[:-1]))
        np.remainder(self._phase0, 2.0 * np.pi, out=self._phase0)
        self._fade = max(1, min(n // 2, sample_rate * _FADE_OUT_MS // 1000))

    def render(self, b0: int, b1: int) -> npt.NDArray[np.int16]:
        """Samples ``[b0, b1)``, computed in cache-sized pieces."""
        out = np.empty(b1 - b0, dtype=np.int16)
        for p0 in range(b0, b1, _BLOCK):
            p1 = min(p0 + _BLOCK, b1)
            out[p0 - b0 : p1 - b0] = self._render(p0, p1)
        return out

    def _render(self, b0: int, b1: int) -> npt.NDArray[np.float64]:
        n = self.frames
        start, length_of = self._start, self._len
        # Segment index of every sample, from the segments overlapping [b0, b1).
        s0 = int(np.searchsorted(start, b0, side="right")) - 1
        s1 = int(np.searchsorted(start, b1 - 1, side="right"))
        counts = np.minimum(start[s0:s1] + length_of[s0:s1], b1) - np.maximum(start[s0:s1], b0)
        seg = np.repeat(np.arange(s0, s1), counts)
        idx = np.arange(b0, b1)
        j = (idx - start[seg]).astype(np.float64)  # sample index inside its segment
        length = length_of[seg]
        u = j / length
        bump = 4.0 * u * (1.0 - u)  # 0 -> 1 -> 0 across the segment
        # Envelope: syllables bump up to 1, gaps dip to _GAP, both continuous at _EDGE. The
        # first segment instead falls from 1 to _EDGE: full amplitude at sample 0.
        env = np.where(
            self._is_gap[seg], _EDGE - (_EDGE - _GAP) * bump, _EDGE + (1.0 - _EDGE) * bump
        )
        if s0 == 0:
            first = seg == 0
            env[first] = _EDGE + (1.0 - _EDGE) * (1.0 - u[first] ** 2)
        if b1 > n - self._fade:  # fade out over the last few ms: no click at the end
            tail = idx >= n - self._fade
            env[tail] *= (n - idx[tail]) / self._fade
        phase = self._phase0[seg] + _phase_in_segment(j, length, self._pitch[seg], self._w)
        # Harmonics by the recurrence cos(k x) = 2 cos(x) cos((k-1) x) - cos((k-2) x): one
        # cos() call instead of one per harmonic.
        c1 = np.cos(phase)
        wave = _HARMONICS[0] * c1
        prev, cur = np.ones_like(c1), c1
        for weight in _HARMONICS[1:]:
            prev, cur = cur, 2.0 * c1 * cur - prev
            wave += weight * cur
        wave *= env
        wave *= PEAK * 32767.0 / sum(_HARMONICS)
        rounded: npt.NDArray[np.float64] = np.rint(wave)
        return rounded


def _phase_in_segment(
    j: npt.NDArray[np.float64],
    length: npt.NDArray[np.int64],
    pitch: npt.NDArray[np.float64],
    w: float,
) -> npt.NDArray[np.float64]:
    """Phase reached after ``j`` samples of a segment (closed form of a running sum).

    Sample ``k`` of a segment of ``length`` samples has frequency
    ``pitch * (1 + _GLIDE * (0.5 - k / length))``: a gentle fall. The phase at sample ``j``
    is the sum of ``w * frequency`` over ``k < j``, so the waveform stays continuous across
    segments whatever their pitches.
    """
    return pitch * w * (j * (1.0 + 0.5 * _GLIDE) - _GLIDE * j * (j - 1.0) / (2.0 * length))


def _check(speed: float, sample_rate: int) -> None:
    if not (isinstance(speed, (int, float)) and math.isfinite(speed) and speed > 0):
        raise ValueError(f"speed must be a positive number, got {speed!r}")
    if not (isinstance(sample_rate, int) and sample_rate > 0):
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")


def _pitch(syllable: str, base_hz: float) -> float:
    """Deterministic pitch of one syllable: the base pitch moved by up to +-0.35 octave."""
    code = zlib.crc32(syllable.lower().encode("utf-8", "surrogatepass"))
    octaves = (code % 10007) / 10006.0 * 2.0 * _PITCH_SPREAD - _PITCH_SPREAD
    return base_hz * math.pow(2.0, octaves)


def _segments(text: str, base_hz: float) -> list[tuple[bool, int, int, float]]:
    """Split ``text`` into syllables and gaps: ``(is_gap, first, end, pitch_hz)``.

    A gap is one space or punctuation character (a run of them is several gaps); a word
    is cut into syllables of up to three characters (a lone last character joins the
    previous syllable). The first segment is always voiced, so audio never starts quiet.
    Gaps keep the pitch of the syllable before them.
    """
    if not text:
        return [(False, 0, 1, _pitch("", base_hz))]
    segments: list[tuple[bool, int, int, float]] = []
    i = 0
    n = len(text)
    last_pitch = base_hz
    while i < n:
        if text[i] in _GAP_CHARS and i > 0:
            segments.append((True, i, i + 1, last_pitch))
            i += 1
            continue
        end = i + 1
        while end < n and text[end] not in _GAP_CHARS:
            end += 1
        # The word text[i:end] (for i == 0 it may start with a gap character: voiced anyway).
        pos = i
        while pos < end:
            stop = min(pos + _MAX_SYLLABLE, end)
            if end - stop == 1:
                stop = end
            last_pitch = _pitch(text[pos:stop], base_hz)
            segments.append((False, pos, stop, last_pitch))
            pos = stop
        i = end
    return segments
