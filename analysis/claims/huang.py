"""Huang et al. (NeurIPS'21), "Exploring Architectural Ingredients of Adversarially Robust Deep Neural
Networks": the depth grid (Sec. 4.1, Figs. 1b and 2), the width study (Sec. 4.2, Fig. 3), the Lipschitz
constant (Sec. 4.4, Fig. 4) and the -R reconfiguration (Sec. 5, Table 2), each over the sweep that
reproduces it (wrn_depth_grid, wrn_width_grid, arch_reconfig)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tune_robust.analysis.claims._base import (
    ALPHA,
    CONTRADICTED,
    HOLDS,
    INCONCLUSIVE,
    Claim,
    ClaimData,
    Finding,
    MissingData,
    by_interval,
    register_claim,
)
from tune_robust.analysis.stats import correlation, mean_difference

PAPER = "Huang et al. (NeurIPS'21)"
# The papers report PGD-20 on the test set (the suite's test_pgd20_acc at every fidelity).
ROBUST = "test_pgd20_acc"
GRID = "wrn_depth_grid"


def stages(trials: pd.DataFrame, key: str) -> pd.DataFrame:
    """The per-stage values of ``key`` ("5-5-1" or a tuple) as float columns 0, 1, 2."""
    values = trials[key].astype(str).str.strip("()[] ").str.replace(", ", "-").str.replace(",", "-")
    return values.str.split("-", expand=True).astype(float)


@register_claim("huang_params_not_robustness")
class ParamsNotRobustness(Claim):
    paper = PAPER
    where = "Fig. 1b"
    statement = (
        "More parameters do not by themselves give more robustness: across the depth grid, parameter "
        "count and robust accuracy are at most weakly positively related."
    )
    sweeps = (GRID,)
    columns = {GRID: ("params", ROBUST)}
    thresholds = "holds: 95% interval of Spearman rho(params, robust acc) below 0.3; contradicted: above 0.3"
    figure = "robustness_vs_params.png"
    complete = True
    min_trials = 25
    learned = {GRID: ROBUST}

    def test(self, data: ClaimData) -> Finding:
        t = data.trials(GRID)
        r = correlation(t["params"], t[ROBUST], "spearman")
        return by_interval("Spearman rho(params, robust acc)", r, expect="below", bound=0.3)


@register_claim("huang_last_stage_depth")
class LastStageDepth(Claim):
    paper = PAPER
    where = "Fig. 2"
    statement = "Reducing the last stage's depth improves robustness: robust accuracy falls as D3 grows."
    sweeps = (GRID,)
    columns = {GRID: ("model.depths", ROBUST)}
    thresholds = (
        "holds: 95% interval of Spearman rho(D3, robust acc) below 0 and p < 0.05; contradicted: above 0 "
        "and p < 0.05"
    )
    figure = "stage_effect_depths.png"
    complete = True
    min_trials = 25
    learned = {GRID: ROBUST}

    def test(self, data: ClaimData) -> Finding:
        t = data.trials(GRID)
        r = correlation(stages(t, "model.depths")[2], t[ROBUST], "spearman")
        return by_interval("Spearman rho(D3, robust acc)", r, expect="below")


@register_claim("huang_top5_last_stage")
class TopFiveLastStage(Claim):
    paper = PAPER
    where = "Sec. 4.1, Fig. 2"
    statement = "The five most robust depth configurations all have a shallow last stage, D3 in {1, 3}."
    sweeps = (GRID,)
    columns = {GRID: ("model.depths", ROBUST)}
    thresholds = (
        "k = top-5 configs with D3 in {1, 3}; p = P(k or more | top 5 drawn at random from the grid) "
        "(hypergeometric); holds: p < 0.05; contradicted: k at most its expectation under chance"
    )
    figure = "stage_effect_depths.png"
    complete = True
    min_trials = 25
    learned = {GRID: ROBUST}

    def test(self, data: ClaimData) -> Finding:
        from scipy import stats

        t = data.trials(GRID)
        shallow = stages(t, "model.depths")[2].isin((1.0, 3.0))
        # Every config tied with the fifth is in (test-set accuracies tie often); the null draws as many.
        top = t[ROBUST].nlargest(5, keep="all").index
        k, m, n, hits = int(shallow[top].sum()), len(top), len(t), int(shallow.sum())
        p = float(stats.hypergeom.sf(k - 1, n, hits, m))
        expected = m * hits / n
        best = f"{k} of the top {m}" + (" (ties at the fifth included)" if m > 5 else "")
        if p < 0.05:
            verdict, reason = HOLDS, f"{best} have D3 in {{1, 3}} (chance: {expected:.1f}), p {p:.2g}"
        elif k <= expected:
            verdict, reason = CONTRADICTED, f"only {best} have D3 in {{1, 3}}; chance gives {expected:.1f}"
        else:
            verdict, reason = INCONCLUSIVE, f"{best} have D3 in {{1, 3}} (chance {expected:.1f}), p {p:.2g}"
        return Finding("top-5 configs with D3 in {1, 3}", k, p=p, n=n, verdict=verdict, reason=reason)


def largest_equal_size_group(trials: pd.DataFrame, tolerance: float = 0.05) -> pd.DataFrame:
    """The largest set of trials whose parameter counts lie within ``tolerance`` (relative) of the
    group's smallest: the "equal parameter count" configurations."""
    t = trials.sort_values("params")
    params = t["params"].to_numpy(float)
    best = (0, 0)
    for i, p in enumerate(params):
        j = int(np.searchsorted(params, p * (1 + tolerance), side="right"))
        if j - i > best[1] - best[0]:
            best = (i, j)
    return t.iloc[best[0] : best[1]]


