"""The block in flight as the journal says it, the blocks a checkpoint holds, and what a
recovery makes of them: the pieces of :mod:`fsm_exec.journal.state` (the one fold) that are
plain data (re-exported there)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import attrs

from fsm_exec.boundary.blocks import InstructionBlock
from fsm_exec.boundary.canonical import to_wire
from fsm_exec.core.lifecycle import TABLE_HASH, BlockState
from fsm_exec.core.running import DEFAULT_TABLE, RunTable
from fsm_exec.journal.codec import DUMPS, JOURNAL_FORMAT, encode_default
from fsm_exec.journal.codec import decode as from_wire
from fsm_exec.journal.lifecycle_record import checkpoint_fields

_RETRYING = str(BlockState.RETRYING)
_DEFAULT_STATES = frozenset(str(s) for s in BlockState)
#: Why a block retries after its reconciliation timed out (else: why its route failed).
RECONCILIATION_TIMEOUT_WHY = "reconciliation_timeout"


@attrs.define(eq=False)
class Flight:
    """The block in flight, as the journal last saw it."""

    block: InstructionBlock
    state: str
    attempt: int = 1
    deltas: Any = None
    handed_off: bool = False
    why: str = ""  # why it is retrying: "reconciliation_timeout" or the route failure
    unresolved: bool = False  # execution_unresolved since its last route: in doubt
    #: The timestamp of the record that moved it into its state (a user lifecycle's waits
    #: count from it), when known.
    entered: str | None = None


def block_data(b: InstructionBlock, instructions: Any = None) -> dict[str, Any]:
    """A block as a checkpoint (and, with its place in its batch, an acceptance record)
    holds it: its instructions in their journal form (``instructions``, when the caller
    has it already)."""
    return {"block_id": b.block_id, "action": b.action, "priority": to_wire(b.priority),
            "instructions": (to_wire(list(b.instructions)) if instructions is None
                             else instructions)}


def data_size(data: dict[str, Any]) -> int:
    """The bytes :func:`block_data`'s ``data`` takes in a checkpoint (and a comma)."""
    return len(DUMPS(data, default=encode_default)) + 1


#: The most one finished block of the duplicate window adds to a checkpoint: its id and
#: its state in ``finished`` (``["id","state"],``: each at most 64 characters that JSON
#: writes as they are), and its id with its 16-digit digest in ``finished_digests``
#: (``"id":"digest",``).
FINISHED_ENTRY_BYTES = (2 + 64 + 3 + 64 + 2 + 1) + (1 + 64 + 3 + 16 + 1 + 1)


def queue_room(window: int, table: RunTable, line_bytes: int) -> int:
    """The bytes of blocks (as :func:`block_size` counts them) a checkpoint line of at most
    ``line_bytes`` holds for the queue and the block in flight: what is left beside a full
    duplicate window of ``window`` blocks, ``table``'s definition (a user lifecycle's) and
    a sixteenth of the line for the rest (the counters, a halt reason, the deltas of the
    block in flight: a venue's answer larger than that, with the queue full, still makes a
    checkpoint longer than a line, EXEC-009). The manager
    refuses a batch that would take its blocks past it: a checkpoint it could not write
    would halt it, and no restart could write one."""
    definition = len(DUMPS(checkpoint_fields(table)))
    return line_bytes - line_bytes // 16 - window * FINISHED_ENTRY_BYTES - definition


def window_for(held: int, table: RunTable, line_bytes: int) -> int:
    """The largest duplicate window whose checkpoint holds ``held`` bytes of blocks too
    (0: none, the blocks alone take the room)."""
    return max(queue_room(0, table, line_bytes) - held, 0) // FINISHED_ENTRY_BYTES


def block_size(b: InstructionBlock) -> int:
    """The bytes ``b`` takes in a checkpoint (in its queue, or as its block in flight)."""
    return data_size(block_data(b))


#: Blocks by id, each with the bytes it takes in a checkpoint (:func:`block_size`).
Measured = dict[str, tuple[InstructionBlock, int]]


def measure_held(queue: Mapping[str, InstructionBlock], flight: Flight | None,
                 known: Measured | None = None) -> Measured:
    """The blocks a checkpoint holds (``queue``'s and ``flight``'s), each with its bytes:
    measured, unless ``known`` holds that very block (the same object under its id)."""
    out: Measured = {}
    for b in (*queue.values(), *((flight.block,) if flight is not None else ())):
        hit = known.get(b.block_id) if known else None
        out[b.block_id] = hit if hit is not None and hit[0] is b else (b, block_size(b))
    return out


