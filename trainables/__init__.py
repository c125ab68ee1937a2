"""Ray Tune trainables: thin adapters from a trial config to library calls to ``tune.report``.

Sweeps name their trainable as a string; ``get_trainable`` imports it only when a sweep runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from tune_robust.errors import ConfigError

# name -> "module:function"; a new trainable is one file plus one line here.
TRAINABLES: dict[str, str] = {
    "adversarial_training": "trainables.adversarial:adversarial_training",
    "evaluate": "trainables.evaluate:evaluate_checkpoint",
    "transfer": "trainables.transfer:transfer_row",
}


def get_trainable(name: str) -> Callable[[dict[str, Any]], None]:
    if name not in TRAINABLES:
        raise ConfigError(f"unknown trainable {name!r}; known trainables: {', '.join(sorted(TRAINABLES))}")
    module, fn = TRAINABLES[name].split(":")
    return getattr(importlib.import_module(module), fn)
