"""Screens of a trial's initial (inherited) weights before its first epoch (the ``screen`` config
section): RobNet's cell-free search keeps an architecture only if its FSP-matrix distance between
clean and training-attack inputs (tune_robust.evaluation.fsp) is small enough, and finetunes only the
survivors. A screen is one of the trial's parts in the epoch loop (its ``screen`` hook,
tune_robust.models.hooks); the loop keeps its numbers with the trial and stops a rejected one.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from tune_robust.data import batches
from tune_robust.evaluation.fsp import fsp_distance
from tune_robust.models.hooks import TrainingHooks, Trial

__all__ = ["FspScreen", "ScreenOptions", "screens"]


class ScreenOptions(Protocol):
    """The ``screen`` config section (tune_robust.config.ScreenConfig)."""

    @property
    def fsp(self) -> bool: ...

    @property
    def fsp_threshold(self) -> float | None: ...

    @property
    def fsp_cells(self) -> int: ...

    @property
    def fsp_examples(self) -> int: ...


class FspScreen(TrainingHooks):
    """Each cell's FSP distance between clean and training-attack inputs (``fsp_cell_<i>``) and their
    mean over the last ``cells`` cells (``fsp_distance``); above ``threshold`` (None: never) the trial
    stops before training (``stopped`` = "screened_out")."""

    screens: ClassVar[bool] = True

    def __init__(self, threshold: float | None, cells: int, examples: int, batch_size: int) -> None:
        self.threshold = threshold
        self.cells = cells
        self.examples = examples
        self.batch_size = batch_size

    def screen(self, trial: Trial) -> dict[str, Any]:
        data = trial.data
        split = (data.val if len(data.val) else data.train).head(self.examples)
        attack = trial.train_attack
        cells = fsp_distance(trial.model, batches(split, self.batch_size), attack)
        distance = sum(cells[-self.cells :]) / self.cells
        passed = self.threshold is None or distance <= self.threshold
        out: dict[str, Any] = {
            **{f"fsp_cell_{i}": d for i, d in enumerate(cells)},
            "fsp_distance": distance,
            "fsp_examples": len(split),
            "screened_out": not passed,
            # (its attack's forward-backward passes, per example, summed)
            "val_attack_passes": len(split) * attack.gradient_steps,
        }
        return out if passed else {**out, "stop": "screened_out"}


def screens(options: ScreenOptions, batch_size: int) -> list[TrainingHooks]:
    """The screens ``options`` turn on ([]: none); ``batch_size``: the evaluation's."""
    if not options.fsp:
        return []
    return [FspScreen(options.fsp_threshold, options.fsp_cells, options.fsp_examples, batch_size)]
