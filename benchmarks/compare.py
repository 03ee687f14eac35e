"""This tree against an earlier commit, side by side in one process.

    python benchmarks/compare.py                 # against the default base (BASE below)
    python benchmarks/compare.py REV --rounds 9  # against any commit (relative imports)

The earlier commit's package is exported with ``git archive`` into a temporary folder and
imported under another name (``fsm_exec_base``, its own imports rewritten to that name),
next to this tree's ``fsm_exec``. The same workloads then run against both,
interleaved round by round (the order alternates), on the same collaborators, each journal
on disk. The figures are CPU time (``time.process_time``) per block or per call. A table
gives the median of the rounds for each package, and the ratio new/old of those medians
(below 1.00 means the new tree is cheaper). Workloads:

- one block per ``update_state`` call (the per-block hot path);
- an empty call (most calls of a real loop);
- 100 blocks per call.

This is a benchmark, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
#: The last commit before this round's reorganisation.
BASE = "85eb9b4"
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

try:  # python -m benchmarks (a package), or python benchmarks/compare.py (a script)
    from benchmarks.bench import Positions, Prices, Reconciled, Venue, block
except ModuleNotFoundError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.bench import Positions, Prices, Reconciled, Venue, block


def export_package(rev: str, into: Path) -> ModuleType:
    """``rev``'s ``fsm_exec`` package, imported as ``fsm_exec_base`` from ``into``."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar",
                           "--end-of-options", rev, "fsm_exec"],
                          capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    shutil.move(str(into / "fsm_exec"), str(into / "fsm_exec_base"))
    for path in (into / "fsm_exec_base").rglob("*.py"):  # its own imports: to itself
        text = path.read_text()
        path.write_text(_IMPORT.sub(r"\1fsm_exec_base", text))
    return import_exported(into)


def import_exported(into: Path | str) -> ModuleType:
    """The package :func:`export_package` exported into ``into``, imported (in this process
    or in another one, ``benchmarks/instructions.py --against``'s child)."""
    sys.path.insert(0, str(into))
    module = importlib.import_module("fsm_exec_base")
    from loguru import logger

    logger.disable("fsm_exec_base")  # its operational log, off as fsm_exec's is
    return module


#: An import of the package in its own modules (``from fsm_exec.x import``, ``import
#: fsm_exec``): rewritten, or the exported copy would import this tree's modules.
_IMPORT = re.compile(r"^(\s*(?:from|import)\s+)fsm_exec(?=[.\s])", re.M)


def base_package(rev: str, into: Path) -> ModuleType | None:
    """:func:`export_package`, or ``None`` (saying why on stderr) when ``rev`` cannot be
    exported (no git, or not a clone)."""
    try:
        return export_package(rev, into)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"the before column needs git and commit {rev}: {exc}", file=sys.stderr)
        return None


def workload(pkg: ModuleType, log_dir: Path, calls: int, per_call: int,
             runs: int | None = None) -> Callable[[], None]:
    """``calls`` backtest ``update_state`` calls with ``per_call`` blocks each (0: empty);
    with ``runs``, all of them made, the first ``runs`` run (what
    ``benchmarks/instructions.py --against`` counts: the making cancels out)."""
    journal = pkg.EventLogger(log_dir, "backtest")
    em = pkg.ExecutionManager({"max_queue_size": max(per_call, 10)}, Prices(), "backtest",
                              Positions(), Venue(), Reconciled(), event_logger=journal)
    work = [(T0 + dt.timedelta(minutes=i),
             [block("b", i * per_call + j) for j in range(per_call)] if per_call else None)
            for i in range(calls)]

    if runs is not None:
        work = work[:runs]

    def run() -> None:
        update = em.update_state
        for ts, batch in work:
            update(ts, "strategy_manager", batch)
        journal.close()
    return run


WORKLOADS = {  # label: (calls, blocks per call, divide by)
    "per block, 1 a call (µs)": (2000, 1, 2000),
    "per empty call (µs)": (4000, 0, 4000),
    "per block, 100 a call (µs)": (40, 100, 4000),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("rev", nargs="?", default=BASE, help=f"the earlier commit (default {BASE})")
    p.add_argument("--rounds", type=int, default=7, help="rounds (default 7)")
    args = p.parse_args(argv)
    import fsm_exec

    with tempfile.TemporaryDirectory(prefix="fsm-exec-compare-") as tmp:
        base = export_package(args.rev, Path(tmp) / "pkg")
        packages = {"old": base, "new": fsm_exec}
        times: dict[tuple[str, str], list[float]] = {}
        for r in range(args.rounds):
            order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
            for label, (calls, per_call, per) in WORKLOADS.items():
                for name in order:
                    log_dir = Path(tmp) / f"{name}-{r}-{per_call}"
                    run = workload(packages[name], log_dir, calls, per_call)
                    gc.collect()
                    t0 = time.process_time()
                    run()
                    times.setdefault((name, label), []).append(
                        (time.process_time() - t0) / per * 1e6)
            print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
    print(f"{args.rev} (old) against this tree (new), in one process: median of "
          f"{args.rounds} interleaved rounds, CPU time")
    print(f"  {'figure':<30}{'old':>10}{'new':>10}{'new/old':>10}")
    for label in WORKLOADS:
        a = statistics.median(times[("old", label)])
        b = statistics.median(times[("new", label)])
        print(f"  {label:<30}{a:>10.2f}{b:>10.2f}{b / a:>10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
