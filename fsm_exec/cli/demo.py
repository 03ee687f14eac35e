"""The bundled example: an ETH basis strategy's blocks over a bundled price series.

The strategy buys ETH spot, stakes it for stETH, shorts the same amount on a perpetual and
lends the spare USDT; every hour it re-hedges when the position's ETH delta drifts. Each
instruction is routed to the simulated venue it names (``spot``, ``staking``, ``lending``,
``perp``). The price series is synthetic (a seeded random walk), bundled as
``fsm_exec/data/eth_prices_1h.csv``.
"""

from __future__ import annotations

import csv
import datetime as dt
import time
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from fsm_exec.boundary.blocks import InstructionBlock
from fsm_exec.boundary.canonical import parse_timestamp
from fsm_exec.boundary.config import Environment
from fsm_exec.journal.export import replace_file
from fsm_exec.manager.manager import ExecutionManager
from fsm_exec.observe.seam import Observer
from fsm_exec.sim.venues import FakeClock, FaultyVenue, SimPositionHandler, SimReconciliation

PRICE_FILE = "eth_prices_1h.csv"


def load_prices() -> dict[dt.datetime, dict[str, float]]:
    """The bundled hourly prices, keyed by UTC timestamp."""
    text = resources.files("fsm_exec").joinpath("data", PRICE_FILE).read_text()
    out: dict[dt.datetime, dict[str, float]] = {}
    for row in csv.DictReader(text.splitlines()):
        stamp = row.pop("timestamp")
        ts = parse_timestamp(stamp)  # the package's one parser
        if ts is None:  # pragma: no cover - the bundled file is ours
            raise ValueError(f"{PRICE_FILE}: not an ISO 8601 time with an offset: {stamp!r}")
        out[ts] = {k: float(v) for k, v in row.items()}
    return out


class PriceSeries:
    """A DataProvider over a price table: ``get_data(ts)['market_data']['prices']``."""

    def __init__(self, prices: Mapping[dt.datetime, Mapping[str, float]]) -> None:
        self._prices = prices

    @property
    def timestamps(self) -> list[dt.datetime]:
        return sorted(self._prices)

    def get_data(self, timestamp: Any) -> dict[str, Any]:
        return {"market_data": {"prices": dict(self._prices[timestamp])}}


class VenueRouter:
    """Routes each instruction to the simulated venue it names; idempotent by block_id.

    ``spot``: buy/sell ETH for USDT at the ETH price. ``staking``: stake/unstake ETH for
    stETH at the stETH price. ``lending``: deposit/withdraw USDT as aUSDT. ``perp``:
    short/cover ETH-PERP (margin is not modelled).
    """

    def __init__(self, data: PriceSeries) -> None:
        self._data = data
        self.executed: dict[str, dict[str, Any]] = {}
        self.calls = 0

    def route_instruction(self, timestamp: Any, block: InstructionBlock) -> dict[str, Any]:
        self.calls += 1
        done = self.executed.get(block.block_id)
        if done is not None:
            return done
        prices = self._data.get_data(timestamp)["market_data"]["prices"]
        changes: dict[str, float] = {}

        def add(asset: str, amount: float) -> None:
            changes[asset] = changes.get(asset, 0.0) + amount

        for instr in block.instructions:
            venue, side, amount = instr["venue"], instr["side"], float(instr["amount"])
            sign = 1.0 if side in ("buy", "stake", "deposit", "cover") else -1.0
            if venue == "spot":
                add("ETH", sign * amount)
                add("USDT", -sign * amount * prices["ETH"])
            elif venue == "staking":
                add("ETH", -sign * amount)
                add("stETH", sign * amount * prices["ETH"] / prices["stETH"])
            elif venue == "lending":
                add("USDT", -sign * amount)
                add("aUSDT", sign * amount)
            elif venue == "perp":
                add("ETH-PERP", sign * amount)
            else:
                raise ValueError(f"unknown venue {venue!r} in block {block.block_id!r}")
        deltas = {"block_id": block.block_id, "changes": changes}
        self.executed[block.block_id] = deltas
        return deltas

    def query_execution(self, timestamp: Any, block: InstructionBlock) -> dict[str, Any] | None:
        return self.executed.get(block.block_id)


