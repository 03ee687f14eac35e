"""What a reviewer sees: every committed diagram, each overlay kind, a diff and the reports,
rendered in headless Chromium (Debian's ``chromium``, driven by puppeteer-core) with the
``mermaid`` package, then measured: nothing fails to render, every state and edge label is
drawn, no label box intersects another, no label sits on another edge, and the lifecycle's
edges do not cross (tools/mermaid/render.mjs, page.mjs).

Needs Node, ``npm ci --prefix tools/mermaid`` and Chromium; elsewhere these tests skip, saying
what is missing. ``.ci/run`` installs all three and sets ``FSM_EXEC_REQUIRE_RENDERERS=1``, so
there they fail instead of skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_diagram import older_table

from fsm_exec import read_journal
from fsm_exec.cli.demo import run_demo
from fsm_exec.tools.diagram import (
    MERMAID_CONFIG,
    DiagramModel,
    diff_model,
    lifecycle_model,
    overlay_block,
    overlay_events,
    to_mermaid,
)
from fsm_exec.tools.diagram.render import _edge_label, _state_lines
from fsm_exec.tools.report import SECTIONS, build_report, to_html
from fsm_exec.tools.report import to_markdown as report_markdown

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "mermaid"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
REQUIRED = os.environ.get("FSM_EXEC_REQUIRE_RENDERERS") == "1"


def _need() -> str:
    """The node executable; skips (or, where required, fails) saying what is missing."""
    node = shutil.which("node")
    missing = ("Node.js is not installed" if node is None else
               "puppeteer-core and mermaid are not installed: npm ci --prefix tools/mermaid"
               if not (TOOL / "node_modules" / "puppeteer-core").is_dir() else
               f"Chromium is not installed at {CHROMIUM} (Debian: apt-get install chromium; "
               "or set CHROMIUM)" if not Path(CHROMIUM).exists() else None)
    if missing:
        if REQUIRED:
            pytest.fail(f"{missing} (FSM_EXEC_REQUIRE_RENDERERS=1: .ci/run installs it)")
        pytest.skip(missing)
    assert node is not None
    return node


def run_tool(script: str, *args: str | Path) -> Any:
    node = _need()
    proc = subprocess.run([node, str(TOOL / script), *map(str, args)], capture_output=True,
                          text=True, timeout=180, check=False,
                          env={**os.environ, "CHROMIUM": CHROMIUM})
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


def mermaid_blocks(text: str) -> list[str]:
    return [chunk.split("```", 1)[0] for chunk in text.split("```mermaid\n")[1:]]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Log directories of the live and backtest demo runs, and of a live run cut off while
    a block was in flight (as a crash leaves it)."""
    root = tmp_path_factory.mktemp("demo")
    logs = {}
    for mode in ("live", "backtest"):
        run_demo(mode, out=root / mode, report=False)
        logs[mode] = root / mode / "logs" / "events"
    lines = (logs["live"] / "execution_manager_events.jsonl").read_text().splitlines(True)
    cut = next(i for i, line in enumerate(lines) if '"route_failed"' in line)
    crashed = root / "crashed" / "execution_manager_events.jsonl"
    crashed.parent.mkdir()
    crashed.write_text("".join(lines[:cut + 1]))
    logs["crashed"] = crashed.parent
    return logs


@pytest.fixture(scope="module")
def models(demo: dict[str, Path]) -> dict[str, DiagramModel]:
    """Every kind of diagram: the lifecycle, run overlays, block overlays (each shape of
    path the live demo takes, and one left in flight), and a diff."""
    live = list(read_journal(demo["live"]))
    out = {"lifecycle": lifecycle_model(),
           "run_live": overlay_events(live, title="the live demo run"),
           "run_backtest": overlay_events(list(read_journal(demo["backtest"]))),
           "run_crashed": overlay_events(list(read_journal(demo["crashed"]))),
           "diff": diff_model(older_table(), since="a table made in the test")}
    shapes: set[tuple[Any, ...]] = set()
    for r in live:
        if r.event_type == "block_transition" and r.data["trigger"] == "start":
            m = overlay_block(live, r.data["block_id"])
            shape = tuple(e.steps for e in m.edges)
            if shape not in shapes:
                shapes.add(shape)
                out[f"block_{r.data['block_id']}"] = m
    crashed = list(read_journal(demo["crashed"]))
    out["block_in_flight"] = overlay_block(crashed, crashed[-1].data["block_id"])
    return out


