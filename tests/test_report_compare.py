"""Issue 26 item 2: fsm-exec report over several runs side by side: a directory of runs
(backtest_run), or several log directories; one row per run with its id, its parameters
and its outcome counts, escaped for each medium like the one-run report."""

from __future__ import annotations

import contextlib
import html
import io
import re
from pathlib import Path
from typing import Any

import pytest

from fsm_exec import ComponentError, EventLogger, ExecutionManager, backtest_run
from fsm_exec.cli.main import main
from fsm_exec.sim.venues import (
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)
from fsm_exec.tools.report.compare import build_comparison, rows

from kit import T, blocks


def run(log: Any, n: int, fail: bool = False) -> None:
    """``n`` blocks through a backtest manager on ``log`` (the last failing its hand-off
    when ``fail``)."""
    rc = SimReconciliation(None)
    positions = SimPositionHandler(rc, [False] * (n - 1) + [fail])
    with ExecutionManager({}, StaticDataProvider(), "backtest", positions, SimVenue(), rc,
                          event_logger=log) as em, contextlib.suppress(ComponentError):
        em.update_state(T(0), "strategy_manager", blocks(*(f"b{i}" for i in range(n))))


def report(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["report", *args], out=out)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    """Three runs of a grid: 3 blocks, 2 blocks, and 2 blocks the last of which fails."""
    base = tmp_path / "runs"
    run(backtest_run(base, run_id="fast-5", params={"fast": 5, "slow": 20}), 3)
    run(backtest_run(base, run_id="fast-10", params={"fast": 10, "slow": 20}), 2)
    run(backtest_run(base, run_id="fast-15", params={"fast": 15, "tag": "x"}), 2, fail=True)
    return base


def test_a_directory_of_runs_is_reported_side_by_side(grid: Path) -> None:
    """One row per run, in the order they ran: its id, a column per parameter (any run's;
    '-' where a run has none), the check verdict and its block counts."""
    code, out, _ = report(str(grid), "--format", "markdown")
    assert code == 0
    table = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert table == [
        "| run | fast | slow | tag | check | accepted | executed | failed | cancelled "
        "| queued |",
        # (an empty value, "-", escaped: one that starts a line would be a list)
        "| fast-5 | 5 | 20 | \\- | OK | 3 | 3 | 0 | 0 | 0 |",
        "| fast-10 | 10 | 20 | \\- | OK | 2 | 2 | 0 | 0 | 0 |",
        "| fast-15 | 15 | \\- | x | OK | 2 | 1 | 1 | 0 | 0 |",
    ]
    assert out.startswith("# Runs compared: 3 runs\n\nFrom " + str(grid) + ".")


def test_the_html_comparison_is_one_self_contained_page(grid: Path, tmp_path: Path) -> None:
    """--output a.html: the same rows as an HTML table, no script, nothing fetched."""
    code, out, _ = report(str(grid), "-o", str(tmp_path / "a.html"))
    assert code == 0 and out == f"wrote {tmp_path / 'a.html'}\n"
    page = (tmp_path / "a.html").read_text()
    assert "default-src 'none'" in page and "<script" not in page
    cells = [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row)
             for row in re.findall(r"<tr>(.*?)</tr>", page)]
    assert cells[1] == ["fast-5", "5", "20", "-", "OK", "3", "3", "0", "0", "0"]
    assert len(cells) == 4


def test_several_log_directories_side_by_side(tmp_path: Path) -> None:
    """Plain log directories (no run id, no parameters) are named by their directories."""
    for name, n in (("a", 1), ("b", 2)):
        run(EventLogger(tmp_path / name), n)
    comp = build_comparison([tmp_path / "a", tmp_path / "b"])
    head, body = rows(comp)
    assert head == ["run", "check", "accepted", "executed", "failed", "cancelled", "queued"]
    assert sorted(body) == [["a", "OK", "1", "1", "0", "0", "0"],
                            ["b", "OK", "2", "2", "0", "0", "0"]]
    code, out, _ = report(str(tmp_path / "a"), str(tmp_path / "b"), "--format", "markdown")
    assert code == 0 and "| a | OK | 1 | 1 | 0 | 0 | 0 |" in out


def test_a_run_that_breaks_the_lifecycle_is_marked_and_named(grid: Path) -> None:
    """A corrupt run's journal: its check says FAILED, the problem is listed and named on
    stderr, the exit code is 1; the other runs are still compared."""
    journal = grid / "fast-10" / "execution_manager_events.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:-3] + lines[-2:]))  # a record gone: a seq gap
    code, out, err = report(str(grid), "--format", "markdown")
    assert code == 1
    assert re.search(r"^\| fast-10 \| 10 \| 20 \| \\- \| FAILED \|", out, re.M)
    assert "## Journals that break the lifecycle" in out
    assert "run fast-10: the journal breaks the lifecycle" in err


def test_every_value_is_escaped_for_its_medium(tmp_path: Path) -> None:
    """Parameters holding Markdown, HTML and terminal payloads are inert in each output."""
    base = tmp_path / "runs"
    hostile = {"<script>alert(1)</script>": "a|b", "x": "\x1b[31mred[link](http://e.vil)"}
    run(backtest_run(base, run_id="r", params=hostile), 1)
    _, md, _ = report(str(base), "--format", "markdown")
    header = next(line for line in md.splitlines() if line.startswith("| run "))
    assert "<script>" not in md and "\x1b" not in md
    assert not re.search(r"(?<!\\)\]\(", md)  # no link: its brackets are escaped
    assert header.count(" | ") == len(["run", *hostile, "check", "accepted", "executed",
                                       "failed", "cancelled", "queued"]) - 1
    assert "\\x1b" in md
    _, page, _ = report(str(base), "--format", "html")
    assert "<script>alert" not in page and "\x1b" not in page
    assert html.escape("<script>alert(1)</script>") in page


def test_mixing_runs_and_log_directories_is_a_usage_error(grid: Path, tmp_path: Path) -> None:
    """A directory of runs beside log directories, or a directory with no journal: exit 2."""
    run(EventLogger(tmp_path / "plain"), 1)
    (tmp_path / "empty").mkdir()
    assert report(str(grid), str(tmp_path / "plain"))[0] == 2
    assert report(str(tmp_path / "plain"), str(tmp_path / "empty"))[0] == 2


def test_one_run_directory_is_still_the_one_run_report(grid: Path) -> None:
    """A run's own directory (it holds a manager journal) gets the full report."""
    code, out, _ = report(str(grid / "fast-5"), "--format", "markdown")
    assert code == 0 and "## Totals" in out
