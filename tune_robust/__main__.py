"""``python -m tune_robust ...``: the same command line as ``python sweep.py`` and ``tune-robust``."""

from tune_robust.cli import main

raise SystemExit(main())
