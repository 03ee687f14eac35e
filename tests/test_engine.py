"""Tests for fsm_exec.core.engine: the engine behaves exactly as a stock ``transitions.Machine``.

The differential property test builds a stock ``Machine`` and an ``EngineMachine`` from the
same table (the lifecycle's, or a random valid one with conditions, callbacks, model callbacks,
ignored triggers, queued processing, callbacks that raise or fire other triggers) and applies
the same random operations to both (fire valid and invalid triggers three ways, force states,
add callbacks and transitions on the way): every outcome (return value, or exception type and
message), every state and every callback call, in order and with what it was given, must be
the same. The other tests pin which path a trigger takes, and the transitions internals the
engine relies on.
"""

from __future__ import annotations

import ast
import enum
import hashlib
import inspect
import logging
import re
import textwrap
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest
import transitions
import transitions.core
from hypothesis import given
from hypothesis import strategies as st
from transitions import Machine, MachineError, State, Transition
from transitions.core import Condition, Event, EventData

import fsm_exec.core.engine as engine_module
from fsm_exec.core.engine import STOCK_MEMBERS, EngineEvent, EngineMachine, is_stock
from fsm_exec.core.lifecycle import (
    INITIAL_STATE,
    TRANSITIONS,
    BlockLifecycle,
    BlockState,
    Trigger,
)

# --- building the same machine twice from a spec ---------------------------------------------

STATE_POOL = ("s0", "s1", "s2", "s3", "s4", "s5")
TRIGGER_POOL = ("go", "back", "jump", "hop", "skip")
UNKNOWN_TRIGGER = "nope"
MACHINE_LISTS = ("prepare_event", "before_state_change", "after_state_change",
                 "finalize_event", "on_exception", "on_final")
TRANSITION_LISTS = ("prepare", "before", "after")


@dataclass(frozen=True)
class Cb:
    """A callback: ``kind`` is record, raise, fire:<trigger>, true or false (conditions);
    ``by_name`` makes it a model method referenced by its name (a string callback)."""

    cid: int
    kind: str = "record"
    by_name: bool = False


@dataclass
class Spec:
    """Everything needed to build one machine; built twice, once per class."""

    states: list[str]
    initial: str
    edges: list[dict[str, Any]]
    state_opts: dict[str, dict[str, Any]] = field(default_factory=dict)
    machine_opts: dict[str, Any] = field(default_factory=dict)
    model_callbacks: list[tuple[str, Cb]] = field(default_factory=list)  # on_enter_s0, ...
    use_enum: bool = False


class _Ctx:
    """What a callback needs at run time: the log, the model, and a nesting guard."""

    def __init__(self, send_event: bool) -> None:
        self.log: list[Any] = []
        self.send_event = send_event
        self.model: Any = None
        self.depth = 0
        self.budget = 3  # nested fires per operation (a queued machine could loop forever)


