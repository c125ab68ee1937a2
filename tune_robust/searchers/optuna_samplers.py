"""Optuna's TPE and NSGA-II samplers over the grid's values, each config at most once: ``ChoiceSearcher``
(tune_robust.searchers._optuna) drives an Optuna study and maps its proposals onto the grid."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from tune_robust.errors import ConfigError
from tune_robust.searchers._base import SearchInputs, SearchMethod, register_search


class OptunaSampler(SearchMethod):
    objectives = True

    def num_samples(self, grid_size: int, requested: int | None) -> int:
        if grid_size < 2:
            raise ConfigError(f"--search {self.name}: the grid has {grid_size} config; nothing to search")
        # A quarter of the grid, at least 10 trials (the whole grid when smaller).
        default = min(grid_size, max(10, -(-grid_size // 4)))
        return super().num_samples(grid_size, default if requested is None else requested)

    @abstractmethod
    def sampler(self, seed: int, num_samples: int) -> Any: ...

    def searcher(self, inputs: SearchInputs) -> Any:
        from tune_robust.searchers._encoding import GridEncoding
        from tune_robust.searchers._optuna import ChoiceSearcher

        encoding = GridEncoding.from_space(inputs.space, inputs.pinned)
        metrics = [o.split(":")[0] for o in inputs.objectives]
        modes = [o.split(":")[1] for o in inputs.objectives]
        return ChoiceSearcher(
            encoding,
            list(inputs.configs),
            sampler=self.sampler(inputs.seed, inputs.num_samples),
            metric=metrics if len(metrics) > 1 else metrics[0],
            mode=modes if len(modes) > 1 else modes[0],
        )


@register_search("tpe")
class TPE(OptunaSampler):
    def sampler(self, seed: int, num_samples: int) -> Any:
        import optuna

        return optuna.samplers.TPESampler(seed=seed)


@register_search("nsga2")
class NSGA2(OptunaSampler):
    def default_objectives(self, metric: str, mode: str) -> tuple[str, ...]:
        return (f"{metric}:{mode}", "params:min")

    def sampler(self, seed: int, num_samples: int) -> Any:
        import optuna

        population = max(4, min(50, num_samples // 3))
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
