"""A journal as pandas DataFrames: :func:`journal_frame` (pandas is optional: the ``pandas``
extra, imported only when called).

The journal is read through :func:`fsm_exec.read_journal`, the one reader: what it refuses
(a corrupt line) raises here too. Timestamps are the records' own (the caller's clock), as
timezone-aware ``datetime64[us, UTC]`` (microseconds: a journal may hold any year from 1 to
9999, which nanoseconds cannot); a timestamp that is not ISO 8601 is ``NaT``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from fsm_exec.core.lifecycle import INITIAL_STATE, TERMINAL_STATES
from fsm_exec.journal.reader import JournalRecord, read_journal

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: The columns of :attr:`JournalFrames.transitions`, with their dtypes.
TRANSITION_COLUMNS: dict[str, str] = {
    "seq": "int64",
    "timestamp": "datetime64[us, UTC]",
    "block_id": "string",
    "source": "string",
    "dest": "string",
    "trigger": "string",
    "attempt": "int64",
    "waited_s": "float64",
    "path": "string",
    "line": "int64",
}
#: The columns of :attr:`JournalFrames.blocks`, with their dtypes.
BLOCK_COLUMNS: dict[str, str] = {
    "block_id": "string",
    "action": "string",
    "priority": "Int64",
    "instructions": "int64",
    "accepted_at": "datetime64[us, UTC]",
    "started_at": "datetime64[us, UTC]",
    "finished_at": "datetime64[us, UTC]",
    "state": "string",
    "terminal": "bool",
    "attempts": "int64",
    "transitions": "int64",
    "error_code": "string",
    "seconds": "float64",
}



@attrs.frozen
class JournalFrames:
    """A journal's blocks and transitions as DataFrames.

    ``transitions``: one row per ``block_transition`` record, in journal order (columns
    :data:`TRANSITION_COLUMNS`; ``waited_s`` is the manager's measure of a reconciliation
    wait, NaN where it measured none). ``blocks``: one row per block the journal names, in
    the order first named (columns :data:`BLOCK_COLUMNS`): ``state`` is where the journal
    leaves it (``queued`` if it never moved), ``attempts`` the highest attempt recorded (0
    if it never started), ``error_code`` that of its ``block_failed`` record (``<NA>``
    otherwise), ``seconds`` from acceptance to its terminal state (NaN while not terminal).
    """

    blocks: pd.DataFrame
    transitions: pd.DataFrame


class _Block:
    __slots__ = ("accepted_at", "action", "attempts", "block_id", "error_code",
                 "finished_at", "instructions", "moves", "priority", "started_at", "state")

    def __init__(self, block_id: str) -> None:
        self.block_id = block_id
        self.action: str | None = None
        self.priority: int | None = None
        self.instructions = 0
        self.accepted_at: dt.datetime | None = None
        self.started_at: dt.datetime | None = None
        self.finished_at: dt.datetime | None = None
        self.state = str(INITIAL_STATE)
        self.attempts = 0
        self.moves = 0
        self.error_code: str | None = None


def _when(text: str) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return t.astimezone(dt.UTC) if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _number(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _frames(records: Iterable[JournalRecord]) -> tuple[dict[str, list[Any]], list[_Block]]:
    moves: dict[str, list[Any]] = {c: [] for c in TRANSITION_COLUMNS}
    blocks: dict[str, _Block] = {}
    terminal = {str(s) for s in TERMINAL_STATES}
    for r in records:
        bid = r.data.get("block_id")
        if not isinstance(bid, str):
            continue
        b = blocks.get(bid)
        if b is None:
            b = blocks[bid] = _Block(bid)
        at = _when(r.timestamp)
        if r.event_type == "block_accepted":
            b.action = str(r.data.get("action")) if "action" in r.data else None
            b.priority = _int(r.data.get("priority"))
            instructions = r.data.get("instructions")
            b.instructions = len(instructions) if isinstance(instructions, list) else 0
            b.accepted_at = at
        elif r.event_type == "block_transition":
            d = r.data
            attempt = _int(d.get("attempt")) or 0
            waited = _number(d.get("waited_s"))
            row = (r.seq, at, bid, str(d.get("source")), str(d.get("dest")),
                   str(d.get("trigger")), attempt, waited, r.path, r.line)
            for column, value in zip(TRANSITION_COLUMNS, row, strict=True):
                moves[column].append(value)
            if b.started_at is None and d.get("trigger") == "start":
                b.started_at = at
            b.state = str(d.get("dest"))
            b.attempts = max(b.attempts, attempt)
            b.moves += 1
            if b.state in terminal:
                b.finished_at = at
        elif r.event_type == "block_failed":
            code = r.data.get("error_code")
            b.error_code = str(code) if code is not None else None
    return moves, list(blocks.values())


def journal_frame(source: Path | str | Iterable[Path | str],
                  component: str = "ExecutionManager") -> JournalFrames:
    """A journal (a log directory, a file, or files in order, as :func:`fsm_exec.read_journal`
    takes them) as :class:`JournalFrames`: ``.blocks`` and ``.transitions``, typed columns.

    Raises ``ImportError`` naming the ``fsm-exec[pandas]`` extra when pandas is missing, and
    :class:`~fsm_exec.JournalCorruptError` for a journal the reader refuses.
    """
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("journal_frame needs pandas: pip install 'fsm-exec[pandas]'"
                          ) from None
    moves, blocks = _frames(r for r in read_journal(source, component)
                            if r.component == component)
    transitions = pd.DataFrame({c: pd.Series(v, dtype=TRANSITION_COLUMNS[c])
                                for c, v in moves.items()})
    terminal = {str(s) for s in TERMINAL_STATES}

    def seconds(b: _Block) -> float | None:
        if b.state in terminal and b.accepted_at and b.finished_at:
            return (b.finished_at - b.accepted_at).total_seconds()
        return None

    columns: dict[str, list[Any]] = {
        "block_id": [b.block_id for b in blocks],
        "action": [b.action for b in blocks],
        "priority": [b.priority for b in blocks],
        "instructions": [b.instructions for b in blocks],
        "accepted_at": [b.accepted_at for b in blocks],
        "started_at": [b.started_at for b in blocks],
        "finished_at": [b.finished_at for b in blocks],
        "state": [b.state for b in blocks],
        "terminal": [b.state in terminal for b in blocks],
        "attempts": [b.attempts for b in blocks],
        "transitions": [b.moves for b in blocks],
        "error_code": [b.error_code for b in blocks],
        "seconds": [seconds(b) for b in blocks],
    }
    frame = pd.DataFrame({c: pd.Series(v, dtype=BLOCK_COLUMNS[c]) for c, v in columns.items()})
    return JournalFrames(blocks=frame, transitions=transitions)
