"""``python -m fsm_exec.testing nightly ...``: the nightly run."""

from fsm_exec.testing.nightly import main

raise SystemExit(main())
