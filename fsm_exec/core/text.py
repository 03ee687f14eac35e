"""Text for a terminal: what counts as a control character, and how it is shown visibly.

The lowest layer's own, because errors carry text from outside (a journal's fields, a
collaborator's exception message) and every error is printed somewhere: a traceback, a log
line, a ``print(exc)`` in the user's loop. :mod:`fsm_exec.boundary.escape` has the other
media (Markdown, a shell word).
"""

from __future__ import annotations

import re

__all__ = ["CONTROL", "terminal_text"]

#: Characters that act rather than show: C0 and C1 controls and DEL (``\x1b`` starts escape
#: sequences, ``\x9b`` is a one-byte CSI), line and paragraph separators, and the bidi
#: controls that reorder what is shown (U+200E/F, U+202A-E, U+2066-9).
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")

_VISIBLE = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(match: re.Match[str]) -> str:
    c = match.group()
    return _VISIBLE.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def terminal_text(text: object, *, keep_lines: bool = False) -> str:
    """``text`` for a terminal: every control character shown as its escape (``\\x1b``);
    with ``keep_lines``, line feeds (and only they) still end lines."""
    if keep_lines:
        return "\n".join(CONTROL.sub(_visible, part) for part in str(text).split("\n"))
    return CONTROL.sub(_visible, str(text))
