"""FSP-matrix distance between clean and adversarial inputs, per cell (RobNet, Guo et al. CVPR'20,
Sec. 3.3; the cell-free search's screen, supplement Sec. 6 and Fig. 1).

Pinned normalisation (the 0.006 threshold only means something at a fixed one):

- A cell's FSP matrix between its input ``c_{k-1}`` (m channels) and its output (n channels):
  ``G[i, j] = sum_{s,t} F_in[s, t, i] * F_out[s, t, j] / (h * w)``, per example, with ``h x w`` the
  output's size; where a reduction cell halves the size, its input is average-pooled to the output's
  size first (the paper does not say how it pairs sizes).
- The cell's distance: the mean over examples of ``||G(x) - G(x')||^2 / (m n)``, the paper's
  ``1/N sum_x ||G(x) - G(x')||_2^2`` with the squared norm averaged over the m x n entries. The
  paper's formula leaves the entry normalisation open; summed over the 144 x 144 entries of a C = 36
  cell, a distance of 0.006 would need every entry of G to move by less than 5e-4 under attack, far
  below what we measure, while averaged it lands in the threshold's range (docs/search-methods.md,
  "One-shot search: RobNet").
- ``x'``: the given attack (the sweep's training attack, PGD-7 at 8/255 for the paper fidelity) on the
  same network in eval mode, from the same examples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

import torch
from torch import nn

from tune_robust.attacks import Attack

__all__ = ["FeatureRecorder", "cell_distances", "fsp_distance", "fsp_matrix"]


class FeatureRecorder(Protocol):
    """A model that calls ``feature_hook(input, output)`` for every cell during a forward pass."""

    feature_hook: Callable[[torch.Tensor, torch.Tensor], None] | None

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


def fsp_matrix(f_in: torch.Tensor, f_out: torch.Tensor) -> torch.Tensor:
    """Per example ``(N, m, n)``: ``sum_{s,t} f_in[:, i, s, t] f_out[:, j, s, t] / (h w)``."""
    h, w = f_out.shape[-2:]
    if f_in.shape[-2:] != f_out.shape[-2:]:
        f_in = nn.functional.adaptive_avg_pool2d(f_in, (h, w))
    return torch.einsum("nihw,njhw->nij", f_in.float(), f_out.float()) / (h * w)


def _cell_fsp(model: FeatureRecorder, x: torch.Tensor) -> list[torch.Tensor]:
    """Each cell's FSP matrices on ``x`` (computed as the forward pass reaches the cell)."""
    out: list[torch.Tensor] = []
    model.feature_hook = lambda f_in, f_out: out.append(fsp_matrix(f_in, f_out))
    try:
        with torch.no_grad():
            model(x)
    finally:
        model.feature_hook = None
    return out


def cell_distances(model: FeatureRecorder, x: torch.Tensor, x_adv: torch.Tensor) -> list[float]:
    """Each cell's FSP distance between ``x`` and ``x_adv`` (mean over examples)."""
    clean, adv = _cell_fsp(model, x), _cell_fsp(model, x_adv)
    return [float((a - b).pow(2).mean((1, 2)).mean()) for a, b in zip(clean, adv, strict=True)]


def fsp_distance(
    model: nn.Module, data: Iterable[tuple[torch.Tensor, torch.Tensor]], attack: Attack
) -> list[float]:
    """Per cell, the FSP distance between the batches of ``data`` and ``attack``'s examples of them,
    with ``model`` in eval mode (restored afterwards); batches are weighted by their size."""
    if not hasattr(model, "feature_hook"):
        raise TypeError(f"{type(model).__name__} does not report cell features (feature_hook)")
    recorder: FeatureRecorder = model  # type: ignore[assignment]
    was_training = model.training
    model.eval()
    totals: list[float] = []
    seen = 0
    try:
        with torch.autocast(device_type=next(model.parameters()).device.type, enabled=False):
            for x, y in data:
                x_adv = attack.perturb(model, x, y)
                d = [v * len(y) for v in cell_distances(recorder, x, x_adv)]
                totals = [t + v for t, v in zip(totals, d, strict=True)] if totals else d
                seen += len(y)
    finally:
        model.train(was_training)
    if not seen:
        raise ValueError("fsp_distance: no examples")
    return [t / seen for t in totals]
