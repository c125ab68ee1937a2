"""The search algorithm a sweep hands to Ray Tune: Ray's ``SearchGenerator`` around the search method's
searcher, kept in step with the experiment snapshot (``tune_robust.snapshot``)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher, SearchGenerator

from tune_robust import snapshot
from tune_robust.errors import ConfigError
from tune_robust.faults import armed, crash_point
from tune_robust.searchers._trials import snapshot_trials


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
