"""Kill the driver at each moment of a sweep that matters, resume, and get exactly N configs once each.

The kills are crash points (tune_robust.faults), not timers: before the first experiment snapshot,
between a trial's suggestion and its first report, inside a snapshot with the trial list ahead of the
searcher's state and the other way round, and after a trial finished but before its row was written.
(The tpe + asha kill in the snapshot with the trial list ahead runs in the default suite, in
test_search.py; these are the rest, about a minute each.)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import crash_sweep

ROOT = Path(__file__).resolve().parents[1]
N = 6
EPOCHS = 2
GRID_DEPTHS = ["1-1-1", "1-1-3", "1-1-5", "1-1-7", "1-1-9", "1-3-1"]  # the grid's first 6 points

pytestmark = pytest.mark.slow


def _cmd(results: Path, search: str, *extra: str) -> list[str]:
    if search == "grid":
        strategy = ["--max-trials", str(N)]
    elif search == "nsga2":  # two objectives; its sampler holds a lock, so its state pickles specially
        strategy = ["--search", "nsga2", "--num-samples", str(N), "--seed", "2"]
    else:
        strategy = ["--search", "tpe", "--scheduler", "asha", "--num-samples", str(N), "--seed", "2"]
    sets = ["--set", f"train.epochs={EPOCHS}", "--results-dir", str(results), "-q"]
    return [sys.executable, str(ROOT / "sweep.py"), "wrn_depth_grid", *strategy, *sets, *extra]


@pytest.mark.parametrize(
    "search, point",
    [
        ("tpe", "suggest:1"),
        ("tpe", "trial_start:3"),
        ("tpe", "searcher_ahead:4"),
        ("tpe", "row_write:2"),
        ("nsga2", "trial_start:3"),
        ("grid", "experiment_ahead:4"),
        ("grid", "searcher_ahead:4"),
    ],
)
def test_killed_at_a_crash_point_resumes_to_exactly_n_configs(tmp_path, search, point):
    d = tmp_path / "wrn_depth_grid"
    crash_sweep(_cmd(tmp_path, search), point)
    resumed = subprocess.run(
        _cmd(tmp_path, search, "--resume"), cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = pd.read_parquet(d / "trials.parquet")
    epochs = pd.read_parquet(d / "epochs.parquet")
    assert len(trials) == N and trials["trial_id"].is_unique
    assert trials["model.depths"].nunique() == N, "a config ran twice after the restore"
    assert (trials["status"] == "TERMINATED").all()
    if search == "grid":
        assert sorted(trials["model.depths"]) == GRID_DEPTHS
    assert set(epochs["trial_id"]) == set(trials["trial_id"])  # no rows of trials the experiment lost
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    # Every trial has one epoch row for each epoch it ran (ASHA may stop some after epoch 1).
    runs = epochs.groupby("trial_id")["epoch"].agg(["count", "max"])
    ran = trials.set_index("trial_id")["epochs_run"]
    assert (runs["count"] == ran.reindex(runs.index)).all() and (runs["max"] == runs["count"]).all()
    if point == "suggest:1":
        assert "before its first experiment snapshot" in resumed.stdout


def test_snapshot_files_cut_short_by_the_kill_resume_from_the_kept_snapshot(tmp_path):
    """Ray uploads its snapshot files to storage one by one, non-atomically: a kill during the upload
    leaves a file cut short (CI saw an empty search_gen_state that made Ray restart the experiment).
    Here every snapshot file in storage is cut short; the resume takes the copy kept at each snapshot."""
    d = tmp_path / "wrn_depth_grid"
    crash_sweep(_cmd(tmp_path, "tpe"), "trial_start:3")
    cut = sorted(p for p in (d / "tune").iterdir() if p.suffix in (".json", ".pkl") and p.name != "tuner.pkl")
    assert {p.name.split("-2")[0] for p in cut} >= {"experiment_state", "search_gen_state", "searcher-state"}
    damage = {p.name: p.read_bytes()[: p.stat().st_size // 3] if p.suffix == ".json" else b"" for p in cut}
    for p in cut:
        p.write_bytes(damage[p.name])
    resumed = subprocess.run(
        _cmd(tmp_path, "tpe", "--resume"), cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Failed to restore" not in resumed.stderr
    trials = pd.read_parquet(d / "trials.parquet")
    assert len(trials) == N and trials["model.depths"].nunique() == N
    assert (trials["status"] == "TERMINATED").all()
    aside = d / "damaged_snapshot"
    assert {p.name: p.read_bytes() for p in aside.iterdir()} == damage  # set aside, not deleted
    assert "resuming from the snapshot kept in" in resumed.stdout


def test_a_snapshot_ray_cannot_restore_is_refused_not_started_over(tmp_path):
    """A whole file Ray still cannot restore from (here a grid searcher state without its keys): Ray
    logs the error and would start the sweep over; the resume refuses before running or writing."""
    d = tmp_path / "wrn_depth_grid"
    crash_sweep(_cmd(tmp_path, "grid"), "trial_start:3")
    shutil.rmtree(d / "snapshot")
    searcher = sorted((d / "tune").glob("searcher-state-*.pkl"))[-1]
    searcher.write_text("{}")

    def results() -> dict[str, bytes]:  # the sweep's own files and Ray's snapshot (not trial folders,
        # which a worker outliving the killed driver may still write to)
        return {
            str(p.relative_to(d)): p.read_bytes() for p in [*d.glob("*"), *d.glob("tune/*")] if p.is_file()
        }

    before = results()
    resumed = subprocess.run(
        _cmd(tmp_path, "grid", "--resume"), cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 2, resumed.stderr[-3000:]
    assert "Ray could not restore the experiment snapshot" in resumed.stderr.splitlines()[-1]
    after = results()
    assert {n for n in after if before.get(n) != after[n]} == set()
    assert "trials.parquet" in after or "epochs.parquet" in after
