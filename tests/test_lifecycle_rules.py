"""Each safety rule of a lifecycle (issue 22 item 2): a lifecycle that breaks it, and the exact
refusal, naming the rule and the state or transition."""

from __future__ import annotations

from typing import Any

import pytest

from fsm_exec import Lifecycle, LifecycleError, StateKind
from fsm_exec.core.lifecycle_rules import RULES
from fsm_exec.core.lifecycles import RuleViolation, StateDef, TransitionDef, Wait

B = "before_route"


def ext(
    states: dict[str, Any] | None = None,
    transitions: list[dict[str, Any]] | None = None,
    name: str = "desk",
) -> dict[str, Any]:
    """A lifecycle document extending the default."""
    return {
        "version": 1,
        "name": name,
        "extends": "default",
        "states": states or {},
        "transitions": transitions or [],
    }


def st(kind: str, meaning: str = "A state.", **kw: Any) -> dict[str, Any]:
    return {"kind": kind, "meaning": meaning, **kw}


def tr(trigger: str, source: str, dest: str, meaning: str = "A move.", **kw: Any) -> dict[str, Any]:
    return {"trigger": trigger, "source": source, "dest": dest, "meaning": meaning, **kw}


HELD = {"held": st(B, wait={"timeout_seconds": 60, "timeout_to": "cancelled"})}
TO_HELD = tr("hold", "queued", "held", external=True)


def _full(doc: str) -> dict[str, Any]:
    """The default, whole, changed as ``doc`` says."""
    d = Lifecycle.default().to_dict()
    if doc == "FULL-MISSING":
        del d["states"]["retrying"]
        d["transitions"] = [
            t for t in d["transitions"] if "retrying" not in (t["source"], t["dest"])
        ]
    elif doc == "FULL-NO-ROUTE-FAILED":
        d["transitions"] = [t for t in d["transitions"] if t["trigger"] != "route_failed"]
    elif doc == "FULL-TWO-STARTS":
        d["states"]["held"] = HELD["held"]
        d["transitions"].append(tr("start", "queued", "held"))
    elif doc == "FULL-SHADOWED":
        d["states"]["held"] = HELD["held"]
        d["transitions"].insert(
            1, tr("start", "queued", "held", guards=[{"action_in": {"actions": ["hedge"]}}])
        )
    return d


