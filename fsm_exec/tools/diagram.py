"""Diagrams of the block lifecycle: the table as plain data, a small diagram model derived from
it, thin renderers (Mermaid, DOT, Markdown; SVG/PNG through Graphviz's ``dot``), overlays of
what a run did, and the difference between two versions of the table.

Nothing here names a state or an edge: everything is derived from a :class:`LifecycleTable`,
by default the code's own (:func:`current_table`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import subprocess
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from fsm_exec.journal.reader import JournalRecord

# ------------------------------------------------------------------------ the table as data

TABLE_FORMAT = "fsm_exec.lifecycle/1"


class LifecycleFileError(ValueError):
    """A lifecycle file (``block_lifecycle.json``) that cannot be read as a table."""


@attrs.frozen
class TableState:
    """A state of a lifecycle table: ``kind`` is ``initial``, ``terminal`` or empty."""

    name: str
    meaning: str
    kind: str = ""


@attrs.frozen
class TableEdge:
    """A row of a lifecycle table."""

    source: str
    trigger: str
    dest: str
    meaning: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.source, self.trigger, self.dest)

    def words(self) -> str:
        return f"{self.source} --{self.trigger}--> {self.dest}"


@attrs.frozen
class LifecycleTable:
    """A block lifecycle as plain data: its states (in order) and its edges (in order)."""

    states: tuple[TableState, ...]
    edges: tuple[TableEdge, ...]

    def state(self, name: str) -> TableState | None:
        return next((s for s in self.states if s.name == name), None)

    def to_json(self) -> str:
        """The table as the JSON of ``diagrams/block_lifecycle.json`` (stable, sorted)."""
        doc = {"format": TABLE_FORMAT,
               "states": [attrs.asdict(s) for s in self.states],
               "transitions": [attrs.asdict(e) for e in self.edges]}
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = "lifecycle file") -> LifecycleTable:
        """Read :meth:`to_json`'s output; :class:`LifecycleFileError` names what is wrong."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LifecycleFileError(f"{where}: not JSON: {exc.msg} (line {exc.lineno})") from None
        if not isinstance(doc, dict) or doc.get("format") != TABLE_FORMAT:
            raise LifecycleFileError(f"{where}: not a lifecycle table (format "
                                     f"{TABLE_FORMAT!r} expected)")
        try:
            states = tuple(TableState(str(s["name"]), str(s["meaning"]), str(s.get("kind", "")))
                           for s in doc["states"])
            edges = tuple(TableEdge(str(e["source"]), str(e["trigger"]), str(e["dest"]),
                                    str(e["meaning"])) for e in doc["transitions"])
        except (KeyError, TypeError) as exc:
            raise LifecycleFileError(f"{where}: a state or transition lacks {exc}") from None
        return cls(states, edges)


def current_table() -> LifecycleTable:
    """The code's lifecycle table (:mod:`fsm_exec.core.lifecycle`) as data."""
    from fsm_exec.core.lifecycle import INITIAL_STATE, STATE_MEANINGS, TERMINAL_STATES, TRANSITIONS

    def kind(s: Any) -> str:
        return "initial" if s == INITIAL_STATE else "terminal" if s in TERMINAL_STATES else ""

    return LifecycleTable(
        states=tuple(TableState(str(s), m, kind(s)) for s, m in STATE_MEANINGS.items()),
        edges=tuple(TableEdge(str(e.source), str(e.trigger), str(e.dest), e.meaning)
                    for e in TRANSITIONS))


# ------------------------------------------------------------------------ what changed


