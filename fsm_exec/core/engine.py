"""The lifecycle's engine: a ``transitions.Machine`` with a short path for bare transitions.

``transitions`` sends every trigger through its generic machinery: an ``EventData``, a
``partial``, ``Machine._process``, the callback lists of the machine, the transition and both
states (empty or not), and a few log calls. :class:`EngineMachine` plugs an :class:`EngineEvent`
into the documented extension point ``Machine.event_cls``. When a trigger would do nothing but
move the model from one state to another, :meth:`EngineEvent.trigger` does only that, through
the same ``State`` and ``Transition`` objects, setting the model's state attribute exactly as
``Machine.set_state`` does (``setattr(model, model_attribute, state.value)``, with
``set_state`` and ``State.value`` verified to be the stock ones); every other trigger
(a condition, any callback, an invalid trigger, a queued machine, transitions' log enabled...)
goes the stock way, unchanged. ``tests/test_engine.py`` drives a stock ``Machine`` and this
engine side by side on random tables and proves they agree.

The short path is taken only when all of these hold *at the moment of the trigger* (callbacks
added after construction are seen, because the lists are checked on every call):

- the machine is not queued and no transition is being processed;
- the machine has no ``prepare_event``, ``before_state_change``, ``after_state_change``,
  ``finalize_event``, ``on_exception`` or ``on_final`` callbacks;
- the model's state is a plain ``str`` naming a known state (an ``Enum`` goes the stock way);
- the first transition of this event from that state has no ``prepare``, ``conditions``,
  ``unless``, ``before`` or ``after``, and a destination (not an internal transition);
- the source state has no ``on_exit`` and the destination no ``on_enter`` callbacks (model
  methods named ``on_enter_<state>`` are in those lists once the model is added);
- the classes involved do not override any of the stock methods the short path stands in for
  (:data:`STOCK_MEMBERS`, checked once per class: monkeypatching transitions' own classes
  after a machine has fired is not seen);
- ``transitions``' own logger is not enabled for INFO (otherwise its records would differ).

A machine whose owner will change it no more can be frozen (:meth:`EngineMachine.freeze`;
``BlockLifecycle`` freezes the machine it builds and never hands out): each event then plans,
once, the moves from each source state for which the conditions above hold, and a planned
move checks only what can still change (transitions' logger, and that the callback lists
it watched are still empty: an append is seen; a machine-level list set through its property
drops the plans). Two thirds of a bare move's cost was checking again what had not changed.

The stock path is what these conditions are checked against: ``Event.trigger`` ->
``Machine._process`` -> ``Event._trigger`` -> ``Event._process`` -> ``Transition.execute`` ->
``Transition._change_state`` (``State.exit``, ``Machine.set_state``, ``State.enter``). With
every list above empty, that path only sets the model's state and returns ``True``; a failure
of the model's setter (or a state read back that is not a known state) is raised as is, as the
stock path re-raises it when there is no ``on_exception``. One difference is left, by design:
a trigger that goes the stock way has read the model's state attribute once more (a getter
with side effects would see it). ``test_engine.py`` pins the stock
functions' code for the ``transitions`` versions in ``pyproject.toml``: a release that changes
them fails that test by name, before anyone relies on the engine with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from transitions import Machine, MachineError, State, Transition
from transitions.core import Event

__all__ = ["HOOKS", "RECORDED", "EngineEvent", "EngineMachine", "Recorder", "is_recorded",
           "is_stock", "machine_hooks"]

#: The stock members each class's short path stands in for; a subclass that overrides one
#: of them always takes the stock path.
STOCK_MEMBERS: dict[type, tuple[str, ...]] = {
    Machine: ("_process", "get_state", "get_model_state", "set_state", "callbacks", "callback",
              "resolve_callable", "has_queue", "prepare_event", "before_state_change",
              "after_state_change", "finalize_event", "on_exception", "on_final"),
    Event: ("_trigger", "_process", "_is_valid_source"),
    Transition: ("execute", "_eval_conditions", "_change_state"),
    State: ("enter", "exit", "name", "value"),
}

_stock_cache: dict[type, dict[type, bool]] = {base: {base: True} for base in STOCK_MEMBERS}


def is_stock(cls: type, base: type) -> bool:
    """True when ``cls`` is ``base`` or a subclass keeping every member of ``base`` named in
    :data:`STOCK_MEMBERS` (methods and properties alike); checked once per class."""
    cache = _stock_cache[base]
    known = cache.get(cls)
    if known is None:
        known = cache[cls] = issubclass(cls, base) and all(
            getattr(cls, name) is getattr(base, name) for name in STOCK_MEMBERS[base])
    return known


_INFO = logging.INFO
#: transitions' own logger (``transitions.core``), as the logging module names it.
_log_enabled = logging.getLogger("transitions.core").isEnabledFor


#: The keyword a caller passes when it has written the move's record itself (the one-pass
#: backtest path): the machine's ``on_move`` is not called again for that move.
RECORDED = "_recorded"


class EngineEvent(Event):
    """An ``Event`` whose trigger takes the short path when it is provably equivalent, and
    that tells its machine's ``on_move`` of each move before making it (write-ahead)."""

    def __init__(self, name: str, machine: Machine) -> None:
        super().__init__(name, machine)
        self._short = is_stock(type(self), Event) and is_stock(type(machine), Machine)
        #: Set by :meth:`freeze`: for each source state whose move is bare, its
        #: destination and the callback lists that must stay empty for it to stay so.
        self._plans: dict[str, tuple[str, tuple[Any, ...]]] | None = None

    def freeze(self) -> None:
        """Plan this event's bare moves once (see :meth:`EngineMachine.freeze`): for each
        source from which the short path's conditions hold now, the destination's name and
        the callback lists (the machine's, the transition's, both states') that must still
        be empty when it fires. A move whose plan holds is made without checking the rest
        again; any other goes the short or the stock way, as before."""
        m = self.machine
        self._plans = None
        if not self._short or m.has_queue:
            return
        plans: dict[str, tuple[str, tuple[Any, ...]]] = {}
        self._attr: str = m.model_attribute
        hooks = machine_hooks(m)
        for source, candidates in self.transitions.items():
            t = candidates[0] if candidates else None
            if (t is None or type(source) is not str or type(t.dest) is not str
                    or t.source != source or not is_stock(type(t), Transition)):
                continue
            src, dst = m.states.get(source), m.states.get(t.dest)
            if (src is None or dst is None or not is_stock(type(src), State)
                    or not is_stock(type(dst), State)):
                continue
            watched = (*hooks, t.prepare, t.conditions, t.before, t.after, src.on_exit,
                       dst.on_enter)
            dest = dst.value
            if type(dest) is str and not any(watched):
                plans[source] = (dest, watched)
        self._plans = plans

    def dest_from(self, source: str) -> str | None:
        """Where this event leads from ``source`` when its first transition from there is
        unconditional (else ``None``: only the stock path can say)."""
        candidates = self.transitions.get(source)
        if not candidates:
            return None
        t = candidates[0]
        if t.conditions or type(t.dest) is not str:
            return None
        return t.dest

    def trigger(self, model: Any, *args: Any, **kwargs: Any) -> bool:
        """Fire this event on ``model``; ``True`` if a transition was made (as stock). The
        machine's ``on_move(source, dest, event, data)`` runs first, with the trigger's
        keyword arguments as ``data``: if it raises (a journal that cannot write), the model
        does not move. A caller that recorded the move itself passes ``_recorded=True`` (or
        calls :meth:`fire_recorded`)."""
        on_move = getattr(self.machine, "on_move", None)
        if kwargs and RECORDED in kwargs and kwargs.pop(RECORDED):
            on_move = None
        if on_move is not None:
            source = getattr(model, self.machine.model_attribute)
            if type(source) is str and self.transitions.get(source):
                dest = self.dest_from(source)
                if dest is not None:
                    on_move(source, dest, self.name, kwargs)
                elif not all(is_recorded(t) for t in self.transitions[source]):
                    # loud: a move that would go unrecorded is never made
                    raise MachineError(f"{self.name!r} from {source!r} is conditional: "
                                       "on_move needs to know where it leads before it "
                                       "moves (give each of its transitions a recorder)")
                # else each transition records itself once its conditions hold (recorder)
        return self._fire(model, args, kwargs)

    def fire_recorded(self, model: Any) -> bool:
        """Fire this event on ``model`` without telling ``on_move``: the caller has written
        the move's record itself (the one-pass backtest path)."""
        return self._fire(model, (), {})

    def _fire(self, model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        plans = self._plans
        if plans is not None and not _log_enabled(_INFO):
            state_attr = self._attr
            current = getattr(model, state_attr, None)
            plan = plans.get(current) if type(current) is str else None
            if plan is not None:
                planned, watched = plan
                if not any(watched):  # a frozen bare move (freeze)
                    setattr(model, state_attr, planned)  # Machine.set_state, as below
                    after = getattr(model, state_attr)
                    if after is not planned and not isinstance(after, State):
                        self.machine.get_state(after)
                    return True
        if self._short:
            m = self.machine
            # The machine's callback lists, as transitions' public properties return them
            # (the machine's own lists: a callback appended in place is seen; an
            # EngineMachine holds them, refreshed when one is replaced). A machine that is
            # not queued never holds a transition queue: the stock path would process this
            # trigger at once too.
            hooks = getattr(m, "engine_hooks", None)
            if hooks is None:
                hooks = machine_hooks(m)
            prepare, before, after, finalize, on_exception, on_final = hooks
            if not (m.has_queue or prepare or before or after or finalize or on_exception
                    or on_final or _log_enabled(_INFO)):
                attr = m.model_attribute
                value = getattr(model, attr, None)
                if type(value) is str:
                    candidates = self.transitions.get(value)  # .get: never add a key
                    if candidates:
                        t = candidates[0]
                        source, dest = t.source, t.dest
                        if (type(source) is str and type(dest) is str and source == value
                                and not (t.prepare or t.conditions or t.before or t.after)
                                and (type(t) is Transition or is_stock(type(t), Transition))):
                            states = m.states
                            src = states.get(source)
                            dst = states.get(dest)
                            if (src is not None and dst is not None
                                    and not (src.on_exit or dst.on_enter)
                                    and (type(src) is State or is_stock(type(src), State))
                                    and (type(dst) is State or is_stock(type(dst), State))):
                                # Machine.set_state, for one model (both verified stock):
                                value = dst.value  # the state's name: a str, checked above
                                setattr(model, attr, value)
                                # The stock path reads the state back and resolves it:
                                after = getattr(model, attr)
                                if after is not value and not isinstance(after, State):
                                    m.get_state(after)  # raises as stock does, if unknown
                                return True
        return super().trigger(model, *args, **kwargs)


class Recorder:
    """A transition's first ``before`` callback that tells the machine's ``on_move`` of the
    move: ``transitions`` calls it once the transition's ``conditions`` hold and before the
    state changes, so a conditional move is journaled first too (write-ahead: if ``on_move``
    raises, the model does not move). Made by :meth:`EngineMachine.recorder`."""

    __slots__ = ("machine", "source", "dest", "event")

    def __init__(self, machine: EngineMachine, source: str, dest: str, event: str) -> None:
        self.machine, self.source, self.dest, self.event = machine, source, dest, event

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        on_move = self.machine.on_move
        if on_move is not None:
            on_move(self.source, self.dest, self.event, kwargs)


def is_recorded(t: Transition) -> bool:
    """True when transition ``t`` tells ``on_move`` of its move itself (a :class:`Recorder`
    first among its ``before`` callbacks)."""
    return bool(t.before) and type(t.before[0]) is Recorder


#: The machine-level callbacks (public properties of ``Machine``) the short path stands in
#: for only when they are empty.
HOOKS = ("prepare_event", "before_state_change", "after_state_change", "finalize_event",
         "on_exception", "on_final")
_HOOK_NAMES = frozenset(HOOKS)


def machine_hooks(m: Machine) -> tuple[Any, ...]:
    """The callback lists of ``m``, through its public properties."""
    return tuple(getattr(m, name) for name in HOOKS)


class EngineMachine(Machine):
    """A ``transitions.Machine`` whose events are :class:`EngineEvent`; otherwise stock.

    ``state_cls`` and ``transition_cls`` stay transitions' own ``State`` and ``Transition``:
    the short path moves the model through those very objects, as ``Machine.set_state`` does.
    """

    event_cls = EngineEvent
    state_cls = State
    transition_cls = Transition
    #: Called with ``(source, dest, event name, data)`` before each move the machine makes
    #: (the lifecycle journals the move here, write-ahead); ``None``: nothing is told.
    on_move: Callable[[str, str, str, dict[str, Any]], None] | None = None
    #: :func:`machine_hooks` of this machine, kept current: the lists are the machine's own
    #: (appends are seen), and a list replaced through its property is caught below.
    engine_hooks: tuple[Any, ...] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.engine_hooks = machine_hooks(self)

    def recorder(self, source: str, dest: str, event: str) -> Recorder:
        """The ``before`` callback (first in the list) a conditional transition needs:
        it journals the move through :attr:`on_move` once the conditions hold."""
        return Recorder(self, source, dest, event)

    def freeze(self) -> None:
        """Plan each event's bare moves once, for a machine whose owner changes its
        transitions and states no more (:class:`~fsm_exec.core.lifecycle.BlockLifecycle`
        builds its machine, freezes it and never hands it out). A planned move still goes
        through this machine's event and sets the model's state as ``Machine.set_state``
        does, but checks only what can still change: transitions' logger, and that the
        callback lists it watched are still empty (a callback appended in place is seen,
        and the move goes the stock way). A machine-level callback list replaced through
        its property drops every plan. Not seen: a transition's or a state's list
        replaced by assignment, or a transition inserted before the first one of its
        source; do not freeze a machine that may change so."""
        for event in self.events.values():
            if isinstance(event, EngineEvent):
                event.freeze()

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in _HOOK_NAMES and self.engine_hooks is not None:
            self.engine_hooks = machine_hooks(self)
            for event in self.events.values():  # the plans watched the old lists
                if isinstance(event, EngineEvent):
                    event._plans = None
