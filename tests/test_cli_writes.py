"""Every file the command line writes is created under a fresh name and renamed into place
(issue 21, item 5): a link another local user planted where an output goes is replaced,
never followed, so the file it points at is neither overwritten nor truncated; the
journal's lock is never opened through a link."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fsm_exec.cli.main import main

GOLDEN = Path(__file__).parent / "golden"
VICTIM = "the victim's file\n"


def plant(link: Path, victim: Path) -> None:
    """A link at ``link`` to the victim's file (which holds VICTIM)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    victim.write_text(VICTIM)
    link.symlink_to(victim)


def written_not_followed(link: Path, victim: Path) -> None:
    assert victim.read_text() == VICTIM  # neither overwritten nor truncated
    assert not link.is_symlink() and link.is_file() and link.read_text() != VICTIM


@pytest.mark.parametrize("name", ["run_diagram.md", "report.html"])
def test_demo_replaces_a_planted_link_instead_of_following_it(
        name: str, tmp_path: Path) -> None:
    """``fsm-exec demo --out DIR`` with a link planted at one of its outputs."""
    pytest.importorskip("matplotlib")
    out, victim = tmp_path / "shared", tmp_path / "victim.txt"
    plant(out / name, victim)
    assert main(["demo", "--out", str(out)]) == 0
    written_not_followed(out / name, victim)


def test_run_replaces_planted_links_at_its_diagram_and_marker(tmp_path: Path) -> None:
    """``fsm-exec run`` with links planted at run_diagram.md and at the ownership marker
    (a planted marker is not taken for the command's own either)."""
    blocks = tmp_path / "b.jsonl"
    blocks.write_text(json.dumps({"block_id": "a", "action": "buy", "priority": 1,
                                  "instructions": [{"venue": "spot", "token": "ETH",
                                                    "side": "buy", "amount": 1}]}) + "\n")
    out = tmp_path / "shared"
    plant(out / "run_diagram.md", tmp_path / "victim1.txt")
    plant(out / "logs" / "events" / ".fsm_exec_owner", tmp_path / "victim2.txt")
    assert main(["run", str(blocks), "--out", str(out)]) == 0
    written_not_followed(out / "run_diagram.md", tmp_path / "victim1.txt")
    written_not_followed(out / "logs" / "events" / ".fsm_exec_owner", tmp_path / "victim2.txt")


@pytest.mark.parametrize(("command", "name"), [("report", "r.md"), ("diagram", "d.mmd")])
def test_output_options_replace_a_planted_link(command: str, name: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """``report -o`` and ``diagram -o`` replace a link at the output path."""
    link, victim = tmp_path / name, tmp_path / "victim.txt"
    plant(link, victim)
    journal = str(GOLDEN / "live_faults.jsonl")
    argv = (["report", journal, "-o", str(link)] if command == "report"
            else ["diagram", "--events", journal, "-o", str(link)])
    assert main(argv) == 0, capsys.readouterr().err
    written_not_followed(link, victim)


def test_the_lock_is_never_opened_through_a_link(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A link planted at the journal's ``.lock`` is refused (the run stops with a usage
    error): the file it points at is not created."""
    out = tmp_path / "shared"
    (out / "logs" / "events").mkdir(parents=True)
    (out / "logs" / "events" / ".lock").symlink_to(tmp_path / "created-by-the-victim")
    assert main(["demo", "--out", str(out)]) == 2
    assert not (tmp_path / "created-by-the-victim").exists()
    assert "symbolic links" in capsys.readouterr().err


BLOCK = json.dumps({"block_id": "a", "action": "buy", "priority": 1,
                    "instructions": [{"venue": "spot", "token": "ETH", "side": "buy",
                                      "amount": 1}]}) + "\n"


@pytest.mark.parametrize("command", ["run", "demo"])
@pytest.mark.parametrize("where", ["logs", "logs/events", "results", "results/{id}"])
def test_a_planted_directory_link_is_refused_before_anything_runs(
        command: str, where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Review 12: a link planted where an output directory goes (results/<id>, logs, ...)
    is refused up front, exit 2, naming it: nothing runs, nothing is created, nothing is
    written into the link's target (it used to run every block, then a traceback)."""
    blocks = tmp_path / "b.jsonl"
    blocks.write_text(BLOCK)
    out, target = tmp_path / "out", tmp_path / "target"
    target.mkdir()
    link = out / where.format(id="run-b" if command == "run" else "demo-backtest")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)
    before = sorted(out.rglob("*"))
    argv = (["run", str(blocks), "--out", str(out)] if command == "run"
            else ["demo", "--out", str(out)])
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert f"{link} is a symbolic link" in captured.err and "Traceback" not in captured.err
    assert captured.out == ""  # no summary: nothing ran
    assert sorted(out.rglob("*")) == before and list(target.iterdir()) == []


def test_a_csv_export_refused_after_the_run_is_a_usage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A results folder made unwritable while the run ran (a link planted since the check):
    a clear error, exit 2, never a traceback; the journal is closed and holds the run."""
    from fsm_exec.journal.writer import EventLogger

    def refuse(self: EventLogger, results_dir: Path, backtest_id: str) -> Path:
        raise ValueError("backtest_id must name a directory inside results_dir")

    monkeypatch.setattr(EventLogger, "export_csv", refuse)
    blocks = tmp_path / "b.jsonl"
    blocks.write_text(BLOCK)
    assert main(["run", str(blocks), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "cannot write the CSV files: backtest_id must name a directory" in err
    assert (tmp_path / "out" / "logs" / "events" / "execution_manager_events.jsonl").is_file()