@attrs.frozen
class TableDiff:
    """What changed from ``old`` to ``new``: states and edges added and removed, and the
    meanings (and kinds) that changed, each as a sentence."""

    added_states: tuple[str, ...]
    removed_states: tuple[str, ...]
    added_edges: tuple[TableEdge, ...]
    removed_edges: tuple[TableEdge, ...]
    changed: tuple[str, ...]  # meanings and kinds, in words
    changed_states: frozenset[str] = frozenset()
    changed_edges: frozenset[tuple[str, str, str]] = frozenset()

    @property
    def empty(self) -> bool:
        return not (self.added_states or self.removed_states or self.added_edges
                    or self.removed_edges or self.changed)

    def lines(self) -> list[str]:
        """The changes in words, one a line."""
        out = [f"added state {s}" for s in self.added_states]
        out += [f"removed state {s}" for s in self.removed_states]
        out += [f"added edge {e.words()}" for e in self.added_edges]
        out += [f"removed edge {e.words()}" for e in self.removed_edges]
        return out + list(self.changed)


def diff_tables(old: LifecycleTable, new: LifecycleTable) -> TableDiff:
    """Compare two tables: edges are the same when source, trigger and dest are."""
    old_s = {s.name: s for s in old.states}
    new_s = {s.name: s for s in new.states}
    old_e = {e.key: e for e in old.edges}
    new_e = {e.key: e for e in new.edges}
    changed: list[str] = []
    changed_states: set[str] = set()
    changed_edges: set[tuple[str, str, str]] = set()
    for name, s in new_s.items():
        was = old_s.get(name)
        if was is None:
            continue
        if was.kind != s.kind:
            changed.append(f"state {name} was {was.kind or 'neither initial nor terminal'}, "
                           f"is {s.kind or 'neither initial nor terminal'}")
            changed_states.add(name)
        if was.meaning != s.meaning:
            changed.append(f"meaning of state {name}: {was.meaning!r} -> {s.meaning!r}")
            changed_states.add(name)
    for key, e in new_e.items():
        was_e = old_e.get(key)
        if was_e is not None and was_e.meaning != e.meaning:
            changed.append(f"meaning of edge {e.words()}: {was_e.meaning!r} -> {e.meaning!r}")
            changed_edges.add(key)
    return TableDiff(
        added_states=tuple(n for n in new_s if n not in old_s),
        removed_states=tuple(n for n in old_s if n not in new_s),
        added_edges=tuple(e for k, e in new_e.items() if k not in old_e),
        removed_edges=tuple(e for k, e in old_e.items() if k not in new_e),
        changed=tuple(changed), changed_states=frozenset(changed_states),
        changed_edges=frozenset(changed_edges))


# ------------------------------------------------------------------------ the model

ADDED, REMOVED, CHANGED = "added", "removed", "changed"


@attrs.frozen
class DiagramState:
    """A state as drawn. Overlays: ``ended`` is how many blocks ended here (terminal
    states), ``left`` how many were still here when the journal ends, ``share`` the fraction
    of the run's blocks that ``ended`` is. ``change`` is set by a diff."""

    name: str
    meaning: str
    initial: bool = False
    terminal: bool = False
    ended: int | None = None
    left: int = 0
    share: float = 0.0
    highlighted: bool = False
    current: bool = False  # a block overlay: where the block is, or ended
    change: str | None = None


@attrs.frozen
class DiagramEdge:
    """An edge as drawn: ``count`` is how often it was taken (run overlays); ``steps``
    numbers a block's moves along it and ``attempts`` gives each move's attempt (block
    overlays); ``change`` is set by a diff."""

    source: str
    dest: str
    trigger: str
    meaning: str
    count: int | None = None
    steps: tuple[int, ...] = ()
    attempts: tuple[int, ...] = ()
    change: str | None = None

    @property
    def highlighted(self) -> bool:
        return bool(self.steps)


@attrs.frozen
class PathStep:
    """One move of a block (block overlays): the table under the diagram."""

    n: int
    timestamp: str
    source: str
    trigger: str
    dest: str
    attempt: int
    detail: str


