"""Every target of issue 23 in one table: ``python -m benchmarks`` (``--quick``: seconds).

Each line is a figure measured in this one run, side by side: fsm_exec as this tree has it
("after"), the same package at an earlier commit ("before", :data:`BASE`, imported next to it
as ``fsm_exec_base`` by :func:`benchmarks.compare.export_package`) and, where the target is
a ratio, the hand-written limit of :mod:`benchmarks.bench`. Per-call figures are this
process's CPU time, interleaved round by round (the order rotates), the median of the
rounds; the journal-length figures (CSV export, ``recover()``, ``fsm-exec status``) are
elapsed time; memory is the peak RSS of a fresh process running the backtest. The table
ends with the machine and the date. Nothing asserts: read the verdicts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import fsm_exec
from benchmarks import bench
from benchmarks.compare import base_package

#: The "before" column: main as it was when issue 23's work began.
BASE = "b22fc22"
MINUTES_A_YEAR = 525_600


@dataclass
class Line:
    """One row of the table."""

    label: str
    after: str
    before: str = ""
    target: str = ""
    met: bool | None = None  # None: printed, no target

    @property
    def verdict(self) -> str:
        return "" if self.met is None else ("met" if self.met else "NOT met")


@dataclass
class Table:
    """The rows so far, and notes printed under them."""

    lines: list[Line] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, label: str, after: str, before: str = "", target: str = "",
            met: bool | None = None) -> None:
        self.lines.append(Line(label, after, before, target, met))
        bench.progress("")
        print(f"  {label}: {after}  {('(before ' + before + ')') if before else ''}  "
              f"{target} {self.lines[-1].verdict}", file=sys.stderr, flush=True)

    def render(self) -> str:
        w = max(len(x.label) for x in self.lines) + 2
        a = max(10, *(len(x.after) for x in self.lines)) + 2
        b = max(10, *(len(x.before) for x in self.lines)) + 2
        t = max(8, *(len(x.target) for x in self.lines)) + 2
        out = [f"{'figure':<{w}}{'before':>{b}}{'after':>{a}}  {'target':<{t}}verdict",
               "-" * (w + a + b + t + 10)]
        out += [f"{x.label:<{w}}{x.before:>{b}}{x.after:>{a}}  {x.target:<{t}}{x.verdict}"
                .rstrip() for x in self.lines]
        return "\n".join([*out, "", *self.notes])


def machine() -> str:
    """This machine, as the table's footer names it."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f
                        if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return (f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}")


# ------------------------------------------------------------------------ per-call figures

Factory = bench.Factory


def manager(pkg: ModuleType, per_call: int = 1, every: int = 1,
            observers: Callable[[], list[Any]] | None = None) -> Factory:
    """``bench.fsm_exec`` for any package (this tree's, or the earlier commit's)."""

    def factory(n: int, tag: str, log_dir: Path) -> bench.Run:
        journal = pkg.EventLogger(log_dir / tag, "backtest")
        extra = {"observers": observers()} if observers else {}
        em = pkg.ExecutionManager({"max_queue_size": max(per_call, 10)}, bench.Prices(),
                                  "backtest", bench.Positions(), bench.Venue(),
                                  bench.Reconciled(), event_logger=journal, **extra)
        work = list(zip(bench.timestamps(n), bench.batches(n, tag, per_call, every),
                        strict=True))

        def run() -> None:
            update = em.update_state
            for ts, batch in work:
                update(ts, "strategy_manager", batch)
            journal.close()
        return run
    return factory


def observers_of(pkg: ModuleType, which: str) -> Callable[[], list[Any]]:
    """A fresh observer per manager: Prometheus into its own registry, or OpenTelemetry
    (the SDK) exporting spans inline to a no-op exporter; each with its defaults."""

    def make() -> list[Any]:
        return bench.observers(which, __import__(f"{pkg.__name__}.observe",
                                                 fromlist=["observe"]))
    return make


