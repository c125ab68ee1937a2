"""Learning-rate schedules as multipliers of the base LR, evaluated per iteration."""

from __future__ import annotations

import math
from collections.abc import Callable


def lr_multiplier(
    schedule: str,
    epochs: int,
    steps_per_epoch: int,
    milestones: tuple[float, ...] = (),
    gamma: float = 0.1,
    warmup_epochs: float = 0,
    cycle_peak: float = 0.4,
    budget_epochs: int | None = None,
) -> Callable[[int], float]:
    """Return ``f(iteration) -> multiplier``.

    ``step``: multiply by ``gamma`` at each milestone (values in (0, 1) are fractions of training, values
    >= 1 are epochs; Huang et al. decay at 75% and 90%). ``cosine``: cosine decay to 0 after warm-up.
    ``constant``: 1. ``cyclic``: one triangle, 0 -> 1 at ``cycle_peak`` of training -> 0 at the end (Wong
    et al.). A linear warm-up over ``warmup_epochs`` applies to all but ``cyclic``.

    Milestones and warm-up given in epochs count epochs of ``budget_epochs`` (``train.epochs``) when a
    method runs fewer, longer epochs (Free AT runs train.epochs / m epochs of m replays): milestone 100 of
    a 200-epoch budget is half-way through training whatever the method.
    """
    total = epochs * steps_per_epoch
    scale = epochs / budget_epochs if budget_epochs else 1.0
    warm = round(warmup_epochs * scale * steps_per_epoch)
    bounds = sorted(round((m * epochs if m < 1 else m * scale) * steps_per_epoch) for m in milestones)

    def f(it: int) -> float:
        if schedule == "cyclic":
            t = (it + 1) / max(1, total)
            return t / cycle_peak if t <= cycle_peak else max(0.0, (1.0 - t) / (1.0 - cycle_peak))
        if it < warm:
            return (it + 1) / warm
        if schedule == "step":
            return gamma ** sum(it >= b for b in bounds)
        if schedule == "cosine":
            progress = (it - warm) / max(1, total - warm)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return f