CASES: dict[str, dict[str, Any] | str] = {
    "names-state": ext(
        {"Held": st(B, wait={"timeout_seconds": 60, "timeout_to": "cancelled"})},
        [tr("hold", "queued", "Held", external=True)],
    ),
    "names-trigger": ext(HELD, [tr("Hold", "queued", "held", external=True)]),
    "names-reserved": ext(HELD, [tr("to_held", "queued", "held", external=True)]),
    "meaning-state": ext(
        {"held": st(B, meaning=" ", wait={"timeout_seconds": 60, "timeout_to": "cancelled"})},
        [TO_HELD],
    ),
    "meaning-transition": ext(HELD, [tr("hold", "queued", "held", meaning="", external=True)]),
    "known-states": ext(HELD, [TO_HELD, tr("park", "held", "parked", external=True)]),
    "known-timeout": ext(
        {"held": st(B, wait={"timeout_seconds": 60, "timeout_to": "gone"})},
        [TO_HELD, tr("go", "held", "routing", external=True)],
    ),
    "default-states-kind": ext({"retrying": st("settling", "Retrying.")}),
    "default-states-wait": ext(
        {"queued": st(B, "Queued.", wait={"timeout_seconds": 5, "timeout_to": "cancelled"})}
    ),
    "default-states-missing": "FULL-MISSING",
    "default-triggers": "FULL-NO-ROUTE-FAILED",
    "start-state": ext(HELD, [TO_HELD, tr("release", "held", "queued", external=True)]),
    "terminal-states": ext(
        {"rejected": st("terminal", "Rejected.")},
        [tr("reject", "queued", "rejected", external=True)],
    ),
    "terminal-exits": ext(transitions=[tr("revive", "failed", "retrying", external=True)]),
    "reachable": ext(HELD),
    "can-terminate": ext(
        {"held": st(B, wait={})}, [TO_HELD, tr("again", "held", "held", external=True)]
    ),
    "no-way-back-routing": ext(
        transitions=[tr("resend", "pending_reconciliation", "routing", external=True)]
    ),
    "no-way-back-before": ext(HELD, [TO_HELD, tr("park", "retrying", "held", external=True)]),
    "route-first": ext(
        transitions=[tr("assume", "queued", "pending_reconciliation", external=True)]
    ),
    "route-first-timeout": ext(
        {"held": st(B, wait={"timeout_seconds": 60, "timeout_to": "retrying"})}, [TO_HELD]
    ),
    "cancel-unsent": ext(transitions=[tr("abort", "retrying", "cancelled", external=True)]),
    "cancel-elsewhere": ext(HELD, [TO_HELD, tr("cancel", "held", "failed")]),
    "success-reconciled": ext(transitions=[tr("assume_done", "routing", "success", external=True)]),
    "fail-exit-state": ext(
        {"confirming": st("settling", wait={"timeout_seconds": 600})},
        [
            tr("executed", "routing", "confirming"),
            tr(
                "confirmed",
                "confirming",
                "pending_reconciliation",
                poll=True,
                guards=[{"call": {"path": "desk.chain:confirmed"}}],
            ),
        ],
    ),
    "fail-exit-hook": ext(
        {
            "held": st(
                B,
                wait={"timeout_seconds": 60, "timeout_to": "cancelled"},
                on_enter=["desk.hooks:notify"],
            )
        },
        [TO_HELD],
    ),
    "fail-exit-dest": ext(
        {"confirming": st("settling", wait={"timeout_seconds": 600})},
        [
            tr("executed", "routing", "confirming"),
            tr("confirmed", "confirming", "pending_reconciliation", poll=True),
            tr("fail", "confirming", "retrying"),
        ],
    ),
    "timeout-in-doubt": ext(
        {"confirming": st("settling", wait={"timeout_seconds": 600, "timeout_to": "failed"})},
        [tr("executed", "routing", "confirming"), tr("fail", "confirming", "failed")],
    ),
    "wait-ends-nothing": ext(
        {"held": st(B, wait={})}, [TO_HELD, tr("cancel", "held", "cancelled")]
    ),
    "wait-ends-target": ext(
        {"held": st(B, wait={"timeout_seconds": 60})},
        [TO_HELD, tr("go", "held", "routing", external=True)],
    ),
    "wait-ends-seconds": ext(
        {"held": st(B, wait={"timeout_to": "cancelled"})},
        [TO_HELD, tr("go", "held", "routing", external=True)],
    ),
    "wait-ends-positive": ext(
        {"held": st(B, wait={"timeout_seconds": 0, "timeout_to": "cancelled"})}, [TO_HELD]
    ),
    "moves-on": ext(
        {"check": st(B)},
        [
            tr("start", "queued", "check", guards=[{"action_in": {"actions": ["hedge"]}}]),
            tr("go", "check", "routing", poll=True, guards=[{"venue_in": {"venues": ["spot"]}}]),
            tr("cancel", "check", "cancelled"),
        ],
    ),
    "poll-loop": ext(
        {"check": st(B), "recheck": st(B)},
        [
            tr("start", "queued", "check", guards=[{"action_in": {"actions": ["hedge"]}}]),
            tr("go", "check", "recheck", poll=True),
            tr("back", "recheck", "check", poll=True),
            tr("cancel", "check", "cancelled"),
            tr("cancel", "recheck", "cancelled"),
        ],
    ),
    "poll-source": ext(
        transitions=[
            tr("watch", "pending_reconciliation", "failed", poll=True,
               guards=[{"action_in": {"actions": ["hedge"]}}])
        ]
    ),
    "reserved-trigger": ext(HELD, [TO_HELD, tr("timeout", "held", "cancelled", external=True)]),
    # The workaround the defect invited: executed redirected to a settling state, and the
    # venue's later word on a lost reply sent there too by hand. Derived, never declared.
    "derived-trigger": ext(
        {"confirming": st("settling", wait={"timeout_seconds": 60})},
        [
            tr("executed", "routing", "confirming"),
            tr("fail", "confirming", "failed"),
            tr("found_executed", "retrying", "confirming"),
        ],
    ),
    "found-executed-ends": ext({}, [tr("executed", "routing", "retrying")]),
    "settled-stays": ext(
        {"confirming": st("settling", wait={"timeout_seconds": 60})},
        [
            tr("executed", "routing", "confirming"),
            tr("fail", "confirming", "failed"),
            tr("recheck", "confirming", "retrying", external=True),
        ],
    ),
    "driver-facts": ext(
        {}, [tr("resume_reconciliation", "retrying", "pending_reconciliation", external=True)]
    ),
    "dead-trigger": ext(HELD, [tr("hold", "queued", "held")]),
    "trigger-flags": ext(
        HELD,
        [
            tr(
                "start",
                "queued",
                "held",
                external=True,
                guards=[{"action_in": {"actions": ["hedge"]}}],
            )
        ],
    ),
    "one-default": "FULL-TWO-STARTS",
    "shadowed": "FULL-SHADOWED",
    "fallback": ext(
        {"held": st(B, wait={"timeout_seconds": 60, "timeout_to": "cancelled"})},
        [
            TO_HELD,
            tr("cancel", "held", "cancelled", guards=[{"action_in": {"actions": ["hedge"]}}]),
        ],
    ),
    "guard-args-kind": ext(
        HELD, [tr("start", "queued", "held", guards=[{"notional_over": {"value": "1"}}])]
    ),
    "guard-args-value": ext(
        HELD, [tr("start", "queued", "held", guards=[{"notional_above": {"value": "lots"}}])]
    ),
    "guard-args-window": ext(
        HELD,
        [
            tr(
                "start",
                "queued",
                "held",
                guards=[{"clock_in_window": {"start": 120, "end": "03:00", "tz": "Mars/Olympus"}}],
            )
        ],
    ),
    "guard-args-missing": ext(
        HELD, [tr("start", "queued", "held", guards=[{"venue_in": {"venue": ["dex"]}}])]
    ),
    "guard-args-list": ext(
        HELD, [tr("start", "queued", "held", guards=[{"action_in": {"actions": []}}])]
    ),
    "guard-args-empty-window": ext(
        HELD,
        [
            tr(
                "start",
                "queued",
                "held",
                guards=[{"clock_outside_window": {"start": "02:00", "end": "02:00"}}],
            )
        ],
    ),
    "guard-args-call": ext(
        HELD, [tr("start", "queued", "held", guards=[{"call": {"path": "not a path"}}])]
    ),
    "hook-path": ext(
        {
            "held": st(
                B, wait={"timeout_seconds": 60, "timeout_to": "cancelled"}, on_enter=["notify"]
            )
        },
        [TO_HELD, tr("fail", "held", "failed")],
    ),
    "declared-kind": ext({"held": {"meaning": "Held."}}, [TO_HELD]),
    "declared-kind-unknown": ext({"held": st("parked")}, [TO_HELD]),
}

