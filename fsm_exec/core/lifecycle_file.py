"""The lifecycle file format: reading a YAML or JSON file, its shape (structured by cattrs into
plain attrs classes, every problem named by its path in the file), and writing it back.

The shape is the one ``fsm_exec/data/lifecycle.schema.json`` describes (for editors; the tests
check the two agree)::

    version: 1
    name: four-eyes
    extends: default          # optional: add to the default lifecycle
    states:
      awaiting_approval:
        kind: before_route     # before_route | in_flight | settling | terminal
        meaning: ...
        wait: {timeout_seconds: 3600, timeout_to: cancelled}
        on_enter: [examples.lifecycle_hooks:request_approval]
    transitions:
      - {trigger: start, source: queued, dest: awaiting_approval, meaning: ...,
         guards: [{notional_above: {value: "100000"}}]}
      - {trigger: approve, source: awaiting_approval, dest: routing, external: true, ...}

With ``extends: default`` the states are added to the default ones, and each transition is
merged into the default table: one with the same ``(source, trigger)`` as a default one and
no guards replaces it in place; one with guards goes before the default (tried first);
any other is appended.
"""

from __future__ import annotations

import json
import math
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs
from cattrs.v import format_exception

from fsm_exec.core.lifecycle_defs import (
    FORMAT_VERSION,
    Guard,
    LifecycleError,
    RuleViolation,
    StateDef,
    StateKind,
    TransitionDef,
    Wait,
)

# -------------------------------------------------------------------- the shape


@attrs.define
class _WaitDoc:
    timeout_seconds: float | None = None
    timeout_to: str | None = None


@attrs.define
class _StateDoc:
    kind: str | None = None
    meaning: str = ""
    wait: _WaitDoc | None = None
    on_enter: list[str] = attrs.Factory(list)


@attrs.define
class _TransitionDoc:
    trigger: str
    source: str
    dest: str
    meaning: str = ""
    guards: list[dict[str, dict[str, Any]]] = attrs.Factory(list)
    external: bool = False
    poll: bool = False


@attrs.define
class _Document:
    version: int
    name: str
    extends: str | None = None
    states: dict[str, _StateDoc] = attrs.Factory(dict)
    transitions: list[_TransitionDoc] = attrs.Factory(list)


class _WrongType(TypeError):
    """A value of the wrong JSON type (cattrs would otherwise convert it)."""


def _strict(kinds: tuple[type, ...], name: str, *, number: bool = False) -> Any:
    def structure(value: Any, _: Any) -> Any:
        if isinstance(value, bool) and bool not in kinds:
            raise _WrongType(f"expected {name}, got a boolean")
        if not isinstance(value, kinds):
            raise _WrongType(f"expected {name}, got {_json_type(value)}")
        if not number:
            return value
        got = float(typing.cast(float, value))
        if not math.isfinite(got):
            raise _WrongType(f"expected a finite number, got {value!r}")
        return got
    return structure


def _json_type(value: object) -> str:
    return {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
            list: "a list", dict: "a mapping", type(None): "null"}.get(type(value),
                                                                     type(value).__name__)


_CONVERTER = cattrs.Converter(forbid_extra_keys=True)
_CONVERTER.register_structure_hook(str, _strict((str,), "a string"))
_CONVERTER.register_structure_hook(bool, _strict((bool,), "true or false"))
_CONVERTER.register_structure_hook(int, _strict((int,), "an integer"))
_CONVERTER.register_structure_hook(float, _strict((int, float), "a number", number=True))


def _format(exc: BaseException, type_: type | None) -> str:
    if isinstance(exc, _WrongType):
        return str(exc)
    return format_exception(exc, type_)


def _schema_error(problems: list[str], source: str | None) -> LifecycleError:
    out = []
    for p in problems:
        message, _, where = p.rpartition(" @ ")
        out.append(RuleViolation("schema", where or "$", message or p))
    return LifecycleError(out, source)


# -------------------------------------------------------------------- reading

