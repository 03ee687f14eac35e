"""Every command that reads a file refuses what is not a regular file, before reading it,
with one message and exit code 2 (review findings 14 and 15c).

``fsm-exec run /dev/zero`` and ``diagram --diff /dev/zero`` read for ever (6 GB in 4 s);
``check`` called /dev/zero or a named pipe an "empty journal file" (exit 1) where ``status``
said "a device" (exit 2); a ``{}`` line was "not a journal" to ``check`` (exit 2) and a
lifecycle break to ``report`` (exit 1). Now each says ``PATH: a device, not a regular file
(only a regular file is read)`` (the reader's own wording, ``journal.files.not_regular``)
and exits 2, and a file that is not a journal gets one verdict from every command."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fsm_exec import check_journal
from fsm_exec.cli.main import main

from journals import queued_journal

NAME = "execution_manager_events.jsonl"
BLOCK = ('{"block_id":"b1","action":"buy","priority":1,"instructions":'
         '[{"token":"ETH","amount":1}]}\n')


def _guarded(fn: Callable[[], Any]) -> Any:
    """``fn()`` on a thread, failing the test (rather than hanging it) if it never returns:
    a guard against an unbounded read, not a timing assertion."""
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "the command is still reading"
    return result[0]


def _special(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"special-{kind}"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        if not Path("/dev/zero").exists():
            pytest.skip("no /dev/zero")
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    return path


WHAT = {"fifo": "a named pipe", "dev_zero": "a device", "dir": "a directory"}
#: Every command and option that takes a file, ``{x}`` the special file.
COMMANDS = {
    "run": ["run", "{x}", "--out", "{tmp}/out"],
    "run --prices": ["run", "{blocks}", "--out", "{tmp}/out", "--prices", "{x}"],
    "run --config": ["run", "{blocks}", "--out", "{tmp}/out", "--config", "{x}.json"],
    "diagram --diff": ["diagram", "--diff", "{x}"],
    "check": ["check", "{x}"],
    "report": ["report", "{x}", "-o", "{tmp}/r.md"],
    "diagram --events": ["diagram", "--events", "{x}", "--format", "markdown"],
    "status --config": ["status", "{logs}", "--config", "{x}.json"],
}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = _guarded(lambda: main(argv, out=io.StringIO()))
    return code, capsys.readouterr().err


#: A directory is a log directory to the commands that read journals.
CASES = [(c, k) for c in sorted(COMMANDS) for k in sorted(WHAT)
         if not (k == "dir" and c in ("check", "report", "diagram --events"))]


@pytest.mark.parametrize(("command", "kind"), CASES)
def test_every_command_refuses_a_file_that_is_not_regular_before_reading(
        command: str, kind: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A named pipe, /dev/zero or a directory where a command reads a file: exit 2, one
    message naming it, at once (never blocks, never reads without end)."""
    x = _special(tmp_path, kind)
    if command.endswith("--config"):  # the config's name must end in .json or .toml
        x = x.rename(x.with_name(x.name + ".json")).with_suffix("")
    blocks = tmp_path / "b.jsonl"
    blocks.write_text(BLOCK)
    logs = tmp_path / "logs"
    queued_journal(logs)
    argv = [a.format(x=x, tmp=tmp_path, blocks=blocks, logs=logs)
            for a in COMMANDS[command]]
    code, err = _run(argv, capsys)
    shown = argv[argv.index(str(x)) if str(x) in argv else argv.index(f"{x}.json")]
    assert code == 2, err
    assert f"{shown}: {WHAT[kind]}, not a regular file (only a regular file is read)" in err


@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
@pytest.mark.parametrize("command", ["check", "status", "report", "cancel"])
def test_a_log_directory_whose_journal_is_not_regular_gets_one_verdict(
        command: str, kind: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A log directory whose journal file is a named pipe or a link to /dev/zero: check,
    status, report and the offline cancel all say the same and exit 2 (check said "empty
    journal file", exit 1)."""
    special = _special(tmp_path, kind)
    logs = tmp_path / "logs"
    logs.mkdir()
    special.rename(logs / NAME)
    argv = {"check": ["check", str(logs)], "status": ["status", str(logs)],
            "report": ["report", str(logs), "-o", str(tmp_path / "r.md")],
            "cancel": ["cancel", str(logs), "a", "--reason", "t"]}[command]
    code, err = _run(argv, capsys)
    assert code == 2, err
    assert f"{logs / NAME}: {WHAT[kind]}, not a regular file (only a regular file is read)" \
        in err


@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
def test_check_journal_names_a_special_file_not_an_empty_one(kind: str, tmp_path: Path
                                                             ) -> None:
    """The library's check says what the file is, never "empty journal file"."""
    x = _special(tmp_path, kind)
    report = _guarded(lambda: check_journal(x))
    assert not report.ok
    assert report.problems == (f"{x}: {WHAT[kind]}, not a regular file (only a regular "
                               "file is read)",)


@pytest.mark.parametrize("lines", ["{}\n", "[]\n", '{"a": 1}\n'])
def test_a_file_that_is_no_journal_gets_one_verdict_from_check_and_report(
        lines: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A ``.jsonl`` whose first line is JSON but no record: check and report (and diagram
    --events) say "not a journal", exit 2 (report said "breaks the lifecycle", exit 1)."""
    path = tmp_path / "x.jsonl"
    path.write_text(lines)
    verdicts = set()
    for argv in (["check", str(path)], ["report", str(path), "-o", str(tmp_path / "r.md")],
                 ["diagram", "--events", str(path), "--format", "markdown"]):
        code, err = _run(argv, capsys)
        assert code == 2, err
        verdicts.add(err.partition(": ")[2])
    assert verdicts == {f"{path}: not a journal (its first line is not a journal record); "
                        "pass a log directory or its *_events.jsonl files\n"}
    assert not (tmp_path / "r.md").exists()


@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
@pytest.mark.parametrize("argv", [["diagram", "--diff"], ["lifecycle", "check"]])
def test_lifecycle_files_are_regular_files_only(
        kind: str, argv: list[str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A lifecycle file (``lifecycle check``, either side of ``diagram --diff``) that is a
    named pipe or a device is refused before it is read, exit 2, saying so (it was read
    whole: /dev/zero for ever, a pipe blocked)."""
    special = _special(tmp_path, kind)
    path = special.with_name(special.name + ".yaml")
    special.rename(path)
    assert _guarded(lambda: main([*argv, str(path)])) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_a_lifecycle_file_over_the_bound_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A lifecycle file larger than the bound (a lifecycle is a few KB) is refused, exit 2,
    without being parsed."""
    from fsm_exec.core.lifecycle_file import MAX_FILE_BYTES

    path = tmp_path / "huge.yaml"
    path.write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    assert main(["lifecycle", "check", str(path)]) == 2
    assert f"larger than {MAX_FILE_BYTES} bytes" in capsys.readouterr().err
