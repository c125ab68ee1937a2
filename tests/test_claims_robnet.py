"""RobNet's claims judged on small hand-made trials tables: each verdict, and each statistic recomputed
here with scipy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tune_robust.analysis.claims import CANNOT_JUDGE, CONTRADICTED, HOLDS, Judgement, SweepData, judge
from tune_robust.analysis.claims.robnet import (
    Density,
    FinetunePredictsScratch,
    FspGap,
    SmallBudgetDirectConvs,
)
from tune_robust.analysis.load import SweepResults
from tune_robust.search_spaces.robnet import finetune_codes

BUDGETS = {"small": 7, "medium": 10, "large": 13}
PER_BUDGET = 8


def sweep(name: str, rows: dict[str, object]) -> SweepData:
    trials = pd.DataFrame(rows)
    trials["status"] = "TERMINATED"
    trials["sweep"] = name
    return SweepData(name, Path("x"), SweepResults(trials, pd.DataFrame()), planned=None)


def codes() -> list[str]:
    """PER_BUDGET codes of each budget, budget by budget (7, 10, then 13 convs)."""
    return finetune_codes(PER_BUDGET, BUDGETS)


def centred(values: np.ndarray) -> np.ndarray:
    """``values`` (PER_BUDGET per budget, in budget order) minus their budget's mean."""
    blocks = values.reshape(len(BUDGETS), PER_BUDGET)
    return (blocks - blocks.mean(axis=1, keepdims=True)).ravel()


def finetune_vs_scratch(finetune: np.ndarray, scratch: np.ndarray) -> Judgement:
    all_codes = codes()
    return judge(
        FinetunePredictsScratch,
        {
            "robnet_finetune": sweep(
                "robnet_finetune", {"model.code": all_codes, "best_robust_acc": finetune}
            ),
            "robnet_scratch": sweep("robnet_scratch", {"model.code": all_codes, "best_robust_acc": scratch}),
        },
    )


def accuracies(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.3, 0.5, len(BUDGETS) * PER_BUDGET)


def test_finetune_ranking_that_matches_scratch_within_budgets_holds() -> None:
    finetune = accuracies(0)
    scratch = finetune + np.random.default_rng(1).normal(0, 0.02, finetune.size)
    j = finetune_vs_scratch(finetune, scratch)
    assert j.verdict == HOLDS
    assert j.finding is not None
    expected = stats.kendalltau(centred(finetune), centred(scratch)).statistic
    assert j.finding.value == pytest.approx(expected)
    assert j.finding.n == len(finetune)


def test_finetune_ranking_is_judged_within_budgets_not_across_them() -> None:
    # Across budgets both sweeps rise with the budget (pooled tau > 0); within each budget the scratch
    # ranking reverses the finetune's.
    offset = np.repeat([0.0, 0.2, 0.4], PER_BUDGET)
    finetune = accuracies(2) * 0.2 + offset
    scratch = 0.6 - finetune + 2 * offset + np.random.default_rng(3).normal(0, 0.002, finetune.size)
    assert stats.kendalltau(finetune, scratch).statistic > 0.3
    j = finetune_vs_scratch(finetune, scratch)
    assert j.verdict == CONTRADICTED
    assert j.finding is not None
    expected = stats.kendalltau(centred(finetune), centred(scratch)).statistic
    assert j.finding.value == pytest.approx(expected)
    assert j.finding.value < 0


def test_finetune_vs_scratch_cannot_be_judged_with_five_shared_codes() -> None:
    all_codes = codes()
    scratch_codes = all_codes[:5] + all_codes[PER_BUDGET : PER_BUDGET + 1]
    j = judge(
        FinetunePredictsScratch,
        {
            "robnet_finetune": sweep(
                "robnet_finetune", {"model.code": all_codes, "best_robust_acc": accuracies(4)}
            ),
            # The sixth code is the only one of its budget in both sweeps: it is dropped.
            "robnet_scratch": sweep(
                "robnet_scratch", {"model.code": scratch_codes, "best_robust_acc": accuracies(5)[:6]}
            ),
        },
    )
    assert j.verdict == CANNOT_JUDGE
    assert "5 codes" in j.reason


def density_rows(sign: float) -> dict[str, object]:
    rng = np.random.default_rng(6)
    density = rng.uniform(0.5, 1.0, 24)
    robust = 0.4 + sign * 0.3 * density + rng.normal(0, 0.03, density.size)
    return {
        "arch_density": density,
        "arch_sep_convs": np.repeat([7.0, 10.0, 13.0], 8),
        "best_robust_acc": robust,
    }


