"""Every script in examples/ runs, as a user would run it (a subprocess, from another
directory), and says what it promises; the observe/ files name only what the observer
exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from fsm_exec import ERROR_CODES, check_journal
from fsm_exec.observe import PrometheusObserver

from kit import rig

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ALERTS = EXAMPLES / "observe" / "alerts.yml"


def run_example(name: str, *args: str, cwd: Path) -> str:
    """The script's output; it must exit 0 within two minutes, writing nothing to stderr
    but warnings."""
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_every_example_has_a_test() -> None:
    """Each script in examples/ is run by a test here (lifecycle_hooks.py is no script: the
    module the example lifecycles name, tested in test_lifecycle_cli.py)."""
    scripts = {p.name for p in EXAMPLES.glob("*.py")} - {"lifecycle_hooks.py"}
    assert scripts == {"first_strategy.py", "live_simulated_exchange.py",
                       "ccxt_style_adapter.py", "fuzz_my_adapter.py", "sweep_ray.py",
                       "backtesting_smacross.py", "four_eyes.py",
                       "maintenance_window.py", "chain_confirmations.py"}


def test_first_strategy_backtests_over_a_price_frame(tmp_path: Path) -> None:
    """The crossover strategy trades over 720 hours, every block succeeds, and its journal
    reads back as DataFrames."""
    out = run_example("first_strategy.py", "--out", str(tmp_path / "run"), cwd=tmp_path)
    lines = out.splitlines()
    m = re.fullmatch(r"hours: 720  blocks executed: (\d+)  failed: 0", lines[0])
    assert m and int(m.group(1)) > 10
    assert lines[2] == (f"journal: {m.group(1)} blocks, {3 * int(m.group(1))} transitions, "
                        f"states {{'success': {m.group(1)}}}")
    assert (tmp_path / "run" / "logs" / "execution_manager_events.jsonl").is_file()


@pytest.mark.ray
def test_sweep_runs_each_backtest_on_ray_with_its_own_journal(tmp_path: Path) -> None:
    """A small sweep on a local Ray (2 CPUs, no dashboard): one row per parameter pair in
    one frame, every block succeeds, each run in its own journal directory that passes
    fsm-exec check, run by Ray's worker processes (not this one)."""
    pytest.importorskip("ray")
    import os
    import tempfile

    ray_tmp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # Ray's socket paths: < 107 bytes
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        proc = subprocess.run(
            [sys.executable, str(EXAMPLES / "sweep_ray.py"), "--fast", "3", "6", "--slow",
             "24", "48", "--hours", "200", "--num-cpus", "2", "--out", str(tmp_path / "runs")],
            cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False, env=env)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["run_id", "fast", "slow", "blocks_executed", "blocks_failed",
                                "equity", "seconds"]
    rows = [ln.split() for ln in lines[1:5]]
    assert sorted(r[0] for r in rows) == ["ma-3-24", "ma-3-48", "ma-6-24", "ma-6-48"]
    assert all(int(r[3]) > 0 and r[4] == "0" for r in rows)
    m = re.fullmatch(r"4 runs in (\d+) worker processes; journals in (.+)", lines[5])
    assert m and m.group(2) == str(tmp_path / "runs")
    for run in sorted((tmp_path / "runs").iterdir()):
        check = subprocess.run([sys.executable, "-m", "fsm_exec", "check", str(run)],
                               capture_output=True, text=True, timeout=60, check=False)
        assert check.returncode == 0, check.stdout + check.stderr


def test_backtesting_smacross_trades_as_the_plain_run_and_journals_every_run(
        tmp_path: Path) -> None:
    """backtesting.py's SmaCross on GOOG through fsm_exec makes the plain run's trades and
    equity; bt.optimize() over a small grid leaves one journal per run (the best run again
    at the end), each passing fsm-exec check with as many blocks as the run's trades."""
    out = run_example("backtesting_smacross.py", "--out", str(tmp_path / "runs"),
                      "--grid", "5,10:20,30", cwd=tmp_path)
    lines = out.splitlines()
    assert re.fullmatch(r"SmaCross on GOOG: 94 trades, equity 55574\.51, the same through "
                        r"fsm_exec \(94 blocks in .*sma-10-20\)", lines[0])
    assert lines[1].startswith("bt.optimize() over 4 parameter pairs: 5 runs, one journal "
                               "each (the best run again at the end), every journal holds "
                               "every block; best n1=10 n2=20")
    listing = subprocess.run([sys.executable, "-m", "fsm_exec", "runs", "--json",
                              str(tmp_path / "runs" / "optimize")], capture_output=True,
                             text=True, timeout=60, check=False)
    assert listing.returncode == 0, listing.stdout + listing.stderr
    runs = json.loads(listing.stdout)
    assert sorted(r["run_id"] for r in runs) == [
        "sma-10-20", "sma-10-20-2", "sma-10-30", "sma-5-20", "sma-5-30"]
    assert all(r["ok"] and r["executed"] == r["accepted"] > 0 and r["queued"] == 0
               for r in runs)
    executed = {r["run_id"]: r["executed"] for r in runs}
    assert executed["sma-10-20"] == executed["sma-10-20-2"] == 94


