"""Lipschitz constants (L2) of the DARTS-family operations, for RACL's architecture bound.

A convolution's constant is the spectral norm of the convolution *operator* (zero padding, stride and
dilation included, at the input size the op sees), estimated by power iteration through autograd:
``A^T A u`` is the gradient of ``<A u, A u> / 2`` with respect to ``u``, so any bias-free linear map
works without building its matrix. The vector ``u`` is kept between calls (one iteration per call,
as spectral normalisation does), so the estimate tracks the weights as they train.

How each operation is bounded (ReLU is 1-Lipschitz; BatchNorm is its eval-mode affine map, whose linear
part scales channel c by gamma_c / sqrt(running_var_c + eps), gamma = 1 without affine parameters):
- separable conv (ReLU, depthwise k x k, pointwise, BN, ReLU, depthwise, pointwise, BN): the product of
  the two stages' operator norms, each stage being depthwise -> pointwise -> BN scale as one linear map
  (tighter than the product of the three factors);
- dilated conv (ReLU, dilated depthwise, pointwise, BN): one such stage;
- skip connection: 1 at stride 1; at stride 2 (FactorizedReduce: ReLU, two offset 1x1 stride-2 convs,
  BN) the operator norm of the convolutions and the BN scale;
- average pooling: S^-0.5 for stride S (RACL Sec. 2.2), max pooling: 1 (RACL), each times the largest
  scale of the affine-free BatchNorm PC-DARTS puts after a pooling op in the supernet;
- zero: 0.

:func:`log_lipschitz` bounds every op of a PC-DARTS search network's mixed edges at once: the stages
that share a shape (:func:`stage_groups`) take their power-iteration step as one grouped convolution.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tune_robust.models.ops import DilConv, FactorizedReduce, PartialMixedOp, SepConv

Linear = Callable[[torch.Tensor], torch.Tensor]
# One convolutional stage of a network's mixed ops: (cell, edge, op index, stage index, input width,
# input size).
Member = tuple[int, int, int, int, int, tuple[int, int]]


def bn_scale(bn: nn.BatchNorm2d) -> torch.Tensor:
    """Per-channel factor of an eval-mode BatchNorm's linear part."""
    assert bn.running_var is not None, "BatchNorm without running statistics"
    scale = torch.rsqrt(bn.running_var + bn.eps)
    return scale * bn.weight if bn.affine else scale


def power_step(linear: Linear, u: torch.Tensor, blocks: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """One power iteration on a bias-free linear map that is block-diagonal over ``blocks`` equal
    slices of its input and output channels (independent maps run as one grouped convolution):
    (per block ||A_b u_b|| for unit u_b, which is at most A_b's operator norm and converges to it; the
    next vectors A_b^T A_b u_b, each normalised)."""
    with torch.enable_grad():
        x = u.detach().requires_grad_(True)
        out = linear(x)
        (grad,) = torch.autograd.grad(out, x, grad_outputs=out.detach())
    norms = out.detach().reshape(blocks, -1).norm(dim=1)
    g = grad.detach().reshape(blocks, -1)
    return norms, (g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)).reshape(u.shape)


def unit_blocks(x: torch.Tensor, blocks: int) -> torch.Tensor:
    """``x`` with each of its ``blocks`` channel slices scaled to unit norm."""
    flat = x.reshape(blocks, -1)
    return (flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)).reshape(x.shape)


def stage_modules(op: nn.Module) -> list[nn.Module]:
    """The linear stages whose operator norms multiply to the op's bound ([] for ops with a closed
    form): DilConv modules (depthwise -> pointwise -> BN scale) and FactorizedReduce modules."""
    if isinstance(op, SepConv):
        return [op[0], op[1]]
    if isinstance(op, (DilConv, FactorizedReduce)):
        return [op]
    return []


def _out_size(size: int, conv: nn.Conv2d) -> int:
    k, s, p, d = conv.kernel_size[0], conv.stride[0], conv.padding, conv.dilation[0]
    pad = p[0] if isinstance(p, tuple) else 0
    return (size + 2 * pad - d * (k - 1) - 1) // s + 1


def dil_parts(stage: nn.Module) -> tuple[nn.Conv2d, nn.Conv2d, nn.BatchNorm2d]:
    """A DilConv stage's depthwise conv, pointwise conv and BatchNorm."""
    assert isinstance(stage, DilConv)
    _, depthwise, pointwise, bn = stage
    assert isinstance(depthwise, nn.Conv2d) and isinstance(pointwise, nn.Conv2d)
    assert isinstance(bn, nn.BatchNorm2d)
    return depthwise, pointwise, bn


def stage_signature(stage: nn.Module, hw: tuple[int, int]) -> tuple[tuple[Any, ...], tuple[int, int]]:
    """(what stages must share to run as one grouped map, the stage's output size)."""
    if isinstance(stage, FactorizedReduce):
        return ("fr", stage.conv1.in_channels, hw), (
            _out_size(hw[0], stage.conv1),
            _out_size(hw[1], stage.conv1),
        )
    depthwise = dil_parts(stage)[0]
    key = ("dil", depthwise.kernel_size, depthwise.stride, depthwise.padding, depthwise.dilation)
    return (*key, depthwise.in_channels, hw), (_out_size(hw[0], depthwise), _out_size(hw[1], depthwise))


