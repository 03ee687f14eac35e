"""Text that crosses an edge: what counts as a control character, and how text from outside
(a journal, a venue's error, a strategy's ``action``) is shown in each medium so that it can
only ever be read, never act.

- :func:`terminal_text`: control characters and escape sequences shown visibly (``\\x1b``,
  ``\\r``, ``\\u202e``): no cursor moves, erased lines, hidden links or clipboard writes.
- :func:`markdown_text`: the same, then every character Markdown (GitHub's, with its ``$``
  maths) would read as syntax escaped: one line, one table cell, no HTML, no links (a bare
  ``https://`` or ``www.`` address included), no headings, no emphasis. ``code=True``
  puts text that is plainly an identifier in a code span and escapes anything else as
  text.

- :func:`shell_word`: text as one word of a shell command a person pastes: quoted, and
  never read as an option (a path ``--all`` becomes ``./--all``).

All are total: any ``str`` in, printable text out.
"""

from __future__ import annotations

import re
import shlex

from fsm_exec.core.text import CONTROL, terminal_text

__all__ = ["CONTROL", "markdown_text", "shell_word", "terminal_text"]

# ``CONTROL`` and :func:`terminal_text` live in the core, which errors built from outside text
# use too; they are this module's as well.


# What Markdown reads as syntax anywhere in a line: backslash escapes for the ASCII
# punctuation, entities for what would open HTML (so the text holds no "<tag" at all).
_MD_ENTITY = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# An underscore between two letters or digits cannot open or close emphasis: left as it is.
_MD_SYNTAX = re.compile(r"[\\`*\[\]$|#~&<>]|_(?![A-Za-z0-9])|(?<![A-Za-z0-9])_")
_IDENTIFIER = re.compile(r"[A-Za-z0-9._:-]+")
#: A leading bullet (``-``, ``+`` before a space or the end) or a rule of ``-``.
_BLOCK_START = re.compile(r"\A[-+](?=[ ]|\Z)|\A-(?=[- ]*-[- ]*-[- ]*\Z)")
#: A leading ordered-list marker (``1.``, ``2)`` before a space or the end).
_ORDERED = re.compile(r"\A(\d{1,9})([.)])(?=[ ]|\Z)")
_EDGE_SPACES = re.compile(r"\A +| +\Z")


def _md_escape(match: re.Match[str]) -> str:
    c = match.group()
    return _MD_ENTITY.get(c) or "\\" + c


def markdown_text(text: object, *, code: bool = False) -> str:
    """``text`` as one inline run of Markdown (a table cell, a banner, a list item) that
    shows exactly ``text``: control characters visible, Markdown and HTML syntax escaped.
    With ``code``, an identifier (letters, digits, ``._:-``) is shown in a code span."""
    s = terminal_text(text)
    if code and _IDENTIFIER.fullmatch(s):
        return f"`{s}`"
    # GitHub links a bare address (``https://``, ``www.``) in text: an escaped ``:`` or ``.``
    # shows the same and links nothing (cmark-gfm, in tests/test_hostile_output.py).
    s = _MD_SYNTAX.sub(_md_escape, s).replace("://", "\\://").replace("www.", "www\\.")
    # What would start a block where the text starts a line (a list item, a rule, code
    # indented four spaces), and the spaces a paragraph trims: shown as they are.
    s = _BLOCK_START.sub(r"\\\g<0>", s, count=1)
    s = _ORDERED.sub(r"\g<1>\\\g<2>", s, count=1)
    return _EDGE_SPACES.sub(lambda m: "&#32;" * len(m.group()), s)


def shell_word(path: str) -> str:
    """``path`` as one word of a suggested shell command: ``shlex.quote``-d, and ``./``
    before a path starting with ``-``, so that no command reads it as an option
    (``fsm-exec cancel ./--all --all``, never ``fsm-exec cancel --all --all``)."""
    return shlex.quote("./" + path if path.startswith("-") else path)
