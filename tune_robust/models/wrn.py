"""WideResNet with per-stage depth and width (pre-activation basic blocks), as in Huang et al. 2021.

Stage i has ``depths[i]`` blocks of ``round(base_i * widths[i])`` channels, base = 16, 32, 64, after a
16-channel 3x3 stem. ``wrn_34_10`` is d5-5-5 / w10-10-10; the paper's ``WRN-34-R`` is w20-20-8.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tune_robust.errors import ConfigError
from tune_robust.models._registry import register_model

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
