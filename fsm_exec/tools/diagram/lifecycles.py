"""Diagrams of a user lifecycle (:class:`~fsm_exec.Lifecycle`): its states drawn by kind, its
transitions with their guards and flags, its waits' timeouts dashed; and what changed
between two lifecycles. The same renderers draw them (:mod:`.render`)."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from fsm_exec.core.lifecycles import Lifecycle, StateKind, TransitionDef, Wait
from fsm_exec.tools.diagram.model import (
    CHANGED,
    DiagramEdge,
    DiagramModel,
    DiagramState,
    diff_model,
)
from fsm_exec.tools.diagram.table import LifecycleTable, TableEdge, TableState


def lifecycle_table(lc: Lifecycle) -> LifecycleTable:
    """A lifecycle as a plain table (the waits' timeouts included as ``timeout`` edges):
    what the table diff and the journal overlays read."""
    def kind(name: str, k: StateKind) -> str:
        return "initial" if name == lc.initial else "terminal" if k is StateKind.TERMINAL \
            else ""

    return LifecycleTable(
        states=tuple(TableState(s.name, s.meaning, kind(s.name, s.kind)) for s in lc.states),
        edges=tuple(TableEdge(t.source, t.trigger, t.dest, t.meaning)
                    for t in lc.all_transitions()))


def _detail(t: TransitionDef) -> str:
    parts = [f"[{' & '.join(g.words() for g in t.guards)}]"] if t.guards else []
    parts += [flag for flag, on in (("(external)", t.external), ("(poll)", t.poll)) if on]
    return " ".join(parts)


def _details(ts: Iterable[TransitionDef]) -> dict[tuple[str, str, str], str]:
    """The label detail of each edge: its guards in brackets (``[else]`` for the unguarded
    default of guarded ones), its flags; several transitions on one edge are joined with
    ``or``."""
    ts = list(ts)
    guarded = {(t.source, t.trigger) for t in ts if t.guards}
    out: dict[tuple[str, str, str], list[str]] = {}
    for t in ts:
        d = _detail(t)
        if not t.guards and (t.source, t.trigger) in guarded:  # the default of guarded ones
            d = " ".join(("[else]", d)).strip()
        out.setdefault(t.key, []).append(d)
    return {k: " or ".join(v) for k, v in out.items()}


def _dress(model: DiagramModel, lcs: Iterable[Lifecycle]) -> DiagramModel:
    """Give a model's states their kinds and its edges their details, from the lifecycles
    (the first that has the state or edge wins)."""
    kinds: dict[str, str] = {}
    details: dict[tuple[str, str, str], str] = {}
    implied: set[tuple[str, str, str]] = set()
    for lc in lcs:
        for s in lc.states:
            kinds.setdefault(s.name, str(s.kind))
        for k, d in _details((*lc.transitions, *lc.derived_transitions())).items():
            details.setdefault(k, d)
        for s in lc.states:
            t = lc.timeout_transition(s.name)
            if t is not None and s.wait is not None and s.wait.timeout_seconds is not None:
                implied.add(t.key)
                details.setdefault(t.key, f"({s.wait.timeout_seconds:g} s)")
    return attrs.evolve(
        model,
        states=tuple(attrs.evolve(s, state_kind=kinds.get(s.name)) for s in model.states),
        edges=tuple(attrs.evolve(e, detail=details.get(key, ""), implied=key in implied)
                    for e in model.edges for key in [(e.source, e.trigger, e.dest)]))


def lifecycle_diagram(lc: Lifecycle, title: str | None = None) -> DiagramModel:
    """A lifecycle as a diagram model: states with their kinds, transitions with guards and
    flags, timeouts dashed."""
    table = lifecycle_table(lc)
    base = DiagramModel(
        title=title or f"Lifecycle {lc.name}",
        states=tuple(DiagramState(s.name, s.meaning, s.kind == "initial", s.kind == "terminal")
                     for s in table.states),
        edges=tuple(DiagramEdge(e.source, e.dest, e.trigger, e.meaning) for e in table.edges),
        caption=f"{len(lc.states)} states, {len(lc.transitions)} transitions, hash {lc.hash}")
    return _dress(base, [lc])


def lifecycle_changes(old: Lifecycle, new: Lifecycle) -> tuple[list[str], set[str],
                                                              set[tuple[str, str, str]]]:
    """What changed beyond the table (kinds, waits, hooks, guards, flags), in words, and the
    states and edges it changed."""
    lines: list[str] = []
    states: set[str] = set()
    edges: set[tuple[str, str, str]] = set()
    before = {s.name: s for s in old.states}
    for s in new.states:
        was = before.get(s.name)
        if was is None:
            continue
        for field, words in (("kind", "kind"), ("wait", "wait"), ("on_enter", "hooks")):
            a, b = getattr(was, field), getattr(s, field)
            if a != b:
                lines.append(f"{words} of state {s.name}: {_say(a)} -> {_say(b)}")
                states.add(s.name)
    old_d, new_d = (_details((*lc.transitions, *lc.derived_transitions()))
                    for lc in (old, new))
    for key, d in new_d.items():
        if key in old_d and old_d[key] != d:
            lines.append(f"guards or flags of edge {key[0]} --{key[1]}--> {key[2]}: "
                         f"{old_d[key] or 'none'} -> {d or 'none'}")
            edges.add(key)
    return lines, states, edges


def _say(value: object) -> str:
    if value is None or value == ():
        return "none"
    if isinstance(value, Wait):
        if value.timeout_seconds is None:
            return "waits, no timeout"
        to = f" to {value.timeout_to}" if value.timeout_to else " (in doubt)"
        return f"waits, timeout {value.timeout_seconds:g} s{to}"
    if isinstance(value, tuple):
        return ", ".join(map(str, value))
    if isinstance(value, StateKind):
        return value.value
    return str(value)


def lifecycle_diff(old: Lifecycle, new: Lifecycle, *, since: str | None = None,
                   ) -> DiagramModel:
    """``new`` drawn against ``old``: added states and edges in one style, removed ones in
    another, changed ones (meaning, kind, wait, hooks, guards, flags) in a third; the notes
    list every change in words."""
    model = diff_model(lifecycle_table(old), lifecycle_table(new),
                       since=since or f"lifecycle {old.name}")
    lines, states, edges = lifecycle_changes(old, new)
    model = attrs.evolve(
        model, title=f"Lifecycle {new.name}: what changed since {old.name}",
        states=tuple(attrs.evolve(s, change=CHANGED) if s.name in states and s.change is None
                     else s for s in model.states),
        edges=tuple(attrs.evolve(e, change=CHANGED)
                    if (e.source, e.trigger, e.dest) in edges and e.change is None else e
                    for e in model.edges),
        notes=(*model.notes, *lines))
    n = len(model.notes)
    since_words = since or f"lifecycle {old.name}"
    caption = f"{n} change{'s' * (n != 1)} since {since_words}" if n else \
        f"no change since {since_words}"
    return _dress(attrs.evolve(model, caption=caption), [new, old])
