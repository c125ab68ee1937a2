"""RobNet (Guo et al., CVPR'20): cells of 4 nodes over 14 edges, each edge a two-bit code, and the
one-shot supernet they are sampled from.

An edge code is ``00`` zero, ``01`` a 3x3 separable conv, ``10`` identity (FactorizedReduce on a stride-2
edge), ``11`` both, summed. Node i sums its edges from ``[c_{k-2}, c_{k-1}, n_0, ..., n_{i-1}]``; the 14
codes list node 0's 2 edges, node 1's 3, node 2's 4, node 3's 5 (the published order, in
../shared/data/robnet/robnet_codes.json); the cell outputs the concatenation of the 4 nodes. The layout
follows the authors' release: a 3x3 conv stem to 3C channels with affine BatchNorm, reduction cells at
L//3 and 2L//3 doubling the channels, ReLU-1x1conv-BN preprocessing (FactorizedReduce for c_{k-2} after
a reduction), BatchNorm without affine parameters inside the cells (``affine=True`` gives them one),
global average pooling and a linear classifier. The operations are the DARTS family's
(:mod:`tune_robust.models.ops`) in the release's module layout: :class:`FlatSepConv` and
:class:`CroppedFactorizedReduce`.

Every branch of an edge is a submodule named by its position (``cells.3.edges.5.conv``), so a network
with any code has a subset of the supernet's parameters under the same names: the supernet (every edge
``11``) runs any sub-network by switching branches off, and a sampled sub-network's standalone model
inherits exactly the supernet's weights for the ops it keeps (:mod:`tune_robust.models.oneshot`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence, Set
from typing import Any

import torch
from torch import nn

from tune_robust.errors import ConfigError
from tune_robust.models._registry import register_model
from tune_robust.models.layouts import Candidate, Layout, Shapes, register_layout
from tune_robust.models.oneshot import SearchSpace, Supernet, arch_record
from tune_robust.models.ops import CroppedFactorizedReduce, FlatSepConv, ReLUConvBN, Zero
from tune_robust.models.robnet_codes import (
    EDGES,
    FREE,
    LARGE,
    NODES,
    Cell,
    arch_stats,
    edge_inputs,
    format_code,
    parse_code,
)


class Edge(nn.Module):
    """One edge: a ``conv`` branch (code bit 2) and a ``skip`` branch (bit 1), each built only if some code
    this network can run uses it (the supernet builds both)."""

    def __init__(self, c: int, stride: int, code: str, affine: bool) -> None:
        super().__init__()
        self.stride = stride
        self.code = code
        self.conv = FlatSepConv(c, c, 3, stride, 1, affine) if code[1] == "1" else None
        self.skip: nn.Module | None = None
        if code[0] == "1":
            self.skip = nn.Identity() if stride == 1 else CroppedFactorizedReduce(c, c, affine)

    def forward(self, x: torch.Tensor, code: str) -> torch.Tensor | None:
        out = None
        if code[1] == "1":
            assert self.conv is not None, f"edge built for code {self.code} cannot run code {code}"
            out = self.conv(x)
        if code[0] == "1":
            assert self.skip is not None, f"edge built for code {self.code} cannot run code {code}"
            out = self.skip(x) if out is None else out + self.skip(x)
        return out


class RobNetCell(nn.Module):
    def __init__(
        self, code: Cell, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool, affine: bool
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.code = code
        self.preprocess0 = (
            CroppedFactorizedReduce(c_pp, c, affine)
            if reduction_prev
            else ReLUConvBN(c_pp, c, 1, 1, 0, affine)
        )
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0, affine)
        self.zero = Zero(2 if reduction else 1)
        self.inputs = edge_inputs()
        self.edges = nn.ModuleList(
            Edge(c, 2 if reduction and j < 2 else 1, code[e], affine) for e, j in enumerate(self.inputs)
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, code: Cell | None = None) -> torch.Tensor:
        code = code or self.code
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        e = 0
        for i in range(NODES):
            total: torch.Tensor | None = None
            for j in range(2 + i):
                out = self.edges[e](states[j], code[e])
                if out is not None:
                    total = out if total is None else total + out
                e += 1
            if total is None:  # every edge zero: the node is zeros (as the release's Zero ops give)
                total = self.zero(states[1])
            states.append(total)
        return torch.cat(states[2:], 1)


class RobNetwork(nn.Module):
    """A RobNet of ``cells`` codes (one shared by all cells, or one per cell). ``all_branches`` builds
    every branch of every edge (the supernet's parameters) while running ``cells``."""

    def __init__(
        self,
        cells: Sequence[Cell],
        channels: int,
        layers: int,
        num_classes: int,
        in_channels: int,
        affine: bool = False,
        stem_multiplier: int = 3,
        all_branches: bool = False,
    ) -> None:
        super().__init__()
        if layers < 3:
            raise ConfigError(f"robnet: layers must be >= 3 (two of them reduce), got {layers}")
        if len(cells) not in (1, layers):
            raise ConfigError(
                f"robnet: give 1 cell code (shared) or one per cell ({layers}), got {len(cells)}"
            )
        self.layers = layers
        self.share = len(cells) == 1
        self.arch: tuple[Cell, ...] = expand(cells, layers)
        c_stem = stem_multiplier * channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem)
        )
        c_pp, c_p, c = c_stem, c_stem, channels
        reduction_prev = False
        self.cells = nn.ModuleList()
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            c = 2 * c if reduction else c
            built = ("11",) * EDGES if all_branches else self.arch[i]
            self.cells.append(RobNetCell(built, c_pp, c_p, c, reduction, reduction_prev, affine))
            reduction_prev = reduction
            c_pp, c_p = c_p, NODES * c
        self.classifier = nn.Linear(c_p, num_classes)
        # Called with (input c_{k-1}, output) of every cell during a forward pass when set (the
        # FSP-matrix distance reduces them as they come, so no feature map outlives its cell).
        self.feature_hook: Callable[[torch.Tensor, torch.Tensor], None] | None = None

    def arch_record(self) -> dict[str, Any]:
        """This network's architecture as a versioned record (``oneshot.arch_record``)."""
        cells = self.arch[:1] if self.share and len(set(self.arch)) == 1 else self.arch
        return arch_record(RobNetSpace(self.layers, len(cells) == 1), cells)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell, code in zip(self.cells, self.arch, strict=True):
            out = cell(s0, s1, code)
            if self.feature_hook is not None:
                self.feature_hook(s1, out)
            s0, s1 = s1, out
        return self.classifier(nn.functional.adaptive_avg_pool2d(s1, 1).flatten(1))


