"""The architecture step of a differentiable one-shot search (the ``arch_step`` config section).

A supernet with architecture parameters (``Supernet.arch_parameters``: RACL's log-normal mu and sigma)
is searched as PC-DARTS does it (Xu et al. 2020; DARTS first order): the training split is divided
once into a weight part and an architecture part (``arch_step.fraction``), and before every weight
step the architecture parameters take one Adam step on a batch drawn at random from the architecture
part, on the training method's architecture loss (clean cross-entropy unless the method says
otherwise) plus the supernet's own penalty (RACL: the ADMM terms of its Lipschitz constraint). The
optimiser's state and the batch generator are part of the trial state; the architecture parameters
and whatever the supernet keeps (RACL: the dual variable, power-iteration vectors) are in its
``state_dict``. The step is one of the trial's parts in the epoch loop (tune_robust.models.hooks): it
runs before each batch, reports per epoch and keeps its state under ``arch_step``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from tune_robust.attacks import Attack
from tune_robust.data import Split
from tune_robust.data.augment import random_crop_flip
from tune_robust.errors import ConfigError
from tune_robust.models.hooks import TrainingHooks, Trial
from tune_robust.models.oneshot import Supernet
from tune_robust.training._base import Method


class ArchStepOptions(Protocol):
    """The ``arch_step`` config section (tune_robust.config.ArchStepConfig)."""

    @property
    def fraction(self) -> float: ...

    @property
    def lr(self) -> float: ...

    @property
    def betas(self) -> tuple[float, float]: ...

    @property
    def weight_decay(self) -> float: ...

    @property
    def warmup_epochs(self) -> int: ...


def split_for_search(train: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """(weight part, architecture part): a fixed random ``fraction`` of ``train`` for the architecture
    (the same for every trial with the same seed, as PC-DARTS' first-half / second-half split)."""
    n = len(train)
    n_arch = round(n * fraction)
    if n_arch < 1 or n_arch >= n:
        raise ConfigError(
            f"arch_step.fraction={fraction} of {n} training examples leaves an empty part; change it "
            f"or data.train_limit"
        )
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(n)).to(train.y.device)
    weight, arch = perm[n_arch:].sort().values, perm[:n_arch].sort().values
    return Split(train.x[weight], train.y[weight]), Split(train.x[arch], train.y[arch])


class ArchitectureStep(TrainingHooks):
    """One architecture update per weight batch, after ``warmup_epochs`` weight-only epochs."""

    state_key: ClassVar[str] = "arch_step"

    def __init__(
        self,
        model: Supernet,
        split: Split,
        params: list[torch.nn.Parameter],
        *,
        method: Method,
        lr: float,
        betas: tuple[float, float],
        weight_decay: float,
        warmup_epochs: int,
        batch_size: int,
        augment: str,
        seed: int,
    ) -> None:
        if not params:
            raise ConfigError(
                "arch_step.fraction > 0 but the model has no architecture parameters; set "
                "arch_step.fraction=0"
            )
        self.model = model
        self.method = method
        self.split = split
        self.warmup_epochs = warmup_epochs
        self.batch_size = min(batch_size, len(split))
        self.augment = augment
        self.optimizer = torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)
        self.generator = torch.Generator(device=split.y.device)
        self.generator.manual_seed(seed + 7919)  # apart from the weight batches' generator
        self._sums: dict[str, float] = {}
        self._steps = 0

    def active(self, epoch: int) -> bool:
        """Whether architecture steps run in the epoch after ``epoch`` completed ones."""
        return epoch >= self.warmup_epochs

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        order = torch.randperm(len(self.split), generator=self.generator, device=self.generator.device)
        idx = order[: self.batch_size].to(self.split.y.device)
        x = self.split.x[idx].float().div_(255.0)
        if self.augment == "crop_flip":
            x = random_crop_flip(x, self.generator)
        return x.contiguous(memory_format=torch.channels_last), self.split.y[idx]

    def step(self, method: Method, attack: Attack) -> None:
        """One update of the architecture parameters (the model is in train mode)."""
        x, y = self.batch()
        model = self.model
        model.resample()  # this step's own draw of a sampling supernet's architecture
        loss = method.arch_loss(model, x, y, attack)  # type: ignore[arg-type]
        penalty, numbers = model.arch_penalty()
        self.optimizer.zero_grad(set_to_none=True)
        (loss + penalty).backward()
        self.optimizer.step()
        model.after_arch_step()
        for key, value in {"search_arch_loss": float(loss.detach()), **numbers}.items():
            self._sums[key] = self._sums.get(key, 0.0) + value
        self._steps += 1

    def epoch_metrics(self) -> dict[str, float]:
        """Means over this epoch's architecture steps (then reset); {} in a warm-up epoch."""
        out = {k: v / self._steps for k, v in self._sums.items()} if self._steps else {}
        out["search_arch_steps"] = self._steps
        self._sums, self._steps = {}, 0
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"].cpu())

    # ------------------------------------------------------------------ the training loop's hooks

    def before_batch(self, trial: Trial) -> None:
        if self.active(trial.epoch):  # first the architecture, then the weights
            self.step(self.method, trial.train_attack)

    def after_epoch(self, trial: Trial) -> dict[str, Any]:
        return self.epoch_metrics()

    def trial_state(self) -> dict[str, Any]:
        return self.state_dict()

    def load_trial_state(self, state: Any) -> None:
        self.load_state_dict(state)


def architecture_step(
    model: nn.Module,
    method: Method,
    train: Split,
    options: ArchStepOptions,
    *,
    model_name: str,
    batch_size: int,
    augment: str,
    split_seed: int,
    seed: int,
) -> tuple[ArchitectureStep | None, Split]:
    """A differentiable search's architecture step on its share of the training split ``train``, and
    the share left to the weights; (None, ``train``) for a trial that searches no architecture. The
    architecture parameters: the model's (a supernet's), then the method's (RNAS-CL's tutor choice)."""
    parts = [part for part in (model, method) if isinstance(part, TrainingHooks)]
    params = [p for part in parts for p in part.arch_parameters()]
    if not params and options.fraction == 0:
        return None, train
    if options.fraction == 0:
        raise ConfigError(
            f"model {model_name!r} searches its architecture: set arch_step.fraction (the share of the "
            f"training split for architecture steps; RACL / PC-DARTS: 0.5)"
        )
    if not isinstance(model, Supernet):
        raise ConfigError(
            f"arch_step.fraction={options.fraction} searches an architecture, but model {model_name!r} "
            f"is no supernet; set arch_step.fraction=0"
        )
    weights, arch = split_for_search(train, options.fraction, split_seed)
    step = ArchitectureStep(
        model,
        arch,
        params,
        method=method,
        lr=options.lr,
        betas=(float(options.betas[0]), float(options.betas[1])),
        weight_decay=options.weight_decay,
        warmup_epochs=options.warmup_epochs,
        batch_size=batch_size,
        augment=augment,
        seed=seed,
    )
    return step, weights
