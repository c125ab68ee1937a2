"""Turn a sweep spec plus run options into a Ray Tune run (new or resumed) and a results summary.

Everything a user can get wrong is checked here before Ray starts (unknown keys, bad values, missing
data, GPUs that do not exist, a results dir that already holds this sweep), raising ConfigError.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tune_robust import cluster, snapshot
from tune_robust.config import TrialConfig, apply_override, flatten
from tune_robust.errors import ConfigError
from tune_robust.results.tracking import check_tracking, tracking_callbacks
from tune_robust.sweeps import SweepSpec, Upstream, Variants, get_sweep, set_dotted

SWEEP_FILE = "sweep.json"
TUNE_DIR = "tune"


@dataclass(frozen=True)
class RunOptions:
    """Options of one ``sweep.py`` invocation (see ``sweep.py --help`` for each)."""

    fidelity: str = "smoke"
    dataset: str | None = None
    data_dir: str | None = None
    download: bool = False
    sets: tuple[str, ...] = ()
    max_trials: int | None = None
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    memory_per_trial: float | None = None  # GiB Ray reserves per trial (default: none declared)
    address: str | None = None
    results_dir: str = "results"
    resume: bool = False
    max_failures: int = 0
    dry_run: bool = False
    # 0: warnings and the summary; 1: plus one live progress line; 2: Ray Tune's per-trial tables
    # instead; 3: Ray's most detailed output and the trials' own logs.
    verbose: int = 1
    # Experiment trackers (tune_robust.results.tracking: mlflow, tensorboard) and MLflow's tracking URI
    # (default: sqlite:///<results_dir>/mlflow.db).
    track: tuple[str, ...] = ()
    mlflow_uri: str | None = None
    # Checkpoints for the evaluate/transfer sweeps: "PATH" or "LABEL=PATH"; --from-sweep directories
    # add their finished trials (best top_k by best_robust_acc; 0 = all).
    checkpoints: tuple[str, ...] = ()
    from_sweeps: tuple[str, ...] = ()
    top_k: int = 0
    # transfer with eval.transfer_protocol=independent_copy: the copy each source's examples are crafted
    # on, "LABEL=PATH", or found in these sweeps (same config, another train.seed).
    craft_on: tuple[str, ...] = ()
    craft_on_sweeps: tuple[str, ...] = ()
    # Imported plugins (tune_robust.plugins.Plugin), re-imported in every trial before its config.
    plugins: tuple[Any, ...] = ()
    # Search strategy (see tune_robust.search): which configs run and which a scheduler stops early.
    search: str = "grid"
    scheduler: str = "fifo"
    num_samples: int | None = None
    search_seed: int = 0
    grace_period: int = 1
    reduction_factor: float = 3.0
    # "metric:mode" objectives of tpe/nsga2 (several = multi-objective); default: the sweep's metric
    # (tpe) or it plus params:min (nsga2).
    objectives: tuple[str, ...] = ()
    extra_ray_init: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """A validated sweep: the base trial config, the grid points and every full trial config."""

    spec: SweepSpec
    options: RunOptions
    base: dict[str, Any]
    points: list[dict[str, Any]]
    configs: list[dict[str, Any]]
    cpus: float
    gpus: float
    strategy: dict[str, Any] = field(default_factory=dict)

    @property
    def resources(self) -> dict[str, float]:
        """What Ray reserves per trial (memory in bytes, only when declared)."""
        memory = self.options.memory_per_trial
        return {"cpu": self.cpus, "gpu": self.gpus, **({"memory": memory * 2**30} if memory else {})}

    @property
    def needs(self) -> dict[str, float]:
        """One trial's resources as Ray names a node's (``cluster.fits_a_node``)."""
        return {"CPU": self.cpus, "GPU": self.gpus, "memory": self.resources.get("memory", 0.0)}

    @property
    def sweep_dir(self) -> Path:
        return Path(self.options.results_dir).expanduser().resolve() / self.spec.name

    def fingerprint(self) -> dict[str, Any]:
        """What must match for ``--resume`` to continue the same sweep."""
        return {
            "sweep": self.spec.name,
            "fidelity": self.options.fidelity,
            "configs": json.loads(json.dumps(self.configs, default=str)),
            "cpus_per_trial": self.cpus,
            "gpus_per_trial": self.gpus,
            **({"memory_per_trial": self.options.memory_per_trial} if self.options.memory_per_trial else {}),
            "strategy": self.strategy,
            # (only when there are plugins: sweeps written before plugins existed resume unchanged)
            **({"plugins": self.plugin_records()} if self.options.plugins else {}),
        }

    def plugin_records(self) -> list[dict[str, str]]:
        from tune_robust.plugins import records

        return records(self.options.plugins)


def _merge(base: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
    cfg = copy.deepcopy(base)
    for k, v in point.items():
        set_dotted(cfg, k, v)
    return cfg


def plan(name: str, options: RunOptions) -> Plan:
    """Validate everything about a sweep without starting Ray."""
    spec = get_sweep(name)
    if options.fidelity not in spec.fidelities:
        raise ConfigError(
            f"sweep {name!r} has no fidelity {options.fidelity!r}; choose from {', '.join(spec.fidelities)}"
        )
    if options.max_trials is not None and options.max_trials < 1:
        raise ConfigError(f"--max-trials must be >= 1, got {options.max_trials}")
    if options.max_failures < 0:
        raise ConfigError(f"--max-failures must be >= 0, got {options.max_failures}")
    check_writable(Path(options.results_dir).expanduser())
    check_tracking(options.track)
    cpus = spec.cpus_per_trial if options.cpus_per_trial is None else options.cpus_per_trial
    gpus = spec.gpus_per_trial if options.gpus_per_trial is None else options.gpus_per_trial
    if cpus <= 0:
        raise ConfigError(f"--cpus-per-trial must be > 0, got {cpus}")
    if gpus < 0 or (gpus > 1 and gpus != int(gpus)):
        raise ConfigError(f"--gpus-per-trial must be a fraction in [0, 1] or a whole number, got {gpus}")
    if options.memory_per_trial is not None and options.memory_per_trial <= 0:
        raise ConfigError(f"--memory-per-trial must be > 0 GiB, got {options.memory_per_trial}")
    if not options.address:
        cluster.fits_this_machine(cpus, options.memory_per_trial, options.extra_ray_init)

    base = copy.deepcopy(dict(spec.fidelities[options.fidelity]))
    base = {k: dict(v) for k, v in base.items()}
    if options.dataset:
        base.setdefault("data", {})["dataset"] = options.dataset
    if options.data_dir:
        base.setdefault("data", {})["data_dir"] = str(Path(options.data_dir).expanduser().resolve())
    pinned: dict[str, Any] = {}
    sets: list[tuple[str, str]] = []
    for item in options.sets:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        probe = copy.deepcopy(base)
        apply_override(probe, key, raw.strip())
        base = probe
        pinned[key] = True
        sets.append((key, raw.strip()))
    points = (
        list(spec.points(pinned, options.fidelity))
        if spec.inputs == "grid"
        else _checkpoint_points(spec, options, base)
    )
    if options.max_trials is not None:
        points = points[: options.max_trials]
    configs = [_merge(base, p) for p in points]
    if any(isinstance(v, Variants) for v in spec.space_for(options.fidelity).values()):
        # A variant may replace a whole section: --set values win over it, as they do over a Grid.
        for cfg in configs:
            for key, raw in sets:
                apply_override(cfg, key, raw)
    strategy = _strategy(spec, options, configs)  # cheap checks first: _validate builds models, reads data
    _validate(configs)
    return Plan(spec, options, base, points, configs, cpus, gpus, strategy)


def check_writable(results: Path) -> None:
    """--results-dir must be a directory this process can write, or a new one in an existing,
    writable parent (a missing parent is more often a typo than a wish for a new tree)."""
    import tempfile

    where = results if results.exists() else results.parent
    if not where.exists():
        raise ConfigError(
            f"--results-dir {results}: its parent {where} does not exist; create it first "
            f"(mkdir -p {where}) or fix the path"
        )
    if not where.is_dir():
        raise ConfigError(f"--results-dir {results}: {where} is a file, not a directory; choose another path")
    try:
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as e:
        raise ConfigError(
            f"--results-dir {results}: cannot write in {where} ({e.strerror}); choose a directory you can "
            "write to"
        ) from None


SCHEDULERS = ("fifo", "asha")

# What every epoch report of the training trainables carries, so a searcher or scheduler can use it.
OBJECTIVE_METRICS = (
    "val_robust_acc",
    "val_clean_acc",
    "best_val_robust_acc",
    "train_loss",
    "train_acc",
    "params",
    "macs",
)


def _search_method(name: str) -> Any:
    from tune_robust.searchers import SEARCHES

    try:
        return SEARCHES.get(name)()
    except ConfigError as e:
        raise ConfigError(f"--search: {e}") from None


def _strategy(spec: SweepSpec, options: RunOptions, configs: list[dict[str, Any]]) -> dict[str, Any]:
    """Validate --search/--scheduler/--num-samples/--objective; the resolved strategy."""
    o = options
    method = _search_method(o.search)
    if o.scheduler not in SCHEDULERS:
        raise ConfigError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {o.scheduler!r}")
    if (o.search != "grid" or o.scheduler != "fifo") and spec.inputs != "grid":
        raise ConfigError(
            f"sweep {spec.name!r} runs one trial per checkpoint; --search and --scheduler apply to "
            "grid sweeps"
        )
    if o.max_trials is not None and method.samples:
        raise ConfigError(f"--max-trials cuts the grid; with --search {o.search} use --num-samples")
    if o.num_samples is not None and o.num_samples < 1:
        raise ConfigError(f"--num-samples must be >= 1, got {o.num_samples}")
    strategy: dict[str, Any] = {"search": o.search, "scheduler": o.scheduler, "search_seed": o.search_seed}
    strategy["num_samples"] = method.num_samples(len(configs), o.num_samples)
    if o.objectives and not method.objectives:
        raise ConfigError(f"--objective applies to model-based searches (e.g. tpe, nsga2), not {o.search}")
    if method.objectives:
        strategy["objectives"] = _objectives(
            o.objectives or method.default_objectives(spec.metric, spec.mode)
        )
    if o.scheduler == "asha":
        strategy.update(_asha(o, configs))
    return strategy


def _objectives(given: Sequence[str]) -> list[str]:
    objectives = []
    for item in given:
        metric, _, mode = item.partition(":")
        mode = mode or "max"
        if metric not in OBJECTIVE_METRICS or mode not in ("max", "min"):
            raise ConfigError(
                f"--objective {item!r}: expected METRIC:max|min with METRIC one of "
                f"{', '.join(OBJECTIVE_METRICS)}"
            )
        objectives.append(f"{metric}:{mode}")
    if len(set(objectives)) != len(objectives):
        raise ConfigError(f"--objective lists a metric twice: {', '.join(objectives)}")
    return objectives


def _asha(o: RunOptions, configs: list[dict[str, Any]]) -> dict[str, Any]:
    max_t = max(TrialConfig.from_dict(c).train.epochs for c in configs)
    if not 1 <= o.grace_period < max_t:
        raise ConfigError(
            f"--grace-period must be >= 1 epoch and below train.epochs ({max_t}), got {o.grace_period}"
        )
    if o.reduction_factor <= 1:
        raise ConfigError(f"--reduction-factor must be > 1, got {o.reduction_factor}")
    return {"max_t": max_t, "grace_period": o.grace_period, "reduction_factor": o.reduction_factor}


def build_search(p: Plan) -> tuple[Any, Any, list[Any]]:
    """(search_alg, scheduler, extra callbacks) for ``p.strategy``."""
    from tune_robust.search import ASHA, SchedulerState, SweepSearch
    from tune_robust.searchers import SearchInputs

    s = p.strategy
    inputs = SearchInputs(
        configs=p.configs,
        space=p.spec.space_for(p.options.fidelity),
        pinned={item.split("=", 1)[0].strip(): True for item in p.options.sets},
        num_samples=s["num_samples"],
        seed=s["search_seed"],
        objectives=s.get("objectives", ()),
    )
    searcher = _search_method(s["search"]).searcher(inputs)
    search_alg = SweepSearch(
        searcher, storage_dir=str(p.sweep_dir / TUNE_DIR), kept_dir=str(p.sweep_dir / snapshot.KEPT_DIR)
    )
    scheduler, callbacks = None, []
    if s["scheduler"] == "asha":
        # metric/mode come from TuneConfig (the sweep's robust-accuracy metric); time is the epoch.
        scheduler = ASHA(
            time_attr="epoch",
            max_t=s["max_t"],
            grace_period=s["grace_period"],
            reduction_factor=s["reduction_factor"],
        )
        callbacks.append(SchedulerState(scheduler))
    return search_alg, scheduler, callbacks


def _labelled(item: str) -> tuple[str | None, str]:
    """``LABEL=PATH`` or ``PATH``; Ray's trial directory names contain "=", so an existing path is
    taken whole."""
    if "=" in item and not Path(item).expanduser().exists():
        label, path = item.split("=", 1)
        return label.strip() or None, path
    return None, item


def checkpoint_list(
    options: RunOptions, first_seed_only: bool = False, where: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """``{label: absolute path}`` from --checkpoint and --from-sweep, labels unique (``first_seed_only``:
    a sweep's other seeds of one config are copies, not checkpoints of their own; ``where``: only the
    --from-sweep trials whose columns have these values)."""
    from tune_robust.checkpoints import sweep_checkpoints
    from tune_robust.models.checkpoint import describe_checkpoint, resolve_path

    items = [_labelled(item) for item in options.checkpoints]
    for d in options.from_sweeps:
        found = sweep_checkpoints(d, options.top_k, first_seed_only=first_seed_only, where=where)
        items.extend((None, p) for p in found)
    out: dict[str, str] = {}
    paths = [str(resolve_path(path).resolve()) for _, path in items]
    for (given, _), resolved in zip(items, paths, strict=True):
        name = given or describe_checkpoint(resolved, [p for p in paths if p != resolved])
        base, i = name, 2
        while name in out:
            name, i = f"{base} #{i}", i + 1
        out[name] = resolved
    return out


def _checkpoint_points(spec: SweepSpec, options: RunOptions, base: dict[str, Any]) -> list[dict[str, Any]]:
    independent = base.get("eval", {}).get("transfer_protocol") == "independent_copy"
    if (options.craft_on or options.craft_on_sweeps) and not (spec.inputs == "pairs" and independent):
        raise ConfigError(
            "--craft-on / --craft-on-sweep name the copies a transfer sweep crafts on: use them with "
            "sweep transfer and --set eval.transfer_protocol=independent_copy (its paper fidelity)"
        )
    where: Mapping[str, Any] = {}
    if spec.default_from and not (options.checkpoints or options.from_sweeps):
        where = spec.default_where
        results = Path(options.results_dir).expanduser().resolve()
        for name in spec.default_from:
            if not (results / name / "trials.parquet").exists():
                raise ConfigError(
                    f"sweep {spec.name!r} takes the checkpoints of sweep {name!r}, which has no results in "
                    f"{results / name}; run `python sweep.py {name}` first (same --results-dir), or name "
                    f"checkpoints with --checkpoint / --from-sweep"
                )
        options = replace(options, from_sweeps=tuple(str(results / name) for name in spec.default_from))
    found = checkpoint_list(options, first_seed_only=independent and not options.craft_on_sweeps, where=where)
    if not found:
        raise ConfigError(
            f"sweep {spec.name!r} evaluates checkpoints: pass --checkpoint PATH (repeatable; a trial's "
            f"state dir, its model.pt, or a plain state dict with --set model.arch=...) or --from-sweep DIR"
        )
    if spec.inputs == "checkpoints":
        return [{"upstream.model": path, "eval.label": label} for label, path in found.items()]
    base.setdefault("upstream", {}).update({f"target:{label}": path for label, path in found.items()})
    points = [{"upstream.source": path, "eval.label": label} for label, path in found.items()]
    if independent:
        copies = crafting_copies(options, found)
        for point in points:
            point["upstream.craft"] = copies[str(point["eval.label"])]
    return points


def crafting_copies(options: RunOptions, found: dict[str, str]) -> dict[str, str]:
    """``{source label: path of the independently trained copy its examples are crafted on}``: from
    --craft-on LABEL=PATH, else a trial of --craft-on-sweep (or of the --from-sweep itself) with the
    source's config and another train.seed. Every source needs one (RobNet supplement Table 4)."""
    from tune_robust.checkpoints import seed_copies
    from tune_robust.models.checkpoint import resolve_path

    copies: dict[str, str] = {}
    for item in options.craft_on:
        label, path = _labelled(item)
        if label is None or label not in found:
            raise ConfigError(
                f"--craft-on {item!r}: give SOURCE_LABEL=PATH with one of the sources' labels "
                f"({', '.join(sorted(found))})"
            )
        copies[label] = str(resolve_path(path).resolve())
    if options.from_sweeps or options.craft_on_sweeps:
        wanted = [p for lb, p in found.items() if lb not in copies]
        by_path = seed_copies(wanted, options.from_sweeps, options.craft_on_sweeps)
        copies.update({lb: by_path[p] for lb, p in found.items() if p in by_path})
    missing = sorted(set(found) - set(copies))
    if missing:
        raise ConfigError(
            f"eval.transfer_protocol=independent_copy crafts on an independently trained copy of each "
            f"source, but none was found for {', '.join(missing)}: pass --craft-on LABEL=PATH, or "
            f"--craft-on-sweep DIR with the same sweep run again with --set train.seed=1 (or use "
            f"--set eval.transfer_protocol=white_box)"
        )
    same = sorted(lb for lb, p in found.items() if copies[lb] == p)
    if same:
        raise ConfigError(f"--craft-on: the copy of {', '.join(same)} is the source itself (white-box)")
    return copies


