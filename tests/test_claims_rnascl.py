"""RNAS-CL's claims judged on small hand-made trials tables: each verdict, and each statistic recomputed
here (the paired differences and their exact sign-flip p by enumeration, or the exact distribution of
the uniform-tutor null by enumeration)."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from torch import nn

from tune_robust.analysis.claims import (
    CANNOT_JUDGE,
    CONTRADICTED,
    HOLDS,
    INCONCLUSIVE,
    Judgement,
    SweepData,
    judge,
)
from tune_robust.analysis.claims.rnascl import (
    ABLATION,
    ORDER,
    AblationOrder,
    BeatsStandard,
    TutorConcentration,
)
from tune_robust.analysis.load import SweepResults
from tune_robust.models import create_model
from tune_robust.models.oneshot import RECORD_VERSION

SEEDS = (0, 1, 2, 3, 4, 5)
# Six paired seeds whose differences share a sign: the smallest exact two-sided sign-flip p, 2 / 2^6.
P_SIX = 2 / 64
WRT34 = "/results/rnascl_teacher/wrt34/state"
R18 = "/results/rnascl_teacher/r18/state"


def sweep(name: str, trials: pd.DataFrame) -> SweepData:
    trials = trials.copy()
    trials["status"] = "TERMINATED"
    trials["sweep"] = name
    trials["data.dataset"] = "digits"
    return SweepData(name, Path("x"), SweepResults(trials, pd.DataFrame()), planned=None)


def sign_flip_p(differences: Sequence[float] | np.ndarray) -> float:
    """Exact two-sided p of mean(differences) under random sign flips (every 2^n sign pattern)."""
    d = np.asarray(differences, float)
    observed = abs(d.mean())
    means = [abs((d * signs).mean()) for signs in itertools.product((1.0, -1.0), repeat=len(d))]
    return float(np.mean(np.asarray(means) >= observed - 1e-12))


def ablation_label(paradigm: str) -> str:
    return f"rnascl_ablation:eval.label:{paradigm} (abc_{paradigm.lower()})"


def train_sweep(pgd20: Mapping[str, Sequence[float]], clean: float = 0.9) -> SweepData:
    """rnascl_train: each paradigm's student with one PGD-20 accuracy per seed (the first len(accs)
    seeds), plus rows the claims must not read (the reference and rnascl_search's student, both far
    more robust than any)."""
    rows = [
        {"eval.label": label, "train.seed": seed, "test_pgd20_acc": acc}
        for label, accs in [
            *((ablation_label(p), a) for p, a in pgd20.items()),
            ("widest, CE only", [0.99] * len(SEEDS)),
            ("rnascl_search:best (abc_s)", [0.98] * len(SEEDS)),
        ]
        for seed, acc in zip(SEEDS, accs, strict=False)
    ]
    trials = pd.DataFrame(rows)
    trials["best_clean_acc"] = clean
    trials["best_robust_acc"] = trials["test_pgd20_acc"]
    return sweep("rnascl_train", trials)


def judge_train(claim: type, pgd20: Mapping[str, Sequence[float]], clean: float = 0.9) -> Judgement:
    # rnascl_ablation's four searches (their students are the rnascl_train rows).
    searches = pd.DataFrame({"eval.label": list(ORDER), "best_robust_acc": 0.5, "best_clean_acc": 0.9})
    return judge(
        claim, {"rnascl_train": train_sweep(pgd20, clean), "rnascl_ablation": sweep(ABLATION, searches)}
    )


STANDARD = [0.20, 0.22, 0.18, 0.21, 0.19, 0.23]
GAINS = [0.05, 0.07, 0.06, 0.08, 0.04, 0.09]


def plus(base: Sequence[float], gains: Sequence[float]) -> list[float]:
    return [b + g for b, g in zip(base, gains, strict=True)]


def test_rnascl_student_more_robust_than_standard_on_every_seed_holds() -> None:
    rnascl = plus(STANDARD, GAINS)
    j = judge_train(BeatsStandard, {"Standard": STANDARD, "KL": STANDARD, "RNAS-CL": rnascl})
    assert j.verdict == HOLDS
    assert j.finding is not None
    assert j.finding.value == pytest.approx(np.mean(GAINS))
    assert j.finding.p == pytest.approx(sign_flip_p(GAINS)) and j.finding.p == pytest.approx(P_SIX)
    assert j.finding.n == len(SEEDS) and j.finding.low > 0


def test_rnascl_student_less_robust_than_standard_is_contradicted() -> None:
    rnascl = plus(STANDARD, [-g for g in GAINS])
    j = judge_train(BeatsStandard, {"Standard": STANDARD, "RNAS-CL": rnascl})
    assert j.verdict == CONTRADICTED
    assert j.finding is not None
    assert j.finding.value == pytest.approx(-np.mean(GAINS))
    assert j.finding.p == pytest.approx(P_SIX) and j.finding.high < 0


def test_rnascl_gain_on_four_seeds_that_all_agree_is_inconclusive_not_holds() -> None:
    rnascl = plus(STANDARD, GAINS)
    j = judge_train(BeatsStandard, {"Standard": STANDARD[:4], "RNAS-CL": rnascl[:4]})
    assert j.verdict == INCONCLUSIVE
    assert j.finding is not None
    assert j.finding.low > 0  # the bootstrap interval excludes 0; the sign-flip p does not
    assert j.finding.p == pytest.approx(sign_flip_p(GAINS[:4])) and j.finding.p == pytest.approx(2 / 16)


def test_rnascl_gain_pairs_students_by_seed_and_drops_a_seed_one_of_them_lacks() -> None:
    rnascl = plus(STANDARD, GAINS)
    j = judge_train(BeatsStandard, {"Standard": STANDARD[:5], "RNAS-CL": rnascl})
    assert j.finding is not None
    assert j.finding.value == pytest.approx(np.mean(GAINS[:5]))
    assert j.finding.n == 5


def test_rnascl_gain_without_a_standard_student_cannot_be_judged() -> None:
    j = judge_train(BeatsStandard, {"KL": STANDARD, "RNAS-CL": STANDARD})
    assert j.verdict == CANNOT_JUDGE
    assert "Standard" in j.reason


def test_rnascl_gain_is_judged_on_students_with_chance_level_robustness_that_learned_the_task() -> None:
    standard = [0.01, 0.02, 0.0, 0.01, 0.02, 0.0]
    rnascl = plus(standard, GAINS)
    assert judge_train(BeatsStandard, {"Standard": standard, "RNAS-CL": rnascl}).verdict == HOLDS
    unlearned = judge_train(BeatsStandard, {"Standard": standard, "RNAS-CL": rnascl}, clean=0.11)
    assert unlearned.verdict == INCONCLUSIVE
    assert "best_clean_acc" in unlearned.learned


def cross_layer_gains(pgd20: Mapping[str, Sequence[float]]) -> np.ndarray:
    """Per seed with all four students: mean(ICC, RNAS-CL) minus mean(Standard, KL)."""
    n = min(len(pgd20[p]) for p in ORDER)
    acc = {p: np.asarray(pgd20[p][:n], float) for p in ORDER}
    return (acc["ICC"] + acc["RNAS-CL"]) / 2 - (acc["Standard"] + acc["KL"]) / 2


# The ablation's four students per seed; within each pair the order changes from seed to seed, and on
# seed 1 the RNAS-CL student is below the KL one while the cross-layer pair's mean is above.
CROSS_LAYER_AHEAD = {
    "Standard": [0.20, 0.22, 0.18, 0.21, 0.24, 0.19],
    "KL": [0.23, 0.27, 0.17, 0.25, 0.22, 0.20],
    "ICC": [0.30, 0.33, 0.26, 0.31, 0.29, 0.28],
    "RNAS-CL": [0.28, 0.25, 0.29, 0.33, 0.30, 0.25],
}


def test_order_is_the_four_paradigms_of_the_ablation() -> None:
    assert ORDER == ("Standard", "KL", "ICC", "RNAS-CL")


def test_cross_layer_students_more_robust_than_standard_and_kl_on_every_seed_holds() -> None:
    j = judge_train(AblationOrder, CROSS_LAYER_AHEAD)
    assert j.verdict == HOLDS
    assert j.finding is not None
    gains = cross_layer_gains(CROSS_LAYER_AHEAD)
    assert (gains > 0).all()
    assert j.finding.value == pytest.approx(gains.mean())
    assert j.finding.p == pytest.approx(sign_flip_p(gains)) and j.finding.p == pytest.approx(P_SIX)
    assert j.finding.n == len(SEEDS) and j.finding.low > 0


def test_cross_layer_students_less_robust_than_standard_and_kl_is_contradicted() -> None:
    swapped = {
        "Standard": CROSS_LAYER_AHEAD["ICC"],
        "KL": CROSS_LAYER_AHEAD["RNAS-CL"],
        "ICC": CROSS_LAYER_AHEAD["Standard"],
        "RNAS-CL": CROSS_LAYER_AHEAD["KL"],
    }
    j = judge_train(AblationOrder, swapped)
    assert j.verdict == CONTRADICTED
    assert j.finding is not None
    gains = cross_layer_gains(swapped)
    assert j.finding.value == pytest.approx(gains.mean()) and j.finding.value < 0
    assert j.finding.p == pytest.approx(sign_flip_p(gains)) and j.finding.high < 0


def test_ablation_order_on_four_seeds_that_all_agree_is_inconclusive_not_holds() -> None:
    four = {p: accs[:4] for p, accs in CROSS_LAYER_AHEAD.items()}
    j = judge_train(AblationOrder, four)
    assert j.verdict == INCONCLUSIVE
    assert j.finding is not None
    gains = cross_layer_gains(four)
    assert j.finding.value == pytest.approx(gains.mean()) and j.finding.low > 0
    assert j.finding.p == pytest.approx(sign_flip_p(gains)) and j.finding.p == pytest.approx(2 / 16)


def test_ablation_order_with_seeds_that_disagree_is_inconclusive() -> None:
    mixed = dict(CROSS_LAYER_AHEAD, ICC=[0.30, 0.15, 0.26, 0.12, 0.29, 0.30])
    j = judge_train(AblationOrder, mixed)
    assert j.verdict == INCONCLUSIVE
    assert j.finding is not None
    gains = cross_layer_gains(mixed)
    assert (gains > 0).any() and (gains < 0).any()
    assert j.finding.value == pytest.approx(gains.mean())
    assert j.finding.p == pytest.approx(sign_flip_p(gains)) and j.finding.p >= 0.05


def test_ablation_order_leaves_out_a_seed_without_all_four_students() -> None:
    short = dict(CROSS_LAYER_AHEAD, KL=CROSS_LAYER_AHEAD["KL"][:5])
    j = judge_train(AblationOrder, short)
    assert j.finding is not None
    assert j.finding.n == 5
    assert j.finding.value == pytest.approx(cross_layer_gains(short).mean())


def test_ablation_order_without_the_kl_student_cannot_be_judged() -> None:
    j = judge_train(AblationOrder, {"Standard": STANDARD, "ICC": STANDARD, "RNAS-CL": STANDARD})
    assert j.verdict == CANNOT_JUDGE
    assert "KL" in j.reason


def test_ablation_order_with_one_seed_holding_all_four_students_cannot_be_judged() -> None:
    j = judge_train(AblationOrder, dict(CROSS_LAYER_AHEAD, ICC=CROSS_LAYER_AHEAD["ICC"][:1]))
    assert j.verdict == CANNOT_JUDGE
    assert "1 seed(s) with all four students" in j.reason


# Tutor concentration: a WRN of 1 x 1 x 1 blocks as the WRT-34 teacher (its convolutions are the
# teacher layers), a PreAct ResNet-18 as R-18.
TEACHER_LAYERS = sum(
    isinstance(m, nn.Conv2d) for m in create_model("wrn", depths=(1, 1, 1), widths=(0.5, 0.5, 0.5)).modules()
)


def record(tutors: str) -> str:
    method: dict[str, object] = {"kl": True, "attention": True, "teacher": "teacher"}
    if tutors:
        method["tutors"] = tutors
    channels = "4,4,4 | 8,8,8 | 16,16,16"
    return json.dumps(
        {
            "version": RECORD_VERSION,
            "space": "rnascl",
            "arch": channels,
            "model": {"arch": "rnascl_student", "channels": channels},
            "stats": {},
            "method": method,
        }
    )


def concentration(tutors: str, checkpoint: str = WRT34, runner_up: str = "0,1,2,3,4,5,6,7,8") -> Judgement:
    """The claim on an ablation whose RNAS-CL search chose ``tutors`` (best clean accuracy), beside a
    second RNAS-CL search with a lower clean accuracy and ``runner_up``'s tutors, and ICC / KL rows."""
    ablation = pd.DataFrame(
        {
            "eval.label": ["Standard", "KL", "ICC", "RNAS-CL", "RNAS-CL"],
            "arch": [record(""), record(""), record("5,5,5,5,5,5,5,5,5"), record(tutors), record(runner_up)],
            "best_clean_acc": [0.9, 0.9, 0.9, 0.92, 0.85],
            "best_robust_acc": 0.1,
            "method.teacher": "teacher",
            "upstream.teacher": checkpoint,
        }
    )
    teachers = pd.DataFrame(
        {
            "eval.label": ["WRT-34", "R-18"],
            "model.arch": ["wrn", "preact_resnet18"],
            "model.depths": ["1-1-1", None],
            "model.widths": ["0.5-0.5-0.5", None],
            "checkpoint_path": [WRT34, R18],
            "best_clean_acc": 0.9,
            "best_robust_acc": 0.5,
        }
    )
    sweeps = {
        "rnascl_ablation": sweep("rnascl_ablation", ablation),
        "rnascl_teacher": sweep("rnascl_teacher", teachers),
    }
    return judge(TutorConcentration, sweeps)


