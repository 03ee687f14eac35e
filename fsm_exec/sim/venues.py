"""Simulated collaborators: a fake clock, a recording event logger, an idempotent venue,
a position handler, a reconciliation component, market data, and scripted faults.

They are small on purpose: the bundled example runs on them, and the test suite (and users'
property tests) drive the manager with them.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from fsm_exec.boundary.blocks import InstructionBlock
from fsm_exec.boundary.protocols import ExecutionRejected, HandOffKey, takes_hand_off_key

#: Where :meth:`FakeClock.timestamp` starts: fake time 0 is this instant.
FAKE_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


class FakeClock:
    """A clock for ``clock=`` whose :meth:`sleep` (for ``sleep=``) advances it; never waits.

    Calling it gives monotonic seconds (the manager's ``clock=``); :meth:`timestamp` gives
    the same instant as a timezone-aware datetime, for the ``timestamp`` arguments.
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now = float(start)
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def timestamp(self) -> datetime:
        """The current fake time as an aware UTC datetime: :data:`FAKE_EPOCH` + ``now``."""
        return FAKE_EPOCH + timedelta(seconds=self.now)

    def sleep(self, seconds: float) -> None:
        """Advance the clock by ``seconds`` (which must not be negative)."""
        if seconds < 0:
            raise ValueError(f"sleep({seconds!r}): negative")
        self.now += seconds
        self.slept += seconds

    def advance(self, seconds: float) -> None:
        """Move time on, as a slow collaborator would."""
        self.now += seconds


@attrs.frozen
class Event:
    """One recorded event."""

    timestamp: Any
    event_type: str
    component: str
    data: dict[str, Any]


class RecordingEventLogger:
    """Keeps every event in a list. ``fail_on`` makes ``log_event`` raise ``OSError`` for
    the event types named (to test that the manager survives a journal that cannot write)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.fail_on: set[str] = set()

    def log_event(self, timestamp: Any, event_type: str, component: str,
                  data: dict[str, Any]) -> None:
        if event_type in self.fail_on:
            raise OSError(28, "No space left on device")
        self.events.append(Event(timestamp, event_type, component, dict(data)))

    def of_type(self, *event_types: str) -> list[Event]:
        """The events of the given types, in order."""
        return [e for e in self.events if e.event_type in event_types]

    def transitions(self, block_id: str | None = None) -> list[tuple[str, str, str]]:
        """``(block_id, source, dest)`` of every ``block_transition``, in order."""
        return [(e.data["block_id"], e.data["source"], e.data["dest"])
                for e in self.of_type("block_transition")
                if block_id is None or e.data["block_id"] == block_id]


def block_deltas(block: InstructionBlock) -> dict[str, Any]:
    """The balance changes a block's instructions make: ``sell``/``short``/``withdraw``/
    ``unstake`` subtract the amount, anything else adds it."""
    changes: dict[str, float] = {}
    for instr in block.instructions:
        token = instr.get("token")
        amount = instr.get("amount", 0)
        if token is None:
            continue
        sign = -1 if instr.get("side") in ("sell", "short", "withdraw", "unstake") else 1
        changes[token] = changes.get(token, 0) + sign * float(amount)
    return {"block_id": block.block_id, "changes": changes}


class SimVenue:
    """An idempotent venue: each ``block_id`` executes at most once; routing it again returns
    the first execution's deltas. ``query_execution`` reports what was executed."""

    def __init__(self) -> None:
        self.executed: dict[str, dict[str, Any]] = {}
        self.route_calls: Counter[str] = Counter()
        self.execution_order: list[str] = []

    def route_instruction(self, timestamp: Any, block: InstructionBlock) -> dict[str, Any]:
        self.route_calls[block.block_id] += 1
        done = self.executed.get(block.block_id)
        if done is not None:
            return done
        deltas = block_deltas(block)
        self.executed[block.block_id] = deltas
        self.execution_order.append(block.block_id)
        return deltas

    def query_execution(self, timestamp: Any, block: InstructionBlock) -> dict[str, Any] | None:
        return self.executed.get(block.block_id)


class NaiveVenue(SimVenue):
    """A venue that is *not* idempotent: every route executes again (a real-world bug)."""

    def route_instruction(self, timestamp: Any, block: InstructionBlock) -> dict[str, Any]:
        self.route_calls[block.block_id] += 1
        deltas = block_deltas(block)
        self.executed[block.block_id] = deltas
        self.execution_order.append(block.block_id)
        return deltas


class _Delegating:
    """A wrapper that reads every attribute it does not define from ``inner``, so the
    wrapped object's own attributes (``fills``, ``orders``, ...) work through it.

    Never delegated: dunders (``copy`` and ``pickle`` probe them on an instance whose
    ``inner`` is not set yet), ``inner`` itself (no recursion before it is set), and the
    names in ``_NOT_DELEGATED`` (which the wrapper decides for itself). Only reads are
    delegated: setting an attribute sets it on the wrapper.
    """

    _NOT_DELEGATED: frozenset[str] = frozenset()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "inner" or name in type(self)._NOT_DELEGATED:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        try:
            inner = self.__dict__["inner"]
        except KeyError:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r} "
                                 f"(it wraps nothing yet)") from None
        try:
            return getattr(inner, name)
        except AttributeError:
            raise AttributeError(f"neither {type(self).__name__!r} nor the "
                                 f"{type(inner).__name__!r} it wraps has attribute "
                                 f"{name!r}") from None


