"""Search algorithms the runner hands to Ray Tune."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher


class PointsSearcher(Searcher):
    """Suggests a fixed list of full trial configs, in order (a grid, possibly cut by --max-trials).

    Unlike ``tune.grid_search`` this keeps tuple values whole and allows a cap on the number of points;
    its position is saved with the experiment so ``Tuner.restore`` never suggests a point twice.
    """

    def __init__(self, configs: list[dict[str, Any]], metric: str | None = None, mode: str | None = None):
        super().__init__(metric=metric, mode=mode)
        self.configs = configs
        self.next_index = 0
        self.assigned: dict[str, int] = {}

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if trial_id in self.assigned:
            return copy.deepcopy(self.configs[self.assigned[trial_id]])
        if self.next_index >= len(self.configs):
            return Searcher.FINISHED  # type: ignore[return-value]
        self.assigned[trial_id] = self.next_index
        self.next_index += 1
        return copy.deepcopy(self.configs[self.assigned[trial_id]])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        state = {"configs": self.configs, "next_index": self.next_index, "assigned": self.assigned}
        Path(checkpoint_path).write_text(json.dumps(state, default=str))

    def restore(self, checkpoint_path: str) -> None:
        state = json.loads(Path(checkpoint_path).read_text())
        self.configs = state["configs"]
        self.next_index = int(state["next_index"])
        self.assigned = {str(k): int(v) for k, v in state["assigned"].items()}
