"""The segmenter and the LLM-output filter: tables of tricky texts, in every chunking."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_tts_stream import MarkdownFilter, Segmenter
from trio_tts_stream._segment import split_sentences, split_text
from trio_tts_stream._textfilter import strip_markdown

# (text, the units a listener wants). Used by benchmarks/segmenters.py too.
TRICKY: list[tuple[str, list[str]]] = [
    ("Hello there. How are you?", ["Hello there.", "How are you?"]),
    ("Dr. Smith is in. He waits.", ["Dr. Smith is in.", "He waits."]),
    ("Mr. and Mrs. Jones arrived.", ["Mr. and Mrs. Jones arrived."]),
    ("Use a tool, e.g. a hammer. Then stop.", ["Use a tool, e.g. a hammer.", "Then stop."]),
    ("That is, i.e. the end. Next.", ["That is, i.e. the end.", "Next."]),
    ("Pi is 3.14 roughly. Yes.", ["Pi is 3.14 roughly.", "Yes."]),
    ("Version v2.0.1 is out! Get it.", ["Version v2.0.1 is out!", "Get it."]),
    ("It costs $4.99 today. Buy it.", ["It costs $4.99 today.", "Buy it."]),
    ("Visit example.com today. It is nice.", ["Visit example.com today.", "It is nice."]),
    ("Go to https://x.org/a.b?c=d. Then read.", ["Go to https://x.org/a.b?c=d.", "Then read."]),
    (
        "Mail ann@mail.example.org now. She replies.",
        ["Mail ann@mail.example.org now.", "She replies."],
    ),
    ("Wait... what? No!", ["Wait... what?", "No!"]),
    ("I think... maybe. Sure.", ["I think... maybe.", "Sure."]),
    ("Well\u2026 Fine. Go.", ["Well\u2026", "Fine.", "Go."]),
    ('He said "Stop!" and left.', ['He said "Stop!" and left.']),
    ('"Stop!" He left.', ['"Stop!"', "He left."]),
    ("She asked (why?) and went. Done.", ["She asked (why?) and went.", "Done."]),
    ("Really?! Yes.", ["Really?!", "Yes."]),
    ("J. K. Rowling wrote it. Read it.", ["J. K. Rowling wrote it.", "Read it."]),
    ("The U.S. team won. Great.", ["The U.S. team won.", "Great."]),
    ("Meet at 5 p.m. Bring food.", ["Meet at 5 p.m.", "Bring food."]),
    ("Meet at 5 p.m. tomorrow. Bring food.", ["Meet at 5 p.m. tomorrow.", "Bring food."]),
    ("Apples, pears, etc. Are fruit.", ["Apples, pears, etc.", "Are fruit."]),
    ("Apples, pears, etc. are fruit.", ["Apples, pears, etc. are fruit."]),
    ("See Fig. 3 for details. Then go.", ["See Fig. 3 for details.", "Then go."]),
    ("Item No. 5 is sold. Sorry.", ["Item No. 5 is sold.", "Sorry."]),
    ("It was in Jan. 2020 that it began.", ["It was in Jan. 2020 that it began."]),
    ("Steps:\n1. Open it\n2. Close it", ["Steps:", "1. Open it", "2. Close it"]),
    ("List:\n- one\n- two\n- three", ["List:", "- one", "- two", "- three"]),
    ("First paragraph\n\nSecond paragraph", ["First paragraph", "Second paragraph"]),
    ("A line\nwrapped inside. Done.", ["A line\nwrapped inside.", "Done."]),
    ("The year 2024. It was good.", ["The year 2024.", "It was good."]),
    ("Call 555.1234 now. Thanks.", ["Call 555.1234 now.", "Thanks."]),
    ("The file is main.py. Open it.", ["The file is main.py.", "Open it."]),
    ("It's 10 vs. 12. Close.", ["It's 10 vs. 12.", "Close."]),
    ("Prof. Lee, Ph.D. teaches. Go.", ["Prof. Lee, Ph.D. teaches.", "Go."]),
    ("\u00bfQu\u00e9? S\u00ed. Bien.", ["\u00bfQu\u00e9?", "S\u00ed.", "Bien."]),
    ("OK. 3 apples left. Fine.", ["OK.", "3 apples left.", "Fine."]),
    ("He scored 9.5. Wow.", ["He scored 9.5.", "Wow."]),
    ("**Bold.** Then text.", ["**Bold.**", "Then text."]),
    ("No punctuation at all here", ["No punctuation at all here"]),
    ("Ends with space. ", ["Ends with space."]),
    ("St. Louis is big. Yes.", ["St. Louis is big.", "Yes."]),
    ("Inc. results were good. Yes.", ["Inc. results were good.", "Yes."]),
]


@pytest.mark.parametrize(("text", "want"), TRICKY)
def test_tricky_texts(text: str, want: list[str]) -> None:
    assert split_sentences(text) == want


def test_the_table_is_big_enough() -> None:
    assert len(TRICKY) >= 40


@pytest.mark.parametrize(("text", "want"), TRICKY)
@pytest.mark.parametrize("step", [1, 2, 3, 7])
def test_any_chunking_gives_the_same_units(text: str, want: list[str], step: int) -> None:
    seg = Segmenter(first_chars=0)
    units: list[str] = []
    for i in range(0, len(text), step):
        units += seg.feed(text[i : i + step])
    assert units + seg.flush() == want


@settings(max_examples=150, deadline=None)
@given(
    st.text(alphabet="ab .!?\n,-1", min_size=0, max_size=120),
    st.lists(st.integers(1, 9), min_size=1, max_size=20),
)
def test_chunking_never_changes_the_units(text: str, steps: list[int]) -> None:
    whole = Segmenter(max_chars=40, first_chars=10)
    want = whole.feed(text) + whole.flush()
    seg = Segmenter(max_chars=40, first_chars=10)
    got: list[str] = []
    i = 0
    k = 0
    while i < len(text):
        step = steps[k % len(steps)]
        got += seg.feed(text[i : i + step])
        i += step
        k += 1
    got += seg.flush()
    assert got == want
    assert all(len(u) <= 40 for u in got)
    assert "".join(got).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace(
        "\n", ""
    )


def test_a_unit_is_released_as_soon_as_it_is_known() -> None:
    seg = Segmenter(first_chars=0)
    assert seg.feed("Hello there.") == []  # the next word decides
    assert seg.feed(" H") == ["Hello there."]
    assert seg.feed("ow are you? I am") == ["How are you?"]


def test_first_unit_may_end_at_a_clause_and_long_runs_are_cut() -> None:
    seg = Segmenter(max_chars=50, first_chars=20)
    units = seg.feed("Well, thinking about it carefully, the answer is yes, and more. ")
    assert units[0] == "Well, thinking about it carefully,"
    run = "word " * 40
    cut = split_sentences(run, max_chars=50)
    assert all(len(u) <= 50 for u in cut)
    assert " ".join(cut) == run.strip()


def test_split_text_packs_sentences_under_the_limit() -> None:
    text = " ".join(f"Sentence {i} is here." for i in range(100))
    pieces = split_text(text, 200)
    assert all(len(p) <= 200 for p in pieces)
    assert " ".join(pieces) == text
    assert all(p.endswith(".") for p in pieces)
    assert split_text("   ", 100) == []
    assert split_text("short", 100) == ["short"]
    long_word = "x" * 500
    assert all(len(p) <= 100 for p in split_text(long_word, 100))


MARKDOWN: list[tuple[str, list[str]]] = [
    ("**Bold** and *italic* and __under__ and ~~gone~~.", ["Bold and italic and under and gone."]),
    ("Read [the docs](https://example.com/docs) now.", ["Read the docs now."]),
    ("An image ![a cat](cat.png) here.", ["An image a cat here."]),
    ("Call `print()` to show it.", ["Call print() to show it."]),
    ("# Heading\nBody text.", ["Heading", "Body text."]),
    ("## Sub heading\n\nMore.", ["Sub heading", "More."]),
    ("Before.\n```python\nx = 1. y = 2.\n```\nAfter.", ["Before.", "After."]),
    ("Before.\n~~~\ncode\n~~~\nAfter.", ["Before.", "After."]),
    ("- one\n- two\n* three\n+ four", ["one", "two", "three", "four"]),
    ("1. First\n2. Second", ["1. First", "2. Second"]),
    ("> A quote.\nNot quoted.", ["A quote.", "Not quoted."]),
    ("Great job \U0001f389\U0001f44d! Thanks \u2764\ufe0f.", ["Great job!", "Thanks."]),
    ("| a | b |\n|---|---|\n| 1 | 2 |", ["a, b.", "1, 2."]),
    ("Text\n---\nMore text.", ["Text", "More text."]),
    ("snake_case_name stays.", ["snake_case_name stays."]),
    ("A <br> tag.", ["A tag."]),
    ("See <https://example.com>.", ["See https://example.com."]),
    ("Flag \U0001f1fa\U0001f1f8 here.", ["Flag here."]),
]


def run_filter(text: str, step: int) -> list[str]:
    filt, seg = MarkdownFilter(), Segmenter(first_chars=0)
    units: list[str] = []
    for i in range(0, len(text), step):
        units += seg.feed(filt.feed(text[i : i + step]))
    units += seg.feed(filt.flush()) + seg.flush()
    return [c for c in (filt.clean(u) for u in units) if c]


@pytest.mark.parametrize(("text", "want"), MARKDOWN)
@pytest.mark.parametrize("step", [1, 4, 1000])
def test_markdown_is_not_read_aloud(text: str, want: list[str], step: int) -> None:
    assert run_filter(text, step) == want


def test_strip_markdown_on_plain_text_is_identity() -> None:
    plain = "Plain text, with 3.14 and v2.0, stays as it is."
    assert strip_markdown(plain) == plain
