"""The README's main command, whole: all 125 depth configs at smoke fidelity (about 15 minutes on 2 cores)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wrn_depth_grid_default_run_means_something(tmp_path):
    cmd = [sys.executable, "sweep.py", "wrn_depth_grid", "--results-dir", str(tmp_path), "-q"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=2400)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = pd.read_parquet(tmp_path / "wrn_depth_grid" / "trials.parquet")
    assert len(trials) == 125 and (trials["status"] == "TERMINATED").all()
    assert trials["model.depths"].nunique() == 125
    top = trials.sort_values("best_robust_acc", ascending=False).head(5)
    assert (top["best_clean_acc"] >= 0.90).all()
    assert (top["best_robust_acc"] >= 0.5).all()  # chance is 0.1 on 10 classes
    # Configs differ measurably: the robust-accuracy spread is several test examples wide.
    spread = trials["best_robust_acc"].max() - trials["best_robust_acc"].min()
    assert spread >= 0.05
    # Every trial carries the evaluation suite; an honestly trained grid shows no masking signs.
    assert (trials["test_pgd20_acc"] <= trials["test_fgsm_acc"] + 0.02).all()
    for flag in ("eps0", "adv_le_clean", "bn_unchanged", "deterministic", "gradients", "logits"):
        assert trials[f"sanity_{flag}"].all(), flag
    assert trials["suspect_gradient_masking"].mean() <= 0.05
