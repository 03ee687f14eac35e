"""The run report: what it reads from a journal, the HTML and Markdown it writes, the
``report`` command and the demo's report. Journals come from the bundled demo or are written
here with the real EventLogger; the browser's view is pinned in tests/test_browser.py."""

from __future__ import annotations

import builtins
import io
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import attrs
import pytest

from fsm_exec import ERROR_CODES, EventLogger
from fsm_exec.cli.demo import run_demo
from fsm_exec.cli.main import main
from fsm_exec.tools.report import (
    SECTIONS,
    ReportDependencyError,
    build_report,
    parse_ts,
    read_checked,
    to_html,
    to_markdown,
)
from fsm_exec.tools.report.build import attempt_buckets

from kit import empty_checkpoint

JOURNAL = Path("logs") / "events" / "execution_manager_events.jsonl"
EM = "ExecutionManager"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The log directories of a live and a backtest demo run."""
    root = tmp_path_factory.mktemp("demo")
    for mode in ("live", "backtest"):
        run_demo(mode, out=root / mode, report=False)
    return {m: root / m / "logs" / "events" for m in ("live", "backtest")}


def write_journal(log_dir: Path, events: list[tuple[str, str, dict[str, Any]]]) -> Path:
    """A journal written by the real EventLogger: (timestamp, event_type, data) each."""
    with EventLogger(log_dir, "backtest") as log:
        log.checkpoint(EM, empty_checkpoint(), timestamp=events[0][0] if events else None)
        for ts, kind, data in events:
            log.log_event(ts, kind, EM, data)
    return log_dir


def accepted(block_id: str, i: int = 0, n: int = 1) -> tuple[str, dict[str, Any]]:
    return ("block_accepted", {"block_id": block_id, "action": "trade", "priority": 1,
                               "instructions": [{"venue": "spot", "amount": 1.0}],
                               "batch_index": i, "batch_size": n})


def move(block_id: str, source: str, trigger: str, dest: str, attempt: int = 1,
         **extra: Any) -> tuple[str, dict[str, Any]]:
    return ("block_transition", {"block_id": block_id, "source": source, "dest": dest,
                                 "trigger": trigger, "attempt": attempt, **extra})


def at(ts: str, event: tuple[str, dict[str, Any]]) -> tuple[str, str, dict[str, Any]]:
    return (ts, *event)


class Page(HTMLParser):
    """The structure of an HTML page: section ids, headings, tags, attributes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.headings: list[str] = []
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self._in_h2 = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(k, v or "") for k, v in attrs]
        if tag == "section":
            self.sections.append(dict(attrs).get("id") or "")
        self._in_h2 = tag == "h2"

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.headings.append(data)
            self._in_h2 = False


# ------------------------------------------------------------------------ the data


def test_report_of_the_live_demo_counts_what_happened(demo: dict[str, Path]) -> None:
    """Totals, failures (with the code's resolution), halts and waits of the live demo run
    are what its journal holds."""
    r = build_report(demo["live"])
    totals = dict(r.totals)
    assert totals["journal"] == "obeys the lifecycle" and r.problem is None
    assert (totals["blocks accepted"], totals["ended in success"], totals["ended in failed"],
            totals["ended in cancelled"]) == ("72", "71", "1", "0")
    assert (totals["halts"], totals["resumes"], totals["reconciliation timeouts"],
            totals["transitions"], totals["execution mode"]) == ("1", "1", "4", "227", "live")
    assert totals["first timestamp"] == "2025-10-01T00:00:00+00:00"  # not the wall clock
    (f,) = r.failures
    assert (f.block_id, f.error_code, f.attempts) == ("hedge-20251002T10", "EXEC-002", 3)
    assert "timed out on every one of 3 attempts" in f.message
    assert f.resolution == ERROR_CODES["EXEC-002"].resolution
    (h,) = r.halts
    assert (h.reason, h.block_id, h.seconds()) == ("EXEC-002", "hedge-20251002T10", 0.0)
    assert len(r.waits) == 71 + 4
    assert {what for _, what in r.waits} == {"reconciled", "reconciliation_timeout"}


def test_blocks_come_failed_first_then_slowest(demo: dict[str, Path]) -> None:
    """Blocks are ordered failed first, then by time spent; a block's visits take the
    manager's measured waits and add up to its time."""
    r = build_report(demo["live"])
    first = r.blocks[0]
    assert first.block_id == "hedge-20251002T10" and first.failed and first.attempts == 3
    waits = [v.seconds for v in first.visits if v.state == "pending_reconciliation"]
    assert waits == pytest.approx([10.0, 10.0, 10.0])
    assert first.seconds == pytest.approx(sum(v.seconds for v in first.visits))
    rest = [b.seconds for b in r.blocks[1:]]
    assert rest == sorted(rest, reverse=True)
    starts = [v.start for v in first.visits]
    assert starts == sorted(starts)


