"""Attack interface and registry.

An attack is a frozen dataclass of its settings (validated on construction, so a bad eps fails before
any trial starts) with one method: ``perturb(model, x, y) -> x_adv``. Attacks never change the model's
parameters, gradients or mode; callers choose the mode (evaluation always uses eval mode).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, TypeVar

import torch
from torch import nn

from tune_robust.errors import ConfigError
from tune_robust.registry import Registry


class Attack(ABC):
    """Base class: subclasses are ``@dataclass(frozen=True)`` and registered with ``@register_attack``."""

    name: str = ""

    @abstractmethod
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Return adversarial inputs in [0, 1] within the threat model around ``x``."""

    @property
    def gradient_steps(self) -> int:
        """Forward-backward passes per example (for cost accounting)."""
        return 0

    def config(self) -> dict[str, Any]:
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}

    def describe(self) -> str:
        """Short label for result columns, e.g. ``pgd20-linf-eps0.0314-step0.0031``."""
        return self.name


ATTACKS: Registry[type[Attack]] = Registry("attack")
_A = TypeVar("_A", bound=type[Attack])


def register_attack(name: str) -> Any:
    def decorator(cls: _A) -> _A:
        cls.name = name
        ATTACKS.register(name)(cls)
        return cls

    return decorator


def create_attack(name: str, **kwargs: Any) -> Attack:
    from tune_robust.config import coerce_kwargs

    cls = ATTACKS.get(name)
    return cls(**coerce_kwargs(cls, kwargs, where=f"attack {name!r}"))


def check_eps(eps: float, what: str = "eps") -> None:
    if not eps >= 0:  # also rejects NaN
        raise ConfigError(f"attack {what} must be >= 0, got {eps}")


def input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the summed cross-entropy w.r.t. the input only (parameter .grad untouched)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad, logits.detach()


@register_attack("none")
@dataclasses.dataclass(frozen=True)
class NoAttack(Attack):
    """Clean inputs (accuracy without an attack)."""

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x
