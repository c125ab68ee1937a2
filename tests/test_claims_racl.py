"""RACL's claims (analysis/claims/racl.py) on hand-made racl_ablation, racl_retrain and racl_table1
results: the verdict and the statistic of each where it holds, where it is contradicted, where the
seeds are too few for p < 0.05 and where it cannot be judged. Each p value is recomputed here as the
exact sign-flip permutation p of the paired differences."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tune_robust.analysis.claims import (
    CANNOT_JUDGE,
    CLAIMS,
    CONTRADICTED,
    HOLDS,
    INCONCLUSIVE,
    SweepData,
    judge,
)
from tune_robust.analysis.load import SweepResults

SEEDS = [0, 1, 2, 3, 4, 5]
# Six paired seeds whose differences share a sign: the smallest exact two-sided sign-flip p, 2 / 2^6.
P_SIX = 2 / 64


def sweep(name: str, trials: pd.DataFrame, epochs: pd.DataFrame | None = None) -> dict[str, SweepData]:
    results = SweepResults(trials, pd.DataFrame() if epochs is None else epochs)
    return {name: SweepData(name, Path(name), results, planned=None)}


def sign_flip_p(differences: Sequence[float] | np.ndarray) -> float:
    """Exact two-sided p of mean(differences) under random sign flips (every 2^n sign pattern)."""
    d = np.asarray(differences, float)
    observed = abs(d.mean())
    means = [abs((d * signs).mean()) for signs in itertools.product((1.0, -1.0), repeat=len(d))]
    return float(np.mean(np.asarray(means) >= observed - 1e-12))


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
    """racl_ablation with the eta 0.9, rho 0.001 search ending at ``cl`` (one per seed 0, 1, ...), the
    without-CL one at ``without`` and an eta 0.7, rho 0.001 search whose bound is far below both."""
    trials, epochs = [], []
    arms = [
        ("eta 0.9, rho 0.001", 0.9, 0.001, cl),
        ("without CL", 0.9, without_rho, without),
        ("eta 0.7, rho 0.001", 0.7, 0.001, [-100.0] * len(cl)),
    ]
    for label, eta, rho, bounds in arms:
        for seed, value in enumerate(bounds):
            row = search(label, seed, eta, rho)
            trials.append(row)
            epochs.extend(bound_epochs(row["trial_id"], value))
    return sweep("racl_ablation", pd.DataFrame(trials), pd.DataFrame(epochs))


BOUND_CL = [3.0, 2.5, 4.0, 3.2, 2.8, 3.6]
BOUND_WITHOUT = [5.0, 5.5, 4.8, 6.0, 5.2, 4.9]


def test_constraint_claim_holds_when_cl_ends_with_the_lower_bound_and_ignores_other_settings() -> None:
    result = judge(CLAIMS.get("racl_constraint_lowers_bound"), ablation(BOUND_CL, BOUND_WITHOUT))
    assert result.verdict == HOLDS
    assert result.finding is not None
    differences = np.subtract(BOUND_CL, BOUND_WITHOUT)
    assert result.finding.value == pytest.approx(differences.mean())
    assert result.finding.p == pytest.approx(sign_flip_p(differences)) and result.finding.p == pytest.approx(
        P_SIX
    )
    assert result.finding.n == 6 and result.finding.high < 0
    assert "paired by train.seed" in result.reason


def test_constraint_claim_is_contradicted_when_cl_ends_with_the_higher_bound() -> None:
    cl = [6.0, 6.5, 7.0, 6.2, 5.9, 6.4]
    result = judge(CLAIMS.get("racl_constraint_lowers_bound"), ablation(cl, BOUND_WITHOUT))
    assert result.verdict == CONTRADICTED
    assert result.finding is not None
    differences = np.subtract(cl, BOUND_WITHOUT)
    assert result.finding.value == pytest.approx(differences.mean())
    assert result.finding.p == pytest.approx(sign_flip_p(differences))


def test_constraint_claim_on_four_seeds_that_all_agree_is_inconclusive_not_holds() -> None:
    result = judge(CLAIMS.get("racl_constraint_lowers_bound"), ablation(BOUND_CL[:4], BOUND_WITHOUT[:4]))
    assert result.verdict == INCONCLUSIVE
    assert result.finding is not None
    assert result.finding.high < 0  # the bootstrap interval excludes 0; the sign-flip p does not
    assert result.finding.p == pytest.approx(sign_flip_p(np.subtract(BOUND_CL[:4], BOUND_WITHOUT[:4])))
    assert result.finding.p == pytest.approx(2 / 16)


def test_constraint_claim_cannot_judge_searches_at_different_rho() -> None:
    result = judge(
        CLAIMS.get("racl_constraint_lowers_bound"), ablation([3.0] * 6, [5.0] * 6, without_rho=0.01)
    )
    assert result.verdict == CANNOT_JUDGE
    assert "rho 0.01" in result.reason


def test_constraint_claim_learned_check_reads_clean_accuracy_of_the_searches() -> None:
    result = judge(CLAIMS.get("racl_constraint_lowers_bound"), ablation(BOUND_CL, BOUND_WITHOUT))
    assert "median best_clean_acc 0.900" in result.learned


# racl_retrain: the genotype each racl_ablation setting derived, retrained with PGD-AT once per seed.
ROBUST_COLUMNS = ("test_pgd10_acc", "test_pgd20_acc", "best_robust_acc")


def retrain_label(setting: str) -> str:
    return f"racl_ablation:eval.label:{setting} (abl_{setting.replace(' ', '').replace(',', '_')})"


def retrain_rows(label: str, accs: Sequence[float], column: str) -> list[dict[str, Any]]:
    """One finished retrain per seed 0, 1, ... of the genotype labelled ``label``: ``accs`` in
    ``column``, no value in the robust columns Table 5 prefers to it, and 1 - acc in the columns it
    prefers (so reading one of those reverses the comparison)."""
    rows = []
    rank = ROBUST_COLUMNS.index(column)
    for seed, acc in enumerate(accs):
        row: dict[str, Any] = {"status": "TERMINATED", "eval.label": label, "train.seed": seed}
        for i, name in enumerate(ROBUST_COLUMNS):
            row[name] = np.nan if i < rank else acc if i == rank else 1.0 - acc
        rows.append(row)
    return rows


def retrain(
    cl: Sequence[float], without: Sequence[float], column: str = "test_pgd10_acc"
) -> dict[str, SweepData]:
    """racl_retrain with the 'eta 0.9, rho 0.001' genotype at ``cl`` and the 'without CL' one at
    ``without`` (empty: not retrained), beside the released RACL genotype and the eta 0.7 and
    rho 0.0001 settings' genotypes, all far more robust than either."""
    rows = retrain_rows(retrain_label("eta 0.9, rho 0.001"), cl, column)
    rows += retrain_rows(retrain_label("without CL"), without, column)
    for label in (
        "published:RACL",
        retrain_label("eta 0.7, rho 0.001"),
        retrain_label("eta 0.9, rho 0.0001"),
    ):
        rows += retrain_rows(label, [0.75] * len(SEEDS), column)
    return {**sweep("racl_retrain", pd.DataFrame(rows)), **ablation(BOUND_CL, BOUND_WITHOUT)}