@pytest.fixture(scope="module")
def rendered(models: dict[str, DiagramModel], demo: dict[str, Path],
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Everything rendered in one browser: the models above, the committed diagrams (and
    the Mermaid of their pages and of the docs' lifecycle page), and the Markdown reports'
    Mermaid."""
    d = tmp_path_factory.mktemp("mmd")
    texts = {f"model_{k}": to_mermaid(m) for k, m in models.items()}
    texts |= {f"committed_{p.stem}": p.read_text() for p in (ROOT / "diagrams").glob("*.mmd")}
    for p in [*(ROOT / "diagrams").glob("*.md"), ROOT / "docs" / "concepts" / "lifecycle.md"]:
        for n, block in enumerate(mermaid_blocks(p.read_text())):
            texts[f"page_{p.stem}_{n}"] = block
    for mode in ("live", "backtest"):
        page = report_markdown(build_report(demo[mode], title=f"the {mode} demo run"))
        for n, block in enumerate(mermaid_blocks(page)):
            texts[f"report_{mode}_{n}"] = block
    texts["unconfigured_run"] = to_mermaid(models["run_live"]).replace(
        "\n".join(MERMAID_CONFIG) + "\n", "")
    files = []
    for name, text in texts.items():
        (d / f"{name}.mmd").write_text(text)
        files.append(d / f"{name}.mmd")
    results = run_tool("render.mjs", "--screenshots", d / "png", *files)
    return {Path(r["file"]).stem: r for r in results}


def _squash(text: str) -> str:
    return "".join(text.split())


def test_every_diagram_renders_without_errors(rendered: dict[str, Any]) -> None:
    """Every diagram renders in Chromium with no error, no console error and no request."""
    assert len(rendered) > 20
    for name, r in rendered.items():
        assert r["ok"], (name, r.get("error"))
        assert not [p for p in r["problems"] if p.startswith(("console", "network"))], name


def test_every_state_and_edge_label_is_drawn(rendered: dict[str, Any],
                                             models: dict[str, DiagramModel]) -> None:
    """Each model's states and edge labels are all in the rendered SVG, each once, joining
    the states the model says."""
    for name, m in models.items():
        r = rendered[f"model_{name}"]
        nodes = sorted(_squash(n["text"]) for n in r["nodes"] if n["text"].strip())
        assert nodes == sorted(_squash("".join(_state_lines(s))) for s in m.states), name
        labels = sorted(_squash(x["text"]) for x in r["labels"])
        assert labels == sorted(_squash(_edge_label(e)) for e in m.edges), name
        drawn = {(_squash(e["from"] or ""), _squash(e["label"] or ""), _squash(e["to"] or ""))
                 for e in r["edges"] if e["label"]}
        names = {s.name: _squash("".join(_state_lines(s))) for s in m.states}
        assert drawn == {(names[e.source], _squash(_edge_label(e)), names[e.dest])
                         for e in m.edges}, name


def test_committed_diagrams_draw_every_state(rendered: dict[str, Any]) -> None:
    """The committed lifecycle draws the table's states and edges; the pages' Mermaid is the
    same drawing as the .mmd beside them."""
    lifecycle = lifecycle_model()
    r = rendered["committed_block_lifecycle"]
    assert {n["text"] for n in r["nodes"] if n["text"].strip()} == {
        s.name for s in lifecycle.states}
    assert sorted(x["text"] for x in r["labels"]) == sorted(e.trigger for e in lifecycle.edges)
    assert rendered["page_block_lifecycle_0"]["labels"] == r["labels"]
    assert rendered["page_lifecycle_0"]["labels"] == r["labels"]


def test_no_label_overlaps_or_sits_on_another_edge(rendered: dict[str, Any]) -> None:
    """In every diagram (reports' charts too) no two label boxes intersect, and no edge runs
    through another edge's label or through a state it does not join."""
    bad = {name: [p for p in r["problems"] if p.startswith("overlap") or "runs through" in p]
           for name, r in rendered.items() if name != "unconfigured_run"}
    assert {k: v for k, v in bad.items() if v} == {}


def test_lifecycle_and_overlays_have_no_crossing_edges(rendered: dict[str, Any]) -> None:
    """The lifecycle and its run and block overlays are laid out without crossing edges
    (a diff of another table may cross)."""
    crossings = {name: [p for p in r["problems"] if p.startswith("crossing")]
                 for name, r in rendered.items()
                 if not name.endswith("diff") and name != "unconfigured_run"}
    assert {k: v for k, v in crossings.items() if v} == {}


def test_the_geometry_check_finds_overlaps(rendered: dict[str, Any]) -> None:
    """The check is real: without its layout settings the live run's overlay has labels on
    each other, and the check says so."""
    problems = rendered["unconfigured_run"]["problems"]
    assert any(p.startswith("overlap: label") or "runs through" in p for p in problems)


def test_report_markdown_charts_render(rendered: dict[str, Any]) -> None:
    """The Markdown reports' Mermaid renders: the overlay, the gantt timeline and halts,
    the bar charts."""
    live = {r["type"] for n, r in rendered.items() if n.startswith("report_live_")}
    assert live == {"flowchart-v2", "gantt", "xychart"}
    texts = " ".join(t["text"] for n, r in rendered.items() if n.startswith("report_live_")
                     for t in r["texts"])
    assert "pending_reconciliation" in texts and "Attempts per block" in texts


@pytest.mark.parametrize("mode", ["live", "backtest"])
def test_html_report_renders_in_the_browser(mode: str, demo: dict[str, Path],
                                            tmp_path: Path) -> None:
    """The HTML report of each demo run loads with no console error and no request, every
    section in the DOM with its heading and plots, and a screenshot that is not blank."""
    from PIL import Image, ImageStat

    page = tmp_path / "report.html"
    page.write_text(to_html(build_report(demo[mode], title=f"the {mode} demo run")))
    shot = tmp_path / "report.png"
    seen = run_tool("page.mjs", "--screenshot", shot, page)
    assert seen["errors"] == [] and seen["blocked"] == []
    assert seen["title"] == f"the {mode} demo run"
    assert [(s["id"], s["heading"]) for s in seen["sections"]] == list(SECTIONS)
    svgs = {s["id"]: s["svgs"] for s in seen["sections"]}
    # The timeline's overview draws every block, also in a backtest (where no time passes).
    plotted = {"lifecycle", "timeline", "attempts", "halts"} | (
        {"waits"} if mode == "live" else set())
    assert {k for k, n in svgs.items() if n} == plotted
    for s in seen["sections"]:
        assert s["h"] > 40 and all(w > 100 and h > 100 for w, h in s["svgSizes"]), s
    assert seen["size"]["w"] <= 1400  # nothing wider than the window
    with Image.open(shot) as img:
        grey = img.convert("L")
        assert grey.size[1] > 2000
        assert ImageStat.Stat(grey).stddev[0] > 20  # text and plots, not a blank page
        dark = sum(grey.histogram()[:128])
        assert dark / (grey.size[0] * grey.size[1]) > 0.01
