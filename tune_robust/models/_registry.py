"""Model registry: a family registers builders; everything is built through ``create_model``."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from tune_robust.coerce import coerce_kwargs
from tune_robust.registry import Registry

ModelBuilder = Callable[..., nn.Module]
MODELS: Registry[ModelBuilder] = Registry("model", plugin="models")


def register_model(fn: ModelBuilder) -> ModelBuilder:
    """Register ``fn(num_classes=..., in_channels=..., **family_kwargs)`` under its function name."""
    return MODELS.register(fn.__name__)(fn)


def create_model(name: str, num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> nn.Module:
    """Build a registered model. Unknown keyword arguments raise a ConfigError naming the valid ones."""
    builder = MODELS.get(name)
    kwargs = coerce_kwargs(builder, kwargs, where=f"model {name!r}", skip=("num_classes", "in_channels"))
    return builder(num_classes=num_classes, in_channels=in_channels, **kwargs)


_RANDOM_FILLS = frozenset(
    getattr(torch.Tensor, n)
    for n in ("normal_", "uniform_", "random_", "bernoulli_", "exponential_", "cauchy_", "log_normal_")
)


class _NoRandomFillsOnMeta(TorchFunctionMode):
    """A random in-place fill of a meta tensor (``w.normal_()``, and the ``nn.init`` functions that call
    it without a torch-function hand-off, such as ``kaiming_normal_``) returns the tensor untouched. A meta
    tensor holds no data, and torch runs these fills through its Python reference implementations: the
    ``kaiming_normal_`` of the WRN builder took about half of each meta build. (``nn.init.uniform_`` and
    the default Conv/Linear init hand off first and still run; they are cheap.)"""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in _RANDOM_FILLS and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


# Functions whose output has their first argument's shape: a meta forward that only wants shapes skips
# them (torch runs normalisations on meta through slow Python decompositions: most of a MAC count's time).
_SHAPE_KEEPING = frozenset(
    (
        torch.nn.functional.batch_norm,
        torch.nn.functional.group_norm,
        torch.nn.functional.instance_norm,
        torch.nn.functional.layer_norm,
        torch.nn.functional.relu,
        torch.nn.functional.dropout,
        torch.relu,
        torch.relu_,
    )
)


class _ShapesOnlyOnMeta(TorchFunctionMode):
    """Shape-keeping functions (normalisations, ReLU, dropout) return their meta input unchanged."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in _SHAPE_KEEPING and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


def create_meta_model(name: str, num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> nn.Module:
    """``create_model`` on the meta device: shapes and structure, no memory, no weights drawn."""
    with torch.device("meta"), _NoRandomFillsOnMeta():
        return create_model(name, num_classes=num_classes, in_channels=in_channels, **kwargs)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates per image of ``model``'s convolutions and linear layers, from one forward
    pass on the meta device (no memory, nothing computed). A model built with ``create_meta_model`` is
    used as it is, any other one through a meta copy. Other operations (activations, pooling, attention
    products) are not counted."""
    if not all(t.is_meta for t in (*model.parameters(), *model.buffers())):
        model = copy.deepcopy(model).to("meta")
    total = 0

    def conv(m: nn.Conv2d, _i: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m: nn.Linear, _i: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += out[0].numel() * m.in_features

    hooks = [
        m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    was_training = model.training  # (eval: a train-mode forward may take other paths, e.g. an aux head)
    try:
        with torch.no_grad(), _ShapesOnlyOnMeta():
            model.eval()(torch.empty(1, *input_shape, device="meta"))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return total


def profile_model(
    name: str, input_shape: tuple[int, int, int], num_classes: int = 10, **kwargs: Any
) -> tuple[int, int]:
    """(parameters, multiply-accumulates per image) of a registered model, built on the meta device
    (``count_macs``): cheap even for a 68M-parameter WRN."""
    model = create_meta_model(name, num_classes=num_classes, in_channels=input_shape[0], **kwargs)
    return count_params(model), count_macs(model, input_shape)
