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

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from tune_robust.errors import ConfigError
from tune_robust.models._registry import register_model
from tune_robust.models._stages import stage_channels
from tune_robust.models.oneshot import SearchSpace, arch_record
from tune_robust.models.ops import OPS, PRIMITIVES, FactorizedReduce, ReLUConvBN


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


def _cell_text(edges: Sequence[tuple[str, int]], concat: Sequence[int]) -> str:
    text = " ".join(f"{op}:{i}" for op, i in edges)
    default = tuple(range(2, 2 + len(edges) // 2))
    return text if tuple(concat) == default else f"{text} @{','.join(map(str, concat))}"


def format_genotype(genotype: Genotype) -> str:
    """The text form ``parse_genotype`` reads: ``normal | reduce``, each ``op:input`` per edge (two per
    node, in node order), with ``@i,j,..`` when the concatenated states are not all intermediate nodes."""
    return (
        f"{_cell_text(genotype.normal, genotype.normal_concat)} | "
        f"{_cell_text(genotype.reduce, genotype.reduce_concat)}"
    )


def _parse_cell(text: str, which: str) -> tuple[tuple[tuple[str, int], ...], tuple[int, ...]]:
    body, _, concat_text = text.partition("@")
    edges: list[tuple[str, int]] = []
    for item in body.split():
        op, sep, index = item.partition(":")
        if not sep or not index.strip().isdigit():
            raise ConfigError(f"genotype {which} cell: {item!r} is not op:input (e.g. sep_conv_3x3:0)")
        if op not in OPS:
            raise ConfigError(
                f"genotype {which} cell: unknown operation {op!r}; known: {', '.join(sorted(OPS))}"
            )
        edges.append((op, int(index)))
    if not edges or len(edges) % 2:
        raise ConfigError(f"genotype {which} cell has {len(edges)} edges; each node takes two")
    for k, (name, source) in enumerate(edges):
        if source >= 2 + k // 2:
            raise ConfigError(
                f"genotype {which} cell: edge {name}:{source} of node {2 + k // 2} reads a state that does "
                f"not exist yet (inputs are 0, 1 and earlier nodes)"
            )
    nodes = len(edges) // 2
    try:
        concat = tuple(int(c) for c in concat_text.split(",")) if concat_text.strip() else ()
    except ValueError:
        raise ConfigError(f"genotype {which} cell: @{concat_text} is not a comma-separated list") from None
    concat = concat or tuple(range(2, 2 + nodes))
    if any(not 0 <= c < 2 + nodes for c in concat):
        raise ConfigError(f"genotype {which} cell: concat {concat} names states outside 0..{1 + nodes}")
    return tuple(edges), concat


def parse_genotype(text: str) -> Genotype:
    """A genotype from its text form (``format_genotype``)."""
    parts = text.split("|")
    if len(parts) != 2:
        raise ConfigError(
            f"genotype text needs a normal and a reduction cell separated by '|', got {text!r} "
            f"(or give a published name: {', '.join(sorted(GENOTYPES))})"
        )
    normal, normal_concat = _parse_cell(parts[0], "normal")
    reduce, reduce_concat = _parse_cell(parts[1], "reduction")
    return Genotype(normal, normal_concat, reduce, reduce_concat)


def resolve_genotype(genotype: str) -> Genotype:
    """A published genotype by name, or any genotype by its text form."""
    if genotype in GENOTYPES:
        return GENOTYPES[genotype]
    if ":" in genotype:
        return parse_genotype(genotype)
    raise ConfigError(
        f"darts: unknown genotype {genotype!r}; known: {', '.join(genotype_names())}, or a genotype "
        f"text such as {format_genotype(GENOTYPES['DARTS_V2'])!r}"
    )


class DartsSpace(SearchSpace):
    """Genotypes of the DARTS cell space (``nodes`` intermediate nodes, each two edges from distinct
    earlier states, one of the 7 non-zero PRIMITIVES each); the ``darts`` builder takes the text."""

    name = "darts"
    builder = "darts"
    arch_kwarg = "genotype"

    def __init__(self, nodes: int = 4) -> None:
        self.nodes = nodes

    def sample(self, generator: torch.Generator, rule: Mapping[str, Any] | None = None) -> Genotype:
        """Uniform random genotype (random search's draw: DARTS' and PC-DARTS' random baseline)."""
        if rule:
            raise ConfigError(f"darts sampling takes no options, got {sorted(rule)}")
        ops = PRIMITIVES[1:]

        def cell() -> tuple[tuple[str, int], ...]:
            edges = []
            for node in range(self.nodes):
                inputs = torch.randperm(2 + node, generator=generator)[:2].tolist()
                for i in sorted(inputs):
                    edges.append((ops[int(torch.randint(len(ops), (), generator=generator))], int(i)))
            return tuple(edges)

        concat = tuple(range(2, 2 + self.nodes))
        return Genotype(cell(), concat, cell(), concat)

    def to_text(self, arch: Genotype) -> str:
        return format_genotype(arch)

    def from_text(self, text: str) -> Genotype:
        return parse_genotype(text)

    def stats(self, arch: Genotype) -> dict[str, float]:
        """Per cell type: parametric (conv) edges, skip connections and pooling edges."""
        out: dict[str, float] = {}
        for which, edges in (("normal", arch.normal), ("reduce", arch.reduce)):
            ops = [op for op, _ in edges]
            out[f"arch_{which}_convs"] = sum("conv" in op for op in ops)
            out[f"arch_{which}_skips"] = ops.count("skip_connect")
            out[f"arch_{which}_pools"] = sum("pool" in op for op in ops)
        return out


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
            self.ops.append(OPS[name](c, stride, True))
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
        self.genotype = genotype
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

    def arch_record(self) -> dict[str, Any]:
        """This network's genotype as a versioned record (``oneshot.arch_record``)."""
        return arch_record(DartsSpace(len(self.genotype.normal) // 2), self.genotype)

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
    """A genotype network: ``genotype`` one of DARTS_V2, PC_DARTS, NASNet, AmoebaNet, RACL, or a
    genotype's text (``normal | reduce`` as ``op:input`` pairs, e.g. a searched one's record)."""
    return NetworkCIFAR(
        resolve_genotype(genotype), channels, layers, widths, num_classes, in_channels, auxiliary
    )