def _validate(configs: Sequence[dict[str, Any]]) -> None:
    from tune_robust.data import DATASETS, load_dataset
    from tune_robust.models import create_meta_model

    seen_models: set[str] = set()
    seen_data: set[tuple[str, str | None]] = set()
    seen_checkpoints: set[str] = set()
    for cfg in configs:
        tc = TrialConfig.from_dict(cfg)
        key = json.dumps([tc.model.name, tc.model.kwargs], default=str, sort_keys=True)
        if key not in seen_models:  # build once on the meta device: catches bad depths/widths cheaply
            seen_models.add(key)
            info = DATASETS.get(tc.data.dataset)
            model = create_meta_model(tc.model.name, info.num_classes, info.shape[0], **tc.model.kwargs)
            _check_screen(tc, model)
        for key, path in tc.upstream.items():
            ckey = json.dumps([key, path, tc.model.name, tc.model.kwargs, tc.data.dataset], default=str)
            if ckey not in seen_checkpoints:
                seen_checkpoints.add(ckey)
                _check_checkpoint(key, path, tc)
        dkey = (tc.data.dataset, tc.data.data_dir)
        if dkey not in seen_data:  # a missing or malformed dataset fails here, not in every trial
            seen_data.add(dkey)
            load_dataset(tc.data.dataset, tc.data.data_dir, tc.data.download)
    for cfg in configs:  # the driver downloaded what was needed; trials only read
        cfg.get("data", {}).pop("download", None)


