"""What a manager costs per backtest run: set-up and close, fsyncs, and fsm_exec's share of
a backtesting.py run and of its optimizer (issue 26 item 7).

    pip install ".[backtesting]"
    python benchmarks/setup_close.py            # about a minute
    python benchmarks/setup_close.py --quick    # seconds
    python benchmarks/setup_close.py --dir /dev/shm   # journals in memory, not on disk

Measured, each as the median of many repetitions with their min-max, on the wall clock
(``time.perf_counter``: the journal's files are made and written on a real file system,
and the optimizer runs in worker processes):

- set-up: ``fsm_exec.backtest_run`` (the run's directory, its lock, its ``run_started``
  record) and ``ExecutionManager(...)`` on it (its first records), then both together;
- close: ``ExecutionManager.close()`` after a one-block run (the buffered records written,
  the files and the lock released);
- fsyncs per backtest run: ``os.fsync`` and ``os.fdatasync`` calls during one journaled
  SmaCross run (a backtest journal is never fsynced unless ``EventLogger(fsync=True)``);
- SmaCross: backtesting.py's ``SmaCross`` on its bundled GOOG data, plain and through
  fsm_exec (``examples/backtesting_smacross.py``: a journal per run, a block per
  crossover), interleaved round by round; fsm_exec's share is ``1 - plain / through``.
  Beside them, the same crossovers through the example's glue alone (the bar's time and
  close read, the orders placed, nothing journaled) and through ``bench.py``'s
  hand-written limit (the same work as fsm_exec with no framework, its journal a file of
  its own per run), each with its share: what the glue costs any framework, and what the
  journaled work costs at the least, in the same loop;
- ``bt.optimize()`` over a grid, plain and through fsm_exec (a journal per run, in the
  worker processes), interleaved; what fsm_exec adds is ``through / plain - 1``.

Targets (issue 26): set-up and close under 0.3 ms each, no fsync, under 10% of the run,
under 15% added to the optimizer. This is a benchmark, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from fsm_exec import ExecutionManager, backtest_run

try:  # python -m benchmarks (a package), or python benchmarks/setup_close.py (a script)
    from benchmarks.bench import HandWritten, _Block
except ModuleNotFoundError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.bench import HandWritten, _Block

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "backtesting_smacross.py"


def example() -> ModuleType:
    """The example's strategy and glue (examples/ is not a package)."""
    name = "backtesting_smacross"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # by name: the optimizer's workers find its classes
    spec.loader.exec_module(module)
    return module


class Venue:
    def route_instruction(self, timestamp: Any, block: Any) -> dict[str, float]:
        return {"ETH": 1.0}


class Book:
    def update_state(self, timestamp: Any, trigger_source: str,
                     deltas: dict[str, float]) -> None:
        pass


class Reconciled:
    reconciliation_status = "success"


class Prices:
    def get_data(self, timestamp: Any) -> dict[str, Any]:
        return {"market_data": {"prices": {"ETH": 3000.0}}}


BLOCK = [{"block_id": "b-1", "action": "buy", "priority": 1,
          "instructions": [{"venue": "spot", "token": "ETH", "side": "buy", "amount": 1.0}]}]


