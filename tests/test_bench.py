"""Tests for benchmarks/bench.py: the hand-written limit does the same work as fsm_exec.

No timings here (the machine is shared and noisy); these pin that the limit the ratios are
taken against writes the same journal records and returns the same status dicts as fsm_exec
on the same calls, so that its figure is the cost of the same work.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

from fsm_exec import EventLogger, ExecutionManager

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module
    spec.loader.exec_module(module)
    return module


def _records(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_bytes().splitlines():
        record = orjson.loads(line)
        if record["event_type"] in ("component_initialization", "checkpoint"):
            continue  # written once, when a journal starts: not per-call work
        del record["seq"]
        record["data"].pop("processing_time_ms", None)
        out.append(record)
    return out


@pytest.mark.parametrize(("per_call", "every"), [(1, 1), (10, 1), (100, 1), (1, 10), (1, 0)])
def test_limit_writes_what_fsm_exec_writes(bench: Any, tmp_path: Path, per_call: int,
                                           every: int) -> None:
    """Per workload, the limit's journal holds fsm_exec's records (seq and timing aside)."""
    bench.fsm_exec(per_call, every)(25, "w", tmp_path)()
    bench.limit(per_call, every)(25, "w", tmp_path)()
    ours = _records(tmp_path / "w" / "execution_manager_events.jsonl")
    limit = _records(tmp_path / "w-limit.jsonl")
    assert ours == limit
    blocks = per_call * (len(range(0, 25, every)) if every else 0)
    updates = [r for r in ours if r["event_type"] == "state_update"]
    assert len(ours) == len(updates) + 4 * blocks
    # one state_update per run of calls that say the same: every call that ran a block
    # starts one, the idle calls after it join it
    assert len(updates) == (25 if every == 1 else len(range(0, 25, every)) if every else 1)
    assert sum(u["data"].get("calls", 1) for u in updates) == 25


def test_limit_returns_fsm_exec_status_and_numbers_its_records(bench: Any,
                                                               tmp_path: Path) -> None:
    """Call by call the status dicts are equal, and the limit's seq counts 1, 2, 3..."""
    journal = EventLogger(tmp_path / "j", "backtest")
    em = ExecutionManager({}, bench.Prices(), "backtest", bench.Positions(), bench.Venue(),
                          bench.Reconciled(), event_logger=journal)
    hw = bench.HandWritten(tmp_path / "l.jsonl", bench.Prices(), bench.Venue(),
                           bench.Positions())
    work = zip(bench.timestamps(30), bench.batches(30, "s", 2, 3), strict=True)
    for ts, batch in work:
        assert hw.update_state(ts, "strategy_manager", batch) == em.update_state(
            ts, "strategy_manager", batch)
    hw.close()
    seqs = [orjson.loads(line)["seq"] for line in (tmp_path / "l.jsonl").read_bytes().split()]
    assert seqs == list(range(1, len(seqs) + 1))


def test_limit_refuses_what_fsm_exec_refuses(bench: Any, tmp_path: Path) -> None:
    """A bad block, a reused id or a bad trigger source is refused by the limit too."""
    hw = bench.HandWritten(tmp_path / "l.jsonl", bench.Prices(), bench.Venue(),
                           bench.Positions())
    ts = bench.timestamps(1)[0]
    good = bench.block("r", 0)
    hw.update_state(ts, "strategy_manager", [good])
    for batch in ([good], [{**bench.block("r", 1), "priority": "high"}],
                  [{**bench.block("r", 2), "instructions": [{"token": "ETH",
                                                             "amount": float("nan")}]}]):
        with pytest.raises(ValueError, match="bad"):
            hw.update_state(ts, "strategy_manager", batch)
    with pytest.raises(ValueError, match="trigger_source"):
        hw.update_state(ts, "cron", None)


