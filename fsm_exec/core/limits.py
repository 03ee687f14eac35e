"""The bounds of what a journal record may hold: the one place both sides take them from.

The journal's reader (:mod:`fsm_exec.journal.schema`) refuses a record whose text is longer
than these; so everything that writes one takes its bounds from here too: the boundary
refuses what is the user's own data (an ``action``, a cancel's ``reason``) when it is
longer, and the manager shortens free text it did not choose (an exception's message, a
venue's error page) with :func:`fit_text`, after redacting it. A journal the manager
writes is always one its own readers read.
"""

from __future__ import annotations

#: The longest free text a record holds: an error message, a reason, a block's ``action``.
MAX_TEXT = 64 * 1024
#: The longest name a record holds: a state, a trigger, an error code, a source, a type.
MAX_NAME = 256
#: The longest text of a ``Decimal`` a record holds (``{"__decimal__": "..."}``).
MAX_DECIMAL_TEXT = 10_000


def fit_text(text: str, limit: int = MAX_TEXT) -> str:
    """``text``, or when it is longer than ``limit`` characters its head followed by a
    visible marker, ``... [truncated, N characters]`` (``N``: the length of the whole
    text), the whole at most ``limit`` characters. Redact first: a secret cut in two is
    no longer recognised."""
    if len(text) <= limit:
        return text
    marker = f"... [truncated, {len(text)} characters]"
    return text[:max(limit - len(marker), 0)] + marker[:limit]


def too_long(text: str, limit: int = MAX_TEXT) -> str | None:
    """Why ``text`` (the user's own, which is never shortened) is refused: ``None`` when
    it fits in ``limit`` characters."""
    if len(text) <= limit:
        return None
    return f"must be at most {limit} characters (the journal's bound), got {len(text)}"
