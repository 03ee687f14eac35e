"""Per-block cost of fsm_exec against its floor and its alternatives, side by side.

    pip install ".[bench]"                     # python-statemachine, one of the contenders
    python benchmarks/bench.py                 # the comparison (backtest, one block a call)
    python benchmarks/bench.py --memory        # RSS over a 1,000,000-block backtest + CSV
    python benchmarks/bench.py --live          # live-mode overhead and fsyncs per block

Every contender runs in this one process, interleaved round by round, on the same blocks;
figures are medians over rounds of the per-block time. Contenders:

- floor: the three lifecycle triggers fired on one reusable ``transitions.Machine`` built
  from fsm_exec's table, no logging: what ``transitions`` itself costs;
- fsm_exec: ``ExecutionManager.update_state`` in backtest mode, one block per call, every
  event written by ``EventLogger`` to a JSONL file on disk, on instant fake collaborators;
- naive: a new ``transitions.Machine`` per block and every event logged through loguru with
  ``serialize=True`` to a file;
- python-statemachine: a new machine per block (the same states and triggers), no logging.

This is a benchmark, not a test: nothing here asserts; read the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:  # python-statemachine, one of the contenders: the bench extra
    import statemachine as _python_statemachine  # noqa: F401
except ModuleNotFoundError:
    sys.exit('benchmarks/bench.py needs python-statemachine: pip install ".[bench]" in a '
             'clone (or pip install "fsm-exec[bench]")')
from transitions import Machine

from fsm_exec import TRANSITIONS, BlockState, EventLogger, ExecutionManager

TRIGGERS = ("start", "executed", "reconciled")


# ------------------------------------------------------------------------ collaborators


class Venue:
    def route_instruction(self, ts: Any, block: Any) -> dict[str, Any]:
        return {"block_id": block.block_id, "changes": {"ETH": 1.0}}

    def query_execution(self, ts: Any, block: Any) -> None:
        return None


class Positions:
    def update_state(self, ts: Any, source: str, deltas: Any) -> None:
        return None


class Reconciled:
    reconciliation_status = "success"


class Prices:
    def __init__(self) -> None:
        self._data = {"market_data": {"prices": {"ETH": 3000.0, "USDT": 1.0}}}

    def get_data(self, ts: Any) -> dict[str, Any]:
        return self._data


def timestamps(n: int) -> list[dt.datetime]:
    """One-minute steps, as a backtest's clock passes them."""
    t0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    return [t0 + dt.timedelta(minutes=i) for i in range(n)]


def make_blocks(n: int, tag: str) -> list[list[dict[str, Any]]]:
    """One single-block batch per call, as a strategy emitting one block per step."""
    return [[{"block_id": f"{tag}-{i}", "action": "rehedge", "priority": 1,
              "instructions": [{"venue": "perp", "token": "ETH", "side": "short",
                                "amount": 1.5}]}] for i in range(n)]


# ------------------------------------------------------------------------ contenders


def _table() -> list[dict[str, str]]:
    return [{"trigger": str(e.trigger), "source": str(e.source), "dest": str(e.dest)}
            for e in TRANSITIONS]


def floor(n: int, tag: str) -> Callable[[], None]:
    class Model:
        state: str

    model = Model()
    Machine(model=model, states=[str(s) for s in BlockState], transitions=_table(),
            initial="queued", auto_transitions=False)
    start, executed, reconciled = (getattr(model, t) for t in TRIGGERS)

    def run() -> None:
        for _ in range(n):
            model.state = "queued"
            start()
            executed()
            reconciled()
    return run


def fsm_exec(n: int, tag: str, log_dir: Path) -> Callable[[], None]:
    journal = EventLogger(log_dir / tag, "backtest")
    em = ExecutionManager({"max_queue_size": 10}, Prices(), "backtest", Positions(), Venue(),
                          Reconciled(), event_logger=journal)
    batches = make_blocks(n, tag)
    stamps = timestamps(n)

    def run() -> None:
        update = em.update_state
        for ts, batch in zip(stamps, batches, strict=True):
            update(ts, "strategy_manager", batch)
        journal.close()
    return run


def naive(n: int, tag: str, log_dir: Path) -> Callable[[], None]:
    from loguru import logger

    path = log_dir / f"{tag}-naive.jsonl"
    batches = make_blocks(n, tag)
    table = _table()
    states = [str(s) for s in BlockState]

    def run() -> None:
        sink = logger.add(path, serialize=True, level="INFO", enqueue=False)
        log = logger.bind(component="ExecutionManager")
        for i, (block,) in enumerate(batches):
            log.info("block_accepted", data=block)

            class Model:
                state: str

            model = Model()
            Machine(model=model, states=states, transitions=table, initial="queued",
                    auto_transitions=False)
            for trigger in TRIGGERS:
                source = model.state
                getattr(model, trigger)()
                log.info("block_transition", block_id=block["block_id"], source=source,
                         dest=model.state, trigger=trigger, attempt=1)
            log.info("state_update", step=i, blocks_executed=i + 1)
        logger.remove(sink)
    return run


def statemachine(n: int, tag: str) -> Callable[[], None]:
    from statemachine import State, StateMachine

    class Lifecycle(StateMachine):
        queued = State(initial=True)
        routing = State()
        pending_reconciliation = State()
        retrying = State()
        success = State(final=True)
        failed = State(final=True)
        start = queued.to(routing)
        executed = routing.to(pending_reconciliation)
        route_failed = routing.to(retrying)
        reroute = retrying.to(routing)
        resume_reconciliation = retrying.to(pending_reconciliation)
        reconciled = pending_reconciliation.to(success)
        reconciliation_timeout = pending_reconciliation.to(retrying)
        fail = routing.to(failed) | retrying.to(failed) | pending_reconciliation.to(failed)

    def run() -> None:
        for _ in range(n):
            sm = Lifecycle()
            sm.start()
            sm.executed()
            sm.reconciled()
    return run