#: Venue faults, one per route call: ``None`` behaves; ``reject`` raises ExecutionRejected
#: before executing; ``reject_final`` the same, not retryable; ``error`` raises before
#: executing; ``lost_response`` executes, then raises; ``hang_before`` takes longer than the
#: timeout and executes nothing; ``hang_after`` executes, replying after the timeout;
#: ``eventually_consistent`` executes, then raises, and ``query_execution`` answers ``None``
#: about the block for a while (an exchange whose order index lags: see
#: :class:`FaultyVenue`).
VENUE_FAULTS: tuple[str, ...] = ("reject", "reject_final", "error", "lost_response",
                                 "hang_before", "hang_after", "eventually_consistent")


class FaultyVenue(_Delegating):
    """Wraps any venue and applies scripted faults to its route calls, in order.

    ``query_execution`` is there exactly when the wrapped venue has one (and
    ``queryable``): a venue without it still looks like one without it. Hangs advance
    ``clock`` by ``hang_seconds`` (set it past ``execution_timeout``). After an
    ``eventually_consistent`` fault, ``query_execution`` answers ``None`` about that block
    until it has done so ``lag_queries`` times *and* ``lag_seconds`` have passed on
    ``clock`` since the block executed; then it asks the wrapped venue again.

    Every other attribute is the wrapped venue's (``wrapper.fills`` reads
    ``inner.fills``), except the wrapper's own: ``inner``, ``faults``, ``clock``,
    ``hang_seconds``, ``lag_queries``, ``lag_seconds``, ``queryable``, ``injected``
    (``(block_id, fault)`` applied), ``injections`` (each fault applied as one line of
    prose, in order: give several wrappers one list to have theirs in one order),
    ``route_calls`` (a Counter per block id) and ``lagged`` (a Counter of ``None`` answers
    given per block id).
    """

    _NOT_DELEGATED = frozenset({"query_execution"})

    def __init__(self, inner: Any, faults: Iterable[str | None] = (), *,
                 clock: FakeClock | None = None, hang_seconds: float = 31.0,
                 queryable: bool = True, lag_queries: int = 2,
                 lag_seconds: float = 4.0, injections: list[str] | None = None) -> None:
        if lag_queries < 0 or lag_seconds < 0:
            raise ValueError(f"lag_queries ({lag_queries!r}) and lag_seconds "
                             f"({lag_seconds!r}) must not be negative")
        self.inner = inner
        self.faults: deque[str | None] = deque(faults)
        self.clock = clock
        self.hang_seconds = hang_seconds
        self.lag_queries, self.lag_seconds = lag_queries, lag_seconds
        self.queryable = queryable and getattr(inner, "query_execution", None) is not None
        self.injected: list[tuple[str, str]] = []
        self.injections: list[str] = injections if injections is not None else []
        self.route_calls: Counter[str] = Counter()
        self.lagged: Counter[str] = Counter()
        self._lagging: dict[str, float] = {}  # block_id -> when it executed

    @property
    def query_execution(self) -> Any:
        """The wrapped venue's ``query_execution`` (lagging after ``eventually_consistent``);
        an ``AttributeError`` when it has none, as for the venue itself."""
        if not self.queryable:
            raise AttributeError("query_execution")  # then __getattr__ says why
        return self._query

    def _query(self, timestamp: Any, block: InstructionBlock) -> Any:
        executed_at = self._lagging.get(block.block_id)
        if executed_at is not None:
            now = self.clock() if self.clock is not None else executed_at
            if (self.lagged[block.block_id] < self.lag_queries
                    or now - executed_at < self.lag_seconds):
                self.lagged[block.block_id] += 1
                return None
            del self._lagging[block.block_id]
        return self.inner.query_execution(timestamp, block)

    def _hang(self) -> None:
        if self.clock is None:
            raise ValueError("a hang fault needs the fake clock")
        self.clock.advance(self.hang_seconds)

    def route_instruction(self, timestamp: Any, block: InstructionBlock) -> Any:
        self.route_calls[block.block_id] += 1
        fault = self.faults.popleft() if self.faults else None
        if fault is None:
            return self.inner.route_instruction(timestamp, block)
        if fault not in VENUE_FAULTS:
            raise ValueError(f"unknown venue fault {fault!r}")
        if fault == "eventually_consistent" and self.clock is None and self.lag_seconds:
            raise ValueError("an eventually_consistent fault with lag_seconds needs the "
                             "fake clock")
        self.injected.append((block.block_id, fault))
        self.injections.append(f"venue {fault} on route call "
                               f"{self.route_calls[block.block_id]} of {block.block_id}")
        if fault == "reject":
            raise ExecutionRejected("simulated rejection")
        if fault == "reject_final":
            raise ExecutionRejected("simulated permanent rejection", retryable=False)
        if fault == "error":
            raise ConnectionError("simulated connection refused")
        if fault == "hang_before":
            self._hang()
            raise TimeoutError("simulated hang")
        result = self.inner.route_instruction(timestamp, block)
        if fault == "lost_response":
            raise ConnectionResetError("simulated lost response")
        if fault == "eventually_consistent":
            self._lagging[block.block_id] = self.clock() if self.clock is not None else 0.0
            self.lagged[block.block_id] = 0
            raise ConnectionResetError("simulated lost response (the venue's index lags)")
        self._hang()  # hang_after
        return result


