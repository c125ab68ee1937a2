"""Training methods (one file each) and the one epoch loop they share."""

from tune_robust.training._base import METHODS, Method, create_method, register_method

__all__ = ["METHODS", "Method", "create_method", "register_method"]
