"""Searched architectures in pandas and figures (RobNet supplement Sec. 6, Figs. 1-2): the ranking per
computational budget, architecture statistics against robustness, FSP distance per cell against the
clean-minus-robust gap, and a drawing of a cell code.

Rows are trials.parquet rows of a search sweep (``arch``, ``arch_*``, ``fsp_*`` columns)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tune_robust.analysis.plots import _finish, _plt
from tune_robust.models.darts import parse_genotype
from tune_robust.models.robnet_codes import NODES, edge_inputs, parse_code

__all__ = [
    "ROBUST",
    "budget_direct_plot",
    "cell_drawing",
    "density_vs_robust",
    "fsp_correlations",
    "fsp_vs_gap",
    "genotype_drawing",
    "genotype_table",
    "ranking_per_group",
    "searched_rows",
    "student_table",
    "tutor_counts",
    "tutor_counts_plot",
]

ROBUST = "best_robust_acc"


def searched_rows(trials: pd.DataFrame, metric: str = ROBUST) -> pd.DataFrame:
    """Finished trials with an architecture record and ``metric`` (screened-out trials have none)."""
    if "arch" not in trials or metric not in trials:
        return trials.iloc[0:0]
    ok = trials[(trials["status"] == "TERMINATED") & trials["arch"].notna()]
    return ok.dropna(subset=[metric])


def ranking_per_group(
    trials: pd.DataFrame, by: str = "arch_sep_convs", metric: str = ROBUST, top: int = 5
) -> pd.DataFrame:
    """The ``top`` architectures of each value of ``by`` (the budget: separable convs per cell), best
    first, with a ``rank`` within the group: the supplement's pick per budget is rank 1."""
    df = searched_rows(trials, metric)
    if not len(df) or by not in df:
        return pd.DataFrame()
    df = df.sort_values([by, metric], ascending=[True, False]).copy()
    df["rank"] = df.groupby(by).cumcount() + 1
    cols = [by, "rank", "model.code", "arch_density", "arch_direct_conv_portion", "params"]
    cols += ["best_clean_acc", metric]
    return df[df["rank"] <= top][[c for c in cols if c in df]].reset_index(drop=True)


def _pearson(x: pd.Series, y: pd.Series) -> float:
    return float(np.corrcoef(x, y)[0, 1]) if len(x) > 1 and x.std() > 0 and y.std() > 0 else float("nan")


def density_vs_robust(trials: pd.DataFrame, path: str | Path | None = None, metric: str = ROBUST) -> Any:
    """Architecture density D against robust accuracy, one point per finetuned architecture, coloured
    by budget, with Pearson r in the title (the supplement's "denser is more robust")."""
    df = searched_rows(trials, metric)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    sc = ax.scatter(df["arch_density"], df[metric], c=df.get("arch_sep_convs"), cmap="viridis", s=18)
    if "arch_sep_convs" in df and len(df):
        fig.colorbar(sc, ax=ax, label="separable convs per cell (budget)")
    ax.set_xlabel("architecture density D")
    ax.set_ylabel(f"{metric} (test)")
    ax.set_title(
        f"density vs robustness: Pearson r = {_pearson(df['arch_density'], df[metric]):.3f}, n = {len(df)}"
    )
    return _finish(fig, path)


def budget_direct_plot(trials: pd.DataFrame, path: str | Path | None = None, metric: str = ROBUST) -> Any:
    """Mean robust accuracy per (budget, direct-conv portion) cell, with the count in each."""
    df = searched_rows(trials, metric)
    table = df.pivot_table(
        index="arch_direct_conv_portion", columns="arch_sep_convs", values=metric, aggfunc="mean"
    )
    counts = df.pivot_table(
        index="arch_direct_conv_portion", columns="arch_sep_convs", values=metric, aggfunc="count"
    )
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    im = ax.imshow(table.to_numpy(dtype=float), cmap="viridis", origin="lower", aspect="auto")
    ax.set_xticks(range(table.shape[1]), [f"{c:g}" for c in table.columns])
    ax.set_yticks(range(table.shape[0]), [f"{r:.2f}" for r in table.index])
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            if pd.notna(table.iat[i, j]):
                ax.text(
                    j,
                    i,
                    f"{100 * table.iat[i, j]:.1f}\n(n={int(counts.iat[i, j])})",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="w",
                )
    ax.set_xlabel("separable convs per cell (budget)")
    ax.set_ylabel("direct-conv portion")
    ax.set_title(f"mean {metric} (%) per budget x direct-conv portion")
    fig.colorbar(im, ax=ax)
    return _finish(fig, path)


def _fsp_cells(df: pd.DataFrame) -> list[str]:
    cols = [c for c in df if re.fullmatch(r"fsp_cell_\d+", c)]
    return sorted(cols, key=lambda c: int(c.rsplit("_", 1)[1]))


