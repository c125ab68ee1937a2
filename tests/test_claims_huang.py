"""Huang et al.'s claims judged over small hand-made sweep tables: each verdict (holds, contradicted and,
where the claim has one, inconclusive or cannot judge) with its statistic and p value recomputed here by
scipy, numpy, exact enumeration or a closed form, and judge's checks for an unfinished grid, failed
trials, a sparse column, untrained networks and a missing sweep.

The claims read test PGD-20 accuracy (test_pgd20_acc). Every table here also carries best_robust_acc
(finished trials need it) as the mirror image of test_pgd20_acc, so a claim that read it instead would
reach the opposite verdict."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tune_robust.analysis.claims import (
    CANNOT_JUDGE,
    CLAIMS,
    CONTRADICTED,
    HOLDS,
    INCONCLUSIVE,
    Finding,
    Judgement,
    SweepData,
    judge,
)
from tune_robust.analysis.load import SweepResults
from tune_robust.search_spaces.wrn_width_grid import one_stage_at_a_time

GRID = "wrn_depth_grid"
WIDTH = "wrn_width_grid"
RECONFIG = "arch_reconfig"
DEPTHS = (1, 3, 5, 7, 9)
Depths = tuple[int, int, int]
CONFIGS: list[Depths] = [(a, b, c) for a, b, c in itertools.product(DEPTHS, repeat=3)]
EXAMPLES = 359  # the digits test split of the mini fidelity
ROBUST = "test_pgd20_acc"
# best_robust_acc = MIRROR - test_pgd20_acc: it orders the trials the other way round.
MIRROR = 1.4
ALPHA = 0.05
DEPTH_CLAIMS = (
    "huang_params_not_robustness",
    "huang_last_stage_depth",
    "huang_top5_last_stage",
    "huang_equal_params_spread",
    "huang_lipschitz_depth",
)
ALL_CLAIMS = (*DEPTH_CLAIMS, "huang_last_stage_width", "huang_reconfig_gain")


def stage_string(values: Sequence[float]) -> str:
    """A per-stage config value as trials.parquet stores it: "1-3-5", widths "10-10-4" and "0.5-0.5-0.5"."""
    return "-".join(f"{x:g}" if isinstance(x, float) else str(x) for x in values)


def params_of(d: Depths) -> int:
    """A WRN-like parameter count: each stage's blocks cost four times the previous stage's."""
    return 20_000 + 1_160 * d[0] + 4_640 * d[1] + 18_560 * d[2]


def noise(n: int, scale: float = 0.004, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, scale, n)


def with_robust(t: pd.DataFrame, acc: np.ndarray) -> pd.DataFrame:
    """``t`` with test_pgd20_acc ``acc`` and best_robust_acc its mirror image."""
    t[ROBUST] = acc
    t["best_robust_acc"] = MIRROR - acc
    return t


def trial_rows(n: int, sweep: str) -> pd.DataFrame:
    """The columns every finished trial of a mini-fidelity digits sweep has."""
    return pd.DataFrame(
        {
            "sweep": [sweep] * n,
            "fidelity": ["mini"] * n,
            "status": ["TERMINATED"] * n,
            "stopped_by_scheduler": [False] * n,
            "data.dataset": ["digits"] * n,
            "test_examples": [EXAMPLES] * n,
        }
    )


def depth_grid(
    robust: Callable[[Depths], float],
    lipschitz: Callable[[Depths], float] = lambda d: 50.0,
    configs: Sequence[Depths] = CONFIGS,
) -> pd.DataFrame:
    """The depth grid's trials (model.depths "1-3-5", widths 0.5) with test PGD-20 accuracy ``robust(d)``
    plus a little noise, so that no two trials tie."""
    t = trial_rows(len(configs), GRID)
    t["model.depths"] = [stage_string(d) for d in configs]
    t["model.widths"] = stage_string((0.5, 0.5, 0.5))
    t["params"] = [params_of(d) for d in configs]
    t["lipschitz_logits"] = np.array([lipschitz(d) for d in configs]) + noise(len(configs), 0.5, 1)
    return with_robust(t, np.array([robust(d) for d in configs]) + noise(len(configs)))


def width_grid(robust: Callable[[tuple[float, float, float]], float], fmt: str = "writer") -> pd.DataFrame:
    """The width sweep's 15 trials (three of them w10-10-10) with test PGD-20 accuracy ``robust(w)`` plus
    noise; ``fmt`` "writer" stores widths as the writer does ("10-10-4"), "float" as "10.0-10.0-4.0"."""
    configs = one_stage_at_a_time()
    t = trial_rows(len(configs), WIDTH)
    t["model.depths"] = "5-5-5"
    t["model.widths"] = [stage_string(w) if fmt == "writer" else "-".join(map(str, w)) for w in configs]
    return with_robust(t, np.array([robust(w) for w in configs]) + noise(len(configs), 0.002))


FAMILIES = ("vgg11", "densenet121", "darts", "wrn")


def seed_shift(seed: int, seeds: int) -> float:
    """Seeds shift every network's robust accuracy by far more than the -R gain (0.1 per seed)."""
    return 0.1 * (seed - (seeds - 1) / 2)