@attrs.define
class EthBasisStrategy:
    """Emits the blocks of a delta-neutral staked-ETH basis trade."""

    capital: float = 1_000_000.0
    hedge_band: float = 0.001  # re-hedge when |delta| exceeds this share of the short

    def blocks(self, ts: dt.datetime, prices: Mapping[str, float],
               positions: Mapping[str, float]) -> list[dict[str, Any]]:
        stamp = ts.strftime("%Y%m%dT%H")
        if "ETH-PERP" not in positions:
            eth = round(self.capital * 0.6 / prices["ETH"], 6)
            return [
                _block(f"open-{stamp}", "open_basis", 1, [
                    ("spot", "ETH", "buy", eth),
                    ("staking", "ETH", "stake", eth),
                    ("perp", "ETH", "short", eth)]),
                _block(f"lend-{stamp}", "lend_idle_usdt", 2, [
                    ("lending", "USDT", "deposit", round(self.capital * 0.3, 2))]),
            ]
        long_eth = positions.get("stETH", 0.0) * prices["stETH"] / prices["ETH"]
        long_eth += positions.get("ETH", 0.0)
        short = -positions.get("ETH-PERP", 0.0)
        drift = long_eth - short
        if short and abs(drift) > self.hedge_band * short:
            side = "short" if drift > 0 else "cover"
            return [_block(f"hedge-{stamp}", "rehedge", 1,
                           [("perp", "ETH", side, round(abs(drift), 6))])]
        return []


def _block(block_id: str, action: str, priority: int,
           legs: list[tuple[str, str, str, float]]) -> dict[str, Any]:
    return {"block_id": block_id, "action": action, "priority": priority,
            "instructions": [{"venue": v, "token": t, "side": s, "amount": a}
                             for v, t, s, a in legs]}


#: Live demo faults, one per venue call in order: a lost reply (settled by asking the venue),
#: a refused connection (routed again), a reply after the timeout (a late reply, used).
LIVE_VENUE_FAULTS: tuple[str | None, ...] = (None, "lost_response", "error", None,
                                             "hang_after")
#: Live demo reconciliation, one per hand-off: slow, then too slow once (one timeout, waits
#: again), then never (a timeout on every attempt: the block fails, the manager halts and
#: the operator resumes it).
LIVE_RECONCILIATION: tuple[tuple[str, float], ...] = (
    ("ok", 0.2), ("ok", 0.4), ("ok", 14.0), ("ok", 0.0), ("never", 0.0))


@attrs.frozen
class DemoResult:
    """What a demo run did, and where it wrote its outputs."""

    status: dict[str, Any]
    positions: dict[str, float]
    blocks_by_action: dict[str, int]
    steps: int
    seconds: float
    manual_resumes: int = 0
    journal: Path | None = None
    csv: Path | None = None
    diagram: Path | None = None
    deltas: Path | None = None
    report: Path | None = None


