"""Guo et al. (CVPR'20), "When NAS Meets Robustness: In Search of Robust Architectures against
Adversarial Attacks": the premise of the one-shot search that a 3-epoch finetune from the supernet ranks
architectures like full training (supplement Sec. 6), the main paper's two cell-based findings (denser
cells are more robust; under a small computational budget, convolutions on direct edges help more) and
the FSP distance of deeper cells against the clean-minus-adversarial gap in the cell-free setting
(supplement Sec. 5, Fig. 1), over the sweeps that reproduce them (robnet_sample: unfiltered sampled
codes, finetuned; robnet_scratch: the same codes from scratch; robnet_free_search).

The main paper's text is not among the papers here: its two cell-based findings are stated as Huang et
al. (Sec. 2) summarise them: "1) densely connected cells result in improved robustness; and 2) under
certain computational budget, adding convolution operations to direct connection edge is effective"."""

from __future__ import annotations

import re

import pandas as pd

from tune_robust.analysis.claims._base import (
    Claim,
    ClaimData,
    Finding,
    MissingData,
    by_interval,
    register_claim,
    with_note,
)
from tune_robust.analysis.stats import correlation, within_groups_correlation
from tune_robust.models.robnet_codes import arch_stats, parse_code

PAPER = "Guo et al. (CVPR'20)"
ROBUST = "best_robust_acc"
CLEAN = "best_clean_acc"
SAMPLE = "robnet_sample"
SCRATCH = "robnet_scratch"
FREE = "robnet_free_search"
CODE = "model.code"
BUDGET = "arch_sep_convs"
DENSITY = "arch_density"
DIRECT = "arch_direct_conv_portion"
# Fewest architectures a correlation of a claim here is computed over.
MIN_CODES = 6


def per_code(trials: pd.DataFrame) -> pd.Series:
    """Robust accuracy per ``model.code`` (the mean where a code has several finished trials)."""
    return trials.groupby(trials[CODE].astype(str))[ROBUST].mean()


def code_budget(code: str) -> float:
    """Separable convs per cell of a RobNet code (its computational budget)."""
    return arch_stats(parse_code(code))[BUDGET]


@register_claim("robnet_finetune_predicts_scratch")
class FinetunePredictsScratch(Claim):
    paper = PAPER
    where = "supplement Sec. 6 (the premise of the per-budget selection)"
    statement = (
        "Within a computational budget, the ranking of architectures by robust accuracy after a 3-epoch "
        "PGD-AT finetune from the supernet predicts their ranking after full adversarial training from "
        "scratch."
    )
    sweeps = (SAMPLE, SCRATCH)
    columns = {SAMPLE: (CODE, ROBUST), SCRATCH: (CODE, ROBUST)}
    thresholds = (
        "codes in both sweeps (mean per code), budget = separable convs per cell of the code, budgets with "
        "one code dropped; each sweep's robust acc minus its budget's mean; holds: 95% bootstrap interval "
        "of Kendall tau(finetune, scratch) of those centred accuracies above 0 and p < 0.05 (codes permuted "
        "within budgets); contradicted: below 0 and p < 0.05"
    )
    figure = "Top configs table (robnet_sample, robnet_scratch)"
    complete = True
    min_trials = MIN_CODES
    learned = {SAMPLE: ROBUST, SCRATCH: ROBUST}

    def test(self, data: ClaimData) -> Finding:
        from scipy import stats

        both = pd.concat(
            [
                per_code(data.trials(SAMPLE)).rename("finetune"),
                per_code(data.trials(SCRATCH)).rename("scratch"),
            ],
            axis=1,
            join="inner",
        ).dropna()
        budgets = pd.Series([code_budget(c) for c in both.index], index=both.index)
        shared = budgets.map(budgets.value_counts()) >= 2
        both, budgets = both[shared], budgets[shared]
        if len(both) < MIN_CODES:
            raise MissingData(
                f"{len(both)} codes of {SAMPLE} and {SCRATCH} are finished in both with another code of "
                f"their budget; the claim needs {MIN_CODES}"
            )
        r = within_groups_correlation(both["finetune"], both["scratch"], budgets, "kendall")
        pooled = float(stats.kendalltau(both["finetune"], both["scratch"]).statistic)
        finding = by_interval("Kendall tau(finetune, scratch robust acc), within budgets", r, expect="above")
        return with_note(
            finding,
            f"{budgets.nunique()} budget(s); uncentred tau over all {len(both)} codes {pooled:.3g}",
        )


def spearman_note(trials: pd.DataFrame, x: str, label: str) -> str:
    """``label`` and Spearman rho(``x``, robust acc) over ``trials`` ("n/a" where it is undefined)."""
    if len(trials) < 3 or trials[x].nunique() < 2 or trials[ROBUST].nunique() < 2:
        return f"{label}: rho n/a (n = {len(trials)})"
    from scipy import stats

    rho = float(stats.spearmanr(trials[x], trials[ROBUST]).statistic)
    return f"{label}: rho {rho:.3g} (n = {len(trials)})"


