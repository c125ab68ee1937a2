"""What one replay (or a live run, read the same way) achieved for the compute it spent: best-so-far,
compute to the grid's top-1 and top-5, regret and hypervolume at fractions of the grid's compute.

Compute is counted as epochs end (in the order their reports arrive), in worker seconds (trial-hours)
and attack passes; "the grid's compute" is every config trained to its end once. A config counts as
found when its trial completes (runs its last epoch and its test suite); the best-so-far is the best
``rank_by`` value (the test robust accuracy for a sweep) among completed trials, as the summary ranks
them. Top-k: the configs whose value is at least the k-th best (ties count)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tune_robust.analysis.replay._simulate import Log
from tune_robust.analysis.replay._source import Objective

FRACTIONS = (0.1, 0.25, 0.5)  # of the grid's compute: where regret and hypervolume are read
TOPS = (1, 5)
CURVE = np.linspace(0.0, 1.0, 101)  # compute fractions of the best-so-far curves


def is_top(o: Objective, k: int) -> np.ndarray:
    """[n] configs among the table's top ``k`` by its ranking value (ties at the k-th count)."""
    signed = _signed(o)
    threshold = np.sort(signed[~np.isnan(signed)])[::-1][min(k, o.size) - 1]
    return signed >= threshold


def _signed(o: Objective) -> np.ndarray:
    return o.rank if o.rank_mode == "max" else -o.rank


def measure(log: Log, o: Objective) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Per-replay numbers, and its curves over ``CURVE`` (best-so-far, regret, hypervolume)."""
    total = float(o.trial_seconds().sum())
    spent = np.cumsum(log.seconds)
    passes = np.cumsum(log.passes)
    done = np.flatnonzero(log.completed)
    signed = _signed(o)
    best = np.fmax.accumulate(signed[log.config[done]]) if len(done) else np.array([])
    row: dict[str, Any] = {
        "trials": log.suggested,
        "completed": len(done),
        "trial_hours": float(spent[-1]) / 3600 if len(spent) else 0.0,
        "attack_passes": float(passes[-1]) if len(passes) else 0.0,
        "wall_hours": float(log.end.max()) / 3600 if len(log.end) else 0.0,
        "compute_share": float(spent[-1]) / total if len(spent) else 0.0,
    }
    for k in TOPS:
        hits = done[is_top(o, k)[log.config[done]]]
        first = int(hits[0]) if len(hits) else None
        row[f"top{k}_share"] = float(spent[first]) / total if first is not None else np.nan
        row[f"top{k}_trial_hours"] = float(spent[first]) / 3600 if first is not None else np.nan
        row[f"top{k}_attack_passes"] = float(passes[first]) if first is not None else np.nan
        row[f"top{k}_wall_hours"] = float(log.end[first]) / 3600 if first is not None else np.nan
    if len(done):
        pick = done[int(np.nanargmax(signed[log.config[done]]))]
        row["returns"] = o.labels[log.config[pick]]
        row["returns_value"] = float(o.rank[log.config[pick]])
    else:
        row["returns"], row["returns_value"] = "", np.nan
    # Completions within a budget: the prefix of ``done`` whose compute is at most the budget.
    at = np.searchsorted(spent[done], CURVE * total, side="right") if len(done) else np.zeros(len(CURVE), int)
    sign = 1.0 if o.rank_mode == "max" else -1.0
    top = float(np.nanmax(signed))
    curves = {
        "trial_hours": CURVE * total / 3600,
        # attack passes spent by the last epoch within each budget
        "attack_passes": np.concatenate([[0.0], passes])[np.searchsorted(spent, CURVE * total, side="right")],
        "best": np.array([sign * best[j - 1] if j else np.nan for j in at]),
        "regret": np.array([top - best[j - 1] if j else np.nan for j in at]),
    }
    if "params" in o.per_config:
        hv = _prefix_hypervolumes(o, log.config[done])
        curves["hypervolume"] = np.array([hv[j - 1] if j else 0.0 for j in at])
    for f in FRACTIONS:
        i = int(np.argmin(np.abs(CURVE - f)))
        row[f"regret_{round(f * 100)}"] = curves["regret"][i]
        if "hypervolume" in curves:
            row[f"hypervolume_{round(f * 100)}"] = curves["hypervolume"][i]
    return row, curves


def hypervolume(
    accuracy: Sequence[float] | np.ndarray,
    params: Sequence[float] | np.ndarray,
    reference: tuple[float, float],
) -> float:
    """Area dominated by the points (higher ``accuracy``, fewer ``params``) and bounded by ``reference``
    (the worst accuracy, the most params)."""
    a = np.asarray(accuracy, float) - reference[0]
    b = reference[1] - np.asarray(params, float)
    keep = (a > 0) & (b > 0)
    a, b = a[keep], b[keep]
    area, reach = 0.0, 0.0
    for i in np.argsort(-a, kind="stable"):  # best accuracy first; each point adds what it reaches beyond
        if b[i] > reach:
            area += a[i] * (b[i] - reach)
            reach = b[i]
    return area


def _reference(signed: np.ndarray, params: np.ndarray) -> tuple[float, float]:
    """1% of each range beyond the grid's worst value and most parameters, so the extreme configs of a
    front count too."""
    span = [float(np.nanmax(v) - np.nanmin(v)) or 1.0 for v in (signed, params)]
    return float(np.nanmin(signed)) - 0.01 * span[0], float(np.nanmax(params)) + 0.01 * span[1]


def _prefix_hypervolumes(o: Objective, configs: np.ndarray) -> np.ndarray:
    """The hypervolume of (rank value, params) of the first j completed configs, j = 1..len, as a share
    of the whole table's (reference point: ``_reference``)."""
    signed, params = _signed(o), o.per_config["params"]
    reference = _reference(signed, params)
    whole = hypervolume(signed, params, reference)
    if not whole > 0:
        return np.full(len(configs), np.nan)
    return (
        np.array(
            [
                hypervolume(signed[configs[: j + 1]], params[configs[: j + 1]], reference)
                for j in range(len(configs))
            ]
        )
        / whole
    )