# The spread Huang et al. report among configurations of about 20M parameters (Sec. 4.1).
PAPER_SPREAD = 0.06


def null_ranges(acc: np.ndarray, examples: int, seed: int = 0, draws: int = 10000) -> np.ndarray:
    """Ranges of the accuracies if every config had the pooled accuracy and only the test set's binomial
    noise separated them (independent draws: a conservative null)."""
    rng = np.random.default_rng(seed)
    sims = rng.binomial(examples, float(np.mean(acc)), size=(draws, len(acc))) / examples
    return np.ptp(sims, axis=1)


def range_p(acc: np.ndarray, examples: int, seed: int = 0, draws: int = 10000) -> float:
    """P(range >= the observed one) under :func:`null_ranges`."""
    return float((null_ranges(acc, examples, seed, draws) >= float(np.ptp(acc)) - 1e-12).mean())


@register_claim("huang_equal_params_spread")
class EqualParamsSpread(Claim):
    paper = PAPER
    where = "Sec. 4.1, Fig. 1b"
    statement = (
        "At equal parameter counts, depth configurations differ in robustness (about 6 points at 20M "
        "parameters in the paper) by more than test-set noise (one seed per config: training noise is "
        "not separated from the configurations' effect)."
    )
    sweeps = (GRID,)
    columns = {GRID: ("params", ROBUST, "test_examples")}
    thresholds = (
        "the largest group of configs within 5% in parameters; p = P(range >= observed | one accuracy for "
        "all, binomial test noise); holds: p < 0.05; contradicted: p >= 0.5 where the test set is large "
        "enough that noise alone spans less than the paper's 6 points (95th percentile of the null range "
        "< 0.06); otherwise inconclusive"
    )
    figure = "robustness_vs_params.png"
    complete = True
    min_trials = 25
    learned = {GRID: ROBUST}

    def test(self, data: ClaimData) -> Finding:
        group = largest_equal_size_group(data.trials(GRID))
        if len(group) < 3:
            raise MissingData(f"no 3 configs of {GRID} lie within 5% of each other in parameters")
        acc = group[ROBUST].to_numpy(float)
        examples = int(group["test_examples"].min())
        spread = float(np.ptp(acc))
        ranges = null_ranges(acc, examples)
        p = float((ranges >= spread - 1e-12).mean())
        noise = float(np.quantile(ranges, 0.95))
        size = f"{len(group)} configs at {group['params'].min() / 1e6:.3g}-{group['params'].max() / 1e6:.3g}M"
        if p < 0.05:
            verdict, reason = HOLDS, f"{size} span {spread:.3f} in robust accuracy, p {p:.2g}"
        elif p >= 0.5 and noise < PAPER_SPREAD:
            verdict, reason = (
                CONTRADICTED,
                f"{size} span only {spread:.3f}: test noise alone gives that (p {p:.2g}), and a "
                f"{PAPER_SPREAD:.2f} spread would have shown (noise's 95th percentile {noise:.3f})",
            )
        elif noise >= PAPER_SPREAD:
            verdict, reason = (
                INCONCLUSIVE,
                f"{size} span {spread:.3f}, p {p:.2g}; too little power: on {examples} test images noise "
                f"alone spans up to {noise:.3f} (95th percentile), as much as the paper's {PAPER_SPREAD:.2f}",
            )
        else:
            verdict, reason = INCONCLUSIVE, f"{size} span {spread:.3f}, p {p:.2g}"
        return Finding(
            "robust-acc range at equal params", spread, p=p, n=len(group), verdict=verdict, reason=reason
        )


