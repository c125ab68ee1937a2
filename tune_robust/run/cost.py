"""What a trial costs relative to the others of its sweep, known before it runs: the model's
multiply-accumulates per image x passes over the data x forward-backward passes per example (one for the
update plus the training attack's steps). The progress line weights its ETA by it; only ratios between
trials matter. MACs are counted on the meta device when planning checks each model (``Plan.macs``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from tune_robust.config import TrialConfig


def model_key(tc: TrialConfig) -> str:
    """One key per distinct (model, dataset): what a MAC count depends on."""
    return json.dumps([tc.model.name, tc.model.kwargs, tc.data.dataset], sort_keys=True, default=str)


def count_model_macs(tc: TrialConfig, model: Any) -> float | None:
    """MACs per image of ``model`` (the trial's, built on the meta device); None when some module of it
    cannot run on meta (that trial's cost is then the mean of the others')."""
    from tune_robust.data import DATASETS
    from tune_robust.models import count_macs

    try:
        return float(count_macs(model, DATASETS.get(tc.data.dataset).shape))
    except Exception:  # a module without a meta kernel: the ETA goes unweighted for it, nothing fails
        return None


class TrialCost:
    """``cost(config)`` for trial configs as Ray Tune passes them, from the plan's MAC counts. A model
    whose MACs could not be counted (None) or that planning did not see costs the mean of the counted
    ones (all alike: 1), times its own passes."""

    def __init__(self, macs: Mapping[str, float | None]) -> None:
        self.macs = dict(macs)
        known = [m for m in self.macs.values() if m is not None]
        self.mean_macs = sum(known) / len(known) if known else 1.0

    def __call__(self, config: Mapping[str, Any]) -> float:
        from tune_robust.attacks import create_attack
        from tune_robust.training import create_method

        tc = TrialConfig.from_dict(dict(config))
        macs = self.macs.get(model_key(tc))
        method = create_method(tc.method.name, **tc.method.kwargs)
        attack = create_attack(tc.attack.name, **tc.attack.kwargs)
        passes = method.epochs_to_run(tc.train.epochs) * (1 + method.attack_passes(attack))
        return (self.mean_macs if macs is None else macs) * passes

    def total(self, configs: Sequence[Mapping[str, Any]], trials: int) -> float:
        """The expected cost of ``trials`` trials drawn from ``configs`` (all of them, for a grid run
        once; the mean config's cost times ``trials`` otherwise)."""
        costs = [self(c) for c in configs]
        if not costs:
            return float(trials)
        if trials == len(costs):
            return sum(costs)
        return sum(costs) / len(costs) * trials
