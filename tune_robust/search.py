"""Search algorithms the runner hands to Ray Tune."""

from __future__ import annotations

import copy
import itertools
import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune import Callback
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


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (int, float, str, bool))


def _evenly_spaced_ints(values: Sequence[Any]) -> bool:
    if len(values) < 3 or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return False
    ordered = sorted(values)
    steps = {b - a for a, b in itertools.pairwise(ordered)}
    return len(steps) == 1 and ordered == list(values) and steps != {0}


@dataclass
class Dim:
    """One Optuna parameter: a whole searched key, or one position of a tuple-valued key."""

    name: str
    key: int  # index into GridEncoding.keys
    position: int | None  # tuple position, or None for the whole value
    choices: list[Any]  # the values (scalars) or value indices (for dicts / non-scalar values)

    def distribution(self) -> Any:
        import optuna

        if _evenly_spaced_ints(self.choices):
            step = self.choices[1] - self.choices[0]
            return optuna.distributions.IntDistribution(self.choices[0], self.choices[-1], step=step)
        return optuna.distributions.CategoricalDistribution(self.choices)


@dataclass
class GridEncoding:
    """A sweep's grid as Optuna parameters, and back to the grid point's index.

    A key whose values are the full Cartesian product of per-position values (``model.depths`` of
    the depth grid: {1,3,5,7,9}^3) becomes one ordinal parameter per position (``model.depths[0]``...),
    so TPE can learn per-stage effects; other keys become one categorical parameter. Decoding gives the
    index of the point in ``SweepSpec.points`` order, so a suggestion is always one of the grid's
    configs (with the same --set and Variants handling as a grid run).
    """

    keys: list[str]
    sizes: list[int]
    dims: list[Dim]
    # Per key: tuple of per-dim choices -> index of the value in that key's Grid/Variants.
    lookups: list[dict[str, int]]

    @classmethod
    def from_space(cls, space: Mapping[str, Any], pinned: Mapping[str, Any]) -> GridEncoding:
        keys = [k for k in space if k not in pinned]
        dims: list[Dim] = []
        lookups: list[dict[str, int]] = []
        sizes: list[int] = []
        for ki, key in enumerate(keys):
            values = list(space[key].values)
            sizes.append(len(values))
            per_pos = _product_positions(values)
            if per_pos is not None:
                dims += [Dim(f"{key}[{i}]", ki, i, choices) for i, choices in enumerate(per_pos)]
                lookups.append({json.dumps(list(v)): i for i, v in enumerate(values)})
            elif all(_scalar(v) for v in values) and len(set(map(repr, values))) == len(values):
                dims.append(Dim(key, ki, None, values))
                lookups.append({json.dumps([v]): i for i, v in enumerate(values)})
            else:
                dims.append(Dim(key, ki, None, list(range(len(values)))))
                lookups.append({json.dumps([i]): i for i in range(len(values))})
        return cls(keys, sizes, dims, lookups)

    def distributions(self) -> dict[str, Any]:
        return {d.name: d.distribution() for d in self.dims}

    def decode(self, params: Mapping[str, Any]) -> int:
        index = 0
        for ki, size in enumerate(self.sizes):
            chosen = [params[d.name] for d in self.dims if d.key == ki]
            index = index * size + self.lookups[ki][json.dumps(chosen)]
        return index


def _product_positions(values: Sequence[Any]) -> list[list[Any]] | None:
    """Per-position value lists if ``values`` are equal-length tuples forming their full product."""
    if not all(isinstance(v, (tuple, list)) for v in values):
        return None
    lengths = {len(v) for v in values}
    if len(lengths) != 1 or lengths == {1} or not all(_scalar(x) for v in values for x in v):
        return None
    (length,) = lengths
    positions = [list(dict.fromkeys(v[i] for v in values)) for i in range(length)]
    size = 1
    for p in positions:
        size *= len(p)
    if size != len(values) or len({tuple(v) for v in values}) != len(values):
        return None
    return positions


class ChoiceSearcher(Searcher):
    """Wraps Ray's OptunaSearch: Optuna samples the encoded grid, this hands out the grid's full config.

    Ray saves the wrapped searcher (the Optuna study) and this wrapper's state with the experiment, so
    ``Tuner.restore`` continues the same study.
    """

    def __init__(self, searcher: Searcher, encoding: GridEncoding, configs: list[dict[str, Any]]) -> None:
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher = searcher
        self.encoding = encoding
        self.configs = configs
        self.suggested: dict[str, int] = {}

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # the wrapped searcher has its own objectives and space

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if trial_id not in self.suggested:
            params = self.searcher.suggest(trial_id)
            if params is None or params == Searcher.FINISHED:
                return params
            self.suggested[trial_id] = self.encoding.decode(params)
        return copy.deepcopy(self.configs[self.suggested[trial_id]])

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        metrics = self.searcher.metric if isinstance(self.searcher.metric, list) else [self.searcher.metric]
        if all(m in result for m in metrics):  # epochs without validation (train.eval_every > 1) are skipped
            self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def get_state(self) -> dict[str, Any]:
        return {"suggested": dict(self.suggested)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.suggested = {str(k): int(v) for k, v in state.get("suggested", {}).items()}


class SchedulerState(Callback):
    """Saves a trial scheduler's state with the experiment (Ray keeps searcher and callback state,
    not the scheduler's), so ASHA's rungs survive ``Tuner.restore``."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def get_state(self) -> dict[str, Any] | None:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "scheduler.pkl"
            self.scheduler.save(str(path))
            return {"scheduler": path.read_bytes()}

    def set_state(self, state: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "scheduler.pkl"
            path.write_bytes(state["scheduler"])
            self.scheduler.restore(str(path))
