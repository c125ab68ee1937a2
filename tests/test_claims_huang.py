"""Huang et al.'s claims judged over small hand-made sweep tables: each verdict (holds, contradicted and,
where the claim has one, inconclusive or cannot judge) with its statistic recomputed here by scipy,
numpy or a closed form, and judge's checks for an unfinished grid, untrained networks and a missing
sweep."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
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
    """The depth grid's trials (model.depths "1-3-5", widths 0.5) with robust accuracy ``robust(d)``
    plus a little noise, so that no two trials tie."""
    t = trial_rows(len(configs), GRID)
    t["model.depths"] = [stage_string(d) for d in configs]
    t["model.widths"] = stage_string((0.5, 0.5, 0.5))
    t["params"] = [params_of(d) for d in configs]
    t["best_robust_acc"] = np.array([robust(d) for d in configs]) + noise(len(configs))
    t["lipschitz_logits"] = np.array([lipschitz(d) for d in configs]) + noise(len(configs), 0.5, 1)
    return t


def width_grid(robust: Callable[[tuple[float, float, float]], float], fmt: str = "writer") -> pd.DataFrame:
    """The width sweep's 15 trials (three of them w10-10-10) with robust accuracy ``robust(w)`` plus noise;
    ``fmt`` "writer" stores widths as the writer does ("10-10-4"), "float" as "10.0-10.0-4.0"."""
    configs = one_stage_at_a_time()
    t = trial_rows(len(configs), WIDTH)
    t["model.depths"] = "5-5-5"
    t["model.widths"] = [stage_string(w) if fmt == "writer" else "-".join(map(str, w)) for w in configs]
    t["best_robust_acc"] = np.array([robust(w) for w in configs]) + noise(len(configs), 0.002)
    return t


FAMILIES = ("vgg11", "densenet121", "darts", "wrn")
# Seeds shift every network's robust accuracy by far more than the -R gain.
SEED_SHIFT = {0: -0.1, 1: 0.0, 2: 0.1}


def reconfig_table(
    gain: float, families: Sequence[str] = FAMILIES, reconfigured: bool = True
) -> pd.DataFrame:
    """arch_reconfig trials: each family and its -R version (when ``reconfigured``) at three seeds; the
    -R version's robust accuracy is the original's plus ``gain`` plus noise."""
    rows = []
    for i, family in enumerate(families):
        for seed, shift in SEED_SHIFT.items():
            base = 0.45 + 0.02 * i + shift
            rows.append({"eval.label": family, "train.seed": seed, "best_robust_acc": base})
            if reconfigured:
                rows.append({"eval.label": f"{family}-R", "train.seed": seed, "best_robust_acc": base + gain})
    t = pd.DataFrame(rows)
    t["best_robust_acc"] += noise(len(t), 0.003)
    return pd.concat([trial_rows(len(t), RECONFIG), t], axis=1)


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


# --- huang_params_not_robustness ---


def test_params_not_robustness_holds_when_robustness_falls_with_parameters() -> None:
    t = depth_grid(shallow_last_stage)
    f = finding_of("huang_params_not_robustness", t, planned=125)
    rho = stats.spearmanr(t["params"], t["best_robust_acc"]).statistic
    assert rho < -0.5
    assert_interval(f, rho, 125)
    assert f.verdict == HOLDS and f.high < 0.3


def test_params_not_robustness_is_contradicted_when_robustness_rises_with_parameters() -> None:
    t = depth_grid(lambda d: 0.40 + 0.4 * params_of(d) / params_of((9, 9, 9)))
    f = finding_of("huang_params_not_robustness", t, planned=125)
    rho = stats.spearmanr(t["params"], t["best_robust_acc"]).statistic
    assert rho > 0.9
    assert_interval(f, rho, 125)
    assert f.verdict == CONTRADICTED and f.low > 0.3


# --- huang_last_stage_depth ---


def test_last_stage_depth_holds_when_robustness_falls_as_d3_grows() -> None:
    t = depth_grid(shallow_last_stage)
    f = finding_of("huang_last_stage_depth", t, planned=125)
    assert_interval(f, stats.spearmanr(d3(t), t["best_robust_acc"]).statistic, 125)
    assert f.value < -0.8
    assert f.verdict == HOLDS and f.high < 0


def test_last_stage_depth_is_contradicted_when_robustness_rises_with_d3() -> None:
    t = depth_grid(deep_last_stage)
    f = finding_of("huang_last_stage_depth", t, planned=125)
    assert_interval(f, stats.spearmanr(d3(t), t["best_robust_acc"]).statistic, 125)
    assert f.value > 0.8
    assert f.verdict == CONTRADICTED and f.low > 0


# --- huang_top5_last_stage ---


def top5_p(k: int, n: int = 125, hits: int = 50) -> float:
    """P(at least k of 5 configs drawn without replacement have D3 in {1, 3}), by counting."""
    return sum(math.comb(hits, j) * math.comb(n - hits, 5 - j) for j in range(k, 6)) / math.comb(n, 5)


def test_top5_last_stage_holds_when_the_five_best_have_d3_one() -> None:
    t = depth_grid(shallow_last_stage)
    assert set(d3(t)[np.argsort(-t["best_robust_acc"].to_numpy())[:5]]) == {1}
    f = finding_of("huang_top5_last_stage", t, planned=125)
    assert (f.value, f.n) == (5, 125)
    assert f.p == pytest.approx(top5_p(5), rel=1e-9)
    assert f.verdict == HOLDS


def test_top5_last_stage_is_contradicted_when_the_five_best_have_d3_nine() -> None:
    t = depth_grid(deep_last_stage)
    assert set(d3(t)[np.argsort(-t["best_robust_acc"].to_numpy())[:5]]) == {9}
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
    500M (within 2%) whose robust accuracies are ``counts`` / ``examples`` test examples."""
    t = depth_grid(shallow_last_stage)
    t["params"] = [round(1000 * 1.1**i) for i in range(len(t))]
    t["test_examples"] = examples
    planted = np.arange(0, 120, 12)
    t.loc[planted, "params"] = [500_000_000 + 1_000_000 * j for j in range(len(planted))]
    t.loc[planted, "best_robust_acc"] = np.asarray(counts) / examples
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


