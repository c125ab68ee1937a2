"""Train one architecture with a registered training method, one ``tune.report`` per epoch.

Where the state lives: each trial keeps one state directory on the sweep's storage
(``<trial dir>/state``: ``state.pt``, ``model.pt``, ``config.json``), replaced file by file atomically
after every epoch. The checkpoint handed to Ray each epoch is a small marker naming that directory, so
Ray may keep all of them: a driver killed at any moment (its experiment snapshot can lag the trials by
a checkpoint or two) never leaves a resume pointing at a deleted checkpoint, and a restored trial
always continues from its newest epoch.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from ray import tune

from tune_robust.attacks import create_attack
from tune_robust.config import TrialConfig
from tune_robust.models import profile_model
from tune_robust.trainables import register_trainable
from tune_robust.trainables._common import placement, trial_state_dir, trial_threads
from tune_robust.training.loop import Trainer, has_state

MARKER_FILE = "tune_robust_checkpoint.json"


@register_trainable("adversarial_training")
def adversarial_training(config: dict[str, Any]) -> None:
    started = time.time()
    cfg = TrialConfig.from_dict(config)
    torch.set_num_threads(trial_threads())
    trainer = Trainer(cfg)
    state_dir = trial_state_dir()
    warning = None
    if tune.get_checkpoint() is not None or has_state(state_dir):
        warning = trainer.load(state_dir)  # a damaged state file: from scratch, said in the row
        if warning:
            print(f"WARNING {warning}")
    shape = tuple(int(s) for s in trainer.data.train.x.shape[1:])
    params, macs = profile_model(cfg.model.name, shape, trainer.data.num_classes, **cfg.model.kwargs)  # type: ignore[arg-type]
    eval_attack = create_attack(cfg.eval_attack.name, **cfg.eval_attack.kwargs)
    static = {
        "params": params,
        "macs": macs,
        **placement(trainer.device),
        "eval_attack": eval_attack.describe(),
        # "none" for methods that do not perturb (standard), whatever the attack section says.
        "train_attack": trainer.train_attack.describe() if trainer.method.adversarial else "none",
        "resumed_from_epoch": trainer.epoch,
        "resume_warning": warning,
        "state_dir": str(state_dir),
    }
    before = trainer.elapsed  # wall seconds of earlier runs of this trial (before a restart)

    def wall_seconds() -> float:
        trainer.elapsed = before + time.time() - started
        return trainer.elapsed

    if trainer.needs_screen:  # a check of the inherited weights (RobNet's FSP screen) before epoch 1
        screened = trainer.screen()
        if trainer.stopped:  # rejected: a row with its numbers, no training, no checkpoint
            # (NaN objectives: Ray Tune expects its metric in every report; schedulers skip NaN.)
            nan = dict.fromkeys(("val_robust_acc", "val_clean_acc", "best_val_robust_acc"), float("nan"))
            final = {**nan, **screened, **trainer.cost, "completed": True, "trial_seconds": wall_seconds()}
            tune.report({**static, **final})
            return
    if trainer.finished:  # restored after the final epoch: only the test numbers may be missing
        final = {**trainer.final_metrics(), "epoch_history": trainer.history, "completed": True}
        tune.report({**static, **trainer.last_metrics, **final, "trial_seconds": wall_seconds()})
        return
    restored = trainer.epoch > 0
    while not trainer.finished:
        metrics = trainer.run_epoch()
        if restored:  # the first report after a restart: a scheduler may lack the earlier epochs
            metrics["epoch_history"] = trainer.history
            restored = False
        # "completed": the final suite ran; False on every earlier epoch, so a trial a scheduler (ASHA)
        # stops is recorded as stopped_by_scheduler.
        metrics["completed"] = trainer.finished
        metrics["epoch_end_time"] = time.time()  # orders epochs across trials (search-cost reports)
        if trainer.finished:
            metrics.update(trainer.final_metrics())
            metrics["epoch_history"] = trainer.history
        metrics["trial_seconds"] = wall_seconds()
        trainer.save(state_dir)
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / MARKER_FILE).write_text(
                json.dumps({"epoch": trainer.epoch, "state_dir": str(state_dir)})
            )
            tune.report({**static, **metrics}, checkpoint=tune.Checkpoint.from_directory(d))
