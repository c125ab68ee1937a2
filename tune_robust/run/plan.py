"""``plan()``: everything a run will do, resolved and checked without starting Ray; ``describe()``: the
dry run's text. A real run executes exactly the plan (``tune_robust.run.execute``)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tune_robust import cluster
from tune_robust.config import apply_override, flatten
from tune_robust.errors import ConfigError
from tune_robust.results.tracking import check_tracking
from tune_robust.run import inputs, strategy, upstream
from tune_robust.run.inputs import SEED_KEY
from tune_robust.run.options import Plan, RunOptions
from tune_robust.run.strategy import search_method
from tune_robust.run.validate import check_writable, validate
from tune_robust.run.zoo import resolve_zoo
from tune_robust.sweeps import SweepSpec, Variants, get_sweep, set_dotted


def plan(name: str, options: RunOptions) -> Plan:
    """Resolve and validate sweep ``name`` under ``options``: upstream sweeps read, every trial config
    built and checked. Raises ConfigError (one line: what is wrong, what to do) on anything a run
    would fail on."""
    spec = get_sweep(name)
    _check_options(spec, options)
    cpus = spec.cpus_per_trial if options.cpus_per_trial is None else options.cpus_per_trial
    gpus = spec.gpus_per_trial if options.gpus_per_trial is None else options.gpus_per_trial
    _check_resources(options, cpus, gpus)
    base, sets = _base_config(spec, options)
    points = (
        list(spec.points({key: True for key, _ in sets}, options.fidelity))
        if spec.inputs == "grid"
        else inputs.checkpoint_points(spec, options, base)
    )
    points = _with_seeds(spec, options, points, [key for key, _ in sets])
    if options.max_trials is not None:
        points = points[: options.max_trials]
    configs = _configs(spec, options, base, sets, points)
    strategy.check_options(spec, options)  # cheap checks first: the next steps read data, build models
    resolved = upstream.resolve(spec, options, base, configs)
    with_zoo, zoo_notes = resolve_zoo(resolved.configs, options)
    chosen = strategy.resolve(spec, options, with_zoo)
    # MACs only where the progress line will weight its ETA by them (a run at the default verbosity)
    checked = validate(with_zoo, count_macs=options.verbose == 1 and not options.dry_run)
    return Plan(
        spec=spec,
        options=options,
        base=base,
        points=tuple(points),
        configs=tuple(checked.configs),
        cpus=cpus,
        gpus=gpus,
        strategy=chosen,
        macs=checked.macs,
        notes=(*resolved.notes, *zoo_notes),
    )


def grid_configs(spec: SweepSpec, options: RunOptions) -> list[dict[str, Any]]:
    """A grid sweep's trial configs under ``options`` (fidelity, --dataset, --set, --seeds), in grid
    order, without validating models or data: what a search strategy chooses from."""
    _check_fidelity(spec, options)
    base, sets = _base_config(spec, options)
    points = list(spec.points({key: True for key, _ in sets}, options.fidelity))
    points = _with_seeds(spec, options, points, [key for key, _ in sets])
    return _configs(spec, options, base, sets, points)


def _configs(
    spec: SweepSpec,
    options: RunOptions,
    base: Mapping[str, Any],
    sets: Sequence[tuple[str, str]],
    points: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    configs = [_merge(base, p) for p in points]
    if any(isinstance(v, Variants) for v in spec.space_for(options.fidelity).values()):
        # A variant may replace a whole section: --set values win over it, as they do over a Grid.
        for cfg in configs:
            for key, raw in sets:
                apply_override(cfg, key, raw)
    return configs


def _with_seeds(
    spec: SweepSpec, options: RunOptions, points: list[dict[str, Any]], pinned: Sequence[str]
) -> list[dict[str, Any]]:
    """Each point once per --seeds value (seeds of one point next to each other)."""
    if not options.seeds:
        return points
    what = f"--seeds {','.join(map(str, options.seeds))}"
    if spec.inputs != "grid":
        raise ConfigError(f"{what}: sweep {spec.name!r} evaluates given checkpoints; seeds apply to training")
    if SEED_KEY in pinned:
        raise ConfigError(f"{what} and --set {SEED_KEY}=...: give one of them")
    if any(SEED_KEY in p for p in points):
        raise ConfigError(
            f"{what}: sweep {spec.name!r} ({options.fidelity}) already searches {SEED_KEY}; drop --seeds"
        )
    if len(set(options.seeds)) != len(options.seeds):
        raise ConfigError(f"{what}: a seed is given twice")
    return [{**p, SEED_KEY: seed} for p in points for seed in options.seeds]


def _check_fidelity(spec: SweepSpec, options: RunOptions) -> None:
    if options.fidelity not in spec.fidelities:
        raise ConfigError(
            f"sweep {spec.name!r} has no fidelity {options.fidelity!r}; choose from "
            f"{', '.join(spec.fidelities)}"
        )


def _check_options(spec: SweepSpec, options: RunOptions) -> None:
    _check_fidelity(spec, options)
    if options.max_trials is not None and options.max_trials < 1:
        raise ConfigError(f"--max-trials must be >= 1, got {options.max_trials}")
    if options.max_failures < 0:
        raise ConfigError(f"--max-failures must be >= 0, got {options.max_failures}")
    check_writable(Path(options.results_dir).expanduser())
    check_tracking(options.track)


def _check_resources(options: RunOptions, cpus: float, gpus: float) -> None:
    if cpus <= 0:
        raise ConfigError(f"--cpus-per-trial must be > 0, got {cpus}")
    if gpus < 0 or (gpus > 1 and gpus != int(gpus)):
        raise ConfigError(f"--gpus-per-trial must be a fraction in [0, 1] or a whole number, got {gpus}")
    if options.memory_per_trial is not None and options.memory_per_trial <= 0:
        raise ConfigError(f"--memory-per-trial must be > 0 GiB, got {options.memory_per_trial}")
    if not options.address:
        cluster.fits_this_machine(cpus, options.memory_per_trial, options.extra_ray_init)


def _base_config(spec: SweepSpec, options: RunOptions) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The fidelity's base config with --dataset, --data-dir and every --set applied (each checked as it
    is applied), and the --set pairs."""
    base = {k: dict(v) for k, v in copy.deepcopy(dict(spec.fidelities[options.fidelity])).items()}
    if options.dataset:
        base.setdefault("data", {})["dataset"] = options.dataset
    if options.data_dir:
        base.setdefault("data", {})["data_dir"] = str(Path(options.data_dir).expanduser().resolve())
    sets: list[tuple[str, str]] = []
    for item in options.sets:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = (part.strip() for part in item.split("=", 1))
        apply_override(base, key, raw)
        sets.append((key, raw))
    return base, sets