def _describe(ctx: _Ctx, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if ctx.send_event:
        (ed,) = args
        trans = ed.transition
        return ("event_data", ed.event.name, ed.state.name if ed.state is not None else None,
                (trans.source, trans.dest) if trans is not None else None, ed.result,
                _norm(repr(ed.error)) if ed.error is not None else None,
                ed.args, sorted(ed.kwargs.items()))
    return ("args", args, sorted(kwargs.items()))


def _make_callable(ctx: _Ctx, cb: Cb) -> Callable[..., Any]:
    def callback(*args: Any, **kwargs: Any) -> Any:
        ctx.log.append((cb.cid, cb.kind, _describe(ctx, args, kwargs)))
        if cb.kind == "raise":
            raise RuntimeError(f"boom {cb.cid}")
        if cb.kind.startswith("fire:") and ctx.depth == 0 and ctx.budget > 0:
            ctx.depth += 1
            ctx.budget -= 1
            try:
                ctx.log.append(("nested", cb.cid, _outcome(
                    lambda: ctx.model.trigger(cb.kind[5:]))))
            finally:
                ctx.depth -= 1
        if cb.kind in ("true", "false"):
            return cb.kind == "true"
        return None

    return callback


def _ref(ctx: _Ctx, cb: Cb) -> Any:
    """The callback as transitions is given it: a callable, or a model method's name."""
    return f"cb_{cb.cid}" if cb.by_name else _make_callable(ctx, cb)


def _norm(text: str) -> str:
    """A message without object addresses (two machines never share them)."""
    return re.sub(r"(0x[0-9a-f]+|@\d+)", "@", text)


def _outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        return ("ok", call())
    except Exception as exc:
        return ("raised", type(exc).__name__, _norm(str(exc)))


def _all_cbs(spec: Spec, extra: list[Cb]) -> list[Cb]:
    found: list[Cb] = list(extra)
    for e in spec.edges:
        for key in (*TRANSITION_LISTS, "conditions", "unless"):
            found.extend(e.get(key, []))
    for opts in spec.state_opts.values():
        found.extend(opts.get("on_enter", []))
        found.extend(opts.get("on_exit", []))
    for key in MACHINE_LISTS:
        found.extend(spec.machine_opts.get(key, []))
    found.extend(cb for _, cb in spec.model_callbacks)
    return found


def _method(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` as a method of the model (transitions binds on_enter_<state> methods only)."""
    return lambda self, *args, **kwargs: fn(*args, **kwargs)


def build(spec: Spec, cls: type[Machine], extra: list[Cb], enum_cls: Any = None
          ) -> tuple[Any, Any, _Ctx]:
    """Build ``cls`` from ``spec``: the machine, its model and the callbacks' context."""
    opts = dict(spec.machine_opts)
    ctx = _Ctx(bool(opts.get("send_event")))
    methods: dict[str, Any] = {}
    for cb in _all_cbs(spec, extra):
        if cb.by_name:
            methods[f"cb_{cb.cid}"] = _method(_make_callable(ctx, cb))
    for name, cb in spec.model_callbacks:
        methods[name] = _method(_make_callable(ctx, cb))
    model = type("Model", (), methods)()
    ctx.model = model

    def state_name(s: str) -> Any:
        return enum_cls[s] if spec.use_enum else s

    states: list[Any] = []
    for s in spec.states:
        so = spec.state_opts.get(s)
        if so is None:
            states.append(state_name(s))
        else:
            states.append({"name": state_name(s),
                           "on_enter": [_ref(ctx, c) for c in so.get("on_enter", [])],
                           "on_exit": [_ref(ctx, c) for c in so.get("on_exit", [])],
                           "ignore_invalid_triggers": so.get("ignore"),
                           "final": so.get("final", False)})
    edges = []
    for e in spec.edges:
        source = e["source"]
        source = source if source == "*" else [state_name(s) for s in source]
        dest = e["dest"]
        dest = dest if dest in ("=", None) else state_name(dest)
        edge: dict[str, Any] = {"trigger": e["trigger"], "source": source, "dest": dest}
        for key in (*TRANSITION_LISTS, "conditions", "unless"):
            if e.get(key):
                edge[key] = [_ref(ctx, c) for c in e[key]]
        edges.append(edge)
    for key in MACHINE_LISTS:
        if key in opts:
            opts[key] = [_ref(ctx, c) for c in opts[key]]
    machine = cls(model=model, states=states, transitions=edges,
                  initial=state_name(spec.initial), **opts)
    return machine, model, ctx


# --- operations, applied to both machines ------------------------------------------------------


def apply(op: tuple[Any, ...], machine: Any, model: Any, ctx: _Ctx, enum_cls: Any) -> Any:
    """Apply one operation; return its outcome (what the differential test compares)."""
    kind = op[0]
    attr = machine.model_attribute

    def state_value(s: str) -> Any:
        return enum_cls[s] if enum_cls is not None and s in enum_cls.__members__ else s

    if kind == "fire":
        _, name, via, kwargs = op
        if via == "method":
            return _outcome(lambda: getattr(model, name)(**kwargs))
        if via == "by_name":
            return _outcome(lambda: model.trigger(name, **kwargs))
        return _outcome(lambda: machine.events[name].trigger(model, **kwargs))
    if kind == "set":
        _, s, how = op
        if how == "set_state":
            return _outcome(lambda: machine.set_state(state_value(s), model))
        setattr(model, attr, state_value(s))  # as BlockLifecycle.load does
        return ("assigned",)
    if kind == "add":
        _, where, target, cb = op
        ref = _ref(ctx, cb)
        if where in ("on_enter", "on_exit"):
            return _outcome(lambda: getattr(machine, f"{where}_{target}")(ref))
        if where in TRANSITION_LISTS:
            return _outcome(lambda: getattr(machine, f"{where}_{target}")(ref))
        if where == "condition":
            def add_condition() -> None:
                for t in machine.get_transitions(target):
                    t.conditions.append(Condition(ref))
            return _outcome(add_condition)
        if where == "machine_append":
            getattr(machine, target).append(ref)  # in place: no setter sees it
            return ("appended",)
        setattr(machine, target, [ref])  # machine_set: through the property setter
        return ("set",)
    if kind == "add_transition":
        _, trigger, source, dest = op
        return _outcome(lambda: machine.add_transition(
            trigger, [state_value(s) for s in source], state_value(dest)))
    _, name = op  # may
    return _outcome(lambda: model.may_trigger(name))


def run_both(spec: Spec, ops: list[tuple[Any, ...]]) -> list[Any]:
    """Build both machines, apply ``ops`` to each, compare everything; return the trace."""
    extra = [op[3] for op in ops if op[0] == "add"]
    enum_cls = enum.Enum("S", list(spec.states)) if spec.use_enum else None
    traces = []
    for cls, freeze in ((Machine, False), (EngineMachine, False), (EngineMachine, True)):
        built = _outcome(partial(build, spec, cls, extra, enum_cls))
        if built[0] != "ok":
            traces.append([built])
            continue
        machine, model, ctx = built[1]
        if freeze:  # planned once: appends and setters after it must still be seen
            machine.freeze()
        attr = machine.model_attribute
        trace: list[Any] = [("start", getattr(model, attr))]
        for op in ops:
            ctx.budget = 3
            result = apply(op, machine, model, ctx, enum_cls)
            trace.append((op[0], result, getattr(model, attr, None), list(ctx.log)))
            ctx.log.clear()
        traces.append(trace)
    stock, ours, frozen = traces
    assert ours == stock
    assert frozen == stock
    return stock


# --- strategies --------------------------------------------------------------------------------

_cid = st.integers(0, 10_000)


@st.composite
def callbacks(draw: st.DrawFn, kinds: tuple[str, ...] = ("record",), max_size: int = 2
              ) -> list[Cb]:
    return draw(st.lists(st.builds(Cb, _cid, st.sampled_from(kinds), st.booleans()),
                         max_size=max_size))


def _rarely(strategy: st.SearchStrategy[list[Cb]]) -> st.SearchStrategy[list[Cb]]:
    """Mostly no callbacks, sometimes some: most transitions must stay bare."""
    return st.one_of(st.just([]), st.just([]), st.just([]), strategy)


def _cb_kinds(triggers: list[str]) -> tuple[str, ...]:
    """Mostly recorders; some raise, some fire a trigger (the first or the last one)."""
    return ("record", "record", "record", "record", "raise",
            *sorted({f"fire:{triggers[0]}", f"fire:{triggers[-1]}"}))


@st.composite
def random_specs(draw: st.DrawFn) -> Spec:
    states = draw(st.lists(st.sampled_from(STATE_POOL), min_size=2, max_size=6, unique=True))
    triggers = draw(st.lists(st.sampled_from(TRIGGER_POOL), min_size=1, max_size=5,
                             unique=True))
    kinds = _cb_kinds(triggers)
    edges = []
    for _ in range(draw(st.integers(1, 10))):
        source: Any = draw(st.one_of(st.just("*"), st.lists(st.sampled_from(states),
                                                            min_size=1, max_size=2)))
        edge = {"trigger": draw(st.sampled_from(triggers)), "source": source,
                "dest": draw(st.sampled_from([*states, *states, "=", None]))}
        if draw(st.integers(0, 2)) == 0:  # a third of the edges have conditions or callbacks
            edge.update({
                "conditions": draw(_rarely(callbacks(("true", "true", "false", "raise")))),
                "unless": draw(_rarely(callbacks(("false", "true")))),
                **{key: draw(_rarely(callbacks(kinds))) for key in TRANSITION_LISTS}})
        edges.append(edge)
    state_opts = {}
    for s in draw(st.lists(st.sampled_from(states), unique=True, max_size=2)):
        state_opts[s] = {"on_enter": draw(_rarely(callbacks(kinds))),
                         "on_exit": draw(_rarely(callbacks(kinds))),
                         "ignore": draw(st.sampled_from((None, True, False))),
                         "final": draw(st.booleans())}
    machine_opts: dict[str, Any] = {
        "auto_transitions": draw(st.booleans()),
        "ignore_invalid_triggers": draw(st.sampled_from((None, True, False))),
        "queued": draw(st.integers(0, 5)) == 0,
        "send_event": draw(st.booleans()),
    }
    if draw(st.booleans()):
        machine_opts["model_attribute"] = "status"
    if draw(st.booleans()):
        machine_opts["name"] = "m"
    if draw(st.integers(0, 2)) == 0:  # machine-level callbacks on a third of the machines
        for key in draw(st.lists(st.sampled_from(MACHINE_LISTS), min_size=1, max_size=3,
                                 unique=True)):
            machine_opts[key] = draw(callbacks(kinds, max_size=1))
    model_callbacks = [(f"{hook}_{s}", Cb(draw(_cid)))
                       for hook, s in draw(st.lists(st.tuples(
                           st.sampled_from(("on_enter", "on_exit")), st.sampled_from(states)),
                           unique=True, max_size=2))]
    return Spec(states, draw(st.sampled_from(states)), edges, state_opts, machine_opts,
                model_callbacks, use_enum=draw(st.integers(0, 5)) == 0)


@st.composite
def lifecycle_specs(draw: st.DrawFn) -> Spec:
    """The lifecycle table as BlockLifecycle builds it; sometimes with callbacks on it."""
    states = [str(s) for s in BlockState]
    triggers = [str(t) for t in Trigger]
    decorate = draw(st.booleans())
    kinds = _cb_kinds(triggers)
    edges = []
    for e in TRANSITIONS:
        edge: dict[str, Any] = {"trigger": str(e.trigger), "source": [str(e.source)],
                                "dest": str(e.dest)}
        if decorate:
            edge["conditions"] = draw(_rarely(callbacks(("true", "false"))))
            edge.update({key: draw(_rarely(callbacks(kinds))) for key in TRANSITION_LISTS})
        edges.append(edge)
    opts: dict[str, Any] = {"auto_transitions": False}
    if decorate and draw(st.booleans()):
        opts["before_state_change"] = draw(callbacks(kinds, max_size=1))
    return Spec(states, str(INITIAL_STATE), edges, {}, opts)


@st.composite
def scenarios(draw: st.DrawFn, specs: st.SearchStrategy[Spec]) -> tuple[Spec, list[Any]]:
    spec = draw(specs)
    triggers = sorted({e["trigger"] for e in spec.edges})
    if spec.machine_opts.get("auto_transitions", True):
        attr = spec.machine_opts.get("model_attribute", "state")
        prefix = "to_" if attr == "state" else f"to_{attr}_"
        triggers += [prefix + s for s in spec.states]
    names = st.sampled_from([*triggers, UNKNOWN_TRIGGER])
    known = st.sampled_from(triggers)
    kwargs: st.SearchStrategy[dict[str, int]] = st.one_of(
        st.just({}), st.fixed_dictionaries({"n": st.integers(0, 9)}))
    fire = st.one_of(
        st.tuples(st.just("fire"), known, st.just("event"), kwargs),
        st.tuples(st.just("fire"), known, st.just("method"), kwargs),
        st.tuples(st.just("fire"), names, st.just("by_name"), kwargs))
    state = st.sampled_from(spec.states)
    kinds = _cb_kinds(triggers)
    cb = st.builds(Cb, _cid, st.sampled_from(kinds), st.booleans())
    other = st.one_of(
        st.tuples(st.just("set"), st.one_of(state, st.just("bogus")),
                  st.sampled_from(("set_state", "assign"))),
        st.tuples(st.just("add"), st.sampled_from(("on_enter", "on_exit")), state, cb),
        st.tuples(st.just("add"), st.sampled_from(TRANSITION_LISTS), known, cb),
        st.tuples(st.just("add"), st.just("condition"), known,
                  st.builds(Cb, _cid, st.sampled_from(("true", "false")))),
        st.tuples(st.just("add_transition"), known,
                  st.lists(state, min_size=1, max_size=2), state),
        st.tuples(st.just("may"), names))
    machine_level = st.tuples(st.just("add"), st.sampled_from(("machine_append", "machine_set")),
                              st.sampled_from(MACHINE_LISTS), cb)
    ops = []
    for _ in range(draw(st.integers(1, 40))):
        roll = draw(st.integers(0, 39))
        ops.append(draw(fire if roll < 28 else other if roll < 39 else machine_level))
    return spec, ops


# --- the differential property tests -----------------------------------------------------------


@given(scenarios(lifecycle_specs()))
def test_engine_matches_stock_on_the_lifecycle_table(scenario: tuple[Spec, list[Any]]) -> None:
    """On the lifecycle's table (bare or with callbacks), any operations: same trace."""
    run_both(*scenario)


@given(scenarios(random_specs()))
def test_engine_matches_stock_on_random_tables(scenario: tuple[Spec, list[Any]]) -> None:
    """On random valid tables with conditions and callbacks, any operations: same trace
    (states, return values, refusals by type and message, callback calls in order)."""
    run_both(*scenario)


def test_differential_harness_sees_a_difference() -> None:
    """The comparison is not vacuous: an engine that skips a callback is caught."""

    spec = Spec(["a", "b"], "a", [{"trigger": "go", "source": ["a"], "dest": "b",
                                   "after": [Cb(1)]}])
    ops: list[Any] = [("fire", "go", "event", {})]
    run_both(spec, ops)
    with _swap(engine_module.EngineEvent, "trigger",
               lambda self, model, *a, **k: self.machine.set_state(
                   self.transitions[model.state][0].dest, model) or True), \
            pytest.raises(AssertionError):
        run_both(spec, ops)


@contextmanager
def _swap(owner: Any, name: str, value: Any) -> Iterator[None]:
    old = owner.__dict__[name]
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


# --- which path a trigger takes ----------------------------------------------------------------


@contextmanager
def stock_calls() -> Iterator[list[str]]:
    """Count the triggers that went the stock way (``Event.trigger`` of an EngineEvent)."""
    calls: list[str] = []
    original = Event.__dict__["trigger"]

    def spy(self: Event, model: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(self, EngineEvent):
            calls.append(self.name)
        return original(self, model, *args, **kwargs)

    with _swap(Event, "trigger", spy):
        yield calls


class _Model:
    state: str


def _engine(**kwargs: Any) -> tuple[EngineMachine, _Model]:
    model = _Model()
    machine = EngineMachine(model=model, states=["a", "b", "c"], initial="a",
                            transitions=[{"trigger": "go", "source": "a", "dest": "b"},
                                         {"trigger": "back", "source": "b", "dest": "a"}],
                            auto_transitions=False, **kwargs)
    return machine, model


def test_lifecycle_moves_take_the_short_path() -> None:
    """Every edge of the lifecycle, fired by BlockLifecycle, takes the short path."""
    with stock_calls() as calls:
        for e in TRANSITIONS:
            lc = BlockLifecycle()
            assert isinstance(lc._machine, EngineMachine)
            lc.restore("b-1", e.source)
            assert lc.fire(e.trigger) is e.dest
            assert lc.current == str(e.dest)
    assert calls == []


def test_bare_trigger_takes_the_short_path_and_sets_the_state() -> None:
    """A bare transition is made without the stock machinery: the model's state becomes the
    destination State's value, as Machine.set_state sets it."""
    machine, model = _engine()
    with stock_calls() as calls:
        assert machine.events["go"].trigger(model) is True
    assert calls == []
    assert model.state is machine.states["b"].value


def _hook_machine(m: EngineMachine, name: str) -> None:
    setattr(m, name, [lambda *a, **k: None])


def _hook_in_place(m: EngineMachine, name: str) -> None:
    getattr(m, name).append(lambda *a, **k: None)


def _hook_transition(m: EngineMachine, name: str) -> None:
    getattr(m.get_transitions("go")[0], name).append(lambda *a, **k: None)


def _hook_state(m: EngineMachine, name: str) -> None:
    getattr(m.states["a" if name == "on_exit" else "b"], name).append(lambda *a, **k: None)


class _E(enum.Enum):
    a = "a"


def _source_not_a_state(m: EngineMachine) -> None:
    m.events["go"].transitions["zz"].append(Transition("zz", "b"))
    model: Any = m.model
    model.state = "zz"


STOCK_CAUSES: dict[str, Callable[[EngineMachine], Any]] = {
    **{f"machine {n}": partial(_hook_machine, name=n) for n in MACHINE_LISTS},
    **{f"machine {n}, in place": partial(_hook_in_place, name=n) for n in MACHINE_LISTS},
    **{f"transition {n}": partial(_hook_transition, name=n)
       for n in (*TRANSITION_LISTS, "conditions")},
    "source on_exit": lambda m: _hook_state(m, "on_exit"),
    "dest on_enter": lambda m: _hook_state(m, "on_enter"),
    "queued machine": lambda m: setattr(m, "_queued", True),
    "enum state": lambda m: setattr(m.model, "state", _E.a),
    "unknown state": lambda m: setattr(m.model, "state", "zz"),
    "no transition from the state": lambda m: setattr(m.model, "state", "c"),
    "internal transition": lambda m: setattr(m.get_transitions("go")[0], "dest", None),
    "dest not a state": lambda m: setattr(m.get_transitions("go")[0], "dest", "zz"),
    "source not a state": _source_not_a_state,
    "empty transition list": lambda m: m.events["go"].transitions.__setitem__("a", []),
    "subclassed transition": lambda m: setattr(
        m.get_transitions("go")[0], "__class__", type("T", (Transition,), {
            "execute": lambda self, ed: Transition.execute(self, ed)})),
    "subclassed source state": lambda m: setattr(m.states["a"], "__class__", type(
        "S", (State,), {"exit": lambda self, ed: State.exit(self, ed)})),
    "subclassed dest state": lambda m: setattr(m.states["b"], "__class__", type(
        "S", (State,), {"enter": lambda self, ed: State.enter(self, ed)})),
}


@pytest.mark.parametrize("cause", sorted(STOCK_CAUSES))
def test_anything_but_a_bare_move_goes_the_stock_way(cause: str) -> None:
    """Each thing the short path does not stand in for sends the trigger the stock way."""
    machine, model = _engine()
    STOCK_CAUSES[cause](machine)
    with stock_calls() as calls:
        _outcome(lambda: machine.events["go"].trigger(model))
    assert calls == ["go"]


#: What a frozen machine still sees (freeze's contract): appends in place, hooks set through
#: the machine's properties, and the model's state; not lists or classes replaced by
#: assignment, which its owner must not do.
FROZEN_SEES = sorted(c for c in STOCK_CAUSES if not c.startswith((
    "internal", "dest not", "empty transition", "subclassed", "queued")))


@pytest.mark.parametrize("cause", FROZEN_SEES)
def test_a_frozen_machine_sees_a_change_it_watches(cause: str) -> None:
    """After freeze, a planned move goes the stock way once anything it watched changed."""
    machine, model = _engine()
    machine.freeze()
    with stock_calls() as calls:
        assert machine.events["go"].trigger(model) is True  # planned: not the stock way
        model.state = "a"
    assert calls == []
    STOCK_CAUSES[cause](machine)
    with stock_calls() as calls:
        _outcome(lambda: machine.events["go"].trigger(model))
    assert calls == ["go"]


def test_freeze_leaves_events_of_another_class_alone() -> None:
    """A subclass whose events are stock ``Event``s freezes nothing, and setting a hook
    still works."""

    class Stocky(EngineMachine):
        event_cls = Event  # type: ignore[assignment]

    model = _Model()
    machine = Stocky(model=model, states=["a", "b"], initial="a", auto_transitions=False,
                     transitions=[["go", "a", "b"]])
    machine.freeze()
    machine.before_state_change = [lambda *a, **k: None]
    assert machine.events["go"].trigger(model) is True and model.state == "b"


def _event(machine: EngineMachine, name: str) -> EngineEvent:
    event = machine.events[name]
    assert isinstance(event, EngineEvent)
    return event


def test_a_frozen_move_skips_the_short_paths_checks() -> None:
    """A planned move reads neither the machine's hooks nor the states again: it is the
    plan's destination, set on the model as Machine.set_state sets it."""
    machine, model = _engine()
    machine.freeze()
    with _swap(EngineMachine, "engine_hooks", property(lambda self: pytest.fail("read"))):
        assert _event(machine, "go").fire_recorded(model) is True
    assert model.state is machine.states["b"].value
    assert _event(machine, "back").fire_recorded(model) is True
    assert model.state == "a"


def test_freeze_plans_nothing_it_could_not_make_bare() -> None:
    """A conditional move, a queued machine, a subclassed event: no plan."""
    model = _Model()
    machine = EngineMachine(model=model, states=["a", "b"], initial="a",
                            auto_transitions=False, transitions=[
                                {"trigger": "go", "source": "a", "dest": "b",
                                 "conditions": [lambda: False]},
                                {"trigger": "back", "source": "b", "dest": "a"}])
    machine.freeze()
    assert _event(machine, "go")._plans == {}
    assert set(_event(machine, "back")._plans or ()) == {"b"}
    queued = EngineMachine(model=_Model(), states=["a", "b"], initial="a", queued=True,
                           auto_transitions=False, transitions=[["go", "a", "b"]])
    queued.freeze()
    assert _event(queued, "go")._plans is None
    for cause in ("dest not a state", "subclassed dest state", "subclassed source state"):
        changed, _ = _engine()
        STOCK_CAUSES[cause](changed)  # before freeze: nothing of it is planned
        changed.freeze()
        assert "a" not in (_event(changed, "go")._plans or {})
    with stock_calls() as calls:
        assert machine.events["go"].trigger(model) is False  # its condition refuses
    assert calls == ["go"] and model.state == "a"


def test_enabled_transitions_log_goes_the_stock_way(caplog: pytest.LogCaptureFixture) -> None:
    """With transitions' logger at INFO or DEBUG the stock path runs: the same log records."""
    records = []
    for cls in (Machine, EngineMachine):
        model = _Model()
        machine = cls(model=model, states=["a", "b"], initial="a", auto_transitions=False,
                      transitions=[{"trigger": "go", "source": "a", "dest": "b"}])
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="transitions"):
            machine.events["go"].trigger(model)
            _outcome(partial(machine.events["go"].trigger, model))
        records.append([(r.name, r.levelname, _norm(r.getMessage())) for r in caplog.records])
    assert records[0] == records[1]
    assert records[0]  # the stock path did log


def test_a_subclassed_engine_event_or_machine_goes_the_stock_way() -> None:
    """An engine subclass overriding a stock method the short path stands in for runs
    stock, so its override is honoured."""
    seen: list[str] = []

    class Checked(EngineMachine):
        def set_state(self, state: Any, model: Any = None) -> None:
            seen.append("set_state")
            super().set_state(state, model)

    model = _Model()
    machine = Checked(model=model, states=["a", "b"], initial="a", auto_transitions=False,
                      transitions=[["go", "a", "b"]])
    seen.clear()
    with stock_calls() as calls:
        assert machine.events["go"].trigger(model) is True
    assert (calls, seen, model.state) == (["go"], ["set_state"], "b")


def test_model_state_setter_that_fails_raises_as_stock() -> None:
    """A model whose state setter raises, or stores a state that is not known, raises the
    same error on both paths (the stock path re-raises it when there is no on_exception)."""

    class Picky:
        def __init__(self, store: Callable[[str], str]) -> None:
            self._state, self._store = "a", store

        @property
        def state(self) -> str:
            return self._state

        @state.setter
        def state(self, value: str) -> None:
            self._state = self._store(value)

    def refuse(value: str) -> str:
        if value == "b":
            raise RuntimeError("read-only")
        return value

    for store in (refuse, lambda v: v.upper(), lambda v: "".join(v)):
        outcomes = []
        for cls, frozen in ((Machine, False), (EngineMachine, False), (EngineMachine, True)):
            model = Picky(store)
            machine = cls(model=model, states=["a", "b"], initial="a",
                          auto_transitions=False, transitions=[["go", "a", "b"]])
            if frozen:
                machine.freeze()
            outcomes.append((_outcome(partial(machine.events["go"].trigger, model)),
                             model._state))
        assert outcomes[0] == outcomes[1] == outcomes[2]


def test_is_stock_caches_per_class() -> None:
    """is_stock answers per class and base, once; a non-subclass is never stock."""

    class Over(Transition):
        def _change_state(self, event_data: Any) -> None:  # pragma: no cover - never run
            pass

    assert is_stock(Transition, Transition)
    assert not is_stock(Over, Transition)
    assert not is_stock(Over, Transition)  # cached
    assert not is_stock(int, State)


# --- the transitions internals the engine relies on -------------------------------------------


def test_transitions_version_is_the_one_pinned() -> None:
    """The installed transitions is within the range pyproject.toml pins (0.9.2 up to 0.10)."""
    major, minor, patch = (int(x) for x in transitions.__version__.split(".")[:3])
    assert (0, 9, 2) <= (major, minor, patch) < (0, 10, 0), transitions.__version__


def _check(condition: bool, what: str) -> None:
    if not condition:
        pytest.fail(f"transitions {transitions.__version__} changed an internal the "
                    f"engine relies on: {what}", pytrace=False)


def test_machine_attributes_the_engine_reads_are_public() -> None:
    """The engine reads only transitions' public API of a Machine: has_queue, the callback
    properties (the machine's own lists, so a callback appended in place is seen), states,
    model_attribute, set_state/get_state, and the class attributes it plugs into."""
    m = Machine(model=None, states=["a"], initial="a")
    _check(isinstance(type(m).__dict__.get("has_queue"), property) and m.has_queue is False,
           "Machine.has_queue (a public property)")
    for name in MACHINE_LISTS:
        _check(isinstance(Machine.__dict__.get(name), property), f"Machine.{name} (a property)")
        lst = getattr(m, name)
        _check(isinstance(lst, list) and getattr(m, name) is lst,
               f"Machine.{name} returns the same list each time (appends are seen)")
    _check(isinstance(m.states, OrderedDict), "Machine.states (name -> State)")
    _check(m.model_attribute == "state", "Machine.model_attribute")
    for name in ("event_cls", "state_cls", "transition_cls"):
        _check(name in Machine.__dict__, f"Machine.{name} (a class attribute)")
    _check(list(inspect.signature(Machine.set_state).parameters) == ["self", "state", "model"],
           "Machine.set_state(self, state, model)")
    engine_source = inspect.getsource(engine_module)
    for private in ("._queued", "._transition_queue", "._prepare_event", "._name", "_LOGGER"):
        _check(private not in engine_source, f"the engine reads no private {private}")


def test_event_transition_state_internals_the_engine_reads_exist() -> None:
    """Event, Transition and State have the attributes the short path reads, and the
    Machine creates its events from event_cls."""
    model = _Model()
    m = EngineMachine(model=model, states=["a", "b"], initial="a", auto_transitions=False,
                      transitions=[["go", "a", "b"]])
    event = m.events["go"]
    _check(type(event) is EngineEvent, "Machine creates events from Machine.event_cls")
    _check(isinstance(event.transitions, defaultdict), "Event.transitions (a defaultdict)")
    _check(event.machine is m, "Event.machine")
    _check(list(inspect.signature(Event.__init__).parameters) == ["self", "name", "machine"],
           "Event.__init__(self, name, machine)")
    _check(list(inspect.signature(Event.trigger).parameters)
           == ["self", "model", "args", "kwargs"], "Event.trigger(self, model, *args, **kw)")
    (t,) = event.transitions["a"]
    _check(type(t) is Transition and (t.source, t.dest) == ("a", "b"),
           "Transition.source and .dest (state names)")
    for name in (*TRANSITION_LISTS, "conditions"):
        _check(isinstance(getattr(t, name, None), list), f"Transition.{name} (a list)")
    s = m.states["b"]
    _check(type(s) is State and s.value == "b", "State.value (the state's name)")
    for name in ("on_enter", "on_exit"):
        _check(isinstance(getattr(s, name, None), list), f"State.{name} (a list)")
    # transitions logs through the logger the logging module names transitions.core
    logger = logging.getLogger("transitions.core")
    _check(logger.isEnabledFor == engine_module._log_enabled, "transitions.core's logger")
    for base, names in STOCK_MEMBERS.items():
        for name in names:
            _check(name in base.__dict__, f"{base.__name__}.{name}")


def _fingerprint(obj: Any) -> str:
    """A hash of a function's code, without docstrings, comments or layout (the AST
    unparsed): any change of behaviour changes it."""
    func = obj.fget if isinstance(obj, property) else obj
    assert callable(func)
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            body.pop(0)
    return hashlib.sha256(ast.unparse(tree).encode()).hexdigest()[:16]


#: The stock code the short path stands in for, as in transitions 0.9.2 and 0.9.3 (the same
#: in both). A new release that changes one of them fails here by name: read the change,
#: check the engine against it, extend the differential test if needed, then add its hash.
STOCK_CODE = {
    "Event.trigger": "bb37f46415665ac9",
    "Event._trigger": "b93c38de783f9b01",
    "Event._process": "9b4accec7a8ee439",
    "Event._is_valid_source": "127947d1107a0b22",
    "Machine._process": "57e56f92260a54c2",
    "Machine.set_state": "8c1cbc938d93bd43",
    "Machine.get_state": "0a6eebc88d51b133",
    "Machine.get_model_state": "7d93934d104be71e",
    "Machine.callbacks": "8a09e8230ff5c48e",
    "Transition.execute": "29993e2068a5c923",
    "Transition._eval_conditions": "42377fdedf3015da",
    "Transition._change_state": "c7bda3a525ec733f",
    "State.enter": "9851bae6bb6c7d0b",
    "State.exit": "63a72e52ba449be8",
    "State.value": "6c5ccb3a5d2dc303",
    "EventData.update": "4af13b6a468f62bf",
}


@pytest.mark.parametrize("name", sorted(STOCK_CODE))
def test_stock_code_the_short_path_stands_in_for_is_unchanged(name: str) -> None:
    """The stock functions the short path is equivalent to have the code it was proved
    against; a transitions release that changes one fails loudly naming it."""
    owner, attr = name.split(".")
    cls = {"Event": Event, "Machine": Machine, "Transition": Transition, "State": State,
           "EventData": EventData}[owner]
    _check(attr in cls.__dict__, f"{name} is gone")
    got = _fingerprint(cls.__dict__[attr])
    _check(got == STOCK_CODE[name], f"{name} has new code (fingerprint {got}); the engine "
           f"was proved against {STOCK_CODE[name]}")


def test_machine_error_is_the_stock_one() -> None:
    """Refusals are transitions' own MachineError, with transitions' own message."""
    machine, model = _engine()
    model.state = "b"
    with pytest.raises(MachineError, match="Can't trigger event go from state b!"):
        machine.events["go"].trigger(model)


# ------------------------------------------------------------------------ on_move


def _recording_machine() -> tuple[EngineMachine, _Model, list[Any]]:
    seen: list[Any] = []
    model = _Model()
    m = EngineMachine(model=model, states=["a", "b", "c"], initial="a",
                      auto_transitions=False, transitions=[["go", "a", "b"], ["on", "b", "c"]])
    m.on_move = lambda *move: seen.append((*move, model.state))
    return m, model, seen


def test_the_machine_tells_on_move_before_each_move() -> None:
    """on_move gets (source, dest, event, data) while the model is still at the source: the
    record is written before the state changes (write-ahead)."""
    _, model, seen = _recording_machine()
    assert model.trigger("go", attempt=2)  # type: ignore[attr-defined]
    assert seen == [("a", "b", "go", {"attempt": 2}, "a")] and model.state == "b"


def test_an_on_move_that_raises_leaves_the_model_where_it_was() -> None:
    """A journal that cannot write: the move is refused and the model does not move."""
    m, model, _ = _recording_machine()

    def refuse(*move: Any) -> None:
        raise OSError("disk full")

    m.on_move = refuse
    with pytest.raises(OSError, match="disk full"):
        model.trigger("go")  # type: ignore[attr-defined]
    assert model.state == "a"


def test_a_recorded_move_is_not_told_again() -> None:
    """A caller that wrote the record itself passes _recorded=True: on_move is skipped and
    the flag never reaches the callbacks."""
    _, model, seen = _recording_machine()
    model.trigger("go", _recorded=True)  # type: ignore[attr-defined]
    assert seen == [] and model.state == "b"


def test_a_conditional_move_cannot_go_unrecorded() -> None:
    """With on_move set, a transition whose destination depends on a condition is refused
    loudly before anything moves, never made without its record."""
    seen: list[Any] = []
    model = _Model()
    m = EngineMachine(model=model, states=["a", "b"], initial="a", auto_transitions=False,
                      transitions=[{"trigger": "go", "source": "a", "dest": "b",
                                    "conditions": lambda: True}])
    m.on_move = lambda *move: seen.append(move)
    with pytest.raises(MachineError, match="conditional"):
        model.trigger("go")  # type: ignore[attr-defined]
    assert model.state == "a" and seen == []


def test_on_move_is_not_told_of_a_trigger_with_no_edge_from_the_state() -> None:
    """From a state the event has no transition from, on_move hears nothing and the stock
    refusal stands (MachineError, nothing moved)."""
    m, model, seen = _recording_machine()
    model.state = "c"
    assert m.events["go"].dest_from("c") is None  # type: ignore[attr-defined]
    with pytest.raises(MachineError):
        model.trigger("go")  # type: ignore[attr-defined]
    assert seen == [] and model.state == "c"


def test_an_engine_event_on_a_plain_machine_reads_its_callbacks_each_time() -> None:
    """An EngineEvent on a machine that is not an EngineMachine reads the machine's callback
    lists through transitions' public properties on each trigger: a bare move still takes
    the short path, and a callback added later is honoured."""
    class Plain(Machine):
        event_cls = EngineEvent

    model = _Model()
    m = Plain(model=model, states=["a", "b"], initial="a", auto_transitions=False,
              transitions=[["go", "a", "b"], ["back", "b", "a"]])
    assert getattr(m, "engine_hooks", None) is None
    assert model.trigger("go") and model.state == "b"  # type: ignore[attr-defined]
    calls: list[str] = []
    m.before_state_change.append(lambda: calls.append("before"))
    assert model.trigger("back") and model.state == "a"  # type: ignore[attr-defined]
    assert calls == ["before"]


def test_a_callback_list_replaced_through_its_property_is_seen() -> None:
    """EngineMachine keeps the machine's callback lists; replacing one through transitions'
    public setter refreshes them, so the new callback runs (the stock way)."""
    machine, model = _engine()
    calls: list[str] = []
    machine.after_state_change = [lambda: calls.append("after")]
    assert model.trigger("go")  # type: ignore[attr-defined]
    assert calls == ["after"]
