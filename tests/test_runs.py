"""Issue 26 item 2: many runs per process, each in its own directory with its id and
parameters journaled, listed with their outcomes (``fsm-exec runs``)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from fsm_exec import (
    ComponentError,
    ExecutionManager,
    InvalidArgumentError,
    backtest_run,
    read_journal,
)
from fsm_exec.cli.main import main
from fsm_exec.sim.venues import (
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)
from fsm_exec.tools.runs import list_runs

from kit import T, blocks


def run(base: Path, run_id: str | None, params: dict[str, Any], n: int,
        fail: bool = False) -> str:
    """One backtest run of ``n`` blocks (the last failing its hand-off when ``fail``)."""
    rc = SimReconciliation(None)
    positions = SimPositionHandler(rc, [False] * (n - 1) + [fail])
    log = backtest_run(base, run_id=run_id, params=params)
    em = ExecutionManager({}, StaticDataProvider(), "backtest", positions, SimVenue(), rc,
                          event_logger=log)
    with em, contextlib.suppress(ComponentError):  # the failing block's, in backtest
        em.update_state(T(0), "strategy_manager", blocks(*(f"b{i}" for i in range(n))))
    return log.log_dir.name


def runs_cli(base: Path, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(["runs", str(base), *args], out=out), out.getvalue()


def test_each_run_gets_its_own_directory_with_its_id_and_params_journaled(
        tmp_path: Path) -> None:
    """backtest_run makes <base>/<run_id> and journals run_started (id, params) first;
    the manager's journal beside it is a fresh one."""
    name = run(tmp_path, "sma-10-20", {"fast": 10, "slow": 20, "cash": 1e4}, 2)
    assert name == "sma-10-20"
    (started,) = list(read_journal(tmp_path / "sma-10-20", "BacktestRun"))
    assert started.event_type == "run_started"
    assert started.data == {"run_id": "sma-10-20",
                            "params": {"fast": 10, "slow": 20, "cash": 1e4}}


def test_a_grid_of_runs_in_one_process_is_listed_with_outcomes(tmp_path: Path) -> None:
    """A grid of runs in one process, a default id among them: fsm-exec runs lists each
    with its parameters and block counts (a failed one, a halted queue), exit 0."""
    run(tmp_path, "fast-5", {"fast": 5}, 3)
    run(tmp_path, "fast-10", {"fast": 10}, 2, fail=True)
    generated = run(tmp_path, None, {"fast": 20}, 1)
    summaries = {r.run_id: r for r in list_runs(tmp_path)}
    assert set(summaries) == {"fast-5", "fast-10", generated}
    five, ten = summaries["fast-5"], summaries["fast-10"]
    assert (five.ok, five.accepted, five.executed, five.failed, five.queued) == (
        True, 3, 3, 0, 0)
    assert (ten.ok, ten.accepted, ten.executed, ten.failed) == (True, 2, 1, 1)
    assert ten.params == {"fast": 10}
    code, text = runs_cli(tmp_path)
    assert code == 0
    lines = text.splitlines()
    assert lines[0].split()[:8] == ["run_id", "started", "check", "accepted", "executed",
                                   "failed", "cancelled", "queued"]
    assert any(line.startswith("fast-10 ") and '{"fast": 10}' in line for line in lines)
    code, out = runs_cli(tmp_path, "--json")
    assert {r["run_id"]: r["executed"] for r in json.loads(out)} == {
        "fast-5": 3, "fast-10": 1, generated: 1}


def test_a_run_id_names_one_run(tmp_path: Path) -> None:
    """A run id already used is refused (never reused, never EXEC-018 against itself)."""
    run(tmp_path, "r1", {}, 1)
    with pytest.raises(InvalidArgumentError, match="already exists"):
        backtest_run(tmp_path, run_id="r1")


@pytest.mark.parametrize("run_id", ["", "..", "a/b", "x" * 65, 5, "sp ace"])
def test_a_run_id_must_name_a_directory(tmp_path: Path, run_id: Any) -> None:
    """A run id is 1-64 letters, digits and ._- (not only dots)."""
    with pytest.raises(InvalidArgumentError, match="run_id: must be"):
        backtest_run(tmp_path, run_id=run_id)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("params", "why"), [
    ({"x": float("nan")}, "finite"), (["fast", 5], "mapping"), ({"x": object()}, "params")])
