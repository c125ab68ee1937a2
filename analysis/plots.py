"""Figures from sweep Parquet files (matplotlib, Agg backend; each returns the figure and saves a PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd


def transfer_matrix(df: pd.DataFrame, value: str = "accuracy") -> pd.DataFrame:
    """Source x target table of ``value`` from ``transfer.parquet`` rows (RobNet supp. Table 4 layout)."""
    return (
        df.pivot_table(index="source", columns="target", values=value, aggfunc="mean")
        .sort_index(axis=0)
        .sort_index(axis=1)
    )


def transfer_heatmap(df: pd.DataFrame, path: str | Path | None = None, value: str = "accuracy") -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    ax.set_title(f"target {value} (%) on examples crafted on the source\n{attack}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig
