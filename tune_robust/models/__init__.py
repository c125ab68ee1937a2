"""Model registry; one file per family.

Example:
    >>> from tune_robust.models import create_model, count_params
    >>> round(count_params(create_model("wrn_34_r")) / 1e6, 2)
    68.12
"""

from tune_robust.models import (  # noqa: F401  (registration)
    darts,
    densenet,
    mobilenet,
    resnet,
    resnext,
    small_cnn,
    vgg,
    wrn,
)
from tune_robust.models._registry import MODELS, count_params, create_model, profile_model, register_model
from tune_robust.models.reconfig import Reconfiguration, reconfigure

__all__ = [
    "MODELS",
    "Reconfiguration",
    "count_params",
    "create_model",
    "profile_model",
    "reconfigure",
    "register_model",
]
