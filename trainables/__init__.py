"""Ray Tune trainables: thin adapters from a trial config to library calls to ``tune.report``.

Sweeps name their trainable; the command line hands the runner the function (``get_trainable``). Each
module here registers its own with ``@register_trainable("name")`` (this package is tune_robust's
``trainables`` plugin, imported when the registry is first used); a user's plugin does the same on a
``fn(config) -> None`` that calls ``tune.report``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tune_robust.registry import Registry

Trainable = Callable[[dict[str, Any]], None]

TRAINABLES: Registry[Trainable] = Registry("trainable", plugin="trainables")


def register_trainable(name: str) -> Callable[[Trainable], Trainable]:
    """Register ``fn(config) -> None`` (it reports with ``tune.report``) as trainable ``name``."""
    return TRAINABLES.register(name)


def get_trainable(name: str) -> Trainable:
    return TRAINABLES.get(name)


__all__ = ["TRAINABLES", "Trainable", "get_trainable", "register_trainable"]
