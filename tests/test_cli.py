"""The command line (``fsm-exec``, ``python -m fsm_exec``), tested by calling ``main``."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

import fsm_exec.sim.venues
from fsm_exec import (
    BlockState,
    EventLogError,
    EventLogger,
    ExecutionConfig,
    ExecutionManager,
    __version__,
    check_journal,
    read_journal,
)
from fsm_exec.cli._common import UsageError, read_config
from fsm_exec.cli.commands.run import Progress, progress_line
from fsm_exec.cli.main import build_parser, main
from fsm_exec.sim.venues import SimPositionHandler, SimReconciliation, SimVenue, StaticDataProvider
from fsm_exec.tools.diagram import dot_digest, lifecycle_model, svg_source_digest, to_dot

from golden.make_golden import BAD
from kit import CANARY, T, block

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).with_name("golden")
JOURNAL = Path("logs") / "events" / "execution_manager_events.jsonl"
TIMES = "\N{MULTIPLICATION SIGN}"  # before an edge count
REVIEW_FILES = sorted([f"{stem}.{ext}" for stem in ("block_lifecycle", "demo_live_run")
                       for ext in ("mmd", "dot", "svg", "md")] + ["block_lifecycle.json"])


def cli(*argv: str | Path) -> tuple[int, str]:
    """Run the command line; the exit code and what it wrote to ``out``."""
    out = io.StringIO()
    code = main([str(a) for a in argv], out=out)
    return code, out.getvalue()


def rows(summary: str) -> dict[str, str]:
    """The ``  name     value`` rows of a summary."""
    return {m[1]: m[2] for m in re.finditer(r"^  (\w[\w :]*?)\s{2,}(\S.*?)\s*$", summary,
                                            re.MULTILINE)}


def write_lines(path: Path, *lines: object) -> Path:
    """A blocks file: strings are written as they are, anything else as JSON."""
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n"
                            for x in lines))
    return path


def tree_bytes(root: Path) -> bytes:
    """Every file under ``root``, concatenated."""
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


@pytest.fixture(scope="module")
def live_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The log directory of one live demo run."""
    out = tmp_path_factory.mktemp("live")
    assert cli("demo", "--mode", "live", "--out", out)[0] == 0
    return out / "logs" / "events"


