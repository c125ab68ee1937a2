"""Huang et al.'s "-R" reconfiguration: apply the discovered width rule (w10-10-4: the last stage at 0.4
of the width of the others), optionally scaled by gamma, to any family with per-stage ``widths``.

    >>> r = reconfigure("vgg11")
    >>> r.kwargs["widths"], round(r.params / 1e6, 2), round(r.r_params / 1e6, 2)
    ((1.0, 1.0, 1.0, 1.0, 0.4), 9.23, 5.83)
    >>> reconfigure("wrn_34_10", gamma=2.0).kwargs["widths"]  # WRN-34-R
    (20.0, 20.0, 8.0)
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from tune_robust.errors import ConfigError

# Fixed-size registered models -> the family builder and keyword arguments they stand for.
ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "wrn_28_10": ("wrn", {"depths": (4, 4, 4), "widths": (10.0, 10.0, 10.0)}),
    "wrn_34_10": ("wrn", {"depths": (5, 5, 5), "widths": (10.0, 10.0, 10.0)}),
    "wrn_34_12": ("wrn", {"depths": (5, 5, 5), "widths": (12.0, 12.0, 12.0)}),
}
# The rule's ratio of the last stage's width to the others' (w10-10-4).
R_RATIO = 0.4


def r_widths(widths: tuple[float, ...], ratio: float = R_RATIO, gamma: float = 1.0) -> tuple[float, ...]:
    """Scale every stage by gamma and the last one additionally by ratio."""
    if not widths:
        raise ConfigError("the -R rule needs at least one stage width")
    return (*(float(w) * gamma for w in widths[:-1]), float(widths[-1]) * ratio * gamma)


@dataclass(frozen=True)
class Reconfiguration:
    arch: str
    base_kwargs: dict[str, Any]
    kwargs: dict[str, Any]
    params: int
    r_params: int

    @property
    def param_change(self) -> float:
        """Relative parameter change of the -R network (negative = fewer parameters)."""
        return self.r_params / self.params - 1.0


def r_config(
    arch: str, kwargs: dict[str, Any] | None = None, ratio: float = R_RATIO, gamma: float = 1.0
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(family builder, its keyword arguments, the -R keyword arguments), without building anything."""
    if not 0 < ratio <= 1 or not gamma > 0:
        raise ConfigError(f"-R rule: ratio must be in (0, 1] and gamma > 0, got {ratio}, {gamma}")
    base = dict(kwargs or {})
    if arch in ALIASES:
        arch, fixed = ALIASES[arch]
        base = {**fixed, **base}
    # Given widths need no builder (a sweep definition stays torch-free); create_model checks them later.
    widths = tuple(base["widths"]) if "widths" in base else _default_widths(arch)
    return arch, base, {**base, "widths": r_widths(widths, ratio, gamma)}


def _default_widths(arch: str) -> tuple[float, ...]:
    from tune_robust.models._registry import MODELS

    default = inspect.signature(MODELS.get(arch)).parameters.get("widths")
    if default is None:
        families = [n for n in MODELS.names() if "widths" in inspect.signature(MODELS.get(n)).parameters]
        raise ConfigError(
            f"model {arch!r} has no per-stage 'widths' option, so the -R rule cannot be applied; families "
            f"with one: {', '.join(families)}"
        )
    return tuple(default.default)


def reconfigure(
    arch: str,
    kwargs: dict[str, Any] | None = None,
    ratio: float = R_RATIO,
    gamma: float = 1.0,
    input_shape: tuple[int, int, int] = (3, 32, 32),
    num_classes: int = 10,
) -> Reconfiguration:
    """The -R version of ``arch`` (with ``kwargs``) and both parameter counts (built on the meta device)."""
    from tune_robust.models._registry import profile_model

    arch, base, new = r_config(arch, kwargs, ratio, gamma)
    params, _ = profile_model(arch, input_shape, num_classes, **base)
    r_params, _ = profile_model(arch, input_shape, num_classes, **new)
    return Reconfiguration(arch, base, new, params, r_params)