def _check_screen(tc: TrialConfig, model: Any) -> None:
    """screen.fsp needs a model that reports its cells' features, with at least screen.fsp_cells."""
    if not tc.screen.fsp:
        return
    cells = getattr(model, "cells", None)
    if not hasattr(model, "feature_hook") or cells is None:
        raise ConfigError(
            f"screen.fsp=true: model {tc.model.name!r} does not report cell features; the FSP screen "
            f"needs a cell network (robnet)"
        )
    if len(cells) < tc.screen.fsp_cells:
        raise ConfigError(
            f"screen.fsp_cells={tc.screen.fsp_cells}, but model {tc.model.name!r} has {len(cells)} cells"
        )


def _loads_as_trial_model(key: str) -> bool:
    """Upstream checkpoints a trial builds as its own ``model.arch`` when they are plain state dicts
    (evaluated, transferred between, or fine-tuned from); others (a teacher) must name their own."""
    return key in ("model", "source", "craft", "init") or key.startswith("target:")


def _check_checkpoint(key: str, path: str, tc: TrialConfig) -> None:
    """A checkpoint of ours must match the dataset's classes and channels; a plain state dict must fit
    ``model.arch`` (in our names or a published layout's). Found here, not in every trial after Ray
    has started."""
    from tune_robust.data import DATASETS
    from tune_robust.models.checkpoint import checkpoint_info, fit_plain

    if key == "init" and not Path(path).exists():
        return  # an upstream stage of this run: resolved later
    info = checkpoint_info(path)
    ds = DATASETS.get(tc.data.dataset)
    if info and (info["num_classes"], info["in_channels"]) != (ds.num_classes, ds.shape[0]):
        raise ConfigError(
            f"checkpoint {path} was trained for {info['num_classes']} classes / {info['in_channels']} "
            f"channels, but dataset {tc.data.dataset!r} has {ds.num_classes} / {ds.shape[0]}; pass the "
            f"dataset it was trained on (--dataset, --data-dir)"
        )
    if not info and not _loads_as_trial_model(key):
        raise ConfigError(
            f"upstream.{key}: {path} is a plain state dict, which names no architecture; "
            f"{key} must be a checkpoint of ours (a trial's model.pt), which rebuilds itself"
        )
    if not info:
        fitted = fit_plain(path, tc.model.name, tc.model.kwargs, ds.num_classes, ds.shape[0])
        if fitted.layout.name != "ours":
            print(
                f"note: checkpoint {path} is in the {fitted.layout.name} layout ({fitted.layout.source}); "
                f"loaded as {tc.model.name}. Inputs: {fitted.layout.inputs}"
            )


