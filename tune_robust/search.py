"""Search algorithms the runner hands to Ray Tune."""

from __future__ import annotations

import copy
import itertools
import json
import logging
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.execution.tune_controller import TuneController
from ray.tune.schedulers import ASHAScheduler, AsyncHyperBandScheduler
from ray.tune.search import Searcher, SearchGenerator

from tune_robust import snapshot
from tune_robust.errors import ConfigError
from tune_robust.faults import armed, crash_point

logger = logging.getLogger(__name__)


class PointsSearcher(Searcher):
    """Suggests a fixed list of full trial configs, in order (a grid, possibly cut by --max-trials).

    Unlike ``tune.grid_search`` this keeps tuple values whole and allows a cap on the number of points.
    Each suggestion is the first point no trial holds yet; on resume the holdings are rebuilt from the
    experiment snapshot (``reconcile``), so a point is never run twice and a point whose trial the
    snapshot lost is handed out again.
    """

    def __init__(self, configs: list[dict[str, Any]], metric: str | None = None, mode: str | None = None):
        super().__init__(metric=metric, mode=mode)
        self.configs = configs
        self.assigned: dict[str, int] = {}

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if trial_id not in self.assigned:
            index = first_free(len(self.configs), self.assigned.values())
            if index is None:
                return Searcher.FINISHED  # type: ignore[return-value]
            self.assigned[trial_id] = index
        return copy.deepcopy(self.configs[self.assigned[trial_id]])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass

    def reconcile(self, trials: Sequence[SnapshotTrial]) -> None:
        """Hold exactly the points of the snapshot's trials."""
        self.assigned = _assign(self.configs, trials)

    def save(self, checkpoint_path: str) -> None:
        state = {"configs": self.configs, "assigned": self.assigned}
        Path(checkpoint_path).write_text(json.dumps(state, default=str))

    def restore(self, checkpoint_path: str) -> None:
        state = json.loads(Path(checkpoint_path).read_text())
        self.configs = state["configs"]
        # (State written before reconcile existed also held "next_index": every index below it is in
        # "assigned", so the assignments alone say the same.)
        self.assigned = {str(k): int(v) for k, v in state["assigned"].items()}


@dataclass(frozen=True)
class SnapshotTrial:
    """One trial as the newest experiment snapshot records it (what ``Tuner.restore`` brings back)."""

    trial_id: str
    config: dict[str, Any]
    status: str  # PENDING, RUNNING, PAUSED, TERMINATED or ERROR
    last_result: dict[str, Any]

    @property
    def ended(self) -> bool:
        return self.status in ("TERMINATED", "ERROR")


def snapshot_trials(experiment_dir: str) -> list[SnapshotTrial]:
    """The trials of the newest experiment state file in ``experiment_dir``."""
    from ray.tune import ExperimentAnalysis

    # Only the trial list is needed; ExperimentAnalysis also looks for every trial's result files
    # beside the state file and warns when (as in Ray's staging copy) they are elsewhere.
    log = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        analysis = ExperimentAnalysis(experiment_dir)
    finally:
        log.setLevel(level)
    return [
        SnapshotTrial(t.trial_id, dict(t.config), str(t.status), dict(t.last_result or {}))
        for t in analysis.trials
    ]


def first_free(n: int, held: Iterable[int]) -> int | None:
    """The lowest index in ``range(n)`` not in ``held``, or None when every one is held."""
    taken = set(held)
    return next((i for i in range(n) if i not in taken), None)


def config_key(config: Mapping[str, Any]) -> str:
    """A config's identity across JSON and pickle round trips (tuples and lists compare equal)."""
    return json.dumps(config, sort_keys=True, default=str)


def _assign(configs: Sequence[Mapping[str, Any]], trials: Sequence[SnapshotTrial]) -> dict[str, int]:
    """``{trial_id: index into configs}`` for the snapshot's trials (equal configs take distinct points)."""
    free: dict[str, list[int]] = {}
    for i, c in enumerate(configs):
        free.setdefault(config_key(c), []).append(i)
    assigned: dict[str, int] = {}
    for t in trials:
        indices = free.get(config_key(t.config))
        if indices:
            assigned[t.trial_id] = indices.pop(0)
        else:
            logger.warning("trial %s of the experiment snapshot runs a config outside this sweep", t.trial_id)
    return assigned