def test_backtest_spends_no_time_anywhere(demo: dict[str, Path]) -> None:
    """In a backtest every record of a block has one timestamp: no time in any state, no
    waits, and the report says so rather than drawing empty plots."""
    r = build_report(demo["backtest"])
    assert all(b.seconds == 0 for b in r.blocks) and r.waits == () and r.halts == ()
    page = to_html(r)
    assert "No time passed in any state" in page and "No reconciliation wait" in page
    assert "The manager never halted." in page
    assert "No time passed in any state" in to_markdown(r)


def test_a_block_left_in_flight_is_named(tmp_path: Path) -> None:
    """A journal that ends with a block in flight (a crash) says which, and times its last
    state up to the journal's end."""
    log = write_journal(tmp_path, [
        at("2025-10-01T00:00:00Z", accepted("a1")),
        at("2025-10-01T00:00:00Z", move("a1", "queued", "start", "routing")),
        at("2025-10-01T00:00:30Z", ("state_update", {"blocks_executed": 0})),
    ])
    r = build_report(log)
    assert r.in_doubt == "a1" and dict(r.totals)["still in flight"] == "1"
    (b,) = r.blocks
    assert (b.final, b.terminal, b.visits[-1].open, b.visits[-1].seconds) == (
        "routing", False, True, 30.0)
    assert "still in flight when the journal ends" in to_html(r)


def test_errors_and_open_halts_are_reported(tmp_path: Path) -> None:
    """An error that failed no block is listed with its code's resolution; a halt never
    resumed says so; queue waits between updates count as time queued."""
    log = write_journal(tmp_path, [
        at("2025-10-01T00:00:00Z", accepted("a1")),
        at("2025-10-01T00:05:00Z", move("a1", "queued", "start", "routing")),
        at("2025-10-01T00:05:00Z", move("a1", "routing", "executed", "pending_reconciliation")),
        at("2025-10-01T00:05:00Z", move("a1", "pending_reconciliation", "reconciled",
                                        "success", waited_s=1.5)),
        at("2025-10-01T00:06:00Z", ("error", {"error_code": "EXEC-009",
                                              "error_message": "disk <full> & \"gone\"",
                                              "block_id": None})),
        at("2025-10-01T00:06:00Z", ("manager_halted", {"reason": "EXEC-009",
                                                       "block_id": None})),
    ])
    r = build_report(log)
    (f,) = r.failures
    assert (f.block_id, f.error_code, f.attempts) == (None, "EXEC-009", None)
    assert f.resolution == ERROR_CODES["EXEC-009"].resolution
    (h,) = r.halts
    assert h.end is None and h.seconds() is None
    (b,) = r.blocks
    assert [(v.state, v.seconds) for v in b.visits] == [
        ("queued", 300.0), ("routing", 0.0), ("pending_reconciliation", 1.5)]
    page = to_html(r)
    assert "not resumed" in page
    assert "disk &lt;full&gt; &amp; &quot;gone&quot;" in page and "<full>" not in page
    md = to_markdown(r)
    assert "| EXEC-009: Event log write failed |" in md and "not resumed" in md


def test_a_journal_that_breaks_the_lifecycle_is_reported_up_to_that_line(
        tmp_path: Path) -> None:
    """A journal that breaks the lifecycle is reported from the records before the first
    offending file:line, with that line named at the top."""
    log = write_journal(tmp_path, [
        at("2025-10-01T00:00:00Z", accepted("a1")),
        at("2025-10-01T00:00:00Z", move("a1", "queued", "start", "routing")),
        at("2025-10-01T00:00:00Z", move("a1", "routing", "reconciled", "success")),
    ])
    records, problem = read_checked(log)
    path = log / "execution_manager_events.jsonl"
    assert problem is not None and problem.startswith(f"{path}:4: ")  # after the checkpoint
    assert len(records) == 3
    r = build_report(log)
    assert r.problem == problem and dict(r.totals)["transitions"] == "1"
    page = to_html(r)
    assert 'class="banner" id="problem"' in page and f"{path}:4" in page
    assert "**This journal breaks the lifecycle:**" in to_markdown(r)