def test_live_example_fills_each_block_once_despite_lost_replies(tmp_path: Path) -> None:
    """Lost and late replies are injected; every block fills exactly once, none fails, and
    the journal passes fsm-exec check."""
    out = run_example("live_simulated_exchange.py", "--out", str(tmp_path / "run"),
                      cwd=tmp_path)
    assert "lost_response on eth-1" in out and "hang_after on eth-5" in out
    assert "blocks executed: 6  failed: 0  halted: False" in out
    assert "queries after an unknown outcome: 4" in out
    assert out.rstrip().endswith("every block filled exactly once")
    check = subprocess.run([sys.executable, "-m", "fsm_exec", "check",
                            str(tmp_path / "run" / "logs")], capture_output=True, text=True,
                           timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_ccxt_style_adapter_places_one_order_per_block(tmp_path: Path) -> None:
    """Two lost replies are settled by fetch_order; a refused order fails its block."""
    out = run_example("ccxt_style_adapter.py", cwd=tmp_path)
    assert "orders placed per client order id: {'order-0': 1, 'order-1': 1, 'order-2': 1}" in out
    assert "replies lost: 2; fetch_order calls that settled them: 2" in out
    assert "order-bad: failed" in out
    assert out.rstrip().endswith("each block placed exactly one order")


def test_fuzzing_passes_the_adapter_and_catches_the_broken_one(tmp_path: Path) -> None:
    """The kit passes the adapter, finds the broken adapter's double order with the fault
    it injected, and crash points are ok (they exercised fills and hand-offs)."""
    out = run_example("fuzz_my_adapter.py", cwd=tmp_path)
    assert "1. fuzzing the adapter (50 examples): passed" in out
    assert "2. fuzzing the broken adapter: found: placed more than once: {'b1': 2}" in out
    assert "venue lost_response on route call 1 of b1" in out
    assert re.search(r"3\. crash points: \d+ crash points over \d+ journal records "
                     r"\(live\): ok", out)
    assert out.rstrip().endswith("exactly once under every fault and crash tried")


# ------------------------------------------------------------------------ observe/


def exported_names() -> set[str]:
    """Every sample name the observer's metric families can expose."""
    registry = CollectorRegistry()
    rig(observers=[PrometheusObserver(registry)])
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "info": ("_info",)}
    return {m.name + suffix for m in registry.collect()
            for suffix in suffixes.get(m.type, ("",))}


def alert_rules() -> list[dict[str, object]]:
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(ALERTS.read_text())
    assert isinstance(doc, dict) and set(doc) == {"groups"}
    rules: list[dict[str, object]] = []
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["name"]
        rules += group["rules"]
    return rules


def test_alert_rules_are_well_formed() -> None:
    """Each rule has a unique alert name, an expression, a severity, a summary, a
    description and a runbook link that resolves to a page (and an EXEC anchor that
    exists); `for` is a duration."""
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)) >= 8
    for r in rules:
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, r
        assert isinstance(r["expr"], str) and r["expr"].strip()
        assert "for" not in r or re.fullmatch(r"\d+[smhd]", str(r["for"]))
        labels, notes = r["labels"], r["annotations"]
        assert isinstance(labels, dict) and labels["severity"] in {"page", "ticket"}
        assert isinstance(notes, dict) and notes["summary"] and notes["description"]
        page, _, anchor = str(notes["runbook"]).partition("#")
        assert (ROOT / page).is_file(), page
        if anchor:
            assert anchor.upper() in ERROR_CODES, anchor


