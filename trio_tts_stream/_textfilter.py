"""What not to read aloud from an LLM's output: markdown and emoji (pure, no I/O).

Theory of operation
-------------------
An LLM answers in markdown; a TTS voice reading "asterisk asterisk", a URL, or a code
block aloud is the complaint every voice agent gets. The filter works in two stages,
because some constructs span many lines and others never leave one unit:

* :meth:`MarkdownFilter.feed` (streaming, before the segmenter) handles what a *line*
  starts with: fenced code blocks (everything from an opening `````` or ``~~~`` to
  the closing one is dropped), headings (the ``#`` go and the heading becomes a unit of
  its own), block quotes (``>`` goes), tables (cells are read separated by commas, the
  ``|---|`` row is dropped) and horizontal rules (dropped). It holds back at most the
  first few characters of a line (and a whole line only for a fence, a table row or a
  rule), so ordinary text passes through as it comes.
* :meth:`MarkdownFilter.clean` (per unit, after the segmenter) handles what stays inside
  a line: ``[text](url)`` and ``![alt](url)`` speak their text, inline code keeps its
  content without the backticks (``use `print` here`` is part of the sentence), emphasis
  markers (``**``, ``__``, ``*``, ``_``, ``~~``) and HTML tags go, bullet markers go
  (numbered items keep their number), and emoji go.

Any object with ``feed``, ``flush`` and ``clean`` (the :class:`TextFilter` protocol) can
replace it; ``text_filter=None`` on the speaker turns filtering off.
"""

from __future__ import annotations

import re
from typing import Protocol

__all__ = ["MarkdownFilter", "TextFilter", "strip_markdown"]


class TextFilter(Protocol):
    """A streaming text filter: see :class:`MarkdownFilter`."""

    def feed(self, text: str) -> str:
        """Filter a fragment; return what can be passed on now."""
        ...

    def flush(self) -> str:
        """End of text: return what was held back."""
        ...

    def clean(self, unit: str) -> str:
        """Filter one segmented unit just before it is spoken."""
        ...


_FENCE = re.compile(r"\s*(```|~~~)")
_HEADING = re.compile(r"\s{0,3}#{1,6}\s+")
_QUOTE = re.compile(r"\s{0,3}>\s?")
_RULE = re.compile(r"\s{0,3}([-*_])(\s*\1){2,}\s*$")
_TABLE_SEP = re.compile(r"\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")

_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_REF_LINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
_CODE = re.compile(r"`+([^`]*)`+")
_HTML = re.compile(r"</?[A-Za-z][^>]*>")
_EMPHASIS = re.compile(r"\*\*|__|~~|\*|(?<![\w])_|_(?![\w])")
_BULLET = re.compile(r"^\s*[-*+•]\s+")
_NUMBERED = re.compile(r"^\s*(\d{1,3})[.)]\s+")
_HEADING_MARK = re.compile(r"^\s*#{1,6}\s+")
_QUOTE_MARK = re.compile(r"^\s*>\s?")
_EMOJI = re.compile(
    "["
    "\U0001f000-\U0001faff"  # pictographs, emoticons, transport, symbols, flags' letters
    "\u2600-\u27bf"  # miscellaneous symbols, dingbats
    "\u2b00-\u2bff"  # arrows and stars used as emoji
    "\ufe0f\u200d\u20e3"  # variation selector, zero-width joiner, keycap
    "\U000e0020-\U000e007f"  # tag characters (subdivision flags)
    "]+"
)
_SPACES = re.compile(r"\s+")
_SPACE_PUNCT = re.compile(r"\s+([.,!?;:])")


class MarkdownFilter:
    """The default LLM-output filter (see the module docstring)."""

    def __init__(self) -> None:
        self._line = ""  # the held start of the current line
        self._decided = False  # the current line's kind is known and it passes through
        self._in_fence = False
        self._opens_fence = False  # the current line is the opening fence
        self._kind = "text"  # of the current line: text, heading, drop, table

    def feed(self, text: str) -> str:
        """Filter a fragment (line-level stage); return what can be passed on now."""
        out: list[str] = []
        for part in re.split(r"(\n)", text):
            if part == "\n":
                out.append(self._end_line())
            elif part:
                out.append(self._add(part))
        return "".join(out)

    def flush(self) -> str:
        """End of text: return what was held back."""
        return self._end_line(final=True)

    def clean(self, unit: str) -> str:
        """The inline stage on one unit (:func:`strip_markdown`)."""
        return strip_markdown(unit)

    # -- line-level stage ------------------------------------------------------

    def _add(self, part: str) -> str:
        if self._decided:
            return part if self._kind in ("text", "heading") else self._hold(part)
        self._line += part
        return self._decide(final=False)

    def _hold(self, part: str) -> str:
        self._line += part
        if len(self._line) > 4096:  # a "table row" or "rule" that never ends: pass it
            self._kind = "text"
            line, self._line = self._line, ""
            return line
        return ""

    def _decide(self, *, final: bool) -> str:
        line = self._line
        if self._in_fence:
            self._kind, self._decided = "drop", True
            return ""
        if not final and len(line.strip()) < 4 and not line.strip(" \t>#").strip("-*_|`~"):
            return ""  # too little of the line to know what it is
        self._decided = True
        if _FENCE.match(line):
            self._in_fence = self._opens_fence = True
            self._kind = "drop"
            return "\n\n"
        if _RULE.match(line) or line.lstrip().startswith(("---", "***", "___")):
            self._kind = "drop"  # a rule, unless the line goes on (decided at its end)
            return ""
        if line.lstrip().startswith("|"):
            self._kind = "table"
            return ""
        self._line = ""
        m = _HEADING.match(line)
        if m:
            self._kind = "heading"
            return "\n\n" + line[m.end() :]
        self._kind = "text"
        m = _QUOTE.match(line)
        if m:
            return line[m.end() :]
        return line

    def _end_line(self, final: bool = False) -> str:
        head = "" if self._decided else self._decide(final=True)
        line, kind, opens = self._line, self._kind, self._opens_fence
        self._line, self._decided, self._kind, self._opens_fence = "", False, "text", False
        nl = "" if final else "\n"
        if kind == "drop":
            if self._in_fence:
                if _FENCE.match(line) and not opens:
                    self._in_fence = False  # the closing fence
                return head
            if _RULE.match(line):
                return head + "\n"
            return head + line + nl  # "---" that was text after all
        if kind == "table":
            if _TABLE_SEP.match(line):
                return ""
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            return ", ".join(c for c in cells if c) + ".\n\n"
        if kind == "heading":
            return head + line + "\n\n"
        return head + line + nl


def strip_markdown(unit: str) -> str:
    """The inline stage of :class:`MarkdownFilter` on one unit of text."""
    text = _IMAGE.sub(r"\1", unit)
    text = _LINK.sub(r"\1", text)
    text = _REF_LINK.sub(r"\1", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _CODE.sub(r"\1", text)
    text = _HTML.sub("", text)
    text = _HEADING_MARK.sub("", text)
    text = _QUOTE_MARK.sub("", text)
    text = _BULLET.sub("", text)
    text = _NUMBERED.sub(r"\1. ", text)
    text = _EMPHASIS.sub("", text)
    text = _EMOJI.sub("", text)
    text = _SPACE_PUNCT.sub(r"\1", text)
    return _SPACES.sub(" ", text).strip()