def limit_strategy(ex: ModuleType, journals: Path, glue_only: bool = False) -> type[Any]:
    """The example's ``SmaCross`` sending each crossover, through the example's glue, to
    ``bench.py``'s hand-written limit (a journal file per run under ``journals``, closed by
    :func:`run_closing`), or with ``glue_only`` to the venue adapter alone."""
    runs = itertools.count()

    class LimitSmaCross(ex.SmaCross):  # type: ignore[misc, name-defined]
        bar_close = ex.FsmSmaCross.bar_close
        limit: HandWritten | None = None

        def init(self) -> None:
            super().init()
            self._times, self._closes = self.data.index, self.data.Close
            self.venue = ex.StrategyVenue(self)
            if not glue_only:
                self.limit = HandWritten(journals / f"limit-{next(runs)}.jsonl",
                                         ex.Bar(self), self.venue, ex.Orders())
                _OPEN.append(self.limit)

        def next(self) -> None:
            if ex.crossover(self.sma1, self.sma2):
                self.send("buy")
            elif ex.crossover(self.sma2, self.sma1):
                self.send("sell")

        def send(self, side: str) -> None:
            ts = self._times[len(self.data) - 1]
            instructions = [{"venue": "backtesting.py", "token": "GOOG", "side": "close"},
                            {"venue": "backtesting.py", "token": "GOOG", "side": side}]
            if self.limit is not None:
                self.limit.update_state(ts, "strategy_manager", [{
                    "block_id": f"{side}-{ts.date()}", "action": side, "priority": 1,
                    "instructions": instructions}])
            else:  # what any framework's glue does: the bar read, the orders placed
                self.bar_close()
                self.venue.route_instruction(ts, _Block(f"{side}-{ts.date()}", side, 1,
                                                        tuple(instructions)))

    return LimitSmaCross


#: The hand-written limits of the runs in progress (closed as each run ends).
_OPEN: list[Any] = []


def run_closing(bt: Any) -> Any:
    """``bt.run()``, then the limit's journal closed (its buffer written)."""
    try:
        return bt.run()
    finally:
        while _OPEN:
            _OPEN.pop().close()


def manager(log: Any) -> ExecutionManager:
    return ExecutionManager({}, Prices(), "backtest", Book(), Venue(), Reconciled(),
                            event_logger=log)