def test_a_corrupt_line_stops_the_reading_there(tmp_path: Path) -> None:
    """A line that is not a record ends the reading: the records before it are kept and
    the line is named."""
    log = write_journal(tmp_path, [at("2025-10-01T00:00:00Z", accepted("a1"))])
    path = log / "execution_manager_events.jsonl"
    path.write_text(path.read_text() + "{not json\n")
    records, problem = read_checked(path)
    assert len(records) == 2 and problem is not None and f"{path}:3" in problem


def test_timestamps_parse_as_utc() -> None:
    """ISO timestamps parse as aware datetimes (naive ones as UTC); others are None."""
    assert parse_ts("2025-10-01T00:00:00").utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert parse_ts("2025-10-01T00:00Z") == parse_ts("2025-10-01T00:00:00+00:00")
    assert parse_ts("yesterday") is None and parse_ts(None) is None


# ------------------------------------------------------------------------ HTML


def test_html_is_self_contained_and_has_every_section(demo: dict[str, Path]) -> None:
    """The HTML has every section in order with its heading, inline SVG plots, no script,
    and nothing that would be fetched when viewed (a CSP forbids it too)."""
    page = to_html(build_report(demo["live"], title="Live <demo>"))
    p = Page(page)
    assert p.sections == [sid for sid, _ in SECTIONS]
    assert p.headings == [h for _, h in SECTIONS]
    assert "script" not in p.tags and "img" not in p.tags and "link" not in p.tags
    links = [v for k, v in p.attrs if k in ("src", "href", "xlink:href")]
    assert links and all(v.startswith("#") for v in links)  # only within the page
    assert p.tags.count("svg") >= 5
    assert "default-src 'none'" in page
    assert "<title>Live &lt;demo&gt;</title>" in page


def test_html_reports_are_stable(demo: dict[str, Path], tmp_path: Path) -> None:
    """The same journal gives the same page, and so does another run of the same demo:
    nothing in a report depends on when or where it was made."""
    a = to_html(build_report(demo["live"], title="t"))
    assert to_html(build_report(demo["live"], title="t")) == a
    run_demo("live", out=tmp_path, report=False)
    b = to_html(build_report(tmp_path / "logs" / "events", title="t"))
    assert b.replace(str(tmp_path / "logs" / "events"), "LOG") == a.replace(
        str(demo["live"]), "LOG")


def test_html_without_graphviz_keeps_the_table(demo: dict[str, Path],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Graphviz the overlay diagram is left out, said so, and the table stays."""
    monkeypatch.setattr("fsm_exec.tools.diagram.graphviz.shutil.which", lambda name: None)
    page = to_html(build_report(demo["live"]))
    assert "dot is not installed, so the diagram is left out" in page
    assert "<td>reconciliation_timeout</td>" in page


def test_html_without_matplotlib_says_what_to_install(
        demo: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Without matplotlib the HTML report raises ReportDependencyError naming the extra;
    the Markdown report needs nothing."""
    real = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kw: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, *args, **kw)

    report = build_report(demo["live"])
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ReportDependencyError, match=r"fsm-exec\[report\]"):
        to_html(report)
    assert "```mermaid" in to_markdown(report)


# ------------------------------------------------------------------------ Markdown


def test_markdown_has_every_section_with_mermaid(demo: dict[str, Path]) -> None:
    """The Markdown report has every section in order; the overlay as a flowchart, the
    timeline and halts as gantt charts, attempts and waits as bar charts with tables."""
    md = to_markdown(build_report(demo["live"]))
    assert re.findall(r"^## (.*)$", md, re.MULTILINE) == [h for _, h in SECTIONS]
    blocks = [b.split("```", 1)[0] for b in md.split("```mermaid\n")[1:]]
    kinds = [next(line for line in b.splitlines() if not line.startswith((" ", "-", "config",
                                                                           "title")))
             for b in blocks]
    assert kinds == ["flowchart TB", "gantt", "xychart-beta", "xychart-beta", "gantt"]
    assert "    section hedge-20251002T10" in md
    assert "    pending_reconciliation :crit, 0, 10000" in md
    assert "| attempts | blocks |" in md and "| ended by | waits | longest (s) |" in md
    # failed when its third reconciliation wait of 10 s ran out (live records carry the
    # time of their step)
    assert "| `hedge-20251002T10` | 2025-10-02T10:00:30+00:00 | EXEC-002 |" in md


