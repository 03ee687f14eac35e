"""``python -m fsm_exec``: run the bundled example backtest and print what it did."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ._demo import format_result, run_demo


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; ``--mode live`` runs it in live mode on the simulated venues."""
    args = list(sys.argv[1:] if argv is None else argv)
    mode = "backtest"
    if args[:1] == ["--mode"] and len(args) == 2 and args[1] in ("backtest", "live"):
        mode = args[1]
    elif args:
        print("usage: python -m fsm_exec [--mode backtest|live]", file=sys.stderr)
        return 2
    print(format_result(run_demo(mode)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
