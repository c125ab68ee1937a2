"""Load sweep results into pandas.

Example:
    >>> from analysis import load_sweep
    >>> trials, epochs = load_sweep("results/wrn_depth_grid")  # doctest: +SKIP
    >>> trials.sort_values("best_robust_acc").tail()  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tune_robust.results.writer import EPOCHS_FILE, TRIALS_FILE

__all__ = ["load_sweep"]


def load_sweep(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, epochs) DataFrames of one sweep directory (``<results>/<sweep>``)."""
    path = Path(path)
    if not (path / TRIALS_FILE).exists() and not (path / EPOCHS_FILE).exists():
        raise FileNotFoundError(f"{path} holds no {TRIALS_FILE} or {EPOCHS_FILE}; is it <results>/<sweep>?")
    read = lambda f: pd.read_parquet(path / f) if (path / f).exists() else pd.DataFrame()  # noqa: E731
    return read(TRIALS_FILE), read(EPOCHS_FILE)
