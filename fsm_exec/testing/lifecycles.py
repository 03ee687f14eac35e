"""Random lifecycles for hypothesis: valid ones, built by construction to keep every safety
rule, and broken ones, each a valid one with exactly one rule broken on purpose.

:func:`lifecycles` draws :class:`~fsm_exec.Lifecycle` objects extending the default with
before-route states (waiting for an external trigger, a polled guard or a timeout; or moving
on at once), in-flight and settling states (entered from ``routing``, ``retrying`` and each
other, left by polls, external triggers, timeouts in doubt and ``fail``), guarded ``start``
and ``executed`` transitions, and, when asked, hooks. The stateful fuzzer runs them;
:func:`broken_lifecycles` draws :class:`BrokenLifecycle` documents, each naming the rule it
breaks, so a test can show the checker refuses it for that rule.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from hypothesis import strategies as st

from fsm_exec.core.lifecycle_rules import DRIVER_TRIGGERS
from fsm_exec.core.lifecycles import Lifecycle

#: The guard kinds :func:`lifecycles` draws by default: those that read only what the kit's
#: blocks (:func:`fsm_exec.testing.instruction_blocks`) carry. The notional guards need a
#: ``price`` on every instruction: ask for them with ``guard_kinds``.
PURE_GUARDS: tuple[str, ...] = ("venue_in", "action_in", "clock_in_window",
                                "clock_outside_window")
_ALL_PURE = (*PURE_GUARDS, "notional_above", "notional_at_most")

_VENUES = ("spot", "lending", "staking", "perp")
_ACTIONS = ("open", "hedge", "rebalance", "close")
_TIMES = ("00:00", "02:00", "06:30", "12:00", "18:00", "23:30")
_TIMEOUTS = (1.0, 30.0, 60.0, 3600.0)


def _st(kind: str, meaning: str, **kw: Any) -> dict[str, Any]:
    return {"kind": kind, "meaning": meaning, **kw}


def _tr(trigger: str, source: str, dest: str, meaning: str, **kw: Any) -> dict[str, Any]:
    return {"trigger": trigger, "source": source, "dest": dest, "meaning": meaning, **kw}


def guards(kinds: Sequence[str] = PURE_GUARDS, *, call_paths: Sequence[str] = (),
           venues: Sequence[str] = _VENUES,
           actions: Sequence[str] = _ACTIONS) -> st.SearchStrategy[dict[str, Any]]:
    """One guard, in the file format (``{kind: args}``), with valid arguments: of one of
    ``kinds``, or a ``call`` of one of ``call_paths``."""
    def one(kind: str) -> st.SearchStrategy[dict[str, Any]]:
        if kind in ("notional_above", "notional_at_most"):
            return st.sampled_from(("0", "1000", "100000", "2.5")).map(
                lambda v: {kind: {"value": v}})
        if kind == "venue_in":
            return st.lists(st.sampled_from(venues), min_size=1, max_size=2,
                            unique=True).map(lambda v: {kind: {"venues": v}})
        if kind == "action_in":
            return st.lists(st.sampled_from(actions), min_size=1, max_size=2,
                            unique=True).map(lambda a: {kind: {"actions": a}})
        return st.tuples(st.sampled_from(_TIMES), st.sampled_from(_TIMES),
                         st.sampled_from(("UTC", "Europe/London", "Asia/Tokyo"))).filter(
            lambda w: w[0] != w[1]).map(
            lambda w: {kind: {"start": w[0], "end": w[1], "tz": w[2]}})

    options = [one(k) for k in kinds]
    if call_paths:
        options.append(st.sampled_from(tuple(call_paths)).map(lambda p: {"call": {"path": p}}))
    return st.one_of(options)


@st.composite
def lifecycle_documents(draw: st.DrawFn, *, max_states: int = 4,
                        guard_kinds: Sequence[str] = PURE_GUARDS,
                        call_paths: Sequence[str] = (), hook_paths: Sequence[str] = (),
                        venues: Sequence[str] = _VENUES,
                        actions: Sequence[str] = _ACTIONS) -> dict[str, Any]:
    """A valid lifecycle document extending the default (see :func:`lifecycles`)."""
    guard = guards(guard_kinds, call_paths=call_paths, venues=venues, actions=actions)

    def some_guards() -> list[dict[str, Any]]:
        return draw(st.lists(guard, min_size=1, max_size=2))

    n_before = draw(st.integers(0, max_states))
    n_sent = draw(st.integers(0, max_states - n_before))
    befores = [f"held_{i}" for i in range(n_before)]
    sent = [(f"sent_{i}" if draw(st.booleans()) else f"confirming_{i}") for i in range(n_sent)]
    states: dict[str, Any] = {}
    ts: list[dict[str, Any]] = []

    def hooks(state: str) -> list[str]:
        if bool(hook_paths) and draw(st.booleans()):
            ts.append(_tr("fail", state, "failed", "A hook raised."))
            return [draw(st.sampled_from(tuple(hook_paths)))]
        return []

    for i, name in enumerate(befores):
        # The way in: a guarded start from queued, or an external trigger from queued or
        # from an earlier before-route state.
        way_in = draw(st.sampled_from(["start", "external"]))
        if way_in == "start":
            ts.append(_tr("start", "queued", name, "The guards send the block here first.",
                          guards=some_guards()))
        else:
            source = draw(st.sampled_from(["queued", *befores[:i]]))
            ts.append(_tr(f"hold_{i}", source, name, "An operator holds the block.",
                          external=True))
        others = [b for b in befores if b != name]
        done = st.sampled_from(["routing", "cancelled"])
        doc: dict[str, Any] = {}
        if draw(st.booleans()):  # it waits
            wait: dict[str, Any] = {}
            ends = draw(st.sampled_from(["external", "poll", "timeout"]))
            if ends == "timeout" or draw(st.booleans()):
                wait = {"timeout_seconds": draw(st.sampled_from(_TIMEOUTS)),
                        "timeout_to": draw(st.sampled_from(
                            ["cancelled", "failed", "routing", *others]
                            if ends != "timeout" else ["cancelled", "failed", "routing"]))}
            doc["wait"] = wait
            if ends == "external" or draw(st.booleans()):
                ts.append(_tr(f"release_{i}", name, draw(done), "Released by hand.",
                              external=True))
            if ends == "poll" or draw(st.booleans()):
                ts.append(_tr(f"clear_{i}", name, draw(done), "The condition cleared.",
                              poll=True, guards=some_guards()))
            for j, dest in enumerate(draw(st.lists(st.sampled_from(others), max_size=2)
                                          if others else st.just([]))):
                ts.append(_tr(f"move_{i}_{j}", name, dest, "Moved to another hold.",
                              external=True))
        else:  # it moves on at once: guarded polls first, the unguarded one last
            for j, dest in enumerate(draw(st.lists(st.sampled_from([*others, "routing"]),
                                                   max_size=2))):
                ts.append(_tr(f"divert_{i}_{j}", name, dest, "Its guards divert the block.",
                              poll=True, guards=some_guards()))
            ts.append(_tr(f"go_{i}", name, draw(done), "Moves on at once.", poll=True))
        if draw(st.booleans()):
            ts.append(_tr("cancel", name, "cancelled", "An operator cancelled it."))
        doc["on_enter"] = hooks(name)
        states[name] = _st("before_route", f"Held before routing ({i}).", **doc)

    settled = ["pending_reconciliation", "retrying", "failed"]
    replaced = False
    for i, name in enumerate(sent):
        kind = "in_flight" if name.startswith("sent_") else "settling"
        entry = draw(st.sampled_from(["executed", "guarded", "earlier"] if i else
                                     ["executed", "guarded"]))
        if entry == "executed":  # replaces (once) or, guarded, goes before routing's executed
            plain = not replaced and draw(st.booleans())
            replaced = replaced or plain
            ts.append(_tr("executed", "routing", name, "The venue answered: settle here.",
                          **({} if plain else {"guards": some_guards()})))
        elif entry == "guarded":
            source, trigger = draw(st.sampled_from([
                ("routing", "route_failed"), ("retrying", "resume_reconciliation"),
                ("pending_reconciliation", "reconciliation_timeout")]))
            ts.append(_tr(trigger, source, name, "Its guards send the block here.",
                          guards=some_guards()))
        else:
            ts.append(_tr(f"enter_{i}", draw(st.sampled_from(sent[:i])), name,
                          "Moved on by hand.", external=True))
        ts.append(_tr("fail", name, "failed", "In doubt: a timeout, or a hook raised."))
        others = [s for s in sent if s != name]

        def dests_of(kind: str, others: list[str] = others) -> list[str]:
            # A settling block was executed: it never goes back to retrying (settled-stays).
            return [*(settled if kind == "in_flight" else
                      [d for d in settled if d != "retrying"]), *others]

        dests = st.sampled_from(dests_of(kind))
        doc = {}
        if draw(st.booleans()):
            wait = ({"timeout_seconds": draw(st.sampled_from(_TIMEOUTS))}
                    if draw(st.booleans()) else {})
            doc["wait"] = wait
            if not wait or draw(st.booleans()):
                if draw(st.booleans()):
                    ts.append(_tr(f"confirm_{i}", name, draw(dests), "Confirmed.",
                                  poll=True, guards=some_guards()))
                else:
                    ts.append(_tr(f"settle_{i}", name, draw(dests), "Settled by hand.",
                                  external=True))
        else:  # onward to a later state only: unguarded polls make no loop (poll-loop)
            ts.append(_tr(f"onward_{i}", name, draw(st.sampled_from(
                [d for d in dests_of(kind) if d not in sent[:i + 1]])), "Moves on at once.",
                poll=True))
        if bool(hook_paths) and draw(st.booleans()):
            doc["on_enter"] = [draw(st.sampled_from(tuple(hook_paths)))]
        states[name] = _st(kind, f"Sent; settling at the venue ({i}).", **doc)
    return {"version": 1, "name": draw(st.sampled_from(("desk", "four-eyes", "chain"))),
            "extends": "default", "states": states, "transitions": ts}


def lifecycles(*, max_states: int = 4, guard_kinds: Sequence[str] = PURE_GUARDS,
               call_paths: Sequence[str] = (), hook_paths: Sequence[str] = (),
               venues: Sequence[str] = _VENUES,
               actions: Sequence[str] = _ACTIONS) -> st.SearchStrategy[Lifecycle]:
    """Valid lifecycles (every safety rule kept, by construction) extending the default with
    up to ``max_states`` states. Guards are drawn from ``guard_kinds`` (by default the ones
    that read only what the kit's blocks carry), and ``call`` guards and hooks only from
    ``call_paths`` and ``hook_paths`` (none unless given: they must import)."""
    return lifecycle_documents(max_states=max_states, guard_kinds=guard_kinds,
                               call_paths=call_paths, hook_paths=hook_paths, venues=venues,
                               actions=actions).map(Lifecycle.from_dict)


# ---------------------------------------------------------------------------- broken ones


@attrs.frozen
class BrokenLifecycle:
    """A lifecycle document (whole: no ``extends``) with one safety rule broken on purpose:
    the checker must refuse it, naming ``rule`` (among whatever else it finds)."""

    document: dict[str, Any]
    rule: str
    how: str


_HELD = {"kind": "before_route", "meaning": "Held.",
         "wait": {"timeout_seconds": 60.0, "timeout_to": "cancelled"}}
_INTO_HELD = _tr("hold_x", "queued", "held_x", "Hold it.", external=True)

Breaker = Callable[[st.DrawFn, dict[str, Any]], str]


def _of_kind(doc: dict[str, Any], *kinds: str) -> list[str]:
    return [n for n, s in doc["states"].items() if s["kind"] in kinds]


def _add_held(doc: dict[str, Any], **changes: Any) -> None:
    doc["states"]["held_x"] = copy.deepcopy({**_HELD, **changes})
    doc["transitions"].append(copy.deepcopy(_INTO_HELD))


def _break_reachable(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    doc["states"]["orphan_x"] = copy.deepcopy(_HELD)
    return "a state nothing leads to"


def _break_can_terminate(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    _add_held(doc, wait={})
    doc["transitions"].append(_tr("again", "held_x", "held_x", "Again.", external=True))
    return "a waiting state whose only way out leads back to itself"


def _break_no_way_back(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    source = draw(st.sampled_from(_of_kind(doc, "in_flight", "settling")))
    dest = draw(st.sampled_from([*_of_kind(doc, "before_route"), "routing"]))
    doc["transitions"].append(_tr("back", source, dest, "Back.", external=True))
    return f"{source} -> {dest}"


def _break_route_first(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    source = draw(st.sampled_from(_of_kind(doc, "before_route")))
    dest = draw(st.sampled_from([n for n in _of_kind(doc, "in_flight", "settling")
                                 if n != "routing"] + ["success"]))
    doc["transitions"].append(_tr("skip", source, dest, "Skip routing.", external=True))
    return f"{source} -> {dest}"


def _break_cancel_unsent(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    source = draw(st.sampled_from(_of_kind(doc, "in_flight", "settling")))
    doc["transitions"].append(_tr("abort", source, "cancelled", "Abort.", external=True))
    return f"{source} -> cancelled"


def _break_success(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    source = draw(st.sampled_from([n for n in _of_kind(doc, "in_flight", "settling")
                                   if n != "pending_reconciliation"]))
    doc["transitions"].append(_tr("assume", source, "success", "Assume.", external=True))
    return f"{source} -> success"


def _break_start_state(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    source = draw(st.sampled_from(_of_kind(doc, "before_route")))
    doc["transitions"].append(_tr("requeue", source, "queued", "Requeue.", external=True))
    return f"{source} -> queued"


def _break_terminal_exits(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    source = draw(st.sampled_from(["success", "failed", "cancelled"]))
    dest = draw(st.sampled_from(sorted(doc["states"])))
    doc["transitions"].append(_tr("revive", source, dest, "Revive.", external=True))
    return f"{source} -> {dest}"


def _break_fail_exit(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    doc["states"]["settle_x"] = {"kind": draw(st.sampled_from(["in_flight", "settling"])),
                                 "meaning": "Settling.", "wait": {"timeout_seconds": 60.0}}
    doc["transitions"].insert(0, _tr("executed", "routing", "settle_x", "Here.",
                                     guards=[{"action_in": {"actions": ["hedge"]}}]))
    return "an in-flight or settling state without fail"


def _break_timeout_in_doubt(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    doc["states"]["settle_x"] = {"kind": "settling", "meaning": "Settling.", "wait": {
        "timeout_seconds": 60.0, "timeout_to": draw(st.sampled_from(["failed", "retrying"]))}}
    doc["transitions"] += [
        _tr("executed", "routing", "settle_x", "Here.",
            guards=[{"action_in": {"actions": ["hedge"]}}]),
        _tr("fail", "settle_x", "failed", "In doubt.")]
    doc["transitions"].insert(0, doc["transitions"].pop(-2))
    return "a settling wait with a timeout target"


def _break_wait_ends(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    _add_held(doc, wait={})
    doc["transitions"].append(_tr("cancel", "held_x", "cancelled", "Cancelled."))
    return "a wait nothing ends"


def _break_moves_on(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    _add_held(doc)
    del doc["states"]["held_x"]["wait"]
    doc["transitions"].append(_tr("go", "held_x", "routing", "Go.", poll=True,
                                  guards=[{"venue_in": {"venues": ["spot"]}}]))
    return "a state without a wait and without an unguarded poll"


def _break_default_states(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    name = draw(st.sampled_from(["queued", "routing", "retrying", "pending_reconciliation"]))
    kinds = {"before_route", "in_flight", "settling"} - {doc["states"][name]["kind"]}
    doc["states"][name]["kind"] = draw(st.sampled_from(sorted(kinds)))
    return f"{name} changes kind"


def _break_default_triggers(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    plain = [i for i, t in enumerate(doc["transitions"]) if not t.get("guards")
             and t["trigger"] in DRIVER_TRIGGERS.get(t["source"], ())
             and not t.get("external") and not t.get("poll")]
    gone = doc["transitions"].pop(draw(st.sampled_from(plain)))
    return f"no unguarded {gone['trigger']} from {gone['source']}"


def _break_terminal_states(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    doc["states"]["rejected_x"] = {"kind": "terminal", "meaning": "Rejected."}
    doc["transitions"].append(_tr("reject", "queued", "rejected_x", "Reject.", external=True))
    return "a new terminal state"


def _break_meaning(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    t = draw(st.sampled_from(doc["transitions"]))
    t["meaning"] = draw(st.sampled_from(["", "  "]))
    return f"{t['source']} --{t['trigger']}--> without a meaning"


def _break_known_states(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    source = draw(st.sampled_from(_of_kind(doc, "before_route")))
    doc["transitions"].append(_tr("lost", source, "nowhere", "Lost.", external=True))
    return "a transition to an undefined state"


def _break_names(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    trigger = draw(st.sampled_from(["Hold", "to_held", "trigger", "is_held", "hold-it"]))
    _add_held(doc)
    doc["transitions"][-1]["trigger"] = trigger
    return f"the trigger {trigger}"


def _break_poll_loop(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    for name in ("spin_a", "spin_b"):
        doc["states"][name] = {"kind": "before_route", "meaning": "Spins."}
    doc["transitions"] += [
        _tr("spin", "queued", "spin_a", "Spin.", external=True),
        _tr("turn_a", "spin_a", "spin_b", "Turn.", poll=True),
        _tr("turn_b", "spin_b", "spin_a", "Turn back.", poll=True)]
    return "spin_a <-> spin_b, unguarded polls"


def _break_poll_source(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    source = draw(st.sampled_from(["queued", "routing", "retrying", "pending_reconciliation"]))
    dest = {"queued": "cancelled"}.get(source, "failed")
    doc["transitions"].append(_tr("watch", source, dest, "Polled.", poll=True,
                                  guards=[{"action_in": {"actions": ["hedge"]}}]))
    return f"a poll from {source}"


def _break_reserved_trigger(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    _add_held(doc)
    doc["transitions"].append(_tr("timeout", "held_x", "cancelled", "Timeout.",
                                  external=True))
    return "a transition named timeout"


def _break_derived_trigger(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    dest = draw(st.sampled_from(_of_kind(doc, "settling")))
    doc["transitions"].append(_tr("found_executed", "retrying", dest, "Found executed."))
    return f"a declared retrying --found_executed--> {dest}"


def _break_found_executed_ends(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    doc["transitions"].insert(0, _tr("executed", "routing", "retrying", "Back to retrying.",
                                     guards=[{"action_in": {"actions": ["hedge"]}}]))
    return "routing --executed--> retrying"


def _break_settled_stays(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    source = draw(st.sampled_from(_of_kind(doc, "settling")))
    doc["transitions"].append(_tr("recheck", source, "retrying", "Ask the venue again.",
                                  external=True))
    return f"{source} --recheck--> retrying"


def _break_driver_facts(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    trigger, source = draw(st.sampled_from([
        ("resume_reconciliation", "retrying"), ("reconciled", "pending_reconciliation"),
        ("reroute", "retrying")]))
    for t in doc["transitions"]:
        if (t["trigger"], t["source"]) == (trigger, source):
            t["external"] = True
    return f"an external {trigger}"


def _break_dead_trigger(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    _add_held(doc)
    del doc["transitions"][-1]["external"]
    return "a trigger the driver never fires"


def _break_trigger_flags(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    doc["transitions"].insert(0, _tr("start", "queued", "routing", "Start by hand.",
                                     external=True, guards=[{"action_in": {"actions": ["x"]}}]))
    return "an external start"


def _break_one_default(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    _add_held(doc)
    doc["transitions"][-1] = _tr("start", "queued", "held_x", "Start here too.")
    return "two unguarded starts"


def _break_shadowed(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    doc["transitions"].append(_tr("start", "queued", "routing", "Never tried.",
                                  guards=[{"action_in": {"actions": ["hedge"]}}]))
    return "a guarded start after the unguarded one"


def _break_fallback(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    _add_held(doc)
    doc["transitions"].append(_tr("cancel", "held_x", "cancelled", "Cancel some.",
                                  guards=[{"action_in": {"actions": ["hedge"]}}]))
    return "a guarded-only cancel"


def _break_guard_args(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    bad = draw(st.sampled_from([
        {"venue_in": {"venues": []}}, {"notional_above": {"value": "-1"}},
        {"clock_in_window": {"start": "25:00", "end": "03:00"}},
        {"clock_outside_window": {"start": "02:00", "end": "03:00", "tz": "Nowhere/City"}},
        {"call": {"path": "no path"}}, {"colour_is": {"value": "red"}}]))
    doc["transitions"].insert(0, _tr("start", "queued", "routing", "Guarded.", guards=[bad]))
    return f"the guard {bad}"


def _break_hook_path(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    _add_held(doc, on_enter=[draw(st.sampled_from(["notify", "a b:c", "pkg.mod:"]))])
    doc["transitions"].append(_tr("fail", "held_x", "failed", "The hook raised."))
    return "a hook that is not an import path"


def _break_declared_kind(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    _add_held(doc)
    state = doc["states"]["held_x"]
    if draw(st.booleans()):
        del state["kind"]
    else:
        state["kind"] = "parked"
    return "a state without a known kind"


#: Each rule :func:`broken_lifecycles` breaks, and how.
BREAKERS: dict[str, Breaker] = {
    "declared-kind": _break_declared_kind, "names": _break_names,
    "meaning": _break_meaning, "known-states": _break_known_states,
    "default-states": _break_default_states, "default-triggers": _break_default_triggers,
    "start-state": _break_start_state, "terminal-states": _break_terminal_states,
    "terminal-exits": _break_terminal_exits, "reachable": _break_reachable,
    "can-terminate": _break_can_terminate, "no-way-back": _break_no_way_back,
    "route-first": _break_route_first, "cancel-unsent": _break_cancel_unsent,
    "success-reconciled": _break_success, "fail-exit": _break_fail_exit,
    "timeout-in-doubt": _break_timeout_in_doubt, "wait-ends": _break_wait_ends,
    "moves-on": _break_moves_on, "poll-loop": _break_poll_loop,
    "poll-source": _break_poll_source,
    "reserved-trigger": _break_reserved_trigger,
    "found-executed-ends": _break_found_executed_ends, "settled-stays": _break_settled_stays,
    "driver-facts": _break_driver_facts, "derived-trigger": _break_derived_trigger,
    "dead-trigger": _break_dead_trigger, "trigger-flags": _break_trigger_flags,
    "one-default": _break_one_default, "shadowed": _break_shadowed,
    "fallback": _break_fallback, "guard-args": _break_guard_args,
    "hook-path": _break_hook_path,
}


def broken_lifecycles(*, rules: Sequence[str] | None = None,
                      max_states: int = 4) -> st.SearchStrategy[BrokenLifecycle]:
    """A valid lifecycle (from :func:`lifecycles`) made whole, with one rule of ``rules``
    (default: every rule in :data:`BREAKERS`) broken."""
    return _broken(rules=rules, max_states=max_states)


@st.composite
def _broken(draw: st.DrawFn, *, rules: Sequence[str] | None, max_states: int) -> BrokenLifecycle:
    base = draw(lifecycles(max_states=max_states)).to_dict()
    rule = draw(st.sampled_from(sorted(rules if rules is not None else BREAKERS)))
    how = BREAKERS[rule](draw, base)
    return BrokenLifecycle(base, rule, how)