@attrs.frozen
class DiagramModel:
    """What a renderer draws. ``kind``: ``lifecycle``, ``run``, ``block`` or ``diff``;
    ``notes`` are listed under the diagram (a diff's changes, in words)."""

    title: str
    states: tuple[DiagramState, ...]
    edges: tuple[DiagramEdge, ...]
    caption: str | None = None
    kind: str = "lifecycle"
    notes: tuple[str, ...] = ()
    path: tuple[PathStep, ...] = ()

    @property
    def counted(self) -> bool:
        return any(e.count is not None for e in self.edges)

    @property
    def max_count(self) -> int:
        return max((e.count or 0 for e in self.edges), default=0)


def lifecycle_model(title: str = "Block lifecycle",
                    table: LifecycleTable | None = None) -> DiagramModel:
    """A lifecycle table (the code's by default) as a diagram model."""
    table = table or current_table()
    return DiagramModel(
        title=title,
        states=tuple(DiagramState(s.name, s.meaning, s.kind == "initial", s.kind == "terminal")
                     for s in table.states),
        edges=tuple(DiagramEdge(e.source, e.dest, e.trigger, e.meaning) for e in table.edges))


class JournalOffTableError(ValueError):
    """A journal's transition is not an edge of the lifecycle table (``where`` is
    ``file:line``)."""

    def __init__(self, where: str, move: str) -> None:
        self.where = where
        super().__init__(f"{where}: transition {move} is not an edge of the lifecycle")


def _moves(records: Iterable[JournalRecord], component: str,
           table: LifecycleTable) -> list[JournalRecord]:
    known = {e.key for e in table.edges}
    out = []
    for r in records:
        if r.component != component or r.event_type != "block_transition":
            continue
        d = r.data
        key = (d.get("source"), d.get("trigger"), d.get("dest"))
        if key not in known:
            raise JournalOffTableError(f"{r.path}:{r.line}",
                                       f"{key[0]} --{key[1]}--> {key[2]} of block "
                                       f"{d.get('block_id')!r}")
        out.append(r)
    return out


def overlay_events(records: Iterable[JournalRecord], *, component: str = "ExecutionManager",
                   title: str = "Block lifecycle: what the run did",
                   table: LifecycleTable | None = None) -> DiagramModel:
    """The lifecycle with how often each edge was taken and how many blocks ended where.

    Raises :class:`JournalOffTableError` if a transition is not an edge of the table.
    """
    table = table or current_table()
    moves = [r.data for r in _moves(records, component, table)]
    taken = Counter((m["source"], m["trigger"], m["dest"]) for m in moves)
    last: dict[Any, str] = {}
    for m in moves:
        last[m["block_id"]] = m["dest"]
    where = Counter(last.values())
    blocks = len(last)
    base = lifecycle_model(title, table)
    states = []
    for s in base.states:
        n = where[s.name]
        states.append(attrs.evolve(s, ended=n if s.terminal else None,
                                   left=0 if s.terminal else n,
                                   share=n / blocks if blocks else 0.0))
    in_flight = sum(s.left for s in states)
    caption = (f"{len(moves)} transitions of {blocks} block{'s' * (blocks != 1)}"
               if moves else "no block moved in this journal")
    if in_flight:
        caption += f", {in_flight} still in flight when the journal ends"
    return DiagramModel(
        title=title, states=tuple(states),
        edges=tuple(attrs.evolve(e, count=taken[(e.source, e.trigger, e.dest)])
                    for e in base.edges),
        caption=caption, kind="run")


def _detail(d: Mapping[str, Any]) -> str:
    parts = []
    for key in ("error_code", "reason", "resolved_by"):
        if d.get(key) not in (None, ""):
            parts.append(f"{key} {d[key]}")
    if isinstance(d.get("waited_s"), int | float):
        parts.append(f"waited {d['waited_s']:g} s")
    return "; ".join(parts)


