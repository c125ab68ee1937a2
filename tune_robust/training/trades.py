"""TRADES (Zhang et al. 2019): CE on clean inputs + beta * KL(clean || adversarial), where the
adversarial input maximises that KL by PGD (eps, step and steps from the ``pgd`` training attack,
started at x + 0.001 * N(0, 1), BatchNorm in eval mode while crafting, as the reference code does)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tune_robust.attacks import Attack
from tune_robust.errors import ConfigError
from tune_robust.training._base import Method, register_method


def pgd_attack_settings(attack: Attack, method: str) -> tuple[float, float, int]:
    """(eps, step, steps) of an L-inf ``pgd`` training attack, or a ConfigError."""
    if attack.name != "pgd" or getattr(attack, "norm", "linf") != "linf":
        raise ConfigError(
            f"method {method!r} takes eps, step and steps of its inner maximisation from an L-inf "
            f"attack.name=pgd; got attack {attack.name!r}"
        )
    return float(attack.eps), float(attack.step), int(attack.steps)  # type: ignore[attr-defined]


def kl_rows(adv_logits: torch.Tensor, clean_logits: torch.Tensor) -> torch.Tensor:
    """Per-example KL(softmax(clean) || softmax(adv))."""
    return nn.functional.kl_div(
        nn.functional.log_softmax(adv_logits.float(), 1),
        nn.functional.softmax(clean_logits.float(), 1),
        reduction="none",
    ).sum(1)


def trades_adversary(model: nn.Module, x: torch.Tensor, eps: float, step: float, steps: int) -> torch.Tensor:
    """Maximise KL(f(x) || f(x')) over the eps-ball (L-inf) intersected with [0, 1]; eval mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            clean = model(x).detach()
        adv = (x + 0.001 * torch.randn_like(x)).clamp(x - eps, x + eps).clamp(0, 1).detach()
        for _ in range(steps):
            adv.requires_grad_(True)
            with torch.enable_grad():
                loss = kl_rows(model(adv), clean).sum()
                (grad,) = torch.autograd.grad(loss, adv)
            adv = adv.detach() + step * grad.sign()
            adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1).detach()
        return adv
    finally:
        model.train(was_training)


@register_method("trades")
@dataclass
class TRADES(Method):
    # Weight of the robustness (KL) term; 6 is the paper's CIFAR-10 setting (1/lambda).
    beta: float = 6.0

    def __post_init__(self) -> None:
        if not self.beta >= 0:
            raise ConfigError(f"method 'trades' option beta must be >= 0, got {self.beta}")

    def check_attack(self, attack: Attack) -> None:
        pgd_attack_settings(attack, self.name)

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack
    ) -> tuple[torch.Tensor, torch.Tensor]:
        eps, step, steps = pgd_attack_settings(attack, self.name)
        adv = trades_adversary(model, x, eps, step, steps)
        clean_logits = model(x)
        adv_logits = model(adv)
        natural = nn.functional.cross_entropy(clean_logits, y)
        robust = kl_rows(adv_logits, clean_logits).mean()
        return natural + self.beta * robust, clean_logits
