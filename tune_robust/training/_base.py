"""Training-method registry: a method turns a batch into the loss the optimiser minimises."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tune_robust.attacks import Attack
from tune_robust.registry import Registry

# (model in train mode, x, y, attack) -> (loss, logits the loss was computed on)
TrainStep = Callable[[nn.Module, torch.Tensor, torch.Tensor, Attack], tuple[torch.Tensor, torch.Tensor]]
METHODS: Registry[TrainStep] = Registry("training method")


def register_method(name: str) -> Callable[[TrainStep], TrainStep]:
    return METHODS.register(name)


def craft_in_eval_mode(model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Craft training examples with BatchNorm in eval mode (as the TRADES/MART reference code does), so
    the attack's extra forward passes do not move the running statistics; then return to train mode."""
    model.eval()
    try:
        return attack.perturb(model, x, y)
    finally:
        model.train()