def flat_point(point: dict[str, Any]) -> dict[str, Any]:
    """A grid point with whole-section values (from Variants) spread into dotted keys."""
    out: dict[str, Any] = {}
    for k, v in point.items():
        if "." not in k and isinstance(v, dict):
            out.update({f"{k}.{sub}": value for sub, value in v.items()})
        else:
            out[k] = v
    return out


def varying_keys(p: Plan) -> list[str]:
    """Every dotted key some grid point sets, in first-seen order (Variants may set different keys)."""
    return list(dict.fromkeys(k for pt in p.points for k in flat_point(pt)))


def describe(p: Plan) -> str:
    varying = varying_keys(p)
    n = p.strategy.get("num_samples", len(p.configs))
    runs = (
        f"{len(p.configs)} trials" if n == len(p.configs) else f"{n} trials over a grid of {len(p.configs)}"
    )
    lines = [f"sweep {p.spec.name} ({p.options.fidelity}): {runs}"]
    lines.append("base config:")
    for k, v in flatten(p.base).items():
        lines.append(f"  {k} = {v}")
    lines.append("strategy: " + ", ".join(f"{k}={v}" for k, v in p.strategy.items()))
    if p.options.plugins:
        lines.append("plugins: " + ", ".join(pl.label() for pl in p.options.plugins))
    lines.append("trials: " + ", ".join(varying))
    for i, pt in enumerate(p.points):
        flat = flat_point(pt)
        lines.append(f"  {i:4d}  " + "  ".join(f"{k}={flat[k]}" for k in varying if k in flat))
    return "\n".join(lines)


