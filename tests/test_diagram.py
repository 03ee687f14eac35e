"""Diagrams: the table as data, a model derived from it, diffs of two tables, and renderers
whose output the real parsers accept (Mermaid's own parser under Node, Graphviz's dot).
How the diagrams look in a browser is pinned by tests/test_browser.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import attrs
import pytest

from fsm_exec import TERMINAL_STATES, TRANSITIONS, BlockState, read_journal
from fsm_exec.core.lifecycle import STATE_MEANINGS
from fsm_exec.tools.diagram import (
    SHADES,
    DiagramEdge,
    DiagramModel,
    GraphvizMissingError,
    JournalOffTableError,
    LifecycleFileError,
    LifecycleTable,
    TableEdge,
    TableState,
    current_table,
    diff_model,
    diff_tables,
    dot_digest,
    drawing_order,
    edge_width,
    lifecycle_model,
    overlay_block,
    overlay_events,
    render_graphviz,
    shade,
    svg_source_digest,
    to_dot,
    to_markdown,
    to_markdown_table,
    to_mermaid,
)

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
MERMAID_TOOL = ROOT / "tools" / "mermaid"
# .ci/run sets this: there the real parsers must run, never skip.
REQUIRED = os.environ.get("FSM_EXEC_REQUIRE_RENDERERS") == "1"


def _need(ok: bool, why: str) -> None:
    if not ok:
        if REQUIRED:
            pytest.fail(f"{why} (FSM_EXEC_REQUIRE_RENDERERS=1: .ci/run installs it)")
        pytest.skip(why)


def mermaid_parse(texts: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run Mermaid's own parser (tools/mermaid/parse.mjs) over the texts."""
    node = shutil.which("node")
    _need(node is not None, "Node.js is not installed")
    _need((MERMAID_TOOL / "node_modules" / "mermaid").is_dir(),
          "Mermaid is not installed: npm ci --prefix tools/mermaid")
    files = []
    for name, text in texts.items():
        path = tmp_path / f"{name}.mmd"
        path.write_text(text)
        files.append(str(path))
    assert node is not None
    return subprocess.run([node, str(MERMAID_TOOL / "parse.mjs"), *files],
                          capture_output=True, text=True, timeout=120, check=False)


def dot_accepts(text: str) -> subprocess.CompletedProcess[bytes]:
    exe = shutil.which("dot")
    _need(exe is not None, "Graphviz's dot is not installed: apt-get install graphviz")
    assert exe is not None
    return subprocess.run([exe, "-Tsvg"], input=text.encode(), capture_output=True,
                          timeout=60, check=False)


def older_table() -> LifecycleTable:
    """The current table before ``cancelled``, with an edge since removed and reworded
    meanings: a lifecycle change made in a test."""
    t = current_table()
    return attrs.evolve(
        t, states=tuple(attrs.evolve(s, meaning="Old words.") if s.name == "routing" else s
                        for s in t.states if s.name != "cancelled"),
        edges=(*(attrs.evolve(e, meaning="Old edge words.") if e.trigger == "executed" else e
                 for e in t.edges if e.trigger != "cancel"),
               TableEdge("routing", "abort", "failed", "An edge that went away.")))


def awkward_table() -> LifecycleTable:
    """A table whose names Mermaid would read as syntax unless escaped."""
    return LifecycleTable(
        states=(TableState("end", 'Starts "here" #1', "initial"),
                TableState("Big State", "Spaces <b>and</b> tags", ""),
                TableState("o", "One letter", "terminal")),
        edges=(TableEdge("end", "go|now", "Big State", "a pipe"),
               TableEdge("Big State", "x:y", "o", "a colon")))


def models() -> dict[str, DiagramModel]:
    records = list(read_journal(GOLDEN / "live_faults.jsonl"))
    crashed = list(read_journal(GOLDEN / "crashed.jsonl"))
    return {
        "lifecycle": lifecycle_model(),
        "overlay": overlay_events(records),
        "block_path": overlay_block(records, "b2"),
        "in_flight": overlay_block(crashed, "c2"),
        "crashed_run": overlay_events(crashed),
        "diff": diff_model(older_table()),
        "awkward": lifecycle_model('Block "q:1"; #2 \\ odd', awkward_table()),
    }