# ------------------------------------------------------------------------ comparison


def compare(n: int, rounds: int) -> None:
    from loguru import logger

    logger.remove()  # loguru's default stderr sink would dominate the naive contender
    names = ("floor", "fsm_exec", "naive", "python-statemachine")
    times: dict[str, list[float]] = {k: [] for k in names}
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp)
        for r in range(rounds):
            makers: dict[str, Callable[[], None]] = {
                "floor": floor(n, f"r{r}"),
                "fsm_exec": fsm_exec(n, f"r{r}", log_dir),
                "naive": naive(n, f"r{r}", log_dir),
                "python-statemachine": statemachine(n, f"r{r}"),
            }
            order = list(names)[r % len(names):] + list(names)[:r % len(names)]
            for name in order:
                gc.collect()
                t0 = time.perf_counter()
                makers[name]()
                times[name].append((time.perf_counter() - t0) / n * 1e6)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"per-block cost, median of {rounds} rounds of {n:,} blocks "
          f"(Python {sys.version.split()[0]}, {os.cpu_count()} cores)\n")
    print(f"  {'contender':<22}{'median µs':>10}{'min µs':>10}{'max µs':>10}")
    for k in names:
        print(f"  {k:<22}{med[k]:>10.1f}{min(times[k]):>10.1f}{max(times[k]):>10.1f}")
    print()
    print(f"  fsm_exec / floor                {med['fsm_exec'] / med['floor']:>6.2f}x"
          "   (target <= 1.5)")
    print(f"  naive / fsm_exec                {med['naive'] / med['fsm_exec']:>6.2f}x"
          "   (target >= 8)")
    print(f"  python-statemachine / fsm_exec  "
          f"{med['python-statemachine'] / med['fsm_exec']:>6.2f}x")


# ------------------------------------------------------------------------ memory


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        journal = EventLogger(Path(tmp) / "logs", "backtest")
        em = ExecutionManager({}, Prices(), "backtest", Positions(), Venue(), Reconciled(),
                              event_logger=journal)
        print(f"{n:,}-block backtest, event log on disk, CSV export at the end")
        print(f"  start                 RSS {rss_mb():7.1f} MB")
        t0 = time.perf_counter()
        instr = [{"venue": "perp", "token": "ETH", "side": "short", "amount": 1.5}]
        for i in range(n):
            em.update_state(i, "strategy_manager", [
                {"block_id": f"b{i}", "action": "rehedge", "priority": 1,
                 "instructions": instr}])
            if (i + 1) % (n // 10) == 0 and (i + 1) in (n // 10, n):
                print(f"  {100 * (i + 1) // n:>3}% ({i + 1:>9,} blocks) RSS {rss_mb():7.1f} MB")
        run_s = time.perf_counter() - t0
        journal.close()
        size = (Path(tmp) / "logs" / "execution_manager_events.jsonl").stat().st_size
        t1 = time.perf_counter()
        csv = journal.export_csv(Path(tmp) / "results", "bench")
        csv_s = time.perf_counter() - t1
        print(f"  after CSV export      RSS {rss_mb():7.1f} MB")
        print(f"  peak RSS              {peak_rss_mb():7.1f} MB   (target < 100)")
        print(f"  run {run_s:.1f} s ({run_s / n * 1e6:.1f} µs/block); journal "
              f"{size / 2**20:.0f} MiB; CSV {csv.stat().st_size / 2**20:.0f} MiB in "
              f"{csv_s:.1f} s")


# ------------------------------------------------------------------------ live


def live(n: int, rounds: int) -> None:
    fsyncs = [0]
    real_fsync = os.fsync

    def counting_fsync(fd: Any) -> None:
        fsyncs[0] += 1
        real_fsync(fd)

    os.fsync = counting_fsync  # the journal calls os.fsync: count them
    per_block: list[float] = []
    fsync_us: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            journal = EventLogger(Path(tmp) / f"live{r}", "live")
            em = ExecutionManager({}, Prices(), "live", Positions(), Venue(), Reconciled(),
                                  event_logger=journal)
            batches = make_blocks(n, f"L{r}")
            stamps = timestamps(n)
            before = fsyncs[0]
            t0 = time.perf_counter()
            for ts, batch in zip(stamps, batches, strict=True):
                em.update_state(ts, "strategy_manager", batch)
            per_block.append((time.perf_counter() - t0) / n * 1e6)
            count = fsyncs[0] - before
            journal.close()
            fd = os.open(Path(tmp) / "probe", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            t1 = time.perf_counter()
            for _ in range(200):
                os.write(fd, b"x\n")
                real_fsync(fd)
            fsync_us.append((time.perf_counter() - t1) / 200 * 1e6)
            os.close(fd)
    os.fsync = real_fsync
    print(f"live mode, {rounds} rounds of {n:,} blocks on instant fake collaborators")
    print(f"  manager overhead per block (median)  {statistics.median(per_block):8.0f} µs"
          "   (target < 2000, fsyncs included)")
    print(f"  fsyncs per block                     {count / n:8.1f}")
    print(f"  one write+fsync here (median)        {statistics.median(fsync_us):8.0f} µs")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--memory", action="store_true", help="RSS over a long backtest")
    p.add_argument("--live", action="store_true", help="live-mode overhead and fsyncs")
    p.add_argument("-n", type=int, default=None, help="blocks (per round)")
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    if args.memory:
        memory(args.n or 1_000_000)
    elif args.live:
        live(args.n or 500, args.rounds)
    else:
        compare(args.n or 20_000, args.rounds)


if __name__ == "__main__":
    main()
