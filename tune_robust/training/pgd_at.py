"""PGD adversarial training (Madry et al. 2018; "SAT" in Huang et al.): minimise CE on PGD examples."""

from __future__ import annotations

import torch
from torch import nn

from tune_robust.attacks import Attack
from tune_robust.training._base import craft_in_eval_mode, register_method


@register_method("pgd_at")
def pgd_at_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack
) -> tuple[torch.Tensor, torch.Tensor]:
    x_adv = craft_in_eval_mode(model, attack, x, y)
    logits = model(x_adv)
    return nn.functional.cross_entropy(logits, y), logits