def test_params_must_be_plain_data(tmp_path: Path, params: Any, why: str) -> None:
    """Parameters are a mapping of plain data, numbers finite; nothing is made otherwise."""
    with pytest.raises(InvalidArgumentError, match=why):
        backtest_run(tmp_path, run_id="r", params=params)
    assert not (tmp_path / "r").exists()


def test_runs_reports_a_run_without_a_manager_journal_and_a_broken_one(
        tmp_path: Path) -> None:
    """A run whose manager never started shows '-' counts; one whose journal fails the
    check makes the exit code 1 and names the problem."""
    backtest_run(tmp_path, run_id="empty").close()
    name = run(tmp_path, "broken", {}, 2)
    journal = tmp_path / name / "execution_manager_events.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:3] + lines[4:]))  # a record lost: a seq gap
    (tmp_path / "not-a-run").mkdir()
    code, text = runs_cli(tmp_path)
    assert code == 1
    assert "broken: " in text and "FAILED" in text
    empty = next(r for r in list_runs(tmp_path) if r.run_id == "empty")
    assert (empty.ok, empty.accepted, empty.problem) == (None, None,
                                                         "no ExecutionManager journal")


def test_runs_of_an_empty_or_missing_directory(tmp_path: Path) -> None:
    """No runs: said so, exit 0; no directory: a usage error (2)."""
    assert runs_cli(tmp_path) == (0, f"{tmp_path}: no runs (directories made by "
                                     "fsm_exec.backtest_run)\n")
    assert runs_cli(tmp_path / "missing")[0] == 2


def test_a_run_journal_is_a_backtest_one(tmp_path: Path) -> None:
    """backtest_run passes EventLogger options on, but never a mode."""
    with pytest.raises(InvalidArgumentError, match="backtest mode"):
        backtest_run(tmp_path, run_id="r", mode="live")
    with backtest_run(tmp_path, run_id="r", buffer_bytes=0) as log:
        assert log.mode == "backtest"


def test_secret_params_are_redacted_in_the_journal_and_the_listing(tmp_path: Path) -> None:
    """Review 7: a run's params are often the config itself: the value of a secret key is
    journaled as [REDACTED] (the record lists the keys it hid), and a secret quoted under
    another key is redacted too, so neither `fsm-exec runs` (text, --json) nor the run's
    journal shows it."""
    secret, nested = "sk-LIVE-abcdef123456", "Zk9x/4Qa+PLm8w=="
    params = {"strategy_mode": "eth_basis", "binance_api_key": secret,
              "venues": [{"name": "kraken", "api_secret": nested}],
              "endpoint": f"https://api.example.com/?key={secret}", "fast": 10}
    run(tmp_path, "r1", params, 1)
    (started,) = list(read_journal(tmp_path / "r1", "BacktestRun"))
    assert started.data["params"]["binance_api_key"] == "[REDACTED]"
    assert started.data["params"]["venues"] == [{"name": "kraken", "api_secret": "[REDACTED]"}]
    assert started.data["params"]["endpoint"] == "https://api.example.com/?key=[REDACTED]"
    assert started.data["params"]["fast"] == 10
    assert started.data["redacted"] == ["binance_api_key", "venues[0].api_secret"]
    texts = [runs_cli(tmp_path)[1], runs_cli(tmp_path, "--json")[1]]
    texts += [p.read_text() for p in tmp_path.rglob("*") if p.is_file()]
    assert "[REDACTED]" in texts[0] and "[REDACTED]" in texts[1]
    for text in texts:
        assert secret not in text and "Zk9x" not in text


def test_params_with_a_malformed_secret_keys_are_refused(tmp_path: Path) -> None:
    """secret_keys in the params must be a list of names, as in a config: else refused,
    nothing created."""
    with pytest.raises(InvalidArgumentError, match="secret_keys"):
        backtest_run(tmp_path, run_id="r1", params={"secret_keys": "webhook"})
    assert not (tmp_path / "r1").exists()
