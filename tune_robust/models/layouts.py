"""Parameter layouts of published checkpoints: how a state dict saved by someone else's model code
becomes a state dict of one of our architectures.

A published robust model is a state dict in its authors' module names (``layer1.0.conv1.weight`` of the
widely copied pytorch-cifar ResNet, ``block1.layer.0.bn1.weight`` of the TRADES/RobustBench WideResNet,
...). A *layout* recognises its names from the keys alone and renames them to ours; the modules compute
the same function (tests check each layout against a reference definition written from the public code).
Our own names are the layout ``ours``. A layout also says which of our architectures (and options) a
state dict describes, so that a mismatch names the architecture to pass instead.

Add a layout in the file of the family it maps onto::

    @register_layout("my_lab_resnet")
    class MyLabResNet(Layout):
        source = "..."; inputs = "..."
        @classmethod
        def recognises(cls, keys): ...
        @classmethod
        def rename(cls, key): ...      # our name, or None for a tensor their forward pass never uses
        @classmethod
        def candidates(cls, shapes): ...  # in OUR names: which registered architectures these could be
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from tune_robust.errors import ConfigError
from tune_robust.models._registry import create_meta_model
from tune_robust.registry import Registry

Shapes = Mapping[str, tuple[int, ...]]
# A BatchNorm's step counter: absent from old checkpoints, never used in eval mode, and BatchNorm fills it
# in itself when a state dict lacks it.
_OPTIONAL = ("num_batches_tracked",)


@dataclass(frozen=True)
class Candidate:
    """One architecture a state dict could be: a registered name, its options, classes and channels."""

    arch: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 10
    in_channels: int = 3

    def options(self) -> str:
        """``--set model.arch=wrn --set model.depths=5,5,5 ...``: what to pass to build it."""
        parts = [f"--set model.arch={self.arch}"]
        for k, v in self.kwargs.items():
            value = ",".join(f"{x:g}" for x in v) if isinstance(v, (list, tuple)) else v
            parts.append(f"--set model.{k}={value}")
        return " ".join(parts)


class Layout:
    """A checkpoint layout. Subclasses override what differs from ours (the identity)."""

    name: ClassVar[str] = ""
    source: ClassVar[str] = ""  # who publishes checkpoints in this layout
    inputs: ClassVar[str] = ""  # what input range/normalisation its common checkpoints expect

    @classmethod
    def recognises(cls, keys: Set[str]) -> bool:
        return True

    @classmethod
    def rename(cls, key: str) -> str | None:
        return key

    @classmethod
    def candidates(cls, shapes: Shapes) -> list[Candidate]:
        return []

    @classmethod
    def apply(cls, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            new = cls.rename(key)
            if new is not None:
                out[new] = value
        return out


LAYOUTS: Registry[type[Layout]] = Registry("checkpoint layout", plugin="models")


def register_layout(name: str) -> Any:
    """Class decorator: register a :class:`Layout` subclass under ``name``."""
    return LAYOUTS.register_class(name)


@register_layout("ours")
class Ours(Layout):
    source = "tune_robust (model.state_dict() of a registered architecture)"
    inputs = "what it was trained on: our trainers feed [0, 1] pixels"

    @classmethod
    def candidates(cls, shapes: Shapes) -> list[Candidate]:
        others = [LAYOUTS.get(n) for n in LAYOUTS.names() if n != cls.name]
        return [c for layout in others for c in layout.candidates(shapes)]


def rename_top(key: str, renames: Mapping[str, str]) -> str:
    """``key`` with its first component renamed (``linear.weight`` -> ``fc.weight``), else unchanged."""
    first, _, rest = key.partition(".")
    return f"{renames[first]}.{rest}" if first in renames else key


def shapes_of(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def expected_shapes(arch: str, kwargs: Mapping[str, Any], num_classes: int, in_channels: int) -> Shapes:
    """The state dict shapes of a registered architecture, built on the meta device (no memory)."""
    model = create_meta_model(arch, num_classes=num_classes, in_channels=in_channels, **dict(kwargs))
    return shapes_of(model.state_dict())


def _optional(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in _OPTIONAL


def problems(shapes: Shapes, expected: Shapes) -> list[str]:
    """What keeps a state dict of ``shapes`` from loading into a model of ``expected`` shapes."""
    missing = [k for k in expected if k not in shapes and not _optional(k)]
    extra = [k for k in shapes if k not in expected]
    wrong = [k for k in shapes if k in expected and shapes[k] != expected[k]]
    out = []
    if missing:
        out.append(f"{len(missing)} missing ({_some(missing)})")
    if extra:
        out.append(f"{len(extra)} unexpected ({_some(extra)})")
    if wrong:
        sizes = ", ".join(f"{k}: file {_dims(shapes[k])}, model {_dims(expected[k])}" for k in wrong[:3])
        out.append(f"{len(wrong)} of other shapes ({sizes}{', ...' if len(wrong) > 3 else ''})")
    return out


def _some(keys: list[str]) -> str:
    return ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) or "scalar"


@dataclass(frozen=True)
class Fitted:
    """A state dict renamed into our architecture's names, and the layout it came in."""

    state: dict[str, torch.Tensor]
    layout: type[Layout]