class SweepSearch(SearchGenerator):
    """Ray's SearchGenerator whose resume agrees with the experiment snapshot.

    Ray writes the experiment state (the trial list), the searcher's state and the callbacks' state as
    separate files and copies them to storage one by one, in the background; a driver killed in
    between leaves a searcher that is a suggestion ahead of, or behind, the trial list. Ray then
    counts trials from the searcher's file while resuming the trials of the experiment's: one trial
    too many (a config suggested again, as the sampler's restored random state draws it again) or too
    few. On restore this takes the experiment snapshot's trial list as the truth: the trial count is
    its length, and the searcher (``reconcile``) holds exactly its trials' configs.
    """

    def __init__(
        self, searcher: Searcher, storage_dir: str | None = None, kept_dir: str | None = None
    ) -> None:
        super().__init__(searcher)
        self.storage_dir = storage_dir  # where snapshots are synced to (only the crash points use it)
        self.kept_dir = kept_dir  # where each snapshot is kept whole (tune_robust.snapshot)
        self._saved_count = 0

    def add_configurations(self, experiments: Any) -> None:
        """Ray calls this for a new experiment only, never after restoring one. Ray catches any error of
        its restore, logs it and starts the experiment over, which would run every config again and
        move the finished rows to orphaned_trials.parquet at the end; so a new experiment whose storage
        already holds a snapshot (the runner starts a sweep afresh only where none exists) is refused,
        before anything runs. The check reads storage, so it holds in a Ray Client's remote driver too."""
        if self.storage_dir is not None and snapshot.newest(self.storage_dir, snapshot.EXPERIMENT):
            raise ConfigError(
                f"--resume: Ray could not restore the experiment snapshot in {self.storage_dir} (its "
                "error is logged above) and would start the sweep over; nothing was run and the finished "
                "trials stay in trials.parquet. Move the sweep folder away to start over"
            )
        super().add_configurations(experiments)

    def create_trial_if_possible(self, experiment_spec: dict) -> Any:
        crash_point("suggest")
        return super().create_trial_if_possible(experiment_spec)

    def save_to_dir(self, dirpath: str, session_str: str) -> None:  # type: ignore[override]
        """Ray saves the trial list first, then calls this; the snapshot is then kept whole."""
        suggested = self.get_state()["counter"] > self._saved_count
        experiment = TuneController.CKPT_FILE_TMPL.format(session_str)
        if suggested:
            crash_point("experiment_ahead", lambda: self._copy_to_storage(dirpath, [experiment]))
        super().save_to_dir(dirpath, session_str)
        files = [Searcher.CKPT_FILE_TMPL.format(session_str), self.CKPT_FILE_TMPL.format(session_str)]
        if suggested:
            crash_point("searcher_ahead", lambda: self._copy_to_storage(dirpath, files))
        # Keep the snapshot whole (no kept_dir in a search pickled by an older version). The two crash
        # points model Ray's copy to storage stopping halfway; a kept copy would replace what they
        # leave, so while one is armed none is made.
        kept_dir = getattr(self, "kept_dir", None)
        if kept_dir is not None and not (armed("experiment_ahead") or armed("searcher_ahead")):
            snapshot.keep(dirpath, [experiment, *files], kept_dir)
        self._saved_count = self.get_state()["counter"]

    def _copy_to_storage(self, dirpath: str, names: Sequence[str]) -> None:
        assert self.storage_dir is not None, "crash points that copy to storage need storage_dir"
        for name in names:
            shutil.copyfile(Path(dirpath) / name, Path(self.storage_dir) / name)

    def restore_from_dir(self, dirpath: str) -> None:
        super().restore_from_dir(dirpath)
        trials = snapshot_trials(dirpath)  # Ray copied the newest experiment state here beforehand
        reconcile = getattr(self.searcher, "reconcile", None)
        if reconcile is None:
            raise TypeError(f"{type(self.searcher).__name__} cannot be resumed: it has no reconcile()")
        reconcile(trials)
        state = self.get_state()
        state.update(counter=len(trials), finished=False)
        self.set_state(state)
        self._saved_count = len(trials)


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (int, float, str, bool))


