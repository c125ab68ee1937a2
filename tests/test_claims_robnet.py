"""RobNet's claims judged on small hand-made trials tables: each verdict, and each statistic recomputed
here with scipy. The cell-based claims read robnet_sample (the mini fidelity's 12 unfiltered codes per
budget); their density, budget and direct-conv columns come from the codes themselves."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tune_robust.analysis.claims import (
    ALPHA,
    CANNOT_JUDGE,
    CONTRADICTED,
    HOLDS,
    INCONCLUSIVE,
    Judgement,
    SweepData,
    judge,
)
from tune_robust.analysis.claims.robnet import (
    Density,
    FinetunePredictsScratch,
    FspGap,
    SmallBudgetDirectConvs,
)
from tune_robust.analysis.load import SweepResults
from tune_robust.models.robnet_codes import arch_stats, parse_code
from tune_robust.search_spaces.robnet import BUDGETS, sample_codes

SAMPLE = "robnet_sample"
SCRATCH = "robnet_scratch"
CODES = sample_codes("mini")
PER_BUDGET = len(CODES) // len(BUDGETS)
ROBUST = "best_robust_acc"


def sweep(name: str, rows: dict[str, object] | pd.DataFrame) -> SweepData:
    trials = pd.DataFrame(rows)
    if "status" not in trials:
        trials["status"] = "TERMINATED"
    trials["sweep"] = name
    return SweepData(name, Path("x"), SweepResults(trials, pd.DataFrame()), planned=None)


def code_table() -> pd.DataFrame:
    """robnet_sample's mini codes (budget by budget: 7, 10, then 13 convs) with their arch_* columns."""
    table = pd.DataFrame([arch_stats(parse_code(c)) for c in CODES])
    table.insert(0, "model.code", CODES)
    return table


def centred(values: np.ndarray | pd.Series) -> np.ndarray:
    """``values`` (PER_BUDGET per budget, in budget order) minus their budget's mean."""
    blocks = np.asarray(values, float).reshape(len(BUDGETS), PER_BUDGET)
    return (blocks - blocks.mean(axis=1, keepdims=True)).ravel()


def noise(seed: int, scale: float, size: int = len(CODES)) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, scale, size)


def test_sample_codes_come_budget_by_budget() -> None:
    budgets = code_table()["arch_sep_convs"].to_numpy()
    assert np.array_equal(budgets, np.repeat(sorted(BUDGETS.values()), PER_BUDGET))


# Finetune ranking vs scratch ranking -------------------------------------------------------------------


def finetune_vs_scratch(finetune: np.ndarray, scratch: np.ndarray, codes: list[str] = CODES) -> Judgement:
    return judge(
        FinetunePredictsScratch,
        {
            SAMPLE: sweep(SAMPLE, {"model.code": CODES, ROBUST: finetune}),
            SCRATCH: sweep(SCRATCH, {"model.code": codes, ROBUST: scratch}),
        },
    )


def accuracies(seed: int, size: int = len(CODES)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.3, 0.5, size)


def test_finetune_ranking_that_matches_scratch_within_budgets_holds() -> None:
    finetune = accuracies(0)
    scratch = finetune + noise(1, 0.02)
    j = finetune_vs_scratch(finetune, scratch)
    assert j.verdict == HOLDS
    assert j.finding is not None
    expected = stats.kendalltau(centred(finetune), centred(scratch))
    assert j.finding.value == pytest.approx(expected.statistic)
    # The p value permutes codes within budgets (9,999 draws): near scipy's asymptotic one.
    assert j.finding.p == pytest.approx(expected.pvalue, abs=0.05)
    assert j.finding.p < ALPHA
    assert j.finding.n == len(CODES)


def test_finetune_ranking_is_judged_within_budgets_not_across_them() -> None:
    # Across budgets both sweeps rise with the budget (pooled tau > 0); within each budget the scratch
    # ranking reverses the finetune's.
    offset = np.repeat([0.0, 0.2, 0.4], PER_BUDGET)
    finetune = accuracies(2) * 0.2 + offset
    scratch = 0.6 - finetune + 2 * offset + noise(3, 0.002)
    assert stats.kendalltau(finetune, scratch).statistic > 0.3
    j = finetune_vs_scratch(finetune, scratch)
    assert j.verdict == CONTRADICTED
    assert j.finding is not None
    expected = stats.kendalltau(centred(finetune), centred(scratch))
    assert j.finding.value == pytest.approx(expected.statistic)
    assert j.finding.p == pytest.approx(expected.pvalue, abs=0.05)
    assert j.finding.value < 0


def test_finetune_ranking_unrelated_to_scratch_is_inconclusive() -> None:
    finetune, scratch = accuracies(4), accuracies(5)
    expected = stats.kendalltau(centred(finetune), centred(scratch))
    assert expected.pvalue > ALPHA
    j = finetune_vs_scratch(finetune, scratch)
    assert j.verdict == INCONCLUSIVE
    assert j.finding is not None
    assert j.finding.value == pytest.approx(expected.statistic)


