"""A sweep's grid as Optuna parameters, and back to a grid point."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


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

    def encode(self, index: int) -> dict[str, Any]:
        """The Optuna parameters of grid point ``index`` (``decode``'s inverse)."""
        params: dict[str, Any] = {}
        for ki in reversed(range(len(self.sizes))):
            index, value_index = divmod(index, self.sizes[ki])
            chosen = next(json.loads(k) for k, v in self.lookups[ki].items() if v == value_index)
            dims = [d for d in self.dims if d.key == ki]
            params.update({d.name: c for d, c in zip(dims, chosen, strict=True)})
        return {d.name: params[d.name] for d in self.dims}


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
