"""``python sweep.py NAME``: the command line, run from a checkout (installed: ``tune-robust NAME`` or
``python -m tune_robust NAME``; all three are :func:`tune_robust.cli.main`)."""

import sys

from tune_robust.cli import main

if __name__ == "__main__":
    sys.exit(main())
