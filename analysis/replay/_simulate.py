"""One replay: a search strategy's own searcher and scheduler, driven through Ray Tune's public
``Searcher`` and ``TrialScheduler`` interfaces by a simulated clock with N workers, on a recorded table.

The calls follow Ray Tune's controller: one trial is suggested ahead while every worker is busy (Ray's
one pending trial for a searcher); after each epoch the scheduler decides (``on_trial_result``), the
searcher hears the result unless the trial stops, and a trial that stops or ends is completed with its
last result (scheduler first, as Ray's ``stop_trial``); a freed worker starts the pending trial at once.
An epoch takes its recorded seconds (the trial's set-up before its first, the test suite after the last
of a trial that runs to its end)."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from tune_robust.analysis.replay._source import Objective, Source
from tune_robust.errors import ConfigError
from tune_robust.run import Strategy
from tune_robust.run.strategy import build_scheduler, build_searcher
from tune_robust.searchers._trials import config_key

AHEAD = 1  # trials suggested before a worker is free (Ray Tune's pending trials for a searcher)


@dataclass
class ReplayTrial:
    """A trial as the scheduler sees it (ASHA reads its ``trial_id``)."""

    trial_id: str
    config: dict[str, Any]
    number: int  # suggestion order
    index: int  # into Source.configs
    epoch: int = 0


@dataclass(frozen=True)
class Log:
    """Every epoch a replay ran, in the order its report arrived on the simulated clock."""

    end: np.ndarray  # seconds since the replay started
    config: np.ndarray  # index into Source.configs
    trial: np.ndarray  # trial number (suggestion order)
    epoch: np.ndarray
    seconds: np.ndarray  # worker seconds of the epoch (with set-up / the final suite)
    passes: np.ndarray
    completed: np.ndarray  # the trial's last epoch, run to its end (it has test numbers)
    suggested: int  # trials the searcher suggested


@dataclass
class _Run:
    source: Source
    strategy: Strategy
    workers: int
    searcher: Any = None
    scheduler: Any = None
    index: dict[str, int] = field(default_factory=dict)
    clock: list[tuple[float, int, ReplayTrial]] = field(default_factory=list)
    running: int = 0
    seq: int = 0  # orders epochs that end at the same second
    pending: list[ReplayTrial] = field(default_factory=list)
    suggested: int = 0
    exhausted: bool = False
    rows: list[tuple[float, int, int, int, float, float, bool]] = field(default_factory=list)


def simulate(source: Source, strategy: Strategy, workers: int) -> Log:
    """Replay ``strategy`` (its search method's searcher and its scheduler, built as a live sweep builds
    them) with ``workers`` concurrent trials until the searcher has no more trials to run."""
    run = _Run(source, strategy, workers)
    run.searcher = build_searcher(strategy, source.configs, source.space, source.pinned)
    run.scheduler = build_scheduler(strategy) or FIFOScheduler()
    run.searcher.set_search_properties(source.metric, source.mode, {})
    run.scheduler.set_search_properties(source.metric, source.mode)
    run.index = {config_key(c): i for i, c in enumerate(source.configs)}
    if len(run.index) < len(source.configs):
        raise ConfigError("the replay's configs hold a config twice; each config must be one")
    _fill(run, 0.0)
    while run.clock:
        now, _, trial = heapq.heappop(run.clock)
        _epoch_ended(run, now, trial)
    rows = np.array(run.rows, dtype=float).reshape(-1, 7)
    return Log(
        end=rows[:, 0],
        config=rows[:, 1].astype(int),
        trial=rows[:, 2].astype(int),
        epoch=rows[:, 3].astype(int),
        seconds=rows[:, 4],
        passes=rows[:, 5],
        completed=rows[:, 6].astype(bool),
        suggested=run.suggested,
    )


def _suggest(run: _Run) -> ReplayTrial | None:
    """The searcher's next trial (None: none now, or no more)."""
    if run.exhausted or run.suggested >= run.strategy.num_samples:
        return None
    trial_id = f"replay_{run.suggested:05d}"
    config = run.searcher.suggest(trial_id)
    if config is None:
        return None
    if config == Searcher.FINISHED:
        run.exhausted = True
        return None
    index = run.index.get(config_key(config))
    if index is None:
        raise ConfigError(
            f"--search {run.strategy.search} proposed a config the table does not hold; a replay never "
            f"invents results (the config: {config_key(config)[:200]})"
        )
    trial = ReplayTrial(trial_id, config, run.suggested, index)
    run.scheduler.on_trial_add(None, trial)
    run.suggested += 1
    return trial


def _fill(run: _Run, now: float) -> None:
    """Start trials on free workers (the pending one first), then suggest one ahead."""
    while run.running < run.workers:
        trial = run.pending.pop(0) if run.pending else _suggest(run)
        if trial is None:
            break
        run.running += 1
        _start_epoch(run, now, trial)
    while len(run.pending) < AHEAD:
        trial = _suggest(run)
        if trial is None:
            break
        run.pending.append(trial)


def _cost(o: Objective, i: int, k: int) -> tuple[float, float]:
    """Worker seconds and attack passes of config ``i``'s epoch ``k``: with the trial's set-up on its
    first epoch and the final suite on its last."""
    last = k == o.epochs[i]
    seconds = (
        o.seconds[i, k - 1] + (o.setup_seconds[i] if k == 1 else 0.0) + (o.final_seconds[i] if last else 0.0)
    )
    return float(seconds), float(o.passes[i, k - 1] + (o.final_passes[i] if last else 0.0))


def _start_epoch(run: _Run, now: float, trial: ReplayTrial) -> None:
    trial.epoch += 1
    seconds, _ = _cost(run.source.objective, trial.index, trial.epoch)
    heapq.heappush(run.clock, (now + seconds, run.seq, trial))
    run.seq += 1


def _epoch_ended(run: _Run, now: float, trial: ReplayTrial) -> None:
    o, i, k = run.source.objective, trial.index, trial.epoch
    result = o.report(i, k)
    decision = run.scheduler.on_trial_result(None, trial, result)
    if decision not in (TrialScheduler.CONTINUE, TrialScheduler.STOP):
        raise ConfigError(f"replay runs schedulers that continue or stop trials; got {decision!r}")
    if decision == TrialScheduler.CONTINUE:
        run.searcher.on_trial_result(trial.trial_id, result)
    last = bool(k == o.epochs[i])
    run.rows.append((now, i, trial.number, k, *_cost(o, i, k), last))
    if decision == TrialScheduler.STOP or last:
        run.scheduler.on_trial_complete(None, trial, result)
        run.searcher.on_trial_complete(trial.trial_id, result)
        run.running -= 1
    else:
        _start_epoch(run, now, trial)
    _fill(run, now)  # Ray asks the searcher again at every step until a trial is pending
