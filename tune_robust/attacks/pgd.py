"""PGD (Madry et al. 2018) under L-inf or L2, with random start, CE or CW-margin loss, and restarts
keeping the per-example worst case."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from tune_robust.attacks._base import (
    Attack,
    Loss,
    Norm,
    ascent_step,
    attack_loss,
    check_eps,
    check_steps,
    input_grad,
    project,
    random_start,
    register_attack,
)
from tune_robust.errors import ConfigError


def keep_worst(
    model: nn.Module,
    x0: torch.Tensor,
    y: torch.Tensor,
    candidates: int,
    run: Callable[[torch.Tensor], torch.Tensor],
    loss: str,
) -> torch.Tensor:
    """Run ``run(x0)`` ``candidates`` times; per example keep the first candidate that is misclassified,
    otherwise the one with the highest loss."""
    best = x0.clone()
    best_loss = torch.full(y.shape, -float("inf"), device=y.device)
    fooled = torch.zeros_like(y, dtype=torch.bool)
    for _ in range(candidates):
        adv = run(x0)
        with torch.no_grad():
            logits = model(adv)
            value = attack_loss(logits, y, loss)
            now_fooled = logits.argmax(1) != y
        take = ~fooled & (now_fooled | (value > best_loss))
        best[take] = adv[take]
        best_loss = torch.where(take, value, best_loss)
        fooled |= now_fooled
    return best


@register_attack("pgd")
@dataclass(frozen=True)
class PGD(Attack):
    lipschitz_preference = 2
    eps: float = 8 / 255
    step: float = 2 / 255
    steps: int = 10
    # Independent random starts; an example counts as broken if any restart breaks it.
    restarts: int = 1
    random_start: bool = True
    # The random start: "uniform" in the eps-ball (Madry et al.), or "normal": x + step * N(0, 1)
    # (Huang et al.'s released SAT code; not projected, since step * N(0, 1) rarely leaves the ball).
    start: Literal["uniform", "normal"] = "uniform"
    # Clip the random start to [0, 1] before the first gradient (Madry et al.'s, TRADES' and
    # AutoAttack's PGD do; false takes the first gradient at the unclipped start, as Fast AT's FGSM).
    clip_start: bool = True
    norm: Norm = "linf"
    # "ce": cross-entropy; "margin": the CW loss max_{j!=y} z_j - z_y (CW-inf when optimised by PGD).
    loss: Loss = "ce"
    # Stop moving an example once the model misclassifies it (the step is taken only where the current
    # iterate is still classified correctly): Wong et al.'s released MNIST PGD training. A training
    # option; an evaluation attack leaves it off, since the last iterate is then not the loss maximiser.
    freeze_fooled: bool = False

    def __post_init__(self) -> None:
        check_eps(self.eps)
        check_eps(self.step, "step")
        check_steps(self.steps)
        check_steps(self.restarts, "restarts")
        if self.start not in ("uniform", "normal"):
            raise ConfigError(f"attack pgd: start must be 'uniform' or 'normal', got {self.start!r}")

    @property
    def gradient_steps(self) -> int:
        return self.steps * self.restarts

    def describe(self) -> str:
        r = f"x{self.restarts}" if self.restarts > 1 else ""
        loss = "" if self.loss == "ce" else f"-{self.loss}"
        return f"{self.name}{self.steps}{r}-{self.norm}-eps{self.eps:.4g}-step{self.step:.4g}{loss}"

    def _run(self, model: nn.Module, x0: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        adv = x0
        if self.random_start and self.start == "normal":
            adv = x0 + self.step * torch.randn_like(x0)
            adv = adv.clamp(0, 1) if self.clip_start else adv
        elif self.random_start:
            adv = random_start(x0, self.eps, self.norm, clip=self.clip_start)
        if self.norm == "linf":  # the box of the eps-ball and [0, 1] is fixed: compute it once
            lo, hi = (x0 - self.eps).clamp_(min=0), (x0 + self.eps).clamp_(max=1)
            for _ in range(self.steps):
                grad, logits = input_grad(model, adv, y, self.loss)
                moved = torch.min(torch.max(grad.sign_().mul_(self.step).add_(adv), lo), hi)
                adv = self._keep_fooled(adv, moved, logits, y)
            return adv.detach()
        for _ in range(self.steps):
            grad, logits = input_grad(model, adv, y, self.loss)
            moved = project(ascent_step(adv, grad, self.step, self.norm), x0, self.eps, self.norm)
            adv = self._keep_fooled(adv, moved.detach(), logits, y)
        return adv

    def _keep_fooled(
        self, adv: torch.Tensor, moved: torch.Tensor, logits: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """``moved``, except (with ``freeze_fooled``) where ``adv`` already fools the model."""
        if not self.freeze_fooled:
            return moved
        still = (logits.argmax(1) == y).view(-1, *([1] * (adv.ndim - 1)))
        return torch.where(still, moved, adv)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x0 = x.detach()
        if self.restarts == 1:
            return self._run(model, x0, y)
        return keep_worst(model, x0, y, self.restarts, lambda s: self._run(model, s, y), self.loss)
