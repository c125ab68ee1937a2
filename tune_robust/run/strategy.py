"""The search strategy of a grid sweep: --search, --scheduler, --num-samples, --objective checked and
resolved at plan time (``resolve``), and turned into Ray Tune objects at run time (``build``)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from tune_robust.config import TrialConfig
from tune_robust.errors import ConfigError
from tune_robust.results.schema import OBJECTIVE_METRICS
from tune_robust.run.options import Asha, RunOptions, Strategy
from tune_robust.sweeps import SweepSpec

SCHEDULERS = ("fifo", "asha")


def search_method(name: str) -> Any:
    """The registered search method ``name`` (``tune_robust.searchers``), or a ConfigError."""
    from tune_robust.searchers import SEARCHES

    try:
        return SEARCHES.get(name)()
    except ConfigError as e:
        raise ConfigError(f"--search: {e}") from None


def check_options(spec: SweepSpec, options: RunOptions) -> None:
    """What can be checked before any config exists (cheap: run first)."""
    o = options
    search_method(o.search)
    if o.scheduler not in SCHEDULERS:
        raise ConfigError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {o.scheduler!r}")
    if (o.search != "grid" or o.scheduler != "fifo") and spec.inputs != "grid":
        raise ConfigError(
            f"sweep {spec.name!r} runs one trial per checkpoint; --search and --scheduler apply to "
            "grid sweeps"
        )
    if o.max_trials is not None and search_method(o.search).samples:
        raise ConfigError(f"--max-trials cuts the grid; with --search {o.search} use --num-samples")
    if o.num_samples is not None and o.num_samples < 1:
        raise ConfigError(f"--num-samples must be >= 1, got {o.num_samples}")
    if o.objectives and not search_method(o.search).objectives:
        raise ConfigError(f"--objective applies to model-based searches (e.g. tpe, nsga2), not {o.search}")


def resolve(spec: SweepSpec, options: RunOptions, configs: Sequence[Mapping[str, Any]]) -> Strategy:
    """The strategy for these (final) configs; ``check_options`` has passed."""
    o = options
    method = search_method(o.search)
    objectives: tuple[str, ...] = ()
    if method.objectives:
        objectives = objective_list(o.objectives or method.default_objectives(spec.metric, spec.mode))
    return Strategy(
        search=o.search,
        scheduler=o.scheduler,
        search_seed=o.search_seed,
        num_samples=method.num_samples(len(configs), o.num_samples),
        objectives=objectives,
        asha=_asha(o, configs) if o.scheduler == "asha" else None,
    )


def objective_list(given: Sequence[str], metrics: Sequence[str] = OBJECTIVE_METRICS) -> tuple[str, ...]:
    """``METRIC:max|min`` entries, checked against ``metrics`` (mode defaults to max)."""
    objectives = []
    for item in given:
        metric, _, mode = item.partition(":")
        mode = mode or "max"
        if metric not in metrics or mode not in ("max", "min"):
            raise ConfigError(
                f"--objective {item!r}: expected METRIC:max|min with METRIC one of {', '.join(metrics)}"
            )
        objectives.append(f"{metric}:{mode}")
    if len(set(objectives)) != len(objectives):
        raise ConfigError(f"--objective lists a metric twice: {', '.join(objectives)}")
    return tuple(objectives)


def _asha(o: RunOptions, configs: Sequence[Mapping[str, Any]]) -> Asha:
    max_t = max(TrialConfig.from_dict(dict(c)).train.epochs for c in configs)
    return asha_settings(max_t, o.grace_period, o.reduction_factor)


def asha_settings(max_t: int, grace_period: int, reduction_factor: float) -> Asha:
    """ASHA's settings for trials of at most ``max_t`` epochs, checked."""
    if not 1 <= grace_period < max_t:
        raise ConfigError(
            f"--grace-period must be >= 1 epoch and below train.epochs ({max_t}), got {grace_period}"
        )
    if reduction_factor <= 1:
        raise ConfigError(f"--reduction-factor must be > 1, got {reduction_factor}")
    return Asha(max_t=max_t, grace_period=grace_period, reduction_factor=reduction_factor)


def build_searcher(
    s: Strategy, configs: Sequence[Mapping[str, Any]], space: Mapping[str, Any], pinned: Mapping[str, bool]
) -> Any:
    """The Ray Tune ``Searcher`` of ``s``'s search method over ``configs`` (drawn from ``space``; the
    keys of ``pinned`` were fixed by --set): what a live sweep and a replay both run."""
    from tune_robust.searchers import SearchInputs

    inputs = SearchInputs(
        configs=copy.deepcopy([dict(c) for c in configs]),  # a searcher never edits the plan
        space=space,
        pinned=pinned,
        num_samples=s.num_samples,
        seed=s.search_seed,
        objectives=s.objectives,
    )
    return search_method(s.search).searcher(inputs)


def build_scheduler(s: Strategy) -> Any:
    """The trial scheduler of ``s``: ASHA with its settings (time unit: the epoch), or None for FIFO.
    Its metric and mode come from Tune's ``set_search_properties`` (the sweep's metric)."""
    if s.asha is None:
        return None
    from tune_robust.searchers._asha import ASHA

    return ASHA(
        time_attr="epoch",
        max_t=s.asha.max_t,
        grace_period=s.asha.grace_period,
        reduction_factor=s.asha.reduction_factor,
    )
