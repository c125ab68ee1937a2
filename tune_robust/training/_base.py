"""Training-method registry.

A method is a dataclass of its options (the ``method`` config section, validated on construction) that
turns one minibatch into parameter updates. Most methods only define ``loss`` (the default
``train_batch`` takes one optimiser step on it); methods that replay a batch (Free) or stop training
(Fast's catastrophic-overfitting check) override ``train_batch`` / ``end_epoch`` and keep their own state
in ``state_dict`` so a resumed trial continues exactly. A method is one of a trial's parts in the epoch
loop (tune_robust.models.hooks): its epoch end, state, architecture parameters and record sections reach
the loop through those hooks.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from tune_robust.attacks import Attack
from tune_robust.coerce import coerce_kwargs
from tune_robust.errors import ConfigError
from tune_robust.models.hooks import TrainingHooks, Trial
from tune_robust.registry import Registry

# Takes one optimiser step on a loss (zero_grad, backward, clip, step, LR schedule step).
Update = Callable[[torch.Tensor], None]


class Method(TrainingHooks):
    """Base class: subclasses are ``@dataclass`` and registered with ``@register_method``."""

    name: ClassVar[str] = ""
    state_key: ClassVar[str] = "method"
    # Whether the method perturbs its inputs (``standard`` does not: its attack section is ignored).
    adversarial: ClassVar[bool] = True

    def check_attack(self, attack: Attack) -> None:
        """Raise ConfigError if the configured training attack cannot serve this method."""

    def setup(self, model: nn.Module, upstream: Mapping[str, str], device: torch.device) -> None:
        """Before training: load what the method needs besides the model (RNAS-CL: its teacher, from
        the trial's upstream artifacts)."""

    def arch_parameters(self) -> list[nn.Parameter]:
        """Architecture parameters the method owns (RNAS-CL: the tutor choice), trained by a
        differentiable search's architecture step with the model's."""
        return []

    def record(self) -> dict[str, Any]:
        """Sections a derived architecture's record carries for the training that follows the search
        (RNAS-CL: ``{"method": {"tutors": ...}}``)."""
        return {}

    def epochs_to_run(self, epochs: int) -> int:
        """Passes over the data for a budget of ``epochs`` (Free divides by its replays)."""
        return epochs

    def attack_passes(self, attack: Attack) -> int:
        """Forward-backward passes on the input per training example and pass over the data (cost
        accounting; the optimiser's own backward is not counted)."""
        return attack.gradient_steps if self.adversarial else 0

    @property
    def updates_per_batch(self) -> int:
        """Optimiser steps per minibatch (the LR schedule counts these)."""
        return 1

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss to minimise, logits it was computed on); the model is in train mode."""
        raise NotImplementedError(f"training method {self.name!r} defines no loss")

    def arch_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack) -> torch.Tensor:
        """The loss a differentiable search's architecture step minimises (tune_robust.training.
        arch_step): clean cross-entropy, as PC-DARTS and RACL (Eqs. 4, 17) search; the weights are
        still trained by this method's own loss."""
        return nn.functional.cross_entropy(model(x), y)

    def train_batch(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, update: Update
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Train on one minibatch; return (loss, logits) detached, for the epoch's statistics."""
        loss, logits = self.loss(model, x, y, attack)
        update(loss)
        return loss.detach(), logits.detach()

    def end_epoch(
        self, model: nn.Module, probe: tuple[torch.Tensor, torch.Tensor], attack: Attack
    ) -> dict[str, Any]:
        """After each epoch: extra epoch metrics; ``{"stop": reason}`` ends training (the method has
        then restored the weights it wants kept)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def config(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}  # type: ignore[arg-type]

    # ------------------------------------------------------------------ the training loop's hooks

    def after_epoch(self, trial: Trial) -> dict[str, Any]:
        return dict(self.end_epoch(trial.model, trial.probe, trial.train_attack))

    def trial_state(self) -> dict[str, Any]:
        return self.state_dict()

    def load_trial_state(self, state: Any) -> None:
        self.load_state_dict(dict(state))

    def record_sections(self) -> dict[str, Any]:
        return self.record()


METHODS: Registry[type[Method]] = Registry("training method", plugin="methods")
_M = TypeVar("_M", bound=type[Method])


def register_method(name: str) -> Callable[[_M], _M]:
    return METHODS.register_class(name)


def create_method(name: str, **kwargs: Any) -> Method:
    cls = METHODS.get(name)
    return cls(**coerce_kwargs(cls, kwargs, where=f"method {name!r}"))


def linf_eps(attack: Attack, method: str) -> float:
    """The L-inf budget of a training attack, or a ConfigError saying what the method needs."""
    eps = getattr(attack, "eps", None)
    if eps is None or getattr(attack, "norm", "linf") != "linf":
        raise ConfigError(
            f"method {method!r} needs an L-inf training attack with an eps (attack.name=pgd or fgsm), "
            f"got attack {attack.name!r}"
        )
    return float(eps)


def craft_in_eval_mode(model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Craft training examples with BatchNorm in eval mode (as the TRADES/MART reference code does), so
    the attack's extra forward passes do not move the running statistics; then return to train mode."""
    model.eval()
    try:
        return attack.perturb(model, x, y)
    finally:
        model.train()


def state_copy(model: nn.Module) -> dict[str, Any]:
    """A detached copy of ``model.state_dict()`` (tensors cloned; extra state, e.g. a supernet's
    sampler, deep-copied)."""
    return {
        k: v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
        for k, v in model.state_dict().items()
    }
