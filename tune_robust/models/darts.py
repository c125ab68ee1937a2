"""DARTS-style genotype networks (Liu et al. 2019, "NetworkCIFAR"): a 3C-channel stem, ``layers`` cells
with reduction cells at 1/3 and 2/3 of the depth (doubling the channels), an optional auxiliary head
at 2/3. Each cell has 2 inputs (the two previous cells), ``len(genotype) / 2`` nodes each summing two
operations on earlier states, and concatenates the listed states.

Genotypes: DARTS_V2 (Liu et al.), PC_DARTS (Xu et al. 2020), NASNet (Zoph et al. 2018) and AmoebaNet
(Real et al. 2019) as published in the DARTS/PC-DARTS code, and RACL (Dong et al.) as released with
the paper. At C=36, 20 cells they have 3.35M, 3.63M, 3.83M, 3.16M and 3.62M parameters without the
auxiliary head (RACL Table 1: 3.3M, 3.6M, 3.8M, 3.2M, 3.6M). ``widths`` scales the channels of the three
stages between reductions (DARTS-R: 0.4 on the last).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import nn

from tune_robust.errors import ConfigError
from tune_robust.models._registry import register_model
from tune_robust.models._stages import stage_channels


class Genotype(NamedTuple):
    normal: tuple[tuple[str, int], ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[tuple[str, int], ...]
    reduce_concat: tuple[int, ...]


def _g(normal: str, normal_concat: Sequence[int], reduce: str, reduce_concat: Sequence[int]) -> Genotype:
    """Genotype from ``"op:input op:input ..."`` strings (pairs of operations per node)."""

    def edges(text: str) -> tuple[tuple[str, int], ...]:
        return tuple((op, int(i)) for op, i in (e.split(":") for e in text.split()))

    return Genotype(edges(normal), tuple(normal_concat), edges(reduce), tuple(reduce_concat))


GENOTYPES: dict[str, Genotype] = {
    "DARTS_V2": _g(
        "sep_conv_3x3:0 sep_conv_3x3:1 sep_conv_3x3:0 sep_conv_3x3:1 sep_conv_3x3:1 skip_connect:0 "
        "skip_connect:0 dil_conv_3x3:2",
        range(2, 6),
        "max_pool_3x3:0 max_pool_3x3:1 skip_connect:2 max_pool_3x3:1 max_pool_3x3:0 skip_connect:2 "
        "skip_connect:2 max_pool_3x3:1",
        range(2, 6),
    ),
    "PC_DARTS": _g(
        "sep_conv_3x3:1 skip_connect:0 sep_conv_3x3:0 dil_conv_3x3:1 sep_conv_5x5:0 sep_conv_3x3:1 "
        "avg_pool_3x3:0 dil_conv_3x3:1",
        range(2, 6),
        "sep_conv_5x5:1 max_pool_3x3:0 sep_conv_5x5:1 sep_conv_5x5:2 sep_conv_3x3:0 sep_conv_3x3:3 "
        "sep_conv_3x3:1 sep_conv_3x3:2",
        range(2, 6),
    ),
    "NASNet": _g(
        "sep_conv_5x5:1 sep_conv_3x3:0 sep_conv_5x5:0 sep_conv_3x3:0 avg_pool_3x3:1 skip_connect:0 "
        "avg_pool_3x3:0 avg_pool_3x3:0 sep_conv_3x3:1 skip_connect:1",
        range(2, 7),
        "sep_conv_5x5:1 sep_conv_7x7:0 max_pool_3x3:1 sep_conv_7x7:0 avg_pool_3x3:1 sep_conv_5x5:0 "
        "skip_connect:3 avg_pool_3x3:2 sep_conv_3x3:2 max_pool_3x3:1",
        (4, 5, 6),
    ),
    "AmoebaNet": _g(
        "avg_pool_3x3:0 max_pool_3x3:1 sep_conv_3x3:0 sep_conv_5x5:2 sep_conv_3x3:0 avg_pool_3x3:3 "
        "sep_conv_3x3:1 skip_connect:1 skip_connect:0 avg_pool_3x3:1",
        (4, 5, 6),
        "avg_pool_3x3:0 sep_conv_3x3:1 max_pool_3x3:0 sep_conv_7x7:2 sep_conv_7x7:0 avg_pool_3x3:1 "
        "max_pool_3x3:0 max_pool_3x3:1 conv_7x1_1x7:0 sep_conv_3x3:5",
        (3, 4, 6),
    ),
    "RACL": _g(
        "sep_conv_3x3:0 sep_conv_3x3:1 sep_conv_5x5:0 skip_connect:1 sep_conv_3x3:0 skip_connect:3 "
        "sep_conv_3x3:3 skip_connect:4",
        range(2, 6),
        "sep_conv_3x3:0 sep_conv_5x5:1 avg_pool_3x3:0 dil_conv_3x3:1 sep_conv_3x3:0 sep_conv_5x5:1 "
        "sep_conv_3x3:2 dil_conv_3x3:3",
        range(2, 6),
    ),
}


# ------------------------------------------------------------------------------------------ operations


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False),
            nn.BatchNorm2d(c_out),
        )


class DilConv(nn.Sequential):
    """ReLU - depthwise (dilated) conv - pointwise conv - BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )


