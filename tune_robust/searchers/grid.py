"""Every config in grid order, or a seeded random order without replacement."""

from __future__ import annotations

import random
from typing import Any

from tune_robust.errors import ConfigError
from tune_robust.searchers._base import SearchInputs, SearchMethod, register_search


@register_search("grid")
class Grid(SearchMethod):
    samples = False

    def num_samples(self, grid_size: int, requested: int | None) -> int:
        if requested is not None:
            raise ConfigError(
                "--num-samples applies to searches that pick a subset (--search random, tpe, nsga2, ...); "
                "the grid runs each config once (use --max-trials to run only the first N)"
            )
        return grid_size

    def planned(self, grid_size: int, num_samples: int, seed: int) -> list[int]:
        return list(range(num_samples))

    def searcher(self, inputs: SearchInputs) -> Any:
        from tune_robust.searchers._points import PointsSearcher  # Ray: only when the sweep runs

        return PointsSearcher(list(inputs.configs))


@register_search("random")
class Random(SearchMethod):
    def planned(self, grid_size: int, num_samples: int, seed: int) -> list[int]:
        order = list(range(grid_size))
        random.Random(seed).shuffle(order)
        return order[:num_samples]

    def searcher(self, inputs: SearchInputs) -> Any:
        from tune_robust.searchers._points import PointsSearcher

        picks = self.planned(len(inputs.configs), inputs.num_samples, inputs.seed)
        return PointsSearcher([inputs.configs[i] for i in picks])
