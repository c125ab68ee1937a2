"""Sweep results in pandas: loading, ranking helpers, paper figures and the sweep report.

Example:
    >>> from tune_robust.analysis import load_sweep, top_k, pareto_front
    >>> res = load_sweep("results/wrn_depth_grid")  # doctest: +SKIP
    >>> top_k(res.trials, 5)  # doctest: +SKIP
    >>> pareto_front(res.trials, {"best_robust_acc": "max", "params": "min"})  # doctest: +SKIP
"""

from __future__ import annotations

from tune_robust.analysis.load import SweepResults, config_keys, expand_stages, load_sweep, stage_keys
from tune_robust.analysis.stats import fidelity_correlation, pareto_front, rank_correlation, top_k

__all__ = [
    "SweepResults",
    "config_keys",
    "expand_stages",
    "fidelity_correlation",
    "load_sweep",
    "pareto_front",
    "rank_correlation",
    "stage_keys",
    "top_k",
]