def _merge(base: Mapping[str, Any], point: Mapping[str, Any]) -> dict[str, Any]:
    cfg = copy.deepcopy(dict(base))
    for k, v in point.items():
        set_dotted(cfg, k, v)
    return cfg


def flat_point(point: Mapping[str, Any]) -> dict[str, Any]:
    """A grid point with whole-section values (from Variants) spread into dotted keys."""
    out: dict[str, Any] = {}
    for k, v in point.items():
        if "." not in k and isinstance(v, dict):
            out.update({f"{k}.{sub}": value for sub, value in v.items()})
        else:
            out[k] = v
    return out


def varying_keys(points: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every dotted key some grid point sets, in first-seen order (Variants may set different keys)."""
    return list(dict.fromkeys(k for pt in points for k in flat_point(pt)))


def describe(p: Plan) -> str:
    """The dry run: the base config, the strategy, and one line per trial a run starts (upstream trials
    included), then the count."""
    lines = [f"sweep {p.spec.name} ({p.options.fidelity}): {_count(p)}"]
    lines += [f"note: {n}" for n in p.notes]
    lines.append("base config:")
    lines += [f"  {k} = {v}" for k, v in flatten(dict(p.base)).items()]
    lines += [f"  upstream.{k} = {v}" for k, v in _shared_upstream(p).items()]
    lines.append("strategy: " + ", ".join(f"{k}={v}" for k, v in p.strategy.record().items()))
    if p.options.plugins:
        lines.append("plugins: " + ", ".join(pl.label() for pl in p.options.plugins))
    varying = varying_keys(p.points)
    picks = search_method(p.strategy.search).planned(len(p.configs), p.num_trials, p.strategy.search_seed)
    if picks is None:
        lines.append(f"trials ({p.strategy.search} chooses {p.num_trials} of these while it runs): ")
        picks = list(range(len(p.configs)))
    else:
        lines.append("trials, in the order they start: ")
    lines[-1] += ", ".join(varying)
    lines += [_trial_line(p, i, varying) for i in picks]
    lines.append(f"{p.num_trials} trials")
    return "\n".join(lines)


def _trial_line(p: Plan, i: int, varying: Sequence[str]) -> str:
    """Grid point ``i`` by the keys it sets, or an upstream sweep's trial by where it came from."""
    if i < len(p.points):
        flat = flat_point(p.points[i])
        return f"  {i:4d}  " + "  ".join(f"{k}={flat[k]}" for k in varying if k in flat)
    cfg = p.configs[i]
    model = "  ".join(f"model.{k}={v}" for k, v in cfg.get("model", {}).items())
    return f"  {i:4d}  from {cfg.get('eval', {}).get('label', '')}: {model}"


def _shared_upstream(p: Plan) -> dict[str, Any]:
    """Upstream inputs that planning filled in alike for every trial (an earlier stage's checkpoint)."""
    first = dict(p.configs[0].get("upstream", {})) if p.configs else {}
    shared = {k: v for k, v in first.items() if all(c.get("upstream", {}).get(k) == v for c in p.configs)}
    return {k: v for k, v in shared.items() if k not in p.base.get("upstream", {})}


def _count(p: Plan) -> str:
    n = len(p.configs)
    return f"{n} trials" if p.num_trials == n else f"{p.num_trials} trials over a grid of {n}"