def fsp_correlations(trials: pd.DataFrame) -> pd.DataFrame:
    """Per cell position: Pearson r between its FSP distance and the clean-minus-robust test gap, over
    the finetuned (not screened-out) architectures (supplement Fig. 1: positive in deeper cells)."""
    df = searched_rows(trials)
    cells = _fsp_cells(df)
    if not cells or "best_clean_acc" not in df:
        return pd.DataFrame()
    gap = df["best_clean_acc"] - df[ROBUST]
    rows = [
        {"cell": int(c.rsplit("_", 1)[1]), "pearson_r": _pearson(df[c], gap), "n": len(df)} for c in cells
    ]
    return pd.DataFrame(rows)


def fsp_vs_gap(trials: pd.DataFrame, path: str | Path | None = None) -> Any:
    """One panel per cell: FSP distance against the clean-minus-robust gap (supplement Fig. 1)."""
    df = searched_rows(trials)
    cells = _fsp_cells(df)
    corr = fsp_correlations(trials).set_index("cell")["pearson_r"] if cells else pd.Series(dtype=float)
    n_cols = min(5, max(1, len(cells)))
    n_rows = max(1, -(-len(cells) // n_cols))
    plt = _plt()
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.6 * n_cols, 2.3 * n_rows), squeeze=False)
    gap = df["best_clean_acc"] - df[ROBUST] if len(df) else pd.Series(dtype=float)
    for k, ax in enumerate(axes.flat):
        if k >= len(cells):
            ax.axis("off")
            continue
        ax.scatter(df[cells[k]], gap, s=10)
        ax.set_title(f"cell {k}: r = {corr.get(k, float('nan')):.2f}", fontsize=8)
        ax.tick_params(labelsize=6)
    fig.supxlabel("FSP distance (clean vs PGD)", fontsize=9)
    fig.supylabel("clean - robust accuracy", fontsize=9)
    return _finish(fig, path)


EDGE_STYLE = {
    "01": ("tab:red", "sep conv"),
    "10": ("tab:blue", "identity"),
    "11": ("tab:purple", "conv + identity"),
}


def cell_drawing(code: str | Sequence[str], path: str | Path | None = None, title: str = "") -> Any:
    """A cell code drawn as its DAG (supplement Fig. 2): inputs c_{k-2}, c_{k-1}, nodes 0-3, the
    output concat; an edge per non-zero code, coloured by op. A cell-free code draws its first cell."""
    cell = parse_code(code if isinstance(code, str) else " ".join(code))[0]
    names = ["c_{k-2}", "c_{k-1}", *[str(i) for i in range(NODES)], "out"]
    pos = {0: (0.0, 1.0), 1: (0.0, -1.0), **{2 + i: (1.0 + i, (-1) ** i * 0.6) for i in range(NODES)}}
    pos[2 + NODES] = (NODES + 1.0, 0.0)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for e, src in enumerate(edge_inputs()):
        op = cell[e]
        if op == "00":
            continue
        dst = 2 + next(i for i in range(NODES) if e < sum(range(2, 3 + i)))
        color, _ = EDGE_STYLE[op]
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops={"arrowstyle": "->", "color": color, "lw": 1.5, "connectionstyle": "arc3,rad=0.15"},
        )
    for i in range(NODES):
        (x0, y0), (x1, y1) = pos[2 + i], pos[2 + NODES]
        ax.annotate(
            "", xy=(x1, y1), xytext=(x0, y0), arrowprops={"arrowstyle": "->", "color": "0.7", "ls": "--"}
        )
    for k, (x, y) in pos.items():
        ax.text(
            x,
            y,
            f"${names[k]}$" if k < 2 else names[k],
            ha="center",
            va="center",
            bbox={"boxstyle": "round", "fc": "w"},
        )
    for op, (color, label) in EDGE_STYLE.items():
        ax.plot([], [], color=color, label=f"{op} {label}")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_xlim(-0.6, NODES + 1.6)
    ax.set_ylim(-1.6, 1.6)
    ax.axis("off")
    ax.set_title(title or " ".join(cell), fontsize=9)
    return _finish(fig, path)


def record_space(arch: Any) -> str:
    """The search space named by an ``arch`` column's record (``robnet``, ``darts``, ...)."""
    import json

    return str(json.loads(str(arch)).get("space", ""))


def genotype_table(trials: pd.DataFrame, metric: str = ROBUST) -> pd.DataFrame:
    """One row per finished trial with a DARTS-space record: its label, genotype text, cell statistics
    and accuracies, best first."""
    df = searched_rows(trials, metric)
    if not len(df):
        return df
    df = df[df["arch"].map(record_space) == "darts"].sort_values(metric, ascending=False).copy()
    import json

    df["genotype"] = df["arch"].map(lambda a: json.loads(str(a))["arch"])
    cols = [
        "eval.label",
        "genotype",
        *sorted(c for c in df if c.startswith("arch_") and c.endswith(("convs", "skips", "pools"))),
    ]
    cols += ["params", "best_clean_acc", metric]
    return df[[c for c in cols if c in df]].reset_index(drop=True)