def test_lipschitz_depth_holds_when_the_lipschitz_constant_grows_with_total_depth() -> None:
    t = depth_grid(shallow_last_stage, lipschitz=lambda d: 20.0 + 3.0 * sum(d))
    f = finding_of("huang_lipschitz_depth", t, planned=125)
    assert_interval(f, stats.spearmanr(total_depth(t), t["lipschitz_logits"]).statistic, 125)
    assert f.value > 0.9
    assert f.verdict == HOLDS and f.low > 0


def test_lipschitz_depth_is_contradicted_when_the_lipschitz_constant_falls_with_total_depth() -> None:
    t = depth_grid(shallow_last_stage, lipschitz=lambda d: 120.0 - 3.0 * sum(d))
    f = finding_of("huang_lipschitz_depth", t, planned=125)
    assert_interval(f, stats.spearmanr(total_depth(t), t["lipschitz_logits"]).statistic, 125)
    assert f.value < -0.9
    assert f.verdict == CONTRADICTED and f.high < 0


# --- huang_last_stage_width ---


def last_stage_rows(t: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """W3 and robust accuracy of the trials with W1 = W2 = 10 (w10-10-10 three times)."""
    w = [tuple(float(x) for x in s.split("-")) for s in t["model.widths"]]
    rows = np.array([a == 10.0 and b == 10.0 for a, b, _ in w])
    return np.array([c for _, _, c in w])[rows], t["best_robust_acc"].to_numpy()[rows]


# A bootstrap resample of the five W3 points that holds a single width has no defined correlation.
NO_CORRELATION = "ignore::scipy.stats.ConstantInputWarning"


@pytest.mark.filterwarnings(NO_CORRELATION)
@pytest.mark.parametrize("fmt", ["writer", "float"])
def test_last_stage_width_holds_when_robustness_falls_as_w3_grows(fmt: str) -> None:
    t = width_grid(lambda w: 0.75 + 0.002 * w[0] - 0.01 * w[2], fmt)
    f = finding_of("huang_last_stage_width", t)
    w3, acc = last_stage_rows(t)
    assert sorted(w3) == [2, 4, 6, 8, 10, 10, 10]
    means = pd.Series(acc).groupby(w3).mean()  # w10-10-10 is one point, not three
    assert_interval(f, stats.spearmanr(means.index, means.to_numpy()).statistic, 5)
    assert f.verdict == HOLDS and f.high < 0


@pytest.mark.filterwarnings(NO_CORRELATION)
def test_last_stage_width_is_contradicted_when_robustness_rises_with_w3() -> None:
    t = width_grid(lambda w: 0.55 + 0.01 * w[2])
    f = finding_of("huang_last_stage_width", t)
    w3, acc = last_stage_rows(t)
    means = pd.Series(acc).groupby(w3).mean()
    assert_interval(f, stats.spearmanr(means.index, means.to_numpy()).statistic, 5)
    assert f.verdict == CONTRADICTED and f.low > 0


def test_last_stage_width_cannot_judge_without_three_last_stage_widths() -> None:
    t = width_grid(lambda w: 0.75 - 0.01 * w[2]).iloc[:10]  # only W1 and W2 varied
    j = judged("huang_last_stage_width", t)
    assert j.verdict == CANNOT_JUDGE
    assert "at least 3 widths of the last stage" in j.reason


# --- huang_reconfig_gain ---


def paired_gains(t: pd.DataFrame) -> np.ndarray:
    acc = {(str(r["eval.label"]), int(r["train.seed"])): float(r["best_robust_acc"]) for _, r in t.iterrows()}
    return np.array([acc[f"{f}-R", s] - acc[f, s] for f in FAMILIES for s in SEED_SHIFT])


def test_reconfig_gain_holds_when_every_r_network_gains_over_its_seed_twin() -> None:
    t = reconfig_table(gain=0.02)
    f = finding_of("huang_reconfig_gain", t)
    gains = paired_gains(t)
    assert_interval(f, float(np.mean(gains)), 12)
    # Paired by seed: the seeds' +-0.1 shifts cancel, so the interval lies above 0.
    assert f.verdict == HOLDS and f.low > 0


def test_reconfig_gain_is_contradicted_when_every_r_network_loses() -> None:
    t = reconfig_table(gain=-0.02)
    f = finding_of("huang_reconfig_gain", t)
    assert_interval(f, float(np.mean(paired_gains(t))), 12)
    assert f.verdict == CONTRADICTED and f.high < 0


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
def test_judge_calls_a_depth_grid_at_chance_inconclusive(claim: str) -> None:
    t = depth_grid(lambda d: 0.1)
    t["best_robust_acc"] = 0.1
    j = judged(claim, t, planned=125)
    assert j.finding is None
    assert j.verdict == INCONCLUSIVE
    assert "did not learn" in j.reason and "chance 0.10" in j.reason


@pytest.mark.parametrize("claim", ALL_CLAIMS)
def test_judge_cannot_judge_a_claim_whose_sweep_is_missing(claim: str) -> None:
    j = judge(CLAIMS.get(claim), {})
    assert j.verdict == CANNOT_JUDGE
    assert CLAIMS.get(claim).sweeps[0] in j.reason and "not in this results dir" in j.reason
