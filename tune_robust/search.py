"""Search algorithms and the trial scheduler the runner hands to Ray Tune.

Everything here uses Ray's and Optuna's public interfaces only (Ray's ``Searcher``, ``SearchGenerator``,
``FIFOScheduler`` and ``Callback``; Optuna's ``Study`` ask-and-tell): the state a resume repairs (which
trial holds which config, the Optuna study, ASHA's rungs) is held and saved here, so a Ray release that
reshapes its own private state cannot silently change what a resumed sweep does.
"""

from __future__ import annotations

import copy
import copyreg
import io
import itertools
import json
import logging
import pickle
import shutil
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune import Callback
from ray.tune.result import DEFAULT_METRIC
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher, SearchGenerator

from tune_robust import atomic, snapshot
from tune_robust.errors import ConfigError
from tune_robust.faults import armed, crash_point

if TYPE_CHECKING:
    import optuna

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

    Its own state (Ray's search generator state file) also carries the snapshot step, the count of
    snapshots taken across sessions, which orders snapshots on resume (``tune_robust.snapshot.step``).
    """

    def __init__(
        self, searcher: Searcher, storage_dir: str | None = None, kept_dir: str | None = None
    ) -> None:
        super().__init__(searcher)
        self.storage_dir = storage_dir  # where snapshots are synced to (only the crash points use it)
        self.kept_dir = kept_dir  # where each snapshot is kept whole (tune_robust.snapshot)
        self.snapshot_step = 0
        self.saved_count = 0  # trials created when the last snapshot was taken

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), snapshot.STEP_KEY: self.snapshot_step}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.snapshot_step = int(state[snapshot.STEP_KEY])

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
        suggested = self.get_state()["counter"] > self.saved_count
        self.snapshot_step += 1  # written with the search state below: this trial list's step
        experiment = snapshot.file_name(snapshot.EXPERIMENT, session_str)
        if suggested:
            crash_point("experiment_ahead", lambda: self._copy_to_storage(dirpath, [experiment]))
        super().save_to_dir(dirpath, session_str)
        files = [snapshot.file_name(k, session_str) for k in snapshot.SEARCH]
        if suggested:
            crash_point("searcher_ahead", lambda: self._copy_to_storage(dirpath, files))
        # The two crash points model Ray's copy to storage stopping halfway; a kept copy would replace
        # what they leave, so while one is armed none is made.
        if self.kept_dir is not None and not (armed("experiment_ahead") or armed("searcher_ahead")):
            snapshot.keep(dirpath, [experiment, *files], self.kept_dir)
        self.saved_count = self.get_state()["counter"]

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
        self.saved_count = len(trials)


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
        self.suggested = _assign(self.configs, trials)
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