# ------------------------------------------------------------------------ the table


def test_current_table_is_the_code() -> None:
    """current_table holds the code's states (with kinds and meanings) and edges, in order."""
    t = current_table()
    assert [s.name for s in t.states] == [str(s) for s in BlockState]
    assert [s.meaning for s in t.states] == list(STATE_MEANINGS.values())
    assert {s.name for s in t.states if s.kind == "terminal"} == {str(s) for s in TERMINAL_STATES}
    assert [s.name for s in t.states if s.kind == "initial"] == ["queued"]
    assert [e.key for e in t.edges] == [
        (str(e.source), str(e.trigger), str(e.dest)) for e in TRANSITIONS]


def test_table_json_round_trips() -> None:
    """A table written as JSON reads back equal; the JSON is stable text."""
    t = current_table()
    assert LifecycleTable.from_json(t.to_json()) == t
    assert t.to_json() == current_table().to_json()
    assert t.to_json().startswith('{\n  "format": "fsm_exec.lifecycle/1",')


@pytest.mark.parametrize(("text", "message"), [
    ("{", "not JSON"),
    ("[]", "not a lifecycle table"),
    ('{"format": "fsm_exec.lifecycle/1", "states": [{"name": "a"}], "transitions": []}',
     "lacks 'meaning'"),
    ('{"format": "fsm_exec.lifecycle/1", "states": 3, "transitions": []}', "lacks"),
])
def test_unreadable_table_json_names_the_file(text: str, message: str) -> None:
    """A file that is no lifecycle table raises LifecycleFileError (a ValueError) naming it."""
    with pytest.raises(LifecycleFileError, match=f"old.json: .*{message}") as info:
        LifecycleTable.from_json(text, "old.json")
    assert isinstance(info.value, ValueError)


def test_diff_finds_every_kind_of_change() -> None:
    """diff_tables lists added and removed states and edges, and changed meanings and
    kinds, in words; the same table has no change."""
    old = older_table()
    old = attrs.evolve(old, states=tuple(attrs.evolve(s, kind="") if s.name == "failed" else s
                                         for s in old.states))
    d = diff_tables(old, current_table())
    assert d.added_states == ("cancelled",)
    assert d.removed_states == ()
    assert [e.words() for e in d.added_edges] == ["queued --cancel--> cancelled"]
    assert [e.words() for e in d.removed_edges] == ["routing --abort--> failed"]
    assert d.changed_states == {"routing", "failed"}
    assert d.changed_edges == {("routing", "executed", "pending_reconciliation")}
    lines = d.lines()
    assert lines[:3] == ["added state cancelled", "added edge queued --cancel--> cancelled",
                         "removed edge routing --abort--> failed"]
    assert "state failed was neither initial nor terminal, is terminal" in lines
    assert any(x.startswith("meaning of state routing: 'Old words.' -> ") for x in lines)
    assert any(x.startswith("meaning of edge routing --executed--> pending_reconciliation: "
                            "'Old edge words.' -> ") for x in lines)
    assert diff_tables(current_table(), current_table()).empty
    back = diff_tables(current_table(), old)
    assert back.removed_states == ("cancelled",) and not back.empty


# ------------------------------------------------------------------------ the model


def test_model_is_the_table() -> None:
    """The diagram model has exactly the table's states (with meanings) and edges."""
    m = lifecycle_model()
    assert [s.name for s in m.states] == [str(s) for s in BlockState]
    assert [s.meaning for s in m.states] == list(STATE_MEANINGS.values())
    assert [(e.source, e.trigger, e.dest) for e in m.edges] == [
        (str(e.source), str(e.trigger), str(e.dest)) for e in TRANSITIONS]
    assert {s.name for s in m.states if s.terminal} == {str(s) for s in TERMINAL_STATES}
    assert [s.name for s in m.states if s.initial] == ["queued"]


