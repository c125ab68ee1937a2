"""Resume reconciliation, without Ray processes: searchers, ASHA rungs and Parquet rows are made to
agree with the experiment snapshot whichever of Ray's separately written state files a killed driver
left newer. Each case builds the mixture a kill leaves (a searcher pickled one suggestion before or
after the trial list) and asserts what a bug would break: no config twice, exactly N configs."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field

import optuna
import pandas as pd
import pytest
from ray.tune.search import Searcher

from tune_robust.results.callback import ParquetCallback
from tune_robust.run import RunOptions, plan
from tune_robust.searchers._asha import ASHA, reconcile_rungs
from tune_robust.searchers._encoding import GridEncoding
from tune_robust.searchers._optuna import ChoiceSearcher
from tune_robust.searchers._points import PointsSearcher
from tune_robust.searchers._trials import SnapshotTrial, config_key

N = 6


@pytest.fixture(scope="module")
def grid() -> tuple[list[dict], GridEncoding]:
    p = plan("wrn_depth_grid", RunOptions(search="tpe", num_samples=N))
    return p.configs, GridEncoding.from_space(p.spec.space_for("smoke"), {})


def _tpe(grid: tuple[list[dict], GridEncoding], seed: int = 1) -> ChoiceSearcher:
    configs, enc = grid
    sampler = optuna.samplers.TPESampler(seed=seed)
    return ChoiceSearcher(enc, configs, sampler=sampler, metric="val_robust_acc", mode="max")


def _snapshot(searcher: Searcher, ids: list[str], ended: int = 0) -> list[SnapshotTrial]:
    """The experiment snapshot of trials ``ids`` (the first ``ended`` of them TERMINATED)."""
    out = []
    for i, tid in enumerate(ids):
        cfg = searcher.suggest(tid)  # already suggested: the same config again
        assert cfg is not None
        status = "TERMINATED" if i < ended else "RUNNING"
        out.append(SnapshotTrial(tid, cfg, status, {"val_robust_acc": 0.1 * i, "epoch": 3}))
    return out


def _run_to_end(searcher: Searcher, start: int) -> list[str]:
    """Suggest new trials (new ids) until N exist in all; their config keys."""
    keys = []
    for i in range(start, N):
        cfg = searcher.suggest(f"n{i}")
        assert cfg is not None and cfg != Searcher.FINISHED
        keys.append(config_key(cfg))
        searcher.on_trial_complete(f"n{i}", {"val_robust_acc": 0.5})
    return keys


@pytest.mark.parametrize("ahead", ["experiment", "searcher"])
def test_choice_searcher_resumes_to_n_distinct_configs(grid, ahead):
    searcher = _tpe(grid)
    for i in range(2):
        searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"val_robust_acc": 0.1 * i})
    saved_before = pickle.dumps(searcher)  # the searcher's snapshot, taken before t2's suggestion
    searcher.suggest("t2")
    saved_after = pickle.dumps(searcher)
    if ahead == "experiment":  # trial list holds t2, the searcher's file does not
        snapshot = _snapshot(searcher, ["t0", "t1", "t2"], ended=2)
        restored = pickle.loads(saved_before)
    else:  # the searcher's file holds t2, the trial list does not: t2 is lost
        snapshot = _snapshot(searcher, ["t0", "t1"], ended=2)
        restored = pickle.loads(saved_after)
    restored.reconcile(snapshot)
    held = [config_key(t.config) for t in snapshot]
    new = _run_to_end(restored, len(snapshot))
    keys = held + new
    assert len(keys) == N and len(set(keys)) == N, "a config ran twice after the restore"
    study = restored.study
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == N - (1 if ahead == "experiment" else 0)  # t2 was RUNNING in the snapshot
    running = [t for t in study.trials if t.state.name == "RUNNING"]
    assert len(running) == (1 if ahead == "experiment" else 0)
    # Every trial the study failed is a rejected repeat, never a trial that ran.
    assert all("duplicate_of" in t.user_attrs for t in study.trials if t.state.name == "FAIL")
    if ahead == "searcher":  # the lost Optuna trial went to the next new trial: its config ran
        assert new[0] == config_key(pickle.loads(saved_after).suggest("t2"))


def test_choice_searcher_tells_optuna_about_trials_that_ended_after_its_snapshot(grid):
    searcher = _tpe(grid)
    searcher.suggest("t0")
    saved = pickle.dumps(searcher)
    snapshot = _snapshot(searcher, ["t0"], ended=1)
    snapshot += [SnapshotTrial("t1", grid[0][7], "TERMINATED", {"val_robust_acc": 0.7, "epoch": 3})]
    restored = pickle.loads(saved)
    restored.reconcile(snapshot)
    values = sorted(t.value for t in restored.study.trials if t.state.name == "COMPLETE")
    assert values == pytest.approx([0.0, 0.7])
    assert restored.suggested == {"t0": grid[0].index(snapshot[0].config), "t1": 7}


def test_choice_searcher_never_repeats_a_config(grid):
    configs, enc = grid
    searcher = _tpe(grid)
    first = searcher.suggest("t0")
    # Force Optuna to propose t0's config again, as TPE does: the repeat is failed and re-asked.
    study = searcher.study
    for _ in range(3):
        study.enqueue_trial(enc.encode(configs.index(first)))
    second = searcher.suggest("t1")
    assert config_key(second) != config_key(first)
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert len(failed) == 3 and {t.user_attrs["duplicate_of"] for t in failed} == {"t0"}
    # A sampler that repeats itself past max_repeats gets the first free grid point instead.
    stuck = searcher
    stuck.max_repeats = 4
    for _ in range(4):
        study.enqueue_trial(enc.encode(configs.index(first)))
    third = stuck.suggest("t2")
    held = {config_key(first), config_key(second)}
    assert config_key(third) not in held
    assert third == next(c for c in configs if config_key(c) not in held)


def test_encode_inverts_decode_on_every_grid_point(grid):
    configs, enc = grid
    assert [enc.decode(enc.encode(i)) for i in range(len(configs))] == list(range(len(configs)))


@pytest.mark.parametrize("ahead", ["experiment", "searcher"])
def test_points_searcher_resumes_without_repeats_or_holes(ahead):
    configs = [{"model": {"depths": (d, 1, 1)}} for d in range(N)]
    searcher = PointsSearcher(configs)
    searcher.suggest("t0")
    searcher.suggest("t1")
    before = pickle.dumps(searcher)
    searcher.suggest("t2")
    after = pickle.dumps(searcher)
    ids = ["t0", "t1", "t2"] if ahead == "experiment" else ["t0", "t1"]
    snapshot = [SnapshotTrial(t, searcher.suggest(t), "RUNNING", {}) for t in ids]  # type: ignore[arg-type]
    restored = pickle.loads(before if ahead == "experiment" else after)
    restored.reconcile(snapshot)
    got = [s.config for s in snapshot] + [restored.suggest(f"n{i}") for i in range(N - len(ids))]
    assert got == configs and restored.suggest("extra") == Searcher.FINISHED


@dataclass
class _Trial:
    trial_id: str
    last_result: dict = field(default_factory=dict)
    status: str = "TERMINATED"
    config: dict = field(default_factory=dict)


def _asha(trial_ids: list[str]) -> ASHA:
    asha = ASHA(
        metric="val_robust_acc", mode="max", time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3
    )
    for tid in trial_ids:
        asha.on_trial_add(None, _Trial(tid))  # type: ignore[arg-type]
    return asha


def _rungs(asha: ASHA) -> dict[float, dict[str, float]]:
    return {m: dict(r) for m, r in asha.rungs.items()}


def test_rungs_follow_the_restored_trials():
    asha = _asha(["done", "stopped", "lost"])
    asha.rungs[min(asha.rungs)]["lost"] = 0.9  # recorded, but the snapshot lost the trial
    history = [{"epoch": e, "val_robust_acc": 0.1 * e} for e in (1, 2, 3)]
    trials = [
        _Trial("done", {"epoch": 3, "val_robust_acc": 0.3, "epoch_history": history}),
        _Trial("stopped", {"epoch": 1, "val_robust_acc": 0.05}),  # ASHA stopped it at its rung
    ]
    reconcile_rungs(asha, trials)
    rungs = _rungs(asha)
    assert rungs[1.0] == pytest.approx({"done": 0.1, "stopped": 0.05})
    assert rungs[3.0] == pytest.approx({"done": 0.3})


def test_asha_records_a_restored_trial_at_the_milestones_it_passed():
    asha = _asha(["a", "b"])
    asha.on_trial_result(None, _Trial("a"), {"epoch": 1, "val_robust_acc": 0.2})  # type: ignore[arg-type]
    # "b" was restored at epoch 2; its first report (epoch 3) carries the history.
    history = [{"epoch": e, "val_robust_acc": 0.3 + 0.1 * e} for e in (1, 2, 3)]
    result = {"epoch": 3, "val_robust_acc": 0.6, "epoch_history": history}
    asha.on_trial_result(None, _Trial("b"), result)  # type: ignore[arg-type]
    rungs = _rungs(asha)
    assert rungs[1.0] == pytest.approx({"a": 0.2, "b": 0.4})  # epoch 1's value, not epoch 3's
    assert rungs[3.0] == pytest.approx({"b": 0.6})


def _final() -> dict:
    history = [{"epoch": 1, "train_loss": 1.0, "val_robust_acc": 0.5}]
    return {"epoch": 1, "train_loss": 1.0, "epoch_history": history, "best_robust_acc": 0.5}


def test_rows_follow_the_experiments_trial_list(tmp_path):
    cb = ParquetCallback(tmp_path, "s", "smoke")
    cfg = {"model": {"name": "wrn", "depths": (1, 1, 1)}}
    lost = _Trial("lost", _final(), config=cfg)
    kept = _Trial("kept", _final(), config=cfg)
    cb.on_trial_complete(0, [], lost)
    cb.on_trial_complete(0, [], kept)
    # "late" ended in Ray's snapshot before its row was written; "lost" is unknown to the experiment.
    late = _Trial("late", _final(), config={"model": {"name": "wrn", "depths": (3, 1, 1)}})
    cb.on_experiment_end([kept, late])
    trials = pd.read_parquet(tmp_path / "trials.parquet")
    epochs = pd.read_parquet(tmp_path / "epochs.parquet")
    assert sorted(trials["trial_id"]) == ["kept", "late"]
    assert sorted(epochs["trial_id"]) == ["kept", "late"]
    orphans = pd.read_parquet(tmp_path / "orphaned_trials.parquet")
    assert list(orphans["trial_id"]) == ["lost"] and orphans["best_robust_acc"].iloc[0] == 0.5