def run_demo(mode: str | None = None, *, out: Path | str | None = None,
             backtest_id: str | None = None, event_logger: Any = None,
             observers: Sequence[Observer] = (), report: bool = True) -> DemoResult:
    """Run the example strategy, one ``update_state`` per hour of the bundled prices.

    ``mode`` defaults to ``BASIS_EXECUTION_MODE`` (else backtest), as the manager's does.
    Backtest: the simulated venues as they are. Live: the same venues with scripted faults
    (:data:`LIVE_VENUE_FAULTS`, :data:`LIVE_RECONCILIATION`) on a fake clock, so retries,
    reconciliation timeouts, a failed block and a manual resume happen without real
    waiting. With ``out``, writes ``logs/events/execution_manager_events.jsonl``,
    ``results/<id>/events.csv``, ``results/<id>/deltas.csv`` and ``run_diagram.md`` (what
    the run did, drawn on the lifecycle) under it, and with ``report`` a run report:
    ``report.html``, or ``report.md`` without matplotlib. The environment, the id and the
    output paths are checked before anything is created (``ValueError``). ``observers``
    go to the manager (``fsm-exec demo --metrics-port`` serves a PrometheusObserver's).
    """
    from fsm_exec.journal.export import check_backtest_id
    from fsm_exec.journal.reader import read_journal
    from fsm_exec.journal.writer import EventLogger
    from fsm_exec.tools.diagram import overlay_events, to_markdown

    mode = Environment.read(mode).execution_mode  # a bad BASIS_* variable: ConfigError
    backtest_id = check_backtest_id(backtest_id or f"demo-{mode}")
    if out is not None:
        out = Path(out)
        check_output_paths(out, backtest_id, "fsm-exec demo")
    prices = load_prices()
    data = PriceSeries(prices)
    strategy = EthBasisStrategy()
    live = mode == "live"
    clock = FakeClock()
    reconciliation = SimReconciliation(clock, LIVE_RECONCILIATION if live else ())
    positions = SimPositionHandler(reconciliation)
    positions.positions["USDT"] = strategy.capital
    venue: Any = VenueRouter(data)
    if live:
        venue = FaultyVenue(venue, LIVE_VENUE_FAULTS, clock=clock)
    journal = None
    if out is not None:
        journal = EventLogger(claim_output_dir(out / "logs" / "events", "fsm-exec demo"),
                              mode)
        event_logger = journal
    em = ExecutionManager({"strategy_mode": "eth_basis", "share_class": "usdt_stable",
                           "initial_capital": strategy.capital},
                          data, mode, positions, venue, reconciliation,
                          event_logger=event_logger, clock=clock, sleep=clock.sleep,
                          observers=observers)
    by_action: dict[str, int] = {}
    resumes = 0
    started = time.perf_counter()
    status: dict[str, Any] = {}
    for ts in data.timestamps:
        batch = strategy.blocks(ts, prices[ts], positions.positions)
        for b in batch:
            by_action[b["action"]] = by_action.get(b["action"], 0) + 1
        status = em.update_state(ts, "strategy_manager", batch)
        if status["halted"]:
            # The operator reconciles positions by hand, then resumes the manager.
            resumes += 1
            status = em.update_state(ts, "manual")
    seconds = time.perf_counter() - started
    paths: dict[str, Path | None] = {"journal": None, "csv": None, "deltas": None,
                                     "diagram": None, "report": None}
    if journal is not None and out is not None:
        journal.export_csv(out / "results", backtest_id)
        journal.close()
        paths["csv"], paths["deltas"] = csv_paths(out, backtest_id)
        paths["journal"] = journal.path_for("ExecutionManager")
        diagram = paths["diagram"] = out / "run_diagram.md"
        model = overlay_events(read_journal(out / "logs" / "events"),
                               title=f"Block lifecycle: the {mode} demo run")
        replace_file(diagram, to_markdown(model))
        if report:
            paths["report"] = write_report(out / "logs" / "events", out,
                                           f"Run report: the {mode} demo run")
    return DemoResult(status, dict(positions.positions), by_action, len(data.timestamps),
                      seconds, resumes, **paths)


def write_report(log_dir: Path, out: Path, title: str) -> Path:
    """The run report of ``log_dir`` in ``out``: HTML, or Markdown without matplotlib."""
    import importlib.util

    from fsm_exec.tools.report import build_report, to_html
    from fsm_exec.tools.report import to_markdown as report_markdown

    data = build_report(log_dir, title=title)
    if importlib.util.find_spec("matplotlib") is not None:
        path = out / "report.html"
        replace_file(path, to_html(data))
    else:  # pragma: no cover - the test extra installs matplotlib
        path = out / "report.md"
        replace_file(path, report_markdown(data))
    return path


OWNER_MARKER = ".fsm_exec_owner"


class DemoDirError(ValueError):
    """An output directory holds a journal that the command did not write, or an output
    path is taken by a file where a directory must go (or the other way round)."""


def csv_paths(out: Path, backtest_id: str) -> tuple[Path, Path]:
    """Where the export puts ``events.csv`` and ``deltas.csv`` under ``out``."""
    folder = out / "results" / backtest_id
    return folder / "events.csv", folder / "deltas.csv"


def _first_file_on(path: Path) -> Path | None:
    """The first path from the top down to ``path`` that exists and is not a directory."""
    for p in (*reversed(path.parents), path):
        if (p.exists() or p.is_symlink()) and not p.is_dir():
            return p
    return None


