"""Find and load model checkpoints: ours (a trial's state dir or its ``model.pt``) or a plain PyTorch
state dict of a registered architecture (how a user brings a model trained elsewhere).

A ``robustbench:DATASET/THREAT/NAME`` reference is a RobustBench zoo model
(:mod:`tune_robust.models.robustbench_zoo`): it names its architecture, like ours.

Plain state dicts may come in a published layout (``layouts``: pytorch-cifar ResNet, the TRADES and
RobustBench WideResNet, ...), be nested under ``state_dict``/``model``/``model_state_dict``/``net``
and carry ``module.`` prefixes (DataParallel); all are handled. A model trained on normalised inputs gets its
normalisation as a layer (``mean``/``std``), since every attack here works in [0, 1] pixel space.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tune_robust.errors import ConfigError
from tune_robust.models import robustbench_zoo as zoo
from tune_robust.models._registry import create_model
from tune_robust.models.layouts import Fitted, fit

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


def canonical(ref: str | Path) -> str:
    """A checkpoint reference as runs record it: a zoo reference as written, a path absolute (a trial
    directory's ``model.pt``)."""
    if zoo.is_reference(str(ref)):
        return str(zoo.ZooRef.parse(str(ref)))
    return str(resolve_path(ref).resolve())


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
    """What a checkpoint of ours (or a zoo model) was built from (arch, kwargs, classes, channels); {}
    for plain ones."""
    if zoo.is_reference(str(path)):
        return zoo.ZooRef.parse(str(path)).info()
    blob = _read(resolve_path(path))
    if is_ours(blob):
        return {k: blob[k] for k in ("arch", "kwargs", "num_classes", "in_channels") if k in blob}
    return {}


def _fmt(v: Any) -> str:
    return "-".join(f"{x:g}" for x in v) if isinstance(v, (list, tuple)) else str(v)


def describe_checkpoint(path: str | Path, others: Sequence[str | Path] = ()) -> str:
    """A short label: the trial's ``eval.label`` when its sweep set one (e.g. RobNet's retrain:
    ``published:robnet_large``), else ``wrn depths=9-7-1`` for ours (only options that differ from
    ``others``), the file name for plain state dicts."""
    if zoo.is_reference(str(path)):
        return zoo.ZooRef.parse(str(path)).name
    label = _trial_label(path)
    if label:
        return label
    info = checkpoint_info(path)
    if not info:
        return Path(path).stem
    kwargs = dict(info.get("kwargs", {}))
    infos = [checkpoint_info(o) for o in others]
    if infos and all(i.get("arch") == info["arch"] for i in infos):
        kwargs = {k: v for k, v in kwargs.items() if any(i.get("kwargs", {}).get(k) != v for i in infos)}
    kw = " ".join(f"{k}={_fmt(v)}" for k, v in sorted(kwargs.items()))
    return f"{info['arch']} {kw}".strip()


def _trial_label(path: str | Path) -> str:
    config = resolve_path(path).parent / "config.json"
    try:
        return str(json.loads(config.read_text()).get("eval", {}).get("label", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def fit_plain(
    path: str | Path, arch: str | None, kwargs: Mapping[str, Any], num_classes: int, in_channels: int
) -> Fitted:
    """A plain state dict renamed into ``arch``'s names (the driver's check before Ray starts)."""
    file = resolve_path(path)
    return _fit(file, _read(file), arch, dict(kwargs), num_classes, in_channels)


def _fit(
    file: Path, blob: Any, arch: str | None, kwargs: dict[str, Any], classes: int, channels: int
) -> Fitted:
    if arch is None:
        raise ConfigError(
            f"checkpoint {file} is a plain state dict: name its architecture (--set model.arch=NAME "
            f"and the builder's options, e.g. --set model.depths=5,5,5)"
        )
    return fit(plain_state_dict(blob, file), arch, kwargs, classes, channels, str(file))


def _plain_model(
    file: Path, blob: Any, arch: str | None, kwargs: dict[str, Any], classes: int, channels: int
) -> nn.Module:
    fitted = _fit(file, blob, arch, kwargs, classes, channels)
    model = create_model(str(arch), num_classes=classes, in_channels=channels, **kwargs)
    model.load_state_dict(fitted.state)
    return model


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

    Ours rebuild themselves; a plain state dict needs ``arch`` (plus its kwargs, classes, channels), in
    our names or a published layout's (``tune_robust.models.layouts``). Mismatching keys or shapes raise
    one ConfigError naming the architecture the tensors do fit, when one does. A zoo reference is built
    by RobustBench and normalises its inputs itself.
    """
    if zoo.is_reference(str(path)):
        if mean or std:
            raise ConfigError(
                f"{path}: zoo models normalise their inputs themselves; drop eval.input_mean/std"
            )
        return zoo.load(str(path), device)
    file = resolve_path(path)
    blob = _read(file)
    if is_ours(blob):
        model = create_model(
            blob["arch"], num_classes=blob["num_classes"], in_channels=blob["in_channels"], **blob["kwargs"]
        )
        try:
            model.load_state_dict(blob["state_dict"])
        except RuntimeError as e:
            first = " ".join(str(e).strip().splitlines()[:3])[:600]
            raise ConfigError(f"checkpoint {file} does not fit its own {blob['arch']}: {first}") from None
    else:
        model = _plain_model(file, blob, arch, dict(model_kwargs or {}), num_classes or 10, in_channels or 3)
    if bool(mean) != bool(std):
        raise ConfigError("give both eval.input_mean and eval.input_std (or neither)")
    if mean:
        model = Normalized(model, mean, std)
    return model.to(device).eval()