def check_results_dir(p: Plan) -> bool:
    """Return True when resuming. Refuse to touch a sweep's finished results without --resume."""
    d = p.sweep_dir
    state = d / SWEEP_FILE
    exists = state.exists() or (d / "trials.parquet").exists() or (d / TUNE_DIR).exists()
    if exists and not p.options.resume:
        raise ConfigError(
            f"{d} already holds results of sweep {p.spec.name!r}; pass --resume to continue it, or "
            f"choose another --results-dir (finished results are never overwritten)"
        )
    if p.options.resume and exists:
        if state.exists():
            saved = json.loads(state.read_text())
            stored = saved.get("fingerprint", {})
            if "strategy" not in stored and (p.strategy["search"], p.strategy["scheduler"]) == (
                "grid",
                "fifo",
            ):
                stored["strategy"] = p.strategy  # written before strategies existed: a plain grid run
            if stored != p.fingerprint():
                raise ConfigError(
                    f"--resume: {d} holds sweep {p.spec.name!r} run with other options "
                    f"(fidelity/--set/--dataset/--max-trials/resources/search strategy/plugins); resume with "
                    f"the same options as the first run: {saved.get('command', '')}"
                )
        return True
    return False


def _write_state(p: Plan, command: str) -> None:
    p.sweep_dir.mkdir(parents=True, exist_ok=True)
    tmp = p.sweep_dir / f".{SWEEP_FILE}.tmp"
    tmp.write_text(
        json.dumps(
            {
                "fingerprint": p.fingerprint(),
                "options": {**asdict(p.options), "plugins": p.plugin_records()},
                "command": command,
            },
            indent=1,
            default=str,
        )
    )
    os.replace(tmp, p.sweep_dir / SWEEP_FILE)


