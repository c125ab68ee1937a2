"""Standard (non-adversarial) training: cross-entropy on clean inputs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tune_robust.attacks import Attack
from tune_robust.training._base import Method, register_method


@register_method("standard")
@dataclass
class Standard(Method):
    adversarial = False

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(x)
        return nn.functional.cross_entropy(logits, y), logits
