"""Train one architecture with a registered training method, one ``tune.report`` per epoch."""

from __future__ import annotations

import socket
import tempfile
import time
from typing import Any

import ray
import torch
from ray import tune

from tune_robust.attacks import create_attack
from tune_robust.config import TrialConfig
from tune_robust.models import profile_model
from tune_robust.training.loop import Trainer


def trial_threads() -> int:
    """Torch threads = CPUs Ray gave this trial (so concurrent trials do not oversubscribe cores)."""
    try:
        cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
    except Exception:  # outside a Tune session (direct call in a test)
        cpus = torch.get_num_threads()
    return max(1, int(cpus))


def adversarial_training(config: dict[str, Any]) -> None:
    started = time.time()
    cfg = TrialConfig.from_dict(config)
    torch.set_num_threads(trial_threads())
    trainer = Trainer(cfg)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            trainer.load(d)
    shape = tuple(int(s) for s in trainer.data.train.x.shape[1:])
    params, macs = profile_model(cfg.model.name, shape, trainer.data.num_classes, **cfg.model.kwargs)  # type: ignore[arg-type]
    eval_attack = create_attack(cfg.eval_attack.name, **cfg.eval_attack.kwargs)
    static = {
        "params": params,
        "macs": macs,
        "device": str(trainer.device),
        "hostname": socket.gethostname(),
        "node_id": ray.get_runtime_context().get_node_id() if ray.is_initialized() else None,
        "eval_attack": eval_attack.describe(),
        "train_attack": trainer.train_attack.describe(),
        "resumed_from_epoch": trainer.epoch,
    }
    if trainer.finished:  # restored from the final checkpoint: only the final numbers are missing
        final = trainer.final_metrics()
        tune.report({**static, **trainer.last_metrics, **final, "trial_seconds": time.time() - started})
        return
    while not trainer.finished:
        metrics = trainer.run_epoch()
        if trainer.finished:
            metrics.update(trainer.final_metrics())
        metrics["trial_seconds"] = time.time() - started
        with tempfile.TemporaryDirectory() as d:
            trainer.save(d)
            tune.report({**static, **metrics}, checkpoint=tune.Checkpoint.from_directory(d))