def resolve_upstream(p: Plan) -> None:
    """Fill ``config["upstream"]`` from finished upstream sweeps in the same results dir, and add the
    trials of ``kind="architectures"`` upstreams (see ``tune_robust.sweeps.Upstream``). On --resume the
    architectures chosen when the sweep started are kept (sweep.json), whatever the upstream holds now."""
    added: list[dict[str, Any]] = []
    for up in p.spec.upstream:
        if up.kind == "architectures" and _stored_configs(p) is not None:
            continue
        df = _upstream_rows(p, up)
        if df is None:
            continue
        if up.kind == "checkpoint":
            best = df.sort_values(up.metric, ascending=False).iloc[0]
            for cfg in p.configs:
                cfg.setdefault("upstream", {})[up.name] = str(best["checkpoint_path"])
        else:
            added.extend(_architecture_trials(p, up, df))
    stored = _stored_configs(p)
    if stored is not None and len(stored) > len(p.configs):
        added = stored[len(p.configs) :]
        print(f"note: --resume keeps the {len(added)} upstream architecture trial(s) this sweep started with")
    if added:
        if p.options.search != "grid":
            raise ConfigError(
                f"sweep {p.spec.name!r} adds the architectures of earlier sweeps as fixed trials; run it "
                f"with --search grid (got --search {p.options.search})"
            )
        _validate(added)
        p.configs.extend(added)
        p.strategy["num_samples"] = _search_method(p.options.search).num_samples(
            len(p.configs), p.options.num_samples
        )


def _stored_configs(p: Plan) -> list[dict[str, Any]] | None:
    """The trial configs sweep.json recorded, when resuming a sweep with architecture upstreams."""
    state = p.sweep_dir / SWEEP_FILE
    if not (p.options.resume and state.exists()) or all(u.kind != "architectures" for u in p.spec.upstream):
        return None
    configs = json.loads(state.read_text()).get("fingerprint", {}).get("configs")
    return list(configs) if isinstance(configs, list) else None


def _unfinished(p: Plan, up: Upstream, directory: Path, n_rows: int) -> None:
    """Refuse to take architectures from a sweep that has not run all its planned trials."""
    state = directory / SWEEP_FILE
    if not state.exists():
        return
    planned = json.loads(state.read_text()).get("fingerprint", {}).get("strategy", {}).get("num_samples")
    if isinstance(planned, int) and n_rows < planned:
        raise ConfigError(
            f"sweep {p.spec.name!r} takes the best architectures of sweep {up.sweep!r}, which has "
            f"{n_rows} of its {planned} trials; finish it first (`python sweep.py {up.sweep} --resume`, "
            f"same --results-dir)"
        )