EXPECTED = {
    "names-state": [
        (
            "names",
            "'Held'",
            "a state name is a lower-case identifier (letters, digits, _; at most 64 characters)",
        ),
    ],
    "names-trigger": [
        (
            "names",
            "queued --Hold--> held",
            "the trigger 'Hold' is not a lower-case identifier (letters, digits, _; at most 64 "
            "characters)",
        ),
    ],
    "names-reserved": [
        (
            "names",
            "queued --to_held--> held",
            "the trigger 'to_held' is a name the state machine keeps for itself (block_id, "
            "machine, state, trigger, or beginning with may_, is_, to_)",
        ),
    ],
    "meaning-state": [
        (
            "meaning",
            "held",
            "the state has no meaning: say what a block in it is waiting for or doing",
        ),
    ],
    "meaning-transition": [
        ("meaning", "queued --hold--> held", "the transition has no meaning: say when it fires"),
    ],
    "known-states": [
        ("known-states", "held --park--> parked", "no state 'parked' is defined"),
    ],
    "known-timeout": [
        ("known-states", "held", "the wait's timeout target 'gone' is not a defined state"),
    ],
    "default-states-kind": [
        ("default-states", "retrying", "the default state's kind is in_flight, not settling"),
    ],
    "default-states-wait": [
        (
            "default-states",
            "queued",
            "a default state takes no wait and no hooks: the driver gives it its behaviour",
        ),
    ],
    "default-states-missing": [
        ("default-states", "retrying", "the default state is missing (it is in_flight)"),
        (
            "default-triggers",
            "routing",
            "no unguarded 'route_failed' transition: the driver fires 'route_failed' from routing",
        ),
        (
            "default-triggers",
            "pending_reconciliation",
            "no unguarded 'reconciliation_timeout' transition: the driver fires "
            "'reconciliation_timeout' from pending_reconciliation",
        ),
    ],
    "default-triggers": [
        (
            "default-triggers",
            "routing",
            "no unguarded 'route_failed' transition: the driver fires 'route_failed' from routing",
        ),
    ],
    "start-state": [
        (
            "start-state",
            "held --release--> queued",
            "queued is the start: no transition leads back into it",
        ),
    ],
    "terminal-states": [
        (
            "terminal-states",
            "rejected",
            "a lifecycle adds no terminal state: end in success, failed or cancelled",
        ),
        (
            "route-first",
            "queued --reject--> rejected",
            "queued is before route (nothing was sent), so it cannot lead to rejected (terminal):"
            " only routing sends a block",
        ),
    ],
    "terminal-exits": [
        ("terminal-exits", "failed --revive--> retrying", "failed is terminal: it has no way out"),
    ],
    "reachable": [
        ("reachable", "held", "no path leads to the state from queued"),
    ],
    "can-terminate": [
        (
            "can-terminate",
            "held",
            "no path leads from the state to a terminal state (success, failed, cancelled): a "
            "block there would never end",
        ),
    ],
    "no-way-back-routing": [
        (
            "no-way-back",
            "pending_reconciliation --resend--> routing",
            "pending_reconciliation is settling: the venue may hold the block, so it never goes "
            "back to routing (only retrying --reroute--> routing, once the venue confirmed it "
            "does not hold it)",
        ),
    ],
    "no-way-back-before": [
        (
            "no-way-back",
            "retrying --park--> held",
            "retrying is in flight: the venue may hold the block, so it never goes back to the "
            "before-route state held (only retrying --reroute--> routing, once the venue "
            "confirmed it does not hold it)",
        ),
    ],
    "route-first": [
        (
            "route-first",
            "queued --assume--> pending_reconciliation",
            "queued is before route (nothing was sent), so it cannot lead to "
            "pending_reconciliation (settling): only routing sends a block",
        ),
    ],
    "route-first-timeout": [
        (
            "route-first",
            "held --timeout--> retrying",
            "held is before route (nothing was sent), so it cannot lead to retrying (in flight): "
            "only routing sends a block",
        ),
    ],
    "cancel-unsent": [
        (
            "cancel-unsent",
            "retrying --abort--> cancelled",
            "retrying is in flight: a block that may have been sent is never cancelled (fail it "
            "instead)",
        ),
    ],
    "cancel-elsewhere": [
        ("cancel-unsent", "held --cancel--> failed", "a cancel transition leads to cancelled"),
    ],
    "success-reconciled": [
        (
            "success-reconciled",
            "routing --assume_done--> success",
            "only pending_reconciliation leads to success: a block succeeds once its deltas were "
            "handed over and reconciled",
        ),
    ],
    "fail-exit-state": [
        (
            "fail-exit",
            "confirming",
            "no unguarded fail transition to failed (settling: a timeout or a hook that raises "
            "leaves the block in doubt)",
        ),
    ],
    "fail-exit-hook": [
        (
            "fail-exit",
            "held",
            "no unguarded fail transition to failed (it has hooks: one that raises fails the "
            "block)",
        ),
    ],
    "fail-exit-dest": [
        (
            "fail-exit",
            "confirming",
            "no unguarded fail transition to failed (settling: a timeout or a hook that raises "
            "leaves the block in doubt)",
        ),
        ("fail-exit", "confirming --fail--> retrying", "a fail transition leads to failed"),
    ],
    "timeout-in-doubt": [
        (
            "timeout-in-doubt",
            "confirming",
            "the state is settling: its timeout leaves the block in doubt and always goes to "
            "failed; drop timeout_to (failed)",
        ),
    ],
    "wait-ends-nothing": [
        (
            "wait-ends",
            "held",
            "nothing ends the wait: give the state an external transition, a poll transition or a"
            " timeout",
        ),
    ],
    "wait-ends-target": [
        (
            "wait-ends",
            "held",
            "a before-route wait with a timeout names its target (timeout_to, e.g. cancelled)",
        ),
    ],
    "wait-ends-seconds": [
        ("wait-ends", "held", "timeout_to cancelled without timeout_seconds"),
    ],
    "wait-ends-positive": [
        ("wait-ends", "held", "timeout_seconds must be a positive number of seconds, got 0.0"),
    ],
    "moves-on": [
        (
            "moves-on",
            "check",
            "the state does not wait, so it needs an unguarded poll transition for the driver to "
            "move the block on (or give it a wait)",
        ),
    ],
    "poll-loop": [
        (
            "poll-loop",
            "check --go--> recheck",
            "it closes a loop of unguarded polls back to check: a block would go round it on "
            "every update_state and never end (guard one of them, or make one state wait)",
        ),
        (
            "poll-loop",
            "recheck --back--> check",
            "it closes a loop of unguarded polls back to recheck: a block would go round it on "
            "every update_state and never end (guard one of them, or make one state wait)",
        ),
    ],
    "poll-source": [
        ("poll-source", "pending_reconciliation --watch--> failed",
         "pending_reconciliation is a default state: the driver moves a block there itself "
         "and never polls it; poll from a state you add"),
    ],
    "reserved-trigger": [
        (
            "reserved-trigger",
            "held --timeout--> cancelled",
            "the trigger timeout is implied by a wait's timeout_seconds: give the state a wait "
            "instead",
        ),
    ],
    "derived-trigger": [
        (
            "derived-trigger",
            "retrying --found_executed--> confirming",
            "the trigger found_executed is derived, never declared: retrying --found_executed-->"
            " leads wherever routing --executed--> does, with the same guards (redirect "
            "executed and it follows)",
        ),
    ],
    "found-executed-ends": [
        (
            "found-executed-ends",
            "routing --executed--> retrying",
            "executed leads to retrying: a block found executed after a lost reply would go "
            "from retrying to retrying for ever (send executed to pending_reconciliation or a "
            "settling state)",
        ),
    ],
    "settled-stays": [
        (
            "settled-stays",
            "confirming --recheck--> retrying",
            "confirming is settling: the venue executed the block and its deltas are "
            "journaled, so it never goes back to retrying (the venue would be asked again: "
            "the deltas handed off twice, or the settling skipped); fail it instead",
        ),
    ],
    "driver-facts": [
        (
            "driver-facts",
            "retrying --resume_reconciliation--> pending_reconciliation",
            "resume_reconciliation is the driver's, fired on a venue's or reconciliation's "
            "answer: it is neither external nor poll (give the operator's or the poll's move a "
            "trigger of its own)",
        ),
    ],
    "dead-trigger": [
        (
            "dead-trigger",
            "queued --hold--> held",
            "the driver never fires 'hold' from queued (it fires cancel, start): mark it external"
            " or poll",
        ),
    ],
    "trigger-flags": [
        (
            "driver-facts",
            "queued --start--> held",
            "start is the driver's, fired on a venue's or reconciliation's answer: it is "
            "neither external nor poll (give the operator's or the poll's move a trigger of "
            "its own)",
        ),
        ("trigger-flags", "queued --start-->", "its transitions disagree on external / poll"),
    ],
    "one-default": [
        (
            "one-default",
            "queued --start-->",
            "2 unguarded transitions (to routing, held): only the first would fire",
        ),
    ],
    "shadowed": [
        (
            "shadowed",
            "queued --start--> held",
            "the guarded transition comes after the unguarded one of its trigger, so it is never "
            "tried: put it first",
        ),
    ],
    "fallback": [
        (
            "fallback",
            "held --cancel-->",
            "the driver fires this trigger and every transition of it is guarded: when no guard "
            "holds, the block does not move; add an unguarded one, last",
        ),
    ],
    "guard-args-kind": [
        (
            "guard-args",
            "queued --start--> held",
            "unknown guard kind 'notional_over' (known: notional_above, notional_at_most, "
            "venue_in, action_in, clock_in_window, clock_outside_window, call)",
        ),
    ],
    "guard-args-value": [
        (
            "guard-args",
            "queued --start--> held",
            "notional_above: value must be a non-negative decimal number (a string such as "
            "\"100000\"), got 'lots'",
        ),
    ],
    "guard-args-window": [
        (
            "guard-args",
            "queued --start--> held",
            'clock_in_window: start must be a time "HH:MM" (quote it in YAML, which reads 02:00 '
            "as a number), got 120",
        ),
        (
            "guard-args",
            "queued --start--> held",
            "clock_in_window: tz 'Mars/Olympus' is not a known IANA time zone",
        ),
    ],
    "guard-args-missing": [
        ("guard-args", "queued --start--> held", "venue_in: missing argument 'venues'"),
        (
            "guard-args",
            "queued --start--> held",
            "venue_in: unknown argument 'venue' (takes venues)",
        ),
    ],
    "guard-args-list": [
        (
            "guard-args",
            "queued --start--> held",
            "action_in: actions must be a non-empty list of non-empty strings",
        ),
    ],
    "guard-args-empty-window": [
        (
            "guard-args",
            "queued --start--> held",
            "clock_outside_window: start and end are both 02:00: the window is empty",
        ),
    ],
    "guard-args-call": [
        (
            "guard-args",
            "queued --start--> held",
            "call: path must be an import path 'package.module:function', got 'not a path'",
        ),
    ],
    "hook-path": [
        ("hook-path", "held", "the hook 'notify' is not an import path 'package.module:function'"),
    ],
    "declared-kind": [
        (
            "declared-kind",
            "held",
            "the state declares no kind: each state declares one of before_route, in_flight, "
            "settling, terminal",
        ),
    ],
    "declared-kind-unknown": [
        (
            "declared-kind",
            "held",
            "the state declares kind 'parked': each state declares one of before_route, "
            "in_flight, settling, terminal",
        ),
    ],
}


