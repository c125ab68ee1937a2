"""Where an evaluate or transfer sweep's checkpoints come from: --checkpoint, --from-sweep (a finished
sweep's trials, one per config), and each source's independently trained copy (same config, another
``train.seed``) that transfer attacks are crafted on. Loading one checkpoint is
:mod:`tune_robust.models.checkpoint`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tune_robust.config import UpstreamInputs
from tune_robust.errors import ConfigError
from tune_robust.models import robustbench_zoo as zoo
from tune_robust.models.checkpoint import MODEL_FILE, canonical, describe_checkpoint, resolve_path
from tune_robust.run.options import RunOptions
from tune_robust.sweeps import SweepSpec


def labelled(item: str) -> tuple[str | None, str]:
    """``LABEL=PATH`` or ``PATH``; Ray's trial directory names contain "=", so an existing path is
    taken whole."""
    if "=" in item and not Path(item).expanduser().exists():
        label, path = item.split("=", 1)
        return label.strip() or None, path
    return None, item


def checkpoint_list(
    options: RunOptions, first_seed_only: bool = False, where: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """``{label: absolute path}`` from --checkpoint and --from-sweep, labels unique (``first_seed_only``:
    a sweep's other seeds of one config are copies, not checkpoints of their own; ``where``: only the
    --from-sweep trials whose columns have these values)."""
    items = [named for item in options.checkpoints for named in _expanded(labelled(item))]
    for d in options.from_sweeps:
        found = sweep_checkpoints(d, options.top_k, first_seed_only=first_seed_only, where=where)
        items.extend((None, p) for p in found)
    out: dict[str, str] = {}
    paths = [canonical(path) for _, path in items]
    for (given, _), resolved in zip(items, paths, strict=True):
        name = given or describe_checkpoint(resolved, [p for p in paths if p != resolved])
        base, i = name, 2
        while name in out:
            name, i = f"{base} #{i}", i + 1
        out[name] = resolved
    return out


def _expanded(item: tuple[str | None, str]) -> list[tuple[str | None, str]]:
    """A zoo list or wildcard (``robustbench:cifar10/Linf/A,B`` or ``.../*``) as one item per model."""
    label, path = item
    if not zoo.is_reference(path):
        return [item]
    refs = zoo.expand(path)
    if label and len(refs) > 1:
        raise ConfigError(f"--checkpoint {label}={path}: a label names one checkpoint, not {len(refs)}")
    return [(label, ref) for ref in refs]


def checkpoint_points(spec: SweepSpec, options: RunOptions, base: dict[str, Any]) -> list[dict[str, Any]]:
    independent = base.get("eval", {}).get("transfer_protocol") == "independent_copy"
    if (options.craft_on or options.craft_on_sweeps) and not (spec.inputs == "pairs" and independent):
        raise ConfigError(
            "--craft-on / --craft-on-sweep name the copies a transfer sweep crafts on: use them with "
            "sweep transfer and --set eval.transfer_protocol=independent_copy (its paper fidelity)"
        )
    where: Mapping[str, Any] = {}
    if spec.default_checkpoints and not (options.checkpoints or options.from_sweeps):
        options = replace(options, checkpoints=spec.default_checkpoints)
    if spec.default_from and not (options.checkpoints or options.from_sweeps):
        where = spec.default_where
        results = options.results_path
        for name in spec.default_from:
            if not (results / name / "trials.parquet").exists():
                raise ConfigError(
                    f"sweep {spec.name!r} takes the checkpoints of sweep {name!r}, which has no results in "
                    f"{results / name}; run `python sweep.py {name}` first (same --results-dir), or name "
                    f"checkpoints with --checkpoint / --from-sweep"
                )
        options = replace(options, from_sweeps=tuple(str(results / name) for name in spec.default_from))
    found = checkpoint_list(options, first_seed_only=independent and not options.craft_on_sweeps, where=where)
    if not found:
        raise ConfigError(
            f"sweep {spec.name!r} evaluates checkpoints: pass --checkpoint PATH (repeatable; a trial's "
            f"state dir, its model.pt, or a plain state dict with --set model.arch=...) or --from-sweep DIR"
        )
    if spec.inputs == "checkpoints":
        return [{"upstream.model": path, "eval.label": label} for label, path in found.items()]
    targets = {UpstreamInputs.target_key(label): path for label, path in found.items()}
    base.setdefault("upstream", {}).update(targets)
    points = [{"upstream.source": path, "eval.label": label} for label, path in found.items()]
    if independent:
        copies = crafting_copies(options, found)
        for point in points:
            point["upstream.craft"] = copies[str(point["eval.label"])]
    return points


def crafting_copies(options: RunOptions, found: dict[str, str]) -> dict[str, str]:
    """``{source label: path of the independently trained copy its examples are crafted on}``: from
    --craft-on LABEL=PATH, else a trial of --craft-on-sweep (or of the --from-sweep itself) with the
    source's config and another train.seed. Every source needs one (RobNet supplement Table 4)."""
    copies: dict[str, str] = {}
    for item in options.craft_on:
        label, path = labelled(item)
        if label is None or label not in found:
            raise ConfigError(
                f"--craft-on {item!r}: give SOURCE_LABEL=PATH with one of the sources' labels "
                f"({', '.join(sorted(found))})"
            )
        copies[label] = canonical(path)
    if options.from_sweeps or options.craft_on_sweeps:
        wanted = [p for lb, p in found.items() if lb not in copies]
        by_path = seed_copies(wanted, options.from_sweeps, options.craft_on_sweeps)
        copies.update({lb: by_path[p] for lb, p in found.items() if p in by_path})
    missing = sorted(set(found) - set(copies))
    if missing:
        raise ConfigError(
            f"eval.transfer_protocol=independent_copy crafts on an independently trained copy of each "
            f"source, but none was found for {', '.join(missing)}: pass --craft-on LABEL=PATH, or "
            f"--craft-on-sweep DIR with the same sweep run again with --set train.seed=1 (or use "
            f"--set eval.transfer_protocol=white_box)"
        )
    same = sorted(lb for lb, p in found.items() if copies[lb] == p)
    if same:
        raise ConfigError(f"--craft-on: the copy of {', '.join(same)} is the source itself (white-box)")
    return copies


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