def reconfig_table(
    gain: float | Mapping[str, float],
    families: Sequence[str] = FAMILIES,
    seeds: int = 3,
    reconfigured: bool = True,
) -> pd.DataFrame:
    """arch_reconfig trials: each family and its -R version (when ``reconfigured``) at ``seeds`` seeds;
    the -R version's test PGD-20 accuracy is the original's plus ``gain`` (one for all, or per family)
    plus noise."""
    rows = []
    for i, family in enumerate(families):
        g = gain if isinstance(gain, float) else gain[family]
        for seed in range(seeds):
            base = 0.45 + 0.02 * i + seed_shift(seed, seeds)
            rows.append({"eval.label": family, "train.seed": seed, ROBUST: base})
            if reconfigured:
                rows.append({"eval.label": f"{family}-R", "train.seed": seed, ROBUST: base + g})
    t = pd.DataFrame(rows)
    acc = t.pop(ROBUST).to_numpy() + noise(len(t), 0.003)
    return with_robust(pd.concat([trial_rows(len(t), RECONFIG), t], axis=1), acc)


def sweep(name: str, trials: pd.DataFrame, planned: int | None = None) -> SweepData:
    return SweepData(name, Path("x"), SweepResults(trials, pd.DataFrame()), planned)


def judged(claim: str, trials: pd.DataFrame, planned: int | None = None) -> Judgement:
    cls = CLAIMS.get(claim)
    (name,) = cls.sweeps
    return judge(cls, {name: sweep(name, trials, planned)})


def finding_of(claim: str, trials: pd.DataFrame, planned: int | None = None) -> Finding:
    j = judged(claim, trials, planned)
    assert j.finding is not None, j.reason
    assert j.verdict == j.finding.verdict
    return j.finding


def d3(t: pd.DataFrame) -> np.ndarray:
    return np.array([int(s.split("-")[2]) for s in t["model.depths"]])


def assert_interval(f: Finding, value: float, n: int) -> None:
    assert f.value == pytest.approx(value, abs=1e-12)
    # A percentile interval need not contain the estimate (near rho = 1 it lies just below it).
    assert f.low <= f.high
    assert f.n == n


# Robust accuracy that falls with the last stage's depth (and rises a little with the first's).
def shallow_last_stage(d: Depths) -> float:
    return 0.80 + 0.004 * d[0] - 0.012 * d[2]


def deep_last_stage(d: Depths) -> float:
    return 0.60 + 0.012 * d[2]


def two_sided(null: np.ndarray, observed: float) -> float:
    """Two-sided p of ``observed`` against an enumerated null distribution: twice the smaller tail."""
    tol = 1e-9 * max(abs(observed), 1e-12)
    less, greater = float(np.mean(null <= observed + tol)), float(np.mean(null >= observed - tol))
    return min(1.0, 2 * min(less, greater))


def spearman_exact_p(x: np.ndarray, y: np.ndarray) -> float:
    """Permutation p of Spearman's rho over every pairing of ``x`` with ``y`` (no ties: the closed form
    rho = 1 - 6 sum d^2 / (n (n^2 - 1)))."""
    n = len(x)
    rx, ry = stats.rankdata(x), stats.rankdata(y)

    def rho(r: Sequence[float]) -> float:
        return 1 - 6 * float(np.sum((np.asarray(r) - ry) ** 2)) / (n * (n * n - 1))

    null = np.array([rho(r) for r in itertools.permutations(rx)])
    return two_sided(null, rho(rx))