@pytest.fixture(scope="module")
def review(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Review diagrams written by ``diagram --write`` (copy before changing them)."""
    d = tmp_path_factory.mktemp("review") / "diagrams"
    code, text = cli("diagram", "--write", "--dir", d)
    assert code == 0
    assert sorted(text.splitlines()) == [f"wrote {d / name}" for name in REVIEW_FILES]
    return d


# ------------------------------------------------------------------------ parser


HELP = {
    (): ["exit codes:", "0 ok", "1 a failure was found", "2 usage error", "fsm-exec demo",
         "fsm-exec run blocks.jsonl", "fsm-exec check logs/events", "draw the block lifecycle"],
    ("demo",): ["logs/events/execution_manager_events.jsonl", "results/<id>/events.csv",
                "results/<id>/deltas.csv", "run_diagram.md", "prints a summary",
                "injected faults", "without real waiting", "--mode {backtest,live}",
                "$BASIS_EXECUTION_MODE", "exit codes:", "2 usage error"],
    ("run",): ["JSON-lines file", "JSON array of blocks", "lines starting with # are skipped",
               "validated before anything is created", "names the line",
               "exit code 1: a block failed or the manager halted", ".toml or .json",
               "never printed", "results/<id>/deltas.csv", "$BASIS_EXECUTION_MODE",
               "exit codes:"],
    ("diagram",): ["Graphviz", "--events", "--block", "--write", "--check", "--diff FILE",
                   "--diff-ref GIT_REF", "exits 1, naming each stale file", "--lifecycle FILE",
                   "{mermaid,dot,svg,png,markdown,table,text}", "exit code 1: a diagram is stale "
                   "(--check), or the journal breaks the lifecycle", "exit codes:"],
    ("report",): ["self-contained", "nothing fetched when viewed", "fsm-exec[report]",
                  "--format markdown", "gantt", "exit code 1: the journal breaks the lifecycle",
                  "exit codes:"],
    ("lifecycle",): ["YAML or JSON", "safety rules", "JSON Schema", "exit codes:"],
    ("lifecycle", "check"): ["each broken rule", "--app-dir", "--no-resolve", "exit code 1: a "
                             "lifecycle breaks a rule", "exit codes:"],
    ("check",): ["every transition an edge", "in doubt", "exit code 1: the journal breaks a "
                 "rule; the first offending file:line is printed", "exit codes:"],
}


@pytest.mark.parametrize("command", sorted(HELP))
def test_help_says_what_the_command_does_and_its_exit_codes(
        command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    """--help exits 0 and, on its own, says what the command writes or does and the exit codes."""
    assert main([*command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for phrase in HELP[command]:
        assert phrase in text


def test_help_example_draws_a_block_of_the_demo(live_log: Path) -> None:
    """The --block example in the top-level help names a block the demo runs."""
    epilog = build_parser().epilog or ""
    (block_id,) = re.findall(r"--block (\S+)", epilog)
    code, text = cli("diagram", "--events", live_log, "--block", block_id)
    assert code == 0 and "start \N{MIDDLE DOT} 1" in text


def test_version_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version and exits 0."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"fsm-exec {__version__}\n"


@pytest.mark.parametrize("argv", [
    [], ["frobnicate"], ["--bogus"], ["demo", "--bogus"], ["demo", "--mode", "paper"],
    ["run"], ["check"], ["diagram", "--format", "gif"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """No command, an unknown command or option, or a missing argument: usage and exit 2."""
    assert main(argv) == 2
    assert "usage: fsm-exec" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["module", "script"])
def test_entry_points_run(how: str) -> None:
    """`python -m fsm_exec --help` and the installed `fsm-exec --help` exit 0."""
    exe = [sys.executable, "-m", "fsm_exec"] if how == "module" else [
        str(Path(sys.executable).with_name("fsm-exec"))]
    proc = subprocess.run([*exe, "--help"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "exit codes:" in proc.stdout


# ------------------------------------------------------------------------ demo


def test_demo_backtest_writes_its_outputs_and_a_summary(tmp_path: Path) -> None:
    """demo writes the journal, CSV and run diagram under --out and prints what it did."""
    code, text = cli("demo", "--out", tmp_path)
    assert code == 0
    journal = tmp_path / JOURNAL
    csv = tmp_path / "results" / "demo-backtest" / "events.csv"
    diagram = tmp_path / "run_diagram.md"
    assert journal.is_file() and csv.is_file() and diagram.is_file()
    assert "backtest mode" in text
    r = rows(text)
    assert r["blocks failed"] == "0" and r["retries"] == "0"
    assert int(r["blocks executed"]) == int(r["blocks accepted"]) > 10
    assert r["time"].endswith(" ms") and r["throughput"].endswith(" blocks/s")
    assert (r["journal:"], r["events CSV:"], r["deltas CSV:"], r["run diagram:"]) == (
        str(journal), str(csv), str(csv.with_name("deltas.csv")), str(diagram))
    assert "```mermaid" in diagram.read_text()


def test_demo_live_injects_faults_on_a_simulated_clock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """demo --mode live retries, fails one block, is resumed once, and never really waits:
    its back-offs and timeouts are on the simulated clock (no real sleep is asked for;
    a wall-clock bound would make the test depend on the machine's load)."""
    slept: list[float] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    code, text = cli("demo", "--mode", "live", "--out", tmp_path)
    assert sum(slept) < 0.5, slept
    assert code == 0
    assert "live mode" in text
    r = rows(text)
    assert int(r["retries"]) > 0
    assert (r["blocks failed"], r["manual resumes"]) == ("1", "1")
    assert (tmp_path / "results" / "demo-live" / "events.csv").is_file()


def test_demo_replaces_its_own_journal(tmp_path: Path) -> None:
    """A second demo into the same --out replaces its own journal (and torn tail); check passes."""
    assert cli("demo", "--out", tmp_path)[0] == 0
    first = (tmp_path / JOURNAL).read_bytes()
    torn = tmp_path / JOURNAL.with_name(JOURNAL.name + ".torn")
    torn.write_bytes(b'{"seq":')
    assert cli("demo", "--out", tmp_path)[0] == 0
    assert (tmp_path / JOURNAL).read_bytes().count(b"\n") == first.count(b"\n")
    assert not torn.exists()
    code, text = cli("check", tmp_path / "logs" / "events")
    assert code == 0 and text.startswith("OK")


def test_demo_refuses_a_journal_it_did_not_write(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A journal in --out that the demo did not write: exit 2, a clear message, untouched."""
    log_dir = tmp_path / "logs" / "events"
    with EventLogger(log_dir, "backtest") as journal:
        journal.log_event("2025-01-01T00:00:00+00:00", "note", "ExecutionManager", {"x": 1})
    before = sorted(p.name for p in log_dir.iterdir()), (tmp_path / JOURNAL).read_bytes()
    assert before[1]
    assert cli("demo", "--out", tmp_path) == (2, "")
    err = capsys.readouterr().err
    assert err.startswith("fsm-exec demo: ")
    assert "did not write" in err and "--out" in err
    assert (sorted(p.name for p in log_dir.iterdir()), (tmp_path / JOURNAL).read_bytes()) == before
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--id", "../x"], "backtest_id"),
    (["--id", ".hidden"], "backtest_id"),
])
def test_demo_refuses_a_bad_id(args: list[str], message: str, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """A backtest id that is not a safe folder name: exit 2, nothing written."""
    assert cli("demo", "--out", tmp_path, *args)[0] == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_demo_out_must_be_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--out naming a file: exit 2 saying the output path is a file, nothing created."""
    target = tmp_path / "file"
    target.write_text("keep")
    assert cli("demo", "--out", target)[0] == 2
    assert capsys.readouterr().err == (f"fsm-exec demo: the output path {target} is a file, "
                                       "not a directory: pass --out with a directory\n")
    assert target.read_text() == "keep"
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


# ------------------------------------------------------------------------ run


def good_blocks(path: Path) -> Path:
    """Single blocks, a batch, a blank line and a comment."""
    return write_lines(path, block("a"), "", "# a comment", [block("b"), block("c", "USDT")],
                       "   # indented comment", block("d", "stETH"))


@pytest.mark.parametrize("mode", ["backtest", "live"])
def test_run_executes_a_blocks_file(mode: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """run executes every block, prints a summary, writes its outputs; the journal passes check."""
    blocks = good_blocks(tmp_path / "blocks.jsonl")
    out = tmp_path / "out"
    code, text = cli("run", blocks, "--out", out, "--mode", mode)
    assert code == 0
    assert text.startswith(f"{blocks}: 3 batches, 4 blocks, {mode} mode\n")
    r = rows(text)
    assert (r["blocks executed"], r["blocks failed"], r["queue length"], r["halted"]) == (
        "4", "0", "0", "False")
    assert r["time"].endswith("blocks/s)")
    assert "failed:" not in text
    csv = out / "results" / "run-blocks" / "events.csv"
    assert (r["journal:"], r["events CSV:"], r["deltas CSV:"], r["run diagram:"]) == (
        str(out / JOURNAL), str(csv), str(csv.with_name("deltas.csv")),
        str(out / "run_diagram.md"))
    assert csv.is_file() and (out / JOURNAL).is_file()
    assert f"start {TIMES}4" in (out / "run_diagram.md").read_text()
    assert capsys.readouterr().err == ""
    assert cli("check", out / "logs" / "events")[0] == 0


def test_run_id_names_the_csv_folder(tmp_path: Path) -> None:
    """--id names the results folder; the default is run-<file stem>, made safe."""
    blocks = write_lines(tmp_path / "my blocks!.jsonl", block("a"))
    assert cli("run", blocks, "--out", tmp_path, "--id", "x1")[0] == 0
    assert (tmp_path / "results" / "x1" / "events.csv").is_file()
    assert cli("run", blocks, "--out", tmp_path / "b")[0] == 0
    assert (tmp_path / "b" / "results" / "run-my-blocks-" / "events.csv").is_file()


def test_run_reports_a_failed_block_with_its_line(tmp_path: Path) -> None:
    """A token without a bundled price fails its block: exit 1, named with file:line."""
    blocks = write_lines(tmp_path / "b.jsonl", block("a"), block("btc", "BTC"), block("c"))
    out = tmp_path / "out"
    code, text = cli("run", blocks, "--out", out)
    assert code == 1
    r = rows(text)
    assert (r["blocks executed"], r["blocks failed"]) == ("2", "1")
    (failure,) = [line for line in text.splitlines() if "failed:" in line]
    assert failure.startswith(f"  failed: {blocks}:2: [EXEC-005] block 'btc'")
    assert "'BTC'" in failure
    assert cli("check", out / "logs" / "events")[0] == 0


def test_run_goes_on_after_several_failures_in_one_batch(tmp_path: Path) -> None:
    """Several failing blocks in one batch are all reported, and the rest of the batch runs."""
    blocks = write_lines(tmp_path / "b.jsonl",
                         [block("x", "BTC"), block("y", "BTC"), block("z")], block("w"))
    out = tmp_path / "out"
    code, text = cli("run", blocks, "--out", out)
    assert code == 1
    assert (rows(text)["blocks executed"], rows(text)["blocks failed"]) == ("2", "2")
    assert [line.split(" [")[0] for line in text.splitlines() if "failed:" in line] == [
        f"  failed: {blocks}:1:", f"  failed: {blocks}:1:"]
    assert cli("check", out / "logs" / "events")[0] == 0


def failing_positions(
    failures: list[bool],
) -> Callable[..., fsm_exec.sim.venues.SimPositionHandler]:
    real = fsm_exec.sim.venues.SimPositionHandler

    def make(reconciliation: Any = None) -> fsm_exec.sim.venues.SimPositionHandler:
        return real(reconciliation, failures)

    return make


def test_run_resumes_a_halted_manager(tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A block that halts the manager is reported; the run resumes it and goes on."""
    monkeypatch.setattr(fsm_exec.sim.venues, "SimPositionHandler", failing_positions([True]))
    blocks = write_lines(tmp_path / "b.jsonl", [block("a"), block("b")], block("c"))
    code, text = cli("run", blocks, "--out", tmp_path)
    assert code == 1
    r = rows(text)
    assert (r["blocks executed"], r["blocks failed"], r["halted"]) == ("2", "1", "False")
    assert f"failed: {blocks}:1: [EXEC-008] block 'a'" in text
    assert cli("check", tmp_path / "logs" / "events")[0] == 0


def test_run_does_not_take_a_journal_failure_for_a_block_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A journal that cannot be written stops the run; it is not resumed in a loop."""

    class BrokenJournal(EventLogger):
        def log_event(self, timestamp: Any, event_type: str, component: str,
                      data: dict[str, Any], *, sync: bool = True,
                      checked: bool = False) -> None:
            if event_type != "component_initialization":
                raise OSError(28, "No space left on device")
            super().log_event(timestamp, event_type, component, data, sync=sync,
                              checked=checked)

    monkeypatch.setattr("fsm_exec.journal.writer.EventLogger", BrokenJournal)
    blocks = write_lines(tmp_path / "b.jsonl", block("a"))
    with pytest.raises(EventLogError, match="No space left"):
        cli("run", blocks, "--out", tmp_path)


def test_run_reports_a_refused_batch(tmp_path: Path) -> None:
    """A batch the manager refuses (larger than max_queue_size) is a failure: exit 1."""
    config = tmp_path / "c.toml"
    config.write_text("max_queue_size = 1\n")
    blocks = write_lines(tmp_path / "b.jsonl", [block("a"), block("b")], block("c"))
    code, text = cli("run", blocks, "--config", config, "--out", tmp_path)
    assert code == 1
    assert f"failed: {blocks}:1: [EXEC-003]" in text
    assert rows(text)["blocks executed"] == "1"


BAD_FILES: dict[str, tuple[list[object], str]] = {
    "bad JSON on line 3": ([block("a"), block("b"), '{"block_id": "c",'],
                           ":3:18: not valid JSON: Expecting property name"),
    "bad JSON on line 2, column 2": ([block("a"), "[,]"], ":2:2: not valid JSON"),
    "priority high on line 2": ([block("a"), {**block("b"), "priority": "high"}],
                                ":2: [EXEC-004]"),
    "duplicate id on line 3": ([block("a"), block("b"), [block("c"), block("a")]],
                               ":3: [EXEC-004]"),
    "duplicate id in one batch": ([[block("a"), block("a")]], ":1: [EXEC-004]"),
    "not a block": ([block("a"), "7"], ":2: [EXEC-004]"),
    "empty": ([], ": no blocks"),
    "only comments": (["", "# nothing", "  "], ": no blocks"),
    "only an empty batch": (["[]"], ":1: no blocks (an empty batch)"),
    "an empty batch among blocks": ([block("a"), "  [ ]  ", block("b")],
                                    ":2: no blocks (an empty batch)"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_run_validates_the_whole_file_first(name: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A bad line: exit 2 naming file:line (and the field), and nothing runs."""
    lines, where = BAD_FILES[name]
    blocks = write_lines(tmp_path / "b.jsonl", *lines)
    out = tmp_path / "out"
    assert cli("run", blocks, "--out", out) == (2, "")
    err = capsys.readouterr().err
    assert err.startswith(f"fsm-exec run: {blocks}{where}")
    if "priority" in name:
        assert "priority" in err
    if "duplicate" in name:
        assert "block 'a' @ $[1].block_id" in err
    assert not out.exists()


@pytest.mark.parametrize(("content", "where"), [
    (None, ": cannot read: No such file or directory"),
    (b"\xff\xfe not utf-8\n", ":1:1: cannot read: not valid UTF-8 text"),
    (b'{"a": 1}\n{"b": "caf\xe9"}\n', ":2:11: cannot read: not valid UTF-8 text")])
def test_run_needs_a_readable_file(content: bytes | None, where: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A missing or undecodable blocks file: exit 2, cannot read (where, for bad UTF-8)."""
    blocks = tmp_path / "b.jsonl"
    if content is not None:
        blocks.write_bytes(content)
    assert cli("run", blocks, "--out", tmp_path / "out")[0] == 2
    assert capsys.readouterr().err == f"fsm-exec run: {blocks}{where}\n"
    assert not (tmp_path / "out").exists()


def config_file(path: Path) -> Path:
    """max_retries = 5 and a secret, in the format the suffix says."""
    if path.suffix == ".toml":
        path.write_text(f'max_retries = 5\napi_key = "{CANARY}"\n')
    else:
        path.write_text(json.dumps({"max_retries": 5, "api_key": CANARY}))
    return path


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_run_config_is_used_and_its_secrets_never_written(
        suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--config (TOML or JSON) is used, and its secret reaches no output file or stream."""
    config = config_file(tmp_path / f"system{suffix}")
    out = tmp_path / "out"
    code, text = cli("run", good_blocks(tmp_path / "b.jsonl"), "--config", config,
                     "--out", out, "--mode", "live")
    assert code == 0
    (init,) = [r for r in read_journal(out / "logs" / "events")
               if r.event_type == "component_initialization"]
    assert init.data["config_hash"] == ExecutionConfig(max_retries=5).digest()
    assert CANARY not in text + "".join(capsys.readouterr())
    assert (out / "run_diagram.md").is_file() and (out / JOURNAL).is_file()
    assert CANARY.encode() not in tree_bytes(out)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("bad.toml", f'api_key = "{CANARY}"\nmax_retries = [\n', ":3:1: not valid TOML: Invalid value"),
    ("bad.json", f'{{"api_key": "{CANARY}",\n "max_retries": }}',
     ":2:17: not valid JSON: Expecting value"),
    ("bad.toml", b"\xff\xfe", ":1:1: cannot read the config: not valid UTF-8 text"),
    ("list.json", "[1, 2]", "the config must be a table/object"),
    ("system.yaml", f"api_key: {CANARY}\n", "a config file must end in .toml or .json"),
    ("range.toml", "execution_timeout = 999\n", "execution_timeout"),
    ("type.toml", f'execution_timeout = "{CANARY}"\n', "execution_timeout"),
])
def test_run_refuses_a_bad_config_without_echoing_it(
        name: str, content: str | bytes, message: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A bad config: exit 2 naming the file or field, never its content; no journal."""
    config = tmp_path / name
    if isinstance(content, bytes):
        config.write_bytes(content)
    else:
        config.write_text(content)
    out = tmp_path / "out"
    assert cli("run", good_blocks(tmp_path / "b.jsonl"), "--config", config,
               "--out", out) == (2, "")
    err = capsys.readouterr().err
    assert message in err
    assert CANARY not in err
    assert not (out / JOURNAL).exists()


def test_run_config_must_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing --config file: exit 2, saying why."""
    blocks = good_blocks(tmp_path / "b.jsonl")
    assert cli("run", blocks, "--config", tmp_path / "nope.toml", "--out", tmp_path)[0] == 2
    assert "nope.toml: cannot read the config: No such file or directory" in (
        capsys.readouterr().err)


@pytest.mark.parametrize(("args", "message"), [
    (["--id", "../x"], "--id: backtest_id"),
    (["--out", "FILE"], "the output path FILE is a file, not a directory"),
])
def test_run_refuses_bad_output_arguments(args: list[str], message: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A bad --id or an --out that is a file: exit 2, no traceback."""
    (tmp_path / "FILE").write_text("")
    blocks = good_blocks(tmp_path / "b.jsonl")
    args = [str(tmp_path / a) if a == "FILE" else a for a in args]
    assert cli("run", blocks, *args)[0] == 2
    assert message.replace("FILE", str(tmp_path / "FILE")) in capsys.readouterr().err


# ------------------------------------------------------------------------ bad input


def subprocess_env(**changes: str | None) -> dict[str, str]:
    """os.environ with ``changes`` (None removes a variable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASIS_")}
    for k, v in changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


FSM_EXEC = [sys.executable, "-m", "fsm_exec"]


@pytest.mark.parametrize("how", ["process", "main"])
@pytest.mark.parametrize("command", ["run", "demo"])
@pytest.mark.parametrize("variable", ["BASIS_ENVIRONMENT", "BASIS_DEPLOYMENT_MODE",
                                      "BASIS_EXECUTION_MODE"])
def test_a_bad_environment_is_a_usage_error_that_creates_nothing(
        how: str, command: str, variable: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad BASIS_* variable: exit 2, one line naming the variable (never its value), and
    nothing created; in a real process and through main()."""
    blocks = good_blocks(tmp_path / "b.jsonl")
    work = tmp_path / "work"
    work.mkdir()
    argv = [command, *([str(blocks)] if command == "run" else []), "--out", "out"]
    if how == "process":
        proc = subprocess.run([*FSM_EXEC, *argv], capture_output=True, text=True,
                              timeout=120, check=False, cwd=work,
                              env=subprocess_env(**{variable: CANARY}))
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    else:
        monkeypatch.chdir(work)
        monkeypatch.setenv(variable, CANARY)
        code, stdout = cli(*argv)
        stderr = capsys.readouterr().err
    assert (code, stdout) == (2, "")
    assert stderr.startswith(f"fsm-exec {command}: [EXEC-010] invalid configuration: "
                             f"{variable}: must be one of ")
    assert stderr.count("\n") == 1 and CANARY not in stderr
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("command", ["run", "demo"])
@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied", "out/x"),
                                   EventLogError("cannot create log directory out: No space")])
def test_outputs_that_cannot_be_written_are_a_usage_error(
        command: str, error: OSError, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """An output the system refuses to create: exit 2 with the path and the reason."""
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr("fsm_exec.cli.demo.claim_output_dir", refuse)
    args = [good_blocks(tmp_path / "b.jsonl")] if command == "run" else []
    assert cli(command, *args, "--out", tmp_path / "out") == (2, "")
    expected = ("cannot write the outputs: out/x: Permission denied"
                if isinstance(error, PermissionError) else str(error))
    assert capsys.readouterr().err == f"fsm-exec {command}: {expected}\n"


class ClosedPipe(io.StringIO):
    """An output whose reader went away."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_pipe_is_handled_in_main(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() turns a BrokenPipeError into exit 141 and points stdout/stderr at /dev/null."""
    moved: list[int] = []
    monkeypatch.setattr("fsm_exec.cli.main.os.dup2", lambda fd, to: moved.append(to))
    monkeypatch.setattr("sys.stdout", ClosedPipe())
    assert main(["check", str(GOLDEN / "backtest_clean.jsonl")], out=ClosedPipe()) == 141
    assert moved  # stderr (stdout here has no file descriptor) now points at /dev/null


@pytest.mark.parametrize("command", ["run", "demo"])
def test_mode_defaults_to_basis_execution_mode(command: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """--mode defaults to BASIS_EXECUTION_MODE, as the library does; --mode wins over it."""
    monkeypatch.setenv("BASIS_EXECUTION_MODE", "live")
    args = [good_blocks(tmp_path / "b.jsonl")] if command == "run" else []
    code, text = cli(command, *args, "--out", tmp_path / "a")
    assert code == 0 and "live mode" in text.splitlines()[0]
    (init,) = [r for r in read_journal(tmp_path / "a" / "logs" / "events")
               if r.event_type == "component_initialization"]
    assert init.data["execution_mode"] == "live"
    code, text = cli(command, *args, "--out", tmp_path / "b", "--mode", "backtest")
    assert code == 0 and "backtest mode" in text.splitlines()[0]


@pytest.mark.parametrize("buffered", [True, False])
@pytest.mark.parametrize("argv", [["run", "BLOCKS", "--out", "out"], ["demo", "--out", "out"],
                                  ["check", "LOG"], ["diagram"], ["--help"]])
def test_a_closed_pipe_ends_the_command_quietly(argv: list[str], buffered: bool,
                                                tmp_path: Path) -> None:
    """`fsm-exec ... | head -1`: when the reader is gone, exit 141 with nothing on stderr."""
    paths = {"BLOCKS": str(good_blocks(tmp_path / "b.jsonl")),
             "LOG": str(GOLDEN / "backtest_clean.jsonl")}
    proc = subprocess.Popen([*FSM_EXEC, *(paths.get(a, a) for a in argv)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=subprocess_env(PYTHONUNBUFFERED=None if buffered else "1"))
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader goes away before anything is written
    err = proc.stderr.read()
    # some 3.11 releases' argparse ignore a failed write of --help (unbuffered, nothing is
    # left to fail later)
    assert proc.wait(timeout=120) in ((141, 0) if argv == ["--help"] and not buffered
                                      else (141,))
    assert err == b""


CONFIG_ERRORS: dict[str, tuple[str, bytes | str, str]] = {
    "toml missing value": ("c.toml", f'api_key = "{CANARY}"\nmax_retries = \n',
                           ":2:15: not valid TOML: Invalid value"),
    "toml unterminated": ("c.toml", f'x = 1\napi_key = "{CANARY}\n',
                          ":2:32: not valid TOML: illegal character in a string"),
    "toml control character": ("c.toml", f'api_key = "{CANARY}\x01"\n',
                               ":1:32: not valid TOML: illegal character in a string"),
    "toml table twice": ("c.toml", f"[{CANARY}]\n[{CANARY}]\n",
                         ":2:22: not valid TOML: a table declared twice"),
    "toml key twice inline": ("c.toml", f"t = {{ {CANARY} = 1, {CANARY} = 2 }}\n",
                              ":1:57: not valid TOML: duplicate key in an inline table"),
    "toml key twice": ("c.toml", f"{CANARY} = 1\n{CANARY} = 2\n",
                       ":2:25: not valid TOML: Cannot overwrite a value"),
    "toml two statements on a line": ("c.toml", f'a = "{CANARY}" b = 1\n',
                                      ":1:28: not valid TOML: Expected newline or end of "
                                      "document after a statement"),
    "toml unclosed array": ("c.toml", f'k = ["{CANARY}"', ":1:28: not valid TOML: "
                            "Unclosed array"),
    "json bare word": ("c.json", f'{{"api_key": {CANARY}}}', ":1:13: not valid JSON: "
                       "Expecting value"),
    "json bad escape": ("c.json", f'{{"api_key": "{CANARY}\\q"}}',
                        ":1:34: not valid JSON: Invalid \\escape"),
    "json trailing data": ("c.json", f'{{}} "{CANARY}"', ":1:4: not valid JSON: Extra data"),
    "a directory": ("d.toml", "", ": a directory, not a regular file (only a regular file "
                    "is read)"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_ERRORS))
def test_a_config_error_names_file_line_column_and_reason_never_content(
        case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A broken TOML or JSON config: exit 2, `file:line:column: not valid ...: <reason>`,
    and nothing of the file's content (a secret) is shown; nothing is created."""
    name, content, where = CONFIG_ERRORS[case]
    config = tmp_path / name
    if case == "a directory":
        config.mkdir()
    elif isinstance(content, bytes):
        config.write_bytes(content)
    else:
        config.write_text(content)
    out = tmp_path / "out"
    assert cli("run", good_blocks(tmp_path / "b.jsonl"), "--config", config,
               "--out", out) == (2, "")
    err = capsys.readouterr().err
    assert err == f"fsm-exec run: {config}{where}\n"
    assert "CANARY" not in err
    assert not out.exists()


def test_the_pure_python_json_reason_is_cut_before_it_quotes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """JSON's pure-Python scanner quotes the file after a colon ("Invalid \\escape: 'x'"):
    only the reason before it is shown."""
    def loads(text: str) -> Any:
        raise json.JSONDecodeError(f"Invalid \\escape: {CANARY!r}", text, 3)

    config = tmp_path / "c.json"
    config.write_text(f'{{"k": "{CANARY}"}}')
    monkeypatch.setattr("fsm_exec.cli._common.json.loads", loads)
    with pytest.raises(UsageError) as refused:
        read_config(config)
    assert str(refused.value) == f"{config}:1:4: not valid JSON: Invalid \\escape"


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_a_config_with_a_byte_order_mark_is_read(suffix: str, tmp_path: Path) -> None:
    """A UTF-8 byte order mark at the start of a config is accepted."""
    config = config_file(tmp_path / f"system{suffix}")
    config.write_bytes(b"\xef\xbb\xbf" + config.read_bytes())
    out = tmp_path / "out"
    code, _ = cli("run", good_blocks(tmp_path / "b.jsonl"), "--config", config, "--out", out)
    assert code == 0
    (init,) = [r for r in read_journal(out / "logs" / "events")
               if r.event_type == "component_initialization"]
    assert init.data["config_hash"] == ExecutionConfig(max_retries=5).digest()


def test_run_summary_counts_in_the_singular(tmp_path: Path) -> None:
    """One batch of one block reads "1 batch, 1 block", not "1 batches, 1 blocks"."""
    code, text = cli("run", write_lines(tmp_path / "b.jsonl", block("a")), "--out", tmp_path)
    assert code == 0
    assert text.splitlines()[0] == f"{tmp_path / 'b.jsonl'}: 1 batch, 1 block, backtest mode"


def test_a_duplicate_id_names_the_line_that_used_it_first(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A block id used again: the error names the line that used it first."""
    blocks = write_lines(tmp_path / "b.jsonl", block("x"), "", [block("a"), block("b")],
                         "# c", [block("c"), block("a")])
    assert cli("run", blocks, "--out", tmp_path / "out") == (2, "")
    err = capsys.readouterr().err
    assert err.startswith(f"fsm-exec run: {blocks}:5: [EXEC-004] batch of 2 blocks refused")
    assert ("block 'a' @ $[1].block_id: already queued, in flight or recently finished "
            "(first used on line 3)") in err


def test_a_blocks_file_with_a_byte_order_mark_runs(tmp_path: Path) -> None:
    """A blocks file saved with a UTF-8 byte order mark runs like one without."""
    blocks = good_blocks(tmp_path / "b.jsonl")
    blocks.write_bytes(b"\xef\xbb\xbf" + blocks.read_bytes())
    code, text = cli("run", blocks, "--out", tmp_path / "out")
    assert code == 0 and ": 3 batches, 4 blocks," in text


@pytest.mark.parametrize("command", ["run", "demo"])
def test_output_paths_are_printed_one_way(command: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Every output path in the summary is under --out as given (all relative here)."""
    monkeypatch.chdir(tmp_path)
    args = [good_blocks(Path("b.jsonl"))] if command == "run" else []
    code, text = cli(command, *args, "--out", "rel")
    assert code == 0
    r = rows(text)
    printed = [r["journal:"], r["events CSV:"], r["deltas CSV:"], r["run diagram:"]]
    assert all(p.startswith("rel/") and Path(p).is_file() for p in printed), printed


@pytest.mark.parametrize("command", ["run", "demo"])
@pytest.mark.parametrize(("make", "message"), [
    ("logs", "OUT/logs is a file, where the outputs need a directory"),
    ("results/ID/events.csv", "OUT/results/ID/events.csv is a directory, where an output "
                              "file goes"),
    ("run_diagram.md", "OUT/run_diagram.md is a directory, where an output file goes"),
])
def test_output_paths_that_cannot_be_written_are_refused_first(
        command: str, make: str, message: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A file where an output directory goes, or a directory where an output file goes:
    exit 2 naming it, before anything is created."""
    out = tmp_path / "out"
    backtest_id = "run-b" if command == "run" else "demo-backtest"
    target = out / make.replace("ID", backtest_id)
    target.parent.mkdir(parents=True)
    if make == "logs":
        target.write_text("")
    else:
        target.mkdir()
    before = sorted(out.rglob("*"))
    args = [good_blocks(tmp_path / "b.jsonl")] if command == "run" else []
    assert cli(command, *args, "--out", out) == (2, "")
    expected = message.replace("OUT", str(out)).replace("ID", backtest_id)
    assert capsys.readouterr().err == (f"fsm-exec {command}: {expected}: pass --out with a "
                                       "directory\n")
    assert sorted(out.rglob("*")) == before


def test_live_demo_help_says_what_its_journal_shows(
        live_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The live demo's help names what its journal really holds: one reconciliation timeout
    then success, one block timing out on all 3 attempts, failing, a halt and a resume."""
    from fsm_exec.cli.commands.demo import LIVE_DEMO_SHOWS

    records = list(read_journal(live_log))
    timeouts: dict[str, int] = {}
    for r in records:
        if r.event_type == "reconciliation_timeout":
            timeouts[r.data["block_id"]] = timeouts.get(r.data["block_id"], 0) + 1
    (failed,) = [r.data for r in records if r.event_type == "block_failed"]
    assert sorted(timeouts.values()) == [1, 3]
    assert failed == {"block_id": max(timeouts, key=timeouts.__getitem__),
                      "error_code": "EXEC-002", "attempts": 3}
    resolved = [r.data.get("resolved_by") for r in records if r.event_type == "block_transition"
                and r.data["source"] == "retrying"]
    assert {"query_found", "query_not_found", "late_reply"} <= set(resolved)
    assert [r.event_type for r in records if r.event_type.startswith("manager_")] == [
        "manager_halted", "manager_resumed"]
    for phrase in ("a lost reply (settled by asking the venue)",
                   "a refused connection (routed again)",
                   "a reply after the execution timeout (used)",
                   "times out once and then succeeds", "times out on all 3 attempts",
                   "the block fails (EXEC-002)", "the manager halts and the demo resumes it"):
        assert phrase in LIVE_DEMO_SHOWS
    assert "failed reconciliation" not in LIVE_DEMO_SHOWS
    assert main(["demo", "--help"]) == 0
    assert " ".join(LIVE_DEMO_SHOWS.split()) in " ".join(capsys.readouterr().out.split())


# ------------------------------------------------------------------------ progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_after_a_while_then_throttles() -> None:
    """The bar appears after `after` s, redraws at most every 0.1 s; close() ends the line."""
    clock, stream = Clock(), io.StringIO()
    p = Progress(10, stream, after=2.0, clock=clock, force=True)
    clock.now = 1.99
    p.update(1)
    assert stream.getvalue() == ""
    clock.now = 2.0
    p.update(2)
    assert stream.getvalue() == "\r" + progress_line(2, 10, 2.0)
    clock.now = 2.05
    p.update(3)
    assert stream.getvalue().count("\r") == 1
    clock.now = 2.15
    p.update(4)
    assert stream.getvalue().endswith("\r" + progress_line(4, 10, 2.15))
    p.close()
    assert stream.getvalue().count("\r") == 2 and stream.getvalue().endswith("\n")


def test_progress_close_writes_nothing_when_nothing_was_drawn() -> None:
    """A run shorter than `after` leaves the stream untouched, close() included."""
    clock, stream = Clock(), io.StringIO()
    p = Progress(3, stream, clock=clock, force=True)
    clock.now = 1.0
    p.update(3)
    p.close()
    assert stream.getvalue() == ""


@pytest.mark.parametrize(("stream", "force", "enabled"), [
    (io.StringIO(), False, False), (io.StringIO(), True, True), (Terminal(), False, True)])
def test_progress_only_on_a_terminal_unless_forced(stream: io.StringIO, force: bool,
                                                   enabled: bool) -> None:
    """The bar is drawn on a terminal, or when forced; never into a file or pipe."""
    clock = Clock()
    p = Progress(1, stream, clock=clock, force=force)
    assert p.enabled is enabled
    clock.now = 10.0
    p.update(1)
    p.close()
    assert bool(stream.getvalue()) is enabled


@pytest.mark.parametrize(("args", "line"), [
    ((0, 4, 0.0), "[..............................] 0/4 batches 0.0 s"),
    ((1, 4, 2.5), "[#######.......................] 1/4 batches 2.5 s"),
    ((4, 4, 12.34), "[##############################] 4/4 batches 12.3 s"),
    ((0, 0, 1.0), "[##############################] 0/0 batches 1.0 s"),
    ((1, 2, 0.0, 4), "[##..] 1/2 batches 0.0 s"),
])
def test_progress_line_format(args: tuple[Any, ...], line: str) -> None:
    """A bar of `width` cells, done/total batches and the elapsed seconds."""
    assert progress_line(*args) == line


# ------------------------------------------------------------------------ check


def test_check_passes_a_good_journal(live_log: Path) -> None:
    """check on the demo's journal: exit 0 and OK."""
    code, text = cli("check", live_log)
    assert code == 0
    assert text.splitlines()[0] == "OK"


def test_check_names_the_broken_line(live_log: Path, tmp_path: Path) -> None:
    """A transition to an impossible state: exit 1 and FAILED: <path>:<line>:."""
    lines = (live_log / JOURNAL.name).read_text().splitlines()
    n = next(i for i, line in enumerate(lines, start=1)
             if '"block_transition"' in line and '"dest":"routing"' in line)
    record = json.loads(lines[n - 1])
    record["data"]["dest"] = "success"
    lines[n - 1] = json.dumps(record)
    copy = tmp_path / "broken.jsonl"
    copy.write_text("\n".join(lines) + "\n")
    code, text = cli("check", copy)
    assert code == 1
    assert text.startswith(f"FAILED: 1 problem\n  - {copy}:{n}: ")


GOLDEN_VERDICTS = {
    "backtest_clean": (0, "OK"),
    "live_faults": (0, "OK"),
    "crashed": (0, "in doubt: block 'c2' (routing)"),
    "crashed_then_recovered": (0, "OK"),
    # the broken ones fail at the line make_golden.py broke
    **{name: (1, f"{name}.jsonl:{line}: ") for name, (_, line, _) in BAD.items()},
}


@pytest.mark.parametrize("name", sorted(GOLDEN_VERDICTS))
def test_check_golden_journals(name: str) -> None:
    """Golden journals: good ones exit 0 (a crash in doubt), bad ones 1 at the broken line."""
    code, text = cli("check", GOLDEN / f"{name}.jsonl")
    expected_code, phrase = GOLDEN_VERDICTS[name]
    assert code == expected_code
    assert phrase in text
    assert text.startswith("OK\n" if code == 0 else
                           f"FAILED: 1 problem\n  - {GOLDEN / name}.jsonl:")


def split_journal(source: Path, tmp_path: Path) -> tuple[Path, Path]:
    lines = source.read_text().splitlines(keepends=True)
    a, b = tmp_path / "part1.jsonl", tmp_path / "part2.jsonl"
    a.write_text("".join(lines[:len(lines) // 2]))
    b.write_text("".join(lines[len(lines) // 2:]))
    return a, b


def test_check_reads_several_files_in_the_order_given(tmp_path: Path) -> None:
    """Several journal files are one journal, in the order given."""
    a, b = split_journal(GOLDEN / "backtest_clean.jsonl", tmp_path)
    code, text = cli("check", a, b)
    whole = cli("check", GOLDEN / "backtest_clean.jsonl")[1]
    assert code == 0 and text.replace("in 2 files", "in 1 file") == whole
    code, text = cli("check", b, a)
    assert code == 1 and f"\n  - {b}:1: " in text


@pytest.mark.parametrize("make", ["missing", "directory among files"])
def test_check_refuses_what_it_cannot_read(make: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A missing path, or a directory among several files: exit 2, no traceback."""
    good = GOLDEN / "backtest_clean.jsonl"
    args = [tmp_path / "nope"] if make == "missing" else [good, tmp_path]
    assert cli("check", *args) == (2, "")
    err = capsys.readouterr().err
    assert err.startswith("fsm-exec check: ")
    assert str(args[-1]) in err


@pytest.mark.parametrize("make", ["events.csv", "blocks.jsonl", "empty.csv", "torn"])
def test_check_of_a_file_that_is_not_a_journal_is_a_usage_error(
        make: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`check events.csv` (or a blocks file, an empty .csv, a .torn file): exit 2 saying it
    is not a journal, not exit 1 for a broken one."""
    if make == "events.csv":
        assert cli("demo", "--out", tmp_path)[0] == 0
        path = tmp_path / "results" / "demo-backtest" / "events.csv"
    elif make == "blocks.jsonl":
        path = good_blocks(tmp_path / "blocks.jsonl")
    elif make == "empty.csv":
        path = tmp_path / "empty.csv"
        path.write_text("")
    else:
        path = tmp_path / "execution_manager_events.jsonl.torn"
        path.write_text('{"seq": 9, "ti\n')
    assert cli("check", path) == (2, "")
    assert capsys.readouterr().err == (
        f"fsm-exec check: {path}: not a journal (its first line is not a journal record); "
        "pass a log directory or its *_events.jsonl files\n")


def test_check_of_an_unreadable_file_is_a_usage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A journal file that cannot be opened: exit 2 saying why."""
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("fsm_exec.journal.reader.open_regular", refuse)  # how the CLI opens it
    journal = GOLDEN / "backtest_clean.jsonl"
    assert cli("check", journal) == (2, "")
    assert capsys.readouterr().err == f"fsm-exec check: {journal}: cannot read: Permission denied\n"


def test_check_still_reads_a_broken_or_renamed_journal(tmp_path: Path) -> None:
    """A .jsonl journal whose first line is garbage is a broken journal (exit 1); a journal
    under another name is still a journal (exit 0)."""
    good = (GOLDEN / "backtest_clean.jsonl").read_text()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("garbage\n" + good)
    code, text = cli("check", broken)
    assert code == 1 and f"\n  - {broken}:1: " in text
    renamed = tmp_path / "journal.txt"
    renamed.write_text(good)
    code, text = cli("check", renamed)
    assert code == 0 and text.startswith("OK")


# ------------------------------------------------------------------------ diagram


def test_diagram_default_is_the_mermaid_lifecycle() -> None:
    """diagram prints the lifecycle as Mermaid, every state in it."""
    code, text = cli("diagram")
    assert code == 0
    assert "flowchart TB" in text
    for state in BlockState:
        assert f'    {state}("{state}")' in text or f'    {state}(["{state}"])' in text


@pytest.mark.parametrize(("fmt", "marks"), [
    ("mermaid", ["flowchart TB", "start_marker --> queued"]),
    ("dot", ["digraph block_lifecycle {", '"__start" -> "queued"']),
    ("markdown", ["# Block lifecycle", "```mermaid", "| source | trigger | dest |"]),
    ("table", ["| source | trigger | dest | meaning |", "| `queued` | `start` | `routing` |"]),
])
def test_diagram_text_formats(fmt: str, marks: list[str]) -> None:
    """--format mermaid|dot|markdown|table prints that format."""
    code, text = cli("diagram", "--format", fmt)
    assert code == 0
    for mark in marks:
        assert mark in text


def test_diagram_svg_records_its_dot_source() -> None:
    """--format svg prints SVG that records the hash of the DOT it was rendered from."""
    code, text = cli("diagram", "--format", "svg")
    assert code == 0
    assert text.startswith("<?xml")
    assert "<svg" in text and "fsm_exec dot source sha256" in text
    assert svg_source_digest(text.encode()) == dot_digest(to_dot(lifecycle_model()))


def test_diagram_png_needs_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--format png writes a PNG to --output, and refuses to print one to stdout."""
    png = tmp_path / "life.png"
    assert cli("diagram", "--format", "png", "--output", png) == (0, "")
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert cli("diagram", "--format", "png") == (2, "")
    assert "--format png needs --output FILE" in capsys.readouterr().err


def test_diagram_output_writes_the_file(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """-o writes what would be printed; an unwritable -o is a usage error."""
    target = tmp_path / "life.mmd"
    assert cli("diagram", "-o", target) == (0, "")
    assert target.read_text() == cli("diagram")[1]
    assert cli("diagram", "-o", tmp_path / "no" / "such" / "dir.mmd")[0] == 2
    assert "--output: cannot write" in capsys.readouterr().err


def test_diagram_events_draws_counts() -> None:
    """--events LOG draws how often each edge was taken and where blocks ended."""
    code, text = cli("diagram", "--events", GOLDEN / "backtest_clean.jsonl")
    assert code == 0
    assert f'queued -->|"start {TIMES}3"| routing' in text
    assert f'routing -.->|"route_failed {TIMES}0"| retrying' in text
    assert 'success(["success<br>3 blocks"])' in text


def test_diagram_events_reads_several_files(tmp_path: Path) -> None:
    """--events takes several journal files as one journal."""
    a, b = split_journal(GOLDEN / "backtest_clean.jsonl", tmp_path)
    assert cli("diagram", "--events", a, b) == cli(
        "diagram", "--events", GOLDEN / "backtest_clean.jsonl")


def test_diagram_block_draws_its_path(live_log: Path) -> None:
    """--events LOG --block ID numbers that block's moves, with attempts."""
    code, text = cli("diagram", "--events", live_log, "--block", "hedge-20251002T10",
                     "--format", "table")
    assert code == 0
    assert "| source | trigger | dest | steps | meaning |" in text
    assert "| `queued` | `start` | `routing` | 1 |" in text
    code, text = cli("diagram", "--events", live_log, "--block", "hedge-20251002T10")
    assert 'queued ==>|"start \N{MIDDLE DOT} 1"| routing' in text
    assert "ended in failed after 8 transitions" in text


@pytest.mark.parametrize(("args", "message"), [
    (["--block", "a1"], "--block needs --events LOG"),
    (["--events", "GOLDEN", "--block", "nope"], "no transition of block 'nope'"),
    (["--events", "MISSING"], "MISSING: no such file or directory"),
    (["--events", "GOLDEN", "MISSING"], "MISSING: no such file or directory"),
    (["--events", "GOLDEN", "EMPTYDIR"], "holds no ExecutionManager journal"),
    (["--events", "EMPTYFILE"], "no journal records"),
    (["--diff", "MISSING"], "--diff: cannot read"),
    (["--diff", "GOLDEN"], "not JSON"),
    (["--diff", "NOTTABLE"], "not a lifecycle table"),
    (["--diff", "NOTTABLE", "--events", "GOLDEN"], "drop --events"),
])
def test_diagram_refuses_bad_events(args: list[str], message: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """--block without --events, an unknown block, no journal, an unreadable table: exit 2."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "table.json").write_text('{"format": "something else"}')
    paths = {"GOLDEN": GOLDEN / "backtest_clean.jsonl", "MISSING": tmp_path / "MISSING",
             "EMPTYDIR": tmp_path / "empty",
             "EMPTYFILE": tmp_path / "empty.jsonl", "NOTTABLE": tmp_path / "table.json"}
    argv = [str(paths.get(a, a)) for a in args]
    assert cli("diagram", *argv) == (2, "")
    err = capsys.readouterr().err
    assert err.startswith("fsm-exec diagram: ")
    assert message in err


def broken_journal(tmp_path: Path, how: str = "edge") -> tuple[Path, int]:
    """A demo backtest journal with one bad line (a move that is no edge, or a torn
    record), and that line's number."""
    from fsm_exec.cli.demo import run_demo

    out = tmp_path / "demo"
    run_demo("backtest", out=out, report=False)
    path = out / JOURNAL
    lines = path.read_text().splitlines(keepends=True)
    n = [i for i, line in enumerate(lines) if '"block_transition"' in line][5]
    if how == "edge":
        record = json.loads(lines[n])
        record["data"]["dest"] = "cancelled"  # reconciled/executed never lead there
        lines[n] = json.dumps(record) + "\n"
    else:
        lines[n] = lines[n][:40] + "\n"
    path.write_text("".join(lines))
    return path, n + 1


@pytest.mark.parametrize("how", ["edge", "corrupt"])
def test_diagram_refuses_a_journal_that_breaks_the_lifecycle(
        how: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--events on a journal that breaks the lifecycle draws nothing and exits 1, naming
    the first offending file:line."""
    path, line = broken_journal(tmp_path, how)
    assert cli("diagram", "--events", path.parent) == (1, "")
    err = capsys.readouterr().err
    assert err.startswith("fsm-exec diagram: the journal breaks the lifecycle: ")
    assert f"{path}:{line}" in err and "nothing drawn" in err


def changed_table(path: Path) -> Path:
    """A block_lifecycle.json as it was before ``cancelled`` (and with an edge since
    removed and a meaning since reworded)."""
    from fsm_exec.tools.diagram import TableEdge, current_table

    t = current_table()
    old = attrs.evolve(
        t, states=tuple(attrs.evolve(s, meaning="Old words.") if s.name == "routing" else s
                        for s in t.states if s.name != "cancelled"),
        edges=(*(e for e in t.edges if e.trigger != "cancel"),
               TableEdge("routing", "abort", "failed", "An edge that went away.")))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(old.to_json())
    return path


@pytest.mark.parametrize(("fmt", "marks"), [
    ("mermaid", ['queued ==>|"cancel (added)"| cancelled',
                 'routing -.->|"abort (removed)"| failed', 'cancelled(["cancelled<br>(added)"])']),
    ("dot", ['"queued" -> "cancelled" [label="cancel (added)"', 'style=dashed']),
    ("markdown", ["## Changes", "- added state cancelled",
                  "- added edge queued --cancel--&gt; cancelled",
                  "- removed edge routing --abort--&gt; failed",
                  "- meaning of state routing: 'Old words.' -&gt; "]),
    ("table", ["| source | trigger | dest | change | meaning |",
               "| `routing` | `abort` | `failed` | removed |"]),
])
def test_diagram_diff_draws_what_changed(fmt: str, marks: list[str], tmp_path: Path) -> None:
    """--diff OLD.json draws the current lifecycle against an older table, in each format."""
    old = changed_table(tmp_path / "old.json")
    code, text = cli("diagram", "--diff", old, "--format", fmt)
    assert code == 0
    for mark in marks:
        assert mark in text


def test_diagram_diff_of_the_same_table_says_no_change(review: Path) -> None:
    """--diff against the current table draws it plainly, saying nothing changed."""
    code, text = cli("diagram", "--diff", review / "block_lifecycle.json", "--format",
                     "markdown")
    assert code == 0
    assert "No change since" in text and "- none" in text and "(added)" not in text


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
                        "HOME": str(repo), "PATH": "/usr/bin:/bin"})


def test_diagram_diff_ref_reads_the_table_from_git(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--diff-ref REF takes --dir's block_lifecycle.json at that git ref; a ref without it
    is a usage error."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    changed_table(repo / "diagrams" / "block_lifecycle.json")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "old lifecycle")
    code, text = cli("diagram", "--dir", repo / "diagrams", "--diff-ref", "HEAD",
                     "--format", "markdown")
    assert code == 0
    assert "since diagrams/block_lifecycle.json at HEAD" in text
    assert "- added state cancelled" in text
    assert cli("diagram", "--dir", repo / "diagrams", "--diff-ref", "nope")[0] == 2
    assert "'nope' names no commit in " in capsys.readouterr().err
    git(repo, "rm", "-q", "diagrams/block_lifecycle.json")
    git(repo, "commit", "-qm", "no lifecycle")
    (repo / "diagrams").mkdir()
    assert cli("diagram", "--dir", repo / "diagrams", "--diff-ref", "HEAD")[0] == 2
    assert "git has no diagrams/block_lifecycle.json at 'HEAD'" in capsys.readouterr().err
    assert cli("diagram", "--dir", tmp_path, "--diff-ref", "HEAD")[0] == 2
    assert "not in a git repository" in capsys.readouterr().err


@pytest.mark.parametrize("ref", ["--output=WHERE", "-p", "--end-of-options",
                                 "HEAD\n--output=WHERE", "HEAD:diagrams"])
def test_diagram_diff_ref_is_a_ref_never_a_git_option(
        ref: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --diff-ref that git would read as an option (``--output=FILE`` makes git write a
    file anywhere), or that names no commit, is a usage error; git writes nothing."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    changed_table(repo / "diagrams" / "block_lifecycle.json")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "old lifecycle")
    where = tmp_path / "written-by-git"
    ref = ref.replace("WHERE", str(where)).replace("\\n", "\n")
    assert cli("diagram", "--dir", repo / "diagrams", f"--diff-ref={ref}")[0] == 2
    assert not where.exists()
    err = capsys.readouterr().err
    assert "is not a git ref" in err or "names no commit" in err


def test_diagram_check_says_how_the_lifecycle_changed(review: Path, tmp_path: Path) -> None:
    """--check on a stale block_lifecycle.json says in words what changed in the table."""
    d = tmp_path / "diagrams"
    shutil.copytree(review, d)
    changed_table(d / "block_lifecycle.json")
    code, text = cli("diagram", "--check", "--dir", d)
    assert code == 1
    lines = text.splitlines()
    assert lines[0] == f"stale: {d / 'block_lifecycle.json'}"
    assert lines[1] == f"the lifecycle changed since {d / 'block_lifecycle.json'}:"
    assert "  added state cancelled" in lines
    assert "  removed edge routing --abort--> failed" in lines
    assert lines[-1] == "regenerate with: fsm-exec diagram --write"


def test_diagram_write_then_check(review: Path, tmp_path: Path) -> None:
    """--write writes the 8 review files; --check on them exits 0."""
    assert sorted(p.name for p in review.iterdir()) == REVIEW_FILES
    svg = (review / "block_lifecycle.svg").read_bytes()
    assert svg.startswith(b"<?xml") and svg_source_digest(svg) == dot_digest(
        (review / "block_lifecycle.dot").read_text())
    code, text = cli("diagram", "--check", "--dir", review)
    assert (code, text) == (0, f"{review}: all diagrams current\n")


def _append(path: Path) -> None:
    path.write_text(path.read_text() + "edited\n")


def _plain_svg(path: Path) -> None:
    path.write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')


def _remarker(path: Path) -> None:
    path.write_bytes(path.read_bytes().replace(b"sha256: ", b"sha256: 0", 1))


DAMAGE: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "edited": ("demo_live_run.md", _append, ""),
    "edited dot": ("block_lifecycle.dot", _append, ""),
    "deleted": ("block_lifecycle.mmd", Path.unlink, " (missing)"),
    "svg from another DOT": ("demo_live_run.svg", _remarker,
                             " (not rendered from the current DOT)"),
    "svg without marker": ("block_lifecycle.svg", _plain_svg,
                           " (not rendered from the current DOT)"),
}


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_diagram_check_names_each_stale_file(how: str, review: Path, tmp_path: Path) -> None:
    """--check exits 1 and prints `stale: <dir>/<file>` (and why) for a changed file."""
    d = tmp_path / "diagrams"
    shutil.copytree(review, d)
    name, damage, why = DAMAGE[how]
    damage(d / name)
    code, text = cli("diagram", "--check", "--dir", d)
    assert code == 1
    assert text.splitlines() == [f"stale: {d / name}{why}",
                                 "regenerate with: fsm-exec diagram --write"]


def test_diagram_check_and_write_exclude_each_other(
        capsys: pytest.CaptureFixture[str]) -> None:
    """--check and --write together: usage error."""
    assert cli("diagram", "--check", "--write") == (2, "")
    assert "not allowed with argument" in capsys.readouterr().err


def test_committed_diagrams_are_current(monkeypatch: pytest.MonkeyPatch) -> None:
    """The review diagrams committed in diagrams/ are what the code generates."""
    monkeypatch.chdir(ROOT)
    assert cli("diagram", "--check") == (0, "diagrams: all diagrams current\n")


@pytest.mark.parametrize("args", [["--format", "svg"], ["--format", "png", "-o", "x.png"],
                                  ["--write", "--dir", "d"]])
def test_diagram_without_graphviz_says_how_to_install_it(
        args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Without Graphviz's dot, SVG and PNG are a usage error that says how to install it."""
    monkeypatch.setattr("fsm_exec.tools.diagram.graphviz.shutil.which", lambda name: None)
    monkeypatch.chdir(tmp_path)
    assert cli("diagram", *args)[0] == 2
    err = capsys.readouterr().err
    assert "Graphviz" in err and "apt-get install graphviz" in err
    assert not (tmp_path / "x.png").exists()


# ------------------------------------------------------------------------ output ownership


def test_run_twice_into_one_folder_replaces_its_own_journal(tmp_path: Path) -> None:
    """A second run into the same --out replaces the first run's journal (not appends)."""
    blocks = good_blocks(tmp_path / "b.jsonl")
    out = tmp_path / "out"
    assert cli("run", blocks, "--out", out)[0] == 0
    assert cli("run", blocks, "--out", out)[0] == 0
    code, text = cli("check", out / "logs" / "events")
    assert code == 0 and "blocks accepted 4" in text


@pytest.mark.parametrize("other", ["demo", "foreign"])
def test_run_never_touches_a_journal_it_did_not_write(
        tmp_path: Path, other: str, capsys: pytest.CaptureFixture[str]) -> None:
    """run refuses a folder holding another command's (or anyone's) journal, untouched."""
    out = tmp_path / "out"
    if other == "demo":
        assert cli("demo", "--out", out)[0] == 0
    else:
        with EventLogger(out / "logs" / "events") as el:
            el.log_event(0, "x", "ExecutionManager", {})
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert cli("run", good_blocks(tmp_path / "b.jsonl"), "--out", out)[0] == 2
    assert "did not write" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_demo_leaves_a_foreign_torn_file_alone(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A torn journal tail the demo did not write is someone's evidence: demo refuses."""
    log_dir = tmp_path / "logs" / "events"
    log_dir.mkdir(parents=True)
    torn = log_dir / "execution_manager_events.jsonl.torn"
    torn.write_text('{"seq": 9, "ti\n')
    assert cli("demo", "--out", tmp_path)[0] == 2
    assert torn.read_text() == '{"seq": 9, "ti\n'


def test_run_with_a_bad_config_writes_nothing(tmp_path: Path) -> None:
    """A config the manager refuses is refused before any output exists."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("execution_timeout = 999\n")
    out = tmp_path / "out"
    assert cli("run", good_blocks(tmp_path / "b.jsonl"), "--config", cfg, "--out", out)[0] == 2
    assert not out.exists()


def test_check_refuses_a_folder_without_a_journal(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped or empty log folder is a usage error, not an OK journal."""
    assert cli("check", tmp_path)[0] == 2
    assert "holds no ExecutionManager journal" in capsys.readouterr().err


# ------------------------------------------------------------------------ run: stop and resume


def _blocks_file(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps(block(f"s{i}")) + "\n" for i in range(n)))
    return path


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stopped_live_run_says_what_is_in_doubt_and_resumes(tmp_path: Path, sig: int,
                                                              code: int) -> None:
    """Ctrl-C (or SIGTERM) stops `run --mode live` with a short message, no traceback;
    running it again resumes from the journal, never deletes it, and every block ends
    exactly once in it."""
    blocks_file = _blocks_file(tmp_path / "blocks.jsonl", 4000)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "fsm_exec", "run", str(blocks_file), "--mode", "live",
            "--out", str(out)]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = out / "logs" / "events" / "execution_manager_events.jsonl"
    for _ in range(500):  # wait until it is really running blocks
        if journal.exists() and journal.stat().st_size > 20_000:
            break
        time.sleep(0.01)
    child.send_signal(sig)
    stdout, stderr = child.communicate(timeout=60)
    assert child.returncode == code, (stdout, stderr)
    assert "Traceback" not in stderr and "run the same command again" in stderr
    assert len(stderr.splitlines()) <= 4
    assert check_journal(out / "logs" / "events").ok
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("resuming from ")
    report = check_journal(out / "logs" / "events")
    assert report.ok and report.blocks_executed == 4000 and not report.queued
    ends = Counter(r.data["block_id"] for r in read_journal(out / "logs" / "events")
                   if r.event_type == "block_transition" and r.data["dest"] == "success")
    assert set(ends.values()) == {1} and len(ends) == 4000


def test_fresh_moves_a_live_journal_aside_and_never_deletes_it(tmp_path: Path) -> None:
    """--fresh starts over in live mode: the old journal is moved to logs/events.<time>."""
    blocks_file = _blocks_file(tmp_path / "blocks.jsonl", 3)
    out = tmp_path / "out"
    assert cli("run", blocks_file, "--mode", "live", "--out", out)[0] == 0
    code, text = cli("run", blocks_file, "--mode", "live", "--out", out, "--fresh")
    assert code == 0 and "was moved to" in text
    kept = [p for p in (out / "logs").iterdir() if p.name.startswith("events.")]
    assert len(kept) == 1 and check_journal(kept[0]).blocks_executed == 3


def test_run_never_resumes_a_journal_it_did_not_write(tmp_path: Path) -> None:
    """A live journal another program wrote is left alone: its queue is not run on the
    simulated venue."""
    blocks_file = _blocks_file(tmp_path / "blocks.jsonl", 1)
    log_dir = tmp_path / "out" / "logs" / "events"
    with EventLogger(log_dir, "live") as log:
        ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(), SimVenue(),
                         SimReconciliation(), event_logger=log
                         ).execute_instruction_blocks(T(0), [block("real")])
    before = {p.name: p.read_bytes() for p in log_dir.iterdir()}
    assert cli("run", blocks_file, "--mode", "live", "--out", tmp_path / "out")[0] == 2
    assert {p.name: p.read_bytes() for p in log_dir.iterdir()} == before


@pytest.mark.parametrize(("field", "value"), [
    ("action", CANARY), ("block_id", CANARY), ("instructions", [{"venue": CANARY}]),
    ("priority", CANARY), ("api_key", CANARY)])
@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_run_never_prints_a_config_secret_put_in_the_blocks_file(
        field: str, value: Any, suffix: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The config (and its redactor) is read before the blocks file is validated: a
    template that put the api_key into a block's field is refused (exit 2, naming the line
    and the field) and the key never reaches stderr or stdout."""
    config = tmp_path / f"system{suffix}"
    config.write_text(f'api_key = "{CANARY}"\n' if suffix == ".toml"
                      else json.dumps({"api_key": CANARY}))
    item = {**block("a"), field: value}
    blocks = write_lines(tmp_path / "b.jsonl", block("z"), item)
    assert main(["run", str(blocks), "--config", str(config), "--out",
                 str(tmp_path / "out")]) == 2
    out, err = capsys.readouterr()
    assert CANARY not in out + err and CANARY[3:12] not in out + err
    assert f"{blocks}:2: " in err
    assert not (tmp_path / "out").exists()
