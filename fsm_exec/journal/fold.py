"""The one reading of a log directory into the state recovery rebuilds: the records from
the newest checkpoint on, folded by :class:`~fsm_exec.journal.state.ManagerState`, *after*
that checkpoint was checked against the records before it (from the checkpoint before it),
as :func:`fsm_exec.check_journal` checks every checkpoint. A checkpoint that disagrees with
the records before it (a block lost from the queue, amounts changed) is refused by
``recover()``, ``fsm-exec status`` and the offline ``cancel`` with the message ``check``
gives: one reader, one verdict.

What is not there to compare against is not a disagreement: a journal with one checkpoint,
or whose records before the newest checkpoint were pruned (retention removes whole files:
a gap just before a checkpoint that starts a file is pruned history, as ``check`` notes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

from fsm_exec.journal.codec import CHECKPOINT
from fsm_exec.journal.files import journal_files
from fsm_exec.journal.reader import JournalRecord, newest_checkpoints, read_records
from fsm_exec.journal.state import GapError, ManagerState, ReplayError

#: Called with each record from the newest checkpoint on, after the state took it.
See = Callable[[JournalRecord, ManagerState], None]


def records_from(files: list[Path], start_file: int, start_line: int,
                 opened: Sequence[IO[bytes]] | None = None) -> Iterator[JournalRecord]:
    """The records of ``files`` from line ``start_line`` of ``files[start_file]`` on
    (``opened``: the files, already open: :func:`~fsm_exec.journal.reader.open_journal`)."""
    for i in range(start_file, len(files)):
        for r in read_records(files[i], opened[i] if opened is not None else None):
            if i == start_file and r.line < start_line:
                continue
            yield r


def recovery_state(log_dir: Path | str, component: str = "ExecutionManager",
                   see: See | None = None, *,
                   snapshot: tuple[list[Path], Sequence[IO[bytes]]] | None = None
                   ) -> tuple[ManagerState, list[Path], tuple[int, int]]:
    """The state the journal in ``log_dir`` describes, folded from its newest checkpoint
    (verified against the records before it first); with the journal's files and where
    that checkpoint is (``(file index, line)``; ``(0, 0)``: none). ``see`` is called with
    each record from the newest checkpoint on. Raises
    :class:`~fsm_exec.journal.state.ReplayError` (``.record`` set) at the first record
    that breaks a rule, :class:`~fsm_exec.journal.files.JournalCorruptError` at a line
    that is not a record. ``snapshot``: the journal's files and the same files already
    open (:func:`~fsm_exec.journal.reader.open_journal`: what a reader racing a rotation
    reads), instead of listing ``log_dir``."""
    files, opened = snapshot if snapshot is not None else (
        journal_files(Path(log_dir), component), None)
    found = newest_checkpoints(files, component, 2, opened)
    newest = found[-1] if found else (0, 0)
    state = ManagerState(component)
    prev: JournalRecord | None = None
    verified = len(found) < 2  # nothing before the newest checkpoint to compare with
    for r in records_from(files, *(found[0] if found else (0, 0)), opened):
        at_newest = (not verified and r.event_type == CHECKPOINT
                     and r.component == component and r.path == str(files[newest[0]])
                     and r.line == newest[1])
        try:
            state.apply(r)
        except GapError as exc:
            pruned = at_newest and prev is not None and prev.path != r.path
            if not pruned:
                exc.record = r
                raise
        except ReplayError as exc:
            exc.record = r
            raise
        if at_newest:  # checked: recovery starts from it, as it always did
            verified, state = True, ManagerState(component)
            try:
                state.apply(r)
            except ReplayError as exc:
                exc.record = r
                raise
        if verified and see is not None:
            see(r, state)
        prev = r
    state.finish()
    return state, files, newest


def replay(records: Iterable[JournalRecord],
           component: str = "ExecutionManager") -> ManagerState:
    """Fold records into a :class:`ManagerState`; :class:`ReplayError` (with ``.record``)
    at the first broken rule."""
    state = ManagerState(component)
    for r in records:
        try:
            state.apply(r)
        except ReplayError as exc:
            exc.record = r
            raise
    state.finish()
    return state