def test_model_follows_any_table() -> None:
    """A modified table gives a model of that table: nothing is drawn from the code's."""
    m = lifecycle_model(table=awkward_table())
    assert [s.name for s in m.states] == ["end", "Big State", "o"]
    assert [e.trigger for e in m.edges] == ["go|now", "x:y"]


def test_overlay_counts_each_edge_and_where_blocks_ended() -> None:
    """An overlay counts how often each edge was taken and how many blocks ended where."""
    records = list(read_journal(GOLDEN / "live_faults.jsonl"))
    moves = [r.data for r in records if r.event_type == "block_transition"]
    m = overlay_events(records)
    assert m.kind == "run"
    for e in m.edges:
        assert e.count == sum(1 for d in moves if (d["source"], d["trigger"], d["dest"])
                              == (e.source, e.trigger, e.dest))
    ended = {s.name: s.ended for s in m.states}
    assert (ended["success"], ended["failed"], ended["routing"]) == (2, 1, None)
    shares = {s.name: s.share for s in m.states}
    assert shares["success"] == pytest.approx(2 / 3) and shares["routing"] == 0
    assert m.caption == f"{len(moves)} transitions of 3 blocks"


def test_overlay_marks_blocks_left_in_flight() -> None:
    """A block still in flight when the journal ends is counted on its state and named in
    the caption."""
    m = overlay_events(list(read_journal(GOLDEN / "crashed.jsonl")))
    assert {s.name: s.left for s in m.states}["routing"] == 1
    assert "1 still in flight when the journal ends" in (m.caption or "")


def test_overlay_of_no_moves_says_so() -> None:
    """A journal in which no block moved draws zero counts and says no block moved."""
    m = overlay_events([])
    assert m.caption == "no block moved in this journal"
    assert all(e.count == 0 for e in m.edges)


def test_overlay_refuses_a_move_that_is_no_edge() -> None:
    """A transition that is not an edge of the table raises, naming file:line, instead of
    being drawn as a number that does not add up."""
    records = list(read_journal(GOLDEN / "live_faults.jsonl"))
    bad = next(i for i, r in enumerate(records) if r.event_type == "block_transition")
    records[bad] = attrs.evolve(records[bad], data={**records[bad].data, "dest": "success"})
    with pytest.raises(JournalOffTableError, match=rf"live_faults.jsonl:{records[bad].line}: "
                                                   r"transition queued --start--> success"):
        overlay_events(records)
    with pytest.raises(JournalOffTableError):
        overlay_block(records, str(records[bad].data["block_id"]))


def test_block_overlay_numbers_the_path_with_attempts() -> None:
    """A block overlay highlights its states and numbers its moves, with their attempts,
    and lists each step with its details."""
    records = list(read_journal(GOLDEN / "live_faults.jsonl"))
    moves = [r.data for r in records if r.event_type == "block_transition"
             and r.data["block_id"] == "b2"]
    m = overlay_block(records, "b2")
    steps = {(e.source, e.trigger, e.dest): list(zip(e.steps, e.attempts, strict=True))
             for e in m.edges if e.steps}
    flat = sorted((n, key, a) for key, pairs in steps.items() for n, a in pairs)
    assert [(key, a) for _, key, a in flat] == [
        ((d["source"], d["trigger"], d["dest"]), d["attempt"]) for d in moves]
    assert {s.name for s in m.states if s.highlighted} == (
        {d["source"] for d in moves} | {d["dest"] for d in moves})
    assert [s.name for s in m.states if s.current] == ["success"]
    assert m.caption == f"ended in success after {len(moves)} transitions"
    assert [(p.n, p.trigger, p.attempt) for p in m.path] == [
        (n, d["trigger"], d["attempt"]) for n, d in enumerate(moves, start=1)]
    assert any("reason" in p.detail for p in m.path)
    in_flight = overlay_block(list(read_journal(GOLDEN / "crashed.jsonl")), "c2")
    assert in_flight.caption == "is still in routing after 1 transitions"


