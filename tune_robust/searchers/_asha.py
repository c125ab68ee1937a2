"""Asynchronous successive halving (ASHA) with rungs of our own on Ray's public ``FIFOScheduler``, and
the callback that saves them with the experiment."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune import Callback
from ray.tune.result import DEFAULT_METRIC
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from tune_robust import atomic


class SchedulerState(Callback):
    """Saves a trial scheduler's state with the experiment (Ray keeps searcher and callback state,
    not the scheduler's), so ASHA's rungs survive ``Tuner.restore``.

    That state is written after the experiment's and may lag it, or be missing (a file damaged by a
    kill is set aside, ``tune_robust.snapshot``); at the first step of every run the rungs are made to
    agree with the trials there are (``reconcile_rungs``; none on a fresh run).
    """

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.first_step = True

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the callbacks with the Tuner before the first step; a restored copy reconciles too.
        return {**self.__dict__, "first_step": True}

    def get_state(self) -> dict[str, Any] | None:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "scheduler.state"
            self.scheduler.save(str(path))
            return {"scheduler": path.read_bytes()}

    def set_state(self, state: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "scheduler.state"
            path.write_bytes(state["scheduler"])
            self.scheduler.restore(str(path))
        self.first_step = True

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if self.first_step:
            self.first_step = False
            reconcile_rungs(self.scheduler, trials)


class ASHA(FIFOScheduler):
    """Asynchronous successive halving in one bracket, deciding as Ray's ``ASHAScheduler`` (with its
    default ``brackets=1`` and ``stop_last_trials=True``) does, on rungs held here.

    The rungs (milestone -> trial id -> metric, signed so that higher is better) are public state:
    ``save``/``restore`` write them as JSON, ``fill`` and ``reconcile`` rebuild records from a trial's
    reports. That repair is what a resume needs: ASHA records a trial at the highest milestone a report
    reaches, so a trial restored past a milestone that the (lagging) saved rungs never recorded would
    otherwise never be recorded there. A restored trial's first report carries its per-epoch history
    (``epoch_history``), and the missing records come from it before ASHA decides.
    """

    # A plain attribute in place of TrialScheduler's read-only ``metric`` property (which reads Ray's
    # private attribute); Ray's controller reads ``scheduler.metric``.
    metric: str | None = None

    def __init__(
        self,
        time_attr: str = "training_iteration",
        metric: str | None = None,
        mode: str | None = None,
        max_t: float = 100,
        grace_period: float = 1,
        reduction_factor: float = 4,
    ) -> None:
        if not 0 < grace_period <= max_t:
            raise ValueError(f"ASHA needs 0 < grace_period <= max_t, got {grace_period} and {max_t}")
        if reduction_factor <= 1:
            raise ValueError(f"ASHA needs reduction_factor > 1, got {reduction_factor}")
        if mode not in (None, "min", "max"):
            raise ValueError(f"ASHA's mode must be 'min' or 'max', got {mode!r}")
        super().__init__()
        self.time_attr = time_attr
        self.metric = metric
        self.mode = mode
        self.max_t = max_t
        self.reduction_factor = reduction_factor
        # Ray's milestones, the same float expressions (so the same count where a logarithm rounds):
        # grace_period * rf**k, highest first, up to max_t.
        count = int(np.log(max_t / grace_period) / np.log(reduction_factor) + 1)
        self.rungs: dict[float, dict[str, float]] = {
            grace_period * reduction_factor**k: {} for k in reversed(range(count))
        }
        self.num_stopped = 0

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Ray passes TuneConfig's metric and mode; refused (False) where the constructor set them."""
        if (self.metric and metric) or (self.mode and mode):
            return False
        self.metric = metric or self.metric
        self.mode = mode or self.mode
        if self.metric is None and self.mode:
            self.metric = DEFAULT_METRIC
        return True

    @property
    def sign(self) -> float:
        """Recorded values are ``sign * metric``: higher is better in either mode."""
        return 1.0 if self.mode == "max" else -1.0

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        if not self.metric or self.mode not in ("min", "max"):
            raise ValueError(
                f"ASHA has no valid metric ({self.metric}) or mode ({self.mode}): pass them to ASHA or to "
                "tune.TuneConfig()"
            )

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if "epoch_history" in result:
            self.fill(trial.trial_id, [*result["epoch_history"]], below=result.get(self.time_attr))
        if result.get(self.time_attr) is None or result.get(self.metric) is None:
            return TrialScheduler.CONTINUE
        if result[self.time_attr] >= self.max_t:
            action = TrialScheduler.STOP
        else:
            action = self.record(trial.trial_id, result[self.time_attr], result[self.metric])
        if action == TrialScheduler.STOP:
            self.num_stopped += 1
        return action

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        if result.get(self.time_attr) is not None and result.get(self.metric) is not None:
            self.record(trial.trial_id, result[self.time_attr], result[self.metric])

    def record(self, trial_id: str, time: float, value: float) -> str:
        """Record ``trial_id`` at the highest milestone ``time`` reached where it has no record yet; STOP
        when its value is below that rung's cutoff (as Ray's ``_Bracket.on_result``)."""
        reward = self.sign * value
        for milestone, recorded in self.rungs.items():  # highest first
            if time < milestone or trial_id in recorded:
                continue
            cutoff = self.cutoff(recorded)
            recorded[trial_id] = reward
            return TrialScheduler.STOP if cutoff is not None and reward < cutoff else TrialScheduler.CONTINUE
        return TrialScheduler.CONTINUE

    def cutoff(self, recorded: Mapping[str, float]) -> float | None:
        """The value a trial must reach at a rung: the (1 - 1/rf) quantile of the rung's records, NaN
        records left out (NaN when all are: no trial is stopped there)."""
        if not recorded:
            return None
        return float(np.nanpercentile(list(recorded.values()), (1 - 1 / self.reduction_factor) * 100))

    def fill(self, trial_id: str, results: Sequence[Mapping[str, Any]], below: Any = None) -> None:
        """Record ``trial_id`` at each milestone it lacks, from its report at that milestone (only
        milestones below ``below`` when given: ``on_trial_result`` records the current one)."""
        for milestone, recorded in self.rungs.items():
            if trial_id in recorded or (below is not None and milestone >= below):
                continue
            at = next((r for r in results if r.get(self.time_attr) == milestone), None)
            if at is not None and at.get(self.metric) is not None:  # type: ignore[arg-type]
                recorded[trial_id] = self.sign * at[self.metric]  # type: ignore[index]

    def reconcile(self, trials: Sequence[Any]) -> None:
        """Rungs that hold exactly ``trials`` (Ray's restored trials): records of trials the experiment
        snapshot lost are dropped, and a missing record is taken from the reports the snapshot kept (a
        finished trial's final report carries its per-epoch history; a running one's history arrives
        with its next report, see ``on_trial_result``)."""
        present = {t.trial_id: t for t in trials}
        for recorded in self.rungs.values():
            for trial_id in [k for k in recorded if k not in present]:
                del recorded[trial_id]
        for trial_id, trial in present.items():
            last = dict(trial.last_result or {})
            self.fill(trial_id, [*last.get("epoch_history", []), last])

    def debug_string(self) -> str:
        cutoffs = " | ".join(f"Iter {m:.3f}: {self.cutoff(r)}" for m, r in self.rungs.items())
        return f"Using AsyncHyperBand: num_stopped={self.num_stopped}\nBracket: {cutoffs}"

    def save(self, checkpoint_path: str) -> None:
        rungs = [[milestone, recorded] for milestone, recorded in self.rungs.items()]
        atomic.write_text(checkpoint_path, json.dumps({"rungs": rungs, "num_stopped": self.num_stopped}))

    def restore(self, checkpoint_path: str) -> None:
        state = json.loads(Path(checkpoint_path).read_text())
        saved = {milestone: recorded for milestone, recorded in state["rungs"]}
        self.rungs = {m: {str(k): float(v) for k, v in saved.get(m, {}).items()} for m in self.rungs}
        self.num_stopped = int(state["num_stopped"])


def reconcile_rungs(scheduler: Any, trials: Sequence[Any]) -> None:
    """``ASHA.reconcile`` where the scheduler is ASHA (other schedulers keep no rungs)."""
    if isinstance(scheduler, ASHA):
        scheduler.reconcile(trials)
