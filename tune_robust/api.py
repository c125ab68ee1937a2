"""Running a sweep from Python (a notebook, a benchmark script): the command line's steps as calls.

Example:
    >>> from tune_robust.api import RunOptions, plan, run_plan
    >>> summary = run_plan(plan("wrn_depth_grid", RunOptions(max_trials=2)))  # doctest: +SKIP
    >>> summary["table"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tune_robust.analysis.summary import summarize
from tune_robust.run import Plan, RunOptions, describe, execute, plan, preflight
from tune_robust.trainables import get_trainable

__all__ = [
    "Plan",
    "RunOptions",
    "claim_sweeps",
    "describe",
    "plan",
    "preflight",
    "replay",
    "replay_source",
    "run_claim_sweeps",
    "run_plan",
]

REPLAYED = ("grid", "random", "tpe", "random+asha")  # sweep.py replay's default strategies


def run_plan(p: Plan, command: str = "") -> dict[str, Any]:
    """Run (or resume) ``p`` with the trainable its sweep names; the summary the command line prints."""
    return summarize(p, execute(p, get_trainable(p.spec.trainable), command))


def claim_sweeps(papers: Sequence[str] = ()) -> list[str]:
    """The sweeps the claims of ``papers`` (all registered claims when empty) read, in run order."""
    from tune_robust.analysis.claims import claims_for, run_order

    return run_order(claims_for(papers))


def run_claim_sweeps(
    papers: Sequence[str], options: RunOptions, say: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """Run every sweep the claims of ``papers`` read, in order, into ``options.results_dir``: a sweep
    whose planned trials have all ended is skipped, one interrupted is resumed, the others start.
    ``options.seeds`` go to the sweeps a claim compares across seeds (``Claim.seeded``) whose fidelity
    has no seeds of its own. Each sweep's summary, in order (an interrupted sweep ends the chain)."""
    from tune_robust.analysis.claims import claims_for, read_results

    seeded = {s for c in claims_for(papers) for s in c.seeded}
    summaries = []
    for name in claim_sweeps(papers):
        done = _sweeps_in(options.results_dir, read_results).get(name)
        seeds = options.seeds if name in seeded and not searches_seeds(name, options.fidelity) else ()
        if options.seeds and name in seeded and not seeds:
            say(f"{name}: its {options.fidelity} fidelity has seeds of its own; --seeds not applied")
        p = plan(name, dataclasses.replace(options, resume=done is not None, seeds=seeds))
        if done is not None:
            preflight(p)  # the sweep there must have been run with these options (fidelity, seeds, ...)
            if done.planned and len(done.results.trials) >= done.planned:
                say(f"{name}: all {done.planned} planned trials have ended; skipped")
                continue
        say(f"{name}: {'resuming' if done is not None else 'running'} ({options.fidelity})")
        summary = run_plan(p, f"python sweep.py {name} --fidelity {options.fidelity}")
        summaries.append({"sweep": name, **summary})
        if summary["interrupted"]:
            break
    return summaries


def searches_seeds(name: str, fidelity: str) -> bool:
    from tune_robust.run.inputs import SEED_KEY
    from tune_robust.sweeps import get_sweep

    spec = get_sweep(name)
    return fidelity in spec.fidelities and any(SEED_KEY in p for p in spec.points(fidelity=fidelity))


def _sweeps_in(results_dir: str, read: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    try:
        return read(results_dir)
    except FileNotFoundError:
        return {}


def replay_source(
    path: str | Path,
    sets: Sequence[str] = (),
    config: Sequence[str] = (),
    metric: str | None = None,
    mode: str | None = None,
    rank_by: str | None = None,
) -> Any:
    """What ``sweep.py replay PATH`` replays on: a finished sweep's folder (its grid rebuilt from
    sweep.json, ``sets`` changing it; metric, mode and ranking are the sweep's) or a Parquet/CSV table
    with ``config`` columns, ``metric`` (default val_robust_acc), ``mode`` (max) and ``rank_by``
    (docs/replay.md)."""
    from tune_robust.analysis import replay as rp
    from tune_robust.errors import ConfigError

    path = Path(path)
    table_options = {"--config": config, "--metric": metric, "--mode": mode, "--rank-by": rank_by}
    if path.is_dir():
        given = [flag for flag, value in table_options.items() if value]
        if given:
            verb = "describes" if len(given) == 1 else "describe"
            raise ConfigError(f"{', '.join(given)} {verb} a table; a sweep's come from its grid and spec")
        return rp.sweep_source(path, sets)
    if sets:
        raise ConfigError("--set changes a sweep's grid; a table's configs are its rows")
    return rp.table_source(path, config, metric or "val_robust_acc", mode or "max", rank_by)


def replay(
    source: Any,
    search: Sequence[str] = REPLAYED,
    scheduler: Sequence[str] = ("fifo",),
    concurrency: Sequence[int] = (2,),
    repeats: int = 50,
    seed: int = 0,
    **options: Any,
) -> Any:
    """Replay ``search`` methods (``NAME+asha`` fixes a scheduler) under each ``scheduler`` on
    ``source`` (``replay_source``); ``options``: num_samples, objectives, grace_period,
    reduction_factor, as a live sweep takes them. Returns ``tune_robust.analysis.replay.Replayed``
    (``.runs``: one row per replay; ``.curves``: best so far against compute)."""
    from tune_robust.analysis import replay as rp

    return rp.replay(source, rp.strategies(search, scheduler), concurrency, repeats, seed, **options)