def test_block_overlay_of_an_unknown_block_is_an_error() -> None:
    """Drawing a block the journal does not know raises LookupError."""
    with pytest.raises(LookupError, match="nope"):
        overlay_block(list(read_journal(GOLDEN / "live_faults.jsonl")), "nope")


def test_diff_model_draws_new_and_old_together() -> None:
    """A diff model holds the new table plus the removed states and edges, each marked, and
    lists the changes as notes."""
    m = diff_model(older_table(), since="old.json")
    change = {e.trigger + ":" + e.source: e.change for e in m.edges}
    assert change["cancel:queued"] == "added" and change["abort:routing"] == "removed"
    assert change["executed:routing"] == "changed" and change["start:queued"] is None
    assert {s.name: s.change for s in m.states}["cancelled"] == "added"
    assert {s.name: s.change for s in m.states}["routing"] == "changed"
    assert m.caption == f"{len(m.notes)} changes since old.json"
    gone = diff_model(current_table(), older_table())
    assert {s.name: s.change for s in gone.states}["cancelled"] == "removed"
    assert diff_model(current_table()).caption == "no change since the older table"


# ------------------------------------------------------------------------ drawing rules


def test_drawing_order_puts_two_way_pairs_last() -> None:
    """One-way edges go to the layout first, in table order; edges of two-way pairs after."""
    m = lifecycle_model()
    order = [m.edges[i] for i in drawing_order(m.edges)]
    pairs = {(e.source, e.dest) for e in m.edges}
    two_way = [(e.dest, e.source) in pairs for e in order]
    assert two_way == sorted(two_way)
    assert sorted(order, key=m.edges.index) == list(m.edges)
    assert [e.trigger for e in order if (e.dest, e.source) in pairs] == [
        "route_failed", "reroute", "found_executed", "resume_reconciliation",
        "reconciliation_timeout"]


def test_shades_and_widths_grow_with_the_numbers() -> None:
    """A state's shade darkens with the share of blocks that ended there; an edge's width
    grows with its count; nothing is the lightest shade and width 1."""
    fills = [shade(x)[0] for x in (0, 0.01, 0.1, 0.5, 0.9)]
    assert fills == list(SHADES)
    assert shade(0.9)[1] == "#ffffff" and shade(0.01)[1] != "#ffffff"
    widths = [edge_width(n, 100) for n in (0, 1, 10, 100)]
    assert widths == sorted(widths) and widths[0] == 1.0 and widths[-1] == 5.0
    assert edge_width(3, 0) == 1.0


# ------------------------------------------------------------------------ renderers


def test_mermaid_is_a_styled_flowchart() -> None:
    """Mermaid: a flowchart with a title (and layout settings) in front matter, the initial
    state fed by a dot, terminal states as stadiums, a style for every state and edge."""
    m = models()["overlay"]
    text = to_mermaid(m)
    lines = text.splitlines()
    assert lines[:2] == ["---", f'title: "Block lifecycle: what the run did \u00b7 {m.caption}"']
    assert "flowchart TB" in lines and "    start_marker --> queued" in lines
    for s in TERMINAL_STATES:
        assert any(line.startswith(f'    {s}(["{s}<br>') for line in lines)
    assert '    queued("queued")' in lines
    links = [line for line in lines if "-->" in line or "-.->" in line or "==>" in line]
    assert len(links) == len(TRANSITIONS) + 1
    assert sum(1 for line in lines if line.startswith("    linkStyle ")) == len(links)
    assert sum(1 for line in lines if line.startswith("    style ")) == len(BlockState) + 1


def test_mermaid_run_overlay_weighs_the_edges() -> None:
    """Run overlay: taken edges solid and as wide as their count says, untaken ones dotted
    and grey, states filled by their share."""
    text = to_mermaid(models()["overlay"])
    assert '    queued -->|"start \u00d73"| routing' in text
    assert '    queued -.->|"cancel \u00d70"| cancelled' in text
    assert "stroke:#b0b0b0,stroke-width:1px" in text
    assert f"style success fill:{shade(2 / 3)[0]}" in text


