"""PGD adversarial training (Madry et al. 2018; "SAT" in Huang et al.): minimise CE on PGD examples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from tune_robust.attacks import Attack
from tune_robust.errors import ConfigError
from tune_robust.training._base import Method, craft_in_eval_mode, register_method


@register_method("pgd_at")
@dataclass
class PGDAT(Method):
    # BatchNorm mode while the training attack runs: "eval" (Huang et al.'s, TRADES' and MART's code:
    # the attack's passes leave the running statistics alone) or "train" (RobNet's released code: the
    # attack's forward passes use and update batch statistics).
    craft_mode: Literal["eval", "train"] = "eval"

    def __post_init__(self) -> None:
        if self.craft_mode not in ("eval", "train"):
            raise ConfigError(
                f"method 'pgd_at' option craft_mode must be 'eval' or 'train', got {self.craft_mode!r}"
            )

    def check_attack(self, attack: Attack) -> None:
        if attack.name == "none":
            raise ConfigError(
                "method 'pgd_at' needs a training attack (attack.name=pgd); for clean "
                "training use method.name=standard"
            )

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x_adv = (
            craft_in_eval_mode(model, attack, x, y)
            if self.craft_mode == "eval"
            else attack.perturb(model, x, y)
        )
        logits = model(x_adv)
        return nn.functional.cross_entropy(logits, y), logits
