"""Running a sweep from Python (a notebook, a benchmark script): the command line's steps as calls.

Example:
    >>> from tune_robust.api import RunOptions, plan, run_plan
    >>> summary = run_plan(plan("wrn_depth_grid", RunOptions(max_trials=2)))  # doctest: +SKIP
    >>> summary["table"]  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from tune_robust.analysis.summary import summarize
from tune_robust.run import Plan, RunOptions, describe, execute, plan, preflight
from tune_robust.trainables import get_trainable

__all__ = ["Plan", "RunOptions", "describe", "plan", "preflight", "run_plan"]


def run_plan(p: Plan, command: str = "") -> dict[str, Any]:
    """Run (or resume) ``p`` with the trainable its sweep names; the summary the command line prints."""
    return summarize(p, execute(p, get_trainable(p.spec.trainable), command))