def _doc(case: str) -> dict[str, Any]:
    doc = CASES[case]
    return _full(doc) if isinstance(doc, str) else doc


def _refusal(case: str) -> list[tuple[str, str, str]]:
    with pytest.raises(LifecycleError) as info:
        Lifecycle.from_dict(_doc(case))
    assert info.value.error_code == "EXEC-019"
    return [(v.rule, v.where, v.message) for v in info.value.violations]


@pytest.mark.parametrize("case", list(CASES))
def test_each_broken_rule_is_refused_with_its_message(case: str) -> None:
    """The lifecycle is refused with exactly these violations: rule, where, message."""
    assert _refusal(case) == EXPECTED[case]


def test_every_rule_has_a_case() -> None:
    """Every rule of RULES is broken by at least one case above (and named by it); a file
    cannot define a state twice, so unique-states has its case built in Python, below."""
    named = {rule for found in EXPECTED.values() for rule, _, _ in found} | {"unique-states"}
    assert set(RULES) <= named


def test_the_error_message_lists_every_violation() -> None:
    """str(LifecycleError) lists each violation as [rule] where: message."""
    with pytest.raises(LifecycleError) as info:
        Lifecycle.from_dict(_doc("fail-exit-dest"))
    assert str(info.value) == (
        "[EXEC-019] lifecycle 'desk' refused, 2 broken rules:\n"
        "  - [fail-exit] confirming: no unguarded fail transition to failed (settling: a "
        "timeout or a hook that raises leaves the block in doubt)\n"
        "  - [fail-exit] confirming --fail--> retrying: a fail transition leads to failed"
    )