def grouped_linear(stages: list[nn.Module]) -> Linear:
    """The block-diagonal linear map of same-signature stages, as grouped convolutions with the
    stages' current weights (input: the stages' inputs concatenated along channels)."""
    n = len(stages)
    if isinstance(stages[0], FactorizedReduce):
        frs = [s for s in stages if isinstance(s, FactorizedReduce)]
        w1 = torch.cat([s.conv1.weight for s in frs])
        w2 = torch.cat([s.conv2.weight for s in frs])
        half = frs[0].conv1.out_channels
        scales = [bn_scale(s.bn) for s in frs]
        s1 = torch.cat([sc[:half] for sc in scales]).view(1, -1, 1, 1)
        s2 = torch.cat([sc[half:] for sc in scales]).view(1, -1, 1, 1)

        def fr_linear(u: torch.Tensor) -> torch.Tensor:
            shifted = nn.functional.pad(u[:, :, 1:, 1:], (0, 1, 0, 1))
            a = nn.functional.conv2d(u, w1, stride=2, groups=n) * s1
            b = nn.functional.conv2d(shifted, w2, stride=2, groups=n) * s2
            # block b's output: its conv1 channels, then its conv2 channels
            return torch.cat([a.reshape(n, -1), b.reshape(n, -1)], 1)

        return fr_linear
    parts = [dil_parts(s) for s in stages]
    dw0 = parts[0][0]
    w_dw = torch.cat([dw.weight for dw, _, _ in parts])
    w_pw = torch.cat([pw.weight for _, pw, _ in parts])
    scale = torch.cat([bn_scale(bn) for _, _, bn in parts]).view(1, -1, 1, 1)

    def dil_linear(u: torch.Tensor) -> torch.Tensor:
        h = nn.functional.conv2d(
            u, w_dw, stride=dw0.stride, padding=dw0.padding, dilation=dw0.dilation, groups=w_dw.shape[0]
        )
        return nn.functional.conv2d(h, w_pw, groups=n) * scale

    return dil_linear


def closed_form(op: nn.Module) -> float | torch.Tensor:
    """The bound of an op without convolutions: pooling (followed by its BatchNorm) and identity."""
    if isinstance(op, nn.Identity):
        return 1.0
    if isinstance(op, nn.Sequential) and len(op) == 2 and isinstance(op[1], nn.BatchNorm2d):
        pool, bn = op[0], op[1]
        assert isinstance(pool, (nn.AvgPool2d, nn.MaxPool2d))
        stride = pool.stride if isinstance(pool.stride, int) else pool.stride[0]
        factor = float(stride) ** -0.5 if isinstance(pool, nn.AvgPool2d) else 1.0
        return factor * bn_scale(bn).abs().max()
    raise TypeError(f"no Lipschitz bound for {type(op).__name__}")


def stage_groups(cells: Sequence[Sequence[PartialMixedOp]]) -> dict[str, list[Member]]:
    """Every convolutional stage of every op of ``cells`` (each cell's mixed edges), grouped by what one
    grouped convolution needs them to share (kind, kernel, stride, padding, dilation, width, input size):
    name -> members. Fixed once the ops' input sizes are known (after a forward pass)."""
    groups: dict[str, list[Member]] = {}
    for c, edges in enumerate(cells):
        for e, edge in enumerate(edges):
            if edge.input_hw is None:
                raise RuntimeError("run a forward pass before the Lipschitz bound (it needs input sizes)")
            for o, op in enumerate(edge.ops):
                hw = edge.input_hw
                for k, stage in enumerate(stage_modules(op)):
                    key, out_hw = stage_signature(stage, hw)
                    groups.setdefault(repr(key), []).append((c, e, o, k, edge.width, hw))
                    hw = out_hw
    return groups


def log_lipschitz(
    cells: Sequence[Sequence[PartialMixedOp]],
    groups: Mapping[str, list[Member]],
    power: dict[str, torch.Tensor],
    generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """ln lambda_o per (cell, edge, op) of the current weights, "none" first at -inf (the PRIMITIVES
    order), detached. Every convolutional stage takes one power-iteration step, the stages of each of
    ``groups`` (:func:`stage_groups`) as one grouped convolution; ``power`` holds each group's vector
    between calls (updated here; a missing one starts as random unit vectors from ``generator``)."""
    closed = [
        [[float(closed_form(op)) if not stage_modules(op) else 1.0 for op in edge.ops] for edge in edges]
        for edges in cells
    ]
    logs = torch.tensor(closed, device=device).clamp_min(1e-12).log()
    with torch.no_grad():
        for name, members in groups.items():
            blocks = len(members)
            if name not in power:  # first use: random unit vectors at the stages' input size
                width, hw = members[0][4], members[0][5]
                x = torch.randn((1, blocks * width, *hw), generator=generator)
                power[name] = unit_blocks(x.to(device), blocks)
            stages = [stage_modules(cells[c][e].ops[o])[k] for c, e, o, k, *_ in members]
            norms, power[name] = power_step(grouped_linear(stages), power[name], blocks)
            index = torch.tensor([m[:3] for m in members], device=logs.device).T
            logs.index_put_(tuple(index), norms.clamp_min(1e-12).log(), accumulate=True)
    none = torch.full((*logs.shape[:2], 1), -math.inf, device=logs.device)
    return torch.cat([none, logs], -1)