def test_finetune_vs_scratch_cannot_be_judged_with_five_shared_codes() -> None:
    # The sixth code is the only one of its budget in both sweeps: it is dropped.
    scratch_codes = CODES[:5] + CODES[PER_BUDGET : PER_BUDGET + 1]
    j = finetune_vs_scratch(accuracies(6), accuracies(7, size=6), codes=scratch_codes)
    assert j.verdict == CANNOT_JUDGE
    assert "5 codes" in j.reason


# Density within budgets -------------------------------------------------------------------------------


def density_table(effect: float, seed: int) -> pd.DataFrame:
    """The sample's codes; robust acc = 0.3 + 0.02 per conv of the budget + ``effect`` x (density minus
    its budget's mean density) + N(0, 0.01) noise."""
    table = code_table()
    density = table["arch_density"].to_numpy()
    robust = 0.3 + 0.02 * table["arch_sep_convs"].to_numpy() + effect * centred(density)
    table[ROBUST] = robust + noise(seed, 0.01)
    return table


def judge_density(table: pd.DataFrame) -> Judgement:
    return judge(Density, {SAMPLE: sweep(SAMPLE, table)})


@pytest.mark.parametrize(("effect", "verdict"), [(0.5, HOLDS), (-0.5, CONTRADICTED)])
def test_density_verdict_follows_spearman_rho_of_budget_centred_values(effect: float, verdict: str) -> None:
    table = density_table(effect, seed=8)
    j = judge_density(table)
    assert j.verdict == verdict
    assert j.finding is not None
    expected = stats.spearmanr(centred(table["arch_density"]), centred(table[ROBUST]))
    assert j.finding.value == pytest.approx(expected.statistic)
    assert j.finding.p == pytest.approx(expected.pvalue, abs=0.05)
    assert j.finding.p < ALPHA
    assert j.finding.n == len(CODES)


def test_density_does_not_hold_where_robust_acc_follows_only_the_budget() -> None:
    # Density counts the conv bits, so across budgets it rises with the budget, and so does robust acc
    # here; within a budget robust acc is noise unrelated to density.
    table = density_table(0.0, seed=3)
    density, robust = table["arch_density"], table[ROBUST]
    pooled = stats.spearmanr(density, robust)
    assert pooled.statistic > 0.8
    assert pooled.pvalue < 1e-6
    j = judge_density(table)
    assert j.verdict == INCONCLUSIVE
    assert j.finding is not None
    expected = stats.spearmanr(centred(density), centred(robust))
    assert j.finding.value == pytest.approx(expected.statistic)
    assert j.finding.p == pytest.approx(expected.pvalue, abs=0.05)
    assert j.finding.p > ALPHA


def test_density_does_not_hold_on_three_budgets_of_two_codes() -> None:
    # Every budget's denser code is the more robust one: 3 signs, which agree by chance with p 1/4.
    table = pd.DataFrame(
        {
            "arch_density": [0.40, 0.50, 0.50, 0.62, 0.60, 0.74],
            "arch_sep_convs": [7.0, 7.0, 10.0, 10.0, 13.0, 13.0],
            ROBUST: [0.30, 0.31, 0.35, 0.37, 0.40, 0.43],
        }
    )
    flips = list(itertools.product((1, -1), repeat=3))
    assert sum(len(set(signs)) == 1 for signs in flips) / len(flips) == 0.25
    j = judge_density(table)
    # Codes permuted within budgets: 3 agreeing signs (p 1/4), not 6! pairings.
    assert j.verdict != HOLDS and j.finding is not None
    assert j.finding.p == pytest.approx(0.25, abs=0.02)


def test_density_cannot_be_judged_without_the_budget_column() -> None:
    j = judge_density(density_table(0.5, seed=8).drop(columns="arch_sep_convs"))
    assert j.verdict == CANNOT_JUDGE
    assert "arch_sep_convs" in j.reason


def test_density_cannot_be_judged_when_a_trial_of_the_sample_failed() -> None:
    table = density_table(0.5, seed=8)
    failed = pd.DataFrame({"model.code": ["x"], "status": ["ERROR"], ROBUST: [math.nan]})
    table["status"] = "TERMINATED"
    j = judge_density(pd.concat([table, failed], ignore_index=True))
    assert j.verdict == CANNOT_JUDGE
    assert "1 of its trials failed" in j.reason


def test_density_cannot_be_judged_when_too_few_trials_have_a_density() -> None:
    table = density_table(0.5, seed=8)
    table.loc[5:, "arch_density"] = math.nan
    j = judge_density(table)
    assert j.verdict == CANNOT_JUDGE
    assert "fewer than 6 finished trials have a value of arch_density" in j.reason