def overlay_block(records: Iterable[JournalRecord], block_id: str, *,
                  component: str = "ExecutionManager",
                  table: LifecycleTable | None = None) -> DiagramModel:
    """One block's path through the lifecycle: its edges highlighted and numbered, the
    attempts and details of each move in :attr:`DiagramModel.path`.

    Raises ``LookupError`` if the journal has no transition of that block, and
    :class:`JournalOffTableError` if a transition is not an edge of the table.
    """
    table = table or current_table()
    moves = [r for r in _moves(records, component, table) if r.data["block_id"] == block_id]
    if not moves:
        raise LookupError(f"no transition of block {block_id!r} in the journal")
    steps: dict[tuple[str, str, str], list[tuple[int, int]]] = defaultdict(list)
    path = []
    for n, r in enumerate(moves, start=1):
        m = r.data
        attempt = m.get("attempt")
        a = attempt if isinstance(attempt, int) else 0
        steps[(m["source"], m["trigger"], m["dest"])].append((n, a))
        path.append(PathStep(n, r.timestamp, m["source"], m["trigger"], m["dest"], a,
                             _detail(m)))
    visited = {m.data["source"] for m in moves} | {m.data["dest"] for m in moves}
    last = moves[-1].data["dest"]
    base = lifecycle_model(f"Block {block_id}", table)
    terminal = {s.name for s in table.states if s.kind == "terminal"}
    where = "ended" if last in terminal else "is still"
    return DiagramModel(
        title=base.title,
        states=tuple(attrs.evolve(s, highlighted=s.name in visited, current=s.name == last)
                     for s in base.states),
        edges=tuple(attrs.evolve(e, steps=tuple(n for n, _ in steps[key]),
                                 attempts=tuple(a for _, a in steps[key]))
                    for e in base.edges for key in [(e.source, e.trigger, e.dest)]),
        caption=f"{where} in {last} after {len(moves)} transitions",
        kind="block", path=tuple(path))


def diff_model(old: LifecycleTable, new: LifecycleTable | None = None, *,
               since: str = "the older table") -> DiagramModel:
    """The ``new`` lifecycle (the code's by default) drawn against ``old``: added states
    and edges in one style, removed ones in another, changed meanings listed as notes."""
    new = new or current_table()
    d = diff_tables(old, new)
    added_s, removed_s = set(d.added_states), set(d.removed_states)
    added_e = {e.key for e in d.added_edges}
    states = [DiagramState(s.name, s.meaning, s.kind == "initial", s.kind == "terminal",
                           change=ADDED if s.name in added_s else
                           CHANGED if s.name in d.changed_states else None)
              for s in new.states]
    states += [DiagramState(s.name, s.meaning, s.kind == "initial", s.kind == "terminal",
                            change=REMOVED) for s in old.states if s.name in removed_s]
    edges = [DiagramEdge(e.source, e.dest, e.trigger, e.meaning,
                         change=ADDED if e.key in added_e else
                         CHANGED if e.key in d.changed_edges else None) for e in new.edges]
    edges += [DiagramEdge(e.source, e.dest, e.trigger, e.meaning, change=REMOVED)
              for e in d.removed_edges]
    n = len(d.lines())
    caption = (f"{n} change{'s' * (n != 1)} since {since}" if n
               else f"no change since {since}")
    return DiagramModel(title="Block lifecycle: what changed", states=tuple(states),
                        edges=tuple(edges), caption=caption, kind="diff",
                        notes=tuple(d.lines()))


# ------------------------------------------------------------------------ drawing rules

#: Colours, shared by the Mermaid and DOT renderers.
INK, FAINT, FAINT_TEXT = "#333333", "#b0b0b0", "#8a8a8a"
PATH = "#e65100"
PATH_FILL = "#fff3e0"
IN_FLIGHT = "#ffe0b2"  # blocks still there when the journal ends (in doubt after a crash)
ADDED_INK, REMOVED_INK, CHANGED_INK = "#2e7d32", "#c62828", "#b26a00"
#: Fills for "how many blocks ended here", from none to most (share of the run's blocks).
SHADES = ("#ffffff", "#deebf7", "#9ecae1", "#4292c6", "#08519c")


def shade(share: float) -> tuple[str, str]:
    """The fill and text colour of a state where ``share`` of the blocks ended."""
    if share <= 0:
        return SHADES[0], INK
    level = 1 if share < 0.05 else 2 if share < 0.25 else 3 if share < 0.6 else 4
    return SHADES[level], "#ffffff" if level >= 3 else INK


