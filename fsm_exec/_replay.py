"""Replaying a journal: the one reading of what the records mean.

Crash recovery rebuilds a manager from it; the conformance check reports where a journal
breaks the lifecycle. Both apply records one by one to a :class:`Replay`, which raises
:class:`ReplayError` at the first record that breaks a rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from ._blocks import InstructionBlock
from ._canonical import from_wire
from ._journal import JournalRecord
from ._lifecycle import INITIAL_STATE, NEXT_STATE, TERMINAL_STATES, BlockState, Trigger

_TERMINAL = {str(s) for s in TERMINAL_STATES}
_NEXT = {(str(a), str(t)): str(b) for (a, t), b in NEXT_STATE.items()}


class ReplayError(ValueError):
    """A record breaks the lifecycle or the journal's own rules (``record`` says which)."""

    record: JournalRecord | None = None


@attrs.define
class Flight:
    """The block in flight, as the journal last saw it."""

    block: InstructionBlock
    state: str
    attempt: int = 1
    deltas: Any = None
    handed_off: bool = False
    why: str = ""  # why it is retrying: "reconciliation_timeout" or the route failure


@attrs.define
class Replay:
    """The state a journal describes, built record by record."""

    component: str = "ExecutionManager"
    accepted: dict[str, InstructionBlock] = attrs.field(factory=dict)
    order: list[str] = attrs.field(factory=list)  # accepted block ids, in acceptance order
    started: set[str] = attrs.field(factory=set)
    finished: dict[str, str] = attrs.field(factory=dict)  # in finishing order
    flight: Flight | None = None
    executed: int = 0
    failed: int = 0
    cancelled: int = 0
    retried: int = 0
    halted: bool = False
    halt_reason: str | None = None
    dropped: list[str] = attrs.field(factory=list)  # blocks of batches never fully accepted
    records: int = 0
    restarts: int = 0
    last_seq: int = 0
    _batch: list[dict[str, Any]] = attrs.field(factory=list)
    _next_start: int = 0  # index in order of the next block to start

    @property
    def queued(self) -> list[str]:
        """Accepted block ids not yet started (nor cancelled), in order."""
        return [b for b in self.order[self._next_start:] if b not in self.finished]

    def apply(self, r: JournalRecord) -> None:
        """Apply one record, or raise :class:`ReplayError` saying what it breaks."""
        if r.component != self.component:
            return
        if r.seq <= self.last_seq:
            raise ReplayError(f"seq {r.seq} does not follow seq {self.last_seq}")
        self.last_seq = r.seq
        self.records += 1
        d = r.data
        kind = r.event_type
        if kind != "block_accepted" and self._batch:
            self._drop_batch()
        if kind == "block_accepted":
            self._accepted(d)
        elif kind == "block_transition":
            self._transition(d)
        elif kind == "positions_updated":
            f = self._in_flight(d, kind)
            if f.state != "pending_reconciliation":
                raise ReplayError(f"positions_updated for {f.block.block_id!r} in state "
                                  f"{f.state!r}")
            f.handed_off = True
        elif kind == "execution_unresolved":
            f = self._in_flight(d, kind)
            f.attempt = _int(d, "attempt")
        elif kind == "manager_halted":
            self.halted, self.halt_reason = True, d.get("reason")
        elif kind == "manager_resumed":
            self.halted, self.halt_reason = False, None
        elif kind == "component_initialization":
            self.restarts += 1
        elif kind == "state_update":
            self._counters(d)

    def finish(self) -> None:
        """End of the journal: a batch still being accepted was never accepted."""
        if self._batch:
            self._drop_batch()

    # ------------------------------------------------------------------ records
    def _accepted(self, d: dict[str, Any]) -> None:
        i, n = _int(d, "batch_index"), _int(d, "batch_size")
        if i == 0 and self._batch:
            self._drop_batch()
        if i != len(self._batch) or not 0 <= i < n:
            raise ReplayError(f"block_accepted {d.get('block_id')!r} is number {i} of a "
                              f"batch of {n}, after {len(self._batch)} of it")
        block_id = d.get("block_id")
        if not isinstance(block_id, str):
            raise ReplayError("block_accepted without a block_id")
        if block_id in self.accepted:
            raise ReplayError(f"block {block_id!r} accepted twice")
        self._batch.append(d)
        if len(self._batch) == n:
            for x in self._batch:
                b = InstructionBlock(x["block_id"], x["action"], x["priority"],
                                     tuple(from_wire(i) for i in x["instructions"]))
                self.accepted[b.block_id] = b
                self.order.append(b.block_id)
            self._batch.clear()

    def _drop_batch(self) -> None:
        self.dropped.extend(x["block_id"] for x in self._batch)
        self._batch.clear()

    def _transition(self, d: dict[str, Any]) -> None:
        block_id = d.get("block_id")
        source, dest, trigger = (str(d.get(k)) for k in ("source", "dest", "trigger"))
        if not isinstance(block_id, str):
            raise ReplayError("block_transition without a block_id")
        if _NEXT.get((source, trigger)) != dest:
            raise ReplayError(f"{source} --{trigger}--> {dest} is not an edge of the lifecycle")
        if block_id not in self.accepted:
            raise ReplayError(f"transition of block {block_id!r}, which was never accepted")
        if block_id in self.finished:
            raise ReplayError(f"block {block_id!r} moved after it ended "
                              f"({self.finished[block_id]})")
        f = self.flight
        if trigger == Trigger.CANCEL:
            if block_id not in self.queued:
                raise ReplayError(f"block {block_id!r} cancelled but it is not queued")
            self.finished[block_id] = dest
            self.cancelled += 1
            return
        if source == str(INITIAL_STATE):
            if f is not None:
                raise ReplayError(f"block {block_id!r} started while {f.block.block_id!r} "
                                  f"was still {f.state}")
            expected = self.queued[0] if self.queued else None
            if block_id != expected:
                raise ReplayError(f"block {block_id!r} started out of order (next in the "
                                  f"queue: {expected!r})")
            self._next_start = self.order.index(block_id, self._next_start) + 1
            self.started.add(block_id)
            f = self.flight = Flight(self.accepted[block_id], source)
        elif f is None or f.block.block_id != block_id:
            raise ReplayError(f"transition of block {block_id!r}, which is not in flight")
        if f.state != source:
            raise ReplayError(f"block {block_id!r} moved from {source} but was {f.state}")
        f.state = dest
        if "attempt" in d:
            f.attempt = _int(d, "attempt")
        if "deltas" in d:
            f.deltas, f.handed_off = from_wire(d["deltas"]), False
        if dest == "retrying":
            self.retried += 1
            f.why = ("reconciliation_timeout" if trigger == Trigger.RECONCILIATION_TIMEOUT
                     else str(d.get("reason", "")))
        if dest in _TERMINAL:
            self.finished[block_id] = dest
            self.flight = None
            if dest == "success":
                self.executed += 1
            else:
                self.failed += 1

    def _in_flight(self, d: dict[str, Any], kind: str) -> Flight:
        f = self.flight
        if f is None or f.block.block_id != d.get("block_id"):
            raise ReplayError(f"{kind} for block {d.get('block_id')!r}, which is not in flight")
        return f

    def _counters(self, d: dict[str, Any]) -> None:
        seen = {"blocks_executed": self.executed, "blocks_failed": self.failed,
                "current_block_index": self.executed + self.failed + self.cancelled}
        for key, value in seen.items():
            if key in d and d[key] != value:
                raise ReplayError(f"state_update says {key}={d[key]!r}, the journal "
                                  f"shows {value}")


