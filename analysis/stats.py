"""Ranking helpers over a trials DataFrame (top-k, Pareto fronts, rank correlations between fidelities)
and the statistics the claims use (correlations and differences of means with bootstrap intervals and
permutation p values)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tune_robust.analysis.load import config_keys, numeric_column

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
        return numeric_column(trials, name)

    wall = col("wall_seconds")
    return {
        "trials": float(len(trials)),
        "trial_hours": float(wall.sum()) / 3600,
        "cpu_hours": float((wall * col("cpus")).sum()) / 3600,
        "gpu_hours": float((wall * col("gpus")).sum()) / 3600,
        "epochs": float(col("epochs_run").sum()),
        "attack_passes": float(col("attack_passes_total").sum()),
    }


def _bootstrap(
    data: tuple[np.ndarray, ...], statistic: Callable[..., float], paired: bool, level: float, seed: int
) -> tuple[float, float]:
    """A percentile bootstrap interval (nan, nan where every resample gives the same value)."""
    from scipy import stats

    with warnings.catch_warnings():  # a resample of tied values has no rank correlation: counted as 0
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        res = stats.bootstrap(
            data,
            statistic,
            paired=paired,
            vectorized=False,
            n_resamples=2000,
            confidence_level=level,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return low, high


# Below this many pairs a correlation's p value comes from a permutation test.
EXACT_BELOW = 20


def correlation(
    x: Sequence[float] | pd.Series,
    y: Sequence[float] | pd.Series,
    method: str = "spearman",
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Spearman rho or Kendall tau between paired values (pairs with a missing value dropped), its p
    value (scipy's test of no association; a permutation test below EXACT_BELOW pairs) and a
    percentile-bootstrap interval over the pairs: ``value``, ``low``, ``high``, ``p``, ``n``."""
    from scipy import stats

    if method not in ("spearman", "kendall", "pearson"):
        raise ValueError(f"correlation method must be spearman, kendall or pearson, not {method!r}")
    pairs = pd.DataFrame({"x": np.asarray(x, float), "y": np.asarray(y, float)}).dropna()
    n = len(pairs)
    if n < 3:
        raise ValueError(f"a correlation needs at least 3 pairs, got {n}")
    fn = {"spearman": stats.spearmanr, "kendall": stats.kendalltau, "pearson": stats.pearsonr}[method]
    test = fn(pairs["x"], pairs["y"])

    def stat(a: np.ndarray, b: np.ndarray) -> float:
        value = float(fn(a, b).statistic)
        return 0.0 if math.isnan(value) else value

    x, y = pairs["x"].to_numpy(), pairs["y"].to_numpy()
    low, high = _bootstrap((x, y), stat, True, level, seed)
    p = float(test.pvalue)
    if n < EXACT_BELOW:  # scipy's p is asymptotic: a permutation test (exact up to 7 pairs)
        perm = stats.permutation_test(
            (x,),
            lambda u: stat(u, y),
            permutation_type="pairings",
            n_resamples=9999,
            rng=np.random.default_rng(seed),
        )
        p = float(perm.pvalue)
    return {"value": float(test.statistic), "low": low, "high": high, "p": p, "n": n}


def mean_difference(
    a: Sequence[float] | pd.Series,
    b: Sequence[float] | pd.Series,
    paired: bool = False,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """mean(a) - mean(b) (paired: the mean of a_i - b_i), a percentile-bootstrap interval and a
    two-sided permutation p value (exact when the permutations are few): ``value``, ``low``, ``high``,
    ``p``, ``n`` (the pairs, or the smaller group)."""
    from scipy import stats

    x, y = np.asarray(a, float), np.asarray(b, float)
    if paired:
        keep = ~(np.isnan(x) | np.isnan(y))
        x, y = x[keep], y[keep]
    else:
        x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    n = min(len(x), len(y))
    if n < 2:
        raise ValueError(
            f"a difference of means needs at least 2 values on each side, got {len(x)} and {len(y)}"
        )

    def diff(u: np.ndarray, v: np.ndarray) -> float:
        return float(np.mean(u - v)) if paired else float(np.mean(u) - np.mean(v))

    low, high = _bootstrap((x, y), diff, paired, level, seed)
    perm = stats.permutation_test(
        (x, y),
        diff,
        permutation_type="samples" if paired else "independent",
        vectorized=False,
        n_resamples=9999,
        rng=np.random.default_rng(seed),
    )
    return {"value": diff(x, y), "low": low, "high": high, "p": float(perm.pvalue), "n": n}


def within_groups_correlation(
    x: Sequence[float] | pd.Series,
    y: Sequence[float] | pd.Series,
    groups: Sequence[Any] | pd.Series,
    method: str = "spearman",
    level: float = 0.95,
    seed: int = 0,
    draws: int = 9999,
) -> dict[str, float]:
    """:func:`correlation` of ``x`` and ``y`` each centred on its group's mean, with a p value from
    permuting ``y`` within each group only (the groups' own means carry no evidence): ``value``,
    ``low``, ``high``, ``p``, ``n``."""
    frame = pd.DataFrame({"x": np.asarray(x, float), "y": np.asarray(y, float), "g": list(groups)}).dropna()
    centred = frame[["x", "y"]] - frame.groupby("g")[["x", "y"]].transform("mean")
    out = correlation(centred["x"], centred["y"], method, level, seed)
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero((frame["g"] == g).to_numpy()) for g in frame["g"].unique()]
    from scipy import stats

    xc, yc = centred["x"].to_numpy(), centred["y"].to_numpy()
    if method == "kendall":

        def stat(v: np.ndarray) -> float:
            value = float(stats.kendalltau(xc, v).statistic)
            return 0.0 if math.isnan(value) else value
    else:  # Spearman is Pearson's r of the ranks; a shuffle within a group permutes the ranks
        a = stats.rankdata(xc) if method == "spearman" else xc
        a = (a - a.mean()) / (np.linalg.norm(a - a.mean()) or 1.0)
        yc = stats.rankdata(yc) if method == "spearman" else yc
        yc = yc - yc.mean()
        scale = np.linalg.norm(yc) or 1.0

        def stat(v: np.ndarray) -> float:
            return float(a @ v) / float(scale)

    observed = abs(stat(yc))
    hits = 0
    for _ in range(draws):
        shuffled = yc.copy()
        for idx in members:
            shuffled[idx] = yc[rng.permutation(idx)]
        hits += abs(stat(shuffled)) >= observed - 1e-12
    out["p"] = float((hits + 1) / (draws + 1))
    return out


