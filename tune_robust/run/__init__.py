"""Running a sweep: ``plan()`` resolves and checks everything a run will do and returns a frozen
``Plan``; ``describe()`` is the dry run (after ``preflight()``, the checks a run makes before it starts);
``execute()`` runs a plan on Ray Tune, unchanged.

Modules, in the order a run uses them: ``options`` (RunOptions, Plan, Strategy: data only),
``strategy`` (--search/--scheduler), ``inputs`` (checkpoints of evaluate/transfer sweeps), ``upstream``
(earlier sweeps' checkpoints and architectures), ``validate`` (models, data, checkpoints before Ray),
``plan``, ``resume`` (sweep.json, the driver lock, start or continue), ``execute`` (the Tuner).
"""

from tune_robust.run.execute import execute, preflight
from tune_robust.run.options import Plan, RunOptions, Strategy
from tune_robust.run.plan import describe, grid_configs, plan, varying_keys

__all__ = [
    "Plan",
    "RunOptions",
    "Strategy",
    "describe",
    "execute",
    "grid_configs",
    "plan",
    "preflight",
    "varying_keys",
]
