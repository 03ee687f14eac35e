"""Diagrams of the block lifecycle: a small model derived from the table, thin renderers
(Mermaid, DOT, Markdown; SVG/PNG through Graphviz's ``dot``), and overlays of what a run did.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections import Counter, defaultdict
from collections.abc import Iterable

import attrs

from ._journal import JournalRecord
from ._lifecycle import INITIAL_STATE, STATE_MEANINGS, TERMINAL_STATES, TRANSITIONS, BlockState


@attrs.frozen
class DiagramState:
    """A state as drawn: ``ended`` is how many blocks ended here (overlays)."""

    name: str
    meaning: str
    initial: bool = False
    terminal: bool = False
    ended: int | None = None
    highlighted: bool = False


@attrs.frozen
class DiagramEdge:
    """An edge as drawn: ``count`` is how often it was taken; ``steps`` numbers a block's
    moves along it and ``attempts`` gives each move's attempt (block overlays)."""

    source: str
    dest: str
    trigger: str
    meaning: str
    count: int | None = None
    steps: tuple[int, ...] = ()
    attempts: tuple[int, ...] = ()

    @property
    def highlighted(self) -> bool:
        return bool(self.steps)


@attrs.frozen
class DiagramModel:
    """What a renderer draws."""

    title: str
    states: tuple[DiagramState, ...]
    edges: tuple[DiagramEdge, ...]
    caption: str | None = None

    @property
    def counted(self) -> bool:
        return any(e.count is not None for e in self.edges)


def lifecycle_model(title: str = "Block lifecycle") -> DiagramModel:
    """The lifecycle table as a diagram model."""
    return DiagramModel(
        title=title,
        states=tuple(DiagramState(str(s), STATE_MEANINGS[s], s == INITIAL_STATE,
                                  s in TERMINAL_STATES) for s in BlockState),
        edges=tuple(DiagramEdge(str(e.source), str(e.dest), str(e.trigger), e.meaning)
                    for e in TRANSITIONS))


def _transitions(records: Iterable[JournalRecord], component: str) -> list[dict[str, object]]:
    return [r.data for r in records
            if r.component == component and r.event_type == "block_transition"]


def overlay_events(records: Iterable[JournalRecord], *, component: str = "ExecutionManager",
                   title: str = "Block lifecycle: what the run did") -> DiagramModel:
    """The lifecycle with how often each edge was taken and how many blocks ended where."""
    moves = _transitions(records, component)
    taken = Counter((m["source"], m["dest"], m["trigger"]) for m in moves)
    ended = Counter(m["dest"] for m in moves if m["dest"] in {str(s) for s in TERMINAL_STATES})
    blocks = len({m["block_id"] for m in moves})
    base = lifecycle_model(title)
    return DiagramModel(
        title=title,
        states=tuple(attrs.evolve(s, ended=ended[s.name] if s.terminal else None)
                     for s in base.states),
        edges=tuple(attrs.evolve(e, count=taken[(e.source, e.dest, e.trigger)])
                    for e in base.edges),
        caption=f"{len(moves)} transitions of {blocks} blocks")


def overlay_block(records: Iterable[JournalRecord], block_id: str, *,
                  component: str = "ExecutionManager") -> DiagramModel:
    """One block's path through the lifecycle, highlighted and numbered, with attempts.

    Raises ``LookupError`` if the journal has no transition of that block.
    """
    moves = [m for m in _transitions(records, component) if m["block_id"] == block_id]
    if not moves:
        raise LookupError(f"no transition of block {block_id!r} in the journal")
    steps: dict[tuple[object, object, object], list[tuple[int, int]]] = defaultdict(list)
    for n, m in enumerate(moves, start=1):
        attempt = m.get("attempt")
        steps[(m["source"], m["dest"], m["trigger"])].append(
            (n, attempt if isinstance(attempt, int) else 0))
    visited = {m["source"] for m in moves} | {m["dest"] for m in moves}
    last = moves[-1]["dest"]
    base = lifecycle_model(f"Block {block_id}")
    where = "ended" if last in {str(s) for s in TERMINAL_STATES} else "is still"
    return DiagramModel(
        title=base.title,
        states=tuple(attrs.evolve(s, highlighted=s.name in visited) for s in base.states),
        edges=tuple(attrs.evolve(e, steps=tuple(n for n, _ in steps[key]),
                                 attempts=tuple(a for _, a in steps[key]))
                    for e in base.edges for key in [(e.source, e.dest, e.trigger)]),
        caption=f"block {block_id} {where} in {last} after {len(moves)} transitions")