def edge_width(count: int, most: int) -> float:
    """Line width of an edge taken ``count`` times when the busiest was taken ``most``."""
    if count <= 0 or most <= 0:
        return 1.0
    return round(1.5 + 3.5 * math.log1p(count) / math.log1p(most), 1)


def drawing_order(edges: Sequence[DiagramEdge]) -> list[int]:
    """The order in which edges are handed to a layered layout (Mermaid's dagre).

    One-way edges first, in table order: they set the ranks, so the flow reads from the
    initial state down. Then the edges of two-way pairs (a loop between two states, such
    as a retry): laid out against that flow they sit side by side instead of crossing.
    """
    pairs = {(e.source, e.dest) for e in edges}
    two_way = [(e.dest, e.source) in pairs for e in edges]
    return sorted(range(len(edges)), key=lambda i: two_way[i])


def _steps_text(steps: Sequence[int]) -> str:
    return ", ".join(str(n) for n in steps)


def _edge_label(e: DiagramEdge) -> str:
    label = e.trigger
    if e.count is not None:
        label += f" \u00d7{e.count}"  # multiplication sign
    if e.steps:
        label += f" \u00b7 {_steps_text(e.steps)}"  # middle dot, then the step numbers
    if e.change in (ADDED, REMOVED):
        label += f" ({e.change})"
    return label


def _state_lines(s: DiagramState) -> list[str]:
    lines = [s.name]
    if s.ended is not None:
        lines.append(f"{s.ended} block{'s' * (s.ended != 1)}")
    elif s.left:
        lines.append(f"{s.left} in flight")
    if s.change in (ADDED, REMOVED):
        lines.append(f"({s.change})")
    return lines


def _state_label(s: DiagramState) -> str:
    return " ".join(_state_lines(s))


def _title(model: DiagramModel) -> str:
    return model.title + (f" \u00b7 {model.caption}" if model.caption else "")


# ------------------------------------------------------------------------ Mermaid

_MERMAID_RESERVED = frozenset({
    "end", "graph", "flowchart", "subgraph", "style", "linkstyle", "classdef", "class",
    "click", "call", "href", "default", "direction", "interpolate", "accdescr", "acctitle",
    "o", "x"})


def _mermaid_ids(model: DiagramModel) -> tuple[dict[str, str], str]:
    ids: dict[str, str] = {}
    for i, s in enumerate(model.states):
        ok = re.fullmatch(r"[a-z][a-z0-9_]*", s.name) and s.name not in _MERMAID_RESERVED
        ids[s.name] = s.name if ok else f"state_{i}"
    if len(set(ids.values())) != len(ids):
        ids = {s.name: f"state_{i}" for i, s in enumerate(model.states)}
    start = "start_marker"
    while start in ids.values():
        start += "_"
    return ids, start


def _mermaid_text(text: str) -> str:
    # Inside "...": Mermaid's entity codes for the characters it would read as syntax.
    text = text.replace("#", "#35;").replace('"', "#quot;").replace("|", "#124;")
    return text.replace("<", "#lt;").replace(">", "#gt;").replace("\n", " ")


def _yaml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mermaid_edge(model: DiagramModel, e: DiagramEdge) -> tuple[str, str]:
    """The arrow and the linkStyle of an edge."""
    if model.kind == "diff":
        if e.change == ADDED:
            return "==>", f"stroke:{ADDED_INK},stroke-width:3px,color:{ADDED_INK}"
        if e.change == REMOVED:
            return "-.->", (f"stroke:{REMOVED_INK},stroke-width:2px,"
                            f"stroke-dasharray:6 4,color:{REMOVED_INK}")
        if e.change == CHANGED:
            return "-->", f"stroke:{CHANGED_INK},stroke-width:2px,color:{CHANGED_INK}"
        return "-->", f"stroke:{INK},stroke-width:1.5px,color:{INK}"
    if model.kind == "block":
        if e.highlighted:
            return "==>", f"stroke:{PATH},stroke-width:3.5px,color:{PATH}"
        return "-.->", f"stroke:{FAINT},stroke-width:1px,color:{FAINT_TEXT}"
    if model.kind == "run" and e.count is not None:
        if e.count == 0:
            return "-.->", f"stroke:{FAINT},stroke-width:1px,color:{FAINT_TEXT}"
        w = edge_width(e.count, model.max_count)
        return "-->", f"stroke:{INK},stroke-width:{w}px,color:{INK}"
    return "-->", ""


