"""Compare time-scale modification (speech stretching without pitch change) implementations.

Run: ``python benchmarks/stretchers.py`` (about 10 s). Measures our
:class:`trio_tts_stream._timestretch.TimeStretcher` and, where installed, ``audiotsm``'s
WSOLA (streaming API) and ``pytsmod``'s WSOLA (offline, whole signal), on a 220 Hz sine,
espeak speech and the speech-like test tone, at ratios 1.0, 1.12 and 0.9 (ratio = output
duration / input duration; audiotsm's *speed* is its inverse). Rubber Band is GPL and is
not measured. Prints plain-text tables, then ``RESULT <json>`` with every number.

Columns:

* CPU ms/s: ``time.process_time`` per second of input, best of a few runs, all signals
  together; streaming implementations are fed 10 ms (240-frame) blocks, offline ones the
  whole signal at once.
* achieved: output length / input length, per signal.
* pitch: of the sine, FFT peak (Hann window, zero-padded, parabolic interpolation on the
  log magnitude), and its relative error.
* step: ``max|diff(output)| / max|diff(input)|`` per signal (1.0: no added discontinuity),
  both without their first and last 1024 frames (audiotsm pads its output's start with
  512 zeros, which against the tone's abrupt start would count as a click).
* identity: at ratio 1.0, whether the output equals the input exactly after trimming the
  lead (latency or padding, found by cross-correlation on white noise) and the tail.
* latency: input frames fed (in 240-frame blocks) when the first output frame comes out,
  and the most the output has lagged behind ``fed * ratio`` frames at any block.
"""

from __future__ import annotations

import importlib.metadata
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from trio_tts_stream._timestretch import TimeStretcher

SR = 24000
BLOCK = 240  # 10 ms
RATIOS = (1.0, 1.12, 0.9)
REPEATS = 3  # timed runs per case; the fastest counts
SPEECH = (
    "The quick brown fox jumps over the lazy dog. A jitter buffer plays speech a little "
    "slower while it fills. Then it carries on at its normal speed."
)

Mono = npt.NDArray[np.float32]
StreamFn = Callable[[Mono, float], list[Mono]]  # one output per input block, then flush
OfflineFn = Callable[[Mono, float], Mono]


@dataclass
class Impl:
    name: str
    dist: str  # distribution, for the licence and version
    stream: StreamFn | None = None
    offline: OfflineFn | None = None
    note: str = ""

    @property
    def mode(self) -> str:
        return f"stream {BLOCK}" if self.stream is not None else "offline whole"


@dataclass
class Case:
    cpu_s: float
    out: Mono
    per_block: list[int] = field(default_factory=list)  # output frames after each block


# -- signals -----------------------------------------------------------------------------


def signals() -> tuple[dict[str, Mono], list[str]]:
    notes: list[str] = []
    t = np.arange(3 * SR) / SR
    found: dict[str, Mono] = {"sine": (0.5 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)}
    try:
        from trio_tts_stream.server._espeak import EspeakEngine

        pcm = EspeakEngine().synthesize_all(SPEECH, voice="alloy")
        found["espeak"] = (np.asarray(pcm, np.float32) / 32768).astype(np.float32)
    except Exception as exc:  # ConfigError without the espeak extra, or no espeak-ng
        notes.append(f"espeak signal skipped: {type(exc).__name__}: {exc}")
    from trio_tts_stream.server import synthesize_tone

    tone = synthesize_tone(SPEECH, voice="onyx")
    found["tone"] = (np.asarray(tone, np.float32) / 32768).astype(np.float32)
    return found, notes


# -- implementations ---------------------------------------------------------------------


def ours_stream(x: Mono, ratio: float) -> list[Mono]:
    st = TimeStretcher(SR, 1)
    outs = [st.process(x[i : i + BLOCK, None], ratio)[:, 0] for i in range(0, len(x), BLOCK)]
    outs.append(st.flush()[:, 0])
    return outs


def implementations() -> tuple[list[Impl], list[str]]:
    impls = [Impl("trio_tts_stream", "trio_tts_stream", stream=ours_stream)]
    skipped: list[str] = []
    try:
        import audiotsm  # type: ignore[import-untyped,import-not-found,unused-ignore]
        from audiotsm.io.array import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
            ArrayReader,
            ArrayWriter,
        )

        def audiotsm_stream(x: Mono, ratio: float) -> list[Mono]:
            tsm: Any = audiotsm.wsola(1, speed=1.0 / ratio)
            outs: list[Mono] = []
            for i in range(0, len(x), BLOCK):
                writer: Any = ArrayWriter(1)
                tsm.run(ArrayReader(x[None, i : i + BLOCK]), writer, flush=False)
                outs.append(np.asarray(writer.data[0], np.float32))
            writer = ArrayWriter(1)
            finished = False
            while not finished:
                _, finished = tsm.flush_to(writer)
            outs.append(np.asarray(writer.data[0], np.float32))
            return outs

        impls.append(
            Impl(
                "audiotsm wsola",
                "audiotsm",
                stream=audiotsm_stream,
                note="defaults: frame 1024, synthesis hop 512, tolerance 512; speed = 1/ratio",
            )
        )
    except ImportError:
        skipped.append("audiotsm: not installed")
    try:
        import pytsmod  # type: ignore[import-untyped,import-not-found,unused-ignore]

        def pytsmod_offline(x: Mono, ratio: float) -> Mono:
            return np.asarray(pytsmod.wsola(x, ratio), np.float32)

        impls.append(
            Impl(
                "pytsmod wsola",
                "pytsmod",
                offline=pytsmod_offline,
                note="defaults: hann 1024, synthesis hop 512, tolerance 512; s = ratio",
            )
        )
    except ImportError:
        skipped.append("pytsmod: not installed")
    return impls, skipped