def test_mermaid_block_overlay_highlights_the_path() -> None:
    """Block overlay: the path's edges thick and coloured with their step numbers, the rest
    dotted; the state where the block ended filled."""
    text = to_mermaid(models()["block_path"])
    assert '    queued ==>|"start \u00b7 1"| routing' in text
    assert '    queued -.->|"cancel"| cancelled' in text
    assert "stroke:#e65100,stroke-width:3.5px" in text
    assert "style success fill:#e65100" in text


def test_mermaid_escapes_what_it_would_read_as_syntax() -> None:
    """Quotes, #, <, > in names become entity codes; names that are Mermaid keywords or
    not plain identifiers get safe ids."""
    text = to_mermaid(models()["awkward"])
    assert 'title: "Block \\"q:1\\"; #2 \\\\ odd"' in text
    assert '    state_0("end")' in text and '    state_1("Big State")' in text
    assert '    state_2(["o"])' in text
    assert '|"go|now"|' not in text and '|"x:y"|' in text
    assert "#35;" not in text  # no '#' in any label here; see the title line above
    m = lifecycle_model(table=LifecycleTable(
        (TableState("a", "A", "initial"), TableState("b", 'say "hi" #1 <x>', "terminal")),
        (TableEdge("a", 'q"#<', "b", "x"),)))
    assert '|"q#quot;#35;#lt;"|' in to_mermaid(m)


def test_dot_marks_final_states_and_highlights_the_path() -> None:
    """DOT: terminal states drawn double, the initial one fed by a point, a block's path in
    colour, untaken edges of an overlay dashed, widths by count."""
    text = to_dot(models()["block_path"])
    assert '"success" [label="success", tooltip=' in text
    assert text.count("peripheries=2") == len(TERMINAL_STATES)
    assert '"__start" -> "queued";' in text
    assert 'penwidth=2.5' in text
    overlay = to_dot(models()["overlay"])
    assert "style=dashed" in overlay and "penwidth=5.0" in overlay
    assert 'label="success\\n2 blocks"' in overlay
    crashed = to_dot(models()["crashed_run"])
    assert '"routing" [label="routing\\n1 in flight"' in crashed


def test_dot_diff_styles_added_removed_and_changed() -> None:
    """DOT diff: added edges green and bold, removed red and dashed, changed amber."""
    text = to_dot(models()["diff"])
    assert '"queued" -> "cancelled" [label="cancel (added)", tooltip=' in text
    assert 'color="#2e7d32"' in text and 'color="#c62828"' in text
    assert 'color="#b26a00"' in text
    assert '"cancelled" [label="cancelled\\n(added)"' in text


def test_markdown_embeds_mermaid_and_the_table() -> None:
    """The review page holds a legend, a mermaid block and the transition table (with
    counts for overlays, steps and a step table for a block, the changes for a diff)."""
    page = to_markdown(models()["overlay"])
    assert "```mermaid\n---\ntitle:" in page and "Line width grows" in page
    assert "| source | trigger | dest | count | meaning |" in page
    block = to_markdown(models()["block_path"])
    assert "| source | trigger | dest | steps | meaning |" in block
    # b2 started when b1's retries were over (a live record carries its step's time)
    assert "## Steps" in block and "| 1 | 2025-10-01T00:00:05.350000+00:00 | `queued` | " \
        "`start` |" in block
    diff = to_markdown(models()["diff"])
    assert "## Changes\n\n- added state cancelled\n" in diff
    assert "| source | trigger | dest | change | meaning |" in diff
    assert to_markdown_table(lifecycle_model()).count("\n") == len(TRANSITIONS) + 2
    assert "\\|" in to_markdown_table(lifecycle_model(table=awkward_table()))


