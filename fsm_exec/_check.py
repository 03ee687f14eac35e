"""The conformance check: does a journal obey the block lifecycle?"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import attrs

from ._journal import JournalCorruptError, JournalRecord, read_journal
from ._replay import Replay, ReplayError


@attrs.frozen
class CheckReport:
    """The verdict on a journal: ``ok``, or the first offending ``path:line`` and why."""

    ok: bool
    problem: str | None
    records: int
    blocks_accepted: int
    blocks_executed: int
    blocks_failed: int
    in_doubt: str | None
    in_doubt_state: str | None
    queued: tuple[str, ...]
    dropped: tuple[str, ...]
    restarts: int

    def summary(self) -> str:
        """A few lines for people."""
        head = "OK" if self.ok else f"FAILED: {self.problem}"
        lines = [head,
                 f"records {self.records}, blocks accepted {self.blocks_accepted}, executed "
                 f"{self.blocks_executed}, failed {self.blocks_failed}, queued "
                 f"{len(self.queued)}, restarts {max(self.restarts - 1, 0)}"]
        if self.in_doubt is not None:
            lines.append(f"in doubt: block {self.in_doubt!r} ({self.in_doubt_state}), "
                         "left in flight when the journal ends")
        if self.dropped:
            lines.append(f"batches never fully accepted (not queued): {len(self.dropped)} "
                         "blocks")
        return "\n".join(lines)


def check_journal(source: Path | str | Iterable[Path | str] | Iterable[JournalRecord],
                  component: str = "ExecutionManager") -> CheckReport:
    """Replay a journal against the lifecycle and stop at the first offending line.

    Checks: every line is a record with a growing ``seq``; every transition is an edge of
    the table from the block's current state; each block starts at ``queued``, in
    acceptance order, only when no other block is in flight, and never moves after a
    terminal state; ``state_update`` counters agree with the transitions. A block still in
    flight at the end is reported in doubt (a crash), not as a failure.
    """
    state = Replay(component)
    problem: str | None = None
    try:
        for r in _records(source, component):
            try:
                state.apply(r)
            except ReplayError as exc:
                problem = f"{r.path}:{r.line}: {exc}"
                break
    except JournalCorruptError as exc:
        problem = exc.message
    state.finish()
    f = state.flight
    return CheckReport(
        ok=problem is None, problem=problem, records=state.records,
        blocks_accepted=len(state.order), blocks_executed=state.executed,
        blocks_failed=state.failed, in_doubt=f.block.block_id if f else None,
        in_doubt_state=f.state if f else None, queued=tuple(state.queued),
        dropped=tuple(state.dropped), restarts=state.restarts)


def _records(source: Path | str | Iterable[Path | str] | Iterable[JournalRecord],
             component: str) -> Iterable[JournalRecord]:
    if isinstance(source, str | Path):
        return read_journal(source, component)
    items = list(source)
    if all(isinstance(x, JournalRecord) for x in items):
        return [x for x in items if isinstance(x, JournalRecord)]
    return read_journal([x for x in items if not isinstance(x, JournalRecord)], component)