@register_claim("huang_lipschitz_depth")
class LipschitzDepth(Claim):
    paper = PAPER
    where = "Sec. 4.5, Fig. 4a"
    statement = (
        "Reducing the last stage's depth lowers the network's empirical Lipschitz constant (logits, "
        "PGD-20 neighbours): it rises with D3."
    )
    sweeps = (GRID,)
    columns = {GRID: ("model.depths", "lipschitz_logits")}
    thresholds = (
        "holds: 95% interval of Spearman rho(D3, empirical Lipschitz constant of the logits) above 0 and "
        "p < 0.05; contradicted: below 0 and p < 0.05 (the paper finds it for the last stage, not for "
        "the first two: Sec. 4.5)"
    )
    figure = "lipschitz table (lipschitz_logits)"
    complete = True
    min_trials = 25
    learned = {GRID: ROBUST}

    def test(self, data: ClaimData) -> Finding:
        t = data.trials(GRID)
        r = correlation(stages(t, "model.depths")[2], t["lipschitz_logits"], "spearman")
        return by_interval("Spearman rho(D3, Lipschitz)", r, expect="above")


@register_claim("huang_last_stage_width")
class LastStageWidth(Claim):
    paper = PAPER
    where = "Sec. 4.2, Fig. 3c"
    statement = "Reducing the last stage's width (the others at 10) improves robustness."
    sweeps = ("wrn_width_grid",)
    columns = {"wrn_width_grid": ("model.widths", ROBUST)}
    thresholds = (
        "holds: 95% interval of Spearman rho(W3, mean robust acc at that W3) over the rows with the other "
        "stages at their widest below 0 and p < 0.05 (exact permutation); contradicted: above 0 and p < 0.05"
    )
    figure = "stage_effect_widths.png"
    min_trials = 5
    learned = {"wrn_width_grid": ROBUST}

    def test(self, data: ClaimData) -> Finding:
        t = data.trials("wrn_width_grid")
        w = stages(t, "model.widths")
        rows = (w[0] == w[0].max()) & (w[1] == w[1].max())
        if int(rows.sum()) < 3 or w.loc[rows, 2].nunique() < 3:
            raise MissingData(
                "wrn_width_grid needs at least 3 widths of the last stage with the others at their widest"
            )
        # The grid repeats w10-10-10 once per stage: one point per width.
        per_width = t.loc[rows, ROBUST].groupby(w.loc[rows, 2]).mean()
        r = correlation(per_width.index.to_numpy(float), per_width.to_numpy(float), "spearman")
        return by_interval("Spearman rho(W3, robust acc)", r, expect="below")


@register_claim("huang_reconfig_gain")
class ReconfigGain(Claim):
    paper = PAPER
    where = "Sec. 5, Table 2"
    statement = "The -R reconfiguration of a network is more robust than the network it reconfigures."
    sweeps = ("arch_reconfig",)
    seeded = ("arch_reconfig",)
    columns = {"arch_reconfig": ("eval.label", ROBUST)}
    thresholds = (
        "gain = robust acc of -R minus the original, paired by family and seed; p = sign-flip permutation "
        "test over those pairs (no gain anywhere); holds: p < 0.05 and every family's mean gain above 0; "
        "contradicted: p < 0.05 and every family's mean gain below 0; families that disagree: inconclusive"
    )
    figure = "Top configs table (arch_reconfig)"
    min_trials = 2
    learned = {"arch_reconfig": ROBUST}

    def test(self, data: ClaimData) -> Finding:
        t = data.trials("arch_reconfig").copy()
        t["family"] = t["eval.label"].astype(str).str.removesuffix("-R")
        t["reconfigured"] = t["eval.label"].astype(str).str.endswith("-R")
        seed = "train.seed" if "train.seed" in t else None
        keys = ["family", *([seed] if seed else [])]
        wide = t.pivot_table(index=keys, columns="reconfigured", values=ROBUST, aggfunc="mean")
        if True not in wide or False not in wide:
            raise MissingData("arch_reconfig needs finished pairs of a network and its -R version")
        wide = wide.dropna()
        if len(wide) < 2:
            raise MissingData(f"arch_reconfig has {len(wide)} finished pair(s); the claim needs 2")
        r = mean_difference(wide[True], wide[False], paired=True)
        # Seeds of one family are not independent evidence for the others: every family must agree.
        per_family = (wide[True] - wide[False]).groupby(level="family").mean()
        families = ", ".join(f"{f} {g:+.3f}" for f, g in per_family.items())
        value, p = r["value"], r["p"]
        stat = "mean robust-acc gain of -R"
        if p < ALPHA and (per_family > 0).all():
            verdict, reason = HOLDS, f"every family gains ({families}), p {p:.2g}"
        elif p < ALPHA and (per_family < 0).all():
            verdict, reason = CONTRADICTED, f"every family loses ({families}), p {p:.2g}"
        elif p < ALPHA:
            verdict, reason = INCONCLUSIVE, f"the families disagree ({families}), p {p:.2g}"
        else:
            verdict, reason = INCONCLUSIVE, f"p {p:.2g} >= {ALPHA:g} over {r['n']} pairs ({families})"
        return Finding(stat, value, r["low"], r["high"], p, int(r["n"]), verdict, reason)
