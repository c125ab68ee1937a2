"""CIFAR-style DenseNet-121 (Huang et al. 2017): growth 32, dense blocks of 6/12/24/16 bottleneck layers,
compression 0.5, 3x3 stem of 2 x growth channels (6.96M parameters; RobNet's table lists 6.95M).

Stages are parameterised as in Huang et al. (2021)'s released RobustDenseNet: each dense block starts
from a set number of channels, [2, 4, 8, 16] x growth (= 64, 128, 256, 512, which compression 0.5
gives in the standard network), with one growth rate throughout; the transition before block i+1
outputs block i+1's channels. ``widths`` scales those per-stage channels: DN-121-R (last stage 0.4, so
205 channels enter the last block) has 6.00M parameters, Huang Table 2's number."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tune_robust.models._registry import register_model
from tune_robust.models._stages import stage_channels


class DenseBottleneck(nn.Module):
    """BN-ReLU-conv1x1 (4 x growth) - BN-ReLU-conv3x3 (growth), output concatenated to the input."""

    def __init__(self, in_ch: int, growth: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([out, x], 1)


class Transition(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_ch)
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2, ceil_mode=True)


class DenseNet(nn.Module):
    def __init__(
        self,
        blocks: tuple[int, ...],
        growth: int,
        widths: tuple[float, ...],
        num_classes: int,
        in_channels: int,
        reduction: float = 0.5,
    ) -> None:
        super().__init__()
        # Channels entering each block in the standard network (stem 2g, then compression).
        base = [2 * growth]
        for n in blocks[:-1]:
            base.append(math.floor((base[-1] + n * growth) * reduction))
        starts = stage_channels("densenet", base, widths)
        ch = starts[0]
        self.stem = nn.Conv2d(in_channels, ch, 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for i, n in enumerate(blocks):
            layers: list[nn.Module] = []
            for _ in range(n):
                layers.append(DenseBottleneck(ch, growth))
                ch += growth
            if i < len(blocks) - 1:
                layers.append(Transition(ch, starts[i + 1]))
                ch = starts[i + 1]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.bn = nn.BatchNorm2d(ch)
        self.fc = nn.Linear(ch, num_classes)

    def feature_blocks(self) -> list[tuple[str, nn.Module]]:
        return [(f"stages.{i}", s) for i, s in enumerate(self.stages)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem(x)
        for stage in self.stages:
            out = stage(out)
        out = F.relu(self.bn(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


@register_model
def densenet121(
    num_classes: int = 10,
    in_channels: int = 3,
    widths: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
    growth: int = 32,
) -> DenseNet:
    return DenseNet((6, 12, 24, 16), growth, widths, num_classes, in_channels)
