"""CIFAR-style ResNets (3x3 stem, no max-pool): ResNet-18/50 (He et al. 2016) and PreAct ResNet-18
(He et al. 2016b), the variants the robustness literature trains (RobNet supplement Table 3:
ResNet-18 11.17M, ResNet-50 23.52M parameters at 10 classes). ``widths`` scales each of the four stages'
channels (64, 128, 256, 512) and ``width`` is the stem/first-stage base (64), for narrow proxies."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tune_robust.models._registry import register_model
from tune_robust.models._stages import stage_channels
from tune_robust.models.wrn import PreActBlock

_STRIDES = (1, 2, 2, 2)


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.shortcut = _shortcut(in_ch, ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, ch: int, stride: int) -> None:
        super().__init__()
        out_ch = ch * self.expansion
        self.conv1 = nn.Conv2d(in_ch, ch, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.conv3 = nn.Conv2d(ch, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.shortcut = _shortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class ResNet(nn.Module):
    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck] | type[PreActBlock],
        depths: tuple[int, ...],
        widths: tuple[float, ...],
        width: int,
        num_classes: int,
        in_channels: int,
    ) -> None:
        super().__init__()
        chans = stage_channels("resnet", [width, 2 * width, 4 * width, 8 * width], widths)
        self.preact = block is PreActBlock
        self.stem = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.stem_bn = None if self.preact else nn.BatchNorm2d(width)
        ch = width
        stages = []
        for depth, c, stride in zip(depths, chans, _STRIDES, strict=True):
            blocks = []
            for i in range(depth):
                blocks.append(block(ch, c, stride if i == 0 else 1))
                ch = c * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.final_bn = nn.BatchNorm2d(ch) if self.preact else None
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem(x)
        if self.stem_bn is not None:
            out = F.relu(self.stem_bn(out))
        for stage in self.stages:
            out = stage(out)
        if self.final_bn is not None:
            out = F.relu(self.final_bn(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


@register_model
def resnet18(
    num_classes: int = 10,
    in_channels: int = 3,
    widths: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
    width: int = 64,
) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), widths, width, num_classes, in_channels)


@register_model
def resnet50(
    num_classes: int = 10,
    in_channels: int = 3,
    widths: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
    width: int = 64,
) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), widths, width, num_classes, in_channels)


@register_model
def preact_resnet18(
    num_classes: int = 10,
    in_channels: int = 3,
    widths: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
    width: int = 64,
) -> ResNet:
    """PreAct ResNet-18 (11.17M at width 64); ``width=16`` is a 16x cheaper proxy for CPU checks."""
    return ResNet(PreActBlock, (2, 2, 2, 2), widths, width, num_classes, in_channels)