RETRAIN_CL = [0.53, 0.51, 0.55, 0.52, 0.54, 0.50]
RETRAIN_WITHOUT = [0.48, 0.47, 0.49, 0.46, 0.50, 0.48]


@pytest.mark.parametrize("column", ROBUST_COLUMNS)
def test_cl_cell_claim_holds_on_the_first_robust_column_table_5_has(column: str) -> None:
    result = judge(CLAIMS.get("racl_cl_cell_more_robust"), retrain(RETRAIN_CL, RETRAIN_WITHOUT, column))
    assert result.verdict == HOLDS
    assert result.finding is not None
    differences = np.subtract(RETRAIN_CL, RETRAIN_WITHOUT)
    assert result.finding.value == pytest.approx(differences.mean())
    assert result.finding.p == pytest.approx(sign_flip_p(differences)) and result.finding.p == pytest.approx(
        P_SIX
    )
    assert result.finding.n == 6 and result.finding.low > 0
    assert column in result.finding.statistic
    assert "paired by train.seed" in result.reason


def test_cl_cell_claim_is_contradicted_when_the_without_cl_cell_is_more_robust() -> None:
    result = judge(CLAIMS.get("racl_cl_cell_more_robust"), retrain(RETRAIN_WITHOUT, RETRAIN_CL))
    assert result.verdict == CONTRADICTED
    assert result.finding is not None
    differences = np.subtract(RETRAIN_WITHOUT, RETRAIN_CL)
    assert result.finding.value == pytest.approx(differences.mean())
    assert result.finding.p == pytest.approx(sign_flip_p(differences))
    assert result.finding.high < 0


def test_cl_cell_claim_on_four_seeds_that_all_agree_is_inconclusive_not_holds() -> None:
    result = judge(CLAIMS.get("racl_cl_cell_more_robust"), retrain(RETRAIN_CL[:4], RETRAIN_WITHOUT[:4]))
    assert result.verdict == INCONCLUSIVE
    assert result.finding is not None
    differences = np.subtract(RETRAIN_CL[:4], RETRAIN_WITHOUT[:4])
    assert result.finding.value == pytest.approx(differences.mean())
    assert result.finding.low > 0  # the bootstrap interval excludes 0; the sign-flip p does not
    assert result.finding.p == pytest.approx(sign_flip_p(differences)) and result.finding.p == pytest.approx(
        2 / 16
    )


