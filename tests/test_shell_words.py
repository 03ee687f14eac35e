"""The commands ``fsm-exec status`` (and a stopped ``fsm-exec run``) suggest are safe to
paste for any directory name (review finding 15g): a name starting with ``-`` is never read
as an option, and quoting stays ``shlex``-safe."""

from __future__ import annotations

import io
import json
import os
import shlex
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsm_exec.boundary.escape import shell_word
from fsm_exec.cli.main import build_parser, main
from fsm_exec.tools.status import cancel_command

from journals import halted_journal

_names = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
                 min_size=1, max_size=30)


@given(name=_names, lead=st.sampled_from(["", "-", "--", "-r", "--all"]))
def test_a_suggested_cancel_command_names_the_directory_and_nothing_else(
        name: str, lead: str) -> None:
    """Split as a shell splits it and parsed as fsm-exec parses it, the suggested command
    names exactly the directory (never an option), with --all and the placeholder reason."""
    path = lead + name
    argv = shlex.split(cancel_command(path))
    assert argv[:2] == ["fsm-exec", "cancel"]
    args = build_parser().parse_args(argv[1:])
    assert os.path.normpath(args.log_dir) == os.path.normpath(path)
    assert args.all and args.ids == [] and args.reason == "<why>"


@pytest.mark.parametrize(("path", "word"), [("--all", "./--all"), ("-x y", "'./-x y'"),
                                            ("a b", "'a b'"), ("it's", "'it'\"'\"'s'"),
                                            ("/abs/-x", "/abs/-x"), ("plain", "plain")])
def test_shell_word(path: str, word: str) -> None:
    """Quoted as shlex does; ./ before a leading dash."""
    assert shell_word(path) == word


def test_status_in_a_directory_named_like_an_option_suggests_a_working_cancel(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A log folder named ``--all`` (./--all): status suggested ``fsm-exec cancel --all
    --all --reason`` (the ./ dropped). The suggested line, pasted, cancels the queue."""
    monkeypatch.chdir(tmp_path)
    halted_journal(tmp_path / "--all", "EXEC-008")
    out = io.StringIO()
    assert main(["status", "--json", "./--all"], out=out) == 1
    (command,) = json.loads(out.getvalue())["commands"]
    assert command == "fsm-exec cancel ./--all --all --reason '<why>'"
    argv = shlex.split(command.replace("'<why>'", "stale"))
    assert main(argv[1:], out=io.StringIO()) == 0
    out = io.StringIO()
    main(["status", "--json", "./--all"], out=out)
    assert json.loads(out.getvalue())["queue"]["count"] == 0
