"""What a replay runs on: a table of per-epoch results as the objective, with the configs and the search
space a searcher proposes from. A finished sweep (trials.parquet + epochs.parquet) and a table a user
brings (Parquet or CSV, one row per config and epoch; docs/replay.md) become the same ``Source``."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tune_robust.errors import ConfigError
from tune_robust.sweeps import Grid

EPOCH = "epoch"
SECONDS = "seconds"  # worker seconds of the epoch (training and per-epoch validation)
PASSES = "attack_passes"  # attack forward-backward passes of the epoch (per example)
# Per config, charged once: before the first epoch, and after the last epoch of a trial that completes.
SETUP = "setup_seconds"
FINAL_SECONDS = "final_seconds"
FINAL_PASSES = "final_attack_passes"
COSTS = (SECONDS, PASSES, SETUP, FINAL_SECONDS, FINAL_PASSES)


@dataclass(frozen=True)
class Objective:
    """The table as arrays over configs (axis 0, in the order of ``Source.configs``) and epochs (axis 1):
    what a simulated trial reports after each epoch and what the epoch costs."""

    labels: tuple[str, ...]  # a config as outputs name it, e.g. "model.depths=9-7-1"
    epochs: np.ndarray  # [n] the epochs recorded for the config: its trial's last epoch
    per_epoch: Mapping[str, np.ndarray]  # metric -> [n, E] (NaN past a config's last epoch)
    per_config: Mapping[str, np.ndarray]  # metric -> [n], reported with every epoch (params, macs)
    seconds: np.ndarray  # [n, E]
    passes: np.ndarray  # [n, E]
    setup_seconds: np.ndarray  # [n]
    final_seconds: np.ndarray  # [n]
    final_passes: np.ndarray  # [n]
    rank: np.ndarray  # [n] the value that ranks configs (rank_by at the config's last epoch)
    rank_by: str
    rank_mode: str  # "max" or "min"
    has_passes: bool

    @property
    def size(self) -> int:
        return len(self.labels)

    @property
    def metrics(self) -> list[str]:
        return [*self.per_epoch, *self.per_config]

    def report(self, i: int, epoch: int) -> dict[str, Any]:
        """What config ``i``'s trial reports after ``epoch`` (1-based), as the trainable does: a metric
        the table lacks for that epoch is left out, as a live epoch without it leaves it out."""
        out: dict[str, Any] = {EPOCH: epoch, "training_iteration": epoch}
        out.update(
            {k: float(v[i, epoch - 1]) for k, v in self.per_epoch.items() if not np.isnan(v[i, epoch - 1])}
        )
        out.update({k: float(v[i]) for k, v in self.per_config.items() if not np.isnan(v[i])})
        return out

    def trial_seconds(self) -> np.ndarray:
        """[n] worker seconds of each config's whole trial (setup, every epoch, the final suite)."""
        return self.setup_seconds + self.seconds.sum(axis=1) + self.final_seconds

    def trial_passes(self) -> np.ndarray:
        return self.passes.sum(axis=1) + self.final_passes


@dataclass(frozen=True)
class Source:
    """A replay's objective and what a searcher proposes from (``configs`` drawn from ``space``)."""

    name: str
    keys: tuple[str, ...]  # the config columns that tell configs apart
    metric: str  # the strategy's default objective, and the metric ASHA cuts on
    mode: str
    configs: tuple[dict[str, Any], ...]
    space: Mapping[str, Any]
    pinned: Mapping[str, bool]
    objective: Objective
    out_dir: Path  # where the replay's tables go
    objectives: tuple[str, ...]  # the metrics a strategy may optimise (--objective)
    max_t: int  # ASHA's max_t: the most epochs a trial of the grid trains
    fidelity: str = ""