def test_cl_cell_claim_with_gains_of_both_signs_is_inconclusive() -> None:
    cl = [0.53, 0.45, 0.55, 0.44, 0.54, 0.47]
    result = judge(CLAIMS.get("racl_cl_cell_more_robust"), retrain(cl, RETRAIN_WITHOUT))
    assert result.verdict == INCONCLUSIVE
    assert result.finding is not None
    differences = np.subtract(cl, RETRAIN_WITHOUT)
    assert result.finding.value == pytest.approx(differences.mean())
    assert result.finding.p == pytest.approx(sign_flip_p(differences)) and result.finding.p >= 0.05


@pytest.mark.parametrize(
    ("cl", "without", "counts"),
    [(RETRAIN_CL, [], "6 and 0"), ([], RETRAIN_WITHOUT, "0 and 6"), ([], [], "0 and 0")],
)
def test_cl_cell_claim_cannot_judge_without_both_retrained_genotypes(
    cl: list[float], without: list[float], counts: str
) -> None:
    result = judge(CLAIMS.get("racl_cl_cell_more_robust"), retrain(cl, without))
    assert result.verdict == CANNOT_JUDGE
    assert result.finding is None
    assert "'without CL'" in result.reason and "'eta 0.9, rho 0.001'" in result.reason
    assert f"it has {counts} finished trials" in result.reason


def test_cl_cell_claim_learned_check_reads_robust_accuracy_of_the_retrained_cells() -> None:
    result = judge(
        CLAIMS.get("racl_cl_cell_more_robust"), retrain(RETRAIN_CL, RETRAIN_WITHOUT, "best_robust_acc")
    )
    assert "racl_retrain: median best_robust_acc" in result.learned
    at_chance = retrain(RETRAIN_CL, RETRAIN_WITHOUT)["racl_retrain"].results.trials.assign(
        best_robust_acc=0.1
    )
    sweeps = {**retrain(RETRAIN_CL, RETRAIN_WITHOUT), **sweep("racl_retrain", at_chance)}
    unlearned = judge(CLAIMS.get("racl_cl_cell_more_robust"), sweeps)
    assert unlearned.verdict == INCONCLUSIVE
    assert "did not learn" in unlearned.reason


def test_cl_cell_claim_cannot_judge_without_the_racl_retrain_sweep() -> None:
    result = judge(CLAIMS.get("racl_cl_cell_more_robust"), ablation(BOUND_CL, BOUND_WITHOUT))
    assert result.verdict == CANNOT_JUDGE
    assert "racl_retrain" in result.reason


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


PCDARTS = [0.42, 0.43, 0.41, 0.44, 0.40, 0.42]


def test_cell_claim_holds_when_racl_is_more_robust_after_the_same_pgd_at() -> None:
    racl = [0.50, 0.48, 0.52, 0.49, 0.47, 0.51]
    result = judge(CLAIMS.get("racl_cell_more_robust"), table1(racl, PCDARTS))
    assert result.verdict == HOLDS
    assert result.finding is not None
    differences = np.subtract(racl, PCDARTS)
    assert result.finding.value == pytest.approx(differences.mean())
    assert result.finding.p == pytest.approx(sign_flip_p(differences))
    assert result.finding.n == 6


def test_cell_claim_is_contradicted_when_pc_darts_is_more_robust() -> None:
    racl = [0.40, 0.38, 0.39, 0.41, 0.37, 0.40]
    result = judge(CLAIMS.get("racl_cell_more_robust"), table1(racl, PCDARTS))
    assert result.verdict == CONTRADICTED
    assert result.finding is not None
    differences = np.subtract(racl, PCDARTS)
    assert result.finding.value == pytest.approx(differences.mean())
    assert result.finding.p == pytest.approx(sign_flip_p(differences))


def test_cell_claim_compares_unpaired_means_when_seeds_do_not_overlap() -> None:
    racl = [0.50, 0.48, 0.55]
    result = judge(CLAIMS.get("racl_cell_more_robust"), table1(racl, PCDARTS, racl_seeds=[10, 11, 12]))
    assert result.finding is not None
    assert result.finding.value == pytest.approx(np.mean(racl) - np.mean(PCDARTS))
    assert "unpaired" in result.reason


def test_cell_claim_cannot_judge_without_pc_darts_trials() -> None:
    rows = [retrained("RACL", s, 0.5) for s in SEEDS]
    result = judge(CLAIMS.get("racl_cell_more_robust"), sweep("racl_table1", pd.DataFrame(rows)))
    assert result.verdict == CANNOT_JUDGE
    assert "PC_DARTS" in result.reason
