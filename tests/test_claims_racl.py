"""RACL's claims (analysis/claims/racl.py) on hand-made racl_ablation and racl_table1 results: the verdict
and the statistic of each where it holds, where it is contradicted and where it cannot be judged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tune_robust.analysis.claims import CANNOT_JUDGE, CLAIMS, CONTRADICTED, HOLDS, SweepData, judge
from tune_robust.analysis.load import SweepResults

SEEDS = [0, 1, 2, 3]


def sweep(name: str, trials: pd.DataFrame, epochs: pd.DataFrame | None = None) -> dict[str, SweepData]:
    results = SweepResults(trials, pd.DataFrame() if epochs is None else epochs)
    return {name: SweepData(name, Path(name), results, planned=None)}


def search(label: str, seed: int, eta: float, rho: float, **extra: Any) -> dict[str, Any]:
    """A finished search trial: clean-trained, so its FGSM accuracy is near 0 and its clean one high."""
    return {
        "trial_id": f"{label}-{seed}",
        "status": "TERMINATED",
        "eval.label": label,
        "train.seed": seed,
        "model.eta": eta,
        "model.rho": rho,
        "best_clean_acc": 0.9,
        "best_robust_acc": 0.02,
        **extra,
    }


def bound_epochs(trial_id: str, last: float) -> list[dict[str, Any]]:
    """A warm-up epoch without a bound, an epoch at ``last`` + 5 and the last epoch at ``last``."""
    return [
        {"trial_id": trial_id, "epoch": 0, "search_bound_mu": np.nan},
        {"trial_id": trial_id, "epoch": 2, "search_bound_mu": last},
        {"trial_id": trial_id, "epoch": 1, "search_bound_mu": last + 5.0},
    ]


def ablation(cl: list[float], without: list[float], without_rho: float = 0.001) -> dict[str, SweepData]:
    """racl_ablation with the eta 0.9, rho 0.001 search ending at ``cl`` (per seed), the without-CL one at
    ``without`` and an eta 0.7, rho 0.001 search whose bound is far below both."""
    trials, epochs = [], []
    arms = [
        ("eta 0.9, rho 0.001", 0.9, 0.001, cl),
        ("without CL", 0.9, without_rho, without),
        ("eta 0.7, rho 0.001", 0.7, 0.001, [-100.0] * len(SEEDS)),
    ]
    for label, eta, rho, bounds in arms:
        for seed, value in zip(SEEDS, bounds, strict=True):
            row = search(label, seed, eta, rho)
            trials.append(row)
            epochs.extend(bound_epochs(row["trial_id"], value))
    return sweep("racl_ablation", pd.DataFrame(trials), pd.DataFrame(epochs))


def test_constraint_claim_holds_when_cl_ends_with_the_lower_bound_and_ignores_other_settings() -> None:
    cl, without = [3.0, 2.5, 4.0, 3.2], [5.0, 5.5, 4.8, 6.0]
    result = judge(CLAIMS.get("racl_constraint_lowers_bound"), ablation(cl, without))
    assert result.verdict == HOLDS
    assert result.finding is not None
    assert result.finding.value == pytest.approx(np.mean(np.subtract(cl, without)))
    assert result.finding.n == 4
    assert "paired by train.seed" in result.reason


def test_constraint_claim_is_contradicted_when_cl_ends_with_the_higher_bound() -> None:
    cl, without = [6.0, 6.5, 7.0, 6.2], [5.0, 5.5, 4.8, 6.0]
    result = judge(CLAIMS.get("racl_constraint_lowers_bound"), ablation(cl, without))
    assert result.verdict == CONTRADICTED
    assert result.finding is not None
    assert result.finding.value == pytest.approx(np.mean(np.subtract(cl, without)))


def test_constraint_claim_cannot_judge_searches_at_different_rho() -> None:
    result = judge(
        CLAIMS.get("racl_constraint_lowers_bound"), ablation([3.0] * 4, [5.0] * 4, without_rho=0.01)
    )
    assert result.verdict == CANNOT_JUDGE
    assert "rho 0.01" in result.reason


def test_constraint_claim_learned_check_reads_clean_accuracy_of_the_searches() -> None:
    result = judge(CLAIMS.get("racl_constraint_lowers_bound"), ablation([3.0, 2.5, 4.0, 3.2], [5.0] * 4))
    assert "median best_clean_acc 0.900" in result.learned


def retrained(genotype: str, seed: int, robust: float, method: str = "pgd_at") -> dict[str, Any]:
    return {
        "status": "TERMINATED",
        "model.genotype": genotype,
        "eval.label": f"published:{genotype}",
        "method.name": method,
        "train.seed": seed,
        "best_robust_acc": robust,
    }


def table1(racl: list[float], pcdarts: list[float], racl_seeds: list[int] = SEEDS) -> dict[str, SweepData]:
    """racl_table1's PGD-AT trials of both genotypes, plus clean-trained trials where PC-DARTS is far
    more robust."""
    rows = [retrained("RACL", s, v) for s, v in zip(racl_seeds, racl, strict=True)]
    rows += [retrained("PC_DARTS", s, v) for s, v in zip(SEEDS, pcdarts, strict=True)]
    rows += [retrained("RACL", 0, 0.0, "standard"), retrained("PC_DARTS", 0, 0.9, "standard")]
    return sweep("racl_table1", pd.DataFrame(rows))


def test_cell_claim_holds_when_racl_is_more_robust_after_the_same_pgd_at() -> None:
    racl, pcdarts = [0.50, 0.48, 0.52, 0.49], [0.42, 0.43, 0.41, 0.44]
    result = judge(CLAIMS.get("racl_cell_more_robust"), table1(racl, pcdarts))
    assert result.verdict == HOLDS
    assert result.finding is not None
    assert result.finding.value == pytest.approx(np.mean(np.subtract(racl, pcdarts)))
    assert result.finding.n == 4


def test_cell_claim_is_contradicted_when_pc_darts_is_more_robust() -> None:
    racl, pcdarts = [0.40, 0.38, 0.39, 0.41], [0.42, 0.43, 0.41, 0.44]
    result = judge(CLAIMS.get("racl_cell_more_robust"), table1(racl, pcdarts))
    assert result.verdict == CONTRADICTED
    assert result.finding is not None
    assert result.finding.value == pytest.approx(np.mean(np.subtract(racl, pcdarts)))


def test_cell_claim_compares_unpaired_means_when_seeds_do_not_overlap() -> None:
    racl, pcdarts = [0.50, 0.48, 0.55], [0.42, 0.43, 0.41, 0.44]
    result = judge(CLAIMS.get("racl_cell_more_robust"), table1(racl, pcdarts, racl_seeds=[10, 11, 12]))
    assert result.finding is not None
    assert result.finding.value == pytest.approx(np.mean(racl) - np.mean(pcdarts))
    assert "unpaired" in result.reason


def test_cell_claim_cannot_judge_without_pc_darts_trials() -> None:
    rows = [retrained("RACL", s, 0.5) for s in SEEDS]
    result = judge(CLAIMS.get("racl_cell_more_robust"), sweep("racl_table1", pd.DataFrame(rows)))
    assert result.verdict == CANNOT_JUDGE
    assert "PC_DARTS" in result.reason