def run_case(impl: Impl, x: Mono, ratio: float) -> Case:
    best: Case | None = None
    for _ in range(REPEATS):
        if impl.stream is not None:
            t0 = time.process_time()
            outs = impl.stream(x, ratio)
            cpu = time.process_time() - t0
            case = Case(cpu, np.concatenate(outs).astype(np.float32), [len(o) for o in outs])
        else:
            assert impl.offline is not None
            t0 = time.process_time()
            y = impl.offline(x, ratio)
            cpu = time.process_time() - t0
            case = Case(cpu, y)
        if best is None or case.cpu_s < best.cpu_s:
            best = case
    assert best is not None
    return best


# -- measures ----------------------------------------------------------------------------


def pitch_hz(x: Mono) -> float:
    n = len(x)
    nfft = 1 << int(np.ceil(np.log2(8 * n)))
    mag = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(n), nfft))
    k = int(np.argmax(mag[1:-1])) + 1
    a, b, c = np.log(mag[k - 1 : k + 2] + 1e-30)
    delta = 0.5 * (a - c) / (a - 2 * b + c)
    return float((k + delta) * SR / nfft)


def max_step(x: Mono, edge: int = 1024) -> float:
    """Largest sample step, ignoring ``edge`` frames at each end (leading padding)."""
    return float(np.max(np.abs(np.diff(x[edge:-edge].astype(np.float64)))))


def lead_of(impl: Impl, maxlag: int = 4096) -> int:
    """Frames of lead (latency or padding) at ratio 1, from 1 s of white noise, whose
    sharp autocorrelation gives one clear lag (on a tone or speech, WSOLA's tolerance
    search re-picks segments even at speed 1, so no single lag fits those outputs)."""
    x = np.random.default_rng(1).uniform(-0.5, 0.5, SR).astype(np.float32)
    y = run_case(impl, x, 1.0).out.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(len(x) + len(y))))
    corr = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(x.astype(np.float64), n)), n)
    lags = np.r_[0 : maxlag + 1, -maxlag:0]
    return int(lags[int(np.argmax(corr[lags]))])  # y[i + lag] ~ x[i]


def identity(y: Mono, x: Mono, lag: int) -> dict[str, Any]:
    """Compare ``y[lag:]`` (or ``y`` with ``x[-lag:]``) with ``x`` where they overlap."""
    ys, xs = (y[lag:], x) if lag >= 0 else (y, x[-lag:])
    m = min(len(ys), len(xs))
    err = float(np.max(np.abs(ys[:m].astype(np.float64) - xs[:m]))) if m else float("nan")
    return {
        "identical": bool(m == len(x) and np.array_equal(ys[:m], xs[:m])),
        "trim_lead": lag,  # output frames dropped at the start (negative: input frames)
        "trim_tail": len(y) - lag - len(x),  # output frames past the input's end (<0: lost)
        "max_abs_err": float(f"{err:.3g}"),
    }


def latency(per_block: list[int], n_in: int, ratio: float) -> dict[str, int | None]:
    fed = 0
    emitted = 0
    first: int | None = None
    behind = 0
    for i, k in enumerate(per_block[:-1]):  # the last entry is the flush
        fed = min(n_in, (i + 1) * BLOCK)
        emitted += k
        if first is None and emitted > 0:
            first = fed
        behind = max(behind, round(fed * ratio) - emitted)
    return {"first_output_after": first, "max_behind": behind}


def licence(dist: str) -> tuple[str, str]:
    try:
        md = importlib.metadata.metadata(dist).json
    except importlib.metadata.PackageNotFoundError:
        return "?", "?"
    lic = str(md.get("license_expression") or md.get("license") or "")
    if not lic or len(lic) > 40:
        classes = [c for c in md.get("classifier", []) if str(c).startswith("License ::")]
        lic = str(classes[0]).split(" :: ")[-1] if classes else (lic[:40] or "?")
    return lic, str(md.get("version") or "?")


# -- report ------------------------------------------------------------------------------


def lat_str(lat: dict[str, Any], r: str) -> str:
    if r not in lat:
        return "n/a (offline)"
    firsts = sorted({str(v["first_output_after"]) for v in lat[r].values()})
    behind = max(int(v["max_behind"]) for v in lat[r].values())
    return f"{'/'.join(firsts)} (behind <= {behind})"


