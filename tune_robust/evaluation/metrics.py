"""Perturbation stability and the empirical Lipschitz constant (Yang et al. 2020; Huang et al. Fig. 5).

``lipschitz = mean_i ||f(x_i) - f(x'_i)||_1 / ||x_i - x'_i||_inf`` with x' an adversarial example, for
the logits and for the output of every residual block or cell. Blocks are the model's
``feature_blocks()`` if it defines one, else every module whose class name ends in Block, Bottleneck or
Cell (the residual units of the registered families).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

BLOCK_SUFFIXES = ("Block", "Bottleneck", "Cell")


def feature_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    custom = getattr(model, "feature_blocks", None)
    if callable(custom):
        return list(custom())
    return [(n, m) for n, m in model.named_modules() if n and type(m).__name__.endswith(BLOCK_SUFFIXES)]


@contextmanager
def capture_outputs(blocks: list[tuple[str, nn.Module]]) -> Iterator[dict[str, torch.Tensor]]:
    """Record each block's output of the next forward pass."""
    out: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in blocks:

        def hook(_m: nn.Module, _i: object, o: object, name: str = name) -> None:
            if isinstance(o, torch.Tensor):
                out[name] = o.detach().float()

        handles.append(module.register_forward_hook(hook))
    try:
        yield out
    finally:
        for h in handles:
            h.remove()


class LipschitzMeter:
    """Accumulates per-example ratios for the logits and each block over batches."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.blocks = feature_blocks(model)
        self.sums: dict[str, float] = {}
        self.count = 0

    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad(), capture_outputs(self.blocks) as feats:
            logits = self.model(x).float()
        return {**feats, "logits": logits}

    def update(self, x: torch.Tensor, x_adv: torch.Tensor) -> None:
        dist = (x_adv.float() - x.float()).flatten(1).abs().amax(1)
        keep = dist > 0  # an unperturbed example has no ratio
        if not bool(keep.any()):
            return
        a, b = self._features(x), self._features(x_adv)
        for name in a:
            num = (a[name] - b[name]).flatten(1).abs().sum(1)
            self.sums[name] = self.sums.get(name, 0.0) + float((num[keep] / dist[keep]).sum())
        self.count += int(keep.sum())

    def result(self) -> dict[str, float]:
        """``{"logits": ..., <block name>: ...}`` in forward order of the blocks."""
        if not self.count:
            return {}
        return {name: s / self.count for name, s in self.sums.items()}


def stability(pred_clean: torch.Tensor, pred_adv: torch.Tensor) -> torch.Tensor:
    """Per example: the attack did not change the prediction (whatever the label)."""
    return pred_clean == pred_adv
