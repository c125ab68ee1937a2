"""WideResNet with per-stage depth and width (pre-activation basic blocks), as in Huang et al. 2021.

Stage i has ``depths[i]`` blocks of ``round(base_i * widths[i])`` channels, base = 16, 32, 64, after a
16-channel 3x3 stem. ``wrn_34_10`` is d5-5-5 / w10-10-10; the paper's ``WRN-34-R`` is w20-20-8.

Checkpoints in the TRADES/RobustBench layout (``conv1``, ``block1.layer.0.bn1``, ..., ``bn1``, ``fc``)
and in Huang et al.'s RobustWideResNet layout (``stem_conv``, ``blocks.0.layer.0.bn1``, ...) load
unchanged: the layouts below rename them to ours.
"""

from __future__ import annotations

import re
from collections.abc import Sequence, Set

import torch
import torch.nn.functional as F
from torch import nn

from tune_robust.errors import ConfigError
from tune_robust.models._registry import register_model
from tune_robust.models.layouts import Candidate, Layout, Shapes, register_layout, rename_top

_BASE_CHANNELS = (16, 32, 64)
_STRIDES = (1, 2, 2)


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 with an identity or 1x1-conv shortcut (also PreAct ResNet's block)."""

    expansion = 1

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.shortcut = None
        if in_ch != out_ch or stride != 1:
            self.shortcut = nn.Conv2d(in_ch, out_ch, 1, stride, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        # As in the reference WRN: a projecting shortcut sees the pre-activated input.
        skip = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class WideResNet(nn.Module):
    def __init__(
        self,
        depths: Sequence[int] = (5, 5, 5),
        widths: Sequence[float] = (10, 10, 10),
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(depths) != 3 or len(widths) != 3:
            raise ConfigError(f"WRN needs 3 stage depths and 3 widths, got {list(depths)} and {list(widths)}")
        if any(d < 0 for d in depths):
            raise ConfigError(f"WRN stage depths must be >= 0, got {list(depths)}")
        if any(w <= 0 for w in widths):
            raise ConfigError(f"WRN stage widths must be > 0, got {list(widths)}")
        self.depths = tuple(int(d) for d in depths)
        self.widths = tuple(float(w) for w in widths)
        self.stem = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        ch = 16
        stages = []
        for depth, width, base, stride in zip(
            self.depths, self.widths, _BASE_CHANNELS, _STRIDES, strict=True
        ):
            out = max(1, round(base * width))
            blocks = []
            for i in range(depth):
                blocks.append(PreActBlock(ch, out, stride if i == 0 else 1))
                ch = out
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.bn = nn.BatchNorm2d(ch)
        self.fc = nn.Linear(ch, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem(x)
        for stage in self.stages:
            out = stage(out)
        out = F.relu(self.bn(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


@register_model
def wrn(
    num_classes: int = 10,
    in_channels: int = 3,
    depths: tuple[int, int, int] = (5, 5, 5),
    widths: tuple[float, float, float] = (10.0, 10.0, 10.0),
    width_scale: float = 1.0,
) -> WideResNet:
    """Any WRN: per-stage depths (D1, D2, D3) and width multipliers (W1, W2, W3). ``width_scale``
    multiplies all three (smoke fidelities keep the paper's W_i and shrink the network with it)."""
    if not width_scale > 0:
        raise ConfigError(f"wrn: width_scale must be > 0, got {width_scale}")
    return WideResNet(depths, tuple(w * width_scale for w in widths), num_classes, in_channels)


@register_model
def wrn_28_10(num_classes: int = 10, in_channels: int = 3) -> WideResNet:
    return WideResNet((4, 4, 4), (10, 10, 10), num_classes, in_channels)


@register_model
def wrn_34_10(num_classes: int = 10, in_channels: int = 3) -> WideResNet:
    return WideResNet((5, 5, 5), (10, 10, 10), num_classes, in_channels)


@register_model
def wrn_34_12(num_classes: int = 10, in_channels: int = 3) -> WideResNet:
    return WideResNet((5, 5, 5), (12, 12, 12), num_classes, in_channels)


@register_model
def wrn_34_r(num_classes: int = 10, in_channels: int = 3) -> WideResNet:
    """Huang et al.'s WRN-34-R: the w10-10-4 rule scaled by gamma = 2 (w20-20-8, d5-5-5)."""
    return WideResNet((5, 5, 5), (20, 20, 8), num_classes, in_channels)


_BLOCK = re.compile(r"^block(\d)\.layer\.(\d+)\.")
_BLOCKS = re.compile(r"^blocks\.(\d+)\.layer\.(\d+)\.")


@register_layout("trades_wideresnet")
class TradesWideResNet(Layout):
    source = (
        "the WideResNet of the TRADES code and RobustBench's model zoo (TRADES, MART, AWP, most "
        "'WRN-34-10' and 'WRN-28-10' robust checkpoints)"
    )
    inputs = (
        "[0, 1] pixels (RobustBench models take [0, 1]; those trained normalised carry it inside "
        "and are another architecture)"
    )

    @classmethod
    def recognises(cls, keys: Set[str]) -> bool:
        return {"conv1.weight", "block1.layer.0.conv1.weight", "bn1.weight", "fc.weight"} <= keys

    @classmethod
    def rename(cls, key: str) -> str | None:
        if key.startswith("sub_block1."):
            return None  # TRADES' WRN builds a second first block its forward pass never calls
        key = _BLOCK.sub(lambda m: f"stages.{int(m.group(1)) - 1}.{m.group(2)}.", key)
        return rename_top(key, {"conv1": "stem", "bn1": "bn"}).replace(".convShortcut.", ".shortcut.")

    @classmethod
    def candidates(cls, shapes: Shapes) -> list[Candidate]:
        return wrn_candidates(shapes)


@register_layout("robust_wide_resnet")
class RobustWideResNet(Layout):
    source = "Huang et al.'s RobustWideResNet (HanxunH/RobustWRN: WRN-34-R and the depth/width grid)"
    inputs = "[0, 1] pixels (their data pipeline only converts to tensors)"

    @classmethod
    def recognises(cls, keys: Set[str]) -> bool:
        return {"stem_conv.weight", "blocks.0.layer.0.conv1.weight", "bn1.weight", "fc.weight"} <= keys

    @classmethod
    def rename(cls, key: str) -> str | None:
        key = _BLOCKS.sub(lambda m: f"stages.{m.group(1)}.{m.group(2)}.", key)
        return rename_top(key, {"stem_conv": "stem", "bn1": "bn"}).replace(".convShortcut.", ".shortcut.")

    @classmethod
    def candidates(cls, shapes: Shapes) -> list[Candidate]:
        return wrn_candidates(shapes)


_NAMED = {
    "wrn_28_10": ((4, 4, 4), (10.0, 10.0, 10.0)),
    "wrn_34_10": ((5, 5, 5), (10.0, 10.0, 10.0)),
    "wrn_34_12": ((5, 5, 5), (12.0, 12.0, 12.0)),
    "wrn_34_r": ((5, 5, 5), (20.0, 20.0, 8.0)),
}


def wrn_candidates(shapes: Shapes) -> list[Candidate]:
    """Our WRN with the depths and widths of ``shapes`` (our names); [] when it is not a 3-stage WRN."""
    if not {"stem.weight", "bn.weight", "fc.weight"} <= set(shapes):
        return []
    blocks = {tuple(int(p) for p in k.split(".")[1:3]) for k in shapes if k.startswith("stages.")}
    depths = tuple(sum(1 for s, _ in blocks if s == stage) for stage in range(3))
    if len(blocks) != sum(depths) or any(d == 0 for d in depths):
        return []
    widths = tuple(shapes[f"stages.{s}.0.conv1.weight"][0] / b for s, b in enumerate(_BASE_CHANNELS))
    classes, channels = shapes["fc.weight"][0], shapes["stem.weight"][1]
    named = [n for n, (d, w) in _NAMED.items() if d == depths and w == widths]
    out = [Candidate(n, {}, classes, channels) for n in named]
    return [*out, Candidate("wrn", {"depths": depths, "widths": widths}, classes, channels)]
