"""Run a plan on Ray Tune: start (or join) Ray, start or restore the experiment, wait for it. The plan is
only read; the results land in ``plan.sweep_dir`` (``tune_robust.analysis.summarize`` reads them)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tune_robust import cluster, snapshot
from tune_robust.results.tracking import tracking_callbacks
from tune_robust.run import resume
from tune_robust.run.options import SWEEP_FILE, TUNE_DIR, Plan
from tune_robust.run.strategy import build_scheduler, build_searcher


def execute(p: Plan, trainable: Callable[[dict[str, Any]], None], command: str = "") -> str | None:
    """Run (or resume) ``p`` with ``trainable`` (the function Ray Tune runs per trial, e.g.
    ``tune_robust.trainables.get_trainable(p.spec.trainable)``); returns the Ray dashboard's address
    (None without one)."""
    preflight(p)
    warning = cluster.version_note()
    if warning:
        print(warning, flush=True)
    for note in p.notes:
        print(f"note: {note}", flush=True)
    with resume.driver_lock(p, command):
        restoring = resume.prepare(p)
        return _run(p, trainable, command, restoring)


def preflight(p: Plan) -> None:
    """What a run refuses before it takes the driver lock, and a dry run refuses alike: GPUs asked for
    where there are none, and a results dir that holds this sweep without --resume (or holds it run with
    other options)."""
    cluster.no_gpu_locally(p.gpus, p.options.address)
    resume.check_results_dir(p)


def _run(p: Plan, trainable: Callable[[dict[str, Any]], None], command: str, restoring: bool) -> str | None:
    import ray
    from ray import tune

    from tune_robust.plugins import with_plugins

    ctx = cluster.init_ray(p.options.address, p.options.verbose, p.options.extra_ray_init)
    dashboard: str | None = getattr(ctx, "dashboard_url", None)
    try:
        if (dashboard and p.options.verbose) or p.options.verbose > 1:
            print(cluster.dashboard_line(dashboard, bool(p.options.address)), flush=True)
        cluster.check_resources(p.needs)  # before anything is written
        p.sweep_dir.mkdir(parents=True, exist_ok=True)
        cluster.check_shared_storage(p.sweep_dir)
        if not (p.sweep_dir / SWEEP_FILE).exists():
            resume.write_state(p, command)
        resourced = tune.with_resources(with_plugins(trainable, p.options.plugins), p.resources)
        with tune_console(p.options.verbose):
            if restoring:
                tune.Tuner.restore(
                    str(p.sweep_dir / TUNE_DIR),
                    resourced,
                    resume_unfinished=True,
                    resume_errored=False,
                    restart_errored=False,
                ).fit()
            else:
                new_tuner(p, resourced).fit()
    finally:
        ray.shutdown()
    return dashboard


@contextmanager
def tune_console(verbose: int) -> Iterator[None]:
    """Up to the default verbosity the console is our progress line: Ray Tune's output engine prints its
    "Configuration for experiment" box and results path at every verbosity, so it is switched to the
    legacy engine (Ray's documented ``RAY_AIR_NEW_OUTPUT=0``), which prints nothing at RunConfig
    verbose 0, for the run and restored after it."""
    if verbose > 1:
        yield
        return
    before = os.environ.get(_NEW_OUTPUT)
    os.environ[_NEW_OUTPUT] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(_NEW_OUTPUT, None)
        else:
            os.environ[_NEW_OUTPUT] = before


_NEW_OUTPUT = "RAY_AIR_NEW_OUTPUT"


def build_search(p: Plan) -> tuple[Any, Any, list[Any]]:
    """(search_alg, scheduler, extra callbacks) for ``p.strategy``."""
    from tune_robust.searchers._asha import SchedulerState
    from tune_robust.searchers._generator import SweepSearch

    searcher = build_searcher(p.strategy, p.configs, p.spec.space_for(p.options.fidelity), p.pinned)
    search_alg = SweepSearch(
        searcher, storage_dir=str(p.sweep_dir / TUNE_DIR), kept_dir=str(p.sweep_dir / snapshot.KEPT_DIR)
    )
    scheduler = build_scheduler(p.strategy)
    return search_alg, scheduler, [] if scheduler is None else [SchedulerState(scheduler)]


def console_callbacks(p: Plan) -> list[Any]:
    """The live progress line, at the default verbosity, its ETA weighted by each trial's cost."""
    from tune_robust.results.progress import ProgressLine
    from tune_robust.run.cost import TrialCost

    if p.options.verbose != 1:
        return []
    cost = TrialCost(p.macs)
    total = cost.total(p.configs, p.num_trials)
    return [ProgressLine(p.num_trials, p.spec.metric, p.spec.mode, cost=cost, total_cost=total)]


def new_tuner(p: Plan, trainable: Any) -> Any:
    """A fresh Tuner for ``p``: its search, scheduler, and the Parquet and JSON logger callbacks."""
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from tune_robust.results.callback import ParquetCallback

    s = p.strategy
    columns: dict[str, Any] = {"search": s.search, "scheduler": s.scheduler, "search_seed": s.search_seed}
    columns["plugins"] = ", ".join(pl.label() for pl in p.options.plugins) or None
    callback = ParquetCallback(p.sweep_dir, p.spec.name, p.options.fidelity, columns)
    search_alg, scheduler, extra_callbacks = build_search(p)
    o = p.options
    tracking = tracking_callbacks(
        o.track, o.mlflow_uri, o.results_dir, p.spec.name, o.fidelity, (o.wandb_project, o.wandb_entity)
    )
    return tune.Tuner(
        trainable,
        param_space={},
        tune_config=tune.TuneConfig(
            metric=p.spec.metric,
            mode=p.spec.mode,
            search_alg=search_alg,
            scheduler=scheduler,
            num_samples=s.num_samples,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=TUNE_DIR,
            storage_path=str(p.sweep_dir),
            failure_config=tune.FailureConfig(max_failures=o.max_failures),
            # Checkpoints are small markers (the state lives in one directory per trial), so
            # all are kept and a resume never meets a deleted one.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            callbacks=[callback, JsonLoggerCallback(), *extra_callbacks, *console_callbacks(p), *tracking],
            verbose={0: 0, 1: 0, 2: 1}.get(o.verbose, 2),
        ),
    )