def read_frame(path: Path) -> pd.DataFrame:
    """A table from Parquet or CSV (by its suffix)."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; replay reads a sweep folder or a .parquet / .csv table")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix == ".csv":
        return pd.read_csv(path)
    raise ConfigError(
        f"{path}: replay reads tables as .parquet or .csv, not {suffix or 'a file without suffix'}"
    )


def objective_from_frame(
    frame: pd.DataFrame, keys: Sequence[str], metric: str, mode: str, rank_by: str | None = None
) -> tuple[list[tuple[str, ...]], Objective]:
    """The configs of ``frame`` (their ``keys`` values as strings, in first-seen order) and the
    objective over them. ``rank_by`` (default ``metric``) ranks configs by its value at a config's last
    epoch. Raises ConfigError (one line) on a table a replay cannot use."""
    frame = _checked(frame, keys, metric, rank_by or metric)
    codes = frame.groupby(list(keys), sort=False).ngroup().to_numpy()
    first = ~pd.Series(codes).duplicated().to_numpy()
    configs = [tuple(str(frame[k].iloc[r]) for k in keys) for r in np.flatnonzero(first)]
    n, epoch = len(configs), frame[EPOCH].to_numpy(dtype=int)
    _check_epochs(frame, keys, codes, epoch, n)
    width = int(epoch.max())
    last = np.zeros(n, dtype=int)
    np.maximum.at(last, codes, epoch)
    is_last = epoch == last[codes]

    def grid(column: str, fill: float) -> np.ndarray:
        out = np.full((n, width), fill)
        out[codes, epoch - 1] = frame[column].to_numpy(dtype=float)
        return out

    def at_last(column: str) -> np.ndarray:
        out = np.zeros(n)
        out[codes[is_last]] = frame.loc[is_last, column].to_numpy(dtype=float)
        return out

    # What trials report: every numeric column but the ranking one (a live trial reports its test
    # numbers only with its last epoch, and a scheduler must not see them earlier).
    rank_by = rank_by or metric
    hidden = {*keys, EPOCH, *COSTS, *([rank_by] if rank_by != metric else [])}
    numeric = [c for c in frame.columns if c not in hidden and _numeric(frame[c])]
    constant = frame.groupby(codes)[numeric].nunique(dropna=False).max() <= 1 if numeric else pd.Series()
    per_config = {c: at_last(c) for c in numeric if bool(constant.get(c, False)) and c != metric}
    per_epoch = {c: grid(c, np.nan) for c in numeric if c not in per_config}
    rank = at_last(rank_by)
    if np.isnan(rank).any():
        r = int(np.flatnonzero(codes == int(np.flatnonzero(np.isnan(rank))[0]))[-1])
        raise ConfigError(
            f"the ranking column {rank_by} is empty at the last epoch of {_where(frame, keys, r)}; every "
            "config needs its final value"
        )
    zeros = np.zeros(n)
    objective = Objective(
        labels=tuple(", ".join(f"{k}={v}" for k, v in zip(keys, c, strict=True)) for c in configs),
        epochs=last,
        per_epoch=per_epoch,
        per_config=per_config,
        seconds=grid(SECONDS, 0.0),
        passes=grid(PASSES, 0.0) if PASSES in frame else np.zeros((n, width)),
        setup_seconds=at_last(SETUP) if SETUP in frame else zeros,
        final_seconds=at_last(FINAL_SECONDS) if FINAL_SECONDS in frame else zeros,
        final_passes=at_last(FINAL_PASSES) if FINAL_PASSES in frame else zeros,
        rank=rank,
        rank_by=rank_by,
        rank_mode=mode,
        has_passes=PASSES in frame,
    )
    return configs, objective


def _numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _checked(frame: pd.DataFrame, keys: Sequence[str], metric: str, rank_by: str) -> pd.DataFrame:
    """``frame`` with an epoch column (1 where it has none), after the checks every table must pass."""
    if not keys:
        raise ConfigError("name the table's config columns: --config COLUMN[,COLUMN...]")
    needed = {**{k: "a config column" for k in keys}, metric: "the metric (--metric)"}
    needed.update({SECONDS: "each epoch's seconds", rank_by: "the ranking column (--rank-by)"})
    missing = [f"{c} ({what})" for c, what in needed.items() if c not in frame]
    if missing:
        raise ConfigError(
            f"the table has no column {', '.join(missing)}; it has: {', '.join(map(str, frame.columns))}"
        )
    if not len(frame):
        raise ConfigError("the table has no rows")
    frame = frame if EPOCH in frame else frame.assign(**{EPOCH: 1})
    for column in (EPOCH, SECONDS, *[c for c in COSTS[1:] if c in frame]):
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.isna().any() or (values < 0).any() or not np.isfinite(values).all():
            bad = frame[column][values.isna() | ~(values >= 0) | ~np.isfinite(values)].iloc[0]
            raise ConfigError(f"column {column} must hold numbers >= 0 on every row; found {bad!r}")
    if frame[list(keys)].isna().any().any():
        raise ConfigError(f"a config column ({', '.join(keys)}) is empty on some row")
    for column in (metric, rank_by):
        if not _numeric(frame[column]):
            raise ConfigError(f"column {column} must be numeric, found {frame[column].dtype}")
    return frame.reset_index(drop=True)


def _check_epochs(
    frame: pd.DataFrame, keys: Sequence[str], codes: np.ndarray, epoch: np.ndarray, n: int
) -> None:
    """Each config's epochs are 1, 2, ..., k, each once."""
    if (epoch < 1).any() or (frame[EPOCH].to_numpy(dtype=float) != epoch).any():
        raise ConfigError(f"column {EPOCH} must hold whole epochs counted from 1")
    seen = pd.DataFrame({"config": codes, "epoch": epoch})
    twice = seen.duplicated()
    if twice.any():
        r = int(np.flatnonzero(twice.to_numpy())[0])
        raise ConfigError(
            f"the table holds {_where(frame, keys, r)} epoch {epoch[r]} twice; a config's epochs must each "
            "be one row (add the column that tells them apart, e.g. the seed, to --config)"
        )
    count = np.bincount(codes, minlength=n)
    top = np.zeros(n, dtype=int)
    np.maximum.at(top, codes, epoch)
    gap = np.flatnonzero(count != top)
    if len(gap):
        r = int(np.flatnonzero(codes == gap[0])[0])
        raise ConfigError(
            f"{_where(frame, keys, r)} has {count[gap[0]]} epochs recorded up to epoch {top[gap[0]]}: every "
            "epoch from 1 to a config's last must be in the table"
        )


