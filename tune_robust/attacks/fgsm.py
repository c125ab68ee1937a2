"""FGSM (Goodfellow et al. 2015): one signed-gradient step of size eps, optionally from a random start."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tune_robust.attacks._base import (
    Attack,
    Outcome,
    Starts,
    check_eps,
    input_grad,
    project,
    random_start,
    register_attack,
)


@register_attack("fgsm")
@dataclass(frozen=True)
class FGSM(Attack):
    lipschitz_preference = 1
    eps: float = 8 / 255
    # Step size; None means eps (the classic FGSM). Fast AT uses a random start and 1.25 * eps.
    step: float | None = None
    random_start: bool = False
    # Clip the random start to [0, 1] before the gradient is taken. Off by default: FGSM from a random
    # start is Wong et al.'s Fast AT, whose start is not clipped (only the final example is).
    clip_start: bool = False

    def __post_init__(self) -> None:
        check_eps(self.eps)
        if self.step is not None:
            check_eps(self.step, "step")

    @property
    def gradient_steps(self) -> int:
        return 1

    def describe(self) -> str:
        return f"fgsm-linf-eps{self.eps:.4g}"

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._craft(model, x, y, None)

    def evaluate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, starts: Starts | None, early_stop: bool
    ) -> Outcome:
        x_adv = self._craft(model, x, y, starts)
        with torch.no_grad():
            return Outcome(x_adv, model(x_adv).argmax(1) != y)

    def _craft(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, starts: Starts | None
    ) -> torch.Tensor:
        step = self.eps if self.step is None else self.step
        x0 = x.detach()
        start = x0
        if self.random_start:
            start = random_start(x0, self.eps, "linf", clip=self.clip_start, starts=starts)
        grad, _ = input_grad(model, start, y)
        adv = start + step * grad.sign()
        return project(adv, x0, self.eps, "linf").detach()