def test_limit_writes_non_finite_numbers_as_fsm_exec_does(bench: Any) -> None:
    """A record holding NaN or an infinity is written with them as strings, never null."""
    line = bench._careful({"a": float("nan"), "b": [float("inf"), -float("inf")], "c": 1.0})
    assert orjson.loads(line) == {"a": "NaN", "b": ["Infinity", "-Infinity"], "c": 1.0}


def test_observe_adds_the_observer_contenders_to_the_one_block_rows(bench: Any) -> None:
    """--observe adds fsm_exec with each observer (Prometheus, OpenTelemetry, both) to the
    one-block-a-call rows."""
    contenders = bench.observed_contenders()
    assert set(contenders) == {"fsm_exec + Prometheus observer",
                               "fsm_exec + OpenTelemetry observer",
                               "fsm_exec + both observers"}
    plain = [r.name for r in bench.rows(observe=False)]
    observed = [r.name for r in bench.rows(observe=True)]
    assert [n for n in observed if n not in plain] == list(contenders)


def test_observers_change_nothing_the_benchmark_journals(bench: Any, tmp_path: Path) -> None:
    """Each observer contender writes the same records as fsm_exec without observers."""
    bench.fsm_exec()(10, "w", tmp_path / "plain")()
    plain = _records(tmp_path / "plain" / "w" / "execution_manager_events.jsonl")
    for i, factory in enumerate(bench.observed_contenders().values()):
        factory(10, "w", tmp_path / f"o{i}")()
        assert _records(tmp_path / f"o{i}" / "w" / "execution_manager_events.jsonl") == plain




TARGETS = (  # issue 23: every target, one line each in `python -m benchmarks`
    "per block / hand-written limit", "empty call / its limit",
    "with PrometheusObserver / without", "with OpenTelemetry observer / without",
    "year-long loop: fsm_exec's share / the limit's",
    "journal bytes per block, a block every 10 calls",
    "journal bytes per block, one block a call", "journal bytes per empty call",
    "CSV export of 1,000,000 blocks", "recover(), s at", "fsm-exec status, s at",
    "peak RSS of a", "live: per block / its fsyncs' time",
    # issue 26 item 7
    "run set-up: backtest_run + manager, ms", "run close after one block, ms")
PRINTED = ("s per simulated year", "import fsm_exec, ms", "reader µs per record",
           "sweep of 4 backtests: 2 processes / 1 process", "machine: ")


def test_one_command_prints_every_target_with_its_verdict() -> None:
    """`python -m benchmarks --quick` prints one table: each of issue 23's targets with a
    before and an after figure and a verdict, the printed-only figures, the machine and
    the date (no figure is judged here: only that the table says it)."""
    import subprocess

    root = BENCH.parent.parent
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick"], cwd=root,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["figure", "before", "after", "target", "verdict"]
    for label in TARGETS:
        (line,) = [ln for ln in lines if ln.startswith(label)]
        assert line.rstrip().endswith(("met", "NOT met")), line
    for label in PRINTED:
        assert any(label in ln for ln in lines), label
    (bytes_line,) = [ln for ln in lines if ln.startswith("journal bytes per empty call")]
    assert len(bytes_line.split("call")[1].split()) >= 4  # before, after, target, verdict
    assert any(ln.startswith("before: b22fc22; after: this tree") for ln in lines)


# --- benchmarks/instructions.py: the workloads it counts, and how it reads the count -------

INSTRUCTIONS = BENCH.parent / "instructions.py"


@pytest.fixture(scope="module")
def instructions() -> ModuleType:
    spec = importlib.util.spec_from_file_location("instructions", INSTRUCTIONS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("factory", "every"), [("fsm_exec", 1), ("fsm_exec", 0),
                                                ("limit", 1), ("limit", 0)])
def test_each_counted_workload_runs(instructions: ModuleType, factory: str,
                                    every: int) -> None:
    """The child's workload (what callgrind counts) runs for each row of the table."""
    assert instructions.main(["--child", factory, str(every), "20"]) == 0


