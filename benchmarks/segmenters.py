"""Compare sentence segmenters on the table of tricky texts in tests/test_segment.py.

Run: ``python benchmarks/segmenters.py`` (pysbd and sentencex are optional: each one
that is installed is measured). Prints, per segmenter, how many texts it cut exactly as
a listener wants, and its time per text.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_segment import TRICKY

from trio_tts_stream._segment import split_sentences


def candidates() -> dict[str, Callable[[str], list[str]]]:
    found: dict[str, Callable[[str], list[str]]] = {"trio_tts_stream rules": split_sentences}
    try:
        import pysbd  # type: ignore[import-untyped,import-not-found,unused-ignore]

        seg = pysbd.Segmenter(language="en", clean=False)
        found["pysbd"] = lambda t: [s.strip() for s in seg.segment(t) if s.strip()]
    except ImportError:
        pass
    try:
        import sentencex  # type: ignore[import-untyped,import-not-found,unused-ignore]

        found["sentencex"] = lambda t: [s.strip() for s in sentencex.segment("en", t) if s.strip()]
    except ImportError:
        pass
    return found


def main() -> None:
    for name, fn in candidates().items():
        ok = 0
        wrong: list[str] = []
        t0 = time.perf_counter()
        for _ in range(20):
            for text, _ in TRICKY:
                fn(text)
        per_text_us = (time.perf_counter() - t0) / (20 * len(TRICKY)) * 1e6
        for text, want in TRICKY:
            if fn(text) == want:
                ok += 1
            else:
                wrong.append(text)
        print(f"{name}: {ok}/{len(TRICKY)} exact, {per_text_us:.0f} us per text")
        for text in wrong[:50]:
            print(f"    wrong: {text!r}")


if __name__ == "__main__":
    main()