def counts_of(students: int, layers: int) -> Iterator[tuple[int, ...]]:
    """Every way ``students`` student layers fall on ``layers`` teacher layers (counts per layer)."""
    if layers == 1:
        yield (students,)
        return
    for first in range(students + 1):
        for rest in counts_of(students - first, layers - 1):
            yield (first, *rest)


def uniform_top2_share(students: int, layers: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact distribution (shares, probabilities) of the top-2 share when each student layer's tutor
    is uniform over ``layers`` teacher layers (multinomial probabilities of every count vector)."""
    shares, probs = [], []
    for c in counts_of(students, layers):
        ways = math.factorial(students) / math.prod(math.factorial(x) for x in c)
        shares.append(sum(sorted(c)[-2:]) / students)
        probs.append(ways / layers**students)
    return np.array(shares), np.array(probs)


def test_teacher_of_the_fixture_has_ten_layers() -> None:
    assert TEACHER_LAYERS == 10


def test_tutors_piled_on_two_teacher_layers_hold() -> None:
    j = concentration("3,3,3,3,7,7,7,7,1")
    assert j.verdict == HOLDS
    assert j.finding is not None
    assert j.finding.value == pytest.approx(8 / 9)
    shares, probs = uniform_top2_share(9, TEACHER_LAYERS)
    exact = float(probs[shares >= 8 / 9 - 1e-12].sum())
    assert j.finding.p == pytest.approx(exact, abs=0.002) and j.finding.p < 0.05
    assert j.finding.n == 9


def test_tutors_spread_over_distinct_teacher_layers_are_contradicted() -> None:
    j = concentration("0,1,2,3,4,5,6,7,8", runner_up="3,3,3,3,3,3,3,3,3")
    assert j.verdict == CONTRADICTED
    assert j.finding is not None
    assert j.finding.value == pytest.approx(2 / 9)
    shares, probs = uniform_top2_share(9, TEACHER_LAYERS)
    assert float(shares @ probs) > 2 / 9
    assert j.finding.p == pytest.approx(1.0)


def test_concentration_above_the_uniform_mean_but_not_significant_is_inconclusive() -> None:
    j = concentration("2,2,2,5,5,0,1,4,6")
    assert j.verdict == INCONCLUSIVE
    assert j.finding is not None
    assert j.finding.value == pytest.approx(5 / 9)
    shares, probs = uniform_top2_share(9, TEACHER_LAYERS)
    exact = float(probs[shares >= 5 / 9 - 1e-12].sum())
    assert exact > 0.05 and float(shares @ probs) < 5 / 9
    assert j.finding.p == pytest.approx(exact, abs=0.01)


def test_concentration_with_a_teacher_checkpoint_absent_from_the_teacher_sweep_cannot_be_judged() -> None:
    j = concentration("3,3,3,3,7,7,7,7,1", checkpoint="/elsewhere/model.pt")
    assert j.verdict == CANNOT_JUDGE
    assert "/elsewhere/model.pt" in j.reason


def test_concentration_without_a_recorded_tutor_map_cannot_be_judged() -> None:
    j = concentration("")
    assert j.verdict == CANNOT_JUDGE
    assert "tutor map" in j.reason
