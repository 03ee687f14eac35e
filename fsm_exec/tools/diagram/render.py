"""Thin renderers of a diagram model: Mermaid, DOT and Markdown text."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from fsm_exec.boundary.escape import markdown_text, terminal_text
from fsm_exec.tools.diagram.model import (
    ADDED,
    CHANGED,
    REMOVED,
    DiagramEdge,
    DiagramModel,
    DiagramState,
)

# ------------------------------------------------------------------------ drawing rules

#: Colours, shared by the Mermaid and DOT renderers.
INK, FAINT, FAINT_TEXT = "#333333", "#b0b0b0", "#8a8a8a"
PATH = "#e65100"
PATH_FILL = "#fff3e0"
IN_FLIGHT = "#ffe0b2"  # blocks still there when the journal ends (in doubt after a crash)
ADDED_INK, REMOVED_INK, CHANGED_INK = "#2e7d32", "#c62828", "#b26a00"
#: A user lifecycle's state kinds: the words, shapes (Mermaid, DOT) and colours (fill, ink).
KINDS: dict[str, tuple[str, tuple[str, str], str, str, str]] = {
    "before_route": ("before route", ('("', '")'), "box", "#e3f2fd", "#1565c0"),
    "in_flight": ("in flight", ('{{"', '"}}'), "hexagon", "#fff3e0", "#e65100"),
    "settling": ("settling", ('[/"', '"/]'), "parallelogram", "#f3e5f5", "#6a1b9a"),
    "terminal": ("terminal", ('(["', '"])'), "box", "#eeeeee", "#333333"),
}
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
    if e.detail:
        label += f" {e.detail}"
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
    # Control characters are shown as their escapes; a backtick (which would end the
    # Markdown fence around the diagram) becomes its entity code too.
    text = terminal_text(text).replace("#", "#35;").replace('"', "#quot;")
    text = text.replace("|", "#124;").replace("`", "#96;")
    return text.replace("<", "#lt;").replace(">", "#gt;")


def _yaml_str(text: str) -> str:
    # A YAML double-quoted string, on one line, with no backtick (it would end the fence
    # around the diagram in Markdown): YAML reads \x60 as one.
    text = terminal_text(text).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("`", "\\x60") + '"'


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
        return "-.->" if e.implied else "-->", f"stroke:{INK},stroke-width:1.5px,color:{INK}"
    if model.kind == "block":
        if e.highlighted:
            return "==>", f"stroke:{PATH},stroke-width:3.5px,color:{PATH}"
        return "-.->", f"stroke:{FAINT},stroke-width:1px,color:{FAINT_TEXT}"
    if model.kind == "run" and e.count is not None:
        if e.count == 0:
            return "-.->", f"stroke:{FAINT},stroke-width:1px,color:{FAINT_TEXT}"
        w = edge_width(e.count, model.max_count)
        return "-->", f"stroke:{INK},stroke-width:{w}px,color:{INK}"
    return "-.->" if e.implied else "-->", ""


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


def _mermaid_legend(kinds: Sequence[str], taken: set[str]) -> list[str]:
    """A subgraph with one node per state kind drawn, in its shape and colour."""
    if not kinds:
        return []
    prefix = "legend"
    while any(t.startswith(prefix) for t in taken):
        prefix += "_"
    out = [f'    subgraph {prefix}["state kinds"]', "        direction LR"]
    for k in kinds:
        words, (left, right), *_ = KINDS[k]
        out.append(f"        {prefix}_{k}{left}{words}{right}")
    # Invisible links lay the legend out in a row (after every real link: linkStyle's
    # numbers stay those of the edges).
    out.append("        " + " ~~~ ".join(f"{prefix}_{k}" for k in kinds))
    out.append("    end")
    out.append(f"    style {prefix} fill:#ffffff,stroke:{FAINT},stroke-dasharray:5 3")
    for k in kinds:
        _, _, _, fill, ink = KINDS[k]
        out.append(f"    style {prefix}_{k} fill:{fill},stroke:{ink},color:{INK}")
    return out


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
        if s.state_kind in KINDS:
            shape = KINDS[s.state_kind][1]
        out.append(f"    {ids[s.name]}{shape[0]}{text}{shape[1]}")
    kinds = [k for k in KINDS if any(s.state_kind == k for s in model.states)]
    legend = _mermaid_legend(kinds, set(ids.values()) | {start})
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
    out += legend
    out.append(f"    style {start} fill:{INK},stroke:{INK}")
    for k in kinds:
        _, _, _, fill, ink = KINDS[k]
        out.append(f"    classDef kind_{k} fill:{fill},stroke:{ink},color:{INK}")
        members = [ids[s.name] for s in model.states if s.state_kind == k]
        out.append(f"    class {','.join(members)} kind_{k}")
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
    # Lines stay lines; control characters inside one are shown as their escapes.
    text = "\n".join(terminal_text(line) for line in text.split("\n"))
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_node(model: DiagramModel, s: DiagramState) -> list[str]:
    a = [f"label={_dot_str(chr(10).join(_state_lines(s)))}", f"tooltip={_dot_str(s.meaning)}"]
    if s.state_kind in KINDS:
        _, _, shape, fill, ink = KINDS[s.state_kind]
        a += [f"shape={shape}", f'fillcolor="{fill}"', f'color="{ink}"']
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
    if e.implied and e.change != REMOVED:
        a.append("style=dashed")
    return a


def _dot_legend(model: DiagramModel) -> list[str]:
    kinds = [k for k in KINDS if any(s.state_kind == k for s in model.states)]
    if not kinds:
        return []
    out = ["    subgraph cluster_legend {", '        label="state kinds";', "        fontsize=10;",
           f'        style=dashed; color="{FAINT}";']
    for k in kinds:
        words, _, shape, fill, ink = KINDS[k]
        extra = ", peripheries=2" if k == "terminal" else ""
        out.append(f'        "__kind_{k}" [label="{words}", shape={shape}, fillcolor="{fill}", '
                   f'color="{ink}"{extra}];')
    out.append("    }")
    return out


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
    out += _dot_legend(model)
    out.append("}")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------ Markdown


_md = markdown_text


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
        out.append(f"| {_md(e.source, code=True)} | {_md(e.trigger, code=True)} | "
                   f"{_md(e.dest, code=True)} |{cell} "
                   f"{_md(e.meaning)} |")
    return "\n".join(out) + "\n"


def _legend(model: DiagramModel) -> str | None:
    text = _kinds_legend(model)
    base = {
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
    return " ".join(t for t in (base, text) if t) or None


def _kinds_legend(model: DiagramModel) -> str | None:
    kinds = [k for k in KINDS if any(s.state_kind == k for s in model.states)]
    if not kinds:
        return None
    shapes = {"before_route": "rounded boxes", "in_flight": "hexagons",
              "settling": "parallelograms", "terminal": "stadiums"}
    said = "; ".join(f"{KINDS[k][0]}: {shapes[k]}" for k in kinds)
    return (f"State kinds, by shape and colour ({said}). Guards are in brackets; external "
            "triggers say (external), polled ones (poll); a dashed edge is a wait's timeout.")


def to_markdown(model: DiagramModel) -> str:
    """A review page: the Mermaid diagram (rendered by GitHub/GitLab) and the table; for a
    block its steps, for a diff the changes in words."""
    parts = [f"# {_md(model.title)}", ""]
    if model.caption:
        parts += [_md(model.caption[0].upper() + model.caption[1:]) + ".", ""]
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
        parts += [f"| {p.n} | {_md(p.timestamp)} | {_md(p.source, code=True)} | "
                  f"{_md(p.trigger, code=True)} | {_md(p.dest, code=True)} "
                  f"| {_md(p.attempt)} | {_md(p.detail)} |" for p in model.path]
        parts.append("")
    parts += [to_markdown_table(model).rstrip("\n"), ""]
    return "\n".join(parts)