def block_of(d: Mapping[str, Any]) -> InstructionBlock:
    """The canonical block a checkpoint or an acceptance record holds."""
    priority = from_wire(d["priority"])  # beyond 64 bits: {"__int__": ...}
    if isinstance(priority, Decimal):  # as journals before 2026-12 wrote it
        priority = int(priority)
    return InstructionBlock(d["block_id"], d["action"], priority,
                            tuple(from_wire(list(d["instructions"]))))


def checkpoint_payload(*, window: int, counters: Mapping[str, int], halted: bool,
                       halt_reason: str | None, queue: Iterable[InstructionBlock],
                       flight: Flight | None, finished: Iterable[tuple[str, str]],
                       digests: Mapping[str, str] | None = None,
                       table: RunTable = DEFAULT_TABLE) -> dict[str, Any]:
    """The data of a checkpoint record: the one shape both the manager (from memory) and
    the replay (from records) write, so that they can be compared. ``digests``: the
    content digest of finished blocks whose content is known (``finished_digests``,
    written only when there is one: journals before it have none). A user lifecycle's
    checkpoint holds its definition, and when the block in flight entered its state."""
    out = {
        "format": JOURNAL_FORMAT, "lifecycle": TABLE_HASH, "duplicate_window": window,
        "counters": dict(counters), "halted": halted, "halt_reason": halt_reason,
        "queue": [block_data(b) for b in queue],
        "flight": None if flight is None else {
            "block": block_data(flight.block), "state": flight.state,
            "attempt": flight.attempt, "deltas": to_wire(flight.deltas),
            "handed_off": flight.handed_off, "why": flight.why},
        "finished": [[block_id, state] for block_id, state in finished],
    }
    if digests:
        out["finished_digests"] = dict(digests)
    if table.lifecycle is not None:
        out.update(checkpoint_fields(table))
        if flight is not None and flight.entered is not None:
            out["flight"]["entered"] = flight.entered  # type: ignore[index]
    return out


def resolution_of(flight: Flight | None, *, queryable: bool) -> str | None:
    """How a recovered manager settles the block left in flight (see
    :class:`RecoveryReport`): ``reconcile``, ``hand_off_then_reconcile``,
    ``query_execution`` or ``reroute_at_least_once`` (no ``query_execution`` to ask)."""
    if flight is None:
        return None
    if flight.state not in _DEFAULT_STATES:  # a user lifecycle's state: go on from there
        return "resume"
    if flight.state == "pending_reconciliation":
        return "reconcile" if flight.handed_off else "hand_off_then_reconcile"
    if flight.state == _RETRYING and flight.why == RECONCILIATION_TIMEOUT_WHY:
        return "reconcile"
    # routing, or retrying a route: the venue may have executed
    return "query_execution" if queryable else "reroute_at_least_once"


def in_doubt(flight: Flight | None) -> bool:
    """True when the venue may have executed the block in flight and nobody knows: it was
    routed (or a route failed) and no deltas settled it yet."""
    return flight is not None and resolution_of(flight, queryable=True) == "query_execution"


@attrs.frozen
class RecoveryReport:
    """What :meth:`ExecutionManager.recover` rebuilt from a journal.

    ``resolution`` says how the in-doubt block will be settled on the next ``update_state``:
    ``query_execution`` (ask the venue, route again only if it did not execute),
    ``reroute_at_least_once`` (no way to ask: route again under the same block_id),
    ``hand_off_then_reconcile`` (deltas known, never handed to the position handler),
    ``reconcile`` (only reconciliation is outstanding) or ``resume`` (a state a user
    lifecycle adds: its waits, polls and timeouts go on). ``restarts`` counts the manager's
    starts on this journal after the first; ``checkpoint_seq`` is where recovery began.
    """

    queued: tuple[str, ...]
    in_doubt: str | None
    in_doubt_state: BlockState | str | None
    resolution: str | None
    blocks_executed: int
    blocks_failed: int
    halted: bool
    halt_reason: str | None
    dropped: tuple[str, ...]
    records: int
    restarts: int
    blocks_cancelled: int = 0
    checkpoint_seq: int = 0