def test_markdown_keeps_mermaid_syntax_out_of_names(tmp_path: Path) -> None:
    """Block ids with a colon are written into gantt sections without breaking them."""
    log = write_journal(tmp_path, [
        at("2025-10-01T00:00:00Z", accepted("a:1")),
        at("2025-10-01T00:00:00Z", move("a:1", "queued", "start", "routing")),
        at("2025-10-01T00:00:09Z", move("a:1", "routing", "executed",
                                        "pending_reconciliation")),
    ])
    md = to_markdown(build_report(log))
    assert "    section a-1" in md and "    routing :0, 9000" in md


# ------------------------------------------------------------------------ the command


def cli(*argv: str | Path) -> tuple[int, str]:
    out = io.StringIO()
    return main([str(a) for a in argv], out=out), out.getvalue()


def test_report_command_writes_html_or_markdown(demo: dict[str, Path], tmp_path: Path) -> None:
    """report LOG -o x.html writes HTML; a .md name or --format markdown writes Markdown;
    without -o it prints."""
    html = tmp_path / "r.html"
    assert cli("report", demo["live"], "-o", html) == (0, f"wrote {html}\n")
    assert html.read_text().startswith("<!doctype html>")
    md = tmp_path / "r.md"
    assert cli("report", demo["live"], "-o", md, "--title", "T")[0] == 0
    assert md.read_text().startswith("# T\n")
    code, text = cli("report", demo["backtest"], "--format", "markdown")
    assert code == 0 and text.startswith("# Run report: ")
    journal = demo["backtest"] / "execution_manager_events.jsonl"
    assert cli("report", journal, journal.with_name("missing"))[0] == 2


def test_report_command_exits_1_on_a_broken_journal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A journal that breaks the lifecycle: the report is written all the same, and the
    command exits 1 naming the line."""
    log = write_journal(tmp_path / "log", [
        at("2025-10-01T00:00:00Z", accepted("a1")),
        at("2025-10-01T00:00:00Z", move("a1", "routing", "executed", "pending_reconciliation")),
    ])
    out = tmp_path / "r.md"
    assert cli("report", log, "-o", out)[0] == 1
    assert "breaks the lifecycle" in out.read_text()
    assert "execution_manager_events.jsonl:3" in capsys.readouterr().err


@pytest.mark.parametrize("what", ["missing", "no journal", "empty", "unwritable"])
def test_report_command_refuses_what_it_cannot_use(
        what: str, tmp_path: Path, demo: dict[str, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    """No such path, a directory without a journal, a journal without records, or an
    output that cannot be written: exit 2 with a message."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty.jsonl").write_text("")
    choices: dict[str, list[str | Path]] = {
        "missing": [tmp_path / "nope"], "no journal": [tmp_path / "empty"],
        "empty": [tmp_path / "empty.jsonl"],
        "unwritable": [demo["backtest"], "-o", tmp_path / "no" / "r.html"]}
    args = choices[what]
    assert cli("report", *args)[0] == 2
    assert capsys.readouterr().err.startswith("fsm-exec report: ")


