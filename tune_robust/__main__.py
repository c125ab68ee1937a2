"""``python -m tune_robust ...``: the same command line as ``python sweep.py`` and ``tune-robust``."""

from sweep import main

raise SystemExit(main())
