"""CIFAR-style ResNets (3x3 stem, no max-pool): ResNet-18/50 (He et al. 2016) and PreAct ResNet-18
(He et al. 2016b), the variants the robustness literature trains (RobNet supplement Table 3:
ResNet-18 11.17M, ResNet-50 23.52M parameters at 10 classes). ``widths`` scales each of the four stages'
channels (64, 128, 256, 512) and ``width`` is the stem/first-stage base (64), for narrow proxies.

Checkpoints in the pytorch-cifar layout (``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``linear``: the
ResNets of TRADES, MART, Rice et al., Wong et al. and AutoAttack's example) load unchanged: the layouts
below rename them to ours."""

from __future__ import annotations

import re
from collections.abc import Set

import torch
import torch.nn.functional as F
from torch import nn

from tune_robust.models._registry import register_model
from tune_robust.models._stages import stage_channels
from tune_robust.models.layouts import Candidate, Layout, Shapes, register_layout, rename_top
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
def resnet34(
    num_classes: int = 10,
    in_channels: int = 3,
    widths: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
    width: int = 64,
) -> ResNet:
    return ResNet(BasicBlock, (3, 4, 6, 3), widths, width, num_classes, in_channels)


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


_LAYER = re.compile(r"^layer(\d+)\.")


def _stage(key: str) -> str:
    """``layer3.1.conv1.weight`` -> ``stages.2.1.conv1.weight``."""
    return _LAYER.sub(lambda m: f"stages.{int(m.group(1)) - 1}.", key)


@register_layout("pytorch_cifar_resnet")
class PytorchCifarResNet(Layout):
    source = (
        "the pytorch-cifar ResNet (kuangliu): TRADES, MART, AutoAttack's example model_test.pt, "
        "most 'ResNet-18' robust checkpoints"
    )
    inputs = (
        "[0, 1] pixels for the TRADES/MART/AutoAttack checkpoints; models trained with a normalising "
        "data loader need eval.input_mean/std (pytorch-cifar's own: mean 0.4914,0.4822,0.4465, "
        "std 0.2023,0.1994,0.2010)"
    )

    @classmethod
    def recognises(cls, keys: Set[str]) -> bool:
        return {"conv1.weight", "bn1.weight", "layer1.0.conv1.weight"} <= keys

    @classmethod
    def rename(cls, key: str) -> str | None:
        return _stage(rename_top(key, {"conv1": "stem", "bn1": "stem_bn", "linear": "fc"}))

    @classmethod
    def candidates(cls, shapes: Shapes) -> list[Candidate]:
        return resnet_candidates(shapes)


@register_layout("pytorch_cifar_preact_resnet")
class PytorchCifarPreActResNet(Layout):
    source = "the PreAct ResNet of Rice et al. (robust_overfitting) and Wong et al. (fast_adversarial)"
    inputs = (
        "normalised: both repositories feed (x - mean) / std with mean 0.4914,0.4822,0.4465 and std "
        "0.2471,0.2435,0.2616: pass them as eval.input_mean/std"
    )

    @classmethod
    def recognises(cls, keys: Set[str]) -> bool:
        needed = {"conv1.weight", "layer1.0.bn1.weight", "layer1.0.conv1.weight"}
        return needed <= keys and "bn1.weight" not in keys

    @classmethod
    def rename(cls, key: str) -> str | None:
        key = _stage(rename_top(key, {"conv1": "stem", "bn": "final_bn", "linear": "fc"}))
        return key.replace(".shortcut.0.", ".shortcut.")  # their 1x1 conv sits in a Sequential, ours bare

    @classmethod
    def candidates(cls, shapes: Shapes) -> list[Candidate]:
        return resnet_candidates(shapes)


def resnet_candidates(shapes: Shapes) -> list[Candidate]:
    """Our ResNets with the stage widths of ``shapes`` (our names); [] when it is not a 4-stage ResNet."""
    if not {"stem.weight", "fc.weight", "stages.0.0.conv1.weight"} <= set(shapes) or "bn.weight" in shapes:
        return []
    width = shapes["stem.weight"][0]
    firsts = [shapes.get(f"stages.{s}.0.conv1.weight") for s in range(4)]
    if width <= 0 or any(f is None for f in firsts):
        return []
    bottleneck = "stages.0.0.conv3.weight" in shapes
    preact = "final_bn.weight" in shapes
    widths = tuple(f[0] / (width * 2**s) for s, f in enumerate(firsts) if f is not None)
    kwargs: dict[str, object] = {}
    if width != 64:
        kwargs["width"] = width
    if any(w != 1 for w in widths):
        kwargs["widths"] = widths
    names = ["preact_resnet18"] if preact else (["resnet50"] if bottleneck else ["resnet18", "resnet34"])
    classes, channels = shapes["fc.weight"][0], shapes["stem.weight"][1]
    return [Candidate(n, kwargs, classes, channels) for n in names]