def sign_flip_p(d: np.ndarray) -> float:
    """Exact sign-flip permutation p of mean(d) = 0 over all 2^n sign vectors."""
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
    return two_sided(signs @ d / len(d), float(np.mean(d)))


def assert_spearman(f: Finding, x: np.ndarray, y: pd.Series, n: int) -> None:
    """The finding's rho and p are scipy's Spearman rho and (n >= 20) its asymptotic p."""
    r = stats.spearmanr(x, y)
    assert_interval(f, r.statistic, n)
    assert f.p == pytest.approx(r.pvalue, rel=1e-9, abs=1e-300)


# --- huang_params_not_robustness ---


def test_params_not_robustness_holds_when_robustness_falls_with_parameters() -> None:
    t = depth_grid(shallow_last_stage)
    f = finding_of("huang_params_not_robustness", t, planned=125)
    assert_spearman(f, t["params"].to_numpy(), t[ROBUST], 125)
    assert f.value < -0.5
    assert f.verdict == HOLDS and f.high < 0.3


def test_params_not_robustness_is_contradicted_when_robustness_rises_with_parameters() -> None:
    t = depth_grid(lambda d: 0.40 + 0.4 * params_of(d) / params_of((9, 9, 9)))
    f = finding_of("huang_params_not_robustness", t, planned=125)
    assert_spearman(f, t["params"].to_numpy(), t[ROBUST], 125)
    assert f.value > 0.9
    assert f.verdict == CONTRADICTED and f.low > 0.3


# --- huang_last_stage_depth ---


def test_last_stage_depth_holds_when_test_pgd20_accuracy_falls_as_d3_grows() -> None:
    t = depth_grid(shallow_last_stage)
    f = finding_of("huang_last_stage_depth", t, planned=125)
    assert_spearman(f, d3(t), t[ROBUST], 125)
    assert f.value < -0.8 and f.p < ALPHA
    assert f.verdict == HOLDS and f.high < 0
    # best_robust_acc of the same trials rises with D3: the claim did not read it.
    assert stats.spearmanr(d3(t), t["best_robust_acc"]).statistic > 0.8


def test_last_stage_depth_is_contradicted_when_robustness_rises_with_d3() -> None:
    t = depth_grid(deep_last_stage)
    f = finding_of("huang_last_stage_depth", t, planned=125)
    assert_spearman(f, d3(t), t[ROBUST], 125)
    assert f.value > 0.8 and f.p < ALPHA
    assert f.verdict == CONTRADICTED and f.low > 0


def test_last_stage_depth_is_inconclusive_when_robustness_depends_only_on_d1() -> None:
    t = depth_grid(lambda d: 0.60 + 0.02 * d[0])
    f = finding_of("huang_last_stage_depth", t, planned=125)
    assert_spearman(f, d3(t), t[ROBUST], 125)
    assert f.p >= ALPHA
    assert f.verdict == INCONCLUSIVE


# --- huang_top5_last_stage ---


def top5_p(k: int, n: int = 125, hits: int = 50) -> float:
    """P(at least k of 5 configs drawn without replacement have D3 in {1, 3}), by counting."""
    return sum(math.comb(hits, j) * math.comb(n - hits, 5 - j) for j in range(k, 6)) / math.comb(n, 5)


def test_top5_last_stage_holds_when_the_five_best_have_d3_one() -> None:
    t = depth_grid(shallow_last_stage)
    assert set(d3(t)[np.argsort(-t[ROBUST].to_numpy())[:5]]) == {1}
    f = finding_of("huang_top5_last_stage", t, planned=125)
    assert (f.value, f.n) == (5, 125)
    assert f.p == pytest.approx(top5_p(5), rel=1e-9)
    assert f.verdict == HOLDS


def test_top5_last_stage_is_contradicted_when_the_five_best_have_d3_nine() -> None:
    t = depth_grid(deep_last_stage)
    assert set(d3(t)[np.argsort(-t[ROBUST].to_numpy())[:5]]) == {9}
    f = finding_of("huang_top5_last_stage", t, planned=125)
    assert f.value == 0
    assert f.p == pytest.approx(1.0)
    assert f.verdict == CONTRADICTED


def test_top5_last_stage_is_inconclusive_with_three_shallow_of_five() -> None:
    best = {(1, 1, 1): 0.95, (9, 9, 9): 0.94, (3, 3, 3): 0.93, (7, 7, 7): 0.92, (5, 5, 1): 0.91}
    t = depth_grid(lambda d: best.get(d, 0.6))
    f = finding_of("huang_top5_last_stage", t, planned=125)
    assert f.value == 3
    assert f.p == pytest.approx(top5_p(3), rel=1e-9)
    assert 0.05 < f.p < 0.5
    assert f.verdict == INCONCLUSIVE


