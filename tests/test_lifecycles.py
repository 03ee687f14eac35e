"""Tests for fsm_exec.core.lifecycles: the lifecycle as data, its file format and its hash."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from fsm_exec import ComponentError, Lifecycle, LifecycleError, StateKind
from fsm_exec.core.lifecycle import STATE_MEANINGS, TABLE_HASH, TRANSITIONS
from fsm_exec.core.lifecycles import (
    Guard,
    GuardContext,
    GuardInputError,
    RuleViolation,
    StateDef,
    Wait,
)

FOUR_EYES: dict[str, Any] = {
    "version": 1,
    "name": "four-eyes",
    "extends": "default",
    "states": {
        "awaiting_approval": {
            "kind": "before_route",
            "meaning": "Above the notional limit, the block waits for a second person.",
            "wait": {"timeout_seconds": 3600, "timeout_to": "cancelled"},
            "on_enter": ["examples.lifecycle_hooks:request_approval"],
        },
    },
    "transitions": [
        {
            "trigger": "start",
            "source": "queued",
            "dest": "awaiting_approval",
            "guards": [{"notional_above": {"value": "100000"}}],
            "meaning": "Above the limit: ask for approval.",
        },
        {
            "trigger": "approve",
            "source": "awaiting_approval",
            "dest": "routing",
            "external": True,
            "meaning": "A second person approved.",
        },
        {
            "trigger": "reject",
            "source": "awaiting_approval",
            "dest": "cancelled",
            "external": True,
            "meaning": "A second person rejected.",
        },
        {
            "trigger": "fail",
            "source": "awaiting_approval",
            "dest": "failed",
            "meaning": "The approval hook raised.",
        },
        {
            "trigger": "cancel",
            "source": "awaiting_approval",
            "dest": "cancelled",
            "meaning": "An operator cancelled the waiting block.",
        },
    ],
}


def _ctx(block: dict[str, Any], now: str = "2026-01-05T12:00:00+00:00") -> GuardContext:
    t = dt.datetime.fromisoformat(now)
    return GuardContext(block=block, now=t, entered_at=t, state="queued")


# --- the default ----------------------------------------------------------------------------


def test_the_default_is_the_code_table_with_its_hash() -> None:
    """Lifecycle.default() has the code table's states, meanings and transitions in order,
    and its hash is TABLE_HASH (journals and metrics carry it)."""
    d = Lifecycle.default()
    assert [s.name for s in d.states] == [str(s) for s in STATE_MEANINGS]
    assert [s.meaning for s in d.states] == list(STATE_MEANINGS.values())
    assert [(t.source, t.trigger, t.dest, t.meaning) for t in d.transitions] == [
        (str(e.source), str(e.trigger), str(e.dest), e.meaning) for e in TRANSITIONS
        if e.trigger != "found_executed"
    ]
    assert sorted((t.source, t.trigger, t.dest, t.meaning)
                  for t in (*d.transitions, *d.derived_transitions())) == sorted(
        (str(e.source), str(e.trigger), str(e.dest), e.meaning) for e in TRANSITIONS)
    assert d.hash == TABLE_HASH
    assert d.violations() == []
    assert d.validate() is d


def test_the_default_state_kinds() -> None:
    """queued is before route, routing and retrying in flight, pending_reconciliation
    settling, and the three ends terminal."""
    d = Lifecycle.default()
    assert {s.name: s.kind for s in d.states} == {
        "queued": StateKind.BEFORE_ROUTE,
        "routing": StateKind.IN_FLIGHT,
        "retrying": StateKind.IN_FLIGHT,
        "pending_reconciliation": StateKind.SETTLING,
        "success": StateKind.TERMINAL,
        "failed": StateKind.TERMINAL,
        "cancelled": StateKind.TERMINAL,
    }
    assert d.initial == "queued"
    assert d.terminal == {"success", "failed", "cancelled"}


def test_state_looks_up_by_name_and_names_the_known_ones() -> None:
    """state(name) returns the definition; an unknown name raises KeyError listing them."""
    d = Lifecycle.default()
    assert d.state("routing").kind is StateKind.IN_FLIGHT
    with pytest.raises(KeyError, match=r"no state .held.*queued, routing"):
        d.state("held")


# --- the file format ------------------------------------------------------------------------


def test_extends_default_adds_states_and_puts_guarded_transitions_first() -> None:
    """A guarded transition goes before the default of its (source, trigger); the other
    new ones are appended; the new state keeps its wait and hooks."""
    lc = Lifecycle.from_dict(FOUR_EYES)
    assert lc.name == "four-eyes"
    starts = [t for t in lc.transitions if (t.source, t.trigger) == ("queued", "start")]
    assert [t.dest for t in starts] == ["awaiting_approval", "routing"]
    assert starts[0].guards == (Guard("notional_above", {"value": "100000"}),)
    s = lc.state("awaiting_approval")
    assert s.wait == Wait(3600.0, "cancelled")
    assert s.on_enter == ("examples.lifecycle_hooks:request_approval",)
    assert len(lc.transitions) == len(TRANSITIONS) - 1 + 5  # found_executed is derived
    assert lc.hash != TABLE_HASH


def test_an_unguarded_transition_replaces_the_default_in_place() -> None:
    """executed: routing -> awaiting_confirmations replaces the default executed edge."""
    doc = {
        "version": 1,
        "name": "chain",
        "extends": "default",
        "states": {
            "awaiting_confirmations": {
                "kind": "settling",
                "meaning": "Waiting for confirmations.",
                "wait": {},
            }
        },
        "transitions": [
            {
                "trigger": "executed",
                "source": "routing",
                "dest": "awaiting_confirmations",
                "meaning": "The venue returned a transaction hash.",
            },
            {
                "trigger": "confirmed",
                "source": "awaiting_confirmations",
                "dest": "pending_reconciliation",
                "poll": True,
                "guards": [{"call": {"path": "examples.lifecycle_hooks:confirmed"}}],
                "meaning": "Enough confirmations.",
            },
            {
                "trigger": "fail",
                "source": "awaiting_confirmations",
                "dest": "failed",
                "meaning": "Dropped or re-orged: in doubt.",
            },
        ],
    }
    lc = Lifecycle.from_dict(doc)
    default_at = [
        i
        for i, t in enumerate(Lifecycle.default().transitions)
        if (t.source, t.trigger) == ("routing", "executed")
    ]
    assert lc.transitions[default_at[0]].dest == "awaiting_confirmations"
    assert not any(
        t.key == ("routing", "executed", "pending_reconciliation") for t in lc.transitions
    )


def test_to_dict_round_trips_and_is_json() -> None:
    """to_dict is JSON-able, whole (no extends), and from_dict reads it back equal, with the
    same hash."""
    for lc in (Lifecycle.default(), Lifecycle.from_dict(FOUR_EYES)):
        doc = lc.to_dict()
        assert "extends" not in doc
        again = Lifecycle.from_dict(json.loads(json.dumps(doc)))
        assert again == lc
        assert again.hash == lc.hash


def test_the_hash_ignores_meanings_and_names_but_not_structure() -> None:
    """Rewording a meaning or renaming keeps the hash; a changed guard or wait does not."""
    lc = Lifecycle.from_dict(FOUR_EYES)
    doc = lc.to_dict()
    doc["name"] = "other"
    doc["states"]["awaiting_approval"]["meaning"] = "Reworded."
    assert Lifecycle.from_dict(doc).hash == lc.hash
    doc["transitions"][0]["guards"] = [{"notional_above": {"value": "5"}}]
    assert Lifecycle.from_dict(doc).hash != lc.hash
    doc = lc.to_dict()
    doc["states"]["awaiting_approval"]["wait"]["timeout_seconds"] = 60
    assert Lifecycle.from_dict(doc).hash != lc.hash


def test_load_reads_json_and_yaml(tmp_path: Path) -> None:
    """The same lifecycle from a .json and a .yaml file (hooks not imported: resolve=False)."""
    yaml = pytest.importorskip("yaml")
    j = tmp_path / "four_eyes.json"
    j.write_text(json.dumps(FOUR_EYES))
    y = tmp_path / "four_eyes.yaml"
    y.write_text(yaml.safe_dump(FOUR_EYES))
    assert (
        Lifecycle.load(j, resolve=False)
        == Lifecycle.load(y, resolve=False)
        == Lifecycle.from_dict(FOUR_EYES)
    )


def test_the_timeout_is_an_implied_transition() -> None:
    """A before-route wait's timeout goes to its target; an in-flight or settling one to
    failed (in doubt); a state without a timeout implies none."""
    lc = Lifecycle.from_dict(FOUR_EYES)
    t = lc.timeout_transition("awaiting_approval")
    assert t is not None
    assert (t.source, t.trigger, t.dest) == ("awaiting_approval", "timeout", "cancelled")
    assert lc.timeout_transition("queued") is None
    assert t in lc.all_transitions()


# --- refusals -------------------------------------------------------------------------------


def test_a_lifecycle_error_is_a_component_error_naming_rule_and_place() -> None:
    """LifecycleError carries EXEC-019, the violations, the file, and says each in words."""
    err = LifecycleError(
        [RuleViolation("reachable", "held", "no path leads to it")], "desk.yaml", "desk"
    )
    assert isinstance(err, ComponentError)
    assert isinstance(err, ValueError)
    assert err.error_code == "EXEC-019"
    assert str(err) == (
        "[EXEC-019] desk.yaml: lifecycle 'desk' refused, 1 broken rule:\n"
        "  - [reachable] held: no path leads to it"
    )


def test_a_python_built_lifecycle_is_checked_by_validate() -> None:
    """A lifecycle built in Python is checked by validate(), which raises LifecycleError."""
    d = Lifecycle.default()
    lc = Lifecycle(
        "orphan",
        (*d.states, StateDef("held", StateKind.BEFORE_ROUTE, "Held.", Wait(60, "cancelled"))),
        d.transitions,
    )
    with pytest.raises(LifecycleError) as info:
        lc.validate()
    assert [(v.rule, v.where) for v in info.value.violations] == [("reachable", "held")]


# --- guards ---------------------------------------------------------------------------------

BLOCK = {
    "block_id": "b-1",
    "action": "hedge",
    "priority": 1,
    "instructions": [
        {"venue": "spot", "token": "ETH", "amount": -2, "price": "3000"},
        {"venue": "perp", "token": "ETH", "amount": 1.5, "price": 3000},
    ],
}


@pytest.mark.parametrize(
    ("guard", "holds"),
    [
        (Guard("notional_above", {"value": "10000"}), True),
        (Guard("notional_above", {"value": "10500"}), False),
        (Guard("notional_at_most", {"value": "10500"}), True),
        (Guard("venue_in", {"venues": ["perp"]}), True),
        (Guard("venue_in", {"venues": ["dex"]}), False),
        (Guard("action_in", {"actions": ["hedge", "rebalance"]}), True),
        (Guard("action_in", {"actions": ["rebalance"]}), False),
        (Guard("clock_in_window", {"start": "11:00", "end": "13:00"}), True),
        (Guard("clock_outside_window", {"start": "11:00", "end": "13:00"}), False),
        (Guard("clock_in_window", {"start": "23:00", "end": "12:01"}), True),  # over midnight
        (Guard("clock_in_window", {"start": "12:00", "end": "13:00", "tz": "Europe/Paris"}), False),
    ],
)
def test_the_pure_guards(guard: Guard, holds: bool) -> None:
    """Notional is sum |amount| x price (10500 here); venue_in looks at every instruction;
    a clock window is read in its time zone, [start, end), over midnight when end < start."""
    assert guard.holds(_ctx(BLOCK)) is holds


def test_a_notional_guard_refuses_a_block_without_prices() -> None:
    """A notional guard over an instruction without a price names the block and instruction."""
    block = {**BLOCK, "instructions": [{"venue": "spot", "amount": 1}]}
    with pytest.raises(
        GuardInputError,
        match=r"block 'b-1': instruction 0 has no finite "
        r"number 'price'",
    ):
        Guard("notional_above", {"value": "1"}).holds(_ctx(block))


# --- reading files --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("desk.toml", b"", "a lifecycle file is .yaml, .yml or .json"),
        ("desk.json", b"\xff\xfe{", "not UTF-8 text"),
        (
            "desk.json",
            b'{"version": 1,\n "name": }',
            "not JSON: Expecting value (line 2, column 10)",
        ),
        (
            "desk.yaml",
            b"version: 1\nname: [desk\n",
            "not YAML: expected ',' or ']', but got '<stream end>' (line 3, column 1)",
        ),
        (
            "desk.yml",
            b"- 1\n- 2\n",
            "the file must hold a mapping (version, name, states, transitions), got a list",
        ),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_clearly(
    tmp_path: Path, name: str, content: bytes, why: str
) -> None:
    """Bad suffix, bytes, JSON or YAML: one violation, rule 'file', naming the file and why
    (with the line and column), never a parser's traceback."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(LifecycleError) as info:
        Lifecycle.load(path)
    assert info.value.violations == (RuleViolation("file", str(path), why),)
    assert info.value.source == str(path)
    assert str(info.value).startswith(f"[EXEC-019] {path}: lifecycle refused, 1 broken rule")


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    """A file that does not exist: rule 'file', the OS's reason."""
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(LifecycleError) as info:
        Lifecycle.load(path)
    assert info.value.violations == (
        RuleViolation("file", str(path), "cannot read: No such file or directory"),
    )


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {
                "version": 1,
                "name": "x",
                "states": {"held": {"kind": 3, "meaning": True, "wait": {"timeout_seconds": "1"}}},
            },
            [
                ("$.states['held'].kind", "expected a string, got an integer"),
                ("$.states['held'].meaning", "expected a string, got a boolean"),
                ("$.states['held'].wait.timeout_seconds", "expected a number, got a string"),
            ],
        ),
        ({"version": True, "name": "x"}, [("$.version", "expected an integer, got a boolean")]),
        (
            {"name": "x", "colour": "red"},
            [("$.version", "required field missing"), ("$", "extra fields found (colour)")],
        ),
        (
            {"version": 1, "name": "x", "transitions": [{"trigger": "go", "source": "queued"}]},
            [("$.transitions[0].dest", "required field missing")],
        ),
        (
            {
                "version": 1,
                "name": "x",
                "transitions": [
                    {
                        "trigger": "go",
                        "source": "queued",
                        "dest": "routing",
                        "meaning": "m",
                        "guards": [
                            {"venue_in": {"venues": ["a"]}, "action_in": {"actions": ["b"]}}
                        ],
                    }
                ],
            },
            [
                (
                    "$.transitions[0].guards[0]",
                    "a guard is a mapping with one key, its kind (e.g. "
                    '{notional_above: {value: "100000"}}), got 2 keys',
                )
            ],
        ),
        (
            {
                "version": 1,
                "name": "x",
                "transitions": [
                    {"trigger": "go", "source": "queued", "dest": "routing", "poll": "yes"}
                ],
            },
            [("$.transitions[0].poll", "expected true or false, got a string")],
        ),
        (
            {
                "version": 1,
                "name": "x",
                "states": {
                    "h": {"kind": "before_route", "wait": {"timeout_seconds": float("inf")}}
                },
            },
            [("$.states['h'].wait.timeout_seconds", "expected a finite number, got inf")],
        ),
        (
            {"version": 2, "name": "x", "extends": "fancy"},
            [
                ("$.version", "version 2 is not known (this fsm_exec reads version 1)"),
                ("$.extends", "a lifecycle can only extend 'default', not 'fancy'"),
            ],
        ),
        (["not", "a", "mapping"], [("$", "expected a mapping, got a list")]),
    ],
)
def test_a_document_of_the_wrong_shape_is_refused_by_path(doc: Any, expected: list[Any]) -> None:
    """Wrong types, unknown or missing fields: rule 'schema', each at its path in the file;
    cattrs never converts a wrong type silently (3 is not the string '3')."""
    with pytest.raises(LifecycleError) as info:
        Lifecycle.from_dict(doc)
    assert [(v.rule, v.where, v.message) for v in info.value.violations] == [
        ("schema", where, message) for where, message in expected
    ]