def mean_interval(
    values: Sequence[float] | np.ndarray, level: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """The mean of ``values`` (missing ones dropped) and a percentile-bootstrap interval of it (2000
    resamples): ``value``, ``low``, ``high``, ``n``; the interval is (value, value) for a constant sample
    and NaN below 2 values."""
    x = np.asarray(values, float)
    x = x[~np.isnan(x)]
    if not len(x):
        return {"value": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    mean = float(x.mean())
    if len(x) < 2:
        return {"value": mean, "low": math.nan, "high": math.nan, "n": 1}
    means = x[np.random.default_rng(seed).integers(0, len(x), size=(2000, len(x)))].mean(axis=1)
    low, high = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return {"value": mean, "low": float(low), "high": float(high), "n": len(x)}


def leaderboard_comparison(trials: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Our numbers against published ones (RobustBench's leaderboard), one row per evaluated checkpoint
    with ``leaderboard_*`` columns: clean accuracy against theirs, and our robust accuracy against their
    AutoAttack accuracy: our standard AutoAttack's where the suite ran it, else the worst case over the
    suite's attacks (usually at or above AutoAttack's). Each difference (ours - theirs, points) has the
    Wilson interval of our accuracy on the ``test_eval_examples`` images we used (theirs counted as
    exact: 10,000 images against our few hundred)."""
    from scipy.stats import binomtest

    if "leaderboard_clean_acc" not in trials:
        return pd.DataFrame()
    rows = []
    for _, r in trials[trials["leaderboard_clean_acc"].notna()].iterrows():
        n = int(r["test_eval_examples"]) if pd.notna(r.get("test_eval_examples")) else 0
        robust_col = _autoattack_column(r) or "test_worst_acc"
        row: dict[str, Any] = {
            "model": r.get("checkpoint_label"),
            "images": n,
            "our robust column": robust_col,
        }
        for what, ours_col, theirs_col in (
            ("clean", "test_clean_acc", "leaderboard_clean_acc"),
            ("robust", robust_col, "leaderboard_autoattack_acc"),
        ):
            ours, theirs = r.get(ours_col), r.get(theirs_col)
            row[f"{what} ours"], row[f"{what} theirs"] = ours, theirs
            if n and pd.notna(ours) and pd.notna(theirs):
                ci = binomtest(round(float(ours) * n), n).proportion_ci(level, method="wilson")
                diff = 100 * (float(ours) - float(theirs))
                low, high = 100 * (ci.low - float(theirs)), 100 * (ci.high - float(theirs))
                row[f"{what} diff"] = f"{diff:+.2f} [{low:+.2f}, {high:+.2f}]"
            else:
                row[f"{what} diff"] = None
        rows.append(row)
    return pd.DataFrame(rows)


def _autoattack_column(row: pd.Series) -> str | None:
    """The ``test_<label>_acc`` column of the suite's standard AutoAttack, read from the row's
    ``eval_attacks`` ("label=description; ..."; AutoAttack describes itself as ``aa-standard-...``)."""
    for part in str(row.get("eval_attacks") or "").split("; "):
        label, _, description = part.partition("=")
        column = f"test_{label}_acc"
        if description.startswith("aa-standard") and pd.notna(row.get(column)):
            return column
    return None