#: The JSON Schema of the file format, shipped in the package (for editors, and for tests
#: that check it agrees with what :func:`from_document` accepts).
SCHEMA_RESOURCE = "data/lifecycle.schema.json"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the lifecycle file format (``fsm_exec/data/lifecycle.schema.json``)."""
    from importlib import resources

    text = resources.files("fsm_exec").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema



class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKeyError(key)
        out[key] = value
    return out


def _unique_key_loader(yaml: Any) -> Any:
    """PyYAML's SafeLoader, refusing a mapping that repeats a key (YAML keeps the last one
    silently: a state defined twice would replace the first unseen)."""

    class UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, str) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} appears twice in one mapping",
                        key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def read_document(path: Path) -> Mapping[str, Any]:
    """The parsed content of a ``.yaml``/``.yml``/``.json`` file; :class:`LifecycleError`
    (rule ``file``) says why it cannot be read, without a traceback's noise."""
    where = str(path)

    def refuse(why: str) -> LifecycleError:
        return LifecycleError([RuleViolation("file", where, why)], where)

    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise refuse("a lifecycle file is .yaml, .yml or .json")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise refuse(f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise refuse("not UTF-8 text") from None
    if suffix == ".json":
        try:
            data = json.loads(text, object_pairs_hook=_unique_pairs)
        except json.JSONDecodeError as exc:
            raise refuse(f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") \
                from None
        except _DuplicateKeyError as exc:
            raise refuse(f"not a lifecycle: the key {exc.key!r} appears twice in one mapping "
                         "(a second state or field of that name would silently replace the "
                         "first)") from None
    else:
        try:
            import yaml
        except ImportError:  # pragma: no cover - the test extra has PyYAML
            raise refuse("reading YAML needs PyYAML: pip install 'fsm-exec[lifecycles]' "
                         "(or write the lifecycle as JSON)") from None
        try:
            data = yaml.load(text, Loader=_unique_key_loader(yaml))  # a SafeLoader
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise refuse(f"not YAML: {problem}{at}") from None
    if not isinstance(data, Mapping):
        raise refuse(f"the file must hold a mapping (version, name, states, transitions), "
                     f"got {_json_type(data)}")
    return data


def _guard(raw: Mapping[str, Any], where: str) -> Guard | RuleViolation:
    if len(raw) != 1:
        return RuleViolation("schema", where, "a guard is a mapping with one key, its kind "
                             f"(e.g. {{notional_above: {{value: \"100000\"}}}}), got "
                             f"{len(raw)} keys")
    ((kind, args),) = raw.items()
    return Guard(kind, args)


@attrs.frozen
class Parts:
    """What a document describes: a name, its own states and transitions, and whether it
    extends the default (:meth:`merge` puts them on a base)."""

    name: str
    extends: str | None
    states: tuple[StateDef, ...]
    transitions: tuple[TransitionDef, ...]

    def merge(self, base_states: tuple[StateDef, ...], base_transitions: tuple[
            TransitionDef, ...]) -> tuple[tuple[StateDef, ...], tuple[TransitionDef, ...]]:
        """The base's states with these added (one with a base state's name replaces it),
        and the base's transitions with these merged in (see the module's docstring)."""
        merged_states = list(base_states)
        for s in self.states:
            at = next((i for i, b in enumerate(merged_states) if b.name == s.name), None)
            if at is None:
                merged_states.append(s)
            else:
                merged_states[at] = s
        table = list(base_transitions)
        for t in self.transitions:
            same = [i for i, b in enumerate(table)
                    if (b.source, b.trigger) == (t.source, t.trigger)]
            default = next((i for i in same if not table[i].guards), None)
            if default is None:
                table.append(t)
            elif t.guards:
                table.insert(default, t)
            else:
                table[default] = t
        return tuple(merged_states), tuple(table)


def from_document(data: Mapping[str, Any], source: str | None = None) -> Parts:
    """What a document describes (its rules not checked yet). Raises
    :class:`LifecycleError` for a document that is not the format's shape (rule ``schema``)
    or a state without a known kind (rule ``declared-kind``)."""
    if not isinstance(data, Mapping):
        raise _schema_error([f"expected a mapping, got {_json_type(data)} @ $"], source)
    try:
        doc = _CONVERTER.structure(dict(data), _Document)
    except Exception as exc:  # cattrs's class validation error, with one note per problem
        raise _schema_error(cattrs.transform_error(exc, path="$", format_exception=_format),
                            source) from None
    problems: list[RuleViolation] = []
    if doc.version != FORMAT_VERSION:
        problems.append(RuleViolation("schema", "$.version", f"version {doc.version} is not "
                                      f"known (this fsm_exec reads version {FORMAT_VERSION})"))
    if doc.extends not in (None, "default"):
        problems.append(RuleViolation("schema", "$.extends", "a lifecycle can only extend "
                                      f"'default', not {doc.extends!r}"))
    kinds = {str(k) for k in StateKind}
    states = []
    for name, s in doc.states.items():
        if s.kind is None or s.kind not in kinds:
            got = "declares no kind" if s.kind is None else f"declares kind {s.kind!r}"
            problems.append(RuleViolation(
                "declared-kind", name, f"the state {got}: each state declares one of "
                f"{', '.join(k.value for k in StateKind)}"))
            continue
        wait = Wait(s.wait.timeout_seconds, s.wait.timeout_to) if s.wait is not None else None
        states.append(StateDef(name, StateKind(s.kind), s.meaning, wait, tuple(s.on_enter)))
    transitions = []
    for i, t in enumerate(doc.transitions):
        guards = []
        for j, raw in enumerate(t.guards):
            g = _guard(raw, f"$.transitions[{i}].guards[{j}]")
            if isinstance(g, RuleViolation):
                problems.append(g)
            else:
                guards.append(g)
        transitions.append(TransitionDef(t.trigger, t.source, t.dest, t.meaning,
                                         tuple(guards), t.external, t.poll))
    if problems:
        raise LifecycleError(problems, source, doc.name)
    return Parts(doc.name, doc.extends, tuple(states), tuple(transitions))


# -------------------------------------------------------------------- writing


def to_document(name: str, states_: tuple[StateDef, ...],
                transitions_: tuple[TransitionDef, ...]) -> dict[str, Any]:
    """The lifecycle in the file format, whole (no ``extends``); optional fields at their
    defaults are left out."""
    states: dict[str, Any] = {}
    for s in states_:
        doc: dict[str, Any] = {"kind": str(s.kind), "meaning": s.meaning}
        if s.wait is not None:
            doc["wait"] = {k: v for k, v in attrs.asdict(s.wait).items() if v is not None}
        if s.on_enter:
            doc["on_enter"] = list(s.on_enter)
        states[s.name] = doc
    transitions = []
    for t in transitions_:
        row: dict[str, Any] = {"trigger": t.trigger, "source": t.source, "dest": t.dest,
                               "meaning": t.meaning}
        if t.guards:
            row["guards"] = [g.to_dict() for g in t.guards]
        if t.external:
            row["external"] = True
        if t.poll:
            row["poll"] = True
        transitions.append(row)
    return {"version": FORMAT_VERSION, "name": name, "states": states,
            "transitions": transitions}
