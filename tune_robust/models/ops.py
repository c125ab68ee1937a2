"""The operations of the DARTS family (DARTS, PC-DARTS, RACL's search and genotype networks, RobNet).

The DARTS versions are the default; RobNet's networks keep two variants, named for what differs, because
their parameter names must match the RobNet authors' release (gmh14/RobNets, models/basic_operations.py,
which the ``robnet_release`` layout maps onto ours):

- ReLU-conv-BN: one operation. The release's is ReLU, conv, BatchNorm with affine=False hard-wired;
  ``ReLUConvBN(c_in, c_out, 1, 1, 0, affine=False)`` is the same module sequence.
- Separable conv: both compute ReLU - depthwise - pointwise - BN twice (only the first depthwise conv
  strides). :class:`SepConv` nests the two blocks as :class:`DilConv` modules (``0.1.weight`` ...
  ``1.3.running_var``: RACL's Lipschitz bound takes each block as one linear stage);
  :class:`FlatSepConv` is one flat sequence of the eight modules (``1.weight``, ``2.weight``, ``3.*``,
  ``5.weight``, ``6.weight``, ``7.*``), as the release (and the original DARTS code) builds it.
- FactorizedReduce: both take ReLU, then two 1x1 stride-2 convs, the second on the grid offset by one
  pixel, concatenated, then BN. :class:`FactorizedReduce` pads the offset input back to full size
  (odd spatial sizes work; on even sizes the padding is never sampled, so the outputs agree) and gives
  the second conv the odd channel when ``c_out`` is odd; :class:`CroppedFactorizedReduce` crops the
  offset input (the halves only line up on even sizes), needs an even ``c_out`` and names its convs
  ``conv_1``/``conv_2``, as the release does.
- Zero, identity: the same in both (the release's Identity is ``nn.Identity``).

PC-DARTS' partial-channel mixed op and search cell (the supernet of :mod:`tune_robust.models.racl`) are
built from the same operations, with affine-free BatchNorm throughout.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tune_robust.errors import ConfigError

# The DARTS / PC-DARTS search space's candidate operations (RACL searches the same 8).
PRIMITIVES = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


class Zero(nn.Module):
    """The ``none`` operation: zeros of the (strided) input's shape."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class ReLUConvBN(nn.Sequential):
    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU - depthwise (dilated) conv - pointwise conv - BN."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int,
        padding: int,
        dilation: int,
        affine: bool = True,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked DilConv(dilation 1); only the first may stride."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True
    ) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine),
        )


class FlatSepConv(nn.Sequential):
    """:class:`SepConv`'s computation as one flat sequence of its eight modules (RobNet's parameter
    names: ``1``, ``2``, ``3`` the first block's depthwise conv, pointwise conv and BN, ``5``-``7`` the
    second's)."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True
    ) -> None:
        first = DilConv(c_in, c_in, kernel, stride, padding, 1, affine)
        second = DilConv(c_in, c_out, kernel, 1, padding, 1, affine)
        super().__init__(*first, *second)


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing pixels: two 1x1 stride-2 convs on offset grids, concatenated."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv1 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.conv2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """The convolutions alone (no ReLU, no BatchNorm): the linear map the module applies."""
        shifted = nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return torch.cat([self.conv1(x), self.conv2(shifted)], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.linear(self.relu(x)))


class CroppedFactorizedReduce(nn.Module):
    """:class:`FactorizedReduce` with the offset grid cropped, not padded (even spatial sizes only), an
    even ``c_out`` split evenly, and RobNet's parameter names ``conv_1``/``conv_2``."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        if c_out % 2:
            raise ConfigError(f"robnet: FactorizedReduce needs an even channel count, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], 1))


def _conv_7x1_1x7(c: int, stride: int, affine: bool = True) -> nn.Module:
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(c, c, (1, 7), (1, stride), (0, 3), bias=False),
        nn.Conv2d(c, c, (7, 1), (stride, 1), (3, 0), bias=False),
        nn.BatchNorm2d(c, affine=affine),
    )