def test_report_command_without_matplotlib_is_a_usage_error(
        demo: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Without matplotlib, an HTML report is a usage error that names the extra."""

    def missing(report: Any) -> str:
        raise ReportDependencyError("pip install 'fsm-exec[report]'")

    monkeypatch.setattr("fsm_exec.tools.report.to_html", missing)
    assert cli("report", demo["backtest"])[0] == 2
    assert "fsm-exec[report]" in capsys.readouterr().err


def test_demo_writes_a_report_next_to_its_outputs(tmp_path: Path) -> None:
    """The demo writes report.html beside its journal, CSV and run diagram, and names it."""
    result = run_demo("backtest", out=tmp_path)
    assert result.report == tmp_path / "report.html"
    page = Page(result.report.read_text())
    assert page.sections == [sid for sid, _ in SECTIONS]
    from fsm_exec.cli.demo import format_result

    assert f"report:           {result.report}" in format_result(result)
    assert run_demo("backtest", out=tmp_path / "quiet", report=False).report is None


# ------------------------------------------------------------------------ what charts can draw


def edge_journal(log_dir: Path, *, attempt: int = 1, waited: float = 1.5,
                 halted_at: str = "2025-10-01T00:06:00Z", block_id: str = "a1") -> Path:
    """One block through reconciliation, then a halt: the values under test in place."""
    return write_journal(log_dir, [
        at("2025-10-01T00:00:00Z", accepted(block_id)),
        at("2025-10-01T00:05:00Z", move(block_id, "queued", "start", "routing", attempt)),
        at("2025-10-01T00:05:00Z", move(block_id, "routing", "executed",
                                        "pending_reconciliation", attempt)),
        at("2025-10-01T00:05:00Z", move(block_id, "pending_reconciliation", "reconciled",
                                        "success", attempt, waited_s=waited)),
        at(halted_at, ("manager_halted", {"reason": "EXEC-009", "block_id": None})),
    ])


def test_a_date_past_the_charts_range_is_left_out_and_said(tmp_path: Path) -> None:
    """A timestamp the manager accepts (9999-12-31T23:00:00+00:00) is left off the halts
    chart and the gantt, which say so, instead of crashing matplotlib's date axis."""
    pytest.importorskip("matplotlib")
    r = build_report(edge_journal(tmp_path, halted_at="9999-12-31T23:00:00+00:00"))
    page = to_html(r)
    assert "1 not drawn: timestamps outside the years 1900-2199" in page
    md = to_markdown(r)
    assert "1 not drawn: timestamps outside the years 1900-2199." in md
    assert "9999-12-31T23:00:00+00:00" in md  # still in the table


def test_the_most_attempts_a_journal_holds_make_one_bar_not_ten_thousand(
        tmp_path: Path) -> None:
    """An attempt of 10,000 (the most the reader accepts: 1,000,000,000 is refused as
    corrupt, see test_journal_corpus) is counted in a range (1-5 each, then 6-10, 11-100,
    ...): the chart and the Markdown table have a bar or row per range, and say so."""
    pytest.importorskip("matplotlib")
    r = build_report(edge_journal(tmp_path, attempt=10_000))
    bars, ranges = attempt_buckets(r.blocks)
    assert ranges and len(bars) == 9 and bars[-1] == ("1001-10000", 1)
    assert "attempts over 5 grouped in ranges" in to_html(r)
    md = to_markdown(r)
    assert "Attempts over 5 are grouped in ranges." in md
    assert "| 1001-10000 | 1 |" in md
    assert len([line for line in md.splitlines() if re.match(r"\| \d", line)]) < 40


def test_a_billion_attempts_is_a_corrupt_journal_for_the_report(tmp_path: Path) -> None:
    """An attempt of 1,000,000,000 is refused by the reader the report reads through: the
    report names file:line instead of building a row per attempt (issue 21, item 2)."""
    from fsm_exec.tools.report.build import read_checked

    records, problem = read_checked(edge_journal(tmp_path, attempt=1_000_000_000))
    assert problem is not None and re.search(r"\.jsonl:\d+: .*attempt", problem), problem
    assert all(r.data.get("attempt") != 1_000_000_000 for r in records)


@pytest.mark.parametrize("waited", [-1e300, 1e300, -1.0])
def test_a_wait_no_chart_can_draw_is_left_out_and_said(tmp_path: Path, waited: float) -> None:
    """A negative or absurd measured wait is left off the waits chart (which says so) and
    the block's time falls back to its timestamps (a journal cannot hold an infinite or NaN
    number: the writer writes a string, the reader refuses JSON's Infinity)."""
    pytest.importorskip("matplotlib")
    r = build_report(edge_journal(tmp_path, waited=waited))
    assert r.waits == () and r.odd_waits == 1
    (b,) = r.blocks
    assert all(v.seconds >= 0 for v in b.visits)
    note = "1 measured wait not drawn: negative, not a number or over 1e+09 s."
    assert note in to_markdown(r)
    assert note in to_html(r)  # and no "too many bins"


def test_a_wait_next_to_odd_ones_is_drawn_and_the_odd_ones_counted(tmp_path: Path) -> None:
    """Good waits are drawn; the chart says how many odd ones it left out."""
    pytest.importorskip("matplotlib")
    r = build_report(edge_journal(tmp_path, waited=-5.0))
    r = attrs.evolve(r, waits=((2.0, "reconciled"),))
    assert "1 measured wait not drawn: negative, not a number or over 1e+09 s." in to_html(r)


def test_mathtext_in_a_block_id_is_drawn_as_text(tmp_path: Path) -> None:
    """A block id holding ``$...$`` (or a TeX macro matplotlib does not know) is drawn as
    those characters, never parsed as mathtext."""
    pytest.importorskip("matplotlib")
    r = build_report(edge_journal(tmp_path))
    evil = "$\\nosuchmacro{x}$ $a_b$"
    r = attrs.evolve(r, blocks=tuple(attrs.evolve(b, block_id=evil) for b in r.blocks))
    page = to_html(r)
    assert "$\\nosuchmacro{x}$ $a_b$" in page