# --- huang_equal_params_spread ---


def range_p_exact(counts: np.ndarray, examples: int = EXAMPLES) -> float:
    """P(max - min of len(counts) iid Binomial(examples, mean accuracy) >= the observed range), exactly:
    P(range <= w) = sum_m P(m <= X <= m + w)^k - P(m < X <= m + w)^k."""
    k, q, w = len(counts), float(np.mean(counts)) / examples, int(np.ptp(counts)) - 1
    m = np.arange(examples + 1)
    cdf = stats.binom(examples, q).cdf
    at_most = np.sum((cdf(m + w) - cdf(m - 1)) ** k - (cdf(m + w) - cdf(m)) ** k)
    return float(1.0 - at_most)


def equal_params_grid(counts: Sequence[int], examples: int = EXAMPLES) -> pd.DataFrame:
    """A depth grid whose parameter counts lie at least 10% apart, except ten configs planted at about
    500M (within 2%) whose test PGD-20 accuracies are ``counts`` / ``examples`` test examples."""
    t = depth_grid(shallow_last_stage)
    t["params"] = [round(1000 * 1.1**i) for i in range(len(t))]
    t["test_examples"] = examples
    planted = np.arange(0, 120, 12)
    t.loc[planted, "params"] = [500_000_000 + 1_000_000 * j for j in range(len(planted))]
    t.loc[planted, ROBUST] = np.asarray(counts) / examples
    # best_robust_acc of the planted configs spans nothing: a claim reading it would find no spread.
    t.loc[planted, "best_robust_acc"] = 0.5
    return t


@pytest.mark.parametrize(
    ("counts", "verdict"),
    [
        ([180, 189, 198, 207, 216, 224, 233, 242, 251, 260], HOLDS),
        ([195, 200, 205, 210, 212, 214, 216, 220, 225, 231], INCONCLUSIVE),
        # A range typical of noise, but on 359 images noise alone spans more than the paper's 6 points.
        ([200, 205, 208, 210, 212, 214, 216, 218, 221, 225], INCONCLUSIVE),
    ],
)
def test_equal_params_spread_compares_the_range_at_equal_params_with_binomial_test_noise(
    counts: list[int], verdict: str
) -> None:
    f = finding_of("huang_equal_params_spread", equal_params_grid(counts), planned=125)
    assert f.n == 10
    assert f.value == pytest.approx(np.ptp(counts) / EXAMPLES)
    # The claim's p is a 10,000-draw simulation of the exact value (its standard error <= 0.005).
    assert f.p == pytest.approx(range_p_exact(np.asarray(counts)), abs=0.02)
    assert f.verdict == verdict


