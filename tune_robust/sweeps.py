"""Declarative sweep specs, registered by name (built-ins: ``search_spaces/``, one file per family).

A spec names a trainable, a base trial config per fidelity (``smoke`` runs on the embedded default in
minutes; ``paper`` is the seed paper's setting), the searched values (flat dotted keys -> ``Grid``),
the metric, per-trial resources, and optional upstream stages whose artifacts its trials receive.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tune_robust.errors import ConfigError
from tune_robust.registry import Registry


@dataclass(frozen=True)
class Grid:
    """Values of one searched key; several Grids form their Cartesian product (in declaration order)."""

    values: tuple[Any, ...]

    def __init__(self, values: Sequence[Any]) -> None:
        if not values:
            raise ValueError("a Grid needs at least one value")
        object.__setattr__(self, "values", tuple(values))


@dataclass(frozen=True)
class Variants:
    """One searched dimension whose values are joint settings: each value sets several keys at once
    (flat dotted keys, or a whole section by its name, e.g. ``"attack": {...}`` for a method that needs
    another training attack). Use it where the keys of a Grid would not vary independently."""

    values: tuple[dict[str, Any], ...]

    def __init__(self, values: Sequence[Mapping[str, Any]]) -> None:
        if not values:
            raise ValueError("Variants needs at least one value")
        object.__setattr__(self, "values", tuple(dict(v) for v in values))


@dataclass(frozen=True)
class Upstream:
    """What a stage takes from an earlier sweep in the same results dir (the runner refuses with a
    clear message if that sweep has not been run).

    ``kind="checkpoint"``: every trial gets ``config["upstream"][name]`` = the checkpoint of that
    sweep's best finished trial by ``metric`` (e.g. the supernet whose weights a finetune inherits).

    ``kind="architectures"``: the sweep's searched architectures become trials of this one: the best
    trial (by ``metric``) of each value of the column ``per`` (e.g. the budget; None: one best overall)
    gives its architecture record's model section, merged over this sweep's base model section
    (channels, layers stay this sweep's), and its method section where the record has one (RNAS-CL's
    tutor map), trained from scratch under every other setting the grid's
    trials have (e.g. each seed); ``eval.label`` says where it came from (sweep, group, trial id).
    ``optional``: without that sweep, say so and skip it.

    ``where``: only rows whose columns have these values (e.g. ``{"model.share": False}``).
    """

    name: str
    sweep: str
    metric: str = "best_robust_acc"
    kind: Literal["checkpoint", "architectures"] = "checkpoint"
    per: str | None = None
    where: Mapping[str, Any] = field(default_factory=dict)
    optional: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("checkpoint", "architectures"):
            raise ValueError(f"Upstream kind must be 'checkpoint' or 'architectures', got {self.kind!r}")
        if self.kind == "checkpoint" and (self.per or self.optional):
            raise ValueError("Upstream per/optional apply to kind='architectures' only")


@dataclass(frozen=True)
class SweepSpec:
    name: str
    description: str
    # Name in the trainables registry.
    trainable: str
    # Base nested trial config per fidelity (see tune_robust.config for the sections).
    fidelities: Mapping[str, Mapping[str, Any]]
    # Flat dotted key -> Grid of values to search; or a dimension name -> Variants (joint settings).
    space: Mapping[str, Grid | Variants] = field(default_factory=dict)
    # A fidelity whose searched values differ (e.g. shrunken architectures for smoke) replaces space.
    fidelity_space: Mapping[str, Mapping[str, Grid | Variants]] = field(default_factory=dict)
    # What Ray Tune optimises (reported every epoch) and the Parquet column the summary ranks by.
    metric: str = "val_robust_acc"
    mode: str = "max"
    rank_by: str = "best_robust_acc"
    # Rank within each value of this column (e.g. "arch_sep_convs": RobNet's pick per budget).
    rank_within: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    upstream: tuple[Upstream, ...] = ()
    # Notes printed with --list and stored with results (e.g. what the smoke fidelity trades away).
    notes: Mapping[str, str] = field(default_factory=dict)
    # Where the trials come from: the grid ("grid"), one trial per --checkpoint/--from-sweep checkpoint
    # ("checkpoints": upstream.model), or one per source with every checkpoint as a target ("pairs").
    inputs: Literal["grid", "checkpoints", "pairs"] = "grid"
    # For checkpoint inputs: sweeps of the same results dir taken (as --from-sweep) when the command
    # names no --checkpoint or --from-sweep.
    default_from: tuple[str, ...] = ()
    # Of those default sweeps, only the trials whose columns have these values (e.g. the adversarially
    # trained ones: {"method.name": "pgd_at"}).
    default_where: Mapping[str, Any] = field(default_factory=dict)
    # For checkpoint inputs: what --checkpoint is when neither it nor --from-sweep is given (e.g.
    # robustbench:cifar10/Linf/*, every zoo model of a leaderboard).
    default_checkpoints: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if "smoke" not in self.fidelities:
            raise ValueError(f"sweep {self.name!r} needs a 'smoke' fidelity (the default)")
        if self.mode not in ("max", "min"):
            raise ValueError(f"sweep {self.name!r}: mode must be 'max' or 'min'")

    def space_for(self, fidelity: str) -> Mapping[str, Grid | Variants]:
        return self.fidelity_space.get(fidelity, self.space)

    def points(
        self, pinned: Mapping[str, Any] | None = None, fidelity: str = "smoke"
    ) -> Iterator[dict[str, Any]]:
        """Yield the grid points as flat dicts; keys in ``pinned`` (from --set) are not searched."""
        space = self.space_for(fidelity)
        keys = [k for k in space if k not in (pinned or {})]
        for combo in itertools.product(*(space[k].values for k in keys)):
            point: dict[str, Any] = {}
            for key, value in zip(keys, combo, strict=True):
                if isinstance(space[key], Variants):
                    point.update(value)
                else:
                    point[key] = value
            yield point


SWEEPS: Registry[Callable[[], SweepSpec]] = Registry("sweep", plugin="sweeps")


def register_sweep(fn: Callable[[], SweepSpec]) -> Callable[[], SweepSpec]:
    """Register a function returning a SweepSpec; the function name is the sweep name."""
    return SWEEPS.register(fn.__name__)(fn)


def get_sweep(name: str) -> SweepSpec:
    spec = SWEEPS.get(name)()
    if spec.name != name:
        raise ConfigError(f"sweep registered as {name!r} calls itself {spec.name!r}")
    return spec


def list_sweeps() -> list[SweepSpec]:
    return [SWEEPS.get(n)() for n in SWEEPS.names()]


def set_dotted(cfg: dict[str, Any], key: str, value: Any) -> None:
    """Set ``section.name`` to value, or replace a whole section when ``key`` has no dot."""
    if "." not in key:
        cfg[key] = dict(value)
        return
    section, name = key.split(".", 1)
    cfg.setdefault(section, {})[name] = value
