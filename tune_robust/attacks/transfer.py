"""Transfer (black-box) attack: examples crafted with a white-box attack on a *source* model, then
fed to the evaluated (target) model, whose gradients are never used."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tune_robust.attacks._base import Attack, check_eps, create_attack, register_attack
from tune_robust.errors import ConfigError


@functools.lru_cache(maxsize=8)
def _source_model(path: str, device: str) -> nn.Module:
    from tune_robust.models.checkpoint import load_checkpoint

    return load_checkpoint(path, device=device)


@register_attack("transfer")
@dataclass(frozen=True)
class Transfer(Attack):
    # A checkpoint of ours (a trial's state dir or its model.pt) or a robustbench: zoo reference.
    source: str = ""
    eps: float = 8 / 255
    # The white-box attack run on the source (PGD-100 step eps/4 as in RobNet's Table 4 by default).
    steps: int = 100
    step: float = 2 / 255

    def __post_init__(self) -> None:
        check_eps(self.eps)
        check_eps(self.step, "step")
        if not self.source:
            raise ConfigError("attack 'transfer' needs source=<checkpoint path of the source model>")
        from tune_robust.models.robustbench_zoo import is_reference

        if is_reference(self.source):
            raise ConfigError(
                f"attack 'transfer': source={self.source} is a zoo model; give it to the transfer sweep "
                f"(--checkpoint {self.source}), where its weights are found and checked before Ray starts"
            )
        if not Path(self.source).exists():
            raise ConfigError(f"attack 'transfer': source checkpoint {self.source} does not exist")

    @property
    def gradient_steps(self) -> int:
        return self.steps  # on the source model

    def describe(self) -> str:
        return f"transfer-pgd{self.steps}-eps{self.eps:.4g}-from-{Path(self.source).parent.name}"

    def craft(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        source = _source_model(self.source, str(x.device))
        attack = create_attack("pgd", eps=self.eps, step=self.step, steps=self.steps)
        return attack.perturb(source, x, y)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.craft(x, y)
