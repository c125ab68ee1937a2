"""GAMA-PGD (Sriramanan et al., NeurIPS 2020, "Guided Adversarial Attack for Evaluating and Enhancing
Adversarial Defenses"): L-inf PGD on the margin of the softmax probabilities,
``max_{j != y} p_j - p_y``, plus a relaxation term ``w * ||p(x') - p(x_start)||^2`` whose weight ``w``
falls linearly from ``w_reg`` to 0 over the first ``relax_steps`` steps; the step size starts at
``step`` and is divided by ``drop`` at each of ``schedule``.

Defaults are the authors' released GAMA-PGD-100 (also in Huang et al.'s evaluator, the attack of their
Table 2): 100 steps, step 2 eps (16/255 at 8/255), w_reg 50 over 25 steps, step / 10 at steps 60
and 85, a start at a random corner of the eps-ball (``x + eps * sign(U(-1, 1))``), and the guide
``p(x_start)`` taken at that start. One difference: their loop evaluates its last iterate, which after
the final step is clipped to [0, 1] but not yet projected onto the eps-ball; this returns the
projected iterate (always inside the threat model).
"""

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
    in_ball,
    register_attack,
)
from tune_robust.errors import ConfigError


def _prob_margin(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    true = p.gather(1, y[:, None]).squeeze(1)
    return p.scatter(1, y[:, None], -1.0).amax(1) - true


@register_attack("gama")
@dataclass(frozen=True)
class GAMA(Attack):
    eps: float = 8 / 255
    # Initial step as a multiple of eps (the authors: 16/255 at 8/255).
    step: float = 2.0
    steps: int = 100
    w_reg: float = 50.0
    relax_steps: int = 25
    schedule: tuple[int, ...] = (60, 85)
    drop: float = 10.0

    def __post_init__(self) -> None:
        check_eps(self.eps)
        check_eps(self.step, "step")
        check_steps(self.steps)
        if self.relax_steps < 1 or self.drop <= 0 or self.w_reg < 0:
            raise ConfigError(
                f"attack gama: relax_steps must be >= 1, drop > 0 and w_reg >= 0, got "
                f"{self.relax_steps}, {self.drop}, {self.w_reg}"
            )

    @property
    def gradient_steps(self) -> int:
        return self.steps

    def describe(self) -> str:
        return f"gama{self.steps}-linf-eps{self.eps:.4g}"

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.evaluate(model, x, y, None, False, score_last=False).x_adv

    def _step_size(self, t: int) -> float:
        size = self.step * self.eps
        for s in sorted(set(self.schedule)):  # divided once at each listed step, as released
            if s <= t:
                size /= self.drop
        return size

    def evaluate(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        starts: Starts | None,
        early_stop: bool,
        score_last: bool = True,
    ) -> Outcome:
        x0 = x.detach()
        u = torch.empty_like(x0).uniform_(-1, 1) if starts is None else starts.uniform(x0).mul_(2).sub_(1)
        start = x0 + self.eps * u.sign()
        with torch.no_grad():
            guide = model(start).float().softmax(1)

        def grad_fn(a: torch.Tensor, ys: torch.Tensor, aux: dict[str, torch.Tensor], t: int) -> Any:
            a = a.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = model(a).float()
                p = logits.softmax(1)
                loss = _prob_margin(p, ys)
                # As released: the relaxation term is on for steps 0..relax_steps, its weight falling
                # by w_reg / relax_steps after each (reaching 0).
                if t <= self.relax_steps:
                    weight = self.w_reg - t * self.w_reg / self.relax_steps
                    loss = loss + weight * (p - aux["guide"]).pow(2).sum(1)
                (grad,) = torch.autograd.grad(loss.sum(), a)
            return grad, logits.detach()

        def step_fn(a: torch.Tensor, grad: torch.Tensor, aux: dict[str, torch.Tensor], t: int) -> Any:
            return torch.min(torch.max(a + self._step_size(t) * grad.sign(), aux["lo"]), aux["hi"]), aux

        aux = {"lo": (x0 - self.eps).clamp(min=0), "hi": (x0 + self.eps).clamp(max=1), "guide": guide}
        valid = in_ball(start, x0, self.eps, "linf")  # a corner outside [0, 1] is not an example
        return Outcome(
            *ascend(model, start, y, self.steps, grad_fn, step_fn, aux, early_stop, valid, score_last)
        )
