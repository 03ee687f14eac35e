"""The report's charts as a reviewer sees them, in headless Chromium (as tests/test_browser.py
renders diagrams): one block, ten thousand blocks, and ids of 64 characters. In the HTML
report no two texts of a chart overlap, none sticks out of its chart, the page is no wider
than the window; the Markdown report's Mermaid renders with no overlapping text and time
ticks that all differ (tools/mermaid/svgtext.mjs, render.mjs).

Skips where Node, the npm packages or Chromium are missing, as test_browser.py does (and
fails instead under FSM_EXEC_REQUIRE_RENDERERS=1, as in CI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_browser import mermaid_blocks, run_tool

from fsm_exec.tools.report import RunReport, build_report, to_html, to_markdown

from report_journals import fast_dir, write_journal

pytest.importorskip("matplotlib")

#: name: (blocks, id width, every how many blocks one fails, blocks cancelled)
CASES: dict[str, tuple[int, int, int, int]] = {
    "one_block": (1, 0, 0, 0),
    "ten_thousand_blocks": (10_000, 0, 97, 4),
    "ids_of_64": (40, 64, 6, 3),
}


@pytest.fixture(scope="module")
def reports() -> dict[str, RunReport]:
    """A report of each case's journal."""
    with fast_dir() as root:
        return {name: build_report(write_journal(root / name, n, id_width=width,
                                                 failing_every=every, cancelled=cancelled),
                                   title=name)
                for name, (n, width, every, cancelled) in CASES.items()}


@pytest.fixture(scope="module")
def mermaid(reports: dict[str, RunReport],
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Every Mermaid chart of each case's Markdown report, rendered in one browser."""
    d = tmp_path_factory.mktemp("mmd")
    files = []
    for name, report in reports.items():
        for n, block in enumerate(mermaid_blocks(to_markdown(report))):
            files.append(d / f"{name}-{n}.mmd")
            files[-1].write_text(block)
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in reports}
    for r in run_tool("render.mjs", *files):
        out[Path(r["file"]).stem.rsplit("-", 1)[0]].append(r)
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_html_charts_have_no_overlapping_text(case: str, reports: dict[str, RunReport],
                                              tmp_path: Path) -> None:
    """The HTML report loads with no error and no request, no wider than the window; in
    every chart no two texts overlap and none sticks out; the timeline has its overview
    and its per-state chart; the screenshot is not blank."""
    from PIL import Image, ImageStat

    page = tmp_path / "report.html"
    page.write_text(to_html(reports[case]))
    shot = tmp_path / "report.png"
    seen = run_tool("svgtext.mjs", "--screenshot", shot, page)
    assert seen["errors"] == [] and seen["blocked"] == []
    assert seen["width"] <= 1400
    sections = [c["section"] for c in seen["charts"]]
    assert sections.count("timeline") == 2 and {"attempts", "halts"} <= set(sections)
    for chart in seen["charts"]:
        assert chart["overlaps"] == [], (chart["section"], chart["overlaps"][:5])
        assert chart["outside"] == [], (chart["section"], chart["outside"][:5])
        assert chart["box"]["w"] > 100 and chart["box"]["h"] > 100
    with Image.open(shot) as img:
        grey = img.convert("L")
        assert ImageStat.Stat(grey).stddev[0] > 20


@pytest.mark.parametrize("case", sorted(CASES))
def test_markdown_charts_render_with_readable_axes(
        case: str, mermaid: dict[str, list[dict[str, Any]]]) -> None:
    """Each case's Mermaid renders with no error and no overlapping text; the gantt
    charts' time ticks all differ (no row of '00:00')."""
    rendered = mermaid[case]
    assert {r["type"] for r in rendered} >= {"flowchart-v2", "gantt", "xychart"}
    for r in rendered:
        assert r["ok"], r.get("error")
        assert not [p for p in r["problems"] if p.startswith(("console", "network"))]
        assert not [p for p in r["problems"] if p.startswith("overlap")], r["file"]
    for r in rendered:
        if r["type"] != "gantt":
            continue
        ticks = [t["text"] for t in r["texts"] if t["text"][:1].isdigit()]
        assert len(ticks) >= 3 and len(set(ticks)) == len(ticks), (r["file"], ticks)


def test_the_text_check_finds_overlaps(tmp_path: Path) -> None:
    """The check is real: two texts drawn on each other, and one drawn outside its chart,
    are reported."""
    page = tmp_path / "p.html"
    page.write_text(
        '<!doctype html><html><body><section id="attempts">'
        '<svg width="300" height="200" xmlns="http://www.w3.org/2000/svg">'
        '<text x="10" y="50" font-size="14">first label</text>'
        '<text x="20" y="52" font-size="14">second label</text>'
        '<text x="250" y="100" font-size="14">far too long to fit</text>'
        "</svg></section></body></html>")
    seen = run_tool("svgtext.mjs", page)
    (chart,) = seen["charts"]
    assert chart["overlaps"] == [["first label", "second label"]]
    assert chart["outside"] == ["far too long to fit"]