# Direct convs at the smallest budget ------------------------------------------------------------------


def direct_table(sign: float) -> pd.DataFrame:
    """The sample's codes; at 7 convs robust acc rises (``sign`` 1) or falls with the direct-conv
    portion, at 13 convs the other way, at 10 convs not at all (plus N(0, 0.01) noise)."""
    table = code_table()
    budget = table["arch_sep_convs"].to_numpy()
    effect = np.select([budget == 7.0, budget == 13.0], [sign, -sign], 0.0)
    portion = table["arch_direct_conv_portion"].to_numpy()
    table[ROBUST] = 0.3 + 0.01 * budget + effect * 0.2 * portion + noise(9, 0.01)
    return table


# A bootstrap resample may draw a single portion (a constant input to spearmanr).
@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
@pytest.mark.parametrize(("sign", "verdict"), [(1.0, HOLDS), (-1.0, CONTRADICTED)])
def test_direct_convs_claim_reads_only_the_smallest_budget(sign: float, verdict: str) -> None:
    table = direct_table(sign)
    j = judge(SmallBudgetDirectConvs, {SAMPLE: sweep(SAMPLE, table)})
    assert j.verdict == verdict
    assert j.finding is not None
    small = table[table["arch_sep_convs"] == 7.0]
    expected = stats.spearmanr(small["arch_direct_conv_portion"], small[ROBUST])
    assert j.finding.value == pytest.approx(expected.statistic)
    assert expected.pvalue < 1e-3
    # 12 codes: a permutation p value, at least 1 / 10000 (9999 resamples).
    assert 1e-4 <= j.finding.p < ALPHA
    assert j.finding.n == PER_BUDGET
    assert "largest budget (13 convs)" in j.reason


def test_direct_convs_on_six_codes_of_two_portions_do_not_hold() -> None:
    # The 3 codes with every direct edge a conv beat the 3 with three of four: the exact permutation p of
    # that split is 2 x 3! 3! / 6! = 0.1.
    table = pd.DataFrame(
        {
            "arch_sep_convs": [7.0] * 6 + [13.0] * 6,
            "arch_direct_conv_portion": [0.75, 1.0] * 6,
            ROBUST: [0.30, 0.40, 0.31, 0.41, 0.32, 0.42, *accuracies(10, size=6)],
        }
    )
    j = judge(SmallBudgetDirectConvs, {SAMPLE: sweep(SAMPLE, table)})
    assert j.verdict == INCONCLUSIVE
    assert j.finding is not None
    small = table.iloc[:6]
    assert j.finding.value == pytest.approx(
        stats.spearmanr(small["arch_direct_conv_portion"], small[ROBUST]).statistic
    )
    assert j.finding.p == pytest.approx(2 * math.factorial(3) ** 2 / math.factorial(6))


def test_direct_convs_cannot_be_judged_when_the_smallest_budget_has_one_portion() -> None:
    table = direct_table(1.0)
    table.loc[table["arch_sep_convs"] == 7.0, "arch_direct_conv_portion"] = 1.0
    j = judge(SmallBudgetDirectConvs, {SAMPLE: sweep(SAMPLE, table)})
    assert j.verdict == CANNOT_JUDGE
    assert "2 direct-conv portions" in j.reason


# FSP distance of the deeper cells vs the clean-robust gap ---------------------------------------------


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
    rows[ROBUST] = np.append(np.full(gap.size, 0.3), np.nan)
    rows["screen.fsp_cells"] = np.full(gap.size + 1, deep)
    return rows


@pytest.mark.parametrize(("sign", "verdict"), [(1.0, HOLDS), (-1.0, CONTRADICTED)])
def test_fsp_gap_correlates_the_mean_of_the_last_screened_cells(sign: float, verdict: str) -> None:
    rows = fsp_rows(sign)
    j = judge(FspGap, {"robnet_free_search": sweep("robnet_free_search", rows)})
    assert j.verdict == verdict
    assert j.finding is not None
    deep = np.mean([np.asarray(rows[f"fsp_cell_{i}"])[:16] for i in (2, 3, 4)], axis=0)
    gap = (np.asarray(rows["best_clean_acc"]) - np.asarray(rows[ROBUST]))[:16]
    assert j.finding.value == pytest.approx(stats.spearmanr(deep, gap).statistic)
    # 16 codes: a permutation p value, at least 1 / 10000 (9999 resamples).
    assert 1e-4 <= j.finding.p < ALPHA
    assert j.finding.n == 16


def test_fsp_gap_cannot_be_judged_when_fewer_cells_were_measured_than_the_screen_averages() -> None:
    j = judge(FspGap, {"robnet_free_search": sweep("robnet_free_search", fsp_rows(1.0, deep=6))})
    assert j.verdict == CANNOT_JUDGE
    assert "last 6" in j.reason