def test_equal_params_spread_is_contradicted_only_where_the_test_set_could_show_the_papers_spread() -> None:
    # 10,000 test images (CIFAR-10's test set): noise spans about 2 points, a 6-point spread would show.
    counts = [6000, 6010, 6020, 6025, 6030, 6035, 6040, 6050, 6060, 6070]
    f = finding_of("huang_equal_params_spread", equal_params_grid(counts, 10_000), planned=125)
    assert f.value == pytest.approx(0.007)
    assert f.p == pytest.approx(range_p_exact(np.asarray(counts), 10_000), abs=0.02) and f.p >= 0.5
    assert f.verdict == CONTRADICTED
    small = finding_of("huang_equal_params_spread", equal_params_grid([c // 28 for c in counts]), planned=125)
    assert small.verdict == INCONCLUSIVE and "too little power" in small.reason


def test_equal_params_spread_cannot_judge_a_grid_without_three_configs_of_equal_size() -> None:
    t = depth_grid(shallow_last_stage)
    t["params"] = [round(1000 * 1.1**i) for i in range(len(t))]
    j = judged("huang_equal_params_spread", t, planned=125)
    assert j.verdict == CANNOT_JUDGE
    assert "no 3 configs" in j.reason


# --- huang_lipschitz_depth ---


def total_depth(t: pd.DataFrame) -> np.ndarray:
    return np.array([sum(int(x) for x in s.split("-")) for s in t["model.depths"]])


def test_lipschitz_depth_holds_when_the_lipschitz_constant_rises_with_d3_and_falls_with_total_depth() -> None:
    t = depth_grid(shallow_last_stage, lipschitz=lambda d: 80.0 + 4.0 * d[2] - 4.0 * (d[0] + d[1]))
    f = finding_of("huang_lipschitz_depth", t, planned=125)
    assert_spearman(f, d3(t), t["lipschitz_logits"], 125)
    assert f.value > 0.4 and f.p < ALPHA
    assert f.verdict == HOLDS and f.low > 0
    # Against total depth the same constants fall: the claim correlates with D3 alone.
    assert stats.spearmanr(total_depth(t), t["lipschitz_logits"]).statistic < -0.2


def test_lipschitz_depth_is_contradicted_when_the_lipschitz_constant_falls_with_d3() -> None:
    t = depth_grid(shallow_last_stage, lipschitz=lambda d: 80.0 - 4.0 * d[2] + 4.0 * (d[0] + d[1]))
    f = finding_of("huang_lipschitz_depth", t, planned=125)
    assert_spearman(f, d3(t), t["lipschitz_logits"], 125)
    assert f.value < -0.4 and f.p < ALPHA
    assert f.verdict == CONTRADICTED and f.high < 0


def test_lipschitz_depth_is_inconclusive_when_the_lipschitz_constant_depends_only_on_d1() -> None:
    t = depth_grid(shallow_last_stage, lipschitz=lambda d: 50.0 + 4.0 * d[0])
    f = finding_of("huang_lipschitz_depth", t, planned=125)
    assert_spearman(f, d3(t), t["lipschitz_logits"], 125)
    assert f.p >= ALPHA
    assert f.verdict == INCONCLUSIVE


def test_lipschitz_depth_cannot_judge_a_grid_where_few_trials_measured_the_lipschitz_constant() -> None:
    t = depth_grid(shallow_last_stage, lipschitz=lambda d: 20.0 + 3.0 * d[2])
    t.loc[t.index[20:], "lipschitz_logits"] = np.nan
    j = judged("huang_lipschitz_depth", t, planned=125)
    assert j.finding is None and j.verdict == CANNOT_JUDGE
    assert "fewer than 25 finished trials have a value of lipschitz_logits" in j.reason


# --- huang_last_stage_width ---


def last_stage_rows(t: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """W3 and test PGD-20 accuracy of the trials with W1 = W2 = 10 (w10-10-10 three times)."""
    w = [tuple(float(x) for x in s.split("-")) for s in t["model.widths"]]
    rows = np.array([a == 10.0 and b == 10.0 for a, b, _ in w])
    return np.array([c for _, _, c in w])[rows], t[ROBUST].to_numpy()[rows]


def per_width_means(t: pd.DataFrame) -> pd.Series:
    w3, acc = last_stage_rows(t)
    return pd.Series(acc).groupby(w3).mean()  # w10-10-10 is one point, not three


# A bootstrap resample of the five W3 points that holds a single width has no defined correlation.
NO_CORRELATION = "ignore::scipy.stats.ConstantInputWarning"


@pytest.mark.filterwarnings(NO_CORRELATION)
@pytest.mark.parametrize("fmt", ["writer", "float"])
def test_last_stage_width_holds_when_robustness_falls_as_w3_grows(fmt: str) -> None:
    t = width_grid(lambda w: 0.75 + 0.002 * w[0] - 0.01 * w[2], fmt)
    f = finding_of("huang_last_stage_width", t)
    assert sorted(last_stage_rows(t)[0]) == [2, 4, 6, 8, 10, 10, 10]
    means = per_width_means(t)
    assert_interval(f, stats.spearmanr(means.index, means.to_numpy()).statistic, 5)
    assert f.value == pytest.approx(-1.0)
    # Five widths: the permutation p is exact over the 120 pairings, 2/120 for a perfect order.
    assert f.p == pytest.approx(spearman_exact_p(means.index.to_numpy(), means.to_numpy()))
    assert f.p == pytest.approx(2 / 120)
    assert f.verdict == HOLDS and f.high < 0


@pytest.mark.filterwarnings(NO_CORRELATION)
def test_last_stage_width_is_contradicted_when_robustness_rises_with_w3() -> None:
    t = width_grid(lambda w: 0.55 + 0.01 * w[2])
    f = finding_of("huang_last_stage_width", t)
    means = per_width_means(t)
    assert_interval(f, stats.spearmanr(means.index, means.to_numpy()).statistic, 5)
    assert f.p == pytest.approx(spearman_exact_p(means.index.to_numpy(), means.to_numpy()))
    assert f.p < ALPHA
    assert f.verdict == CONTRADICTED and f.low > 0


@pytest.mark.filterwarnings(NO_CORRELATION)
def test_last_stage_width_is_not_held_by_five_widths_whose_order_breaks_once() -> None:
    # W3 = 2, 4, 6, 8, 10 at 0.72, 0.76, 0.74, 0.70, 0.68: rho = -0.7, p = 28/120 over the 120 pairings.
    level = {2.0: 0.72, 4.0: 0.76, 6.0: 0.74, 8.0: 0.70, 10.0: 0.68}
    t = width_grid(lambda w: level[w[2]] if w[0] == w[1] == 10.0 else 0.7)
    f = finding_of("huang_last_stage_width", t)
    means = per_width_means(t)
    assert f.value == pytest.approx(stats.spearmanr(means.index, means.to_numpy()).statistic)
    assert f.value == pytest.approx(-0.7)
    assert f.p == pytest.approx(spearman_exact_p(means.index.to_numpy(), means.to_numpy()))
    assert f.p == pytest.approx(28 / 120)
    assert f.verdict == INCONCLUSIVE


def test_last_stage_width_cannot_judge_without_three_last_stage_widths() -> None:
    t = width_grid(lambda w: 0.75 - 0.01 * w[2]).iloc[:10]  # only W1 and W2 varied
    j = judged("huang_last_stage_width", t)
    assert j.verdict == CANNOT_JUDGE
    assert "at least 3 widths of the last stage" in j.reason


def test_last_stage_width_cannot_judge_when_too_few_last_stage_widths_have_an_accuracy() -> None:
    t = width_grid(lambda w: 0.75 - 0.01 * w[2])
    w = [tuple(float(x) for x in s.split("-")) for s in t["model.widths"]]
    # Only w10-10-10 of the last-stage rows keeps its accuracy: one point is no correlation.
    t.loc[[a == b == 10.0 and c < 10.0 for a, b, c in w], ROBUST] = np.nan
    j = judged("huang_last_stage_width", t)
    assert j.finding is None and j.verdict == CANNOT_JUDGE
    assert j.reason.startswith("ValueError:") and "at least 3 pairs" in j.reason


# --- huang_reconfig_gain ---


def paired_gains(t: pd.DataFrame, families: Sequence[str] = FAMILIES) -> np.ndarray:
    """The -R minus original test PGD-20 accuracy per (family, seed), families in order."""
    acc = {(str(r["eval.label"]), int(r["train.seed"])): float(r[ROBUST]) for _, r in t.iterrows()}
    seeds = sorted({s for _, s in acc})
    return np.array([acc[f"{f}-R", s] - acc[f, s] for f in families for s in seeds])


def test_reconfig_gain_holds_when_every_r_network_gains_over_its_seed_twin() -> None:
    t = reconfig_table(gain=0.02)
    f = finding_of("huang_reconfig_gain", t)
    gains = paired_gains(t)
    assert (gains > 0).all()
    assert_interval(f, float(np.mean(gains)), 12)
    # Paired by seed: the seeds' 0.1 shifts cancel; all 12 gains positive gives p = 2 / 2^12.
    assert f.p == pytest.approx(sign_flip_p(gains)) and f.p == pytest.approx(2 / 2**12)
    assert f.verdict == HOLDS and "every family gains" in f.reason


def test_reconfig_gain_is_contradicted_when_every_r_network_loses() -> None:
    t = reconfig_table(gain=-0.02)
    f = finding_of("huang_reconfig_gain", t)
    gains = paired_gains(t)
    assert (gains < 0).all()
    assert_interval(f, float(np.mean(gains)), 12)
    assert f.p == pytest.approx(sign_flip_p(gains)) and f.p < ALPHA
    assert f.verdict == CONTRADICTED and "every family loses" in f.reason


def test_reconfig_gain_is_inconclusive_when_one_family_loses_though_the_pooled_gain_is_significant() -> None:
    gain = {"vgg11": 0.03, "densenet121": 0.03, "darts": 0.03, "wrn": -0.01}
    t = reconfig_table(gain=gain)
    f = finding_of("huang_reconfig_gain", t)
    gains = paired_gains(t)
    assert_interval(f, float(np.mean(gains)), 12)
    assert f.p == pytest.approx(sign_flip_p(gains)) and f.p < ALPHA
    family_means = gains.reshape(len(FAMILIES), 3).mean(axis=1)
    assert (family_means[:3] > 0).all() and family_means[3] < 0
    assert f.verdict == INCONCLUSIVE and "disagree" in f.reason


@pytest.mark.parametrize(("seeds", "verdict"), [(4, INCONCLUSIVE), (6, HOLDS)])
def test_reconfig_gain_needs_six_seeds_of_one_family_gaining_to_hold(seeds: int, verdict: str) -> None:
    t = reconfig_table(gain=0.02, families=("wrn",), seeds=seeds)
    f = finding_of("huang_reconfig_gain", t)
    gains = paired_gains(t, ("wrn",))
    assert (gains > 0).all()
    assert_interval(f, float(np.mean(gains)), seeds)
    # Every gain positive: the exact sign-flip p is 2 / 2^seeds (0.125 at 4 seeds, 0.031 at 6).
    assert f.p == pytest.approx(sign_flip_p(gains)) and f.p == pytest.approx(2 / 2**seeds)
    assert f.verdict == verdict


def test_reconfig_gain_cannot_judge_without_r_networks() -> None:
    j = judged("huang_reconfig_gain", reconfig_table(gain=0.02, reconfigured=False))
    assert j.verdict == CANNOT_JUDGE
    assert "pairs of a network and its -R version" in j.reason


# --- judge's checks before a claim's test ---


@pytest.mark.parametrize("claim", DEPTH_CLAIMS)
def test_judge_cannot_judge_a_depth_grid_with_10_of_125_trials_ended(claim: str) -> None:
    t = depth_grid(shallow_last_stage, configs=CONFIGS[:10])
    j = judged(claim, t, planned=125)
    assert j.finding is None
    assert j.verdict == CANNOT_JUDGE
    assert "10 of 125 planned trials" in j.reason and GRID in j.reason


@pytest.mark.parametrize("claim", DEPTH_CLAIMS)
def test_judge_cannot_judge_a_whole_grid_claim_when_one_trial_failed(claim: str) -> None:
    t = depth_grid(shallow_last_stage, lipschitz=lambda d: 20.0 + 3.0 * d[2])
    t.loc[7, "status"] = "ERROR"
    t.loc[7, ["best_robust_acc", ROBUST]] = np.nan
    j = judged(claim, t, planned=125)
    assert j.finding is None
    assert j.verdict == CANNOT_JUDGE
    assert "1 of its trials failed" in j.reason


@pytest.mark.parametrize("claim", [c for c in ALL_CLAIMS if c != "huang_lipschitz_depth"])
def test_judge_cannot_judge_a_huang_claim_on_a_sweep_without_test_pgd20_accuracy(claim: str) -> None:
    t = reconfig_table(gain=0.02) if claim == "huang_reconfig_gain" else depth_grid(shallow_last_stage)
    if claim == "huang_last_stage_width":
        t = width_grid(lambda w: 0.75 - 0.01 * w[2])
    j = judged(claim, t.drop(columns=[ROBUST]), planned=len(t))
    assert j.verdict == CANNOT_JUDGE
    assert "no column test_pgd20_acc" in j.reason


@pytest.mark.parametrize("claim", DEPTH_CLAIMS)
def test_judge_calls_a_depth_grid_at_chance_in_test_pgd20_accuracy_inconclusive(claim: str) -> None:
    t = depth_grid(lambda d: 0.1)
    t[ROBUST] = 0.1
    assert t["best_robust_acc"].median() > 0.5
    j = judged(claim, t, planned=125)
    assert j.finding is None
    assert j.verdict == INCONCLUSIVE
    assert (
        "did not learn" in j.reason
        and "median test_pgd20_acc 0.100" in j.reason
        and "chance 0.10" in j.reason
    )


@pytest.mark.parametrize("claim", ALL_CLAIMS)
def test_judge_cannot_judge_a_claim_whose_sweep_is_missing(claim: str) -> None:
    j = judge(CLAIMS.get(claim), {})
    assert j.verdict == CANNOT_JUDGE
    assert CLAIMS.get(claim).sweeps[0] in j.reason and "not in this results dir" in j.reason
