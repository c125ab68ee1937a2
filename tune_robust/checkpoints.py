"""Find and load model checkpoints: ours (a trial's state dir or its ``model.pt``) or a plain PyTorch
state dict of a registered architecture (how a user brings a model trained elsewhere).

Plain state dicts may be nested under ``state_dict``/``model``/``model_state_dict``/``net`` and carry
``module.`` prefixes (DataParallel); both are handled. A model trained on normalised inputs gets its
normalisation as a layer (``mean``/``std``), since every attack here works in [0, 1] pixel space.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tune_robust.errors import ConfigError

MODEL_FILE = "model.pt"
_NESTED = ("state_dict", "model_state_dict", "model", "net", "state")


class Normalized(nn.Module):
    """``model((x - mean) / std)``: lets attacks work in pixel space on a model trained normalised."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std)).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)  # type: ignore[operator]


def resolve_path(path: str | Path) -> Path:
    """A checkpoint path as given, or ``<dir>/model.pt`` for a trial state directory."""
    p = Path(path).expanduser()
    if p.is_dir():
        if (p / MODEL_FILE).exists():
            return p / MODEL_FILE
        raise ConfigError(f"checkpoint directory {p} holds no {MODEL_FILE}; pass the model file itself")
    if not p.exists():
        raise ConfigError(f"checkpoint {p} does not exist")
    return p


def _read(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(
            f"cannot read checkpoint {path} as a PyTorch weights file ({type(e).__name__}: {e}); "
            f"save plain tensors with torch.save(model.state_dict(), path)"
        ) from None


def is_ours(blob: Any) -> bool:
    return isinstance(blob, Mapping) and {"arch", "state_dict", "num_classes"} <= set(blob)


def plain_state_dict(blob: Any, path: Path) -> dict[str, torch.Tensor]:
    """Unwrap a state dict saved by someone else (nesting, DataParallel prefixes)."""
    while isinstance(blob, Mapping) and not all(isinstance(v, torch.Tensor) for v in blob.values()):
        inner = next((blob[k] for k in _NESTED if k in blob and isinstance(blob[k], Mapping)), None)
        if inner is None:
            keys = ", ".join(map(str, list(blob)[:8]))
            raise ConfigError(f"checkpoint {path}: no state dict found (top-level keys: {keys})")
        blob = inner
    if not isinstance(blob, Mapping):
        raise ConfigError(f"checkpoint {path} is not a state dict (got {type(blob).__name__})")
    out = {}
    for k, v in blob.items():
        k = str(k)
        for prefix in ("module.", "_orig_mod."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        out[k] = v
    return out


def checkpoint_info(path: str | Path) -> dict[str, Any]:
    """What a checkpoint of ours was built from (arch, kwargs, classes, channels); {} for plain ones."""
    blob = _read(resolve_path(path))
    if is_ours(blob):
        return {k: blob[k] for k in ("arch", "kwargs", "num_classes", "in_channels") if k in blob}
    return {}


def _fmt(v: Any) -> str:
    return "-".join(f"{x:g}" for x in v) if isinstance(v, (list, tuple)) else str(v)


def describe_checkpoint(path: str | Path, others: Sequence[str | Path] = ()) -> str:
    """A short label: ``wrn depths=9-7-1`` for ours (only options that differ from ``others``), the
    file name for plain state dicts."""
    info = checkpoint_info(path)
    if not info:
        return Path(path).stem
    kwargs = dict(info.get("kwargs", {}))
    infos = [checkpoint_info(o) for o in others]
    if infos and all(i.get("arch") == info["arch"] for i in infos):
        kwargs = {k: v for k, v in kwargs.items() if any(i.get("kwargs", {}).get(k) != v for i in infos)}
    kw = " ".join(f"{k}={_fmt(v)}" for k, v in sorted(kwargs.items()))
    return f"{info['arch']} {kw}".strip()


def load_checkpoint(
    path: str | Path,
    device: torch.device | str = "cpu",
    *,
    arch: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    mean: Sequence[float] = (),
    std: Sequence[float] = (),
) -> nn.Module:
    """The model of a checkpoint, in eval mode on ``device``.

    Ours rebuild themselves; a plain state dict needs ``arch`` (plus its kwargs, classes, channels).
    Mismatching keys or shapes raise one ConfigError naming the architecture to check.
    """
    from tune_robust.models import create_model

    file = resolve_path(path)
    blob = _read(file)
    if is_ours(blob):
        model = create_model(
            blob["arch"], num_classes=blob["num_classes"], in_channels=blob["in_channels"], **blob["kwargs"]
        )
        state = blob["state_dict"]
        what = f"{blob['arch']} {blob['kwargs']}"
    else:
        if arch is None:
            raise ConfigError(
                f"checkpoint {file} is a plain state dict: name its architecture (--set model.arch=NAME "
                f"and the builder's options, e.g. --set model.depths=5,5,5)"
            )
        model = create_model(
            arch, num_classes=num_classes or 10, in_channels=in_channels or 3, **dict(model_kwargs or {})
        )
        state = plain_state_dict(blob, file)
        what = f"{arch} {dict(model_kwargs or {})}"
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ConfigError(
            f"checkpoint {file} does not fit architecture {what}: {' '.join(first[:3])[:600]}; "
            f"check model.arch and its options (depths/widths) and the dataset's classes"
        ) from None
    if bool(mean) != bool(std):
        raise ConfigError("give both eval.input_mean and eval.input_std (or neither)")
    if mean:
        model = Normalized(model, mean, std)
    return model.to(device).eval()


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
    sweep_dir: str | Path, top_k: int = 0, metric: str = "best_robust_acc", first_seed_only: bool = False
) -> list[str]:
    """Checkpoint paths of a finished sweep's trials (best ``top_k`` by ``metric``; 0 = all).

    ``first_seed_only``: of trials that differ only in ``train.seed``, keep the lowest seed (the others
    are its independently trained copies, see :func:`seed_copies`).
    """
    df = finished_trials(sweep_dir)
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