# --- the JSON Schema ------------------------------------------------------------------------


def test_the_schema_ships_in_the_package() -> None:
    """Lifecycle.json_schema() is the package's data/lifecycle.schema.json, a 2020-12 schema."""
    schema = Lifecycle.json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    shipped = Path(__file__).parent.parent / "fsm_exec" / "data" / "lifecycle.schema.json"
    assert json.loads(shipped.read_text()) == schema


def test_the_schema_accepts_what_load_accepts() -> None:
    """The default and four-eyes, whole and extending, are valid under the schema."""
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(Lifecycle.json_schema())
    for doc in (FOUR_EYES, Lifecycle.default().to_dict(), Lifecycle.from_dict(FOUR_EYES).to_dict()):
        assert list(validator.iter_errors(doc)) == []


@pytest.mark.parametrize(
    "broken",
    [
        {"states": {"held": {"kind": 3, "meaning": "m"}}},
        {"colour": "red"},
        {"version": 2},
        {"extends": "fancy"},
        {"states": {"held": {"kind": "parked", "meaning": "m"}}},
        {
            "transitions": [
                {
                    "trigger": "go",
                    "source": "queued",
                    "dest": "routing",
                    "meaning": "m",
                    "guards": [{"venue_in": {"venues": ["a"]}, "action_in": {"actions": ["b"]}}],
                }
            ]
        },
        {
            "transitions": [
                {
                    "trigger": "go",
                    "source": "queued",
                    "dest": "routing",
                    "meaning": "m",
                    "guards": [{"notional_above": {"value": "lots"}}],
                }
            ]
        },
        {
            "transitions": [
                {
                    "trigger": "go",
                    "source": "queued",
                    "dest": "routing",
                    "meaning": "m",
                    "guards": [{"clock_in_window": {"start": 120, "end": "03:00"}}],
                }
            ]
        },
    ],
)
def test_the_schema_refuses_what_load_refuses(broken: dict[str, Any]) -> None:
    """Shapes load refuses (rule schema, declared-kind or guard-args) the schema refuses too."""
    jsonschema = pytest.importorskip("jsonschema")
    doc = {**FOUR_EYES, **broken}
    with pytest.raises(LifecycleError):
        Lifecycle.from_dict(doc)
    assert list(jsonschema.Draft202012Validator(Lifecycle.json_schema()).iter_errors(doc))


