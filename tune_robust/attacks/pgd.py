"""L-inf PGD (Madry et al. 2018) with random start and restarts keeping the per-example worst case."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tune_robust.attacks._base import Attack, check_eps, input_grad, register_attack
from tune_robust.errors import ConfigError


@register_attack("pgd")
@dataclass(frozen=True)
class PGD(Attack):
    eps: float = 8 / 255
    step: float = 2 / 255
    steps: int = 10
    # Independent random starts; an example counts as broken if any restart breaks it.
    restarts: int = 1
    random_start: bool = True

    def __post_init__(self) -> None:
        check_eps(self.eps)
        check_eps(self.step, "step")
        if self.steps < 1:
            raise ConfigError(f"attack steps must be >= 1, got {self.steps}")
        if self.restarts < 1:
            raise ConfigError(f"attack restarts must be >= 1, got {self.restarts}")

    @property
    def gradient_steps(self) -> int:
        return self.steps * self.restarts

    def describe(self) -> str:
        r = f"x{self.restarts}" if self.restarts > 1 else ""
        return f"pgd{self.steps}{r}-linf-eps{self.eps:.4g}-step{self.step:.4g}"

    def _run(self, model: nn.Module, x0: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        adv = x0
        if self.random_start:
            adv = (x0 + torch.empty_like(x0).uniform_(-self.eps, self.eps)).clamp_(0, 1)
        lo, hi = (x0 - self.eps).clamp_(min=0), (x0 + self.eps).clamp_(max=1)
        for _ in range(self.steps):
            grad, _ = input_grad(model, adv, y)
            adv = torch.min(torch.max(adv + self.step * grad.sign(), lo), hi).detach()
        return adv

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x0 = x.detach()
        if self.restarts == 1:
            return self._run(model, x0, y)
        best = x0.clone()
        best_loss = torch.full_like(y, -float("inf"), dtype=torch.float32)
        fooled = torch.zeros_like(y, dtype=torch.bool)
        for _ in range(self.restarts):
            adv = self._run(model, x0, y)
            with torch.no_grad():
                logits = model(adv)
                loss = nn.functional.cross_entropy(logits.float(), y, reduction="none")
                now_fooled = logits.argmax(1) != y
            # Keep a breaking example once found; otherwise keep the highest-loss one.
            take = ~fooled & (now_fooled | (loss > best_loss))
            best[take] = adv[take]
            best_loss = torch.where(take, loss, best_loss)
            fooled |= now_fooled
        return best