# ------------------------------------------------------------------------ renderers


def _edge_label(e: DiagramEdge) -> str:
    label = e.trigger
    if e.count is not None:
        label += f" \u00d7{e.count}"  # multiplication sign
    if e.steps:
        moves = ", ".join(f"step {n} attempt {a}" for n, a in zip(e.steps, e.attempts,
                                                                   strict=True))
        label += f" ({moves})"
    return label


def _state_label(s: DiagramState) -> str:
    if s.ended is None:
        return s.name
    return f"{s.name} ({s.ended} block{'s' * (s.ended != 1)})"


def to_mermaid(model: DiagramModel) -> str:
    """Mermaid ``stateDiagram-v2`` (renders natively on GitHub and GitLab)."""
    out = ["---", f"title: {_yaml_str(model.title)}", "---", "stateDiagram-v2",
           "    direction LR"]
    for s in model.states:
        out.append(f'    state "{_mermaid_text(_state_label(s))}" as {s.name}')
    for s in model.states:
        if s.initial:
            out.append(f"    [*] --> {s.name}")
    for e in model.edges:
        out.append(f"    {e.source} --> {e.dest} : {_mermaid_text(_edge_label(e))}")
    for s in model.states:
        if s.terminal:
            out.append(f"    {s.name} --> [*]")
    hot = [s.name for s in model.states if s.highlighted]
    if hot:
        out.append("    classDef onpath fill:#fff3e0,stroke:#e65100,stroke-width:3px")
        out.append(f"    class {','.join(hot)} onpath")
    if model.caption:
        out.append(f"    note right of {model.states[0].name} : "
                   f"{_mermaid_text(model.caption).replace(':', RATIO)}")
    return "\n".join(out) + "\n"


RATIO = "\u2236"  # looks like a colon; a real one ends a Mermaid note's text


def _mermaid_text(text: str) -> str:
    # Mermaid reads '"' as the end of a state description and '#' as an entity code.
    return text.replace('"', "'").replace("#", "№")


def _yaml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


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
        attrs_ = [f"label={_dot_str(_state_label(s))}", f"tooltip={_dot_str(s.meaning)}"]
        if s.terminal:
            attrs_.append("peripheries=2")
        if s.highlighted:
            attrs_ += ['color="#e65100"', 'fillcolor="#fff3e0"', "penwidth=2"]
        out.append(f"    {_dot_str(s.name)} [{', '.join(attrs_)}];")
    for s in model.states:
        if s.initial:
            out.append(f'    "__start" -> {_dot_str(s.name)};')
    for e in model.edges:
        attrs_ = [f"label={_dot_str(_edge_label(e))}", f"tooltip={_dot_str(e.meaning)}"]
        if e.highlighted:
            attrs_ += ['color="#e65100"', "penwidth=2.5", 'fontcolor="#e65100"']
        elif e.count == 0:
            attrs_ += ['color="#bbbbbb"', 'fontcolor="#999999"', "style=dashed"]
        out.append(f"    {_dot_str(e.source)} -> {_dot_str(e.dest)} [{', '.join(attrs_)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def to_markdown_table(model: DiagramModel) -> str:
    """The transition table in Markdown (with counts or steps for overlays)."""
    extra = " count |" if model.counted else (" steps |" if any(
        e.steps for e in model.edges) else "")
    out = [f"| source | trigger | dest |{extra} meaning |",
           "| --- | --- | --- |" + (" --- |" if extra else "") + " --- |"]
    for e in model.edges:
        cell = ""
        if model.counted:
            cell = f" {e.count} |"
        elif extra:
            cell = f" {', '.join(str(n) for n in e.steps)} |"
        out.append(f"| `{e.source}` | `{e.trigger}` | `{e.dest}` |{cell} {e.meaning} |")
    return "\n".join(out) + "\n"


def to_markdown(model: DiagramModel) -> str:
    """A review page: the Mermaid diagram (rendered by GitHub/GitLab) and the table."""
    parts = [f"# {model.title}", ""]
    if model.caption:
        parts += [model.caption, ""]
    parts += ["```mermaid", to_mermaid(model).rstrip("\n"), "```", "",
              to_markdown_table(model).rstrip("\n"), ""]
    return "\n".join(parts)


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
