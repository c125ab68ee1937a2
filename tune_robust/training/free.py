"""Free adversarial training (Shafahi et al. 2019): each minibatch is replayed ``replays`` times; every
replay's one backward pass gives both the parameter update and an FGSM step on the perturbation, which
is carried to the next replay and the next minibatch. The epoch budget is divided by ``replays`` so the
total gradient computations match ``train.epochs`` epochs of standard training."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tune_robust.attacks import Attack
from tune_robust.errors import ConfigError
from tune_robust.training._base import Method, Update, linf_eps, register_method


@register_method("free")
@dataclass
class Free(Method):
    # Minibatch replays m (the paper's CIFAR-10 choice is 8).
    replays: int = 8
    # FGSM step on the carried perturbation, as a multiple of eps (the paper uses eps itself).
    step: float = 1.0
    delta: torch.Tensor | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.replays < 1:
            raise ConfigError(f"method 'free' option replays must be >= 1, got {self.replays}")
        if not self.step > 0:
            raise ConfigError(f"method 'free' option step must be > 0, got {self.step}")

    def check_attack(self, attack: Attack) -> None:
        linf_eps(attack, self.name)

    def epochs_to_run(self, epochs: int) -> int:
        return max(1, math.ceil(epochs / self.replays))

    @property
    def updates_per_batch(self) -> int:
        return self.replays

    def attack_passes(self, attack: Attack) -> int:
        return self.replays  # each replay's backward also yields the input gradient

    def train_batch(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, update: Update
    ) -> tuple[torch.Tensor, torch.Tensor]:
        eps = linf_eps(attack, self.name)
        if self.delta is None or self.delta.shape[1:] != x.shape[1:] or len(self.delta) < len(x):
            self.delta = torch.zeros_like(x)
        self.delta = self.delta.to(x.device)
        delta = self.delta[: len(x)]
        loss = logits = torch.zeros(())
        for _ in range(self.replays):
            delta = delta.detach().requires_grad_(True)
            logits = model((x + delta).clamp(0, 1))
            loss = nn.functional.cross_entropy(logits, y)
            update(loss)  # backward fills delta.grad in the same pass as the parameter gradients
            assert delta.grad is not None
            delta = (delta.detach() + self.step * eps * delta.grad.sign()).clamp(-eps, eps)
        self.delta[: len(x)] = delta.detach()
        return loss.detach(), logits.detach()

    def state_dict(self) -> dict[str, Any]:
        return {"delta": None if self.delta is None else self.delta.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        delta = state.get("delta")
        self.delta = None if delta is None else delta.clone()
