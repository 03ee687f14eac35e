"""The manager's state and the one meaning of every journal record.

:class:`ManagerState` is the only code that says what a record does to the state: the queue,
the block in flight, the finished blocks, the counters and a halt. Each kind of record is an
*operation* on it (:meth:`ManagerState.accept`, :meth:`~ManagerState.start`,
:meth:`~ManagerState.move`, :meth:`~ManagerState.cancel`, ...). The live manager calls the
operation for each record it has just written; :meth:`ManagerState.apply` decodes a record
read back from a journal and calls the same operation, so crash recovery, ``check``,
``status``, the offline ``cancel`` and the report all fold records through the code the live
manager runs. :class:`ReplayError` is raised at the first record that breaks a rule.

A journal (format 2) is a sequence of records with ``seq`` growing by one, in files that
each start with a ``checkpoint``: everything recovery needs (the queue with its payloads,
the block in flight, the finished ids inside the duplicate window, the counters, a halt).
Replay starts from a checkpoint and applies what follows; a checkpoint met on the way is
checked against the state the records before it built (they must agree), then taken as the
state. Records before the newest checkpoint are history: a gap there is pruned history, a
gap after it loses records and is an error.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from fsm_exec.boundary.blocks import InstructionBlock, content_digest
from fsm_exec.boundary.escape import terminal_text
from fsm_exec.core.lifecycle import (
    INITIAL_STATE,
    TERMINAL_STATES,
    BlockState,
    Trigger,
)
from fsm_exec.core.running import DEFAULT_TABLE, RunTable
from fsm_exec.journal.codec import CHECKPOINT, JOURNAL_FORMAT
from fsm_exec.journal.codec import decode as from_wire
from fsm_exec.journal.files import shares_file
from fsm_exec.journal.flight import (
    RECONCILIATION_TIMEOUT_WHY,
    Flight,
    RecoveryReport,
    block_data,
    block_of,
    checkpoint_payload,
    in_doubt,
    resolution_of,
)
from fsm_exec.journal.lifecycle_record import LifecycleMismatch, describe, table_of_checkpoint
from fsm_exec.journal.reader import JournalRecord

_TERMINAL = frozenset(str(s) for s in TERMINAL_STATES)
_CANCEL = str(Trigger.CANCEL)
_INITIAL = str(INITIAL_STATE)
_RETRYING, _PENDING, _SUCCESS, _CANCELLED, _FAILED = (
    str(s) for s in (BlockState.RETRYING, BlockState.PENDING_RECONCILIATION,
                     BlockState.SUCCESS, BlockState.CANCELLED, BlockState.FAILED))
_DEFAULT_STATES = frozenset(str(s) for s in BlockState)
DEFAULT_WINDOW = 10_000
#: Checkpoint fields the writer adds for people and tools; not part of the state.
_INFORMATIONAL = frozenset({"written_on", "reset", "execution_mode"})

__all__ = ["DEFAULT_WINDOW", "NO_DELTAS", "RECONCILIATION_TIMEOUT_WHY", "Flight", "GapError",
           "ManagerState", "RecoveryReport", "Replay", "ReplayError", "block_data",
           "block_of", "checkpoint_payload", "in_doubt", "resolution_of"]


class ReplayError(ValueError):
    """A record breaks the lifecycle or the journal's own rules (``record`` says which).
    The message quotes the journal: its control characters are shown, never sent."""

    record: JournalRecord | None = None

    def __init__(self, message: str) -> None:
        super().__init__(terminal_text(message, keep_lines=True))


class GapError(ReplayError):
    """Records are missing: ``seq`` jumps from ``after`` to ``seq``."""

    def __init__(self, message: str, after: int, seq: int) -> None:
        super().__init__(message)
        self.after, self.seq = after, seq


#: The checkpoint field holding finished blocks' content digests (``{block_id: digest}``).
FINISHED_DIGESTS = "finished_digests"
_DIGEST = re.compile(r"[0-9a-f]{16}")


_COUNTERS = ("accepted", "executed", "failed", "cancelled", "retried", "starts")
#: ``ManagerState.move``'s default: the move carries no deltas.
NO_DELTAS: Any = object()


class _Taken:
    """The ids a new batch may not reuse (queued, in flight, finished inside the window):
    a container view of a :class:`ManagerState`."""

    __slots__ = ("_state",)

    def __init__(self, state: ManagerState) -> None:
        self._state = state

    def __contains__(self, block_id: object) -> bool:
        s = self._state
        f = s.flight
        return (block_id in s.queue or block_id in s.finished
                or (f is not None and f.block.block_id == block_id))


@attrs.define
class ManagerState:
    """The state a journal describes: built record by record (:meth:`apply`), or operation
    by operation by the live manager, with the same code."""

    component: str = "ExecutionManager"
    window: int = DEFAULT_WINDOW
    flight_cls: type[Flight] = attrs.field(default=Flight, repr=False)
    #: The lifecycle the records follow (a checkpoint that holds another one replaces it).
    table: RunTable = attrs.field(default=DEFAULT_TABLE, repr=False)
    queue: dict[str, InstructionBlock] = attrs.field(factory=dict)  # in order
    flight: Flight | None = None
    #: In finishing order, windowed: an OrderedDict, whose oldest entry goes in O(1) (a
    #: dict's first key, once entries before it were deleted, is a scan).
    finished: OrderedDict[str, str] = attrs.field(factory=OrderedDict)
    #: The content digest of each finished block whose content is known (not those a
    #: checkpoint written before digests were kept carried): see ``content_digest``.
    digests: dict[str, str] = attrs.field(factory=dict)
    accepted: int = 0
    executed: int = 0
    failed: int = 0
    cancelled: int = 0
    retried: int = 0
    starts: int = 0
    halted: bool = False
    halt_reason: str | None = None
    dropped: list[str] = attrs.field(factory=list)  # blocks of batches never fully accepted
    records: int = 0
    checkpoints: int = 0
    checkpoint_seq: int = 0  # seq of the checkpoint the state last came from
    last_seq: int = 0
    last_record: JournalRecord | None = None
    _group: list[dict[str, Any]] = attrs.field(factory=list)  # a batch being accepted
    _group_kind: str = ""
    taken: _Taken = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        self.taken = _Taken(self)

    @property
    def queued(self) -> list[str]:
        """Accepted block ids not yet started (nor cancelled), in order."""
        return list(self.queue)

    @property
    def restarts(self) -> int:
        """How many times the manager was started again on this journal."""
        return max(self.starts - 1, 0)

    @property
    def finished_count(self) -> int:
        """Blocks that reached a terminal state: ``current_block_index`` in the spec."""
        return self.executed + self.failed + self.cancelled

    def is_taken(self, block_id: str) -> bool:
        """True if a new batch may not use ``block_id`` (queued, in flight, finished)."""
        return block_id in self.taken

    # ------------------------------------------------------------------ operations
    # One per kind of record: what that record means. The live manager calls them right
    # after writing the record; apply() calls them for a record read back.
    def accept(self, blocks: Iterable[InstructionBlock]) -> None:
        """A batch was accepted (``block_accepted`` records): queued, in order."""
        queue = self.queue
        n = 0
        for b in blocks:
            queue[b.block_id] = b
            n += 1
        self.accepted += n

    def start(self, block_id: str, flight: Flight | None = None) -> Flight:
        """``queued --start--> routing``: the head of the queue becomes the block in
        flight (``flight``, when the caller has made one, else a new one)."""
        f = self.flight
        if f is not None:
            raise ReplayError(f"block {block_id!r} started while {f.block.block_id!r} "
                              f"was still {f.state}")
        expected = next(iter(self.queue), None)
        if block_id != expected:
            raise ReplayError(
                f"transition of block {block_id!r}, which was never accepted"
                if not self.is_taken(block_id) else
                f"block {block_id!r} started out of order (next in the queue: "
                f"{expected!r})")
        block = self.queue.pop(block_id)
        if flight is None:
            flight = self.flight_cls(block, _INITIAL)
        flight.state = _INITIAL
        self.flight = flight
        return flight

    def move(self, source: str, dest: str, trigger: str, *, attempt: int | None = None,
             deltas: Any = NO_DELTAS, resolved: bool = False, why: str = "",
             halts: str | None = None) -> Flight:
        """The block in flight moved ``source --trigger--> dest`` (``block_transition``).
        ``deltas`` are the venue's (handed to the position handler next), ``resolved`` when
        the venue's outcome was found out, ``why`` it retries, ``halts`` the error code of
        a failure that halts the manager."""
        f = self.flight
        assert f is not None
        if f.state != source:
            raise ReplayError(f"block {f.block.block_id!r} moved from {source} but was "
                              f"{f.state}")
        f.state = dest
        if attempt is not None:
            f.attempt = attempt
        if deltas is not NO_DELTAS:
            f.deltas, f.handed_off = deltas, False
        if resolved:
            f.unresolved = False
        if dest == _RETRYING:
            self.retried += 1
            f.why = why
        if halts is not None:
            # The failure that halts says so itself: a crash before the manager_halted
            # record still recovers a halted manager. The first reason stands.
            self.halt(halts)
        if dest in self.table.terminal:
            self._remember(f.block.block_id, dest, f.block)
            self.flight = None
            if dest == _SUCCESS:
                self.executed += 1
            elif dest == _CANCELLED:  # a user lifecycle's block cancelled as it waited
                self.cancelled += 1
            else:
                self.failed += 1
        return f

    def hand_off(self) -> None:
        """``positions_updated``: the position handler took the deltas of the block in
        flight."""
        f = self.flight
        assert f is not None
        if f.state != _PENDING:
            raise ReplayError(f"positions_updated for {f.block.block_id!r} in state "
                              f"{f.state!r}")
        f.handed_off = True

    def unresolved(self, attempt: int) -> None:
        """``execution_unresolved``: the venue's outcome is still unknown; ask again on
        ``attempt``."""
        f = self.flight
        assert f is not None
        f.attempt = attempt
        f.unresolved = True

    def state_of(self, block_id: str) -> str | None:
        """``block_id``'s state as the records say: queued, the in-flight block's state, or
        its end (inside the duplicate window); ``None`` when unknown."""
        if block_id in self.queue:
            return _INITIAL
        f = self.flight
        if f is not None and f.block.block_id == block_id:
            return f.state
        return self.finished.get(block_id)

    def cancel_problems(self, block_ids: Iterable[object],
                        quote: Callable[[object], str] = repr) -> list[str]:
        """Why cancelling ``block_ids`` must be refused, one line per bad id (empty: it may
        go ahead). Only queued blocks can be cancelled (and, under a user lifecycle, the
        block in flight waiting in a before-route state with a ``cancel`` transition), each
        named once. The one rule the manager's ``cancel()`` and the offline ``fsm-exec
        cancel`` both apply."""
        problems: list[str] = []
        seen: set[str] = set()
        for block_id in block_ids:
            quoted = quote(block_id)
            if not isinstance(block_id, str):
                problems.append(f"{quoted}: not a block id")
                continue
            if block_id in seen:
                problems.append(f"{quoted}: named twice")
            elif block_id not in self.queue and not self.cancellable_in_flight(block_id):
                where = self.state_of(block_id)
                problems.append(f"{quoted}: " + (
                    "unknown block" if where is None else
                    f"is {where} (only queued blocks can be cancelled)"))
            seen.add(block_id)
        return problems

    def cancellable_in_flight(self, block_id: object) -> bool:
        """True when ``block_id`` is the block in flight, in a before-route state a user
        lifecycle adds, with a ``cancel`` transition (nothing was sent: it may be
        cancelled)."""
        f, table = self.flight, self.table
        return (f is not None and f.block.block_id == block_id and f.state != _INITIAL
                and table.kinds.get(f.state) == "before_route"
                and (f.state, _CANCEL) in table.next)

    def cancel(self, block_ids: Iterable[str], dest: str = _CANCELLED) -> None:
        """Queued blocks were cancelled (``queued --cancel--> cancelled`` records)."""
        for block_id in block_ids:
            if block_id not in self.queue:
                raise ReplayError(f"block {block_id!r} cancelled but it is not queued")
            self._remember(block_id, dest, self.queue.pop(block_id))
            self.cancelled += 1

    def halt(self, reason: Any) -> None:
        """A failure that halts: the first journaled reason stands."""
        if not self.halted:
            self.halted, self.halt_reason = True, reason

    def halted_for(self, reason: Any) -> None:
        """``manager_halted``: says the manager's reason as it stands."""
        self.halted, self.halt_reason = True, reason

    def resume(self) -> None:
        """``manager_resumed``: an operator resumed the manager."""
        self.halted, self.halt_reason = False, None

    def started_component(self) -> None:
        """``component_initialization``: the manager (re)started on this journal."""
        self.starts += 1

    # ------------------------------------------------------------------ applying
    def apply(self, r: JournalRecord) -> None:
        """Apply one record read back from a journal, or raise :class:`ReplayError` saying
        what it breaks."""
        if r.component != self.component:
            if shares_file(r.component, self.component):
                return  # a name the writer gives this file too ("execution_manager")
            # The writer never puts it here: a damaged record (a flipped byte, an edit).
            raise ReplayError(f"a record of component {r.component!r} in the journal of "
                              f"{self.component!r} (each component has a file of its own)")
        kind = r.event_type
        if self.last_seq == 0 and kind != CHECKPOINT:
            if r.seq == 1:
                raise ReplayError(
                    "this journal has no checkpoint at its start: it was written by "
                    "fsm_exec 0.1 (journal format 1), which this version does not read; "
                    "finish or cancel its blocks with 0.1, or reconcile by hand and start a "
                    "new journal")
            raise GapError(f"records before seq {r.seq} are missing and no checkpoint "
                           "precedes this record", 0, r.seq)
        if self.last_seq and r.seq != self.last_seq + 1:
            if r.seq <= self.last_seq:
                raise ReplayError(f"seq {r.seq} does not follow seq {self.last_seq}")
            prev = self.last_record
            where = f" (after {prev.path}:{prev.line})" if prev is not None else ""
            raise GapError(f"records seq {self.last_seq + 1}-{r.seq - 1} are missing{where}",
                           self.last_seq, r.seq)
        if kind != "block_accepted" and kind != "block_transition" and self._group:
            self._drop_group()
        d = r.data
        if kind == CHECKPOINT:
            self._checkpoint(d, verify=self.last_seq != 0)
            self.checkpoint_seq = r.seq
        elif kind == "block_accepted":
            self._accepted(d)
        elif kind == "block_transition":
            self._transition(d)
            if self.flight is not None:
                self.flight.entered = r.timestamp
        elif kind == "positions_updated":
            self._in_flight(d, kind)
            self.hand_off()
        elif kind == "execution_unresolved":
            self._in_flight(d, kind)
            self.unresolved(_int(d, "attempt"))
        elif kind == "execution_query":
            self._in_flight(d, kind)
        elif kind == "manager_halted":
            self.halted_for(d.get("reason"))
        elif kind == "manager_resumed":
            self.resume()
        elif kind == "component_initialization":
            self.started_component()
        elif kind == "state_update":
            self._counters(d)
        self.last_seq = r.seq
        self.last_record = r
        self.records += 1

    def finish(self) -> None:
        """End of the journal: a batch still being accepted was never accepted."""
        if self._group:
            self._drop_group()

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_data(self) -> dict[str, Any]:
        """The state as a checkpoint holds it."""
        return checkpoint_payload(
            window=self.window, counters={k: getattr(self, k) for k in _COUNTERS},
            halted=self.halted, halt_reason=self.halt_reason, queue=self.queue.values(),
            flight=self.flight, finished=self.finished.items(), digests=self.digests,
            table=self.table)

    def same_as_finished(self, block: InstructionBlock) -> bool | None:
        """Whether ``block`` asks what the finished block of its id asked: ``None`` when
        that is not known (no finished block of that id, or one a checkpoint written
        before digests were kept carried)."""
        digest = self.digests.get(block.block_id)
        if digest is None or block.block_id not in self.finished:
            return None
        return digest == content_digest(block)

    def _checkpoint(self, d: dict[str, Any], *, verify: bool) -> None:
        fmt = d.get("format")
        if fmt != JOURNAL_FORMAT:
            raise ReplayError(f"journal format {fmt!r} is unknown: this fsm_exec reads "
                              f"format {JOURNAL_FORMAT}")
        try:
            table = table_of_checkpoint(d)
        except LifecycleMismatch as exc:
            raise ReplayError(str(exc)) from None
        if table.hash != self.table.hash:
            if verify and not d.get("reset"):
                raise ReplayError(f"the checkpoint's lifecycle {describe(table)} is not the "
                                  f"one of the records before it, {describe(self.table)}")
            self.table = table
        if verify and not d.get("reset"):
            window = d.get("duplicate_window")
            if type(window) is int and window >= 1 and window != self.window:
                # A run with another duplicate_window: it kept its own window's newest ids
                # of those the records before it finished. Compare as that run counted.
                self.window = window
                self._trim()
            mine = self.checkpoint_data()
            mine.setdefault(FINISHED_DIGESTS, {})
            for key, value in mine.items():
                if key == FINISHED_DIGESTS and key not in d:
                    continue  # written before digests were kept: nothing to compare
                if d.get(key) != value:
                    raise ReplayError(f"the checkpoint disagrees with the records before it "
                                      f"on {key!r}")
        try:
            self._load(d)
        except (KeyError, TypeError, ValueError) as exc:
            raise ReplayError(f"malformed checkpoint: {type(exc).__name__}: {exc}") from None
        self.checkpoints += 1

    def _load(self, d: dict[str, Any]) -> None:
        window = d["duplicate_window"]
        if type(window) is not int or window < 1:
            raise ValueError("duplicate_window must be an int >= 1")
        self.window = window
        counters = d["counters"]
        for key in _COUNTERS:
            value = counters[key]
            if type(value) is not int or value < 0:
                raise ValueError(f"counter {key} must be an int >= 0")
            setattr(self, key, value)
        self.halted, self.halt_reason = bool(d["halted"]), d["halt_reason"]
        self.queue = {}
        for x in d["queue"]:
            b = block_of(x)
            self.queue[b.block_id] = b
        fl = d["flight"]
        if fl is None:
            self.flight = None
        else:
            state = fl["state"]
            if state not in self.table.kinds or state in self.table.terminal:
                raise ValueError(f"a block in flight cannot be in state {state!r}")
            f = self.flight = self.flight_cls(block_of(fl["block"]), state)
            f.attempt, f.deltas = fl["attempt"], from_wire(fl["deltas"])
            f.handed_off, f.why = bool(fl["handed_off"]), fl["why"]
            entered = fl.get("entered")
            f.entered = entered if isinstance(entered, str) else None
        self.finished = OrderedDict()
        for block_id, state in d["finished"]:
            if state not in self.table.terminal:
                raise ValueError(f"a finished block cannot be in state {state!r}")
            self.finished[block_id] = state
        digests = d.get(FINISHED_DIGESTS, {})  # absent before digests were kept
        if type(digests) is not dict:
            raise ValueError(f"{FINISHED_DIGESTS} must be an object")
        for block_id, digest in digests.items():
            if block_id not in self.finished or type(digest) is not str or \
                    not _DIGEST.fullmatch(digest):
                raise ValueError(f"{FINISHED_DIGESTS} holds {block_id!r}, which is not a "
                                 "finished block with a digest of 16 hex digits")
        self.digests = dict(digests)
        self._group.clear()

    # ------------------------------------------------------------------ records
    def _remember(self, block_id: str, state: str, block: InstructionBlock) -> None:
        finished = self.finished
        finished[block_id] = state
        self.digests[block_id] = content_digest(block)
        if len(finished) > self.window:
            self._trim()

    def _trim(self) -> None:
        finished, digests = self.finished, self.digests
        if type(finished) is not OrderedDict:  # a caller's plain dict: kept in order
            finished = self.finished = OrderedDict(finished)
        while len(finished) > self.window:
            oldest, _ = finished.popitem(last=False)
            digests.pop(oldest, None)

    def _grouped(self, kind: str, d: dict[str, Any]) -> list[dict[str, Any]] | None:
        """Collect the records of one batch (acceptance, or a cancel of several blocks);
        the whole batch when its last record arrives, else ``None``."""
        i, n = _int(d, "batch_index"), _int(d, "batch_size")
        if self._group and (i == 0 or kind != self._group_kind):
            self._drop_group()
        if i != len(self._group) or not 0 <= i < n:
            raise ReplayError(f"{kind} {d.get('block_id')!r} is number {i} of a batch of "
                              f"{n}, after {len(self._group)} of it")
        if not isinstance(d.get("block_id"), str):
            raise ReplayError(f"{kind} without a block_id")
        self._group_kind = kind
        self._group.append(d)
        if len(self._group) < n:
            return None
        batch = list(self._group)
        self._group.clear()
        return batch

    def _drop_group(self) -> None:
        if self._group_kind == "block_accepted":
            self.dropped.extend(x["block_id"] for x in self._group)
        self._group.clear()

    def _accepted(self, d: dict[str, Any]) -> None:
        batch = self._grouped("block_accepted", d)
        if batch is None:
            return
        blocks: list[InstructionBlock] = []
        for x in batch:
            if self.is_taken(x["block_id"]) or any(b.block_id == x["block_id"]
                                                   for b in blocks):
                raise ReplayError(f"block {x['block_id']!r} accepted twice")
            try:
                blocks.append(block_of(x))
            except (KeyError, TypeError, ValueError) as exc:
                raise ReplayError(f"block_accepted {x['block_id']!r} is malformed: "
                                  f"{type(exc).__name__}") from None
        self.accept(blocks)

    def _transition(self, d: dict[str, Any]) -> None:
        block_id = d.get("block_id")
        source, dest, trigger = (str(d.get(k)) for k in ("source", "dest", "trigger"))
        if not isinstance(block_id, str):
            raise ReplayError("block_transition without a block_id")
        if dest not in self.table.next.get((source, trigger), ()):
            raise ReplayError(terminal_text(f"{source} --{trigger}--> {dest}")
                              + " is not an edge of the lifecycle")
        if trigger == _CANCEL and source == _INITIAL:
            batch = self._grouped("cancel", d)
            if batch is not None:
                self.cancel([x["block_id"] for x in batch], dest)
            return
        if self._group:
            self._drop_group()
        if block_id in self.finished:
            raise ReplayError(f"block {block_id!r} moved after it ended "
                              f"({self.finished[block_id]})")
        if source == _INITIAL:
            self.start(block_id)
        elif self.flight is None or self.flight.block.block_id != block_id:
            raise ReplayError(f"transition of block {block_id!r}, which is not in flight")
        why = ""
        if dest == _RETRYING:
            why = (RECONCILIATION_TIMEOUT_WHY if trigger == Trigger.RECONCILIATION_TIMEOUT
                   and source == _PENDING else str(d.get("reason", "")))
        self.move(source, dest, trigger,
                  attempt=_int(d, "attempt") if "attempt" in d else None,
                  deltas=from_wire(d["deltas"]) if "deltas" in d else NO_DELTAS,
                  resolved="resolved_by" in d, why=why,
                  halts=str(d.get("error_code")) if dest == _FAILED and d.get("halts")
                  else None)

    def _in_flight(self, d: dict[str, Any], kind: str) -> Flight:
        f = self.flight
        if f is None or f.block.block_id != d.get("block_id"):
            raise ReplayError(f"{kind} for block {d.get('block_id')!r}, which is not in flight")
        return f

    def _counters(self, d: dict[str, Any]) -> None:
        seen = {"blocks_executed": self.executed, "blocks_failed": self.failed,
                "current_block_index": self.finished_count}
        for key, value in seen.items():
            if key in d and d[key] != value:
                raise ReplayError(f"state_update says {key}={d[key]!r}, the journal "
                                  f"shows {value}")


#: The name this class had before the fold became the manager's own state.
Replay = ManagerState


def _int(d: dict[str, Any], key: str) -> int:
    v = d.get(key)
    if type(v) is not int:
        raise ReplayError(f"{key} must be an integer, got {v!r}")
    return v