OP_COLORS = {"conv": "tab:blue", "pool": "tab:green", "skip": "tab:orange"}


def genotype_drawing(genotype: str, path: str | Path | None = None, title: str = "") -> Any:
    """A DARTS-space genotype (its text form) drawn as two DAGs, normal and reduction cell: inputs
    c_{k-2}, c_{k-1}, the intermediate nodes, the concatenated output; each edge labelled with its op."""
    g = parse_genotype(genotype)
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))
    for ax, (name, edges, concat) in zip(
        axes, (("normal", g.normal, g.normal_concat), ("reduction", g.reduce, g.reduce_concat)), strict=True
    ):
        nodes = len(edges) // 2
        pos = {0: (0.0, 1.0), 1: (0.0, -1.0), **{2 + i: (1.0 + i, (-1) ** i * 0.6) for i in range(nodes)}}
        out = (nodes + 1.0, 0.0)
        for k, (op, src) in enumerate(edges):
            dst = 2 + k // 2
            color = next((c for key, c in OP_COLORS.items() if key in op), "0.4")
            (x0, y0), (x1, y1) = pos[src], pos[dst]
            ax.annotate(
                "",
                xy=(x1, y1),
                xytext=(x0, y0),
                arrowprops={
                    "arrowstyle": "->",
                    "color": color,
                    "lw": 1.4,
                    "connectionstyle": "arc3,rad=0.15",
                },
            )
            ax.text(
                (x0 + x1) / 2,
                (y0 + y1) / 2 + 0.12 * (1 if k % 2 else -1),
                op,
                fontsize=6,
                color=color,
                ha="center",
            )
        for c in concat:
            ax.annotate(
                "", xy=out, xytext=pos[c], arrowprops={"arrowstyle": "->", "color": "0.7", "ls": "--"}
            )
        labels = {0: "$c_{k-2}$", 1: "$c_{k-1}$", **{2 + i: str(i) for i in range(nodes)}}
        for k, (x, y) in pos.items():
            ax.text(x, y, labels[k], ha="center", va="center", bbox={"boxstyle": "round", "fc": "w"})
        ax.text(*out, "out", ha="center", va="center", bbox={"boxstyle": "round", "fc": "w"})
        ax.set_xlim(-0.6, nodes + 1.6)
        ax.set_ylim(-1.6, 1.6)
        ax.axis("off")
        ax.set_title(f"{name} cell", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=8)
    return _finish(fig, path)


def student_table(trials: pd.DataFrame, metric: str = ROBUST) -> pd.DataFrame:
    """One row per finished trial with an RNAS-CL record: its label, final channels, tutor map (one
    teacher layer per student layer), size and accuracies, best first."""
    import json

    df = searched_rows(trials, metric)
    if not len(df):
        return df
    df = df[df["arch"].map(record_space) == "rnascl"].sort_values(metric, ascending=False).copy()
    records = df["arch"].map(lambda a: json.loads(str(a)))
    df["channels"] = records.map(lambda r: r["arch"])
    df["tutors"] = records.map(lambda r: r.get("method", {}).get("tutors", ""))
    cols = ["eval.label", "channels", "tutors", "params", "macs", "best_clean_acc", metric]
    return df[[c for c in cols if c in df]].reset_index(drop=True)


def tutor_counts(tutors: str) -> pd.Series:
    """How many student layers attach to each teacher layer (RNAS-CL Figs. 4b, 6), by layer index."""
    layers = [int(t) for t in tutors.split(",") if t.strip()]
    return pd.Series(layers, dtype=int).value_counts().sort_index()


def tutor_counts_plot(students: pd.DataFrame, path: str | Path | None = None, top: int = 4) -> Any:
    """Bars of ``tutor_counts`` for the first ``top`` rows of ``student_table`` that have tutors."""
    rows = students[students["tutors"].astype(str) != ""].head(top)
    plt = _plt()
    fig, axes = plt.subplots(1, max(1, len(rows)), figsize=(4 * max(1, len(rows)), 3), squeeze=False)
    for ax, (_, row) in zip(axes[0], rows.iterrows(), strict=False):
        counts = tutor_counts(str(row["tutors"]))
        ax.bar(counts.index, counts.to_numpy(), color="tab:blue")
        ax.set_xlabel("teacher layer (convolution index)")
        ax.set_ylabel("student layers")
        ax.set_title(str(row.get("eval.label", "")) or str(row["channels"]), fontsize=8)
    return _finish(fig, path)