def test_every_mermaid_output_parses_in_mermaids_own_parser(tmp_path: Path) -> None:
    """Mermaid's parser (the npm package, under Node with jsdom) accepts every diagram."""
    proc = mermaid_parse({k: to_mermaid(m) for k, m in models().items()}, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(": ok (flowchart-v2)") == len(models())


def test_mermaid_parser_check_can_fail(tmp_path: Path) -> None:
    """The parser check is real: broken Mermaid is refused with the parser's message."""
    proc = mermaid_parse({"broken": "stateDiagram-v2\n    queued -> routing : x\n"}, tmp_path)
    assert proc.returncode == 1 and "Parse error" in proc.stdout


def test_committed_mermaid_diagrams_parse(tmp_path: Path) -> None:
    """The review diagrams in diagrams/ parse, and so do the mermaid blocks of their .md
    pages and of the docs' lifecycle page."""
    texts = {p.stem: p.read_text() for p in (ROOT / "diagrams").glob("*.mmd")}
    for p in [*(ROOT / "diagrams").glob("*.md"), ROOT / "docs" / "concepts" / "lifecycle.md"]:
        for n, chunk in enumerate(p.read_text().split("```mermaid\n")[1:]):
            texts[f"{p.stem}_md{n}"] = chunk.split("```", 1)[0]
    assert len(texts) >= 4
    proc = mermaid_parse(texts, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_dot_output_is_accepted_by_graphviz() -> None:
    """Graphviz's dot accepts every DOT output (and produces an SVG)."""
    for name, m in models().items():
        proc = dot_accepts(to_dot(m))
        assert proc.returncode == 0, (name, proc.stderr.decode())
        assert b"<svg" in proc.stdout


def test_svg_records_its_dot_source() -> None:
    """render_graphviz SVG carries the hash of its DOT source, so staleness is checkable
    without Graphviz; PNG is a PNG."""
    dot_accepts("digraph { }")  # skips without Graphviz
    text = to_dot(lifecycle_model())
    svg = render_graphviz(text, "svg")
    assert svg.startswith(b"<?xml") and svg_source_digest(svg) == dot_digest(text)
    assert render_graphviz(text, "png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert svg_source_digest(b"<svg/>") is None


def test_dot_that_graphviz_refuses_is_an_error() -> None:
    """A graph Graphviz refuses raises ValueError with dot's own message."""
    dot_accepts("digraph { }")
    with pytest.raises(ValueError, match="dot refused"):
        render_graphviz("digraph { a -> }", "svg")


def test_missing_graphviz_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Graphviz, SVG/PNG fail with a message that says what to install."""
    monkeypatch.setattr("fsm_exec.tools.diagram.graphviz.shutil.which", lambda name: None)
    with pytest.raises(GraphvizMissingError, match="apt-get install graphviz"):
        render_graphviz(to_dot(lifecycle_model()))


def test_svg_without_xml_declaration_still_gets_its_marker(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The source marker is added even when dot writes no XML declaration."""

    class Done:
        returncode = 0
        stdout = b"<svg></svg>"
        stderr = b""

    monkeypatch.setattr("fsm_exec.tools.diagram.graphviz.shutil.which", lambda name: "/usr/bin/dot")
    monkeypatch.setattr("fsm_exec.tools.diagram.graphviz.subprocess.run", lambda *a, **k: Done())
    svg = render_graphviz("digraph { }")
    assert svg.startswith(b"<!-- fsm_exec dot source sha256: ")
    assert svg_source_digest(svg) == dot_digest("digraph { }")


def test_committed_diagrams_are_current() -> None:
    """diagrams/ holds what the code generates (the CLI's --check, called directly), the
    table as JSON included."""
    from fsm_exec.cli.commands.diagram import stale_diagrams

    assert stale_diagrams(ROOT / "diagrams") == []
    committed = (ROOT / "diagrams" / "block_lifecycle.json").read_text()
    assert LifecycleTable.from_json(committed) == current_table()


def test_edge_highlight_is_its_steps() -> None:
    """An edge is highlighted exactly when a block's steps took it."""
    e = DiagramEdge("a", "b", "t", "m")
    assert not e.highlighted and attrs.evolve(e, steps=(1,)).highlighted