class SepConv(nn.Sequential):
    """Two stacked DilConv(dilation 1); only the first may stride."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1), DilConv(c_in, c_out, kernel, 1, padding, 1)
        )


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing pixels: two 1x1 stride-2 convs on offset grids, concatenated."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv1 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.conv2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv1(x), self.conv2(shifted)], 1))


def _conv_7x1_1x7(c: int, stride: int) -> nn.Module:
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(c, c, (1, 7), (1, stride), (0, 3), bias=False),
        nn.Conv2d(c, c, (7, 1), (stride, 1), (3, 0), bias=False),
        nn.BatchNorm2d(c),
    )


OPS: dict[str, Callable[[int, int], nn.Module]] = {
    "avg_pool_3x3": lambda c, s: nn.AvgPool2d(3, s, 1, count_include_pad=False),
    "max_pool_3x3": lambda c, s: nn.MaxPool2d(3, s, 1),
    "skip_connect": lambda c, s: nn.Identity() if s == 1 else FactorizedReduce(c, c),
    "sep_conv_3x3": lambda c, s: SepConv(c, c, 3, s, 1),
    "sep_conv_5x5": lambda c, s: SepConv(c, c, 5, s, 2),
    "sep_conv_7x7": lambda c, s: SepConv(c, c, 7, s, 3),
    "dil_conv_3x3": lambda c, s: DilConv(c, c, 3, s, 2, 2),
    "dil_conv_5x5": lambda c, s: DilConv(c, c, 5, s, 4, 2),
    "conv_7x1_1x7": _conv_7x1_1x7,
}


class Cell(nn.Module):
    def __init__(
        self, genotype: Genotype, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool
    ):
        super().__init__()
        self.reduction = reduction
        # The input two cells back is at twice the resolution if the previous cell reduced.
        self.pre0 = FactorizedReduce(c_pp, c) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0)
        self.pre1 = ReLUConvBN(c_p, c, 1, 1, 0)
        edges = genotype.reduce if reduction else genotype.normal
        self.concat = genotype.reduce_concat if reduction else genotype.normal_concat
        if len(edges) % 2:
            raise ConfigError(f"genotype has {len(edges)} edges; each node needs two")
        self.ops = nn.ModuleList()
        self.inputs = []
        for name, index in edges:
            if name not in OPS:
                raise ConfigError(f"unknown genotype operation {name!r}; known: {', '.join(sorted(OPS))}")
            stride = 2 if reduction and index < 2 else 1
            self.ops.append(OPS[name](c, stride))
            self.inputs.append(index)
        self.multiplier = len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for i in range(0, len(self.ops), 2):
            a = self.ops[i](states[self.inputs[i]])
            b = self.ops[i + 1](states[self.inputs[i + 1]])
            states.append(a + b)
        return torch.cat([states[i] for i in self.concat], 1)


class AuxiliaryHead(nn.Module):
    """The DARTS auxiliary classifier on the 8x8 feature map at 2/3 depth (32x32 inputs)."""

    def __init__(self, c: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


class NetworkCIFAR(nn.Module):
    def __init__(
        self,
        genotype: Genotype,
        channels: int,
        layers: int,
        widths: Sequence[float],
        num_classes: int,
        in_channels: int,
        auxiliary: bool = False,
    ) -> None:
        super().__init__()
        if layers < 3:
            raise ConfigError(f"darts: layers must be >= 3 (two of them reduce), got {layers}")
        stage_c = stage_channels("darts", [channels, 2 * channels, 4 * channels], widths)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 3 * channels, 3, padding=1, bias=False), nn.BatchNorm2d(3 * channels)
        )
        c_pp, c_p = 3 * channels, 3 * channels
        reductions = (layers // 3, 2 * layers // 3)
        self.cells = nn.ModuleList()
        reduction_prev = False
        self.aux_index = reductions[1]
        aux_c = 0
        for i in range(layers):
            stage = sum(i >= r for r in reductions)
            reduction = i in reductions
            cell = Cell(genotype, c_pp, c_p, stage_c[stage], reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * stage_c[stage]
            if i == self.aux_index:
                aux_c = c_p
        self.auxiliary = AuxiliaryHead(aux_c, num_classes) if auxiliary else None
        self.fc = nn.Linear(c_p, num_classes)
        # The auxiliary logits of the last training forward pass (the trainer may add 0.4 x their loss).
        self.aux_logits: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == self.aux_index and self.auxiliary is not None and self.training:
                self.aux_logits = self.auxiliary(s1)
        return self.fc(nn.functional.adaptive_avg_pool2d(s1, 1).flatten(1))


def genotype_names() -> list[str]:
    return sorted(GENOTYPES)


@register_model
def darts(
    num_classes: int = 10,
    in_channels: int = 3,
    genotype: str = "DARTS_V2",
    channels: int = 36,
    layers: int = 20,
    widths: tuple[float, float, float] = (1.0, 1.0, 1.0),
    auxiliary: bool = False,
) -> NetworkCIFAR:
    """A genotype network: ``genotype`` one of DARTS_V2, PC_DARTS, NASNet, AmoebaNet, RACL."""
    if genotype not in GENOTYPES:
        raise ConfigError(f"darts: unknown genotype {genotype!r}; known: {', '.join(genotype_names())}")
    return NetworkCIFAR(GENOTYPES[genotype], channels, layers, widths, num_classes, in_channels, auxiliary)
