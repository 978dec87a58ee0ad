"""Time-scale modification of speech without changing its pitch: pure, streaming numpy.

Theory of operation
-------------------
A jitter buffer that starts at once needs to play speech a few percent slower while its
level is below target (and, optionally, a little faster to shed surplus latency). This
module does it the way WebRTC's NetEQ does (its *preemptive expand* and *accelerate*
operations), an overlap-add method of the WSOLA family applied only where it is needed:

* **Lengthen** by one pitch period ``P`` at input position ``t``: after ``x[:t]`` the
  output plays a cross-fade from ``x[t:t+P]`` (fading out) to ``x[t-P:t]`` (fading in),
  then carries on with ``x[t:]``. The fade starts on ``x[t]`` (the natural successor of
  ``x[t-1]``) and ends on ``x[t-1]`` (the natural predecessor of ``x[t]``), so both joins
  are continuous; in between, two segments one period apart are mixed, so the waveform,
  and with it the pitch, stays what it was. ``P`` frames are added.
* **Shorten** by ``P`` at ``t``: after ``x[:t]``, a cross-fade from ``x[t:t+P]`` to
  ``x[t+P:t+2P]``, then ``x[t+2P:]``. ``P`` frames are removed.
* ``P`` is the lag (between ``min_pitch_hz`` and ``max_pitch_hz``) with the highest
  normalised correlation around ``t``, found on a decimated copy and refined at full
  rate. A point is used only if that correlation is at least ``threshold`` (voiced
  speech, a tone), or if the signal there is near silence (where any lag is inaudible);
  otherwise the search moves on by a few ms.
* **Rate**: each block adds ``(ratio - 1) * len(block)`` to a *credit* of frames to add
  (negative: to remove); an operation is done when the credit covers it. So the factor
  sets how *often* periods are repeated, and changing it (smoothly, by the caller) can
  never itself cause a discontinuity. The credit is bounded (two periods), so audio with
  no usable point does not store up a burst of operations for later.
* **Exact otherwise**: outside the cross-faded periods the output *is* the input, sample
  for sample. With ``ratio == 1`` and no credit left the stretcher holds nothing back and
  passes blocks straight through; while it is active (the credit covers a period) it
  holds back a look-ahead of one longest period (two while shortening), released by
  :meth:`TimeStretcher.flush` or as soon as it is inactive again.

Why our own: see docs/design.rst (the streaming libraries add a frame of latency and
never pass audio through unchanged at factor 1; the exact ones are offline).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["TimeStretcher"]

Frames = npt.NDArray[np.float32]


class TimeStretcher:
    """Streaming pitch-period stretcher (see the module docstring).

    Args:
        sample_rate: Frames per second.
        channels: Samples per frame.
        min_pitch_hz: Lowest pitch looked for (the longest period).
        max_pitch_hz: Highest pitch looked for (the shortest period).
        threshold: Least normalised correlation at which a period is repeated or cut.
        silence_dbfs: Below this RMS level the audio counts as silence (any lag will do).
    """

    def __init__(
        self,
        sample_rate: int,
        channels: int = 1,
        *,
        min_pitch_hz: float = 75.0,
        max_pitch_hz: float = 400.0,
        threshold: float = 0.85,
        silence_dbfs: float = -50.0,
    ) -> None:
        if not 20 <= min_pitch_hz < max_pitch_hz:
            raise ValueError("need 20 <= min_pitch_hz < max_pitch_hz")
        self.sample_rate = sample_rate
        self.channels = channels
        self.pmin = max(2, round(sample_rate / max_pitch_hz))
        self.pmax = max(self.pmin + 1, round(sample_rate / min_pitch_hz))
        self.threshold = threshold
        self._silence = float(10 ** (silence_dbfs / 20))
        self._decim = max(1, sample_rate // 8000)
        self._step = max(1, round(sample_rate * 0.004))  # move on 4 ms after a miss
        # _buf holds history (already emitted, kept for lengthening) then pending input;
        # _h is the index of the first frame not yet emitted; _next the next candidate.
        self._buf: Frames = np.zeros((0, channels), np.float32)
        self._h = 0
        self._next = 0
        self.credit = 0.0
        #: Frames added so far (negative: removed).
        self.added = 0
        #: Operations done (periods repeated or cut).
        self.operations = 0

    @property
    def lookahead(self) -> int:
        """Frames held back now: one longest period while lengthening, two while
        shortening, none while inactive."""
        if not self.active:
            return 0
        return self.pmax if self.credit > 0 else 2 * self.pmax

    @property
    def pending(self) -> int:
        """Input frames received and not yet emitted."""
        return len(self._buf) - self._h

    @property
    def active(self) -> bool:
        """Stretching or shrinking is wanted (frames may be held back)."""
        return abs(self.credit) >= self.pmin

    def process(self, block: Frames, ratio: float) -> Frames:
        """Feed ``block`` (``(frames, channels)`` float32); return the output ready now.

        Args:
            block: The next input.
            ratio: Output/input duration wanted for this block (1.12: 12 % slower).
        """
        if len(block) == 0 and self.pending == 0:
            return block
        self.credit += (ratio - 1.0) * len(block)
        bound = 2.0 * self.pmax
        self.credit = min(bound, max(-bound, self.credit))
        if ratio == 1.0 and not self.active and self.pending == 0:
            self._keep_history(block)
            return block
        self._buf = np.concatenate((self._buf, block)) if len(self._buf) else block.copy()
        out = self._run()
        if not self.active:
            out = self._emit_all(out)
        self._trim()
        return out

    def flush(self) -> Frames:
        """The end of the stream: return everything held back."""
        out = self._emit_all(np.zeros((0, self.channels), np.float32))
        self._trim()
        self.credit = 0.0
        return out

    # -- internals -------------------------------------------------------------

    def _keep_history(self, block: Frames) -> None:
        keep = self.pmax
        if len(block) >= keep:
            self._buf = block[-keep:].copy()
        else:
            self._buf = np.concatenate((self._buf, block))[-keep:]
        self._h = len(self._buf)
        self._next = self._h

    def _emit_all(self, head: Frames) -> Frames:
        """``head`` followed by everything not yet emitted."""
        rest = self._buf[self._h :]
        self._h = len(self._buf)
        self._next = max(self._next, self._h)
        return _join([head, rest], self.channels)

    def _trim(self) -> None:
        drop = max(0, min(self._h, self._next) - self.pmax)
        if drop:
            self._buf = self._buf[drop:]
            self._h -= drop
            self._next -= drop

    def _run(self) -> Frames:
        """Do the operations the credit asks for; emit all but the look-ahead."""
        buf = self._buf
        parts: list[Frames] = []
        n = len(buf)
        t = max(self._next, self._h, self.pmax)
        while self.active:
            lengthen = self.credit > 0
            need = self.pmax if lengthen else 2 * self.pmax
            if t + need > n:
                break
            period = self._period(t, lengthen)
            if period is None:
                t += self._step
                continue
            p = period
            fade_out = _fade(p)
            parts.append(buf[self._h : t])
            if lengthen:
                mix = buf[t : t + p] * fade_out + buf[t - p : t] * (1 - fade_out)
                self._h = t
                self.added += p
                self.credit -= p
            else:
                mix = buf[t : t + p] * fade_out + buf[t + p : t + 2 * p] * (1 - fade_out)
                self._h = t + 2 * p
                self.added -= p
                self.credit += p
            parts.append(mix.astype(np.float32, copy=False))
            self.operations += 1
            t = self._h + p
        self._next = max(t, self._h)
        # Emit up to the look-ahead: what a future operation may still need stays.
        end = max(self._h, n - self.lookahead)
        if end > self._h:
            parts.append(buf[self._h : end])
            self._h = end
        return _join(parts, self.channels)

    def _period(self, t: int, lengthen: bool) -> int | None:
        """The period to repeat (``lengthen``) or cut at ``t``, or ``None`` if ``t`` is no
        good place."""
        buf = self._buf
        pmin, pmax = self.pmin, self.pmax
        mono = buf[:, 0] if self.channels == 1 else buf.mean(axis=1)
        around = mono[t - pmax : t + pmax] if lengthen else mono[t : t + 2 * pmax]
        if float(np.sqrt(np.mean(around * around))) < self._silence:
            return pmax
        d = self._decim
        w = pmax  # correlation window
        if lengthen:
            ref = mono[t : t + w]  # compared with mono[t - P : t - P + w]
            span = mono[t - pmax : t + w]
        else:
            ref = mono[t : t + w]  # compared with mono[t + P : t + P + w]
            span = mono[t : t + pmax + w]
        coarse = _best_lag(span[::d], ref[::d], pmin // d, pmax // d, lengthen, 0.5)
        if coarse is None:
            return None
        lo, hi = max(pmin, coarse * d - 2 * d), min(pmax, coarse * d + 2 * d)
        return _best_lag(span, ref, lo, hi, lengthen, self.threshold)


def _best_lag(
    span: Frames,
    ref: Frames,
    lo: int,
    hi: int,
    backwards: bool,
    threshold: float,
) -> int | None:
    """The lag in ``[lo, hi]`` where ``span`` best matches ``ref`` (normalised
    correlation), if its score is at least ``threshold``; ``backwards``: the lagged
    window starts ``lag`` before ``ref``'s, which is ``span[len(span)-len(ref)-lag:]``;
    else ``lag`` after, ``span[lag:]``."""
    w = len(ref)
    lo = max(1, lo)
    if hi < lo or w == 0:
        return None
    corr = np.correlate(span, ref, mode="valid")  # corr[k] = <span[k:k+w], ref>
    sq = np.concatenate(([0.0], np.cumsum(span.astype(np.float64) ** 2)))
    energy = sq[w:] - sq[:-w]  # energy[k] of span[k:k+w]
    ref_e = float(np.dot(ref, ref))
    if ref_e <= 0:
        return None
    lags = np.arange(lo, hi + 1)
    ks = (len(span) - w - lags) if backwards else lags
    ok = (ks >= 0) & (ks < len(corr))
    if not ok.any():
        return None
    lags, ks = lags[ok], ks[ok]
    score = corr[ks] / np.sqrt(np.maximum(energy[ks] * ref_e, 1e-20))
    best = int(np.argmax(score))
    return int(lags[best]) if score[best] >= threshold else None


def _fade(p: int) -> npt.NDArray[np.float32]:
    """Raised-cosine 1 -> 0 over ``p`` frames, shaped ``(p, 1)``."""
    i = (np.arange(p, dtype=np.float64) + 0.5) / p
    return (0.5 * (1.0 + np.cos(np.pi * i))).astype(np.float32)[:, None]


def _join(parts: list[Frames], channels: int) -> Frames:
    parts = [p for p in parts if len(p)]
    if not parts:
        return np.zeros((0, channels), np.float32)
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts).astype(np.float32, copy=False)