def _mermaid_node_style(model: DiagramModel, s: DiagramState) -> str:
    border = "stroke-width:3px" if s.terminal else "stroke-width:1.5px"
    if model.kind == "run":
        if s.left:
            return f"fill:{IN_FLIGHT},color:{INK},stroke:{PATH},{border},stroke-dasharray:5 3"
        fill, text = shade(s.share)
        stroke = FAINT if s.share == 0 else "#08306b"
        return f"fill:{fill},color:{text},stroke:{stroke},{border}"
    if model.kind == "block":
        if s.current:
            return f"fill:{PATH},color:#ffffff,stroke:{PATH},{border}"
        if s.highlighted:
            return f"fill:{PATH_FILL},color:{INK},stroke:{PATH},{border}"
        return f"fill:#ffffff,color:{FAINT_TEXT},stroke:{FAINT},{border}"
    if model.kind == "diff" and s.change:
        ink = {ADDED: ADDED_INK, REMOVED: REMOVED_INK, CHANGED: CHANGED_INK}[s.change]
        dash = ",stroke-dasharray:6 4" if s.change == REMOVED else ""
        return f"fill:#ffffff,color:{ink},stroke:{ink},{border}{dash}"
    return ""  # Mermaid's own look; terminal states get the class below


#: Layout settings (front matter) under which the browser tests find no overlapping labels,
#: no label on another edge and no crossing edges for the lifecycle and its overlays.
MERMAID_CONFIG = ("config:", "  flowchart:", "    nodeSpacing: 130", "    rankSpacing: 90",
                  "    curve: monotoneY")


def to_mermaid(model: DiagramModel) -> str:
    """A Mermaid ``flowchart`` (it renders natively on GitHub and GitLab and, unlike
    ``stateDiagram-v2``, lets every edge be styled): the initial state fed by a dot, terminal
    states as stadiums with a heavy border, edges styled by what the model says."""
    ids, start = _mermaid_ids(model)
    out = ["---", f"title: {_yaml_str(_title(model))}", *MERMAID_CONFIG, "---", "flowchart TB"]
    out.append(f'    {start}((" "))')
    for s in model.states:
        text = "<br>".join(_mermaid_text(line) for line in _state_lines(s))
        shape = ('(["', '"])') if s.terminal else ('("', '")')
        out.append(f"    {ids[s.name]}{shape[0]}{text}{shape[1]}")
    links: list[str] = []
    styles: list[str] = []
    initial = [s for s in model.states if s.initial]
    for s in initial:
        links.append(f"    {start} --> {ids[s.name]}")
        styles.append(f"stroke:{INK},stroke-width:1.5px" if model.kind != "lifecycle" else "")
    for i in drawing_order(model.edges):
        e = model.edges[i]
        arrow, style = _mermaid_edge(model, e)
        links.append(f'    {ids[e.source]} {arrow}|"{_mermaid_text(_edge_label(e))}"| '
                     f"{ids[e.dest]}")
        styles.append(style)
    out += links
    out.append(f"    style {start} fill:{INK},stroke:{INK}")
    terminal = [ids[s.name] for s in model.states if s.terminal]
    if terminal:
        out.append("    classDef terminal stroke-width:3px")
        out.append(f"    class {','.join(terminal)} terminal")
    for s in model.states:
        style = _mermaid_node_style(model, s)
        if style:
            out.append(f"    style {ids[s.name]} {style}")
    for n, style in enumerate(styles):
        if style:
            out.append(f"    linkStyle {n} {style}")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------ DOT