def test_hooks_and_call_guards_are_resolved_when_asked() -> None:
    """resolve=True imports every hook and call guard; one that does not import is refused,
    rule hook-path, naming the state or transition; without resolve it is not imported."""
    doc = ext(
        {
            "held": st(
                "before_route",
                wait={"timeout_seconds": 60, "timeout_to": "cancelled"},
                on_enter=["no_such_desk.hooks:notify"],
            )
        },
        [
            TO_HELD,
            tr("fail", "held", "failed"),
            tr("start", "queued", "held", guards=[{"call": {"path": "json:nothing"}}]),
        ],
    )
    lc = Lifecycle.from_dict(doc)
    assert lc.violations() == []
    assert lc.violations(resolve=True) == [
        RuleViolation(
            "hook-path",
            "queued --start--> held",
            "guard json:nothing does not resolve: module 'json' has no 'nothing'",
        ),
        RuleViolation(
            "hook-path",
            "held",
            "hook no_such_desk.hooks:notify does not resolve: cannot import "
            "'no_such_desk.hooks': ModuleNotFoundError: No module named 'no_such_desk'",
        ),
    ]


def test_a_call_path_that_is_not_callable_is_refused() -> None:
    """A path naming something that is not callable does not resolve."""
    doc = ext(
        HELD,
        [
            TO_HELD,
            tr("go", "held", "routing", poll=True, guards=[{"call": {"path": "json:__name__"}}]),
        ],
    )
    assert Lifecycle.from_dict(doc).violations(resolve=True) == [
        RuleViolation(
            "hook-path",
            "held --go--> routing",
            "guard json:__name__ does not resolve: 'json:__name__' is not callable",
        )
    ]


def test_a_python_built_lifecycle_with_bad_kinds_and_duplicates() -> None:
    """Built in Python: a state whose kind is not a StateKind (declared-kind), and a state
    defined twice (unique-states)."""
    d = Lifecycle.default()
    held = StateDef("held", StateKind.BEFORE_ROUTE, "Held.", Wait(60, "cancelled"))
    lc = Lifecycle(
        "desk",
        (*d.states, held, held, StateDef("odd", "parked", "Odd.")),  # type: ignore[arg-type]
        (*d.transitions, TransitionDef("hold", "queued", "held", "Hold.", external=True)),
    )
    assert [(v.rule, v.where) for v in lc.violations()] == [
        ("unique-states", "held"),
        ("declared-kind", "odd"),
    ]
    assert lc.violations()[1].message == (
        "the state declares kind 'parked': each state declares one of before_route, in_flight, "
        "settling, terminal"
    )


def test_the_docs_list_every_rule_with_its_meaning() -> None:
    """docs/lifecycles.md has a row per rule: its id and what it asks, as RULES says."""
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "lifecycles.md").read_text()
    for rule, text in RULES.items():
        assert f"| `{rule}` | {text} |" in page, rule
