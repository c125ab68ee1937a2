"""Checkpoints of a finished sweep: its finished trials, one checkpoint per config (first seed), and each
trial's independently trained copy (same config, another ``train.seed``).

Loading a single checkpoint is :mod:`tune_robust.models.checkpoint`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tune_robust.errors import ConfigError
from tune_robust.models.checkpoint import MODEL_FILE, resolve_path


def finished_trials(sweep_dir: str | Path) -> Any:
    """The finished trials with a checkpoint of ``<results>/<sweep>/trials.parquet`` (a DataFrame)."""
    import pandas as pd

    table = Path(sweep_dir).expanduser() / "trials.parquet"
    if not table.exists():
        raise ConfigError(f"{table.parent} holds no trials.parquet; pass a <results>/<sweep> directory")
    df = pd.read_parquet(table)
    df = df[(df["status"] == "TERMINATED") & df["checkpoint_path"].notna()]
    if df.empty:
        raise ConfigError(f"{table.parent}: no finished trial with a checkpoint")
    return df


def sweep_checkpoints(
    sweep_dir: str | Path,
    top_k: int = 0,
    metric: str = "best_robust_acc",
    first_seed_only: bool = False,
    where: Mapping[str, Any] | None = None,
) -> list[str]:
    """Checkpoint paths of a finished sweep's trials (best ``top_k`` by ``metric``; 0 = all).

    ``first_seed_only``: of trials that differ only in ``train.seed``, keep the lowest seed (the others
    are its independently trained copies, see :func:`seed_copies`). ``where``: only trials whose
    columns have these values (e.g. ``{"method.name": "pgd_at"}``).
    """
    df = finished_trials(sweep_dir)
    for key, value in (where or {}).items():
        df = df[df[key] == value] if key in df else df.iloc[0:0]
    if df.empty:
        raise ConfigError(f"{sweep_dir}: no finished trial with {dict(where or {})}")
    if first_seed_only and SEED_KEY in df:
        keys = df.apply(lambda r: _config_key(r, _config_columns(df)), axis=1)
        df = df[df[SEED_KEY] == df.groupby(keys)[SEED_KEY].transform("min")]
    if metric in df:
        df = df.sort_values(metric, ascending=False)
    if top_k:
        df = df.head(top_k)
    return [str(p) for p in df["checkpoint_path"]]


# An independently trained copy: the same trial config, another training seed.
SEED_KEY = "train.seed"
_NOT_CONFIG = (SEED_KEY, "train.device")
_CONFIG_SECTIONS = ("data.", "model.", "train.", "method.", "attack.", "eval_attack.")


def _config_columns(df: Any) -> list[str]:
    return sorted(c for c in df.columns if c.startswith(_CONFIG_SECTIONS) and c not in _NOT_CONFIG)


def _config_key(row: Any, columns: Sequence[str]) -> str:
    import json
    import math

    def clean(v: Any) -> Any:
        if hasattr(v, "tolist"):
            v = v.tolist()
        return None if isinstance(v, float) and math.isnan(v) else v

    return json.dumps({c: clean(row[c]) for c in columns}, sort_keys=True, default=str)


def seed_copies(
    primaries: Sequence[str], sweep_dirs: Sequence[str | Path], copy_dirs: Sequence[str | Path] = ()
) -> dict[str, str]:
    """For each primary checkpoint (a trial state dir found in ``sweep_dirs`` or ``copy_dirs``), the
    finished trial of ``copy_dirs`` (default: ``sweep_dirs``) trained with the same config and the next
    higher ``train.seed`` (or, failing that, any other seed): the "independently trained copy" transfer
    attacks are crafted on.

    Primaries without such a copy are left out of the answer; the caller names them.
    """
    import pandas as pd

    copy_dirs = copy_dirs or sweep_dirs
    all_dirs = list(dict.fromkeys([*map(str, sweep_dirs), *map(str, copy_dirs)]))
    tables = [finished_trials(d).assign(_pool=str(d) in map(str, copy_dirs)) for d in all_dirs]
    df = pd.concat(tables, ignore_index=True)
    if SEED_KEY not in df:
        return {}
    columns = [c for c in _config_columns(df) if all(c in t for t in tables)]
    df = df.assign(_key=df.apply(lambda r: _config_key(r, columns), axis=1))
    df["_dir"] = df["checkpoint_path"].map(lambda p: str(Path(p).expanduser().resolve()))
    out: dict[str, str] = {}
    for primary in primaries:
        state_dir = Path(primary).expanduser().resolve()
        state_dir = state_dir.parent if state_dir.name == MODEL_FILE else state_dir
        row = df[df["_dir"] == str(state_dir)]
        if row.empty:
            continue
        key, seed = row["_key"].iloc[0], row[SEED_KEY].iloc[0]
        others = df[df["_pool"] & (df["_key"] == key) & (df[SEED_KEY] != seed)]
        if others.empty:
            continue
        later = others[others[SEED_KEY] > seed]
        pick = (later if not later.empty else others).sort_values(SEED_KEY).iloc[0]
        out[primary] = str(resolve_path(pick["checkpoint_path"]).resolve())
    return out
