"""Cutting text into speakable units: sentences, as they stream in (pure, no I/O).

Theory of operation
-------------------
A TTS request per *sentence* is what lets a speaker start talking while an LLM is still
writing, and what keeps a request under a server's input limit. :class:`Segmenter` is
fed text fragments in any chunking (:meth:`Segmenter.feed`) and returns each unit as
soon as it is known to be complete; :meth:`Segmenter.flush` returns the rest at the end.
The result never depends on how the text was chunked, only on the text (tested).

A unit ends at:

* ``.``, ``!``, ``?``, ``…`` or ``...`` (with any closing quotes, brackets or markdown
  emphasis after them) followed by white space, **unless** the next word starts in
  lower case (``He said "stop!" and left``, ``I think... maybe``), or the word before a
  ``.`` is an abbreviation (``Dr.``, ``e.g.``, ``vs.``), a single letter (``J. K.``),
  or a number opening a list item or a line (``1. First``). A period *inside* a token
  (``3.14``, ``v2.0``, ``example.com/a.b``, ``ann@mail.example.org``) is never followed
  by white space, so it never ends anything;
* a blank line, or a line break before a list item: paragraphs and list items are
  units even without punctuation;
* ``max_chars`` without an end: the cut goes after the last ``;``, ``:``, ``,`` or dash
  in the window, else the last space, else mid-word (a run without punctuation still
  goes out);
* the first unit only: after ``first_chars`` characters, a clause end (``,``, ``;``,
  ``:``, dash) followed by a space also ends it, so the first request leaves early.

Deciding needs the next non-space character (lower case or not), so a candidate end is
held until it arrives; an end at the very end of the stream is flushed by
:meth:`Segmenter.flush`.

:func:`split_text` packs the sentences of a whole text into pieces of at most
``limit`` characters (a server's input limit: OpenAI's is 4,096), cutting only at
sentence ends when it can.
"""

from __future__ import annotations

import re

__all__ = ["ABBREVIATIONS", "Segmenter", "split_sentences", "split_text"]

#: Words that take a period and do not end a sentence (compared lower-cased, without
#: the final period).
ABBREVIATIONS = frozenset(
    """
    mr mrs ms dr prof sr jr st mt ft vs etc e.g i.e cf al approx dept est fig figs
    inc ltd co corp no nos vol vols pp p ch sec eq ref refs op ed eds rev gen col lt
    sgt capt cmdr adm gov pres rep sen hon jan feb mar apr jun jul aug sep sept oct
    nov dec mon tue wed thu fri sat sun a.m p.m u.s u.k u.s.a ph.d b.sc m.sc min max
    avg dist misc resp viz ca
    """.split()  # noqa: SIM905 (a word list reads better than 100 quoted strings)
)
# Abbreviations after which a capitalised word usually starts a new sentence anyway.
_MAY_END = frozenset({"etc", "al", "inc", "ltd", "co", "corp", "a.m", "p.m", "u.s", "u.k"})

_TERMINALS = ".!?…"
_CLOSERS = "\"'\u201d\u2019\u00bb)]}*_`"  # quotes, brackets, markdown emphasis
_CLAUSE = ",;:\u2014\u2013"  # and the em and en dashes
_LIST_ITEM = re.compile(r"(?:[-*+•]|\d{1,3}[.)])\s")