def test_the_count_is_read_from_callgrinds_summary(instructions: ModuleType) -> None:
    """The total is callgrind's 'Collected' line; output without one is an error naming
    what was printed, never a count of zero."""
    err = b"==7== Events    : Ir\n==7== Collected : 123456789\n==7==\n==7== I   refs: 1\n"
    assert instructions.collected(err) == 123456789
    with pytest.raises(RuntimeError, match="valgrind: command not found"):
        instructions.collected(b"valgrind: command not found")


def test_without_valgrind_it_says_so(instructions: ModuleType,
                                     monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(instructions.shutil, "which", lambda name: None)
    assert instructions.main([]) == 2
    assert "valgrind is not installed" in capsys.readouterr().err


@pytest.mark.parametrize("per_call", [1, 0, 100])
def test_each_compared_workload_runs_for_this_tree(instructions: ModuleType,
                                                   per_call: int) -> None:
    """``--against``'s child runs compare.py's workloads on this tree's package."""
    assert instructions.main(["--child-compare", "", str(per_call), "2", "6"]) == 0


def test_the_compared_workload_runs_for_an_exported_commit(tmp_path: Path) -> None:
    """The same child on a commit exported as compare.py exports it (``fsm_exec_base``),
    in processes of their own (the export imports the package it makes)."""
    root = INSTRUCTIONS.parent.parent
    if subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                      capture_output=True).returncode != 0:
        pytest.skip("needs git and a clone")
    export = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
              "from benchmarks.compare import export_package; "
              "export_package('HEAD', Path(sys.argv[2]))")
    subprocess.run([sys.executable, "-c", export, str(root), str(tmp_path)], check=True)
    assert (tmp_path / "fsm_exec_base" / "__init__.py").is_file()
    done = subprocess.run([sys.executable, str(INSTRUCTIONS), "--child-compare",
                           str(tmp_path), "1", "2", "6"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_against_prints_old_new_and_their_ratio(instructions: ModuleType,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Each row is (longer run - shorter run) / (2 N blocks), old then new, and new/old:
    counts made up here, 1,000 instructions of start-up and ``cost`` a block."""
    compare = importlib.import_module("benchmarks.compare")
    monkeypatch.setattr(compare, "export_package", lambda rev, into: None)
    cost = {True: 200.0, False: 150.0}  # old, new

    def count(flag: str, package_dir: str, per_call: str, calls: str, made: str) -> int:
        assert int(made) == 3 * max(round(1000 * (0.01 if per_call == "100" else 1)), 2)
        blocks = int(calls) * max(int(per_call), 1)
        return int(1000 + cost[package_dir != ""] * blocks)

    monkeypatch.setattr(instructions, "count", count)
    monkeypatch.setattr(instructions.shutil, "which", lambda name: "/usr/bin/valgrind")
    assert instructions.main(["--against", "abc1234"]) == 0
    out = capsys.readouterr().out
    assert "abc1234 (old) against this tree (new)" in out
    for label in ("a block, 1 a call", "an empty call", "a block, 100 a call"):
        (row,) = [line for line in out.splitlines() if line.strip().startswith(label)]
        assert row.split()[-3:] == ["200", "150", "0.750x"], row


def test_against_a_commit_that_cannot_be_imported_says_so(
        instructions: ModuleType, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """An earlier commit whose package fails to import (a SyntaxError, an ImportError of
    its own) is a one-line refusal, exit status 2, not a traceback."""
    compare = importlib.import_module("benchmarks.compare")

    def broken(rev: str, into: Path) -> None:
        raise ImportError("No module named 'fsm_exec_base._old'")

    monkeypatch.setattr(compare, "export_package", broken)
    monkeypatch.setattr(instructions.shutil, "which", lambda name: "/usr/bin/valgrind")
    assert instructions.main(["--against", "abc1234"]) == 2
    err = capsys.readouterr().err
    assert "cannot export and import commit abc1234" in err and "ImportError" in err
    assert "Traceback" not in err


def test_cache_counts_are_read_from_cachegrinds_summary(instructions: ModuleType) -> None:
    """``--cache`` reads the first count of each summary line (commas dropped); a summary
    without one of them is an error naming it, never a count of zero."""
    err = (b"==9== I   refs:      2,445,064,323\n"
           b"==9== I1  misses:       38,213,337\n==9== LLi misses:  21,046\n"
           b"==9== D1  misses:       30,971,438  ( 27,041,790 rd   +   3,929,648 wr)\n"
           b"==9== Branches:        405,899,028  (351,243,412 cond +  54,655,616 ind)\n"
           b"==9== Mispredicts:      47,569,422  ( 26,287,646 cond +  21,281,776 ind)\n")
    assert instructions.cache_counts(err) == {
        "instructions": 2445064323, "I1 misses": 38213337, "D1 misses": 30971438,
        "mispredicted branches": 47569422}
    with pytest.raises(RuntimeError, match="'mispredicted branches'"):
        instructions.cache_counts(err.split(b"==9== Mispredicts")[0])


def test_cache_prints_per_call_counts_and_their_ratios(
        instructions: ModuleType, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Each row is (longer run - shorter run) / (2 N calls) per event; the ratio rows divide
    fsm_exec's by the limit's (counts made up here: start-up 1,000 of each event)."""
    per_call = {("fsm_exec", "1"): 300.0, ("fsm_exec", "0"): 40.0,
                ("limit", "1"): 100.0, ("limit", "0"): 20.0}

    def cache_count(flag: str, factory: str, every: str, calls: str) -> dict[str, int]:
        cost = per_call[factory, every]
        return {name: int(1000 + k * cost * int(calls))
                for k, (name, _) in enumerate(instructions.CACHE_EVENTS, start=1)}

    monkeypatch.setattr(instructions, "cache_count", cache_count)
    monkeypatch.setattr(instructions.shutil, "which", lambda name: "/usr/bin/valgrind")
    assert instructions.main(["--cache", "--calls", "10"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line[:34].strip(): line[34:].split() for line in out}
    assert rows["fsm_exec, a block a call"] == ["300", "600", "900", "1,200"]
    assert rows["limit, an empty call"] == ["20", "40", "60", "80"]
    assert rows["fsm_exec / limit, a block a call"] == ["3.00x"] * 4
    assert rows["fsm_exec / limit, an empty call"] == ["2.00x"] * 4


# --- benchmarks/setup_close.py: SmaCross through the glue alone and the hand-written limit --


def test_smacross_through_the_limit_and_the_glue_trades_as_the_plain_run(
        tmp_path: Path) -> None:
    """The two yardsticks beside fsm_exec's share of a SmaCross run do the same trades as
    the plain run, and the limit journals every crossover (a block accepted and three
    transitions each), its journal closed when the run ends."""
    pytest.importorskip("backtesting")
    import warnings

    setup_close = importlib.import_module("benchmarks.setup_close")
    ex = setup_close.example()
    from backtesting import Backtest
    from backtesting.test import GOOG

    warnings.filterwarnings("ignore", module="backtesting")
    plain = Backtest(GOOG, ex.SmaCross, **ex.OPTIONS).run()
    limit = setup_close.run_closing(Backtest(GOOG, setup_close.limit_strategy(ex, tmp_path),
                                             **ex.OPTIONS))
    glue = Backtest(GOOG, setup_close.limit_strategy(ex, tmp_path, glue_only=True),
                    **ex.OPTIONS).run()
    for run in (limit, glue):
        ex.same_run(plain, run)
    (journal,) = tmp_path.glob("limit-*.jsonl")
    kinds = [orjson.loads(line)["event_type"] for line in journal.read_bytes().splitlines()]
    assert kinds.count("block_accepted") == plain["# Trades"] > 0
    assert kinds.count("block_transition") == 3 * plain["# Trades"]
    assert not setup_close._OPEN  # closed
