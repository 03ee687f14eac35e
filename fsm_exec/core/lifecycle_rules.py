"""The safety rules a lifecycle must keep, each with a stable id (:data:`RULES`).

:func:`check` returns every broken rule as a :class:`RuleViolation` naming the rule and the
state or transition (``source --trigger--> dest``) that breaks it, in the order of
:data:`RULES`. The rules keep what the manager promises for any lifecycle: a block starts at
``queued`` and ends in ``success``, ``failed`` or ``cancelled``; a block the venue may hold is
never routed again (except after the venue confirmed it does not hold it: ``retrying
--reroute--> routing``); a block is cancelled only while nothing was sent, and succeeds only
through reconciliation; a waiting block always has a way out; an in-flight or settling block
whose wait times out, or whose hook raises, is in doubt (``fail`` to ``failed``); a block the
venue is found to have executed after its reply was lost takes the way ``executed`` takes
(``retrying --found_executed-->`` is derived, never declared).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from fsm_exec.core.lifecycle import DERIVED, reach
from fsm_exec.core.lifecycle_defs import (
    DEFAULT_KINDS,
    TIMEOUT_TRIGGER,
    RuleViolation,
    StateDef,
    StateKind,
    TransitionDef,
)
from fsm_exec.core.lifecycle_guards import IMPORT_PATH, guard_problems, resolve

if TYPE_CHECKING:
    from fsm_exec.core.lifecycles import Lifecycle

_B, _I, _S, _T = StateKind.BEFORE_ROUTE, StateKind.IN_FLIGHT, StateKind.SETTLING, \
    StateKind.TERMINAL

#: Every rule: its id and what it asks, in the order :func:`check` reports them.
RULES: Mapping[str, str] = {
    "names": "State and trigger names are lower-case identifiers (letters, digits, _; at "
             "most 64 characters); a trigger is not a name the state machine keeps for itself.",
    "unique-states": "Each state is defined once.",
    "meaning": "Every state and transition says what it means (a non-blank meaning).",
    "declared-kind": "Each state declares its kind: before_route (nothing sent: may be "
                     "cancelled, may wait), in_flight (the venue may hold the order), settling "
                     "(sent, outcome being settled) or terminal.",
    "known-states": "Every transition (and every wait's timeout target) names defined states.",
    "default-states": "The default states are all there, with their kinds, without a wait or "
                      "hooks: queued (before route), routing and retrying (in flight), "
                      "pending_reconciliation (settling), success, failed and cancelled "
                      "(terminal). The driver gives them their behaviour.",
    "default-triggers": "Every trigger the driver fires from a default state has an unguarded "
                        "transition there (queued: start, cancel; routing: executed, "
                        "route_failed, fail; retrying: reroute, resume_reconciliation, fail; "
                        "pending_reconciliation: reconciled, reconciliation_timeout, fail).",
    "start-state": "queued is the start: no transition leads into it.",
    "terminal-states": "The terminal states are success, failed and cancelled; a lifecycle "
                       "adds no other.",
    "terminal-exits": "A terminal state has no way out.",
    "reachable": "Every state is reachable from queued.",
    "can-terminate": "Every non-terminal state can reach a terminal state.",
    "no-way-back": "No transition leads from an in-flight or settling state to a before-route "
                   "state or to routing, except retrying --reroute--> routing (the venue "
                   "confirmed it does not hold the block).",
    "route-first": "A before-route state leads only to before-route states, to routing, to "
                   "cancelled or to failed: nothing is in flight or settling unless routing "
                   "sent it.",
    "cancel-unsent": "cancelled is entered only from a before-route state, and a cancel "
                     "transition leads to cancelled: a cancelled block was never sent.",
    "success-reconciled": "success is entered only from pending_reconciliation: a block "
                          "succeeds only once its deltas were handed over and reconciled.",
    "fail-exit": "An in-flight or settling state, and any state with hooks, has an unguarded "
                 "fail transition to failed (a timeout or a hook that raises leaves an "
                 "in-flight or settling block in doubt: failed, and a halt in live mode); a "
                 "fail transition leads to failed.",
    "timeout-in-doubt": "The wait of an in-flight or settling state names no timeout target: "
                        "its timeout is in doubt (failed).",
    "wait-ends": "A waiting state declares what ends the wait: an external transition, a "
                 "poll transition, or a timeout (with its target, for a before-route state); "
                 "a timeout is a positive number of seconds.",
    "moves-on": "A state added by the lifecycle that does not wait has an unguarded poll "
                "transition, so the driver moves the block on at once.",
    "poll-loop": "The unguarded poll transitions form no loop: the driver would move a block "
                 "round it on every update_state, and it would never end.",
    "poll-source": "A poll transition leaves a state the lifecycle adds: the driver polls "
                   "only there (a default state's moves are the driver's own).",
    "reserved-trigger": "No transition uses the trigger timeout: a wait's timeout implies it.",
    "found-executed-ends": "executed does not lead to retrying: a block found executed after "
                           "its reply was lost goes where executed leads, and from retrying "
                           "that would be retrying again, for ever, its deltas never handed "
                           "off.",
    "settled-stays": "No transition leads from a settling state to retrying, except "
                     "pending_reconciliation --reconciliation_timeout--> (the deltas were "
                     "handed off: only reconciliation is outstanding). A settling block was "
                     "executed, its deltas journaled: asked again, the venue would hand the "
                     "same deltas off again, or skip the settling the lifecycle asks for.",
    "driver-facts": "The triggers the driver fires on a venue's or reconciliation's answer "
                    "(start, executed, route_failed, reroute, resume_reconciliation, "
                    "reconciled, reconciliation_timeout) are neither external nor poll: an "
                    "operator or a poll does not stand in for the venue's answer.",
    "derived-trigger": "No transition uses the trigger found_executed: retrying "
                       "--found_executed--> is derived from routing --executed-->, to the same "
                       "states with the same guards (a block the venue is found to have "
                       "executed after its reply was lost takes the way executed takes: a "
                       "lifecycle that redirects executed redirects it too).",
    "dead-trigger": "A transition that is neither external nor poll uses a trigger the driver "
                    "fires from its source (see default-triggers; from an added state: fail, "
                    "and cancel from a before-route one).",
    "trigger-flags": "The transitions of one (source, trigger) agree on external and poll.",
    "one-default": "A (source, trigger) has at most one unguarded transition.",
    "shadowed": "A guarded transition comes before the unguarded one of its (source, "
                "trigger): transitions are tried in order, so after it, it is never tried.",
    "fallback": "A trigger the driver fires (neither external nor poll) that has guarded "
                "transitions also has an unguarded one, so the block never sticks.",
    "guard-args": "Each guard is of a known kind, with the arguments that kind takes.",
    "hook-path": "Each hook and call guard names an import path 'package.module:function' "
                 "(that imports, when resolved).",
}

_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_RESERVED_TRIGGERS = frozenset({"trigger", "state", "block_id", "machine"})
_RESERVED_PREFIXES = ("may_", "is_", "to_")

#: The triggers the driver fires, by default state; from an added state it fires ``fail``
#: (and ``cancel`` from a before-route one: the cancel command).
DRIVER_TRIGGERS: Mapping[str, frozenset[str]] = {
    "queued": frozenset({"start", "cancel"}),
    "routing": frozenset({"executed", "route_failed", "fail"}),
    "retrying": frozenset({"reroute", "resume_reconciliation", "fail"}),
    "pending_reconciliation": frozenset({"reconciled", "reconciliation_timeout", "fail"}),
}


#: The triggers the driver fires on a fact (a venue's or reconciliation's answer, or its own
#: turn): never an operator's (external) nor a poll's.
_FACTS = frozenset({"start", "executed", "route_failed", "reroute", "resume_reconciliation",
                    "reconciled", "reconciliation_timeout"})


def _say(kind: StateKind) -> str:
    return {_B: "before route", _I: "in flight", _S: "settling", _T: "terminal"}[kind]


def driver_triggers(state: StateDef) -> frozenset[str]:
    """The triggers the driver fires from ``state`` (not external, not poll)."""
    if state.name in DRIVER_TRIGGERS:
        return DRIVER_TRIGGERS[state.name]
    return frozenset({"fail", "cancel"} if state.kind is _B else {"fail"})


def check(lc: Lifecycle, *, resolve: bool = False) -> list[RuleViolation]:
    """Every rule ``lc`` breaks, in the order of :data:`RULES`."""
    out: list[RuleViolation] = []

    def bad(rule: str, where: str, message: str) -> None:
        out.append(RuleViolation(rule, where, message))

    states: dict[str, StateDef] = {}
    for s in lc.states:
        states.setdefault(s.name, s)
    ts = lc.transitions

    # names, unique-states, meaning, known-states
    for s in lc.states:
        if not (isinstance(s.name, str) and _NAME.fullmatch(s.name)):
            bad("names", repr(s.name), "a state name is a lower-case identifier (letters, "
                "digits, _; at most 64 characters)")
    for t in ts:
        if not (isinstance(t.trigger, str) and _NAME.fullmatch(t.trigger)):
            bad("names", t.words(), f"the trigger {t.trigger!r} is not a lower-case "
                "identifier (letters, digits, _; at most 64 characters)")
        elif t.trigger in _RESERVED_TRIGGERS or t.trigger.startswith(_RESERVED_PREFIXES):
            bad("names", t.words(), f"the trigger {t.trigger!r} is a name the state machine "
                f"keeps for itself ({', '.join(sorted(_RESERVED_TRIGGERS))}, or beginning "
                f"with {', '.join(_RESERVED_PREFIXES)})")
    counts: dict[str, int] = {}
    for s in lc.states:
        counts[s.name] = counts.get(s.name, 0) + 1
    for name, n in counts.items():
        if n > 1:
            bad("unique-states", name, f"the state is defined {n} times")
    for s in lc.states:
        if not (isinstance(s.meaning, str) and s.meaning.strip()):
            bad("meaning", s.name, "the state has no meaning: say what a block in it is "
                "waiting for or doing")
    for t in ts:
        if not (isinstance(t.meaning, str) and t.meaning.strip()):
            bad("meaning", t.words(), "the transition has no meaning: say when it fires")
    for s in lc.states:
        if not isinstance(s.kind, StateKind):
            bad("declared-kind", s.name, f"the state declares kind {s.kind!r}: each state "
                f"declares one of {', '.join(k.value for k in StateKind)}")
    states = {n: s for n, s in states.items() if isinstance(s.kind, StateKind)}
    kind = {n: s.kind for n, s in states.items()}
    for t in ts:
        unknown = [n for n in dict.fromkeys((t.source, t.dest)) if n not in states]
        if unknown:
            bad("known-states", t.words(), f"no state {' or '.join(map(repr, unknown))} is "
                "defined")
    for s in states.values():
        if s.wait is not None and s.wait.timeout_to is not None \
                and s.wait.timeout_to not in states:
            bad("known-states", s.name, f"the wait's timeout target {s.wait.timeout_to!r} is "
                "not a defined state")
    known = [t for t in ts if t.source in states and t.dest in states]

    # default-states, default-triggers, start-state, terminal-states, terminal-exits
    for name, want in DEFAULT_KINDS.items():
        found = states.get(name)
        if found is None:
            bad("default-states", name, f"the default state is missing (it is {want})")
            continue
        if found.kind is not want:
            bad("default-states", name, f"the default state's kind is {want}, not "
                f"{found.kind}")
        if found.wait is not None or found.on_enter:
            bad("default-states", name, "a default state takes no wait and no hooks: the "
                "driver gives it its behaviour")
    for name, triggers in DRIVER_TRIGGERS.items():
        if name not in states:
            continue
        have = {t.trigger for t in known if t.source == name and not t.guards}
        for trigger in sorted(triggers - have):
            bad("default-triggers", name, f"no unguarded {trigger!r} transition: the driver "
                f"fires {trigger!r} from {name}")
    for t in known:
        if t.dest == "queued":
            bad("start-state", t.words(), "queued is the start: no transition leads back "
                "into it")
    for s in states.values():
        if s.kind is _T and s.name not in DEFAULT_KINDS:
            bad("terminal-states", s.name, "a lifecycle adds no terminal state: end in "
                "success, failed or cancelled")
    for t in known:
        if kind[t.source] is _T:
            bad("terminal-exits", t.words(), f"{t.source} is terminal: it has no way out")

    # reachable, can-terminate (timeouts count as ways on)
    edges = [(t.source, t.dest) for t in lc.all_transitions()
             if t.source in states and t.dest in states]
    if "queued" in states:
        reached = reach(["queued"], edges)
        for name in states:
            if name not in reached:
                bad("reachable", name, "no path leads to the state from queued")
    ends = reach([n for n, k in kind.items() if k is _T], [(b, a) for a, b in edges])
    for name, k in kind.items():
        if k is not _T and name not in ends:
            bad("can-terminate", name, "no path leads from the state to a terminal state "
                "(success, failed, cancelled): a block there would never end")

    # no-way-back, route-first, cancel-unsent, success-reconciled
    for t in known:
        a, b = kind[t.source], kind[t.dest]
        if a in (_I, _S) and (b is _B or t.dest == "routing") \
                and t.key != ("retrying", "reroute", "routing"):
            target = "routing" if t.dest == "routing" else f"the before-route state {t.dest}"
            bad("no-way-back", t.words(), f"{t.source} is {_say(a)}: the "
                f"venue may hold the block, so it never goes back to {target} (only retrying "
                "--reroute--> routing, once the venue confirmed it does not hold it)")
    for s in states.values():
        implied = lc.timeout_transition(s.name) if s.wait is not None else None
        leaving = [u for u in known if u.source == s.name]
        if implied is not None and implied.dest in states:
            leaving.append(implied)
        for t in leaving:
            b = kind[t.dest]
            if s.kind is _B and not (b is _B or t.dest in ("routing", "cancelled", "failed")):
                bad("route-first", t.words(), f"{t.source} is before route (nothing was "
                    f"sent), so it cannot lead to {t.dest} ({_say(b)}): "
                    "only routing sends a block")
    for t in known:
        if t.dest == "cancelled" and kind[t.source] is not _B:
            bad("cancel-unsent", t.words(), f"{t.source} is {_say(kind[t.source])}: a "
                "block that may have been sent is never cancelled (fail it instead)")
        elif t.trigger == "cancel" and t.dest != "cancelled":
            bad("cancel-unsent", t.words(), "a cancel transition leads to cancelled")
        if t.dest == "success" and t.source != "pending_reconciliation":
            bad("success-reconciled", t.words(), "only pending_reconciliation leads to "
                "success: a block succeeds once its deltas were handed over and reconciled")

    # fail-exit, timeout-in-doubt, wait-ends, moves-on
    for s in states.values():
        if s.name in DEFAULT_KINDS and s.kind is DEFAULT_KINDS[s.name] and not s.on_enter:
            continue  # default-states and default-triggers cover these
        if s.kind in (_I, _S) or (s.on_enter and s.kind is not _T):
            fails = [t for t in known if t.source == s.name and t.trigger == "fail"
                     and not t.guards and t.dest == "failed"]
            if not fails:
                why = (f"{_say(s.kind)}: a timeout or a hook that raises "
                       "leaves the block in doubt" if s.kind in (_I, _S)
                       else "it has hooks: one that raises fails the block")
                bad("fail-exit", s.name, f"no unguarded fail transition to failed ({why})")
    for t in known:
        if t.trigger == "fail" and t.dest != "failed":
            bad("fail-exit", t.words(), "a fail transition leads to failed")
    for s in states.values():
        w = s.wait
        if w is None:
            continue
        if s.kind in (_I, _S) and w.timeout_to is not None:
            bad("timeout-in-doubt", s.name, f"the state is {_say(s.kind)}: its timeout "
                f"leaves the block in doubt and always goes to failed; drop timeout_to "
                f"({w.timeout_to})")
        seconds = w.timeout_seconds
        if seconds is not None and not (isinstance(seconds, int | float) and not isinstance(
                seconds, bool) and 0 < seconds < math.inf):
            bad("wait-ends", s.name, f"timeout_seconds must be a positive number of seconds, "
                f"got {seconds!r}")
        if w.timeout_to is not None and w.timeout_seconds is None:
            bad("wait-ends", s.name, f"timeout_to {w.timeout_to} without timeout_seconds")
        if s.kind is _B and w.timeout_seconds is not None and w.timeout_to is None:
            bad("wait-ends", s.name, "a before-route wait with a timeout names its target "
                "(timeout_to, e.g. cancelled)")
        ways = [t for t in known if t.source == s.name and (t.external or t.poll)]
        if not ways and w.timeout_seconds is None:
            bad("wait-ends", s.name, "nothing ends the wait: give the state an external "
                "transition, a poll transition or a timeout")
    for s in states.values():
        if s.name in DEFAULT_KINDS or s.wait is not None or s.kind is _T:
            continue
        if not any(t.poll and not t.guards for t in known if t.source == s.name):
            bad("moves-on", s.name, "the state does not wait, so it needs an unguarded poll "
                "transition for the driver to move the block on (or give it a wait)")

    # poll-loop
    polls = [(t.source, t.dest) for t in known if t.poll and not t.guards]
    for t in known:
        if t.poll and not t.guards and t.source in reach([t.dest], polls):
            bad("poll-loop", t.words(), f"it closes a loop of unguarded polls back to "
                f"{t.source}: a block would go round it on every update_state and never end "
                "(guard one of them, or make one state wait)")

    # poll-source, reserved-trigger, found-executed-ends, settled-stays, driver-facts,
    # derived-trigger, dead-trigger, trigger-flags, one-default, shadowed, fallback
    for t in known:
        if t.poll and t.source in DEFAULT_KINDS:
            bad("poll-source", t.words(), f"{t.source} is a default state: the driver moves "
                "a block there itself and never polls it; poll from a state you add")
    for t in ts:
        if t.trigger == TIMEOUT_TRIGGER:
            bad("reserved-trigger", t.words(), "the trigger timeout is implied by a wait's "
                "timeout_seconds: give the state a wait instead")
    for t in known:
        if t.key[:2] == ("routing", "executed") and t.dest == "retrying":
            bad("found-executed-ends", t.words(), "executed leads to retrying: a block found "
                "executed after a lost reply would go from retrying to retrying for ever "
                "(send executed to pending_reconciliation or a settling state)")
        if (t.dest == "retrying" and kind[t.source] is _S and t.trigger != "fail"  # fail-exit
                and t.key[:2] != ("pending_reconciliation", "reconciliation_timeout")):
            bad("settled-stays", t.words(), f"{t.source} is settling: the venue executed the "
                "block and its deltas are journaled, so it never goes back to retrying (the "
                "venue would be asked again: the deltas handed off twice, or the settling "
                "skipped); fail it instead")
        if t.trigger in _FACTS and (t.external or t.poll):
            bad("driver-facts", t.words(), f"{t.trigger} is the driver's, fired on a venue's "
                "or reconciliation's answer: it is neither external nor poll (give the "
                "operator's or the poll's move a trigger of its own)")
    derived = {trigger: (source, of) for (source, trigger), of in DERIVED.items()}
    for t in ts:
        if t.trigger in derived:
            source, (of_source, of_trigger) = derived[t.trigger]
            bad("derived-trigger", t.words(), f"the trigger {t.trigger} is derived, never "
                f"declared: {source} --{t.trigger}--> leads wherever {of_source} "
                f"--{of_trigger}--> does, with the same guards (redirect {of_trigger} and it "
                "follows)")
    for t in known:
        if t.external or t.poll or t.trigger == TIMEOUT_TRIGGER or t.trigger in derived:
            continue
        fired = driver_triggers(states[t.source])
        if t.trigger not in fired:
            bad("dead-trigger", t.words(), f"the driver never fires {t.trigger!r} from "
                f"{t.source} (it fires {', '.join(sorted(fired))}): mark it external or poll")
    groups: dict[tuple[str, str], list[TransitionDef]] = {}
    for t in ts:
        groups.setdefault((t.source, t.trigger), []).append(t)
    for (source, trigger), group in groups.items():
        where = f"{source} --{trigger}-->"
        if len({(t.external, t.poll) for t in group}) > 1:
            bad("trigger-flags", where, "its transitions disagree on external / poll")
        plain = [i for i, t in enumerate(group) if not t.guards]
        if len(plain) > 1:
            bad("one-default", where, f"{len(plain)} unguarded transitions (to "
                f"{', '.join(group[i].dest for i in plain)}): only the first would fire")
        if plain:
            for t in group[plain[0] + 1:]:
                if t.guards:
                    bad("shadowed", t.words(), "the guarded transition comes after the "
                        "unguarded one of its trigger, so it is never tried: put it first")
        elif not group[0].external and not group[0].poll:
            bad("fallback", where, "the driver fires this trigger and every transition of "
                "it is guarded: when no guard holds, the block does not move; add an unguarded "
                "one, last")

    # guard-args, hook-path
    for t in ts:
        for g in t.guards:
            for problem in guard_problems(g.kind, g.args):
                bad("guard-args", t.words(), problem)
            if resolve and g.kind == "call" and not guard_problems(g.kind, g.args):
                _resolve(bad, t.words(), f"guard {g.args['path']}", g.args["path"])
    for s in lc.states:
        for path in s.on_enter:
            if not (isinstance(path, str) and IMPORT_PATH.fullmatch(path)):
                bad("hook-path", s.name, f"the hook {path!r} is not an import path "
                    "'package.module:function'")
            elif resolve:
                _resolve(bad, s.name, f"hook {path}", path)
    return out


def _resolve(bad: Callable[[str, str, str], None], where: str, what: str, path: str) -> None:
    try:
        resolve(path)
    except LookupError as exc:
        bad("hook-path", where, f"{what} does not resolve: {exc}")