def expand(cells: Sequence[Sequence[str]], layers: int) -> tuple[Cell, ...]:
    """One code per cell (a single shared code repeated)."""
    codes = tuple(tuple(c) for c in cells)
    return codes * layers if len(codes) == 1 else codes


class RobNetSupernet(Supernet, RobNetwork):
    """The one-shot supernet: every branch built; runs the architecture last given to :meth:`use` (in
    train mode with sampling on, a fresh one per training batch)."""

    def use(self, arch: Sequence[Sequence[str]]) -> None:
        codes = expand(arch, self.layers)
        if len(codes) != self.layers:
            raise ConfigError(f"robnet supernet: {len(codes)} cell codes for {self.layers} cells")
        self.arch = codes


class RobNetSpace(SearchSpace):
    """RobNet architectures: one shared cell code (cell-based) or ``layers`` codes (cell-free).

    Sampling rules (``sample``): ``bernoulli`` sets each of the 28 bits (Algorithm 1's alpha) of a cell
    to 1 with probability ``keep`` (0.5: every code equally likely); ``density`` first draws a density
    d ~ U(0, 1) per architecture, then each bit with probability d (covers sparse and dense codes
    evenly, where bernoulli concentrates around 14 of 28 bits).
    """

    name = "robnet"
    builder = "robnet"
    arch_kwarg = "code"

    def __init__(self, layers: int = 20, share: bool = True) -> None:
        self.layers = layers
        self.share = share

    def sample(self, generator: torch.Generator, rule: Mapping[str, Any] | None = None) -> tuple[Cell, ...]:
        rule = dict(rule or {})
        sample = str(rule.pop("sample", "bernoulli"))
        keep = float(rule.pop("keep", 0.5))
        if rule:
            raise ConfigError(f"robnet sampling: unknown option(s) {sorted(rule)}; options: sample, keep")
        if sample not in ("bernoulli", "density"):
            raise ConfigError(f"robnet sampling rule must be 'bernoulli' or 'density', got {sample!r}")
        if not 0 < keep <= 1:
            raise ConfigError(f"robnet sampling: keep must be in (0, 1], got {keep}")
        device = generator.device  # not the default device (a model built under torch.device("meta"))
        p = float(torch.rand((), generator=generator, device=device)) if sample == "density" else keep
        n = 1 if self.share else self.layers
        bits = (torch.rand(n, 2 * EDGES, generator=generator, device=device) < p).tolist()
        return tuple(tuple(f"{int(row[2 * e])}{int(row[2 * e + 1])}" for e in range(EDGES)) for row in bits)

    def to_text(self, arch: Sequence[Sequence[str]]) -> str:
        return format_code(arch)

    def from_text(self, text: str) -> tuple[Cell, ...]:
        return parse_code(text)

    def stats(self, arch: Sequence[Sequence[str]]) -> dict[str, float]:
        return arch_stats(arch)


