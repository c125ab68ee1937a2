"""CIFAR-style MobileNetV2 (Sandler et al. 2018): stride-1 stem and first stages, 1280-channel head
(2.30M parameters, RobNet supplement Table 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tune_robust.errors import ConfigError
from tune_robust.models._registry import register_model

# (expansion, out channels, blocks, first stride); strides of the 32x32 variant.
_CFG = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidualBlock(nn.Module):
    """Expand 1x1 - depthwise 3x3 - project 1x1; a (projected) shortcut at stride 1."""

    def __init__(self, in_ch: int, out_ch: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = expansion * in_ch
        self.conv1 = nn.Conv2d(in_ch, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.conv3 = nn.Conv2d(hidden, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.stride = stride
        self.shortcut: nn.Module | None = None
        if stride == 1 and in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.stride != 1:
            return out
        return out + (x if self.shortcut is None else self.shortcut(x))


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width_mult: float = 1.0) -> None:
        super().__init__()

        def scaled(c: int) -> int:
            return max(1, round(c * width_mult))

        ch = scaled(32)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU()
        )
        blocks = []
        for expansion, out, n, stride in _CFG:
            for i in range(n):
                blocks.append(InvertedResidualBlock(ch, scaled(out), expansion, stride if i == 0 else 1))
                ch = scaled(out)
        self.blocks = nn.Sequential(*blocks)
        head = scaled(1280)
        self.head = nn.Sequential(nn.Conv2d(ch, head, 1, bias=False), nn.BatchNorm2d(head), nn.ReLU())
        self.fc = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.blocks(self.stem(x)))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


@register_model
def mobilenet_v2(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0) -> MobileNetV2:
    """``width_mult`` scales every layer's channels (1.0 = the 2.30M network)."""
    if not width_mult > 0:
        raise ConfigError(f"mobilenet_v2: width_mult must be > 0, got {width_mult}")
    return MobileNetV2(num_classes, in_channels, width_mult)
