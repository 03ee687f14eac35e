"""The conformance check: does a journal obey the block lifecycle, and is it whole?"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import attrs

from fsm_exec.boundary.escape import terminal_text
from fsm_exec.journal.codec import CHECKPOINT
from fsm_exec.journal.files import JournalCorruptError, journal_files, not_regular
from fsm_exec.journal.reader import JournalRecord, journal_lines, looks_like_a_record, parse
from fsm_exec.journal.state import GapError, Replay, ReplayError


@attrs.frozen
class CheckReport:
    """The verdict on a journal: ``ok``, or every problem found (``problems``, the first as
    ``problem``), each naming ``path:line``; ``notes`` say what is fine but worth knowing
    (history pruned before a checkpoint, a block left in doubt by a crash)."""

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
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    blocks_cancelled: int = 0
    checkpoints: int = 0
    files: int = 0
    #: The block in flight in a state before its route (a user lifecycle's wait: nothing
    #: was sent, so it is not in doubt), and that state.
    waiting: str | None = None
    waiting_state: str | None = None

    def summary(self) -> str:
        """A few lines for people."""
        head = "OK" if self.ok else f"FAILED: {len(self.problems)} problem" + (
            "s" * (len(self.problems) != 1))
        lines = [head]
        lines += [f"  - {p}" for p in self.problems]
        lines.append(
            f"records {self.records} in {self.files} file{'s' * (self.files != 1)}, "
            f"checkpoints {self.checkpoints}, restarts {self.restarts}; blocks accepted "
            f"{self.blocks_accepted}, executed {self.blocks_executed}, failed "
            f"{self.blocks_failed}, cancelled {self.blocks_cancelled}, queued "
            f"{len(self.queued)}")
        if self.in_doubt is not None:
            lines.append(f"in doubt: block {self.in_doubt!r} ({self.in_doubt_state}), "
                         "left in flight when the journal ends")
        if self.waiting is not None:
            lines.append(f"waiting: block {self.waiting!r} ({self.waiting_state}), before "
                         "its route (nothing was sent): its wait goes on when the manager "
                         "starts")
        if self.dropped:
            lines.append(f"batches never fully accepted (not queued): {len(self.dropped)} "
                         "blocks")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)




class _Scan:
    """Reads journal files line by line, noting what is wrong with the files themselves
    (in ``problems``, shared with the replay so that they stay in order). An unreadable
    line yields ``None``: the records after it cannot be checked until a checkpoint.

    What a crash leaves at the end of a journal, and recovery accepts, is a note, not a
    problem (one reader, one verdict): the last file empty after files with records (a
    kill while a rotation started a new file), or its last line torn (a write cut short:
    never acknowledged, set aside by recovery)."""

    def __init__(self, problems: list[str], notes: list[str]) -> None:
        self.problems = problems
        self.notes = notes
        self.files = 0
        self._read = 0  # lines read so far, in every file

    def records(self, files: Iterable[Path]) -> Iterator[JournalRecord | None]:
        paths = list(files)
        for i, path in enumerate(paths):
            self.files += 1
            last = i == len(paths) - 1
            try:
                st = path.stat()
            except OSError as exc:
                self.problems.append(f"{path}: cannot read: {exc.strerror}")
                continue
            problem = not_regular(st.st_mode)
            if problem is not None:  # before reading: a device is never "empty"
                self.problems.append(f"{path}: {problem}")
                continue
            if st.st_size == 0:
                if last and self._read:
                    self.notes.append(
                        f"{path}: empty current file (a crash as a new file was started); "
                        "recovery goes on from the records before it")
                else:
                    self.problems.append(f"{path}: empty journal file (no records)")
                continue
            yield from self._file(path, last)

    def _file(self, path: Path, last: bool) -> Iterator[JournalRecord | None]:
        try:
            yield from self._lines(path, last)
        except JournalCorruptError as exc:  # not a regular file; a line beyond the bound
            self.problems.append(exc.message)

    def _lines(self, path: Path, last: bool) -> Iterator[JournalRecord | None]:
        for n, raw in journal_lines(path):  # the one reading path
            if not raw.endswith(b"\n"):
                torn = (f"{path}:{n}: torn last line ({len(raw)} bytes without a newline): "
                        "a write cut short by a crash")
                if last and (n > 1 or self._read):
                    self.notes.append(f"{torn}, never acknowledged; recovery sets it aside")
                else:
                    self.problems.append(f"{torn}; recovery sets it aside")
                return
            if n == 1 and not looks_like_a_record(raw):
                # What every reader says of it (the one message), and check's guess apart.
                try:
                    parse(path, n, raw)
                except JournalCorruptError as exc:
                    self.problems.append(exc.message)
                else:  # pragma: no cover - a record parses only when it looks like one
                    self.problems.append(f"{path}:1: not a journal record")
                self.notes.append(f"{path}: its first line is no journal record: is it a "
                                  "journal file?")
                return
            self._read += 1
            if not raw.strip():
                self.problems.append(f"{path}:{n}: empty line")
                yield None
                continue
            try:
                record = parse(path, n, raw)
            except JournalCorruptError as exc:
                self.problems.append(exc.message)
                yield None
            else:
                yield record


def check_journal(source: Path | str | Iterable[Path | str] | Iterable[JournalRecord],
                  component: str = "ExecutionManager") -> CheckReport:
    """Replay a journal against the lifecycle and report every problem.

    Checks: every line is a record; ``seq`` grows by one with no gap (a gap before a file
    that starts with a checkpoint is pruned history, a note; any other gap is a problem
    naming the files and the missing range); no file is empty, torn or not a journal,
    except what a crash leaves at the end and recovery accepts (the last file empty, or
    its last line torn: a note);
    every checkpoint agrees with the records before it; every transition is an edge of
    the table from the block's current state; each block starts at ``queued``, in
    acceptance order, only when no other block is in flight, and never moves after a
    terminal state; ``state_update`` counters agree. After a problem the check goes on
    from the next checkpoint. A block still in flight at the end is reported in doubt (a
    crash), not as a failure.
    """
    problems: list[str] = []
    notes: list[str] = []
    scan = _Scan(problems, notes)
    state = Replay(component)
    shown = state  # the state the report shows: the last one that was whole
    lost = False  # after a problem: skip to the next checkpoint
    records = checkpoints = skipped = 0
    prev: JournalRecord | None = None
    for r in _records(source, component, scan):
        if r is None:  # an unreadable line: what follows cannot be checked
            if not lost:
                lost, shown, state = True, state, Replay(component)
            continue
        records += 1
        is_ckpt = r.event_type == CHECKPOINT
        if lost and not is_ckpt:
            prev = r
            skipped += 1
            continue
        if records == 1 and is_ckpt and r.seq > 1:
            notes.append(f"history pruned: seq 1-{r.seq - 1} not in the journal (retention); "
                         f"the checkpoint at {r.path}:{r.line} holds the state")
        try:
            state.apply(r)
        except GapError as exc:
            boundary = prev is not None and prev.path != r.path
            if is_ckpt and (boundary or prev is None):
                what = (f"seq {exc.after + 1}-{exc.seq - 1}" if exc.after
                        else f"seq before {exc.seq}")
                notes.append(f"history pruned: {what} not in the journal; the checkpoint at "
                             f"{r.path}:{r.line} holds the state")
            else:
                problems.append(f"{r.path}:{r.line}: {exc}")
            restarted = _restart(r, component)
            if restarted is None:
                lost, shown, state = True, state, Replay(component)
            else:
                lost, state = False, restarted
        except ReplayError as exc:
            problems.append(f"{r.path}:{r.line}: {exc}")
            restarted = _restart(r, component) if is_ckpt else None
            if restarted is None:
                lost, shown, state = True, state, Replay(component)
            else:
                lost, state = False, restarted
        else:
            lost = False
        if is_ckpt:
            checkpoints += 1
        if not lost:
            shown = state
        prev = r
    if lost and skipped:
        notes.append(f"{skipped} records after the first problem could not be checked: "
                     "no later checkpoint to go on from")
    shown.finish()
    f = shown.flight
    unsent = f is not None and shown.table.kinds.get(f.state) == "before_route"
    doubt = None if unsent else f
    # What they quote of the journal (and its paths) shown, never sent.
    problems = [terminal_text(p, keep_lines=True) for p in problems]
    notes = [terminal_text(n, keep_lines=True) for n in notes]
    return CheckReport(
        ok=not problems, problem=problems[0] if problems else None, records=records,
        blocks_accepted=shown.accepted, blocks_executed=shown.executed,
        blocks_failed=shown.failed, in_doubt=doubt.block.block_id if doubt else None,
        in_doubt_state=doubt.state if doubt else None, queued=tuple(shown.queue),
        dropped=tuple(shown.dropped), restarts=shown.restarts, problems=tuple(problems),
        notes=tuple(notes), blocks_cancelled=shown.cancelled, checkpoints=checkpoints,
        files=scan.files, waiting=f.block.block_id if f and unsent else None,
        waiting_state=f.state if f and unsent else None)


def _restart(r: JournalRecord, component: str) -> Replay | None:
    """A fresh replay from the checkpoint ``r`` (without checking it against what came
    before), or ``None`` when ``r`` is not a usable checkpoint."""
    if r.event_type != CHECKPOINT:
        return None
    fresh = Replay(component)
    try:
        fresh.apply(r)
    except ReplayError:
        return None
    return fresh


def _records(source: Path | str | Iterable[Path | str] | Iterable[JournalRecord],
             component: str, scan: _Scan) -> Iterable[JournalRecord | None]:
    if isinstance(source, str | Path):
        p = Path(source)
        return scan.records(journal_files(p, component) if p.is_dir() else [p])
    items = list(source)
    if all(isinstance(x, JournalRecord) for x in items):
        return [x for x in items if isinstance(x, JournalRecord)]
    return scan.records([Path(x) for x in items if not isinstance(x, JournalRecord)])
