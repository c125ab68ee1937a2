"""A searcher that hands out a fixed list of configs in order (the grid and random search methods)."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from tune_robust.searchers._trials import SnapshotTrial, assign, first_free


class PointsSearcher(Searcher):
    """Suggests a fixed list of full trial configs, in order (a grid, possibly cut by --max-trials).

    Unlike ``tune.grid_search`` this keeps tuple values whole and allows a cap on the number of points.
    Each suggestion is the first point no trial holds yet; on resume the holdings are rebuilt from the
    experiment snapshot (``reconcile``), so a point is never run twice and a point whose trial the
    snapshot lost is handed out again.
    """

    def __init__(self, configs: list[dict[str, Any]], metric: str | None = None, mode: str | None = None):
        super().__init__(metric=metric, mode=mode)
        self.configs = configs
        self.assigned: dict[str, int] = {}

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if trial_id not in self.assigned:
            index = first_free(len(self.configs), self.assigned.values())
            if index is None:
                return Searcher.FINISHED  # type: ignore[return-value]
            self.assigned[trial_id] = index
        return copy.deepcopy(self.configs[self.assigned[trial_id]])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass

    def reconcile(self, trials: Sequence[SnapshotTrial]) -> None:
        """Hold exactly the points of the snapshot's trials."""
        self.assigned = assign(self.configs, trials)

    def save(self, checkpoint_path: str) -> None:
        state = {"configs": self.configs, "assigned": self.assigned}
        Path(checkpoint_path).write_text(json.dumps(state, default=str))

    def restore(self, checkpoint_path: str) -> None:
        state = json.loads(Path(checkpoint_path).read_text())
        self.configs = state["configs"]
        self.assigned = {str(k): int(v) for k, v in state["assigned"].items()}
