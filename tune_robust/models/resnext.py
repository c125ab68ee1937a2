"""CIFAR-style ResNeXt-29 (Xie et al. 2017), 2x64d: three stages of three grouped bottleneck blocks,
cardinality 2, bottleneck width 64 doubling per stage, 1x1 stem (9.13M parameters, RobNet supplement
Table 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tune_robust.errors import ConfigError
from tune_robust.models._registry import register_model


class ResNeXtBlock(nn.Module):
    expansion = 2

    def __init__(self, in_ch: int, cardinality: int, bottleneck_width: int, stride: int) -> None:
        super().__init__()
        group = cardinality * bottleneck_width
        out_ch = self.expansion * group
        self.conv1 = nn.Conv2d(in_ch, group, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(group)
        self.conv2 = nn.Conv2d(group, group, 3, stride, 1, groups=cardinality, bias=False)
        self.bn2 = nn.BatchNorm2d(group)
        self.conv3 = nn.Conv2d(group, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class ResNeXt(nn.Module):
    def __init__(
        self,
        blocks: tuple[int, ...],
        cardinality: int,
        bottleneck_width: int,
        num_classes: int,
        in_channels: int,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        ch = 64
        stages = []
        width = bottleneck_width
        for i, n in enumerate(blocks):
            layers = []
            for j in range(n):
                layers.append(ResNeXtBlock(ch, cardinality, width, (1 if i == 0 else 2) if j == 0 else 1))
                ch = ResNeXtBlock.expansion * cardinality * width
            stages.append(nn.Sequential(*layers))
            width *= 2
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stages(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


@register_model
def resnext29_2x64d(num_classes: int = 10, in_channels: int = 3, bottleneck_width: int = 64) -> ResNeXt:
    """``bottleneck_width`` of the first stage (64 = the 9.13M network; smaller for cheap proxies)."""
    if bottleneck_width < 1:
        raise ConfigError(f"resnext29_2x64d: bottleneck_width must be >= 1, got {bottleneck_width}")
    return ResNeXt((3, 3, 3), 2, bottleneck_width, num_classes, in_channels)