def _where(frame: pd.DataFrame, keys: Sequence[str], row: int) -> str:
    """Row ``row``'s config as ``key=value, ...``."""
    return ", ".join(f"{k}={frame[k].iloc[row]}" for k in keys)


def table_source(
    path: str | Path,
    keys: Sequence[str],
    metric: str,
    mode: str = "max",
    rank_by: str | None = None,
) -> Source:
    """A table a user brings (Parquet or CSV; docs/replay.md): configs are the distinct values of the
    ``keys`` columns. When the table holds every combination of the keys' values, each key is one
    dimension of the search space (numbers in order, so TPE can learn along them); otherwise the space
    is the table's configs themselves, one categorical choice."""
    if mode not in ("max", "min"):
        raise ConfigError(f"--mode must be max or min, got {mode!r}")
    path = Path(path)
    frame = read_frame(path)
    configs, objective = objective_from_frame(frame, keys, metric, mode, rank_by)
    values = [_ordered(frame[k]) for k in keys]
    if math.prod(len(v) for v in values) == len(configs):  # every combination is in the table
        space: dict[str, Any] = {k: Grid(v) for k, v in zip(keys, values, strict=True)}
        where = {c: i for i, c in enumerate(configs)}
        order = [where[tuple(str(v) for v in c)] for c in itertools.product(*values)]
        points = [dict(zip(keys, c, strict=True)) for c in itertools.product(*values)]
    else:
        space = {" + ".join(keys): Grid(configs)}
        order = list(range(len(configs)))
        points = [dict(zip(keys, c, strict=True)) for c in configs]
    return Source(
        name=path.stem,
        keys=tuple(keys),
        metric=metric,
        mode=mode,
        configs=tuple(points),
        space=space,
        pinned={},
        objective=reorder(objective, order),
        out_dir=path.with_name(f"{path.stem}_replay"),
        objectives=tuple(objective.metrics),
        max_t=int(objective.epochs.max()),
    )


def _ordered(column: pd.Series) -> list[Any]:
    """A column's distinct values, sorted where they compare (numbers in order), else as first seen."""
    unique = list(dict.fromkeys(v.item() if hasattr(v, "item") else v for v in column))
    try:
        return sorted(unique)
    except TypeError:
        return unique


def reorder(objective: Objective, order: Sequence[int]) -> Objective:
    """``objective`` with its configs in ``order`` (indices into its configs)."""
    idx = np.asarray(order, dtype=int)
    return Objective(
        labels=tuple(objective.labels[i] for i in idx),
        epochs=objective.epochs[idx],
        per_epoch={k: v[idx] for k, v in objective.per_epoch.items()},
        per_config={k: v[idx] for k, v in objective.per_config.items()},
        seconds=objective.seconds[idx],
        passes=objective.passes[idx],
        setup_seconds=objective.setup_seconds[idx],
        final_seconds=objective.final_seconds[idx],
        final_passes=objective.final_passes[idx],
        rank=objective.rank[idx],
        rank_by=objective.rank_by,
        rank_mode=objective.rank_mode,
        has_passes=objective.has_passes,
    )