def interleaved(contenders: dict[str, tuple[Factory, int]], n: int, rounds: int
                ) -> dict[str, list[float]]:
    """CPU µs per unit of each contender (``(factory, units per call)``: blocks a call, or
    1 for calls), per round, the order rotating round by round."""
    names = list(contenders)
    out: dict[str, list[float]] = {k: [] for k in names}
    with tempfile.TemporaryDirectory(prefix="fsm-bench-") as tmp:
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for k, name in enumerate(order):
                bench.progress(f"round {r + 1}/{rounds}, {k + 1}/{len(names)}: {name}")
                factory, units = contenders[name]
                run = factory(n, f"r{r}x{k}", Path(tmp))
                gc.collect()
                t0 = time.process_time()
                run()
                out[name].append((time.process_time() - t0) / (n * units) * 1e6)
    bench.progress("")
    return out


def _med(xs: list[float]) -> float:
    return statistics.median(xs)


def per_call_rows(table: Table, base: ModuleType | None, n: int, rounds: int) -> None:
    """Per block and per empty call against the limit; observers against none."""
    pkgs = {"after": fsm_exec} | ({"before": base} if base is not None else {})
    c: dict[str, tuple[Factory, int]] = {
        "limit block": (bench.limit(), 1), "limit empty": (bench.limit(every=0), 1)}
    for side, pkg in pkgs.items():
        c[f"{side} block"] = (manager(pkg), 1)
        c[f"{side} empty"] = (manager(pkg, every=0), 1)
        for which in ("prometheus", "otel"):
            c[f"{side} block {which}"] = (manager(pkg, observers=observers_of(pkg, which)), 1)
    t = {k: _med(v) for k, v in interleaved(c, n, rounds).items()}

    def both(key: str, over: str) -> tuple[str, str, float]:
        after = t[f"after {key}"] / t[over.replace("SIDE", "after")]
        before = (f"{t[f'before {key}'] / t[over.replace('SIDE', 'before')]:.2f}x"
                  if base is not None else "")
        return f"{after:.2f}x", before, after

    for key, limit, label, bound in (
            ("block", "limit block", "per block / hand-written limit", 1.7),
            ("empty", "limit empty", "empty call / its limit", 1.5)):
        after, before, value = both(key, limit)
        table.add(label, after, before, f"<= {bound}x", value <= bound)
    table.add("  per block, µs (limit)", f"{t['after block']:.1f}",
              f"{t['before block']:.1f}" if base is not None else "",
              f"({t['limit block']:.1f})")
    table.add("  per empty call, µs (limit)", f"{t['after empty']:.2f}",
              f"{t['before empty']:.2f}" if base is not None else "",
              f"({t['limit empty']:.2f})")
    for which, label, bound in (("prometheus", "with PrometheusObserver / without", 1.25),
                                ("otel", "with OpenTelemetry observer / without", 2.5)):
        after, before, value = both(f"block {which}", "SIDE block")
        table.add(label, after, before, f"<= {bound}x", value <= bound)


# ------------------------------------------------------------------------ the year-long loop


class FrameData:
    """A pandas-backed data provider, as a backtest's usually is: one row a minute."""

    def __init__(self, minutes: int) -> None:
        import pandas as pd

        index = pd.date_range(bench.T0, periods=minutes, freq="min")
        self.frame = pd.DataFrame({"ETH": 3000.0, "USDT": 1.0}, index=index)

    def get_data(self, ts: Any) -> dict[str, Any]:
        row = self.frame.loc[ts]
        return {"market_data": {"prices": {"ETH": float(row["ETH"]),
                                           "USDT": float(row["USDT"])}}}


