"""Evaluate one checkpoint (ours or a plain state dict of a registered architecture) with the suite.

Config: the usual sections; ``upstream.model`` is the checkpoint path; ``model`` names the
architecture of a plain state dict (ours rebuild themselves); ``eval`` is the attack suite.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch
from ray import tune

from tune_robust.config import TrialConfig
from tune_robust.data import TrialData, prepare_data
from tune_robust.errors import ConfigError
from tune_robust.evaluation.suite import run_suite
from tune_robust.models import count_params
from tune_robust.models.checkpoint import describe_checkpoint, load_checkpoint
from tune_robust.trainables import register_trainable
from tune_robust.trainables._common import placement, trial_threads
from tune_robust.training.precision import resolve_device


def given(path: str | None, role: str) -> str:
    """The trial's upstream input ``role``, or a ConfigError saying what to pass."""
    if not path:
        raise ConfigError(f"no checkpoint given (upstream.{role}); pass --checkpoint PATH")
    return path


def load_for(cfg: TrialConfig, path: str, data: TrialData, device: torch.device) -> torch.nn.Module:
    """The checkpoint at ``path`` (one of the trial's upstream inputs), checked against the dataset's
    classes and channels; a plain state dict is built as the trial's ``model.arch``."""
    in_channels = int(data.test.x.shape[1])
    model = load_checkpoint(
        path,
        device,
        arch=cfg.model.name,
        model_kwargs=cfg.model.kwargs,
        num_classes=data.num_classes,
        in_channels=in_channels,
        mean=cfg.eval.input_mean,
        std=cfg.eval.input_std,
    )
    with torch.no_grad():
        out = model(data.test.x[:2].float().div(255))
    if out.shape[-1] != data.num_classes:
        raise ConfigError(
            f"checkpoint {path} predicts {out.shape[-1]} classes but {cfg.data.dataset} has "
            f"{data.num_classes}; evaluate it on the dataset it was trained for (--dataset)"
        )
    return model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def checkpoint_trial(config: dict[str, Any]) -> tuple[TrialConfig, torch.device, TrialData]:
    """What every checkpoint trial starts with: typed config, threads, device, seed, data."""
    cfg = TrialConfig.from_dict(config)
    torch.set_num_threads(trial_threads())
    device = resolve_device(cfg.train.device)
    torch.manual_seed(cfg.train.seed)
    return cfg, device, prepare_data(device=device, **dataclasses.asdict(cfg.data))


def leaderboard_columns(cfg: TrialConfig) -> dict[str, float]:
    """The checkpoint's published accuracies, when planning found them (a RobustBench zoo model)."""
    published = {
        "leaderboard_clean_acc": cfg.eval.leaderboard_clean_acc,
        "leaderboard_autoattack_acc": cfg.eval.leaderboard_autoattack_acc,
    }
    return {k: v for k, v in published.items() if v is not None}


@register_trainable("evaluate")
def evaluate_checkpoint(config: dict[str, Any]) -> None:
    started = time.time()
    cfg, device, data = checkpoint_trial(config)
    path = given(cfg.upstream.model, "model")
    model = load_for(cfg, path, data, device)
    suite = run_suite(model, data.test, cfg.eval, data.num_classes, cfg.data.dataset)
    tune.report(
        {
            **suite.metrics,
            "eval_tables": suite.tables,
            "checkpoint": path,
            "checkpoint_label": cfg.eval.label or describe_checkpoint(path),
            "params": count_params(model),
            **leaderboard_columns(cfg),
            "test_examples": len(data.test),
            **placement(device),
            "trial_seconds": time.time() - started,
        }
    )