def check_output_paths(out: Path, backtest_id: str, owner: str) -> None:
    """Refuse, before anything is created, outputs under ``out`` that cannot be written:
    a symbolic link where a directory of the outputs goes (``logs``, ``logs/events``,
    ``results``, ``results/<id>``: it could point anywhere, and is never followed), a file
    where a directory must go (``out`` itself included), a directory where an output file
    goes, or a journal that ``owner`` did not write (:class:`DemoDirError`). A link at an
    output *file* is replaced, never followed, when the file is written."""
    links = [folder for folder in (out / "logs", out / "logs" / "events", out / "results",
                                   out / "results" / backtest_id) if folder.is_symlink()]
    if links:
        raise DemoDirError(
            f"{links[0]} is a symbolic link, where the outputs need a directory of their "
            "own: outputs are never written through a link (it could point anywhere); "
            "remove it or pass --out with another directory")
    problems: list[str] = []
    for folder in (out, out / "logs" / "events", out / "results" / backtest_id):
        blocker = _first_file_on(folder)
        if blocker == out:
            problems.append(f"the output path {out} is a file, not a directory")
        elif blocker is not None:
            problems.append(f"{blocker} is a file, where the outputs need a directory")
    for file in (out / "run_diagram.md", *csv_paths(out, backtest_id)):
        if file.is_dir():
            problems.append(f"{file} is a directory, where an output file goes")
    if problems:
        raise DemoDirError("; ".join(dict.fromkeys(problems))
                           + ": pass --out with a directory")
    claim_output_dir(out / "logs" / "events", owner, dry_run=True)


def claim_output_dir(log_dir: Path, owner: str, *, dry_run: bool = False) -> Path:
    """Make ``log_dir`` ready for a fresh journal written by ``owner`` (a command name).

    A journal that ``owner`` wrote there before (its marker file says so) is replaced;
    any other journal is never touched: :class:`DemoDirError`. ``dry_run``: only check.
    """
    from fsm_exec.journal.files import journal_files

    marker = log_dir / OWNER_MARKER
    mine = (not marker.is_symlink() and marker.is_file()  # a planted link is not ours
            and marker.read_text().strip() == owner)
    old = journal_files(log_dir, "ExecutionManager")
    torn = log_dir / "execution_manager_events.jsonl.torn"
    if (old or torn.exists()) and not mine:
        raise DemoDirError(
            f"{log_dir} already holds a journal that `{owner}` did not write; it is left "
            "untouched: pass --out with another directory")
    if dry_run:
        return log_dir
    for p in [*old, torn]:
        p.unlink(missing_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    replace_file(marker, owner + "\n")
    return log_dir


def format_result(result: DemoResult) -> str:
    """A short human-readable summary of a demo run."""
    s = result.status
    n = s["blocks_executed"] + s["blocks_failed"]
    rate = n / result.seconds if result.seconds > 0 else float("inf")
    rows = [("blocks accepted", s["blocks_accepted"]),
            ("blocks executed", s["blocks_executed"]),
            ("blocks failed", s["blocks_failed"]),
            ("retries", s["blocks_retried"]),
            ("manual resumes", result.manual_resumes),
            ("health", s["status"]),
            ("time", f"{result.seconds * 1000:.1f} ms"),
            ("throughput", f"{rate:,.0f} blocks/s")]
    lines = [f"fsm_exec demo: ETH basis strategy, {s['execution_mode']} mode, "
             f"{result.steps} hourly steps", ""]
    lines += [f"  {k:<18}{v!s:>14}" for k, v in rows]
    lines += ["",
              "  blocks by action: " + ", ".join(
                  f"{k} {v}" for k, v in sorted(result.blocks_by_action.items())),
              "  final positions:  " + ", ".join(
                  f"{k} {v:,.4f}" for k, v in sorted(result.positions.items()))]
    for label, path in (("journal", result.journal), ("events CSV", result.csv),
                        ("deltas CSV", result.deltas), ("run diagram", result.diagram),
                        ("report", result.report)):
        if path is not None:
            lines.append(f"  {label + ':':<18}{path}")
    return "\n".join(lines)