def _dot_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_node(model: DiagramModel, s: DiagramState) -> list[str]:
    a = [f"label={_dot_str(chr(10).join(_state_lines(s)))}", f"tooltip={_dot_str(s.meaning)}"]
    if s.terminal:
        a.append("peripheries=2")
    if model.kind == "run" and s.left:
        a += [f'fillcolor="{IN_FLIGHT}"', f'color="{PATH}"', 'style="rounded,filled,dashed"']
    elif model.kind == "run":
        fill, text = shade(s.share)
        a += [f'fillcolor="{fill}"', f'fontcolor="{text}"']
        if s.share == 0:
            a.append(f'color="{FAINT}"')
    elif s.current:
        a += [f'color="{PATH}"', f'fillcolor="{PATH}"', 'fontcolor="#ffffff"', "penwidth=2"]
    elif s.highlighted:
        a += [f'color="{PATH}"', f'fillcolor="{PATH_FILL}"', "penwidth=2"]
    elif model.kind == "block":
        a += [f'color="{FAINT}"', f'fontcolor="{FAINT_TEXT}"']
    elif s.change:
        ink = {ADDED: ADDED_INK, REMOVED: REMOVED_INK, CHANGED: CHANGED_INK}[s.change]
        a += [f'color="{ink}"', f'fontcolor="{ink}"', "penwidth=2"]
        if s.change == REMOVED:
            a.append('style="rounded,filled,dashed"')
    return a


def _dot_edge(model: DiagramModel, e: DiagramEdge) -> list[str]:
    a = [f"label={_dot_str(_edge_label(e))}", f"tooltip={_dot_str(e.meaning)}"]
    if e.highlighted:
        a += [f'color="{PATH}"', "penwidth=2.5", f'fontcolor="{PATH}"']
    elif model.kind == "block" or e.count == 0:
        a += [f'color="{FAINT}"', f'fontcolor="{FAINT_TEXT}"', "style=dashed"]
    elif e.count is not None:
        a.append(f"penwidth={edge_width(e.count, model.max_count)}")
    elif e.change == ADDED:
        a += [f'color="{ADDED_INK}"', f'fontcolor="{ADDED_INK}"', "penwidth=2.5"]
    elif e.change == REMOVED:
        a += [f'color="{REMOVED_INK}"', f'fontcolor="{REMOVED_INK}"', "style=dashed",
              "penwidth=2"]
    elif e.change == CHANGED:
        a += [f'color="{CHANGED_INK}"', f'fontcolor="{CHANGED_INK}"', "penwidth=2"]
    return a


def to_dot(model: DiagramModel) -> str:
    """Graphviz DOT: terminal states drawn double (final), the initial one fed by a dot."""
    title = model.title + (f"\n{model.caption}" if model.caption else "")
    out = ["digraph block_lifecycle {",
           "    rankdir=LR;",
           f"    label={_dot_str(title)};",
           "    labelloc=t;",
           '    fontname="Helvetica";',
           '    node [shape=box, style="rounded,filled", fillcolor="#ffffff", '
           'fontname="Helvetica"];',
           '    edge [fontname="Helvetica", fontsize=10];',
           '    "__start" [shape=point, width=0.15, label="", fillcolor="#000000"];']
    for s in model.states:
        out.append(f"    {_dot_str(s.name)} [{', '.join(_dot_node(model, s))}];")
    for s in model.states:
        if s.initial:
            out.append(f'    "__start" -> {_dot_str(s.name)};')
    for e in model.edges:
        out.append(f"    {_dot_str(e.source)} -> {_dot_str(e.dest)} "
                   f"[{', '.join(_dot_edge(model, e))}];")
    out.append("}")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------ Markdown


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown_table(model: DiagramModel) -> str:
    """The transition table in Markdown: with counts (run overlays), steps (block
    overlays) or the change (diffs)."""
    if model.counted:
        extra = ("count", lambda e: str(e.count))
    elif model.kind == "block":
        extra = ("steps", lambda e: _steps_text(e.steps))
    elif model.kind == "diff":
        extra = ("change", lambda e: e.change or "")
    else:
        extra = None
    head = "| source | trigger | dest |" + (f" {extra[0]} |" if extra else "") + " meaning |"
    out = [head, "| --- | --- | --- |" + (" --- |" if extra else "") + " --- |"]
    for e in model.edges:
        cell = f" {extra[1](e)} |" if extra else ""
        out.append(f"| `{_md(e.source)}` | `{_md(e.trigger)}` | `{_md(e.dest)}` |{cell} "
                   f"{_md(e.meaning)} |")
    return "\n".join(out) + "\n"