def _build(
    code: str, channels: int, layers: int, num_classes: int, in_channels: int, affine: bool
) -> RobNetwork:
    return RobNetwork(parse_code(code), channels, layers, num_classes, in_channels, affine)


@register_model
def robnet(
    num_classes: int = 10,
    in_channels: int = 3,
    code: str = LARGE,
    channels: int = 36,
    layers: int = 20,
    affine: bool = False,
) -> RobNetwork:
    """Any RobNet: ``code`` one cell code shared by every cell, or ``layers`` codes separated by ``/``."""
    return _build(code, channels, layers, num_classes, in_channels, affine)


@register_model
def robnet_large(num_classes: int = 10, in_channels: int = 3, affine: bool = False) -> RobNetwork:
    """RobNet-large: the published shared code at C=36, 20 cells (supplement Table 3: 6.89M)."""
    return _build(LARGE, 36, 20, num_classes, in_channels, affine)


@register_model
def robnet_large_v2(num_classes: int = 10, in_channels: int = 3, affine: bool = False) -> RobNetwork:
    """RobNet-large-v2: the same code at C=64, 33 cells (Table 3: 33.42M)."""
    return _build(LARGE, 64, 33, num_classes, in_channels, affine)


@register_model
def robnet_free(num_classes: int = 10, in_channels: int = 3, affine: bool = False) -> RobNetwork:
    """RobNet-free: the published 20 cell-free codes at C=36 (Table 3: 5.49M)."""
    return _build(FREE, 36, 20, num_classes, in_channels, affine)


@register_model
def robnet_supernet(
    num_classes: int = 10,
    in_channels: int = 3,
    channels: int = 36,
    layers: int = 20,
    share: bool = True,
    sample: str = "bernoulli",
    keep: float = 0.5,
    seed: int = 0,
    affine: bool = False,
) -> RobNetSupernet:
    """The one-shot supernet (every edge ``11``): each training batch runs a sampled sub-network
    (``share``: one code for all cells, else one per cell; ``sample``, ``keep``: the rule of
    RobNetSpace); eval mode runs the architecture last set with ``use`` (at first: every edge ``11``)."""
    net = RobNetSupernet(
        (("11",) * EDGES,), channels, layers, num_classes, in_channels, affine, all_branches=True
    )
    net.configure_sampling(RobNetSpace(layers, share), seed=seed, sample=sample, keep=keep)
    return net


# The authors' release wraps each edge's op in ``_ops.E.op`` (a ResSepConv's branches in ``conv``/``res``)
# and each ReLU-conv-BN preprocessing in ``op``; ours names the branches ``edges.E.conv``/``edges.E.skip``.
_RELEASE = (
    (re.compile(r"\._ops\.(\d+)\.op\.op\."), r".edges.\1.conv."),  # 01: SepConv
    (re.compile(r"\._ops\.(\d+)\.op\.conv\.op\."), r".edges.\1.conv."),  # 11: its SepConv
    (re.compile(r"\._ops\.(\d+)\.op\.res\."), r".edges.\1.skip."),  # 11 on a reduction: its FR
    (re.compile(r"\._ops\.(\d+)\.op\.(conv_1|conv_2|bn)\."), r".edges.\1.skip.\2."),  # 10: FR
    (re.compile(r"\.preprocess([01])\.op\."), r".preprocess\1."),  # ReLU-conv-BN
)


@register_layout("robnet_release")
class RobNetRelease(Layout):
    source = "the RobNet authors' release (gmh14/RobNets: RobNet-large, RobNet-large-v2, RobNet-free)"
    inputs = "[0, 1] pixels (their data pipeline only converts to tensors)"

    @classmethod
    def recognises(cls, keys: Set[str]) -> bool:
        return "classifier.weight" in keys and any("._ops." in k or ".preprocess1.op." in k for k in keys)

    @classmethod
    def rename(cls, key: str) -> str | None:
        for pattern, repl in _RELEASE:
            key = pattern.sub(repl, key)
        return key

    @classmethod
    def candidates(cls, shapes: Shapes) -> list[Candidate]:
        return robnet_candidates(shapes)


def robnet_candidates(shapes: Shapes) -> list[Candidate]:
    """The published RobNets (our names); the fit check picks the one whose tensors match."""
    if not {"stem.0.weight", "classifier.weight"} <= set(shapes):
        return []
    classes, channels = shapes["classifier.weight"][0], shapes["stem.0.weight"][1]
    return [Candidate(n, {}, classes, channels) for n in ("robnet_large", "robnet_free", "robnet_large_v2")]
