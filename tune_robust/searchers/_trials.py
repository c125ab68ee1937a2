"""The trials of Ray's experiment snapshot as the searchers see them, and the grid bookkeeping every
searcher shares: which trial holds which of the grid's configs."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotTrial:
    """One trial as the newest experiment snapshot records it (what ``Tuner.restore`` brings back)."""

    trial_id: str
    config: dict[str, Any]
    status: str  # PENDING, RUNNING, PAUSED, TERMINATED or ERROR
    last_result: dict[str, Any]

    @property
    def ended(self) -> bool:
        return self.status in ("TERMINATED", "ERROR")


def snapshot_trials(experiment_dir: str) -> list[SnapshotTrial]:
    """The trials of the newest experiment state file in ``experiment_dir``."""
    from ray.tune import ExperimentAnalysis

    # Only the trial list is needed; ExperimentAnalysis also looks for every trial's result files
    # beside the state file and warns when (as in Ray's staging copy) they are elsewhere.
    log = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        analysis = ExperimentAnalysis(experiment_dir)
    finally:
        log.setLevel(level)
    return [
        SnapshotTrial(t.trial_id, dict(t.config), str(t.status), dict(t.last_result or {}))
        for t in analysis.trials
    ]


def first_free(n: int, held: Iterable[int]) -> int | None:
    """The lowest index in ``range(n)`` not in ``held``, or None when every one is held."""
    taken = set(held)
    return next((i for i in range(n) if i not in taken), None)


def config_key(config: Mapping[str, Any]) -> str:
    """A config's identity across JSON and pickle round trips (tuples and lists compare equal)."""
    return json.dumps(config, sort_keys=True, default=str)


def assign(configs: Sequence[Mapping[str, Any]], trials: Sequence[SnapshotTrial]) -> dict[str, int]:
    """``{trial_id: index into configs}`` for the snapshot's trials (equal configs take distinct points)."""
    free: dict[str, list[int]] = {}
    for i, c in enumerate(configs):
        free.setdefault(config_key(c), []).append(i)
    assigned: dict[str, int] = {}
    for t in trials:
        indices = free.get(config_key(t.config))
        if indices:
            assigned[t.trial_id] = indices.pop(0)
        else:
            logger.warning("trial %s of the experiment snapshot runs a config outside this sweep", t.trial_id)
    return assigned
