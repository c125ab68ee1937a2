"""Read sweep results (``<results>/<sweep>/*.parquet``) into typed pandas DataFrames."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tune_robust.results.schema import SCHEMA_VERSION, TRIAL_METRICS
from tune_robust.results.writer import EPOCHS_FILE, TABLES, TRIALS_FILE

# Column -> dtype for the columns every sweep writes (others keep what Parquet stored).
_CATEGORIES = ("sweep", "fidelity", "status", "search", "scheduler", "val_split", "device")
_BOOLEANS = ("stopped_by_scheduler", "suspect_gradient_masking")
# The writer's per-trial metrics that are text, not numbers; every other one is numeric.
_TEXT_METRICS = ("eval_attack", "train_attack", "stopped_early", "device", "hostname", "node_id")
_NUMBERS = (
    *(c for c in TRIAL_METRICS if c not in _TEXT_METRICS),
    *("epochs_run", "wall_seconds", "cpus", "gpus", "attack_grad_passes", "attack_passes_total"),
    "eval_suite_seconds",
)
# Renames of config columns between schema versions (old -> new).
_RENAMED = {1: {"train.method": "method.name"}}


@dataclass
class SweepResults:
    """The tables of one or more sweeps. ``trials, epochs = load_sweep(...)`` unpacks the first two.

    trials: one row per trial (config columns ``<section>.<key>``, metrics, cost, evaluation suite);
    epochs: one row per trial and epoch; tables: the per-trial evaluation tables that exist
    (``lipschitz``, ``acc_vs_eps``, ``acc_vs_steps``, ``transfer``). Every row has ``sweep_path``, the
    directory it was read from, so two runs of the same sweep (two fidelities, two strategies) stay
    apart.
    """

    trials: pd.DataFrame
    epochs: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    paths: list[Path] = field(default_factory=list)

    def __iter__(self) -> Iterator[pd.DataFrame]:
        return iter((self.trials, self.epochs))

    def table(self, name: str) -> pd.DataFrame:
        """An evaluation table (empty DataFrame if no trial reported it)."""
        if name not in TABLES:
            raise KeyError(f"unknown table {name!r}; known: {', '.join(TABLES)}")
        return self.tables.get(name, pd.DataFrame())


def sweep_dirs(path: str | Path) -> list[Path]:
    """``path`` itself if it holds a sweep's Parquet files, else its sub-directories that do."""
    path = Path(path).expanduser()
    if (path / TRIALS_FILE).exists() or (path / EPOCHS_FILE).exists():
        return [path]
    if path.is_dir():
        found = sorted(d for d in path.iterdir() if (d / TRIALS_FILE).exists() or (d / EPOCHS_FILE).exists())
        if found:
            return found
    raise FileNotFoundError(
        f"{path} holds no {TRIALS_FILE} or {EPOCHS_FILE}, nor do its sub-directories; pass "
        f"<results>/<sweep> (or a results dir holding several sweeps)"
    )


def load_sweep(path: str | Path | Sequence[str | Path]) -> SweepResults:
    """Load one sweep directory, a results directory of several sweeps, or a list of either."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths:
        raise ValueError("load_sweep needs at least one path")
    dirs = [d for p in paths for d in sweep_dirs(p)]
    trials = _concat([_read(d, TRIALS_FILE) for d in dirs])
    epochs = _concat([_read(d, EPOCHS_FILE) for d in dirs])
    tables = {}
    for name in TABLES:
        df = _concat([_read(d, f"{name}.parquet") for d in dirs])
        if len(df):
            tables[name] = df
    return SweepResults(_typed(trials), _typed(epochs), tables, dirs)


def _read(directory: Path, name: str) -> pd.DataFrame:
    path = directory / name
    if not path.exists():
        return pd.DataFrame()
    df = pd.read_parquet(path)
    if "schema_version" in df and len(df):
        newest = int(df["schema_version"].max())
        if newest > SCHEMA_VERSION:
            raise ValueError(
                f"{path} was written with results schema {newest}, newer than this tune_robust reads "
                f"({SCHEMA_VERSION}); update tune_robust"
            )
        for version, renames in _RENAMED.items():
            old = df["schema_version"] <= version
            for before, after in renames.items():
                if before in df and old.any():
                    if after not in df:
                        df[after] = None
                    df.loc[old, after] = df.loc[old, before]
                    df = df.drop(columns=before)
    df["sweep_path"] = str(directory)
    return df


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    if len(frames) == 1:
        return frames[0]
    with warnings.catch_warnings():  # all-NA columns of one sweep: their dtype is irrelevant
        warnings.simplefilter("ignore", FutureWarning)
        return pd.concat(frames, ignore_index=True, sort=False)


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    if not len(df):
        return df
    df = df.copy()
    for c in _CATEGORIES:
        if c in df:
            df[c] = df[c].astype("category")
    for c in _NUMBERS:
        if c in df:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    for c in [*_BOOLEANS, *(c for c in df if c.startswith("sanity_") and c != "sanity_messages")]:
        if c in df:
            df[c] = df[c].astype("boolean")
    if "finished_at" in df:
        df["finished_at"] = pd.to_datetime(df["finished_at"], utc=True, errors="coerce")
    return df


def expand_stages(df: pd.DataFrame, key: str) -> pd.DataFrame:
    """Add one numeric column per stage of a per-stage config column (``model.depths`` "9-7-1" ->
    ``model.depths[0]`` = 9, ``[1]`` = 7, ``[2]`` = 1)."""
    if key not in df:
        raise KeyError(f"no column {key!r}; per-stage columns here: {', '.join(stage_keys(df)) or 'none'}")
    parts = df[key].astype(str).str.split("-", expand=True)
    out = df.copy()
    for i in parts.columns:
        out[f"{key}[{i}]"] = pd.to_numeric(parts[i], errors="coerce")
    return out


def stage_keys(df: pd.DataFrame) -> list[str]:
    """Config columns holding per-stage values ("9-7-1") that vary across trials."""
    keys = []
    for c in df.columns:
        if not c.startswith("model.") or pd.api.types.is_numeric_dtype(df[c]):
            continue
        values = df[c].dropna().astype(str)
        if len(values) and values.str.fullmatch(r"[\d.]+(-[\d.]+)+").all() and values.nunique() > 1:
            keys.append(c)
    return keys


def config_keys(df: pd.DataFrame) -> list[str]:
    """Config columns (``<section>.<key>``) whose value varies across the rows: what a sweep searched."""
    sections = ("data.", "model.", "train.", "method.", "attack.", "eval_attack.", "eval.", "upstream.")
    return [
        c
        for c in df.columns
        if c.startswith(sections) and df[c].astype(str).nunique(dropna=False) > 1 and "[" not in c
    ]


def numeric_column(df: pd.DataFrame, name: str) -> pd.Series:
    """Column ``name`` as numbers, missing values (and a missing column) as 0: cost columns summed."""
    if name not in df:
        return pd.Series(0.0, index=df.index)
    return pd.to_numeric(df[name], errors="coerce").fillna(0.0)


def finished_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials that ran to the end with a result: terminated, a ``best_robust_acc`` (where the sweep
    reports one), and not stopped early by a scheduler."""
    if not len(trials) or "status" not in trials:
        return trials.iloc[0:0]
    done = trials[trials["status"].astype(str) == "TERMINATED"]
    if "best_robust_acc" in done and done["best_robust_acc"].notna().any():  # (evaluate sweeps: none)
        done = done.dropna(subset=["best_robust_acc"])
    if "stopped_by_scheduler" in done:
        done = done[~done["stopped_by_scheduler"].fillna(False).astype(bool)]
    return done
