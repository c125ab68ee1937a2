"""MART (Wang et al. 2020): boosted CE on PGD examples plus beta * KL(clean || adversarial) weighted by
(1 - clean probability of the true class), so misclassified examples get more of the regulariser.
The PGD examples come from the configured training attack (BatchNorm in eval mode while crafting)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tune_robust.attacks import Attack
from tune_robust.errors import ConfigError
from tune_robust.training._base import Method, craft_in_eval_mode, register_method


def mart_loss(
    clean_logits: torch.Tensor, adv_logits: torch.Tensor, y: torch.Tensor, beta: float
) -> torch.Tensor:
    adv_probs = nn.functional.softmax(adv_logits.float(), 1)
    # Boosted CE: CE on the adversarial example plus -log(1 - p_j), j the most likely wrong class.
    top2 = adv_probs.topk(2, dim=1).indices
    wrong = torch.where(top2[:, 0] == y, top2[:, 1], top2[:, 0])
    bce = nn.functional.cross_entropy(adv_logits.float(), y) + nn.functional.nll_loss(
        torch.log(1.0001 - adv_probs + 1e-12), wrong
    )
    clean_probs = nn.functional.softmax(clean_logits.float(), 1)
    true_probs = clean_probs.gather(1, y[:, None]).squeeze(1)
    kl = (torch.xlogy(clean_probs, clean_probs) - clean_probs * torch.log(adv_probs + 1e-12)).sum(1)
    return bce + beta * (kl * (1.0000001 - true_probs)).mean()


@register_method("mart")
@dataclass
class MART(Method):
    # Weight of the misclassification-aware KL term (the paper's CIFAR-10 setting is 6).
    beta: float = 6.0

    def __post_init__(self) -> None:
        if not self.beta >= 0:
            raise ConfigError(f"method 'mart' option beta must be >= 0, got {self.beta}")

    def check_attack(self, attack: Attack) -> None:
        if attack.name == "none":
            raise ConfigError("method 'mart' needs a training attack (attack.name=pgd)")

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack
    ) -> tuple[torch.Tensor, torch.Tensor]:
        adv = craft_in_eval_mode(model, attack, x, y)
        clean_logits = model(x)
        adv_logits = model(adv)
        return mart_loss(clean_logits, adv_logits, y, self.beta), adv_logits