def fit(
    state: Mapping[str, torch.Tensor],
    arch: str,
    kwargs: Mapping[str, Any],
    num_classes: int,
    in_channels: int,
    where: str,
) -> Fitted:
    """``state`` in the names of ``arch`` (its own names, or a recognised published layout's).

    Raises one ConfigError when no layout makes it fit: what is missing, unexpected or of another shape,
    and the registered architecture (with options) the tensors do fit, when one does.
    """
    expected = expected_shapes(arch, kwargs, num_classes, in_channels)
    tried: list[tuple[type[Layout], dict[str, torch.Tensor], list[str]]] = []
    for layout in _recognising(set(state)):
        mapped = layout.apply(state)
        issues = problems(shapes_of(mapped), expected)
        if not issues:
            return Fitted(mapped, layout)
        tried.append((layout, mapped, issues))
    layout, mapped, issues = min(tried, key=lambda t: (_count(t[2]), t[0] is Ours))
    what = f"model.arch={arch}" + "".join(f" {k}={v}" for k, v in kwargs.items())
    named = "" if layout is Ours else f" (read in the {layout.name} layout)"
    advice = _advice(shapes_of(mapped), layout, num_classes, in_channels)
    raise ConfigError(
        f"checkpoint {where} does not fit {what} for {num_classes} classes{named}: {advice} "
        f"(differences: {'; '.join(issues)})"
    )


def _recognising(keys: set[str]) -> list[type[Layout]]:
    others = [LAYOUTS.get(n) for n in LAYOUTS.names() if n != Ours.name]
    return [Ours, *[lay for lay in others if lay.recognises(keys)]]


def _count(issues: list[str]) -> int:
    return sum(int(i.split(" ", 1)[0]) for i in issues)


def _advice(shapes: Shapes, layout: type[Layout], num_classes: int, in_channels: int) -> str:
    """What to pass instead: the first candidate architecture the tensors fit, else what to check."""
    for cand in layout.candidates(shapes):
        try:
            exp = expected_shapes(cand.arch, cand.kwargs, cand.num_classes, cand.in_channels)
        except ConfigError:
            continue
        if problems(shapes, exp):
            continue
        if (cand.num_classes, cand.in_channels) != (num_classes, in_channels):
            return (
                f"its tensors are {cand.arch} for {cand.num_classes} classes / {cand.in_channels} channels; "
                f"evaluate it on the dataset it was trained on (--dataset, --data-dir) with {cand.options()}"
            )
        return f"its tensors fit {cand.arch}; pass {cand.options()}"
    return "check model.arch and its options (depths/widths) and the dataset's classes"
