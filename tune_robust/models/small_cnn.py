"""The small MNIST CNNs of the robustness literature.

``madry_cnn``: Madry et al. (2018) MNIST model, conv5x5-32, pool, conv5x5-64, pool, fc-1024, fc
(3.27M parameters at 28x28). ``small_cnn``: the SmallCNN of the TRADES code (Zhang et al. 2019),
4 conv3x3 layers (32, 32, 64, 64) with two max-pools, fc-200, fc-200 (0.31M at 28x28). ``image_size``
sets the flattened size for other inputs (e.g. 8 for the embedded digits set). ``wong_mnist_cnn``: the
MNIST network of Wong et al. (2020)'s Fast AT code, conv4x4-16/2, conv4x4-32/2, fc-100, fc (0.17M).
"""

from __future__ import annotations

from torch import nn

from tune_robust.errors import ConfigError
from tune_robust.models._registry import register_model


@register_model
def madry_cnn(num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> nn.Module:
    if image_size % 4:
        raise ConfigError(f"madry_cnn: image_size must be a multiple of 4, got {image_size}")
    side = image_size // 4
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * side * side, 1024),
        nn.ReLU(),
        nn.Linear(1024, num_classes),
    )


@register_model
def small_cnn(
    num_classes: int = 10, in_channels: int = 1, image_size: int = 28, dropout: float = 0.5
) -> nn.Module:
    side = ((image_size - 4) // 2 - 4) // 2
    if side < 1:
        raise ConfigError(f"small_cnn: image_size {image_size} is too small (needs >= 14)")
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * side * side, 200),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(200, 200),
        nn.ReLU(),
        nn.Linear(200, num_classes),
    )


@register_model
def wong_mnist_cnn(num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> nn.Module:
    if image_size % 4:
        raise ConfigError(f"wong_mnist_cnn: image_size must be a multiple of 4, got {image_size}")
    side = image_size // 4
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * side * side, 100),
        nn.ReLU(),
        nn.Linear(100, num_classes),
    )
