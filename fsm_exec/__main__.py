"""``python -m fsm_exec``: the same command line as ``fsm-exec``."""

from fsm_exec.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
