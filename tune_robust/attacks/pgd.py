"""PGD (Madry et al. 2018) under L-inf or L2, with random start, CE or CW-margin loss, and restarts
keeping the per-example worst case."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from tune_robust.attacks._base import (
    Attack,
    Loss,
    Norm,
    Outcome,
    Starts,
    ascend,
    ascent_step,
    attack_loss,
    check_eps,
    check_steps,
    in_ball,
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


@dataclass(frozen=True)
class Variant:
    """One variant of a batched PGD run (``PGD.attack_variants``)."""

    which: torch.Tensor  # indices of the attacked examples
    eps: float
    step: float
    draw: int = 0  # the random start's draw (restart)
    start: torch.Tensor | None = None  # or start from these iterates


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

    def start_point(self, x0: torch.Tensor, starts: Starts | None = None, draw: int = 0) -> torch.Tensor:
        if not self.random_start:
            return x0
        if self.start == "normal":
            noise = torch.randn_like(x0) if starts is None else starts.normal(x0, draw)
            adv = x0 + self.step * noise
            return adv.clamp(0, 1) if self.clip_start else adv
        return random_start(x0, self.eps, self.norm, clip=self.clip_start, starts=starts, draw=draw)

    def _box(self, x0: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-example state of a step: the L-inf box of the eps-ball and [0, 1] (fixed, so computed
        once), or the centre of the L2 ball."""
        if self.norm == "linf":
            return {"lo": (x0 - self.eps).clamp_(min=0), "hi": (x0 + self.eps).clamp_(max=1)}
        return {"x0": x0}

    def _moved(self, adv: torch.Tensor, grad: torch.Tensor, box: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.norm == "linf":
            return torch.min(torch.max(grad.sign_().mul_(self.step).add_(adv), box["lo"]), box["hi"])
        return project(ascent_step(adv, grad, self.step, self.norm), box["x0"], self.eps, self.norm).detach()

    def _run(self, model: nn.Module, x0: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training path: the last iterate of every example, the start from the global generator."""
        adv = self.start_point(x0)
        box = self._box(x0)
        for _ in range(self.steps):
            grad, logits = input_grad(model, adv, y, self.loss)
            adv = self._keep_fooled(adv, self._moved(adv, grad, box), logits, y)
        return adv.detach()

    def continue_from(
        self, model: nn.Module, x0: torch.Tensor, y: torch.Tensor, adv: torch.Tensor, early_stop: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``steps`` more iterations from the iterate ``adv`` of the ball around ``x0``: (examples, fooled
        at some iterate) as ``ascend`` returns them. PGD-2k from a start is PGD-k continued k steps."""

        def grad_fn(a: torch.Tensor, ys: torch.Tensor, aux: dict[str, torch.Tensor], t: int) -> Any:
            return input_grad(model, a, ys, self.loss)

        def step_fn(a: torch.Tensor, g: torch.Tensor, aux: dict[str, torch.Tensor], t: int) -> Any:
            return self._moved(a, g, aux), aux

        x0 = x0.detach()
        valid = in_ball(adv, x0, self.eps, self.norm)
        return ascend(model, adv, y, self.steps, grad_fn, step_fn, self._box(x0), early_stop, valid)

    def attack_variants(
        self, model: nn.Module, x0: torch.Tensor, y: torch.Tensor, variants: list[Variant], starts: Starts
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Several L-inf variants of this PGD with the same number of steps, run as one batch (one
        forward-backward per step for all of them), each example of a variant stopping once fooled.

        A variant attacks the examples ``which`` of ``x0`` with its own eps and step, from draw ``draw``
        of ``starts`` or from the iterates ``start``; its result (the examples, and which of them some
        iterate fooled) equals ``replace(self, eps=..., step=...).attack(..., early_stop=True)`` on them (or
        ``continue_from`` for a ``start``), since each example's computation is its own."""
        if self.norm != "linf":
            raise ValueError("attack_variants batches L-inf PGD only")
        parts = []
        for v in variants:
            sub = x0[v.which]
            one = dataclasses.replace(self, eps=v.eps, step=v.step)
            own = starts.subset(v.which).keyed(one)
            begin = v.start if v.start is not None else one.start_point(sub, own, v.draw)
            column = sub.new_full((len(sub), *([1] * (sub.ndim - 1))), v.eps)
            valid = in_ball(begin, sub, v.eps, "linf")
            parts.append((sub, y[v.which], begin, column, torch.full_like(column, v.step), valid))
        x, ys, begin, eps, step, valid = (torch.cat(t) for t in zip(*parts, strict=True))
        box = {"lo": (x - eps).clamp_(min=0), "hi": (x + eps).clamp_(max=1), "step": step}

        def grad_fn(a: torch.Tensor, yy: torch.Tensor, aux: dict[str, torch.Tensor], t: int) -> Any:
            return input_grad(model, a, yy, self.loss)

        def step_fn(a: torch.Tensor, g: torch.Tensor, aux: dict[str, torch.Tensor], t: int) -> Any:
            return torch.min(torch.max(g.sign_().mul_(aux["step"]).add_(a), aux["lo"]), aux["hi"]), aux

        x_adv, fooled = ascend(model, begin, ys, self.steps, grad_fn, step_fn, box, True, valid)
        sizes = [len(p[0]) for p in parts]
        return list(zip(x_adv.split(sizes), fooled.split(sizes), strict=True))

    def evaluate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, starts: Starts | None, early_stop: bool
    ) -> Outcome:
        """Every restart counts an example fooled at any of its iterates. With ``early_stop`` restart k
        runs only on the examples no earlier restart fooled (from their own draw k of ``starts``);
        without it, every restart runs on every example and the returned example is the first fooling
        candidate, else the highest-loss one (as ``perturb``)."""
        x0 = x.detach()
        out, fooled = x0.clone(), torch.zeros(y.shape, dtype=torch.bool, device=y.device)
        best_loss = torch.full(y.shape, -float("inf"), device=y.device)
        last_fooled = torch.zeros_like(fooled)  # a returned example that is misclassified
        for r in range(self.restarts):
            sel = (~fooled).nonzero().squeeze(1) if early_stop else torch.arange(len(y), device=y.device)
            if not len(sel):
                break
            sub = None if starts is None else starts.subset(sel)
            adv, hit = self.continue_from(
                model, x0[sel], y[sel], self.start_point(x0[sel], sub, r), early_stop
            )
            if early_stop or self.restarts == 1:
                out[sel] = adv
            else:  # keep_worst's choice: the first fooling candidate, else the highest loss
                with torch.no_grad():
                    logits = model(adv)
                value, now_fooled = attack_loss(logits, y, self.loss), logits.argmax(1) != y
                take = ~last_fooled & (now_fooled | (value > best_loss))
                out[take] = adv[take]
                best_loss = torch.where(take, value, best_loss)
                last_fooled |= now_fooled
            fooled[sel] |= hit
        return Outcome(out, fooled)

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
