"""``python -m benchmarks``: the one table (see :mod:`benchmarks.suite`)."""

from benchmarks.suite import main

raise SystemExit(main())