def test_a_call_guard_calls_its_function_with_the_context() -> None:
    """A call guard imports its path and returns what the function says, which must be a
    bool (operator:truth is True for any context; builtins:id returns an int: refused)."""
    ctx = _ctx(BLOCK)
    assert Guard("call", {"path": "operator:truth"}).holds(ctx) is True
    with pytest.raises(GuardInputError, match="guard builtins:id returned int, not a bool"):
        Guard("call", {"path": "builtins:id"}).holds(ctx)


def test_resolve_refuses_what_is_not_an_import_path() -> None:
    """resolve() names a path that is not 'package.module:function'."""
    from fsm_exec.core.lifecycle_guards import resolve

    with pytest.raises(LookupError, match="'no path' is not an import path"):
        resolve("no path")


def test_guard_arguments_must_be_a_mapping_and_numbers_finite() -> None:
    """guard_problems refuses arguments that are not a mapping; a notional over an infinite
    price is refused like a missing one."""
    from fsm_exec.core.lifecycle_guards import guard_problems

    assert guard_problems("venue_in", ["spot"]) == [  # type: ignore[arg-type]
        "venue_in: the arguments must be a mapping"]
    block = {**BLOCK, "instructions": [{"amount": 1, "price": float("inf")}]}
    with pytest.raises(GuardInputError, match="has no finite number 'price'"):
        Guard("notional_above", {"value": "1"}).holds(_ctx(block))


