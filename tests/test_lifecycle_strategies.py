"""The kit's random lifecycles: every valid one is accepted, every broken one is refused for
the rule it breaks (issue 22: every lifecycle the checker refuses breaks a named rule)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from fsm_exec import Lifecycle, LifecycleError
from fsm_exec.core.lifecycle_rules import RULES
from fsm_exec.testing import BrokenLifecycle, broken_lifecycles, lifecycles
from fsm_exec.testing.lifecycles import BREAKERS, lifecycle_documents


@given(lifecycles())
def test_every_drawn_lifecycle_keeps_every_rule(lc: Lifecycle) -> None:
    """A lifecycle built by construction breaks no rule, and round-trips through its JSON."""
    assert lc.violations() == []
    again = Lifecycle.from_dict(json.loads(json.dumps(lc.to_dict())))
    assert again == lc
    assert again.hash == lc.hash


@given(lifecycle_documents(max_states=5, guard_kinds=(
    "venue_in", "action_in", "clock_in_window", "clock_outside_window", "notional_above",
    "notional_at_most"), call_paths=("desk.guards:ready",), hook_paths=("desk.hooks:notify",)))
def test_every_drawn_document_is_valid_under_the_schema(doc: dict[str, object]) -> None:
    """The documents (with every guard kind, call guards and hooks) are the schema's shape,
    whole and extending the default."""
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(Lifecycle.json_schema())
    assert list(validator.iter_errors(doc)) == []
    lc = Lifecycle.from_dict(doc)
    assert list(validator.iter_errors(lc.to_dict())) == []


@given(broken_lifecycles())
def test_every_broken_lifecycle_is_refused_for_its_rule(broken: BrokenLifecycle) -> None:
    """A valid lifecycle with one rule broken is refused, and the refusal names that rule."""
    with pytest.raises(LifecycleError) as info:
        Lifecycle.from_dict(broken.document)
    assert broken.rule in {v.rule for v in info.value.violations}, broken.how
    assert {v.rule for v in info.value.violations} <= set(RULES)  # each refusal names a rule


@settings(max_examples=8)
@given(st.data())
def test_each_rule_is_broken_and_caught(data: st.DataObject) -> None:
    """Rule by rule (each drawn several times), the refusal names the broken rule."""
    for rule in sorted(BREAKERS):
        broken = data.draw(broken_lifecycles(rules=[rule]), label=rule)
        with pytest.raises(LifecycleError) as info:
            Lifecycle.from_dict(broken.document)
        assert rule in {v.rule for v in info.value.violations}, broken.how


@pytest.mark.parametrize(("what", "found"), [
    ("a settling state whose wait times out", lambda lc: any(
        s.kind == "settling" and s.wait and s.wait.timeout_seconds for s in lc.states)),
    ("an in-flight state that moves on at once", lambda lc: any(
        s.kind == "in_flight" and s.wait is None and s.name.startswith("sent_")
        for s in lc.states)),
    ("a before-route state that moves on at once", lambda lc: any(
        s.kind == "before_route" and s.wait is None and s.name != "queued" for s in lc.states)),
    ("a before-route timeout to routing", lambda lc: any(
        s.wait and s.wait.timeout_to == "routing" for s in lc.states)),
    ("executed replaced", lambda lc: not any(
        t.key == ("routing", "executed", "pending_reconciliation") for t in lc.transitions)),
    ("a guarded start", lambda lc: any(t.trigger == "start" and t.guards
                                       for t in lc.transitions)),
    ("a polled guard", lambda lc: any(t.poll and t.guards for t in lc.transitions)),
    ("an external move between holds", lambda lc: any(
        t.external and t.source.startswith("held_") and t.dest.startswith("held_")
        for t in lc.transitions)),
])
def test_the_strategy_draws_every_feature(what: str, found: Any) -> None:
    """The valid lifecycles reach every feature the rules are about (not only the easy ones)."""
    quick = settings(max_examples=2000, phases=[Phase.generate], database=None)
    assert found(find(lifecycles(), found, settings=quick)), what


def test_the_breakers_cover_every_rule_a_file_can_break() -> None:
    """Every rule but unique-states (a file's states are a mapping) has a breaker."""
    assert set(BREAKERS) == set(RULES) - {"unique-states"}