def year_loop(kind: str, minutes: int) -> bench.Run:
    """One ``update_state`` a minute, the strategy reading the data provider each minute,
    a block every ten minutes; ``kind`` is ``fsm_exec``, ``limit`` or ``bare`` (the loop
    without any execution: the strategy's own share)."""
    data = FrameData(minutes)
    tmp = tempfile.mkdtemp(prefix="fsm-year-")
    update: Callable[..., Any]
    if kind == "fsm_exec":
        journal = fsm_exec.EventLogger(Path(tmp) / "j", "backtest")
        em = fsm_exec.ExecutionManager({}, data, "backtest", bench.Positions(), bench.Venue(),
                                       bench.Reconciled(), event_logger=journal)
        update, close = em.update_state, journal.close
    elif kind == "limit":
        hw = bench.HandWritten(Path(tmp) / "l.jsonl", data, bench.Venue(),  # type: ignore[arg-type]
                               bench.Positions())
        update, close = hw.update_state, hw.close
    else:
        def update(ts: Any, source: str, batch: Any) -> None:
            return None
        close = lambda: None  # noqa: E731
    stamps = list(data.frame.index.to_pydatetime())

    def run() -> None:
        get = data.get_data
        for i, ts in enumerate(stamps):
            prices = get(ts)["market_data"]["prices"]  # the strategy looks at the market
            batch = ([bench.block("y", i // 10)] if i % 10 == 0 and prices["ETH"] > 0
                     else None)
            update(ts, "strategy_manager", batch)
        close()
        shutil.rmtree(tmp)
    return run


def year_rows(table: Table, minutes: int, rounds: int) -> None:
    def loop(kind: str) -> Factory:
        return lambda n, tag, log_dir: year_loop(kind, n)

    c = {k: (loop(k), 1) for k in ("fsm_exec", "limit", "bare")}
    t = {k: _med(v) for k, v in interleaved(c, minutes, rounds).items()}
    share_f = (t["fsm_exec"] - t["bare"]) / t["fsm_exec"]
    share_l = (t["limit"] - t["bare"]) / t["limit"]
    ratio = share_f / share_l
    table.add("year-long loop: fsm_exec's share / the limit's", f"{ratio:.2f}x", "",
              "<= 1.5x", ratio <= 1.5)
    table.add("  share of the loop: fsm_exec (the limit)", f"{share_f:.0%}", "",
              f"({share_l:.0%})")
    table.add("  s per simulated year: loop with fsm_exec (limit)",
              f"{t['fsm_exec'] * MINUTES_A_YEAR / 1e6:.1f}", "",
              f"({t['limit'] * MINUTES_A_YEAR / 1e6:.1f})")


# ------------------------------------------------------------------------ the journal


def journal_bytes(pkg: ModuleType, calls: int, per_call: int, every: int) -> float:
    """Bytes the journal grows by per block (per call when ``every`` is 0) over ``calls``
    backtest calls, the records every journal starts with left out."""
    sizes = []
    with tempfile.TemporaryDirectory(prefix="fsm-bytes-") as tmp:
        for n in (0, calls):
            manager(pkg, per_call, every)(n, f"b{n}", Path(tmp))()
            sizes.append(sum(p.stat().st_size for p in (Path(tmp) / f"b{n}").iterdir()
                             if p.suffix == ".jsonl"))
    units = calls if not every else per_call * len(range(0, calls, every))
    return (sizes[1] - sizes[0]) / units


def read_us(pkg: ModuleType, blocks: int) -> float:
    """µs per record to read a journal back (parse, validate, check the schema)."""
    with tempfile.TemporaryDirectory(prefix="fsm-read-") as tmp:
        manager(pkg, 1, 10)(blocks * 10, "r", Path(tmp))()
        reader = __import__(f"{pkg.__name__}.journal.reader", fromlist=["reader"])
        best = []
        for _ in range(3):
            t0 = time.process_time()
            n = sum(1 for _ in reader.read_journal(Path(tmp) / "r"))
            best.append((time.process_time() - t0) / n * 1e6)
    return min(best)


def journal_rows(table: Table, base: ModuleType | None, calls: int) -> None:
    after = {k: journal_bytes(fsm_exec, calls, *v) for k, v in
             (("block", (1, 1)), ("mix", (1, 10)), ("empty", (1, 0)))}
    before = ({k: journal_bytes(base, calls, *v) for k, v in
               (("block", (1, 1)), ("mix", (1, 10)), ("empty", (1, 0)))} if base else {})
    for key, label in (("mix", "journal bytes per block, a block every 10 calls"),
                       ("block", "journal bytes per block, one block a call")):
        ratio = after[key] / before[key] if before else None
        table.add(label, f"{after[key]:.0f}", f"{before[key]:.0f}" if before else "",
                  "<= 1/2 before" + (f" ({ratio:.2f})" if ratio else ""),
                  None if ratio is None else ratio <= 0.5)
    table.add("journal bytes per empty call", f"{after['empty']:.1f}",
              f"{before['empty']:.0f}" if before else "", "<= 8 (a few)",
              after["empty"] <= 8)
    r_after = read_us(fsm_exec, calls // 10)
    r_before = read_us(base, calls // 10) if base else None
    table.add("reader µs per record", f"{r_after:.2f}",
              f"{r_before:.2f}" if r_before else "", "no per-line scan")


# ------------------------------------------------------------------------ the process


def import_ms(rounds: int) -> float:
    """Median ms to import fsm_exec in a fresh interpreter (``-X importtime``)."""
    times = []
    for _ in range(rounds):
        err = subprocess.run([sys.executable, "-X", "importtime", "-c", "import fsm_exec"],
                             capture_output=True, text=True, check=True).stderr
        last = [ln for ln in err.splitlines() if ln.rstrip().endswith("| fsm_exec")]
        times.append(int(last[-1].split("|")[1]) / 1000)
    return _med(times)


def live_rows(table: Table, base: ModuleType | None, n: int, rounds: int) -> None:
    def ratio(pkg: Any) -> float:
        got = bench.live_figures(n, rounds, pkg)
        return _med([b / f for b, f in zip(got["per_block"], got["fsync_us"], strict=True)])

    after = ratio(None)
    before = ratio(base) if base else None
    table.add("live: per block / its fsyncs' time", f"{after:.2f}x",
              f"{before:.2f}x" if before else "", "<= 1.3x", after <= 1.3)


def run_rows(table: Table, n: int) -> None:
    """A backtest run's fixed cost (issue 26 item 7), on disk: set-up and close, each the
    median over ``n`` runs (``benchmarks/setup_close.py``; the before commit has no
    ``backtest_run``)."""
    from benchmarks import setup_close

    with tempfile.TemporaryDirectory(prefix="fsm-exec-bench-") as tmp:
        cost = setup_close.set_up_and_close(Path(tmp), n)
    for label, key in (("run set-up: backtest_run + manager, ms", "set-up"),
                       ("run close after one block, ms", "close")):
        ms = _med(cost[key]) * 1e3
        table.add(label, f"{ms:.3f}", "", "< 0.3", ms < 0.3)


def sections(quick: bool) -> Iterator[tuple[str, Callable[[Table, ModuleType | None], None]]]:
    """The table's sections, in order: name and what fills it."""
    n, rounds = (600, 3) if quick else (5_000, 9)
    yield "per call", lambda t, b: per_call_rows(t, b, n, rounds)
    yield "year", lambda t, b: year_rows(t, 1_000 if quick else 20_000, 3 if quick else 5)
    yield "journal", lambda t, b: journal_rows(t, b, 300 if quick else 10_000)
    yield "import", lambda t, b: t.add("import fsm_exec, ms", f"{import_ms(3 if quick else 9):.0f}",
                                       "", "printed")
    yield "live", lambda t, b: live_rows(t, b, 50 if quick else 500, 2 if quick else 5)
    yield "run", lambda t, b: run_rows(t, 100 if quick else 1_000)
    from benchmarks import scale, sweep

    sizes = (200, 1_000, 4_000) if quick else (10_000, 100_000, 1_000_000)
    yield "scale", lambda t, b: scale.rows(t, b, sizes, quick=quick)
    yield "sweep", lambda t, b: sweep.rows(t, runs=4 if quick else 8,
                                           calls=200 if quick else 5_000, quick=quick)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: seconds, not minutes")
    p.add_argument("--base", default=BASE, help=f"the before column's commit ({BASE})")
    p.add_argument("--no-before", action="store_true", help="no before column")
    p.add_argument("--only", action="append", default=[],
                   help="only these sections (per call, year, journal, import, live, run, "
                        "scale, sweep); repeatable")
    args = p.parse_args(argv)
    from loguru import logger

    logger.remove()
    table = Table()
    started = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory(prefix="fsm-base-") as tmp:
        base = None if args.no_before else base_package(args.base, Path(tmp))
        for name, fill in sections(args.quick):
            if args.only and name not in args.only:
                continue
            bench.progress(f"{name}...")
            fill(table, base)
    took = (dt.datetime.now(dt.UTC) - started).total_seconds()
    table.notes.append(f"before: {args.base if base else '(not measured)'}; after: this tree. "
                       f"{'--quick: small sizes, ' if args.quick else ''}run "
                       f"{started:%Y-%m-%d %H:%M} UTC, {took:.0f} s")
    table.notes.append(f"machine: {machine()}")
    print(table.render())
    return 0
