"""Training methods (one file each) and the one epoch loop they share."""

from tune_robust.training import pgd_at, standard  # noqa: F401  (registration)
from tune_robust.training._base import METHODS, register_method

__all__ = ["METHODS", "register_method"]