def _int(d: dict[str, Any], key: str) -> int:
    v = d.get(key)
    if type(v) is not int:
        raise ReplayError(f"{key} must be an integer, got {v!r}")
    return v


def replay(records: Iterable[JournalRecord], component: str = "ExecutionManager") -> Replay:
    """Replay records; :class:`ReplayError` (with ``.record``) at the first broken rule."""
    state = Replay(component)
    for r in records:
        try:
            state.apply(r)
        except ReplayError as exc:
            exc.record = r
            raise
    state.finish()
    return state


@attrs.frozen
class RecoveryReport:
    """What :meth:`ExecutionManager.recover` rebuilt from a journal.

    ``resolution`` says how the in-doubt block will be settled on the next ``update_state``:
    ``query_execution`` (ask the venue, route again only if it did not execute),
    ``reroute_at_least_once`` (no way to ask: route again under the same block_id),
    ``hand_off_then_reconcile`` (deltas known, never handed to the position handler) or
    ``reconcile`` (only reconciliation is outstanding).
    """

    queued: tuple[str, ...]
    in_doubt: str | None
    in_doubt_state: BlockState | None
    resolution: str | None
    blocks_executed: int
    blocks_failed: int
    halted: bool
    halt_reason: str | None
    dropped: tuple[str, ...]
    records: int
    restarts: int