def set_up_and_close(base: Path, n: int) -> dict[str, list[float]]:
    """Per run: backtest_run, the manager on it, one block, close (each timed)."""
    times: dict[str, list[float]] = {"journal": [], "manager": [], "set-up": [],
                                     "close": []}
    ids = itertools.count()
    for i in range(n + n // 10):  # the first tenth warms up, untimed
        t0 = time.perf_counter()
        log = backtest_run(base, run_id=f"setup-{next(ids)}")
        t1 = time.perf_counter()
        em = manager(log)
        t2 = time.perf_counter()
        em.update_state("2025-10-01T00:00Z", "strategy_manager", BLOCK)
        t3 = time.perf_counter()
        em.close()
        t4 = time.perf_counter()
        if i >= n // 10:
            times["journal"].append(t1 - t0)
            times["manager"].append(t2 - t1)
            times["set-up"].append(t2 - t0)
            times["close"].append(t4 - t3)
    return times


@contextlib.contextmanager
def counting_fsyncs() -> Iterator[list[int]]:
    """Count os.fsync and os.fdatasync calls while the block runs."""
    count = [0]
    real = os.fsync, os.fdatasync

    def fsync(fd: Any) -> None:
        count[0] += 1
        real[0](fd)

    def fdatasync(fd: Any) -> None:
        count[0] += 1
        real[1](fd)

    os.fsync, os.fdatasync = fsync, fdatasync
    try:
        yield count
    finally:
        os.fsync, os.fdatasync = real


def interleaved(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Each run once per round, the order rotating, timed on the wall clock."""
    names = list(runs)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            runs[name]()
            out[name].append(time.perf_counter() - t0)
    return out


def ms(values: list[float]) -> str:
    return (f"{statistics.median(values) * 1e3:.3f} ms "
            f"({min(values) * 1e3:.3f}-{max(values) * 1e3:.3f})")


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (seconds)")
    parser.add_argument("--dir", type=Path, help="where the journals go (default: a new "
                        "temporary directory, on disk)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", module="backtesting")
    base = Path(tempfile.mkdtemp(prefix="fsm-exec-bench-", dir=args.dir))
    n, rounds, opt_rounds = (100, 5, 2) if args.quick else (1000, 21, 5)

    print(f"journals in {base}; wall clock; median (min-max)", file=sys.stderr)
    cost = set_up_and_close(base / "setup", n)

    ex = example()
    from backtesting import Backtest
    from backtesting.test import GOOG

    runs = itertools.count()

    def plain() -> Any:
        return Backtest(GOOG, ex.SmaCross, **ex.OPTIONS).run()

    def through() -> Any:
        return ex.JournaledBacktest(GOOG, ex.FsmSmaCross, journals=base / f"run-{next(runs)}",
                                    **ex.OPTIONS).run()

    limit_cls = limit_strategy(ex, base)
    glue_cls = limit_strategy(ex, base, glue_only=True)

    def limit() -> Any:
        return run_closing(Backtest(GOOG, limit_cls, **ex.OPTIONS))

    def glue() -> Any:
        return Backtest(GOOG, glue_cls, **ex.OPTIONS).run()

    with counting_fsyncs() as fsyncs:
        trades = through()["# Trades"]
    for same in (limit(), glue()):  # the same trades and equity: the same work
        ex.same_run(plain(), same)
    run = interleaved({"plain": plain, "the glue alone": glue,
                       "the hand-written limit": limit, "through fsm_exec": through}, rounds)
    grid = {"n1": [5, 10, 15, 20], "n2": [20, 30, 40, 50, 60]}
    pairs = sum(1 for a in grid["n1"] for b in grid["n2"] if a < b)

    def optimize(bt: Any) -> Callable[[], object]:
        return lambda: bt.optimize(**grid, constraint=lambda p: p.n1 < p.n2)

    opt = interleaved({
        "plain": optimize(Backtest(GOOG, ex.SmaCross, **ex.OPTIONS)),
        "through fsm_exec": lambda: optimize(ex.JournaledBacktest(
            GOOG, ex.FsmSmaCross, journals=base / f"optimize-{next(runs)}",
            **ex.OPTIONS))()}, opt_rounds)

    shares = {name: 1 - statistics.median(run["plain"]) / statistics.median(values)
              for name, values in run.items() if name != "plain"}
    share = shares["through fsm_exec"]
    added = (statistics.median(opt["through fsm_exec"]) / statistics.median(opt["plain"])
             - 1)
    set_up = statistics.median(cost["set-up"])
    close = statistics.median(cost["close"])
    print(f"| per backtest run ({len(cost['close'])} runs) | median (min-max) |")
    print("| --- | --- |")
    print(f"| `backtest_run(...)`: the run's directory, lock, first record | "
          f"{ms(cost['journal'])} |")
    print(f"| `ExecutionManager(...)` on it | {ms(cost['manager'])} |")
    print(f"| set-up: both | {ms(cost['set-up'])} |")
    print(f"| `close()` after one block | {ms(cost['close'])} |")
    print()
    print(f"| SmaCross on GOOG ({trades} trades, {rounds} rounds) | median (min-max) | "
          "share of the run |")
    print("| --- | --- | --- |")
    for name, values in run.items():
        print(f"| {name} | {ms(values)} | "
              + (f"{shares[name]:.1%} |" if name in shares else "- |"))
    print()
    print(f"| `bt.optimize()`, {pairs} parameter pairs ({opt_rounds} rounds) | "
          "median (min-max) |")
    print("| --- | --- |")
    for name, values in opt.items():
        print(f"| {name} | {ms(values)} |")
    print()
    print("| measure | figure | target |")
    print("| --- | --- | --- |")
    print(f"| manager set-up (journal and manager) | {set_up * 1e3:.3f} ms | under 0.3 ms: "
          f"{verdict(set_up < 3e-4)} |")
    print(f"| manager close | {close * 1e3:.3f} ms | under 0.3 ms: {verdict(close < 3e-4)} |")
    print(f"| fsyncs per backtest run | {fsyncs[0]} | none: {verdict(fsyncs[0] == 0)} |")
    print(f"| fsm_exec's share of a SmaCross run | {share:.1%} | under 10%: "
          f"{verdict(share < 0.10)} |")
    print(f"| the same, of the hand-written limit; of the glue alone | "
          f"{shares['the hand-written limit']:.1%}; {shares['the glue alone']:.1%} | "
          "printed |")
    print(f"| what fsm_exec adds to `bt.optimize()` | {added:.1%} | under 15%: "
          f"{verdict(added < 0.15)} |")


if __name__ == "__main__":
    main()
