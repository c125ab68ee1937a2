"""Optuna's samplers over a sweep's grid: a Ray ``Searcher`` that drives an ``optuna.Study`` through ask
and tell, and holds and saves everything a resume repairs."""

from __future__ import annotations

import copy
import copyreg
import io
import logging
import pickle
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune.search import Searcher

from tune_robust.searchers._encoding import GridEncoding
from tune_robust.searchers._trials import SnapshotTrial, assign, first_free

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger(__name__)


# A lock pickles as a new one. Optuna's genetic samplers (NSGA-II) hold a threading lock, which pickle
# refuses; a lock only orders this process's threads, so a restored sampler rightly starts with its own.
_LOCKS = {type(threading.Lock()): threading.Lock, type(threading.RLock()): threading.RLock}


def _new_lock(lock: Any) -> tuple[Any, tuple[()]]:
    return _LOCKS[type(lock)], ()


def _dumps(obj: Any) -> bytes:
    """``pickle.dumps(obj)``, its thread locks pickled as new ones."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer)
    pickler.dispatch_table = {**copyreg.dispatch_table, **dict.fromkeys(_LOCKS, _new_lock)}
    pickler.dump(obj)
    return buffer.getvalue()


class ChoiceSearcher(Searcher):
    """Optuna samples the encoded grid, this hands out the grid's full config: a Ray ``Searcher`` that
    drives an ``optuna.Study`` itself through ask and tell.

    No config runs twice: a sample that repeats a config some trial already holds is told to Optuna as
    failed (user attribute ``duplicate_of``; TPE and NSGA-II skip failed trials) and Optuna is asked
    again; after ``max_repeats`` repeats in a row the first config no trial holds is enqueued instead.
    With several metrics (``metric`` and ``mode`` lists, NSGA-II) the study has one direction per
    metric. Ray saves this searcher with the experiment (``save``: the study, and which Ray trial holds
    which Optuna trial and config), and on resume ``reconcile`` makes it agree with the experiment
    snapshot.
    """

    def __init__(
        self,
        encoding: GridEncoding,
        configs: list[dict[str, Any]],
        sampler: optuna.samplers.BaseSampler,
        metric: str | list[str],
        mode: str | list[str],
        max_repeats: int = 50,
    ) -> None:
        import optuna

        super().__init__(metric=metric, mode=mode)  # type: ignore[arg-type]  # a list for several metrics
        self.encoding = encoding
        self.configs = configs
        self.max_repeats = max_repeats
        self.space = encoding.distributions()
        modes = mode if isinstance(mode, list) else [mode]
        # No pruner: a trial is stopped by the trial scheduler (ASHA), never by Optuna.
        self.study = optuna.create_study(
            directions=["minimize" if m == "min" else "maximize" for m in modes],
            sampler=sampler,
            pruner=optuna.pruners.NopPruner(),
        )
        self.asked: dict[str, optuna.trial.Trial] = {}  # Ray trial id -> the Optuna trial asked for it
        self.told: set[str] = set()  # Ray trial ids whose Optuna trial is finished
        self.suggested: dict[str, int] = {}  # Ray trial id -> index into configs
        # Optuna trials asked for trials the experiment snapshot lost: handed to the next new trials.
        self.lost: list[str] = []

    def metrics(self) -> list[str]:
        metric = self.metric
        return list(metric) if isinstance(metric, list) else [metric]

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # the objectives and the space were given at construction

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if trial_id not in self.suggested:
            if self.lost:
                self.asked[trial_id] = self.asked.pop(self.lost.pop(0))
            index = self._sample(trial_id)
            if index is None:
                return Searcher.FINISHED  # type: ignore[return-value]
            self.suggested[trial_id] = index
        return copy.deepcopy(self.configs[self.suggested[trial_id]])

    def _sample(self, trial_id: str) -> int | None:
        """A config index no trial holds (None when every config is held)."""
        holder = {index: tid for tid, index in self.suggested.items()}
        for _ in range(self.max_repeats):
            if trial_id not in self.asked:
                self.asked[trial_id] = self.study.ask(fixed_distributions=self.space)
            index = self.encoding.decode(self.asked[trial_id].params)
            if index not in holder:
                return index
            self._reject(trial_id, duplicate_of=holder[index])
        free = first_free(len(self.configs), holder)
        if free is None:
            return None
        logger.info("Optuna repeated held configs %d times; running grid point %d", self.max_repeats, free)
        self._ask_fixed(trial_id, self.encoding.encode(free))
        return free

    def _ask_fixed(self, trial_id: str, params: Mapping[str, Any]) -> None:
        """Ask the study for a trial with these parameters, for ``trial_id``."""
        self.study.enqueue_trial(dict(params), skip_if_exists=False)
        self.asked[trial_id] = self.study.ask(fixed_distributions=self.space)

    def _reject(self, trial_id: str, duplicate_of: str) -> None:
        """Fail the Optuna trial asked for ``trial_id`` (its sample repeats another trial's config) and
        forget it, so the same Ray trial can be asked again."""
        import optuna

        trial = self.asked.pop(trial_id)
        trial.set_user_attr("duplicate_of", duplicate_of)
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # Optuna keeps intermediate values of a single objective only (as Ray's OptunaSearch reports
        # them, per training iteration); epochs without validation (train.eval_every > 1) are skipped.
        metrics = self.metrics()
        trial = self.asked.get(trial_id)
        if len(metrics) > 1 or metrics[0] not in result or trial is None or trial_id in self.told:
            return
        trial.report(result[metrics[0]], result["training_iteration"])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Tell the study the trial's final metrics: COMPLETE with them (FAIL, by Optuna's own check, when
        one is NaN); without them FAIL for an error, else PRUNED (stopped before reporting them)."""
        import optuna

        if trial_id in self.told or trial_id not in self.asked:
            return
        values: list[float] = [v for v in ((result or {}).get(m) for m in self.metrics()) if v is not None]
        if len(values) == len(self.metrics()):
            self.study.tell(self.asked[trial_id], values, skip_if_finished=True)
        else:
            state = optuna.trial.TrialState.FAIL if error else optuna.trial.TrialState.PRUNED
            self.study.tell(self.asked[trial_id], state=state, skip_if_finished=True)
        self.told.add(trial_id)

    def reconcile(self, trials: Sequence[SnapshotTrial]) -> None:
        """Make this searcher and its Optuna study hold exactly the snapshot's trials.

        A trial the study never saw (suggested after the searcher's last snapshot) gets an Optuna trial
        with its config, told at once if it has already ended; an Optuna trial whose Ray trial the
        snapshot lost is handed to the next new trial (its config runs, under a new id).
        """
        self.suggested = assign(self.configs, trials)
        for t in trials:
            if t.trial_id not in self.suggested:
                continue
            if t.trial_id not in self.asked:
                self._ask_fixed(t.trial_id, self.encoding.encode(self.suggested[t.trial_id]))
            if t.ended:
                self.on_trial_complete(t.trial_id, result=t.last_result or None, error=t.status == "ERROR")
        self.lost = [tid for tid in self.asked if tid not in self.suggested and tid not in self.told]

    # What a resume continues from (``save``): one pickle, so the asked trials stay bound to the study
    # they came from. Optuna documents pickling an in-memory study to save and resume it; its sampler,
    # random state included, is in it.
    PROGRESS = ("study", "asked", "told", "suggested", "lost")

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_bytes(_dumps({k: getattr(self, k) for k in self.PROGRESS}))

    def restore(self, checkpoint_path: str) -> None:
        self._set_progress(pickle.loads(Path(checkpoint_path).read_bytes()))

    def _set_progress(self, state: Mapping[str, Any]) -> None:
        self.study = state["study"]
        self.asked = dict(state["asked"])
        self.told = set(state["told"])
        self.suggested = {str(k): int(v) for k, v in state["suggested"].items()}
        self.lost = [str(t) for t in state["lost"]]

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the whole searcher with the Tuner (and tests copy it so): the study goes as
        # ``save`` writes it, which a sampler holding a lock survives.
        state = {k: v for k, v in vars(self).items() if k not in self.PROGRESS}
        return {**state, "progress": _dumps({k: getattr(self, k) for k in self.PROGRESS})}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update({k: v for k, v in state.items() if k != "progress"})
        self._set_progress(pickle.loads(state["progress"]))