def test_transitions_from_lists_a_state_s_exits_in_order() -> None:
    """transitions_from(state) is the state's transitions in table order (no timeouts)."""
    lc = Lifecycle.from_dict(FOUR_EYES)
    assert [t.dest for t in lc.transitions_from("queued")] == [
        "awaiting_approval", "routing", "cancelled"]
    assert [t.trigger for t in lc.transitions_from("awaiting_approval")] == [
        "approve", "reject", "fail", "cancel"]


def test_a_lifecycle_without_queued_is_refused_without_reachability_noise() -> None:
    """Without queued there is no start: default-states says so, and reachability is not
    computed from a state that does not exist."""
    d = Lifecycle.default()
    lc = Lifecycle("headless", tuple(s for s in d.states if s.name != "queued"),
                   tuple(t for t in d.transitions if t.source != "queued"))
    assert lc.violations() == [RuleViolation(
        "default-states", "queued", "the default state is missing (it is before_route)")]


def test_a_state_that_moves_on_at_once_and_its_hash() -> None:
    """A state without a wait is valid with an unguarded poll transition; its hooks and the
    poll flag are part of the hash."""
    doc: dict[str, Any] = {"version": 1, "name": "gate", "extends": "default",
           "states": {"check": {"kind": "before_route", "meaning": "Checked, then routed.",
                                "on_enter": ["desk.hooks:log"]}},
           "transitions": [
               {"trigger": "start", "source": "queued", "dest": "check",
                "guards": [{"action_in": {"actions": ["hedge"]}}], "meaning": "Hedges."},
               {"trigger": "go", "source": "check", "dest": "routing", "poll": True,
                "meaning": "At once."},
               {"trigger": "fail", "source": "check", "dest": "failed",
                "meaning": "The hook raised."}]}
    lc = Lifecycle.from_dict(doc)
    assert lc.violations() == []
    del doc["states"]["check"]["on_enter"]
    assert Lifecycle.from_dict(doc).hash != lc.hash
    doc["transitions"][1]["poll"] = False
    doc["transitions"][1]["external"] = True
    assert Lifecycle.from_dict({**doc, "states": {"check": {
        "kind": "before_route", "meaning": "Waits.", "wait": {}}}}).hash != lc.hash