def test_alert_rules_name_only_exported_metrics_and_cover_the_issue() -> None:
    """Every fsm_exec_* name in the rules is one the observer exports, every error code
    they filter on exists, and halted, in doubt, error rate, no progress and journal fsync
    latency are each alerted on."""
    rules = alert_rules()
    exprs = " ".join(str(r["expr"]) for r in rules)
    used = set(re.findall(r"\bfsm_exec_[a-z0-9_]+", exprs))
    assert used <= exported_names(), used - exported_names()
    assert set(re.findall(r'code="([^"]+)"', exprs)) <= set(ERROR_CODES)
    for metric in ("fsm_exec_halted", "fsm_exec_block_in_flight_age_seconds",
                   "fsm_exec_blocks_total", "fsm_exec_transitions_total",
                   "fsm_exec_last_success_timestamp_seconds",
                   "fsm_exec_journal_fsync_duration_seconds_bucket"):
        assert metric in used, metric


def test_promtool_accepts_the_rules() -> None:
    """`promtool check rules` accepts the file (where Prometheus's promtool is installed)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus); the "
                    "structure and names are checked above")
    proc = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ----------------------------------------------------------- the lifecycle examples


def _both_modes(out: str) -> tuple[list[str], list[str]]:
    """The lines a lifecycle example printed for backtest, then for live."""
    lines = out.splitlines()
    live = lines.index("[live]")
    assert lines[0] == "[backtest]"
    return [x.strip() for x in lines[1:live]], [x.strip() for x in lines[live + 1:]]


def test_four_eyes_example_runs_in_both_modes(tmp_path: Path) -> None:
    """examples/four_eyes.py: the big block waits for approval with the small one queued
    behind it, is routed once approved; a rejected one and an unanswered one are
    cancelled, never routed; the journal checks, in backtest and live."""
    backtest, live = _both_modes(run_example("four_eyes.py", "--out", str(tmp_path / "o"),
                                             cwd=tmp_path))
    assert backtest == live == [
        "big-1 awaiting_approval, small-1 queued (behind it); approvals asked: ['big-1']",
        "approved: big-1 success, small-1 success",
        "rejected: big-2 cancelled",
        "an hour unanswered: big-3 cancelled",
        "routed: ['big-1', 'small-1']; journal check: OK"]
    assert check_journal(tmp_path / "o" / "live").ok


def test_maintenance_window_example_runs_in_both_modes(tmp_path: Path) -> None:
    """examples/maintenance_window.py: a spot block is held in the window (the perp block
    behind it waits), routed once it is over; a held block cancelled is never routed."""
    backtest, live = _both_modes(run_example("maintenance_window.py", cwd=tmp_path))
    assert backtest == live == [
        "01:30 before success",
        "02:10 spot-1 held, other queued (behind it)",
        "02:40 spot-1 held",
        "03:00 spot-1 success, other success",
        "next day 02:15 spot-2 held, then cancelled by the desk: cancelled",
        "routed: ['before', 'other', 'spot-1']; journal check: OK"]


def test_chain_confirmations_example_runs_in_both_modes(tmp_path: Path) -> None:
    """examples/chain_confirmations.py: the deltas are handed off only at 12
    confirmations, in live mode too when swap-1's route reply is lost (found executed, it
    waits for them); a dropped transaction leaves the block in doubt (EXEC-007, halted),
    never routed again, never handed off."""
    backtest, live = _both_modes(run_example("chain_confirmations.py", cwd=tmp_path))
    common = [
        "swap-1 awaiting_confirmations, swap-2 queued; hand-offs: 0",
        "5 confirmations: swap-1 awaiting_confirmations",
        "12 confirmations: swap-1 success, swap-2 awaiting_confirmations; hand-offs: 1"]
    dropped = "swap-2 dropped: failed, halted: True (EXEC-007); hand-offs: 1"
    routed = "routed: {'swap-1': 1, 'swap-2': 1}; journal check: OK"
    assert backtest == [
        *common, "backtest raised ComponentError [EXEC-007]", dropped,
        "swap-1: queued -> routing -> awaiting_confirmations -> pending_reconciliation -> "
        "success", routed]
    # live: swap-1's reply lost, found executed, it still waits for its confirmations
    assert live == [
        *common, dropped,
        "swap-1: queued -> routing -> retrying -> awaiting_confirmations -> "
        "pending_reconciliation -> success", routed]