def table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    fmt = []
    for r in [head, *rows]:
        cells = [c.rjust(w) for c, w in zip(r, widths, strict=True)]
        cells[0] = r[0].ljust(widths[0])
        fmt.append("  ".join(cells))
    return "\n".join([fmt[0], line, *fmt[1:]])


def main() -> None:
    sigs, notes = signals()
    impls, skipped = implementations()
    total_s = sum(len(x) for x in sigs.values()) / SR
    pitch_in = pitch_hz(sigs["sine"])
    steps_in = {k: max_step(x) for k, x in sigs.items()}
    result: dict[str, Any] = {
        "sample_rate": SR,
        "block": BLOCK,
        "signals_s": {k: round(len(x) / SR, 3) for k, x in sigs.items()},
        "sine_pitch_in_hz": round(pitch_in, 4),
        "implementations": {},
        "skipped": skipped,
        "excluded": {"rubberband": "GPL-2.0-or-later (or commercial): not measured"},
    }
    rows: list[list[str]] = []
    rows2: list[list[str]] = []
    for impl in impls:
        lic, ver = licence(impl.dist)
        entry: dict[str, Any] = {
            "mode": "streaming" if impl.stream else "offline",
            "licence": lic,
            "version": ver,
            "note": impl.note,
            "ratios": {},
        }
        ident: dict[str, Any] = {}
        lat: dict[str, Any] = {}
        for ratio in RATIOS:
            cases = {k: run_case(impl, x, ratio) for k, x in sigs.items()}
            cpu = sum(c.cpu_s for c in cases.values())
            achieved = {k: len(c.out) / len(sigs[k]) for k, c in cases.items()}
            step = {k: max_step(c.out) / steps_in[k] for k, c in cases.items()}
            p_out = pitch_hz(cases["sine"].out)
            err = 100 * (p_out - pitch_in) / pitch_in
            entry["ratios"][str(ratio)] = {
                "cpu_ms_per_s": round(1000 * cpu / total_s, 2),
                "achieved": {k: round(v, 4) for k, v in achieved.items()},
                "sine_pitch_out_hz": round(p_out, 4),
                "pitch_err_pct": round(err, 4),
                "step_ratio": {k: round(v, 3) for k, v in step.items()},
            }
            if ratio == 1.0:
                lead = lead_of(impl)
                ident = {k: identity(c.out, sigs[k], lead) for k, c in cases.items()}
            if impl.stream is not None and ratio in (1.0, 1.12):
                lat[str(ratio)] = {
                    k: latency(c.per_block, len(sigs[k]), ratio) for k, c in cases.items()
                }
            rows.append(
                [
                    impl.name,
                    impl.mode,
                    f"{ratio:.2f}",
                    f"{1000 * cpu / total_s:.1f}",
                    "/".join(f"{v:.4f}" for v in achieved.values()),
                    f"{p_out:.3f}",
                    f"{err:+.4f}",
                    "/".join(f"{v:.3f}" for v in step.values()),
                ]
            )
        entry["identity_at_1"] = ident
        entry["latency"] = lat or None
        result["implementations"][impl.name] = entry
        same = all(v["identical"] for v in ident.values())
        lead = next(iter(ident.values()))["trim_lead"]
        tails = "/".join(str(v["trim_tail"]) for v in ident.values())
        errs = "/".join(f"{v['max_abs_err']:.3g}" for v in ident.values())

        copyleft = "  COPYLEFT" if "GPL" in lic.upper() else ""
        rows2.append(
            [
                impl.name,
                "yes" if same else "no",
                str(lead),
                tails,
                errs,
                lat_str(lat, "1.12"),
                lat_str(lat, "1.0"),
                lic + copyleft,
                ver,
            ]
        )
    sig_names = "/".join(sigs)
    print(f"Time-scale modification, {SR} Hz mono float32, signals ({sig_names}): ", end="")
    print(", ".join(f"{k} {len(x) / SR:.2f} s" for k, x in sigs.items()))
    print(f"sine pitch in: {pitch_in:.3f} Hz; ratio = output/input duration")
    print()
    head = ["implementation", "mode", "ratio", "CPU ms/s"]
    head += [f"achieved ({sig_names})", "sine Hz", "err %", f"step ({sig_names})"]
    print(table(head, rows))
    print()
    head2 = ["implementation", "identical@1.0", "lead", f"tail ({sig_names})"]
    head2 += [f"max|err|@1.0 ({sig_names})"]
    head2 += ["1st out after (1.12)", "1st out after (1.0)", "licence", "version"]
    print(table(head2, rows2))
    print()
    print("identity: output at ratio 1.0 minus `lead` frames (found on white noise) vs input;")
    print("  tail = output frames past the input's end (negative: input frames lost).")
    print("latency: input frames fed (240-frame blocks) before the first output, per signal;")
    print("  behind = most output frames short of fed*ratio at any block.")
    for impl in impls:
        if impl.note:
            print(f"{impl.name}: {impl.note}")
    for line in [*skipped, *notes]:
        print(line)
    print("rubberband: excluded (GPL-2.0-or-later, or a commercial licence); not measured")
    print("RESULT " + json.dumps(result, separators=(",", ":")))


if __name__ == "__main__":
    main()
