"""The search-method interface and its registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from tune_robust.errors import ConfigError
from tune_robust.registry import Registry


@dataclass(frozen=True)
class SearchInputs:
    """What a search method sees of a planned sweep."""

    # The grid's configs, in grid order (a searcher may only propose these).
    configs: Sequence[dict[str, Any]]
    # The searched dimensions (flat dotted key or Variants name -> Grid / Variants) and the keys --set pinned.
    space: Mapping[str, Any]
    pinned: Mapping[str, bool]
    num_samples: int
    seed: int
    # "METRIC:max|min" entries (model-based methods only).
    objectives: Sequence[str]


class SearchMethod(ABC):
    """A way to pick trials from a sweep's grid; ``searcher`` returns a Ray Tune ``Searcher`` that
    proposes (a subset of) ``inputs.configs``, each at most once."""

    name: ClassVar[str] = ""
    # True: --num-samples sets how many trials run (and --max-trials does not apply).
    samples: ClassVar[bool] = True
    # True: optimises --objective metrics (default: the sweep's metric and mode).
    objectives: ClassVar[bool] = False

    def num_samples(self, grid_size: int, requested: int | None) -> int:
        """Trials to run for a grid of ``grid_size`` configs (``requested``: --num-samples)."""
        num = grid_size if requested is None else requested
        if num > grid_size:
            raise ConfigError(
                f"--search {self.name} runs each of the grid's configs at most once; the grid has "
                f"{grid_size}, --num-samples {num}"
            )
        return num

    def planned(self, grid_size: int, num_samples: int, seed: int) -> list[int] | None:
        """The grid indices the searcher will run, in order, when they are known before the sweep
        starts (the dry run lists them); None for a method that chooses while the sweep runs."""
        return None

    def default_objectives(self, metric: str, mode: str) -> tuple[str, ...]:
        return (f"{metric}:{mode}",)

    @abstractmethod
    def searcher(self, inputs: SearchInputs) -> Any: ...


SEARCHES: Registry[type[SearchMethod]] = Registry("search method", plugin="searches")

_S = TypeVar("_S", bound=type[SearchMethod])


def register_search(name: str) -> Callable[[_S], _S]:
    return SEARCHES.register_class(name)