@register_claim("robnet_density")
class Density(Claim):
    paper = PAPER
    where = "main paper, finding 1 (as Huang et al. Sec. 2 cite it); the density filter of supp. Sec. 6"
    statement = (
        "Densely connected cells are more robust: among sampled cell-based architectures of the same "
        "computational budget, robust accuracy after the finetune rises with architecture density D "
        "(ones over the bit slots of a cell's code)."
    )
    sweeps = (SAMPLE,)
    columns = {SAMPLE: (DENSITY, BUDGET, ROBUST)}
    thresholds = (
        "D and robust acc each minus its budget's mean (D counts the conv bits, so the budget alone would "
        "correlate them); holds: 95% interval of Spearman rho of the centred values above 0 and p < 0.05 "
        "(codes permuted within budgets); contradicted: below 0 and p < 0.05"
    )
    figure = "density_vs_robust.png"
    complete = True
    min_trials = MIN_CODES
    learned = {SAMPLE: ROBUST}

    def test(self, data: ClaimData) -> Finding:
        t = data.trials(SAMPLE)
        r = within_groups_correlation(t[DENSITY], t[ROBUST], t[BUDGET], "spearman")
        finding = by_interval("Spearman rho(density, robust acc), within budgets", r, expect="above")
        within = ", ".join(spearman_note(g, DENSITY, f"{b:g} convs") for b, g in t.groupby(BUDGET))
        return with_note(finding, f"per budget: {within}")


@register_claim("robnet_small_budget_direct_convs")
class SmallBudgetDirectConvs(Claim):
    paper = PAPER
    where = "main paper, finding 2 (as Huang et al. Sec. 2 cite it); the direct-conv filter of supp. Sec. 6"
    statement = (
        "Under a small computational budget, putting the convolutions on direct edges improves robustness: "
        "among the sampled, finetuned codes of the smallest budget, robust accuracy rises with the portion "
        "of the 4 direct edges that carry a conv."
    )
    sweeps = (SAMPLE,)
    columns = {SAMPLE: (BUDGET, DIRECT, ROBUST)}
    thresholds = (
        "smallest budget = the fewest separable convs per cell among the sampled codes; holds: 95% "
        "interval of Spearman rho(direct-conv portion, robust acc) over that budget's codes above 0 and p < "
        "0.05; contradicted: below 0 and p < 0.05 (the largest budget's rho, where the paper finds the "
        "effect weaker, is reported with it)"
    )
    figure = "budget_direct.png"
    complete = True
    # Six codes in the smallest budget and at least one other budget.
    min_trials = 2 * MIN_CODES
    learned = {SAMPLE: ROBUST}

    def test(self, data: ClaimData) -> Finding:
        t = data.trials(SAMPLE)
        budgets = sorted(t[BUDGET].dropna().unique())
        if len(budgets) < 2:
            raise MissingData(f"{SAMPLE} needs codes of at least 2 budgets; it has {len(budgets)}")
        small, large = t[t[BUDGET] == budgets[0]], t[t[BUDGET] == budgets[-1]]
        if len(small) < MIN_CODES or small[DIRECT].nunique() < 2:
            raise MissingData(
                f"the smallest budget ({budgets[0]:g} convs) needs {MIN_CODES} finished codes with at least "
                f"2 direct-conv portions; it has {len(small)} with {small[DIRECT].nunique()}"
            )
        r = correlation(small[DIRECT], small[ROBUST], "spearman")
        finding = by_interval(
            f"Spearman rho(direct-conv portion, robust acc) at {budgets[0]:g} convs", r, expect="above"
        )
        return with_note(finding, spearman_note(large, DIRECT, f"largest budget ({budgets[-1]:g} convs)"))


def fsp_cells(trials: pd.DataFrame) -> list[str]:
    """The ``fsp_cell_<i>`` columns with a value in some row, by cell index."""
    cols = [c for c in trials if re.fullmatch(r"fsp_cell_\d+", c) and trials[c].notna().any()]
    return sorted(cols, key=lambda c: int(c.rsplit("_", 1)[1]))


def deep_cells(trials: pd.DataFrame) -> int:
    """How many of the last cells the screen averaged (``screen.fsp_cells``, one value per sweep)."""
    values = pd.to_numeric(trials["screen.fsp_cells"], errors="coerce").dropna().unique()
    if len(values) != 1:
        raise MissingData(f"{FREE} needs one value of screen.fsp_cells; it has {sorted(values)}")
    return int(values[0])


@register_claim("robnet_fsp_gap")
class FspGap(Claim):
    paper = PAPER
    where = "supplement Sec. 5, Fig. 1"
    statement = (
        "In the cell-free setting, the FSP-matrix distance (clean vs adversarial inputs, inherited "
        "weights) of the deeper cells correlates positively with the gap between clean and adversarial "
        "accuracy after the finetune."
    )
    sweeps = (FREE,)
    columns = {FREE: (CLEAN, ROBUST, "screen.fsp_cells")}
    thresholds = (
        "deeper cells = the last screen.fsp_cells cells (the screen's own average); over the finetuned "
        "codes, holds: 95% interval of Spearman rho(mean FSP distance of those cells, clean acc - robust "
        "acc) above 0 and p < 0.05; contradicted: below 0 and p < 0.05"
    )
    figure = "fsp_vs_gap.png"
    min_trials = MIN_CODES
    learned = {FREE: ROBUST}

    def test(self, data: ClaimData) -> Finding:
        t = data.trials(FREE)
        cells, k = fsp_cells(t), deep_cells(t)
        if len(cells) < k:
            raise MissingData(
                f"{FREE} has FSP distances of {len(cells)} cells; the claim averages the last {k}"
            )
        deep = t[cells[-k:]].to_numpy(float).mean(axis=1)
        gap = (t[CLEAN] - t[ROBUST]).to_numpy(float)
        r = correlation(deep, gap, "spearman")
        finding = by_interval(f"Spearman rho(FSP distance of the last {k} cells, clean - robust)", r)
        return with_note(finding, f"cells {cells[-k].rsplit('_', 1)[1]}-{cells[-1].rsplit('_', 1)[1]}")