def _legend(model: DiagramModel) -> str | None:
    return {
        "run": "Line width grows with how often an edge was taken; dotted grey edges were "
               "never taken. A state's shade says how many of the run's blocks ended there; "
               "an amber state with a dashed border holds blocks still in flight when the journal "
               "ends.",
        "block": "The block's path is drawn bold, each edge numbered with the steps that "
                 "took it (attempts and details in the table below); the state where it "
                 "is, or ended, is filled.",
        "diff": "Green, bold: added. Red, dashed: removed. Amber: meaning (or kind) "
                "changed.",
    }.get(model.kind)


def to_markdown(model: DiagramModel) -> str:
    """A review page: the Mermaid diagram (rendered by GitHub/GitLab) and the table; for a
    block its steps, for a diff the changes in words."""
    parts = [f"# {model.title}", ""]
    if model.caption:
        parts += [model.caption[0].upper() + model.caption[1:] + ".", ""]
    legend = _legend(model)
    if legend:
        parts += [legend, ""]
    parts += ["```mermaid", to_mermaid(model).rstrip("\n"), "```", ""]
    if model.kind == "diff":
        parts += ["## Changes", ""]
        parts += [f"- {_md(n)}" for n in model.notes] or ["- none"]
        parts.append("")
    if model.path:
        parts += ["## Steps", "", "| step | timestamp | source | trigger | dest | attempt | "
                  "detail |", "| --- | --- | --- | --- | --- | --- | --- |"]
        parts += [f"| {p.n} | {_md(p.timestamp)} | `{p.source}` | `{p.trigger}` | `{p.dest}` "
                  f"| {p.attempt} | {_md(p.detail)} |" for p in model.path]
        parts.append("")
    parts += [to_markdown_table(model).rstrip("\n"), ""]
    return "\n".join(parts)


# ------------------------------------------------------------------------ Graphviz


class GraphvizMissingError(RuntimeError):
    """Graphviz's ``dot`` program is not installed."""


def render_graphviz(dot_text: str, fmt: str = "svg") -> bytes:
    """Run Graphviz ``dot`` on ``dot_text``; SVG output records the hash of its source so
    that a stale SVG can be told without Graphviz (:func:`svg_source_digest`)."""
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizMissingError(
            "Graphviz's `dot` program is needed for SVG and PNG; install it "
            "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz)")
    proc = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode(), capture_output=True,
                          check=False, timeout=60)
    if proc.returncode != 0:
        raise ValueError(f"dot refused the graph: {proc.stderr.decode(errors='replace')}")
    out = proc.stdout
    if fmt == "svg":
        marker = f"<!-- fsm_exec dot source sha256: {_digest(dot_text)} -->\n".encode()
        head, sep, rest = out.partition(b"?>\n")
        out = head + sep + marker + rest if sep else marker + out
    return out


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def svg_source_digest(svg: bytes) -> str | None:
    """The DOT source hash recorded in an SVG written by :func:`render_graphviz`."""
    key = b"<!-- fsm_exec dot source sha256: "
    i = svg.find(key)
    if i < 0:
        return None
    j = svg.find(b" -->", i)
    return svg[i + len(key):j].decode() if j > 0 else None
