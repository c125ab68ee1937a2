"""The one epoch loop every training method shares, with full-state checkpoints.

``Trainer`` owns data, model, optimiser, LR schedule and RNG state for one trial. ``run_epoch`` trains
one epoch, evaluates on the held-out validation split (clean + the evaluation attack) and tracks the best
epoch by robust accuracy. ``save``/``load`` round-trip everything needed to continue a trial exactly.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tune_robust.attacks import Attack, NoAttack, create_attack
from tune_robust.config import TrainConfig, TrialConfig
from tune_robust.data import TrialData, batches, prepare_data
from tune_robust.errors import ConfigError
from tune_robust.evaluation import evaluate
from tune_robust.evaluation.fsp import fsp_distance
from tune_robust.evaluation.suite import run_suite
from tune_robust.models import count_params, create_model
from tune_robust.models.checkpoint import MODEL_FILE, load_checkpoint
from tune_robust.models.oneshot import Supernet, inherit, is_sampling, record_of
from tune_robust.training._base import create_method, state_copy
from tune_robust.training.arch_step import ArchitectureStep, split_for_search
from tune_robust.training.schedule import lr_multiplier

# Suite columns repeated for the last epoch's weights when eval.last is on.
LAST_PREFIXES = ("test_", "stability_", "lipschitz_", "sanity_", "suspect_gradient_masking")

STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"
# The architecture record of a searched model (tune_robust.models.oneshot.arch_record).
ARCH_FILE = "arch.json"


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _damaged_file(path: Path, e: Exception) -> bool:
    """Whether ``torch.load`` failed on the file's bytes (truncated, overwritten), not on the machine
    (out of memory, a storage I/O error): a parse error, or a zip archive (torch's format) that does
    not read back whole."""
    import pickle
    import zipfile

    if isinstance(e, (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, UnicodeDecodeError)):
        return True
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is not None  # the name of a member whose CRC is wrong
    except zipfile.BadZipFile:
        return True
    except OSError:
        return False


def has_state(directory: str | Path) -> bool:
    return (Path(directory) / STATE_FILE).exists()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_amp(amp: str, device: torch.device) -> None:
    """bf16 autocast runs on CUDA and on CPUs with native bf16 kernels; fp16 (loss scaling) on CUDA."""
    if amp == "off" or device.type == "cuda":
        return
    if amp == "fp16" or device.type != "cpu":
        raise ConfigError(f"train.amp={amp} needs a CUDA device; this trial runs on {device}")
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        raise ConfigError(
            "train.amp=bf16 on a CPU needs native bf16 kernels (AVX512-BF16 or AMX), which this CPU lacks "
            "(emulated bf16 is slower than fp32): use train.amp=off"
        )


def load_model_file(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild a model saved by ``Trainer.save`` (``model.pt``: best weights plus what built them)."""
    return load_checkpoint(path, device)


# Cumulative cost reported with every epoch (and so in every trial row).
COST_KEYS = ("total_train_attack_passes", "total_val_attack_passes")


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
    if "init" in cfg.upstream:  # multi-stage sweeps (or a published model) give the first weights
        source = load_checkpoint(
            cfg.upstream["init"],
            device,
            arch=cfg.model.name,
            model_kwargs=cfg.model.kwargs,
            num_classes=data.num_classes,
            in_channels=int(data.train.x.shape[1]),
        )
        if isinstance(source, Supernet):  # a sampled sub-network inherits the supernet's weights
            inherit(source, model)
        else:
            model.load_state_dict(source.state_dict())
    return model


def build_optimizer(model: nn.Module, t: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or Adam; ``train.exclude_norm_bias_decay``: BN affine
    parameters and biases get no weight decay. A supernet's architecture parameters are not its
    weights (the architecture step trains them)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    params = model.weight_parameters() if isinstance(model, Supernet) else list(model.parameters())
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
        self.arch_step = self._architecture_step()
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
        check_amp(t.amp, self.device)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.amp)
        # Loss scaling for fp16 only; with enabled=False every call passes straight through.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=t.amp == "fp16")
        # A fixed, un-augmented training batch for methods that watch their own robustness (Fast).
        self.probe = next(batches(self.data.train, t.batch_size))
        self.select_metric = selection_metric(t, self.method.adversarial)
        self._init_progress()

    def _architecture_step(self) -> ArchitectureStep | None:
        """A differentiable search's architecture step (``search``), on its share of the training split
        (the weights train on the rest from then on); None for every other model."""
        s = self.cfg.search
        params = self.model.arch_parameters() if isinstance(self.model, Supernet) else []
        params = params + self.method.arch_parameters()
        searched = bool(params)
        if not searched and s.arch_fraction == 0:
            return None
        if searched and s.arch_fraction == 0:
            raise ConfigError(
                f"model {self.cfg.model.name!r} searches its architecture: set search.arch_fraction (the "
                f"share of the training split for architecture steps; RACL / PC-DARTS: 0.5)"
            )
        if not isinstance(self.model, Supernet):
            raise ConfigError(
                f"search.arch_fraction={s.arch_fraction} searches an architecture, but model "
                f"{self.cfg.model.name!r} is no supernet; set search.arch_fraction=0"
            )
        weights, arch = split_for_search(self.data.train, s.arch_fraction, self.cfg.data.split_seed)
        self.data = dataclasses.replace(self.data, train=weights)
        return ArchitectureStep(
            self.model,
            arch,
            params,
            lr=s.arch_lr,
            betas=(float(s.arch_betas[0]), float(s.arch_betas[1])),
            weight_decay=s.arch_weight_decay,
            warmup_epochs=s.arch_warmup_epochs,
            batch_size=self.cfg.train.batch_size,
            augment=self.data.augment,
            seed=self.cfg.train.seed,
        )

    def _init_progress(self) -> None:
        """Where training stands: epoch, best epoch, history and cost (all kept in checkpoints)."""
        # Why training ended before epochs_total (Fast's catastrophic-overfitting stop), else None.
        self.stopped: str | None = None
        self.epoch = 0
        self.best: dict[str, Any] = {"epoch": -1, "score": -1.0, "robust_acc": -1.0, "clean_acc": -1.0}
        self.best_state: dict[str, Any] | None = None
        # The last epoch's metrics, so a trial restored after its final epoch can report them again
        # together with the test numbers.
        self.last_metrics: dict[str, Any] = {}
        # Every epoch's metrics: a trial's final report carries them, so rows whose report was lost when
        # a driver died can still be recorded.
        self.history: list[dict[str, Any]] = []
        # Cost so far (attack forward-backward passes per example, summed) and wall seconds of earlier
        # runs of this trial (before a restart).
        self.cost: dict[str, int] = dict.fromkeys(COST_KEYS, 0)
        self.elapsed = 0.0
        # The screen's numbers (cfg.screen) once it ran; {} before, or without a screen.
        self.screened: dict[str, Any] = {}

    # ------------------------------------------------------------------ screen

    @property
    def needs_screen(self) -> bool:
        return self.cfg.screen.fsp and not self.screened

    def screen(self) -> dict[str, Any]:
        """Screen the initial (inherited) weights before the first epoch: each cell's FSP distance
        between clean and training-attack inputs (``fsp_cell_<i>``) and their mean over the last
        ``screen.fsp_cells`` cells (``fsp_distance``). Above ``screen.fsp_threshold`` the trial stops
        here (``stopped`` = "screened_out"): RobNet's cell-free search finetunes only the others."""
        sc = self.cfg.screen
        split = self.data.val if len(self.data.val) else self.data.train
        split = split.head(sc.fsp_examples)
        cells = fsp_distance(self.model, batches(split, self.cfg.eval.batch_size), self.train_attack)
        distance = sum(cells[-sc.fsp_cells :]) / sc.fsp_cells
        passed = sc.fsp_threshold is None or distance <= sc.fsp_threshold
        # Its attack's forward-backward passes count as validation cost (per example, summed).
        self.cost["total_val_attack_passes"] += len(split) * self.train_attack.gradient_steps
        self.screened = {
            **{f"fsp_cell_{i}": d for i, d in enumerate(cells)},
            "fsp_distance": distance,
            "fsp_examples": len(split),
            "screened_out": not passed,
        }
        if not passed:
            self.stopped = "screened_out"
        return dict(self.screened)

    # ------------------------------------------------------------------ training

    def train_epoch(self) -> dict[str, float]:
        t = self.cfg.train
        self.model.train()
        start = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        drop_last = len(self.data.train) >= t.batch_size
        searching = self.arch_step is not None and self.arch_step.active(self.epoch)
        for x, y in batches(
            self.data.train,
            t.batch_size,
            shuffle=True,
            generator=self.generator,
            augment=self.data.augment,
            drop_last=drop_last,
        ):
            if searching:  # a differentiable search: first the architecture, then the weights
                assert self.arch_step is not None
                self.arch_step.step(self.method, self.train_attack)
            if is_sampling(self.model):  # one-shot search: this batch's sub-network (attack and step)
                self.model.resample()
            with self._autocast():
                loss, logits = self.method.train_batch(
                    self.model, x, y, self.train_attack, functools.partial(self._update, y=y)
                )
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        arch = self.arch_step.epoch_metrics() if self.arch_step is not None else {}
        return {
            **arch,
            "train_loss": loss_sum / max(1, seen),
            "train_acc": correct / max(1, seen),
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_seconds": time.perf_counter() - start,
            "train_examples": seen,
            "train_attack_passes": seen * self.method.attack_passes(self.train_attack),
        }

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _update(self, loss: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """One optimiser step on ``loss`` (backward outside autocast, fp16 loss scaling, clipping).

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
        with torch.autocast(device_type=self.device.type, enabled=False):
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if t.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                # the optimiser's parameters only (a search's architecture parameters are not weights)
                weights = [p for group in self.optimizer.param_groups for p in group["params"]]
                nn.utils.clip_grad_norm_(weights, t.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.scheduler.step()

    def run_epoch(self) -> dict[str, Any]:
        """Train one epoch, evaluate on the validation split, update the best checkpoint."""
        metrics: dict[str, Any] = self.train_epoch()
        self.epoch += 1
        metrics["epoch"] = self.epoch
        extra = self.method.end_epoch(self.model, self.probe, self.train_attack)
        if isinstance(self.model, Supernet):
            self.model.end_epoch()
        metrics["train_attack_passes"] += int(extra.pop("attack_passes", 0))
        stop = extra.pop("stop", None)
        metrics.update(extra)
        if stop:
            self.stopped = str(stop)
            metrics["stopped_early"] = self.stopped
        t = self.cfg.train
        if self.epoch % t.eval_every == 0 or self.finished:
            start = time.perf_counter()
            split = self.data.val if len(self.data.val) else self.data.test
            if is_sampling(self.model):  # a supernet is validated on its one fixed probe sub-network
                self.model.use_probe()
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
        metrics["best_epoch"] = self.best["epoch"]
        metrics["best_val_robust_acc"] = self.best["robust_acc"]
        for key in COST_KEYS:  # running totals, so a trial a scheduler stops still carries its cost
            self.cost[key] += metrics.get(key.removeprefix("total_"), 0)
        metrics.update(self.cost)
        self.last_metrics = dict(metrics)
        self.history.append(dict(metrics))
        return metrics

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
        """The model's architecture record, with what the method adds for the training that follows a
        search (RNAS-CL: the tutor map, from the method's current state: the last epoch's, which is the
        best one under the searches' select_by=last)."""
        record = record_of(model)
        if record is not None and isinstance(model, Supernet):
            record.update(self.method.record())
        return record

    def best_model(self) -> nn.Module:
        if self.best_state is None and not is_sampling(self.model):
            return self.model
        model = copy.deepcopy(self.model)
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        if is_sampling(model):  # the supernet's fixed probe / median architecture, not a training draw
            model.use_probe()
        return model

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "generator": self.generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
            "best": self.best,
            "best_state": self.best_state,
            "last_metrics": self.last_metrics,
            "history": self.history,
            "method": self.method.state_dict(),
            "stopped": self.stopped,
            "scaler": self.scaler.state_dict(),
            "cost": self.cost,
            "elapsed": self.elapsed,
            "screened": self.screened,
            **({"arch_step": self.arch_step.state_dict()} if self.arch_step is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        self.generator.set_state(state["rng"]["generator"].cpu())
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), self.device)
        self.best = {"score": state["best"].get("robust_acc", -1.0), **state["best"]}
        self.best_state = state["best_state"]
        self.last_metrics = dict(state.get("last_metrics", {}))
        self.history = list(state.get("history", []))
        self.method.load_state_dict(state.get("method", {}))
        self.stopped = state.get("stopped")
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.cost = dict.fromkeys(COST_KEYS, 0) | dict(state.get("cost", {}))
        self.elapsed = float(state.get("elapsed", 0.0))
        self.screened = dict(state.get("screened", {}))
        if self.arch_step is not None and "arch_step" in state:
            self.arch_step.load_state_dict(state["arch_step"])

    def save(self, directory: str | Path) -> None:
        """Write the full training state, the best model (with what built it) and the trial config.

        Each file is written to a temporary name and renamed, so a crash mid-save leaves the previous
        complete file in place.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _atomic_torch_save(self.state_dict(), directory / STATE_FILE)
        model = self.best_model()
        _atomic_torch_save(
            {
                "arch": self.cfg.model.name,
                "kwargs": self.cfg.model.kwargs,
                "num_classes": self.data.num_classes,
                "in_channels": int(self.data.train.x.shape[1]),
                "state_dict": model.state_dict(),
                "epoch": self.best["epoch"],
            },
            directory / MODEL_FILE,
        )
        _atomic_write(directory / CONFIG_FILE, json.dumps(self.cfg.to_dict(), indent=1, default=str))
        record = self.arch_record(model)
        if record is not None:
            _atomic_write(directory / ARCH_FILE, json.dumps(record, indent=1))

    def load(self, directory: str | Path) -> str | None:
        """Restore the state saved in ``directory``; None, or a warning when the state file cannot be
        read (truncated or corrupt: our own writes are atomic, so this is damage from outside). Then
        the file is set aside as ``state.pt.corrupt`` and the trial starts again from epoch 0 (this
        Trainer is still fresh); the other trials are not affected."""
        path = Path(directory) / STATE_FILE
        if not path.exists():  # a restart after a damaged file was set aside, before the next save
            return f"resume: {path} is missing; the trial started again from epoch 0"
        try:
            state = torch.load(path, map_location=self.device, weights_only=False)
        except Exception as e:
            if not _damaged_file(path, e):
                raise  # e.g. out of memory or an I/O error of the storage: the file may be fine
            aside = path.with_name(f"{STATE_FILE}.corrupt")
            os.replace(path, aside)
            why = (str(e).splitlines() or [""])[0][:160]
            return (
                f"resume: {path} ({aside.stat().st_size:,} bytes) could not be read ({type(e).__name__}: "
                f"{why}); moved to {aside.name}, the trial started again from epoch 0"
            )
        self.load_state_dict(state)
        return None
