"""backtesting.py's SmaCross, every crossover run through fsm_exec, one journal per run.

backtesting.py (https://kernc.github.io/backtesting.py/) drives the strategy bar by bar and
fills its orders; fsm_exec runs each crossover as an instruction block through its lifecycle
and journals it. The glue is small: a venue adapter that calls the strategy's own
``self.position.close()`` and ``self.buy()`` / ``self.sell()``, a data provider reading the
current bar, and a ``Backtest`` whose every run (``bt.run()``, and each run of
``bt.optimize()``, in its worker process) gets its own journal directory from
``fsm_exec.backtest_run`` and closes it when the run ends, also when it raises
(backtesting.py gives a strategy no end-of-run hook). backtesting.py's timestamps are naive:
``assume_timezone="UTC"`` reads them as UTC.

    python examples/backtesting_smacross.py [--out DIR] [--grid N1,..:N2,..]

It checks that the trades and the equity curve equal those of the plain SmaCross, runs
``bt.optimize()`` over a small grid, and checks that every run's journal holds every block
(``fsm-exec check``: blocks executed = the run's trades). Needs backtesting.py
(``pip install 'fsm-exec[backtesting]'``).
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from backtesting import Backtest, Strategy
from backtesting.lib import crossover
from backtesting.test import GOOG, SMA

from fsm_exec import ExecutionManager, backtest_run, check_journal, read_journal


class SmaCross(Strategy):
    """backtesting.py's classic: long when the fast average crosses above the slow one,
    short when it crosses below."""

    n1 = 10
    n2 = 20

    def init(self) -> None:
        self.sma1 = self.I(SMA, self.data.Close, self.n1)
        self.sma2 = self.I(SMA, self.data.Close, self.n2)

    def next(self) -> None:
        if crossover(self.sma1, self.sma2):
            self.position.close()
            self.buy()
        elif crossover(self.sma2, self.sma1):
            self.position.close()
            self.sell()


# ------------------------------------------------------------------------------ the glue


class StrategyVenue:
    """The venue adapter: a block's instructions become the strategy's own orders
    (backtesting.py fills them at the next bar's open). The deltas are the orders placed."""

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy

    def route_instruction(self, timestamp: Any, block: Any) -> dict[str, float]:
        for instruction in block.instructions:
            side = instruction["side"]
            if side == "close":
                self.strategy.position.close()
            elif side == "buy":
                self.strategy.buy()
            else:
                self.strategy.sell()
        return {"orders": float(len(block.instructions))}


class Orders:
    """The position handler: backtesting.py keeps the positions; this counts the orders."""

    placed = 0.0

    def update_state(self, timestamp: Any, trigger_source: str,
                     deltas: dict[str, float]) -> None:
        self.placed += deltas["orders"]


class Filled:
    """Reconciliation: backtesting.py's broker is the book, nothing to reconcile."""

    reconciliation_status = "success"


class Bar:
    """The data provider: the current bar's close, for the manager's price check."""

    def __init__(self, strategy: FsmSmaCross) -> None:
        self.strategy = strategy

    def get_data(self, timestamp: Any) -> dict[str, Any]:
        return {"market_data": {"prices": {"GOOG": self.strategy.bar_close()}}}


#: The run in progress: where its journal goes, and what closes it when the run ends.
_RUN: contextvars.ContextVar[tuple[Path, contextlib.ExitStack]] = contextvars.ContextVar("run")


class JournaledBacktest(Backtest):
    """A Backtest whose every run writes its own journal under ``journals`` (one directory
    per run, made by ``fsm_exec.backtest_run``) and closes it when the run ends."""

    def __init__(self, *args: Any, journals: Path | str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.journals = Path(journals)

    def run(self, **params: Any) -> pd.Series:
        with contextlib.ExitStack() as closing:  # the run's manager, closed however it ends
            token = _RUN.set((self.journals, closing))
            try:
                return super().run(**params)
            finally:
                _RUN.reset(token)


class FsmSmaCross(SmaCross):
    """SmaCross, each crossover sent to fsm_exec as one block of two instructions (close
    the position, then buy or sell), which the venue adapter turns into the same orders."""

    def init(self) -> None:
        super().init()
        # The whole series, read once (init sees every bar); indexed by the current bar
        # below: slicing them anew on each bar (self.data.index[-1]) costs more than the
        # block itself.
        self._times, self._closes = self.data.index, self.data.Close
        journals, closing = _RUN.get()
        params = {"n1": self.n1, "n2": self.n2}
        run_id, again = f"sma-{self.n1}-{self.n2}", 1
        while (journals / run_id).exists():  # the optimizer runs its best pair again
            again += 1
            run_id = f"sma-{self.n1}-{self.n2}-{again}"
        log = backtest_run(journals, run_id=run_id, params=params)
        self.em = closing.enter_context(ExecutionManager(
            {}, Bar(self), "backtest", Orders(), StrategyVenue(self), Filled(),
            event_logger=log, assume_timezone="UTC"))

    def next(self) -> None:
        if crossover(self.sma1, self.sma2):
            self.send("buy")
        elif crossover(self.sma2, self.sma1):
            self.send("sell")

    def bar_close(self) -> float:
        """The current bar's close."""
        return float(self._closes[len(self.data) - 1])

    def send(self, side: str) -> None:
        ts = self._times[len(self.data) - 1]  # the current bar's: a naive pandas Timestamp
        self.em.update_state(ts, "strategy_manager", [{
            "block_id": f"{side}-{ts.date()}", "action": side, "priority": 1,
            "instructions": [
                {"venue": "backtesting.py", "token": "GOOG", "side": "close"},
                {"venue": "backtesting.py", "token": "GOOG", "side": side}]}])


# ------------------------------------------------------------------------------ the run

OPTIONS = {"cash": 10_000, "commission": 0.002, "finalize_trades": True}


def same_run(plain: pd.Series, ours: pd.Series) -> None:
    """The two runs made the same trades and the same equity, to the cent and the bar."""
    pd.testing.assert_frame_equal(plain["_trades"].drop(columns="Tag", errors="ignore"),
                                  ours["_trades"].drop(columns="Tag", errors="ignore"))
    pd.testing.assert_frame_equal(plain["_equity_curve"], ours["_equity_curve"])
    assert plain["Equity Final [$]"] == ours["Equity Final [$]"]


def journals(base: Path) -> Iterator[tuple[str, dict[str, Any], int]]:
    """(run directory, params, blocks executed) of each run's journal, checked."""
    for run_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        report = check_journal(run_dir)
        assert report.ok and not report.queued, (run_dir, report.problem)
        assert report.blocks_accepted == report.blocks_executed, run_dir
        (started,) = [r for r in read_journal(run_dir, "BacktestRun")]
        yield run_dir.name, started.data["params"], report.blocks_executed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="where the runs' journals go "
                        "(default: a temporary directory)")
    parser.add_argument("--grid", default="5,10:20,30",
                        help="the optimizer's grid, N1 values:N2 values (default 5,10:20,30)")
    args = parser.parse_args(argv)
    base = args.out or Path(tempfile.mkdtemp(prefix="smacross-"))
    n1s, n2s = ([int(v) for v in part.split(",")] for part in args.grid.split(":"))
    warnings.filterwarnings("ignore", module="backtesting")  # its progress bars' notes

    plain = Backtest(GOOG, SmaCross, **OPTIONS).run()
    ours = JournaledBacktest(GOOG, FsmSmaCross, journals=base / "run", **OPTIONS).run()
    same_run(plain, ours)
    ((name, _, executed),) = journals(base / "run")
    assert executed == plain["# Trades"], (executed, plain["# Trades"])
    print(f"SmaCross on GOOG: {plain['# Trades']} trades, equity "
          f"{plain['Equity Final [$]']:.2f}, the same through fsm_exec "
          f"({executed} blocks in {base / 'run' / name})")

    grid = {"n1": n1s, "n2": n2s}
    bt = JournaledBacktest(GOOG, FsmSmaCross, journals=base / "optimize", **OPTIONS)
    best = bt.optimize(**grid, constraint=lambda p: p.n1 < p.n2)
    trades = {(n1, n2): Backtest(GOOG, SmaCross, **OPTIONS).run(n1=n1, n2=n2)["# Trades"]
              for n1 in n1s for n2 in n2s if n1 < n2}
    runs = list(journals(base / "optimize"))
    for name, params, executed in runs:
        assert executed == trades[params["n1"], params["n2"]], (name, executed)
    assert {(p["n1"], p["n2"]) for _, p, _ in runs} == set(trades)
    print(f"bt.optimize() over {len(trades)} parameter pairs: {len(runs)} runs, one journal "
          f"each (the best run again at the end), every journal holds every block; best "
          f"n1={best['_strategy'].n1} n2={best['_strategy'].n2}, equity "
          f"{best['Equity Final [$]']:.2f}")
    print(f"fsm-exec runs {base / 'optimize'}")


if __name__ == "__main__":
    main()
