"""Fast adversarial training (Wong et al. 2020, "Fast is better than free"): CE on FGSM examples crafted
from a uniform random start with step 1.25 eps (the ``fgsm`` training attack, which must say so), usually
with the cyclic LR schedule (``train.schedule=cyclic``), and early stopping against catastrophic
overfitting: after every epoch PGD accuracy on a fixed training batch is measured (robust accuracy as
the product counts it: correct both clean and under the attack), and if it falls by more than
``collapse_drop`` below the previous epoch's, training stops and the previous epoch's weights are
restored."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tune_robust.attacks import Attack, create_attack
from tune_robust.errors import ConfigError
from tune_robust.evaluation.basic import correct, robust_accuracy
from tune_robust.training._base import Method, register_method, state_copy


@register_method("fast")
@dataclass
class Fast(Method):
    # Stop (and restore the previous epoch's weights) when the probe's PGD accuracy collapses.
    early_stop: bool = True
    # The probe attack: PGD with this many steps, step eps/4, one random start (Wong et al.: PGD-5).
    probe_steps: int = 5
    # An absolute drop of the probe's PGD accuracy larger than this counts as a collapse.
    collapse_drop: float = 0.2
    prev_acc: float | None = field(default=None, init=False, repr=False)
    prev_state: dict[str, torch.Tensor] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.probe_steps < 1:
            raise ConfigError(f"method 'fast' option probe_steps must be >= 1, got {self.probe_steps}")
        if not 0 < self.collapse_drop <= 1:
            raise ConfigError(
                f"method 'fast' option collapse_drop must be in (0, 1], got {self.collapse_drop}"
            )

    def check_attack(self, attack: Attack) -> None:
        if attack.name != "fgsm" or not getattr(attack, "random_start", False):
            raise ConfigError(
                "method 'fast' trains on FGSM from a random start: set attack.name=fgsm, "
                "attack.random_start=true and attack.step=eps*1.25 (Wong et al.)"
            )

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # As in the reference code the FGSM example is crafted in train mode (one extra forward pass).
        x_adv = attack.perturb(model, x, y)
        logits = model(x_adv)
        return nn.functional.cross_entropy(logits, y), logits

    def end_epoch(
        self, model: nn.Module, probe: tuple[torch.Tensor, torch.Tensor], attack: Attack
    ) -> dict[str, Any]:
        if not self.early_stop:
            return {}
        eps = float(attack.eps)  # type: ignore[attr-defined]
        pgd = create_attack("pgd", eps=eps, step=eps / 4, steps=self.probe_steps)
        x, y = probe
        was_training = model.training
        model.eval()
        try:
            adv = pgd.perturb(model, x, y)
            acc = robust_accuracy(correct(model, x, y), correct(model, adv, y))
        finally:
            model.train(was_training)
        out: dict[str, Any] = {"probe_pgd_acc": acc, "attack_passes": len(y) * self.probe_steps}
        collapsed = self.prev_acc is not None and acc < self.prev_acc - self.collapse_drop
        if collapsed and self.prev_state is not None:
            model.load_state_dict(self.prev_state)
            out["stop"] = (
                f"catastrophic overfitting: PGD-{self.probe_steps} accuracy on the probe batch fell from "
                f"{self.prev_acc or 0.0:.3f} to {acc:.3f}; restored the previous epoch's weights"
            )
            return out
        self.prev_acc = acc
        self.prev_state = state_copy(model)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"prev_acc": self.prev_acc, "prev_state": self.prev_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prev_acc = state.get("prev_acc")
        self.prev_state = state.get("prev_state")