def _evenly_spaced_ints(values: Sequence[Any]) -> bool:
    if len(values) < 3 or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return False
    ordered = sorted(values)
    steps = {b - a for a, b in itertools.pairwise(ordered)}
    return len(steps) == 1 and ordered == list(values) and steps != {0}


@dataclass
class Dim:
    """One Optuna parameter: a whole searched key, or one position of a tuple-valued key."""

    name: str
    key: int  # index into GridEncoding.keys
    position: int | None  # tuple position, or None for the whole value
    choices: list[Any]  # the values (scalars) or value indices (for dicts / non-scalar values)

    def distribution(self) -> Any:
        import optuna

        if _evenly_spaced_ints(self.choices):
            step = self.choices[1] - self.choices[0]
            return optuna.distributions.IntDistribution(self.choices[0], self.choices[-1], step=step)
        return optuna.distributions.CategoricalDistribution(self.choices)


@dataclass
class GridEncoding:
    """A sweep's grid as Optuna parameters, and back to the grid point's index.

    A key whose values are the full Cartesian product of per-position values (``model.depths`` of
    the depth grid: {1,3,5,7,9}^3) becomes one ordinal parameter per position (``model.depths[0]``...),
    so TPE can learn per-stage effects; other keys become one categorical parameter. Decoding gives the
    index of the point in ``SweepSpec.points`` order, so a suggestion is always one of the grid's
    configs (with the same --set and Variants handling as a grid run).
    """

    keys: list[str]
    sizes: list[int]
    dims: list[Dim]
    # Per key: tuple of per-dim choices -> index of the value in that key's Grid/Variants.
    lookups: list[dict[str, int]]

    @classmethod
    def from_space(cls, space: Mapping[str, Any], pinned: Mapping[str, Any]) -> GridEncoding:
        keys = [k for k in space if k not in pinned]
        dims: list[Dim] = []
        lookups: list[dict[str, int]] = []
        sizes: list[int] = []
        for ki, key in enumerate(keys):
            values = list(space[key].values)
            sizes.append(len(values))
            per_pos = _product_positions(values)
            if per_pos is not None:
                dims += [Dim(f"{key}[{i}]", ki, i, choices) for i, choices in enumerate(per_pos)]
                lookups.append({json.dumps(list(v)): i for i, v in enumerate(values)})
            elif all(_scalar(v) for v in values) and len(set(map(repr, values))) == len(values):
                dims.append(Dim(key, ki, None, values))
                lookups.append({json.dumps([v]): i for i, v in enumerate(values)})
            else:
                dims.append(Dim(key, ki, None, list(range(len(values)))))
                lookups.append({json.dumps([i]): i for i in range(len(values))})
        return cls(keys, sizes, dims, lookups)

    def distributions(self) -> dict[str, Any]:
        return {d.name: d.distribution() for d in self.dims}

    def decode(self, params: Mapping[str, Any]) -> int:
        index = 0
        for ki, size in enumerate(self.sizes):
            chosen = [params[d.name] for d in self.dims if d.key == ki]
            index = index * size + self.lookups[ki][json.dumps(chosen)]
        return index

    def encode(self, index: int) -> dict[str, Any]:
        """The Optuna parameters of grid point ``index`` (``decode``'s inverse)."""
        params: dict[str, Any] = {}
        for ki in reversed(range(len(self.sizes))):
            index, value_index = divmod(index, self.sizes[ki])
            chosen = next(json.loads(k) for k, v in self.lookups[ki].items() if v == value_index)
            dims = [d for d in self.dims if d.key == ki]
            params.update({d.name: c for d, c in zip(dims, chosen, strict=True)})
        return {d.name: params[d.name] for d in self.dims}


def _product_positions(values: Sequence[Any]) -> list[list[Any]] | None:
    """Per-position value lists if ``values`` are equal-length tuples forming their full product."""
    if not all(isinstance(v, (tuple, list)) for v in values):
        return None
    lengths = {len(v) for v in values}
    if len(lengths) != 1 or lengths == {1} or not all(_scalar(x) for v in values for x in v):
        return None
    (length,) = lengths
    positions = [list(dict.fromkeys(v[i] for v in values)) for i in range(length)]
    size = 1
    for p in positions:
        size *= len(p)
    if size != len(values) or len({tuple(v) for v in values}) != len(values):
        return None
    return positions


