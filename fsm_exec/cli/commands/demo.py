"""``fsm-exec demo``: run the bundled example strategy."""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
from typing import IO, Any

from fsm_exec.cli._common import (
    EXIT_CODES,
    MODE_HELP,
    OK,
    UsageError,
    os_reason,
    resolve_mode,
)

#: What the live demo's journal shows (tests/test_cli.py checks it against a run).
LIVE_DEMO_SHOWS = (
    "--mode live runs the same blocks with injected faults on a simulated clock, without "
    "real waiting: a lost reply (settled by asking the venue), a refused connection "
    "(routed again), a reply after the execution timeout (used), a reconciliation that "
    "times out once and then succeeds, and one that never comes: it times out on all 3 "
    "attempts, the block fails (EXEC-002), the manager halts and the demo resumes it, as "
    "an operator would.")



def cmd_demo(args: argparse.Namespace, out: IO[str]) -> int:
    from fsm_exec.cli.demo import format_result, run_demo

    observers, server = serve_metrics(args.metrics_port, out)
    try:
        try:  # the environment, --id and --out are checked before anything is created
            result = run_demo(resolve_mode(args.mode), out=Path(args.out),
                              backtest_id=args.id, observers=observers)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        except OSError as exc:  # e.g. --out cannot be written
            raise UsageError(os_reason(exc, "cannot write the outputs")) from None
        print(format_result(result), file=out)
        if server is not None:
            print("serving the run's metrics until Ctrl-C", file=out, flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                wait_for_interrupt()
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    return OK


def serve_metrics(port: int | None, out: IO[str]) -> tuple[list[Any], Any]:
    """``--metrics-port``: a PrometheusObserver on its own registry, served over HTTP on
    127.0.0.1 (port 0: any free port); ``([], None)`` without the option."""
    if port is None:
        return [], None
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError:
        raise UsageError('--metrics-port needs prometheus_client: '
                         'pip install "fsm-exec[prometheus]"') from None
    from fsm_exec.observe import PrometheusObserver

    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    try:
        server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    except (OSError, OverflowError) as exc:
        raise UsageError(f"--metrics-port {port}: cannot listen: {exc}") from None
    print(f"metrics: http://127.0.0.1:{server.server_port}/metrics", file=out, flush=True)
    return [observer], server


def wait_for_interrupt() -> None:  # pragma: no cover - replaced in tests; Ctrl-C ends it
    while True:
        time.sleep(3600)


def add_parser(sub: Any) -> None:
    """The ``demo`` subcommand."""
    fmt = argparse.RawDescriptionHelpFormatter
    d = sub.add_parser(
        "demo", formatter_class=fmt, help="run the bundled example strategy",
        description="Run the bundled example: an ETH basis strategy's instruction blocks "
                    "over a bundled month of hourly prices, on simulated venues (spot, "
                    "staking, lending, perp). Writes logs/events/"
                    "execution_manager_events.jsonl, results/<id>/events.csv, "
                    "results/<id>/deltas.csv and run_diagram.md under --out, with a run "
                    "report (report.html; report.md without matplotlib), and prints a "
                    "summary. The environment and the arguments are checked before anything "
                    "is created.\n\n"
                    f"{LIVE_DEMO_SHOWS}",
        epilog=EXIT_CODES)
    d.add_argument("--mode", choices=("backtest", "live"), help=MODE_HELP)
    d.add_argument("--out", default=".", metavar="DIR",
                   help="where to write the outputs (default: the current directory)")
    d.add_argument("--id", help="backtest id for the CSV folder (default: demo-<mode>)")
    d.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve the run's Prometheus metrics at http://127.0.0.1:PORT/metrics "
                        "(0: any free port) while it runs, then until Ctrl-C (needs "
                        "pip install \"fsm-exec[prometheus]\")")
    d.set_defaults(func=cmd_demo)
