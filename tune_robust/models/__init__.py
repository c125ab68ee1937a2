"""Model registry; one file per family (each registers its builders when the registry is first used).

The names below load on first access, so ``import tune_robust.models.reconfig`` (the -R rule, which the
sweep definitions use) does not import torch.

Example:
    >>> from tune_robust.models import create_model, count_params
    >>> round(count_params(create_model("wrn_34_r")) / 1e6, 2)
    68.12
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tune_robust.models._registry import (
        MODELS,
        count_macs,
        count_params,
        create_meta_model,
        create_model,
        profile_model,
        register_model,
    )
    from tune_robust.models.reconfig import Reconfiguration, reconfigure

_HOME = {
    "MODELS": "_registry",
    "count_macs": "_registry",
    "count_params": "_registry",
    "create_meta_model": "_registry",
    "create_model": "_registry",
    "profile_model": "_registry",
    "register_model": "_registry",
    "Reconfiguration": "reconfig",
    "reconfigure": "reconfig",
}

__all__ = [
    "MODELS",
    "Reconfiguration",
    "count_macs",
    "count_params",
    "create_meta_model",
    "create_model",
    "profile_model",
    "reconfigure",
    "register_model",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
