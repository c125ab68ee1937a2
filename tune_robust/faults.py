"""Deterministic driver crashes, for testing resume at the moments that matter.

Inert unless the environment variable ``TUNE_ROBUST_CRASH`` names a crash point: ``POINT`` or
``POINT:N`` kills the driver process (SIGKILL, as ``kill -9`` would) the N-th time (default 1) the
driver reaches that point. The points, where they are reached and what a kill there leaves behind:

``suggest``           the searcher is asked for a trial (``suggest:1``: before the first experiment
                      snapshot exists).
``trial_start``       a trial has started and has not reported yet (between its suggestion and its
                      first report).
``experiment_ahead``  an experiment snapshot in which the searcher has made a new suggestion: Ray has
                      written the experiment state (the trial list) and not yet the searcher's; the
                      experiment state is copied to storage first, as a sync that copied that file
                      before the searcher's would leave it.
``searcher_ahead``    the same snapshot, the other way round: the searcher's state reached storage, the
                      experiment state did not.
``row_write``         a trial has finished and its row is not yet in trials.parquet.

Only driver-side objects (the search generator and the results callback) reach these points.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable

ENV = "TUNE_ROBUST_CRASH"
POINTS = ("suggest", "trial_start", "experiment_ahead", "searcher_ahead", "row_write")
_reached: Counter[str] = Counter()


def armed(point: str) -> bool:
    """Whether ``TUNE_ROBUST_CRASH`` names ``point`` (so callers can skip work that only a crash needs)."""
    return os.environ.get(ENV, "").partition(":")[0] == point


def crash_point(point: str, before: Callable[[], None] | None = None) -> None:
    """SIGKILL this process if ``TUNE_ROBUST_CRASH`` says so for this arrival at ``point``."""
    if point not in POINTS:
        raise ValueError(f"unknown crash point {point!r}; known: {', '.join(POINTS)}")
    if not armed(point):
        return
    _reached[point] += 1
    count = os.environ[ENV].partition(":")[2]
    if _reached[point] == (int(count) if count else 1):
        if before is not None:
            before()
        os.kill(os.getpid(), signal.SIGKILL)