# name -> builder(channels, stride, affine): the operations of the DARTS family (affine=False BatchNorm
# in search supernets, as DARTS and PC-DARTS build them).
OPS: dict[str, Callable[[int, int, bool], nn.Module]] = {
    "avg_pool_3x3": lambda c, s, a: nn.AvgPool2d(3, s, 1, count_include_pad=False),
    "max_pool_3x3": lambda c, s, a: nn.MaxPool2d(3, s, 1),
    "skip_connect": lambda c, s, a: nn.Identity() if s == 1 else FactorizedReduce(c, c, a),
    "sep_conv_3x3": lambda c, s, a: SepConv(c, c, 3, s, 1, a),
    "sep_conv_5x5": lambda c, s, a: SepConv(c, c, 5, s, 2, a),
    "sep_conv_7x7": lambda c, s, a: SepConv(c, c, 7, s, 3, a),
    "dil_conv_3x3": lambda c, s, a: DilConv(c, c, 3, s, 2, 2, a),
    "dil_conv_5x5": lambda c, s, a: DilConv(c, c, 5, s, 4, 2, a),
    "conv_7x1_1x7": _conv_7x1_1x7,
}


# ------------------------------------------------------------------ PC-DARTS' mixed op and search cell


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class PartialMixedOp(nn.Module):
    """PC-DARTS' mixed op: the first C/K channels go through every candidate op (weighted by alpha),
    the rest pass unchanged (max-pooled on a reduction edge); then a channel shuffle."""

    def __init__(self, c: int, stride: int, partial: int) -> None:
        super().__init__()
        self.partial = partial
        self.stride = stride
        self.ops = nn.ModuleList()
        for name in PRIMITIVES[1:]:  # "none" adds zeros: left out, its weight multiplies nothing
            op = OPS[name](c // partial, stride, False)
            if "pool" in name:  # PC-DARTS follows pooling with an affine-free BatchNorm in the search
                op = nn.Sequential(op, nn.BatchNorm2d(c // partial, affine=False))
            self.ops.append(op)
        self.width = c // partial
        self.bypass = nn.MaxPool2d(2, 2) if stride == 2 else nn.Identity()
        # Spatial size of the last input (RACL takes an op's Lipschitz constant at that size).
        self.input_hw: tuple[int, int] | None = None

    def forward(self, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        self.input_hw = (int(x.shape[2]), int(x.shape[3]))
        k = x.shape[1] // self.partial
        head, rest = x[:, :k], x[:, k:]
        mixed = sum(alpha[i + 1] * op(head) for i, op in enumerate(self.ops))
        assert isinstance(mixed, torch.Tensor)
        return channel_shuffle(torch.cat([mixed, self.bypass(rest)], 1), self.partial)


class SearchCell(nn.Module):
    """PC-DARTS' search cell: node j sums beta-weighted mixed ops on every earlier state (the two
    preprocessed inputs, then the nodes before it); the output concatenates the nodes."""

    def __init__(
        self, nodes: int, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool, partial: int
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.nodes = nodes
        self.pre0 = (
            FactorizedReduce(c_pp, c, affine=False)
            if reduction_prev
            else ReLUConvBN(c_pp, c, 1, 1, 0, affine=False)
        )
        self.pre1 = ReLUConvBN(c_p, c, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList(
            PartialMixedOp(c, 2 if reduction and i < 2 else 1, partial)
            for node in range(nodes)
            for i in range(2 + node)
        )

    def forward(
        self, s0: torch.Tensor, s1: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor
    ) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        offset = 0
        for _ in range(self.nodes):
            node = sum(
                beta[offset + i] * self.edges[offset + i](h, alpha[offset + i]) for i, h in enumerate(states)
            )
            offset += len(states)
            states.append(node)
        return torch.cat(states[2:], 1)


def edge_count(nodes: int) -> int:
    """Edges of a cell of ``nodes`` nodes (node j has 2 + j inputs)."""
    return sum(2 + n for n in range(nodes))