class _OptunaBook:
    """The parts of Ray's OptunaSearch state that de-duplication and resume repair.

    Ray's OptunaSearch keeps ``_ot_trials`` (Ray trial id -> the Optuna trial asked for it),
    ``_completed_trials`` (ids already told) and ``_ot_study``, with no public way to add, move or drop
    an entry; this class is the one place that touches them (Ray 2.40-2.60 layout; the resume tests
    pin the behaviour).
    """

    def __init__(self, search: Any) -> None:
        self.search = search

    def asked(self) -> list[str]:
        return list(self.search._ot_trials)

    def told(self, trial_id: str) -> bool:
        return trial_id in self.search._completed_trials

    def ask_fixed(self, trial_id: str, params: Mapping[str, Any]) -> None:
        """Ask the study for a trial with these parameters, for ``trial_id``."""
        study = self.search._ot_study
        study.enqueue_trial(dict(params), skip_if_exists=False)
        self.search._ot_trials[trial_id] = study.ask(fixed_distributions=self.search._space)

    def move(self, old: str, new: str) -> None:
        self.search._ot_trials[new] = self.search._ot_trials.pop(old)

    def reject(self, trial_id: str, duplicate_of: str) -> None:
        """Fail the study's trial for ``trial_id`` (its sample repeats another trial's config) and
        forget it, so the same Ray trial can be asked again."""
        import optuna

        ot_trial = self.search._ot_trials.pop(trial_id)
        ot_trial.set_user_attr("duplicate_of", duplicate_of)
        self.search._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)