def _upstream_rows(p: Plan, up: Upstream) -> Any:
    """The upstream sweep's finished rows with a checkpoint and ``up.metric`` (None: an optional one
    that has not been run)."""
    import pandas as pd

    table = Path(p.options.results_dir).expanduser().resolve() / up.sweep / "trials.parquet"
    if not table.exists():
        if up.optional:
            print(
                f"note: sweep {up.sweep!r} has no results in {table.parent}: its architectures are not added"
            )
            return None
        raise ConfigError(
            f"sweep {p.spec.name!r} starts from the best checkpoint of sweep {up.sweep!r}, "
            f"which has no results in {table.parent}; run `python sweep.py {up.sweep}` first "
            f"(with the same --results-dir)"
        )
    df = pd.read_parquet(table)
    if up.kind == "architectures":
        _unfinished(p, up, table.parent, len(df))
    df = df[(df["status"] == "TERMINATED") & df["checkpoint_path"].notna()]
    for key, value in up.where.items():
        df = df[df[key] == value] if key in df else df.iloc[0:0]
    if up.metric in df:
        df = df[df[up.metric].notna()]
    wanted = f" with {dict(up.where)}" if up.where else ""
    if df.empty or up.metric not in df:
        raise ConfigError(
            f"sweep {up.sweep!r} has no finished trial{wanted} with a checkpoint and {up.metric!r}; "
            f"run `python sweep.py {up.sweep}` (with the same --results-dir) until one finishes"
        )
    if up.kind == "architectures" and ("arch" not in df or (up.per and up.per not in df)):
        raise ConfigError(f"sweep {up.sweep!r} has no architecture records (arch, {up.per}) to take")
    return df


def _architecture_trials(p: Plan, up: Upstream, df: Any) -> list[dict[str, Any]]:
    """One trial per (group winner, distinct non-model setting of the grid's trials)."""
    from tune_robust.models.oneshot import read_record

    groups = list(df.groupby(up.per, sort=True)) if up.per else [(None, df)]
    settings: dict[str, dict[str, Any]] = {}
    for cfg in p.configs:
        rest = {k: v for k, v in copy.deepcopy(cfg).items() if k != "model"}
        rest.get("eval", {}).pop("label", None)
        settings.setdefault(json.dumps(rest, sort_keys=True, default=str), rest)
    out = []
    for value, group in groups:
        best = group.sort_values(up.metric, ascending=False).iloc[0]
        record = read_record(str(best["arch"]))
        # (no "=" in a label: --checkpoint / --craft-on read LABEL=PATH)
        group = f"{value:g}" if isinstance(value, (int, float)) else str(value)
        label = f"{up.sweep}:{up.per}:{group}" if up.per else f"{up.sweep}:best"
        label += f" ({best['trial_id']})"
        for rest in settings.values():
            cfg = copy.deepcopy(rest)
            cfg["model"] = {**p.base.get("model", {}), **record["model"]}
            if "method" in record:  # what the search chose for the training (RNAS-CL's tutors)
                cfg["method"] = {**cfg.get("method", {}), **record["method"]}
            cfg.setdefault("eval", {})["label"] = label
            out.append(cfg)
    return out


def _restart_unsnapshotted(p: Plan) -> bool:
    """--resume of a sweep whose driver stopped before Ray saved any experiment snapshot: with no
    finished trial to lose, it starts over (returns False); otherwise it refuses."""
    import pandas as pd

    rows = p.sweep_dir / "trials.parquet"
    if rows.exists() and len(pd.read_parquet(rows)):
        raise ConfigError(
            f"--resume: {p.sweep_dir / TUNE_DIR} holds no Ray Tune experiment state to continue, but "
            f"{rows} holds finished trials; move {p.sweep_dir} away to start over"
        )
    print(f"note: {p.sweep_dir.name} stopped before its first experiment snapshot; starting it again")
    return False


