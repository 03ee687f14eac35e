"""Diagrams: a model derived from the lifecycle table, and renderers whose output the real
parsers accept (Mermaid's own parser under Node, Graphviz's dot)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fsm_exec import TERMINAL_STATES, TRANSITIONS, BlockState, read_journal
from fsm_exec._diagram import (
    DiagramModel,
    GraphvizMissingError,
    _digest,
    lifecycle_model,
    overlay_block,
    overlay_events,
    render_graphviz,
    svg_source_digest,
    to_dot,
    to_markdown,
    to_markdown_table,
    to_mermaid,
)
from fsm_exec._lifecycle import STATE_MEANINGS

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


def models() -> dict[str, DiagramModel]:
    records = list(read_journal(GOLDEN / "live_faults.jsonl"))
    crashed = list(read_journal(GOLDEN / "crashed.jsonl"))
    return {
        "lifecycle": lifecycle_model(),
        "overlay": overlay_events(records),
        "block_path": overlay_block(records, "b2"),
        "in_flight": overlay_block(crashed, "c2"),
        "awkward": lifecycle_model('Block "q:1"; #2 \\ odd'),
    }


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


def test_overlay_counts_each_edge_and_where_blocks_ended() -> None:
    """An overlay counts how often each edge was taken and how many blocks ended where."""
    records = list(read_journal(GOLDEN / "live_faults.jsonl"))
    moves = [r.data for r in records if r.event_type == "block_transition"]
    m = overlay_events(records)
    for e in m.edges:
        assert e.count == sum(1 for d in moves if (d["source"], d["trigger"], d["dest"])
                              == (e.source, e.trigger, e.dest))
    ended = {s.name: s.ended for s in m.states}
    assert (ended["success"], ended["failed"], ended["routing"]) == (2, 1, None)
    assert m.caption == f"{len(moves)} transitions of 3 blocks"


def test_block_overlay_numbers_the_path_with_attempts() -> None:
    """A block overlay highlights its states and numbers its moves, with their attempts."""
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
    assert "ended in success" in (m.caption or "")
    in_flight = overlay_block(list(read_journal(GOLDEN / "crashed.jsonl")), "c2")
    assert "is still in routing" in (in_flight.caption or "")


def test_block_overlay_of_an_unknown_block_is_an_error() -> None:
    """Drawing a block the journal does not know raises LookupError."""
    with pytest.raises(LookupError, match="nope"):
        overlay_block(list(read_journal(GOLDEN / "live_faults.jsonl")), "nope")


# ------------------------------------------------------------------------ renderers


def test_mermaid_marks_initial_and_final_states() -> None:
    """Mermaid: the initial state fed by [*], every terminal state flowing to [*], a real
    YAML front-matter title, and the lowercase `class` keyword."""
    text = to_mermaid(models()["block_path"])
    lines = text.splitlines()
    assert lines[:4] == ["---", 'title: "Block b2"', "---", "stateDiagram-v2"]
    assert "    [*] --> queued" in lines
    for s in TERMINAL_STATES:
        assert f"    {s} --> [*]" in lines
    assert any(line.startswith("    class ") for line in lines)
    assert not any(line.lstrip().startswith("Class ") for line in lines)


def test_dot_marks_final_states_and_highlights_the_path() -> None:
    """DOT: terminal states drawn double, the initial one fed by a point, a block's path in
    colour, untaken edges of an overlay dashed."""
    text = to_dot(models()["block_path"])
    assert '"success" [label="success", tooltip=' in text
    assert text.count("peripheries=2") == len(TERMINAL_STATES)
    assert '"__start" -> "queued";' in text
    assert 'penwidth=2.5' in text
    assert "style=dashed" in to_dot(models()["overlay"])


def test_markdown_embeds_mermaid_and_the_table() -> None:
    """The review page holds a mermaid block and the transition table (with counts for
    overlays, steps for a block)."""
    page = to_markdown(models()["overlay"])
    assert "```mermaid\n---\ntitle:" in page
    assert "| source | trigger | dest | count | meaning |" in page
    assert "| source | trigger | dest | steps | meaning |" in to_markdown_table(
        models()["block_path"])
    assert to_markdown_table(lifecycle_model()).count("\n") == len(TRANSITIONS) + 2


def test_every_mermaid_output_parses_in_mermaids_own_parser(tmp_path: Path) -> None:
    """Mermaid's parser (the npm package, under Node with jsdom) accepts every diagram."""
    proc = mermaid_parse({k: to_mermaid(m) for k, m in models().items()}, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(": ok (stateDiagram)") == len(models())


def test_mermaid_parser_check_can_fail(tmp_path: Path) -> None:
    """The parser check is real: broken Mermaid is refused with the parser's message."""
    proc = mermaid_parse({"broken": "stateDiagram-v2\n    queued -> routing : x\n"}, tmp_path)
    assert proc.returncode == 1 and "Parse error" in proc.stdout


def test_committed_mermaid_diagrams_parse(tmp_path: Path) -> None:
    """The review diagrams in diagrams/ parse, and so do the mermaid blocks of their .md
    pages and of the README."""
    texts = {p.stem: p.read_text() for p in (ROOT / "diagrams").glob("*.mmd")}
    for p in [*(ROOT / "diagrams").glob("*.md"), ROOT / "README.md"]:
        body = p.read_text().split("```mermaid\n", 1)[1].split("```", 1)[0]
        texts[p.stem + "_md"] = body
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
    assert svg.startswith(b"<?xml") and svg_source_digest(svg) == _digest(text)
    assert render_graphviz(text, "png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert svg_source_digest(b"<svg/>") is None


def test_dot_that_graphviz_refuses_is_an_error() -> None:
    """A graph Graphviz refuses raises ValueError with dot's own message."""
    dot_accepts("digraph { }")
    with pytest.raises(ValueError, match="dot refused"):
        render_graphviz("digraph { a -> }", "svg")


def test_missing_graphviz_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Graphviz, SVG/PNG fail with a message that says what to install."""
    monkeypatch.setattr("fsm_exec._diagram.shutil.which", lambda name: None)
    with pytest.raises(GraphvizMissingError, match="apt-get install graphviz"):
        render_graphviz(to_dot(lifecycle_model()))


def test_svg_without_xml_declaration_still_gets_its_marker(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The source marker is added even when dot writes no XML declaration."""

    class Done:
        returncode = 0
        stdout = b"<svg></svg>"
        stderr = b""

    monkeypatch.setattr("fsm_exec._diagram.shutil.which", lambda name: "/usr/bin/dot")
    monkeypatch.setattr("fsm_exec._diagram.subprocess.run", lambda *a, **k: Done())
    svg = render_graphviz("digraph { }")
    assert svg.startswith(b"<!-- fsm_exec dot source sha256: ")
    assert svg_source_digest(svg) == _digest("digraph { }")


def test_committed_diagrams_are_current() -> None:
    """diagrams/ holds what the code generates (the CLI's --check, called directly)."""
    from fsm_exec._cli import stale_diagrams

    assert stale_diagrams(ROOT / "diagrams") == []
