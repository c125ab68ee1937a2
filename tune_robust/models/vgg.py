"""CIFAR-style VGG-11/16 (Simonyan & Zisserman 2015) with BatchNorm and one linear classifier, as the
robustness papers train them (VGG-16 14.73M, VGG-11 9.23M parameters). ``widths`` scales the five
stages (64, 128, 256, 512, 512 channels); VGG-11-R reduces the last stage to 0.4 (the w10-10-4 rule)."""

from __future__ import annotations

import torch
from torch import nn

from tune_robust.models._registry import register_model
from tune_robust.models._stages import stage_channels

# Convolutions per stage; each stage ends with a 2x2 max-pool.
_LAYOUT = {"vgg11": (1, 1, 2, 2, 2), "vgg16": (2, 2, 3, 3, 3)}
_BASE = (64, 128, 256, 512, 512)


class VGG(nn.Module):
    def __init__(self, convs: tuple[int, ...], widths: tuple[float, ...], num_classes: int, in_channels: int):
        super().__init__()
        chans = stage_channels("vgg", _BASE, widths)
        stages = []
        ch = in_channels
        for n, c in zip(convs, chans, strict=True):
            layers: list[nn.Module] = []
            for _ in range(n):
                layers += [nn.Conv2d(ch, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
                ch = c
            # ceil_mode: 28x28 inputs (MNIST) still reach 1x1 after five pools, as 32x32 do.
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(ch, num_classes)

    def feature_blocks(self) -> list[tuple[str, nn.Module]]:
        return [(f"stages.{i}", s) for i, s in enumerate(self.stages)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


@register_model
def vgg11(
    num_classes: int = 10,
    in_channels: int = 3,
    widths: tuple[float, float, float, float, float] = (1.0, 1.0, 1.0, 1.0, 1.0),
) -> VGG:
    return VGG(_LAYOUT["vgg11"], widths, num_classes, in_channels)


@register_model
def vgg16(
    num_classes: int = 10,
    in_channels: int = 3,
    widths: tuple[float, float, float, float, float] = (1.0, 1.0, 1.0, 1.0, 1.0),
) -> VGG:
    return VGG(_LAYOUT["vgg16"], widths, num_classes, in_channels)
