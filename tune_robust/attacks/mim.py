"""MI-FGSM / MIM (Dong et al. 2018): iterative FGSM on an accumulated, L1-normalised gradient."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tune_robust.attacks._base import (
    Attack,
    Outcome,
    Starts,
    ascend,
    check_eps,
    check_steps,
    input_grad,
    project,
    register_attack,
)


@register_attack("mim")
@dataclass(frozen=True)
class MIM(Attack):
    lipschitz_preference = 1
    eps: float = 8 / 255
    # Step size; None means eps / steps (the paper's choice, so the last step can reach the boundary).
    step: float | None = None
    steps: int = 10
    # Momentum decay mu; 1.0 as in Dong et al.
    decay: float = 1.0

    def __post_init__(self) -> None:
        check_eps(self.eps)
        if self.step is not None:
            check_eps(self.step, "step")
        check_steps(self.steps)
        check_eps(self.decay, "decay")

    @property
    def gradient_steps(self) -> int:
        return self.steps

    def describe(self) -> str:
        return f"mim{self.steps}-linf-eps{self.eps:.4g}-mu{self.decay:g}"

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.evaluate(model, x, y, None, False, score_last=False).x_adv

    def evaluate(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        starts: Starts | None,
        early_stop: bool,
        score_last: bool = True,
    ) -> Outcome:
        step = self.eps / self.steps if self.step is None else self.step
        x0 = x.detach()

        def grad_fn(a: torch.Tensor, ys: torch.Tensor, aux: dict[str, torch.Tensor], t: int) -> Any:
            return input_grad(model, a, ys)

        def step_fn(a: torch.Tensor, grad: torch.Tensor, aux: dict[str, torch.Tensor], t: int) -> Any:
            l1 = grad.abs().flatten(1).sum(1).view(-1, *([1] * (grad.ndim - 1)))
            g = self.decay * aux["g"] + grad / l1.clamp_min(1e-12)
            return project(a + step * g.sign(), aux["x0"], self.eps, "linf"), {"x0": aux["x0"], "g": g}

        aux = {"x0": x0, "g": torch.zeros_like(x0)}
        return Outcome(*ascend(model, x0, y, self.steps, grad_fn, step_fn, aux, early_stop, None, score_last))
