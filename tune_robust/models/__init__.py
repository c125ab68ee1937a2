"""Model registry; one file per family.

Example:
    >>> from tune_robust.models import create_model, count_params
    >>> round(count_params(create_model("wrn_34_r")) / 1e6, 2)
    68.12
"""

from tune_robust.models import small_cnn, wrn  # noqa: F401  (registration)
from tune_robust.models._registry import MODELS, count_params, create_model, profile_model, register_model

__all__ = ["MODELS", "count_params", "create_model", "profile_model", "register_model"]