class ChoiceSearcher(Searcher):
    """Wraps Ray's OptunaSearch: Optuna samples the encoded grid, this hands out the grid's full config.

    No config runs twice: a sample that repeats a config some trial already holds is told to Optuna as
    failed (user attribute ``duplicate_of``; TPE and NSGA-II skip failed trials) and Optuna is asked
    again; after ``max_repeats`` repeats in a row the first config no trial holds is enqueued instead.
    Ray saves the wrapped searcher (the Optuna study) and this wrapper's state with the experiment, and
    on resume ``reconcile`` makes both agree with the experiment snapshot.
    """

    def __init__(
        self, searcher: Searcher, encoding: GridEncoding, configs: list[dict[str, Any]], max_repeats: int = 50
    ) -> None:
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher = searcher
        self.encoding = encoding
        self.configs = configs
        self.max_repeats = max_repeats
        self.suggested: dict[str, int] = {}
        # Optuna trials asked for trials the experiment snapshot lost: handed to the next new trials.
        self.lost: list[str] = []

    @property
    def book(self) -> _OptunaBook:
        return _OptunaBook(self.searcher)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # the wrapped searcher has its own objectives and space

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if trial_id not in self.suggested:
            if self.lost:
                self.book.move(self.lost.pop(0), trial_id)
            index = self._sample(trial_id)
            if not isinstance(index, int):
                return index  # type: ignore[return-value]  # None (not now) or Searcher.FINISHED
            self.suggested[trial_id] = index
        return copy.deepcopy(self.configs[self.suggested[trial_id]])

    def _sample(self, trial_id: str) -> int | dict | str | None:
        """A config index no trial holds, or what Optuna answered instead of a sample."""
        holder = {index: tid for tid, index in self.suggested.items()}
        for _ in range(self.max_repeats):
            params = self.searcher.suggest(trial_id)
            if params is None or params == Searcher.FINISHED:
                return params
            index = self.encoding.decode(params)
            if index not in holder:
                return index
            self.book.reject(trial_id, duplicate_of=holder[index])
        free = first_free(len(self.configs), holder)
        if free is None:
            return Searcher.FINISHED
        logger.info("Optuna repeated held configs %d times; running grid point %d", self.max_repeats, free)
        self.book.ask_fixed(trial_id, self.encoding.encode(free))
        return free

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        metrics = self.searcher.metric if isinstance(self.searcher.metric, list) else [self.searcher.metric]
        if all(m in result for m in metrics):  # epochs without validation (train.eval_every > 1) are skipped
            self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def reconcile(self, trials: Sequence[SnapshotTrial]) -> None:
        """Make this wrapper and the Optuna study hold exactly the snapshot's trials.

        A trial the study never saw (suggested after the searcher's last snapshot) gets an Optuna trial
        with its config, told at once if it has already ended; an Optuna trial whose Ray trial the
        snapshot lost is handed to the next new trial (its config runs, under a new id).
        """
        book = self.book
        self.suggested = _assign(self.configs, trials)
        asked = set(book.asked())
        for t in trials:
            if t.trial_id not in self.suggested:
                continue
            if t.trial_id not in asked:
                book.ask_fixed(t.trial_id, self.encoding.encode(self.suggested[t.trial_id]))
            if t.ended and not book.told(t.trial_id):
                self.searcher.on_trial_complete(
                    t.trial_id, result=t.last_result or None, error=t.status == "ERROR"
                )
        present = set(self.suggested)
        self.lost = [tid for tid in book.asked() if tid not in present and not book.told(tid)]

    def get_state(self) -> dict[str, Any]:
        return {"suggested": dict(self.suggested), "lost": list(self.lost)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.suggested = {str(k): int(v) for k, v in state.get("suggested", {}).items()}
        self.lost = [str(t) for t in state.get("lost", [])]


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
        return {**self.__dict__, "first_step": True}

    def get_state(self) -> dict[str, Any] | None:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "scheduler.pkl"
            self.scheduler.save(str(path))
            return {"scheduler": path.read_bytes()}

    def set_state(self, state: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "scheduler.pkl"
            path.write_bytes(state["scheduler"])
            self.scheduler.restore(str(path))
        self.first_step = True

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if getattr(self, "first_step", True):  # absent in a callback pickled by an older version
            self.first_step = False
            reconcile_rungs(self.scheduler, trials)


class ASHA(ASHAScheduler):
    """Ray's ASHA, fed the rung records a restarted trial's history holds.

    ASHA records a trial at the highest milestone its report reaches; a trial restored past a milestone
    that ASHA's (lagging) saved state never recorded would otherwise never be recorded there. A
    restored trial's first report carries its per-epoch history (``epoch_history``), and the missing
    records come from it before ASHA decides.
    """

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if "epoch_history" in result and trial.trial_id in self._trial_info:
            _fill_rungs(self, trial.trial_id, [*result["epoch_history"]], below=result.get(self._time_attr))
        return super().on_trial_result(tune_controller, trial, result)


def _fill_rungs(
    scheduler: Any, trial_id: str, results: Sequence[Mapping[str, Any]], below: Any = None
) -> None:
    """Record ``trial_id`` at each milestone of its bracket it lacks, from its report at that milestone
    (only milestones below ``below`` when given: ASHA itself records the current one)."""
    metric = str(scheduler._metric)
    bracket = scheduler._trial_info.get(trial_id)
    for milestone, recorded in bracket._rungs if bracket is not None else []:
        if trial_id in recorded or (below is not None and milestone >= below):
            continue
        at = next((r for r in results if r.get(scheduler._time_attr) == milestone), None)
        if at is not None and at.get(metric) is not None:
            recorded[trial_id] = scheduler._metric_op * at[metric]


def reconcile_rungs(scheduler: Any, trials: Sequence[Any]) -> None:
    """ASHA rungs that hold exactly the restored trials: records of trials the experiment snapshot lost
    are dropped, and a missing record is taken from the reports the snapshot kept (a finished trial's
    final report carries its per-epoch history; a running one's history arrives with its next report,
    see ``ASHA``)."""
    if not isinstance(scheduler, AsyncHyperBandScheduler):
        return
    present = {t.trial_id: t for t in trials}
    for bracket in scheduler._brackets:
        for _, recorded in bracket._rungs:
            for trial_id in [k for k in recorded if k not in present]:
                del recorded[trial_id]
    for trial_id, trial in present.items():
        last = dict(trial.last_result or {})
        _fill_rungs(scheduler, trial_id, [*last.get("epoch_history", []), last])
