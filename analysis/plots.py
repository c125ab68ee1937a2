"""Figures from sweep Parquet files: each returns a matplotlib figure (closed, so loops over sweeps do not
keep them alive) and saves a PNG when given a path."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tune_robust.analysis.load import config_keys, expand_stages, stage_keys


def transfer_matrix(df: pd.DataFrame, value: str = "accuracy") -> pd.DataFrame:
    """Source x target table of ``value`` from ``transfer.parquet`` rows (RobNet supp. Table 4 layout)."""
    return (
        df.pivot_table(index="source", columns="target", values=value, aggfunc="mean")
        .sort_index(axis=0)
        .sort_index(axis=1)
    )


def transfer_heatmap(df: pd.DataFrame, path: str | Path | None = None, value: str = "accuracy") -> Any:
    """Source x target accuracy of transferred examples (RobNet supp. Table 4 as a heatmap)."""
    plt = _plt()
    m = transfer_matrix(df, value)
    n_rows, n_cols = m.shape
    fig, ax = plt.subplots(figsize=(max(5.0, 2.5 + 1.0 * n_cols), max(3.5, 2.0 + 0.7 * n_rows)))
    im = ax.imshow(m.to_numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n_cols), [str(c) for c in m.columns], rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(n_rows), [str(r) for r in m.index], fontsize=8)
    ax.set_xlabel("target")
    ax.set_ylabel("source")
    for i in range(n_rows):
        for j in range(n_cols):
            v = m.iat[i, j]
            if pd.notna(v):
                ax.text(
                    j,
                    i,
                    f"{100 * v:.1f}",
                    ha="center",
                    va="center",
                    color="w" if v < 0.6 else "k",
                    fontsize=8,
                )
    attack = df["attack"].iloc[0] if "attack" in df and len(df) else ""
    copy = "protocol" in df and (df["protocol"] == "independent_copy").any()
    on = "an independently trained copy of the source" if copy else "the source"
    ax.set_title(f"target {value} (%) on examples crafted on {on}\n{attack}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _finish(fig, path)


def _plt() -> Any:
    # No backend is forced: without a display matplotlib falls back to Agg, and in a notebook the
    # inline backend renders the returned figures.
    import matplotlib.pyplot as plt

    return plt


def _finish(fig: Any, path: str | Path | None) -> Any:
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    _plt().close(fig)
    return fig


def _completed(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    if metric not in trials:
        raise KeyError(f"no column {metric!r} in the trials table")
    return trials.dropna(subset=[metric])


def robustness_vs_params(
    trials: pd.DataFrame,
    path: str | Path | None = None,
    metric: str = "best_robust_acc",
    label: str | None = None,
    annotate: int = 5,
) -> Any:
    """Robust accuracy against parameter count, the ``annotate`` most and least robust configs labelled
    (Huang et al. Fig. 1b labels the depth configs at either end of the robustness range)."""
    plt = _plt()
    df = _completed(trials, metric)
    label = label or next(iter(stage_keys(df) or config_keys(df)), None)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.scatter(df["params"] / 1e6, 100 * df[metric], s=18, color="tab:blue", alpha=0.8)
    if label and annotate:
        ends = pd.concat([df.nlargest(annotate, metric), df.nsmallest(annotate, metric)]).drop_duplicates()
        for _, r in ends.iterrows():
            ax.annotate(
                str(r[label]),
                (r["params"] / 1e6, 100 * r[metric]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xlabel("parameters (M)")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(f"{len(df)} configs" + (f", labels: {label}" if label else ""), fontsize=9)
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def stage_effect(
    trials: pd.DataFrame,
    key: str,
    path: str | Path | None = None,
    metric: str = "best_robust_acc",
    clean: str | None = "best_clean_acc",
    base: Sequence[float] | None = None,
) -> Any:
    """One panel per stage: ``metric`` as that stage's value varies while the other stages stay at
    ``base`` (Huang et al. Figs. 2a-c for depths with the others at 5, 3a-c for widths at 10).

    ``base`` defaults to the config whose one-stage variations the sweep ran most of (ties: the one
    nearest the per-stage medians): 5-5-5 on the depth grid, 10-10-10 on a one-stage-at-a-time width
    grid.
    """
    plt = _plt()
    df = expand_stages(_completed(trials, metric), key)
    cols = [c for c in df.columns if c.startswith(f"{key}[")]
    if base is None:
        base = _cross_centre(df[cols].to_numpy(float))
    if len(base) != len(cols):
        raise ValueError(f"base has {len(base)} values; {key} has {len(cols)} stages")
    fig, axes = plt.subplots(1, len(cols), figsize=(3.4 * len(cols), 3.2), sharey=True, squeeze=False)
    for i, (c, ax) in enumerate(zip(cols, axes[0], strict=True)):
        others = [(o, b) for j, (o, b) in enumerate(zip(cols, base, strict=True)) if j != i]
        sel = df
        for o, b in others:
            sel = sel[np.isclose(sel[o], b)]
        sel = sel.groupby(c)[[m for m in (metric, clean) if m and m in sel]].mean().sort_index()
        if len(sel):
            ax.plot(sel.index, 100 * sel[metric], "o-", color="tab:red", label=metric)
            if clean and clean in sel:
                twin = ax.twinx()
                twin.plot(sel.index, 100 * sel[clean], "s--", color="tab:gray", label=clean, alpha=0.7)
                twin.set_ylabel(f"{clean} (%)", fontsize=8, color="tab:gray")
        fixed = ", ".join(f"{int(o.split('[')[1][:-1]) + 1}: {b:g}" for o, b in others)
        ax.set_title(f"stage {i + 1} varied (stage {fixed})", fontsize=9)
        ax.set_xlabel(f"{key}[{i}] (stage {i + 1})")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{metric} (%)")
    return _finish(fig, path)


def _cross_centre(values: np.ndarray) -> list[float]:
    """The grid point with the most rows differing from it in at most one stage."""
    import itertools

    stages = [np.unique(values[:, i]) for i in range(values.shape[1])]
    medians = np.array([np.median(v) for v in stages])
    best: tuple[int, float] | None = None
    centre: list[float] = []
    for cand in itertools.product(*stages):
        c = np.array(cand)
        count = int(((values != c).sum(axis=1) <= 1).sum())
        key = (count, -float(np.abs(c - medians).sum()))
        if best is None or key > best:
            best, centre = key, [float(x) for x in cand]
    return centre


def clean_vs_robust(
    trials: pd.DataFrame,
    path: str | Path | None = None,
    robust: str = "best_robust_acc",
    clean: str = "best_clean_acc",
    size: str = "params",
    label: str | None = None,
) -> Any:
    """Clean against robust accuracy, marker area proportional to ``size`` (RNAS-CL Fig. 1)."""
    plt = _plt()
    df = _completed(_completed(trials, robust), clean)
    label = label or next(iter(config_keys(df)), None)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    s = df[size].astype(float) if size in df else pd.Series(1.0, index=df.index)
    area = 20 + 400 * (s - s.min()) / max(float(s.max() - s.min()), 1e-12)
    groups = df.groupby(label, observed=True) if label and df[label].nunique() <= 12 else [(None, df)]
    for name, g in groups:
        ax.scatter(100 * g[clean], 100 * g[robust], s=area[g.index], alpha=0.6, label=name)
    if label and df[label].nunique() <= 12:
        ax.legend(fontsize=7, title=label, title_fontsize=7, markerscale=0.5)
    ax.set_xlabel(f"{clean} (%)")
    ax.set_ylabel(f"{robust} (%)")
    ax.set_title(f"marker size: {size} ({s.min():.3g} to {s.max():.3g})", fontsize=9)
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def accuracy_curves(
    table: pd.DataFrame,
    trials: pd.DataFrame | None = None,
    path: str | Path | None = None,
    label: str | None = None,
    max_lines: int = 12,
) -> Any:
    """Accuracy against eps (``acc_vs_eps`` table, one panel per attack: RACL Fig. 3b-c) or against PGD
    iterations (``acc_vs_steps``: RACL Fig. 3a, RobNet supp. Fig. 3); one line per trial, labelled by
    ``label`` (a config column of ``trials``), the ``max_lines`` most robust trials."""
    plt = _plt()
    if not len(table):
        raise ValueError(
            "the accuracy table is empty (no trial reported it: set eval.eps_curve / eval.steps_curve)"
        )
    kind = str(table["table"].iloc[0]) if "table" in table else "curve"
    names = {}
    if trials is not None and len(trials):
        label = label or next(iter(config_keys(trials)), None)
        if label:
            names = dict(zip(trials["trial_id"], trials[label].astype(str), strict=False))
    attacks = list(dict.fromkeys(table["attack"]))
    fig, axes = plt.subplots(1, len(attacks), figsize=(4.5 * len(attacks), 3.6), squeeze=False)
    keep = table.groupby("trial_id")["value"].mean().nlargest(max_lines).index
    for ax, attack in zip(axes[0], attacks, strict=True):
        rows = table[(table["attack"] == attack) & table["trial_id"].isin(keep)]
        for tid, g in rows.groupby("trial_id"):
            g = g.sort_values("x")
            ax.plot(g["x"], 100 * g["value"], "o-", ms=3, label=names.get(tid, str(tid)))
        ax.set_title(f"{attack}: {rows['label'].iloc[0] if len(rows) else ''}", fontsize=8)
        ax.set_xlabel("eps" if kind == "acc_vs_eps" else "PGD iterations")
        if kind == "acc_vs_steps":
            ax.set_xscale("log")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title=label, title_fontsize=7)
    return _finish(fig, path)


def learning_curves(
    epochs: pd.DataFrame,
    trials: pd.DataFrame | None = None,
    path: str | Path | None = None,
    metric: str = "val_robust_acc",
    label: str | None = None,
    max_lines: int = 12,
) -> Any:
    """Validation accuracy per epoch for the ``max_lines`` trials with the highest final value (also for
    trials still running or stopped by ASHA: a partial sweep's view)."""
    plt = _plt()
    if metric not in epochs:
        raise KeyError(f"no column {metric!r} in the epochs table")
    names = {}
    if trials is not None and len(trials):
        label = label or next(iter(config_keys(trials)), None)
        if label:
            names = dict(zip(trials["trial_id"], trials[label].astype(str), strict=False))
    rows = epochs.dropna(subset=[metric])
    last = rows.sort_values("epoch").groupby("trial_id")[metric].last()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for tid in last.nlargest(max_lines).index:
        g = rows[rows["trial_id"] == tid].sort_values("epoch")
        ax.plot(g["epoch"], 100 * g[metric], "o-", ms=3, label=names.get(tid, str(tid)))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(f"{rows['trial_id'].nunique()} trials, top {min(max_lines, len(last))} shown", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, title=label, title_fontsize=7, ncol=2)
    return _finish(fig, path)


def replay_curves(curves: pd.DataFrame, path: str | Path | None = None, ylabel: str = "best so far") -> Any:
    """A replay's best-so-far (and, where the table has params, hypervolume) against the share of the
    grid's compute: per strategy and concurrency, the median over repeats and the 10-90% band
    (``replay_curves.parquet``)."""
    plt = _plt()
    panels = ["best", *(["hypervolume"] if curves.get("hypervolume", pd.Series()).notna().any() else [])]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels), 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for (strategy, concurrency), g in curves.groupby(["strategy", "concurrency"], sort=False):
            by = g.groupby("compute_share")[panel]
            x = 100 * by.median().index.to_numpy()
            lo, mid, hi = (by.quantile(q).to_numpy() for q in (0.1, 0.5, 0.9))
            name = strategy if curves["concurrency"].nunique() == 1 else f"{strategy} x{concurrency}"
            (line,) = ax.plot(x, mid, label=name)
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
        ax.set_xlabel("compute spent (% of the whole grid's trial-hours)")
        ax.set_ylabel(ylabel if panel == "best" else "hypervolume (share of the grid's)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_title("median over repeats, 10-90% band", fontsize=9)
    return _finish(fig, path)