class SimReconciliation:
    """Reconciles each hand-off after a scripted delay on the fake clock.

    Each hand-off (``notify``) takes the next behaviour from ``script``: ``("ok", delay)``
    reports ``success`` ``delay`` seconds later, ``("fail", delay)`` reports ``failed``,
    ``("never", 0)`` stays ``pending``. An empty script means ``("ok", 0)``.
    ``reconciled_block_id`` names the block the status is about.
    """

    def __init__(self, clock: FakeClock | None = None,
                 script: Iterable[tuple[str, float]] = ()) -> None:
        self.clock = clock
        self.script: deque[tuple[str, float]] = deque(script)
        self.reconciled_block_id: str | None = None
        self._status = "pending"
        self._ready_at = 0.0
        self._outcome = "success"

    def notify(self, block_id: str | None) -> None:
        """The position handler took a block's deltas: start reconciling it."""
        kind, delay = self.script.popleft() if self.script else ("ok", 0.0)
        self.reconciled_block_id = block_id
        now = self.clock() if self.clock is not None else 0.0
        self._ready_at = now + delay if kind != "never" else float("inf")
        self._outcome = "failed" if kind == "fail" else "success"
        self._status = "pending"

    @property
    def reconciliation_status(self) -> str:
        now = self.clock() if self.clock is not None else 0.0
        if self._status == "pending" and now >= self._ready_at:
            self._status = self._outcome
        return self._status


class SimPositionHandler:
    """Applies ``{"changes": {token: amount}}`` deltas to its positions and tells the
    reconciliation component. ``failures`` scripts hand-offs that raise (``True``).

    ``updates`` holds every hand-off received; ``applied`` counts, per ``block_id``, how
    often a block's deltas were applied to ``positions``. Not idempotent by default (deltas
    handed off twice are applied twice: the README's hand-off window shows); with
    ``idempotent=True`` the deltas of a ``block_id`` already applied are not applied again.
    """

    def __init__(self, reconciliation: SimReconciliation | None = None,
                 failures: Iterable[bool] = (), *, idempotent: bool = False) -> None:
        self.reconciliation = reconciliation
        self.positions: dict[str, float] = {}
        self.updates: list[Any] = []
        self.failures: deque[bool] = deque(failures)
        self.idempotent = idempotent
        self.applied: Counter[str] = Counter()

    def update_state(self, timestamp: Any, trigger_source: str, deltas: Any) -> None:
        if self.failures and self.failures.popleft():
            raise RuntimeError("simulated position update failure")
        self.updates.append(deltas)
        block_id = None
        if isinstance(deltas, Mapping):
            block_id = deltas.get("block_id")
            seen = isinstance(block_id, str) and self.applied[block_id] > 0
            if isinstance(block_id, str) and not (seen and self.idempotent):
                self.applied[block_id] += 1
            if not (seen and self.idempotent):
                for token, amount in dict(deltas.get("changes", {})).items():
                    self.positions[token] = self.positions.get(token, 0.0) + amount
        if self.reconciliation is not None:
            self.reconciliation.notify(block_id)


#: Reconciliation behaviours, one per hand-off: ``("ok", delay)`` reports the wrapped
#: component's status after ``delay`` seconds, ``("never", 0)`` stays ``pending``,
#: ``("fail", 0)`` reports ``failed``.
RECONCILIATION_FAULTS: tuple[str, ...] = ("ok", "never", "fail")


