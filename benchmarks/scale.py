"""What a long journal costs: the CSV export, ``recover()`` and ``fsm-exec status`` at three
journal lengths, and the memory of the backtest that wrote it.

Each journal is written by a real backtest (one block per ``update_state`` call, the
journal on disk) in a fresh process, ``python -m benchmarks.scale generate``, which reports
its peak RSS (``VmHWM``) and its RSS at each tenth of the run: the memory figures are
those of a process that does nothing but the backtest. The reads are then timed here,
elapsed time (they read the disk, mostly from the page cache).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import fsm_exec

ROOT = Path(__file__).resolve().parent.parent
#: The worker processes of the parallel CSV export: one per core of this machine.
CORES = max(os.cpu_count() or 1, 2)


def _vm(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return 0.0  # pragma: no cover - Linux has both


def generate(pkg_name: str, log_dir: Path, blocks: int) -> dict[str, Any]:
    """Run a ``blocks``-block backtest (one block a call) into ``log_dir``: RSS figures."""
    import importlib

    from benchmarks import bench

    pkg = importlib.import_module(pkg_name)
    start = _vm("VmRSS")
    journal = pkg.EventLogger(log_dir, "backtest")
    em = pkg.ExecutionManager({}, bench.Prices(), "backtest", bench.Positions(),
                              bench.Venue(), bench.Reconciled(), event_logger=journal)
    epoch0 = bench.T0.timestamp()
    instr = [{"venue": "perp", "token": "ETH", "side": "short", "amount": 1.5}]
    marks = []
    step = max(blocks // 10, 1)
    t0 = time.perf_counter()
    update = em.update_state
    for i in range(blocks):
        update(epoch0 + 60 * i, "strategy_manager",
               [{"block_id": f"b{i}", "action": "rehedge", "priority": 1,
                 "instructions": instr}])
        if (i + 1) % step == 0:
            marks.append(_vm("VmRSS"))
    journal.close()
    return {"start_mb": start, "marks_mb": marks, "peak_mb": _vm("VmHWM"),
            "run_s": time.perf_counter() - t0}


def _generate_in_child(pkg: ModuleType, log_dir: Path, blocks: int) -> dict[str, Any]:
    path = Path(pkg.__file__).parent.parent  # type: ignore[arg-type]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), str(ROOT)])}
    out = subprocess.run([sys.executable, "-m", "benchmarks.scale", "generate", pkg.__name__,
                          str(log_dir), str(blocks)], capture_output=True, text=True,
                         check=True, env=env, cwd=ROOT).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def _timed(fn: Any, rounds: int = 3) -> float:
    best = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t0)
    return min(best)


def measure(pkg: ModuleType, blocks: int, tmp: Path, *, csv: bool) -> dict[str, Any]:
    """Write a ``blocks``-block journal with ``pkg`` and time what reads it."""
    from benchmarks import bench

    log_dir = tmp / f"{pkg.__name__}-{blocks}"
    bench.progress(f"scale: {pkg.__name__}, a {blocks:,}-block backtest")
    got = _generate_in_child(pkg, log_dir, blocks)
    got["bytes"] = sum(p.stat().st_size for p in log_dir.iterdir() if p.suffix == ".jsonl")
    status_mod = __import__(f"{pkg.__name__}.tools.status", fromlist=["status"])

    def recover() -> None:
        with pkg.EventLogger(log_dir, "backtest") as log:
            em = pkg.ExecutionManager({}, bench.Prices(), "backtest", bench.Positions(),
                                      bench.Venue(), bench.Reconciled(), event_logger=log)
            em.recover()

    def status() -> None:
        status_mod.format_status(status_mod.read_status(log_dir))

    bench.progress(f"scale: {pkg.__name__}, recover() and status at {blocks:,} blocks")
    got["recover_s"] = _timed(recover)
    got["status_s"] = _timed(status)
    if csv:  # the journal was written above, in another process: only the export is timed
        bench.progress(f"scale: {pkg.__name__}, CSV export of {blocks:,} blocks")
        journal = pkg.EventLogger(log_dir, "backtest")
        c0, t0 = time.process_time(), time.perf_counter()
        journal.export_csv(tmp / "csv", f"{pkg.__name__}{blocks}")
        got["csv_s"], got["csv_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
        if pkg is fsm_exec:  # the same export by a worker process per core (issue 23)
            bench.progress(f"scale: CSV export of {blocks:,} blocks, {CORES} workers")
            t0 = time.perf_counter()
            journal.export_csv(tmp / "csv", f"workers{blocks}", workers=CORES)
            got["csv_workers_s"] = time.perf_counter() - t0
        journal.close()
        shutil.rmtree(tmp / "csv")
    shutil.rmtree(log_dir)
    return got


def rows(table: Any, base: ModuleType | None, sizes: tuple[int, int, int], *,
         quick: bool) -> None:
    """The journal-length rows: CSV export at the largest size, recover() and status at
    all three, memory of the largest backtest. The before column is measured up to the
    middle size (a million blocks of the earlier commit take minutes more)."""
    largest = sizes[-1]
    before_sizes = sizes if quick else sizes[:2]
    both = before_sizes[-1]  # the size exported by both packages, side by side
    with tempfile.TemporaryDirectory(prefix="fsm-scale-") as tmp:
        after = {n: measure(fsm_exec, n, Path(tmp), csv=n in (both, largest)) for n in sizes}
        before = ({n: measure(base, n, Path(tmp), csv=n == both)
                   for n in before_sizes} if base is not None else {})
    big = after[largest]
    per_m = 1_000_000 / largest
    b_csv = before.get(both, {}).get("csv_s") if before else None
    table.add(f"CSV export of 1,000,000 blocks, s{'' if per_m == 1 else ' (scaled)'}",
              f"{big['csv_s'] * per_m:.1f}",
              f"{b_csv * 1_000_000 / both:.1f}" if b_csv else "",
              "<= 10", big["csv_s"] * per_m <= 10)
    if "csv_workers_s" in big:
        table.add(f"  the same, {CORES} worker processes (export_csv(workers=)), s"
                  f"{'' if per_m == 1 else ' (scaled)'}",
                  f"{big['csv_workers_s'] * per_m:.1f}", "", "<= 10",
                  big["csv_workers_s"] * per_m <= 10)
    table.add("  the same, CPU s of the exporting process",
              f"{big['csv_cpu_s'] * per_m:.1f}",
              f"{before[both]['csv_cpu_s'] * 1_000_000 / both:.1f}" if b_csv else "")
    if b_csv:
        table.add(f"  CSV export of {both:,} blocks, CPU s: after / before",
                  f"{after[both]['csv_cpu_s'] / before[both]['csv_cpu_s']:.2f}x",
                  "", f"printed ({after[both]['csv_cpu_s']:.2f} s / "
                      f"{before[both]['csv_cpu_s']:.2f} s)")
    for what in ("recover", "status"):
        label = "recover()" if what == "recover" else "fsm-exec status"
        times = [after[n][f"{what}_s"] for n in sizes]
        flat = times[2] <= 1.5 * times[1]
        table.add(f"{label}, s at {'/'.join(f'{n:,}' for n in sizes)} blocks",
                  "/".join(f"{t:.2f}" for t in times),
                  "/".join(f"{before[n][f'{what}_s']:.2f}" for n in before),
                  "flat: last <= 1.5x middle", flat)
    marks = big["marks_mb"]
    table.add(f"peak RSS of a {largest:,}-block backtest, MB", f"{big['peak_mb']:.1f}",
              f"{before[largest]['peak_mb']:.1f}" if largest in before else "",
              "<= 50", big["peak_mb"] <= 50)
    table.add("  RSS growth from 10% to 100% of the run, MB", f"{marks[-1] - marks[0]:+.1f}",
              "", "flat (~0)")
    table.add(f"  journal of {largest:,} blocks, MiB", f"{big['bytes'] / 2**20:.0f}",
              f"{before[largest]['bytes'] / 2**20:.0f}" if largest in before else "")


def main(argv: list[str]) -> int:
    """``generate PACKAGE DIR BLOCKS``: the child's side of :func:`measure`."""
    if len(argv) != 4 or argv[0] != "generate":
        print("usage: python -m benchmarks.scale generate PACKAGE DIR BLOCKS", file=sys.stderr)
        return 2
    print(json.dumps(generate(argv[1], Path(argv[2]), int(argv[3]))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
