"""Ray Tune trainables: thin adapters from a trial config to library calls to ``tune.report``.

Sweeps name their trainable as a string; ``get_trainable`` imports a built-in one only when a sweep
runs. A plugin registers its own with ``@register_trainable("name")`` on a ``fn(config) -> None``
that calls ``tune.report``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from tune_robust.registry import Registry

Trainable = Callable[[dict[str, Any]], None]

# name -> the function, or "module:function" for the built-ins (imported when a sweep runs them).
TRAINABLES: Registry[Trainable | str] = Registry("trainable")
for _name, _target in {
    "adversarial_training": "trainables.adversarial:adversarial_training",
    "evaluate": "trainables.evaluate:evaluate_checkpoint",
    "transfer": "trainables.transfer:transfer_row",
}.items():
    TRAINABLES.register(_name)(_target)


def register_trainable(name: str) -> Callable[[Trainable], Trainable]:
    """Register ``fn(config) -> None`` (it reports with ``tune.report``) as trainable ``name``."""
    register = TRAINABLES.register(name)

    def decorator(fn: Trainable) -> Trainable:
        register(fn)
        return fn

    return decorator


def get_trainable(name: str) -> Trainable:
    entry = TRAINABLES.get(name)
    if isinstance(entry, str):
        module, fn = entry.split(":")
        return getattr(importlib.import_module(module), fn)
    return entry
