"""The one epoch loop every training method shares, with the full trial state.

``Trainer`` owns data, model, optimiser, LR schedule and RNG state for one trial. ``run_epoch`` trains
one epoch, evaluates on the held-out validation split (clean + the evaluation attack) and tracks the best
epoch by robust accuracy. ``save``/``load`` round-trip everything needed to continue a trial exactly
(tune_robust.training.state). Whatever a search method adds (a one-shot model's sampling, an
architecture step, a screen of the initial weights, a method's own state) takes part through the hooks
of the trial's parts (tune_robust.models.hooks), which the loop calls in order.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tune_robust.attacks import Attack, NoAttack, create_attack
from tune_robust.config import TrainConfig, TrialConfig
from tune_robust.data import TrialData, batches, prepare_data
from tune_robust.evaluation import evaluate
from tune_robust.evaluation.suite import run_suite
from tune_robust.models import count_params, create_model
from tune_robust.models.checkpoint import load_checkpoint
from tune_robust.models.hooks import TrainingHooks, load_init
from tune_robust.models.oneshot import record_of
from tune_robust.results.schema import COST_KEYS, LAST_PREFIXES
from tune_robust.training import state as trial_state
from tune_robust.training._base import create_method, state_copy
from tune_robust.training.arch_step import ArchitectureStep, architecture_step
from tune_robust.training.precision import Precision, resolve_device
from tune_robust.training.schedule import lr_multiplier
from tune_robust.training.screen import screens
from tune_robust.training.state import STATE_FILE, has_state

__all__ = ["STATE_FILE", "Trainer", "has_state", "load_model_file", "resolve_device"]


def load_model_file(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild a model saved by ``Trainer.save`` (``model.pt``: best weights plus what built them)."""
    return load_checkpoint(path, device)


def build_model(cfg: TrialConfig, data: TrialData, device: torch.device) -> nn.Module:
    """The trial's model on ``device`` (NHWC weights), from an upstream stage's weights if it names one."""
    model = create_model(
        cfg.model.name,
        num_classes=data.num_classes,
        in_channels=int(data.train.x.shape[1]),
        **cfg.model.kwargs,
    ).to(device)
    # NHWC weights to match the NHWC batches (torch's stubs omit this documented keyword).
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if cfg.upstream.init:  # multi-stage sweeps (or a published model) give the first weights
        source = load_checkpoint(
            cfg.upstream.init,
            device,
            arch=cfg.model.name,
            model_kwargs=cfg.model.kwargs,
            num_classes=data.num_classes,
            in_channels=int(data.train.x.shape[1]),
        )
        load_init(source, model)  # (through the source's hook: a sampled sub-network inherits)
    return model


def build_optimizer(model: nn.Module, t: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or Adam; ``train.exclude_norm_bias_decay``: BN affine
    parameters and biases get no weight decay. A model with hooks says which parameters are its
    weights (architecture parameters are not: the architecture step trains them)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    params = model.weight_parameters() if isinstance(model, TrainingHooks) else list(model.parameters())
    for p in params:
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": t.weight_decay},
        {"params": no_decay, "weight_decay": 0.0 if t.exclude_norm_bias_decay else t.weight_decay},
    ]
    if t.optimizer == "adam":
        return torch.optim.Adam(groups, lr=t.lr)
    return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov and t.momentum > 0)


def selection_metric(t: TrainConfig, adversarial: bool) -> str | None:
    """The validation metric that picks the best epoch (None: the last epoch is the best)."""
    select = ("robust" if adversarial else "clean") if t.select_by == "auto" else t.select_by
    return {"robust": "val_robust_acc", "clean": "val_clean_acc"}.get(select)


