"""What a journal's whole history says, beyond the state recovery needs: every block id it
ever accepted (the duplicate window only remembers the newest finished ones).

A resumed run uses it to skip each block the journal already holds, however long ago it
finished; the records are folded through :class:`~fsm_exec.journal.state.ManagerState`, as
every reader does, so a batch counts only once it was accepted whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from pathlib import Path

from fsm_exec.boundary.blocks import content_digest
from fsm_exec.journal.codec import CHECKPOINT
from fsm_exec.journal.reader import JournalRecord, read_journal
from fsm_exec.journal.state import ManagerState, ReplayError


class HistoryPrunedError(ValueError):
    """The journal's oldest records were deleted (retention): the ids accepted before its
    first checkpoint are not all known."""


def accepted_ids(records: Iterable[JournalRecord],
                 component: str = "ExecutionManager") -> set[str]:
    """Every block id ``records`` (a journal from its first record, in order) show
    accepted: the ids of every batch accepted whole, and those its first checkpoint holds
    (queued, in flight, finished). :class:`HistoryPrunedError` when that checkpoint counts
    more acceptances than it holds ids (the records before it were deleted, so some ids
    are unknown); :class:`~fsm_exec.journal.state.ReplayError` for a record that breaks
    the lifecycle."""
    return set(accepted_digests(records, component))


def accepted_digests(records: Iterable[JournalRecord],
                     component: str = "ExecutionManager") -> dict[str, str | None]:
    """:func:`accepted_ids`, each with the content digest of the block accepted under it
    (:func:`~fsm_exec.boundary.blocks.content_digest`), ``None`` where the journal does not
    say (a finished block of a checkpoint written before digests were kept)."""
    state = ManagerState(component)
    ids: dict[str, str | None] = {}
    first = True
    for r in records:
        accepted = state.accepted
        try:
            state.apply(r)
        except ReplayError as exc:
            exc.record = r
            raise
        if first and r.event_type == CHECKPOINT:
            held = {*state.queue, *state.finished}
            if state.flight is not None:
                held.add(state.flight.block.block_id)
            if state.accepted > len(held):
                raise HistoryPrunedError(
                    f"the journal's records before seq {r.seq} were deleted (retention): "
                    f"{state.accepted} blocks were accepted before it and its checkpoint "
                    f"names {len(held)} of them")
            ids.update((i, state.digests.get(i)) for i in state.finished)
            ids.update((b.block_id, content_digest(b)) for b in state.queue.values())
            if state.flight is not None:
                ids[state.flight.block.block_id] = content_digest(state.flight.block)
        elif state.accepted > accepted:  # a batch accepted whole: the newest in the queue
            ids.update((b.block_id, content_digest(b)) for b in islice(
                reversed(state.queue.values()), state.accepted - accepted))
        first = False
    return ids


def accepted_ids_in(log_dir: Path | str, component: str = "ExecutionManager") -> set[str]:
    """:func:`accepted_ids` of the journal in ``log_dir`` (every file, oldest first)."""
    return accepted_ids(read_journal(log_dir, component), component)


def accepted_digests_in(log_dir: Path | str, component: str = "ExecutionManager"
                        ) -> dict[str, str | None]:
    """:func:`accepted_digests` of the journal in ``log_dir`` (every file, oldest first)."""
    return accepted_digests(read_journal(log_dir, component), component)