class FaultyReconciliation(_Delegating):
    """Wraps any reconciliation component and scripts how each hand-off reconciles.

    :class:`FaultyPositionHandler` tells it when deltas were handed off (``notify``); each
    hand-off takes the next behaviour of ``script`` (see :data:`RECONCILIATION_FAULTS`).
    With nothing scripted it passes the wrapped status through. Every other attribute
    (such as ``reconciled_block_id``) is the wrapped component's, except the wrapper's own:
    ``inner``, ``clock``, ``script``, ``injected`` and ``injections`` (each behaviour
    applied as one line of prose, in order: see :class:`FaultyVenue`).
    """

    def __init__(self, inner: Any, clock: FakeClock,
                 script: Iterable[tuple[str, float]] = (), *,
                 injections: list[str] | None = None) -> None:
        self.inner, self.clock = inner, clock
        self.script: deque[tuple[str, float]] = deque(script)
        self._kind = "ok"
        self._ready_at = 0.0
        self.injected: list[tuple[str, float]] = []
        self.injections: list[str] = injections if injections is not None else []

    def notify(self, block_id: str | None) -> None:
        if self.script:
            self._kind, delay = self.script.popleft()
            self.injected.append((self._kind, delay))
            what = {"never": "never reconciles", "fail": "fails"}.get(
                self._kind, f"reconciles after {delay:g} s")
            self.injections.append(f"reconciliation of {block_id}'s hand-off {what}")
        else:
            self._kind, delay = "ok", 0.0
        self._ready_at = self.clock() + delay

    @property
    def reconciliation_status(self) -> str:
        if self._kind == "never":
            return "pending"
        if self._kind == "fail":
            return "failed"
        if self.clock() < self._ready_at:
            return "pending"
        return str(self.inner.reconciliation_status)


class FaultyPositionHandler(_Delegating):
    """Wraps any position handler: scripted hand-offs raise (``True`` in ``failures``)
    before reaching it; successful ones are announced to ``reconciliation`` (if any).
    Every other attribute (``positions``, ...) is the wrapped handler's, except the
    wrapper's own: ``inner``, ``failures``, ``reconciliation``, ``refused`` (hand-offs made
    to raise), ``handed_off`` (hand-offs the wrapped handler took and returned from) and
    ``injections`` (each failure as one line of prose, in order: see
    :class:`FaultyVenue`)."""

    def __init__(self, inner: Any, failures: Iterable[bool] = (), *,
                 reconciliation: FaultyReconciliation | None = None,
                 injections: list[str] | None = None) -> None:
        self.inner = inner
        self.failures: deque[bool] = deque(failures)
        self.reconciliation = reconciliation
        self.refused = 0
        self.handed_off = 0
        self.injections: list[str] = injections if injections is not None else []

    def update_state(self, timestamp: Any, trigger_source: str, deltas: Any,
                     hand_off_key: HandOffKey | None = None) -> Any:
        block_id = deltas.get("block_id") if isinstance(deltas, Mapping) else None
        if self.failures and self.failures.popleft():
            self.refused += 1
            self.injections.append(f"position handler raised on the hand-off of {block_id}")
            raise RuntimeError("injected position update failure")
        if takes_hand_off_key(self.inner.update_state):  # passed on to a handler taking it
            result = self.inner.update_state(timestamp, trigger_source, deltas,
                                             hand_off_key=hand_off_key)
        else:
            result = self.inner.update_state(timestamp, trigger_source, deltas)
        self.handed_off += 1
        if self.reconciliation is not None:
            self.reconciliation.notify(block_id)
        return result


@attrs.frozen(repr=False)
class FaultPlan:
    """Faults to inject, in order: one per venue call, per hand-off, per position update.

    Its repr names only the fields that hold faults, on one line (so a falsifying example
    that injects faults stays short)."""

    venue: tuple[str | None, ...] = ()
    reconciliation: tuple[tuple[str, float], ...] = ()
    positions: tuple[bool, ...] = ()

    def __repr__(self) -> str:
        fields = [f"{name}={value!r}" for name, value in (
            ("venue", self.venue), ("reconciliation", self.reconciliation),
            ("positions", self.positions)) if value]
        return f"FaultPlan({', '.join(fields)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """The same one line in hypothesis's printed examples."""
        printer.text(repr(self))


class StaticDataProvider:
    """Market data with fixed prices: ``{'market_data': {'prices': prices}}``."""

    def __init__(self, prices: Mapping[str, float] | None = None) -> None:
        self.prices = dict(prices if prices is not None else
                           {"ETH": 3000.0, "USDT": 1.0, "BTC": 60000.0, "stETH": 2990.0})

    def get_data(self, timestamp: Any) -> dict[str, Any]:
        return {"market_data": {"prices": self.prices}}


class InstantReconciliation:
    """Reports ``success`` at once, for any block (a simulated world that is always
    consistent: also a block handed off before a restart reconciles)."""

    reconciliation_status = "success"

    def notify(self, block_id: str | None) -> None:
        """Nothing to wait for."""