class Segmenter:
    """Streaming sentence segmenter (see the module docstring).

    Args:
        max_chars: Longest unit; a longer run is cut at a clause end or a space.
        first_chars: The first unit may end at a clause end once it is this long
            (``0``: only at sentence ends, like the others).

    Raises:
        ValueError: ``max_chars`` is below 16 or ``first_chars`` is negative.
    """

    def __init__(self, *, max_chars: int = 300, first_chars: int = 40) -> None:
        if max_chars < 16:
            raise ValueError(f"max_chars={max_chars!r} is invalid: it must be at least 16")
        if first_chars < 0:
            raise ValueError(f"first_chars={first_chars!r} is invalid: it must be >= 0")
        self.max_chars = max_chars
        self.first_chars = first_chars
        self._buf = ""
        self._scan = 0  # positions before this were examined and hold no end
        self._units = 0

    def feed(self, text: str) -> list[str]:
        """Add a fragment; return the units it completed (maybe none)."""
        self._buf += text
        return self._cut(final=False)

    def pending_end(self) -> bool:
        """The text so far ends at what would be a sentence end if no lower-case word
        followed (a streaming caller may release it after a pause: :meth:`release`)."""
        buf = self._buf.rstrip()
        j = len(buf)
        i = j
        while i > 0 and buf[i - 1] in _CLOSERS:
            i -= 1
        if i == 0 or buf[i - 1] not in _TERMINALS:
            return False
        while i > 0 and buf[i - 1] in _TERMINALS:
            i -= 1
        start = len(buf) - len(buf.lstrip())
        return self._is_end(buf, start, i, j, "")

    def release(self) -> list[str]:
        """Return the text so far as a unit if it ends at a sentence end
        (:meth:`pending_end`), else nothing: for a text stream that paused."""
        return self.flush() if self.pending_end() else []

    def flush(self) -> list[str]:
        """End of text: return what is left (as one or more units)."""
        units = self._cut(final=True)
        rest = self._buf.strip()
        self._buf, self._scan = "", 0
        if rest:
            units.append(rest)
            self._units += 1
        return units

    # -- internals ---------------------------------------------------------------

    def _cut(self, *, final: bool) -> list[str]:
        units: list[str] = []
        while True:
            end = self._find_end(final)
            if end is None:
                break
            start = len(self._buf) - len(self._buf.lstrip())
            if end - start > self.max_chars:
                end = self._cut_long(self._buf, start)
            unit = self._buf[:end].strip()
            self._buf = self._buf[end:]
            self._scan = 0
            if unit:
                units.append(unit)
                self._units += 1
        return units

    def _find_end(self, final: bool) -> int | None:
        """Index just after the first unit in the buffer, or ``None`` if none is known."""
        buf = self._buf
        i = self._scan
        n = len(buf)
        limit = self.max_chars
        start = len(buf) - len(buf.lstrip())
        while i < n:
            c = buf[i]
            if c == "\n":
                verdict = self._line_break(buf, i, final)
                if verdict is None:
                    self._scan = i
                    return None
                if verdict and buf[start:i].strip():
                    return i + 1
            elif c in _TERMINALS:
                j = i + 1
                while j < n and (buf[j] in _TERMINALS or buf[j] in _CLOSERS):
                    j += 1
                if j >= n:
                    if final:
                        return n
                    self._scan = i
                    return None
                if buf[j].isspace():
                    k = j
                    while k < n and buf[k].isspace() and buf[k] != "\n":
                        k += 1
                    if k >= n and not final:
                        self._scan = i
                        return None
                    nxt = buf[k] if k < n else ""
                    if self._is_end(buf, start, i, j, nxt):
                        return j
                i = j
                continue
            elif (
                c in _CLAUSE
                and self._units == 0
                and self.first_chars
                and i - start >= self.first_chars
            ):
                if i + 1 >= n and not final:
                    self._scan = i
                    return None
                if i + 1 < n and buf[i + 1] == " ":
                    return i + 1
            if i - start >= limit:
                return self._cut_long(buf, start)
            i += 1
        self._scan = n
        return self._forced(buf, start, final)

    def _forced(self, buf: str, start: int, final: bool) -> int | None:
        if len(buf) - start > self.max_chars:
            return self._cut_long(buf, start)
        return None

    def _cut_long(self, buf: str, start: int) -> int:
        window = buf[start : start + self.max_chars]
        for chars in (_CLAUSE, " "):
            best = max(window.rfind(ch) for ch in chars)
            if best > len(window) // 3:
                return start + best + 1
        return start + self.max_chars

    @staticmethod
    def _line_break(buf: str, i: int, final: bool) -> bool | None:
        """Does the line break at ``i`` end a unit? ``None``: not known yet."""
        j = i + 1
        while j < len(buf) and buf[j] in " \t":
            j += 1
        if j >= len(buf):
            return True if final else None
        if buf[j] in "\r\n":
            return True  # a blank line: a paragraph ends
        rest = buf[j : j + 5]
        if _LIST_ITEM.match(rest):
            return True
        if len(rest) < 5 and not final and rest[:1] in "-*+•0123456789":
            return None  # maybe a list item: wait for more
        return False

    @staticmethod
    def _is_end(buf: str, start: int, i: int, j: int, nxt: str) -> bool:
        """Is the terminal run ``buf[i:j]``, followed by space and ``nxt``, an end?"""
        if nxt and nxt.islower():
            return False
        if buf[i] != "." or buf[i : i + 3] == "...":
            return True
        word_start = i
        while word_start > start and not buf[word_start - 1].isspace():
            word_start -= 1
        word = buf[word_start:i].lstrip("\"'\u201c\u2018([{*_").lower()
        if not word:
            return True
        if word in ABBREVIATIONS:
            return word in _MAY_END and bool(nxt) and nxt.isupper()
        if len(word) == 1 and word.isalpha():
            return False  # an initial: "J. K. Rowling"
        # "1. First item" at the start of a line is a list marker.
        return not (word.isdigit() and (word_start == start or buf[word_start - 1] == "\n"))


def split_sentences(text: str, *, max_chars: int = 300, first_chars: int = 0) -> list[str]:
    """The units of a whole ``text`` (see :class:`Segmenter`)."""
    seg = Segmenter(max_chars=max_chars, first_chars=first_chars)
    return seg.feed(text) + seg.flush()


def split_text(text: str, limit: int) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` characters, at sentence ends where
    possible (a long sentence is cut at a clause end or a space).

    Raises:
        ValueError: ``limit`` is below 16.
    """
    if limit < 16:
        raise ValueError(f"limit={limit!r} is invalid: it must be at least 16")
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    pieces: list[str] = []
    current = ""
    for sentence in split_sentences(text, max_chars=limit):
        if current and len(current) + 1 + len(sentence) > limit:
            pieces.append(current)
            current = ""
        current = f"{current} {sentence}" if current else sentence
    if current:
        pieces.append(current)
    return pieces
