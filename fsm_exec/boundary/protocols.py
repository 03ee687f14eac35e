"""What the manager expects of the collaborators it is given (structural types)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import CodeType, FunctionType, MethodType
from typing import Any, NamedTuple, Protocol, runtime_checkable

from fsm_exec.boundary.blocks import InstructionBlock
from fsm_exec.core.errors import InvalidArgumentError, type_name


class ExecutionRejected(Exception):
    """Raise from ``route_instruction`` when the venue *definitively* executed nothing.

    Any other exception is an outcome the manager cannot be sure of, which it resolves by
    asking ``query_execution`` before routing again. ``retryable=False`` fails the block at
    once (for example, an instrument that does not exist).
    """

    def __init__(self, message: str = "rejected by the venue", *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@runtime_checkable
class ExecutionInterfaceManager(Protocol):
    """Routes a block to its venue. ``query_execution`` is optional (see the spec)."""

    def route_instruction(self, timestamp: Any, block: InstructionBlock) -> Any:
        """Execute ``block`` (idempotent by ``block.block_id``); return its deltas."""


@runtime_checkable
class PositionUpdateHandler(Protocol):
    """Takes the deltas of an executed block.

    A handler whose ``update_state`` has a parameter named ``hand_off_key`` (positional or
    keyword) is also given the hand-off's :class:`HandOffKey` as that keyword, to ignore a
    hand-off it already booked (after a hard kill between its return and the manager's
    record of it); the manager looks at the signature once, at construction."""

    def update_state(self, timestamp: Any, trigger_source: str, deltas: Any) -> Any:
        """Apply ``deltas``; raise if they cannot be applied."""


class HandOffKey(NamedTuple):
    """What identifies one hand-off of deltas to the position handler: the same for a
    hand-off made again after a restart, different for every other hand-off."""

    block_id: str
    attempt: int


#: The keyword :class:`PositionUpdateHandler` ``update_state`` may take the key by.
HAND_OFF_KEYWORD = "hand_off_key"


def takes_hand_off_key(update_state: Callable[..., Any]) -> bool:
    """True if ``update_state`` names a :data:`HAND_OFF_KEYWORD` parameter (``**kwargs``
    alone does not count: a wrapper passing everything on would hand it to a callee that
    does not expect it). A plain function's answer, or a method's, is its code's: looked
    at once per process (a research loop builds a manager per run)."""
    bound = type(update_state) is MethodType
    func = update_state.__func__ if bound else update_state  # type: ignore[attr-defined]
    if type(func) is not FunctionType or func.__dict__:  # __wrapped__, __signature__ ...
        return _names_hand_off_key(update_state)
    key = (bound, func.__code__)
    known = _KEYED.get(key)
    if known is None:
        if len(_KEYED) >= _KEYED_KEPT:  # code made at run time (exec): a bounded cache
            _KEYED.clear()
        known = _KEYED[key] = _names_hand_off_key(update_state)
    return known


def _names_hand_off_key(update_state: Callable[..., Any]) -> bool:
    try:
        param = inspect.signature(update_state).parameters.get(HAND_OFF_KEYWORD)
    except (TypeError, ValueError):  # a builtin or C callable without a signature
        return False
    return param is not None and param.kind in (param.POSITIONAL_OR_KEYWORD,
                                                param.KEYWORD_ONLY)


#: (bound method?, code) -> what :func:`takes_hand_off_key` answered: a signature's names
#: and kinds are its code's (a function with attributes, such as ``__wrapped__``, is
#: looked at each time).
_KEYED: dict[tuple[bool, CodeType], bool] = {}
_KEYED_KEPT = 256


@runtime_checkable
class ReconciliationComponent(Protocol):
    """Reports whether positions reconcile: ``pending``, ``success`` or ``failed``."""

    @property
    def reconciliation_status(self) -> str:
        """The current status (read-only for the manager)."""


@runtime_checkable
class DataProvider(Protocol):
    """Market data at a timestamp: ``get_data(ts)['market_data']['prices']``."""

    def get_data(self, timestamp: Any) -> Mapping[str, Any]:
        """All data at ``timestamp``."""


@runtime_checkable
class EventSink(Protocol):
    """Where the manager's structured events go (see :class:`fsm_exec.EventLogger`).

    A sink that also has a ``sync()`` method is taken to accept ``sync=`` on
    ``log_event``: the manager then passes ``sync=False`` for records that no action of its
    depends on, and relies on the next synced record (or ``sync()``) to make them durable.
    """

    def log_event(self, timestamp: Any, event_type: str, component: str,
                  data: dict[str, Any]) -> None:
        """Record one event; raise if it cannot be recorded."""


#: A pre-trade risk check: ``None`` (or ``True``) to pass, or a non-empty reason to refuse.
RiskCheck = Callable[[InstructionBlock, Mapping[str, Any]], "str | bool | None"]


#: The collaborators ``ExecutionManager`` takes by position, each with what it must have:
#: ``(parameter, member, what the member is)``.
COLLABORATORS: tuple[tuple[str, str, str], ...] = (
    ("data_provider", "get_data", "method"),
    ("position_update_handler", "update_state", "method"),
    ("execution_interface_manager", "route_instruction", "method"),
    ("reconciliation_component", "reconciliation_status", "attribute"),
)


#: ``ExecutionManager``'s positional parameters, in order.
ORDER = ("config, data_provider, execution_mode, position_update_handler, "
         "execution_interface_manager, reconciliation_component")


#: The keyword arguments ``ExecutionManager`` checks the same way, when given (``None`` is
#: "none" for the journal and the health manager): ``(parameter, members it calls, what to
#: give)``. A member named ``()`` means the argument itself is called.
KEYWORD_COLLABORATORS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("event_logger", ("log_event",), "an EventLogger(log_dir, mode) (not a path), or None"),
    ("health_manager", ("register_component", "unregister_component"),
     "a UnifiedHealthManager(), or None"),
    ("clock", ("()",), "a function returning seconds, such as time.monotonic"),
    ("sleep", ("()",), "a function taking seconds, such as time.sleep"),
)
_OPTIONAL = frozenset({"event_logger", "health_manager"})


def check_collaborators(**given: object) -> None:
    """Raise :class:`~fsm_exec.InvalidArgumentError` naming the first collaborator that
    lacks what its protocol needs (collaborators passed in the wrong order, say), before
    anything is called. ``reconciliation_status`` is looked up without being read (reading
    it may change a component's state): an object that delegates unknown attributes
    (``__getattr__``) is taken at its word. The keyword collaborators
    (:data:`KEYWORD_COLLABORATORS`) are checked when given: a journal that is a path, a
    clock that is a number."""
    for name, member, kind in COLLABORATORS:
        obj = given[name]
        if kind == "method":
            ok = callable(getattr(obj, member, None))
        else:
            ok = (any(member in vars(k) for k in type(obj).__mro__)  # on its class
                  or inspect.getattr_static(obj, member, _ABSENT) is not _ABSENT
                  or hasattr(type(obj), "__getattr__"))
        if not ok:
            raise InvalidArgumentError(
                f"{name}: a {type_name(obj)} has no {member} {kind}, so it is not a "
                f"{name} (collaborators in the wrong order? The order is {ORDER})")
    for name, members, what in KEYWORD_COLLABORATORS:
        if name not in given or (given[name] is None and name in _OPTIONAL):
            continue
        obj = given[name]
        for member in members:
            if member == "()":
                if callable(obj):
                    continue
                lacks = "is not callable"
            elif callable(getattr(obj, member, None)):
                continue
            else:
                lacks = f"has no {member} method"
            raise InvalidArgumentError(
                f"{name}: a {type_name(obj)} {lacks}, so it is not a {name}: give "
                f"{what}")


_ABSENT = object()
