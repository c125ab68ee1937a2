"""Kill the driver with SIGKILL mid-sweep, then --resume: nothing lost, nothing twice, work continued."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import kill_sweep_when
from conftest import read_parquet as _read

ROOT = Path(__file__).resolve().parents[1]


def _sweep(results: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "sweep.py"),
        "wrn_depth_grid",
        "--max-trials",
        "4",
        "--set",
        "train.epochs=6",
        "--results-dir",
        str(results),
        "-q",
        *extra,
    ]


@pytest.mark.slow  # default run under 10 minutes; the one-shot searches' kill tests are slow too
def test_resume_after_kill_9(tmp_path):
    d = tmp_path / "wrn_depth_grid"

    def mid_point() -> bool:
        # One trial has finished and another is part-way (has epochs but no trial row).
        trials, epochs = _read(d / "trials.parquet"), _read(d / "epochs.parquet")
        if not len(trials) or not len(epochs):
            return False
        running = epochs[~epochs["trial_id"].isin(trials["trial_id"])]
        return bool(len(running)) and running["epoch"].max() >= 2

    kill_sweep_when(_sweep(tmp_path), mid_point, 240, "a mid-point to interrupt")
    finished_before = set(_read(d / "trials.parquet")["trial_id"])
    assert 1 <= len(finished_before) < 4

    resumed = subprocess.run(
        _sweep(tmp_path, "--resume"), cwd=ROOT, capture_output=True, text=True, timeout=400
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = pd.read_parquet(d / "trials.parquet")
    epochs = pd.read_parquet(d / "epochs.parquet")
    assert len(trials) == 4 and trials["trial_id"].is_unique
    assert (trials["status"] == "TERMINATED").all()
    assert finished_before <= set(trials["trial_id"])
    assert sorted(trials["model.depths"]) == ["1-1-1", "1-1-3", "1-1-5", "1-1-7"]
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert len(epochs) == 4 * 6
    assert set(epochs["trial_id"]) == set(trials["trial_id"])  # no rows of orphaned trials
    # At least one interrupted trial continued from its epoch checkpoint instead of starting over.
    assert (trials["resumed_from_epoch"] > 0).any()