@pytest.mark.parametrize(("sign", "verdict"), [(1.0, HOLDS), (-1.0, CONTRADICTED)])
def test_density_verdict_follows_the_sign_of_spearman_rho(sign: float, verdict: str) -> None:
    rows = density_rows(sign)
    j = judge(Density, {"robnet_finetune": sweep("robnet_finetune", rows)})
    assert j.verdict == verdict
    assert j.finding is not None
    expected = stats.spearmanr(rows["arch_density"], rows["best_robust_acc"]).statistic
    assert j.finding.value == pytest.approx(expected)
    assert j.finding.n == 24


def direct_rows(sign: float) -> dict[str, object]:
    """12 codes at 7 convs (portions 0.75 and 1 alternating; robust acc rising with the portion when
    ``sign`` is 1) and 6 at 13 convs where the relation is the opposite."""
    rng = np.random.default_rng(7)
    portion = np.tile([0.75, 1.0], 9)
    budget = np.array([7.0] * 12 + [13.0] * 6)
    effect = np.where(budget == 7.0, sign, -sign)
    robust = 0.4 + effect * 0.4 * (portion - 0.75) + rng.normal(0, 0.02, portion.size)
    return {"arch_sep_convs": budget, "arch_direct_conv_portion": portion, "best_robust_acc": robust}


# A bootstrap resample may draw a single portion (a constant input to spearmanr).
@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
@pytest.mark.parametrize(("sign", "verdict"), [(1.0, HOLDS), (-1.0, CONTRADICTED)])
def test_direct_convs_claim_reads_only_the_smallest_budget(sign: float, verdict: str) -> None:
    rows = direct_rows(sign)
    j = judge(SmallBudgetDirectConvs, {"robnet_finetune": sweep("robnet_finetune", rows)})
    assert j.verdict == verdict
    assert j.finding is not None
    small = np.asarray(rows["arch_sep_convs"]) == 7.0
    portion, robust = np.asarray(rows["arch_direct_conv_portion"]), np.asarray(rows["best_robust_acc"])
    assert j.finding.value == pytest.approx(stats.spearmanr(portion[small], robust[small]).statistic)
    assert j.finding.n == 12
    assert "largest budget (13 convs)" in j.reason


def test_direct_convs_cannot_be_judged_when_the_smallest_budget_has_one_portion() -> None:
    rows = direct_rows(1.0)
    portion = np.asarray(rows["arch_direct_conv_portion"]).copy()
    portion[:12] = 1.0
    rows["arch_direct_conv_portion"] = portion
    j = judge(SmallBudgetDirectConvs, {"robnet_finetune": sweep("robnet_finetune", rows)})
    assert j.verdict == CANNOT_JUDGE


def fsp_rows(sign: float, deep: int = 3) -> dict[str, object]:
    """16 finetuned codes of 5 cells: the gap rises (``sign`` 1) or falls with the last 3 cells' FSP
    distances and the opposite way with the first 2; one screened-out code with no accuracies."""
    rng = np.random.default_rng(8)
    gap = rng.uniform(0.05, 0.4, 16)
    rows: dict[str, object] = {}
    for i in range(5):
        trend = sign if i >= 2 else -sign
        rows[f"fsp_cell_{i}"] = np.append(np.exp(trend * 10 * gap + rng.normal(0, 0.3, gap.size)), 50.0)
    rows["best_clean_acc"] = np.append(0.3 + gap, np.nan)
    rows["best_robust_acc"] = np.append(np.full(gap.size, 0.3), np.nan)
    rows["screen.fsp_cells"] = np.full(gap.size + 1, deep)
    return rows


@pytest.mark.parametrize(("sign", "verdict"), [(1.0, HOLDS), (-1.0, CONTRADICTED)])
def test_fsp_gap_correlates_the_mean_of_the_last_screened_cells(sign: float, verdict: str) -> None:
    rows = fsp_rows(sign)
    j = judge(FspGap, {"robnet_free_search": sweep("robnet_free_search", rows)})
    assert j.verdict == verdict
    assert j.finding is not None
    deep = np.mean([np.asarray(rows[f"fsp_cell_{i}"])[:16] for i in (2, 3, 4)], axis=0)
    gap = (np.asarray(rows["best_clean_acc"]) - np.asarray(rows["best_robust_acc"]))[:16]
    assert j.finding.value == pytest.approx(stats.spearmanr(deep, gap).statistic)
    assert j.finding.n == 16


def test_fsp_gap_cannot_be_judged_when_fewer_cells_were_measured_than_the_screen_averages() -> None:
    j = judge(FspGap, {"robnet_free_search": sweep("robnet_free_search", fsp_rows(1.0, deep=6))})
    assert j.verdict == CANNOT_JUDGE
    assert "last 6" in j.reason
