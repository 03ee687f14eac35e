"""``python -m fsm_exec``: the same command line as ``fsm-exec``."""

from ._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