class Trainer:
    def __init__(self, cfg: TrialConfig, data: TrialData | None = None) -> None:
        self.cfg = cfg
        t = cfg.train
        self.device = resolve_device(t.device)
        torch.manual_seed(t.seed)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(t.seed)
        self.data = data or prepare_data(device=self.device, **dataclasses.asdict(cfg.data))
        self.model = build_model(cfg, self.data, self.device)
        self.method = create_method(cfg.method.name, **cfg.method.kwargs)
        self.method.setup(self.model, cfg.upstream, self.device)
        self.hooks = self._collect_hooks()
        self.params = count_params(self.model)
        self.epochs_total = self.method.epochs_to_run(t.epochs)
        self.train_attack = create_attack(cfg.attack.name, **cfg.attack.kwargs)
        self.eval_attacks: dict[str, Attack] = {"clean": NoAttack()}
        if cfg.eval_attack.name != "none":
            self.eval_attacks["robust"] = create_attack(cfg.eval_attack.name, **cfg.eval_attack.kwargs)
        self.optimizer = build_optimizer(self.model, t)
        n_train = len(self.data.train)
        self.steps_per_epoch = max(1, n_train // t.batch_size) if n_train >= t.batch_size else 1
        updates = self.steps_per_epoch * self.method.updates_per_batch
        multiplier = lr_multiplier(
            t.schedule,
            self.epochs_total,
            updates,
            t.milestones,
            t.lr_gamma,
            t.warmup_epochs,
            t.cycle_peak,
            budget_epochs=t.epochs,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, multiplier)
        self.precision = Precision(t.amp, self.device)
        # A fixed, un-augmented training batch for methods that watch their own robustness (Fast).
        self.probe = next(batches(self.data.train, t.batch_size))
        self.select_metric = selection_metric(t, self.method.adversarial)
        self._init_progress()

    def _collect_hooks(self) -> list[TrainingHooks]:
        """The trial's parts, in the order the loop calls them: a differentiable search's architecture
        step (on its share of the training split; the weights train on the rest from then on), the
        method, the model when it has hooks (a one-shot model), the screens of the initial weights."""
        cfg = self.cfg
        self.arch_step: ArchitectureStep | None
        self.arch_step, train = architecture_step(
            self.model,
            self.method,
            self.data.train,
            cfg.arch_step,
            model_name=cfg.model.name,
            batch_size=cfg.train.batch_size,
            augment=self.data.augment,
            split_seed=cfg.data.split_seed,
            seed=cfg.train.seed,
        )
        self.data = dataclasses.replace(self.data, train=train)
        model = [self.model] if isinstance(self.model, TrainingHooks) else []
        step = [self.arch_step] if self.arch_step is not None else []
        return [*step, self.method, *model, *screens(cfg.screen, cfg.eval.batch_size)]

    def _init_progress(self) -> None:
        """Where training stands: epoch, best epoch, history and cost (all kept in the trial state)."""
        # Why training ended before epochs_total (Fast's catastrophic-overfitting stop), else None.
        self.stopped: str | None = None
        self.epoch = 0
        self.best: dict[str, Any] = {"epoch": -1, "score": -1.0, "robust_acc": -1.0, "clean_acc": -1.0}
        self.best_state: dict[str, Any] | None = None
        # The last epoch's metrics (a trial restored after its final epoch reports them again with the
        # test numbers) and every epoch's (the final report carries them, so rows whose report was lost
        # when a driver died can still be recorded).
        self.last_metrics: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        # Attack forward-backward passes per example, summed; wall seconds of earlier runs (restarts).
        self.cost: dict[str, int] = dict.fromkeys(COST_KEYS, 0)
        self.elapsed = 0.0
        # The screens' numbers (cfg.screen) once they ran; {} before, or without a screen.
        self.screened: dict[str, Any] = {}

    # ------------------------------------------------------------------ screen

    @property
    def needs_screen(self) -> bool:
        return any(part.screens for part in self.hooks) and not self.screened

    def screen(self) -> dict[str, Any]:
        """Screen the initial (inherited) weights before the first epoch (each part that screens);
        their numbers are kept (``screened``: in the trial state and the final row), and a screen that
        rejects the weights stops the trial here (``stopped``)."""
        found: dict[str, Any] = {}
        for part in self.hooks:
            if part.screens:
                out = part.screen(self)
                # Its attack's passes count as validation cost (per example, summed).
                self.cost["total_val_attack_passes"] += int(out.pop("val_attack_passes", 0))
                stop = out.pop("stop", None)
                if stop and self.stopped is None:
                    self.stopped = str(stop)
                found.update(out)
        self.screened = found
        return dict(found)

    # ------------------------------------------------------------------ training

    def train_epoch(self) -> dict[str, float]:
        t = self.cfg.train
        self.model.train()
        start = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        drop_last = len(self.data.train) >= t.batch_size
        for x, y in batches(
            self.data.train,
            t.batch_size,
            shuffle=True,
            generator=self.generator,
            augment=self.data.augment,
            drop_last=drop_last,
        ):
            for part in self.hooks:  # (an architecture step, a one-shot model's draw of this batch's net)
                part.before_batch(self)
            with self.precision.autocast():
                loss, logits = self.method.train_batch(
                    self.model, x, y, self.train_attack, functools.partial(self._update, y=y)
                )
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        return {
            "train_loss": loss_sum / max(1, seen),
            "train_acc": correct / max(1, seen),
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_seconds": time.perf_counter() - start,
            "train_examples": seen,
            "train_attack_passes": seen * self.method.attack_passes(self.train_attack),
        }

    def _update(self, loss: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """One optimiser step on ``loss`` (tune_robust.training.precision: backward outside autocast,
        fp16 loss scaling, clipping), then the LR schedule's step and the parts' ``after_weight_step``.

        A model with an auxiliary head (DARTS ``auxiliary=true``) leaves the auxiliary logits of its last
        train-mode forward pass in ``aux_logits``; their CE, weighted by ``train.aux_weight``, is added.
        """
        t = self.cfg.train
        aux = getattr(self.model, "aux_logits", None)
        if aux is not None:
            setattr(self.model, "aux_logits", None)  # noqa: B010  (nn.Module's attribute typing)
            if y is not None and t.aux_weight > 0:
                loss = loss + t.aux_weight * nn.functional.cross_entropy(aux.float(), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}) at epoch {self.epoch + 1}; "
                f"lower train.lr (now {t.lr}) or add train.grad_clip"
            )
        self.precision.step(self.optimizer, loss, t.grad_clip)
        self.scheduler.step()
        for part in self.hooks:
            part.after_weight_step(self)

    def run_epoch(self) -> dict[str, Any]:
        """Train one epoch, evaluate on the validation split, update the best checkpoint."""
        metrics: dict[str, Any] = self.train_epoch()
        self.epoch += 1
        metrics["epoch"] = self.epoch
        self._after_epoch(metrics)
        t = self.cfg.train
        if self.epoch % t.eval_every == 0 or self.finished:
            self._validate(metrics)
        metrics["best_epoch"] = self.best["epoch"]
        metrics["best_val_robust_acc"] = self.best["robust_acc"]
        for key in COST_KEYS:  # running totals, so a trial a scheduler stops still carries its cost
            self.cost[key] += metrics.get(key.removeprefix("total_"), 0)
        metrics.update(self.cost)
        self.last_metrics = dict(metrics)
        self.history.append(dict(metrics))
        return metrics

    def _after_epoch(self, metrics: dict[str, Any]) -> None:
        """The parts' epoch ends: their metrics, extra training cost and a reason to stop (the first)."""
        for part in self.hooks:
            extra = part.after_epoch(self)
            metrics["train_attack_passes"] += int(extra.pop("attack_passes", 0))
            stop = extra.pop("stop", None)
            metrics.update(extra)
            if stop and self.stopped is None:
                self.stopped = str(stop)
                metrics["stopped_early"] = self.stopped

    def _validate(self, metrics: dict[str, Any]) -> None:
        """Clean and robust accuracy on the validation split (the test split without one); the best
        epoch's weights are kept."""
        t = self.cfg.train
        start = time.perf_counter()
        split = self.data.val if len(self.data.val) else self.data.test
        self._for_evaluation(self.model)
        res = evaluate(self.model, split, self.eval_attacks, limit=t.eval_limit, seed=self.cfg.eval.seed)
        metrics["val_split"] = "val" if len(self.data.val) else "test"
        metrics["val_clean_acc"] = res["clean_acc"]
        metrics["val_robust_acc"] = res["worst_acc"]
        metrics["eval_seconds"] = time.perf_counter() - start
        n_val = min(len(split), t.eval_limit) if t.eval_limit else len(split)
        metrics["val_attack_passes"] = n_val * sum(a.gradient_steps for a in self.eval_attacks.values())
        score = metrics[self.select_metric] if self.select_metric else self.epoch
        if not math.isnan(score) and score > self.best["score"]:
            self.best = {
                "epoch": self.epoch,
                "score": score,
                "robust_acc": metrics["val_robust_acc"],
                "clean_acc": metrics["val_clean_acc"],
            }
            self.best_state = state_copy(self.model)

    def _for_evaluation(self, model: nn.Module) -> None:
        for part in self.hooks:
            part.for_evaluation(model)

    @property
    def finished(self) -> bool:
        return self.epoch >= self.epochs_total or self.stopped is not None

    def final_metrics(self) -> dict[str, Any]:
        """Test-set accuracy of the last and the best (by validation robust accuracy) weights.

        Robust accuracy counts an example only if it is classified correctly both clean and under the
        attack (the per-example worst case, as AutoAttack and RobustBench count), so robust <= clean.
        """
        out: dict[str, Any] = {}
        final = evaluate(self.model, self.data.test, self.eval_attacks, seed=self.cfg.eval.seed)
        out["final_clean_acc"] = final["clean_acc"]
        out["final_robust_acc"] = final["worst_acc"]
        if self.best_state is None or self.best["epoch"] == self.epoch:
            best = final  # the last epoch is the best one: same weights, same numbers
        else:
            best = evaluate(self.best_model(), self.data.test, self.eval_attacks, seed=self.cfg.eval.seed)
        out["best_clean_acc"] = best["clean_acc"]
        out["best_robust_acc"] = best["worst_acc"]
        out["test_examples"] = len(self.data.test)
        out.update(self.screened)
        for part in self.hooks:
            out.update(part.final_columns(self))
        # (the best weights' architecture, as arch.json holds it)
        record = self.arch_record(self.best_model())
        if record is not None:  # a searched architecture: its record and statistics are columns
            out["arch"] = json.dumps(record, sort_keys=True)
            out.update(record["stats"])
        # The full suite (all eval.attacks, stability, Lipschitz, sanity flags, curves) on the best model.
        suite = self._suite(self.best_model())
        out.update(suite.metrics)
        out["eval_tables"] = suite.tables
        if self.cfg.eval.last:  # and on the last weights (the same numbers when the last is the best)
            last = suite if best is final else self._suite(self.model)
            out.update({f"last_{k}": v for k, v in last.metrics.items() if k.startswith(LAST_PREFIXES)})
        return out

    def _suite(self, model: nn.Module) -> Any:
        return run_suite(model, self.data.test, self.cfg.eval, self.data.num_classes, self.cfg.data.dataset)

    def arch_record(self, model: nn.Module) -> dict[str, Any] | None:
        """The model's architecture record: the one a part searched, with what the parts add for the
        training that follows the search (RNAS-CL: the tutor map, from the method's current state: the
        last epoch's, which is the best one under the searches' select_by=last); else the model's own
        record (None: it has none)."""
        for part in self.hooks:
            record = part.searched_record(model)
            if record is not None:
                for other in self.hooks:
                    record.update(other.record_sections())
                return record
        return record_of(model)

    def best_model(self) -> nn.Module:
        """The best weights in the form they are evaluated in (the trial's own model while that is
        it; else a copy, so training is not disturbed)."""
        if self.best_state is None and not any(part.alters_for_evaluation() for part in self.hooks):
            return self.model
        model = copy.deepcopy(self.model)
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        self._for_evaluation(model)
        return model

    # ------------------------------------------------------------------ trial state

    def state_dict(self) -> dict[str, Any]:
        state = {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": trial_state.rng_state(self.device, self.generator),
            "best": self.best,
            "best_state": self.best_state,
            "last_metrics": self.last_metrics,
            "history": self.history,
            "stopped": self.stopped,
            "scaler": self.precision.scaler.state_dict(),
            "cost": self.cost,
            "elapsed": self.elapsed,
            "screened": self.screened,
        }
        trial_state.add_part_states(state, self.hooks)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        trial_state.set_rng_state(state["rng"], self.device, self.generator)
        self.best = {"score": state["best"].get("robust_acc", -1.0), **state["best"]}
        self.best_state = state["best_state"]
        self.last_metrics = dict(state.get("last_metrics", {}))
        self.history = list(state.get("history", []))
        self.stopped = state.get("stopped")
        if state.get("scaler"):
            self.precision.scaler.load_state_dict(state["scaler"])
        self.cost = dict.fromkeys(COST_KEYS, 0) | dict(state.get("cost", {}))
        self.elapsed = float(state.get("elapsed", 0.0))
        self.screened = dict(state.get("screened", {}))
        trial_state.load_part_states(state, self.hooks)

    def save(self, directory: str | Path) -> None:
        """Write the trial state (tune_robust.training.state): the full training state, the best model
        with what built it, the trial config and the architecture record."""
        state = self.state_dict()
        model = self.best_model()
        blob = {
            "arch": self.cfg.model.name,
            "kwargs": self.cfg.model.kwargs,
            "num_classes": self.data.num_classes,
            "in_channels": int(self.data.train.x.shape[1]),
            "state_dict": model.state_dict(),
            "epoch": self.best["epoch"],
        }
        trial_state.write_state(directory, state, blob, self.cfg.to_dict(), self.arch_record(model))

    def load(self, directory: str | Path) -> str | None:
        """Restore the state saved in ``directory``; None, or a warning when there is none to read
        (missing, or damaged and set aside: the trial starts again from epoch 0, this Trainer still
        being fresh; the other trials are not affected)."""
        state, warning = trial_state.read_state(directory, self.device)
        if state is not None:
            self.load_state_dict(state)
        return warning
