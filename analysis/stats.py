"""Ranking helpers over a trials DataFrame: top-k, Pareto fronts, rank correlations between fidelities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from tune_robust.analysis.load import config_keys

Objectives = Mapping[str, str] | Sequence[str]


def _objectives(objectives: Objectives) -> dict[str, str]:
    """``{"best_robust_acc": "max", "params": "min"}`` or ``["best_robust_acc", "params:min"]``."""
    if isinstance(objectives, Mapping):
        out = dict(objectives)
    else:
        out = {}
        for item in objectives:
            col, _, mode = item.partition(":")
            out[col] = mode or "max"
    if not out:
        raise ValueError("give at least one objective")
    for col, mode in out.items():
        if mode not in ("max", "min"):
            raise ValueError(f"objective {col!r}: mode must be 'max' or 'min', got {mode!r}")
    return out


def top_k(df: pd.DataFrame, k: int = 5, by: str = "best_robust_acc", mode: str = "max") -> pd.DataFrame:
    """The ``k`` best rows by ``by`` (rows without a value, e.g. trials ASHA stopped, are skipped)."""
    if by not in df:
        raise KeyError(f"no column {by!r} to rank by")
    rows = df.dropna(subset=[by])
    return rows.nlargest(k, by) if mode == "max" else rows.nsmallest(k, by)


def pareto_front(df: pd.DataFrame, objectives: Objectives) -> pd.DataFrame:
    """Rows no other row dominates (at least as good in every objective and better in one).

    ``objectives``: column -> "max" | "min", e.g. ``{"best_robust_acc": "max", "params": "min",
    "best_clean_acc": "max"}``. Rows missing an objective are left out; equal rows are all kept. The
    front is sorted by the first objective, best first.
    """
    obj = _objectives(objectives)
    missing = [c for c in obj if c not in df]
    if missing:
        raise KeyError(f"no column(s) {', '.join(missing)} in the DataFrame")
    rows = df.dropna(subset=list(obj))
    # Maximisation form: flip the sign of minimised objectives.
    v = np.column_stack([rows[c].to_numpy(float) * (1 if m == "max" else -1) for c, m in obj.items()])
    geq = (v[:, None, :] >= v[None, :, :]).all(axis=2)  # geq[i, j]: i at least as good as j everywhere
    gt = (v[:, None, :] > v[None, :, :]).any(axis=2)
    dominated = (geq & gt).any(axis=0)
    first, mode = next(iter(obj.items()))
    return rows[~dominated].sort_values(first, ascending=mode == "min")


def rank_correlation(a: pd.Series | Sequence[float], b: pd.Series | Sequence[float]) -> dict[str, float]:
    """Kendall tau and Spearman rho between two scorings of the same configs.

    Series are aligned on their index (the config), plain sequences by position; pairs with a missing
    value are dropped. Returns ``kendall_tau``, ``kendall_p``, ``spearman_rho``, ``spearman_p``, ``n``.
    """
    from scipy import stats

    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        if a.index.has_duplicates or b.index.has_duplicates:
            raise ValueError("rank_correlation: each config may appear once in each ranking")
        joined = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    else:
        if len(a) != len(b):
            raise ValueError(f"rank_correlation: {len(a)} vs {len(b)} values")
        joined = pd.DataFrame({"a": list(a), "b": list(b)}).dropna()
    n = len(joined)
    if n < 2:
        raise ValueError(f"rank_correlation needs at least 2 configs scored in both rankings, got {n}")
    tau = stats.kendalltau(joined["a"], joined["b"])
    rho = stats.spearmanr(joined["a"], joined["b"])
    return {
        "kendall_tau": float(tau.statistic),
        "kendall_p": float(tau.pvalue),
        "spearman_rho": float(rho.statistic),
        "spearman_p": float(rho.pvalue),
        "n": n,
    }


def fidelity_correlation(
    cheap: pd.DataFrame,
    expensive: pd.DataFrame,
    metric: str = "best_robust_acc",
    keys: Sequence[str] | None = None,
    k: int = 5,
) -> dict[str, float]:
    """How well a cheap proxy (fewer epochs, smaller data, a short finetune) ranks configs like the
    expensive run: rank correlation of ``metric`` over the configs both ran, plus the overlap of
    their top-``k`` sets. ``keys``: the config columns identifying a config (default: those that vary in
    ``expensive``)."""
    keys = list(keys or config_keys(expensive))
    if not keys:
        raise ValueError("no config column varies across the expensive run's trials; pass keys=")
    missing = [c for df in (cheap, expensive) for c in [*keys, metric] if c not in df]
    if missing:
        raise KeyError(f"missing column(s): {', '.join(sorted(set(missing)))}")

    def scores(df: pd.DataFrame) -> pd.Series:
        rows = df.dropna(subset=[metric])
        index = rows[keys].astype(str).agg(" ".join, axis=1)
        return pd.Series(rows[metric].to_numpy(float), index=index).groupby(level=0).mean()

    a, b = scores(cheap), scores(expensive)
    out = rank_correlation(a, b)
    common = a.index.intersection(b.index)
    top_a = set(a[common].nlargest(k).index)
    top_b = set(b[common].nlargest(k).index)
    out[f"top{k}_overlap"] = len(top_a & top_b)
    return out


def cost_totals(trials: pd.DataFrame) -> dict[str, float]:
    """Sweep totals of the per-trial cost columns (trials.parquet rows, finished or not)."""
    if not len(trials):
        return {}

    def col(name: str) -> pd.Series:
        if name not in trials:
            return pd.Series(0.0, index=trials.index)
        return pd.to_numeric(trials[name], errors="coerce").fillna(0.0)

    wall = col("wall_seconds")
    return {
        "trials": float(len(trials)),
        "trial_hours": float(wall.sum()) / 3600,
        "cpu_hours": float((wall * col("cpus")).sum()) / 3600,
        "gpu_hours": float((wall * col("gpus")).sum()) / 3600,
        "epochs": float(col("epochs_run").sum()),
        "attack_passes": float(col("attack_passes_total").sum()),
    }
