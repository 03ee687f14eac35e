"""Construction's wiring: the journal claimed (one manager per journal), the driver and the
Host it sees of the manager, the fsync listener, the observers attached.

Methods of :class:`~fsm_exec.ExecutionManager`, kept in their own module by concern:
each function here is bound in the class body of ``manager.py`` (``self`` is the manager).
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
import threading
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fsm_exec.boundary.blocks import given_copies
from fsm_exec.boundary.config import (
    OWN_FIELDS,
    Environment,
    ExecutionConfig,
    Redactor,
    resolve_config,
)
from fsm_exec.boundary.protocols import (
    DataProvider,
    EventSink,
    ExecutionInterfaceManager,
    PositionUpdateHandler,
    ReconciliationComponent,
    RiskCheck,
    check_collaborators,
)
from fsm_exec.core.errors import (
    COMPONENT,
    InvalidArgumentError,
    describe_exception,
    safe_repr,
)
from fsm_exec.core.lifecycle import BlockLifecycle, TransitionListener
from fsm_exec.drivers.base import Flight
from fsm_exec.drivers.host import Host
from fsm_exec.drivers.policy import POLICIES
from fsm_exec.drivers.risk import RiskChecks
from fsm_exec.journal import codec
from fsm_exec.journal.files import journal_files
from fsm_exec.journal.flight import queue_room
from fsm_exec.journal.state import ManagerState
from fsm_exec.journal.writer import EventLogger
from fsm_exec.manager import guard
from fsm_exec.manager.observing import CallTargets, observed_events, transition_targets
from fsm_exec.observe.health import HealthWindow, UnifiedHealthManager
from fsm_exec.observe.seam import Observer

#: Lifecycles of closed managers, idle, for the next managers to reuse: building a
#: ``transitions`` Machine is most of what a manager costs to set up (a research loop
#: builds one manager per run).
_IDLE: list[BlockLifecycle] = []
_KEPT = 4
#: This release's own ``EventLogger.log_event``, as imported: the one that takes ``checked``.
_LOG_EVENT = EventLogger.log_event


def idle_lifecycle(listener: TransitionListener | None) -> BlockLifecycle:
    """An idle default lifecycle telling ``listener``: one a closed manager left, else a
    new one."""
    try:
        lc = _IDLE.pop()
    except IndexError:
        return BlockLifecycle(listener)
    lc.rebind(listener)
    return lc


def give_back(self: ExecutionManager) -> None:
    """A closed manager with nothing queued or in flight never consults its lifecycle
    again (every view reads the state first): the next manager may have it."""
    lc = self._lc
    if (lc.table is None  # the default lifecycle's (a user's runs its own guards, hooks)
            and self._f is None and not self._state.queue and self._state.flight is None
            and not lc.in_flight and len(_IDLE) < _KEPT):
        lc.rebind(None)  # it keeps no closed manager alive while it waits
        lc.context = None
        _IDLE.append(lc)


def _ignore(*_: object) -> None:
    """What a dead manager does when told of an fsync."""


def _holds_a_run(sink: object) -> bool:
    """True if the journal ``sink`` already holds records of this component (an earlier
    run, or an earlier manager in this process): an EventLogger says so itself; any other
    sink with a ``log_dir`` is asked through its files."""
    history = getattr(sink, "has_history", None)
    if callable(history):
        return bool(history(COMPONENT))
    log_dir = getattr(sink, "log_dir", None)
    if log_dir is None:
        return False
    return any(p.stat().st_size for p in journal_files(log_dir, COMPONENT))

if TYPE_CHECKING:
    from fsm_exec.core.lifecycles import Lifecycle
    from fsm_exec.manager.manager import ExecutionManager


def attach(self: ExecutionManager, event_logger: Any) -> None:
    """The part of construction that takes the journal: the claim, the driver, the
    first records (unless an earlier run must be recovered first), the listeners."""
    claim = getattr(event_logger, "claim", None)
    if callable(claim):  # one manager per journal, in this process too
        claim(COMPONENT, self)
    self._driver = self._policy.driver(self._driver_host())
    # A journal that checkpoints (EventLogger): every file starts with the state.
    self._checkpointing = callable(getattr(event_logger, "checkpoint", None)) and \
        callable(getattr(event_logger, "checkpoint_due", None))
    self._checkpoint_due = (
        event_logger.checkpoint_due if self._checkpointing else None)
    # What its checkpoints hold for blocks: a batch that would pass it is refused.
    self._queue_room = (queue_room(self._cfg.duplicate_window, self._table,
                                   codec.MAX_LINE_BYTES) if self._checkpointing else None)
    # Nothing is written to a journal that holds an earlier run until recover() has
    # read it: opening must never rotate, prune or checkpoint over live state.
    self._needs_recovery = _holds_a_run(event_logger)
    if not self._needs_recovery:
        self._start_journal(reset=False)
    me = weakref.ref(self)

    def fsync_listener(seconds: float) -> None:
        # Through a weak reference: the journal must not keep a dropped manager alive
        # (it would hold the journal's claim for ever); a dead one's is a no-op.
        getattr(me(), "_fsynced", _ignore)(seconds)

    self._fsync_listener = fsync_listener
    if self._observers:
        add_listener = getattr(event_logger, "add_fsync_listener", None)
        if callable(add_listener):
            add_listener(fsync_listener)
            weakref.finalize(self, getattr(event_logger, "remove_fsync_listener", _ignore),
                             fsync_listener)  # tidy: a dead manager's is a no-op anyway
    for obs in self._observers:
        obs.attach(self)


def driver_host(self: ExecutionManager) -> Host:
    """What the driver may use of this manager (its one surface: drivers/host.py)."""
    return Host(
        owner=self, config=self._cfg, clock=self._clock, sleep=self._sleep,
        route_instruction=self._route_instruction,
        update_positions=self._update_positions, reconciliation=self._reconciliation,
        query=self._query, risk=self._risk, redact=self._redact, finds=self._finds,
        lifecycle=self._lc, state=lambda: self._state, mutex=self._mutex,
        observers=self._observers, journaled=self._log_event is not None,
        move=self._move, fail=self._fail, handed_off=self._handed_off,
        unresolved=self._unresolved, finish=self._finish,
        canonical_deltas=self._canonical_deltas,
        journal_move=functools.partial(self._write_held, "block_transition", checked=True),
        emit=self._emit, refuse_if_retired=self._refuse_if_retired,
        cancelled_since_loaded=self._cancelled_since_loaded,
        call_done=self._call_done, notify_transition=self._notify_transition,
        note_health=self._health.note, try_move=self._try_move, waited=self._waited)


def construct(self: ExecutionManager, config: ExecutionConfig | Mapping[str, Any],
              data_provider: DataProvider, execution_mode: str | None,
              position_update_handler: PositionUpdateHandler,
              execution_interface_manager: ExecutionInterfaceManager,
              reconciliation_component: ReconciliationComponent, *,
              event_logger: EventSink | None, health_manager: UnifiedHealthManager | None,
              clock: Callable[[], float], sleep: Callable[[float], None],
              risk_checks: Sequence[RiskCheck], observers: Sequence[Observer],
              assume_timezone: str | dt.tzinfo | None, name: str | None = None,
              lifecycle: Lifecycle | None = None) -> None:
    """The manager's construction (``ExecutionManager.__init__``): the arguments checked
    (collaborators, risk checks, observers, the journal's mode), the state, the health
    registration, then the journal attached. A refusal leaves nothing claimed."""
    self._init_args = (
        (config, data_provider, execution_mode, position_update_handler,
         execution_interface_manager, reconciliation_component),
        {"event_logger": event_logger, "health_manager": health_manager, "clock": clock,
         "sleep": sleep, "risk_checks": risk_checks, "observers": observers,
         "assume_timezone": assume_timezone, "name": name, "lifecycle": lifecycle})
    # Naive timestamps are refused unless the caller says which zone they are in.
    self._assume_tz = guard.time_zone(assume_timezone)
    self._name = guard.manager_name(name, event_logger)
    self._health_manager = health_manager
    self._cfg = resolve_config(config)
    self._env = Environment.read(execution_mode)
    check_collaborators(data_provider=data_provider,
                        position_update_handler=position_update_handler,
                        execution_interface_manager=execution_interface_manager,
                        reconciliation_component=reconciliation_component,
                        event_logger=event_logger, health_manager=health_manager,
                        clock=clock, sleep=sleep)
    self._redact = Redactor(config if isinstance(config, Mapping) else {}, OWN_FIELDS)
    self._finds = self._redact.finds if self._redact else None  # a string holds a secret
    self._reconciliation = reconciliation_component
    # Each venue call is given its own deep copy of the block (boundary/blocks.py).
    query = getattr(execution_interface_manager, "query_execution", None)
    self._query = given_copies(query) if query is not None else None
    self._log = event_logger
    self._log_event = event_logger.log_event if event_logger is not None else None
    # A journal with sync() takes sync= on log_event: group commit (see _emit).
    self._syncable = callable(getattr(event_logger, "sync", None))
    self._unsynced_acceptance = False
    self._route_instruction = given_copies(execution_interface_manager.route_instruction)
    self._update_positions = position_update_handler.update_state
    self._clock = clock
    self._sleep = sleep
    for check in risk_checks:
        if not callable(check):
            raise InvalidArgumentError(f"risk_checks: {safe_repr(check)} is not callable")
    # The pre-trade checks: prices first, then the desk's own (drivers/risk.py).
    self._risk = RiskChecks(data_provider, risk_checks, self._redact,
                            self._cfg.asset_field)
    for obs in observers:
        if not isinstance(obs, Observer):
            raise InvalidArgumentError(
                f"observers: {type(obs).__name__} is not an fsm_exec.observe.Observer "
                "(subclass it and override the methods you need)")
    self._observers = tuple(observers)
    self._observed_events = observed_events(self._observers)
    self._transition_targets = transition_targets(self._observers)
    self._call_targets = CallTargets(self._observers)
    self._late_observer_errors = []
    # What differs between the modes, named once (drivers/policy.py).
    self._policy = POLICIES[self._env.execution_mode]
    # This release's own log_event, decided by the function the manager will call (a
    # subclass's, or one set on the class or on the object since, sees every record and
    # is given no checked=): records whose values the manager proved finite are written
    # unscanned (checked=), and an idle call that says what the call before it said joins
    # that call's held-back state_update in a buffered journal (health.end_update).
    journal = getattr(self._log_event, "__self__", None)  # whose log_event it is
    self._own_journal = (isinstance(journal, EventLogger)
                         and getattr(self._log_event, "__func__", None) is _LOG_EVENT)
    self._join_idle = (journal.join_idle  # type: ignore[union-attr]
                       if self._own_journal and not self._policy.step_times else None)
    self._idle_said = self._idle_status = None

    self._mutex = threading.RLock()
    # The queue, the block in flight, the finished blocks and the counters: the state
    # the journal's records describe, changed only through its operations, each right
    # after its record is written (the same code recovery and every tool fold with).
    # The lifecycle it runs (manager/triggering.py): the default, or a user's, checked.
    self._lc = self._lifecycle_machine(lifecycle)
    self._state = ManagerState(COMPONENT, window=self._cfg.duplicate_window,
                               flight_cls=Flight, table=self._table)
    self._held_bytes, self._sizes = 0, {}
    self._f = None
    self._ts = None
    self._t0 = 0.0  # the clock when the call stamped _ts began (records' step times)
    self._step_times = self._policy.step_times
    self._last_time = None  # the time of the record written last (live: step times)
    self._busy = None  # the thread running update_state, if any
    self._interrupted = None
    self._closed = False  # close(): its journal closed, every later call refused
    self._observer_failing = False
    # Per failing observer (by id): [when its failures were last journaled, how many
    # since] (observing.observer_failed: the first, then a count per interval).
    self._observer_reports = {}

    self.reconciliation_status = "pending"
    # A halt the journal has not taken (it failed: EXEC-009); the journaled one is the
    # state's. The manager is halted when either says so.
    self._pending_halt = None

    self._health = HealthWindow(100)
    self._update_count = 0
    self._processing_ms_total = 0.0
    self._error_count = 0
    self._recent_errors = deque(maxlen=10)
    self._last_update = None

    if self._policy.durable_journal and getattr(event_logger, "mode", "live") != "live":
        raise InvalidArgumentError(
            "a live manager needs a live journal: this EventLogger is in "
            f"{getattr(event_logger, 'mode', '?')!r} mode (it does not make a record "
            "durable before the manager acts on it), so "
            "an accepted block or a routed one could be lost in a crash; use "
            "EventLogger(log_dir, 'live')")
    self._health_checker = WeakHealthCheck(self)
    if health_manager is not None:  # first: a refusal here has claimed nothing
        try:
            _register(health_manager, self.health_name, self._health_checker)
        except ValueError as exc:
            raise InvalidArgumentError(
                f"health_manager: {describe_exception(exc)}; a manager replacing another "
                "takes its place through reopen(), or unregister the other first; "
                "managers side by side in one process each need their own name= "
                "(registered as ExecutionManager[<name>])") from None
    try:
        self._attach(event_logger)
    except BaseException:  # a manager that was never built is not registered either
        if health_manager is not None:
            health_manager.unregister_component(self.health_name, self._health_checker)
        raise
    if health_manager is not None:  # dropped unclosed: its registration goes with it
        weakref.finalize(self, health_manager.unregister_component, self.health_name,
                         self._health_checker)
    self._notify_event("initialized", execution_mode=self._env.execution_mode)


def _register(health_manager: UnifiedHealthManager, name: str, check: WeakHealthCheck) -> None:
    """Register ``check`` under ``name``; when the name is taken, once more after a garbage
    collection: a run's manager dropped without close() (a framework with no end hook)
    holds its name until it is collected, and reference cycles keep it until a collection
    finds it. A name a living manager holds stays taken (``ValueError``)."""
    try:
        health_manager.register_component(name, check)
    except ValueError:
        gc.collect()  # only when refused: the dropped manager's finalizer frees the name
        health_manager.register_component(name, check)


class WeakHealthCheck:
    """A manager's health check as a shared :class:`UnifiedHealthManager` holds it: by a
    weak reference, so that a long-lived health manager never keeps a manager dropped
    without ``close()`` alive (its buffered journal is written, its files and lock let go,
    when it is collected, and its registration goes with it)."""

    __slots__ = ("_manager", "__weakref__")

    def __init__(self, manager: ExecutionManager) -> None:
        self._manager = weakref.ref(manager)

    def __call__(self) -> dict[str, Any]:
        manager = self._manager()
        if manager is None:  # collected, its registration not yet gone
            return {"status": "unhealthy",
                    "errors": ["the manager was garbage-collected without close()"]}
        return manager.health_check()