@contextlib.contextmanager
def driver_lock(p: Plan, command: str) -> Iterator[None]:
    """One driver per sweep: an exclusive ``flock`` on ``<results-dir>/.<sweep>.lock`` while it runs.
    The kernel drops the lock with the process however it ends (kill -9 included), so a crashed
    driver never leaves it held; the file only says who holds it."""
    import datetime as dt
    import fcntl
    import socket

    p.sweep_dir.parent.mkdir(exist_ok=True)
    with open(p.sweep_dir.parent / f".{p.spec.name}.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise ConfigError(
                f"sweep {p.spec.name!r} in {p.sweep_dir.parent} is being run by another driver ({holder}); "
                "wait for it to finish, or stop it and continue with --resume"
            ) from None
        f.seek(0)
        f.truncate()
        started = dt.datetime.now().isoformat(timespec="seconds")
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since {started}: {command or p.spec.name}\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def execute(p: Plan, trainable: Callable[[dict[str, Any]], None], command: str = "") -> str | None:
    """Run (or resume) a validated plan with ``trainable`` (the function Ray Tune runs per trial, e.g.
    ``tune_robust.trainables.get_trainable(p.spec.trainable)``); returns the Ray dashboard's address
    (None without one). The results are in ``p.sweep_dir`` (``tune_robust.analysis.summarize``)."""
    cluster.no_gpu_locally(p.gpus, p.options.address)
    with driver_lock(p, command):
        return _execute(p, trainable, command)


def _execute(p: Plan, trainable: Callable[[dict[str, Any]], None], command: str) -> str | None:
    import ray
    from ray import tune

    from tune_robust.plugins import with_plugins

    # Upstream paths are part of the configs sweep.json stores: fill them in before comparing on resume.
    resolve_upstream(p)
    resuming = check_results_dir(p)
    tune_path = p.sweep_dir / TUNE_DIR
    # (Not Tuner.can_restore: it answers True for a run killed before its first snapshot, whose restore
    # then silently runs a 1-trial experiment.)
    if resuming:
        for line in snapshot.prepare_resume(p.sweep_dir, TUNE_DIR):
            print(f"note: {line}", flush=True)
    if resuming and snapshot.newest(tune_path, snapshot.EXPERIMENT) is None:
        resuming = _restart_unsnapshotted(p)
    ctx = cluster.init_ray(p.options.address, p.options.verbose > 2, p.options.extra_ray_init)
    dashboard: str | None = getattr(ctx, "dashboard_url", None)
    try:
        if p.options.verbose:
            print(cluster.dashboard_line(dashboard, bool(p.options.address)), flush=True)
        cluster.check_resources(p.needs)  # before anything is written
        p.sweep_dir.mkdir(parents=True, exist_ok=True)
        cluster.check_shared_storage(p.sweep_dir)
        if not (p.sweep_dir / SWEEP_FILE).exists():
            _write_state(p, command)
        run_trial = with_plugins(trainable, p.options.plugins)
        resourced = tune.with_resources(run_trial, p.resources)
        if resuming:
            tuner = tune.Tuner.restore(
                str(tune_path), resourced, resume_unfinished=True, resume_errored=False, restart_errored=False
            )
            tuner.fit()
        else:
            _new_tuner(p, resourced).fit()
    finally:
        ray.shutdown()
    return dashboard


def console_callbacks(p: Plan) -> list[Any]:
    """The live progress line, at the default verbosity."""
    from tune_robust.results.progress import ProgressLine

    if p.options.verbose != 1:
        return []
    return [ProgressLine(int(p.strategy.get("num_samples", len(p.configs))), p.spec.metric, p.spec.mode)]


def _new_tuner(p: Plan, trainable: Any) -> Any:
    """A fresh Tuner for ``p``: its search, scheduler, and the Parquet and JSON logger callbacks."""
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from tune_robust.results.callback import ParquetCallback

    columns = {k: p.strategy[k] for k in ("search", "scheduler", "search_seed")}
    columns["plugins"] = ", ".join(pl.label() for pl in p.options.plugins) or None
    callback = ParquetCallback(p.sweep_dir, p.spec.name, p.options.fidelity, columns)
    search_alg, scheduler, extra_callbacks = build_search(p)
    o = p.options
    tracking = tracking_callbacks(o.track, o.mlflow_uri, o.results_dir, p.spec.name, o.fidelity)
    return tune.Tuner(
        trainable,
        param_space={},
        tune_config=tune.TuneConfig(
            metric=p.spec.metric,
            mode=p.spec.mode,
            search_alg=search_alg,
            scheduler=scheduler,
            num_samples=p.strategy["num_samples"],
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=TUNE_DIR,
            storage_path=str(p.sweep_dir),
            failure_config=tune.FailureConfig(max_failures=p.options.max_failures),
            # Checkpoints are small markers (the state lives in one directory per trial), so
            # all are kept and a resume never meets a deleted one.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            callbacks=[callback, JsonLoggerCallback(), *extra_callbacks, *console_callbacks(p), *tracking],
            verbose={0: 0, 1: 0, 2: 1}.get(p.options.verbose, 2),
        ),
    )
